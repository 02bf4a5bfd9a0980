//! Training and evaluation data: `.npz` and `.safetensors` files holding one array
//! per graph input (named like the input; a single-input model also accepts `x`)
//! plus `labels` (or `y`), raw text tokenized for the model ([`text`]), or image folders
//! decoded batch by batch ([`images`]). Batches are drawn in a seeded order on a
//! background prefetch thread.

pub mod images;
pub mod text;

use crate::error::{Error, Result};
use crate::exec::convert::{kind_of, to_tch};
use crate::exec::{describe_dims, GraphInput};
use oto_onnx::{DType, Tensor as OnnxTensor, TensorData};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use tch::{Device, Kind, Tensor};

/// What kind of data a path holds, and how to read it.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    /// A `.npz` or `.safetensors` file of arrays named like the graph inputs.
    #[default]
    Arrays,
    /// A text file (lines, or JSON Lines) tokenized for the model.
    Text(text::TextOptions),
    /// A folder of image folders, one per class.
    Images(images::ImageOptions),
}

/// A data file matched against a model's inputs. Tensors are on the host.
pub struct Dataset {
    /// The file.
    pub path: PathBuf,
    /// One tensor per graph input, in graph order; the first axis indexes samples.
    /// Empty when the inputs are decoded batch by batch from `images`.
    pub inputs: Vec<Tensor>,
    /// The labels (`labels` or `y`), if the file has them; first axis indexes samples.
    pub labels: Option<Tensor>,
    /// Number of samples.
    pub len: usize,
    /// An image folder whose images are decoded when a batch is drawn (the single input).
    pub images: Option<Arc<images::ImageFolder>>,
}

/// Reads every array of a `.npz` or `.safetensors` file.
pub fn read_arrays(path: &Path) -> Result<Vec<(String, OnnxTensor)>> {
    let data_error = |message: String| Error::Data { path: path.to_path_buf(), message };
    match path.extension().and_then(|e| e.to_str()) {
        Some("npz") => Ok(oto_onnx::npz::read_npz(path)?),
        Some("safetensors") => {
            let bytes = std::fs::read(path).map_err(|e| data_error(format!("cannot read: {e}")))?;
            read_safetensors_bytes(&bytes).map_err(data_error)
        }
        _ => Err(data_error("unknown data format: expected a .npz or .safetensors file".into())),
    }
}

/// Decodes a safetensors buffer into named tensors.
pub fn read_safetensors_bytes(bytes: &[u8]) -> std::result::Result<Vec<(String, OnnxTensor)>, String> {
    use safetensors::{Dtype, SafeTensors};
    let st = SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
    let mut out = Vec::new();
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    for name in names {
        let view = st.tensor(&name).map_err(|e| format!("array '{name}': {e}"))?;
        let dtype = match view.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::Bf16,
            Dtype::F64 => DType::F64,
            Dtype::I64 => DType::I64,
            Dtype::I32 => DType::I32,
            Dtype::I8 => DType::I8,
            Dtype::U8 => DType::U8,
            Dtype::BOOL => DType::Bool,
            other => return Err(format!("array '{name}': element type {other:?} is not supported")),
        };
        let shape = view.shape().to_vec();
        let count = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("array '{name}': shape {shape:?} is too large"))?;
        let data = TensorData::from_le_bytes(dtype, view.data(), count).map_err(|e| format!("array '{name}': {}", e.0))?;
        out.push((name.clone(), OnnxTensor::new(shape, data).ok_or_else(|| format!("array '{name}': data does not match its shape"))?));
    }
    Ok(out)
}

/// The element type name users know (`float32`, `int64`...).
fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "float32",
        DType::F16 => "float16",
        DType::Bf16 => "bfloat16",
        DType::F64 => "float64",
        DType::I64 => "int64",
        DType::I32 => "int32",
        DType::I8 => "int8",
        DType::U8 => "uint8",
        DType::Bool => "bool",
    }
}

