//! Benchmark: training step time with HESSO against the plain base optimizer (SGD momentum
//! 0.9) over a whole pruning schedule. Two executors are built from the same ONNX file and
//! trained on the same fixed batch; their steps alternate (step i of one, then step i of the
//! other, the order swapped every step) so that machine noise hits both alike.
//!
//! The schedule over `--steps N` timed steps (after 3 untimed warm-up steps of each): pruning
//! starts at timed step N/6, decays over N/2 steps in 3 periods to 50% group sparsity, then
//! holds the pruned elements at zero until the end. Prints the mean and median step time of
//! each over the whole schedule, the ratio HESSO/plain, the same for the optimizer call alone,
//! per phase of the schedule (warm-up, period starts where HESSO scores, decay, holding
//! zeros), and the mean with each phase's median in place of its steps (robust to the bursts
//! of a shared machine); then, after the schedule, optimizer calls alone on the last gradients
//! (HESSO's holding cost without forward/backward noise) and `Hesso::scores` alone. Fails if
//! the schedule does not end with exactly its target count of elements held at zero. Also
//! prints `BENCH {json}` lines for `bench/report.py`.
//!
//! `cargo run --release -p oto-optim --example bench_hesso -- MODEL.onnx --batch B [--steps N] [--threads T]`

use oto_optim::{Hesso, HessoConfig};
use oto_testkit::bench::{arg, bench_line};
use oto_torch::exec::{Executor, Mode};
use oto_torch::loss::Loss;
use oto_torch::optim::{Optimizer, OptimizerConfig};
use std::path::Path;
use std::time::Instant;
use tch::{Device, Tensor};

const WARMUP: u64 = 3;
const LR: f64 = 0.01;

/// What the benchmark steps: the plain base optimizer or HESSO.
trait Stepper {
    fn zero_grad(&mut self);
    fn step(&mut self, lr: f64) -> anyhow::Result<()>;
}

impl Stepper for Optimizer {
    fn zero_grad(&mut self) {
        Optimizer::zero_grad(self);
    }
    fn step(&mut self, lr: f64) -> anyhow::Result<()> {
        Ok(Optimizer::step(self, lr)?)
    }
}

impl Stepper for Hesso {
    fn zero_grad(&mut self) {
        Hesso::zero_grad(self);
    }
    fn step(&mut self, lr: f64) -> anyhow::Result<()> {
        Ok(Hesso::step(self, lr)?)
    }
}

