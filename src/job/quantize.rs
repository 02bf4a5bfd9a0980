//! Quantization as a job stage: calibrate the float model on data (the libtorch
//! executor, the activations read as extra graph outputs), rewrite it to QDQ
//! ([`oto_quant::quantize_model`]), and compare the float and quantized models in
//! onnxruntime on the labeled data.

use crate::error::{classify, input_error};
use anyhow::{Context, Result};
use oto_onnx::proto::ValueInfoProto;
use oto_onnx::{Model, Tensor};
use oto_quant::allocate::{AllocateError, LayerSensitivity, Strategy};
use oto_quant::calib::{Collector, Method, Range};
use oto_quant::{BitPlan, Bits, QuantizeOptions, QuantizeReport};
use oto_torch::data::Dataset;
use oto_torch::exec::{Executor, Mode};
use oto_torch::loss::Loss;

use serde::Serialize;
use std::collections::HashMap;

/// Ranges of the `activations` of `model` over the first `samples` samples of `data`
/// (all when `None`), batch by batch: the float model runs with the activations as extra
/// graph outputs.
pub fn calibrate(
    model: &Model,
    activations: &[String],
    data: &Dataset,
    batch: usize,
    samples: Option<usize>,
    method: Method,
) -> Result<HashMap<String, Range>> {
    if activations.is_empty() {
        return Ok(HashMap::new());
    }
    let mut proto = model.proto.clone();
    let graph = proto.graph.get_or_insert_with(Default::default);
    let first_extra = graph.output.len();
    for a in activations {
        graph.output.push(ValueInfoProto { name: Some(a.clone()), ..Default::default() });
    }
    let probe = Model::from_proto(proto, &model.path().display().to_string(), model.base_dir().map(|p| p.to_path_buf()))?;
    let exec = Executor::new(&probe, oto_torch::tch::Device::Cpu).map_err(classify)?;
    let mut collectors: Vec<Collector> =
        activations.iter().map(|_| Collector::new(method)).collect::<Result<_, _>>().map_err(input_error)?;
    let n = samples.unwrap_or(data.len).min(data.len);
    if n == 0 {
        return Err(input_error(anyhow::anyhow!("{}: no calibration samples", data.path.display())));
    }
    let batch = batch.max(1);
    for start in (0..n).step_by(batch) {
        let end = (start + batch).min(n);
        let indices: Vec<i64> = (start as i64..end as i64).collect();
        let b = data.batch(&indices).map_err(classify)?;
        let outputs = oto_torch::tch::no_grad(|| exec.forward(&b.inputs, Mode::Eval)).map_err(classify)?;
        for ((name, c), t) in activations.iter().zip(collectors.iter_mut()).zip(outputs.iter().skip(first_extra)) {
            let t = t.to_kind(oto_torch::tch::Kind::Float);
            let host = oto_torch::exec::convert::from_tch(&t).map_err(|m| anyhow::anyhow!("activation '{name}': {m}"))?;
            let values = host.as_f32().with_context(|| format!("activation '{name}' is not float"))?;
            c.update(values).map_err(|e| {
                input_error(anyhow::anyhow!("{}: activation '{name}' on calibration samples {start}..{end}: {e}", data.path.display()))
            })?;
        }
    }
    Ok(activations.iter().zip(&collectors).filter_map(|(a, c)| Some((a.clone(), c.range()?))).collect())
}

/// Accuracy (or agreement) of one model in onnxruntime.
#[derive(Debug, Clone, Serialize)]
pub struct OrtQuality {
    /// Samples evaluated.
    pub samples: usize,
    /// Fraction of samples whose arg-max class (axis 1 of output 0) is the label;
    /// `None` without integer labels or without a class axis.
    pub accuracy: Option<f64>,
    /// Fraction of samples whose arg-max class is the float model's (1 for the float
    /// model); `None` when output 0 has no class axis.
    pub agreement: Option<f64>,
    /// Largest |quantized - float| over output 0.
    pub max_abs_diff: f64,
}

/// Refuses to quantize a model that is quantized already (its layers compute with integer
/// weights: nothing float is left to quantize). The error names the file and the layers.
pub fn refuse_quantized(model: &Model, path: &std::path::Path) -> Result<()> {
    match crate::model_file::quantized_layers(model) {
        Some(layers) => Err(input_error(anyhow::anyhow!(
            "{}: the model is quantized already ({layers} with integer weights): quantize the float model",
            path.display()
        ))),
        None => Ok(()),
    }
}

