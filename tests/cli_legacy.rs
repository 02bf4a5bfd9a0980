//! Model zoo-era files (graphs/legacy_zoo.py: IR 3, opsets 7-9, batch fixed to 1)
//! through the commands users run: `oto eval` and `oto prune` of a classifier with a
//! [N, C, 1, 1] output, with labels [N], at batch sizes other than 1; `oto check`.

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
    for name in ["alexnet_lite.onnx", "resnet_mul_add.onnx", "squeeze_head.onnx"] {
        let out = oto(&["check", s(&legacy_path(name)), "--trials", "2", "--sparsity", "0.5"]);
        assert!(out.status.success(), "{name}: {}\n{}", text(&out.stdout), text(&out.stderr));
        assert!(text(&out.stdout).contains("passed: 2 trials"), "{name}: {}", text(&out.stdout));
    }
}
