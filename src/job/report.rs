//! The end of a prune job: construction, verification, measurements, and the outputs
//! (`model.onnx`, `model.sparse.onnx`, `groups.json`, `report.json`, `report.md`,
//! `curve.png`), each written atomically.

use super::config::Job;
use super::{verify, write_json, Event, Observer, Progress};
use crate::cli::analyze::write_atomic;
use crate::plot;
use anyhow::{Context, Result};
use oto_graph::Analysis;
use oto_onnx::Model;
use oto_optim::HessoMetrics;
use oto_torch::data::Dataset;
use oto_torch::exec::Executor;
use oto_torch::train::{evaluate, EvalReport};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

/// The compact model's file name in the output folder.
pub const COMPACT_FILE: &str = "model.onnx";
/// The sparse model's file name in the output folder.
pub const SPARSE_FILE: &str = "model.sparse.onnx";

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

/// A quantity before and after pruning.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BeforeAfter<T> {
    /// The original model.
    pub before: T,
    /// The compact model.
    pub after: T,
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

/// Seconds per phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Seconds {
    /// Training (over all resumed parts).
    pub train: f64,
    /// Construction of the compact model.
    pub construct: f64,
    /// The onnxruntime comparison of sparse and compact.
    pub verify: f64,
    /// Evaluations after training.
    pub evaluate: f64,
    /// Latency measurement.
    pub latency: f64,
    /// This invocation, start to end.
    pub total: f64,
}

/// What `report.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The job as run.
    pub job: Job,
    /// Target group sparsity.
    pub target_sparsity: f64,
    /// Realized group sparsity (zero elements over prunable elements) after training.
    pub group_sparsity: f64,
    /// Prunable elements.
    pub prunable_elements: usize,
    /// Elements HESSO pruned.
    pub pruned_elements: usize,
    /// Elements construction removed (every all-zero element; includes the pruned ones).
    pub removed_elements: usize,
    /// Parameter counts.
    pub params: BeforeAfter<u64>,
    /// MACs per sample.
    pub macs: BeforeAfter<u64>,
    /// File sizes in bytes.
    pub file_bytes: BeforeAfter<u64>,
    /// Loss and metric.
    pub quality: Quality,
    /// The sparse-vs-compact comparison in onnxruntime.
    pub verification: verify::Verification,
    /// Latency in onnxruntime, when measured.
    pub latency: Option<Latency>,
    /// Time per phase.
    pub seconds: Seconds,
    /// The training curve.
    pub history: History,
    /// What CRIC did (probes, cycles), when it ran.
    pub cric: Option<oto_optim::CricReport>,
}

/// What training produced, for the report.
pub struct Finals {
    /// Training seconds over all resumed parts.
    pub train_seconds: f64,
    /// HESSO's pruned elements per group.
    pub pruned: BTreeMap<String, Vec<usize>>,
    /// HESSO's final metrics.
    pub metrics: HessoMetrics,
    /// CRIC's report, when it ran.
    pub cric: Option<oto_optim::CricReport>,
}