/// Refuses to quantize a merged decoder (an `If` chosen by a graph input, see
/// `oto_onnx::branches`): the quantized file would need its activations calibrated and
/// compared on both branches, which is not done. The error names the file and the input.
pub fn refuse_branches(model: &Model, path: &std::path::Path) -> Result<()> {
    if let Some(cond) = oto_onnx::branches::conditions(&model.proto).first() {
        return Err(input_error(anyhow::anyhow!(
            "{}: a merged decoder (an If chosen by the input '{cond}') is not quantized yet: prune it without quantization, or quantize a decoder exported without the merge",
            path.display()
        )));
    }
    Ok(())
}

/// Runs the float and the quantized model (serialized) in onnxruntime on `data` and
/// compares their first outputs: accuracy against the labels, agreement of the classes.
pub fn compare_in_ort(float: &[u8], quantized: &[u8], names: &[String], data: &Dataset, batch: usize) -> Result<(OrtQuality, OrtQuality)> {
    let options = oto_ort::SessionOptions::default();
    let a = oto_ort::Session::from_bytes(float, &options).context("onnxruntime on the float model")?;
    let b = oto_ort::Session::from_bytes(quantized, &options).context("onnxruntime on the quantized model")?;
    let (mut correct_a, mut correct_b, mut agree, mut diff) = (0usize, 0usize, 0usize, 0f64);
    // Classes and accuracy only while output 0 has a class axis and the labels are classes.
    let mut classified = true;
    let mut labeled = data.labels.as_ref().is_some_and(|l| !oto_torch::exec::convert::is_float_kind(l.kind()));
    let batch = batch.max(1);
    for start in (0..data.len).step_by(batch) {
        let end = (start + batch).min(data.len);
        let indices: Vec<i64> = (start as i64..end as i64).collect();
        let bt = data.batch(&indices).map_err(classify)?;
        let mut inputs: Vec<(String, Tensor)> = Vec::new();
        for (name, t) in names.iter().zip(&bt.inputs) {
            inputs.push((name.clone(), oto_torch::exec::convert::from_tch(t).map_err(|m| anyhow::anyhow!("input '{name}': {m}"))?));
        }
        let ya = super::verify::run_ort(&a, &inputs).context("onnxruntime on the float model")?;
        let yb = super::verify::run_ort(&b, &inputs).context("onnxruntime on the quantized model")?;
        let (ya, yb) =
            (&ya.first().context("the float model has no output")?.1, &yb.first().context("the quantized model has no output")?.1);
        if ya.shape != yb.shape {
            anyhow::bail!("output 0 has shape {:?} in the float model but {:?} in the quantized one", ya.shape, yb.shape);
        }
        for (x, y) in ya.to_f64_vec().into_iter().zip(yb.to_f64_vec()) {
            diff = diff.max((x - y).abs());
        }
        let (Some(ca), Some(cb)) = (classes(ya, end - start), classes(yb, end - start)) else {
            classified = false;
            continue;
        };
        agree += ca.iter().zip(&cb).filter(|(x, y)| x == y).count();
        if let Some(labels) = bt.labels.as_ref().filter(|_| labeled) {
            let labels: Vec<i64> =
                Vec::<i64>::try_from(&labels.to_kind(oto_torch::tch::Kind::Int64).reshape([-1])).context("reading the labels")?;
            if labels.len() != ca.len() {
                labeled = false;
                continue;
            }
            correct_a += ca.iter().zip(&labels).filter(|(x, y)| x == y).count();
            correct_b += cb.iter().zip(&labels).filter(|(x, y)| x == y).count();
        }
    }
    let n = data.len.max(1) as f64;
    let labeled = labeled && classified;
    let float = OrtQuality {
        samples: data.len,
        accuracy: labeled.then(|| correct_a as f64 / n),
        agreement: classified.then_some(1.0),
        max_abs_diff: 0.0,
    };
    let quant = OrtQuality {
        samples: data.len,
        accuracy: labeled.then(|| correct_b as f64 / n),
        agreement: classified.then(|| agree as f64 / n),
        max_abs_diff: diff,
    };
    Ok((float, quant))
}

