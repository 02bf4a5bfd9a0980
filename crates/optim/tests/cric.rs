//! HESSO-CRIC on small problems whose answer is known: the phases and their lengths, each
//! cycle restarting bitwise from the snapshot, the probes, the termination rule, the state
//! that does not grow with the steps, a small hidden unit that the loss depends on (plain
//! HESSO removes it, CRIC keeps it), a trainer run interrupted mid-cycle and resumed
//! bitwise, and the settings' validation.

mod common;
use common::*;
use oto_onnx::Model;
use oto_optim::{CricConfig, Hesso, HessoConfig, HessoError, ImportanceWeights, Phase};
use oto_torch::exec::{Executor, Mode};
use oto_torch::optim::{OptimizerConfig, TrainingOptimizer};
use oto_torch::schedule::AfterPruning;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

fn mse(exec: &Executor, x: &Tensor, y: &Tensor, mode: Mode) -> Tensor {
    let out = exec.forward(&[x.shallow_clone()], mode).unwrap().remove(0);
    (out - y).square().mean(Kind::Float)
}

/// One full-batch step; the probe is the eval-mode loss on the same data.
fn step(exec: &Executor, hesso: &mut Hesso, x: &Tensor, y: &Tensor, lr: f64, mut on_probe: impl FnMut()) {
    let loss = mse(exec, x, y, Mode::Train);
    hesso.zero_grad();
    loss.backward();
    let mut probe = || {
        on_probe();
        Ok::<f64, oto_torch::error::Error>(tch::no_grad(|| mse(exec, x, y, Mode::Eval)).double_value(&[]))
    };
    hesso.step_with_probe(lr, &mut probe).unwrap();
}

/// Bit patterns of every parameter and every base-optimizer state tensor.
fn bits(hesso: &Hesso) -> Vec<Vec<u32>> {
    let flat = |t: &Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap().iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
    let mut out: Vec<Vec<u32>> = hesso.base.params.iter().map(flat).collect();
    for s in &hesso.base.state {
        for t in [&s.momentum_buffer, &s.exp_avg, &s.exp_avg_sq].into_iter().flatten() {
            out.push(flat(t));
        }
    }
    out
}

fn param(exec: &Executor, name: &str) -> Tensor {
    exec.parameters().iter().find(|p| p.name == name).unwrap().tensor.shallow_clone()
}

/// Hidden units of layer `layer` whose producer slices (column of w, entry of b) are all zero.
fn zero_units(exec: &Executor, layer: usize) -> Vec<i64> {
    let w = param(exec, &format!("w{layer}"));
    let b = param(exec, &format!("b{layer}"));
    (0..b.size()[0]).filter(|&u| w.select(1, u).abs().max().double_value(&[]) == 0.0 && b.double_value(&[u]) == 0.0).collect()
}

fn cric(start: u64, sampling: u64, cycles: u64, hybrid: u64) -> CricConfig {
    CricConfig {
        start_cric_step: start,
        sampling_steps: sampling,
        max_cycles: cycles,
        tolerance: 0,
        hybrid_training_steps: hybrid,
        probe_weight: 0.2,
    }
}

/// A random two-hidden-layer MLP (8 and 6 units) regressing a random teacher.
fn two_layer_problem() -> (Model, Tensor, Tensor) {
    let model = mlp(5, &[8, 6], 2, &|layer, kind, i| 0.7 * noise(i, 20 + layer as u64 * 2 + u64::from(kind == "b")));
    let teacher = mlp(5, &[5], 2, &|layer, kind, i| noise(i, 90 + layer as u64 * 2 + u64::from(kind == "b")));
    let x = inputs(128, 5, 31);
    let y = tch::no_grad(|| Executor::new(&teacher, Device::Cpu).unwrap().forward(&[x.shallow_clone()], Mode::Eval).unwrap().remove(0));
    (model, x, y)
}

