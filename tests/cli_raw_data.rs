//! Raw data through the binary, and the installed binary's self-description: `oto prune`
//! (in an empty environment, as an installed binary runs) and `oto eval` on raw text
//! (tokenized by the model's tokenizer.json), `oto eval` and `oto quantize` (calibration)
//! on an image folder (decoded and resized as PIL does), checked against references written by
//! Python (graphs/optimum_zoo.py's `tokens_ref.json`, graphs/image_folder.py's
//! `reference.npz`); bad raw inputs are exit code 2 naming the file (and line); `oto
//! --version` and `oto completions` work with an empty environment.

mod common;
use common::*;
use oto_onnx::npz::read_npz;
use oto_onnx::TensorData;
use oto_testkit::{image_folder_dir, optimum_zoo_dir, zoo_path, SplitMix64};

use std::path::Path;
use std::process::Command;

/// `oto` with `args` in an empty environment (as `env -i`): what an installed binary
/// meets in a fresh shell.
fn oto_bare(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_oto")).env_clear().args(args).output().unwrap()
}

#[test]
fn version_and_completions_without_environment() {
    let _job = one_job_at_a_time();
    let out = oto_bare(&["--version"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some(concat!("oto ", env!("CARGO_PKG_VERSION"))), "{stdout}");
    assert!(lines.iter().any(|l| l.starts_with("libtorch 2.")), "{stdout}");
    // The version read from the library loaded through the path recorded at build time.
    let ort = lines.iter().find(|l| l.starts_with("onnxruntime ")).unwrap_or_else(|| panic!("{stdout}"));
    let version = ort.split_whitespace().nth(1).unwrap();
    assert!(version.split('.').count() == 3 && version.split('.').all(|p| p.parse::<u32>().is_ok()), "{stdout}");
    assert!(lines.iter().any(|l| l.starts_with("CUDA available: ")), "{stdout}");
    for (shell, marker) in [("bash", "_oto()"), ("zsh", "#compdef oto"), ("fish", "complete -c oto")] {
        let out = oto_bare(&["completions", shell]);
        let script = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out.stderr));
        assert!(script.contains(marker) && script.contains("prune") && script.contains("--images"), "{shell}: {script}");
    }
    let out = oto_bare(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Token ids, attention mask and token types of `oto`'s text reader equal transformers'
/// tokenization of the same lines (padding and truncation to 16 tokens).
#[test]
fn tokenization_equals_transformers() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let bert = optimum_zoo_dir().join("bert");
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(bert.join("tokens_ref.json"))
            .unwrap_or_else(|e| panic!("{}/tokens_ref.json: {e}; run `make graphs`", bert.display())),
    )
    .unwrap();
    let lines: Vec<&str> = reference["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(&corpus, lines.join("\n")).unwrap();
    let model = oto_onnx::normalize::load(bert.join("model.onnx")).unwrap().0;
    let exec = oto_torch::exec::Executor::new(&model, oto_torch::tch::Device::Cpu).unwrap();
    let inputs: Vec<_> = exec.inputs().cloned().collect();
    let options = oto_torch::data::text::TextOptions { max_length: Some(16), ..Default::default() };
    let arrays = oto_torch::data::text::read_text(&corpus, &options, &model, &inputs).unwrap();
    assert_eq!(arrays.len(), inputs.len(), "no labels in plain lines");
    for (name, tensor) in &arrays {
        assert_eq!(tensor.shape, vec![lines.len(), 16], "{name}");
        let expected: Vec<i64> = reference[name.as_str()]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()))
            .collect();
        let TensorData::I64(got) = &tensor.data else { panic!("{name}: not int64") };
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(got[i * 16..(i + 1) * 16], expected[i * 16..(i + 1) * 16], "{name} of line {}: {line:?}", i + 1);
        }
    }
}