/// The arg-max along axis 1 of every sample of an `[N, C, ...]` output (the first class
/// of a tie; for `[N, C, 1, 1]` the classes of axis 1); `None` without such an axis.
fn classes(y: &Tensor, n: usize) -> Option<Vec<i64>> {
    let values = y.to_f64_vec();
    let c = *y.shape.get(1)?;
    let per = values.len().checked_div(n)?;
    if c < 2 || y.shape.first() != Some(&n) || !per.is_multiple_of(c) {
        return None;
    }
    let inner = per / c;
    Some(
        (0..n)
            .map(|s| {
                let at = |k: usize| values[s * per + k * inner];
                (0..c).fold(0usize, |best, k| if at(k) > at(best) { k } else { best }) as i64
            })
            .collect(),
    )
}

/// Everything `oto quantize` measured.
#[derive(Debug, Clone, Serialize)]
pub struct QuantizeSummary {
    /// The rewrite's report (size table, activations).
    pub report: QuantizeReport,
    /// The float model in onnxruntime on the data.
    pub float: OrtQuality,
    /// The quantized model in onnxruntime on the data.
    pub quantized: OrtQuality,
    /// Calibration samples used.
    pub calibration_samples: usize,
    /// The per-layer bit allocation under a size budget, when one was asked for.
    pub allocation: Option<MixedPlan>,
}

/// Calibrates `model` on `data` (the first `samples`), quantizes it as `options` says
/// (the activation ranges filled in when `quantize_activations`), and compares both
/// models in onnxruntime on `eval` (else on `data`).
#[allow(clippy::too_many_arguments)]
pub fn quantize(
    model: &Model,
    data: &Dataset,
    eval: Option<&Dataset>,
    batch: usize,
    samples: Option<usize>,
    method: Method,
    quantize_activations: bool,
    mut options: QuantizeOptions,
) -> Result<(Model, QuantizeSummary)> {
    let (targets, _) = oto_quant::rewrite::targets(model).map_err(input_error)?;
    let calibration_samples = samples.unwrap_or(data.len).min(data.len);
    if quantize_activations {
        let names = oto_quant::rewrite::activation_values(model, &targets, &options.plan).map_err(input_error)?;
        options.activations = Some(calibrate(model, &names, data, batch, samples, method)?);
    } else {
        options.activations = None;
    }
    let (quantized, report) = oto_quant::quantize_model(model, &options).map_err(input_error)?;
    let names: Vec<String> =
        Executor::new(model, oto_torch::tch::Device::Cpu).map_err(classify)?.inputs().map(|i| i.name.clone()).collect();
    let (float, quant) = compare_in_ort(&model.to_bytes()?, &quantized.to_bytes()?, &names, eval.unwrap_or(data), batch)?;
    Ok((quantized, QuantizeSummary { report, float, quantized: quant, calibration_samples, allocation: None }))
}

/// The loss whose Hessian measures sensitivity on `data` (as `oto hessian` chooses it):
/// cross-entropy with labels, distillation from the model itself without.
pub fn curvature_loss(data: &Dataset) -> Loss {
    if data.labels.is_some() {
        Loss::CrossEntropy { label_smoothing: 0.0 }
    } else {
        Loss::Distill { temperature: 1.0 }
    }
}

/// What a per-layer bit allocation under a size budget needs.
#[derive(Debug, Clone)]
pub struct BudgetRequest {
    /// The budget: stored bytes of the quantized weights (scales and zero points included)
    /// over their float32 bytes (int8 everywhere is about 0.25).
    pub ratio: f64,
    /// The bit widths a layer may get.
    pub choices: Vec<Bits>,
    /// The allocation rule.
    pub strategy: Strategy,
    /// Block size of int4 weights.
    pub block_size: usize,
    /// Samples per batch of the Hessian.
    pub batch: usize,
    /// Batches of the data (the first ones) the Hessian is measured on.
    pub hessian_batches: usize,
    /// Most Hutchinson samples.
    pub hutchinson_samples: usize,
    /// Seed of the Hutchinson vectors.
    pub seed: u64,
    /// Traces measured before ([`read_traces`]): used instead of measuring them again.
    pub traces: Option<KnownTraces>,
}

/// Hessian traces of weights read from an earlier run's JSON.
#[derive(Debug, Clone)]
pub struct KnownTraces {
    /// The file they came from (for the report and messages).
    pub file: String,
    /// `(trace, standard error)` by weight initializer.
    pub traces: HashMap<String, (f64, f64)>,
}

