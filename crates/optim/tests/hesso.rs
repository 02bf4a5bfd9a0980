//! HESSO on small problems whose answer is known: an MLP whose target ignores half of
//! its hidden units, the schedule's guarantees (exact zeros, zero optimizer state,
//! realized sparsity, divisibility, determinism), the linear decay, and the settings'
//! validation.

mod common;
use common::*;
use oto_optim::{Hesso, HessoConfig, HessoError};
use oto_torch::exec::{Executor, Mode};
use oto_torch::optim::OptimizerConfig;
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

fn param(hesso: &Hesso, name: &str) -> Tensor {
    let i = hesso.base.names.iter().position(|n| n == name).unwrap();
    hesso.base.params[i].shallow_clone()
}

fn mse(exec: &Executor, x: &Tensor, y: &Tensor) -> Tensor {
    let out = exec.forward(&[x.shallow_clone()], Mode::Train).unwrap().remove(0);
    (out - y).square().mean(Kind::Float)
}

/// Trains `exec` on (x, y) full-batch for `steps` steps; returns the last loss.
fn train(exec: &Executor, hesso: &mut Hesso, x: &Tensor, y: &Tensor, steps: u64, lr: f64) -> f64 {
    let mut last = f64::NAN;
    for _ in 0..steps {
        let loss = mse(exec, x, y);
        last = loss.double_value(&[]);
        hesso.zero_grad();
        loss.backward();
        hesso.step(lr).unwrap();
    }
    last
}

/// Whether every producer slice of `element` in a 2-layer MLP's hidden group is +0.0.
fn hidden_unit_bits(hesso: &Hesso, layer: usize, unit: i64) -> Vec<u32> {
    let w = param(hesso, &format!("w{layer}")).select(1, unit);
    let b = param(hesso, &format!("b{layer}")).select(0, unit).reshape([1]);
    let v: Vec<f32> = Vec::try_from(Tensor::cat(&[w, b], 0)).unwrap();
    v.iter().map(|x| x.to_bits()).collect()
}

/// The target depends on hidden units 0-3 only: the student starts with those four
/// close to the teacher's and units 4-7 small and useless. With target sparsity 0.5,
/// HESSO must remove exactly units 4-7, and the pruned model still fits the target.
#[test]
fn prunes_exactly_the_hidden_units_the_target_ignores() {
    let (features, relevant, hidden) = (6usize, 4usize, 8usize);
    let teacher_w = |i: usize| noise(i, 11);
    let teacher_v = [1.0f32, -1.2, 0.9, -0.7];
    let teacher = mlp(features, &[relevant], 1, &|layer, kind, i| match (layer, kind) {
        (0, "w") => teacher_w(i),
        (0, _) => 0.1,
        (_, "w") => teacher_v[i],
        _ => 0.0,
    });
    let x = inputs(512, features, 3);
    let y = tch::no_grad(|| Executor::new(&teacher, Device::Cpu).unwrap().forward(&[x.shallow_clone()], Mode::Eval).unwrap().remove(0));

    let student = mlp(features, &[hidden], 1, &|layer, kind, i| match (layer, kind) {
        // w0 is [features, hidden], row-major: unit = i % hidden.
        (0, "w") if i % hidden < relevant => teacher_w(i / hidden * relevant + i % hidden) + 0.05 * noise(i, 5),
        (0, "w") => 0.05 * noise(i, 6),
        (0, _) if i < relevant => 0.1,
        (_, "w") if i < relevant => teacher_v[i] + 0.05 * noise(i, 7),
        (_, "w") => 0.05 * noise(i, 8),
        _ => 0.0,
    });
    let analysis = analysis_of(&student);
    let ids: Vec<&str> = analysis.prunable_groups().map(|g| g.id.as_str()).collect();
    assert_eq!(ids, vec!["b0:0"], "{}", analysis.table());

    let exec = Executor::new(&student, Device::Cpu).unwrap();
    let config = HessoConfig {
        target_group_sparsity: 0.5,
        start_pruning_step: 100,
        pruning_steps: 100,
        pruning_periods: 2,
        ..HessoConfig::default()
    };
    let mut hesso = Hesso::from_executor(&exec, &analysis, OptimizerConfig::parse("sgd").unwrap(), config).unwrap();
    assert_eq!(hesso.target_count(), 4);
    let loss = train(&exec, &mut hesso, &x, &y, 400, 0.02);
    let pruned = hesso.pruned_elements();
    assert_eq!(pruned, BTreeMap::from([("b0:0".to_string(), vec![4, 5, 6, 7])]));
    for unit in 4..8 {
        assert!(hidden_unit_bits(&hesso, 0, unit).iter().all(|&b| b == 0), "unit {unit} is not exactly +0.0");
    }
    let m = hesso.metrics().unwrap();
    assert_eq!((m.important, m.decaying, m.pruned, m.group_sparsity), (4, 0, 4, 0.5), "{m:?}");
    assert_eq!(m.norm_redundant, 0.0);
    assert!(m.norm_important > 1.0, "{m:?}");
    let var = y.var(false).double_value(&[]);
    assert!(loss < 0.01 * var, "the pruned MLP does not fit the target: loss {loss}, target variance {var}");
}

