//! `oto eval`: loss and metric of any ONNX model on a data file, in eval mode.

use crate::error::{classify, input_error};
use anyhow::Result;
use oto_torch::loss::Loss;
use std::path::PathBuf;

/// Arguments of `oto eval`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  oto eval model.onnx --data examples/data/digits_test.npz
      loss and accuracy on the test split (cross-entropy against `labels`)
  oto eval regressor.onnx --data val.safetensors --loss mse --device cuda
  oto eval bert/model.onnx --text test.tsv
      raw text with a tab-separated label column, tokenized by bert/tokenizer.json
  oto eval resnet.onnx --images photos/ --val-split 0.1 --seed 0
      the held-out tenth of an image folder (the split `oto prune --val-split 0.1 --seed 0` holds out)

The data file holds one array per model input, named like the input (a model with a
single input also accepts `x`), plus `labels` (or `y`).")]
pub struct Args {
    /// The ONNX model file.
    pub model: PathBuf,
    /// The data file (.npz or .safetensors); or --text / --images.
    #[arg(long, value_name = "FILE", required_unless_present_any = ["text", "images"])]
    pub data: Option<PathBuf>,
    /// Raw text or image folders instead of --data.
    #[command(flatten)]
    pub data_args: super::data::DataArgs,
    /// Seed of the --val-split choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Samples per batch.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// The loss: cross-entropy, mse or bce.
    #[arg(long, default_value = "cross-entropy")]
    pub loss: String,
    /// Where to run: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `oto eval`.
pub fn run(args: &Args) -> Result<()> {
    let loss = Loss::parse(&args.loss).map_err(classify)?;
    if matches!(loss, Loss::Distill { .. }) {
        return Err(input_error(anyhow::anyhow!("--loss distill needs a teacher model; use cross-entropy, mse or bce with eval")));
    }
    oto_torch::train::set_threads(args.threads);
    let batch = usize::try_from(args.batch_size).unwrap_or(usize::MAX);
    let device = oto_torch::parse_device(&args.device).map_err(input_error)?;
    let spec = args.data_args.apply(crate::job::config::JobSpec { data: args.data.clone(), ..Default::default() });
    let (data, format) = spec.data_source().map_err(input_error)?;
    let (model, summary) = crate::model_file::load_model(&args.model)?;
    crate::model_file::check_fixed_batch(&args.model, &summary, Some(batch))?;
    let report = oto_torch::train::eval_model(&model, &data, &format, args.seed, batch, device, loss).map_err(classify)?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "model": args.model, "data": data, "samples": report.samples, "loss": report.loss, "accuracy": report.accuracy })
        );
    } else {
        println!("samples   {}", report.samples);
        println!("loss      {:.6}", report.loss);
        if let Some(acc) = report.accuracy {
            println!("accuracy  {:.2}%", 100.0 * acc);
        }
    }
    Ok(())
}
