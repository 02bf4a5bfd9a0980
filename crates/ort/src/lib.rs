//! onnxruntime as the independent oracle: runs an ONNX model on [`oto_onnx::Tensor`]s
//! through the `ort` crate, which loads `libonnxruntime` at run time.
//!
//! The library is found through `ORT_DYLIB_PATH` if set, else the path the build script
//! recorded (the build's `ORT_DYLIB_PATH`, else the workspace's `.venv`; see `build.rs`).
//! The ort environment is created once per process, on the first [`Session`].
#![warn(missing_docs)]

use half::{bf16, f16};
use ort::value::{DynValue, TensorElementType, ValueType};
use oto_onnx::{DType, Tensor, TensorData};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Errors of the onnxruntime oracle. Each names the model and, where it applies, the value.
#[derive(Debug, thiserror::Error)]
pub enum OrtError {
    /// onnxruntime itself could not be loaded or initialized.
    #[error("cannot load onnxruntime: {0}")]
    Runtime(String),
    /// onnxruntime refused the model (parse, unsupported operator, ...).
    #[error("{model}: onnxruntime cannot create a session: {source}")]
    Session {
        /// The model file, or `<memory>`.
        model: String,
        /// onnxruntime's error.
        #[source]
        source: ort::Error,
    },
    /// An input or output tensor cannot be passed or returned.
    #[error("{model}: {value}: {message}")]
    Value {
        /// The model file, or `<memory>`.
        model: String,
        /// Which value, e.g. `input 'x'`.
        value: String,
        /// What is wrong.
        message: String,
    },
    /// The run itself failed.
    #[error("{model}: onnxruntime run failed: {source}")]
    Run {
        /// The model file, or `<memory>`.
        model: String,
        /// onnxruntime's error.
        #[source]
        source: ort::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = OrtError> = std::result::Result<T, E>;

/// The onnxruntime library path baked in by build.rs, if it found one.
const BUILD_DYLIB: Option<&str> = option_env!("OTO_ORT_BUILD_DYLIB");

/// The onnxruntime shared library this process uses: `ORT_DYLIB_PATH`, else the library
/// recorded at build time.
pub fn dylib_path() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(OrtError::Runtime(format!("ORT_DYLIB_PATH={} is not a file", path.display())));
        }
        return Ok(path);
    }
    match BUILD_DYLIB.map(PathBuf::from) {
        Some(path) if path.is_file() => Ok(path),
        Some(path) => Err(OrtError::Runtime(format!(
            "{} (found at build time) no longer exists: run `make setup` and rebuild, or set ORT_DYLIB_PATH",
            path.display()
        ))),
        None => Err(OrtError::Runtime(
            "no libonnxruntime.so was found at build time in .venv: run `make setup` (then rebuild) or set ORT_DYLIB_PATH".to_string(),
        )),
    }
}

/// The process-wide ort environment, created on first use.
fn environment() -> Result<&'static ort::environment::Environment> {
    static ENVIRONMENT: OnceLock<std::result::Result<ort::environment::Environment, String>> = OnceLock::new();
    ENVIRONMENT
        .get_or_init(|| {
            let path = dylib_path().map_err(|e| match e {
                OrtError::Runtime(message) => message,
                other => other.to_string(),
            })?;
            let builder = ort::init_from(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            builder.with_name("oto").with_telemetry(false).build().map_err(|e| format!("{}: {e}", path.display()))
        })
        .as_ref()
        .map_err(|message| OrtError::Runtime(message.clone()))
}

/// The version of the loaded onnxruntime (e.g. `1.32.0`), loading it if needed: read from
/// the library's versioned file name (`libonnxruntime.so.1.32.0`, symbolic links
/// resolved), else onnxruntime's build information line.
pub fn runtime_version() -> Result<String> {
    environment()?;
    let path = dylib_path()?;
    let real = path.canonicalize().unwrap_or(path);
    let name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match name.split_once(".so.").or_else(|| name.strip_suffix(".dylib").and_then(|n| n.split_once('.'))) {
        Some((_, version)) if version.split('.').all(|p| p.parse::<u32>().is_ok()) => Ok(version.to_string()),
        _ => Ok(ort::info().to_string()),
    }
}