#[test]
fn phases_run_in_order_and_every_cycle_restarts_from_the_snapshot() {
    let (model, x, y) = two_layer_problem();
    let analysis = analysis_of(&model);
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    let (w, d, max_cycles, h, total) = (3u64, 60u64, 3u64, 6u64, 200u64);
    let config = HessoConfig { target_group_sparsity: 0.5, cric: Some(cric(w, d, max_cycles, h)), ..HessoConfig::default() };
    let mut hesso = Hesso::from_executor(&exec, &analysis, OptimizerConfig::parse("sgd").unwrap(), config).unwrap();
    assert_eq!((hesso.total_elements(), hesso.target_count()), (14, 7));

    // Plain `step` cannot run CRIC: a clear error, nothing updated.
    let before = bits(&hesso);
    let loss = mse(&exec, &x, &y, Mode::Train);
    loss.backward();
    match hesso.step(0.05) {
        Err(e @ HessoError::Config { .. }) => assert!(e.to_string().contains("step_with_probe"), "{e}"),
        other => panic!("plain step with CRIC: {:?}", other.map(|_| ())),
    }
    assert_eq!((hesso.steps(), bits(&hesso)), (0, before));

    let mut phases = Vec::new();
    let mut after_step: Vec<Vec<Vec<u32>>> = Vec::new();
    // During the snapshot step's probes: how many hidden units of each layer are zero.
    let probe_zeros = std::cell::RefCell::new(Vec::new());
    for s in 0..total {
        step(&exec, &mut hesso, &x, &y, 0.05, || {
            if s + 1 == w {
                probe_zeros.borrow_mut().push((zero_units(&exec, 0).len(), zero_units(&exec, 1).len()));
            }
        });
        let m = hesso.metrics().unwrap();
        phases.push(m.phase);
        after_step.push(bits(&hesso));
        if s + 1 == w {
            // The first violating set is the T lowest at the snapshot; nothing decayed yet.
            assert_eq!((m.decaying, m.pruned, m.important, m.cycle), (7, 0, 7, 1), "{m:?}");
            assert_eq!(m.group_sparsity, 0.0);
        }
    }
    let report = hesso.cric_report().unwrap();
    eprintln!("{report:?}");
    let cycles = report.cycles;
    // This problem runs more than one cycle (new low-score elements appear after the first).
    assert!((2..=max_cycles).contains(&cycles), "{report:?}");

    // Phases in order, with the configured lengths.
    let mut expected = vec![Phase::Warmup; w as usize];
    expected.extend(vec![Phase::Cycle; (cycles * d) as usize]);
    expected.extend(vec![Phase::Hybrid; h as usize]);
    expected.resize(total as usize, Phase::Pruned);
    assert_eq!(phases, expected);
    assert_eq!(report.snapshot_step, Some(w));
    assert_eq!(report.hybrid_start, Some(w + cycles * d));

    // The termination rule: every cycle but the last brought more than `tolerance` (0)
    // new elements, which are the next cycle's violating set; the last brought none or
    // was the last allowed.
    assert_eq!(report.violating[0], 7);
    assert_eq!(report.new_elements.len() as u64, cycles);
    assert_eq!(report.violating.len() as u64, cycles);
    for c in 0..cycles as usize - 1 {
        assert!(report.new_elements[c] > 0);
        assert_eq!(report.violating[c + 1], report.new_elements[c]);
    }
    assert!(report.new_elements[cycles as usize - 1] == 0 || cycles == max_cycles, "{report:?}");

    // Every cycle (and the hybrid training) starts from the snapshot: parameters and
    // momentum buffers bitwise equal to those after the warm-up's last step.
    let snapshot = &after_step[w as usize - 1];
    for c in 1..=cycles {
        assert!(after_step[(w + c * d) as usize - 1] == *snapshot, "cycle {c} did not end on the snapshot");
    }
    // Inside a cycle the weights did move.
    assert!(after_step[w as usize + 1] != *snapshot);

    // The probes: one reference, then 25/50/75% of each group (8 units: 2, 4, 6; 6 units:
    // 1, 3, 4), each restored before the next.
    assert_eq!(*probe_zeros.borrow(), vec![(0, 0), (2, 0), (4, 0), (6, 0), (0, 1), (0, 3), (0, 4)]);
    let zeroed: Vec<[usize; 3]> = report.probes.iter().map(|p| p.zeroed).collect();
    assert_eq!(zeroed, vec![[2, 4, 6], [1, 3, 4]]);
    assert!(report.probes.iter().all(|p| p.log_ratio.is_finite()));

    // The end: exactly T elements, exactly zero, with zero momentum.
    let m = hesso.metrics().unwrap();
    assert_eq!((m.important, m.decaying, m.pruned, m.phase), (7, 0, 7, Phase::Pruned), "{m:?}");
    assert_eq!(m.group_sparsity, 0.5);
    assert_eq!(m.norm_redundant, 0.0);
    assert!(hesso.schedule_done());
    let pruned = hesso.pruned_elements();
    assert_eq!(pruned.values().map(Vec::len).sum::<usize>(), 7);
    for (layer, id) in [(0usize, "b0:0"), (1, "b1:0")] {
        let zero: Vec<usize> = zero_units(&exec, layer).into_iter().map(|u| u as usize).collect();
        assert_eq!(zero, pruned[id], "layer {layer}");
        let i = hesso.base.names.iter().position(|n| *n == format!("w{layer}")).unwrap();
        let buf = hesso.base.state[i].momentum_buffer.as_ref().unwrap();
        for &u in &pruned[id] {
            assert_eq!(buf.select(1, u as i64).abs().max().double_value(&[]), 0.0);
        }
    }
}

