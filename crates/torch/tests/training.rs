//! Dense training of demo_cnn on the digits data, write-back into ONNX, resume after
//! an interruption, and a NaN in the data stopping the job.

mod common;

use oto_onnx::Model;
use oto_torch::checkpoint::Checkpoint;
use oto_torch::data::{DataPosition, Dataset, Sampling};
use oto_torch::error::Error;
use oto_torch::exec::{Executor, GraphInput, Mode};
use oto_torch::loss::Loss;
use oto_torch::optim::OptimizerConfig;
use oto_torch::schedule::Schedule;
use oto_torch::train::{evaluate, set_threads, TrainConfig, Trainer};
use std::path::PathBuf;
use tch::Device;

fn digits(split: &str, inputs: &[GraphInput]) -> Dataset {
    Dataset::load(&oto_testkit::root().join(format!("examples/data/digits_{split}.npz")), inputs).unwrap()
}

fn demo_cnn() -> (Model, Executor) {
    let model = oto_testkit::zoo_model("demo_cnn");
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    (model, exec)
}

fn config(steps: u64, optimizer: &str, lr: f64, schedule: &str, checkpoint: Option<PathBuf>, every: u64) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 32,
        optimizer: OptimizerConfig::parse(optimizer).unwrap(),
        schedule: Schedule::parse(schedule, lr, 0, steps).unwrap(),
        loss: Loss::CrossEntropy { label_smoothing: 0.0 },
        clip_grad_norm: Some(5.0),
        seed: 7,
        checkpoint,
        checkpoint_every: every,
    }
}

#[test]
fn demo_cnn_learns_digits_and_writes_back_into_onnx() {
    set_threads(Some(2));
    let (model, exec) = demo_cnn();
    let inputs: Vec<_> = exec.inputs().cloned().collect();
    let test = digits("test", &inputs);
    let before = evaluate(&exec, None, &test, 128, Loss::CrossEntropy { label_smoothing: 0.0 }).unwrap();
    let mut trainer = Trainer::new(exec, None, digits("train", &inputs), config(180, "sgd", 0.05, "cosine", None, 0)).unwrap();
    trainer.run(|_| {}).unwrap();
    let after = evaluate(&trainer.exec, None, &test, 128, Loss::CrossEntropy { label_smoothing: 0.0 }).unwrap();
    eprintln!(
        "digits test: before {before:?}, after {after:?}; first/last train loss {:.4}/{:.4}",
        trainer.losses[0],
        trainer.losses.last().unwrap()
    );
    assert!(after.accuracy.unwrap() >= 0.95, "test accuracy {:?} < 0.95", after.accuracy);
    assert_eq!(after.samples, test.len);

    // The trained weights and BN statistics, written back into ONNX, give the same model.
    let updated = trainer.exec.updated_model(&model).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trained.onnx");
    updated.save(&path, &oto_onnx::SaveOptions::default()).unwrap();
    let reloaded = Model::load(&path).unwrap();
    let exec2 = Executor::new(&reloaded, Device::Cpu).unwrap();
    let again = evaluate(&exec2, None, &test, 128, Loss::CrossEntropy { label_smoothing: 0.0 }).unwrap();
    assert_eq!(again, after, "the written-back model evaluates differently");
    let original = Executor::new(&model, Device::Cpu).unwrap();
    let changed_stats = original.buffers().iter().zip(exec2.buffers()).filter(|(a, b)| a.tensor != b.tensor).count();
    assert_eq!(changed_stats, original.buffers().len(), "every BN running statistic must have been trained and written back");
    assert_eq!(exec2.parameters().len(), original.parameters().len());
}

/// A 60-step AdamW job from the zoo weights, stopped after step `stop`, optionally
/// resumed from `checkpoint` first.
fn run_steps(stop: u64, checkpoint: Option<PathBuf>, every: u64, resume: bool) -> Trainer {
    let (_, exec) = demo_cnn();
    let inputs: Vec<_> = exec.inputs().cloned().collect();
    let mut trainer =
        Trainer::new(exec, None, digits("train", &inputs), config(60, "adamw", 3e-3, "cosine", checkpoint.clone(), every)).unwrap();
    if resume {
        trainer.resume(checkpoint.as_deref().unwrap()).unwrap();
    }
    trainer.run_until(stop, |_| {}).unwrap();
    trainer
}

#[test]
fn resume_continues_the_identical_loss_sequence() {
    set_threads(Some(2));
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("checkpoint/state.safetensors");
    // Uninterrupted: 60 steps (the epoch boundary is crossed at step 44).
    let full = run_steps(60, None, 0, false);
    // Interrupted after 53 steps: the checkpoint of step 50 is the last one...
    let first = run_steps(53, Some(ck.clone()), 25, false);
    assert_eq!(first.losses[..], full.losses[..53]);
    let state = Checkpoint::read(&ck, Device::Cpu).unwrap().state;
    assert_eq!(state["step"].as_u64(), Some(50));
    // ...and a fresh trainer resumed from it redoes steps 51..60 identically.
    let resumed = run_steps(60, Some(ck.clone()), 25, true);
    assert_eq!(resumed.step, 60);
    assert_eq!(resumed.losses.len(), 60);
    assert_eq!(resumed.losses[50..], full.losses[50..], "resumed losses differ from the uninterrupted run");
    for ((n, a), (_, b)) in resumed.exec.state().iter().zip(full.exec.state().iter()) {
        assert!(a.equal(b), "'{n}' differs after resuming");
    }
    assert!(full.losses[59] < full.losses[0]);
}

