//! Trains demo_cnn on the digits data with HESSO in a hand-written loop, then reports the
//! test accuracy and the elements to cut.
//!
//! `cargo run -p oto-optim --example custom_loop` (needs graphs/zoo/demo_cnn.onnx: `make graphs`).

use oto_optim::{Hesso, HessoConfig};
use oto_torch::data::{DataPosition, Dataset, Sampling};
use oto_torch::exec::{Executor, Mode};
use oto_torch::loss::Loss;
use oto_torch::optim::OptimizerConfig;
use oto_torch::schedule::Schedule;
use oto_torch::train::evaluate;
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = oto_onnx::Model::load(root.join("graphs/zoo/demo_cnn.onnx"))?;
    let analysis = oto_graph::analyze(&model, &oto_graph::AnalyzeOptions::default())?;
    let exec = Executor::new(&model, tch::Device::cuda_if_available())?;
    let inputs: Vec<_> = exec.inputs().cloned().collect();
    let train = Dataset::load(&root.join("examples/data/digits_train.npz"), &inputs)?;
    let test = Dataset::load(&root.join("examples/data/digits_test.npz"), &inputs)?;

    let steps = 300;
    let config = HessoConfig {
        target_group_sparsity: 0.5,
        start_pruning_step: 60,
        pruning_steps: 120,
        pruning_periods: 3,
        ..HessoConfig::default()
    };
    let mut hesso = Hesso::from_executor(&exec, &analysis, OptimizerConfig::parse("sgd")?, config)?;
    let schedule = Schedule::parse("cosine", 0.05, 0, steps)?;
    let loss_fn = Loss::CrossEntropy { label_smoothing: 0.0 };
    let sampling = Sampling { batch_size: 32, shuffle: true, drop_last: true, seed: 7 };
    let mut position = DataPosition::default();

    for step in 0..steps {
        let batch = train.batch(&sampling.indices(train.len, position))?.to_device(exec.device());
        position = sampling.next(train.len, position);
        let output = exec.forward(&batch.inputs, Mode::Train)?.remove(0);
        let loss = loss_fn.compute(&output, batch.labels.as_ref(), None)?;
        hesso.zero_grad();
        loss.backward();
        hesso.step(schedule.lr_at(step))?;
        if step % 30 == 29 {
            let m = hesso.metrics()?;
            println!(
                "step {:>3}  loss {:.4}  lr {:.4}  group sparsity {:.3}  important/decaying/pruned {}/{}/{}  norms {:.2}/{:.2}",
                m.step,
                loss.double_value(&[]),
                m.lr,
                m.group_sparsity,
                m.important,
                m.decaying,
                m.pruned,
                m.norm_important,
                m.norm_redundant
            );
        }
    }
    let report = evaluate(&exec, None, &test, 256, loss_fn)?;
    println!("test accuracy {:.4}", report.accuracy.unwrap_or(f64::NAN));
    for (group, elements) in hesso.pruned_elements() {
        println!("{group}: pruned {elements:?}");
    }
    Ok(())
}
