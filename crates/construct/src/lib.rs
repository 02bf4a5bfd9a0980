//! Construction of the compact model: from a model whose removed group elements are
//! exactly zero, writes the smaller ONNX model that computes the same function.
//!
//! Following the contract of `oto_graph` (see its crate docs and `spec/groups.md`):
//! for every removed element of a prunable group, the indices `member.map.indices(i)`
//! of every member (producer, consumer and aux) are cut along `member.axis`, and every
//! [`oto_graph::ShapeConstant`] entry is decreased by `per_element`. A constant read by
//! nodes outside a shape constant's `nodes` is first copied for those nodes. A key/value
//! cache ([`oto_graph::CacheSlice`]) keeps its full width: zeros go back in the removed
//! positions, and the model's other readers read the kept ones.
//!
//! ```no_run
//! let (model, _) = oto_onnx::normalize::load("trained.onnx")?;
//! let analysis = oto_graph::analyze(&model, &oto_graph::AnalyzeOptions::default())?;
//! let removed = oto_construct::zero_elements(&analysis, &model)?;
//! let (compact, report) = oto_construct::construct(&model, &analysis, &removed)?;
//! compact.save("compact.onnx", &Default::default())?;
//! println!("{} -> {} parameters", report.params_before, report.params_after);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod caches;
mod constants;
mod nodes;
mod reads;
mod slice;

use oto_graph::{Analysis, Group};
use oto_onnx::proto::{ModelProto, StringStringEntryProto};
use oto_onnx::{Graph, Model, OnnxError};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Metadata key under which the compact model records what was pruned.
pub const PRUNED_METADATA_KEY: &str = "oto.pruned";

/// Why construction failed.
#[derive(Debug, thiserror::Error)]
pub enum ConstructError {
    /// Reading or validating the model failed.
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// The removal names a group the analysis does not have.
    #[error("group '{0}' is not in the analysis")]
    UnknownGroup(String),
    /// The removal names a group that is not prunable.
    #[error("group '{group}' is not prunable: {reasons}")]
    Unprunable {
        /// Group id.
        group: String,
        /// The analysis' reasons.
        reasons: String,
    },
    /// An element index is out of range.
    #[error("group '{group}' has {count} elements; element {element} does not exist")]
    ElementOutOfRange {
        /// Group id.
        group: String,
        /// The offending element.
        element: usize,
        /// Number of elements of the group.
        count: usize,
    },
    /// Every element of a group would be removed.
    #[error("group '{group}': removing all {count} elements would leave no channel")]
    RemovesAll {
        /// Group id.
        group: String,
        /// Number of elements of the group.
        count: usize,
    },
    /// The model and the analysis disagree (a member or constant that does not fit).
    #[error("group '{group}': {message}")]
    Mismatch {
        /// Group id.
        group: String,
        /// What does not fit.
        message: String,
    },
}

/// Result of this crate.
pub type Result<T, E = ConstructError> = std::result::Result<T, E>;

/// What one group lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupReport {
    /// Group id.
    pub id: String,
    /// Elements kept.
    pub kept: usize,
    /// Elements removed.
    pub removed: usize,
}

/// What construction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstructReport {
    /// Parameters of the full model (see [`oto_onnx::cost::parameter_count`]).
    pub params_before: u64,
    /// Parameters of the compact model.
    pub params_after: u64,
    /// MACs per batch element of the full model (counted operators with static shapes).
    pub macs_before: u64,
    /// MACs per batch element of the compact model.
    pub macs_after: u64,
    /// Every group with removed elements, in id order.
    pub groups: Vec<GroupReport>,
}

/// The elements of every prunable group whose producer slices are all exactly zero.
/// A group keeps at least one element: if all are zero, the last one is not listed.
/// Groups without zero elements are left out.
pub fn zero_elements(analysis: &Analysis, model: &Model) -> Result<BTreeMap<String, Vec<usize>>> {
    let graph = Graph::new(model)?;
    let mut cache: HashMap<&str, oto_onnx::Tensor> = HashMap::new();
    let mut out = BTreeMap::new();
    for g in analysis.prunable_groups() {
        let mut zero = vec![true; g.num_elements];
        for m in g.members.iter().filter(|m| m.role == oto_graph::Role::Producer) {
            if !cache.contains_key(m.initializer.as_str()) {
                let t = graph
                    .initializer(&m.initializer)
                    .ok_or_else(|| mismatch(g, format!("member '{}' is not an initializer", m.initializer)))?;
                cache.insert(&m.initializer, model.tensor(t)?);
            }
            let tensor = &cache[m.initializer.as_str()];
            let view = slice::AxisView::new(&tensor.shape, m.axis)
                .ok_or_else(|| mismatch(g, format!("member '{}' has no axis {} (shape {:?})", m.initializer, m.axis, tensor.shape)))?;
            for (e, z) in zero.iter_mut().enumerate() {
                for i in m.map.indices(e) {
                    if !*z {
                        break;
                    }
                    if i >= view.len {
                        return Err(mismatch(
                            g,
                            format!("member '{}' index {i} is beyond axis {} (size {})", m.initializer, m.axis, view.len),
                        ));
                    }
                    *z = slice::all_zero(&tensor.data, view.offsets(i));
                }
            }
        }
        let mut elems: Vec<usize> = (0..g.num_elements).filter(|&e| zero[e]).collect();
        if elems.len() == g.num_elements {
            elems.pop();
        }
        if !elems.is_empty() {
            out.insert(g.id.clone(), elems);
        }
    }
    Ok(out)
}

