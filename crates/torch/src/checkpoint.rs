//! Training checkpoints: one `.safetensors` file holding named tensors (weights,
//! buffers, optimizer state, anything a caller adds) and a JSON state in the header
//! metadata, written atomically (temporary file, then rename), so an interruption
//! never leaves a broken checkpoint.

use crate::error::{Error, Result};
use crate::exec::convert::{from_tch, to_tch};
use oto_onnx::atomic::write_atomic;
use oto_onnx::DType;
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Tensor};

/// The metadata key holding the JSON state.
const STATE_KEY: &str = "oto_state";

/// Named tensors plus a JSON state.
pub struct Checkpoint {
    /// Tensors by name (any device; stored on the host).
    pub tensors: Vec<(String, Tensor)>,
    /// Step counters, data position, seeds, settings...
    pub state: serde_json::Value,
}

fn st_dtype(d: DType) -> safetensors::Dtype {
    use safetensors::Dtype;
    match d {
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::Bf16 => Dtype::BF16,
        DType::F64 => Dtype::F64,
        DType::I64 => Dtype::I64,
        DType::I32 => Dtype::I32,
        DType::I8 => Dtype::I8,
        DType::U8 => Dtype::U8,
        DType::Bool => Dtype::BOOL,
    }
}

/// Encodes named tensors (and optional metadata) as safetensors bytes.
pub fn safetensors_bytes(tensors: &[(String, Tensor)], metadata: Option<HashMap<String, String>>) -> std::result::Result<Vec<u8>, String> {
    let mut hosts = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let host = from_tch(t).map_err(|m| format!("tensor '{name}': {m}"))?;
        hosts.push((name.clone(), host.dtype(), host.shape.clone(), host.data.to_le_bytes()));
    }
    let views = hosts
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            safetensors::tensor::TensorView::new(st_dtype(*dtype), shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| format!("tensor '{name}': {e}"))
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    safetensors::serialize(views, metadata).map_err(|e| e.to_string())
}

impl Checkpoint {
    /// Writes the checkpoint to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let fail = |message: String| Error::Checkpoint { path: path.to_path_buf(), message };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        }
        let meta = HashMap::from([(STATE_KEY.to_string(), self.state.to_string())]);
        let bytes = safetensors_bytes(&self.tensors, Some(meta)).map_err(fail)?;
        Ok(write_atomic(path, &bytes)?)
    }

    /// Reads a checkpoint written by [`Checkpoint::write`]; tensors are put on `device`.
    pub fn read(path: &Path, device: Device) -> Result<Checkpoint> {
        let fail = |message: String| Error::Checkpoint { path: path.to_path_buf(), message };
        let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| fail(format!("not a checkpoint: {e}")))?;
        let state_text = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get(STATE_KEY))
            .ok_or_else(|| fail("has no oto state (not written by oto)".into()))?;
        let state = serde_json::from_str(state_text).map_err(|e| fail(format!("invalid state: {e}")))?;
        let arrays = crate::data::read_safetensors_bytes(&bytes).map_err(fail)?;
        let tensors = arrays
            .into_iter()
            .map(|(name, t)| to_tch(&t, device).map(|t| (name.clone(), t)).map_err(|m| fail(format!("tensor '{name}': {m}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Checkpoint { tensors, state })
    }
}
