//! Model zoo-era files (graphs/legacy_zoo.py: IR 3, opsets 7-9, a fixed batch) through
//! the commands users run: `oto eval` and `oto prune` of a classifier with a [N, C, 1, 1]
//! output, with labels [N], at batch sizes other than 1, and of a file whose batch is
//! fixed at 4 at batch sizes 3 and 8; a batch that cannot be made symbolic is a clear
//! error; `oto check`.

mod common;
use common::*;
use oto_onnx::{Tensor, TensorData};
use oto_testkit::{batched, legacy_inputs, legacy_model, legacy_path, run_ort};
use std::path::{Path, PathBuf};

const SAMPLES: usize = 10;
const CLASSES: usize = 7;

/// squeeze_head's reference sample and 9 random ones with labels `k % 7`, written to
/// `dir/data.npz`; with onnxruntime's accuracy and mean cross-entropy on them.
fn squeeze_data(dir: &Path) -> (PathBuf, f64, f64) {
    let inputs = batched(&legacy_inputs("squeeze_head"), SAMPLES, 9);
    let labels: Vec<i64> = (0..SAMPLES as i64).map(|k| k % CLASSES as i64).collect();
    let label_t = Tensor { shape: vec![SAMPLES], data: TensorData::I64(labels.clone()) };
    let path = dir.join("data.npz");
    oto_onnx::npz::write_npz(&path, &[("x", &inputs[0].1), ("labels", &label_t)], oto_onnx::npz::NpzCompression::Stored).unwrap();
    let logits = &run_ort(&legacy_model("squeeze_head").proto, &inputs)[0].1;
    assert_eq!(logits.len(), SAMPLES * CLASSES);
    let (mut correct, mut loss) = (0usize, 0.0f64);
    for (row, &label) in logits.chunks(CLASSES).zip(&labels) {
        let best = (0..CLASSES).fold(0, |b, c| if row[c] > row[b] { c } else { b });
        correct += usize::from(best as i64 == label);
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        loss += lse - row[label as usize];
    }
    (path, correct as f64 / SAMPLES as f64, loss / SAMPLES as f64)
}

fn eval_json(model: &Path, data: &Path, batch: &str) -> serde_json::Value {
    let out = oto(&["eval", s(model), "--data", s(data), "--batch-size", batch, "--device", "cpu", "--json"]);
    assert!(out.status.success(), "batch {batch}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Labels [N] for a [N, 7, 1, 1] output, at batch sizes 4 (a last batch of 2) and 10:
/// the accuracy and loss onnxruntime's logits give.
#[test]
fn eval_takes_labels_n_for_nc11_outputs_at_any_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (data, accuracy, loss) = squeeze_data(dir.path());
    for batch in ["4", "10"] {
        let v = eval_json(&legacy_path("squeeze_head.onnx"), &data, batch);
        assert_eq!(v["samples"].as_u64(), Some(SAMPLES as u64), "{v}");
        assert!((v["accuracy"].as_f64().unwrap() - accuracy).abs() < 1e-9, "batch {batch}: {v}, want accuracy {accuracy}");
        assert!((v["loss"].as_f64().unwrap() - loss).abs() < 1e-4, "batch {batch}: {v}, want loss {loss}");
    }
}

/// `oto prune --batch-size 4` on the file with its batch fixed to 1 runs to the end, and
/// the compact model it writes takes any batch.
#[test]
fn prune_trains_a_fixed_batch_file_at_batch_4() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ..) = squeeze_data(dir.path());
    let out_dir = dir.path().join("out");
    let model = legacy_path("squeeze_head.onnx");
    let args = [
        "prune",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--target-sparsity",
        "0.5",
        "--steps",
        "8",
        "--batch-size",
        "4",
        "--lr",
        "0.05",
        "--threads",
        "2",
        "--device",
        "cpu",
        "--out",
        s(&out_dir),
    ];
    let out = oto(&args);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let v = eval_json(&out_dir.join("model.onnx"), &data, "3");
    assert_eq!(v["samples"].as_u64(), Some(SAMPLES as u64), "{v}");
}

#[test]
fn check_passes_on_legacy_files() {
    for name in ["alexnet_lite.onnx", "resnet_mul_add.onnx", "squeeze_head.onnx", "yolo_lite.onnx"] {
        let out = oto(&["check", s(&legacy_path(name)), "--trials", "2", "--sparsity", "0.5"]);
        assert!(out.status.success(), "{name}: {}\n{}", text(&out.stdout), text(&out.stderr));
        assert!(text(&out.stdout).contains("passed: 2 trials"), "{name}: {}", text(&out.stdout));
    }
}