/// Options of a [`Session`].
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Threads for one operator (`None`: onnxruntime's default, one per core).
    pub intra_threads: Option<usize>,
    /// No graph optimizations: every node runs as written (e.g. a QDQ model computes
    /// its `DequantizeLinear` -> float operator -> `QuantizeLinear` chain instead of
    /// onnxruntime's fused integer kernels, whose requantization rounds differently).
    pub no_optimizations: bool,
    /// Where onnxruntime writes the graph it runs, after its optimizations (to see which
    /// node groups it fused into integer kernels).
    pub optimized_model: Option<PathBuf>,
}

impl SessionOptions {
    /// Options with the given intra-op thread count.
    pub fn with_threads(threads: usize) -> Self {
        SessionOptions { intra_threads: Some(threads), ..Default::default() }
    }
}

/// The declared name, type and shape of a model input or output, as onnxruntime sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct IoInfo {
    /// The value name.
    pub name: String,
    /// The element type, `None` when it is not a tensor or not a type oto handles.
    pub dtype: Option<DType>,
    /// The dimensions: `Some(n)` when fixed, `None` when dynamic; empty when not a tensor.
    pub shape: Vec<Option<usize>>,
    /// onnxruntime's description, e.g. `Tensor<f32>(batch, 32)`.
    pub description: String,
}

impl IoInfo {
    fn from_outlet(outlet: &ort::value::Outlet) -> IoInfo {
        let value_type = outlet.dtype();
        let (dtype, shape) = match value_type {
            ValueType::Tensor { ty, shape, .. } => (dtype_of(*ty), shape.iter().map(|&d| usize::try_from(d).ok()).collect()),
            _ => (None, Vec::new()),
        };
        IoInfo { name: outlet.name().to_string(), dtype, shape, description: value_type.to_string() }
    }
}

/// An onnxruntime inference session on one model.
pub struct Session {
    /// `ort` runs take `&mut`; the lock lets [`Session::run`] take `&self`.
    session: Mutex<ort::session::Session>,
    model: String,
    inputs: Vec<IoInfo>,
    outputs: Vec<IoInfo>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("model", &self.model).field("inputs", &self.inputs).field("outputs", &self.outputs).finish()
    }
}

impl Session {
    /// Creates a session from a model file (external data is resolved next to it).
    pub fn from_file(path: impl AsRef<Path>, options: &SessionOptions) -> Result<Session> {
        let path = path.as_ref();
        let model = path.display().to_string();
        let session =
            builder(&model, options)?.commit_from_file(path).map_err(|source| OrtError::Session { model: model.clone(), source })?;
        Ok(Session::wrap(session, model))
    }

    /// Creates a session from serialized model bytes (a model without external data).
    pub fn from_bytes(bytes: &[u8], options: &SessionOptions) -> Result<Session> {
        let model = "<memory>".to_string();
        let session =
            builder(&model, options)?.commit_from_memory(bytes).map_err(|source| OrtError::Session { model: model.clone(), source })?;
        Ok(Session::wrap(session, model))
    }

    fn wrap(session: ort::session::Session, model: String) -> Session {
        let inputs = session.inputs().iter().map(IoInfo::from_outlet).collect();
        let outputs = session.outputs().iter().map(IoInfo::from_outlet).collect();
        Session { session: Mutex::new(session), model, inputs, outputs }
    }

    /// The model's graph inputs (without initializers), in declaration order.
    pub fn inputs(&self) -> &[IoInfo] {
        &self.inputs
    }

    /// The model's graph outputs, in declaration order.
    pub fn outputs(&self) -> &[IoInfo] {
        &self.outputs
    }

    /// The names of the graph inputs.
    pub fn input_names(&self) -> Vec<&str> {
        self.inputs.iter().map(|i| i.name.as_str()).collect()
    }

    /// The names of the graph outputs.
    pub fn output_names(&self) -> Vec<&str> {
        self.outputs.iter().map(|o| o.name.as_str()).collect()
    }

