//! onnxruntime reproduces the PyTorch outputs graphs/zoo.py saved next to each model.

use oto_onnx::npz::read_npz;
use oto_onnx::Tensor;
use oto_ort::{Session, SessionOptions};
use std::path::PathBuf;

fn zoo_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../graphs/zoo");
    assert!(dir.join("index.json").exists(), "{} has no index.json: run `make graphs` (make test does it first)", dir.display());
    dir
}

/// Runs `name`.onnx on its saved inputs and compares every output with the saved one,
/// within 1e-4 * max(1, max|y|).
fn check_against_saved_outputs(name: &str) {
    let dir = zoo_dir();
    let session = Session::from_file(dir.join(format!("{name}.onnx")), &SessionOptions::with_threads(2)).unwrap();
    let inputs = read_npz(dir.join(format!("{name}.inputs.npz"))).unwrap();
    let expected = read_npz(dir.join(format!("{name}.outputs.npz"))).unwrap();
    let mut input_names: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
    input_names.sort_unstable();
    let mut declared = session.input_names();
    declared.sort_unstable();
    assert_eq!(input_names, declared, "{name}: saved inputs vs graph inputs");

    let refs: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let outputs = session.run(&refs).unwrap();
    assert_eq!(outputs.len(), expected.len(), "{name}: output count");
    for (out_name, want) in &expected {
        let (_, got) = outputs.iter().find(|(n, _)| n == out_name).unwrap_or_else(|| panic!("{name}: no output '{out_name}'"));
        assert_eq!(got.shape, want.shape, "{name}: output '{out_name}' shape");
        assert_eq!(got.dtype(), want.dtype(), "{name}: output '{out_name}' dtype");
        let (got, want) = (got.to_f64_vec(), want.to_f64_vec());
        let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f64, f64::max);
        assert!(worst <= 1e-4 * scale, "{name}: output '{out_name}' differs by {worst} (scale {scale})");
    }
}

#[test]
fn mlp_matches_pytorch() {
    check_against_saved_outputs("mlp");
}

#[test]
fn demo_cnn_matches_pytorch() {
    check_against_saved_outputs("demo_cnn");
}

#[test]
fn bert_tiny_with_int64_inputs_matches_pytorch() {
    let inputs = read_npz(zoo_dir().join("bert_tiny.inputs.npz")).unwrap();
    assert!(inputs.iter().any(|(_, t)| t.dtype() == oto_onnx::DType::I64), "bert_tiny should take int64 token ids");
    check_against_saved_outputs("bert_tiny");
}

/// The paired measurement stops at the run cap (whole blocks of 8 timed runs each), and
/// after one block when the time budget is spent, in each round; both medians are real run
/// times.
#[test]
fn paired_latency_counts_whole_blocks() {
    let dir = zoo_dir();
    let options = SessionOptions::with_threads(1);
    let model = std::fs::read(dir.join("demo_cnn.onnx")).unwrap();
    let inputs = read_npz(dir.join("demo_cnn.inputs.npz")).unwrap();
    let refs: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let measure = |rounds, budget, max_runs| oto_ort::paired_latency(&model, &model, &options, &refs, rounds, budget, max_runs).unwrap();
    let capped = measure(1, std::time::Duration::from_secs(60), 16);
    assert_eq!(capped.runs, 16);
    let one_block = measure(1, std::time::Duration::ZERO, 1000);
    assert_eq!(one_block.runs, 8);
    let three_rounds = measure(3, std::time::Duration::ZERO, 1000);
    assert_eq!(three_rounds.runs, 24);
    for t in [capped.first_s, capped.second_s, one_block.first_s, one_block.second_s, three_rounds.first_s, three_rounds.second_s] {
        assert!(t > 0.0 && t < 1.0, "median run time {t} s");
    }
}