/// Three hidden units are dead (zero weights in and out: no gradient, score 0), so the
/// first cycle's violating set stays the lowest and no new element appears: the cycles
/// stop after one although five are allowed, and the dead units are pruned.
#[test]
fn cycles_stop_when_no_new_low_score_element_appears() {
    let dead = |unit: usize| unit >= 5;
    let model = mlp(4, &[8], 1, &|layer, kind, i| match (layer, kind) {
        (0, "w") if dead(i % 8) => 0.0,
        (0, "b") if dead(i) => 0.0,
        (1, "w") if dead(i) => 0.0,
        _ => 0.8 * noise(i, 50 + layer as u64 * 2 + u64::from(kind == "b")),
    });
    let analysis = analysis_of(&model);
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    let x = inputs(64, 4, 8);
    let y = x.sum_dim_intlist(1, true, Kind::Float).sin();
    let importance = ImportanceWeights { magnitude: 1.0, avg_magnitude: 0.0, cosine: 0.0, taylor1: 0.0, taylor2: 0.0, obd: 0.0 };
    let config = HessoConfig { target_group_sparsity: 3.0 / 8.0, importance, cric: Some(cric(3, 5, 5, 4)), ..HessoConfig::default() };
    let mut hesso = Hesso::from_executor(&exec, &analysis, OptimizerConfig::parse("sgd").unwrap(), config).unwrap();
    for _ in 0..20 {
        step(&exec, &mut hesso, &x, &y, 0.05, || {});
    }
    let report = hesso.cric_report().unwrap();
    assert_eq!((report.cycles, report.new_elements.clone(), report.hybrid_start), (1, vec![0], Some(3 + 5)), "{report:?}");
    assert_eq!(hesso.pruned_elements(), BTreeMap::from([("b0:0".to_string(), vec![5, 6, 7])]));
    assert_eq!(hesso.metrics().unwrap().phase, Phase::Pruned);
}

/// Bytes of the tensors of the optimizer's checkpoint state beyond the base optimizer's.
fn extra_bytes(hesso: &Hesso) -> (usize, usize) {
    let extra = hesso.extra_state().unwrap();
    let bytes = extra.tensors.iter().map(|(_, t)| t.numel() * t.kind().elt_size_in_bytes()).sum();
    (bytes, extra.tensors.len())
}