    /// Runs the model on named inputs (every graph input exactly once) and returns every
    /// graph output, in declaration order.
    pub fn run(&self, inputs: &[(&str, &Tensor)]) -> Result<Vec<(String, Tensor)>> {
        let value_error = |value: String, message: String| OrtError::Value { model: self.model.clone(), value, message };
        for declared in &self.inputs {
            let given: Vec<_> = inputs.iter().filter(|(name, _)| *name == declared.name).collect();
            let [(_, tensor)] = given.as_slice() else {
                return Err(value_error(
                    format!("input '{}'", declared.name),
                    format!("given {} times; every graph input must be given exactly once", given.len()),
                ));
            };
            if let Some(dtype) = declared.dtype.filter(|&d| d != tensor.dtype()) {
                return Err(value_error(
                    format!("input '{}'", declared.name),
                    format!("is {:?} but the model declares {dtype:?}", tensor.dtype()),
                ));
            }
        }
        let mut values = Vec::with_capacity(inputs.len());
        for (name, tensor) in inputs {
            if !self.inputs.iter().any(|i| i.name == *name) {
                return Err(value_error(format!("input '{name}'"), format!("is not a graph input (those are {:?})", self.input_names())));
            }
            let value = to_value(tensor).map_err(|e| value_error(format!("input '{name}'"), e))?;
            values.push((name.to_string(), value));
        }
        let mut session = self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let outputs = session.run(values).map_err(|source| OrtError::Run { model: self.model.clone(), source })?;
        self.outputs
            .iter()
            .map(|declared| {
                let context = || format!("output '{}'", declared.name);
                let value = outputs.get(&declared.name).ok_or_else(|| value_error(context(), "missing from the results".into()))?;
                let tensor = from_value(value).map_err(|e| value_error(context(), e))?;
                Ok((declared.name.clone(), tensor))
            })
            .collect()
    }
}

fn builder(model: &str, options: &SessionOptions) -> Result<ort::session::builder::SessionBuilder> {
    let session_error = |source: ort::Error| OrtError::Session { model: model.to_string(), source };
    let mut builder = ort::session::Session::builder(environment()?).map_err(session_error)?;
    // onnxruntime logs a failing run's error to stderr too: oto reports each error it
    // returns, with what was run (a retry that then succeeds would leave a false alarm).
    builder = builder.with_log_level(ort::logging::LogLevel::Fatal).map_err(|e| session_error(e.into()))?;
    if let Some(threads) = options.intra_threads {
        builder = builder.with_intra_threads(threads).map_err(|e| session_error(e.into()))?;
    }
    if options.no_optimizations {
        builder =
            builder.with_optimization_level(ort::session::builder::GraphOptimizationLevel::Disable).map_err(|e| session_error(e.into()))?;
    }
    if let Some(path) = &options.optimized_model {
        builder = builder.with_optimized_model_path(path).map_err(|e| session_error(e.into()))?;
    }
    Ok(builder)
}

/// Our element type for an onnxruntime one, if oto handles it.
fn dtype_of(ty: TensorElementType) -> Option<DType> {
    Some(match ty {
        TensorElementType::Float32 => DType::F32,
        TensorElementType::Float64 => DType::F64,
        TensorElementType::Float16 => DType::F16,
        TensorElementType::Bfloat16 => DType::Bf16,
        TensorElementType::Int64 => DType::I64,
        TensorElementType::Int32 => DType::I32,
        TensorElementType::Int8 => DType::I8,
        TensorElementType::Uint8 => DType::U8,
        TensorElementType::Bool => DType::Bool,
        _ => return None,
    })
}

/// Copies a tensor into an onnxruntime value.
fn to_value(tensor: &Tensor) -> std::result::Result<DynValue, String> {
    // Creating a value calls into onnxruntime: load it from our path first (otherwise ort
    // would try its own default, a bare `libonnxruntime.so`).
    environment().map_err(|e| e.to_string())?;
    fn make<T: ort::value::PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static>(
        shape: &[usize],
        data: &[T],
    ) -> std::result::Result<DynValue, String> {
        ort::value::Tensor::from_array((shape.to_vec(), data.to_vec())).map(|t| t.into_dyn()).map_err(|e| e.to_string())
    }
    let shape = &tensor.shape;
    match &tensor.data {
        TensorData::F32(v) => make(shape, v),
        TensorData::F64(v) => make(shape, v),
        TensorData::F16(v) => make(shape, v),
        TensorData::Bf16(v) => make(shape, v),
        TensorData::I64(v) => make(shape, v),
        TensorData::I32(v) => make(shape, v),
        TensorData::I8(v) => make(shape, v),
        TensorData::U8(v) => make(shape, v),
        TensorData::Bool(v) => make(shape, v),
    }
}

