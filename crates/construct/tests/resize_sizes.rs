//! A Resize whose output sizes are given (`sizes`, as the dynamo exporter writes
//! torchvision's DeepLabV3 pooling branch: the constant `[1, 256, 14, 14]`) passes the
//! channels through; removing channels rewrites the channel entry of `sizes`, so the
//! compact model runs and computes in onnxruntime what the zeroed full model computes.

mod common;
use common::*;
use oto_construct::construct;
use oto_graph::{analyze, AnalyzeOptions};
use oto_onnx::builder::{known_dims, Attr, GraphBuilder};
use oto_onnx::Model;
use oto_testkit::{deviation, run_ort};
use std::collections::BTreeMap;

/// `x [1, 3, 4, 4] -> Conv 8 -> Relu -> Resize to [1, 8, 8, 8] (sizes) -> Conv 5`.
fn upsample_model() -> Model {
    let mut b = GraphBuilder::new("resize_sizes");
    b.opset(20);
    let x = b.input_f32("x", &known_dims(&[1, 3, 4, 4]));
    let w1 = b.weight("branch.weight", &[8, 3, 1, 1], |i| (((i * 37) % 11) as f32 - 5.0) / 6.0);
    let b1 = b.weight("branch.bias", &[8], |i| i as f32 / 10.0 - 0.3);
    let h = b.node("Conv", &[&x, &w1, &b1], &[]);
    let h = b.node("Relu", &[&h], &[]);
    let sizes = b.ints("sizes", &[1, 8, 8, 8]);
    let up = b.node_with("Resize", &[&h, "", "", &sizes], &[], &[("mode", Attr::Str("linear".into()))]);
    let w2 = b.weight("project.weight", &[5, 8, 1, 1], |i| (((i * 13) % 7) as f32 - 3.0) / 4.0);
    let y = b.node("Conv", &[&up, &w2], &["y"]);
    b.output_f32(&y, &known_dims(&[1, 5, 8, 8]));
    b.build().unwrap()
}

#[test]
fn resize_sizes_follow_the_channels() {
    let model = upsample_model();
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let g = analysis.groups.iter().find(|g| g.members.iter().any(|m| m.initializer == "branch.weight" && m.axis == 0)).unwrap();
    assert!(g.prunable, "{}", analysis.table());
    assert_eq!(g.shape_constants.len(), 1, "the channel entry of `sizes`: {:?}", g.shape_constants);
    let removed: BTreeMap<String, Vec<usize>> = [(g.id.clone(), vec![1, 2, 6])].into();
    let full = oto_construct::zero_producers(&model, &analysis, &removed).unwrap();
    let (compact, report) = construct(&full, &analysis, &removed).unwrap();
    assert_eq!(report.groups[0].kept, 5);
    assert_eq!(float_elements(&compact), predicted_float_elements(&full, &analysis, &removed));
    let inputs = uniform_input("x", &[1, 3, 4, 4], 9);
    let want = run_ort(&full.proto, &inputs);
    let (err, tol) = deviation(&want, &run_ort(&compact.proto, &inputs));
    assert!(err <= tol, "max deviation {err:.3e} > {tol:.3e}");
}
