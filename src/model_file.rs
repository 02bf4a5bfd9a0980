//! Reading the user's model file, the one way every command and the job do it.

use crate::error::input_error;
use oto_onnx::normalize::Summary;
use oto_onnx::Model;
use std::path::Path;

/// Reads a model the way every command does: loaded, then normalized
/// ([`oto_onnx::normalize`]); what normalization rewrote is logged at `-v`. Errors are
/// input errors (exit code 2).
pub fn load_model(path: &Path) -> anyhow::Result<(Model, Summary)> {
    let (model, summary) = oto_onnx::normalize::load(path).map_err(input_error)?;
    tracing::info!("{}: normalized: {summary}", path.display());
    Ok((model, summary))
}
