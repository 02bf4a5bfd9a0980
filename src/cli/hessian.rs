//! `oto hessian`: second-order information of a model's loss on a data file (per-layer and
//! per-group Hessian traces by Hutchinson's estimator, the top eigenvalues by power
//! iteration, and the SGD stability bound 2 / lambda_max), with `oto_hessian`.

use crate::error::{classify, input_error};
use crate::plot;
use anyhow::{anyhow, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use oto_graph::AnalyzeOptions;
use oto_hessian::{group_blocks, hutchinson, layer_blocks, slq, top_eigenvalues, HessianOperator, TraceConfig, TraceEstimate};
use oto_torch::data::images::Part;
use oto_torch::data::Dataset;
use oto_torch::exec::Executor;
use oto_torch::loss::Loss;
use std::io::IsTerminal;
use std::path::PathBuf;

/// Arguments of `oto hessian`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  oto hessian graphs/zoo/demo_cnn.onnx --data examples/data/digits_train.npz --lr 0.05
      per-layer and per-group traces, the top eigenvalue and whether lr 0.05 is below 2/lambda
  oto hessian model.onnx --data tokens.npz --batches 8 --json hessian.json --plot traces.png --slq 4
      unlabeled data: the loss is distillation from the model itself (its Gauss-Newton curvature)

The Hessian is that of the mean loss over the first --batches batches of the data, with the
model in eval mode (BatchNorm running statistics, no Dropout). Traces are Hutchinson
estimates with their standard error; more --samples shrink it as 1/sqrt(samples).")]
pub struct Args {
    /// The ONNX model file.
    pub model: PathBuf,
    /// The data file (.npz or .safetensors), as for `oto prune`; or --text / --images.
    #[arg(long, value_name = "FILE", required_unless_present_any = ["text", "images"])]
    pub data: Option<PathBuf>,
    /// Raw text or image folders instead of --data (as for `oto prune`).
    #[command(flatten)]
    pub data_args: super::data::DataArgs,
    /// Batches of the data the Hessian is measured on (the first ones, in order).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    pub batches: u64,
    /// Samples per batch.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// The loss: cross-entropy, mse, bce or distill (default: cross-entropy with labels, distill without).
    #[arg(long)]
    pub loss: Option<String>,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a bar chart of the per-layer traces to this PNG file.
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// A learning rate to compare with the stability bound 2 / lambda_max.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Most Hutchinson samples (Hessian-vector products) for the traces.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(2..))]
    pub samples: u64,
    /// Stop sampling once the standard error of the total trace is at most this fraction of it.
    #[arg(long, default_value_t = 0.05)]
    pub tolerance: f64,
    /// Eigenvalues to find (largest magnitude first).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub top_k: u64,
    /// Most power iterations per eigenvalue.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: u64,
    /// Also estimate the spectral density by stochastic Lanczos quadrature with this many
    /// runs (written to the JSON as `density`: Ritz values and weights per run).
    #[arg(long, value_name = "RUNS", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub slq: Option<u64>,
    /// Lanczos steps (Hessian-vector products) per --slq run.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(2..=200))]
    pub slq_steps: u64,
    /// Seed of the random vectors.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to run: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Relative tolerance of the power iteration's Rayleigh quotient.
const EIGEN_TOLERANCE: f64 = 1e-4;

fn positive(name: &str, value: f64) -> Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(input_error(anyhow!("{name} {value}: must be a positive number")))
    }
}

