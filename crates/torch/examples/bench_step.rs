//! Benchmark: training step time (forward + backward + SGD-momentum step) of a zoo model on
//! the oto executor, for comparison with `bench/torch_step.py` (PyTorch eager, same model,
//! batch and threads). Prints one JSON line: median step seconds and peak RSS, and the same
//! as `BENCH {json}` lines for `bench/report.py` (name `step STEM`, impl `oto`).
//!
//! `cargo run --release -p oto-torch --example bench_step -- MODEL.onnx --batch B [--steps N] [--threads T] [--device D]`

use oto_testkit::bench::{arg, bench_line, peak_rss_bytes};
use oto_torch::exec::{Executor, Mode};
use oto_torch::loss::Loss;
use oto_torch::optim::{Optimizer, OptimizerConfig};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().ok_or_else(|| anyhow::anyhow!("usage: bench_step MODEL.onnx --batch B [--steps N] [--threads T]"))?;
    let (batch, steps, threads) = (arg(&args, "--batch", 16) as i64, arg(&args, "--steps", 20), arg(&args, "--threads", 2));
    let device = args.iter().position(|a| a == "--device").and_then(|i| args.get(i + 1)).map_or("cpu", String::as_str);
    let device = oto_torch::parse_device(device)?;
    oto_torch::train::set_threads(Some(threads));
    tch::manual_seed(0);
    let model = oto_onnx::Model::load(path)?;
    let exec = Executor::new(&model, device)?;
    let oto_torch::data::Batch { inputs, labels } = oto_torch::data::synthetic_batch(&exec, batch)?.to_device(device);
    let labels = labels.ok_or_else(|| anyhow::anyhow!("no labels"))?;
    let mut optimizer =
        Optimizer::new(OptimizerConfig::parse("sgd")?, exec.trainable().map(|p| (p.name.clone(), p.tensor.shallow_clone())).collect())?;
    let loss_fn = Loss::CrossEntropy { label_smoothing: 0.0 };
    let mut times = Vec::new();
    for step in 0..steps + 3 {
        let start = Instant::now();
        let out = exec.forward(&inputs, Mode::Train)?.remove(0);
        let loss = loss_fn.compute(&out, Some(&labels), None)?;
        optimizer.zero_grad();
        loss.backward();
        optimizer.step(0.01)?;
        // Reading the loss waits for the device (CUDA runs asynchronously).
        let _ = loss.double_value(&[]);
        if step >= 3 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let (median, peak) = (times[times.len() / 2], peak_rss_bytes().unwrap_or(0));
    println!("{{\"impl\": \"oto\", \"median_step_s\": {median:.6}, \"peak_rss\": {peak}}}");
    let name = format!("step {}", std::path::Path::new(path).file_stem().map(|s| s.to_string_lossy()).unwrap_or_default());
    bench_line(&name, "oto", "median_step", median, "s");
    bench_line(&name, "oto", "peak_rss", peak as f64, "B");
    Ok(())
}
