//! A grouped convolution with C_in/group != C_out/group (16 -> 24 channels in 2 groups,
//! as AlexNet's conv2): the channels before it and after it are pruned, each element the
//! same position in every conv group; the compact model computes in onnxruntime what
//! the zeroed full model computes, keeps `group`, and its conv groups stay equal.

mod common;
use common::*;
use oto_construct::construct;
use oto_graph::{analyze, AnalyzeOptions};
use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
use oto_onnx::graph::NodeExt;
use oto_onnx::Model;
use oto_testkit::{deviation, run_ort};
use std::collections::BTreeMap;

fn model() -> Model {
    let mut b = GraphBuilder::new("grouped_unequal");
    let x = b.input_f32("x", &batch_dims(&[3, 8, 8]));
    let mut k = 0;
    let mut conv = |b: &mut GraphBuilder, x: &str, name: &str, cin: usize, cout: usize, group: usize| -> String {
        k += 1;
        let w = b.weight(&format!("{name}.weight"), &[cout, cin / group, 3, 3], |i| (((i * 7919 + k * 13) % 23) as f32 - 11.0) / 30.0);
        let bias = b.weight(&format!("{name}.bias"), &[cout], |i| ((i + k) % 5) as f32 / 10.0 - 0.2);
        let c = b.node_with("Conv", &[x, &w, &bias], &[], &[("group", Attr::Int(group as i64)), ("pads", Attr::Ints(vec![1; 4]))]);
        b.node("Relu", &[&c], &[])
    };
    let h = conv(&mut b, &x, "c1", 3, 16, 1);
    let h = conv(&mut b, &h, "gc", 16, 24, 2);
    let h = conv(&mut b, &h, "c3", 24, 8, 1);
    let p = b.node("GlobalAveragePool", &[&h], &[]);
    let f = b.node_with("Flatten", &[&p], &[], &[("axis", Attr::Int(1))]);
    let fw = b.weight("fc.weight", &[5, 8], |i| (i % 7) as f32 / 7.0 - 0.4);
    let y = b.node_with("Gemm", &[&f, &fw], &["y"], &[("transB", Attr::Int(1))]);
    b.output_f32(&y, &batch_dims(&[5]));
    b.build().unwrap()
}

#[test]
fn both_sides_of_a_grouped_conv_with_unequal_groups_prune_exactly() {
    let model = model();
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let input_side = analysis.group("c1.bias:0").unwrap();
    let output_side = analysis.group("gc.bias:0").unwrap();
    assert!(input_side.prunable && output_side.prunable, "{}", analysis.table());
    assert_eq!((input_side.num_elements, output_side.num_elements), (8, 12));
    let inputs = uniform_input("x", &[2, 3, 8, 8], 2);
    for removed in [
        BTreeMap::from([("c1.bias:0".to_string(), vec![1, 2, 6])]),
        BTreeMap::from([("gc.bias:0".to_string(), vec![0, 5, 11])]),
        BTreeMap::from([("c1.bias:0".to_string(), vec![0, 7]), ("gc.bias:0".to_string(), (1..11).collect())]),
    ] {
        let full = oto_construct::zero_producers(&model, &analysis, &removed).unwrap();
        let (compact, _) = construct(&full, &analysis, &removed).unwrap();
        assert_eq!(float_elements(&compact), predicted_float_elements(&full, &analysis, &removed), "{removed:?}");
        let gc = compact.proto.graph.as_ref().unwrap().node.iter().find(|n| n.input.get(1).is_some_and(|w| w == "gc.weight")).unwrap();
        assert_eq!(gc.attr_int_or("group", 1).unwrap(), 2, "{removed:?}");
        let w = compact.proto.graph.as_ref().unwrap().initializer.iter().find(|t| t.name.as_deref() == Some("gc.weight")).unwrap();
        let cut = |id: &str| removed.get(id).map_or(0, Vec::len) as i64;
        assert_eq!(w.dims[..2], [24 - 2 * cut("gc.bias:0"), 8 - cut("c1.bias:0")], "{removed:?}");
        let (err, tol) = deviation(&run_ort(&full.proto, &inputs), &run_ort(&compact.proto, &inputs));
        assert!(err <= tol, "{removed:?}: max deviation {err:.3e} > {tol:.3e}");
    }
}
