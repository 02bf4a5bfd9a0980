//! Shape constants held by `Constant` nodes and shared by layers of different groups:
//! each pruned layer reads its own edited copy, the others keep the original.

mod common;
use common::*;
use oto_construct::construct;
use oto_graph::{analyze, AnalyzeOptions, ShapeLocation};
use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
use oto_onnx::{Model, Tensor, TensorData};
use oto_testkit::{deviation, run_ort, SplitMix64};
use std::collections::BTreeMap;

/// Two parallel attention blocks on a [B, 5, 8] stream (4 heads of 2), `y = x + a0(x) + a1(x)`;
/// the head split `[0, 5, 4, 2]` and merge `[0, 5, 8]` targets of both blocks are the
/// same two Constant nodes.
fn two_branches() -> Model {
    let (s, h, d) = (5i64, 4i64, 2i64);
    let e = (h * d) as usize;
    let mut b = GraphBuilder::new("shared_constants");
    let x = b.input_f32("x", &batch_dims(&[s, h * d]));
    let split = b.node_with("Constant", &[], &["split_shape"], &[("value", Attr::Tensor(Tensor::from_i64s(vec![0, s, h, d])))]);
    let merge = b.node_with("Constant", &[], &["merge_shape"], &[("value", Attr::Tensor(Tensor::from_i64s(vec![0, s, h * d])))]);
    let mut sum = x.clone();
    for k in 0..2usize {
        let mut heads = Vec::new();
        for (j, p) in ["q", "k", "v"].iter().enumerate() {
            let w = b.weight(&format!("a{k}.{p}.weight"), &[e, e], |i| ((i * 7 + k * 3 + j) % 11) as f32 / 5.0 - 1.0);
            let bias = b.weight(&format!("a{k}.{p}.bias"), &[e], |i| ((i * 5 + k + j) % 7) as f32 / 7.0 - 0.4);
            let t = b.node("MatMul", &[&x, &w], &[]);
            let t = b.node("Add", &[&t, &bias], &[]);
            let t = b.node("Reshape", &[&t, &split], &[]);
            heads.push(b.node_with("Transpose", &[&t], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]));
        }
        let kt = b.node_with("Transpose", &[&heads[1]], &[], &[("perm", Attr::Ints(vec![0, 1, 3, 2]))]);
        let scores = b.node("MatMul", &[&heads[0], &kt], &[]);
        let probs = b.node_with("Softmax", &[&scores], &[], &[("axis", Attr::Int(-1))]);
        let ctx = b.node("MatMul", &[&probs, &heads[2]], &[]);
        let ctx = b.node_with("Transpose", &[&ctx], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
        let ctx = b.node("Reshape", &[&ctx, &merge], &[]);
        let wo = b.weight(&format!("a{k}.o.weight"), &[e, e], |i| ((i * 3 + k) % 13) as f32 / 6.0 - 1.0);
        let o = b.node("MatMul", &[&ctx, &wo], &[]);
        sum = b.node("Add", &[&sum, &o], &[]);
    }
    let y = b.node("Identity", &[&sum], &["y"]);
    b.output_f32(&y, &batch_dims(&[s, h * d]));
    b.opset(18);
    b.build().unwrap()
}

