//! Test helpers shared by the oto crates (a dev-dependency only): where the model zoo
//! is, loading its models and reference inputs, running a model in onnxruntime, and
//! comparing outputs with the project's one tolerance.
#![warn(missing_docs)]

use oto_onnx::{Model, Tensor};
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use oto_onnx::rng::SplitMix64;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The zoo folder: `OTO_ZOO_DIR`, else graphs/zoo of the workspace.
pub fn zoo_dir() -> PathBuf {
    match std::env::var_os("OTO_ZOO_DIR") {
        Some(d) => PathBuf::from(d),
        None => root().join("graphs/zoo"),
    }
}

/// The image folder and its PIL-prepared reference (graphs/image_folder.py):
/// `OTO_IMAGE_FOLDER_DIR`, else graphs/image_folder of the workspace.
pub fn image_folder_dir() -> PathBuf {
    match std::env::var_os("OTO_IMAGE_FOLDER_DIR") {
        Some(d) => PathBuf::from(d),
        None => root().join("graphs/image_folder"),
    }
}

/// The folder of the zoo as users' files are made (graphs/user_zoo.py):
/// `OTO_USER_ZOO_DIR`, else graphs/user_zoo of the workspace.
pub fn user_zoo_dir() -> PathBuf {
    match std::env::var_os("OTO_USER_ZOO_DIR") {
        Some(d) => PathBuf::from(d),
        None => root().join("graphs/user_zoo"),
    }
}

