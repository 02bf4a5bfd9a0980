//! The report stage: writes the outputs (`model.onnx`, `model.sparse.onnx`,
//! `groups.json`, `report.json`, `report.md`, `curve.png`), each atomically, from what
//! the other stages produced. It computes nothing but the report's text and plot.

use super::config::Job;
use super::construct::Constructed;
use super::files::{COMPACT_FILE, CURVE_PNG, GROUPS_FILE, REPORT_JSON, REPORT_MD, SPARSE_FILE};
use super::history::History;
use super::observe::{Event, Observer};
use super::train::Trained;
use super::verify::{Latency, Quality, Verification, Verified};
use crate::output::{write_atomic, write_json};
use crate::plot;
use anyhow::Result;
use oto_torch::schedule::{AfterPruning, Schedule};
use oto_torch::train::EvalReport;
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Instant;

/// A quantity before and after pruning.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BeforeAfter<T> {
    /// The original model.
    pub before: T,
    /// The compact model.
    pub after: T,
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
    pub verification: Verification,
    /// Latency in onnxruntime, when measured.
    pub latency: Option<Latency>,
    /// Time per phase.
    pub seconds: Seconds,
    /// The training curve.
    pub history: History,
    /// What CRIC did (probes, cycles), when it ran.
    pub cric: Option<oto_optim::CricReport>,
    /// The budget: what the job asked for and what the compact model has.
    pub budget: BudgetReport,
    /// Groups left narrow (fewer than 4 elements or under 10% of their width).
    pub narrow_groups: Vec<NarrowGroup>,
    /// The compact model quantized (with `quantize`).
    pub quantization: Option<super::quantize::JobQuantization>,
}

/// The budget a job met.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetReport {
    /// `group_sparsity`, `macs` or `params`.
    pub kind: String,
    /// The target: the group sparsity, or the ratio of the original MACs or parameters to keep.
    pub target: f64,
    /// The same quantity measured on the compact model (group sparsity: after training).
    pub achieved: f64,
    /// With a MACs or parameter budget: the ratio HESSO's cost model predicted.
    pub estimated: Option<f64>,
}

/// A group that pruning left narrow.
#[derive(Debug, Clone, Serialize)]
pub struct NarrowGroup {
    /// The group id.
    pub group: String,
    /// Elements kept.
    pub kept: usize,
    /// Elements before pruning.
    pub width: usize,
}

/// The groups that keep fewer than 4 elements or less than 10% of their width (a group
/// that had fewer than 4 to begin with is narrow only when it lost some).
pub fn narrow_groups(analysis: &oto_graph::Analysis, pruned: &std::collections::BTreeMap<String, Vec<usize>>) -> Vec<NarrowGroup> {
    analysis
        .prunable_groups()
        .filter_map(|g| {
            let removed = pruned.get(&g.id).map_or(0, Vec::len);
            let kept = g.num_elements.saturating_sub(removed);
            let narrow = removed > 0 && (kept < 4 || (kept as f64) < 0.1 * g.num_elements as f64);
            narrow.then(|| NarrowGroup { group: g.id.clone(), kept, width: g.num_elements })
        })
        .collect()
}

/// What the job's budget asked for and what the compact model has.
fn budget_report(
    job: &Job,
    group_sparsity: f64,
    params: BeforeAfter<u64>,
    macs: BeforeAfter<u64>,
    estimate: Option<(f64, f64)>,
) -> BudgetReport {
    let share = |b: BeforeAfter<u64>| if b.before == 0 { 1.0 } else { b.after as f64 / b.before as f64 };
    let estimated = estimate.map(|(before, after)| if before > 0.0 { after / before } else { 1.0 });
    match job.hesso.budget {
        oto_optim::Budget::GroupSparsity => {
            BudgetReport { kind: "group_sparsity".into(), target: job.target_sparsity, achieved: group_sparsity, estimated: None }
        }
        oto_optim::Budget::Macs(r) => BudgetReport { kind: "macs".into(), target: r, achieved: share(macs), estimated },
        oto_optim::Budget::Params(r) => BudgetReport { kind: "params".into(), target: r, achieved: share(params), estimated },
    }
}

