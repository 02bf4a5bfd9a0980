//! TensorFlow's `same` padding as the TorchScript exporter writes it for a model exported
//! with a dynamic image size (timm's `tf_` models): the pads are computed in floats from
//! the image's `Shape` at run time, clipped at 0, cast back to integers and laid out as
//! `Pad`'s pads beside constant zeros for the batch and the channels. The channels pass
//! through the `Pad`, and removing them is exact at any image size.

mod common;
use common::*;
use oto_graph::{analyze, AnalyzeOptions};
use oto_onnx::builder::{Attr, GraphBuilder};
use oto_onnx::{Dim, Model, Tensor, TensorData};

/// `x [B, 3, h, w]` -> same padding for a 3x3 window at stride 2 -> conv1 (8, stride 2)
/// -> Relu -> conv2 (4, 1x1) -> GlobalAveragePool.
fn model() -> Model {
    let mut b = GraphBuilder::new("same_padding");
    b.opset(17);
    let (batch, h, w) = (Dim::sym("batch"), Dim::sym("h"), Dim::sym("w"));
    let x = b.input_f32("x", &[batch.clone(), Dim::Known(3), h, w]);
    let scalar = |b: &mut GraphBuilder, name: &str, v: f32| b.initializer(name, Tensor { shape: vec![], data: TensorData::F32(vec![v]) });
    let (two, one, three, zero) =
        (scalar(&mut b, "two", 2.0), scalar(&mut b, "one", 1.0), scalar(&mut b, "three", 3.0), scalar(&mut b, "zero", 0.0));
    let axes0 = b.ints("axes0", &[0]);
    let shape = b.node("Shape", &[&x], &[]);
    let mut pieces = Vec::new();
    for axis in [2i64, 3] {
        let at = b.ints(&format!("at{axis}"), &[axis]);
        let size = b.node_with("Gather", &[&shape, &at], &[], &[("axis", Attr::Int(0))]);
        let n = b.node("Squeeze", &[&size, &axes0], &[]);
        let f = b.node_with("Cast", &[&n], &[], &[("to", Attr::Int(1))]);
        let q = b.node("Div", &[&f, &two], &[]);
        let c = b.node("Ceil", &[&q], &[]);
        let c = b.node("Sub", &[&c, &one], &[]);
        let span = b.node("Mul", &[&c, &two], &[]);
        let need = b.node("Add", &[&span, &three], &[]);
        let total = b.node("Sub", &[&need, &f], &[]);
        let clipped = b.node("Clip", &[&total, &zero, ""], &[]);
        let half = b.node("Div", &[&clipped, &two], &[]);
        let before = b.node_with("Cast", &[&half], &[], &[("to", Attr::Int(7))]);
        let total = b.node_with("Cast", &[&clipped], &[], &[("to", Attr::Int(7))]);
        let after = b.node("Sub", &[&total, &before], &[]);
        pieces.push(b.node("Unsqueeze", &[&before, &axes0], &[]));
        pieces.push(b.node("Unsqueeze", &[&after, &axes0], &[]));
    }
    // [w_before, w_after, h_before, h_after, 0, 0, 0, 0] as pairs, reversed and transposed
    // into ONNX's [starts..., ends...].
    let zeros = b.ints("zero4", &[0, 0, 0, 0]);
    let torch_pads = b.node_with("Concat", &[&pieces[2], &pieces[3], &pieces[0], &pieces[1], &zeros], &[], &[("axis", Attr::Int(0))]);
    let pairs = b.ints("pairs", &[-1, 2]);
    let paired = b.node("Reshape", &[&torch_pads, &pairs], &[]);
    let (start, end, axes, step) =
        (b.ints("rev_start", &[-1]), b.ints("rev_end", &[i64::MIN + 1]), b.ints("rev_axes", &[0]), b.ints("rev_step", &[-1]));
    let reversed = b.node("Slice", &[&paired, &start, &end, &axes, &step], &[]);
    let moved = b.node_with("Transpose", &[&reversed], &[], &[("perm", Attr::Ints(vec![1, 0]))]);
    let flat = b.ints("flat", &[-1]);
    let pads = b.node("Reshape", &[&moved, &flat], &[]);
    let padded = b.node("Pad", &[&x, &pads], &[]);
    let mut weight = weights();
    let (w1, b1) = (weight(&mut b, "conv1.weight", &[8, 3, 3, 3]), weight(&mut b, "conv1.bias", &[8]));
    let h = b.node_with("Conv", &[&padded, &w1, &b1], &[], &[("strides", Attr::Ints(vec![2, 2]))]);
    let h = b.node("Relu", &[&h], &[]);
    let (w2, b2) = (weight(&mut b, "conv2.weight", &[4, 8, 1, 1]), weight(&mut b, "conv2.bias", &[4]));
    let h = b.node("Conv", &[&h, &w2, &b2], &[]);
    let y = b.node("GlobalAveragePool", &[&h], &["y"]);
    b.output_f32(&y, &[batch, Dim::Known(4), Dim::Known(1), Dim::Known(1)]);
    b.build().unwrap()
}

#[test]
fn channels_pass_through_same_padding_computed_at_run_time() {
    let m = model();
    let analysis = analyze(&m, &AnalyzeOptions::default()).unwrap();
    let group = prunable_group_with(&analysis, "conv1.weight", 0).id.clone();
    for (h, w) in [(7, 9), (8, 8), (5, 12)] {
        let inputs = uniform_input("x", &[2, 3, h, w], 3);
        for elements in [&[0][..], &[1, 6], &[2, 3, 4, 5, 7]] {
            assert_removal_exact(&m, &analysis, &group, elements, &inputs);
        }
    }
}