/// Reads the per-weight Hessian traces of `path`: the JSON of `oto quantize --json` with
/// `--size-budget` (`allocation.layers[]`: `weight`, `trace`, `trace_std_error`) or of
/// `oto hessian --json` (`layers[]`: `name`, `trace`, `std_error`). Errors name the file
/// and the entry.
pub fn read_traces(path: &std::path::Path) -> Result<KnownTraces> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("reading {file}")).map_err(input_error)?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).with_context(|| format!("{file}: not JSON")).map_err(input_error)?;
    let (layers, name_key, error_key) = match json.pointer("/allocation/layers").and_then(|l| l.as_array()) {
        Some(l) => (l, "weight", "trace_std_error"),
        None => match json.get("layers").and_then(|l| l.as_array()) {
            Some(l) => (l, "name", "std_error"),
            None => {
                return Err(input_error(anyhow::anyhow!(
                    "{file}: no per-weight traces (neither allocation.layers of `oto quantize --json` nor layers of `oto hessian --json`)"
                )))
            }
        },
    };
    let mut traces = HashMap::new();
    for (i, l) in layers.iter().enumerate() {
        let name = l.get(name_key).and_then(|v| v.as_str());
        let trace = l.get("trace").and_then(|v| v.as_f64()).filter(|t| t.is_finite());
        let (Some(name), Some(trace)) = (name, trace) else {
            return Err(input_error(anyhow::anyhow!("{file}: layer entry {i} lacks a '{name_key}' string or a finite 'trace'")));
        };
        let std_error = l.get(error_key).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        traces.insert(name.to_string(), (trace, std_error));
    }
    Ok(KnownTraces { file, traces })
}

/// One layer of a mixed-precision allocation.
#[derive(Debug, Clone, Serialize)]
pub struct LayerBits {
    /// The weight initializer.
    pub weight: String,
    /// Its number of weights.
    pub params: u64,
    /// The bits chosen (32: kept float).
    pub bits: u8,
    /// The Hutchinson estimate of the Hessian trace over the weight, negative estimates as 0
    /// (what the allocation used).
    pub trace: f64,
    /// Its standard error.
    pub trace_std_error: f64,
    /// `trace / params`.
    pub trace_per_param: f64,
    /// `||Q_b(W) - W||^2` at the chosen bits.
    pub squared_error: f64,
    /// Stored bytes at the chosen bits.
    pub bytes: u64,
    /// Bytes as float32.
    pub float_bytes: u64,
}

/// A per-layer allocation and how it meets the budget.
#[derive(Debug, Clone, Serialize)]
pub struct MixedPlan {
    /// `hawq`, `uniform`, `random` or `params`.
    pub strategy: String,
    /// The budget asked for (a fraction of the float32 bytes).
    pub budget_ratio: f64,
    /// The budget in bytes.
    pub budget_bytes: u64,
    /// Float32 bytes of the quantized weights.
    pub float_bytes: u64,
    /// Stored bytes of the allocation.
    pub bytes: u64,
    /// `bytes / float_bytes`.
    pub ratio: f64,
    /// `sum_i Tr(H_i)/n_i * ||Q(W_i) - W_i||^2` of the allocation.
    pub omega: f64,
    /// The loss of the Hessian (or where the traces were read from, with `--traces`).
    pub loss: String,
    /// Samples the Hessian was measured on.
    pub hessian_samples: usize,
    /// Hutchinson samples taken.
    pub hutchinson_samples: usize,
    /// Every layer, in initializer order.
    pub layers: Vec<LayerBits>,
}

/// Parses an allocation rule (`hawq`, `uniform`, `random`, `params`); `random` uses `seed`.
pub fn parse_strategy(name: &str, seed: u64) -> Option<Strategy> {
    match name {
        "hawq" => Some(Strategy::Hawq),
        "uniform" => Some(Strategy::Uniform),
        "random" => Some(Strategy::Random(seed)),
        "params" => Some(Strategy::ParamCount),
        _ => None,
    }
}

fn strategy_name(s: Strategy) -> &'static str {
    match s {
        Strategy::Hawq => "hawq",
        Strategy::Uniform => "uniform",
        Strategy::Random(_) => "random",
        Strategy::ParamCount => "params",
    }
}

