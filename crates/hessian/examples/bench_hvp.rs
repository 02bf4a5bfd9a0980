//! Benchmark: one Hessian-vector product through the executor against gradient steps, on a
//! zoo model with a synthetic batch (eval mode, cross-entropy, CPU). Times, as medians:
//! `grad` (forward + backward), `hvp_fresh` (forward, backward with its graph, and the
//! product: what a product on a new batch costs) and `hvp_cached` (one more product from a
//! kept graph, as Hutchinson and power iteration on one batch take them). Then Hutchinson
//! over `--batches` batches (`--samples` samples, no early stop), per sample: `hutch_single`
//! with one product at a time (every product rebuilds every batch's graph) and
//! `hutch_shared` as [`oto_hessian::hutchinson`] takes them (each batch's graph shared by
//! several directions); both over the time of one gradient per batch. Prints one JSON line,
//! then one with the Hutchinson samples each layer's trace needs for a 5% relative standard
//! error, from `--trace-samples` samples (default 30) on the first batch (cross-entropy, or
//! with `--distill` distillation from the model itself: the Gauss-Newton curvature).
//!
//! `cargo run --release -p oto-hessian --example bench_hvp -- MODEL.onnx --batch B [--reps N] [--threads T] [--batches K] [--samples S] [--cpu] [--trace-samples N] [--distill]`
//!
//! `--cpu` (with `--threads 1`) times the CPU time of the thread instead of the wall time.

use oto_hessian::{hutchinson, layer_blocks, HessianOperator, TraceConfig};
use oto_testkit::bench::{arg, bench_line};
use oto_torch::exec::{Executor, Mode};
use oto_torch::hessian::Curvature;
use oto_torch::loss::Loss;
use tch::{Device, Tensor};

/// Wall time, or with `--cpu` the CPU time of this thread (/proc/thread-self/schedstat; with
/// `--threads 1` libtorch computes in the calling thread): on a loaded machine the CPU time
/// is what the work costs, the wall time also what the other processes took.
struct Clock {
    cpu: bool,
    origin: std::time::Instant,
}

impl Clock {
    fn now(&self) -> f64 {
        if self.cpu {
            let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
            stat.split_whitespace().next().and_then(|ns| ns.parse::<f64>().ok()).map_or(f64::NAN, |ns| ns * 1e-9)
        } else {
            self.origin.elapsed().as_secs_f64()
        }
    }

    fn since(&self, start: f64) -> f64 {
        self.now() - start
    }
}

