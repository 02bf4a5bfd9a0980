//! Shared helpers of the oto-construct tests: the zoo, onnxruntime runs, zeroing.
#![allow(dead_code)]

use oto_graph::{Analysis, Role};
use oto_onnx::{Model, Tensor, TensorData};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

/// The zoo folder: `OTO_ZOO_DIR`, else graphs/zoo of the workspace.
pub fn zoo_dir() -> PathBuf {
    match std::env::var_os("OTO_ZOO_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../graphs/zoo"),
    }
}

/// Loads a zoo model; panics with a hint when the zoo has not been exported.
pub fn zoo_model(name: &str) -> Model {
    let path = zoo_dir().join(format!("{name}.onnx"));
    assert!(path.exists(), "{} missing: run `python graphs/zoo.py --out graphs/zoo`", path.display());
    Model::load(&path).unwrap()
}

/// The reference inputs of a zoo model.
pub fn zoo_inputs(name: &str) -> Vec<(String, Tensor)> {
    oto_onnx::npz::read_npz(zoo_dir().join(format!("{name}.inputs.npz"))).unwrap()
}

/// Runs a model message through onnxruntime; outputs in graph order, as f64.
pub fn run_ort(proto: &oto_onnx::proto::ModelProto, inputs: &[(String, Tensor)]) -> Vec<(String, Vec<f64>)> {
    let bytes = proto.encode_to_vec();
    let session = oto_ort::Session::from_bytes(&bytes, &oto_ort::SessionOptions::with_threads(2)).unwrap();
    let feed: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    session.run(&feed).unwrap().into_iter().map(|(n, t)| (n, t.to_f64_vec())).collect()
}

/// `max |a - b|` over all outputs (NaN counts as infinite), and the tolerance `1e-4 * max(1, max |a|)`.
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

/// A small deterministic generator (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    /// `k` distinct indices below `n`, sorted.
    pub fn choose(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in 0..k.min(n) {
            let j = i + self.below(n - i);
            v.swap(i, j);
        }
        v.truncate(k.min(n));
        v.sort_unstable();
        v
    }
}

/// For every prunable group with more than one element, `sparsity` of its elements
/// (at least one removed, at least one kept).
pub fn pick(analysis: &Analysis, rng: &mut Rng, sparsity: f64) -> BTreeMap<String, Vec<usize>> {
    let mut out = BTreeMap::new();
    for g in analysis.prunable_groups().filter(|g| g.num_elements > 1) {
        let k = ((g.num_elements as f64 * sparsity).round() as usize).clamp(1, g.num_elements - 1);
        out.insert(g.id.clone(), rng.choose(g.num_elements, k));
    }
    out
}

/// Removed indices per initializer and axis, as the analysis describes them.
pub fn cut_indices(
    analysis: &Analysis,
    removed: &BTreeMap<String, Vec<usize>>,
    role: Option<Role>,
) -> HashMap<String, BTreeMap<usize, BTreeSet<usize>>> {
    let mut out: HashMap<String, BTreeMap<usize, BTreeSet<usize>>> = HashMap::new();
    for (id, elems) in removed {
        let g = analysis.group(id).unwrap();
        for m in g.members.iter().filter(|m| role.is_none_or(|r| m.role == r)) {
            let set = out.entry(m.initializer.clone()).or_default().entry(m.axis).or_default();
            for &e in elems {
                set.extend(m.map.indices(e));
            }
        }
    }
    out
}

/// The model with the producer slices of the removed elements set to zero.
pub fn zeroed(model: &Model, analysis: &Analysis, removed: &BTreeMap<String, Vec<usize>>) -> Model {
    let cuts = cut_indices(analysis, removed, Some(Role::Producer));
    let mut proto = model.proto.clone();
    for t in proto.graph.as_mut().unwrap().initializer.iter_mut() {
        let name = t.name.clone().unwrap_or_default();
        let Some(axes) = cuts.get(&name) else { continue };
        let tensor = model.tensor(t).unwrap();
        let mut v = tensor.as_f32().expect("float producer").to_vec();
        for (&axis, idx) in axes {
            let outer: usize = tensor.shape[..axis].iter().product();
            let n = tensor.shape[axis];
            let inner: usize = tensor.shape[axis + 1..].iter().product();
            for o in 0..outer {
                for &i in idx {
                    let base = (o * n + i) * inner;
                    v[base..base + inner].iter_mut().for_each(|x| *x = 0.0);
                }
            }
        }
        *t = Tensor { shape: tensor.shape.clone(), data: TensorData::F32(v) }.to_proto(&name);
    }
    Model::from_proto(proto, model.path().to_str().unwrap(), model.base_dir().map(|p| p.to_path_buf())).unwrap()
}

/// Elements of all floating-point initializers.
pub fn float_elements(model: &Model) -> u64 {
    model
        .proto
        .graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .filter(|t| oto_onnx::DType::from_onnx(t.data_type.unwrap_or(0)).is_some_and(|d| d.is_float()))
        .map(|t| t.dims.iter().product::<i64>() as u64)
        .sum()
}

/// The float-element count predicted from the groups: each cut initializer keeps
/// `prod(dim_a - removed_a)` elements.
pub fn predicted_float_elements(model: &Model, analysis: &Analysis, removed: &BTreeMap<String, Vec<usize>>) -> u64 {
    let cuts = cut_indices(analysis, removed, None);
    let mut total = float_elements(model);
    for t in &model.proto.graph.as_ref().unwrap().initializer {
        let Some(axes) = cuts.get(t.name.as_deref().unwrap_or("")) else { continue };
        let before: u64 = t.dims.iter().product::<i64>() as u64;
        let after: u64 = t.dims.iter().enumerate().map(|(a, &d)| d as u64 - axes.get(&a).map_or(0, |s| s.len() as u64)).product();
        total -= before - after;
    }
    total
}
