//! HESSO over the pruning groups of the small zoo models (channels, blocks, attention
//! heads, normalization and convolution groups, shared weights): one step that chooses
//! and zeroes half of the elements leaves exactly those producer slices at zero.

use oto_optim::{Hesso, HessoConfig};
use oto_torch::exec::convert::to_tch;
use oto_torch::exec::{Executor, Mode};
use oto_torch::optim::OptimizerConfig;
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

#[test]
fn one_step_schedule_zeroes_exactly_the_chosen_elements_on_zoo_models() {
    oto_torch::train::set_threads(Some(2));
    for name in [
        "mlp",
        "demo_cnn",
        "concat_bn",
        "grouped_conv",
        "groupnorm",
        "convtranspose_in",
        "shared_conv",
        "flatten_linear",
        "bert_tiny",
        "vit_tiny",
    ] {
        let model = oto_onnx::Model::load(oto_testkit::zoo_dir().join(format!("{name}.onnx"))).unwrap();
        let analysis = oto_graph::analyze(&model, &oto_graph::AnalyzeOptions::default()).unwrap();
        let mut exec = Executor::new(&model, Device::Cpu).unwrap();
        oto_optim::train_producers(&mut exec, &analysis);
        let arrays: HashMap<String, oto_onnx::Tensor> =
            oto_onnx::npz::read_npz(oto_testkit::zoo_dir().join(format!("{name}.inputs.npz"))).unwrap().into_iter().collect();
        let inputs: Vec<Tensor> = exec.inputs().map(|i| to_tch(&arrays[&i.name], Device::Cpu).unwrap()).collect();
        let config = HessoConfig {
            target_group_sparsity: 0.5,
            start_pruning_step: 0,
            pruning_steps: 1,
            pruning_periods: 1,
            ..HessoConfig::default()
        };
        let mut hesso = Hesso::from_executor(&exec, &analysis, OptimizerConfig::parse("adamw").unwrap(), config).unwrap();
        let outputs = exec.forward(&inputs, Mode::Train).unwrap();
        let loss =
            outputs.iter().filter(|o| o.is_floating_point()).map(|o| o.to_kind(Kind::Float).square().mean(Kind::Float)).sum::<Tensor>();
        hesso.zero_grad();
        loss.backward();
        hesso.step(1e-3).unwrap();

        let m = hesso.metrics().unwrap();
        let target = hesso.target_count();
        assert!(target > 0 || hesso.total_elements() < 2, "{name}: nothing to prune");
        assert_eq!((m.pruned, m.decaying), (target, 0), "{name}: {m:?}");
        // Zero elements are exactly the pruned ones (the others are non-zero after training).
        assert_eq!(m.group_sparsity, target as f64 / hesso.total_elements() as f64, "{name}: {m:?}");
        assert_eq!(m.norm_redundant, 0.0, "{name}");
        let pruned = hesso.pruned_elements();
        for g in analysis.prunable_groups() {
            let elements = &pruned[&g.id];
            assert!(elements.len() < g.num_elements, "{name}: group {} lost every element", g.id);
        }
        eprintln!("{name}: {} groups, pruned {target} of {}", pruned.len(), hesso.total_elements());
    }
}