fn mismatch(g: &Group, message: String) -> ConstructError {
    ConstructError::Mismatch { group: g.id.clone(), message }
}

/// Checks the removal against the analysis; returns the groups with their sorted,
/// distinct removed elements (groups with nothing removed are left out).
fn validate<'a>(analysis: &'a Analysis, removed: &BTreeMap<String, Vec<usize>>) -> Result<Vec<(&'a Group, Vec<usize>)>> {
    let mut out = Vec::new();
    for (id, elems) in removed {
        let g = analysis.group(id).ok_or_else(|| ConstructError::UnknownGroup(id.clone()))?;
        if elems.is_empty() {
            continue;
        }
        if !g.prunable {
            return Err(ConstructError::Unprunable { group: id.clone(), reasons: g.reasons.join("; ") });
        }
        let set: BTreeSet<usize> = elems.iter().copied().collect();
        if let Some(&e) = set.iter().find(|&&e| e >= g.num_elements) {
            return Err(ConstructError::ElementOutOfRange { group: id.clone(), element: e, count: g.num_elements });
        }
        out.push((g, set.into_iter().collect()));
    }
    Ok(out)
}

/// Builds the compact model: cuts the removed elements (`group id -> element indices`)
/// of every group, rewrites the shape constants, drops what became dead, and records
/// the pruning under [`PRUNED_METADATA_KEY`] in the metadata. Inputs, outputs, opset
/// imports and the other metadata are kept.
pub fn construct(model: &Model, analysis: &Analysis, removed: &BTreeMap<String, Vec<usize>>) -> Result<(Model, ConstructReport)> {
    let groups = validate(analysis, removed)?;
    // A group keeps at least one element: a zero-width tensor is not a model.
    if let Some((g, _)) = groups.iter().find(|(g, elems)| elems.len() >= g.num_elements) {
        return Err(ConstructError::RemovesAll { group: g.id.clone(), count: g.num_elements });
    }
    let graph = Graph::new(model)?;
    let shapes_before = oto_onnx::shape::infer(&graph)?;
    let params_before = oto_onnx::cost::parameter_count(&graph).parameters;
    let macs_before = oto_onnx::cost::macs(&graph, &shapes_before).total;

    let mut proto = model.proto.clone();
    slice::cut_initializers(model, &graph, &groups, &mut proto)?;
    constants::rewrite(model, &graph, &shapes_before, &groups, &mut proto)?;
    caches::rewrite(&graph, &shapes_before, &groups, &mut proto, model.opset())?;
    reads::rewrite(&shapes_before, &groups, &mut proto)?;
    drop_dead(&mut proto);
    record_metadata(&mut proto, &groups);

    let base = model.base_dir().map(|p| p.to_path_buf());
    let name = model.path().to_string_lossy().into_owned();
    let compact = Model::from_proto(proto, &name, base.clone())?;
    let graph_after = Graph::new(&compact)?;
    let shapes_after = oto_onnx::shape::infer(&graph_after)?;
    // Declared intermediate shapes that changed (or are no longer known) are cleared.
    let stale: HashSet<String> = compact
        .proto
        .graph
        .iter()
        .flat_map(|g| g.value_info.iter())
        .filter_map(|v| v.name.clone())
        .filter(|n| {
            let (a, b) = (shapes_before.shape(n), shapes_after.shape(n));
            a.is_none() || b.is_none() || a != b
        })
        .collect();
    let params_after = oto_onnx::cost::parameter_count(&graph_after).parameters;
    let macs_after = oto_onnx::cost::macs(&graph_after, &shapes_after).total;
    drop(graph_after);
    let mut proto = compact.proto;
    if let Some(g) = proto.graph.as_mut() {
        for v in g.value_info.iter_mut() {
            if v.name.as_ref().is_some_and(|n| stale.contains(n)) {
                if let Some(oto_onnx::proto::type_proto::Value::TensorType(t)) = v.r#type.as_mut().and_then(|t| t.value.as_mut()) {
                    t.shape = None;
                }
            }
        }
    }
    let compact = Model::from_proto(proto, &name, base)?;
    let report = ConstructReport {
        params_before,
        params_after,
        macs_before,
        macs_after,
        groups: groups.iter().map(|(g, r)| GroupReport { id: g.id.clone(), kept: g.num_elements - r.len(), removed: r.len() }).collect(),
    };
    Ok((compact, report))
}