/// Constructs, verifies, measures and writes every output; a verification mismatch is an
/// error (after `report.json` recorded it; the compact model is then not written).
#[allow(clippy::too_many_arguments)]
pub(super) fn finish(
    job: &Job,
    model: &Model,
    analysis: &Analysis,
    exec: &Executor,
    teacher: Option<&Executor>,
    eval_data: &Dataset,
    progress: &Progress,
    finals: Finals,
    started: Instant,
    observer: &mut dyn Observer,
) -> Result<Report> {
    let mut seconds = Seconds { train: finals.train_seconds, ..Seconds::default() };
    observer.event(Event::Phase("constructing the compact model"));
    let t = Instant::now();
    let sparse = exec.updated_model(model)?;
    let removed = oto_construct::zero_elements(analysis, &sparse)?;
    let (compact, construction) = oto_construct::construct(&sparse, analysis, &removed)?;
    let sparse_bytes = sparse.to_bytes()?;
    let compact_bytes = compact.to_bytes()?;
    seconds.construct = t.elapsed().as_secs_f64();

    observer.event(Event::Phase("verifying the compact model in onnxruntime"));
    let t = Instant::now();
    let names: Vec<String> = exec.inputs().map(|i| i.name.clone()).collect();
    let samples = verify::held_out_inputs(eval_data, &names, 64)?;
    let verification = verify::compare_models(&sparse_bytes, &compact_bytes, &samples)?;
    seconds.verify = t.elapsed().as_secs_f64();

    observer.event(Event::Phase("evaluating the sparse and compact models"));
    let t = Instant::now();
    let sparse_eval = evaluate(exec, teacher, eval_data, job.eval_batch(), job.loss)?;
    let compact_exec = Executor::new(&compact, exec.device())?;
    let compact_eval = evaluate(&compact_exec, teacher, eval_data, job.eval_batch(), job.loss)?;
    seconds.evaluate = t.elapsed().as_secs_f64();

    observer.event(Event::Phase("measuring onnxruntime latency"));
    let t = Instant::now();
    let original_bytes = model.to_bytes()?;
    let batch = verify::held_out_inputs(eval_data, &names, job.batch_size)?;
    let latency = match verify::latency(&original_bytes, &compact_bytes, &batch) {
        Ok(l) => Some(l),
        Err(e) => {
            observer.event(Event::Note(format!("latency not measured: {e:#}")));
            None
        }
    };
    seconds.latency = t.elapsed().as_secs_f64();

    let before = progress.before.context("the job has no evaluation of the original model")?;
    let metric = if before.accuracy.is_some() { "accuracy" } else { "loss" };
    let mut report = Report {
        job: job.clone(),
        target_sparsity: job.target_sparsity,
        group_sparsity: finals.metrics.group_sparsity,
        prunable_elements: finals.metrics.important + finals.metrics.decaying + finals.metrics.pruned,
        pruned_elements: finals.pruned.values().map(Vec::len).sum(),
        removed_elements: removed.values().map(Vec::len).sum(),
        params: BeforeAfter { before: construction.params_before, after: construction.params_after },
        macs: BeforeAfter { before: construction.macs_before, after: construction.macs_after },
        // Serialized sizes with every weight inline (the input may keep its weights in external data files).
        file_bytes: BeforeAfter { before: original_bytes.len() as u64, after: compact_bytes.len() as u64 },
        quality: Quality { data: eval_data.path.clone(), metric, before, sparse: sparse_eval, compact: compact_eval },
        verification,
        latency,
        seconds,
        history: progress.history.clone(),
        cric: finals.cric,
    };

    // Outputs: each written atomically; a mismatch leaves no compact model behind.
    let out = &job.out;
    if job.save_sparse {
        write_atomic(&out.join(SPARSE_FILE), &sparse_bytes)?;
    }
    let mut groups = serde_json::to_value(analysis)?;
    groups["pruned"] = serde_json::to_value(&finals.pruned)?;
    groups["removed"] = serde_json::to_value(&removed)?;
    write_json(&out.join("groups.json"), &groups)?;
    match curve_png(&report) {
        Ok(png) => write_atomic(&out.join("curve.png"), &png)?,
        Err(e) => observer.event(Event::Note(format!("no training-curve plot: {e}"))),
    }
    report.seconds.total = started.elapsed().as_secs_f64();
    if !report.verification.passed {
        write_json(&out.join("report.json"), &report)?;
        anyhow::bail!(
            "the compact model does not compute what the sparse model computes (max |difference| {:.3e} over {} samples, allowed {:.3e}); it was not written. Please report this with the model; the sparse model can be saved with --save-sparse",
            report.verification.max_abs_diff,
            report.verification.samples,
            report.verification.tolerance
        );
    }
    write_atomic(&out.join(COMPACT_FILE), &compact_bytes)?;
    write_atomic(&out.join("report.md"), markdown(&report).as_bytes())?;
    write_json(&out.join("report.json"), &report)?;
    Ok(report)
}