/// `count` lines of 3 to 12 random lowercase words.
fn corpus_lines(count: usize, seed: u64) -> Vec<String> {
    let mut rng = SplitMix64::new(seed);
    (0..count)
        .map(|_| {
            let words = 3 + rng.below(10);
            (0..words)
                .map(|_| (0..1 + rng.below(7)).map(|_| char::from(b'a' + rng.below(26) as u8)).collect::<String>())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// `oto prune --text corpus.txt` on the Optimum BERT with its tokenizer.json found beside
/// it: no labels, so distillation; a compact model with fewer parameters, verified.
#[test]
fn prune_bert_on_raw_text() {
    prune_on_raw_text("bert");
}

/// The same on Optimum's LLaMA exported with its key/value caches: text fills the token
/// inputs, the caches' pasts are fed empty.
#[test]
fn prune_decoder_with_past_on_raw_text() {
    prune_on_raw_text("llama_past");
}

fn prune_on_raw_text(name: &str) {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let model = optimum_zoo_dir().join(name).join("model.onnx");
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(&corpus, corpus_lines(48, 3).join("\n") + "\n").unwrap();
    let out_dir = dir.path().join("out");
    let args = [
        "prune",
        "--model",
        s(&model),
        "--text",
        s(&corpus),
        "--max-length",
        "24",
        "--target-sparsity",
        "0.3",
        "--steps",
        "6",
        "--batch-size",
        "8",
        "--optimizer",
        "adamw",
        "--lr",
        "1e-3",
        "--threads",
        "2",
        "--device",
        "cpu",
        "--out",
        s(&out_dir),
        "-q",
    ];
    // In an empty environment, as the installed binary runs in a fresh shell.
    let out = oto_bare(&args);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["job"]["loss"]["kind"], "distill");
    assert_eq!(report["verification"]["passed"], true, "{}", report["verification"]);
    let (before, after) = (report["params"]["before"].as_u64().unwrap(), report["params"]["after"].as_u64().unwrap());
    assert!(after < before, "parameters {before} -> {after}");
    assert!(oto_onnx::Model::load(out_dir.join("model.onnx")).is_ok());
}

/// JSON Lines with labels: `oto eval` reports accuracy; `--label-field` names the field.
#[test]
fn eval_bert_on_labeled_jsonl() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let model = optimum_zoo_dir().join("bert/model.onnx");
    let data = dir.path().join("test.jsonl");
    let lines: Vec<String> = corpus_lines(20, 5)
        .into_iter()
        .enumerate()
        .map(|(i, l)| serde_json::json!({ "sentence": l, "class": i % 4 }).to_string())
        .collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    let out = oto(&["eval", s(&model), "--text", s(&data), "--text-field", "sentence", "--label-field", "class", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(report["samples"], 20);
    assert!(report["accuracy"].is_f64(), "{report}");
    // The same lines as text with a tab-separated label column: the same numbers.
    let tsv = dir.path().join("test.tsv");
    let rows: Vec<String> = corpus_lines(20, 5).into_iter().enumerate().map(|(i, l)| format!("{l}\t{}", i % 4)).collect();
    std::fs::write(&tsv, rows.join("\n")).unwrap();
    let out = oto(&["eval", s(&model), "--text", s(&tsv), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let again: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!((&again["loss"], &again["accuracy"]), (&report["loss"], &report["accuracy"]));
}

/// Exit code 2 and a message naming the file (and the line).
fn assert_input_error(out: &std::process::Output, needles: &[&str]) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "expected {n:?} in: {stderr}");
    }
}

#[test]
fn bad_raw_inputs_are_input_errors() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let bert = optimum_zoo_dir().join("bert");
    let model = bert.join("model.onnx");
    // A JSON Lines line without the text field.
    let data = dir.path().join("bad.jsonl");
    std::fs::write(&data, "{\"text\": \"fine\"}\n\n{\"text\": \"also fine\"}\n{\"body\": \"no text\"}\n").unwrap();
    let out = oto(&["eval", s(&model), "--text", s(&data)]);
    assert_input_error(&out, &[s(&data), "line 4", "no field 'text'", "body"]);
    // A tokenizer with more tokens than the model's embedding has rows.
    let mut tokenizer: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(bert.join("tokenizer.json")).unwrap()).unwrap();
    let vocab = tokenizer["model"]["vocab"].as_object_mut().unwrap();
    for i in 0..200 {
        vocab.insert(format!("extra{i}"), serde_json::json!(1000 + i));
    }
    let big = dir.path().join("tokenizer.json");
    std::fs::write(&big, tokenizer.to_string()).unwrap();
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(&corpus, "hello world\n").unwrap();
    let out = oto(&["eval", s(&model), "--text", s(&corpus), "--tokenizer", s(&big)]);
    assert_input_error(&out, &[s(&big), "1200 tokens", "1000 rows"]);
    // A bad label column.
    std::fs::write(&corpus, "hello world\t1\nbye\tnot-a-class\n").unwrap();
    let out = oto(&["eval", s(&model), "--text", s(&corpus)]);
    assert_input_error(&out, &[s(&corpus), "line 2", "not-a-class"]);
    // An unreadable image.
    let images = dir.path().join("images");
    for class in ["a", "b"] {
        std::fs::create_dir_all(images.join(class)).unwrap();
        std::fs::copy(image_folder_dir().join("images/cat/1_rgb.png"), images.join(class).join("ok.png")).unwrap();
    }
    let broken = images.join("b/broken.jpg");
    std::fs::write(&broken, b"\xff\xd8\xff\xe0 this is not a jpeg").unwrap();
    let out = oto(&["eval", s(&zoo_path("resnet18.onnx")), "--images", s(&images)]);
    assert_input_error(&out, &[s(&broken), "not a readable PNG or JPEG image"]);
    // An image folder for a model whose input is not an image.
    let out = oto(&["eval", s(&model), "--images", s(&images)]);
    assert_input_error(&out, &["one input"]);
}

