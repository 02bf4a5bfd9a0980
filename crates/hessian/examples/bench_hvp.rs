//! Benchmark: one Hessian-vector product through the executor against gradient steps, on a
//! zoo model with a synthetic batch (eval mode, cross-entropy, CPU). Times, as medians:
//! `grad` (forward + backward), `hvp_fresh` (forward, backward with its graph, and the
//! product: what a product on a new batch costs) and `hvp_cached` (one more product from a
//! kept graph, as Hutchinson and power iteration on one batch take them). Prints one JSON line.
//!
//! `cargo run --release -p oto-hessian --example bench_hvp -- MODEL.onnx --batch B [--reps N] [--threads T]`

use oto_testkit::bench::{arg, bench_line};
use oto_torch::exec::{Executor, Mode};
use oto_torch::hessian::Curvature;
use oto_torch::loss::Loss;
use std::time::Instant;
use tch::{Device, Tensor};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().ok_or_else(|| anyhow::anyhow!("usage: bench_hvp MODEL.onnx --batch B [--reps N] [--threads T]"))?;
    let (batch, reps, threads) = (arg(&args, "--batch", 16) as i64, arg(&args, "--reps", 5), arg(&args, "--threads", 2));
    oto_torch::train::set_threads(Some(threads));
    tch::manual_seed(0);
    let model = oto_onnx::Model::load(path)?;
    let exec = Executor::new(&model, Device::Cpu)?;
    let data = oto_torch::data::synthetic_batch(&exec, batch)?;
    let labels = data.labels.as_ref().ok_or_else(|| anyhow::anyhow!("no labels"))?;
    let ce = Loss::CrossEntropy { label_smoothing: 0.0 };
    let params: Vec<Tensor> = exec.trainable().map(|p| p.tensor.shallow_clone()).collect();
    let v: Vec<Tensor> = params.iter().map(|p| Tensor::randn(p.size(), (p.kind(), p.device()))).collect();
    let (mut grad, mut fresh, mut cached) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps + 1 {
        let start = Instant::now();
        let out = exec.forward(&data.inputs, Mode::Eval)?.remove(0);
        let g = Tensor::run_backward(&[ce.compute(&out, Some(labels), None)?], &params, false, false);
        let _ = g[0].sum(tch::Kind::Double).double_value(&[]);
        let t_grad = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let c = Curvature::new(&exec, None, &data, ce)?;
        let hv = c.hvp(&v)?;
        let _ = hv[0].sum(tch::Kind::Double).double_value(&[]);
        let t_fresh = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let hv = c.hvp(&v)?;
        let _ = hv[0].sum(tch::Kind::Double).double_value(&[]);
        let t_cached = start.elapsed().as_secs_f64();
        if rep > 0 {
            grad.push(t_grad);
            fresh.push(t_fresh);
            cached.push(t_cached);
        }
    }
    let (g, f, c) = (median(grad), median(fresh), median(cached));
    println!(
        "{{\"model\": {path:?}, \"batch\": {batch}, \"threads\": {threads}, \"grad_s\": {g:.5}, \"hvp_fresh_s\": {f:.5}, \"hvp_cached_s\": {c:.5}, \"hvp_fresh_over_two_grads\": {:.3}, \"hvp_fresh_over_grad\": {:.3}, \"hvp_cached_over_grad\": {:.3}}}",
        f / (2.0 * g),
        f / g,
        c / g
    );
    let name = format!("hvp {}", std::path::Path::new(path).file_stem().map(|s| s.to_string_lossy()).unwrap_or_default());
    bench_line(&name, "oto", "grad", g, "s");
    bench_line(&name, "oto", "hvp_fresh", f, "s");
    bench_line(&name, "oto", "hvp_cached", c, "s");
    Ok(())
}
