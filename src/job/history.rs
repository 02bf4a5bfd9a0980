//! What a job records while it trains: the training curve and the measurements kept
//! beside the training state in the checkpoint (so that `--resume` continues them).

use oto_torch::train::EvalReport;
use serde::{Deserialize, Serialize};

/// A logged training step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepPoint {
    /// Steps done.
    pub step: u64,
    /// Batch loss.
    pub loss: f64,
    /// Learning rate.
    pub lr: f64,
    /// Zero elements over prunable elements.
    pub group_sparsity: f64,
    /// L2 norm of the elements kept.
    pub norm_important: f64,
    /// L2 norm of the elements chosen for pruning.
    pub norm_redundant: f64,
    /// The schedule's phase (`warmup`, `pruning`, `cycle`, `hybrid`, `pruned`).
    #[serde(default)]
    pub phase: String,
}

/// An evaluation on the held-out data during training.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    /// Steps done.
    pub step: u64,
    /// Mean loss.
    pub loss: f64,
    /// Accuracy, for classification with labels.
    pub accuracy: Option<f64>,
}

/// The training curve.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    /// Logged steps.
    pub steps: Vec<StepPoint>,
    /// Evaluations.
    pub evals: Vec<EvalPoint>,
}

/// What the job has measured so far, kept beside the training state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Progress {
    /// The original model's evaluation (before any training step).
    pub before: Option<EvalReport>,
    /// The training curve so far.
    pub history: History,
    /// Training seconds of the earlier (interrupted) runs of the job.
    pub seconds_before_resume: f64,
}
