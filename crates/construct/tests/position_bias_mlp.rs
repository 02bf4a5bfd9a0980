//! Swin V2's continuous position bias: a constant table of relative coordinates
//! (`[2w-1, 2w-1, 2]`) through a two-layer MLP (`2 -> hidden -> heads`, ReLU), gathered
//! by a constant index per pair of positions, `16 * sigmoid`, added to each head's
//! scores. Both operands of the first layer's MatMul are initializers: the MLP's hidden
//! neurons are still a prunable group (the first layer's columns and bias, the second's
//! rows), and removing them is exact in onnxruntime.

mod common;
use common::*;
use oto_graph::{analyze, AnalyzeOptions};
use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
use oto_onnx::{Tensor, TensorData};

#[test]
fn a_position_bias_mlp_on_a_constant_table_is_prunable() {
    let (w, heads, hidden) = (3usize, 2usize, 8usize);
    let (side, s) = (2 * w - 1, w * w);
    let mut b = GraphBuilder::new("position_bias_mlp");
    b.opset(17);
    let x = b.input_f32("scores", &batch_dims(&[heads as i64, s as i64, s as i64]));
    let table = b.weight("relative_coords_table", &[1, side, side, 2], |i| ((i % 7) as f32 - 3.0) / 4.0);
    let w1 = b.weight("cpb.0.weight", &[2, hidden], |i| ((i * 5 + 2) % 11) as f32 / 5.0 - 1.0);
    let b1 = b.weight("cpb.0.bias", &[hidden], |i| (i % 3) as f32 / 4.0 - 0.2);
    let w2 = b.weight("cpb.2.weight", &[hidden, heads], |i| ((i * 3 + 1) % 7) as f32 / 3.0 - 1.0);
    let h = b.node("MatMul", &[&table, &w1], &[]);
    let h = b.node("Add", &[&h, &b1], &[]);
    let h = b.node("Relu", &[&h], &[]);
    let bias = b.node("MatMul", &[&h, &w2], &[]);
    let rows = b.ints("rows", &[-1, heads as i64]);
    let bias = b.node("Reshape", &[&bias, &rows], &[]);
    // The index of each pair (i, j) of window positions into the table's rows.
    let index: Vec<i64> = (0..s * s)
        .map(|p| {
            let (i, j) = (p / s, p % s);
            let (dy, dx) = (i / w + w - 1 - j / w, i % w + w - 1 - j % w);
            (dy * side + dx) as i64
        })
        .collect();
    let index = b.initializer("relative_position_index", Tensor::new(vec![s * s], TensorData::I64(index)).unwrap());
    let bias = b.node_with("Gather", &[&bias, &index], &[], &[("axis", Attr::Int(0))]);
    let square = b.ints("square", &[s as i64, s as i64, heads as i64]);
    let bias = b.node("Reshape", &[&bias, &square], &[]);
    let bias = b.node_with("Transpose", &[&bias], &[], &[("perm", Attr::Ints(vec![2, 0, 1]))]);
    let bias = b.node("Sigmoid", &[&bias], &[]);
    let sixteen = b.initializer("sixteen", Tensor::new(vec![], TensorData::F32(vec![16.0])).unwrap());
    let bias = b.node("Mul", &[&bias, &sixteen], &[]);
    let y = b.node("Add", &[&x, &bias], &["y"]);
    b.output_f32(&y, &batch_dims(&[heads as i64, s as i64, s as i64]));
    let model = b.build().unwrap();
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let g = prunable_group_with(&analysis, "cpb.0.weight", 1);
    assert_eq!(g.num_elements, hidden, "{}", analysis.table());
    for (init, axis) in [("cpb.0.bias", 0), ("cpb.2.weight", 0)] {
        assert!(g.members.iter().any(|m| m.initializer == init && m.axis == axis), "{init}:{axis}\n{}", analysis.table());
    }
    let inputs = uniform_input("scores", &[2, heads, s, s], 5);
    for removed in [vec![0usize], vec![1, 4, 7], (1..hidden).collect()] {
        assert_removal_exact(&model, &analysis, &g.id, &removed, &inputs);
    }
}
