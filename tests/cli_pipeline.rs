//! `oto analyze`, `oto check`, `oto construct` and `oto eval` as a user runs them.

mod common;
use common::*;
use oto_testkit::{root, zoo_path as zoo};
use std::path::Path;

#[test]
fn check_passes_on_zoo_models() {
    let _job = one_job_at_a_time();
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
    let _job = one_job_at_a_time();
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
    let _job = one_job_at_a_time();
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
    let _job = one_job_at_a_time();
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
    let _job = one_job_at_a_time();
    let data = root().join("examples/data/digits_test.npz");
    let out = oto(&["eval", s(&zoo("mlp.onnx")), "--data", s(&data), "--device", "cpu"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("digits_test.npz") && err.contains("'x'") && err.contains("[359, 1, 8, 8]"), "{err}");
}

/// Runs `oto` expecting exit code 2 and a message containing every `needle`.
fn refused(args: &[&str], needles: &[&str]) {
    let out = oto(args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{args:?}: '{n}' not in: {stderr}");
    }
}

/// A saved analysis is user input: one that does not fit the model is refused by
/// `oto check` and `oto construct`, naming the file, the group and the bad value.
#[test]
fn a_group_description_that_does_not_fit_the_model_is_refused() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let model = zoo("demo_cnn.onnx");
    let groups = dir.path().join("groups.json");
    let out = oto(&["analyze", s(&model), "--json", s(&groups)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let original: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&groups).unwrap()).unwrap();
    // Each edit of the group `bn1.bias:0` (16 channels), with what the message must say.
    type Edit = fn(&mut serde_json::Value);
    let cases: [(Edit, &str); 8] = [
        (|g| g["num_elements"] = 1_000_000_000_000_000u64.into(), "1000000000000000 elements"),
        (|g| g["num_elements"] = 0.into(), "num_elements = 0"),
        (|g| g["members"][0]["axis"] = 7.into(), "axis 7 is beyond its rank"),
        (|g| g["members"][0]["initializer"] = "no.such.weight".into(), "'no.such.weight' is not an initializer"),
        (|g| g["members"][0]["map"] = serde_json::json!({"type": "blocks", "offset": 9, "block": 1}), "from offset 9"),
        (|g| g["members"][0]["map"] = serde_json::json!({"type": "blocks", "offset": 0, "block": 0}), "block = 0"),
        (
            |g| {
                g["members"][0]["map"] =
                    serde_json::json!({"type": "indices", "indices": (0..16).map(|i| vec![i * 100]).collect::<Vec<_>>()})
            },
            "index 100",
        ),
        (
            |g| {
                g["shape_constants"] =
                    serde_json::json!([{"location": {"type": "initializer", "name": "nope"}, "entry": 0, "per_element": 1, "nodes": []}])
            },
            "initializer 'nope'",
        ),
    ];
    for (edit, needle) in cases {
        let mut json = original.clone();
        let group = json["groups"].as_array_mut().unwrap().iter_mut().find(|g| g["id"] == "bn1.bias:0").unwrap();
        edit(group);
        std::fs::write(&groups, serde_json::to_string(&json).unwrap()).unwrap();
        let small = dir.path().join("small.onnx");
        for args in [
            vec!["check", s(&model), "--groups", s(&groups), "--trials", "1"],
            vec!["construct", s(&model), "--out", s(&small), "--groups", s(&groups)],
        ] {
            refused(&args, &["groups.json", "group 'bn1.bias:0'", needle]);
        }
        assert!(!small.exists());
    }
}

/// Dimensions read from a model file are checked before anything is allocated from them.
#[test]
fn huge_input_dimensions_are_refused_naming_the_value() {
    let _job = one_job_at_a_time();
    use oto_onnx::proto::tensor_shape_proto::dimension::Value;
    let dir = tempfile::tempdir().unwrap();
    let with_dim = |name: &str, axis: usize, value: Value| {
        let mut model = oto_onnx::Model::load(zoo("demo_cnn.onnx")).unwrap();
        let graph = model.proto.graph.as_mut().unwrap();
        let Some(oto_onnx::proto::type_proto::Value::TensorType(t)) = graph.input[0].r#type.as_mut().unwrap().value.as_mut() else {
            panic!("the input is not a tensor")
        };
        t.shape.as_mut().unwrap().dim[axis].value = Some(value);
        let path = dir.path().join(name);
        let model = oto_onnx::Model::from_proto(model.proto, &path.to_string_lossy(), None).unwrap();
        model.save(&path, &Default::default()).unwrap();
        path
    };
    let overflow = with_dim("overflow.onnx", 0, Value::DimParam("99999999999*99999999999".into()));
    refused(&["check", s(&overflow)], &["overflow.onnx", "'x'", "99999999999*99999999999", "overflows"]);
    refused(&["inspect", s(&overflow)], &["overflow.onnx", "99999999999*99999999999"]);
    let huge = with_dim("huge.onnx", 0, Value::DimParam("99999999*99999".into()));
    refused(&["check", s(&huge)], &["huge.onnx", "'x'", "[9999899900001, 1, 8, 8]", "too many elements"]);
    // A fixed batch, however large, becomes symbolic (normalization); a fixed height cannot.
    let huge = with_dim("huge_value.onnx", 2, Value::DimValue(99_999_999_999));
    refused(&["check", s(&huge)], &["huge_value.onnx", "'x'", "99999999999", "too many elements"]);
}
