//! `oto quantize` through the binary: the QDQ file passes the onnx checker, its size table
//! is what int8 per channel stores, `oto eval` (the libtorch executor) computes what
//! onnxruntime computes on it, and bad input is exit code 2 naming the value.

mod common;
use common::*;
use oto_onnx::Model;
use oto_testkit::{zoo_inputs, zoo_path};
use oto_torch::exec::{convert, Executor, Mode};
use std::path::PathBuf;

fn python() -> PathBuf {
    let venv = std::env::var_os("VIRTUAL_ENV").map(PathBuf::from).unwrap_or_else(|| oto_testkit::root().join(".venv"));
    let python = venv.join("bin/python");
    assert!(python.exists(), "{} missing: the Python venv (make venv, or source /work/oto-env.sh)", python.display());
    python
}

fn checker(path: &std::path::Path) {
    let out = std::process::Command::new(python())
        .arg("-c")
        .arg("import sys, onnx; onnx.checker.check_model(sys.argv[1], full_check=True)")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "onnx checker on {}: {}", path.display(), text(&out.stderr));
}

/// Named outputs as f64.
type Outputs = Vec<(String, Vec<f64>)>;

/// The executor's outputs on the zoo inputs, and onnxruntime's without graph
/// optimizations (its fused integer kernels requantize with their own rounding).
fn both(model: &Model, name: &str) -> (Outputs, Outputs) {
    let inputs = zoo_inputs(name);
    let exec = Executor::new(model, oto_torch::tch::Device::Cpu).unwrap();
    let feed: Vec<_> = inputs.iter().map(|(_, t)| convert::to_tch(t, oto_torch::tch::Device::Cpu).unwrap()).collect();
    let ours = oto_torch::tch::no_grad(|| exec.forward(&feed, Mode::Eval)).unwrap();
    let ours = exec.output_names().zip(&ours).map(|(n, t)| (n.to_string(), convert::from_tch(t).unwrap().to_f64_vec())).collect();
    let options = oto_ort::SessionOptions { intra_threads: Some(2), no_optimizations: true, ..Default::default() };
    let session = oto_ort::Session::from_bytes(&model.to_bytes().unwrap(), &options).unwrap();
    let feed: Vec<(&str, &oto_onnx::Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let ort = session.run(&feed).unwrap().into_iter().map(|(n, t)| (n, t.to_f64_vec())).collect();
    (ours, ort)
}

#[test]
fn quantize_demo_cnn_int8_and_int4() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let data = oto_testkit::root().join("examples/data/digits_train.npz");
    let val = oto_testkit::root().join("examples/data/digits_test.npz");
    let model = zoo_path("demo_cnn.onnx");
    for bits in ["8", "4"] {
        let out = dir.path().join(format!("q{bits}.onnx"));
        let json = dir.path().join(format!("q{bits}.json"));
        // int4 with percentile calibration, int8 with min/max.
        let calibration = if bits == "4" { "percentile" } else { "minmax" };
        let r = oto(&[
            "--quiet",
            "quantize",
            "--calibration",
            calibration,
            s(&model),
            "--data",
            s(&data),
            "--samples",
            "128",
            "--val",
            s(&val),
            "--out",
            s(&out),
            "--bits",
            bits,
            "--block-size",
            "8",
            "--json",
            s(&json),
        ]);
        let stdout = text(&r.stdout);
        assert_eq!(r.status.code(), Some(0), "{stdout}\n{}", text(&r.stderr));
        assert!(stdout.contains("accuracy in onnxruntime (359 samples)"), "{stdout}");
        checker(&out);
        let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let weights = summary["report"]["weights"].as_array().unwrap();
        assert_eq!(weights.len(), 4, "conv1, conv2, conv3, fc");
        for w in weights {
            let shape: Vec<usize> = w["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            let n: usize = shape.iter().product();
            // The output channel: axis 0 of a Conv weight, of the Gemm weight with transB (fc is [10, 64]).
            let stored = w["stored_bytes"].as_u64().unwrap() as usize;
            let expected = if bits == "8" {
                // One byte per weight, an f32 scale and an int8 zero point per output channel.
                n + 5 * shape[0]
            } else {
                // Half a byte per weight, and per block of 8 input entries an f32 scale and an int4 zero point.
                let blocks = n / shape[1] * shape[1].div_ceil(8);
                n.div_ceil(2) + 4 * blocks + blocks.div_ceil(2)
            };
            assert_eq!(stored, expected, "{w}");
            assert_eq!(w["float_bytes"].as_u64().unwrap() as usize, 4 * n);
        }
        // With int8 weights the inputs of conv1-3 and fc and the outputs of conv1-3; int4
        // weights are weight-only (onnxruntime has no int4 convolution, and its int4 MatMul
        // takes a float input): no activation is quantized.
        assert_eq!(summary["report"]["activations"].as_array().unwrap().len(), if bits == "8" { 7 } else { 0 });
        if bits == "4" {
            assert!(stdout.contains("the inputs of int4 weights stay float"), "{stdout}");
        }
        assert_eq!(summary["report"]["opset"][1].as_i64(), Some(if bits == "8" { 18 } else { 21 }));
        // `oto eval` runs the QDQ model.
        let e = oto(&["eval", s(&out), "--data", s(&val)]);
        assert_eq!(e.status.code(), Some(0), "{}", text(&e.stderr));
        assert!(text(&e.stdout).contains("accuracy"));
        // The analysis reads the QDQ model (nothing is prunable through Q/DQ) without failing.
        let a = oto(&["analyze", s(&out)]);
        assert_eq!(a.status.code(), Some(0), "{}", text(&a.stderr));
        // Quantizing it again is refused: nothing float is left (it wrote a copy before).
        let again = dir.path().join(format!("q{bits}.again.onnx"));
        let r = oto(&["quantize", s(&out), "--data", s(&data), "--out", s(&again)]);
        let stderr = text(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("quantized already") && stderr.contains("quantize the float model"), "{stderr}");
        assert!(!again.exists());
    }
}

/// The libtorch executor and onnxruntime (nodes as written) on QDQ models (int8 and
/// int4 weights, uint8 activations calibrated on the reference inputs), with every
/// QuantizeLinear's float input and integer output read as extra outputs:
///
/// * every QuantizeLinear computes, in each, exactly the levels of its own float input
///   (x / scale in f32, rounding half to even, zero point, saturation);
/// * the float values agree to float32 reassociation (1e-4 of the largest value) at every
///   QuantizeLinear up to the first whose levels differ between the two, and at the
///   outputs when no level differs. The float convolutions sum in different orders, so a
///   value within reassociation noise of a rounding boundary can round to the neighbouring
///   level (resnet18 on some CPUs: one of 8,192 levels of its 12th Relu): past such a flip
///   the two compute on different inputs and only the first point is checked; the
///   outputs' difference is printed. This cannot be exact: the rounding of a value at a
///   boundary depends on the summation order.
#[test]
fn executor_equals_onnxruntime_on_qdq_models() {
    let _job = one_job_at_a_time();
    for name in ["demo_cnn", "resnet18"] {
        let model = oto_testkit::zoo_model(name);
        let inputs = zoo_inputs(name);
        let (targets, _) = oto_quant::rewrite::targets(&model).unwrap();
        let plan = oto_quant::BitPlan::uniform(oto_quant::Bits::Int8);
        let activations = oto_quant::rewrite::activation_values(&model, &targets, &plan).unwrap();
        let ranges: std::collections::HashMap<String, oto_quant::calib::Range> =
            oto_testkit::observed_ranges(&model, &activations, &inputs)
                .into_iter()
                .map(|(v, (min, max))| (v, oto_quant::calib::Range { min, max }))
                .collect();
        for bits in [oto_quant::Bits::Int8, oto_quant::Bits::Int4] {
            let options =
                oto_quant::QuantizeOptions { plan: oto_quant::BitPlan::uniform(bits), block_size: 16, activations: Some(ranges.clone()) };
            let (q, _) = oto_quant::quantize_model(&model, &options).unwrap();
            compare_through_quantize_nodes(&q, name, &format!("{name} {bits:?}"));
        }
    }
}

/// See [`executor_equals_onnxruntime_on_qdq_models`].
fn compare_through_quantize_nodes(q: &Model, name: &str, what: &str) {
    let mut proto = q.proto.clone();
    let graph = proto.graph.as_mut().unwrap();
    let initializers: std::collections::HashMap<String, oto_onnx::Tensor> =
        graph.initializer.iter().map(|t| (t.name.clone().unwrap_or_default(), q.tensor(t).unwrap())).collect();
    let inputs = zoo_inputs(name);
    let outputs = graph.output.len();
    // Per QuantizeLinear (graph order, which is topological): float input, levels, scale, zero point.
    let mut probes = Vec::new();
    for n in graph.node.iter().filter(|n| n.op_type.as_deref() == Some("QuantizeLinear")) {
        let scale = initializers[&n.input[1]].to_f64_vec();
        let zero = initializers[&n.input[2]].to_f64_vec();
        assert_eq!((scale.len(), zero.len()), (1, 1), "{what}: activations are quantized per tensor ({:?})", n.name);
        probes.push((n.input[0].clone(), n.output[0].clone(), scale[0] as f32, zero[0] as i32));
    }
    let given: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
    for (x, y, _, _) in &probes {
        for v in [x, y] {
            if !given.contains(&v.as_str()) && !graph.output.iter().any(|o| o.name.as_deref() == Some(v.as_str())) {
                graph.output.push(oto_onnx::proto::ValueInfoProto { name: Some(v.clone()), ..Default::default() });
            }
        }
    }
    let probed = Model::from_proto(proto, "probed.onnx", None).unwrap();
    let (ours, ort) = both(&probed, name);
    let value = |all: &Outputs, v: &str| -> Vec<f64> {
        match all.iter().find(|(n, _)| n == v) {
            Some((_, x)) => x.clone(),
            None => inputs.iter().find(|(n, _)| n == v).unwrap().1.to_f64_vec(),
        }
    };
    let levels = |x: &[f64], scale: f32, zero: i32| -> Vec<f64> {
        x.iter().map(|&v| oto_quant::math::quantize(v as f32, scale, zero, oto_quant::math::QType::Uint8) as f64).collect()
    };
    let mut diverged = false;
    for (x, y, scale, zero) in &probes {
        let (x_ours, x_ort) = (value(&ours, x), value(&ort, x));
        let (y_ours, y_ort) = (value(&ours, y), value(&ort, y));
        assert_eq!(y_ours, levels(&x_ours, *scale, *zero), "{what}: the executor's QuantizeLinear of '{x}'");
        assert_eq!(y_ort, levels(&x_ort, *scale, *zero), "{what}: onnxruntime's QuantizeLinear of '{x}'");
        if !diverged {
            let (err, tol) = oto_testkit::deviation(&[(x.clone(), x_ort)], &[(x.clone(), x_ours)]);
            assert!(err <= tol, "{what}: '{x}' differs by {err} > {tol} before any level differs");
        }
        let flipped = y_ours.iter().zip(&y_ort).filter(|(a, b)| a != b).count();
        if flipped > 0 && !diverged {
            // The float inputs agree to reassociation and each side's levels are exactly
            // those of its input: the flipped elements lie that close to a rounding boundary.
            let far = y_ours.iter().zip(&y_ort).filter(|(a, b)| (*a - *b).abs() > 1.0).count();
            assert_eq!(far, 0, "{what}: levels of '{y}' more than one apart");
            eprintln!("{what}: {flipped} of {} levels of '{y}' round to the neighbouring level (float summation order)", y_ours.len());
            diverged = true;
        }
    }
    let (err, tol) = oto_testkit::deviation(&ort[..outputs], &ours[..outputs]);
    eprintln!("{what}: outputs differ by {err} (float32 reassociation: {tol}); a level flipped: {diverged}");
    if !diverged {
        assert!(err <= tol, "{what}: executor vs onnxruntime {err} > {tol}");
    }
}

#[test]
fn bad_input_is_exit_code_2() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let data = oto_testkit::root().join("examples/data/digits_train.npz");
    let model = zoo_path("demo_cnn.onnx");
    let out = dir.path().join("q.onnx");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--bits", "5"], "--bits must be 8 or 4"),
        (vec!["--calibration", "percentile", "--percentile", "0"], "percentile 0 is not in (0, 100]"),
        (vec!["--samples", "0"], "no calibration samples"),
    ];
    for (extra, message) in cases {
        let mut args = vec!["quantize", s(&model), "--data", s(&data), "--out", s(&out)];
        args.extend(extra.iter().copied());
        let r = oto(&args);
        let stderr = text(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(message), "{extra:?}: {stderr}");
    }
    let r = oto(&["quantize", "missing.onnx", "--data", s(&data), "--out", s(&out)]);
    assert_eq!(r.status.code(), Some(2));
    assert!(text(&r.stderr).contains("missing.onnx"));
}