#[test]
fn constant_nodes_shared_by_two_groups() {
    let model = two_branches();
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let groups: Vec<_> = analysis.prunable_groups().collect();
    assert_eq!(groups.len(), 2, "{}", analysis.table());
    for g in &groups {
        assert!(
            g.shape_constants.iter().any(|sc| matches!(sc.location, ShapeLocation::ConstantNode { .. })),
            "{}: {:?}",
            g.id,
            g.shape_constants
        );
    }
    let inputs = vec![(
        "x".to_string(),
        Tensor { shape: vec![3, 5, 8], data: TensorData::F32((0..120).map(|i| (i as f32 * 0.37).sin()).collect()) },
    )];
    let mut rng = SplitMix64::new(11);
    // Each branch alone, then both with different counts.
    let cases: Vec<BTreeMap<String, Vec<usize>>> = vec![
        [(groups[0].id.clone(), vec![1])].into(),
        [(groups[1].id.clone(), vec![0, 2])].into(),
        groups.iter().enumerate().map(|(k, g)| (g.id.clone(), rng.choose(g.num_elements, (k + 1).min(g.num_elements - 1)))).collect(),
    ];
    for (case, removed) in cases.into_iter().enumerate() {
        let full = oto_construct::zero_producers(&model, &analysis, &removed).unwrap();
        let (compact, _) = construct(&full, &analysis, &removed).unwrap();
        assert_eq!(float_elements(&compact), predicted_float_elements(&full, &analysis, &removed));
        // Each changed target gets a copy for one of the two blocks; the other block
        // reads the original (unchanged, or edited in place when both are pruned).
        let constants = compact.proto.graph.as_ref().unwrap().node.iter().filter(|n| n.op_type.as_deref() == Some("Constant")).count();
        assert_eq!(constants, 4, "case {case}");
        let shapes = oto_onnx::shape::infer(&oto_onnx::Graph::new(&compact).unwrap()).unwrap();
        assert!(shapes.mismatches.is_empty(), "{:?}", shapes.mismatches);
        let (err, tol) = deviation(&run_ort(&full.proto, &inputs), &run_ort(&compact.proto, &inputs));
        assert!(err <= tol, "{removed:?}: {err:.3e} > {tol:.3e}");
    }
}

/// Phi-3's MLP: one `gate_up` projection split by `chunk(2)`, whose bounds the exporter
/// computes from the projection's width, `half = (width + 1) // 2`, the slices
/// `[0, half * 1)` and `[half, half * 2)`. The FFN neurons are one group (gate `i` with
/// up `i`) and the bounds follow the width by themselves: no constant is edited (the
/// multipliers 1 and 2 were once taken for counts of the neurons), and the compact model
/// computes what the zeroed one does.
#[test]
fn chunk_bounds_computed_from_the_width_follow_it() {
    let (s, e, f) = (3i64, 6usize, 8usize);
    let mut b = GraphBuilder::new("chunk");
    b.opset(18);
    let x = b.input_f32("x", &batch_dims(&[s, e as i64]));
    let w = b.weight("gate_up.weight", &[e, 2 * f], |i| ((i * 7 + 3) % 11) as f32 / 5.0 - 1.0);
    let gate_up = b.node("MatMul", &[&x, &w], &[]);
    let shape = b.node("Shape", &[&gate_up], &[]);
    let last = b.ints("last", &[-1]);
    let width = b.node_with("Gather", &[&shape, &last], &[], &[("axis", Attr::Int(0))]);
    let one = b.ints("one", &[1]);
    let two = b.ints("two", &[2]);
    let plus = b.node("Add", &[&width, &one], &[]);
    let half = b.node("Div", &[&plus, &two], &[]);
    let end0 = b.node("Mul", &[&half, &one], &[]);
    let end1 = b.node("Mul", &[&half, &two], &[]);
    let zero = b.ints("zero", &[0]);
    let gate = b.node("Slice", &[&gate_up, &zero, &end0, &last], &[]);
    let up = b.node("Slice", &[&gate_up, &end0, &end1, &last], &[]);
    let sig = b.node("Sigmoid", &[&gate], &[]);
    let act = b.node("Mul", &[&gate, &sig], &[]);
    let h = b.node("Mul", &[&up, &act], &[]);
    let wd = b.weight("down.weight", &[f, e], |i| ((i * 5 + 1) % 13) as f32 / 6.0 - 1.0);
    let y = b.node("MatMul", &[&h, &wd], &["y"]);
    b.output_f32(&y, &batch_dims(&[s, e as i64]));
    let model = b.build().unwrap();
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let g = prunable_group_with(&analysis, "gate_up.weight", 1);
    assert_eq!(g.num_elements, f, "{}", analysis.table());
    assert!(g.shape_constants.is_empty(), "{:?}", g.shape_constants);
    let inputs =
        vec![("x".to_string(), Tensor { shape: vec![2, 3, 6], data: TensorData::F32((0..36).map(|i| (i as f32 * 0.41).cos()).collect()) })];
    for removed in [vec![0usize], vec![1, 4, 7], vec![0, 1, 2, 3, 4, 5, 6]] {
        assert_removal_exact(&model, &analysis, &g.id, &removed, &inputs);
    }
}

