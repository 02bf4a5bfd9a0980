//! `oto prune` as a user runs it: the whole job on the demo CNN and the digits data, an
//! interrupted job continued with `--resume`, and bad input answered with exit code 2.

mod common;
use common::*;
use oto_testkit::{root, zoo_path as zoo};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn digits(split: &str) -> PathBuf {
    root().join(format!("examples/data/digits_{split}.npz"))
}

/// The demo job with a small budget: 150 steps, pruning over steps 15..60.
fn demo_args(out: &Path) -> Vec<String> {
    prune_args(&digits("train"), 150, out)
}

/// `oto prune` of the demo CNN on `data` for `steps` steps at target 0.5, evaluated on the
/// digits test split.
fn prune_args(data: &Path, steps: u64, out: &Path) -> Vec<String> {
    let (model, test, steps) = (zoo("demo_cnn.onnx"), digits("test"), steps.to_string());
    [
        "prune",
        "--model",
        s(&model),
        "--data",
        s(data),
        "--val",
        s(&test),
        "--target-sparsity",
        "0.5",
        "--steps",
        &steps,
        "--lr",
        "0.05",
        "--threads",
        "2",
        "--device",
        "cpu",
        "--out",
        s(out),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// The compact model's accuracy in onnxruntime-independent terms: `oto eval` on the test split.
fn eval_accuracy(model: &Path) -> f64 {
    let out = oto(&["eval", s(model), "--data", s(&digits("test")), "--json", "--device", "cpu"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    v["accuracy"].as_f64().unwrap()
}

/// `curve.png` decodes as a 900x720 RGB image that is not blank: the train loss (blue) and the
/// group sparsity (red) lines, colors of the report's palette, cover many pixels.
fn check_curve(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
    let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut rgb).unwrap();
    assert_eq!((info.width, info.height, info.color_type), (900, 720, png::ColorType::Rgb));
    let count = |color: [u8; 3]| rgb[..info.buffer_size()].chunks(3).filter(|p| *p == color).count();
    let (loss, sparsity) = (count([31, 119, 180]), count([214, 39, 40]));
    assert!(loss > 500 && sparsity > 500, "curve.png: {loss} train-loss pixels, {sparsity} sparsity pixels");
    assert!(count([255, 255, 255]) < 900 * 720 * 95 / 100, "curve.png is almost blank");
}

#[test]
fn prune_end_to_end_then_interrupt_and_resume_give_the_same_model() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let args = demo_args(&whole);
    let out = oto(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("| parameters |"), "{}", text(&out.stdout));

    let report = json(&whole.join("report.json"));
    let (before, after) = (report["params"]["before"].as_u64().unwrap(), report["params"]["after"].as_u64().unwrap());
    assert!(after as f64 <= 0.6 * before as f64, "parameters {before} -> {after}: less than 40% removed");
    assert_eq!(report["group_sparsity"].as_f64(), Some(0.5));
    assert_eq!(report["verification"]["passed"], true);
    let sparse_acc = report["quality"]["sparse"]["accuracy"].as_f64().unwrap();
    assert_eq!(report["quality"]["compact"]["accuracy"].as_f64(), Some(sparse_acc));
    // An independent evaluation of the written file gives the same accuracy.
    assert_eq!(eval_accuracy(&whole.join("model.onnx")), sparse_acc);
    assert!(sparse_acc > 0.85, "accuracy {sparse_acc} after 150 steps");
    for name in ["groups.json", "report.md", "curve.png", "checkpoint/state.safetensors"] {
        assert!(whole.join(name).is_file(), "{name} missing");
    }
    check_curve(&whole.join("curve.png"));
    let groups = json(&whole.join("groups.json"));
    let pruned: usize = groups["pruned"].as_object().unwrap().values().map(|v| v.as_array().unwrap().len()).sum();
    assert_eq!(pruned as u64, report["pruned_elements"].as_u64().unwrap());

    // The same job, interrupted by SIGINT after its first checkpoint, then resumed.
    let part = dir.path().join("part");
    let args = demo_args(&part);
    let mut child = Command::new(env!("CARGO_BIN_EXE_oto")).args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let state = part.join("checkpoint/state.safetensors");
    let started = Instant::now();
    while !state.exists() {
        assert!(started.elapsed() < Duration::from_secs(300), "no checkpoint appeared");
        assert!(child.try_wait().unwrap().is_none(), "the job ended before it could be interrupted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let interrupted = child.wait_with_output().unwrap();
    let stderr = text(&interrupted.stderr);
    assert_eq!(interrupted.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted after step") && stderr.contains("--resume"), "{stderr}");
    for name in ["model.onnx", "report.json", "report.md", "groups.json", "curve.png"] {
        assert!(!part.join(name).exists(), "an interrupted job left {name}");
    }
    assert!(
        std::fs::read_dir(&part).unwrap().chain(std::fs::read_dir(part.join("checkpoint")).unwrap()).all(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            !name.starts_with('.') && !name.contains("tmp")
        }),
        "temporary files left behind"
    );

    let resumed = oto(&["prune", "--resume", s(&part), "--threads", "2"]);
    assert!(resumed.status.success(), "{}\n{}", text(&resumed.stdout), text(&resumed.stderr));
    assert!(text(&resumed.stderr).contains("resumed from"), "{}", text(&resumed.stderr));
    assert_eq!(
        std::fs::read(part.join("model.onnx")).unwrap(),
        std::fs::read(whole.join("model.onnx")).unwrap(),
        "the resumed job's compact model differs from the uninterrupted one"
    );
    let (a, b) = (json(&part.join("report.json")), report);
    assert_eq!(a["history"], b["history"], "the training curves differ");
}

/// Runs `oto prune` expecting exit code 2 and a message containing every `needle`.
fn refused(args: &[&str], needles: &[&str]) {
    let out = oto(args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{args:?}: '{n}' not in: {stderr}");
    }
}

/// Writes at `path` a digits classifier as onnxruntime's `quantize_dynamic` writes one:
/// the input quantized at run time (`DynamicQuantizeLinear`), an int8 `ConvInteger`
/// weight, the int32 result scaled back to floats.
fn dynamically_quantized(path: &Path) {
    dynamically_quantized_with(path, |_| 1);
}

/// [`dynamically_quantized`] with the int8 weight `weight(i)` at position `i`.
fn dynamically_quantized_with(path: &Path, weight: impl Fn(usize) -> i8) {
    use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
    use oto_onnx::{Tensor, TensorData};
    let mut b = GraphBuilder::new("quantized");
    b.opset(13);
    let x = b.input_f32("x", &batch_dims(&[1, 8, 8]));
    b.node("DynamicQuantizeLinear", &[&x], &["xq", "xs", "xzp"]);
    let w = b.initializer("conv.weight_quantized", Tensor::new(vec![10, 1, 8, 8], TensorData::I8((0..640).map(weight).collect())).unwrap());
    b.node("ConvInteger", &["xq", &w, "xzp"], &["acc"]);
    let y = b.node_with("Cast", &["acc"], &[], &[("to", Attr::Int(1))]);
    let y = b.node("Mul", &[&y, "xs"], &[]);
    let flat = b.ints("flat", &[-1, 10]);
    let y = b.node("Reshape", &[&y, &flat], &["logits"]);
    b.output_f32(&y, &batch_dims(&[10]));
    let mut proto = b.proto();
    if let Some(n) = proto.graph.as_mut().and_then(|g| g.node.iter_mut().find(|n| n.op_type.as_deref() == Some("ConvInteger"))) {
        n.name = Some("conv".into());
    }
    let model = oto_onnx::Model::from_proto(proto, &path.to_string_lossy(), None).unwrap();
    model.save(path, &Default::default()).unwrap();
}

/// `oto eval` runs a dynamically quantized model (DynamicQuantizeLinear, ConvInteger) as
/// onnxruntime does: the loss of its logits on the digits test set is onnxruntime's.
#[test]
fn a_dynamically_quantized_model_is_evaluated_as_onnxruntime_runs_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("quantized.onnx");
    dynamically_quantized_with(&model, |i| ((i * 37 + 11) % 255) as i8);
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/digits_test.npz");
    let out = oto(&["eval", s(&model), "--data", s(&data), "--device", "cpu", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let loss = report["loss"].as_f64().unwrap();
    let arrays = oto_onnx::npz::read_npz(&data).unwrap();
    let x: Vec<(String, oto_onnx::Tensor)> = arrays.iter().filter(|(n, _)| n == "x").cloned().collect();
    let labels = arrays.iter().find(|(n, _)| n == "labels").unwrap().1.to_f64_vec();
    let proto = oto_onnx::Model::load(&model).unwrap().proto;
    let logits = oto_testkit::run_ort(&proto, &x).remove(0).1;
    let classes = 10;
    let mut total = 0.0;
    for (row, &label) in logits.chunks(classes).zip(&labels) {
        let top = row.iter().copied().fold(f64::MIN, f64::max);
        let sum: f64 = row.iter().map(|v| (v - top).exp()).sum();
        total += sum.ln() + top - row[label as usize];
    }
    let expected = total / labels.len() as f64;
    assert!((loss - expected).abs() <= 1e-5 * expected.abs().max(1.0), "oto eval {loss} vs onnxruntime {expected}");
}

#[test]
fn bad_input_is_refused_with_exit_code_2_and_a_clear_message() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (model, train) = (zoo("demo_cnn.onnx"), digits("train"));
    let (model, train) = (s(&model), s(&train));
    let out = dir.path().join("out");
    let out = s(&out);

    // Data that does not match the model's inputs: bert_tiny's token arrays.
    let tokens = zoo("bert_tiny.inputs.npz");
    refused(&["prune", "--model", model, "--data", s(&tokens), "--out", out], &["bert_tiny.inputs.npz", "x"]);
    // A supervised loss without labels.
    let unlabeled = zoo("demo_cnn.inputs.npz");
    refused(&["prune", "--model", model, "--data", s(&unlabeled), "--loss", "cross-entropy", "--out", out], &["labels", "--loss distill"]);
    // Target sparsity outside [0, 1).
    refused(&["prune", "--model", model, "--data", train, "--target-sparsity", "1", "--out", out], &["--target-sparsity", "[0, 1)"]);
    refused(&["prune", "--model", model, "--data", train, "--target-sparsity", "-0.1", "--out", out], &["--target-sparsity"]);
    // An unknown learning rate after pruning.
    refused(
        &["prune", "--model", model, "--data", train, "--lr-after-pruning", "rewind", "--out", out],
        &["lr_after_pruning 'rewind'", "restart or continue"],
    );
    // The restart's own rate without a restart, and a warm-up share outside [0, 1).
    refused(
        &["prune", "--model", model, "--data", train, "--restart-lr", "0.1", "--out", out],
        &["restart_lr = 0.1", "--lr-after-pruning restart"],
    );
    refused(
        &["prune", "--model", model, "--data", train, "--lr-after-pruning", "restart", "--restart-warmup", "1.5", "--out", out],
        &["--restart-warmup 1.5", "[0, 1)"],
    );
    // An unreadable model.
    let missing = dir.path().join("missing.onnx");
    refused(&["prune", "--model", s(&missing), "--data", train, "--out", out], &["missing.onnx"]);
    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"not a model").unwrap();
    refused(&["prune", "--model", s(&garbage), "--data", train, "--out", out], &["garbage.onnx"]);
    // An output folder that is a file.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    refused(&["prune", "--model", model, "--data", train, "--out", s(&file)], &["a-file", "is a file"]);
    // Every group unprunable: the message says why.
    let mut args = vec!["prune", "--model", model, "--data", train, "--out", out];
    for name in ["bn1.bias", "bn2.bias", "bn3.bias"] {
        args.extend(["--unprunable", name]);
    }
    refused(&args, &["nothing to prune", "unprunable"]);
    // A model quantized by onnxruntime's quantize_dynamic, which the trainer cannot run:
    // the message says so and what to do, not which operator it stopped at.
    let quantized = dir.path().join("quantized.onnx");
    dynamically_quantized(&quantized);
    refused(
        &["prune", "--model", s(&quantized), "--data", train, "--out", out],
        &["quantized.onnx", "nothing to prune", "the model is quantized", "node 'conv' (ConvInteger)", "prune the float model"],
    );
    // A resume folder without a job.
    refused(&["prune", "--resume", s(dir.path())], &["job.json"]);
    // A job file with a misspelt key.
    let toml = dir.path().join("job.toml");
    std::fs::write(&toml, "model = \"m.onnx\"\ntarget_sparsty = 0.5\n").unwrap();
    refused(&["prune", "--config", s(&toml)], &["job.toml", "target_sparsty"]);
    assert!(!Path::new(out).exists(), "a refused job created its output folder");
}

#[test]
fn a_job_file_gives_the_settings_and_options_override_it() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    let body = format!(
        "model = \"{}\"\ndata = \"{}\"\nout = \"out\"\ntarget_sparsity = 0.25\nsteps = 40\nlr = 0.05\nthreads = 2\ndevice = \"cpu\"\n\n[hesso]\nstart_pruning_step = 5\npruning_steps = 10\npruning_periods = 2\n",
        s(&zoo("demo_cnn.onnx")),
        s(&digits("train"))
    );
    std::fs::write(&job, body).unwrap();
    let out = oto(&["prune", "--config", s(&job), "--target-sparsity", "0.5", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).is_empty(), "-q printed: {}", text(&out.stdout));
    // `out` in the job file is relative to the file's folder.
    let report = json(&dir.path().join("out/report.json"));
    assert_eq!(report["target_sparsity"].as_f64(), Some(0.5));
    assert_eq!(report["job"]["steps"].as_u64(), Some(40));
    assert_eq!(report["job"]["hesso"]["pruning_periods"].as_u64(), Some(2));
    assert_eq!(report["group_sparsity"].as_f64(), Some(0.5));
    // Without --val the metric is measured on the training data, and the report says so.
    assert!(report["quality"]["data"].as_str().unwrap().ends_with("digits_train.npz"));
}

#[test]
fn the_example_job_files_run_and_distillation_needs_no_labels() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    // BERT-tiny on unlabeled tokens: the loss is distillation from the original model.
    let bert = dir.path().join("bert");
    let config = root().join("examples/bert_tiny_distill.toml");
    let out = oto(&["prune", "--config", s(&config), "--steps", "12", "--threads", "2", "--device", "cpu", "--out", s(&bert)]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let report = json(&bert.join("report.json"));
    assert_eq!(report["job"]["loss"]["kind"], "distill");
    assert_eq!(report["verification"]["passed"], true);
    assert!(report["quality"]["compact"]["accuracy"].is_null());
    let (pruned, total) = (report["pruned_elements"].as_u64().unwrap(), report["prunable_elements"].as_u64().unwrap());
    assert_eq!(pruned, (total as f64 * 0.3).floor() as u64, "{pruned} of {total}");
    assert!(report["params"]["after"].as_u64() < report["params"]["before"].as_u64());

    // The demo's job file, shortened.
    let demo = dir.path().join("demo");
    let config = root().join("examples/digits.toml");
    let out = oto(&["prune", "--config", s(&config), "--steps", "40", "--threads", "2", "--device", "cpu", "--out", s(&demo), "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(demo.join("model.sparse.onnx").is_file(), "save_sparse = true in the job file");
    assert!(demo.join("model.qdq.onnx").is_file(), "quantize = 0.16 in the job file");
    let report = json(&demo.join("report.json"));
    let q = &report["quantization"]["summary"]["allocation"];
    assert!(q["bytes"].as_u64().unwrap() <= q["budget_bytes"].as_u64().unwrap(), "{q}");
    // The job file restarts the learning rate once pruning has finished, at its own rate
    // after a warm-up, and the report says so.
    assert_eq!(report["job"]["schedule"]["after_pruning"], "restart");
    assert_eq!(
        (report["job"]["schedule"]["restart_lr"].as_f64(), report["job"]["schedule"]["restart_warmup"].as_f64()),
        (Some(0.1), Some(0.1))
    );
    let md = std::fs::read_to_string(demo.join("report.md")).unwrap();
    assert!(md.contains("restarted from lr 0.1 after a warm-up over 10% of the steps left when pruning finished"), "{md}");
    // The trainer ran it: rates above the job's lr 0.05, at most 0.1, only after pruning.
    let steps = report["history"]["steps"].as_array().unwrap();
    let lr_of = |s: &serde_json::Value| s["lr"].as_f64().unwrap();
    let peak = steps.iter().map(lr_of).fold(0.0, f64::max);
    assert!(peak > 0.05 && peak <= 0.1 + 1e-12, "{peak}");
    assert!(
        steps.iter().filter(|s| lr_of(s) > 0.05 + 1e-12).all(|s| s["phase"] != "warmup" && s["group_sparsity"].as_f64() > Some(0.0)),
        "{steps:?}"
    );

    // The same job with CRIC: the report says what its cycles did.
    let cric = dir.path().join("cric");
    let out =
        oto(&["prune", "--config", s(&config), "--cric", "--steps", "60", "--threads", "2", "--device", "cpu", "--out", s(&cric), "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = json(&cric.join("report.json"));
    assert!(report["cric"]["cycles"].as_u64().unwrap() >= 1, "{}", report["cric"]);
    // The cycles' steps are trained again, after the job's 60.
    assert!(report["cric"]["replayed_steps"].as_u64().unwrap() >= 1, "{}", report["cric"]);
    assert_eq!(report["cric"]["probes"].as_array().unwrap().len(), 3, "one probe per prunable group of demo_cnn");
    assert_eq!(report["group_sparsity"].as_f64(), Some(0.5));
    assert_eq!(report["verification"]["passed"], true);
    assert!(std::fs::read_to_string(cric.join("report.md")).unwrap().contains("**CRIC**"));
}

#[test]
fn a_loss_that_becomes_nan_stops_the_job_with_exit_code_1_and_keeps_the_checkpoint() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    // The digits with NaN pixels in the sample that the job's seeded order (seed 0) puts
    // first in batch 11, so that step 11 fails after the checkpoint of step 10.
    let mut arrays = oto_onnx::npz::read_npz(digits("train")).unwrap();
    for (name, t) in arrays.iter_mut() {
        if name == "x" {
            let n = t.shape[0];
            let poisoned = oto_torch::data::epoch_order(n, 0, 0, true)[10 * 32] as usize;
            let oto_onnx::TensorData::F32(v) = &mut t.data else { panic!("x is not f32") };
            let per_sample = v.len() / n;
            v[poisoned * per_sample..(poisoned + 1) * per_sample].iter_mut().for_each(|x| *x = f32::NAN);
        }
    }
    let data = dir.path().join("nan.npz");
    let refs: Vec<(&str, &oto_onnx::Tensor)> = arrays.iter().map(|(n, t)| (n.as_str(), t)).collect();
    oto_onnx::npz::write_npz(&data, &refs, oto_onnx::npz::NpzCompression::Stored).unwrap();
    let out = dir.path().join("out");
    // Target 0.5 and seed 0 are the defaults: the same job as with them left out.
    let mut args = prune_args(&data, 100, &out);
    args.push("-q".into());
    let run = oto(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the loss became NaN at step 11"), "{stderr}");
    assert!(stderr.contains("checkpoint"), "{stderr}");
    assert!(out.join("checkpoint/state.safetensors").is_file(), "the last good checkpoint is kept");
    assert!(!out.join("model.onnx").exists());
}

/// A job file of the demo job (model and data given) plus `extra` lines.
fn job_file(dir: &Path, extra: &str) -> PathBuf {
    let job = dir.join("job.toml");
    let body = format!("model = \"{}\"\ndata = \"{}\"\nout = \"out\"\n{extra}\n", s(&zoo("demo_cnn.onnx")), s(&digits("train")));
    std::fs::write(&job, body).unwrap();
    job
}

#[test]
fn a_job_file_setting_out_of_range_is_refused_naming_the_file_the_key_and_the_value() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("checkpoint_every = 0", "checkpoint_every = 0"),
        ("steps = 0", "steps = 0"),
        ("batch_size = 0", "batch_size = 0"),
        ("lr = 0.0", "lr = 0"),
        ("lr = -0.5", "lr = -0.5"),
        ("lr = nan", "lr = NaN"),
        ("lr = inf", "lr = inf"),
        ("evaluations = 0", "evaluations = 0"),
        ("threads = 0", "threads = 0"),
        ("clip_grad_norm = -1.0", "clip_grad_norm = -1"),
        ("weight_decay = -0.1", "weight_decay = -0.1"),
        ("epochs = 0.0", "epochs = 0"),
        ("target_sparsity = 1.5", "target_sparsity = 1.5"),
        ("quantize = 0.0", "quantize = 0"),
        ("quantize = 0.25\nquantize_block_size = 1", "quantize_block_size = 1"),
        ("[hesso]\npruning_periods = 0", "hesso.pruning_periods = 0"),
        ("[hesso]\npruning_steps = 0", "hesso.pruning_steps = 0"),
        ("[hesso]\ngroup_divisible = 0", "hesso.group_divisible = 0"),
        (
            "[hesso.importance]\nmagnitude = 0.2\navg_magnitude = 0.2\ncosine = 0.2\ntaylor1 = 0.2\ntaylor2 = 0.2\nobd = -1.0",
            "hesso.importance = -1",
        ),
        ("cric = true\n[hesso.importance]\nmagnitude = 1.0\navg_magnitude = 0.0\ncosine = 0.0\ntaylor1 = 0.0\ntaylor2 = 0.0\nobd = 1.0", "not available with CRIC"),
        ("cric = true\n[cric_settings]\nstart_cric_step = 5\nsampling_steps = 0\nmax_cycles = 2\ntolerance = 0\nhybrid_training_steps = 5\nprobe_weight = 0.2", "cric.sampling_steps"),
    ];
    for (extra, needle) in cases {
        let job = job_file(dir.path(), extra);
        refused(&["prune", "--config", s(&job)], &["job.toml", needle]);
    }
    // Settings that only fail together name the job file too.
    let job = job_file(dir.path(), "steps = 20\n[hesso]\nstart_pruning_step = 15\npruning_steps = 10");
    refused(&["prune", "--config", s(&job)], &["job.toml", "after the job's last step 20"]);
    // On the command line the option is named.
    let job = job_file(dir.path(), "");
    refused(&["prune", "--config", s(&job), "--batch-size", "0"], &["--batch-size 0", "at least 1"]);
    refused(&["prune", "--config", s(&job), "--lr", "-1"], &["--lr -1", "learning rate"]);
    assert!(!dir.path().join("out").exists(), "a refused job created its output folder");
}

/// `digits_train.npz` with its labels replaced by `labels` (any dtype and shape).
fn digits_with_labels(dir: &Path, labels: oto_onnx::Tensor) -> PathBuf {
    let arrays = oto_onnx::npz::read_npz(digits("train")).unwrap();
    let x = &arrays.iter().find(|(n, _)| n == "x").unwrap().1;
    let path = dir.join("bad_labels.npz");
    oto_onnx::npz::write_npz(&path, &[("x", x), ("labels", &labels)], oto_onnx::npz::NpzCompression::Stored).unwrap();
    path
}

#[test]
fn labels_outside_the_classes_are_refused_before_training_naming_the_sample() {
    let _job = one_job_at_a_time();
    use oto_onnx::{Tensor, TensorData};
    let dir = tempfile::tempdir().unwrap();
    let n = 1438;
    let mut labels: Vec<i64> = (0..n as i64).map(|i| i % 10).collect();
    labels[5] = 10;
    labels[700] = 12;
    let out = dir.path().join("out");
    let (model, train) = (zoo("demo_cnn.onnx"), digits("train"));
    let prune = |data: &Path, needles: &[&str]| {
        // No --val: the original model is evaluated on the training data first.
        let args = ["prune", "--model", s(&model), "--data", s(data), "--steps", "20", "--device", "cpu", "--out", s(&out)];
        refused(&args, needles);
        assert!(!out.exists(), "the job started before refusing its labels");
    };
    let data = digits_with_labels(dir.path(), Tensor::new(vec![n], TensorData::I64(labels.clone())).unwrap());
    prune(&data, &["bad_labels.npz", "sample 5 has label 10", "10 classes", "2 samples"]);
    // The same data as held-out data.
    let args = ["prune", "--model", s(&model), "--data", s(&train), "--val", s(&data), "--out", s(&out)];
    refused(&args, &["bad_labels.npz", "sample 5 has label 10"]);
    // oto eval refuses it the same way.
    let eval = oto(&["eval", s(&model), "--data", s(&data), "--device", "cpu"]);
    let stderr = text(&eval.stderr);
    assert_eq!(eval.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad_labels.npz") && stderr.contains("sample 5 has label 10") && stderr.contains("10 classes"), "{stderr}");
    assert!(!stderr.contains("backtrace") && !stderr.contains("Exception"), "{stderr}");
    // A negative label.
    labels[5] = 3;
    labels[700] = -1;
    let data = digits_with_labels(dir.path(), Tensor::new(vec![n], TensorData::I64(labels.clone())).unwrap());
    prune(&data, &["bad_labels.npz", "sample 700 has label -1"]);
    // Labels that are not integers.
    let floats = TensorData::F32(labels.iter().map(|&l| l as f32).collect());
    let data = digits_with_labels(dir.path(), Tensor::new(vec![n], floats).unwrap());
    prune(&data, &["bad_labels.npz", "'labels'", "integer class indices", "float32"]);
    // Fewer labels than samples, and one label row per sample of the wrong shape.
    let data = digits_with_labels(dir.path(), Tensor::new(vec![n - 1], TensorData::I64(vec![0; n - 1])).unwrap());
    prune(&data, &["bad_labels.npz", "'labels' has 1437 samples", "1438"]);
    let data = digits_with_labels(dir.path(), Tensor::new(vec![n, 2], TensorData::I64(vec![0; 2 * n])).unwrap());
    prune(&data, &["bad_labels.npz", "'labels'", "[1438, 2]"]);
}

/// `prune_args` with the target sparsity replaced by `budget` (e.g. `--target-macs 0.25`).
fn budget_args(out: &Path, budget: &[&str]) -> Vec<String> {
    let mut args = demo_args(out);
    let at = args.iter().position(|a| a == "--target-sparsity").unwrap();
    args.drain(at..at + 2);
    args.extend(budget.iter().map(|a| a.to_string()));
    args
}

#[test]
fn budgets_in_macs_and_parameters_are_met_and_reported() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    for (flag, kind, target) in [("--target-macs", "macs", 0.25), ("--target-params", "params", 0.1)] {
        let out = dir.path().join(kind);
        let value = target.to_string();
        let args = budget_args(&out, &[flag, &value]);
        let run = oto(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(run.status.success(), "{}", text(&run.stderr));
        let report = json(&out.join("report.json"));
        let b = &report["budget"];
        assert_eq!(b["kind"].as_str(), Some(kind));
        assert_eq!(b["target"].as_f64(), Some(target));
        let (before, after) = match kind {
            "macs" => (report["macs"]["before"].as_f64().unwrap(), report["macs"]["after"].as_f64().unwrap()),
            _ => (report["params"]["before"].as_f64().unwrap(), report["params"]["after"].as_f64().unwrap()),
        };
        let achieved = b["achieved"].as_f64().unwrap();
        assert_eq!(achieved, after / before);
        // Met, not overshot by much (one element of the demo CNN is at most a few percent),
        // and the optimizer's cost model predicts the compact model exactly on this CNN.
        assert!(achieved <= target && achieved > target - 0.05, "{kind}: achieved {achieved}, target {target}");
        assert!((b["estimated"].as_f64().unwrap() - achieved).abs() < 1e-9, "{kind}: {b}");
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(md.contains(&format!("(target {target}, estimated")), "{md}");
        // No group loses more than the default cap (0.9) of its elements.
        let groups = json(&out.join("groups.json"));
        for g in groups["groups"].as_array().unwrap().iter().filter(|g| g["prunable"] == true) {
            let n = g["num_elements"].as_u64().unwrap() as f64;
            let pruned = groups["pruned"][g["id"].as_str().unwrap()].as_array().unwrap().len() as f64;
            assert!(pruned <= (0.9 * n).floor(), "{kind}: group {} lost {pruned} of {n}", g["id"]);
        }
    }
    // Without the cap, a high target leaves narrow groups: the report and stderr warn.
    let out = dir.path().join("narrow");
    let args = budget_args(&out, &["--target-sparsity", "0.95", "--max-group-sparsity", "1"]);
    let run = oto(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report = json(&out.join("report.json"));
    let narrow = report["narrow_groups"].as_array().unwrap();
    assert!(!narrow.is_empty(), "{report}");
    let stderr = text(&run.stderr);
    for n in narrow {
        assert!(n["kept"].as_u64().unwrap() < 4 || n["kept"].as_f64().unwrap() < 0.1 * n["width"].as_f64().unwrap());
        assert!(stderr.contains(&format!("warning: group {} keeps {} of", n["group"].as_str().unwrap(), n["kept"])), "{stderr}");
    }
    // Bad budgets are refused.
    let model = zoo("demo_cnn.onnx");
    let train = digits("train");
    let base = ["prune", "--model", s(&model), "--data", s(&train), "--out", s(&out)];
    let with = |extra: &[&'static str]| base.iter().copied().chain(extra.iter().copied()).collect::<Vec<&str>>();
    refused(&with(&["--target-macs", "0"]), &["--target-macs 0", "(0, 1]"]);
    refused(&with(&["--target-params", "1.5"]), &["--target-params 1.5", "(0, 1]"]);
    refused(&with(&["--max-group-sparsity", "0"]), &["--max-group-sparsity 0", "(0, 1]"]);
    refused(&with(&["--target-sparsity", "0.5", "--target-macs", "0.5"]), &["--target-macs"]);
    // BERT-tiny: its residual width runs through layer norms that the compact model pads
    // back to the original width, so their scale and bias keep their size; the estimate
    // knows it (before, it counted them as removed and the model came out at 0.4005x).
    let bert = dir.path().join("bert");
    let config = root().join("examples/bert_tiny_distill.toml");
    let args = [
        "prune",
        "--config",
        s(&config),
        "--steps",
        "12",
        "--threads",
        "2",
        "--device",
        "cpu",
        "--out",
        s(&bert),
        "--target-params",
        "0.4",
        "-q",
    ];
    let run = oto(&args);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report = json(&bert.join("report.json"));
    let b = &report["budget"];
    let achieved = b["achieved"].as_f64().unwrap();
    assert!(achieved <= 0.4 && achieved > 0.39, "BERT-tiny: {b}");
    assert!((b["estimated"].as_f64().unwrap() - achieved).abs() < 1e-9, "BERT-tiny: {b}");
    assert_eq!(report["verification"]["passed"], true);
}

/// `--quantize R`: the compact model quantized in the same job to the size budget (bits
/// per layer by HAWQ-V2), written beside it, and reported (accuracy in onnxruntime, sizes,
/// latency, per-layer bits with traces).
#[test]
fn prune_with_quantize_writes_and_reports_the_qdq_model() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut args = prune_args(&digits("train"), 60, &out);
    args.extend(["--quantize", "0.15", "--quantize-block-size", "0", "-q"].map(String::from));
    let r = oto(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    let qdq = out.join("model.qdq.onnx");
    let venv = std::env::var_os("VIRTUAL_ENV").map(PathBuf::from).unwrap_or_else(|| root().join(".venv"));
    let check = Command::new(venv.join("bin/python"))
        .arg("-c")
        .arg("import sys, onnx; onnx.checker.check_model(sys.argv[1], full_check=True)")
        .arg(&qdq)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check.stderr));
    let report = json(&out.join("report.json"));
    let q = &report["quantization"];
    assert_eq!(q["file"].as_str(), Some("model.qdq.onnx"));
    assert_eq!(q["file_bytes"].as_u64(), Some(std::fs::metadata(&qdq).unwrap().len()));
    let a = &q["summary"]["allocation"];
    assert_eq!(a["strategy"].as_str(), Some("hawq"));
    assert!(a["bytes"].as_u64().unwrap() <= a["budget_bytes"].as_u64().unwrap(), "{a}");
    let layers = a["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 4, "conv1, conv2, conv3, fc of the compact model");
    assert!(layers.iter().all(|l| l["trace"].as_f64().is_some_and(f64::is_finite)));
    // Float and quantized accuracy measured in onnxruntime on the 359 held-out digits.
    assert_eq!(q["summary"]["float"]["samples"].as_u64(), Some(359));
    let (float, quant) = (q["summary"]["float"]["accuracy"].as_f64().unwrap(), q["summary"]["quantized"]["accuracy"].as_f64().unwrap());
    let compact = report["quality"]["compact"]["accuracy"].as_f64().unwrap();
    // The same model in two runtimes: at most one near-tie sample may flip its class.
    assert!((float - compact).abs() <= 1.0 / 359.0 + 1e-9, "onnxruntime {float} vs libtorch {compact} on the compact model");
    assert!(quant > 0.5, "quantized accuracy {quant}");
    assert!(q["latency"]["after_ms"].as_f64().is_some());
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Quantization") && md.contains("| conv3.weight |"), "{md}");
    // A budget below every allocation: exit code 2 naming the smallest achievable ratio,
    // after the compact model and the report were written.
    let out2 = dir.path().join("out2");
    let mut args = prune_args(&digits("train"), 20, &out2);
    args.extend(["--quantize", "0.01", "-q"].map(String::from));
    let r = oto(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = text(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("below the smallest achievable size"), "{stderr}");
    assert!(out2.join("model.onnx").is_file() && out2.join("report.md").is_file() && !out2.join("model.qdq.onnx").exists());
    // `--quantize-block-size` needs `--quantize`.
    refused(&["prune", "--model", s(&zoo("demo_cnn.onnx")), "--data", s(&digits("train")), "--quantize-block-size", "0"], &["--quantize"]);
}