/// `--size-budget`: the stored bytes fit the budget, the plan is what the exact solver
/// chooses from the traces it reports and the options the rewrite stores, the model passes
/// the checker and runs in onnxruntime (its accuracy is measured there).
#[test]
fn size_budget_allocates_bits_by_hawq() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let data = oto_testkit::root().join("examples/data/digits_train.npz");
    let model_path = zoo_path("demo_cnn.onnx");
    let out = dir.path().join("mixed.onnx");
    let json = dir.path().join("mixed.json");
    let r = oto(&[
        "--quiet",
        "quantize",
        s(&model_path),
        "--data",
        s(&data),
        "--samples",
        "64",
        "--hessian-batches",
        "1",
        "--out",
        s(&out),
        "--size-budget",
        "0.15",
        "--bits-choices",
        "4,8",
        "--block-size",
        "0",
        "--json",
        s(&json),
    ]);
    let stdout = text(&r.stdout);
    assert_eq!(r.status.code(), Some(0), "{stdout}\n{}", text(&r.stderr));
    assert!(stdout.contains("bits by hawq under a size budget of 0.1500"), "{stdout}");
    checker(&out);
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let alloc = &summary["allocation"];
    let float_bytes = alloc["float_bytes"].as_u64().unwrap();
    let budget = alloc["budget_bytes"].as_u64().unwrap();
    assert_eq!(budget, (0.15 * float_bytes as f64).floor() as u64);
    // The bytes the rewrite stored are the allocation's, within the budget.
    let stored: u64 = summary["report"]["weights"].as_array().unwrap().iter().map(|w| w["stored_bytes"].as_u64().unwrap()).sum();
    assert_eq!(stored, alloc["bytes"].as_u64().unwrap());
    assert!(stored <= budget, "{stored} > {budget}");
    // The plan is the exact solver's on the reported traces and the rewrite's options.
    let model = oto_testkit::zoo_model("demo_cnn");
    let (targets, _) = oto_quant::rewrite::targets(&model).unwrap();
    let options = oto_quant::rewrite::bit_options(&model, &targets, &[oto_quant::Bits::Int4, oto_quant::Bits::Int8], 0).unwrap();
    let layers: Vec<oto_quant::allocate::LayerSensitivity> = alloc["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&targets)
        .zip(options)
        .map(|((l, t), options)| {
            assert_eq!(l["weight"].as_str().unwrap(), t.weight);
            oto_quant::allocate::LayerSensitivity {
                name: t.weight.clone(),
                params: l["params"].as_u64().unwrap(),
                trace: l["trace"].as_f64().unwrap(),
                options,
            }
        })
        .collect();
    assert_eq!(layers.len(), 4);
    let expected = oto_quant::allocate::allocate(&layers, budget).unwrap();
    let bits: Vec<u8> = alloc["layers"].as_array().unwrap().iter().map(|l| l["bits"].as_u64().unwrap() as u8).collect();
    assert_eq!(bits, expected.bits);
    assert!(bits.contains(&4) && bits.contains(&8), "0.15 is between all-int4 and all-int8: {bits:?}");
    let written: Vec<u8> =
        summary["report"]["weights"].as_array().unwrap().iter().map(|w| if w["bits"] == "int8" { 8 } else { 4 }).collect();
    assert_eq!(written, bits);
    // onnxruntime ran it on the labeled data.
    assert!(summary["quantized"]["accuracy"].as_f64().is_some());

    // --traces: another rule on the same traces, read from this run's JSON, not measured again.
    let again = dir.path().join("params.json");
    let r = oto(&[
        "--quiet",
        "quantize",
        s(&model_path),
        "--data",
        s(&data),
        "--samples",
        "64",
        "--out",
        s(&dir.path().join("params.onnx")),
        "--size-budget",
        "0.15",
        "--block-size",
        "0",
        "--allocation",
        "params",
        "--traces",
        s(&json),
        "--json",
        s(&again),
    ]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    let second: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&again).unwrap()).unwrap();
    let traces = |v: &serde_json::Value| -> Vec<f64> {
        v["allocation"]["layers"].as_array().unwrap().iter().map(|l| l["trace"].as_f64().unwrap()).collect()
    };
    assert_eq!(traces(&second), traces(&summary));
    assert_eq!(second["allocation"]["hutchinson_samples"].as_u64(), Some(0));
    assert_eq!(second["allocation"]["strategy"].as_str(), Some("params"));
}

