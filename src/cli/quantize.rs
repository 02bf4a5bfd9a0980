//! `oto quantize`: a float model to a QDQ model onnxruntime runs (int8 or int4 weights,
//! calibrated 8-bit activations), with its size table and float vs quantized accuracy.

use crate::error::{classify, input_error};
use anyhow::{Context, Result};
use oto_quant::calib::Method;
use oto_quant::{BitPlan, Bits, QuantizeOptions};
use oto_torch::data::Dataset;
use std::path::PathBuf;

/// Arguments of `oto quantize`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  oto quantize model.onnx --data calib.npz --out model.int8.onnx
      int8 weights per output channel, 8-bit activations calibrated by min/max
  oto quantize model.onnx --data calib.npz --out model.int4.onnx --bits 4 --block-size 32
      int4 weights in blocks of 32 along the input axis (opset 21)
  oto quantize model.onnx --images photos/ --out q.onnx --calibration percentile --percentile 99.99
  oto quantize model.onnx --data calib.npz --out q.onnx --size-budget 0.15 --bits-choices 4,8
      mixed 4/8 bits at 0.6x of int8's size, chosen per layer by HAWQ-V2 (Hessian traces)

With --size-budget R, the stored bytes of the quantized weights (scales included) are at
most R times their float32 bytes (int8 everywhere is about 0.25), and every layer gets one
of --bits-choices: by --allocation hawq, the allocation minimizing the sum over layers of
(Hessian trace / parameters) * ||Q(W) - W||^2, the traces estimated by Hutchinson on the
first --hessian-batches batches of the calibration data (cross-entropy with labels,
distillation from the model itself without), or read with --traces from an earlier run's
--json (to compare allocation rules on the same traces without measuring them again).

The size table counts the weights of Conv, Gemm and MatMul: float32 bytes, and the bytes
stored after quantization (integers, scales and zero points). With labels in the data,
the accuracy of both models in onnxruntime follows (on --val when given, else on the
calibration data).")]
pub struct Args {
    /// The float ONNX model.
    pub model: PathBuf,
    /// Calibration data (.npz or .safetensors); or --text / --images.
    #[arg(long, value_name = "FILE", required_unless_present_any = ["text", "images"])]
    pub data: Option<PathBuf>,
    /// Raw text or image folders instead of --data.
    #[command(flatten)]
    pub data_args: super::data::DataArgs,
    /// Labeled data to compare the models on (.npz or .safetensors) [default: the calibration data].
    #[arg(long, value_name = "FILE")]
    pub val: Option<PathBuf>,
    /// Where to write the quantized model.
    #[arg(long, value_name = "Q.onnx")]
    pub out: PathBuf,
    /// Weight bits: 8 (per output channel) or 4 (blockwise along the input axis).
    #[arg(long, default_value_t = 8, conflicts_with = "size_budget", value_parser = clap::value_parser!(u32).range(4..=8))]
    pub bits: u32,
    /// Bits per layer under a size budget: the stored weight bytes over the float32 ones (int8 ~0.25).
    #[arg(long, value_name = "R")]
    pub size_budget: Option<f64>,
    /// The bit widths a layer may get with --size-budget (4, 8; 32 keeps it float).
    #[arg(long, value_delimiter = ',', default_value = "4,8", requires = "size_budget")]
    pub bits_choices: Vec<u32>,
    /// How bits are allocated with --size-budget: hawq (Hessian-aware), uniform, random (seeded by --seed) or params (largest layers fewest bits).
    #[arg(long, default_value = "hawq", value_parser = ["hawq", "uniform", "random", "params"], requires = "size_budget")]
    pub allocation: String,
    /// Batches of the calibration data the Hessian traces are measured on, with --size-budget.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    pub hessian_batches: u64,
    /// Hessian traces to allocate with instead of measuring them: the --json of an earlier
    /// `oto quantize --size-budget` or of `oto hessian` on this model.
    #[arg(long, value_name = "FILE", requires = "size_budget")]
    pub traces: Option<PathBuf>,
    /// Entries of the input axis sharing a scale, with --bits 4; 0: one scale per output channel.
    #[arg(long, default_value_t = 32)]
    pub block_size: u64,
    /// Activations: int8 (static, calibrated, 8-bit affine, stored as uint8 for onnxruntime's
    /// x86 kernels) or none (float). The inputs of operators with int4 weights stay float
    /// (weight-only: onnxruntime's int4 kernel, MatMulNBits, takes a float input).
    #[arg(long, default_value = "int8", value_parser = ["int8", "none"])]
    pub activations: String,
    /// Activation ranges: minmax or percentile.
    #[arg(long, default_value = "minmax", value_parser = ["minmax", "percentile"])]
    pub calibration: String,
    /// The percentile of |x| bounding the range, with --calibration percentile.
    #[arg(long, default_value_t = 99.99)]
    pub percentile: f64,
    /// Calibration samples (the first N of the data) [default: all].
    #[arg(long, value_name = "N")]
    pub samples: Option<usize>,
    /// Seed of the --val-split choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Samples per batch.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Also write the size table and measurements as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Runs `oto quantize`.
pub fn run(args: &Args) -> Result<()> {
    let bits = Bits::from_bits(args.bits).context("--bits must be 8 or 4").map_err(input_error)?;
    let method = match args.calibration.as_str() {
        "percentile" => Method::Percentile(args.percentile),
        _ => Method::MinMax,
    };
    let batch = usize::try_from(args.batch_size).unwrap_or(usize::MAX);
    let spec = args.data_args.apply(crate::job::config::JobSpec { data: args.data.clone(), ..Default::default() });
    let (data_path, format) = spec.data_source().map_err(input_error)?;
    let (model, _) = crate::model_file::load_model(&args.model)?;
    crate::job::quantize::refuse_quantized(&model, &args.model)?;
    crate::job::quantize::refuse_branches(&model, &args.model)?;
    let exec = oto_torch::exec::Executor::new(&model, oto_torch::tch::Device::Cpu).map_err(classify)?;
    let inputs: Vec<_> = exec.inputs().cloned().collect();
    drop(exec);
    let part = match &format {
        oto_torch::data::DataFormat::Images(o) if o.val_split.is_some() => oto_torch::data::images::Part::Train,
        _ => oto_torch::data::images::Part::All,
    };
    let calib = Dataset::open(&data_path, &format, &model, &inputs, part, args.seed).map_err(classify)?;
    if args.block_size == 1 {
        return Err(input_error(anyhow::anyhow!("--block-size 1: a block has at least 2 entries (0: one scale per output channel)")));
    }
    let block_size = usize::try_from(args.block_size).unwrap_or(32);
    let (plan, allocation) = match args.size_budget {
        None => (BitPlan::uniform(bits), None),
        Some(ratio) => {
            let choices = args
                .bits_choices
                .iter()
                .map(|&b| Bits::from_bits(b).with_context(|| format!("--bits-choices: {b} bits; the choices are 4, 8 and 32 (float)")))
                .collect::<Result<Vec<_>>>()
                .map_err(input_error)?;
            let request = crate::job::quantize::BudgetRequest {
                ratio,
                choices,
                strategy: crate::job::quantize::parse_strategy(&args.allocation, args.seed)
                    .with_context(|| format!("--allocation {}", args.allocation))
                    .map_err(input_error)?,
                block_size,
                batch,
                hessian_batches: usize::try_from(args.hessian_batches).unwrap_or(usize::MAX),
                hutchinson_samples: 100,
                seed: args.seed,
                traces: args.traces.as_deref().map(crate::job::quantize::read_traces).transpose()?,
            };
            let (plan, mixed) = crate::job::quantize::allocate_bits(&model, &calib, args.samples, &request)?;
            (plan, Some(mixed))
        }
    };
    let options = QuantizeOptions { plan, block_size, activations: None };
    let eval = match &args.val {
        Some(v) => Some(
            Dataset::open(v, &oto_torch::data::DataFormat::Arrays, &model, &inputs, oto_torch::data::images::Part::All, args.seed)
                .map_err(classify)?,
        ),
        None => None,
    };
    let (quantized, mut summary) =
        crate::job::quantize::quantize(&model, &calib, eval.as_ref(), batch, args.samples, method, args.activations == "int8", options)?;
    summary.allocation = allocation;
    if let Some(m) = &summary.allocation {
        print!("{}", crate::job::quantize::allocation_table(m));
    }
    quantized.save(&args.out, &oto_onnx::SaveOptions::default()).map_err(input_error)?;
    print!("{}", table(&summary));
    println!("wrote {}", args.out.display());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&summary)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display())).map_err(input_error)?;
    }
    Ok(())
}