/// Runs `oto hessian`.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let lr = args.lr.map(|lr| positive("--lr", lr)).transpose()?;
    if !(args.tolerance.is_finite() && args.tolerance >= 0.0) {
        return Err(input_error(anyhow!("--tolerance {}: must be a number >= 0", args.tolerance)));
    }
    if let Some(p) = &args.plot {
        if !p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
            return Err(input_error(anyhow!("--plot {}: the chart is a PNG image; give a file name ending in .png", p.display())));
        }
    }
    oto_torch::train::set_threads(args.threads);
    let device = oto_torch::parse_device(&args.device).map_err(input_error)?;
    let (model, summary) = crate::model_file::load_model(&args.model)?;
    crate::model_file::check_fixed_batch(&args.model, &summary, Some(usize::try_from(args.batch_size).unwrap_or(usize::MAX)))?;
    let exec = Executor::first_pass(&model, device).map_err(classify)?;
    let inputs: Vec<_> = exec.inputs().cloned().collect();
    let spec = args.data_args.apply(crate::job::config::JobSpec { data: args.data.clone(), ..Default::default() });
    let (data_path, format) = spec.data_source().map_err(input_error)?;
    let data = Dataset::open(&data_path, &format, &model, &inputs, Part::All, args.seed).map_err(classify)?;
    let loss = match args.loss.as_deref() {
        Some(name) => Loss::parse(name).map_err(classify)?,
        None => crate::job::quantize::curvature_loss(&data),
    };
    if loss.needs_labels() && data.labels.is_none() {
        return Err(input_error(anyhow!(
            "{}: the {loss} loss needs labels, but the data has no `labels` (or `y`) array; add labels, or use --loss distill",
            data_path.display()
        )));
    }
    oto_torch::train::check_labels(&exec, &data, loss).map_err(classify)?;
    let teacher = match loss {
        Loss::Distill { .. } => Some(Executor::first_pass(&model, device).map_err(classify)?),
        _ => None,
    };
    let batch_size = usize::try_from(args.batch_size).unwrap_or(usize::MAX);
    let batches = oto_torch::train::first_batches(&data, data.len, batch_size, args.batches).map_err(classify)?;
    let count = batches.len() as u64;
    let samples_used: usize = batches.iter().map(|b| b.len()).sum();
    let analysis = oto_graph::analyze(&model, &AnalyzeOptions::default()).map_err(input_error)?;

    let mut op = HessianOperator::new(&exec, teacher.as_ref(), batches, loss).map_err(classify)?;
    let layers = layer_blocks(&op, &model).map_err(classify)?;
    let groups = group_blocks(&op, &analysis);
    let max_samples = usize::try_from(args.samples).unwrap_or(usize::MAX);
    let iterations = usize::try_from(args.iterations).unwrap_or(usize::MAX);
    let top_k = usize::try_from(args.top_k).unwrap_or(1);

    let bar = if quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let total = args.samples.saturating_add(args.top_k.saturating_mul(args.iterations));
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} {bar:30.cyan/blue} {pos}/{len} Hessian-vector products  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    };
    bar.set_message("Hutchinson traces");
    let config = TraceConfig { tolerance: args.tolerance, min_samples: 10.min(max_samples), max_samples, seed: args.seed };
    let traces = hutchinson(&mut op, &[&layers, &groups], &config, |_| bar.inc(1)).map_err(classify)?;
    bar.set_position(traces.samples as u64);
    bar.set_length(traces.samples as u64 + args.top_k.saturating_mul(args.iterations));
    bar.set_message("power iteration");
    let before = op.products();
    let eigen = top_eigenvalues(&mut op, top_k, iterations, EIGEN_TOLERANCE, args.seed).map_err(classify)?;
    bar.inc((op.products() - before) as u64);
    let density = match args.slq {
        Some(runs) => {
            bar.set_message("stochastic Lanczos quadrature");
            bar.inc_length(runs.saturating_mul(args.slq_steps));
            let steps = usize::try_from(args.slq_steps).unwrap_or(usize::MAX);
            Some(slq(&mut op, usize::try_from(runs).unwrap_or(1), steps, args.seed).map_err(classify)?)
        }
        None => None,
    };
    bar.finish_and_clear();

    let lambda = eigen.first().map_or(f64::NAN, |e| e.value);
    let bound = (lambda > 0.0).then(|| 2.0 / lambda);
    let layer_estimates = &traces.blocks[0];
    let group_estimates = &traces.blocks[1];
    let per_param = |e: &TraceEstimate| e.trace / e.params.max(1) as f64;
    let json_estimates = |list: &[TraceEstimate]| -> Vec<serde_json::Value> {
        list.iter()
            .map(|e| {
                serde_json::json!({
                    "name": e.name, "params": e.params, "trace": e.trace, "std_error": e.std_error,
                    "trace_per_param": per_param(e), "samples_for_5pct": e.samples_for_5pct,
                })
            })
            .collect()
    };
    let report = serde_json::json!({
        "model": args.model,
        "data": data_path,
        "loss": loss.to_string(),
        "batches": count,
        "data_samples": samples_used,
        "mean_loss": op.loss(),
        "hutchinson": { "samples": traces.samples, "converged": traces.converged, "tolerance": args.tolerance },
        "total": json_estimates(std::slice::from_ref(&traces.total))[0],
        "layers": json_estimates(layer_estimates),
        "groups": json_estimates(group_estimates),
        "eigenvalues": eigen,
        "stability": { "lambda_max": lambda, "lr_bound": bound, "lr": lr, "stable": lr.zip(bound).map(|(lr, b)| lr <= b) },
        "density": density,
        "hessian_vector_products": op.products(),
    });
    if let Some(path) = &args.json {
        crate::output::write_json(path, &report)?;
    }
    if let Some(path) = &args.plot {
        let bars = plot::Bars {
            title: format!("Hessian trace per layer ({} Hutchinson samples)", traces.samples),
            x_label: "trace".into(),
            bars: layer_estimates.iter().map(|e| (e.name.clone(), e.trace)).collect(),
            color: plot::PALETTE[0],
        };
        let png = plot::render_bars_png(&bars, 900).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        crate::output::write_atomic(path, &png)?;
    }
    if !quiet {
        print_report(&traces, &eigen, loss, count, samples_used, lr, bound);
    }
    Ok(())
}

