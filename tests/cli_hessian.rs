//! `oto hessian` as a user runs it: the built binary on the demo CNN with the digits data
//! (JSON fields, PNG chart), on unlabeled inputs (distillation), and on bad input (exit 2).

mod common;
use common::*;
use oto_testkit::zoo_path as zoo;

const DIGITS: &str = "examples/data/digits_train.npz";

fn digits() -> String {
    oto_testkit::root().join(DIGITS).to_string_lossy().into_owned()
}

#[test]
fn hessian_of_the_demo_cnn_writes_json_and_png() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (json, png) = (dir.path().join("h.json"), dir.path().join("traces.png"));
    let model = zoo("demo_cnn.onnx");
    let out = oto(&[
        "hessian",
        s(&model),
        "--data",
        &digits(),
        "--batches",
        "2",
        "--batch-size",
        "32",
        "--samples",
        "12",
        "--iterations",
        "40",
        "--lr",
        "100",
        "--device",
        "cpu",
        "--json",
        s(&json),
        "--plot",
        s(&png),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("node 'node_linear' (Gemm)") && stdout.contains("SGD stability bound"), "{stdout}");
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(j["loss"], "cross-entropy");
    assert_eq!((j["batches"].as_u64(), j["data_samples"].as_u64()), (Some(2), Some(64)));
    let samples = j["hutchinson"]["samples"].as_u64().unwrap();
    assert!((10..=12).contains(&samples), "{samples}");
    // 24170 trainable parameters (BatchNorm running statistics are not), in 7 layers:
    // 3 Conv, 3 BatchNormalization (scale and bias), the Gemm.
    let layers = j["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 7);
    assert_eq!(j["total"]["params"], 24170);
    assert_eq!(layers.iter().map(|l| l["params"].as_u64().unwrap()).sum::<u64>(), 24170);
    let traces: f64 = layers.iter().map(|l| l["trace"].as_f64().unwrap()).sum();
    let total = j["total"]["trace"].as_f64().unwrap();
    assert!((traces - total).abs() <= 1e-9 * total.abs().max(1.0), "layers sum to {traces}, total {total}");
    for l in layers {
        let (t, p) = (l["trace"].as_f64().unwrap(), l["params"].as_f64().unwrap());
        assert!((l["trace_per_param"].as_f64().unwrap() - t / p).abs() <= 1e-12 * (t / p).abs().max(1e-30));
        assert!(l["std_error"].as_f64().unwrap() > 0.0);
    }
    // The three channel groups of the analysis (conv1/bn1, conv2/bn2, conv3/bn3).
    let groups = j["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3);
    let lambda = j["eigenvalues"][0]["value"].as_f64().unwrap();
    assert!(lambda > 0.0 && lambda.is_finite());
    assert_eq!(j["stability"]["lambda_max"].as_f64(), Some(lambda));
    assert!((j["stability"]["lr_bound"].as_f64().unwrap() - 2.0 / lambda).abs() < 1e-12 * (2.0 / lambda));
    // lr 100 is far above 2 / lambda for this model (lambda is of order 1).
    assert_eq!(j["stability"]["stable"], false);
    assert!(stdout.contains("above the bound"), "{stdout}");
    // The chart: a PNG 900 wide, one row per layer.
    let bytes = std::fs::read(&png).unwrap();
    let reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
    assert_eq!((reader.info().width, reader.info().height), (900, 7 * 22 + 110));
}

#[test]
fn hessian_without_labels_uses_distillation() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("h.json");
    let (model, inputs) = (zoo("demo_cnn.onnx"), zoo("demo_cnn.inputs.npz"));
    let out = oto(&[
        "hessian",
        s(&model),
        "--data",
        s(&inputs),
        "--batches",
        "1",
        "--samples",
        "4",
        "--iterations",
        "5",
        "--device",
        "cpu",
        "-q",
        "--json",
        s(&json),
        "--slq",
        "2",
        "--slq-steps",
        "6",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "-q prints nothing");
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(j["loss"], "distill (temperature 1)");
    // At the teacher's own weights the distillation Hessian is a Gauss-Newton matrix: PSD.
    assert!(j["total"]["trace"].as_f64().unwrap() > 0.0, "{}", j["total"]);
    assert!(j["eigenvalues"][0]["value"].as_f64().unwrap() > 0.0);
    // --slq 2: two quadratures of 6 nodes, weights summing to 1; a PSD Hessian has no
    // Ritz value below 0 beyond rounding.
    let density = j["density"].as_array().unwrap();
    assert_eq!(density.len(), 2);
    for q in density {
        let nodes: Vec<f64> = q["nodes"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let weights: f64 = q["weights"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).sum();
        assert_eq!(nodes.len(), 6);
        assert!((weights - 1.0).abs() < 1e-9);
        assert!(nodes[0] > -1e-4 * nodes[5], "{nodes:?}");
    }
    assert_eq!(
        j["hessian_vector_products"].as_u64().unwrap(),
        j["hutchinson"]["samples"].as_u64().unwrap() + j["eigenvalues"][0]["iterations"].as_u64().unwrap() + 12
    );
}

#[test]
fn hessian_bad_input_exits_2_naming_it() {
    let _job = one_job_at_a_time();
    let model = zoo("demo_cnn.onnx");
    let data = digits();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--lr=-1"], "--lr -1"),
        (vec!["--lr", "nan"], "--lr NaN"),
        (vec!["--plot", "chart.jpg"], "chart.jpg"),
        (vec!["--loss", "hinge"], "unknown loss 'hinge'"),
        (vec!["--tolerance=-0.5"], "--tolerance -0.5"),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["hessian", s(&model), "--data", &data];
        args.extend(extra.iter().copied());
        let out = oto(&args);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(expected), "{extra:?}: {}", text(&out.stderr));
    }
    let out = oto(&["hessian", s(&model), "--data", "no/such/data.npz"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no/such/data.npz"), "{}", text(&out.stderr));
    // The BERT tokens do not fit the CNN's input: the array and the expectation are named.
    let out = oto(&["hessian", s(&model), "--data", s(&zoo("bert_tiny.tokens.npz"))]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("bert_tiny.tokens.npz"), "{}", text(&out.stderr));
}