/// Wall seconds of one training step (forward, loss, backward, optimizer), and of the
/// optimizer call alone.
fn timed_step(exec: &Executor, inputs: &[Tensor], labels: &Tensor, optimizer: &mut dyn Stepper) -> anyhow::Result<(f64, f64)> {
    let start = Instant::now();
    let out = exec.forward(inputs, Mode::Train)?.remove(0);
    let loss = Loss::CrossEntropy { label_smoothing: 0.0 }.compute(&out, Some(labels), None)?;
    optimizer.zero_grad();
    loss.backward();
    let opt_start = Instant::now();
    optimizer.step(LR)?;
    let opt = opt_start.elapsed().as_secs_f64();
    let _ = loss.double_value(&[]);
    Ok((start.elapsed().as_secs_f64(), opt))
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: bench_hesso MODEL.onnx --batch B [--steps N] [--threads T]";
    let path = args.first().filter(|a| !a.starts_with("--")).ok_or_else(|| anyhow::anyhow!(usage))?;
    let (batch, steps, threads) = (arg(&args, "--batch", 16) as i64, arg(&args, "--steps", 60) as u64, arg(&args, "--threads", 2));
    anyhow::ensure!(steps >= 12, "--steps must be at least 12 (a schedule of 3 periods needs room)");
    let name = Path::new(path).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    oto_torch::train::set_threads(Some(threads));
    tch::manual_seed(0);

    let model = oto_onnx::Model::load(path)?;
    let analysis = oto_graph::analyze(&model, &oto_graph::AnalyzeOptions::default())?;
    let plain_exec = Executor::new(&model, Device::Cpu)?;
    let hesso_exec = Executor::new(&model, Device::Cpu)?;
    let oto_torch::data::Batch { inputs, labels } = oto_torch::data::synthetic_batch(&plain_exec, batch)?;
    let labels = labels.ok_or_else(|| anyhow::anyhow!("no labels"))?;

    let sgd = OptimizerConfig::parse("sgd")?;
    let mut plain = Optimizer::new(sgd, plain_exec.trainable().map(|p| (p.name.clone(), p.tensor.shallow_clone())).collect())?;
    let periods = 3;
    let config = HessoConfig {
        target_group_sparsity: 0.5,
        start_pruning_step: WARMUP + steps / 6,
        pruning_steps: steps / 2,
        pruning_periods: periods,
        ..HessoConfig::default()
    };
    let mut hesso = Hesso::from_executor(&hesso_exec, &analysis, sgd, config)?;
    let period = config.period_steps();

    let (mut plain_times, mut hesso_times) = (Vec::new(), Vec::new());
    for i in 0..WARMUP + steps {
        let (p, h) = if i % 2 == 0 {
            let p = timed_step(&plain_exec, &inputs, &labels, &mut plain)?;
            (p, timed_step(&hesso_exec, &inputs, &labels, &mut hesso)?)
        } else {
            let h = timed_step(&hesso_exec, &inputs, &labels, &mut hesso)?;
            (timed_step(&plain_exec, &inputs, &labels, &mut plain)?, h)
        };
        if i >= WARMUP {
            plain_times.push(p);
            hesso_times.push(h);
        }
    }
    anyhow::ensure!(hesso.schedule_done(), "the schedule did not finish within {steps} steps");
    let metrics = hesso.metrics()?;
    anyhow::ensure!(
        metrics.pruned == hesso.target_count(),
        "{} elements held at zero, the schedule's target is {}",
        metrics.pruned,
        hesso.target_count()
    );

    // Each timed step's part of the schedule: where HESSO's extra work differs.
    let first = steps / 6;
    let phase_of = |i: u64| match i.checked_sub(first) {
        None => "warm-up",
        Some(k) if k < period * periods && k % period == 0 => "period start (scoring)",
        Some(k) if k < period * periods => "decay",
        Some(_) => "holding zeros",
    };
    let phases: Vec<&str> = (0..steps).map(phase_of).collect();
    let column = |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| v.iter().map(f).collect::<Vec<f64>>();
    let (plain_step, hesso_step) = (column(&plain_times, |t| t.0), column(&hesso_times, |t| t.0));
    let (plain_opt, hesso_opt) = (column(&plain_times, |t| t.1), column(&hesso_times, |t| t.1));
    let in_phase = |v: &[f64], phase: &str| v.iter().zip(&phases).filter(|(_, p)| **p == phase).map(|(t, _)| *t).collect::<Vec<f64>>();
    let at_starts = |v: &[f64]| in_phase(v, "period start (scoring)");
    let phase_names = ["warm-up", "period start (scoring)", "decay", "holding zeros"];
    // The schedule's mean with each phase's median in place of its steps: what the mean
    // would be without the bursts of a shared machine (a phase's steps do the same work).
    let robust_mean =
        |v: &[f64]| phase_names.iter().map(|ph| median(&in_phase(v, ph)) * in_phase(v, ph).len() as f64).sum::<f64>() / v.len() as f64;

    println!(
        "{name}: batch {batch}, {threads} threads, {steps} timed steps (pruning from step {} over {} steps in {periods} periods, \
         then holding); {} of {} elements pruned, group sparsity {:.3}",
        steps / 6,
        steps / 2,
        metrics.pruned,
        hesso.total_elements(),
        metrics.group_sparsity
    );
    let row = |what: &str, plain: f64, hesso: f64| {
        println!("  {what:<34} plain {:>9.3} ms  hesso {:>9.3} ms  ratio {:.3}", plain * 1e3, hesso * 1e3, hesso / plain);
    };
    row("step, mean over the schedule", mean(&plain_step), mean(&hesso_step));
    row("step, median over the schedule", median(&plain_step), median(&hesso_step));
    row("step, mean of the phase medians", robust_mean(&plain_step), robust_mean(&hesso_step));
    row("optimizer call, mean", mean(&plain_opt), mean(&hesso_opt));
    row("optimizer call, median", median(&plain_opt), median(&hesso_opt));
    for phase in phase_names {
        let count = phases.iter().filter(|p| **p == phase).count();
        println!("  {phase} ({count} steps):");
        row("  step, mean", mean(&in_phase(&plain_step, phase)), mean(&in_phase(&hesso_step, phase)));
        row("  optimizer call, mean", mean(&in_phase(&plain_opt, phase)), mean(&in_phase(&hesso_opt, phase)));
    }

    // HESSO's own cost, isolated from the forward/backward noise: optimizer calls alone on
    // the last gradients (holding phase: base update + zeroing), and the scoring pass.
    let repeats = 50;
    let (mut plain_calls, mut hesso_calls) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        let start = Instant::now();
        plain.step(LR)?;
        plain_calls.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        hesso.step(LR)?;
        hesso_calls.push(start.elapsed().as_secs_f64());
    }
    let mut scoring = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let _ = hesso.scores()?;
        scoring.push(start.elapsed().as_secs_f64());
    }
    println!("  optimizer call alone, holding zeros ({repeats} alternating calls on the last gradients):");
    row("  median", median(&plain_calls), median(&hesso_calls));
    println!("  scoring pass alone (Hesso::scores, median of 5): {:.3} ms", median(&scoring) * 1e3);

    let bench = format!("hesso {name}");
    for (implementation, step, opt) in [("plain", &plain_step, &plain_opt), ("hesso", &hesso_step, &hesso_opt)] {
        bench_line(&bench, implementation, "mean_step", mean(step), "s");
        bench_line(&bench, implementation, "median_step", median(step), "s");
        bench_line(&bench, implementation, "phase_weighted_median_step", robust_mean(step), "s");
        bench_line(&bench, implementation, "mean_period_start_step", mean(&at_starts(step)), "s");
        bench_line(&bench, implementation, "mean_optimizer_call", mean(opt), "s");
    }
    bench_line(&bench, "hesso", "group_sparsity", metrics.group_sparsity, "");
    bench_line(&bench, "plain", "median_holding_call", median(&plain_calls), "s");
    bench_line(&bench, "hesso", "median_holding_call", median(&hesso_calls), "s");
    bench_line(&bench, "hesso", "median_scores", median(&scoring), "s");
    Ok(())
}
