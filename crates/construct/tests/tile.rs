//! `Tile`: channels on an axis repeated once are followed (removing them is exact in
//! onnxruntime); channels repeated on their own axis are not (each would be several
//! positions), and their layer is blocked with the reason.

mod common;
use common::*;
use oto_graph::{analyze, AnalyzeOptions};
use oto_onnx::builder::{batch_dims, GraphBuilder};
use oto_onnx::Model;

/// `x` (`[batch, 6]`) through `fc1` (6 -> 5, ReLU), unsqueezed to `[batch, 1, 5]`, tiled by
/// `repeats`, then `fc2` (5 -> 3) on the last axis.
fn tiled(repeats: &[i64]) -> Model {
    let mut b = GraphBuilder::new("tiled");
    b.opset(17);
    let x = b.input_f32("x", &batch_dims(&[6]));
    let w1 = b.weight("fc1.weight", &[6, 5], |i| ((i * 7 + 3) % 11) as f32 / 5.0 - 1.0);
    let h = b.node("MatMul", &[&x, &w1], &[]);
    let h = b.node("Relu", &[&h], &[]);
    let one = b.ints("axis1", &[1]);
    let h = b.node("Unsqueeze", &[&h, &one], &[]);
    let reps = b.ints("repeats", repeats);
    let h = b.node("Tile", &[&h, &reps], &[]);
    let w2 = b.weight("fc2.weight", &[5 * repeats[2] as usize, 3], |i| ((i * 5 + 1) % 7) as f32 / 3.0 - 1.0);
    let y = b.node("MatMul", &[&h, &w2], &["y"]);
    b.output_f32(&y, &batch_dims(&[repeats[1], 3]));
    b.build().unwrap()
}

#[test]
fn channels_repeated_once_are_followed_through_tile() {
    let model = tiled(&[1, 3, 1]);
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let g = prunable_group_with(&analysis, "fc1.weight", 1);
    assert_eq!(g.num_elements, 5, "{}", analysis.table());
    assert!(g.members.iter().any(|m| m.initializer == "fc2.weight" && m.axis == 0), "{}", analysis.table());
    let inputs = uniform_input("x", &[2, 6], 3);
    for removed in [vec![0usize], vec![1, 3, 4]] {
        assert_removal_exact(&model, &analysis, &g.id, &removed, &inputs);
    }
}

#[test]
fn channels_repeated_on_their_own_axis_are_blocked() {
    let model = tiled(&[1, 1, 2]);
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    assert!(analysis.prunable_groups().all(|g| !g.members.iter().any(|m| m.initializer == "fc1.weight")), "{}", analysis.table());
    let tile = analysis.blocked.iter().find(|b| b.op_type == "Tile").unwrap_or_else(|| panic!("{:?}", analysis.blocked));
    assert!(tile.reason.contains("repeats these channels"), "{}", tile.reason);
}
