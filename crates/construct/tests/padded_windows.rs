//! Swin's windows at an image size that is not a multiple of the window: the feature map
//! is padded along its spatial axes, then split into windows by a `Reshape`. The padded
//! axes have the padded length, which the reshape splits; the channels, not padded,
//! stay one prunable group, and removing them is exact in onnxruntime.

mod common;
use common::*;
use oto_graph::{analyze, AnalyzeOptions};
use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};

#[test]
fn windows_of_a_padded_map_keep_the_channels() {
    // x [B, 6, 6, 3] -> 8 channels -> padded to [B, 8, 8, 8] -> windows [B, 2, 4, 2, 4, 8]
    // -> [B, 2, 2, 4, 4, 8] -> [B, 64, 8] -> 5 outputs.
    let mut b = GraphBuilder::new("padded_windows");
    b.opset(17);
    let x = b.input_f32("x", &batch_dims(&[6, 6, 3]));
    let w = b.weight("embed.weight", &[3, 8], |i| ((i * 7 + 3) % 11) as f32 / 5.0 - 1.0);
    let bias = b.weight("embed.bias", &[8], |i| i as f32 / 8.0 - 0.4);
    let h = b.node("MatMul", &[&x, &w], &[]);
    let h = b.node("Add", &[&h, &bias], &[]);
    let h = b.node("Relu", &[&h], &[]);
    let pads = b.ints("pads", &[0, 0, 0, 0, 0, 2, 2, 0]);
    let p = b.node_with("Pad", &[&h, &pads], &[], &[("mode", Attr::Str("constant".into()))]);
    let windows = b.ints("windows", &[0, 2, 4, 2, 4, 8]);
    let p = b.node("Reshape", &[&p, &windows], &[]);
    let p = b.node_with("Transpose", &[&p], &[], &[("perm", Attr::Ints(vec![0, 1, 3, 2, 4, 5]))]);
    let rows = b.ints("rows", &[0, 64, 8]);
    let p = b.node("Reshape", &[&p, &rows], &[]);
    let w2 = b.weight("head.weight", &[8, 5], |i| ((i * 5 + 1) % 13) as f32 / 6.0 - 1.0);
    let y = b.node("MatMul", &[&p, &w2], &["y"]);
    b.output_f32(&y, &batch_dims(&[64, 5]));
    let model = b.build().unwrap();
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let g = prunable_group_with(&analysis, "embed.weight", 1);
    assert_eq!(g.num_elements, 8, "{}", analysis.table());
    assert!(analysis.blocked.is_empty(), "{:?}", analysis.blocked);
    let inputs = uniform_input("x", &[2, 6, 6, 3], 5);
    for removed in [vec![0usize], vec![2, 5, 7], vec![0, 1, 2, 3, 4, 5, 6]] {
        assert_removal_exact(&model, &analysis, &g.id, &removed, &inputs);
    }
}

/// The same windows at a symbolic image size, as Optimum exports Swin (`height`, `width`):
/// the map `[B, h, w, C]` is split into `[B, h/2, 2, w/2, 2, C]` (sizes computed from its
/// shape, so `floor(h / 2)` times 2 must be taken for `h`), the windows flattened to
/// `[B * n, 4, C]`, and put back with a batch computed by dividing the window count,
/// which shape inference names afresh. The channels pass through both and stay prunable.
#[test]
fn windows_at_a_symbolic_size_keep_the_channels() {
    use oto_onnx::Dim;
    let mut b = GraphBuilder::new("symbolic_windows");
    b.opset(17);
    let x = b.input_f32("x", &[Dim::sym("batch"), Dim::sym("h"), Dim::sym("w"), Dim::Known(3)]);
    let w = b.weight("embed.weight", &[3, 8], |i| ((i * 7 + 3) % 11) as f32 / 5.0 - 1.0);
    let h = b.node("MatMul", &[&x, &w], &[]);
    let shape = b.node("Shape", &[&h], &[]);
    let at = |b: &mut GraphBuilder, i: i64| {
        let i = b.ints(&format!("at{i}"), &[i]);
        b.node_with("Gather", &[&shape, &i], &[], &[("axis", Attr::Int(0))])
    };
    let (batch, height, width) = (at(&mut b, 0), at(&mut b, 1), at(&mut b, 2));
    let two = b.ints("two", &[2]);
    let (rows, cols) = (b.node("Div", &[&height, &two], &[]), b.node("Div", &[&width, &two], &[]));
    let channels = b.ints("channels", &[8]);
    let split = b.node_with("Concat", &[&batch, &rows, &two, &cols, &two, &channels], &[], &[("axis", Attr::Int(0))]);
    let p = b.node("Reshape", &[&h, &split], &[]);
    let p = b.node_with("Transpose", &[&p], &[], &[("perm", Attr::Ints(vec![0, 1, 3, 2, 4, 5]))]);
    let flat = b.ints("flat", &[-1, 4, 8]);
    let windows = b.node("Reshape", &[&p, &flat], &[]);
    let relu = b.node("Relu", &[&windows], &[]);
    // Back: the batch is the window count divided by the windows per image.
    let ws = b.node("Shape", &[&relu], &[]);
    let zero = b.ints("zero", &[0]);
    let count = b.node_with("Gather", &[&ws, &zero], &[], &[("axis", Attr::Int(0))]);
    let per_image = b.node("Mul", &[&rows, &cols], &[]);
    let images = b.node("Div", &[&count, &per_image], &[]);
    let back = b.node_with("Concat", &[&images, &rows, &cols, &two, &two, &channels], &[], &[("axis", Attr::Int(0))]);
    let q = b.node("Reshape", &[&relu, &back], &[]);
    let q = b.node_with("Transpose", &[&q], &[], &[("perm", Attr::Ints(vec![0, 1, 3, 2, 4, 5]))]);
    let minus = b.ints("minus", &[-1]);
    let map = b.node_with("Concat", &[&images, &height, &minus, &channels], &[], &[("axis", Attr::Int(0))]);
    let q = b.node("Reshape", &[&q, &map], &[]);
    let w2 = b.weight("head.weight", &[8, 5], |i| ((i * 5 + 1) % 13) as f32 / 6.0 - 1.0);
    let y = b.node("MatMul", &[&q, &w2], &["y"]);
    b.output_f32(&y, &[Dim::sym("batch"), Dim::sym("h"), Dim::sym("w"), Dim::Known(5)]);
    let model = b.build().unwrap();
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    assert!(analysis.blocked.is_empty(), "{:?}\n{}", analysis.blocked, analysis.table());
    let g = prunable_group_with(&analysis, "embed.weight", 1);
    let inputs = uniform_input("x", &[2, 4, 6, 3], 7);
    for removed in [vec![1usize], vec![0, 3, 6, 7]] {
        assert_removal_exact(&model, &analysis, &g.id, &removed, &inputs);
    }
}