fn print_report(
    traces: &oto_hessian::Hutchinson,
    eigen: &[oto_hessian::Eigenvalue],
    loss: Loss,
    batches: u64,
    samples: usize,
    lr: Option<f64>,
    bound: Option<f64>,
) {
    let t = &traces.total;
    println!(
        "Hessian of the {loss} loss over {batches} batch(es), {samples} samples; {} Hutchinson samples{}",
        traces.samples,
        if traces.converged { "" } else { " (sample cap reached)" }
    );
    println!(
        "total trace {:.6e} +- {:.2e} over {} parameters ({:.3e} per parameter)",
        t.trace,
        t.std_error,
        t.params,
        t.trace / t.params.max(1) as f64
    );
    for (title, list) in [("layer", &traces.blocks[0]), ("group", &traces.blocks[1])] {
        let width = list.iter().map(|e| e.name.len()).max().unwrap_or(5).max(title.len());
        println!("\n{title:<width$}  {:>10}  {:>12}  {:>10}  {:>12}", "params", "trace", "std error", "trace/param");
        for e in list.iter() {
            println!(
                "{:<width$}  {:>10}  {:>12.4e}  {:>10.2e}  {:>12.4e}",
                e.name,
                e.params,
                e.trace,
                e.std_error,
                e.trace / e.params.max(1) as f64
            );
        }
    }
    println!();
    for (i, e) in eigen.iter().enumerate() {
        println!("eigenvalue {}: {:.6e} ({} iterations{})", i + 1, e.value, e.iterations, if e.converged { "" } else { ", not converged" });
    }
    match (bound, lr) {
        (Some(b), Some(lr)) => println!(
            "SGD stability bound 2/lambda_max = {b:.4e}: --lr {lr} is {}",
            if lr <= b { "stable (below the bound)" } else { "above the bound: plain SGD would diverge along the top eigenvector" }
        ),
        (Some(b), None) => println!("SGD stability bound 2/lambda_max = {b:.4e}"),
        (None, _) => println!("the eigenvalue of largest magnitude is not positive: no stability bound"),
    }
}
