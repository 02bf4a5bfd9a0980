//! Loading and saving models, with external data.
//!
//! The model file is memory-mapped and decoded in place: prost decodes `raw_data`
//! as `Bytes` slices of the mapping, so the weights are not copied at load time.
//! External data (weights in side files) is not read at load: only its location,
//! offset and length are checked against the file's size. A tensor's bytes are
//! mapped on demand by [`Model::tensor_bytes`].

use crate::atomic::AtomicFile;
use crate::error::{OnnxError, Result};
use crate::proto::{tensor_proto::DataLocation, ModelProto, StringStringEntryProto, TensorProto};
use crate::tensor::{checked_numel, onnx_type_name, shape_of, DType, Tensor};
use bytes::Bytes;
use prost::Message;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Oldest IR version accepted (ONNX 1.1).
pub const MIN_IR_VERSION: i64 = 3;
/// Newest IR version accepted: the one of the vendored `onnx.proto`.
pub const MAX_IR_VERSION: i64 = 14;
/// Oldest default-domain opset accepted; older ones changed too many operators.
pub const MIN_OPSET: i64 = 7;
/// Newest default-domain opset accepted (that of the onnx release the proto comes from).
pub const MAX_OPSET: i64 = 28;

/// A loaded ONNX model: the decoded protobuf plus what is needed to read its weights.
pub struct Model {
    /// The decoded message. Edit it freely; [`Model::save`] writes what it holds.
    pub proto: ModelProto,
    path: PathBuf,
    base_dir: Option<PathBuf>,
    mapped: Mutex<HashMap<PathBuf, Bytes>>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Where and how [`Model::save`] writes weights.
#[derive(Debug, Clone, Default)]
pub struct SaveOptions {
    /// `Some`: tensors of at least `threshold` bytes go to one side file next to the model.
    pub external_data: Option<ExternalDataOptions>,
}

/// External data layout for [`SaveOptions`].
#[derive(Debug, Clone)]
pub struct ExternalDataOptions {
    /// File name of the side file, relative to the model's folder (e.g. `model.onnx.data`).
    pub file_name: String,
    /// Tensors with at least this many bytes go to the side file.
    pub threshold: usize,
}

/// Reads an entire file's bytes through a memory map (empty files need no map).
fn map_file(path: &Path) -> Result<Bytes> {
    let file = std::fs::File::open(path).map_err(|e| OnnxError::io(path, "cannot open", e))?;
    let len = file.metadata().map_err(|e| OnnxError::io(path, "cannot stat", e))?.len();
    if len == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: the mapping is read-only. If another process truncates the file while it
    // is mapped, reads may fault; oto never writes to a file it has mapped (saves go
    // to a temporary file that is renamed over the target, leaving this inode intact).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| OnnxError::io(path, "cannot map", e))?;
    Ok(Bytes::from_owner(map))
}

/// The value of one key of a tensor's `external_data` list.
fn external_field<'a>(t: &'a TensorProto, key: &str) -> Option<&'a str> {
    t.external_data.iter().find(|e| e.key.as_deref() == Some(key)).and_then(|e| e.value.as_deref())
}

/// Whether a tensor's data lives in an external file.
pub fn is_external(t: &TensorProto) -> bool {
    t.data_location == Some(DataLocation::External as i32)
}

/// The location, offset and length of an external tensor, as written in the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRef {
    /// Path relative to the model's folder.
    pub location: String,
    /// Byte offset in the file.
    pub offset: u64,
    /// Byte length, if given (otherwise to the end of the file).
    pub length: Option<u64>,
}

fn parse_external(t: &TensorProto) -> std::result::Result<ExternalRef, String> {
    let location = external_field(t, "location").ok_or("external data without a 'location'")?.to_string();
    let num = |key: &str| -> std::result::Result<Option<u64>, String> {
        external_field(t, key)
            .map(|v| v.trim().parse::<u64>().map_err(|_| format!("external data '{key}' is not a number: {v:?}")))
            .transpose()
    };
    Ok(ExternalRef { location, offset: num("offset")?.unwrap_or(0), length: num("length")? })
}