/// The index.json of one exporter's files in the user zoo (`torchscript`); panics with a
/// hint when they have not been exported.
pub fn user_zoo_index(exporter: &str) -> serde_json::Value {
    let path = user_zoo_dir().join(exporter).join("index.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `make graphs` (or python graphs/user_zoo.py --out graphs/user_zoo)", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The path of a zoo file; panics with a hint when the zoo has not been exported.
pub fn zoo_path(file: &str) -> PathBuf {
    let path = zoo_dir().join(file);
    assert!(path.exists(), "{} missing: run `make graphs`", path.display());
    path
}

/// The zoo's index.json (written by graphs/zoo.py).
pub fn zoo_index() -> serde_json::Value {
    let path = zoo_path("index.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The names of the zoo models, in index order.
pub fn zoo_names() -> Vec<String> {
    zoo_index()["models"]
        .as_array()
        .expect("index.json lists models")
        .iter()
        .map(|m| m["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The Optimum zoo folder (graphs/optimum_zoo/NAME/model.onnx, written by
/// graphs/optimum_zoo.py): `OTO_OPTIMUM_ZOO_DIR`, else graphs/optimum_zoo of the workspace.
pub fn optimum_zoo_dir() -> PathBuf {
    match std::env::var_os("OTO_OPTIMUM_ZOO_DIR") {
        Some(d) => PathBuf::from(d),
        None => root().join("graphs/optimum_zoo"),
    }
}

/// The names of the Optimum zoo's models, in index order; panics with a hint when the
/// zoo has not been exported.
pub fn optimum_zoo_names() -> Vec<String> {
    optimum_index_names("models")
}

/// The Optimum zoo's merged decoders (graphs/optimum_zoo.py's `export_merged`: one `If`
/// on `use_cache_branch` holding the decoder with and without its cache; reference inputs
/// inputs.npz for the cache branch, inputs_first.npz for the other).
pub fn optimum_merged_names() -> Vec<String> {
    optimum_index_names("merged")
}

fn optimum_index_names(list: &str) -> Vec<String> {
    let path = optimum_zoo_dir().join("index.json");
    assert!(path.exists(), "{} missing: run `make graphs`", path.display());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let index: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    index[list]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no {list} (an older export: run `make graphs`)", path.display()))
        .iter()
        .map(|m| m["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Loads the zoo model `name` as every command does (normalized; the zoo files are
/// already normal, see crates/construct/tests/normalize_ort.rs).
pub fn zoo_model(name: &str) -> Model {
    oto_onnx::normalize::load(zoo_path(&format!("{name}.onnx"))).unwrap().0
}

/// The reference inputs of the zoo model `name`.
pub fn zoo_inputs(name: &str) -> Vec<(String, Tensor)> {
    oto_onnx::npz::read_npz(zoo_path(&format!("{name}.inputs.npz"))).unwrap()
}

/// Runs a model message through onnxruntime (2 threads); outputs in graph order, as f64.
pub fn run_ort(proto: &oto_onnx::proto::ModelProto, inputs: &[(String, Tensor)]) -> Vec<(String, Vec<f64>)> {
    let bytes = proto.encode_to_vec();
    let session = oto_ort::Session::from_bytes(&bytes, &oto_ort::SessionOptions::with_threads(2)).unwrap();
    let feed: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    session.run(&feed).unwrap().into_iter().map(|(n, t)| (n, t.to_f64_vec())).collect()
}

/// The smallest and largest value of each of `values` (values of `model`) on `inputs`:
/// computed values read in onnxruntime as extra graph outputs, graph inputs from the
/// inputs themselves (onnxruntime does not return an input as an output).
pub fn observed_ranges(model: &Model, values: &[String], inputs: &[(String, Tensor)]) -> HashMap<String, (f32, f32)> {
    let range = |x: &[f64]| {
        let (lo, hi) = x.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &a| (lo.min(a), hi.max(a)));
        (lo as f32, hi as f32)
    };
    let (given, computed): (Vec<&String>, Vec<&String>) = values.iter().partition(|v| inputs.iter().any(|(n, _)| n == *v));
    let mut ranges: HashMap<String, (f32, f32)> = HashMap::new();
    for (n, t) in inputs.iter().filter(|(n, _)| given.contains(&n)) {
        ranges.insert(n.clone(), range(&t.to_f64_vec()));
    }
    let mut proto = model.proto.clone();
    let graph = proto.graph.get_or_insert_with(Default::default);
    let first = graph.output.len();
    for v in &computed {
        graph.output.push(oto_onnx::proto::ValueInfoProto { name: Some((*v).clone()), ..Default::default() });
    }
    for (v, (_, x)) in computed.into_iter().zip(&run_ort(&proto, inputs)[first..]) {
        ranges.insert(v.clone(), range(x));
    }
    ranges
}

/// `max |a - b|` over all outputs (NaN counts as infinite), and the tolerance
/// `1e-4 * max(1, max |a|)` (float32 reassociation noise).
pub fn deviation(full: &[(String, Vec<f64>)], other: &[(String, Vec<f64>)]) -> (f64, f64) {
    assert_eq!(full.len(), other.len());
    let mut err = 0f64;
    let mut big = 1f64;
    for ((na, a), (nb, b)) in full.iter().zip(other) {
        assert_eq!(na, nb);
        assert_eq!(a.len(), b.len(), "output '{na}' changed size");
        for (x, y) in a.iter().zip(b) {
            let d = (x - y).abs();
            err = if d.is_nan() { f64::INFINITY } else { err.max(d) };
            big = big.max(x.abs());
        }
    }
    (err, 1e-4 * big)
}

/// Helpers of the benchmark programs (`make bench`).
pub mod bench {
    /// The value after `--name` in `args`, or `default`.
    pub fn arg(args: &[String], name: &str, default: usize) -> usize {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
    }

    /// Peak resident memory of this process in bytes (Linux `VmHWM`), if known.
    pub fn peak_rss_bytes() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    /// One machine-readable result line for `bench/report.py`.
    pub fn bench_line(name: &str, implementation: &str, metric: &str, value: f64, unit: &str) {
        let line = serde_json::json!({"name": name, "impl": implementation, "metric": metric, "value": value, "unit": unit});
        println!("BENCH {line}");
    }
}

/// The folder of the hand-made model zoo-era graphs (graphs/legacy_zoo.py):
/// `OTO_LEGACY_ZOO_DIR`, else graphs/legacy_zoo of the workspace.
pub fn legacy_zoo_dir() -> PathBuf {
    match std::env::var_os("OTO_LEGACY_ZOO_DIR") {
        Some(d) => PathBuf::from(d),
        None => root().join("graphs/legacy_zoo"),
    }
}

/// The path of a legacy zoo file; panics with a hint when it has not been written.
pub fn legacy_path(file: &str) -> PathBuf {
    let path = legacy_zoo_dir().join(file);
    assert!(path.exists(), "{} missing: run `make graphs` (or python graphs/legacy_zoo.py --out graphs/legacy_zoo)", path.display());
    path
}

/// The legacy model `name` as every command loads it (normalized: batch made symbolic).
pub fn legacy_model(name: &str) -> Model {
    oto_onnx::normalize::load(legacy_path(&format!("{name}.onnx"))).unwrap().0
}

/// The reference input (batch 1) of the legacy model `name`.
pub fn legacy_inputs(name: &str) -> Vec<(String, Tensor)> {
    oto_onnx::npz::read_npz(legacy_path(&format!("{name}.inputs.npz"))).unwrap()
}

/// onnxruntime's outputs of the original (batch 1) file on [`legacy_inputs`].
pub fn legacy_outputs(name: &str) -> Vec<(String, Tensor)> {
    oto_onnx::npz::read_npz(legacy_path(&format!("{name}.outputs.npz"))).unwrap()
}

/// `inputs` (float32, batch 1) repeated into a batch of `batch`: sample 0 is the given
/// one, the others are uniform in [-1, 1) from `seed`.
pub fn batched(inputs: &[(String, Tensor)], batch: usize, seed: u64) -> Vec<(String, Tensor)> {
    let mut rng = SplitMix64::new(seed);
    inputs
        .iter()
        .map(|(name, t)| {
            let one = t.as_f32().unwrap_or_else(|| panic!("input {name} is not float32"));
            let mut data = one.to_vec();
            data.extend((0..one.len() * (batch - 1)).map(|_| (rng.unit() * 2.0 - 1.0) as f32));
            let mut shape = t.shape.clone();
            shape[0] = batch;
            (name.clone(), Tensor { shape, data: oto_onnx::TensorData::F32(data) })
        })
        .collect()
}
