//! Keras's `MultiHeadAttention` as tf2onnx and Keras 3 export it: each projection is a
//! MatMul reshaped into heads `[B, S, H, D]`, then a per-head bias `[H, D]` added. The
//! bias is cut along the heads with them (a producer), so a removed head's queries and
//! keys stay zero inside and the scores' product is still exact.

mod common;
use common::*;
use oto_graph::{analyze, AnalyzeOptions, Role};
use oto_onnx::builder::{Attr, GraphBuilder};
use oto_onnx::{Dim, Model};

const HEADS: usize = 4;
const HEAD_DIM: usize = 4;
const WIDTH: usize = 16;

/// `x [B, 5, 16]`: q, k, v = `x @ W` reshaped to `[B, 5, 4, 4]` plus a bias `[4, 4]`;
/// softmax(q k^T) v, merged back to `[B, 5, 16]`, `@ Wo`, plus `x`.
fn model() -> Model {
    let mut b = GraphBuilder::new("head_bias");
    b.opset(13);
    let batch = Dim::sym("batch");
    let x = b.input_f32("x", &[batch.clone(), Dim::Known(5), Dim::Known(WIDTH as i64)]);
    let mut weight = weights();
    let split = b.ints("split", &[0, 0, HEADS as i64, HEAD_DIM as i64]);
    let mut heads = Vec::new();
    for p in ["q", "k", "v"] {
        let w = weight(&mut b, &format!("{p}.weight"), &[WIDTH, WIDTH]);
        let bias = weight(&mut b, &format!("{p}.bias"), &[HEADS, HEAD_DIM]);
        let h = b.node("MatMul", &[&x, &w], &[]);
        let h = b.node("Reshape", &[&h, &split], &[]);
        heads.push(b.node("Add", &[&h, &bias], &[]));
    }
    let perm = |p: &[i64]| [("perm", Attr::Ints(p.to_vec()))];
    let q = b.node_with("Transpose", &[&heads[0]], &[], &perm(&[0, 2, 1, 3]));
    let kt = b.node_with("Transpose", &[&heads[1]], &[], &perm(&[0, 2, 3, 1]));
    let v = b.node_with("Transpose", &[&heads[2]], &[], &perm(&[0, 2, 1, 3]));
    let scores = b.node("MatMul", &[&q, &kt], &[]);
    let probs = b.node_with("Softmax", &[&scores], &[], &[("axis", Attr::Int(3))]);
    let o = b.node("MatMul", &[&probs, &v], &[]);
    let o = b.node_with("Transpose", &[&o], &[], &perm(&[0, 2, 1, 3]));
    let merge = b.ints("merge", &[0, 0, WIDTH as i64]);
    let o = b.node("Reshape", &[&o, &merge], &[]);
    let wo = weight(&mut b, "o.weight", &[WIDTH, WIDTH]);
    let o = b.node("MatMul", &[&o, &wo], &[]);
    let y = b.node("Add", &[&o, &x], &["y"]);
    b.output_f32(&y, &[batch, Dim::Known(5), Dim::Known(WIDTH as i64)]);
    b.build().unwrap()
}

#[test]
fn a_per_head_bias_added_after_the_split_is_cut_with_the_heads() {
    let m = model();
    let analysis = analyze(&m, &AnalyzeOptions::default()).unwrap();
    let group = prunable_group_with(&analysis, "q.weight", 1).id.clone();
    let g = analysis.groups.iter().find(|g| g.id == group).unwrap();
    assert_eq!(g.num_elements, HEADS, "{}", analysis.table());
    for bias in ["q.bias", "k.bias", "v.bias"] {
        let m = g.members.iter().find(|m| m.initializer == bias && m.axis == 0);
        assert_eq!(m.map(|m| m.role), Some(Role::Producer), "{bias}:\n{}", analysis.table());
    }
    let inputs = uniform_input("x", &[2, 5, WIDTH], 4);
    for elements in [&[0][..], &[1, 3], &[0, 1, 2]] {
        assert_removal_exact(&m, &analysis, &group, elements, &inputs);
    }
}