/// The state CRIC keeps is one snapshot (parameters and momentum) plus one f64 running sum
/// per element: the same after 1 cycle step as after 60, and in a later cycle.
#[test]
fn the_state_does_not_grow_with_the_steps() {
    let (model, x, y) = two_layer_problem();
    let analysis = analysis_of(&model);
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    let config = HessoConfig { target_group_sparsity: 0.5, cric: Some(cric(3, 60, 3, 5)), ..HessoConfig::default() };
    let mut hesso = Hesso::from_executor(&exec, &analysis, OptimizerConfig::parse("sgd").unwrap(), config).unwrap();
    let param_bytes: usize = hesso.base.params.iter().map(|p| p.numel() * 4).sum();
    // Snapshot of the parameters and of their momentum buffers, and the score sum.
    let expected = 2 * param_bytes + 8 * hesso.total_elements();
    let mut seen = Vec::new();
    for s in 1..=130u64 {
        step(&exec, &mut hesso, &x, &y, 0.05, || {});
        if [4, 30, 62, 64, 100, 125].contains(&s) {
            let m = hesso.metrics().unwrap();
            let json = serde_json::to_string(&hesso.extra_state().unwrap().json).unwrap().len();
            seen.push((s, m.phase, m.cycle, extra_bytes(&hesso), json));
        }
    }
    eprintln!("{seen:?}");
    assert_eq!(seen[0].1, Phase::Cycle);
    assert_eq!(seen[1].1, Phase::Cycle);
    for (s, _, _, (bytes, _), _) in &seen {
        assert_eq!(*bytes, expected, "step {s}: {seen:?}");
    }
    // The JSON (counters, sets as element lists, a few numbers per group and per cycle)
    // stays within a bound set by the elements and the cycles, not the steps.
    let (first, last) = (seen[0].4, seen.iter().map(|s| s.4).max().unwrap());
    assert!(last < first + 400, "{seen:?}");
}

/// The target depends on hidden unit 4 through a large outgoing weight (8.0) although its
/// incoming weights are small (0.05 scale); units 5-7 are redundant (larger incoming
/// weights, zero outgoing ones). The student starts at the target exactly, so every
/// gradient is zero at the period start and the scores are the magnitudes: plain HESSO
/// removes unit 4 with two redundant units and the fit collapses. CRIC's first cycle sees
/// the loss push back on unit 4 while it decays (its Taylor terms rise), keeps it and
/// removes the three redundant units.
#[test]
fn cric_keeps_a_small_unit_the_loss_depends_on_where_plain_hesso_removes_it() {
    let (features, hidden) = (6usize, 8usize);
    let incoming = |i: usize| {
        let unit = i % hidden;
        match unit {
            0..=3 => 0.8 * noise(i, 71),
            4 => 0.05 * noise(i, 72).signum() * (0.5 + 0.5 * noise(i, 73).abs()),
            _ => 0.15 * noise(i, 74),
        }
    };
    let outgoing = [1.0f32, -1.2, 0.9, -0.7, 8.0, 0.0, 0.0, 0.0];
    let model = mlp(features, &[hidden], 1, &|layer, kind, i| match (layer, kind) {
        (0, "w") => incoming(i),
        (0, _) => [0.1f32, 0.1, 0.1, 0.1, 0.02, 0.0, 0.0, 0.0][i],
        (_, "w") => outgoing[i],
        _ => 0.0,
    });
    let x = inputs(256, features, 3);
    let y = tch::no_grad(|| Executor::new(&model, Device::Cpu).unwrap().forward(&[x.shallow_clone()], Mode::Eval).unwrap().remove(0));
    let analysis = analysis_of(&model);
    let var = y.var(false).double_value(&[]);

    let run = |cric_config: Option<CricConfig>| {
        let exec = Executor::new(&model, Device::Cpu).unwrap();
        let config = HessoConfig {
            target_group_sparsity: 3.0 / 8.0,
            start_pruning_step: 10,
            pruning_steps: 20,
            pruning_periods: 1,
            cric: cric_config,
            ..HessoConfig::default()
        };
        let mut hesso = Hesso::from_executor(&exec, &analysis, OptimizerConfig::parse("sgd").unwrap(), config).unwrap();
        assert_eq!(hesso.target_count(), 3);
        let mut scores_at_start = None;
        let mut phases = Vec::new();
        for s in 0..120u64 {
            if s == 10 {
                scores_at_start = Some(hesso.scores().unwrap().remove(0));
            }
            step(&exec, &mut hesso, &x, &y, 0.02, || {});
            phases.push(hesso.metrics().unwrap().phase);
        }
        let loss = tch::no_grad(|| mse(&exec, &x, &y, Mode::Eval)).double_value(&[]);
        (hesso.pruned_elements().remove("b0:0").unwrap(), loss, scores_at_start.unwrap(), hesso, phases)
    };

    let (plain, plain_loss, scores, _, phases) = run(None);
    // Plain HESSO's phases: 10 warm-up steps, the 20 steps of its one period, then pruned.
    let mut expected = vec![Phase::Warmup; 10];
    expected.extend([Phase::Pruning; 20]);
    expected.resize(120, Phase::Pruned);
    assert_eq!(phases, expected);
    eprintln!("plain HESSO pruned {plain:?}, loss {plain_loss:.5} (target variance {var:.4}); scores at the period start {scores:?}");
    // Honest case: with the default criteria, unit 4 scores lowest and plain HESSO removes it.
    let lowest = (0..hidden).min_by(|a, b| scores[*a].total_cmp(&scores[*b])).unwrap();
    assert_eq!(lowest, 4, "{scores:?}");
    assert!(plain.contains(&4), "{plain:?}");

    let (chosen, cric_loss, _, hesso, _) = run(Some(cric(10, 15, 4, 20)));
    let report = hesso.cric_report().unwrap();
    let means = hesso.cric_mean_scores().unwrap().unwrap();
    eprintln!("CRIC pruned {chosen:?}, loss {cric_loss:.5}; {report:?}; mean scores {means:?}");
    assert_eq!(chosen, vec![5, 6, 7]);
    assert!(cric_loss < 0.2 * plain_loss, "CRIC loss {cric_loss} vs plain {plain_loss}");
}