/// Chooses the bits of every quantization target of `model` under `request`'s size
/// budget: the options of each (stored bytes and squared error per width, as the rewrite
/// would write them), the Hessian traces of the weights on the first batches of the first
/// `samples` of `data` ([`oto_hessian::weight_traces`], the loss of [`curvature_loss`]),
/// and the allocation by `request.strategy`. A budget below every allocation is an input
/// error naming the smallest achievable ratio.
pub fn allocate_bits(model: &Model, data: &Dataset, samples: Option<usize>, request: &BudgetRequest) -> Result<(BitPlan, MixedPlan)> {
    let path = model.path().display().to_string();
    if !(request.ratio.is_finite() && request.ratio > 0.0) {
        return Err(input_error(anyhow::anyhow!("--size-budget {}: must be a positive number", request.ratio)));
    }
    if request.choices.is_empty() {
        return Err(input_error(anyhow::anyhow!("--bits-choices: no bit widths given")));
    }
    let (targets, _) = oto_quant::rewrite::targets(model).map_err(input_error)?;
    if targets.is_empty() {
        return Err(input_error(anyhow::anyhow!("{path}: no Conv, Gemm or MatMul weight to quantize")));
    }
    let mut choices = request.choices.clone();
    choices.sort_by_key(|b| b.width());
    choices.dedup();
    let mut options = oto_quant::rewrite::bit_options(model, &targets, &choices, request.block_size).map_err(input_error)?;
    // A width storing more bytes than a wider one (int4 in blocks along an input axis
    // shorter than the block: a scale per few weights) is worse in both size and error.
    for o in &mut options {
        let keep: Vec<bool> = o.iter().enumerate().map(|(i, a)| !o[i + 1..].iter().any(|b| b.bytes <= a.bytes)).collect();
        let mut k = keep.into_iter();
        o.retain(|_| k.next().unwrap_or(true));
    }
    let float_bytes: u64 = targets.iter().map(|t| 4 * t.shape.iter().product::<usize>() as u64).sum();
    let budget_bytes = (request.ratio * float_bytes as f64).floor() as u64;

    // Hessian traces of the weights: read, or measured on the data.
    let (traces, loss_name, hessian_samples, hutchinson_samples) = match &request.traces {
        Some(known) => {
            let mut estimates = Vec::with_capacity(targets.len());
            for t in &targets {
                let &(trace, std_error) = known
                    .traces
                    .get(&t.weight)
                    .ok_or_else(|| input_error(anyhow::anyhow!("{}: no trace for weight '{}' of {path}", known.file, t.weight)))?;
                let params = t.shape.iter().product::<usize>() as u64;
                estimates.push(oto_hessian::TraceEstimate { name: t.weight.clone(), params, trace, std_error, samples_for_5pct: None });
            }
            (estimates, format!("traces read from {}", known.file), 0, 0)
        }
        None => {
            let exec = Executor::new(model, oto_torch::tch::Device::Cpu).map_err(classify)?;
            let loss = curvature_loss(data);
            oto_torch::train::check_labels(&exec, data, loss).map_err(classify)?;
            let teacher = match loss {
                Loss::Distill { .. } => Some(Executor::new(model, oto_torch::tch::Device::Cpu).map_err(classify)?),
                _ => None,
            };
            let n = samples.unwrap_or(data.len).min(data.len);
            if n == 0 {
                return Err(input_error(anyhow::anyhow!("{}: no calibration samples", data.path.display())));
            }
            let batches =
                oto_torch::train::first_batches(data, n, request.batch.max(1), request.hessian_batches.max(1) as u64).map_err(classify)?;
            let hessian_samples = batches.iter().map(|b| b.len()).sum();
            let mut op = oto_hessian::HessianOperator::new(&exec, teacher.as_ref(), batches, loss).map_err(classify)?;
            let names: Vec<String> = targets.iter().map(|t| t.weight.clone()).collect();
            let max_samples = request.hutchinson_samples.max(2);
            let config = oto_hessian::TraceConfig { tolerance: 0.05, min_samples: 10.min(max_samples), max_samples, seed: request.seed };
            let traces = oto_hessian::weight_traces(&mut op, &names, &config, |_| {}).map_err(classify)?;
            let hutchinson_samples = op.products();
            (traces, loss.to_string(), hessian_samples, hutchinson_samples)
        }
    };

    let layers: Vec<LayerSensitivity> = targets
        .iter()
        .zip(&traces)
        .zip(options)
        // A negative estimate is sampling noise around a trace near 0 (the loss is at a
        // minimum; the distillation Hessian at the teacher is positive semidefinite): taken
        // as 0, or Omega would reward error on that layer.
        .map(|((t, e), options)| LayerSensitivity { name: t.weight.clone(), params: e.params, trace: e.trace.max(0.0), options })
        .collect();
    let allocation = oto_quant::allocate::allocate_with(request.strategy, &layers, budget_bytes).map_err(|e| match e {
        AllocateError::BudgetTooSmall { minimum, .. } => input_error(anyhow::anyhow!(
            "{path}: --size-budget {} ({budget_bytes} of {float_bytes} float32 weight bytes) is below the smallest \
             achievable size, {:.4} ({minimum} bytes, every layer at its fewest bits)",
            request.ratio,
            minimum as f64 / float_bytes.max(1) as f64
        )),
        other => input_error(anyhow::anyhow!("{path}: {other}")),
    })?;
    let mut plan = BitPlan::uniform(Bits::Float);
    let mut report = Vec::with_capacity(layers.len());
    for ((l, e), &c) in layers.iter().zip(&traces).zip(&allocation.choices) {
        let o = &l.options[c];
        let bits = Bits::from_bits(u32::from(o.bits)).context("an allocation chose a width the rewrite does not store")?;
        plan.weights.insert(l.name.clone(), bits);
        report.push(LayerBits {
            weight: l.name.clone(),
            params: l.params,
            bits: o.bits,
            trace: l.trace,
            trace_std_error: e.std_error,
            trace_per_param: l.sensitivity(),
            squared_error: o.squared_error,
            bytes: o.bytes,
            float_bytes: 4 * l.params,
        });
    }
    let mixed = MixedPlan {
        strategy: strategy_name(request.strategy).into(),
        budget_ratio: request.ratio,
        budget_bytes,
        float_bytes,
        bytes: allocation.bytes,
        ratio: allocation.bytes as f64 / float_bytes.max(1) as f64,
        omega: allocation.omega,
        loss: loss_name,
        hessian_samples,
        hutchinson_samples,
        layers: report,
    };
    Ok((plan, mixed))
}

