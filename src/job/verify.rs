//! The verification stage, with onnxruntime as the independent judge: does the compact
//! model compute what the zeroed (sparse) full model computes, how good are both on the
//! held-out data, and how fast does each run.

use super::construct::Constructed;
use super::observe::{Event, Observer};
use super::train::Trained;
use anyhow::{Context, Result};
use oto_onnx::Tensor;
use oto_torch::data::Dataset;
use oto_torch::exec::Executor;
use oto_torch::train::{evaluate, EvalReport};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// The outcome of comparing two models on the same inputs.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Samples compared.
    pub samples: usize,
    /// Max |full - compact| over all outputs.
    pub max_abs_diff: f64,
    /// Max |output| of the full model.
    pub max_abs_output: f64,
    /// The allowed difference: `1e-4 * max(1, max |output|)` (float32 reassociation).
    pub tolerance: f64,
    /// `max_abs_diff <= tolerance`.
    pub passed: bool,
}

/// Loss and metric of the models on the held-out data.
#[derive(Debug, Clone, Serialize)]
pub struct Quality {
    /// The data evaluated on.
    pub data: PathBuf,
    /// `accuracy`, or `loss` when there is no accuracy.
    pub metric: &'static str,
    /// The original model.
    pub before: EvalReport,
    /// The trained sparse model (full size, pruned elements at zero).
    pub sparse: EvalReport,
    /// The compact model.
    pub compact: EvalReport,
}

/// onnxruntime latency of one batch.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median milliseconds, original model.
    pub before_ms: f64,
    /// Median milliseconds, compact model.
    pub after_ms: f64,
    /// Batch size.
    pub batch: usize,
    /// onnxruntime intra-op threads.
    pub threads: usize,
    /// Timed runs per model.
    pub runs: usize,
}

/// What the verification stage found.
pub struct Verified {
    /// The sparse-vs-compact comparison in onnxruntime.
    pub verification: Verification,
    /// Loss and metric before and after.
    pub quality: Quality,
    /// onnxruntime latency, when it could be measured.
    pub latency: Option<Latency>,
    /// Seconds of the comparison.
    pub verify_seconds: f64,
    /// Seconds of the evaluations.
    pub evaluate_seconds: f64,
    /// Seconds of the latency measurement.
    pub latency_seconds: f64,
}

/// Compares the compact with the sparse model in onnxruntime on held-out samples,
/// evaluates both on the held-out data, and measures the latency of the original and the
/// compact model (a failed latency measurement is a note, not an error).
pub fn verify(trained: &Trained, built: &Constructed, observer: &mut dyn Observer) -> Result<Verified> {
    let (job, exec, teacher, eval_data) = (&trained.job, &trained.exec, trained.teacher.as_ref(), &trained.eval_data);
    observer.event(Event::Phase("verifying the compact model in onnxruntime"));
    let t = Instant::now();
    let names: Vec<String> = exec.inputs().map(|i| i.name.clone()).collect();
    let samples = held_out_inputs(eval_data, &names, 64)?;
    let verification = compare_models(&built.sparse_bytes, &built.compact_bytes, &samples)?;
    let verify_seconds = t.elapsed().as_secs_f64();

    observer.event(Event::Phase("evaluating the sparse and compact models"));
    let t = Instant::now();
    let sparse = evaluate(exec, teacher, eval_data, job.eval_batch(), job.loss)?;
    let compact_exec = Executor::new(&built.compact, exec.device())?;
    let compact = evaluate(&compact_exec, teacher, eval_data, job.eval_batch(), job.loss)?;
    let evaluate_seconds = t.elapsed().as_secs_f64();
    let before = trained.progress.before.context("the job has no evaluation of the original model")?;
    let metric = if before.accuracy.is_some() { "accuracy" } else { "loss" };
    let quality = Quality { data: eval_data.path.clone(), metric, before, sparse, compact };

    observer.event(Event::Phase("measuring onnxruntime latency"));
    let t = Instant::now();
    let batch = held_out_inputs(eval_data, &names, job.batch_size)?;
    let latency = match latency(&built.original_bytes, &built.compact_bytes, &batch) {
        Ok(l) => Some(l),
        Err(e) => {
            observer.event(Event::Note(format!("latency not measured: {e:#}")));
            None
        }
    };
    let latency_seconds = t.elapsed().as_secs_f64();
    Ok(Verified { verification, quality, latency, verify_seconds, evaluate_seconds, latency_seconds })
}