mod trainer {
    use super::*;
    use oto_torch::train::{set_threads, Trainer};

    const STEPS: u64 = 40;

    fn config(target: f64) -> HessoConfig {
        HessoConfig { target_group_sparsity: target, cric: Some(cric(6, 8, 2, 10)), ..HessoConfig::default() }
    }

    /// A trainer over demo_cnn and the digits data, stepping HESSO-CRIC (SGD), checkpointing every 3 steps.
    fn trainer(hesso: HessoConfig, checkpoint: Option<PathBuf>) -> Trainer<Hesso> {
        demo_trainer(&DemoRun { optimizer: "sgd", lr: 0.05, seed: 5, steps: STEPS, checkpoint_every: 3 }, hesso, checkpoint)
    }

    /// CRIC's cycles are trained again: the run takes its length plus the finished cycles'
    /// steps, every cycle and the hybrid training start at the snapshot's learning rate,
    /// and the last step takes the schedule's last rate.
    #[test]
    fn cric_cycles_are_extra_steps_on_the_schedule() {
        set_threads(Some(2));
        let cric = config(0.5).cric.unwrap();
        let mut t = trainer(config(0.5), None);
        let mut lrs = Vec::new();
        t.run(|r| lrs.push(r.lr)).unwrap();
        let report = t.optimizer.cric_report().unwrap();
        assert!(report.cycles >= 1, "{report:?}");
        assert_eq!(report.replayed_steps, report.cycles * cric.sampling_steps);
        assert_eq!((t.step, lrs.len() as u64), (STEPS + report.replayed_steps, t.step));
        let schedule = t.config.schedule;
        let start = cric.start_cric_step;
        for c in 0..report.cycles {
            for k in 0..cric.sampling_steps {
                let i = start + c * cric.sampling_steps + k;
                assert_eq!(lrs[i as usize], schedule.lr_at(start + k), "cycle {c}, its step {k}");
            }
        }
        let hybrid = report.hybrid_start.unwrap();
        assert_eq!(hybrid, start + report.replayed_steps);
        for i in hybrid..t.step {
            assert_eq!(lrs[i as usize], schedule.lr_at(i - report.replayed_steps), "step {i}");
        }
        assert_eq!(lrs.last(), Some(&schedule.lr_at(STEPS - 1)));
        let m = t.optimizer.metrics().unwrap();
        assert_eq!((m.phase, m.pruned), (Phase::Pruned, t.optimizer.target_count()), "{m:?}");
    }

