//! How a job reports its progress: events to an [`Observer`] (the command line's progress
//! bar, a log, or a program running the job).

use super::history::{EvalPoint, StepPoint};

/// What the job tells whoever shows its progress.
pub enum Event<'a> {
    /// A phase begins (`analyzing`, `training`, `constructing`...).
    Phase(&'a str),
    /// Training starts or resumes: `done` of `total` steps are behind.
    Training {
        /// Steps in the job.
        total: u64,
        /// Steps already done (resumed).
        done: u64,
    },
    /// The run takes more steps than announced: `total` in all now.
    Extended {
        /// Steps in the job now.
        total: u64,
        /// Why.
        reason: &'static str,
    },
    /// A training step ended (`point` is set at logging steps).
    Step {
        /// Steps done.
        step: u64,
        /// The batch loss.
        loss: f64,
        /// Group sparsity and norms at logging steps.
        point: Option<&'a StepPoint>,
    },
    /// An evaluation on the held-out data.
    Eval(&'a EvalPoint),
    /// A line for the log.
    Note(String),
}

/// Receives the job's events (a progress bar, a log).
pub trait Observer {
    /// Handles one event.
    fn event(&mut self, event: Event<'_>);
}
