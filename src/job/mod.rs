//! The prune job that `oto prune` runs, as a library: from a trained ONNX model and data
//! to a compact model, verified and reported. One module per stage, each taking what the
//! previous stages produced:
//!
//! 1. [`setup`]: the settings resolved ([`config`]), the model read and analyzed, the data
//!    read and checked against the model ([`Setup::new`], or [`Setup::resume`]);
//! 2. [`train`]: HESSO (optionally CRIC) with evaluations and checkpoints;
//! 3. [`construct`]: the compact model cut out of the trained one;
//! 4. [`verify`]: compact vs sparse in onnxruntime, quality before and after, latency;
//! 5. [`quantize`] (with `quantize`): the compact model quantized, bits per layer by HAWQ-V2;
//! 6. [`report`]: every output written into the output folder.
//!
//! [`run`] runs stages 2 to 6 on a [`Setup`]; [`Observer`] receives the progress.
//!
//! ```no_run
//! use oto::job::{config::JobSpec, Event, Observer, Setup};
//! use std::sync::atomic::AtomicBool;
//!
//! struct Log;
//! impl Observer for Log {
//!     fn event(&mut self, event: Event<'_>) {
//!         if let Event::Phase(name) = event {
//!             eprintln!("{name}...");
//!         }
//!     }
//! }
//!
//! let spec = JobSpec {
//!     model: Some("model.onnx".into()),
//!     data: Some("train.npz".into()),
//!     target_sparsity: Some(0.5),
//!     steps: Some(200),
//!     out: Some("pruned".into()),
//!     ..JobSpec::default()
//! };
//! let report = oto::job::run(Setup::new(&spec)?, &AtomicBool::new(false), &mut Log)?;
//! println!("{} -> {} parameters", report.params.before, report.params.after);
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Errors that are the user's (a bad file or setting) carry [`crate::error::InputError`].

pub mod config;
pub mod construct;
pub mod files;
pub mod history;
pub mod observe;
pub mod quantize;
pub mod report;
pub mod setup;
pub mod train;
pub mod verify;

pub use files::CHECKPOINT_DIR;
pub use observe::{Event, Observer};
pub use report::Report;
pub use setup::Setup;
pub use train::Interrupted;

use anyhow::Result;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Runs the job to the end (or until `interrupt` is set: then the error is
/// [`Interrupted`], after the checkpoint was written), writing every output into
/// `job.out`, and returns the report.
pub fn run(setup: Setup, interrupt: &AtomicBool, observer: &mut dyn Observer) -> Result<Report> {
    match run_rank(setup, interrupt, observer)? {
        Some(report) => Ok(report),
        None => anyhow::bail!("this process is not rank 0 of its data-parallel job: it wrote no outputs (use run_rank)"),
    }
}

/// [`run`] as one process of a data-parallel job ([`Setup::parallel`]): every rank
/// trains; only rank 0 builds, verifies and writes the outputs (`None` on the others).
pub fn run_rank(setup: Setup, interrupt: &AtomicBool, observer: &mut dyn Observer) -> Result<Option<Report>> {
    let started = Instant::now();
    let trained = train::train(setup, interrupt, observer)?;
    if !trained.writer {
        return Ok(None);
    }
    let built = construct::construct(&trained, observer)?;
    let verified = verify::verify(&trained, &built, observer)?;
    // A quantization that fails (say, a budget below every allocation) leaves the compact
    // model and the report written, then is the job's error.
    let quantized = match trained.job.quantize {
        Some(budget) if verified.verification.passed => Some(quantize::in_job(&trained, &built, budget, observer)),
        _ => None,
    };
    let (quantized, failed) = match quantized {
        Some(Ok(q)) => (Some(q), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let report = report::write(&trained, &built, verified, quantized, started, observer)?;
    match failed {
        Some(e) => {
            Err(e.context(format!("quantizing the compact model (it and the report were written to {})", trained.job.out.display())))
        }
        None => Ok(Some(report)),
    }
}
