//! Quantization as a job stage: calibrate the float model on data (the libtorch
//! executor, the activations read as extra graph outputs), rewrite it to QDQ
//! ([`oto_quant::quantize_model`]), and compare the float and quantized models in
//! onnxruntime on the labeled data.

use crate::error::{classify, input_error};
use anyhow::{Context, Result};
use oto_onnx::proto::ValueInfoProto;
use oto_onnx::{Model, Tensor};
use oto_quant::calib::{Collector, Method, Range};
use oto_quant::{QuantizeOptions, QuantizeReport};
use oto_torch::data::Dataset;
use oto_torch::exec::{Executor, Mode};

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
        let mut names: Vec<String> = Vec::new();
        for t in targets.iter().filter(|t| options.plan.bits(&t.weight) != oto_quant::Bits::Float) {
            for a in &t.activations {
                if !names.contains(a) {
                    names.push(a.clone());
                }
            }
        }
        options.activations = Some(calibrate(model, &names, data, batch, samples, method)?);
    } else {
        options.activations = None;
    }
    let (quantized, report) = oto_quant::quantize_model(model, &options).map_err(input_error)?;
    let names: Vec<String> =
        Executor::new(model, oto_torch::tch::Device::Cpu).map_err(classify)?.inputs().map(|i| i.name.clone()).collect();
    let (float, quant) = compare_in_ort(&model.to_bytes()?, &quantized.to_bytes()?, &names, eval.unwrap_or(data), batch)?;
    Ok((quantized, QuantizeSummary { report, float, quantized: quant, calibration_samples }))
}