/// Copies an onnxruntime tensor value out.
fn from_value(value: &DynValue) -> std::result::Result<Tensor, String> {
    fn take<T: ort::value::PrimitiveTensorElementType + Clone + std::fmt::Debug>(
        value: &DynValue,
        wrap: fn(Vec<T>) -> TensorData,
    ) -> std::result::Result<Tensor, String> {
        let (shape, data) = value.try_extract_tensor::<T>().map_err(|e| e.to_string())?;
        let shape = shape
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| format!("has a negative dimension in {shape:?}")))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Tensor::new(shape, wrap(data.to_vec())).ok_or_else(|| "shape and element count disagree".to_string())
    }
    let ty = value.dtype().tensor_type().ok_or_else(|| format!("is a {}, not a tensor", value.dtype()))?;
    match dtype_of(ty) {
        Some(DType::F32) => take::<f32>(value, TensorData::F32),
        Some(DType::F64) => take::<f64>(value, TensorData::F64),
        Some(DType::F16) => take::<f16>(value, TensorData::F16),
        Some(DType::Bf16) => take::<bf16>(value, TensorData::Bf16),
        Some(DType::I64) => take::<i64>(value, TensorData::I64),
        Some(DType::I32) => take::<i32>(value, TensorData::I32),
        Some(DType::I8) => take::<i8>(value, TensorData::I8),
        Some(DType::U8) => take::<u8>(value, TensorData::U8),
        Some(DType::Bool) => take::<bool>(value, TensorData::Bool),
        None => Err(format!("has element type {ty}, which oto does not handle")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory model `y = x + x` for `dtype`, built from the oto-onnx proto types.
    fn add_model(dtype: DType) -> Vec<u8> {
        use oto_onnx::proto::{
            tensor_shape_proto::{dimension::Value as DimValue, Dimension},
            type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto,
        };
        use prost::Message;
        let value_info = |name: &str| ValueInfoProto {
            name: Some(name.to_string()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: Some(dtype.onnx_code()),
                    shape: Some(TensorShapeProto {
                        dim: vec![
                            Dimension { value: Some(DimValue::DimParam("batch".into())), ..Default::default() },
                            Dimension { value: Some(DimValue::DimValue(3)), ..Default::default() },
                        ],
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        };
        let model = ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
            graph: Some(GraphProto {
                name: Some("add".into()),
                node: vec![NodeProto {
                    op_type: Some("Add".into()),
                    input: vec!["x".into(), "x".into()],
                    output: vec!["y".into()],
                    ..Default::default()
                }],
                input: vec![value_info("x")],
                output: vec![value_info("y")],
                ..Default::default()
            }),
            ..Default::default()
        };
        model.encode_to_vec()
    }

    #[test]
    fn every_dtype_round_trips_through_add() {
        let cases = [
            TensorData::F32(vec![1.5, -2.0, 0.25, 8.0, 9.0, -1.0]),
            TensorData::F64(vec![1e-3, -2.0, 3.0, 4.0, 5.5, 6.0]),
            TensorData::F16([0.5f32, 1.0, -2.0, 3.0, 4.0, 5.0].iter().map(|&x| f16::from_f32(x)).collect()),
            TensorData::I64(vec![1, -2, 3, 1 << 40, 5, 6]),
            TensorData::I32(vec![1, -2, 3, 4, 5, 6]),
            TensorData::I8(vec![1, -2, 3, 4, 5, 60]),
            TensorData::U8(vec![1, 2, 3, 4, 5, 120]),
        ];
        for data in cases {
            let dtype = data.dtype();
            let session = Session::from_bytes(&add_model(dtype), &SessionOptions::with_threads(1)).unwrap();
            assert_eq!(session.input_names(), ["x"]);
            assert_eq!(session.outputs()[0].dtype, Some(dtype));
            assert_eq!(session.inputs()[0].shape, [None, Some(3)]);
            let x = Tensor::new(vec![2, 3], data).unwrap();
            let out = session.run(&[("x", &x)]).unwrap();
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].0, "y");
            assert_eq!(out[0].1.shape, vec![2, 3]);
            let doubled: Vec<f64> = x.to_f64_vec().iter().map(|v| v * 2.0).collect();
            assert_eq!(out[0].1.to_f64_vec(), doubled, "{dtype:?}");
            assert_eq!(out[0].1.dtype(), dtype);
        }
    }

    #[test]
    fn bool_values_convert_both_ways() {
        let data = TensorData::Bool(vec![true, false, true, true, false, false]);
        let x = Tensor::new(vec![2, 3], data.clone()).unwrap();
        let value = to_value(&x).unwrap();
        assert_eq!(from_value(&value).unwrap(), x);
    }

    #[test]
    fn input_errors_name_the_value() {
        let session = Session::from_bytes(&add_model(DType::F32), &SessionOptions::default()).unwrap();
        let wrong = Tensor::new(vec![1, 3], TensorData::F64(vec![0.0; 3])).unwrap();
        let msg = session.run(&[("x", &wrong)]).unwrap_err().to_string();
        assert!(msg.contains("input 'x'") && msg.contains("F64") && msg.contains("F32"), "{msg}");
        let msg = session.run(&[]).unwrap_err().to_string();
        assert!(msg.contains("input 'x'") && msg.contains("0 times"), "{msg}");
        let right = Tensor::new(vec![1, 3], TensorData::F32(vec![0.0; 3])).unwrap();
        let msg = session.run(&[("x", &right), ("z", &right)]).unwrap_err().to_string();
        assert!(msg.contains("input 'z'") && msg.contains("not a graph input"), "{msg}");
    }

    #[test]
    fn bad_model_is_a_session_error() {
        let msg = Session::from_bytes(b"not a model", &SessionOptions::default()).unwrap_err().to_string();
        assert!(msg.contains("<memory>") && msg.contains("cannot create a session"), "{msg}");
    }
}

/// Run times of two models on the same inputs (see [`paired_latency`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedLatency {
    /// Seconds per run of the first model: the median over rounds of each round's median.
    pub first_s: f64,
    /// Seconds per run of the second model, likewise.
    pub second_s: f64,
    /// Timed runs per model, over all rounds.
    pub runs: usize,
}

