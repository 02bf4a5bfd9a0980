//! `oto inspect` as a user runs it: the built binary on a zoo model and on garbage.

mod common;
use common::*;
use oto_testkit::{zoo_index, zoo_path as zoo};

fn index_entry(name: &str) -> serde_json::Value {
    let index = zoo_index();
    index["models"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("{name} not in index.json")).clone()
}

#[test]
fn inspect_resnet18_json_matches_the_pytorch_parameter_count() {
    let entry = index_entry("resnet18");
    let model = zoo("resnet18.onnx");
    let out = oto(&["inspect", model.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The parameters of the PyTorch model the file computes (BN fused by the exporter).
    assert_eq!(j["parameters"], entry["exported_params"]);
    assert_eq!(j["outputs"], entry["outputs"]);
    assert_eq!(j["inputs"], entry["inputs"]);
    assert_eq!(j["operators"], entry["ops"]);
    // Conv and Linear MACs of torchvision resnet18 (10 classes) on one 3x64x64 image,
    // computed with PyTorch forward hooks (see crates/onnx/tests/shapes.rs).
    assert_eq!(j["macs"], 148_050_944);
    assert_eq!(j["macs_unresolved_nodes"], 0);
}

#[test]
fn inspect_resnet18_text_shows_shapes_and_counts() {
    let entry = index_entry("resnet18");
    let model = zoo("resnet18.onnx");
    let out = oto(&["inspect", model.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("logits") && text.contains("[batch, 10]"), "{text}");
    assert!(text.contains("[batch, 3, 64, 64]"), "{text}");
    let params = entry["exported_params"].as_u64().unwrap();
    let digits: Vec<char> = params.to_string().chars().rev().collect();
    let groups: Vec<String> = digits.chunks(3).map(|c| c.iter().rev().collect()).collect();
    let with_commas = groups.into_iter().rev().collect::<Vec<_>>().join(",");
    assert!(text.contains(&with_commas), "{with_commas} not in\n{text}");
}

#[test]
fn inspect_garbage_is_an_input_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.onnx");
    std::fs::write(&path, b"\xff\xff\xff not a model at all").unwrap();
    let out = oto(&["inspect", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("garbage.onnx"), "{err}");
    let out = oto(&["inspect", dir.path().join("missing.onnx").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.onnx"));
}

#[test]
fn usage_errors_exit_2_and_help_has_examples() {
    assert_eq!(oto(&["inspect"]).status.code(), Some(2));
    assert_eq!(oto(&["frobnicate"]).status.code(), Some(2));
    let help = oto(&["inspect", "--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("Examples:"));
}

/// A file as an old exporter writes it: IR 3 with every initializer also a graph input,
/// a Constant node, an Identity-tied bias and a Sum. Every command reads it normalized.
fn old_style_model(dir: &std::path::Path) -> std::path::PathBuf {
    use oto_onnx::builder::{batch_dims, known_dims, Attr, GraphBuilder};
    let mut b = GraphBuilder::new("old_style");
    b.opset(8);
    let x = b.input_f32("x", &batch_dims(&[4]));
    let w1 = b.weight("fc1.weight", &[6, 4], |i| (i % 5) as f32 / 5.0 - 0.4);
    let b1 = b.weight("fc1.bias", &[6], |i| 0.1 * i as f32);
    let b2 = b.node("Identity", &[&b1], &["fc2.bias"]);
    let w2 = b.node_with(
        "Constant",
        &[],
        &["fc2.weight"],
        &[(
            "value",
            Attr::Tensor(
                oto_onnx::Tensor::new(vec![6, 6], oto_onnx::TensorData::F32((0..36).map(|i| (i % 7) as f32 / 7.0 - 0.5).collect()))
                    .unwrap(),
            ),
        )],
    );
    let t = [("transB", Attr::Int(1))];
    let h = b.node_with("Gemm", &[&x, &w1, &b1], &[], &t);
    let h = b.node("Relu", &[&h], &[]);
    let g = b.node_with("Gemm", &[&h, &w2, &b2], &[], &t);
    let r = b.node("Sum", &[&g, &h], &[]);
    let w3 = b.weight("fc3.weight", &[2, 6], |i| i as f32 / 12.0);
    let y = b.node_with("Gemm", &[&r, &w3], &["y"], &t);
    b.output_f32(&y, &batch_dims(&[2]));
    for name in ["fc1.weight", "fc1.bias", "fc3.weight"] {
        let dims: Vec<i64> = b.proto().graph.unwrap().initializer.iter().find(|t| t.name.as_deref() == Some(name)).unwrap().dims.clone();
        b.input_f32(name, &known_dims(&dims));
    }
    let mut proto = b.proto();
    proto.ir_version = Some(3);
    let path = dir.join("old_style.onnx");
    oto_onnx::Model::from_proto(proto, "old_style.onnx", None).unwrap().save(&path, &Default::default()).unwrap();
    path
}

#[test]
fn inspect_and_analyze_report_normalization() {
    let dir = tempfile::tempdir().unwrap();
    let model = old_style_model(dir.path());
    let out = oto(&["inspect", s(&model), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["ir_version"], 3, "the file's IR version");
    assert_eq!(j["inputs"].as_array().unwrap().len(), 1, "{j}");
    let n = &j["normalized"];
    assert_eq!(
        (&n["constants_lifted"], &n["initializer_inputs"], &n["identities"], &n["sums"]),
        (&1.into(), &3.into(), &1.into(), &1.into()),
        "{n}"
    );
    assert_eq!(j["operators"], serde_json::json!({"Add": 1, "Gemm": 3, "Relu": 1}));
    let out = oto(&["inspect", s(&model)]);
    let t = text(&out.stdout);
    assert!(t.contains("normalized  1 Constant nodes made initializers, 3 initializers removed from the graph inputs"), "{t}");

    // -v logs what normalization did; the residual stream of fc1 and fc2 is one group,
    // whose members are the Constant node's weight and the untied bias.
    let out = oto(&["-v", "analyze", s(&model)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("normalized: 1 Constant nodes made initializers"), "{}", text(&out.stderr));
    let out = oto(&["analyze", s(&model), "--json", "-"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let prunable: Vec<&serde_json::Value> = j["groups"].as_array().unwrap().iter().filter(|g| g["prunable"] == true).collect();
    assert_eq!(prunable.len(), 1, "{j}");
    let members: Vec<&str> = prunable[0]["members"].as_array().unwrap().iter().map(|m| m["initializer"].as_str().unwrap()).collect();
    for name in ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight"] {
        assert!(members.contains(&name), "{name} not in {members:?}");
    }
}

/// MACs of a language model with a symbolic sequence axis are per batch element and
/// token: the sequence symbol is bound to 1 and named. gpt2_tiny (hidden 128, 2 layers,
/// 2 heads of 64, FFN 512, vocabulary 1000) per token: per layer c_attn 128x384 +
/// c_proj 128x128 + c_fc 128x512 + mlp c_proj 512x128 = 196608 (Gemm), and the
/// attention's two products 2 heads x 64 x 2 = 256 (MatMul); the LM head 128x1000.
#[test]
fn inspect_macs_per_token_with_a_sequence_axis() {
    let model = oto_testkit::user_zoo_dir().join("torchscript/gpt2_tiny.onnx");
    let out = oto(&["inspect", model.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["macs_by_op"]["Gemm"], 2 * 196_608);
    assert_eq!(j["macs_by_op"]["MatMul"], 2 * 256 + 128 * 1000);
    assert_eq!(j["macs"], 2 * 196_608 + 2 * 256 + 128 * 1000);
    assert_eq!(j["macs_unresolved_nodes"], 0);
    assert_eq!(j["macs_sequence_symbols"], serde_json::json!({"sequence_length": 1}));
    let text = String::from_utf8(oto(&["inspect", model.to_str().unwrap()]).stdout).unwrap();
    assert!(text.contains("521,728) per batch element and token (sequence_length = 1)"), "{text}");
    assert!(!text.contains("left out"), "{text}");
    // An image model has no sequence symbol.
    let out = oto(&["inspect", zoo("resnet18.onnx").to_str().unwrap(), "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["macs_sequence_symbols"], serde_json::json!({}));
}

/// An image model whose height and width are symbolic (the Optimum ViT: pixel_values
/// `[batch_size, num_channels, height, width]`): its patch Conv's MACs were left out.
/// They are counted at the preprocessor's 32 x 32 (the config beside the model) and the
/// channels the Conv fixes, at `--dim` sizes when given, and the output names the sizes;
/// a copy without the config and without `--dim` leaves the Conv out and says so.
#[test]
fn inspect_macs_at_the_image_size_given() {
    let dir = oto_testkit::optimum_zoo_dir().join("vit");
    let model = dir.join("model.onnx");
    // The patch embedding: 64 filters of 3 x 8 x 8 at (32 / 8)^2 positions.
    let conv = |side: u64| 64 * 3 * 8 * 8 * (side / 8) * (side / 8);
    let json = |args: &[&str]| -> serde_json::Value {
        let out = oto(args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let j = json(&["inspect", model.to_str().unwrap(), "--json"]);
    assert_eq!(j["macs_by_op"]["Conv"], conv(32), "{j}");
    assert_eq!(j["macs_unresolved_nodes"], 0, "{j}");
    assert_eq!(j["macs_sizes"], serde_json::json!({"height": 32, "num_channels": 3, "width": 32}));
    let text = String::from_utf8(oto(&["inspect", model.to_str().unwrap()]).stdout).unwrap();
    assert!(text.contains("per batch element at height = 32, num_channels = 3, width = 32"), "{text}");
    // Without the preprocessor's config: left out, unless --dim gives the size.
    let bare = tempfile::tempdir().unwrap();
    let copy = bare.path().join("vit.onnx");
    std::fs::copy(&model, &copy).unwrap();
    let j = json(&["inspect", copy.to_str().unwrap(), "--json"]);
    assert_eq!(j["macs_by_op"].get("Conv"), None, "{j}");
    assert!(j["macs_unresolved_nodes"].as_u64().unwrap() > 0, "{j}");
    let j = json(&["inspect", copy.to_str().unwrap(), "--json", "--dim", "height=32", "--dim", "width=32"]);
    assert_eq!(j["macs_by_op"]["Conv"], conv(32), "{j}");
    let out = oto(&["inspect", copy.to_str().unwrap(), "--dim", "depth=3"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A model exported without its weights (`export_params=False`: every layer reads its
/// weight from a graph input) is an input error naming the file, the inputs and the cause,
/// not an empty analysis.
#[test]
fn a_model_without_its_weights_is_an_input_error() {
    use oto_onnx::builder::{batch_dims, known_dims, Attr, GraphBuilder};
    let dir = tempfile::tempdir().unwrap();
    let mut b = GraphBuilder::new("no_params");
    let x = b.input_f32("x", &batch_dims(&[4]));
    let w = b.input_f32("fc.weight", &known_dims(&[3, 4]));
    let bias = b.input_f32("fc.bias", &known_dims(&[3]));
    let y = b.node_with("Gemm", &[&x, &w, &bias], &["y"], &[("transB", Attr::Int(1))]);
    b.output_f32(&y, &batch_dims(&[3]));
    let path = dir.path().join("no_params.onnx");
    b.build().unwrap().save(&path, &Default::default()).unwrap();
    for command in ["analyze", "inspect"] {
        let out = oto(&[command, s(&path)]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        let err = text(&out.stderr);
        for want in ["no_params.onnx", "holds no weights", "'fc.weight', 'fc.bias'", "export_params=False"] {
            assert!(err.contains(want), "{command}: {want} not in {err}");
        }
    }
}