/// Removes nodes whose outputs nothing reads (and that are not graph outputs), then
/// initializers nothing reads.
fn drop_dead(proto: &mut ModelProto) {
    let Some(g) = proto.graph.as_mut() else { return };
    let mut live: HashSet<String> = g.output.iter().filter_map(|o| o.name.clone()).collect();
    // Walk nodes backwards: nodes are topologically sorted in a valid model.
    let mut keep = vec![false; g.node.len()];
    loop {
        let mut changed = false;
        for (i, n) in g.node.iter().enumerate().rev() {
            if keep[i] || !n.output.iter().any(|o| live.contains(o)) {
                continue;
            }
            keep[i] = true;
            changed = true;
            live.extend(n.input.iter().filter(|s| !s.is_empty()).cloned());
            // Subgraph attributes (If, Loop) may read outer values by name.
            oto_onnx::graph::subgraph_reads(n, &mut live);
        }
        if !changed {
            break;
        }
    }
    let mut i = 0;
    g.node.retain(|_| {
        i += 1;
        keep[i - 1]
    });
    let inputs: HashSet<String> = g.input.iter().filter_map(|v| v.name.clone()).collect();
    g.initializer.retain(|t| t.name.as_ref().is_some_and(|n| live.contains(n) || inputs.contains(n)));
}

fn record_metadata(proto: &mut ModelProto, groups: &[(&Group, Vec<usize>)]) {
    let mut entries = serde_json::Map::new();
    for (g, r) in groups {
        entries.insert(g.id.clone(), serde_json::json!({ "kept": g.num_elements - r.len(), "removed": r.len() }));
    }
    let value = serde_json::Value::Object(entries).to_string();
    proto.metadata_props.retain(|e| e.key.as_deref() != Some(PRUNED_METADATA_KEY));
    proto.metadata_props.push(StringStringEntryProto { key: Some(PRUNED_METADATA_KEY.to_string()), value: Some(value) });
}

/// The model with the producer slices of the given elements set to exactly 0.0: what
/// the optimizer leaves behind for pruned elements. `oto check` uses it to simulate a
/// pruned model; construction of the result must then compute the same outputs.
pub fn zero_producers(model: &Model, analysis: &Analysis, elements: &BTreeMap<String, Vec<usize>>) -> Result<Model> {
    let groups = validate(analysis, elements)?;
    /// One producer slice to zero: the group, the axis, the indices along it.
    type Edit<'a> = (&'a Group, usize, Vec<usize>);
    // Offsets to zero, per producer initializer.
    let mut cuts: HashMap<&str, Vec<Edit<'_>>> = HashMap::new();
    for (g, elems) in &groups {
        for m in g.members.iter().filter(|m| m.role == oto_graph::Role::Producer) {
            let idx: Vec<usize> = elems.iter().flat_map(|&e| m.map.indices(e)).collect();
            cuts.entry(m.initializer.as_str()).or_default().push((g, m.axis, idx));
        }
    }
    let graph = Graph::new(model)?;
    let mut replaced: HashMap<String, oto_onnx::proto::TensorProto> = HashMap::new();
    for (name, edits) in &cuts {
        let Some(t) = graph.initializer(name) else {
            let (g, _, _) = &edits[0];
            return Err(mismatch(g, format!("member '{name}' is not an initializer")));
        };
        let mut tensor = model.tensor(t)?;
        for (g, axis, idx) in edits {
            let view =
                slice::AxisView::new(&tensor.shape, *axis).ok_or_else(|| mismatch(g, format!("member '{name}' has no axis {axis}")))?;
            if let Some(&bad) = idx.iter().find(|&&i| i >= view.len) {
                return Err(mismatch(g, format!("member '{name}' has {} entries on axis {axis}; index {bad} is out of range", view.len)));
            }
            let offsets: Vec<usize> = idx.iter().flat_map(|&i| view.offsets(i)).collect();
            if !slice::set_zero(&mut tensor.data, offsets.into_iter()) {
                return Err(mismatch(g, format!("producer '{name}' is not a floating-point tensor")));
            }
        }
        replaced.insert(name.to_string(), tensor.to_proto(name));
    }
    let mut proto = model.proto.clone();
    if let Some(graph) = proto.graph.as_mut() {
        for t in graph.initializer.iter_mut() {
            if let Some(new) = t.name.as_deref().and_then(|n| replaced.remove(n)) {
                let doc = t.doc_string.take();
                *t = new;
                t.doc_string = doc;
            }
        }
    }
    Ok(Model::from_proto(proto, &model.path().to_string_lossy(), model.base_dir().map(std::path::Path::to_path_buf))?)
}