/// Writes every output into `job.out` (each file atomically) from what the stages
/// produced, and returns the report. A verification mismatch is an error, after
/// `report.json` recorded it; the compact model is then not written.
pub fn write(
    trained: &Trained,
    built: &Constructed,
    verified: Verified,
    quantized: Option<(Vec<u8>, super::quantize::JobQuantization)>,
    started: Instant,
    observer: &mut dyn Observer,
) -> Result<Report> {
    let (quantized_bytes, quantization) = quantized.unzip();
    let (job, finals) = (&trained.job, &trained.finals);
    let metrics = &finals.metrics;
    let mut report = Report {
        job: job.clone(),
        target_sparsity: job.target_sparsity,
        group_sparsity: metrics.group_sparsity,
        prunable_elements: metrics.important + metrics.decaying + metrics.pruned,
        pruned_elements: finals.pruned.values().map(Vec::len).sum(),
        removed_elements: built.removed.values().map(Vec::len).sum(),
        params: BeforeAfter { before: built.report.params_before, after: built.report.params_after },
        macs: BeforeAfter { before: built.report.macs_before, after: built.report.macs_after },
        // Serialized sizes with every weight inline (the input may keep its weights in external data files).
        file_bytes: BeforeAfter { before: built.original_bytes.len() as u64, after: built.compact_bytes.len() as u64 },
        quality: verified.quality,
        verification: verified.verification,
        latency: verified.latency,
        seconds: Seconds {
            train: finals.train_seconds,
            construct: built.seconds,
            verify: verified.verify_seconds,
            evaluate: verified.evaluate_seconds,
            latency: verified.latency_seconds,
            total: 0.0,
        },
        history: trained.progress.history.clone(),
        cric: finals.cric.clone(),
        budget: budget_report(
            job,
            metrics.group_sparsity,
            BeforeAfter { before: built.report.params_before, after: built.report.params_after },
            BeforeAfter { before: built.report.macs_before, after: built.report.macs_after },
            finals.budget_estimate,
        ),
        narrow_groups: narrow_groups(&trained.analysis, &finals.pruned),
        quantization,
    };
    // A budget the cap (or the divisibility rule) kept out of reach is said, not hidden.
    let b = &report.budget;
    let missed = match b.kind.as_str() {
        "group_sparsity" => b.achieved + 1.0 / report.prunable_elements.max(1) as f64 <= b.target,
        _ => b.achieved > b.target,
    };
    if missed {
        observer.event(Event::Note(format!(
            "warning: the {} target {} was not reached ({:.4}): every group is at its limit (--max-group-sparsity {}, group_divisible {})",
            b.kind, b.target, b.achieved, job.hesso.max_group_sparsity, job.hesso.group_divisible
        )));
    }
    for n in &report.narrow_groups {
        observer.event(Event::Note(format!(
            "warning: group {} keeps {} of {} elements (a narrow layer limits accuracy; see --max-group-sparsity)",
            n.group, n.kept, n.width
        )));
    }

    // Outputs: each written atomically; a mismatch leaves no compact model behind.
    let out = &job.out;
    if job.save_sparse {
        write_atomic(&out.join(SPARSE_FILE), &built.sparse_bytes)?;
    }
    let mut groups = serde_json::to_value(&trained.analysis)?;
    groups["pruned"] = serde_json::to_value(&finals.pruned)?;
    groups["removed"] = serde_json::to_value(&built.removed)?;
    write_json(&out.join(GROUPS_FILE), &groups)?;
    match curve_png(&report) {
        Ok(png) => write_atomic(&out.join(CURVE_PNG), &png)?,
        Err(e) => observer.event(Event::Note(format!("no training-curve plot: {e}"))),
    }
    report.seconds.total = started.elapsed().as_secs_f64();
    if !report.verification.passed {
        write_json(&out.join(REPORT_JSON), &report)?;
        anyhow::bail!(
            "the compact model does not compute what the sparse model computes (max |difference| {:.3e} over {} samples, allowed {:.3e}); it was not written. Please report this with the model; the sparse model can be saved with --save-sparse",
            report.verification.max_abs_diff,
            report.verification.samples,
            report.verification.tolerance
        );
    }
    write_atomic(&out.join(COMPACT_FILE), &built.compact_bytes)?;
    if let Some(bytes) = &quantized_bytes {
        write_atomic(&out.join(super::files::QUANTIZED_FILE), bytes)?;
    }
    write_atomic(&out.join(REPORT_MD), markdown(&report).as_bytes())?;
    write_json(&out.join(REPORT_JSON), &report)?;
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
    match r.budget.kind.as_str() {
        "group_sparsity" => {
            let _ = writeln!(s, "| group sparsity | 0 | {:.4} (target {}) | |", r.group_sparsity, r.target_sparsity);
        }
        kind => {
            let name = if kind == "macs" { "MACs" } else { "parameters" };
            let _ = writeln!(
                s,
                "| budget: {name} | 1 | {:.4} (target {}{}) | |",
                r.budget.achieved,
                r.budget.target,
                r.budget.estimated.map(|e| format!(", estimated {e:.4}")).unwrap_or_default()
            );
            let _ = writeln!(s, "| group sparsity | 0 | {:.4} | |", r.group_sparsity);
        }
    }
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
    let branch = match &v.branch_input {
        Some(input) => format!(
            ", the merged decoder's first pass: the branch '{input}' chooses without the cache inputs, as trained; `oto check` compares both branches"
        ),
        None => String::new(),
    };
    let _ = writeln!(
        s,
        "\n**Verification** (onnxruntime, {} held-out samples{branch}): max |sparse - compact| = {:.3e} (outputs up to {:.3e}, allowed {:.3e}): {}.",
        v.samples,
        v.max_abs_diff,
        v.max_abs_output,
        v.tolerance,
        match (&v.decisions, v.passed) {
            (None, true) => "passed".to_string(),
            (None, false) => "FAILED".to_string(),
            (Some(_), _) => format!("{}: {}", if v.passed { "passed" } else { "FAILED" }, super::verify::verdict_words(v)),
        }
    );
    let _ = writeln!(
        s,
        "\nPruned {} of {} prunable elements (construction removed {} all-zero elements); no group loses more than {} of its elements.",
        r.pruned_elements, r.prunable_elements, r.removed_elements, r.job.hesso.max_group_sparsity
    );
    for n in &r.narrow_groups {
        let _ = writeln!(
            s,
            "\n**Warning**: group `{}` keeps {} of {} elements: a layer this narrow limits accuracy (see `--max-group-sparsity`).",
            n.group, n.kept, n.width
        );
    }
    let j = &r.job;
    let _ = writeln!(
        s,
        "\n**Training**: {} steps, batch {}, {}, lr {} ({}{}), loss {}, seed {}; HESSO start {} / pruning steps {} / periods {} / group_divisible {}{}.",
        j.steps,
        j.batch_size,
        j.optimizer,
        j.schedule.lr,
        j.schedule.decay,
        restart_text(&j.schedule),
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
            "\n**CRIC**: snapshot after step {}, reference loss {}, {} cycle(s) bringing {:?} new low-score elements (their {} steps restarted from the snapshot and were trained again: {} steps in all), hybrid training from step {}; probe log loss ratio per group (25/50/75% zeroed, mean): {}.",
            c.snapshot_step.map_or("-".into(), |v| v.to_string()),
            c.reference_loss.map_or("-".into(), loss_value),
            c.cycles,
            c.new_elements,
            c.replayed_steps,
            j.steps.saturating_add(c.replayed_steps),
            c.hybrid_start.map_or("-".into(), |v| v.to_string()),
            probes.join(", ")
        );
    }
    if let Some(q) = &r.quantization {
        let _ = write!(s, "\n{}", super::quantize::report_section(q));
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

/// The training line's words on the learning-rate restart after pruning ("" without one).
fn restart_text(schedule: &Schedule) -> String {
    if schedule.after_pruning != AfterPruning::Restart {
        return String::new();
    }
    let rate = schedule.restart_lr.map_or(String::new(), |lr| format!(" from lr {lr}"));
    let warmup = if schedule.restart_warmup > 0.0 {
        format!(" after a warm-up over {}% of the steps left", (schedule.restart_warmup * 1000.0).round() / 10.0)
    } else {
        String::new()
    };
    format!(", restarted{rate}{warmup} when pruning finished")
}