struct Run {
    pruned: BTreeMap<String, Vec<usize>>,
    hesso: Hesso,
}

/// Two hidden layers of `hidden` units, group_divisible 4, AdamW, from a seeded random
/// initialization, trained on a random teacher's outputs.
fn two_layer_run(hidden: [usize; 2], target: f64, seed: u64) -> Run {
    let fill = move |layer: usize, kind: &str, i: usize| {
        let s = seed * 10 + layer as u64 * 2 + u64::from(kind == "b");
        0.6 * noise(i, s)
    };
    let model = mlp(5, &hidden, 2, &fill);
    let teacher = mlp(5, &[6], 2, &|layer, kind, i| noise(i, 100 + layer as u64 * 2 + u64::from(kind == "b")));
    let x = inputs(256, 5, 4);
    let y = tch::no_grad(|| Executor::new(&teacher, Device::Cpu).unwrap().forward(&[x.shallow_clone()], Mode::Eval).unwrap().remove(0));
    let analysis = analysis_of(&model);
    assert_eq!(analysis.prunable_groups().count(), 2, "{}", analysis.table());
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    let config = HessoConfig {
        target_group_sparsity: target,
        start_pruning_step: 20,
        pruning_steps: 60,
        pruning_periods: 3,
        group_divisible: 4,
        ..HessoConfig::default()
    };
    let mut hesso = Hesso::from_executor(&exec, &analysis, OptimizerConfig::parse("adamw").unwrap(), config).unwrap();
    train(&exec, &mut hesso, &x, &y, 120, 0.01);
    assert!(hesso.schedule_done());
    Run { pruned: hesso.pruned_elements(), hesso }
}

#[test]
fn schedule_leaves_exact_zeros_zero_state_and_the_exact_sparsity() {
    let run = two_layer_run([12, 8], 0.4, 1);
    let hesso = &run.hesso;
    // T = floor(20 * 0.4) = 8 is reachable with D = 4.
    assert_eq!(hesso.total_elements(), 20);
    assert_eq!(hesso.target_count(), 8);
    let realized: usize = run.pruned.values().map(Vec::len).sum();
    assert_eq!(realized, 8, "{:?}", run.pruned);
    let sizes = BTreeMap::from([("b0:0".to_string(), 12usize), ("b1:0".to_string(), 8)]);
    for (id, elements) in &run.pruned {
        let kept = sizes[id] - elements.len();
        assert!(kept >= 4 && kept % 4 == 0, "group {id} keeps {kept} elements");
    }
    for (layer, id) in [(0, "b0:0"), (1, "b1:0")] {
        let state = &hesso.base.state[hesso.base.names.iter().position(|n| *n == format!("w{layer}")).unwrap()];
        let bstate = &hesso.base.state[hesso.base.names.iter().position(|n| *n == format!("b{layer}")).unwrap()];
        for unit in 0..sizes[id] as i64 {
            let bits = hidden_unit_bits(hesso, layer, unit);
            if run.pruned[id].contains(&(unit as usize)) {
                assert!(bits.iter().all(|&b| b == 0), "{id} element {unit}: not +0.0");
                for t in [&state.exp_avg, &state.exp_avg_sq] {
                    let s = t.as_ref().unwrap().select(1, unit);
                    assert_eq!(s.abs().max().double_value(&[]), 0.0, "{id} element {unit}: optimizer state not zero");
                }
                for t in [&bstate.exp_avg, &bstate.exp_avg_sq] {
                    assert_eq!(t.as_ref().unwrap().double_value(&[unit]), 0.0);
                }
            } else {
                assert!(bits.iter().any(|&b| b != 0), "{id} element {unit} is zero but was not pruned");
            }
        }
    }
    let m = hesso.metrics().unwrap();
    assert_eq!((m.important, m.decaying, m.pruned), (12, 0, 8));
    assert_eq!(m.group_sparsity, 8.0 / 20.0);
    assert_eq!(m.norm_redundant, 0.0);

    let again = two_layer_run([12, 8], 0.4, 1);
    assert_eq!(again.pruned, run.pruned, "a second run with the same seed pruned other elements");
}

