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
    assert_eq!(j["parameters"], entry["params"]);
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
    let params = entry["params"].as_u64().unwrap();
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
