//! The second-order (Optimal Brain Damage) criterion on a case whose answer is known: a
//! dead hidden unit with the largest weights.

mod common;
use common::*;
use oto_hessian::{obd_saliency, HessianOperator};
use oto_optim::{Hesso, HessoConfig, ImportanceWeights};
use oto_torch::data::Batch;
use oto_torch::exec::{Executor, Mode};
use oto_torch::loss::Loss;
use oto_torch::optim::OptimizerConfig;
use tch::Tensor;

/// The exact diagonal of `op`'s Hessian (one Hessian-vector product per entry).
fn exact_diagonal(op: &mut HessianOperator<'_>) -> Vec<Tensor> {
    let params = op.params();
    let diagonal: Vec<Tensor> = params.iter().map(|p| p.zeros_like()).collect();
    for (k, p) in params.iter().enumerate() {
        let flat = diagonal[k].view([-1]);
        for i in 0..p.numel() as i64 {
            let v: Vec<Tensor> = params.iter().map(|q| q.zeros_like()).collect();
            let _ = v[k].view([-1]).get(i).fill_(1.0);
            let hv = op.hvp(&v).unwrap();
            flat.get(i).copy_(&hv[k].view([-1]).get(i));
        }
    }
    diagonal
}

const NONE: ImportanceWeights = ImportanceWeights { magnitude: 0.0, avg_magnitude: 0.0, cosine: 0.0, taylor1: 0.0, taylor2: 0.0, obd: 0.0 };

/// The second-order criterion moves HESSO's choice the way it should. Hidden unit 5 of an
/// MLP (4 -> 8 -> 2, MSE) is dead (bias -100: its ReLU never opens on the data) and has
/// the largest weights. The loss does not depend on them, so their Hessian rows are exactly
/// zero and the unit's OBD saliency `1/2 sum diag(H) w^2` is 0, while every live unit's is
/// positive (a ReLU network's Hessian diagonal is the Gauss-Newton one, >= 0; checked on
/// the exact diagonal). Choosing 2 of the 8 units, OBD alone prunes unit 5; magnitude
/// alone, which sees its large weights, keeps it; without the saliency the step is an error.
///
/// The exact diagonal is used because Hutchinson's (`mean v * Hv`) is noisy where the
/// off-diagonal terms dominate: on the zoo MLP, 100 samples left at least 12 of fc1's 64
/// units with a negative estimate, where the exact diagonal is >= 0. The job's OBD
/// criterion (8 samples per period) lives with that.
#[test]
fn obd_prunes_a_dead_unit_that_magnitude_keeps() {
    let (features, hidden) = (4usize, 8usize);
    let model = mlp(features, &[hidden], 2, &|layer, kind, i| match (layer, kind) {
        // w0 is [features, hidden], row-major: unit = i % hidden.
        (0, "w") if i % hidden == 5 => 3.0 + noise(i, 1),
        (0, "w") => noise(i, 2),
        (0, _) if i == 5 => -100.0,
        (0, _) => 0.1,
        (_, "w") => noise(i, 3),
        _ => 0.0,
    });
    let analysis = analysis_of(&model);
    let x = inputs(64, features, 4);
    let y = inputs(64, 2, 5);
    let choose = |importance: ImportanceWeights| -> Vec<usize> {
        let exec = Executor::new(&model, tch::Device::Cpu).unwrap();
        let config = HessoConfig {
            target_group_sparsity: 0.25,
            start_pruning_step: 0,
            pruning_steps: 1,
            pruning_periods: 1,
            importance,
            ..HessoConfig::default()
        };
        let sgd = OptimizerConfig::parse("sgd").unwrap();
        let step = |hesso: &mut Hesso| {
            hesso.zero_grad();
            let out = exec.forward(&[x.shallow_clone()], Mode::Train).unwrap().remove(0);
            Loss::Mse.compute(&out, Some(&y), None).unwrap().backward();
            hesso.step(0.0) // learning rate 0: the choice, and nothing else moves
        };
        let mut hesso = Hesso::from_executor(&exec, &analysis, sgd, config).unwrap();
        assert_eq!(hesso.needs_obd_saliency(), importance.obd > 0.0);
        if hesso.needs_obd_saliency() {
            let mut missing = Hesso::from_executor(&exec, &analysis, sgd, config).unwrap();
            let err = step(&mut missing).unwrap_err().to_string();
            assert!(err.contains("call Hesso::set_obd_saliency"), "{err}");

            let mut op = HessianOperator::new(
                &exec,
                None,
                vec![Batch { inputs: vec![x.shallow_clone()], labels: Some(y.shallow_clone()) }],
                Loss::Mse,
            )
            .unwrap();
            let diagonal = exact_diagonal(&mut op);
            let saliency = obd_saliency(&op, &diagonal, &analysis).unwrap();
            assert_eq!(saliency.len(), 1);
            let s = &saliency[0].1;
            println!("OBD saliency per unit: {s:?}");
            assert_eq!(s[5], 0.0, "the dead unit");
            assert!(s.iter().enumerate().all(|(e, v)| e == 5 || *v > 0.0), "{s:?}");
            let wrong = vec![(saliency[0].0.clone(), vec![0.0; hidden - 1])];
            assert!(hesso.set_obd_saliency(&wrong).unwrap_err().to_string().contains("7 OBD saliencies for 8 elements"));
            hesso.set_obd_saliency(&saliency).unwrap();
        }
        step(&mut hesso).unwrap();
        assert!(!hesso.needs_obd_saliency());
        let pruned = hesso.pruned_elements();
        assert_eq!(pruned.len(), 1);
        pruned.into_values().next().unwrap()
    };
    let by_obd = choose(ImportanceWeights { obd: 1.0, ..NONE });
    let by_magnitude = choose(ImportanceWeights { magnitude: 1.0, ..NONE });
    println!("pruned: OBD {by_obd:?}, magnitude {by_magnitude:?}");
    assert_eq!(by_obd.len(), 2);
    assert!(by_obd.contains(&5) && !by_magnitude.contains(&5), "OBD {by_obd:?}, magnitude {by_magnitude:?}");
}

/// The criterion's settings: `obd` defaults to 0 in a job file's weights, and is refused
/// with CRIC.
#[test]
fn obd_settings() {
    let w: ImportanceWeights = serde_json::from_str(r#"{"magnitude":1,"avg_magnitude":0,"cosine":0,"taylor1":0,"taylor2":0}"#).unwrap();
    assert_eq!(w.obd, 0.0);
    let config =
        HessoConfig { importance: ImportanceWeights { obd: 1.0, ..NONE }, cric: Some(Default::default()), ..HessoConfig::default() };
    assert!(config.validate().unwrap_err().to_string().contains("obd) is not available with CRIC"));
    let only_obd = HessoConfig { importance: ImportanceWeights { obd: 1.0, ..NONE }, ..HessoConfig::default() };
    only_obd.validate().unwrap();
}