#[test]
fn size_budget_bad_input_is_exit_code_2() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let data = oto_testkit::root().join("examples/data/digits_train.npz");
    let model = zoo_path("demo_cnn.onnx");
    let out = dir.path().join("q.onnx");
    // Traces of every weight but fc.weight, as `oto hessian --json` writes them.
    let partial = dir.path().join("partial.json");
    let layers: Vec<serde_json::Value> = ["conv1.weight", "conv2.weight", "conv3.weight"]
        .iter()
        .map(|n| serde_json::json!({"name": n, "trace": 1.0, "std_error": 0.1}))
        .collect();
    std::fs::write(&partial, serde_json::json!({ "layers": layers }).to_string()).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--size-budget", "0.05", "--block-size", "0"], "below the smallest achievable size, 0.1"),
        (vec!["--size-budget", "0.2", "--bits", "4"], "cannot be used with"),
        (vec!["--size-budget", "0.2", "--bits-choices", "4,5"], "--bits-choices: 5 bits"),
        (vec!["--size-budget=-1"], "must be a positive number"),
        (vec!["--size-budget", "0"], "must be a positive number"),
        (vec!["--allocation", "random"], "--size-budget"),
        (vec!["--size-budget", "0.2", "--block-size", "1"], "--block-size 1"),
        (vec!["--size-budget", "0.2", "--traces", s(&partial)], "no trace for weight 'fc.weight'"),
        (vec!["--size-budget", "0.2", "--traces", s(&data)], "not JSON"),
        (vec!["--traces", s(&partial)], "--size-budget"),
    ];
    for (extra, message) in cases {
        let mut args = vec!["quantize", s(&model), "--data", s(&data), "--samples", "32", "--hessian-batches", "1", "--out", s(&out)];
        args.extend(extra.iter().copied());
        let r = oto(&args);
        let stderr = text(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(message), "{extra:?}: {stderr}");
    }
}
