//! `oto analyze`, `oto check`, `oto construct` and `oto eval` as a user runs them.

mod common;
use common::*;
use oto_testkit::{root, zoo_path as zoo};
use std::path::Path;

#[test]
fn check_passes_on_zoo_models() {
    for name in ["demo_cnn.onnx", "bert_tiny.onnx", "densenet121.onnx"] {
        let out = oto(&["check", s(&zoo(name)), "--trials", "2", "--sparsity", "0.5"]);
        assert!(out.status.success(), "{name}: {}\n{}", text(&out.stdout), text(&out.stderr));
        assert!(text(&out.stdout).contains("passed: 2 trials"), "{name}: {}", text(&out.stdout));
    }
}

/// A wrong group description must be caught: here a BatchNorm bias, which creates the
/// channel's value, is declared a consumer, so it is cut but not zeroed.
#[test]
fn check_fails_loudly_on_a_wrong_group_description() {
    let dir = tempfile::tempdir().unwrap();
    let groups = dir.path().join("groups.json");
    let out = oto(&["analyze", s(&zoo("demo_cnn.onnx")), "--json", s(&groups)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&groups).unwrap()).unwrap();
    let mut injected = 0;
    for group in json["groups"].as_array_mut().unwrap() {
        for member in group["members"].as_array_mut().unwrap() {
            if member["initializer"] == "bn1.bias" {
                member["role"] = "consumer".into();
                injected += 1;
            }
        }
    }
    assert_eq!(injected, 1);
    std::fs::write(&groups, serde_json::to_string(&json).unwrap()).unwrap();
    let out = oto(&["check", s(&zoo("demo_cnn.onnx")), "--groups", s(&groups), "--trials", "2"]);
    assert_eq!(out.status.code(), Some(1), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("MISMATCH"), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("changed the outputs"), "{}", text(&out.stderr));
}

#[test]
fn analyze_writes_json_and_dot_and_refuses_unknown_names() {
    let dir = tempfile::tempdir().unwrap();
    let (json, dot) = (dir.path().join("g.json"), dir.path().join("g.dot"));
    let out = oto(&["analyze", s(&zoo("resnet18.onnx")), "--json", s(&json), "--dot", s(&dot)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.contains("13 groups, 12 prunable"), "{table}");
    let parsed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(parsed["groups"].as_array().unwrap().len(), 13);
    assert!(std::fs::read_to_string(&dot).unwrap().starts_with("digraph"));
    let out = oto(&["analyze", s(&zoo("resnet18.onnx")), "--unprunable", "no.such.weight"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no.such.weight"), "{}", text(&out.stderr));
    // Marking a weight unprunable takes its group out of pruning.
    let out = oto(&["analyze", s(&zoo("resnet18.onnx")), "--unprunable", "conv1.weight"]);
    assert!(text(&out.stdout).contains("13 groups, 11 prunable"), "{}", text(&out.stdout));
}

/// Zero a few channels by hand (as training would), construct, and compare accuracy.
#[test]
fn construct_cuts_zero_channels_and_keeps_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let model = oto_onnx::Model::load(zoo("demo_cnn.onnx")).unwrap();
    let analysis = oto_graph::analyze(&model, &Default::default()).unwrap();
    let chosen: std::collections::BTreeMap<String, Vec<usize>> =
        [("bn1.bias:0".to_string(), vec![0, 3, 5]), ("bn3.bias:0".to_string(), (0..32).collect())].into();
    let sparse = oto_construct::zero_producers(&model, &analysis, &chosen).unwrap();
    let sparse_path = dir.path().join("sparse.onnx");
    sparse.save(&sparse_path, &Default::default()).unwrap();
    let small = dir.path().join("small.onnx");
    let out = oto(&["construct", s(&sparse_path), "--out", s(&small)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("removed 35 elements in 2 groups"), "{}", text(&out.stdout));
    let data = root().join("examples/data/digits_test.npz");
    let eval = |m: &Path| -> serde_json::Value {
        let out = oto(&["eval", s(m), "--data", s(&data), "--device", "cpu", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (a, b) = (eval(&sparse_path), eval(&small));
    assert_eq!(a["accuracy"], b["accuracy"]);
    assert!((a["loss"].as_f64().unwrap() - b["loss"].as_f64().unwrap()).abs() < 1e-5);
    // The input is never overwritten.
    let out = oto(&["construct", s(&sparse_path), "--out", s(&sparse_path)]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn eval_reports_a_mismatched_data_file() {
    let data = root().join("examples/data/digits_test.npz");
    let out = oto(&["eval", s(&zoo("mlp.onnx")), "--data", s(&data), "--device", "cpu"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("digits_test.npz") && err.contains("'x'") && err.contains("[359, 1, 8, 8]"), "{err}");
}