/// The reference images' files in ImageFolder order (the reference's row order) and
/// the reference tensors `x` and `labels`.
fn pil_reference() -> (Vec<std::path::PathBuf>, oto_onnx::Tensor, Vec<i64>) {
    let folder = image_folder_dir();
    let path = folder.join("reference.npz");
    assert!(path.exists(), "{} missing: run `make graphs` (or python graphs/image_folder.py --out graphs/image_folder)", path.display());
    let arrays = read_npz(&path).unwrap();
    let x = arrays.iter().find(|(k, _)| k == "x").unwrap().1.clone();
    let TensorData::I64(labels) = arrays.iter().find(|(k, _)| k == "labels").unwrap().1.data.clone() else { panic!("labels not int64") };
    let mut files = Vec::new();
    let mut classes: Vec<_> = std::fs::read_dir(folder.join("images")).unwrap().map(|e| e.unwrap().path()).collect();
    classes.sort();
    for class in classes {
        let mut names: Vec<_> = std::fs::read_dir(class).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        files.extend(names);
    }
    assert_eq!(files.len(), labels.len());
    (files, x, labels)
}

fn is_png(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "png")
}

/// `oto eval --images` equals `oto eval` on the same images prepared with PIL (convert to
/// RGB, bilinear resize to the model's 64x64, ImageNet normalization) as a .npz, within
/// 1e-5: on the folder's PNG files (RGB, grayscale, RGBA and palette modes). JPEG files
/// are decoded by another decoder than PIL's libjpeg (see `image_pixels_match_pil`), so
/// they are compared pixel by pixel there instead.
#[test]
fn image_folder_equals_pil_reference() {
    let _job = one_job_at_a_time();
    let (files, x, labels) = pil_reference();
    let dir = tempfile::tempdir().unwrap();
    let (mut rows, mut kept) = (Vec::new(), Vec::new());
    let per = 3 * 64 * 64;
    let TensorData::F32(all) = &x.data else { panic!("x is not float32") };
    for (i, file) in files.iter().enumerate().filter(|(_, f)| is_png(f)) {
        let class = file.parent().unwrap().file_name().unwrap();
        std::fs::create_dir_all(dir.path().join("images").join(class)).unwrap();
        std::fs::copy(file, dir.path().join("images").join(class).join(file.file_name().unwrap())).unwrap();
        rows.extend_from_slice(&all[i * per..(i + 1) * per]);
        kept.push(labels[i]);
    }
    let n = kept.len();
    let reference = dir.path().join("reference.npz");
    let x = oto_onnx::Tensor { shape: vec![n, 3, 64, 64], data: TensorData::F32(rows) };
    let y = oto_onnx::Tensor { shape: vec![n], data: TensorData::I64(kept) };
    oto_onnx::npz::write_npz(&reference, &[("x", &x), ("labels", &y)], oto_onnx::npz::NpzCompression::Stored).unwrap();
    let model = zoo_path("resnet18.onnx");
    let eval = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["eval", s(&model), "--json", "--device", "cpu", "--batch-size", "8"];
        all.extend_from_slice(args);
        let out = oto(&all);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_str(text(&out.stdout).trim()).unwrap()
    };
    let images = dir.path().join("images");
    let from_images = eval(&["--images", s(&images)]);
    let from_npz = eval(&["--data", s(&reference)]);
    assert_eq!(from_images["samples"], n as u64);
    let (a, b) = (from_images["loss"].as_f64().unwrap(), from_npz["loss"].as_f64().unwrap());
    assert!((a - b).abs() <= 1e-5, "loss from the folder {a}, from the PIL reference {b}");
    assert_eq!(from_images["accuracy"], from_npz["accuracy"]);
    // Calibration for `oto quantize` from the folder equals calibration from the PIL
    // reference: the same activation ranges, so the same scales (within float rounding).
    let quantize = |data: &[&str], out: &Path| {
        let mut all = vec!["quantize", s(&model), "--out", s(out), "--batch-size", "8"];
        all.extend_from_slice(data);
        let result = oto(&all);
        assert_eq!(result.status.code(), Some(0), "{}", text(&result.stderr));
        oto_onnx::Model::load(out).unwrap()
    };
    let q_images = quantize(&["--images", s(&images)], &dir.path().join("q_images.onnx"));
    let q_npz = quantize(&["--data", s(&reference)], &dir.path().join("q_npz.onnx"));
    let floats = |m: &oto_onnx::Model| -> Vec<(String, Vec<f32>)> {
        let mut out: Vec<(String, Vec<f32>)> = m
            .proto
            .graph
            .as_ref()
            .unwrap()
            .initializer
            .iter()
            .filter_map(|t| match oto_onnx::Tensor::from_proto(t, None).map(|x| x.data) {
                Ok(TensorData::F32(v)) => Some((t.name.clone().unwrap_or_default(), v)),
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    };
    let (a, b) = (floats(&q_images), floats(&q_npz));
    assert_eq!(a.iter().map(|x| &x.0).collect::<Vec<_>>(), b.iter().map(|x| &x.0).collect::<Vec<_>>());
    let activation_scales = a.iter().filter(|(name, _)| name.ends_with("_scale") && !name.contains("weight")).count();
    assert!(activation_scales > 0, "no activation scale in the QDQ model");
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        for (p, q) in x.iter().zip(y) {
            assert!((p - q).abs() <= 1e-5 * p.abs().max(q.abs()).max(1e-12), "{name}: {p} from the folder, {q} from the reference");
        }
    }
    // A held-out split of the whole folder (PNG and JPEG): the seed's quarter of it.
    let whole = image_folder_dir().join("images");
    let val = eval(&["--images", s(&whole), "--val-split", "0.25", "--seed", "3"]);
    assert_eq!(val["samples"], ((files.len() as f64) * 0.25).round() as u64);
}