/// The allocation as a Markdown table, with the achieved size against the budget.
pub fn allocation_table(m: &MixedPlan) -> String {
    let mut out = format!(
        "bits by {} under a size budget of {:.4} of the float32 weight bytes (Hessian of the {} loss on {} samples, {} Hutchinson samples)\n\n",
        m.strategy, m.budget_ratio, m.loss, m.hessian_samples, m.hutchinson_samples
    );
    out.push_str("| weight | params | bits | trace | trace/params | squared error | bytes |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for l in &m.layers {
        out.push_str(&format!(
            "| {} | {} | {} | {:.4e} | {:.4e} | {:.4e} | {} |\n",
            l.weight, l.params, l.bits, l.trace, l.trace_per_param, l.squared_error, l.bytes
        ));
    }
    out.push_str(&format!(
        "\nachieved {:.4} ({} of {} bytes) vs budget {:.4} ({} bytes); Omega {:.4e}\n\n",
        m.ratio, m.bytes, m.float_bytes, m.budget_ratio, m.budget_bytes, m.omega
    ));
    out
}

/// Calibration samples of the job's quantization (a seeded sample of the training data).
pub const JOB_CALIBRATION_SAMPLES: usize = 256;

/// What quantizing the compact model in the prune job measured (`report.json`'s `quantization`).
#[derive(Debug, Clone, Serialize)]
pub struct JobQuantization {
    /// The file written beside the compact model.
    pub file: String,
    /// Its size in bytes (every weight inline).
    pub file_bytes: u64,
    /// The compact model's file size, for comparison.
    pub compact_file_bytes: u64,
    /// The size table, the allocation and float vs quantized in onnxruntime on the held-out data.
    pub summary: QuantizeSummary,
    /// onnxruntime latency of one batch: `before_ms` the compact model, `after_ms` the quantized one.
    pub latency: Option<super::verify::Latency>,
}

/// `n` samples of `data` drawn without replacement by `seed` (all when it has fewer), as
/// an in-memory dataset.
pub fn sample(data: &Dataset, n: usize, seed: u64) -> Result<Dataset> {
    let mut rng = oto_onnx::rng::SplitMix64::new(seed);
    let n = n.min(data.len);
    let mut picked = rng.choose(data.len, n);
    picked.sort_unstable();
    let indices: Vec<i64> = picked.iter().map(|&i| i as i64).collect();
    let b = data.batch(&indices).map_err(classify)?;
    Ok(Dataset { path: data.path.clone(), inputs: b.inputs, labels: b.labels, len: n, images: None })
}