    /// With the schedule restarting after pruning, the learning rate follows the plain
    /// schedule until the structure is final (plain HESSO: the end of its last period;
    /// CRIC: the end of the hybrid training, on the schedule's count), then starts again
    /// at the base rate and decays over the steps left; and the model is pruned as before.
    #[test]
    fn learning_rate_restarts_when_the_structure_is_final() {
        set_threads(Some(2));
        let plain = HessoConfig {
            target_group_sparsity: 0.5,
            start_pruning_step: 5,
            pruning_steps: 10,
            pruning_periods: 2,
            ..HessoConfig::default()
        };
        for hesso in [plain, config(0.5)] {
            let mut t = trainer(hesso, None);
            t.config.schedule.after_pruning = AfterPruning::Restart;
            let mut lrs = Vec::new();
            t.run(|r| lrs.push(r.lr)).unwrap();
            let replayed = t.optimizer.replayed_steps();
            let at = t.optimizer.structure_final_at().unwrap();
            match (&hesso.cric, t.optimizer.cric_report()) {
                (None, _) => assert_eq!(at, 15),
                (Some(c), Some(report)) => assert_eq!(at, report.hybrid_start.unwrap() + c.hybrid_training_steps - replayed),
                (Some(_), None) => panic!("CRIC ran without a report"),
            }
            let schedule = t.config.schedule;
            let base = schedule.lr;
            // The steps of the run on the schedule's count: the last `STEPS - at` are restarted.
            let tail = &lrs[lrs.len() - (STEPS - at) as usize..];
            assert_eq!(tail[0], base, "{hesso:?}");
            for (k, lr) in tail.iter().enumerate() {
                assert_eq!(*lr, schedule.lr_after_pruning(at + k as u64, Some(at)), "step {k} after the restart");
                assert!(k == 0 || *lr < tail[k - 1], "the restarted rate decays");
            }
            let before = lrs[lrs.len() - tail.len() - 1];
            assert_eq!(before, schedule.lr_at(at - 1));
            assert!(before < 0.75 * base, "the plain schedule had decayed: {before}");
            let m = t.optimizer.metrics().unwrap();
            assert_eq!((m.phase, m.pruned), (Phase::Pruned, t.optimizer.target_count()), "{m:?}");
        }
    }

    /// Interrupted in the middle of the first cycle (step 9: snapshot after step 6, cycle
    /// steps 7-14), resumed from the checkpoint: the run ends bitwise equal to the
    /// uninterrupted one (weights, BatchNorm statistics, momentum, losses, choice, report),
    /// the learning rate restarting after the hybrid training in both (the resumed run
    /// finds the restart's step from the restored state).
    #[test]
    fn interrupted_cric_run_resumes_bitwise() {
        set_threads(Some(2));
        let dir = tempfile::tempdir().unwrap();
        let restarting = |mut t: Trainer<Hesso>| {
            t.config.schedule.after_pruning = AfterPruning::Restart;
            t
        };

        let mut whole = restarting(trainer(config(0.5), None));
        let mut whole_lrs = Vec::new();
        whole.run(|r| whole_lrs.push(r.lr)).unwrap();
        // The rate is back at the base rate at the (absolute) step the structure is final.
        let restart = (whole.optimizer.structure_final_at().unwrap() + whole.optimizer.replayed_steps()) as usize;
        assert_eq!(whole_lrs[restart], whole.config.schedule.lr, "{whole_lrs:?}");
        assert!(whole_lrs[restart - 1] < whole.config.schedule.lr, "{whole_lrs:?}");
        let m = whole.optimizer.metrics().unwrap();
        assert_eq!((m.phase, m.pruned), (Phase::Pruned, whole.optimizer.target_count()), "{m:?}");

        let path = dir.path().join("ck.safetensors");
        let mut first = restarting(trainer(config(0.5), Some(path.clone())));
        first.run_until(9, |_| {}).unwrap();
        let m = first.optimizer.metrics().unwrap();
        assert_eq!((m.phase, m.cycle), (Phase::Cycle, 1), "{m:?}");
        assert!(m.decaying > 0);
        drop(first);

        let mut resumed = restarting(trainer(config(0.5), Some(path.clone())));
        resumed.resume(&path).unwrap();
        assert_eq!((resumed.step, resumed.optimizer.steps()), (9, 9));
        assert_eq!(resumed.optimizer.metrics().unwrap().phase, Phase::Cycle);
        let mut resumed_lrs = Vec::new();
        resumed.run(|r| resumed_lrs.push(r.lr)).unwrap();
        assert_eq!(resumed_lrs, whole_lrs[9..]);

        assert_eq!(resumed.optimizer.pruned_elements(), whole.optimizer.pruned_elements());
        assert_eq!(resumed.optimizer.cric_report(), whole.optimizer.cric_report());
        assert_eq!(resumed.losses, whole.losses);
        let (a, b) = (state_bits(&resumed), state_bits(&whole));
        assert_eq!(a.len(), b.len());
        for ((name, x), (_, y)) in a.iter().zip(&b) {
            assert!(x == y, "'{name}' differs after resume");
        }

        // A plain-HESSO checkpoint does not resume a CRIC run, and the other way round.
        let mut plain = trainer(HessoConfig { cric: None, ..config(0.5) }, None);
        let err = plain.resume(&path).unwrap_err().to_string();
        assert!(err.contains("HESSO settings"), "{err}");
    }
}

