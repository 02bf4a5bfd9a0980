//! HESSO driven by the trainer: the schedule runs inside `Trainer::run`, and a run
//! interrupted in the middle of a pruning period and resumed from its checkpoint ends
//! bitwise equal to the uninterrupted run, with the same pruned elements.

mod common;
use common::*;
use oto_optim::{Hesso, HessoConfig};
use oto_torch::train::{set_threads, Trainer};
use std::path::PathBuf;

const STEPS: u64 = 40;

fn hesso_config(target: f64) -> HessoConfig {
    HessoConfig { target_group_sparsity: target, start_pruning_step: 10, pruning_steps: 20, pruning_periods: 2, ..HessoConfig::default() }
}

/// A trainer over demo_cnn and the digits data, stepping HESSO (AdamW), checkpointing every 5 steps.
fn trainer(checkpoint: Option<PathBuf>, target: f64) -> Trainer<Hesso> {
    demo_trainer(&DemoRun { optimizer: "adamw", lr: 3e-3, seed: 3, steps: STEPS, checkpoint_every: 5 }, hesso_config(target), checkpoint)
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
    let (a, b) = (state_bits(&resumed), state_bits(&whole));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "'{name}' differs after resume");
    }

    // A checkpoint of another schedule is refused, naming the settings.
    let mut other = trainer(None, 0.3);
    let err = other.resume(&path).unwrap_err().to_string();
    assert!(err.contains("HESSO settings"), "{err}");
}
