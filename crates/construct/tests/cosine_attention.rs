//! SwinV2's scaled cosine attention: queries and keys divided by their norms over each
//! head (`q / max(|q|, eps)`, the norm broadcast back by an `Expand`), the scores scaled
//! per head by `exp(min(logit_scale, log 100))`, an initializer computed on. The heads are
//! one prunable group with the scale's rows in it, and removing heads is exact in
//! onnxruntime.

mod common;
use common::*;
use oto_graph::{analyze, AnalyzeOptions};
use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
use oto_onnx::{Tensor, TensorData};

#[test]
fn cosine_attention_heads_are_prunable() {
    let (s, heads, d) = (5i64, 3usize, 4usize);
    let e = heads * d;
    let mut b = GraphBuilder::new("cosine_attention");
    b.opset(17);
    let x = b.input_f32("x", &batch_dims(&[s, e as i64]));
    let split = b.ints("split", &[0, s, heads as i64, d as i64]);
    let eps = b.initializer("eps", Tensor::new(vec![], TensorData::F32(vec![1e-6])).unwrap());
    let mut k = 0;
    let mut project = |b: &mut GraphBuilder, name: &str| {
        k += 1;
        let w = b.weight(&format!("{name}.weight"), &[e, e], move |i| (((i * 7919 + k * 31) % 17) as f32 - 8.0) / 9.0);
        let p = b.node("MatMul", &[&x, &w], &[]);
        let p = b.node("Reshape", &[&p, &split], &[]);
        b.node_with("Transpose", &[&p], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))])
    };
    let (q, kk, v) = (project(&mut b, "query"), project(&mut b, "key"), project(&mut b, "value"));
    let (qn, kn) = (l2_normalized(&mut b, &q, &eps), l2_normalized(&mut b, &kk, &eps));
    let kt = b.node_with("Transpose", &[&kn], &[], &[("perm", Attr::Ints(vec![0, 1, 3, 2]))]);
    let scores = b.node("MatMul", &[&qn, &kt], &[]);
    let scale = b.weight("logit_scale", &[heads, 1, 1], |i| 1.0 + i as f32 * 0.7);
    let most = b.initializer("log100", Tensor::new(vec![], TensorData::F32(vec![4.605_17])).unwrap());
    let scale = b.node("Clip", &[&scale, "", &most], &[]);
    let scale = b.node("Exp", &[&scale], &[]);
    let scores = b.node("Mul", &[&scores, &scale], &[]);
    let p = b.node_with("Softmax", &[&scores], &[], &[("axis", Attr::Int(-1))]);
    let o = b.node("MatMul", &[&p, &v], &[]);
    let o = b.node_with("Transpose", &[&o], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
    let merge = b.ints("merge", &[0, s, e as i64]);
    let o = b.node("Reshape", &[&o, &merge], &[]);
    let wo = b.weight("out.weight", &[e, 6], |i| ((i * 5 + 1) % 13) as f32 / 6.0 - 1.0);
    let y = b.node("MatMul", &[&o, &wo], &["y"]);
    b.output_f32(&y, &batch_dims(&[s, 6]));
    let model = b.build().unwrap();
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let g = prunable_group_with(&analysis, "query.weight", 1);
    assert_eq!(g.num_elements, heads, "{}", analysis.table());
    assert!(g.members.iter().any(|m| m.initializer == "logit_scale" && m.axis == 0), "{}", analysis.table());
    let inputs = uniform_input("x", &[2, s as usize, e], 11);
    for removed in [vec![0usize], vec![1, 2]] {
        assert_removal_exact(&model, &analysis, &g.id, &removed, &inputs);
    }
}
