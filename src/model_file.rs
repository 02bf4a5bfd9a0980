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

/// A file whose fixed batch normalization had to keep (making it symbolic would not be
/// exact, [`Summary::batch_kept`] says why) runs only on batches of exactly that size:
/// an input error naming the batch and the reason when `batch` differs, or always when
/// `batch` is `None` (a command that needs batches of other sizes, such as training with
/// its evaluations).
pub fn check_fixed_batch(path: &Path, summary: &Summary, batch: Option<usize>) -> anyhow::Result<()> {
    let (Some(n), Some(why)) = (summary.fixed_batch, &summary.batch_kept) else {
        return Ok(());
    };
    if batch.is_some_and(|b| i64::try_from(b).is_ok_and(|b| b == n)) {
        return Ok(());
    }
    let fix = match batch {
        Some(_) => format!("run with --batch-size {n} on a number of samples that is a multiple of {n}"),
        None => "export the model with a dynamic batch axis".to_string(),
    };
    Err(input_error(anyhow::anyhow!("{}: the model fixes its batch at {n} and it cannot be made any batch ({why}); {fix}", path.display())))
}
