//! A slice of every axis from 0 to a huge end (`x[:, :, :, :]` as Keras writes a copy,
//! magika's model converted by jax2tf): it keeps every axis whole, so the channels pass
//! through it whatever their layout, here merged with the tokens by a Reshape.

mod common;
use common::*;
use oto_graph::{analyze, AnalyzeOptions};
use oto_onnx::builder::{Attr, GraphBuilder};
use oto_onnx::{Dim, Model};

/// `x [B, 8, 16] -> MatMul (16 units) + bias -> Relu -> Reshape [B, 2, 64] (4 tokens of 16
/// units per row) -> Unsqueeze -> [B, 2, 64, 1] -> Slice (all axes, 0 to `end`) ->
/// Transpose [B, 64, 2, 1] -> 1x1 Conv (4)`.
fn model(end: i64) -> Model {
    let mut b = GraphBuilder::new("whole_slice");
    b.opset(13);
    let batch = Dim::sym("batch");
    let x = b.input_f32("x", &[batch.clone(), Dim::Known(8), Dim::Known(16)]);
    let w = b.weight("fc.weight", &[16, 16], |i| (((i * 7919) % 17) as f32 - 8.0) / 9.0);
    let bias = b.weight("fc.bias", &[16], |i| (i as f32 - 7.0) / 5.0);
    let h = b.node("MatMul", &[&x, &w], &[]);
    let h = b.node("Add", &[&h, &bias], &[]);
    let h = b.node("Relu", &[&h], &[]);
    let rows = b.ints("rows", &[0, 2, 64]);
    let h = b.node("Reshape", &[&h, &rows], &[]);
    let last = b.ints("last", &[3]);
    let h = b.node("Unsqueeze", &[&h, &last], &[]);
    let (starts, ends, axes) = (b.ints("starts", &[0, 0, 0, 0]), b.ints("ends", &[end; 4]), b.ints("axes", &[0, 2, 1, 3]));
    let h = b.node("Slice", &[&h, &starts, &ends, &axes], &[]);
    let h = b.node_with("Transpose", &[&h], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
    let cw = b.weight("conv.weight", &[4, 64, 1, 1], |i| (((i * 31) % 13) as f32 - 6.0) / 7.0);
    let y = b.node("Conv", &[&h, &cw], &["y"]);
    b.output_f32(&y, &[batch, Dim::Known(4), Dim::Known(2), Dim::Known(1)]);
    b.build().unwrap()
}

#[test]
fn a_slice_of_whole_axes_passes_merged_channels_through() {
    for end in [1_000_000_000, i64::MAX, 64] {
        let m = model(end);
        let analysis = analyze(&m, &AnalyzeOptions::default()).unwrap();
        let group = prunable_group_with(&analysis, "fc.weight", 1).id.clone();
        let inputs = uniform_input("x", &[2, 8, 16], 1);
        for elements in [&[0][..], &[3, 7], &[1, 2, 5, 9, 15]] {
            assert_removal_exact(&m, &analysis, &group, elements, &inputs);
        }
    }
}
