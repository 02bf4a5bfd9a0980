//! Keras flattens channels-last: tf2onnx writes `Conv -> Transpose [N, H, W, C] ->
//! Reshape [N, H*W*C] -> MatMul`, so channel `c` is every `C`-th row of the dense weight
//! (`hw * C + c`), not a contiguous block as after a channels-first flatten. The rows of
//! each channel are cut at every position, the convolution's channels form a group, and
//! the compact model computes in onnxruntime what the zeroed full model computes.

mod common;
use common::*;
use oto_construct::construct;
use oto_graph::{analyze, AnalyzeOptions, IndexMap};
use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
use oto_onnx::Model;
use oto_testkit::{deviation, run_ort};
use std::collections::BTreeMap;

/// `x [N, 3, 4, 4] -> Conv 6 (stride 2) -> Relu -> Transpose to [N, 2, 2, 6] -> Reshape
/// [-1, 24] -> MatMul [24, 5] -> Add`.
fn keras_flatten() -> Model {
    let mut b = GraphBuilder::new("channels_last_flatten");
    b.opset(13);
    let x = b.input_f32("x", &batch_dims(&[3, 4, 4]));
    let w1 = b.weight("conv.weight", &[6, 3, 3, 3], |i| (((i * 37) % 11) as f32 - 5.0) / 6.0);
    let b1 = b.weight("conv.bias", &[6], |i| i as f32 / 10.0 - 0.2);
    let h = b.node_with("Conv", &[&x, &w1, &b1], &[], &[("strides", Attr::Ints(vec![2, 2])), ("pads", Attr::Ints(vec![1, 1, 1, 1]))]);
    let h = b.node("Relu", &[&h], &[]);
    let nhwc = b.node_with("Transpose", &[&h], &[], &[("perm", Attr::Ints(vec![0, 2, 3, 1]))]);
    let target = b.ints("flat", &[-1, 24]);
    let flat = b.node("Reshape", &[&nhwc, &target], &[]);
    let w2 = b.weight("dense.kernel", &[24, 5], |i| (((i * 13) % 7) as f32 - 3.0) / 4.0);
    let b2 = b.weight("dense.bias", &[5], |i| i as f32 / 4.0);
    let y = b.node("MatMul", &[&flat, &w2], &[]);
    let y = b.node("Add", &[&y, &b2], &["y"]);
    b.output_f32(&y, &batch_dims(&[5]));
    b.build().unwrap()
}

#[test]
fn a_channels_last_flatten_cuts_every_position() {
    let model = keras_flatten();
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let g = analysis.groups.iter().find(|g| g.members.iter().any(|m| m.initializer == "conv.weight" && m.axis == 0)).unwrap();
    assert!(g.prunable, "{}", analysis.table());
    let dense = g.members.iter().find(|m| m.initializer == "dense.kernel").expect("the dense rows are in the group");
    assert_eq!(dense.axis, 0);
    // Channel 2 is rows 2, 8, 14, 20 (positions (0,0), (0,1), (1,0), (1,1) of 6 channels).
    assert_eq!(dense.map.indices(2), vec![2, 8, 14, 20]);
    assert!(matches!(dense.map, IndexMap::Indices { .. }));

    let removed: BTreeMap<String, Vec<usize>> = [(g.id.clone(), vec![0, 2, 5])].into();
    let full = oto_construct::zero_producers(&model, &analysis, &removed).unwrap();
    let (compact, report) = construct(&full, &analysis, &removed).unwrap();
    assert_eq!(report.groups[0].kept, 3);
    assert_eq!(float_elements(&compact), predicted_float_elements(&full, &analysis, &removed));
    let inputs = uniform_input("x", &[2, 3, 4, 4], 3);
    let want = run_ort(&full.proto, &inputs);
    let (err, tol) = deviation(&want, &run_ort(&compact.proto, &inputs));
    assert!(err <= tol, "max deviation {err:.3e} > {tol:.3e}");
    // The flatten's target counts what is left: 2 * 2 positions of 3 channels.
    let kept = compact.proto.graph.as_ref().unwrap().initializer.iter().find(|t| t.name.as_deref() == Some("dense.kernel")).unwrap();
    assert_eq!(kept.dims, vec![12, 5]);
}
