//! Shapes that inference cannot tell and the file declares: an operator oto does not know
//! (`Det` here; `GridSample` in RT-DETR's deformable attention was one) and what follows
//! it have the `value_info` that exporters and simplifiers write. The analysis and the construction
//! read the same completed shapes (the construction once failed on a group the analysis,
//! which alone read them, had found prunable: a layer norm's input of unknown rank).

mod common;
use common::*;
use oto_graph::{analyze, AnalyzeOptions};
use oto_onnx::builder::{Attr, GraphBuilder};
use oto_onnx::{DType, Dim, Model};

/// `x [B, 4, 8] -> 16 channels` (the residual width, starting at a computed value), plus
/// the determinants of `m [B, 4, 2, 2, 2]` (`[B, 4, 2]`) reshaped to `[B, 4, 2]` and
/// projected to the 16 channels (+ bias), then `LayerNormalization` (epsilon 0.5) and a
/// head `[16 -> 5]`. The file's `value_info` declares no shape (`Declared::None`), the
/// sample's and the reshape's, or every value's (as onnxslim writes them).
fn model(declared: Declared) -> Model {
    let mut b = GraphBuilder::new("declared_shapes");
    let batch = Dim::sym("batch");
    let x = b.input_f32("x", &[batch.clone(), Dim::Known(4), Dim::Known(8)]);
    let m = b.input_f32("m", &[batch.clone(), Dim::Known(4), Dim::Known(2), Dim::Known(2), Dim::Known(2)]);
    let mut weight = weights();
    let w0 = weight(&mut b, "w0", &[8, 16]);
    let residual = b.node("MatMul", &[&x, &w0], &[]);
    let sampled = b.node("Det", &[&m], &["sampled"]);
    let rows = b.ints("rows", &[0, 4, 2]);
    let rows = b.node("Reshape", &[&sampled, &rows], &["rows_of_samples"]);
    let (w1, b1) = (weight(&mut b, "w1", &[2, 16]), weight(&mut b, "b1", &[16]));
    let projected = b.node("MatMul", &[&rows, &w1], &[]);
    let projected = b.node("Add", &[&projected, &b1], &[]);
    let sum = b.node("Add", &[&residual, &projected], &[]);
    let (scale, bias) = (weight(&mut b, "ln.scale", &[16]), weight(&mut b, "ln.bias", &[16]));
    let normed = b.node_with("LayerNormalization", &[&sum, &scale, &bias], &[], &[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(0.5))]);
    let head = weight(&mut b, "head", &[16, 5]);
    let y = b.node("MatMul", &[&normed, &head], &["y"]);
    b.output_f32(&y, &[batch.clone(), Dim::Known(4), Dim::Known(5)]);
    if declared != Declared::None {
        b.shape(&sampled, DType::F32, &[batch.clone(), Dim::Known(4), Dim::Known(2)]);
        b.shape(&rows, DType::F32, &[batch.clone(), Dim::Known(4), Dim::Known(2)]);
    }
    if declared == Declared::Every {
        for value in [&residual, &projected, &sum, &normed] {
            b.shape(value, DType::F32, &[batch.clone(), Dim::Known(4), Dim::Known(16)]);
        }
    }
    b.build().unwrap()
}

/// Which shapes the file declares.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Declared {
    None,
    Unknown,
    Every,
}

/// Declared (where inference stops, or everywhere): the residual width (the input projection's 16 channels, the sample's
/// projection, the layer norm, the head's rows) is one prunable group, and removing any
/// 5 of its channels is exact in onnxruntime. Undeclared, the sum's shape is unknown and
/// the width is blocked there.
#[test]
fn a_width_past_an_operator_oto_does_not_know_prunes_with_its_declared_shapes() {
    let mut inputs = uniform_input("x", &[2, 4, 8], 1);
    inputs.extend(uniform_input("m", &[2, 4, 2, 2, 2], 2));
    for declared in [Declared::Unknown, Declared::Every] {
        let analysis = analyze(&model(declared), &AnalyzeOptions::default()).unwrap();
        let group = prunable_group_with(&analysis, "w0", 1).id.clone();
        let g = analysis.groups.iter().find(|g| g.id == group).unwrap();
        for (init, axis) in [("w1", 1), ("b1", 0), ("head", 0)] {
            let table = analysis.table();
            assert!(
                g.members.iter().any(|m| m.initializer == init && m.axis == axis),
                "{declared:?}: {init}:{axis} not in {group}:\n{table}"
            );
        }
        for elements in [[0, 3, 7, 8, 15], [1, 2, 4, 5, 6], [9, 10, 11, 12, 13]] {
            assert_removal_exact(&model(declared), &analysis, &group, &elements, &inputs);
        }
    }
    let undeclared = analyze(&model(Declared::None), &AnalyzeOptions::default()).unwrap();
    assert!(
        !undeclared.prunable_groups().any(|g| g.members.iter().any(|m| m.initializer == "w0" && m.axis == 1)),
        "{}",
        undeclared.table()
    );
}