#[test]
fn unreachable_target_takes_the_largest_reachable_count() {
    // T = floor(22 * 0.5) = 11, but with D = 4 the group of 12 can lose 0, 4 or 8 and the
    // group of 10 only 0, 2 or 6 (it keeps 8 or 4): 10 is the most that fits.
    let run = two_layer_run([12, 10], 0.5, 2);
    assert_eq!(run.hesso.target_count(), 10);
    assert_eq!(run.pruned.values().map(Vec::len).sum::<usize>(), 10);
    assert_eq!(run.hesso.metrics().unwrap().group_sparsity, 10.0 / 22.0);
    for (id, n) in [("b0:0", 12usize), ("b1:0", 10)] {
        let kept = n - run.pruned[id].len();
        assert!(kept == n || (kept >= 4 && kept.is_multiple_of(4)), "group {id} keeps {kept} elements");
    }
}

/// With a zero learning rate the base update changes nothing, so the decay alone acts:
/// after the period's t-th step the chosen slices are (d - t - 1) / d of their start.
#[test]
fn chosen_elements_decay_linearly_to_exact_zero() {
    let model = mlp(4, &[8], 1, &|layer, kind, i| noise(i, 40 + layer as u64 + u64::from(kind == "b") * 7));
    let analysis = analysis_of(&model);
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    let config =
        HessoConfig { target_group_sparsity: 0.25, start_pruning_step: 2, pruning_steps: 4, pruning_periods: 1, ..HessoConfig::default() };
    let mut hesso = Hesso::from_executor(&exec, &analysis, OptimizerConfig::parse("sgd").unwrap(), config).unwrap();
    let x = inputs(16, 4, 9);
    let y = Tensor::zeros([16, 1], (Kind::Float, Device::Cpu));
    let w0 = param(&hesso, "w0").copy();
    let mut zero_after = None;
    for step in 0..8u64 {
        train(&exec, &mut hesso, &x, &y, 1, 0.0);
        let m = hesso.metrics().unwrap();
        let w = param(&hesso, "w0");
        let changed: Vec<i64> = (0..8).filter(|&u| w.select(1, u) != w0.select(1, u)).collect();
        match step {
            0 | 1 => assert!(changed.is_empty() && m.important == 8, "step {step}: {m:?}"),
            2..=4 => {
                assert_eq!((m.decaying, m.pruned, changed.len()), (2, 0, 2), "step {step}: {m:?}");
                let t = step - 2;
                let expected = (4 - t - 1) as f64 / 4.0;
                for &u in &changed {
                    let ratio = (w.select(1, u) / w0.select(1, u)).to_kind(Kind::Double);
                    let (lo, hi) = (ratio.min().double_value(&[]), ratio.max().double_value(&[]));
                    assert!(
                        (lo - expected).abs() < 1e-6 && (hi - expected).abs() < 1e-6,
                        "step {step}: ratio {lo}..{hi}, expected {expected}"
                    );
                }
                zero_after.get_or_insert(changed);
            }
            _ => {
                assert_eq!((m.decaying, m.pruned), (0, 2), "step {step}: {m:?}");
                let units = zero_after.clone().unwrap();
                assert_eq!(changed, units);
                for &u in &units {
                    assert!(hidden_unit_bits(&hesso, 0, u).iter().all(|&b| b == 0));
                }
            }
        }
    }
    // The chosen elements are the two lowest-scoring ones at the period start.
    let scores_at_start = {
        let fresh = Executor::new(&model, Device::Cpu).unwrap();
        let config = HessoConfig { target_group_sparsity: 0.25, ..HessoConfig::default() };
        let mut h = Hesso::from_executor(&fresh, &analysis, OptimizerConfig::parse("sgd").unwrap(), config).unwrap();
        train(&fresh, &mut h, &x, &y, 2, 0.0);
        h.scores().unwrap().remove(0)
    };
    let mut order: Vec<usize> = (0..8).collect();
    order.sort_by(|a, b| scores_at_start[*a].total_cmp(&scores_at_start[*b]));
    let mut lowest: Vec<usize> = order[..2].to_vec();
    lowest.sort();
    assert_eq!(hesso.pruned_elements()["b0:0"], lowest);
}

