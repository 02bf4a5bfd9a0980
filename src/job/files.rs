//! The names of what a job writes into its output folder (`--out`).

/// The checkpoint folder inside the output folder.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// The resolved job in the checkpoint folder (what `--resume` continues).
pub const JOB_FILE: &str = "job.json";
/// The training state (parameters, optimizer state, data position) in the checkpoint folder.
pub const STATE_FILE: &str = "state.safetensors";
/// The measurements so far ([`super::history::Progress`]) in the checkpoint folder.
pub const PROGRESS_FILE: &str = "progress.json";
/// The compact model.
pub const COMPACT_FILE: &str = "model.onnx";
/// The compact model quantized (QDQ; with `quantize`).
pub const QUANTIZED_FILE: &str = "model.qdq.onnx";
/// The sparse model (full size, pruned elements at zero; with `save_sparse`).
pub const SPARSE_FILE: &str = "model.sparse.onnx";
/// The analysis with the pruned and removed elements.
pub const GROUPS_FILE: &str = "groups.json";
/// The report as JSON ([`super::report::Report`]).
pub const REPORT_JSON: &str = "report.json";
/// The report as markdown.
pub const REPORT_MD: &str = "report.md";
/// The training curve.
pub const CURVE_PNG: &str = "curve.png";
