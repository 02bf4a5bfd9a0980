//! Means over pruned channels keep their original divisor: RMSNorm written out
//! (ReduceMean of squares) and the RMSNormalization operator (opset 23) over a width
//! with zeroed channels; the compact model computes in onnxruntime what the zeroed full
//! model computes, and without the kept divisor it would not.

mod common;
use common::*;
use oto_construct::construct;
use oto_graph::{analyze, AnalyzeOptions, ShapeLocation};
use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
use oto_onnx::{Model, Tensor, TensorData};
use oto_testkit::{deviation, run_ort};
use std::collections::BTreeMap;

/// `[B, 5, 8] -> 16 channels (+ bias) -> RMSNorm -> 16 -> 6`, twice normalized on the way
/// (`y = head(rms(h + ff(rms(h))))`); `op`: the RMSNormalization operator (epsilon 0.05,
/// large enough that a wrong one shows), otherwise Pow, ReduceMean, Add, Sqrt, Div, Mul.
fn rms_model(op: bool) -> Model {
    let (s, e) = (5i64, 16usize);
    let mut b = GraphBuilder::new(if op { "rms_op" } else { "rms_decomposed" });
    let x = b.input_f32("x", &batch_dims(&[s, 8]));
    let scalar = |b: &mut GraphBuilder, name: &str, v: f32| b.initializer(name, Tensor::new(vec![], TensorData::F32(vec![v])).unwrap());
    let (two, eps, last) =
        if op { Default::default() } else { (scalar(&mut b, "two", 2.0), scalar(&mut b, "eps", 0.05), b.ints("last_axis", &[-1])) };
    let mut weight = weights();
    let norm = |b: &mut GraphBuilder, t: &str, scale: &str| -> String {
        if op {
            return b.node_with("RMSNormalization", &[t, scale], &[], &[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(0.05))]);
        }
        let p = b.node("Pow", &[t, &two], &[]);
        let m = b.node_with("ReduceMean", &[&p, &last], &[], &[("keepdims", Attr::Int(1))]);
        let a = b.node("Add", &[&m, &eps], &[]);
        let r = b.node("Sqrt", &[&a], &[]);
        let n = b.node("Div", &[t, &r], &[]);
        b.node("Mul", &[&n, scale], &[])
    };
    let w0 = weight(&mut b, "in.weight", &[8, e]);
    let b0 = weight(&mut b, "in.bias", &[e]);
    let h = b.node("MatMul", &[&x, &w0], &[]);
    let h = b.node("Add", &[&h, &b0], &[]);
    let s1 = weight(&mut b, "ln1.weight", &[e]);
    let n1 = norm(&mut b, &h, &s1);
    let w1 = weight(&mut b, "ff.weight", &[e, e]);
    let f = b.node("MatMul", &[&n1, &w1], &[]);
    let h = b.node("Add", &[&h, &f], &[]);
    let s2 = weight(&mut b, "ln2.weight", &[e]);
    let n2 = norm(&mut b, &h, &s2);
    let w2 = weight(&mut b, "head.weight", &[e, 6]);
    let y = b.node("MatMul", &[&n2, &w2], &["y"]);
    b.output_f32(&y, &batch_dims(&[s, 6]));
    b.opset(if op { 23 } else { 18 });
    b.build().unwrap()
}

#[test]
fn means_over_pruned_channels_keep_their_divisor() {
    let inputs = uniform_input("x", &[2, 5, 8], 4);
    for op in [false, true] {
        let model = rms_model(op);
        let name = if op { "RMSNormalization" } else { "ReduceMean" };
        let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
        let g = analysis.groups.iter().find(|g| g.members.iter().any(|m| m.initializer == "in.weight" && m.axis == 1)).unwrap();
        assert!(g.prunable, "{name}: {}", analysis.table());
        let divisors = g.shape_constants.iter().filter(|c| matches!(c.location, ShapeLocation::MeanDivisor { count: 16, .. })).count();
        assert_eq!(divisors, 2, "{name}: {:?}", g.shape_constants);
        let removed: BTreeMap<String, Vec<usize>> = [(g.id.clone(), vec![0, 3, 4, 9, 15])].into();
        let full = oto_construct::zero_producers(&model, &analysis, &removed).unwrap();
        let (compact, report) = construct(&full, &analysis, &removed).unwrap();
        assert_eq!(report.groups[0].kept, 11, "{name}");
        assert_eq!(float_elements(&compact), predicted_float_elements(&full, &analysis, &removed), "{name}");
        let want = run_ort(&full.proto, &inputs);
        let (err, tol) = deviation(&want, &run_ort(&compact.proto, &inputs));
        assert!(err <= tol, "{name}: max deviation {err:.3e} > {tol:.3e}");

        // Control: the same compact model without the divisor's Muls computes otherwise.
        let mut naive = compact.proto.clone();
        let gp = naive.graph.as_mut().unwrap();
        let muls: Vec<(String, String)> = gp
            .node
            .iter()
            .filter(|n| n.name.as_deref().is_some_and(|s| s.contains(".divisor")))
            .map(|n| (n.input[0].clone(), n.output[0].clone()))
            .collect();
        assert_eq!(muls.len(), 2, "{name}");
        gp.node.retain(|n| !n.name.as_deref().is_some_and(|s| s.contains(".divisor")));
        for (from, to) in &muls {
            for n in gp.node.iter_mut() {
                for i in n.input.iter_mut().filter(|i| *i == to) {
                    *i = from.clone();
                }
            }
        }
        let (err, tol) = deviation(&want, &run_ort(&naive, &inputs));
        assert!(err > 10.0 * tol, "{name}: the divisor made no difference ({err:.3e})");
    }
}