/// The fastest repetition: on a shared machine the noise only adds.
fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().ok_or_else(|| anyhow::anyhow!("usage: bench_hvp MODEL.onnx --batch B [--reps N] [--threads T]"))?;
    let (batch, reps, threads) = (arg(&args, "--batch", 16) as i64, arg(&args, "--reps", 5), arg(&args, "--threads", 2));
    let (batches, samples) = (arg(&args, "--batches", 2), arg(&args, "--samples", 8));
    let cpu = args.iter().any(|a| a == "--cpu");
    if cpu && threads != 1 {
        anyhow::bail!("--cpu measures this thread's CPU time: it needs --threads 1");
    }
    let clock = Clock { cpu, origin: std::time::Instant::now() };
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
        let start = clock.now();
        let out = exec.forward(&data.inputs, Mode::Eval)?.remove(0);
        let g = Tensor::run_backward(&[ce.compute(&out, Some(labels), None)?], &params, false, false);
        let _ = g[0].sum(tch::Kind::Double).double_value(&[]);
        let t_grad = clock.since(start);
        let start = clock.now();
        let c = Curvature::new(&exec, None, &data, ce)?;
        let hv = c.hvp(&v)?;
        let _ = hv[0].sum(tch::Kind::Double).double_value(&[]);
        let t_fresh = clock.since(start);
        let start = clock.now();
        let hv = c.hvp(&v)?;
        let _ = hv[0].sum(tch::Kind::Double).double_value(&[]);
        let t_cached = clock.since(start);
        if rep > 0 {
            grad.push(t_grad);
            fresh.push(t_fresh);
            cached.push(t_cached);
        }
    }
    let (gm, fm, cm) = (min(&grad), min(&fresh), min(&cached));
    let (g, f, c) = (median(grad), median(fresh), median(cached));
    // Hutchinson over several batches: the same directions one at a time, then shared.
    let sets: Vec<_> = (0..batches).map(|_| oto_torch::data::synthetic_batch(&exec, batch)).collect::<oto_torch::error::Result<_>>()?;
    let mut op = HessianOperator::new(&exec, None, sets, ce)?;
    let config = TraceConfig { tolerance: 0.0, min_samples: samples, max_samples: samples, seed: 0 };
    let (mut single, mut shared) = (Vec::new(), Vec::new());
    for _ in 0..reps.div_ceil(2).max(1) {
        // Directions drawn outside the clock (hutchinson's time includes its drawing and sums).
        let vs: Vec<Vec<Tensor>> =
            (0..samples).map(|_| params.iter().map(|p| Tensor::randn(p.size(), (p.kind(), p.device())).sign()).collect()).collect();
        let start = clock.now();
        for v in &vs {
            let hv = op.hvp(v)?;
            let _ = hv[0].sum(tch::Kind::Double).double_value(&[]);
        }
        single.push(clock.since(start) / samples as f64);
        let start = clock.now();
        let h = hutchinson(&mut op, &[], &config, |_| {})?;
        let _ = h.total.trace;
        shared.push(clock.since(start) / samples as f64);
    }
    let (hs, hh) = (min(&single), min(&shared));
    let per_pass = op.directions_per_pass();
    let nb = batches as f64;
    println!(
        "{{\"model\": {path:?}, \"batch\": {batch}, \"threads\": {threads}, \"clock\": \"{}\", \"grad_s\": {g:.5}, \"hvp_fresh_s\": {f:.5}, \"hvp_cached_s\": {c:.5}, \"hvp_fresh_over_two_grads\": {:.3}, \"hvp_fresh_over_grad\": {:.3}, \"hvp_cached_over_grad\": {:.3}, \"grad_min_s\": {gm:.5}, \"hvp_fresh_min_s\": {fm:.5}, \"hvp_cached_min_s\": {cm:.5}, \"min_hvp_fresh_over_grad\": {:.3}, \"min_hvp_cached_over_grad\": {:.3}, \"batches\": {batches}, \"samples\": {samples}, \"directions_per_pass\": {per_pass}, \"hutch_single_per_sample_min_s\": {hs:.5}, \"hutch_shared_per_sample_min_s\": {hh:.5}, \"hutch_single_over_grads\": {:.3}, \"hutch_shared_over_grads\": {:.3}}}",
        if cpu { "thread cpu" } else { "wall" },
        f / (2.0 * g),
        f / g,
        c / g,
        fm / gm,
        cm / gm,
        hs / (nb * gm),
        hh / (nb * gm),
    );
    // Samples for a 5% relative standard error, per layer (the whole trace's too).
    let trace_samples = arg(&args, "--trace-samples", 30).max(2);
    // --distill: the distillation loss against the model itself (what `oto hessian` takes
    // without labels), whose Hessian at these weights is the Gauss-Newton matrix (PSD).
    let distill = args.iter().any(|a| a == "--distill");
    let (teacher, loss) = if distill { (Some(&exec), Loss::Distill { temperature: 1.0 }) } else { (None, ce) };
    let mut op = HessianOperator::new(&exec, teacher, vec![data], loss)?;
    let layers = layer_blocks(&op, &model)?;
    let config = TraceConfig { tolerance: 0.0, min_samples: trace_samples, max_samples: trace_samples, seed: 1 };
    let h = hutchinson(&mut op, &[&layers], &config, |_| {})?;
    let mut need: Vec<f64> = h.blocks[0].iter().filter_map(|e| e.samples_for_5pct).collect();
    need.sort_by(f64::total_cmp);
    let per_layer: Vec<String> = h.blocks[0]
        .iter()
        .map(|e| format!("[{:?}, {:.4e}, {:.4e}, {:.0}]", e.name, e.trace, e.std_error, e.samples_for_5pct.unwrap_or(f64::NAN)))
        .collect();
    println!(
        "{{\"model\": {path:?}, \"loss\": \"{loss}\", \"trace_samples\": {trace_samples}, \"total_samples_for_5pct\": {:.0}, \"layers\": {}, \"layer_samples_for_5pct_median\": {:.0}, \"layer_samples_for_5pct_max\": {:.0}, \"per_layer_name_trace_se_samples\": [{}]}}",
        h.total.samples_for_5pct.unwrap_or(f64::NAN),
        h.blocks[0].len(),
        need.get(need.len() / 2).copied().unwrap_or(f64::NAN),
        need.last().copied().unwrap_or(f64::NAN),
        per_layer.join(", ")
    );
    let name = format!("hvp {}", std::path::Path::new(path).file_stem().map(|s| s.to_string_lossy()).unwrap_or_default());
    bench_line(&name, "oto", "grad", g, "s");
    bench_line(&name, "oto", "hvp_fresh", f, "s");
    bench_line(&name, "oto", "hvp_cached", c, "s");
    bench_line(&name, "oto", "hutch_single_per_sample", hs, "s");
    bench_line(&name, "oto", "hutch_shared_per_sample", hh, "s");
    Ok(())
}
