//! HESSO against HESSO-CRIC on demo_cnn with the digits data, with the same total step
//! budget: for targets 0.7 and 0.8 and seeds 0, 1, 2, trains each through
//! `Trainer::<Hesso>` (SGD, cosine from 0.05, batch 32) and prints the test accuracies and
//! their means (dense training with the same steps as a reference).
//!
//! `cargo run --release -p oto-optim --example cric_compare [-- KEY=VALUE ...]` (needs
//! graphs/zoo/demo_cnn.onnx: `make graphs`). Keys: `steps` (300), `start`, `sampling`,
//! `cycles`, `hybrid` (default: `CricConfig::for_budget(steps)`), `tolerance` (0),
//! `probe_weight` (0.2), `threads` (2), `dense` (1: also train the dense reference; 0: skip it).

use oto_optim::{CricConfig, Hesso, HessoConfig};
use oto_torch::data::Dataset;
use oto_torch::exec::Executor;
use oto_torch::loss::Loss;
use oto_torch::optim::{Optimizer, OptimizerConfig, TrainingOptimizer};
use oto_torch::schedule::Schedule;
use oto_torch::train::{evaluate, set_threads, TrainConfig, Trainer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const LOSS: Loss = Loss::CrossEntropy { label_smoothing: 0.0 };
const TARGETS: [f64; 2] = [0.7, 0.8];
const SEEDS: [u64; 3] = [0, 1, 2];

struct Setup {
    root: PathBuf,
    steps: u64,
}

impl Setup {
    /// Trains demo_cnn with `optimizer` (built from the executor) and returns the test accuracy.
    fn run<O: TrainingOptimizer>(&self, seed: u64, optimizer: impl FnOnce(&Executor) -> anyhow::Result<O>) -> anyhow::Result<(f64, O)> {
        let model = oto_onnx::Model::load(self.root.join("graphs/zoo/demo_cnn.onnx"))?;
        let exec = Executor::new(&model, tch::Device::Cpu)?;
        let inputs: Vec<_> = exec.inputs().cloned().collect();
        let train = Dataset::load(&self.root.join("examples/data/digits_train.npz"), &inputs)?;
        let test = Dataset::load(&self.root.join("examples/data/digits_test.npz"), &inputs)?;
        let config = TrainConfig {
            steps: self.steps,
            batch_size: 32,
            optimizer: OptimizerConfig::parse("sgd")?,
            schedule: Schedule::parse("cosine", 0.05, 0, self.steps)?,
            loss: LOSS,
            clip_grad_norm: None,
            seed,
            checkpoint: None,
            checkpoint_every: 0,
        };
        let optimizer = optimizer(&exec)?;
        let mut trainer = Trainer::with_optimizer(exec, None, train, config, optimizer)?;
        trainer.run(|_| {})?;
        let accuracy = evaluate(&trainer.exec, None, &test, 256, LOSS)?.accuracy.unwrap_or(f64::NAN);
        Ok((accuracy, trainer.optimizer))
    }

    fn hesso(&self, seed: u64, config: HessoConfig) -> anyhow::Result<(f64, Hesso)> {
        let model = oto_onnx::Model::load(self.root.join("graphs/zoo/demo_cnn.onnx"))?;
        let analysis = oto_graph::analyze(&model, &oto_graph::AnalyzeOptions::default())?;
        let (accuracy, hesso) =
            self.run(seed, |exec| Ok(Hesso::from_executor(exec, &analysis, OptimizerConfig::parse("sgd")?, config)?))?;
        let m = hesso.metrics()?;
        anyhow::ensure!(m.pruned == hesso.target_count() && hesso.schedule_done(), "the schedule did not finish: {m:?}");
        Ok((accuracy, hesso))
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn main() -> anyhow::Result<()> {
    let args: HashMap<String, String> =
        std::env::args().skip(1).filter_map(|a| a.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect();
    let get = |key: &str| args.get(key).map(|v| v.parse::<f64>()).transpose();
    let steps = get("steps")?.map_or(300, |v| v as u64);
    set_threads(Some(get("threads")?.map_or(2, |v| v as usize)));
    let budget = CricConfig::for_budget(steps);
    let cric = CricConfig {
        start_cric_step: get("start")?.map_or(budget.start_cric_step, |v| v as u64),
        sampling_steps: get("sampling")?.map_or(budget.sampling_steps, |v| v as u64),
        max_cycles: get("cycles")?.map_or(budget.max_cycles, |v| v as u64),
        tolerance: get("tolerance")?.map_or(budget.tolerance, |v| v as usize),
        hybrid_training_steps: get("hybrid")?.map_or(budget.hybrid_training_steps, |v| v as u64),
        probe_weight: get("probe_weight")?.unwrap_or(budget.probe_weight),
    };
    anyhow::ensure!(
        cric.max_schedule_steps() <= steps,
        "the CRIC schedule ({} steps at most) does not fit in {steps}",
        cric.max_schedule_steps()
    );
    // Plain HESSO: the same warm-up, pruning over 40% of the run in 3 periods.
    let plain = |target: f64| HessoConfig {
        target_group_sparsity: target,
        start_pruning_step: steps / 5,
        pruning_steps: (steps * 2 / 5).max(3),
        pruning_periods: 3,
        ..HessoConfig::default()
    };
    let setup = Setup { root: Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."), steps };
    println!("demo_cnn on digits, {steps} steps, SGD cosine 0.05, batch 32");
    println!("HESSO: start {}, pruning {} steps in 3 periods", steps / 5, (steps * 2 / 5).max(3));
    println!("CRIC: {cric:?} (at most {} steps of schedule)", cric.max_schedule_steps());

    let mut dense = Vec::new();
    for seed in SEEDS.into_iter().filter(|_| args.get("dense").is_none_or(|v| v != "0")) {
        let (acc, _) = setup.run(seed, |exec| {
            let params = exec.trainable().map(|p| (p.name.clone(), p.tensor.shallow_clone())).collect();
            Ok(Optimizer::new(OptimizerConfig::parse("sgd")?, params)?)
        })?;
        dense.push(acc);
    }
    println!("dense: {:?}, mean {:.4}\n", dense, mean(&dense));

    println!("| target | seed | HESSO | HESSO-CRIC | CRIC cycles (new elements) | CRIC - HESSO |");
    println!("|---|---|---|---|---|---|");
    let (mut all_plain, mut all_cric) = (Vec::new(), Vec::new());
    let mut per_target = Vec::new();
    for target in TARGETS {
        let (mut ps, mut cs) = (Vec::new(), Vec::new());
        for seed in SEEDS {
            let (p, _) = setup.hesso(seed, plain(target))?;
            let (c, hesso) = setup.hesso(seed, HessoConfig { cric: Some(cric), ..plain(target) })?;
            let report = hesso.cric_report().unwrap_or_else(|| unreachable!("CRIC is configured"));
            println!("| {target} | {seed} | {p:.4} | {c:.4} | {} ({:?}) | {:+.4} |", report.cycles, report.new_elements, c - p);
            ps.push(p);
            cs.push(c);
        }
        per_target.push((target, mean(&ps), mean(&cs)));
        all_plain.extend(ps);
        all_cric.extend(cs);
    }
    for (target, p, c) in per_target {
        println!("| {target} | mean | {p:.4} | {c:.4} | | {:+.4} |", c - p);
    }
    let (p, c) = (mean(&all_plain), mean(&all_cric));
    println!("| all | mean | {p:.4} | {c:.4} | | {:+.4} |", c - p);
    Ok(())
}