/// The prune job's quantization stage: the compact model quantized to `budget` (bits per
/// layer by HAWQ-V2, traces and activation ranges on a seeded sample of the training
/// data), compared with the compact model in onnxruntime on the held-out data, and its
/// latency measured. Returns the serialized QDQ model and the measurements.
pub fn in_job(
    trained: &super::train::Trained,
    built: &super::construct::Constructed,
    budget: f64,
    observer: &mut dyn super::Observer,
) -> Result<(Vec<u8>, JobQuantization)> {
    let job = &trained.job;
    observer.event(super::Event::Phase("quantizing the compact model"));
    let calib = sample(&trained.train_data, JOB_CALIBRATION_SAMPLES, job.seed)?;
    let batch = job.eval_batch();
    let block_size = job.quantize_block_size.unwrap_or(32);
    let request = BudgetRequest {
        ratio: budget,
        choices: vec![Bits::Int4, Bits::Int8],
        strategy: Strategy::Hawq,
        block_size,
        batch,
        hessian_batches: 4,
        hutchinson_samples: 100,
        seed: job.seed,
        traces: None,
    };
    let (plan, mixed) = allocate_bits(&built.compact, &calib, None, &request)?;
    let options = QuantizeOptions { plan, block_size, activations: None };
    let (quantized, mut summary) = quantize(&built.compact, &calib, Some(&trained.eval_data), batch, None, Method::MinMax, true, options)?;
    summary.allocation = Some(mixed);
    let bytes = quantized.to_bytes()?;
    let names: Vec<String> = trained.exec.inputs().map(|i| i.name.clone()).collect();
    let inputs = super::verify::held_out_inputs(&trained.eval_data, &names, job.batch_size)?;
    let latency = match super::verify::latency(&built.compact_bytes, &bytes, &inputs) {
        Ok(l) => Some(l),
        Err(e) => {
            observer.event(super::Event::Note(format!("quantized latency not measured: {e:#}")));
            None
        }
    };
    let q = JobQuantization {
        file: super::files::QUANTIZED_FILE.into(),
        file_bytes: bytes.len() as u64,
        compact_file_bytes: built.compact_bytes.len() as u64,
        summary,
        latency,
    };
    Ok((bytes, q))
}

/// The quantization section of `report.md`.
pub fn report_section(q: &JobQuantization) -> String {
    let s = &q.summary;
    let mut out = String::from("## Quantization\n\n");
    let pct = |a: Option<f64>| a.map_or("-".to_string(), |a| format!("{:.2}%", 100.0 * a));
    out.push_str(&format!(
        "{} (QDQ): the compact model with per-layer int4/int8 weights and 8-bit activations, calibrated on {} training samples.\n\n",
        q.file, s.calibration_samples
    ));
    let (f, st) = (s.report.float_bytes(), s.report.stored_bytes());
    out.push_str("| | compact (float) | quantized |\n|---|---:|---:|\n");
    out.push_str(&format!("| Conv/Gemm/MatMul weight bytes | {f} | {st} ({:.3}x) |\n", st as f64 / f.max(1) as f64));
    out.push_str(&format!(
        "| file bytes | {} | {} ({:.3}x) |\n",
        q.compact_file_bytes,
        q.file_bytes,
        q.file_bytes as f64 / q.compact_file_bytes.max(1) as f64
    ));
    out.push_str(&format!(
        "| accuracy ({} held-out samples, onnxruntime) | {} | {} |\n",
        s.float.samples,
        pct(s.float.accuracy),
        pct(s.quantized.accuracy)
    ));
    if let Some(a) = s.quantized.agreement {
        out.push_str(&format!("| same class as the compact model | | {:.2}% |\n", 100.0 * a));
    }
    if let Some(l) = &q.latency {
        out.push_str(&format!(
            "| onnxruntime latency (batch {}, {} threads, median of {}) | {:.3} ms | {:.3} ms |\n",
            l.batch, l.threads, l.runs, l.before_ms, l.after_ms
        ));
    }
    out.push('\n');
    if let Some(m) = &s.allocation {
        out.push_str(&allocation_table(m));
    }
    out
}