fn ratio(before: f64, after: f64) -> String {
    if before == 0.0 {
        "-".into()
    } else {
        format!("{:.3}x", after / before)
    }
}

/// A loss with four significant digits (distillation losses can be tiny).
fn loss_value(loss: f64) -> String {
    if loss != 0.0 && loss.abs() < 0.01 {
        format!("{loss:.3e}")
    } else {
        format!("{loss:.4}")
    }
}

fn metric_value(r: &EvalReport, metric: &str) -> String {
    match (metric, r.accuracy) {
        ("accuracy", Some(a)) => format!("{:.2}%", 100.0 * a),
        _ => loss_value(r.loss),
    }
}

fn loss_name(loss: &oto_torch::loss::Loss) -> &'static str {
    use oto_torch::loss::Loss;
    match loss {
        Loss::CrossEntropy { .. } => "cross-entropy",
        Loss::Mse => "mse",
        Loss::Bce => "bce",
        Loss::Distill { .. } => "distillation KL",
    }
}

/// The summary table (markdown) that `report.md` starts with and the command prints.
pub fn summary_table(r: &Report) -> String {
    let mut s = String::new();
    let q = &r.quality;
    let _ = writeln!(s, "| | before | after | ratio |");
    let _ = writeln!(s, "|---|---:|---:|---:|");
    let _ =
        writeln!(s, "| parameters | {} | {} | {} |", r.params.before, r.params.after, ratio(r.params.before as f64, r.params.after as f64));
    let _ =
        writeln!(s, "| MACs per sample | {} | {} | {} |", r.macs.before, r.macs.after, ratio(r.macs.before as f64, r.macs.after as f64));
    let _ = writeln!(
        s,
        "| model size | {:.1} KiB | {:.1} KiB | {} |",
        r.file_bytes.before as f64 / 1024.0,
        r.file_bytes.after as f64 / 1024.0,
        ratio(r.file_bytes.before as f64, r.file_bytes.after as f64)
    );
    if q.metric != "loss" {
        let _ = writeln!(s, "| {} | {} | {} | |", q.metric, metric_value(&q.before, q.metric), metric_value(&q.compact, q.metric));
    }
    let _ = writeln!(s, "| loss ({}) | {} | {} | |", loss_name(&r.job.loss), loss_value(q.before.loss), loss_value(q.compact.loss));
    if let Some(l) = &r.latency {
        let _ = writeln!(
            s,
            "| onnxruntime latency (batch {}, {} threads) | {:.3} ms | {:.3} ms | {} |",
            l.batch,
            l.threads,
            l.before_ms,
            l.after_ms,
            ratio(l.before_ms, l.after_ms)
        );
    }
    let _ = writeln!(s, "| group sparsity | 0 | {:.4} (target {}) | |", r.group_sparsity, r.target_sparsity);
    s
}

