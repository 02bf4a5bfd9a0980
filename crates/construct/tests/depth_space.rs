//! `DepthToSpace` and `SpaceToDepth` between two convolutions (a super-resolution model's
//! `PixelShuffle`, which both PyTorch exporters write as `DepthToSpace` in mode CRD; a
//! detector's space-to-depth stem), at a symbolic image size. Mode CRD moves blocks of
//! `b * b` channels to one channel: the first convolution's channels go by whole blocks.
//! `SpaceToDepth` spreads every channel over `b * b` channels: the first convolution's
//! channels go one by one and the second reads each at its `b * b` places. Removing
//! elements is exact in onnxruntime. Mode DCR of `DepthToSpace` interleaves the channels
//! and is refused with the reason.

mod common;
use common::*;
use oto_graph::{analyze, AnalyzeOptions};
use oto_onnx::builder::{Attr, GraphBuilder};
use oto_onnx::{Dim, Model};

/// `x [N, 3, H, W] -> Conv 3x3 (16) -> Relu -> OP (blocksize 2, `mode`) -> Conv 1x1 (5) -> y`.
fn model(op: &str, mode: Option<&str>, opset: i64) -> Model {
    let mut b = GraphBuilder::new("depth_space");
    b.opset(opset);
    let (n, h, w) = (Dim::sym("N"), Dim::sym("H"), Dim::sym("W"));
    let x = b.input_f32("x", &[n.clone(), Dim::Known(3), h, w]);
    let mut weight = weights();
    let (w1, b1) = (weight(&mut b, "conv1.weight", &[16, 3, 3, 3]), weight(&mut b, "conv1.bias", &[16]));
    let a = b.node_with("Conv", &[&x, &w1, &b1], &[], &[("pads", Attr::Ints(vec![1, 1, 1, 1]))]);
    let a = b.node("Relu", &[&a], &[]);
    let mut attrs = vec![("blocksize", Attr::Int(2))];
    if let Some(m) = mode {
        attrs.push(("mode", Attr::Str(m.to_string())));
    }
    let moved = b.node_with(op, &[&a], &[], &attrs);
    let channels = if op == "DepthToSpace" { 4 } else { 64 };
    let (w2, b2) = (weight(&mut b, "conv2.weight", &[5, channels, 1, 1]), weight(&mut b, "conv2.bias", &[5]));
    let y = b.node("Conv", &[&moved, &w2, &b2], &["y"]);
    b.output_f32(&y, &[n, Dim::Known(5), Dim::sym("Y"), Dim::sym("X")]);
    b.build().unwrap()
}

/// One case: the operator, its mode and opset, how many elements conv1's group has, and
/// the removals checked.
struct Case {
    op: &'static str,
    mode: Option<&'static str>,
    opset: i64,
    elements: usize,
    removals: Vec<Vec<usize>>,
}

#[test]
fn channels_are_cut_through_depth_to_space_and_space_to_depth() {
    let case = |op, mode, opset, elements, removals| Case { op, mode, opset, elements, removals };
    let cases = [
        case("DepthToSpace", Some("CRD"), 17, 4, vec![vec![0], vec![1, 3], vec![0, 1, 2]]),
        case("SpaceToDepth", None, 17, 16, vec![vec![0], vec![3, 7, 8], (0..15).collect()]),
        case("SpaceToDepth", Some("DCR"), 28, 16, vec![vec![5], vec![0, 2, 9, 15]]),
        case("SpaceToDepth", Some("CRD"), 28, 16, vec![vec![5], vec![0, 2, 9, 15]]),
    ];
    let inputs = uniform_input("x", &[2, 3, 4, 6], 17);
    for Case { op, mode, opset, elements, removals } in cases {
        let m = model(op, mode, opset);
        let analysis = analyze(&m, &AnalyzeOptions::default()).unwrap();
        let g = prunable_group_with(&analysis, "conv1.weight", 0);
        assert_eq!(g.num_elements, elements, "{op} {mode:?}: {}", analysis.table());
        assert!(g.members.iter().any(|x| x.initializer == "conv2.weight" && x.axis == 1), "{op} {mode:?}: {}", analysis.table());
        for removed in &removals {
            assert_removal_exact(&m, &analysis, &g.id, removed, &inputs);
        }
    }
}

#[test]
fn depth_to_space_in_dcr_mode_is_refused_with_the_reason() {
    let m = model("DepthToSpace", Some("DCR"), 17);
    let analysis = analyze(&m, &AnalyzeOptions::default()).unwrap();
    let g = analysis
        .groups
        .iter()
        .find(|g| g.members.iter().any(|x| x.initializer == "conv1.weight" && x.axis == 0))
        .unwrap_or_else(|| panic!("{}", analysis.table()));
    assert!(!g.prunable && g.reasons.iter().any(|r| r.contains("mode DCR")), "{}", analysis.table());
}