/// Resolves an external-data location inside `base`, refusing anything that escapes it
/// (absolute paths, `..`, symbolic links pointing outside): a model file must not be a
/// way to read arbitrary files.
fn resolve_inside(base: &Path, location: &str) -> std::result::Result<PathBuf, String> {
    let rel = Path::new(location);
    if location.is_empty() || rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!(
            "external data location {location:?} must be a relative path inside the model's folder (no '..', no absolute path)"
        ));
    }
    let joined = base.join(rel);
    let canon_base = base.canonicalize().map_err(|e| format!("cannot resolve the model's folder {}: {e}", base.display()))?;
    let canon = joined.canonicalize().map_err(|e| format!("external data file {} cannot be opened: {e}", joined.display()))?;
    if !canon.starts_with(&canon_base) {
        return Err(format!("external data location {location:?} resolves outside the model's folder (to {})", canon.display()));
    }
    // A FIFO or device would block or never end when read.
    if !canon.is_file() {
        return Err(format!("external data location {location:?} is not a regular file"));
    }
    Ok(canon)
}

impl Model {
    /// Loads a model file. Weights stored externally are not read, only checked for
    /// existence and size; the graph is not validated here (see [`crate::Graph::new`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref();
        let bytes = map_file(path)?;
        let base_dir = path.parent().map(|p| if p.as_os_str().is_empty() { PathBuf::from(".") } else { p.to_path_buf() });
        Self::decode(bytes, path.to_path_buf(), base_dir)
    }

    /// Decodes a model from bytes held in memory. External data is refused, since
    /// there is no folder to read it from. `name` is used in error messages.
    pub fn from_bytes(bytes: impl Into<Bytes>, name: &str) -> Result<Model> {
        Self::decode(bytes.into(), PathBuf::from(name), None)
    }

    /// Wraps a message built in memory (tests, construction); external data, if any,
    /// is resolved against `base_dir`.
    pub fn from_proto(proto: ModelProto, name: &str, base_dir: Option<PathBuf>) -> Result<Model> {
        let model = Model { proto, path: PathBuf::from(name), base_dir, mapped: Mutex::new(HashMap::new()) };
        model.check()?;
        Ok(model)
    }

    fn decode(bytes: Bytes, path: PathBuf, base_dir: Option<PathBuf>) -> Result<Model> {
        let proto = ModelProto::decode(bytes).map_err(|error| OnnxError::Decode { path: path.clone(), error })?;
        let model = Model { proto, path, base_dir, mapped: Mutex::new(HashMap::new()) };
        model.check()?;
        Ok(model)
    }

    /// The file this model came from (or the name given to [`Model::from_bytes`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder external data is resolved against.
    pub fn base_dir(&self) -> Option<&Path> {
        self.base_dir.as_deref()
    }

    /// Builds an [`OnnxError::Invalid`] for this model's file.
    pub fn error(&self, context: impl Into<String>, message: impl Into<String>) -> OnnxError {
        OnnxError::invalid(&self.path, context, message)
    }

    /// The default-domain (`ai.onnx`) opset version.
    pub fn opset(&self) -> i64 {
        self.opset_of("").unwrap_or(1)
    }

    /// The opset version imported for `domain` (`""` and `"ai.onnx"` are the default domain).
    pub fn opset_of(&self, domain: &str) -> Option<i64> {
        let norm = |d: &str| {
            if d == "ai.onnx" {
                String::new()
            } else {
                d.to_string()
            }
        };
        let want = norm(domain);
        self.proto.opset_import.iter().find(|o| norm(o.domain.as_deref().unwrap_or("")) == want).and_then(|o| o.version)
    }

    /// Version, graph presence and every initializer's size: cheap checks that need no weights.
    fn check(&self) -> Result<()> {
        let ir = self.proto.ir_version.unwrap_or(0);
        if !(MIN_IR_VERSION..=MAX_IR_VERSION).contains(&ir) {
            return Err(self
                .error("model", format!("IR version {ir} is not supported (oto reads IR versions {MIN_IR_VERSION} to {MAX_IR_VERSION})")));
        }
        let Some(opset) = self.opset_of("") else {
            return Err(self.error("model", "imports no opset of the default ONNX domain"));
        };
        if !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
            return Err(self.error(
                "model",
                format!(
                    "opset {opset} is not supported (oto handles opsets {MIN_OPSET} to {MAX_OPSET}; convert with onnx.version_converter)"
                ),
            ));
        }
        let Some(graph) = &self.proto.graph else {
            return Err(self.error("model", "has no graph"));
        };
        for t in &graph.initializer {
            self.check_tensor_size(t)?;
        }
        Ok(())
    }

    fn tensor_context(t: &TensorProto) -> String {
        format!("initializer '{}'", t.name.as_deref().unwrap_or(""))
    }

    /// Checks that a tensor's stored data can hold its shape, without reading external
    /// data: only its location (which must stay inside the model's folder) and the
    /// side file's size are checked.
    fn check_tensor_size(&self, t: &TensorProto) -> Result<()> {
        let ctx = || Self::tensor_context(t);
        let code = t.data_type.unwrap_or(0);
        let external = if is_external(t) { Some(self.external_span(t)?) } else { None };
        let Some(dtype) = DType::from_onnx(code) else {
            // Types we do not decode (strings, float8...) are kept as they are; reading
            // them is refused later, with the type named.
            return Ok(());
        };
        let shape = shape_of(t).map_err(|e| self.error(ctx(), e.0))?;
        let count = checked_numel(&shape).map_err(|e| self.error(ctx(), e.0))?;
        let need = (count as u128) * (dtype.size() as u128);
        let have = match (&external, &t.raw_data, dtype) {
            (Some((_, length)), _, _) => u128::from(*length),
            (None, Some(raw), _) => raw.len() as u128,
            (None, None, DType::F32) => t.float_data.len() as u128 * 4,
            (None, None, DType::F64) => t.double_data.len() as u128 * 8,
            (None, None, DType::I64) => t.int64_data.len() as u128 * 8,
            (None, None, _) => t.int32_data.len() as u128 * dtype.size() as u128,
        };
        if have != need {
            let source = match external {
                Some((file, _)) => format!("external data in {}", file.display()),
                None => "data".to_string(),
            };
            return Err(
                self.error(ctx(), format!("holds {have} bytes of {source} but shape {shape:?} of {} needs {need}", onnx_type_name(code)))
            );
        }
        Ok(())
    }

    /// Resolves an external tensor's file (inside the model's folder) and checks that its
    /// byte range lies within the file; returns the file and the range's length.
    fn external_span(&self, t: &TensorProto) -> Result<(PathBuf, u64)> {
        let ctx = || Self::tensor_context(t);
        let ext = parse_external(t).map_err(|m| self.error(ctx(), m))?;
        let Some(base) = &self.base_dir else {
            return Err(self.error(ctx(), "stores its data externally, but the model was not loaded from a file"));
        };
        let file = resolve_inside(base, &ext.location).map_err(|m| self.error(ctx(), m))?;
        let file_len = std::fs::metadata(&file)
            .map_err(|e| self.error(ctx(), format!("cannot stat external data file {}: {e}", file.display())))?
            .len();
        let length = ext.length.unwrap_or(file_len.saturating_sub(ext.offset));
        if ext.offset.checked_add(length).is_none_or(|end| end > file_len) {
            return Err(self.error(
                ctx(),
                format!("external data [{}, +{length}) lies beyond the end of {} ({file_len} bytes)", ext.offset, file.display()),
            ));
        }
        Ok((file, length))
    }

    /// The raw little-endian bytes of a tensor stored as `raw_data` or externally
    /// (mapped on first use, never copied). `None` for tensors using typed fields.
    pub fn tensor_bytes(&self, t: &TensorProto) -> Result<Option<Bytes>> {
        if !is_external(t) {
            return Ok(t.raw_data.clone());
        }
        let ctx = || Self::tensor_context(t);
        let ext = parse_external(t).map_err(|m| self.error(ctx(), m))?;
        let Some(base) = &self.base_dir else {
            return Err(self.error(ctx(), "stores its data externally, but the model was not loaded from a file"));
        };
        let file = resolve_inside(base, &ext.location).map_err(|m| self.error(ctx(), m))?;
        let whole = {
            let mut mapped = self.mapped.lock().unwrap_or_else(|p| p.into_inner());
            match mapped.get(&file) {
                Some(b) => b.clone(),
                None => {
                    let b = map_file(&file).map_err(|e| self.error(ctx(), format!("cannot read its external data: {e}")))?;
                    mapped.insert(file.clone(), b.clone());
                    b
                }
            }
        };
        let start = usize::try_from(ext.offset).unwrap_or(usize::MAX);
        let len = match ext.length {
            Some(l) => usize::try_from(l).unwrap_or(usize::MAX),
            None => whole.len().saturating_sub(start),
        };
        match start.checked_add(len) {
            Some(end) if end <= whole.len() => Ok(Some(whole.slice(start..end))),
            _ => Err(self.error(ctx(), format!("external data [{start}, +{len}) lies beyond the end of {}", file.display()))),
        }
    }

    /// Decodes a tensor (initializer or attribute), reading external data if needed.
    pub fn tensor(&self, t: &TensorProto) -> Result<Tensor> {
        let bytes = if is_external(t) { self.tensor_bytes(t)? } else { None };
        Tensor::from_proto(t, bytes.as_deref()).map_err(|e| self.error(Self::tensor_context(t), e.0))
    }

    /// The model encoded as one protobuf message with every weight inline (external
    /// data read in), e.g. to hand to onnxruntime from memory. Refuses models over
    /// protobuf's 2 GB limit. A flattened `If` is written back as the `If` it was
    /// ([`crate::branches::nest`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut proto = self.proto.clone();
        crate::branches::nest(&mut proto);
        if let Some(graph) = proto.graph.as_mut() {
            for t in graph.initializer.iter_mut().filter(|t| is_external(t)) {
                t.raw_data = self.tensor_bytes(t)?;
                t.external_data.clear();
                t.data_location = None;
            }
        }
        let len = proto.encoded_len();
        if len > i32::MAX as usize {
            return Err(self.error("model", format!("is {len} bytes with its weights inline, over protobuf's 2 GB limit")));
        }
        Ok(proto.encode_to_vec())
    }

    /// Writes the model to `path` atomically (temporary file, then rename), never
    /// leaving a half-written file. Weights are inlined unless `options` asks for
    /// external data, in which case large tensors go to one side file. A flattened `If`
    /// is written back as the `If` it was ([`crate::branches::nest`]).
    pub fn save(&self, path: impl AsRef<Path>, options: &SaveOptions) -> Result<()> {
        let path = path.as_ref();
        let mut proto = self.proto.clone();
        crate::branches::nest(&mut proto);
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut side: Option<(PathBuf, AtomicFile)> = None;
        let mut offset = 0u64;
        if let Some(opts) = &options.external_data {
            let plain = Path::new(&opts.file_name);
            if opts.file_name.is_empty()
                || plain.components().count() != 1
                || !matches!(plain.components().next(), Some(Component::Normal(_)))
            {
                return Err(OnnxError::invalid(
                    path,
                    "external data",
                    format!("side file name {:?} must be a plain file name (it is written next to the model)", opts.file_name),
                ));
            }
        }
        if let Some(graph) = proto.graph.as_mut() {
            for t in graph.initializer.iter_mut() {
                let bytes = match self.tensor_bytes(t)? {
                    Some(b) => b,
                    None => continue, // typed fields: kept inline as they are
                };
                let goes_out = options.external_data.as_ref().filter(|o| bytes.len() >= o.threshold);
                if let Some(opts) = goes_out {
                    if side.is_none() {
                        let target = folder.join(&opts.file_name);
                        side = Some((target.clone(), AtomicFile::create(&target)?));
                    }
                    let Some((target, file)) = side.as_mut() else { unreachable!("side file created above") };
                    // Align each tensor to 64 bytes so it can be mapped and used in place.
                    let pad = (64 - offset % 64) % 64;
                    file.write_all(&vec![0u8; pad as usize], target)?;
                    offset += pad;
                    file.write_all(&bytes, target)?;
                    let entry = |k: &str, v: String| StringStringEntryProto { key: Some(k.to_string()), value: Some(v) };
                    t.external_data = vec![
                        entry("location", opts.file_name.clone()),
                        entry("offset", offset.to_string()),
                        entry("length", bytes.len().to_string()),
                    ];
                    t.data_location = Some(DataLocation::External as i32);
                    t.raw_data = None;
                    offset += bytes.len() as u64;
                } else {
                    t.raw_data = Some(bytes);
                    t.external_data.clear();
                    t.data_location = None;
                }
            }
        }
        let encoded_len = proto.encoded_len();
        if encoded_len > i32::MAX as usize {
            return Err(OnnxError::invalid(
                path,
                "model",
                format!("is {encoded_len} bytes, over protobuf's 2 GB limit: save with external data"),
            ));
        }
        let mut file = AtomicFile::create(path)?;
        file.write_all(&proto.encode_to_vec(), path)?;
        if let Some((_, side_file)) = side {
            side_file.commit()?;
        }
        file.commit()
    }
}

/// Shared handle, so several views can read one model's weights.
pub type SharedModel = Arc<Model>;