#[test]
fn nan_in_the_data_stops_with_the_step_and_keeps_the_checkpoint() {
    set_threads(Some(2));
    let (_, exec) = demo_cnn();
    let inputs: Vec<_> = exec.inputs().cloned().collect();
    let data = digits("train", &inputs);
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.safetensors");
    let cfg = config(20, "sgd", 0.05, "constant", Some(ck.clone()), 2);
    // Poison the first sample of step 7's batch (steps 1..6 never see it: same epoch).
    let sampling = Sampling { batch_size: cfg.batch_size, shuffle: true, drop_last: true, seed: cfg.seed };
    let mut pos = DataPosition::default();
    for _ in 0..6 {
        pos = sampling.next(data.len, pos);
    }
    let victim = sampling.indices(data.len, pos)[0];
    let mut pixel = data.inputs[0].get(victim).get(0).get(3).get(3);
    let _ = pixel.fill_(f64::NAN);

    let mut trainer = Trainer::new(exec, None, data, cfg).unwrap();
    let err = trainer.run(|_| {}).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::NonFinite { step: 7, .. }), "{message}");
    assert!(message.contains("step 7") && message.contains(&ck.display().to_string()), "{message}");
    assert_eq!(trainer.step, 6);
    let saved = Checkpoint::read(&ck, Device::Cpu).unwrap();
    assert_eq!(saved.state["step"].as_u64(), Some(6));
    assert!(
        saved.tensors.iter().all(|(n, t)| !n.starts_with("model/") || t.isfinite().all().int64_value(&[]) == 1),
        "the checkpoint holds non-finite weights"
    );
    // The executor's weights are still finite (the bad step made no update).
    let out =
        tch::no_grad(|| trainer.exec.forward(&[tch::Tensor::zeros([2, 1, 8, 8], (tch::Kind::Float, Device::Cpu))], Mode::Eval)).unwrap();
    assert_eq!(out[0].isfinite().all().int64_value(&[]), 1);
}

#[test]
fn eval_entry_reports_loss_and_accuracy_of_a_model_file() {
    let model = oto_testkit::zoo_dir().join("demo_cnn.onnx");
    let data = oto_testkit::root().join("examples/data/digits_test.npz");
    let ce = Loss::CrossEntropy { label_smoothing: 0.0 };
    let report = oto_torch::train::eval_file(&model, &data, 50, "cpu", ce).unwrap();
    let (_, exec) = demo_cnn();
    let inputs: Vec<_> = exec.inputs().cloned().collect();
    // Batches of 50 or one batch of 359: the same accuracy, the same mean loss up to f32 summation order.
    let whole = evaluate(&exec, None, &digits("test", &inputs), 359, ce).unwrap();
    assert_eq!(report.accuracy, whole.accuracy);
    assert!((report.loss - whole.loss).abs() <= 1e-6 * whole.loss, "{report:?} vs {whole:?}");
    assert_eq!(report.samples, 359);
    assert!(report.accuracy.unwrap() < 0.5, "an untrained model: {report:?}");
    let err = oto_torch::train::eval_file(&model, &data, 50, "gpu", ce).unwrap_err().to_string();
    assert!(err.contains("device 'gpu'"), "{err}");
    let err = oto_torch::train::eval_file(&oto_testkit::zoo_dir().join("mlp.onnx"), &data, 50, "cpu", ce).unwrap_err().to_string();
    assert!(err.contains("digits_test.npz") && err.contains("'x'"), "{err}");
}

#[test]
fn frozen_parameters_stay_and_safetensors_data_trains_the_same() {
    set_threads(Some(2));
    let (_, mut exec) = demo_cnn();
    assert!(exec.freeze(&["no.such.weight"]).unwrap_err().to_string().contains("no.such.weight"));
    exec.freeze(&["fc.weight", "conv1.weight"]).unwrap();
    let before: Vec<(String, tch::Tensor)> = exec.state().into_iter().map(|(n, t)| (n, t.detach().copy())).collect();
    let inputs: Vec<_> = exec.inputs().cloned().collect();
    let npz = digits("train", &inputs);

    // The same arrays as .safetensors load to the same data set.
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("digits.safetensors");
    let arrays =
        vec![("x".to_string(), npz.inputs[0].shallow_clone()), ("labels".to_string(), npz.labels.as_ref().unwrap().shallow_clone())];
    std::fs::write(&st, oto_torch::checkpoint::safetensors_bytes(&arrays, None).unwrap()).unwrap();
    let from_st = Dataset::load(&st, &inputs).unwrap();
    assert!(from_st.inputs[0].equal(&npz.inputs[0]) && from_st.labels.as_ref().unwrap().equal(npz.labels.as_ref().unwrap()));

    let mut trainer = Trainer::new(exec, None, from_st, config(3, "sgd", 0.05, "constant", None, 0)).unwrap();
    assert_eq!(trainer.optimizer.names.len(), trainer.exec.parameters().len() - 2);
    trainer.run(|_| {}).unwrap();
    for ((name, after), (_, b)) in trainer.exec.state().iter().zip(&before) {
        let frozen = name == "fc.weight" || name == "conv1.weight";
        assert_eq!(after.equal(b), frozen, "'{name}' frozen: {frozen}");
    }
}
