//! A convolution weight shared by the iterations of an unrolled loop (RAFT's update
//! block): its input channels follow the channels of the layer before at every reader,
//! or at none. The dynamo exporter computes the first iteration's input ahead when it
//! only depends on constants and stores it as an initializer; that reader's input does
//! not follow the channels, so they stay (cutting the weight left its input wider than
//! the weight: onnxruntime refused the compact model).

mod common;
use common::*;
use oto_graph::{analyze, AnalyzeOptions};
use oto_onnx::builder::{Attr, GraphBuilder};
use oto_onnx::{Dim, Model};

/// `x [B, 4, 5, 5] -> conv1 (6 channels) -> Relu -> conv2 (3)`, and a second read of
/// conv2's weight and bias: of `conv1` applied again to `x * 0.5` (`ahead` false), or of
/// a stored `[1, 6, 5, 5]` constant through a Relu (`ahead` true); the two summed.
fn model(ahead: bool) -> Model {
    let mut b = GraphBuilder::new("shared_weights");
    let x = b.input_f32("x", &[Dim::sym("batch"), Dim::Known(4), Dim::Known(5), Dim::Known(5)]);
    let mut weight = weights();
    let (w1, b1) = (weight(&mut b, "conv1.weight", &[6, 4, 3, 3]), weight(&mut b, "conv1.bias", &[6]));
    let (w2, b2) = (weight(&mut b, "conv2.weight", &[3, 6, 3, 3]), weight(&mut b, "conv2.bias", &[3]));
    let pads = [("pads", Attr::Ints(vec![1, 1, 1, 1]))];
    let conv = |b: &mut GraphBuilder, x: &str, w: &str, bias: &str| b.node_with("Conv", &[x, w, bias], &[], &pads);
    let h = conv(&mut b, &x, &w1, &b1);
    let h = b.node("Relu", &[&h], &[]);
    let first = conv(&mut b, &h, &w2, &b2);
    let second_in = if ahead {
        weight(&mut b, "computed_ahead", &[1, 6, 5, 5])
    } else {
        let half = weight(&mut b, "half", &[1]);
        let x2 = b.node("Mul", &[&x, &half], &[]);
        conv(&mut b, &x2, &w1, &b1)
    };
    let h2 = b.node("Relu", &[&second_in], &[]);
    let second = conv(&mut b, &h2, &w2, &b2);
    let y = b.node("Add", &[&first, &second], &["y"]);
    b.output_f32(&y, &[Dim::sym("batch"), Dim::Known(3), Dim::Known(5), Dim::Known(5)]);
    b.build().unwrap()
}

/// Both readers follow conv1's channels: one prunable group, cut exactly. One reader
/// reads a constant: conv1's channels are unprunable, and the reason names that reader.
#[test]
fn a_shared_weight_cuts_its_input_channels_only_where_every_reader_follows_them() {
    let full = model(false);
    let analysis = analyze(&full, &AnalyzeOptions::default()).unwrap();
    let group = prunable_group_with(&analysis, "conv1.weight", 0).id.clone();
    let inputs = uniform_input("x", &[2, 4, 5, 5], 7);
    for elements in [[0, 5], [1, 2], [3, 4]] {
        assert_removal_exact(&full, &analysis, &group, &elements, &inputs);
    }
    let ahead = analyze(&model(true), &AnalyzeOptions::default()).unwrap();
    let g = ahead.groups.iter().find(|g| g.members.iter().any(|m| m.initializer == "conv1.weight" && m.axis == 0)).unwrap();
    assert!(!g.prunable, "{}", ahead.table());
    let reasons = g.reasons.join("; ");
    assert!(
        reasons.contains("'conv2.weight' is also read by node") && reasons.contains("whose input does not follow these channels"),
        "{reasons}"
    );
}