/// `report.md`: the summary table, the verification, the phases and the curve.
fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# oto prune: {}\n", r.job.model.display());
    s.push_str(&summary_table(r));
    let q = &r.quality;
    let _ = writeln!(
        s,
        "\n{} measured on {} ({} samples). Sparse model (full size, pruned elements at zero): {}; compact model: {}.",
        q.metric,
        q.data.display(),
        q.compact.samples,
        metric_value(&q.sparse, q.metric),
        metric_value(&q.compact, q.metric)
    );
    let v = &r.verification;
    let _ = writeln!(
        s,
        "\n**Verification** (onnxruntime, {} held-out samples): max |sparse - compact| = {:.3e} (outputs up to {:.3e}, allowed {:.3e}): {}.",
        v.samples,
        v.max_abs_diff,
        v.max_abs_output,
        v.tolerance,
        if v.passed { "passed" } else { "FAILED" }
    );
    let _ = writeln!(
        s,
        "\nPruned {} of {} prunable elements (construction removed {} all-zero elements).",
        r.pruned_elements, r.prunable_elements, r.removed_elements
    );
    let j = &r.job;
    let _ = writeln!(
        s,
        "\n**Training**: {} steps, batch {}, {}, lr {} ({}), loss {}, seed {}; HESSO start {} / pruning steps {} / periods {} / group_divisible {}{}.",
        j.steps,
        j.batch_size,
        j.optimizer,
        j.schedule.lr,
        j.schedule.decay,
        j.loss,
        j.seed,
        j.hesso.start_pruning_step,
        j.hesso.pruning_steps,
        j.hesso.pruning_periods,
        j.hesso.group_divisible,
        if j.hesso.cric.is_some() { ", with CRIC" } else { "" }
    );
    if let Some(c) = &r.cric {
        let probes: Vec<String> = c.probes.iter().map(|p| format!("{} {:+.3}", p.group, p.log_ratio)).collect();
        let _ = writeln!(
            s,
            "\n**CRIC**: snapshot after step {}, reference loss {}, {} cycle(s) bringing {:?} new low-score elements, hybrid training from step {}; probe log loss ratio per group (25/50/75% zeroed, mean): {}.",
            c.snapshot_step.map_or("-".into(), |v| v.to_string()),
            c.reference_loss.map_or("-".into(), loss_value),
            c.cycles,
            c.new_elements,
            c.hybrid_start.map_or("-".into(), |v| v.to_string()),
            probes.join(", ")
        );
    }
    let t = &r.seconds;
    let _ = writeln!(s, "\n| phase | seconds |\n|---|---:|");
    for (name, v) in [
        ("train", t.train),
        ("construct", t.construct),
        ("verify", t.verify),
        ("evaluate", t.evaluate),
        ("latency", t.latency),
        ("total (this run)", t.total),
    ] {
        let _ = writeln!(s, "| {name} | {v:.2} |");
    }
    let _ = writeln!(s, "\n![training curve](curve.png)");
    s
}

/// The training curve: loss, metric and group sparsity over the steps, with the
/// pruning schedule marked.
fn curve_png(r: &Report) -> Result<Vec<u8>, plot::PlotError> {
    let h = &r.history;
    let train_loss = plot::Series {
        label: "train loss".into(),
        points: h.steps.iter().map(|p| (p.step as f64, p.loss)).collect(),
        color: plot::PALETTE[0],
    };
    let eval_loss = plot::Series {
        label: "eval loss".into(),
        points: h.evals.iter().map(|p| (p.step as f64, p.loss)).collect(),
        color: plot::PALETTE[1],
    };
    let mut panels = vec![plot::Panel { title: "loss".into(), series: vec![train_loss, eval_loss], y_range: None }];
    if h.evals.iter().any(|p| p.accuracy.is_some()) {
        let acc = h.evals.iter().filter_map(|p| p.accuracy.map(|a| (p.step as f64, a))).collect();
        panels.push(plot::Panel {
            title: "eval accuracy".into(),
            series: vec![plot::Series { label: "accuracy".into(), points: acc, color: plot::PALETTE[2] }],
            y_range: None,
        });
    }
    let sparsity = h.steps.iter().map(|p| (p.step as f64, p.group_sparsity)).collect();
    panels.push(plot::Panel {
        title: "group sparsity".into(),
        series: vec![plot::Series { label: "group sparsity".into(), points: sparsity, color: plot::PALETTE[3] }],
        y_range: Some((0.0, 1.0)),
    });
    let hesso = &r.job.hesso;
    let markers = match (&hesso.cric, &r.cric) {
        (Some(config), Some(c)) => {
            let mut m = vec![(config.start_cric_step as f64, "CRIC cycles".to_string())];
            if let Some(h) = c.hybrid_start {
                m.push((h as f64, "hybrid".into()));
                m.push(((h + config.hybrid_training_steps) as f64, "target reached".into()));
            }
            m
        }
        _ => vec![(hesso.start_pruning_step as f64, "pruning starts".into()), (hesso.schedule_steps() as f64, "target reached".into())],
    };
    let figure = plot::Figure { panels, x_label: "step".into(), markers };
    plot::render_png(&figure, 900, 720)
}
