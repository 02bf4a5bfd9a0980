//! The onnxruntime check of a fixed batch made symbolic (`oto::model_file`): a symbolic
//! batch that mixes samples is refused, one that keeps them apart passes, and a file whose
//! batch normalization makes symbolic loads with it.

use oto::model_file::{load_model, symbolic_batch_agrees};
use oto_onnx::builder::{known_dims, Attr, GraphBuilder};
use oto_onnx::normalize::Summary;
use oto_onnx::{Dim, Model};

/// `y = x * 2` on `x` of `[n, 4]`, or, with `mix`, `y = x + mean(x over the batch)`: the
/// same at a batch of 1 (the mean is the sample itself) but not beyond.
fn model(batch: Dim, mix: bool) -> Model {
    let mut b = GraphBuilder::new("guard");
    b.opset(17);
    let x = b.input_f32("x", &[batch.clone(), Dim::Known(4)]);
    let y = if mix {
        let m = b.node_with("ReduceMean", &[&x], &[], &[("axes", Attr::Ints(vec![0])), ("keepdims", Attr::Int(1))]);
        b.node("Add", &[&x, &m], &["y"])
    } else {
        let two = b.initializer("two", oto_onnx::Tensor::new(vec![], oto_onnx::TensorData::F32(vec![2.0])).unwrap());
        b.node("Mul", &[&x, &two], &["y"])
    };
    b.output_f32(&y, &[batch, Dim::Known(4)]);
    b.build().unwrap()
}

#[test]
fn a_symbolic_batch_that_mixes_samples_is_refused() {
    let original = {
        let mut b = GraphBuilder::new("guard");
        b.opset(17);
        let x = b.input_f32("x", &known_dims(&[1, 4]));
        let m = b.node_with("ReduceMean", &[&x], &[], &[("axes", Attr::Ints(vec![0])), ("keepdims", Attr::Int(1))]);
        let y = b.node("Add", &[&x, &m], &["y"]);
        b.output_f32(&y, &known_dims(&[1, 4]));
        b.build().unwrap()
    };
    let summary = Summary { fixed_batch: Some(1), batch_symbolic: true, ..Default::default() };
    let why = symbolic_batch_agrees(&original, &model(Dim::sym("batch"), true), &summary).unwrap_err();
    assert!(why.contains("'y'") && why.contains("batch of 2"), "{why}");
    // The same file made symbolic without mixing (its own computation per sample) passes.
    let plain = model(Dim::Known(1), false);
    assert_eq!(symbolic_batch_agrees(&plain, &model(Dim::sym("batch"), false), &summary), Ok(()));
}

#[test]
fn a_fixed_batch_file_loads_with_a_checked_symbolic_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixed.onnx");
    model(Dim::Known(1), false).save(&path, &Default::default()).unwrap();
    let (loaded, summary) = load_model(&path).unwrap();
    assert!(summary.batch_symbolic && summary.batch_kept.is_none(), "{summary}");
    let input = &loaded.proto.graph.as_ref().unwrap().input[0];
    assert!(format!("{input:?}").contains("batch"), "{input:?}");
}
