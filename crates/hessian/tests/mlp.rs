//! The estimators against the MLP's exact Hessian (graphs/hessian_ref.py builds it in
//! float64, on the same weights and batch): Hutchinson's trace,
//! whole and per parameter tensor, within 3 of its standard errors of the exact trace; the
//! top eigenvalue by power iteration within 1% of the exact one.
//!
//! The estimators draw from their own seeded generators (not libtorch's global one), so
//! these tests run in parallel and each seed still gives the same draws.

use oto_hessian::{
    group_blocks, hutchinson, layer_blocks, obd_saliency, tensor_blocks, top_eigenvalues, weight_traces, HessianOperator, TraceConfig,
};
use oto_torch::data::Batch;
use oto_torch::exec::convert::to_tch;
use oto_torch::exec::Executor;
use oto_torch::loss::Loss;
use std::collections::HashMap;
use tch::Device;

fn reference() -> (HashMap<String, oto_onnx::Tensor>, Batch) {
    let dir = oto_testkit::root().join("graphs/hessian_ref");
    let read = |file: &str| -> HashMap<String, oto_onnx::Tensor> {
        let path = dir.join(file);
        oto_onnx::npz::read_npz(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run `make graphs` (graphs/hessian_ref.py)", path.display()))
            .into_iter()
            .collect()
    };
    let data = read("mlp.batch.npz");
    let batch =
        Batch { inputs: vec![to_tch(&data["x"], Device::Cpu).unwrap()], labels: Some(to_tch(&data["labels"], Device::Cpu).unwrap()) };
    (read("mlp.npz"), batch)
}

fn scalar(r: &HashMap<String, oto_onnx::Tensor>, key: &str) -> f64 {
    r[key].to_f64_vec()[0]
}

#[test]
fn hutchinson_trace_matches_the_exact_trace() {
    let (r, batch) = reference();
    let model = oto_testkit::zoo_model("mlp");
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    let mut op = HessianOperator::new(&exec, None, vec![batch], Loss::CrossEntropy { label_smoothing: 0.0 }).unwrap();
    let tensors = tensor_blocks(&op);
    let layers = layer_blocks(&op, &model).unwrap();
    let analysis = oto_graph::analyze(&model, &Default::default()).unwrap();
    let groups = group_blocks(&op, &analysis);
    let config = TraceConfig { tolerance: 1e-4, min_samples: 50, max_samples: 400, seed: 1 };
    let mut seen = 0;
    let h = hutchinson(&mut op, &[&tensors, &layers, &groups], &config, |k| seen = k).unwrap();
    assert_eq!((seen, op.products()), (h.samples, h.samples));
    let exact = scalar(&r, "trace");
    let t = &h.total;
    println!("trace {:.4} +- {:.4} ({} samples), exact {exact:.4}", t.trace, t.std_error, h.samples);
    // Rademacher vectors: the variance is 2 (|H|_F^2 - sum H_ii^2), large for this Hessian
    // (sd about 16 for a trace of 4.6): the standard error is what makes the check meaningful.
    assert!(t.std_error.is_finite() && t.std_error > 0.0, "standard error {}", t.std_error);
    assert!((t.trace - exact).abs() <= 3.0 * t.std_error, "trace {} +- {} vs exact {exact}", t.trace, t.std_error);
    assert_eq!(t.params, 6922);
    for e in &h.blocks[0] {
        let exact = scalar(&r, &format!("trace/{}", e.name));
        println!("  {}: {:.4} +- {:.4}, exact {exact:.4}", e.name, e.trace, e.std_error);
        assert!((e.trace - exact).abs() <= 3.0 * e.std_error, "{}: {} +- {} vs exact {exact}", e.name, e.trace, e.std_error);
    }
    // Layers (Gemm weight + bias) partition the parameters: their traces add up to the total.
    assert_eq!(h.blocks[1].len(), 3);
    let sum: f64 = h.blocks[1].iter().map(|e| e.trace).sum();
    assert!((sum - t.trace).abs() <= 1e-9 * t.trace.abs().max(1.0), "layers {sum} vs total {}", t.trace);
    assert_eq!(h.blocks[1].iter().map(|e| e.params).sum::<u64>(), 6922);
    // Two prunable groups (fc1's and fc2's 64 hidden units: weight rows and bias), each a
    // part of its layer's trace: fc1's producers are the whole of layer fc1.
    assert_eq!(h.blocks[2].len(), 2);
    assert_eq!(h.blocks[2].iter().map(|e| e.params).collect::<Vec<_>>(), vec![64 * 32 + 64, 64 * 64 + 64]);
    assert!((h.blocks[2][0].trace - h.blocks[1][0].trace).abs() <= 1e-9 * h.blocks[1][0].trace.abs().max(1.0));
    // OBD saliency of fc1's hidden unit j: 1/2 (sum_k D[j,k] W[j,k]^2 + D_b[j] b[j]^2) (Gemm
    // weights are [out, in] here), and the groups' saliencies add up to the group blocks'
    // sums of diag * w^2 / 2 only through the same entries: check unit by unit.
    let saliency = obd_saliency(&op, &h.diagonal, &analysis).unwrap();
    assert_eq!(saliency.len(), 2);
    let names = op.names().to_vec();
    let at = |n: &str| names.iter().position(|x| x == n).unwrap();
    let f64 = |t: &tch::Tensor| t.to_kind(tch::Kind::Double);
    let (w, b) = (f64(&op.params()[at("fc1.weight")]), f64(&op.params()[at("fc1.bias")]));
    let (dw, db) = (f64(&h.diagonal[at("fc1.weight")]), f64(&h.diagonal[at("fc1.bias")]));
    let terms = |d: &tch::Tensor, x: &tch::Tensor| d * x.square() * 0.5;
    let expected = terms(&dw, &w).sum_dim_intlist(1, false, tch::Kind::Double) + terms(&db, &b);
    let scale = terms(&dw, &w).abs().sum_dim_intlist(1, false, tch::Kind::Double) + terms(&db, &b).abs();
    let (expected, scale) = (Vec::<f64>::try_from(expected).unwrap(), Vec::<f64>::try_from(scale).unwrap());
    assert_eq!(saliency[0].1.len(), 64);
    for (j, ((s, e), m)) in saliency[0].1.iter().zip(&expected).zip(&scale).enumerate() {
        assert!((s - e).abs() <= 1e-12 * m, "unit {j}: {s} vs {e}");
    }
    assert!(saliency[0].1.iter().any(|s| *s != 0.0));
    // The diagonal estimate sums to the trace estimate.
    let diag: f64 = h.diagonal.iter().map(|d| d.sum(tch::Kind::Double).double_value(&[])).sum();
    assert!((diag - t.trace).abs() <= 1e-4 * t.trace.abs(), "diagonal sums to {diag}, trace {}", t.trace);
}

#[test]
fn power_iteration_finds_the_top_eigenvalue() {
    let (r, batch) = reference();
    let exec = Executor::new(&oto_testkit::zoo_model("mlp"), Device::Cpu).unwrap();
    let mut op = HessianOperator::new(&exec, None, vec![batch], Loss::CrossEntropy { label_smoothing: 0.0 }).unwrap();
    let exact = r["eigenvalues"].to_f64_vec();
    let found = top_eigenvalues(&mut op, 2, 300, 1e-5, 0).unwrap();
    println!("eigenvalues {found:?}, exact {exact:?}");
    assert!(found[0].converged, "{:?}", found[0]);
    assert!((found[0].value - exact[0]).abs() <= 0.01 * exact[0].abs(), "top eigenvalue {} vs exact {}", found[0].value, exact[0]);
    // Deflation: the second is below the first and no larger than the exact second.
    assert!(found[1].value < found[0].value && found[1].value <= exact[1] * 1.01, "second {} (exact {})", found[1].value, exact[1]);
}

/// Over two batches, H v is that of the mean loss: the batch split in halves gives the
/// product of the whole batch (no graph is cached across batches).
#[test]
fn several_batches_give_the_hessian_of_the_mean_loss() {
    let (_, batch) = reference();
    let exec = Executor::new(&oto_testkit::zoo_model("mlp"), Device::Cpu).unwrap();
    let ce = Loss::CrossEntropy { label_smoothing: 0.0 };
    let half = |range: std::ops::Range<i64>| Batch {
        inputs: vec![batch.inputs[0].narrow(0, range.start, range.end - range.start)],
        labels: batch.labels.as_ref().map(|l| l.narrow(0, range.start, range.end - range.start)),
    };
    let n = batch.len() as i64;
    let mut halves = HessianOperator::new(&exec, None, vec![half(0..n / 2), half(n / 2..n)], ce).unwrap();
    let mut whole = HessianOperator::new(&exec, None, vec![batch], ce).unwrap();
    assert!((halves.loss() - whole.loss()).abs() < 1e-6, "{} vs {}", halves.loss(), whole.loss());
    // Any vector will do (no seed needed): both sides multiply the same one.
    let v: Vec<tch::Tensor> = whole.params().iter().map(|p| tch::Tensor::randn(p.size(), (p.kind(), p.device()))).collect();
    let (a, b) = (halves.hvp(&v).unwrap(), whole.hvp(&v).unwrap());
    for (x, y) in a.iter().zip(&b) {
        let err = (x - y).abs().max().double_value(&[]);
        assert!(err <= 1e-5 * y.abs().max().double_value(&[]).max(1.0), "max |error| {err}");
    }
    assert!(b.iter().any(|t| t.abs().max().double_value(&[]) > 1e-2));
}

/// Over several batches Hutchinson takes its products several directions per pass (each
/// batch's graph built once for them): the estimates are those of the same directions one
/// product at a time, i.e. of the whole batch's operator (which keeps its graph and takes
/// one direction per pass), sample for sample, including where the stopping rule stops, and
/// with as many products.
#[test]
fn hutchinson_over_several_batches_shares_each_batch_graph() {
    let (_, batch) = reference();
    let exec = Executor::new(&oto_testkit::zoo_model("mlp"), Device::Cpu).unwrap();
    let ce = Loss::CrossEntropy { label_smoothing: 0.0 };
    let n = batch.len() as i64;
    let part = |range: std::ops::Range<i64>| Batch {
        inputs: vec![batch.inputs[0].narrow(0, range.start, range.end - range.start)],
        labels: batch.labels.as_ref().map(|l| l.narrow(0, range.start, range.end - range.start)),
    };
    let mut parts = HessianOperator::new(&exec, None, vec![part(0..n / 3), part(n / 3..n / 2), part(n / 2..n)], ce).unwrap();
    let mut whole = HessianOperator::new(&exec, None, vec![batch], ce).unwrap();
    assert_eq!(whole.directions_per_pass(), 1);
    assert!(parts.directions_per_pass() > 1, "{}", parts.directions_per_pass());
    let tensors = tensor_blocks(&whole);
    for config in [
        TraceConfig { tolerance: 0.0, min_samples: 12, max_samples: 12, seed: 4 },
        TraceConfig { tolerance: 0.5, min_samples: 10, max_samples: 3000, seed: 3 },
    ] {
        let (mut a_seen, mut b_seen) = (Vec::new(), Vec::new());
        let a = hutchinson(&mut parts, &[&tensors], &config, |k| a_seen.push(k)).unwrap();
        let b = hutchinson(&mut whole, &[&tensors], &config, |k| b_seen.push(k)).unwrap();
        assert_eq!((a.samples, a.converged, &a_seen), (b.samples, b.converged, &b_seen));
        assert_eq!(a_seen, (1..=a.samples).collect::<Vec<_>>());
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-5 * y.abs().max(1e-3);
        assert!(close(a.total.trace, b.total.trace) && close(a.total.std_error, b.total.std_error), "{:?} vs {:?}", a.total, b.total);
        for (x, y) in a.blocks[0].iter().zip(&b.blocks[0]) {
            assert!(close(x.trace, y.trace), "{}: {} vs {}", x.name, x.trace, y.trace);
        }
    }
    // No product past the stop: as many products as samples, on both.
    assert_eq!(parts.products(), whole.products());
}

/// Stochastic Lanczos quadrature: the largest Ritz value of 40 steps is the top eigenvalue
/// within 1% (Lanczos converges on the extremes first), the weights sum to 1, and the mean
/// of the runs' trace samples is within 3 standard errors of the exact trace.
#[test]
fn lanczos_quadrature_finds_the_extremes_and_the_trace() {
    let (r, batch) = reference();
    let exec = Executor::new(&oto_testkit::zoo_model("mlp"), Device::Cpu).unwrap();
    let mut op = HessianOperator::new(&exec, None, vec![batch], Loss::CrossEntropy { label_smoothing: 0.0 }).unwrap();
    let runs = oto_hessian::slq(&mut op, 6, 40, 5).unwrap();
    let exact = r["eigenvalues"].to_f64_vec()[0];
    for q in &runs {
        assert_eq!(q.nodes.len(), 40);
        assert!((q.weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let top = q.nodes[q.nodes.len() - 1];
        assert!((top - exact).abs() <= 0.01 * exact, "largest Ritz value {top} vs top eigenvalue {exact}");
    }
    let samples: Vec<f64> = runs.iter().map(|q| q.trace(6922)).collect();
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let se = (samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt();
    let trace = scalar(&r, "trace");
    println!("SLQ trace {mean:.4} +- {se:.4}, exact {trace:.4}");
    assert!((mean - trace).abs() <= 3.0 * se, "SLQ trace {mean} +- {se} vs exact {trace}");
}

/// The stopping rule: sampling stops at the first sample (from `min_samples` on) whose
/// standard error is at most `tolerance` of the trace, and not before; a tolerance no
/// estimate reaches runs to the cap, unconverged.
#[test]
fn hutchinson_stops_at_the_relative_standard_error() {
    let (_, batch) = reference();
    let model = oto_testkit::zoo_model("mlp");
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    let mut op = HessianOperator::new(&exec, None, vec![batch], Loss::CrossEntropy { label_smoothing: 0.0 }).unwrap();
    // The spread (sd about 16 for a trace of 4.6) needs about 50 samples for 50%.
    let tolerance = 0.5;
    let config = TraceConfig { tolerance, min_samples: 10, max_samples: 3000, seed: 3 };
    let h = hutchinson(&mut op, &[], &config, |_| {}).unwrap();
    assert!(h.converged && h.samples < config.max_samples, "no stop within {} samples: {:?}", h.samples, h.total);
    assert!(h.total.std_error <= tolerance * h.total.trace.abs(), "{:?}", h.total);
    // The same vectors (same seed) capped one sample earlier: not yet within the tolerance.
    assert!(h.samples > config.min_samples, "stopped at the first allowed sample ({})", h.samples);
    let shorter = TraceConfig { max_samples: h.samples - 1, ..config };
    let before = hutchinson(&mut op, &[], &shorter, |_| {}).unwrap();
    assert_eq!((before.samples, before.converged), (h.samples - 1, false));
    assert!(before.total.std_error > tolerance * before.total.trace.abs(), "{:?}", before.total);
    let unreachable = TraceConfig { tolerance: 0.0, min_samples: 2, max_samples: 12, seed: 3 };
    let capped = hutchinson(&mut op, &[], &unreachable, |_| {}).unwrap();
    assert_eq!((capped.samples, capped.converged), (12, false));
}

/// The per-weight traces a bit allocation needs: the three Gemm weights (not the biases),
/// in the order asked, each within 3 of its standard errors of the exact trace; the same
/// seed gives the same estimates; a name that is not a parameter is an error naming it.
#[test]
fn weight_traces_match_the_exact_per_tensor_traces() {
    let (r, batch) = reference();
    let model = oto_testkit::zoo_model("mlp");
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    let mut op = HessianOperator::new(&exec, None, vec![batch], Loss::CrossEntropy { label_smoothing: 0.0 }).unwrap();
    let names: Vec<String> = ["fc3.weight", "fc1.weight", "fc2.weight"].iter().map(|s| s.to_string()).collect();
    let config = TraceConfig { tolerance: 1e-4, min_samples: 50, max_samples: 300, seed: 7 };
    let traces = weight_traces(&mut op, &names, &config, |_| {}).unwrap();
    assert_eq!(traces.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["fc3.weight", "fc1.weight", "fc2.weight"]);
    assert_eq!(traces.iter().map(|t| t.params).collect::<Vec<_>>(), vec![640, 2048, 4096]);
    for t in &traces {
        let exact = scalar(&r, &format!("trace/{}", t.name));
        println!("{}: {:.4} +- {:.4}, exact {exact:.4}", t.name, t.trace, t.std_error);
        assert!(
            t.std_error > 0.0 && (t.trace - exact).abs() <= 3.0 * t.std_error,
            "{}: {} +- {} vs exact {exact}",
            t.name,
            t.trace,
            t.std_error
        );
    }
    assert_eq!(weight_traces(&mut op, &names, &config, |_| {}).unwrap(), traces);
    let bad = vec!["fc1.weight".to_string(), "conv9.weight".to_string()];
    let err = weight_traces(&mut op, &bad, &config, |_| {}).unwrap_err().to_string();
    assert!(err.contains("weight 'conv9.weight' is not a trainable parameter"), "{err}");
    let twice = vec!["fc1.weight".to_string(), "fc1.weight".to_string()];
    assert!(weight_traces(&mut op, &twice, &config, |_| {}).unwrap_err().to_string().contains("named twice"));
}

/// Estimators in parallel threads keep their seeds: each thread's estimate equals the one
/// the same seed gives alone (they draw from their own generators, not libtorch's).
#[test]
fn parallel_estimators_keep_their_seeds() {
    let run = |seed: u64| {
        let (_, batch) = reference();
        let exec = Executor::new(&oto_testkit::zoo_model("mlp"), Device::Cpu).unwrap();
        let mut op = HessianOperator::new(&exec, None, vec![batch], Loss::CrossEntropy { label_smoothing: 0.0 }).unwrap();
        let config = TraceConfig { tolerance: 0.0, min_samples: 2, max_samples: 20, seed };
        hutchinson(&mut op, &[], &config, |_| {}).unwrap().total
    };
    let alone: Vec<_> = (0..4).map(run).collect();
    let threads: Vec<_> = (0..4).map(|seed| std::thread::spawn(move || run(seed))).collect();
    let together: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(alone, together);
    assert!(alone[0] != alone[1], "two seeds gave the same estimate");
}