#[test]
fn settings_are_validated_by_name() {
    let model = mlp(3, &[4], 1, &|_, _, i| noise(i, 1));
    let analysis = analysis_of(&model);
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    let sgd = OptimizerConfig::parse("sgd").unwrap();
    let cases = [
        (HessoConfig { target_group_sparsity: 1.0, ..HessoConfig::default() }, "target_group_sparsity"),
        (HessoConfig { target_group_sparsity: -0.1, ..HessoConfig::default() }, "target_group_sparsity"),
        (HessoConfig { pruning_periods: 0, ..HessoConfig::default() }, "pruning_periods"),
        (HessoConfig { pruning_steps: 3, pruning_periods: 4, ..HessoConfig::default() }, "pruning_steps"),
        (HessoConfig { group_divisible: 0, ..HessoConfig::default() }, "group_divisible"),
    ];
    for (config, setting) in cases {
        match Hesso::from_executor(&exec, &analysis, sgd, config) {
            Err(e @ HessoError::Config { .. }) => assert!(e.to_string().contains(setting), "{e}"),
            Err(e) => panic!("{setting}: unexpected error {e}"),
            Ok(_) => panic!("{setting}: accepted {config:?}"),
        }
    }
    let mut weights = HessoConfig::default();
    weights.importance.cosine = -1.0;
    let err = Hesso::from_executor(&exec, &analysis, sgd, weights).err().unwrap().to_string();
    assert!(err.contains("importance"), "{err}");
    // Producers missing from the parameters name the group and the initializer.
    let params = exec.trainable().filter(|p| p.name != "w0").map(|p| (p.name.clone(), p.tensor.shallow_clone())).collect();
    let err = Hesso::new(params, &analysis, sgd, HessoConfig::default()).err().unwrap().to_string();
    assert!(err.contains("b0:0") && err.contains("'w0'"), "{err}");
}

/// The scores follow hesso.md's five criteria, recomputed here on the host from the
/// parameters and the SGD momentum buffers: each criterion divided by its L2 norm over
/// all elements, weighted, summed.
#[test]
fn scores_are_the_normalized_weighted_criteria() {
    let model = mlp(3, &[4, 3], 1, &|layer, kind, i| noise(i, 60 + layer as u64 * 2 + u64::from(kind == "b")));
    let analysis = analysis_of(&model);
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    let importance =
        oto_optim::ImportanceWeights { magnitude: 0.1, avg_magnitude: 0.2, cosine: 0.3, taylor1: 0.15, taylor2: 0.25, obd: 0.0 };
    let config = HessoConfig { target_group_sparsity: 0.0, importance, ..HessoConfig::default() };
    let mut hesso = Hesso::from_executor(&exec, &analysis, OptimizerConfig::parse("sgd").unwrap(), config).unwrap();
    let x = inputs(32, 3, 12);
    let y = Tensor::ones([32, 1], (Kind::Float, Device::Cpu));
    train(&exec, &mut hesso, &x, &y, 3, 0.05);
    // Zero one element so the cosine's "1 for a zero element" is exercised.
    tch::no_grad(|| {
        let _ = param(&hesso, "w1").select(1, 2).fill_(0.0);
        let _ = param(&hesso, "b1").select(0, 2).fill_(0.0);
    });

    let host = |name: &str, state: bool| -> Vec<Vec<f64>> {
        let i = hesso.base.names.iter().position(|n| n == name).unwrap();
        let t = if state {
            hesso.base.state[i].momentum_buffer.as_ref().unwrap().shallow_clone()
        } else {
            hesso.base.params[i].shallow_clone()
        };
        let t = if t.dim() == 1 { t.unsqueeze(0) } else { t };
        let t = t.to_kind(Kind::Double);
        (0..t.size()[1]).map(|u| Vec::try_from(t.select(1, u)).unwrap()).collect()
    };
    let mut criteria: Vec<[f64; 5]> = Vec::new();
    for layer in 0..2 {
        let (w, b) = (host(&format!("w{layer}"), false), host(&format!("b{layer}"), false));
        let (gw, gb) = (host(&format!("w{layer}"), true), host(&format!("b{layer}"), true));
        for u in 0..w.len() {
            let xs: Vec<f64> = w[u].iter().chain(&b[u]).copied().collect();
            let gs: Vec<f64> = gw[u].iter().chain(&gb[u]).copied().collect();
            let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
            let dot: f64 = xs.iter().zip(&gs).map(|(a, b)| a * b).sum();
            let (nx, ng) = (norm(&xs), norm(&gs));
            let cosine = if nx * ng > 0.0 { 1.0 + dot / (nx * ng) } else { 1.0 };
            criteria.push([nx, nx / xs.len() as f64, cosine, dot.abs(), 0.5 * dot * dot]);
        }
    }
    let weights = importance.as_array();
    let norms: Vec<f64> = (0..5).map(|c| criteria.iter().map(|e| e[c] * e[c]).sum::<f64>().sqrt()).collect();
    let expected: Vec<f64> = criteria.iter().map(|e| (0..5).map(|c| weights[c] * e[c] / norms[c]).sum()).collect();
    let got: Vec<f64> = hesso.scores().unwrap().concat();
    assert_eq!(got.len(), 7);
    assert_eq!(criteria[4 + 2][2], 1.0);
    for (g, e) in got.iter().zip(&expected) {
        assert!((g - e).abs() < 1e-9 * e.abs().max(1.0), "scores {got:?}, expected {expected:?}");
    }
}
