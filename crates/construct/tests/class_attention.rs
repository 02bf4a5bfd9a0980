//! A class token broadcast over the batch and read twice, as CaiT's class-attention
//! blocks read it: concatenated before the patches, and added to what the block computes
//! from them (`cls + attn(cat(cls, x))`). The TorchScript exporter writes
//! `cls_token.expand(B, -1, -1)` as an `Expand` to `Where(target == -1, 1, target)`. The
//! token is cut with the width at both readers, exactly; an `Add` that reads it where no
//! channels are followed keeps it whole, and the width with it.

mod common;
use common::*;
use oto_graph::{analyze, AnalyzeOptions, Role};
use oto_onnx::builder::{Attr, GraphBuilder};
use oto_onnx::{DType, Dim, Model, Tensor, TensorData};

const WIDTH: usize = 6;

/// `x [B, 3, 4, 4]` -> patches (2x2 conv, `WIDTH` channels) -> `[B, 4, W]`; the class
/// token expanded to the batch and concatenated before them; `v = mean over tokens of
/// (tokens @ Wv + bv)`; `c = cls + v` (or, `untracked_add`, `cls + a constant` beside
/// it); `y = c @ head` (`[B, 1, 5]`).
fn model(untracked_add: bool) -> Model {
    let mut b = GraphBuilder::new("class_attention");
    b.opset(17);
    let batch = Dim::sym("batch");
    let x = b.input_f32("x", &[batch.clone(), Dim::Known(3), Dim::Known(4), Dim::Known(4)]);
    let mut weight = weights();
    let (w, bias) = (weight(&mut b, "patch.weight", &[WIDTH, 3, 2, 2]), weight(&mut b, "patch.bias", &[WIDTH]));
    let p = b.node_with("Conv", &[&x, &w, &bias], &[], &[("strides", Attr::Ints(vec![2, 2]))]);
    let flat = b.ints("flat", &[0, 0, -1]);
    let p = b.node("Reshape", &[&p, &flat], &[]);
    let p = b.node_with("Transpose", &[&p], &[], &[("perm", Attr::Ints(vec![0, 2, 1]))]);
    // cls_token.expand(B, -1, -1) as the TorchScript exporter writes it.
    let shape = b.node("Shape", &[&p], &[]);
    let zero = b.ints("zero", &[0]);
    let n = b.node_with("Gather", &[&shape, &zero], &[], &[("axis", Attr::Int(0))]);
    let keep = b.ints("keep", &[-1, -1]);
    let target = b.node_with("Concat", &[&n, &keep], &[], &[("axis", Attr::Int(0))]);
    let minus = b.ints("minus_ones", &[-1, -1, -1]);
    let is_kept = b.node("Equal", &[&target, &minus], &[]);
    let target_shape = b.node("Shape", &[&target], &[]);
    let one = Tensor::new(vec![1], TensorData::I64(vec![1])).unwrap();
    let ones = b.node_with("ConstantOfShape", &[&target_shape], &[], &[("value", Attr::Tensor(one))]);
    let to = b.node("Where", &[&is_kept, &ones, &target], &[]);
    let token = weight(&mut b, "cls_token", &[1, 1, WIDTH]);
    let cls = b.node("Expand", &[&token, &to], &[]);
    let tokens = b.node_with("Concat", &[&cls, &p], &[], &[("axis", Attr::Int(1))]);
    let (wv, bv) = (weight(&mut b, "v.weight", &[WIDTH, WIDTH]), weight(&mut b, "v.bias", &[WIDTH]));
    let v = b.node("MatMul", &[&tokens, &wv], &[]);
    let v = b.node("Add", &[&v, &bv], &[]);
    let v = b.node_with("ReduceMean", &[&v], &[], &[("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(1))]);
    let c = b.node("Add", &[&cls, &v], &[]);
    let c = if untracked_add {
        let shift = weight(&mut b, "shift", &[1, 1, WIDTH]);
        let s = b.node("Add", &[&cls, &shift], &[]);
        b.node("Mul", &[&c, &s], &[])
    } else {
        c
    };
    let head = weight(&mut b, "head.weight", &[WIDTH, 5]);
    let y = b.node("MatMul", &[&c, &head], &["y"]);
    b.output(&y, DType::F32, &[batch, Dim::Known(1), Dim::Known(5)]);
    b.build().unwrap()
}

#[test]
fn an_expanded_class_token_is_cut_where_it_is_concatenated_and_added() {
    let m = model(false);
    let analysis = analyze(&m, &AnalyzeOptions::default()).unwrap();
    let group = prunable_group_with(&analysis, "patch.weight", 0).id.clone();
    let g = analysis.groups.iter().find(|g| g.id == group).unwrap();
    let token = g.members.iter().find(|m| m.initializer == "cls_token" && m.axis == 2);
    assert_eq!(token.map(|m| m.role), Some(Role::Producer), "{}", analysis.table());
    let inputs = uniform_input("x", &[2, 3, 4, 4], 5);
    for elements in [&[0][..], &[1, 4], &[0, 2, 3, 5]] {
        assert_removal_exact(&m, &analysis, &group, elements, &inputs);
    }
}

#[test]
fn an_expanded_class_token_read_whole_keeps_the_width() {
    let analysis = analyze(&model(true), &AnalyzeOptions::default()).unwrap();
    let g = analysis.groups.iter().find(|g| g.members.iter().any(|m| m.initializer == "patch.weight" && m.axis == 0)).unwrap();
    assert!(!g.prunable, "{}", analysis.table());
    let reasons = g.reasons.join("; ");
    assert!(reasons.contains("initializer 'cls_token' is also read by") && reasons.contains("through a Slice or an Expand"), "{reasons}");
}