/// Inputs named like the graph inputs.
pub type NamedInputs = Vec<(String, Tensor)>;

/// The first `n` samples of `data` (all when it has fewer) as onnxruntime inputs named
/// like the graph inputs.
pub fn held_out_inputs(data: &Dataset, names: &[String], n: usize) -> Result<NamedInputs> {
    let n = n.clamp(1, data.len.max(1)) as i64;
    let batch = data.batch(&(0..n).collect::<Vec<_>>()).with_context(|| format!("taking {n} samples of {}", data.path.display()))?;
    let mut out = Vec::new();
    for (name, t) in names.iter().zip(&batch.inputs) {
        let host = oto_torch::exec::convert::from_tch(t).map_err(|m| anyhow::anyhow!("input '{name}': {m}"))?;
        out.push((name.clone(), host));
    }
    Ok(out)
}

/// Runs `model` (serialized) in onnxruntime on `inputs`.
pub fn run_ort(session: &oto_ort::Session, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>> {
    let refs: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    Ok(session.run(&refs)?)
}

/// Max absolute difference over all outputs, and the largest |output| of the full model.
pub fn compare_outputs(full: &[(String, Tensor)], small: &[(String, Tensor)]) -> Result<(f64, f64)> {
    let (mut diff, mut scale) = (0.0f64, 0.0f64);
    for (name, a) in full {
        let b =
            small.iter().find(|(n, _)| n == name).map(|(_, t)| t).with_context(|| format!("the compact model lacks output '{name}'"))?;
        if a.shape != b.shape {
            anyhow::bail!("output '{name}' has shape {:?} in the full model but {:?} in the compact one", a.shape, b.shape);
        }
        for (x, y) in a.to_f64_vec().into_iter().zip(b.to_f64_vec()) {
            diff = diff.max((x - y).abs());
            scale = scale.max(x.abs());
        }
    }
    Ok((diff, scale))
}

/// Whether a difference is within float32 reassociation noise for outputs up to `scale`.
pub fn tolerance(scale: f64) -> f64 {
    1e-4 * scale.max(1.0)
}

/// Runs both models (serialized ONNX) in onnxruntime on `inputs` and compares the outputs.
pub fn compare_models(full: &[u8], compact: &[u8], inputs: &[(String, Tensor)]) -> Result<Verification> {
    let options = oto_ort::SessionOptions::default();
    let full_session = oto_ort::Session::from_bytes(full, &options).context("onnxruntime on the sparse model")?;
    let compact_session = oto_ort::Session::from_bytes(compact, &options).context("onnxruntime on the compact model")?;
    let a = run_ort(&full_session, inputs).context("onnxruntime on the sparse model")?;
    let b = run_ort(&compact_session, inputs).context("onnxruntime on the compact model")?;
    let (max_abs_diff, max_abs_output) = compare_outputs(&a, &b)?;
    let tolerance = tolerance(max_abs_output);
    let samples = inputs.first().and_then(|(_, t)| t.shape.first().copied()).unwrap_or(0);
    Ok(Verification { samples, max_abs_diff, max_abs_output, tolerance, passed: max_abs_diff <= tolerance })
}

/// Fresh session pairs per latency measurement, each timed for a third of a second.
const LATENCY_ROUNDS: usize = 3;

/// Latency of one run of each model on `inputs` ([`oto_ort::paired_latency`]: alternating
/// blocks so that machine noise hits both alike, [`LATENCY_ROUNDS`] fresh session pairs).
pub fn latency(before: &[u8], after: &[u8], inputs: &[(String, Tensor)]) -> Result<Latency> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let options = oto_ort::SessionOptions::with_threads(threads);
    let refs: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let timing = oto_ort::paired_latency(before, after, &options, &refs, LATENCY_ROUNDS, std::time::Duration::from_millis(333), 10_000)
        .context("onnxruntime latency of the original and the compact model")?;
    let batch = inputs.first().and_then(|(_, t)| t.shape.first().copied()).unwrap_or(0);
    Ok(Latency { before_ms: timing.first_s * 1e3, after_ms: timing.second_s * 1e3, batch, threads, runs: timing.runs })
}
