//! `GridSample` and `GatherND`. `GridSample` (deformable attention in RT-DETR and Deformable DETR, RAFT's correlation
//! lookup, spatial transformers) samples every channel on its own at the grid's points,
//! and an interpolation of zeros is zero: the channels of the sampled input pass through
//! it, and removing them is exact in every mode and padding.

mod common;
use common::*;
use oto_graph::{analyze, AnalyzeOptions};
use oto_onnx::builder::{Attr, GraphBuilder};
use oto_onnx::{Dim, Model};

/// `x [B, 3, 5, 5] -> conv (8 channels, + bias) -> Relu -> GridSample(grid [B, 4, 6, 2])
/// -> conv 1x1 (4)`, sampled with `mode` and `padding`.
fn model(mode: &str, padding: &str) -> Model {
    let mut b = GraphBuilder::new("grid_sample");
    b.opset(16);
    let batch = Dim::sym("batch");
    let x = b.input_f32("x", &[batch.clone(), Dim::Known(3), Dim::Known(5), Dim::Known(5)]);
    let grid = b.input_f32("grid", &[batch.clone(), Dim::Known(4), Dim::Known(6), Dim::Known(2)]);
    let mut weight = weights();
    let (w1, b1) = (weight(&mut b, "conv1.weight", &[8, 3, 3, 3]), weight(&mut b, "conv1.bias", &[8]));
    let w2 = weight(&mut b, "conv2.weight", &[4, 8, 1, 1]);
    let h = b.node_with("Conv", &[&x, &w1, &b1], &[], &[("pads", Attr::Ints(vec![1, 1, 1, 1]))]);
    let h = b.node("Relu", &[&h], &[]);
    let attrs = [("mode", Attr::Str(mode.into())), ("padding_mode", Attr::Str(padding.into())), ("align_corners", Attr::Int(0))];
    let sampled = b.node_with("GridSample", &[&h, &grid], &[], &attrs);
    let y = b.node("Conv", &[&sampled, &w2], &["y"]);
    b.output_f32(&y, &[batch, Dim::Known(4), Dim::Known(4), Dim::Known(6)]);
    b.build().unwrap()
}

#[test]
fn channels_pass_through_a_grid_sample_in_every_mode_and_padding() {
    let mut inputs = uniform_input("x", &[2, 3, 5, 5], 11);
    // Points inside and outside [-1, 1]: the padding matters.
    let mut grid = uniform_input("grid", &[2, 4, 6, 2], 12);
    if let oto_onnx::TensorData::F32(v) = &mut grid[0].1.data {
        v.iter_mut().for_each(|p| *p *= 1.3);
    }
    inputs.extend(grid);
    for mode in ["bilinear", "nearest", "bicubic"] {
        for padding in ["zeros", "border", "reflection"] {
            let m = model(mode, padding);
            let analysis = analyze(&m, &AnalyzeOptions::default()).unwrap();
            let group = prunable_group_with(&analysis, "conv1.weight", 0).id.clone();
            let g = analysis.groups.iter().find(|g| g.id == group).unwrap();
            assert!(g.members.iter().any(|m| m.initializer == "conv2.weight" && m.axis == 1), "{mode} {padding}:\n{}", analysis.table());
            for elements in [[0, 1, 2], [3, 5, 7]] {
                assert_removal_exact(&m, &analysis, &group, &elements, &inputs);
            }
        }
    }
}

/// `GatherND` with constant indices picking positions of the leading axes (the dynamo
/// exporter's adaptive average pooling: the channels moved last by a `Transpose`, the
/// pooling windows' positions gathered, then averaged): the channels pass through whole.
/// It blocked them as runtime indexing before (AlexNet's and VGG's last convolution).
#[test]
fn channels_pass_through_a_gather_nd_of_positions() {
    let mut b = GraphBuilder::new("gather_nd");
    let batch = Dim::sym("batch");
    let x = b.input_f32("x", &[batch.clone(), Dim::Known(3), Dim::Known(4), Dim::Known(4)]);
    let w1 = b.weight("conv1.weight", &[8, 3, 3, 3], |i| (((i * 7919) % 17) as f32 - 8.0) / 9.0);
    let b1 = b.weight("conv1.bias", &[8], |i| i as f32 / 8.0 - 0.4);
    let w2 = b.weight("fc.weight", &[8, 5], |i| (((i * 31) % 13) as f32 - 6.0) / 7.0);
    let h = b.node_with("Conv", &[&x, &w1, &b1], &[], &[("pads", Attr::Ints(vec![1, 1, 1, 1]))]);
    let h = b.node("Relu", &[&h], &[]);
    let moved = b.node_with("Transpose", &[&h], &[], &[("perm", Attr::Ints(vec![2, 3, 0, 1]))]);
    // Two windows of two positions each: [[(0,0), (1,1)], [(2,3), (3,2)]] -> [2, 2, B, 8].
    let indices = b.ints("indices", &[0, 0, 1, 1, 2, 3, 3, 2]);
    let shape = b.ints("indices_shape", &[2, 2, 2]);
    let indices = b.node("Reshape", &[&indices, &shape], &[]);
    let picked = b.node("GatherND", &[&moved, &indices], &[]);
    let axes = b.ints("axes", &[0, 1]);
    let pooled = b.node_with("ReduceMean", &[&picked, &axes], &[], &[("keepdims", Attr::Int(0))]);
    let y = b.node("MatMul", &[&pooled, &w2], &["y"]);
    b.output_f32(&y, &[batch, Dim::Known(5)]);
    let m = b.build().unwrap();
    let analysis = analyze(&m, &AnalyzeOptions::default()).unwrap();
    let group = prunable_group_with(&analysis, "conv1.weight", 0).id.clone();
    let inputs = uniform_input("x", &[2, 3, 4, 4], 21);
    for elements in [[0, 1, 2], [3, 6, 7]] {
        assert_removal_exact(&m, &analysis, &group, &elements, &inputs);
    }
}
