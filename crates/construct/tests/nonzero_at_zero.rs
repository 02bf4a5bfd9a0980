//! Channels whose value is not zero when their producers are: a function with
//! `f(0) != 0` on the way to the next layer (HGNetV2's learnable affine `scale * x + bias`
//! after the activation, PoolFormerV2's StarReLU `s * relu(x)^2 + b`, a sigmoid). The
//! slices of the weights reading them are zeroed with the element (producers), so the
//! removed channel contributes nothing whatever its value, and the cut is exact for every
//! reader: a padded convolution (where folding the constant into a bias would not be
//! exact at the borders), a grouped convolution, a fully connected layer.

mod common;
use common::*;
use oto_graph::{analyze, AnalyzeOptions, Role};
use oto_onnx::builder::{Attr, GraphBuilder};
use oto_onnx::{Dim, Model, Tensor, TensorData};

/// `x [B, 3, 6, 6] -> conv1 (8, 3x3 padded) -> Relu -> * scale + bias (scalars) -> conv2
/// (6, 3x3 padded) -> Sigmoid -> conv3 (grouped: 2 groups of 3 inputs, 4 outputs) ->
/// GlobalAveragePool -> Flatten -> fc1 (5) -> StarReLU -> fc2 (3)`.
fn model() -> Model {
    let mut b = GraphBuilder::new("nonzero_at_zero");
    let batch = Dim::sym("batch");
    let x = b.input_f32("x", &[batch.clone(), Dim::Known(3), Dim::Known(6), Dim::Known(6)]);
    let mut weight = weights();
    let scalar = |b: &mut GraphBuilder, name: &str, v: f32| b.initializer(name, Tensor { shape: vec![], data: TensorData::F32(vec![v]) });
    let pads = [("pads", Attr::Ints(vec![1, 1, 1, 1]))];
    let (w1, b1) = (weight(&mut b, "conv1.weight", &[8, 3, 3, 3]), weight(&mut b, "conv1.bias", &[8]));
    let h = b.node_with("Conv", &[&x, &w1, &b1], &[], &pads);
    let h = b.node("Relu", &[&h], &[]);
    let (scale, shift) = (scalar(&mut b, "lab.scale", 1.3), scalar(&mut b, "lab.bias", 0.4));
    let h = b.node("Mul", &[&h, &scale], &[]);
    let h = b.node("Add", &[&h, &shift], &[]);
    let (w2, b2) = (weight(&mut b, "conv2.weight", &[6, 8, 3, 3]), weight(&mut b, "conv2.bias", &[6]));
    let h = b.node_with("Conv", &[&h, &w2, &b2], &[], &pads);
    let h = b.node("Sigmoid", &[&h], &[]);
    let (w3, b3) = (weight(&mut b, "conv3.weight", &[4, 3, 1, 1]), weight(&mut b, "conv3.bias", &[4]));
    let h = b.node_with("Conv", &[&h, &w3, &b3], &[], &[("group", Attr::Int(2))]);
    let h = b.node("GlobalAveragePool", &[&h], &[]);
    let h = b.node("Flatten", &[&h], &[]);
    let (f1, c1) = (weight(&mut b, "fc1.weight", &[5, 4]), weight(&mut b, "fc1.bias", &[5]));
    let h = b.node_with("Gemm", &[&h, &f1, &c1], &[], &[("transB", Attr::Int(1))]);
    let h = b.node("Relu", &[&h], &[]);
    let two = scalar(&mut b, "star.two", 2.0);
    let h = b.node("Pow", &[&h, &two], &[]);
    let (s, t) = (scalar(&mut b, "star.scale", 0.8), scalar(&mut b, "star.bias", -0.3));
    let h = b.node("Mul", &[&h, &s], &[]);
    let h = b.node("Add", &[&h, &t], &[]);
    let (f2, c2) = (weight(&mut b, "fc2.weight", &[3, 5]), weight(&mut b, "fc2.bias", &[3]));
    let y = b.node_with("Gemm", &[&h, &f2, &c2], &["y"], &[("transB", Attr::Int(1))]);
    b.output_f32(&y, &[batch, Dim::Known(3)]);
    b.build().unwrap()
}

/// The full model with the zeroed producers of `elements` of `group`, but `reader`'s
/// weight as it was: the removed channels' non-zero value reaches the next layer.
fn readers_restored(model: &Model, analysis: &oto_graph::Analysis, group: &str, elements: &[usize], reader: &str) -> Model {
    let removed = [(group.to_string(), elements.to_vec())].into();
    let mut full = oto_construct::zero_producers(model, analysis, &removed).unwrap();
    let original = model.proto.graph.as_ref().unwrap().initializer.iter().find(|t| t.name.as_deref() == Some(reader)).unwrap().clone();
    let graph = full.proto.graph.as_mut().unwrap();
    *graph.initializer.iter_mut().find(|t| t.name.as_deref() == Some(reader)).unwrap() = original;
    full
}

#[test]
fn channels_not_zero_at_a_removed_element_cut_exactly_with_their_readers_zeroed() {
    let m = model();
    let analysis = analyze(&m, &AnalyzeOptions::default()).unwrap();
    let inputs = uniform_input("x", &[2, 3, 6, 6], 3);
    // (the layer's weight, its reader's weight and the reader's axis, elements to remove)
    let cases: [(&str, &str, usize, &[&[usize]]); 3] = [
        ("conv1.weight", "conv2.weight", 1, &[&[0], &[1, 6], &[2, 3, 4, 5, 7]]),
        ("conv2.weight", "conv3.weight", 1, &[&[0], &[1, 2]]),
        ("fc1.weight", "fc2.weight", 1, &[&[0], &[1, 3], &[2, 3, 4]]),
    ];
    for (layer, reader, axis, removals) in cases {
        let group = prunable_group_with(&analysis, layer, 0).id.clone();
        let g = analysis.groups.iter().find(|g| g.id == group).unwrap();
        let read = g.members.iter().find(|m| m.initializer == reader && m.axis == axis);
        assert_eq!(read.map(|m| m.role), Some(Role::Producer), "{layer}:\n{}", analysis.table());
        for &elements in removals {
            assert_removal_exact(&m, &analysis, &group, elements, &inputs);
            // The value is not zero there: the readers' zeros are what makes the cut exact.
            let restored = readers_restored(&m, &analysis, &group, elements, reader);
            let zeroed = oto_construct::zero_producers(&m, &analysis, &[(group.clone(), elements.to_vec())].into()).unwrap();
            let (err, tol) =
                oto_testkit::deviation(&oto_testkit::run_ort(&zeroed.proto, &inputs), &oto_testkit::run_ort(&restored.proto, &inputs));
            assert!(err > 10.0 * tol, "{layer} {elements:?}: the removed channels reach {reader} as zeros ({err:.3e})");
        }
    }
}