/// `array` in the element type `dtype` of the model input it feeds. Float arrays of any
/// float type become the model's (numpy writes float64 and float32; a half-precision
/// model computes in float16 anyway, rounded to nearest); integer arrays become the
/// model's integer type when every value fits (int32 token ids for int64 `input_ids`).
/// Anything else is refused naming both types.
pub fn converted_to(array: OnnxTensor, dtype: DType) -> std::result::Result<OnnxTensor, String> {
    let from = array.dtype();
    if from == dtype {
        return Ok(array);
    }
    let refused = || format!("expected element type {}, got {}", dtype_name(dtype), dtype_name(from));
    let is_float = |d: DType| matches!(d, DType::F32 | DType::F16 | DType::Bf16 | DType::F64);
    let is_integer = |d: DType| matches!(d, DType::I64 | DType::I32 | DType::I8 | DType::U8);
    let data = if is_float(from) && is_float(dtype) {
        let values = array.to_f64_vec();
        match dtype {
            DType::F32 => TensorData::F32(values.iter().map(|&x| x as f32).collect()),
            DType::F16 => TensorData::F16(values.iter().map(|&x| half::f16::from_f64(x)).collect()),
            DType::Bf16 => TensorData::Bf16(values.iter().map(|&x| half::bf16::from_f64(x)).collect()),
            _ => TensorData::F64(values),
        }
    } else if is_integer(from) && is_integer(dtype) {
        let values = array.to_i64_vec().ok_or_else(refused)?;
        // Each value converted, or the first that does not fit named.
        fn narrowed<T: TryFrom<i64>>(values: &[i64], refused: &str) -> std::result::Result<Vec<T>, String> {
            values
                .iter()
                .enumerate()
                .map(|(i, &x)| T::try_from(x).map_err(|_| format!("{refused}: value {x} at element {i} does not fit")))
                .collect()
        }
        match dtype {
            DType::I32 => TensorData::I32(narrowed(&values, &refused())?),
            DType::I8 => TensorData::I8(narrowed(&values, &refused())?),
            DType::U8 => TensorData::U8(narrowed(&values, &refused())?),
            _ => TensorData::I64(values),
        }
    } else {
        return Err(refused());
    };
    OnnxTensor::new(array.shape, data).ok_or_else(refused)
}

/// The empty past of a key/value cache for `samples` samples: zero positions along its
/// cache axis, the declared sizes elsewhere (every one must be declared but the first,
/// the samples).
fn empty_past(input: &GraphInput, samples: usize) -> std::result::Result<Tensor, String> {
    let axis = input.cache_axis.unwrap_or(0);
    let dims =
        input.dims.as_ref().ok_or_else(|| format!("no array for model input '{}' (a cache's past, of undeclared rank)", input.name))?;
    let mut shape = Vec::with_capacity(dims.len());
    for (i, d) in dims.iter().enumerate() {
        shape.push(match (i, d) {
            (0, _) => i64::try_from(samples).map_err(|_| "too many samples".to_string())?,
            (i, _) if i == axis => 0,
            (_, Some(n)) => *n,
            (i, None) => {
                return Err(format!(
                    "no array for model input '{}': it is a cache's past, fed empty when the data has none, but its axis {i} has no declared size",
                    input.name
                ))
            }
        });
    }
    Tensor::f_zeros(&shape, (crate::exec::convert::kind_of(input.dtype), Device::Cpu)).map_err(|e| format!("input '{}': {e}", input.name))
}

impl Dataset {
    /// Loads `path` and matches it against the model's graph inputs: every input must
    /// have an array of its element type (or one converted to it: see
    /// [`converted_to`]), rank and (non-batch) dimensions, all arrays must have the same
    /// number of samples.
    pub fn load(path: &Path, inputs: &[GraphInput]) -> Result<Dataset> {
        let arrays = read_arrays(path)?;
        Self::from_arrays(path, arrays, inputs)
    }

