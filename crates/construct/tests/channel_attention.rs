//! XCiT's cross-covariance attention: attention between the channels of each head, not
//! between tokens. Queries and keys `[B, H, D, N]` are normalized over the tokens, the
//! `D x D` scores scaled by a temperature per head, and the softmax runs over the key
//! channels of the head; the probabilities weigh the value channels. A head's channels go
//! with it, so the softmax of the other heads is unchanged: the heads are one prunable
//! group with the temperature's rows in it, and removing heads is exact in onnxruntime.

mod common;
use common::*;
use oto_graph::{analyze, AnalyzeOptions};
use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
use oto_onnx::{Tensor, TensorData};

#[test]
fn heads_of_channel_attention_are_prunable() {
    let (n, heads, d) = (5i64, 4usize, 3usize);
    let e = heads * d;
    let mut b = GraphBuilder::new("cross_covariance_attention");
    b.opset(17);
    let x = b.input_f32("x", &batch_dims(&[n, e as i64]));
    let mut weight = weights();
    // One projection to [q | k | v], then [B, N, 3, H, D] -> [3, B, H, D, N], as timm writes it.
    let (wqkv, bqkv) = (weight(&mut b, "qkv.weight", &[e, 3 * e]), weight(&mut b, "qkv.bias", &[3 * e]));
    let qkv = b.node("MatMul", &[&x, &wqkv], &[]);
    let qkv = b.node("Add", &[&qkv, &bqkv], &[]);
    let split = b.ints("split", &[0, n, 3, heads as i64, d as i64]);
    let qkv = b.node("Reshape", &[&qkv, &split], &[]);
    let qkv = b.node_with("Transpose", &[&qkv], &[], &[("perm", Attr::Ints(vec![2, 0, 3, 4, 1]))]);
    let parts = b.ints("parts", &[1, 1, 1]);
    b.node_with("Split", &[&qkv, &parts], &["q3", "k3", "v3"], &[("axis", Attr::Int(0))]);
    let first = b.ints("first", &[0]);
    let (q, k, v) =
        (b.node("Squeeze", &["q3", &first], &[]), b.node("Squeeze", &["k3", &first], &[]), b.node("Squeeze", &["v3", &first], &[]));
    // Normalized over the tokens (F.normalize(dim=-1)).
    let eps = b.initializer("eps", Tensor::new(vec![], TensorData::F32(vec![1e-12])).unwrap());
    let (qn, kn) = (l2_normalized(&mut b, &q, &eps), l2_normalized(&mut b, &k, &eps));
    let kt = b.node_with("Transpose", &[&kn], &[], &[("perm", Attr::Ints(vec![0, 1, 3, 2]))]);
    let scores = b.node("MatMul", &[&qn, &kt], &[]);
    let temperature = b.weight("temperature", &[heads, 1, 1], |i| 1.0 + i as f32 * 0.7);
    let scores = b.node("Mul", &[&scores, &temperature], &[]);
    let p = b.node_with("Softmax", &[&scores], &[], &[("axis", Attr::Int(-1))]);
    let o = b.node("MatMul", &[&p, &v], &[]);
    // [B, H, D, N] -> [B, N, H, D] -> [B, N, C].
    let o = b.node_with("Transpose", &[&o], &[], &[("perm", Attr::Ints(vec![0, 3, 1, 2]))]);
    let merge = b.ints("merge", &[0, n, e as i64]);
    let o = b.node("Reshape", &[&o, &merge], &[]);
    let wo = weight(&mut b, "proj.weight", &[e, 6]);
    let y = b.node("MatMul", &[&o, &wo], &["y"]);
    b.output_f32(&y, &batch_dims(&[n, 6]));
    // As every command loads a file: normalized (the Split into q, k, v becomes Gathers).
    let (model, _) = oto_onnx::normalize::normalize(b.build().unwrap(), &Default::default()).unwrap();

    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let g = prunable_group_with(&analysis, "proj.weight", 0);
    assert_eq!(g.num_elements, heads, "{}", analysis.table());
    assert!(g.members.iter().any(|m| m.initializer == "temperature" && m.axis == 0), "{}", analysis.table());
    assert!(g.members.iter().any(|m| m.initializer == "qkv.weight" && m.axis == 1), "{}", analysis.table());
    let inputs = uniform_input("x", &[2, n as usize, e], 13);
    for removed in [vec![0usize], vec![1], vec![0, 2]] {
        assert_removal_exact(&model, &analysis, &g.id, &removed, &inputs);
    }
}