/// Runs per block of [`paired_latency`], and how many of them open the block untimed.
const BLOCK_RUNS: usize = 10;
const BLOCK_WARMUP: usize = 2;

/// Latency of two serialized models on the same inputs. In each of `rounds` rounds (at least
/// one), a fresh pair of sessions is timed in alternating blocks of runs until each has
/// `max_runs` timed runs or `budget` has passed (at least one block each); the result is the
/// median over rounds of each model's median.
///
/// Blocks, not single alternating runs: onnxruntime's thread pools spin for a while after a
/// run, so a run started right after the other session's is slowed by that session's
/// spinning threads (seen on 2 cores: the first session of an interleaved pair measured
/// 3.8x slower than alone). The first runs of each block are not timed. Fresh sessions per
/// round because a session's speed on a small model depends on where its thread pool landed
/// (seen: the same model 0.22 or 0.30 ms from one session to the next on 2 cores), which one
/// long measurement cannot average out.
pub fn paired_latency(
    first: &[u8],
    second: &[u8],
    options: &SessionOptions,
    inputs: &[(&str, &Tensor)],
    rounds: usize,
    budget: std::time::Duration,
    max_runs: usize,
) -> Result<PairedLatency> {
    let (mut first_medians, mut second_medians, mut runs) = (Vec::new(), Vec::new(), 0);
    for _ in 0..rounds.max(1) {
        let sessions = [Session::from_bytes(first, options)?, Session::from_bytes(second, options)?];
        let started = std::time::Instant::now();
        let mut times = [Vec::new(), Vec::new()];
        loop {
            for (session, times) in sessions.iter().zip(times.iter_mut()) {
                for k in 0..BLOCK_RUNS {
                    let t = std::time::Instant::now();
                    session.run(inputs)?;
                    if k >= BLOCK_WARMUP {
                        times.push(t.elapsed().as_secs_f64());
                    }
                }
            }
            if times[0].len() >= max_runs || started.elapsed() >= budget {
                break;
            }
        }
        runs += times[0].len();
        first_medians.push(median(&mut times[0]));
        second_medians.push(median(&mut times[1]));
    }
    Ok(PairedLatency { first_s: median(&mut first_medians), second_s: median(&mut second_medians), runs })
}

/// The median of a non-empty list (the upper one of an even count).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