/// batch4_cnn's 4 reference samples and 6 random ones (10: no multiple of 4) with
/// labels `k % 10`, written to `dir/batch4.npz`; with onnxruntime's accuracy on them.
fn batch4_data(dir: &Path) -> (PathBuf, f64) {
    let x = &legacy_inputs("batch4_cnn")[0].1;
    let per: usize = x.shape[1..].iter().product();
    let mut data = x.as_f32().unwrap().to_vec();
    let mut rng = oto_testkit::SplitMix64::new(21);
    data.extend((0..6 * per).map(|_| (rng.unit() * 2.0 - 1.0) as f32));
    let mut shape = x.shape.clone();
    shape[0] = SAMPLES;
    let x = Tensor { shape, data: TensorData::F32(data) };
    let labels: Vec<i64> = (0..SAMPLES as i64).map(|k| k % 10).collect();
    let label_t = Tensor { shape: vec![SAMPLES], data: TensorData::I64(labels.clone()) };
    let path = dir.join("batch4.npz");
    oto_onnx::npz::write_npz(&path, &[("x", &x), ("labels", &label_t)], oto_onnx::npz::NpzCompression::Stored).unwrap();
    let probs = &run_ort(&legacy_model("batch4_cnn").proto, &[("data_0".to_string(), x)])[0].1;
    let correct = probs
        .chunks(10)
        .zip(&labels)
        .filter(|(row, &label)| (0..10).fold(0, |b, c| if row[c] > row[b] { c } else { b }) as i64 == label)
        .count();
    (path, correct as f64 / SAMPLES as f64)
}

/// A file exported with its batch fixed at 4: `oto eval` at batch sizes 3 and 8 (10
/// samples) gives onnxruntime's accuracy, and `oto prune --batch-size 8` runs to the end.
#[test]
fn batch_fixed_at_4_evaluates_and_trains_at_other_batch_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let (data, accuracy) = batch4_data(dir.path());
    let model = legacy_path("batch4_cnn.onnx");
    for batch in ["3", "8"] {
        let v = eval_json(&model, &data, batch);
        assert_eq!(v["samples"].as_u64(), Some(SAMPLES as u64), "{v}");
        assert!((v["accuracy"].as_f64().unwrap() - accuracy).abs() < 1e-9, "batch {batch}: {v}, want accuracy {accuracy}");
    }
    let out_dir = dir.path().join("out");
    let args = [
        "prune",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--target-sparsity",
        "0.5",
        "--steps",
        "4",
        "--batch-size",
        "8",
        "--threads",
        "2",
        "--device",
        "cpu",
        "--out",
        s(&out_dir),
    ];
    let out = oto(&args);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let v = eval_json(&out_dir.join("model.onnx"), &data, "5");
    assert_eq!(v["samples"].as_u64(), Some(SAMPLES as u64), "{v}");
}

/// A batch fixed at 2 that cannot be made symbolic (a constant of 2 rows is added to the
/// outputs): `oto eval` at another batch size and `oto prune` stop with exit code 2 and
/// say why, before running anything.
#[test]
fn batch_that_cannot_be_made_symbolic_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let x = Tensor { shape: vec![4, 6], data: TensorData::F32((0..24).map(|i| i as f32 / 24.0).collect()) };
    let data = dir.path().join("rows.npz");
    let y = Tensor { shape: vec![4, 5], data: TensorData::F32(vec![0.5; 20]) };
    oto_onnx::npz::write_npz(&data, &[("x", &x), ("labels", &y)], oto_onnx::npz::NpzCompression::Stored).unwrap();
    let model = legacy_path("batch2_rows.onnx");
    let eval = oto(&["eval", s(&model), "--data", s(&data), "--batch-size", "8", "--loss", "mse", "--device", "cpu"]);
    let prune = oto(&[
        "prune",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--target-sparsity",
        "0.5",
        "--steps",
        "2",
        "--device",
        "cpu",
        "--out",
        s(&dir.path().join("out")),
    ]);
    for (what, out) in [("eval", eval), ("prune", prune)] {
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(err.contains("fixes its batch at 2") && err.contains("would not carry the batch"), "{what}: {err}");
    }
    // At its own batch it evaluates.
    let ok = oto(&["eval", s(&model), "--data", s(&data), "--batch-size", "2", "--loss", "mse", "--device", "cpu"]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
}
