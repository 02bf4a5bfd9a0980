//! A generator's first layer: a dense layer whose units are viewed as `[C, H, W]`
//! (`fc(z).view(-1, C, 4, 4)`), then BatchNorm, ReLU and a transposed convolution. A channel
//! is a block of 16 units; the convolution's window mixes the positions inside each block,
//! never across them, so the channels are a prunable group (the dense layer's rows in blocks,
//! the BatchNorm's and the convolution's input channels) and removal is exact.

mod common;
use common::*;
use oto_construct::construct;
use oto_graph::{analyze, AnalyzeOptions};
use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
use oto_onnx::Model;
use oto_testkit::{deviation, run_ort};
use std::collections::BTreeMap;

fn generator() -> Model {
    let mut b = GraphBuilder::new("dense_to_channels");
    b.opset(17);
    let z = b.input_f32("z", &batch_dims(&[5]));
    let w = b.weight("fc.weight", &[5, 64], |i| (((i * 37) % 11) as f32 - 5.0) / 6.0);
    let bias = b.weight("fc.bias", &[64], |i| (i % 7) as f32 / 10.0 - 0.3);
    let h = b.node("MatMul", &[&z, &w], &[]);
    let h = b.node("Add", &[&h, &bias], &[]);
    let view = b.ints("view", &[-1, 4, 4, 4]);
    let h = b.node("Reshape", &[&h, &view], &[]);
    let scale = b.weight("bn.weight", &[4], |i| 1.0 + i as f32 / 4.0);
    let shift = b.weight("bn.bias", &[4], |i| i as f32 / 5.0 - 0.2);
    let mean = b.weight("bn.running_mean", &[4], |i| i as f32 / 10.0);
    let var = b.weight("bn.running_var", &[4], |i| 1.0 + i as f32 / 3.0);
    let h = b.node("BatchNormalization", &[&h, &scale, &shift, &mean, &var], &[]);
    let h = b.node("Relu", &[&h], &[]);
    let wt = b.weight("up.weight", &[4, 3, 4, 4], |i| (((i * 13) % 7) as f32 - 3.0) / 4.0);
    let attrs = [("strides", Attr::Ints(vec![2, 2])), ("pads", Attr::Ints(vec![1, 1, 1, 1]))];
    let y = b.node_with("ConvTranspose", &[&h, &wt], &["y"], &attrs);
    b.output_f32(&y, &batch_dims(&[3, 8, 8]));
    b.build().unwrap()
}

#[test]
fn dense_units_viewed_as_channels_prune_by_channel() {
    let model = generator();
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let g = analysis.groups.iter().find(|g| g.members.iter().any(|m| m.initializer == "fc.weight")).unwrap();
    assert!(g.prunable && g.num_elements == 4, "{}", analysis.table());
    let fc = g.members.iter().find(|m| m.initializer == "fc.weight").unwrap();
    assert_eq!(fc.map.indices(1), (16..32).collect::<Vec<_>>(), "channel 1 is units 16..32");
    assert!(g.members.iter().any(|m| m.initializer == "up.weight" && m.axis == 0), "{}", analysis.table());
    let removed: BTreeMap<String, Vec<usize>> = [(g.id.clone(), vec![1, 3])].into();
    let full = oto_construct::zero_producers(&model, &analysis, &removed).unwrap();
    let (compact, report) = construct(&full, &analysis, &removed).unwrap();
    assert_eq!(report.groups[0].kept, 2);
    assert_eq!(float_elements(&compact), predicted_float_elements(&full, &analysis, &removed));
    let inputs = uniform_input("z", &[3, 5], 5);
    let (err, tol) = deviation(&run_ort(&full.proto, &inputs), &run_ort(&compact.proto, &inputs));
    assert!(err <= tol, "max deviation {err:.3e} > {tol:.3e}");
}
