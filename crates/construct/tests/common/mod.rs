//! Shared helpers of the oto-construct tests: the zoo, onnxruntime runs, zeroing.
#![allow(dead_code)]

use oto_graph::{Analysis, Role};
use oto_onnx::rng::SplitMix64;
use oto_onnx::Model;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The weights of the hand-built test graphs: each call adds an initializer `name` of
/// `shape` to `b`, filled from a pattern that changes with every call (the `k`-th call's
/// element `i` is `((i * 7919 + 31 k) mod 17 - 8) / 9`).
pub fn weights() -> impl FnMut(&mut oto_onnx::builder::GraphBuilder, &str, &[usize]) -> String {
    let mut k = 0;
    move |b, name, shape| {
        k += 1;
        b.weight(name, shape, |i| (((i * 7919 + k * 31) % 17) as f32 - 8.0) / 9.0)
    }
}

/// For every prunable group with more than one element, `sparsity` of its elements
/// (at least one removed, at least one kept).
pub fn pick(analysis: &Analysis, rng: &mut SplitMix64, sparsity: f64) -> BTreeMap<String, Vec<usize>> {
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
/// `prod(dim_a - removed_a)` elements, each mean that keeps its original divisor
/// gains its scale (one scalar), and the scale and bias of a `LayerNormalization` whose
/// input is padded back to its width keep their size (so do those inside a layer
/// normalization written out: `Group::padded_parameters`).
pub fn predicted_float_elements(model: &Model, analysis: &Analysis, removed: &BTreeMap<String, Vec<usize>>) -> u64 {
    let cuts = cut_indices(analysis, removed, None);
    let mut total = float_elements(model);
    // The scale and bias of a layer norm padded back to its width keep their size.
    let norm_params: BTreeSet<&str> =
        analysis.groups.iter().filter(|g| removed.get(&g.id).is_some_and(|r| !r.is_empty())).flat_map(|g| g.padded_parameters()).collect();
    let graph = model.proto.graph.as_ref().unwrap();
    for t in &graph.initializer {
        let name = t.name.as_deref().unwrap_or("");
        if norm_params.contains(name) {
            continue;
        }
        let Some(axes) = cuts.get(name) else { continue };
        let before: u64 = t.dims.iter().product::<i64>() as u64;
        let after: u64 = t.dims.iter().enumerate().map(|(a, &d)| d as u64 - axes.get(&a).map_or(0, |s| s.len() as u64)).product();
        total -= before - after;
    }
    let means: std::collections::BTreeSet<&oto_graph::ShapeLocation> = analysis
        .groups
        .iter()
        .filter(|g| removed.get(&g.id).is_some_and(|r| !r.is_empty()))
        .flat_map(|g| g.shape_constants.iter().map(|c| &c.location))
        .filter(|l| matches!(l, oto_graph::ShapeLocation::MeanDivisor { .. }))
        .collect();
    total + means.len() as u64
}

/// Removes `elements` of the group `group` (zeroed, then constructed) and checks the
/// compact model: its float elements are the predicted count, and onnxruntime computes
/// on `inputs` what it computes for the zeroed full model.
pub fn assert_removal_exact(model: &Model, analysis: &Analysis, group: &str, elements: &[usize], inputs: &[(String, oto_onnx::Tensor)]) {
    let removed: BTreeMap<String, Vec<usize>> = [(group.to_string(), elements.to_vec())].into();
    let full = oto_construct::zero_producers(model, analysis, &removed).unwrap();
    let (compact, _) = oto_construct::construct(&full, analysis, &removed).unwrap();
    assert_eq!(float_elements(&compact), predicted_float_elements(&full, analysis, &removed), "{elements:?}");
    let (err, tol) = oto_testkit::deviation(&oto_testkit::run_ort(&full.proto, inputs), &oto_testkit::run_ort(&compact.proto, inputs));
    assert!(err <= tol, "{elements:?}: {err:.3e} > {tol:.3e}");
}

/// `t / Expand(Clip(ReduceL2(t, -1), eps), Shape(t))`: `F.normalize(t, dim=-1)` as PyTorch
/// exports it, the norm held above the initializer `eps` (zeros stay zero) and expanded back.
pub fn l2_normalized(b: &mut oto_onnx::builder::GraphBuilder, t: &str, eps: &str) -> String {
    use oto_onnx::builder::Attr;
    let norm = b.node_with("ReduceL2", &[t], &[], &[("axes", Attr::Ints(vec![-1])), ("keepdims", Attr::Int(1))]);
    let norm = b.node("Clip", &[&norm, eps], &[]);
    let shape = b.node("Shape", &[t], &[]);
    let norm = b.node("Expand", &[&norm, &shape], &[]);
    b.node("Div", &[t, &norm], &[])
}

/// One input `name` of `shape`, uniform in [-1, 1) from `seed` (row-major order).
pub fn uniform_input(name: &str, shape: &[usize], seed: u64) -> Vec<(String, oto_onnx::Tensor)> {
    let mut rng = SplitMix64::new(seed);
    let values: Vec<f32> = (0..shape.iter().product::<usize>()).map(|_| (rng.unit() * 2.0 - 1.0) as f32).collect();
    let tensor = oto_onnx::Tensor::new(shape.to_vec(), oto_onnx::TensorData::F32(values)).unwrap();
    vec![(name.to_string(), tensor)]
}

/// The prunable group holding axis `axis` of `init`; panics with the table and the blocked
/// operators when there is none.
pub fn prunable_group_with<'a>(analysis: &'a Analysis, init: &str, axis: usize) -> &'a oto_graph::Group {
    analysis
        .prunable_groups()
        .find(|g| g.members.iter().any(|m| m.initializer == init && m.axis == axis))
        .unwrap_or_else(|| panic!("{init}:{axis} is in no prunable group:\n{}\n{:?}", analysis.table(), analysis.blocked))
}