/// Every pixel oto decodes, resizes and normalizes equals PIL's: PNG exactly (the resize
/// reproduces PIL's fixed-point arithmetic). JPEG goes through the `image` crate's
/// decoder (zune-jpeg), whose IDCT and chroma upsampling round differently from PIL's
/// libjpeg-turbo: its pixels are within 4 levels of 255 of PIL's (measured: 1 level for
/// grayscale, 2 for 4:4:4, 4 for 4:2:0 chroma), which this checks, so that a real error
/// (channel order, colour conversion, resize) still fails.
#[test]
fn image_pixels_match_pil() {
    let _job = one_job_at_a_time();
    let (files, x, _) = pil_reference();
    let TensorData::F32(expected) = &x.data else { panic!("x is not float32") };
    let input = oto_torch::exec::GraphInput {
        name: "x".into(),
        dtype: oto_onnx::DType::F32,
        dims: Some(vec![None, Some(3), Some(64), Some(64)]),
        cache_axis: None,
    };
    let images = oto_torch::data::images::ImageFolder::open(
        &image_folder_dir().join("images"),
        &Default::default(),
        oto_torch::data::images::Part::All,
        0,
        &input,
    )
    .unwrap();
    assert_eq!(images.files, files);
    let per = 3 * 64 * 64;
    let std = oto_torch::data::images::IMAGENET_STD;
    let mut failures = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let batch = images.decode(&[i as i64]).unwrap();
        let got: Vec<f32> = Vec::<f32>::try_from(batch.flatten(0, -1)).unwrap();
        let want = &expected[i * per..(i + 1) * per];
        // The largest difference in levels of 255, per value's channel.
        let worst = got.iter().zip(want).enumerate().map(|(j, (a, b))| (a - b).abs() * std[j / (64 * 64)] * 255.0).fold(0f32, f32::max);
        let bound = if is_png(file) { 1e-3 } else { 4.0 + 1e-3 };
        if worst > bound {
            failures.push(format!("{}: {worst} levels of 255 from PIL (bound {bound})", file.display()));
        }
    }
    assert!(failures.is_empty(), "pixels differ from PIL's:\n{}", failures.join("\n"));
    // A channels-last input (a Keras model by tf2onnx, `[N, H, W, 3]`) gets the same
    // pixels in its layout.
    let nhwc = oto_torch::exec::GraphInput {
        name: "x".into(),
        dtype: oto_onnx::DType::F32,
        dims: Some(vec![None, Some(64), Some(64), Some(3)]),
        cache_axis: None,
    };
    let last = oto_torch::data::images::ImageFolder::open(
        &image_folder_dir().join("images"),
        &Default::default(),
        oto_torch::data::images::Part::All,
        0,
        &nhwc,
    )
    .unwrap();
    let all: Vec<i64> = (0..files.len() as i64).collect();
    let (first, channels_last) = (images.decode(&all).unwrap(), last.decode(&all).unwrap());
    assert_eq!(channels_last.size(), [files.len() as i64, 64, 64, 3]);
    assert!(channels_last.equal(&first.permute([0, 2, 3, 1])), "channels-last pixels differ from channels-first ones");
}

