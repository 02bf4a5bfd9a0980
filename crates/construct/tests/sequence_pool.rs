//! Funnel's pooling of a sequence: `[B, S, D]` unsqueezed to `[B, 1, S, D]` and averaged
//! (or max-pooled) with a `[2, 1]` window and stride, so the features on the last axis
//! pass through: they stay a prunable group and removing them is exact in onnxruntime. A
//! window that spans the features blocks them.

mod common;
use common::*;
use oto_graph::{analyze, AnalyzeOptions};
use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
use oto_onnx::Model;

/// `x` (`[batch, 4, 6]`) through `fc1` (6 -> 5, ReLU), pooled over the sequence by `op`
/// with a `[2, kernel_d]` window, then `fc2` (5 -> 3).
fn pooled(op: &str, kernel_d: i64) -> Model {
    let mut b = GraphBuilder::new("sequence_pool");
    b.opset(17);
    let x = b.input_f32("x", &batch_dims(&[4, 6]));
    let w1 = b.weight("fc1.weight", &[6, 5], |i| ((i * 7 + 3) % 11) as f32 / 5.0 - 1.0);
    let h = b.node("MatMul", &[&x, &w1], &[]);
    let h = b.node("Relu", &[&h], &[]);
    let one = b.ints("axis1", &[1]);
    let h = b.node("Unsqueeze", &[&h, &one], &[]);
    let window = [("kernel_shape", Attr::Ints(vec![2, kernel_d])), ("strides", Attr::Ints(vec![2, 1]))];
    let h = b.node_with(op, &[&h], &[], &window);
    let h = b.node("Squeeze", &[&h, &one], &[]);
    let w2 = b.weight("fc2.weight", &[(5 - kernel_d + 1) as usize, 3], |i| ((i * 5 + 1) % 7) as f32 / 3.0 - 1.0);
    let y = b.node("MatMul", &[&h, &w2], &["y"]);
    b.output_f32(&y, &batch_dims(&[2, 3]));
    b.build().unwrap()
}

#[test]
fn features_beside_a_pooled_sequence_stay_prunable() {
    for op in ["AveragePool", "MaxPool"] {
        let model = pooled(op, 1);
        let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
        let g = prunable_group_with(&analysis, "fc1.weight", 1);
        assert_eq!(g.num_elements, 5, "{op}: {}", analysis.table());
        let inputs = uniform_input("x", &[2, 4, 6], 7);
        for removed in [vec![2usize], vec![0, 1, 4]] {
            assert_removal_exact(&model, &analysis, &g.id, &removed, &inputs);
        }
    }
}

#[test]
fn a_window_across_the_features_blocks_them() {
    let analysis = analyze(&pooled("AveragePool", 2), &AnalyzeOptions::default()).unwrap();
    assert!(analysis.prunable_groups().all(|g| !g.members.iter().any(|m| m.initializer == "fc1.weight")), "{}", analysis.table());
    let pool = analysis.blocked.iter().find(|b| b.op_type == "AveragePool").unwrap_or_else(|| panic!("{:?}", analysis.blocked));
    assert!(pool.reason.contains("pools along a tracked axis"), "{}", pool.reason);
}