#[test]
fn cric_settings_are_validated_by_name() {
    let model = mlp(3, &[4], 1, &|_, _, i| noise(i, 1));
    let analysis = analysis_of(&model);
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    let sgd = OptimizerConfig::parse("sgd").unwrap();
    let good = cric(2, 3, 2, 4);
    let cases = [
        (CricConfig { start_cric_step: 0, ..good }, "cric.start_cric_step"),
        (CricConfig { sampling_steps: 0, ..good }, "cric.sampling_steps"),
        (CricConfig { max_cycles: 0, ..good }, "cric.max_cycles"),
        (CricConfig { hybrid_training_steps: 0, ..good }, "cric.hybrid_training_steps"),
        (CricConfig { probe_weight: -0.5, ..good }, "cric.probe_weight"),
        (CricConfig { probe_weight: f64::NAN, ..good }, "cric.probe_weight"),
    ];
    for (c, setting) in cases {
        let config = HessoConfig { cric: Some(c), ..HessoConfig::default() };
        match Hesso::from_executor(&exec, &analysis, sgd, config) {
            Err(e @ HessoError::Config { .. }) => assert!(e.to_string().contains(setting), "{e}"),
            Err(e) => panic!("{setting}: unexpected error {e}"),
            Ok(_) => panic!("{setting}: accepted {c:?}"),
        }
    }
    assert!(Hesso::from_executor(&exec, &analysis, sgd, HessoConfig { cric: Some(good), ..HessoConfig::default() }).is_ok());

    // Settings written before CRIC existed still load, as plain HESSO.
    let old = r#"{"target_group_sparsity":0.5,"start_pruning_step":0,"pruning_steps":1,"pruning_periods":1,"group_divisible":1,
        "importance":{"magnitude":0.2,"avg_magnitude":0.2,"cosine":0.2,"taylor1":0.2,"taylor2":0.2}}"#;
    let config: HessoConfig = serde_json::from_str(old).unwrap();
    assert_eq!(config, HessoConfig::default());
    let with = HessoConfig { cric: Some(good), ..HessoConfig::default() };
    assert_eq!(serde_json::from_str::<HessoConfig>(&serde_json::to_string(&with).unwrap()).unwrap(), with);

    // The lengths for a budget: 10% warm-up, cycles of 5% (3 at most), 15% hybrid.
    let budget = CricConfig::for_budget(300);
    assert_eq!((budget.start_cric_step, budget.sampling_steps, budget.max_cycles, budget.hybrid_training_steps), (30, 15, 3, 45));
    assert_eq!(budget.max_schedule_steps(), 120);
    assert_eq!(HessoConfig { cric: Some(budget), ..HessoConfig::default() }.schedule_steps(), 120);
    let plain = HessoConfig { start_pruning_step: 60, pruning_steps: 121, pruning_periods: 3, ..HessoConfig::default() };
    assert_eq!(plain.schedule_steps(), 60 + 40 * 3);
    assert!(CricConfig::for_budget(3).validate().is_ok());
}
