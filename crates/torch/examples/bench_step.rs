//! Benchmark: training step time (forward + backward + SGD-momentum step) of a zoo model on
//! the oto executor, for comparison with `bench/torch_step.py` (PyTorch eager, same model,
//! batch and threads). Prints one JSON line: median step seconds and peak RSS, and the same
//! as `BENCH {json}` lines for `bench/report.py` (name `step STEM`, impl `oto`).
//!
//! `cargo run --release -p oto-torch --example bench_step -- MODEL.onnx --batch B [--steps N] [--threads T]`

use oto_torch::exec::{Executor, Mode};
use oto_torch::loss::Loss;
use oto_torch::optim::{Optimizer, OptimizerConfig};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok());
    kb.unwrap_or(0) * 1024
}

/// One machine-readable result line for `bench/report.py`.
fn bench_line(name: &str, metric: &str, value: f64, unit: &str) {
    let line = serde_json::json!({"name": name, "impl": "oto", "metric": metric, "value": value, "unit": unit});
    println!("BENCH {line}");
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().ok_or_else(|| anyhow::anyhow!("usage: bench_step MODEL.onnx --batch B [--steps N] [--threads T]"))?;
    let (batch, steps, threads) = (arg(&args, "--batch", 16) as i64, arg(&args, "--steps", 20), arg(&args, "--threads", 2));
    oto_torch::train::set_threads(Some(threads));
    tch::manual_seed(0);
    let model = oto_onnx::Model::load(path)?;
    let exec = Executor::new(&model, Device::Cpu)?;
    // Same input recipe as bench/torch_step.py: images N(0,1), token ids in [1, 1000), full masks.
    let inputs: Vec<Tensor> = exec
        .inputs()
        .map(|input| {
            let rest: Vec<i64> = input.dims.iter().flatten().skip(1).map(|d| d.unwrap_or(16)).collect();
            let shape: Vec<i64> = std::iter::once(batch).chain(rest).collect();
            match input.name.as_str() {
                "input_ids" => Tensor::randint_low(1, 1000, &shape, (Kind::Int64, Device::Cpu)),
                "attention_mask" => Tensor::ones(&shape, (Kind::Int64, Device::Cpu)),
                _ => Tensor::randn(&shape, (Kind::Float, Device::Cpu)),
            }
        })
        .collect();
    let probe = tch::no_grad(|| exec.forward(&inputs, Mode::Eval))?;
    let classes = probe[0].size().last().copied().unwrap_or(2);
    let labels = Tensor::randint(classes, [batch], (Kind::Int64, Device::Cpu));
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
        let _ = loss.double_value(&[]);
        if step >= 3 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let (median, peak) = (times[times.len() / 2], peak_rss_bytes());
    println!("{{\"impl\": \"oto\", \"median_step_s\": {median:.6}, \"peak_rss\": {peak}}}");
    let name = format!("step {}", std::path::Path::new(path).file_stem().map(|s| s.to_string_lossy()).unwrap_or_default());
    bench_line(&name, "median_step", median, "s");
    bench_line(&name, "peak_rss", peak as f64, "B");
    Ok(())
}
