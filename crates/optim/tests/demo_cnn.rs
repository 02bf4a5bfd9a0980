//! HESSO on demo_cnn with the digits data: removing half of the prunable channels costs
//! at most 1.5 points of test accuracy against dense training with the same steps.

use oto_optim::{Hesso, HessoConfig};
use oto_torch::data::{DataPosition, Dataset, Sampling};
use oto_torch::exec::{Executor, Mode};
use oto_torch::loss::Loss;
use oto_torch::optim::{Optimizer, OptimizerConfig};
use oto_torch::schedule::Schedule;
use oto_torch::train::{evaluate, set_threads};
use tch::Device;

const STEPS: u64 = 150;
const LOSS: Loss = Loss::CrossEntropy { label_smoothing: 0.0 };

fn setup() -> (oto_onnx::Model, Executor, Dataset, Dataset) {
    let model = oto_testkit::zoo_model("demo_cnn");
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    let inputs: Vec<_> = exec.inputs().cloned().collect();
    let train = Dataset::load(&oto_testkit::root().join("examples/data/digits_train.npz"), &inputs).unwrap();
    let test = Dataset::load(&oto_testkit::root().join("examples/data/digits_test.npz"), &inputs).unwrap();
    (model, exec, train, test)
}

/// Trains with SGD (momentum 0.9, cosine from 0.05) and the same batches; `step` applies the update.
fn train(exec: &Executor, data: &Dataset, mut step: impl FnMut(f64)) {
    let schedule = Schedule::parse("cosine", 0.05, 0, STEPS).unwrap();
    let sampling = Sampling { batch_size: 32, shuffle: true, drop_last: true, seed: 7 };
    let mut position = DataPosition::default();
    for s in 0..STEPS {
        tch::manual_seed(s as i64);
        let batch = data.batch(&sampling.indices(data.len, position)).unwrap();
        position = sampling.next(data.len, position);
        let output = exec.forward(&batch.inputs, Mode::Train).unwrap().remove(0);
        let loss = LOSS.compute(&output, batch.labels.as_ref(), None).unwrap();
        for p in exec.trainable() {
            p.tensor.shallow_clone().zero_grad();
        }
        loss.backward();
        step(schedule.lr_at(s));
    }
}

#[test]
fn half_of_demo_cnn_goes_within_one_and_a_half_points_of_dense() {
    set_threads(Some(2));
    let sgd = OptimizerConfig::parse("sgd").unwrap();

    let (_, exec, train_data, test) = setup();
    let params = exec.trainable().map(|p| (p.name.clone(), p.tensor.shallow_clone())).collect();
    let mut dense = Optimizer::new(sgd, params).unwrap();
    train(&exec, &train_data, |lr| dense.step(lr).unwrap());
    let dense_acc = evaluate(&exec, None, &test, 256, LOSS).unwrap().accuracy.unwrap();

    let (model, exec, train_data, _) = setup();
    let analysis = oto_graph::analyze(&model, &oto_graph::AnalyzeOptions::default()).unwrap();
    let config =
        HessoConfig { target_group_sparsity: 0.5, start_pruning_step: 30, pruning_steps: 60, pruning_periods: 3, ..HessoConfig::default() };
    let mut hesso = Hesso::from_executor(&exec, &analysis, sgd, config).unwrap();
    train(&exec, &train_data, |lr| hesso.step(lr).unwrap());
    let sparse_acc = evaluate(&exec, None, &test, 256, LOSS).unwrap().accuracy.unwrap();

    let m = hesso.metrics().unwrap();
    let total = hesso.total_elements();
    eprintln!("dense {dense_acc:.4}, HESSO 0.5 {sparse_acc:.4}; {m:?}");
    assert_eq!(m.pruned, total / 2);
    assert_eq!(m.group_sparsity, (total / 2) as f64 / total as f64);
    assert!(dense_acc >= 0.95, "dense baseline too weak: {dense_acc}");
    assert!(sparse_acc >= dense_acc - 0.015, "HESSO {sparse_acc} vs dense {dense_acc}");
}
