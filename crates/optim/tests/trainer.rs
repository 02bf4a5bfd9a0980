//! HESSO driven by the trainer: the schedule runs inside `Trainer::run`, and a run
//! interrupted in the middle of a pruning period and resumed from its checkpoint ends
//! bitwise equal to the uninterrupted run, with the same pruned elements.

use oto_optim::{Hesso, HessoConfig};
use oto_torch::data::Dataset;
use oto_torch::exec::Executor;
use oto_torch::loss::Loss;
use oto_torch::optim::OptimizerConfig;
use oto_torch::schedule::Schedule;
use oto_torch::train::{set_threads, TrainConfig, Trainer};
use std::path::{Path, PathBuf};
use tch::Device;

const STEPS: u64 = 40;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn hesso_config(target: f64) -> HessoConfig {
    HessoConfig { target_group_sparsity: target, start_pruning_step: 10, pruning_steps: 20, pruning_periods: 2, ..HessoConfig::default() }
}

/// A trainer over demo_cnn and the digits data, stepping HESSO, checkpointing every 5 steps.
fn trainer(checkpoint: Option<PathBuf>, target: f64) -> Trainer<Hesso> {
    let model = oto_onnx::Model::load(root().join("graphs/zoo/demo_cnn.onnx")).unwrap();
    let analysis = oto_graph::analyze(&model, &oto_graph::AnalyzeOptions::default()).unwrap();
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    let inputs: Vec<_> = exec.inputs().cloned().collect();
    let data = Dataset::load(&root().join("examples/data/digits_train.npz"), &inputs).unwrap();
    let optimizer = OptimizerConfig::parse("adamw").unwrap();
    let config = TrainConfig {
        steps: STEPS,
        batch_size: 32,
        optimizer,
        schedule: Schedule::parse("cosine", 3e-3, 0, STEPS).unwrap(),
        loss: Loss::CrossEntropy { label_smoothing: 0.0 },
        clip_grad_norm: None,
        seed: 3,
        checkpoint,
        checkpoint_every: 5,
    };
    let hesso = Hesso::from_executor(&exec, &analysis, optimizer, hesso_config(target)).unwrap();
    Trainer::with_optimizer(exec, None, data, config, hesso).unwrap()
}

fn weights(t: &Trainer<Hesso>) -> Vec<(String, Vec<f32>)> {
    t.exec.state().into_iter().map(|(n, t)| (n, Vec::<f32>::try_from(t.flatten(0, -1).to_kind(tch::Kind::Float)).unwrap())).collect()
}

#[test]
fn interrupted_hesso_run_resumes_bitwise() {
    set_threads(Some(2));
    let dir = tempfile::tempdir().unwrap();

    let mut whole = trainer(None, 0.5);
    whole.run(|_| {}).unwrap();
    let m = whole.optimizer.metrics().unwrap();
    assert_eq!(m.pruned, whole.optimizer.target_count());
    assert_eq!(m.group_sparsity, whole.optimizer.target_count() as f64 / whole.optimizer.total_elements() as f64);

    // Stop at step 15: the middle of the first period, with elements decaying.
    let path = dir.path().join("ck.safetensors");
    let mut first = trainer(Some(path.clone()), 0.5);
    first.run_until(15, |_| {}).unwrap();
    assert!(first.optimizer.metrics().unwrap().decaying > 0, "step 15 should be inside a decay period");
    drop(first);

    let mut resumed = trainer(Some(path.clone()), 0.5);
    resumed.resume(&path).unwrap();
    assert_eq!((resumed.step, resumed.optimizer.steps()), (15, 15));
    resumed.run(|_| {}).unwrap();

    assert_eq!(resumed.optimizer.pruned_elements(), whole.optimizer.pruned_elements());
    assert_eq!(resumed.losses, whole.losses);
    let (a, b) = (weights(&resumed), weights(&whole));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()), "'{name}' differs after resume");
    }

    // A checkpoint of another schedule is refused, naming the settings.
    let mut other = trainer(None, 0.3);
    let err = other.resume(&path).unwrap_err().to_string();
    assert!(err.contains("HESSO settings"), "{err}");
}
