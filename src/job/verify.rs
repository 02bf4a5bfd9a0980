//! The verification stage, with onnxruntime as the independent judge: does the compact
//! model compute what the zeroed (sparse) full model computes, how good are both on the
//! held-out data, and how fast does each run.

use super::construct::Constructed;
use super::observe::{Event, Observer};
use super::train::Trained;
use anyhow::{Context, Result};
use oto_onnx::branches::specialize;
use oto_onnx::builder::value_info;
use oto_onnx::graph::outer_reads;
use oto_onnx::proto::{GraphProto, ModelProto, NodeProto, ValueInfoProto};
use oto_onnx::{Dim, Model, NodeExt, Tensor};
use oto_torch::data::Dataset;
use oto_torch::exec::Executor;
use oto_torch::train::{evaluate, EvalReport};
use serde::Serialize;
use std::collections::HashSet;
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
    /// `max_abs_diff <= tolerance`, or, where outputs differ only after operators that make
    /// discrete decisions, [`Decisions::passed`].
    pub passed: bool,
    /// Set when some outputs differ beyond the tolerance and the full model makes discrete
    /// decisions (see [`Decisions`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decisions: Option<Decisions>,
    /// A merged decoder: the graph input choosing its branch; the comparison ran its
    /// first pass, the branch the data feeds (`oto check` compares both).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch_input: Option<String>,
}

/// Operators whose outputs jump where their inputs cross a threshold or a tie (a
/// detector's `TopK` of scores, a `Greater` than a score threshold, the `If` of an empty
/// set of boxes, a `Cast` to integers): float rounding that differs between two exact
/// models can change a decision, and everything computed after it.
const DECISION_OPS: &[&str] = &[
    "TopK",
    "ArgMax",
    "ArgMin",
    "Hardmax",
    "NonMaxSuppression",
    "Greater",
    "Less",
    "GreaterOrEqual",
    "LessOrEqual",
    "Equal",
    "Round",
    "Floor",
    "Ceil",
    "Sign",
    "Mod",
    "If",
    "Loop",
    "Scan",
];

/// ONNX element types a `Cast` keeps continuous: FLOAT, FLOAT16, DOUBLE, BFLOAT16.
const FLOAT_TYPES: &[i64] = &[1, 10, 11, 16];

/// Outputs that differ after discrete decisions: the compact model is run again with the
/// full model's decisions, and compared on its outputs and on the values every decision
/// reads. When those match, both models computed the same numbers up to float rounding,
/// and a near tie was decided the other way.
#[derive(Debug, Clone, Serialize)]
pub struct Decisions {
    /// The operators of the decisions (`TopK`, `Greater`...), each once.
    pub operators: Vec<String>,
    /// How many decision nodes the full model has (on values, not on sizes alone).
    pub decisions: usize,
    /// How many values the decisions read (each compared).
    pub values: usize,
    /// Max over the outputs and those values of `|full - compact| / max(1, max |full|)`,
    /// the compact model given the full model's decisions.
    pub max_rel_diff: f64,
    /// Given the full model's decisions, the compact model's outputs match (as without
    /// decisions) and so does every value the decisions read (within the tolerance of its
    /// own scale).
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
    // A merged decoder is compared and timed on the branch the data feeds, the one
    // training ran (`oto_onnx::branches::specialize`); `oto check` compares both.
    let (sparse_branch, compact_branch) = (specialize(&built.sparse)?, specialize(&built.compact)?);
    let (sparse_run, compact_run) = (sparse_branch.as_ref().unwrap_or(&built.sparse), compact_branch.as_ref().unwrap_or(&built.compact));
    let mut verification = compare_models(sparse_run, compact_run, &samples)?;
    verification.branch_input = oto_onnx::branches::conditions(&built.compact.proto).into_iter().next();
    let verify_seconds = t.elapsed().as_secs_f64();