/// FocalNet's modulation: `q, ctx, gates = split(proj(h), (C, C, 2))` with `C` read off
/// the width of `h`, the bounds `0 + C`, `(0 + C) + C` and `((0 + C) + C) + 2`. The
/// projection's outputs are not pruned, but `h`'s channels are: the bounds, which
/// change with `h`'s width at run time, are pinned to their values (`C + C` was once
/// taken for a size that follows no channels, and the compact model sliced nothing).
#[test]
fn split_bounds_read_off_another_width_are_pinned() {
    let (s, c) = (3i64, 4usize);
    let mut b = GraphBuilder::new("split_bounds");
    b.opset(17);
    let x = b.input_f32("x", &batch_dims(&[s, 6]));
    let w0 = b.weight("embed.weight", &[6, c], |i| ((i * 7 + 3) % 11) as f32 / 5.0 - 1.0);
    let h = b.node("MatMul", &[&x, &w0], &[]);
    let wp = b.weight("proj.weight", &[c, 2 * c + 2], |i| ((i * 5 + 1) % 13) as f32 / 6.0 - 1.0);
    let p = b.node("MatMul", &[&h, &wp], &[]);
    let shape = b.node("Shape", &[&h], &[]);
    let last = b.ints("last", &[-1]);
    let width = b.node_with("Gather", &[&shape, &last], &[], &[("axis", Attr::Int(0))]);
    let (zero, two) = (b.ints("zero", &[0]), b.ints("two", &[2]));
    let end0 = b.node("Add", &[&zero, &width], &[]);
    let end1 = b.node("Add", &[&end0, &width], &[]);
    let end2 = b.node("Add", &[&end1, &two], &[]);
    let q = b.node("Slice", &[&p, &zero, &end0, &last], &[]);
    let ctx = b.node("Slice", &[&p, &end0, &end1, &last], &[]);
    let gates = b.node("Slice", &[&p, &end1, &end2, &last], &[]);
    let m = b.node("Mul", &[&q, &ctx], &[]);
    let both = b.node_with("Concat", &[&m, &gates], &[], &[("axis", Attr::Int(-1))]);
    let wo = b.weight("out.weight", &[c + 2, 3], |i| ((i * 3 + 2) % 7) as f32 / 4.0 - 0.8);
    let y = b.node("MatMul", &[&both, &wo], &["y"]);
    b.output_f32(&y, &batch_dims(&[s, 3]));
    let model = b.build().unwrap();
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let g = prunable_group_with(&analysis, "embed.weight", 1);
    let inputs =
        vec![("x".to_string(), Tensor { shape: vec![2, 3, 6], data: TensorData::F32((0..36).map(|i| (i as f32 * 0.37).sin()).collect()) })];
    for removed in [vec![0usize], vec![1, 3], vec![0, 1, 2]] {
        assert_removal_exact(&model, &analysis, &g.id, &removed, &inputs);
    }
    // `0 + C` follows the width and is made up where it is computed; `C + C` is pinned.
    let pinned = g.shape_constants.iter().filter(|k| matches!(k.location, ShapeLocation::Pinned { .. })).count();
    assert_eq!((g.shape_constants.len(), pinned), (2, 1), "{:?}", g.shape_constants);
}