    /// Reads `path` as `format` for `model` with graph inputs `inputs`; `part` and
    /// `seed` choose an image folder's split.
    pub fn open(
        path: &Path,
        format: &DataFormat,
        model: &oto_onnx::Model,
        inputs: &[GraphInput],
        part: images::Part,
        seed: u64,
    ) -> Result<Dataset> {
        match format {
            DataFormat::Arrays => Self::load(path, inputs),
            DataFormat::Text(options) => {
                let arrays = text::read_text(path, options, model, inputs)?;
                Self::from_arrays(path, arrays, inputs)
            }
            DataFormat::Images(options) => {
                let input = match inputs {
                    [input] => input,
                    _ => {
                        return Err(Error::Data {
                            path: path.to_path_buf(),
                            message: format!("an image folder feeds a model with one input; this one has {}", inputs.len()),
                        })
                    }
                };
                let sized = images::size_from_preprocessor(input, model.path())?;
                let folder = images::ImageFolder::open(path, options, part, seed, sized.as_ref().unwrap_or(input))?;
                let labels = Tensor::from_slice(&folder.labels);
                Ok(Dataset {
                    path: path.to_path_buf(),
                    inputs: Vec::new(),
                    labels: Some(labels),
                    len: folder.len(),
                    images: Some(Arc::new(folder)),
                })
            }
        }
    }

    /// Another handle on the same samples (tensors shared, not copied).
    pub fn shallow_clone(&self) -> Dataset {
        Dataset {
            path: self.path.clone(),
            inputs: self.inputs.iter().map(Tensor::shallow_clone).collect(),
            labels: self.labels.as_ref().map(Tensor::shallow_clone),
            len: self.len,
            images: self.images.clone(),
        }
    }

    /// Like [`Dataset::load`], from arrays already read (`path` names them in errors).
    pub fn from_arrays(path: &Path, mut arrays: Vec<(String, OnnxTensor)>, inputs: &[GraphInput]) -> Result<Dataset> {
        let data_error = |message: String| Error::Data { path: path.to_path_buf(), message };
        let available: Vec<String> = arrays.iter().map(|(n, _)| n.clone()).collect();
        let mut take = |names: &[&str]| -> Option<(String, OnnxTensor)> {
            let i = arrays.iter().position(|(n, _)| names.contains(&n.as_str()))?;
            Some(arrays.swap_remove(i))
        };
        let mut tensors = Vec::new();
        let mut len: Option<(usize, String)> = None;
        // Caches' pasts without an array: fed empty once the number of samples is known.
        let mut empty_pasts = Vec::new();
        for (at, input) in inputs.iter().enumerate() {
            let alias: Vec<&str> = if inputs.len() == 1 { vec![input.name.as_str(), "x"] } else { vec![input.name.as_str()] };
            let found = take(&alias);
            if found.is_none() && input.cache_axis.is_some() {
                // Its place among the inputs: those before it are in place when it is put back.
                empty_pasts.push((at, input));
                continue;
            }
            let (name, array) = found.ok_or_else(|| {
                data_error(format!(
                    "no array for model input '{}'{} (the file has: {})",
                    input.name,
                    if inputs.len() == 1 && input.name != "x" { " (or 'x')" } else { "" },
                    available.join(", ")
                ))
            })?;
            let array = converted_to(array, input.dtype).map_err(|why| data_error(format!("array '{name}': {why}")))?;
            if let Some(dims) = &input.dims {
                let actual = &array.shape;
                let ok = actual.len() == dims.len() && dims.iter().zip(actual).skip(1).all(|(d, a)| d.is_none_or(|d| d as usize == *a));
                if !ok {
                    return Err(data_error(format!(
                        "array '{name}': expected shape {} (first axis: samples), got {actual:?}",
                        describe_dims(&dims.iter().enumerate().map(|(i, d)| if i == 0 { None } else { *d }).collect::<Vec<_>>())
                    )));
                }
            }
            let n = *array
                .shape
                .first()
                .ok_or_else(|| data_error(format!("array '{name}' is a scalar; expected samples along the first axis")))?;
            match &len {
                Some((m, other)) if *m != n => return Err(data_error(format!("array '{name}' has {n} samples but '{other}' has {m}"))),
                None => len = Some((n, name.clone())),
                _ => {}
            }
            tensors.push(to_tch(&array, Device::Cpu).map_err(|m| data_error(format!("array '{name}': {m}")))?);
        }
        let labels = match take(&["labels", "y"]) {
            Some((name, array)) => {
                let n = array.shape.first().copied().unwrap_or(0);
                if let Some((m, other)) = &len {
                    if *m != n {
                        return Err(data_error(format!("array '{name}' has {n} samples but '{other}' has {m}")));
                    }
                }
                Some(to_tch(&array, Device::Cpu).map_err(|m| data_error(format!("array '{name}': {m}")))?)
            }
            None => None,
        };
        let len = len.map(|(n, _)| n).unwrap_or(0);
        if len == 0 {
            return Err(data_error("the data has no samples".into()));
        }
        for (at, input) in empty_pasts {
            let past = empty_past(input, len).map_err(data_error)?;
            tensors.insert(at, past);
        }
        Ok(Dataset { path: path.to_path_buf(), inputs: tensors, labels, len, images: None })
    }