/// The size table and the measurements, as Markdown.
pub fn table(s: &crate::job::quantize::QuantizeSummary) -> String {
    let r = &s.report;
    let mut out = String::new();
    let kib = |b: usize| format!("{:.1} KiB", b as f64 / 1024.0);
    out.push_str("| weight | bits | shape | float32 | stored | ratio | max abs error |\n|---|---|---|---:|---:|---:|---:|\n");
    for w in &r.weights {
        let bits = match w.bits {
            Bits::Float => "float",
            Bits::Int8 => "8",
            Bits::Int4 => "4",
        };
        out.push_str(&format!(
            "| {} | {bits} | {:?} | {} | {} | {:.3} | {:.3e} |\n",
            w.weight,
            w.shape,
            kib(w.float_bytes),
            kib(w.stored_bytes),
            w.stored_bytes as f64 / w.float_bytes.max(1) as f64,
            w.max_error
        ));
    }
    let (f, q) = (r.float_bytes(), r.stored_bytes());
    out.push_str(&format!("| **total** | | | {} | {} | {:.3} | |\n\n", kib(f), kib(q), q as f64 / f.max(1) as f64));
    out.push_str(&format!(
        "other initializers (kept float): {}; model weights {} -> {} ({:.3}x); opset {} -> {}; {} activations quantized ({} calibration samples){}\n",
        kib(r.other_bytes),
        kib(f + r.other_bytes),
        kib(q + r.other_bytes),
        (q + r.other_bytes) as f64 / (f + r.other_bytes).max(1) as f64,
        r.opset.0,
        r.opset.1,
        r.activations.len(),
        s.calibration_samples,
        if r.weights.iter().any(|w| w.bits == Bits::Int4) { "; the inputs of int4 weights stay float (weight-only)" } else { "" }
    ));
    for sk in &r.skipped {
        out.push_str(&format!("kept float: {} ({})\n", sk.weight, sk.reason));
    }
    if let (Some(a), Some(b)) = (s.float.accuracy, s.quantized.accuracy) {
        out.push_str(&format!(
            "accuracy in onnxruntime ({} samples): float {:.2}%, quantized {:.2}%\n",
            s.float.samples,
            100.0 * a,
            100.0 * b
        ));
    }
    if let Some(agreement) = s.quantized.agreement {
        out.push_str(&format!("quantized vs float: same class on {:.2}% of samples\n", 100.0 * agreement));
    }
    out.push_str(&format!("quantized vs float: max |difference| of output 0 {:.4e}\n", s.quantized.max_abs_diff));
    out
}