/// The Optimum ViT's input is `[batch_size, num_channels, height, width]`, all symbolic:
/// `--images` takes the size from the `preprocessor_config.json` beside the model (32x32)
/// and evaluates every image; a copy of the model without that file is an input error
/// that names it; a size that contradicts the model's is an input error too.
#[test]
fn image_folder_size_from_the_preprocessor_config() {
    let _job = one_job_at_a_time();
    let vit = oto_testkit::optimum_zoo_dir().join("vit");
    let images = image_folder_dir().join("images");
    let out = oto(&["eval", s(&vit.join("model.onnx")), "--images", s(&images), "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    let files = walk_images(&images);
    assert_eq!(v["samples"].as_u64(), Some(files as u64), "{v}");

    let input = oto_torch::exec::GraphInput {
        name: "pixel_values".into(),
        dtype: oto_onnx::DType::F32,
        dims: Some(vec![None; 4]),
        cache_axis: None,
    };
    let sized = oto_torch::data::images::size_from_preprocessor(&input, &vit.join("model.onnx")).unwrap().unwrap();
    assert_eq!(sized.dims, Some(vec![None, Some(3), Some(32), Some(32)]));
    let fixed = oto_torch::exec::GraphInput { dims: Some(vec![None, Some(3), Some(64), None]), ..input.clone() };
    let err = oto_torch::data::images::size_from_preprocessor(&fixed, &vit.join("model.onnx")).unwrap_err().to_string();
    assert!(err.contains("height 32, but model input 'pixel_values' has height 64"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(vit.join("model.onnx"), dir.path().join("model.onnx")).unwrap();
    let out = oto(&["eval", s(&dir.path().join("model.onnx")), "--images", s(&images)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("preprocessor_config.json"), "{}", text(&out.stderr));
}

/// The number of image files under the class folders of `dir`.
fn walk_images(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .flat_map(|c| std::fs::read_dir(c).unwrap().map(|e| e.unwrap().path()))
        .filter(|p| {
            p.extension().and_then(|e| e.to_str()).is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str()))
        })
        .count()
}
