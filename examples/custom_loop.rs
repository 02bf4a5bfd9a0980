//! Trains demo_cnn on the digits data with HESSO in a hand-written loop, writes the
//! group-sparse model, cuts it into the compact model, and checks that both have the
//! same test accuracy.
//!
//! `cargo run --example custom_loop [-- OUT_DIR [TARGET_SPARSITY]]` (needs graphs/zoo/demo_cnn.onnx:
//! `make graphs`); writes OUT_DIR/demo_cnn.sparse.onnx and OUT_DIR/demo_cnn.compact.onnx
//! (default OUT_DIR: target/demo).

use oto_optim::{Hesso, HessoConfig};
use oto_torch::data::{DataPosition, Dataset, Sampling};
use oto_torch::exec::{Executor, Mode};
use oto_torch::loss::Loss;
use oto_torch::optim::OptimizerConfig;
use oto_torch::schedule::Schedule;
use oto_torch::train::evaluate;
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Loaded as every oto command loads a model: normalized (constants folded, ...).
    let (model, _) = oto_onnx::normalize::load(root.join("graphs/zoo/demo_cnn.onnx"))?;
    let analysis = oto_graph::analyze(&model, &oto_graph::AnalyzeOptions::default())?;
    let mut exec = Executor::new(&model, oto_torch::tch::Device::cuda_if_available())?;
    // Producers the executor keeps as constants (a class token, say) are trained too.
    oto_optim::train_producers(&mut exec, &analysis);
    let inputs: Vec<_> = exec.inputs().cloned().collect();
    let train = Dataset::load(&root.join("examples/data/digits_train.npz"), &inputs)?;
    let test = Dataset::load(&root.join("examples/data/digits_test.npz"), &inputs)?;

    let steps = 300;
    let config = HessoConfig {
        target_group_sparsity: std::env::args().nth(2).map(|t| t.parse()).transpose()?.unwrap_or(0.5),
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
        println!("{group}: pruned {} of {}", elements.len(), analysis.group(&group).map_or(0, |g| g.num_elements));
    }

    // The trained, group-sparse model, then the compact model cut from it.
    let out = std::env::args().nth(1).map(std::path::PathBuf::from).unwrap_or_else(|| root.join("target/demo"));
    std::fs::create_dir_all(&out)?;
    let sparse = exec.updated_model(&model)?;
    let sparse_path = out.join("demo_cnn.sparse.onnx");
    sparse.save(&sparse_path, &Default::default())?;
    let removed = oto_construct::zero_elements(&analysis, &sparse)?;
    let (compact, summary) = oto_construct::construct(&sparse, &analysis, &removed)?;
    let compact_path = out.join("demo_cnn.compact.onnx");
    compact.save(&compact_path, &Default::default())?;
    let compact_exec = Executor::new(&oto_onnx::Model::load(&compact_path)?, exec.device())?;
    let compact_report = evaluate(&compact_exec, None, &test, 256, loss_fn)?;
    println!(
        "parameters {} -> {} ({:.1}%), MACs {} -> {}; test accuracy sparse {:.4}, compact {:.4}",
        summary.params_before,
        summary.params_after,
        100.0 * summary.params_after as f64 / summary.params_before.max(1) as f64,
        summary.macs_before,
        summary.macs_after,
        report.accuracy.unwrap_or(f64::NAN),
        compact_report.accuracy.unwrap_or(f64::NAN)
    );
    println!("wrote {} and {}", sparse_path.display(), compact_path.display());
    anyhow::ensure!(report.accuracy == compact_report.accuracy, "the compact model's accuracy differs from the sparse model's");
    Ok(())
}