    /// Checks class labels for `classes` classes: integer, one per sample, in `0..classes`.
    pub fn check_class_labels(&self, classes: i64) -> Result<()> {
        let data_error = |message: String| Error::Data { path: self.path.clone(), message };
        let labels = self
            .labels
            .as_ref()
            .ok_or_else(|| data_error("no 'labels' (or 'y') array: a classification loss needs class labels".into()))?;
        let kind = labels.kind();
        if !matches!(kind, Kind::Int64 | Kind::Int | Kind::Int8 | Kind::Uint8) {
            return Err(data_error(format!(
                "array 'labels': expected integer class indices (int64), got {}",
                crate::exec::convert::dtype_of(kind).map_or_else(|| format!("{kind:?}"), |d| dtype_name(d).to_string())
            )));
        }
        if labels.dim() != 1 || labels.size().first().is_none_or(|&n| usize::try_from(n).ok() != Some(self.len)) {
            return Err(data_error(format!(
                "array 'labels': expected shape [{}] (one class per sample), got {:?}",
                self.len,
                labels.size()
            )));
        }
        let torch = |e| Error::torch("checking the class labels", e);
        let labels = labels.f_to_kind(Kind::Int64).map_err(torch)?;
        let outside = labels.f_lt(0).and_then(|low| low.f_logical_or(&labels.f_ge(classes)?)).map_err(torch)?;
        let samples = outside.f_nonzero().map_err(torch)?;
        let count = samples.size().first().copied().unwrap_or(0);
        if count > 0 {
            let first = samples.f_int64_value(&[0, 0]).map_err(torch)?;
            let value = labels.f_int64_value(&[first]).map_err(torch)?;
            let more = if count > 1 { format!(" ({count} samples in all have labels outside 0..{classes})") } else { String::new() };
            return Err(data_error(format!(
                "array 'labels': sample {first} has label {value}, but the model has {classes} classes (its output's last axis), so labels must be in 0..{classes}{more}"
            )));
        }
        Ok(())
    }

    /// Checks regression/BCE targets: floating point, shaped like the model output `output` (without the batch axis).
    pub fn check_dense_labels(&self, output: &[i64]) -> Result<()> {
        let data_error = |message: String| Error::Data { path: self.path.clone(), message };
        let labels = self.labels.as_ref().ok_or_else(|| data_error("no 'labels' (or 'y') array: this loss needs targets".into()))?;
        if !crate::exec::convert::is_float_kind(labels.kind()) {
            return Err(data_error(format!("array 'labels': expected floating-point targets, got {:?}", labels.kind())));
        }
        let (size, rest) = (labels.size(), output.get(1..).unwrap_or_default());
        if size.get(1..) != Some(rest) {
            return Err(data_error(format!("array 'labels': expected shape [{}, {rest:?}] like the model output, got {size:?}", self.len)));
        }
        Ok(())
    }