    observer.event(Event::Phase("evaluating the sparse and compact models"));
    let t = Instant::now();
    let sparse = evaluate(exec, teacher, eval_data, job.eval_batch(), job.loss)?;
    let compact_exec = Executor::new(compact_run, exec.device())?;
    let compact = evaluate(&compact_exec, teacher, eval_data, job.eval_batch(), job.loss)?;
    let evaluate_seconds = t.elapsed().as_secs_f64();
    let before = trained.progress.before.context("the job has no evaluation of the original model")?;
    let metric = if before.accuracy.is_some() { "accuracy" } else { "loss" };
    let quality = Quality { data: eval_data.path.clone(), metric, before, sparse, compact };

    observer.event(Event::Phase("measuring onnxruntime latency"));
    let t = Instant::now();
    let batch = held_out_inputs(eval_data, &names, job.batch_size)?;
    let branch_bytes = match (specialize(&trained.model)?, &compact_branch) {
        (Some(original), Some(compact)) => Some((original.to_bytes()?, compact.to_bytes()?)),
        _ => None,
    };
    let (before, after) = branch_bytes.as_ref().map_or((&built.original_bytes, &built.compact_bytes), |(b, a)| (b, a));
    let latency = match latency(before, after, &batch) {
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

/// Runs both models in onnxruntime on `inputs` and compares their outputs ([`judge`]).
pub fn compare_models(full: &Model, compact: &Model, inputs: &[(String, Tensor)]) -> Result<Verification> {
    let a = run_model(full, inputs).context("onnxruntime on the sparse model")?;
    let b = run_model(compact, inputs).context("onnxruntime on the compact model")?;
    judge(full, compact, inputs, &a, &b)
}

/// Runs `model` in onnxruntime on `inputs`.
pub fn run_model(model: &Model, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>> {
    let session = oto_ort::Session::from_bytes(&model.to_bytes()?, &oto_ort::SessionOptions::default())?;
    run_ort(&session, inputs)
}

/// Whether `compact` computes what `full` computes, from their outputs `a` and `b` on
/// `inputs`: every output within [`tolerance`] of the largest; where they are not, and
/// the full model makes discrete decisions, with the compact model given the full model's
/// decisions ([`Decisions`]).
pub fn judge(
    full: &Model,
    compact: &Model,
    inputs: &[(String, Tensor)],
    a: &[(String, Tensor)],
    b: &[(String, Tensor)],
) -> Result<Verification> {
    let (max_abs_diff, max_abs_output) = compare_outputs(a, b)?;
    let tolerance = tolerance(max_abs_output);
    let samples = inputs.first().and_then(|(_, t)| t.shape.first().copied()).unwrap_or(0);
    let mut v = Verification {
        samples,
        max_abs_diff,
        max_abs_output,
        tolerance,
        passed: max_abs_diff <= tolerance,
        decisions: None,
        branch_input: None,
    };
    if !v.passed {
        v.decisions = through_decisions(full, compact, inputs, a)?;
        v.passed = v.decisions.as_ref().is_some_and(|d| d.passed);
    }
    Ok(v)
}

/// "ok", "MISMATCH", or, where outputs differed only after discrete decisions, what the
/// comparison through them found.
pub fn verdict_words(v: &Verification) -> String {
    match &v.decisions {
        None => (if v.passed { "ok" } else { "MISMATCH" }).to_string(),
        Some(d) => format!(
            "{} ({} discrete decision{} ({}) on values: given the full model's decisions, the compact model's outputs and the {} value{} the decisions read {} (max relative difference {:.3e}){})",
            if d.passed { "ok" } else { "MISMATCH" },
            d.decisions,
            if d.decisions == 1 { "" } else { "s" },
            d.operators.join(", "),
            d.values,
            if d.values == 1 { "" } else { "s" },
            if d.passed { "match" } else { "differ" },
            d.max_rel_diff,
            if d.passed { ": a near tie was decided the other way" } else { "" }
        ),
    }
}

/// Whether `node` makes a discrete decision ([`DECISION_OPS`], or a `Cast` to a
/// non-float type).
fn decides(node: &NodeProto) -> bool {
    let op = node.op();
    if op == "Cast" {
        return node.attr_int("to").ok().flatten().is_some_and(|to| !FLOAT_TYPES.contains(&to));
    }
    node.domain.as_deref().is_none_or(|d| d.is_empty() || d == "ai.onnx") && DECISION_OPS.contains(&op)
}

/// Operators whose output's shape follows the values of their inputs (beyond the first,
/// or of every input for those listed in [`SHAPE_FROM_DATA`]).
const SHAPE_FROM_INPUTS: &[&str] = &[
    "Reshape",
    "Expand",
    "Tile",
    "Slice",
    "Resize",
    "Upsample",
    "Pad",
    "OneHot",
    "TopK",
    "Split",
    "Squeeze",
    "Unsqueeze",
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
    "CenterCropPad",
    "Col2Im",
];

/// Operators whose output's shape follows the values of any input.
const SHAPE_FROM_DATA: &[&str] = &["NonZero", "Unique", "Compress", "NonMaxSuppression", "ConstantOfShape", "Range", "If", "Loop", "Scan"];

/// The decisions of the main graph that depend on the inputs' values: `(node index,
/// values it reads)`. A decision on sizes alone (an image transform's `Ceil` of a scaled
/// height) is the same in both models as long as the sizes are, and is not one; sizes
/// that follow values (the number of boxes a `NonZero` keeps) make it one.
fn data_decisions(graph: &GraphProto) -> Vec<(usize, Vec<String>)> {
    let mut data: HashSet<String> = graph.input.iter().filter_map(|v| v.name.clone()).collect();
    for t in &graph.initializer {
        if let Some(n) = &t.name {
            data.remove(n);
        }
    }
    let mut sized: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    // A valid graph lists its nodes in topological order: one pass sees every producer first.
    for (i, node) in graph.node.iter().enumerate() {
        let mut reads: Vec<String> = node.input.iter().filter(|v| !v.is_empty()).cloned().collect();
        let mut outer: Vec<String> = outer_reads(node).into_iter().filter(|v| !reads.contains(v)).collect();
        outer.sort();
        reads.extend(outer);
        let op = node.op();
        let (value_dep, size_dep) = if matches!(op, "Shape" | "Size") {
            (node.input.first().is_some_and(|v| sized.contains(v)), false)
        } else {
            let any_data = reads.iter().any(|v| data.contains(v));
            let shape_inputs = node.input.iter().skip(usize::from(!SHAPE_FROM_DATA.contains(&op))).any(|v| data.contains(v));
            let sizes = reads.iter().any(|v| sized.contains(v))
                || (shape_inputs && (SHAPE_FROM_DATA.contains(&op) || SHAPE_FROM_INPUTS.contains(&op)));
            (any_data, sizes)
        };
        let outputs = node.output.iter().filter(|v| !v.is_empty());
        if value_dep {
            data.extend(outputs.clone().cloned());
        }
        if size_dep {
            sized.extend(outputs.cloned());
        }
        if value_dep && decides(node) {
            out.push((i, reads));
        }
    }
    out
}

/// [`Decisions`] of `full` against `compact`: the compact model runs again with the
/// outputs of the full model's decisions given (its decision nodes cut out, their
/// outputs made graph inputs), so that both decide alike; then its outputs, and the
/// values every decision reads, must match the full model's. `None` when `full` makes no
/// decision on values, or the models do not share a decision's values by name and shape.
fn through_decisions(full: &Model, compact: &Model, inputs: &[(String, Tensor)], a: &[(String, Tensor)]) -> Result<Option<Decisions>> {
    let Some(graph) = full.proto.graph.as_ref() else { return Ok(None) };
    let decisions = data_decisions(graph);
    if decisions.is_empty() {
        return Ok(None);
    }
    let mut operators: Vec<String> = decisions.iter().map(|&(i, _)| graph.node[i].op().to_string()).collect();
    operators.sort();
    operators.dedup();
    let decided: Vec<String> =
        decisions.iter().flat_map(|&(i, _)| graph.node[i].output.iter().filter(|v| !v.is_empty()).cloned()).collect();
    let stored: HashSet<&str> = graph.initializer.iter().filter_map(|t| t.name.as_deref()).collect();
    let mut read: Vec<String> = decisions
        .iter()
        .flat_map(|(_, r)| r.iter().cloned())
        .filter(|v| !stored.contains(v.as_str()) && !inputs.iter().any(|(n, _)| n == v) && !decided.contains(v))
        .collect();
    read.sort();
    read.dedup();
    let Some(compact_graph) = compact.proto.graph.as_ref() else { return Ok(None) };
    let produced: HashSet<&str> = compact_graph.node.iter().flat_map(|n| &n.output).map(String::as_str).collect();
    if decided.iter().chain(&read).any(|v| !produced.contains(v.as_str())) {
        return Ok(None);
    }
    let with_outputs = |m: &Model, proto: ModelProto, extra: &[&String]| -> Result<Model> {
        let mut proto = proto;
        let g = proto.graph.get_or_insert_with(Default::default);
        g.output.extend(extra.iter().map(|v| ValueInfoProto { name: Some((*v).clone()), ..Default::default() }));
        Ok(Model::from_proto(proto, &m.path().display().to_string(), m.base_dir().map(|p| p.to_path_buf()))?)
    };
    let full_extra: Vec<&String> = decided.iter().chain(&read).collect();
    let ya = run_model(&with_outputs(full, full.proto.clone(), &full_extra)?, inputs)
        .context("onnxruntime on the full model, with its decisions as outputs")?;
    let value = |ys: &[(String, Tensor)], v: &str| ys.iter().rev().find(|(n, _)| n == v).map(|(_, t)| t.clone());
    // The compact model with the full model's decisions: each decision node removed, its
    // outputs graph inputs.
    let mut forced = compact.proto.clone();
    let mut given = inputs.to_vec();
    {
        let g = forced.graph.get_or_insert_with(Default::default);
        g.node.retain(|n| !n.output.iter().any(|o| decided.contains(o)));
        let mut still_read: HashSet<String> = g.output.iter().filter_map(|o| o.name.clone()).collect();
        for n in &g.node {
            still_read.extend(n.input.iter().cloned());
            still_read.extend(outer_reads(n));
        }
        g.initializer.retain(|t| t.name.as_ref().is_some_and(|n| still_read.contains(n)));
        for v in &decided {
            let Some(t) = value(&ya, v) else { return Ok(None) };
            let dims: Vec<Dim> = t.shape.iter().map(|&d| Dim::Known(i64::try_from(d).unwrap_or(i64::MAX))).collect();
            g.input.push(value_info(v, t.dtype(), &dims));
            given.push((v.clone(), t));
        }
    }
    let read_refs: Vec<&String> = read.iter().collect();
    let forced = with_outputs(compact, forced, &read_refs)?;
    let yb = run_model(&forced, &given).context("onnxruntime on the compact model, given the full model's decisions")?;
    // Outputs that are decisions themselves were given, equal by construction.
    let compared: Vec<(String, Tensor)> = a.iter().filter(|(n, _)| !decided.contains(n)).cloned().collect();
    let Some(outputs) = compared.iter().map(|(n, _)| Some((n.clone(), value(&yb, n)?))).collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };
    let (diff, scale) = compare_outputs(&compared, &outputs)?;
    let mut passed = diff <= tolerance(scale);
    let mut max_rel_diff = diff / scale.max(1.0);
    for v in &read {
        let (Some(x), Some(y)) = (value(&ya, v), value(&yb, v)) else { return Ok(None) };
        if x.shape != y.shape {
            return Ok(None);
        }
        let (d, s) = compare_outputs(&[(v.clone(), x)], &[(v.clone(), y)])?;
        passed &= d <= tolerance(s);
        max_rel_diff = max_rel_diff.max(d / s.max(1.0));
    }
    Ok(Some(Decisions { operators, decisions: decisions.len(), values: read.len(), max_rel_diff, passed }))
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

#[cfg(test)]
mod tests {
    use super::*;
    use oto_onnx::builder::{Attr, GraphBuilder};
    use oto_onnx::{DType, TensorData};

    /// A detector's tail: scores `x * scale`, the best one chosen by `TopK`, and the box
    /// of that row (`boxes * box_gain`) gathered as the output.
    fn picker(scale: [f32; 2], box_gain: f32) -> Model {
        let mut b = GraphBuilder::new("picker");
        b.opset(17);
        let x = b.input_f32("x", &[Dim::Known(2)]);
        let s = b.weight("scale", &[2], |i| scale[i]);
        let rows = b.weight("boxes", &[2, 4], |i| i as f32 * box_gain);
        let k = b.ints("k", &[1]);
        b.node("Mul", &[&x, &s], &["scores"]);
        b.node_with("TopK", &["scores", &k], &["best", "index"], &[("axis", Attr::Int(0))]);
        b.node_with("Gather", &[&rows, "index"], &["box"], &[("axis", Attr::Int(0))]);
        b.output_f32("box", &[Dim::Known(1), Dim::Known(4)]);
        // The decision itself is an output too (a detector's labels).
        b.output("index", DType::I64, &[Dim::Known(1)]);
        b.build().unwrap()
    }

    fn verdict(full: &Model, compact: &Model, x: [f32; 2]) -> Verification {
        let inputs = vec![("x".to_string(), Tensor::new(vec![2], TensorData::F32(x.to_vec())).unwrap())];
        let a = run_model(full, &inputs).unwrap();
        let b = run_model(compact, &inputs).unwrap();
        judge(full, compact, &inputs, &a, &b).unwrap()
    }

    /// Scores that differ by float rounding (2e-7) but sit on a tie pick different rows:
    /// the outputs differ by a whole box, yet given the full model's choice the compact
    /// model computes the same, so the comparison passes and says why.
    #[test]
    fn a_near_tie_decided_the_other_way_passes() {
        let v = verdict(&picker([1.0, 1.0], 1.0), &picker([1.000_000_2, 1.0], 1.0), [1.0, 1.000_000_1]);
        assert!(v.max_abs_diff > 1.0, "the tie must flip for this test: {v:?}");
        let d = v.decisions.as_ref().expect("TopK decides on values");
        assert!(v.passed && d.passed, "{v:?}");
        assert_eq!((d.operators.as_slice(), d.decisions, d.values), (&["TopK".to_string()][..], 1, 1));
        assert!(d.max_rel_diff < 1e-6, "{d:?}");
    }

    /// The same flip with a wrong computation after the decision (boxes scaled by 2), or
    /// before it (scores off by 1%), still fails: forcing the decisions hides only ties.
    #[test]
    fn a_wrong_value_before_or_after_a_decision_still_fails() {
        let after = verdict(&picker([1.0, 1.0], 1.0), &picker([1.000_000_2, 1.0], 2.0), [1.0, 1.000_000_1]);
        assert!(!after.passed && after.decisions.as_ref().is_some_and(|d| !d.passed), "{after:?}");
        let before = verdict(&picker([1.0, 1.0], 1.0), &picker([1.01, 1.0], 1.0), [1.0, 1.000_000_1]);
        assert!(!before.passed && before.decisions.as_ref().is_some_and(|d| !d.passed), "{before:?}");
        assert!(verify_words_say_mismatch(&after) && verify_words_say_mismatch(&before));
    }

    fn verify_words_say_mismatch(v: &Verification) -> bool {
        verdict_words(v).starts_with("MISMATCH")
    }

    /// A decision on sizes alone (a `Cast` of a `Shape`) is no decision: the models must
    /// match as they are.
    #[test]
    fn decisions_on_sizes_alone_are_not_forced() {
        let build = |gain: f32| {
            let mut b = GraphBuilder::new("sizes");
            b.opset(17);
            let x = b.input_f32("x", &[Dim::Known(2)]);
            let w = b.weight("w", &[2], |_| gain);
            b.node("Shape", &[&x], &["n"]);
            b.node_with("Cast", &["n"], &["nf"], &[("to", Attr::Int(1))]);
            b.node_with("Cast", &["nf"], &["ni"], &[("to", Attr::Int(7))]);
            b.node("Mul", &[&x, &w], &["y"]);
            b.output_f32("y", &[Dim::Known(2)]);
            b.output("ni", DType::I64, &[Dim::Known(1)]);
            b.build().unwrap()
        };
        let v = verdict(&build(1.0), &build(2.0), [1.0, 2.0]);
        assert!(!v.passed && v.decisions.is_none(), "{v:?}");
        assert_eq!(verdict_words(&v), "MISMATCH");
    }
}