    /// The samples at `indices` (host tensors).
    pub fn batch(&self, indices: &[i64]) -> Result<Batch> {
        gather(&self.inputs, self.images.as_deref(), self.labels.as_ref(), indices)
    }
}

fn gather(inputs: &[Tensor], images: Option<&images::ImageFolder>, labels: Option<&Tensor>, indices: &[i64]) -> Result<Batch> {
    let idx = Tensor::from_slice(indices);
    let pick = |t: &Tensor| t.f_index_select(0, &idx).map_err(|e| Error::torch("selecting a batch", e));
    let inputs = match images {
        Some(folder) => vec![folder.decode(indices)?],
        None => inputs.iter().map(pick).collect::<Result<_>>()?,
    };
    Ok(Batch { inputs, labels: labels.map(pick).transpose()? })
}

/// One batch: inputs in graph order, labels if any.
pub struct Batch {
    /// One tensor per graph input.
    pub inputs: Vec<Tensor>,
    /// The labels of these samples.
    pub labels: Option<Tensor>,
}

impl Batch {
    /// Moves the batch to `device`.
    pub fn to_device(&self, device: Device) -> Batch {
        Batch {
            inputs: self.inputs.iter().map(|t| t.to_device(device)).collect(),
            labels: self.labels.as_ref().map(|t| t.to_device(device)),
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.inputs.first().map_or(0, |t| t.size()[0] as usize)
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a sampler is in the data: epoch and batches consumed in that epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct DataPosition {
    /// The epoch (from 0).
    pub epoch: u64,
    /// Batches of that epoch already drawn.
    pub batch: u64,
}

pub use oto_onnx::rng::SplitMix64;

/// The sample order of `epoch`: a seeded permutation (or `0..n` without shuffling).
pub fn epoch_order(n: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<i64> {
    let mut order: Vec<i64> = (0..n as i64).collect();
    if shuffle {
        let mut rng = SplitMix64::new(seed ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03));
        for i in (1..n).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
    }
    order
}

/// How batches are drawn.
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    /// Samples per batch.
    pub batch_size: usize,
    /// Seeded shuffling per epoch.
    pub shuffle: bool,
    /// Drops the last incomplete batch of an epoch (training).
    pub drop_last: bool,
    /// Seed of the order.
    pub seed: u64,
}

impl Sampling {
    /// Batches per epoch of `n` samples.
    pub fn batches_per_epoch(&self, n: usize) -> u64 {
        let b = self.batch_size.max(1);
        let full = n / b;
        let partial = !self.drop_last && !n.is_multiple_of(b);
        (full + usize::from(partial || full == 0)) as u64
    }

    /// The sample indices of the batch at `pos`.
    pub fn indices(&self, n: usize, pos: DataPosition) -> Vec<i64> {
        let order = epoch_order(n, self.seed, pos.epoch, self.shuffle);
        let b = self.batch_size.max(1);
        let start = usize::try_from(pos.batch).unwrap_or(usize::MAX).saturating_mul(b).min(n);
        order[start..(start + b).min(n)].to_vec()
    }

    /// The position after `pos`.
    pub fn next(&self, n: usize, pos: DataPosition) -> DataPosition {
        if pos.batch + 1 >= self.batches_per_epoch(n) {
            DataPosition { epoch: pos.epoch + 1, batch: 0 }
        } else {
            DataPosition { epoch: pos.epoch, batch: pos.batch + 1 }
        }
    }
}

/// An endless stream of batches starting at a position, assembled by a background
/// thread a few batches ahead. Each item carries the position it was drawn at.
pub struct Prefetcher {
    receiver: Option<Receiver<Result<(DataPosition, Batch)>>>,
    worker: Option<JoinHandle<()>>,
}

impl Prefetcher {
    /// Starts drawing from `dataset` at `start` (`depth` batches ahead).
    pub fn start(dataset: &Dataset, sampling: Sampling, start: DataPosition, depth: usize) -> Prefetcher {
        let inputs: Vec<Tensor> = dataset.inputs.iter().map(Tensor::shallow_clone).collect();
        let labels = dataset.labels.as_ref().map(Tensor::shallow_clone);
        let images = dataset.images.clone();
        let n = dataset.len;
        let (tx, rx) = sync_channel(depth.max(1));
        let worker = std::thread::spawn(move || {
            let mut pos = start;
            let mut order_epoch = u64::MAX;
            let mut order = Vec::new();
            loop {
                if pos.epoch != order_epoch {
                    order = epoch_order(n, sampling.seed, pos.epoch, sampling.shuffle);
                    order_epoch = pos.epoch;
                }
                let b = sampling.batch_size.max(1);
                let s = usize::try_from(pos.batch).unwrap_or(usize::MAX).saturating_mul(b).min(n);
                let batch = gather(&inputs, images.as_deref(), labels.as_ref(), &order[s..(s + b).min(n)]);
                let failed = batch.is_err();
                if tx.send(batch.map(|b| (pos, b))).is_err() || failed {
                    return;
                }
                pos = sampling.next(n, pos);
            }
        });
        Prefetcher { receiver: Some(rx), worker: Some(worker) }
    }

    /// The next batch and the position it was drawn at.
    pub fn next_batch(&mut self) -> Result<(DataPosition, Batch)> {
        let rx = self.receiver.as_ref().ok_or_else(|| Error::Config("the prefetcher is stopped".into()))?;
        rx.recv().map_err(|_| Error::Config("the data prefetch thread stopped".into()))?
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Closing the channel makes the worker's next send fail, so it ends.
        self.receiver.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// Converts host labels for a loss: class indices as int64.
pub fn class_labels(labels: &Tensor) -> Result<Tensor> {
    labels.f_to_kind(Kind::Int64).map_err(|e| Error::torch("converting labels", e))
}

/// The element kind of a graph input (for building dummy inputs).
pub fn input_kind(input: &GraphInput) -> Kind {
    kind_of(input.dtype)
}

/// A batch of random inputs shaped like `exec`'s graph inputs, with random class labels
/// over its first output's last axis: the benchmarks' recipe (as `bench/torch_step.py`):
/// images N(0, 1), `input_ids` in [1, 1000), all-ones `attention_mask`, unknown dims 16.
/// Draws from libtorch's global generator (seed it with `tch::manual_seed`).
pub fn synthetic_batch(exec: &crate::exec::Executor, batch: i64) -> Result<Batch> {
    let inputs: Vec<Tensor> = exec
        .inputs()
        .map(|input| {
            let rest: Vec<i64> = input.dims.iter().flatten().skip(1).map(|d| d.unwrap_or(16)).collect();
            let shape: Vec<i64> = std::iter::once(batch).chain(rest).collect();
            match input.name.as_str() {
                "input_ids" => Tensor::randint_low(1, 1000, &shape, (Kind::Int64, Device::Cpu)),
                "attention_mask" => Tensor::ones(&shape, (Kind::Int64, Device::Cpu)),
                _ => Tensor::randn(&shape, (Kind::Float, Device::Cpu)),
            }
        })
        .collect();
    let probe = tch::no_grad(|| exec.forward(&inputs, crate::exec::Mode::Eval))?;
    let classes = probe.first().map_or(2, |o| crate::loss::class_count(&o.size()));
    let labels = Tensor::randint(classes, [batch], (Kind::Int64, Device::Cpu));
    Ok(Batch { inputs, labels: Some(labels) })
}
