//! Rewriting the width-encoding integers (Reshape targets, Split sizes, a Conv's
//! `group`...): each entry decreases by `per_element` per removed element. A constant
//! read by nodes that do not all follow the same groups gets one copy per distinct set
//! of edits, so that each node reads exactly the edits of the groups it follows.

use crate::{mismatch, nodes, Result};
use oto_graph::{Group, ShapeLocation};
use oto_onnx::graph::NodeExt;
use oto_onnx::op::{Op, Reduce, ReduceKind, WrittenLayerNorm};
use oto_onnx::proto::{attribute_proto::AttributeType, ModelProto, NodeProto, TensorProto};
use oto_onnx::shape::Shapes;
use oto_onnx::{DType, Graph, Model, Tensor, TensorData};
use std::collections::{BTreeMap, HashMap, HashSet};

/// A computed value whose entries are pinned: name, number of entries, whether a scalar.
type PinnedValue<'a> = (&'a str, usize, bool);

/// One decrease of one entry on behalf of one group.
struct Edit<'a> {
    entry: usize,
    delta: i64,
    /// Nodes that read the constant on the group's behalf (empty: all readers).
    nodes: HashSet<&'a str>,
    group: &'a Group,
}

/// Applies every shape-constant edit of `groups` to `proto` (whose nodes are still
/// those of `graph`, in the same order).
pub(crate) fn rewrite(
    model: &Model,
    graph: &Graph<'_>,
    shapes: &Shapes,
    groups: &[(&Group, Vec<usize>)],
    proto: &mut ModelProto,
) -> Result<()> {
    let mut by_location: BTreeMap<&ShapeLocation, Vec<Edit<'_>>> = BTreeMap::new();
    for (g, removed) in groups {
        for sc in &g.shape_constants {
            let count = i64::try_from(removed.len()).unwrap_or(i64::MAX);
            by_location.entry(&sc.location).or_default().push(Edit {
                entry: sc.entry,
                delta: sc.per_element.saturating_mul(count),
                nodes: sc.nodes.iter().map(String::as_str).collect(),
                group: g,
            });
        }
    }
    let mut names: HashSet<String> = all_names(proto);
    let mut inserts: Vec<(usize, Vec<NodeProto>)> = Vec::new();
    // Pins first: the edits of other entries of the same value read the pinned value.
    let mut pins: BTreeMap<PinnedValue<'_>, Vec<(usize, i64)>> = BTreeMap::new();
    for (location, edits) in &by_location {
        if let ShapeLocation::Pinned { value, len, scalar, entry, original } = location {
            let removed = edits.iter().try_fold(0i64, |acc, e| acc.checked_add(e.delta));
            let Some(pinned) = removed.and_then(|r| original.checked_sub(r)) else {
                return Err(mismatch(edits[0].group, format!("{location}: the edits overflow")));
            };
            pins.entry((value.as_str(), *len, *scalar)).or_default().push((*entry, pinned));
        }
    }
    for ((value, len, scalar), entries) in pins {
        let shape = if scalar { Vec::new() } else { vec![len] };
        pin_entries(graph, proto, value, &shape, &entries, &mut names, &mut inserts).map_err(|m| mismatch(groups[0].0, m))?;
    }
    // The padded copy of each layer norm's scale or bias, made once for all the layer
    // norms that read it (a merged decoder's two branches).
    let mut padded_parameters: PaddedParameters = HashMap::new();
    for (location, edits) in &by_location {
        match location {
            ShapeLocation::Pinned { .. } => {}
            ShapeLocation::Attribute { node, attribute } => edit_attribute(proto, node, attribute, edits)?,
            ShapeLocation::Initializer { name } => edit_shared(model, graph, proto, name, None, edits, &mut names, &mut inserts)?,
            ShapeLocation::Computed { value, len } => edit_computed(graph, proto, value, *len, edits, &mut names, &mut inserts)?,
            ShapeLocation::MeanDivisor { value, count } => edit_mean(graph, shapes, proto, value, *count, edits, &mut names, &mut inserts)?,
            ShapeLocation::NormWidth { value, axis, size, .. } => pad_norm(
                graph,
                shapes,
                proto,
                model.opset(),
                (value, *axis, *size),
                edits,
                &mut names,
                &mut padded_parameters,
                &mut inserts,
            )?,
            ShapeLocation::ConstantNode { node } => {
                let Some((index, n)) = graph.nodes().find(|(_, n)| n.name.as_deref() == Some(node.as_str())) else {
                    return Err(mismatch(
                        edits[0].group,
                        format!("shape constant in Constant node '{node}', which the model does not have"),
                    ));
                };
                let Some(value) = n.output.first() else {
                    return Err(mismatch(edits[0].group, format!("Constant node '{node}' has no output")));
                };
                edit_shared(model, graph, proto, value, Some(index), edits, &mut names, &mut inserts)?;
            }
        }
    }
    if let Some(gp) = proto.graph.as_mut() {
        // Insert nodes right after the node they follow (in the order they came), from the
        // back so indices stay valid.
        let mut after: BTreeMap<usize, Vec<NodeProto>> = BTreeMap::new();
        for (i, nodes) in inserts {
            after.entry(i).or_default().extend(nodes);
        }
        for (i, nodes) in after.into_iter().rev() {
            gp.node.splice(i + 1..i + 1, nodes);
        }
    }
    Ok(())
}

pub(crate) fn all_names(proto: &ModelProto) -> HashSet<String> {
    let mut names = HashSet::new();
    if let Some(g) = &proto.graph {
        names.extend(g.initializer.iter().filter_map(|t| t.name.clone()));
        names.extend(g.input.iter().filter_map(|v| v.name.clone()));
        for n in &g.node {
            names.extend(n.output.iter().cloned());
            names.extend(n.name.clone());
        }
    }
    names
}

pub(crate) fn fresh(names: &mut HashSet<String>, base: &str) -> String {
    let mut k = 1;
    loop {
        let candidate = format!("{base}.oto{k}");
        if names.insert(candidate.clone()) {
            return candidate;
        }
        k += 1;
    }
}

fn edit_attribute(proto: &mut ModelProto, node: &str, attribute: &str, edits: &[Edit<'_>]) -> Result<()> {
    let g = edits[0].group;
    let Some(n) = proto.graph.as_mut().and_then(|gp| gp.node.iter_mut().find(|n| n.name.as_deref() == Some(node))) else {
        return Err(mismatch(g, format!("shape constant in node '{node}', which the model does not have")));
    };
    let label = format!("{} ({})", node, n.op());
    let Some(a) = n.attribute.iter_mut().find(|a| a.name.as_deref() == Some(attribute)) else {
        return Err(mismatch(g, format!("node {label} has no attribute '{attribute}'")));
    };
    for e in edits {
        let value = match AttributeType::try_from(a.r#type.unwrap_or(0)) {
            Ok(AttributeType::Int) if e.entry == 0 => a.i.get_or_insert(0),
            Ok(AttributeType::Ints) if e.entry < a.ints.len() => &mut a.ints[e.entry],
            _ => return Err(mismatch(e.group, format!("attribute '{attribute}' of node {label} has no integer entry {}", e.entry))),
        };
        *value = value
            .checked_sub(e.delta)
            .ok_or_else(|| mismatch(e.group, format!("attribute '{attribute}' of node {label}: {value} minus {} overflows", e.delta)))?;
    }
    Ok(())
}

/// The integer values of a constant and a way to write them back in its own type.
fn decode(model: &Model, t: &TensorProto, g: &Group, what: &str) -> Result<Tensor> {
    let t = model.tensor(t)?;
    match t.data {
        TensorData::I64(_) | TensorData::I32(_) => Ok(t),
        _ => Err(mismatch(g, format!("shape constant {what} is not an int32/int64 tensor"))),
    }
}

fn apply(t: &Tensor, edits: &[&Edit<'_>], what: &str) -> Result<Tensor> {
    let mut out = t.clone();
    for e in edits {
        let ok = match &mut out.data {
            TensorData::I64(v) => v.get_mut(e.entry).and_then(|x| x.checked_sub(e.delta).map(|y| *x = y)).is_some(),
            TensorData::I32(v) => v.get_mut(e.entry).and_then(|x| i32::try_from(i64::from(*x) - e.delta).ok().map(|y| *x = y)).is_some(),
            _ => false,
        };
        if !ok {
            return Err(mismatch(e.group, format!("shape constant {what} has no entry {} (or it overflows)", e.entry)));
        }
    }
    Ok(out)
}

/// Edits a constant value (an initializer, or the output of the Constant node at
/// `constant_node`) read by possibly several nodes.
#[allow(clippy::too_many_arguments)]
fn edit_shared(
    model: &Model,
    graph: &Graph<'_>,
    proto: &mut ModelProto,
    value: &str,
    constant_node: Option<usize>,
    edits: &[Edit<'_>],
    names: &mut HashSet<String>,
    inserts: &mut Vec<(usize, Vec<NodeProto>)>,
) -> Result<()> {
    let g0 = edits[0].group;
    let what = match constant_node {
        Some(_) => format!("'{value}' (Constant node output)"),
        None => format!("initializer '{value}'"),
    };
    let original = match constant_node {
        None => {
            let t = graph
                .initializer(value)
                .ok_or_else(|| mismatch(g0, format!("shape constant in initializer '{value}', which the model does not have")))?;
            decode(model, t, g0, &what)?
        }
        Some(_) => {
            let t = graph.constant(value)?.ok_or_else(|| mismatch(g0, format!("{what} is not constant")))?;
            match t.data {
                TensorData::I64(_) | TensorData::I32(_) => t,
                _ => return Err(mismatch(g0, format!("shape constant {what} is not an int32/int64 tensor"))),
            }
        }
    };
    // Readers, each with the edits that apply to it.
    let mut readers: Vec<usize> = graph.consumers(value).iter().map(|u| u.node).collect();
    readers.sort_unstable();
    readers.dedup();
    for e in edits {
        if !e.nodes.is_empty() && !readers.iter().any(|&r| e.nodes.contains(graph.node(r).name.as_deref().unwrap_or(""))) {
            return Err(mismatch(e.group, format!("shape constant {what}: none of the nodes {:?} reads it", e.nodes)));
        }
    }
    let mut classes: BTreeMap<Vec<usize>, Vec<usize>> = BTreeMap::new();
    for &r in &readers {
        let name = graph.node(r).name.as_deref().unwrap_or("");
        let sig: Vec<usize> =
            edits.iter().enumerate().filter(|(_, e)| e.nodes.is_empty() || e.nodes.contains(name)).map(|(i, _)| i).collect();
        classes.entry(sig).or_default().push(r);
    }
    // A graph output reading the value needs the original.
    if graph.is_output(value) {
        classes.entry(Vec::new()).or_default();
    }
    let Some(gp) = proto.graph.as_mut() else { return Ok(()) };
    // The class without edits keeps the original; otherwise the first class edits it in place.
    let in_place: Option<Vec<usize>> = if classes.contains_key(&Vec::new()) { None } else { classes.keys().next().cloned() };
    for (sig, nodes) in &classes {
        if sig.is_empty() {
            continue;
        }
        let chosen: Vec<&Edit<'_>> = sig.iter().map(|&i| &edits[i]).collect();
        let edited = apply(&original, &chosen, &what)?;
        if in_place.as_ref() == Some(sig) {
            write_back(gp, value, constant_node, &edited);
            continue;
        }
        let copy = fresh(names, value);
        match constant_node {
            None => gp.initializer.push(edited.to_proto(&copy)),
            Some(index) => {
                let mut n = gp.node[index].clone();
                n.name = Some(fresh(names, n.name.as_deref().unwrap_or("Constant")));
                n.output = vec![copy.clone()];
                n.attribute = vec![oto_onnx::proto::AttributeProto {
                    name: Some("value".to_string()),
                    r#type: Some(AttributeType::Tensor as i32),
                    t: Some(edited.to_proto(&copy)),
                    ..Default::default()
                }];
                inserts.push((index, vec![n]));
            }
        }
        for &r in nodes {
            for inp in gp.node[r].input.iter_mut().filter(|i| *i == value) {
                *inp = copy.clone();
            }
        }
    }
    Ok(())
}

/// Edits a 1-D int64 value computed at run time: each reader with edits reads
/// `Sub(value, delta)` instead, inserted right after the value's producer (one Sub per
/// distinct delta).
fn edit_computed(
    graph: &Graph<'_>,
    proto: &mut ModelProto,
    value: &str,
    len: usize,
    edits: &[Edit<'_>],
    names: &mut HashSet<String>,
    inserts: &mut Vec<(usize, Vec<NodeProto>)>,
) -> Result<()> {
    let g0 = edits[0].group;
    let Some((producer, _)) = graph.producer_node(value) else {
        return Err(mismatch(g0, format!("shape value '{value}' is not computed by a node of the model")));
    };
    let mut readers: Vec<usize> = graph.consumers(value).iter().map(|u| u.node).collect();
    readers.sort_unstable();
    readers.dedup();
    for e in edits {
        if e.entry >= len {
            return Err(mismatch(e.group, format!("shape value '{value}' has {len} entries, not an entry {}", e.entry)));
        }
        if !e.nodes.is_empty() && !readers.iter().any(|&r| e.nodes.contains(graph.node(r).name.as_deref().unwrap_or(""))) {
            return Err(mismatch(e.group, format!("shape value '{value}': none of the nodes {:?} reads it", e.nodes)));
        }
    }
    let mut classes: BTreeMap<Vec<i64>, Vec<usize>> = BTreeMap::new();
    for &r in &readers {
        let name = graph.node(r).name.as_deref().unwrap_or("");
        let mut delta = vec![0i64; len];
        for e in edits.iter().filter(|e| e.nodes.is_empty() || e.nodes.contains(name)) {
            delta[e.entry] = delta[e.entry].saturating_add(e.delta);
        }
        if delta.iter().any(|&d| d != 0) {
            classes.entry(delta).or_default().push(r);
        }
    }
    let Some(gp) = proto.graph.as_mut() else { return Ok(()) };
    for (delta, nodes) in classes {
        let Some(t) = Tensor::new(vec![len], TensorData::I64(delta)) else {
            return Err(mismatch(g0, format!("shape value '{value}': cannot build its edit")));
        };
        let delta_name = fresh(names, &format!("{value}.delta"));
        let edited = fresh(names, value);
        gp.initializer.push(t.to_proto(&delta_name));
        let sub = nodes::node(names, "Sub", &format!("{value}.edit"), vec![value.to_string(), delta_name], &edited);
        inserts.push((producer, vec![sub]));
        for r in nodes {
            for inp in gp.node[r].input.iter_mut().filter(|i| *i == value) {
                *inp = edited.clone();
            }
        }
    }
    Ok(())
}

/// Replaces `entries` (entry, value) of the computed int64 `value` of shape `shape` (a
/// vector, or a scalar) by constants: the node computing it writes another name, and
/// `value` becomes that times a mask that is 0 at the entries, plus the entries' values
/// (every reader reads the pinned value).
fn pin_entries(
    graph: &Graph<'_>,
    proto: &mut ModelProto,
    value: &str,
    shape: &[usize],
    entries: &[(usize, i64)],
    names: &mut HashSet<String>,
    inserts: &mut Vec<(usize, Vec<NodeProto>)>,
) -> std::result::Result<(), String> {
    let Some((producer, node)) = graph.producer_node(value) else {
        return Err(format!("the shape value '{value}' is not computed by a node of the model"));
    };
    let len = shape.iter().product::<usize>();
    let (mut mask, mut fill) = (vec![1i64; len], vec![0i64; len]);
    for &(entry, v) in entries {
        if entry >= len {
            return Err(format!("the shape value '{value}' has {len} entries, not an entry {entry}"));
        }
        (mask[entry], fill[entry]) = (0, v);
    }
    let Some(gp) = proto.graph.as_mut() else { return Ok(()) };
    let stem = node.name.as_deref().filter(|s| !s.is_empty()).unwrap_or(value).to_string();
    let (measured, masked) = (fresh(names, &format!("{value}.measured")), fresh(names, &format!("{value}.masked")));
    let (mask_name, fill_name) = (fresh(names, &format!("{value}.mask")), fresh(names, &format!("{value}.pinned")));
    for (name, data) in [(&mask_name, mask), (&fill_name, fill)] {
        let Some(t) = Tensor::new(shape.to_vec(), TensorData::I64(data)) else {
            return Err(format!("the shape value '{value}': cannot build its pin"));
        };
        gp.initializer.push(t.to_proto(name));
    }
    for out in gp.node[producer].output.iter_mut().filter(|o| *o == value) {
        *out = measured.clone();
    }
    let pin = format!("{stem}.pin");
    let mul = nodes::node(names, "Mul", &pin, vec![measured, mask_name], &masked);
    let add = nodes::node(names, "Add", &pin, vec![masked, fill_name], value);
    inserts.push((producer, vec![mul, add]));
    Ok(())
}

/// Keeps a mean dividing by its original `count` entries once some are cut. A
/// `ReduceMean` now computed over `remaining` entries is multiplied by
/// `remaining / count`. An `RMSNormalization` computes
/// `x / sqrt(S / remaining + eps) * w`: with its epsilon times `count / remaining` that is
/// `sqrt(remaining / count)` times `x / sqrt(S / count + eps) * w`, so its output is
/// multiplied by `sqrt(count / remaining)`. The `Mul` is inserted after the node and
/// takes over its output name.
#[allow(clippy::too_many_arguments)]
fn edit_mean(
    graph: &Graph<'_>,
    shapes: &Shapes,
    proto: &mut ModelProto,
    value: &str,
    count: u64,
    edits: &[Edit<'_>],
    names: &mut HashSet<String>,
    inserts: &mut Vec<(usize, Vec<NodeProto>)>,
) -> Result<()> {
    let g0 = edits[0].group;
    let kind = |n: &NodeProto| match Op::parse(graph, n) {
        Ok(Op::Reduce(Reduce { kind: ReduceKind::Mean, .. })) => Some(None),
        Ok(Op::RmsNormalization(l)) => Some(Some(l.epsilon)),
        _ => None,
    };
    // `rms`: the RMSNormalization's epsilon; `None` for a ReduceMean.
    let Some((producer, node, rms)) = graph.producer_node(value).and_then(|(p, n)| Some((p, n, kind(n)?))) else {
        return Err(mismatch(g0, format!("the mean '{value}' is not the output of a ReduceMean or RMSNormalization node of the model")));
    };
    let removed = edits.iter().try_fold(0i64, |acc, e| acc.checked_add(e.delta));
    let count_i = i64::try_from(count).ok();
    let remaining = removed.zip(count_i).and_then(|(r, c)| c.checked_sub(r)).filter(|&r| r > 0);
    let Some(remaining) = remaining else {
        return Err(mismatch(g0, format!("the mean '{value}' over {count} entries would lose all of them")));
    };
    if remaining == count_i.unwrap_or(remaining) {
        return Ok(());
    }
    let ratio = remaining as f64 / count as f64;
    let factor = if rms.is_some() { ratio.recip().sqrt() } else { ratio };
    let data = match shapes.dtype(value) {
        Some(DType::F32) => TensorData::F32(vec![factor as f32]),
        Some(DType::F64) => TensorData::F64(vec![factor]),
        Some(DType::F16) => TensorData::F16(vec![half::f16::from_f64(factor)]),
        Some(DType::Bf16) => TensorData::Bf16(vec![half::bf16::from_f64(factor)]),
        other => return Err(mismatch(g0, format!("the mean '{value}' has element type {other:?}, not a float type"))),
    };
    let Some(t) = Tensor::new(Vec::new(), data) else {
        return Err(mismatch(g0, format!("the mean '{value}': cannot build its scale")));
    };
    let Some(gp) = proto.graph.as_mut() else { return Ok(()) };
    if let Some(eps) = rms {
        let eps = (f64::from(eps) / ratio) as f32;
        let n = &mut gp.node[producer];
        n.attribute.retain(|a| a.name.as_deref() != Some("epsilon"));
        n.attribute.push(oto_onnx::proto::AttributeProto {
            name: Some("epsilon".to_string()),
            r#type: Some(AttributeType::Float as i32),
            f: Some(eps),
            ..Default::default()
        });
    }
    let scale = fresh(names, &format!("{value}.divisor"));
    let unscaled = fresh(names, value);
    gp.initializer.push(t.to_proto(&scale));
    for out in gp.node[producer].output.iter_mut().filter(|o| *o == value) {
        *out = unscaled.clone();
    }
    let stem = node.name.as_deref().filter(|s| !s.is_empty()).unwrap_or(value).to_string();
    let mul = nodes::node(names, "Mul", &format!("{stem}.divisor"), vec![unscaled, scale], value);
    inserts.push((producer, vec![mul]));
    Ok(())
}

/// Keeps a layer normalization whose input lost channels along `axis` (of original
/// width `size`) normalizing over the original width: its input is padded with zeros at
/// the end of `axis` and its result keeps the first positions (a `Slice` that takes over
/// the output's name). Zeros change neither the sum nor the sum of squares, so mean and
/// variance are the full layer's. A `LayerNormalization` node becomes the `Pad`, the
/// layer (its scale and bias, already cut, padded with zeros the same way) and the
/// `Slice`; a normalization written out ([`WrittenLayerNorm`]) reads the padded input
/// where it reads the input: in the division form its scale and bias, which follow it,
/// stay cut; in the batch-normalization form they are inside, padded with zeros. An
/// `InstanceNormalization` over a spatial axis (tf2onnx's layer normalization) is padded
/// as the operator, its scale and bias, along its channels, unchanged.
#[allow(clippy::too_many_arguments)]
fn pad_norm(
    graph: &Graph<'_>,
    shapes: &Shapes,
    proto: &mut ModelProto,
    opset: i64,
    (value, axis, size): (&str, usize, u64),
    edits: &[Edit<'_>],
    names: &mut HashSet<String>,
    padded: &mut PaddedParameters,
    inserts: &mut Vec<(usize, Vec<NodeProto>)>,
) -> Result<()> {
    let g0 = edits[0].group;
    let removed = edits.iter().try_fold(0i64, |acc, e| acc.checked_add(e.delta));
    let size_i = i64::try_from(size).ok();
    let remaining = removed.zip(size_i).and_then(|(r, c)| c.checked_sub(r)).filter(|&r| r > 0);
    let (Some(removed), Some(remaining)) = (removed, remaining) else {
        return Err(mismatch(g0, format!("the {size} normalized channels of '{value}' would all be removed")));
    };
    if removed == 0 {
        return Ok(());
    }
    let Some((producer, node)) = graph.producer_node(value) else {
        return Err(mismatch(g0, format!("the normalized value '{value}' is not the output of a node of the model")));
    };
    // An InstanceNormalization's scale and bias run along its channels (axis 1), not
    // along the normalized width: they keep their size.
    let mut pad_parameters = true;
    let written = match Op::parse(graph, node) {
        Ok(Op::LayerNormalization(_)) => None,
        Ok(Op::InstanceNormalization) if axis >= 2 => {
            pad_parameters = false;
            None
        }
        _ => match WrittenLayerNorm::ending_at(graph, Some(shapes), value) {
            Some(w) => Some(w),
            None => return Err(mismatch(g0, format!("'{value}' is not the output of a layer normalization"))),
        },
    };
    let x = match &written {
        Some(w) => w.x.clone(),
        None => node.input.first().cloned().unwrap_or_default(),
    };
    let Some(rank) = shapes.shape(&x).map(<[oto_onnx::Dim]>::len).filter(|&r| axis < r) else {
        return Err(mismatch(g0, format!("the input '{x}' normalized into '{value}' has no axis {axis}")));
    };
    let Some(gp) = proto.graph.as_mut() else { return Ok(()) };
    let stem = node.name.as_deref().filter(|s| !s.is_empty()).unwrap_or(value).to_string();
    let padded_in = fresh(names, &format!("{x}.padded"));
    let padded_out = fresh(names, &format!("{value}.padded"));
    let mut pads = vec![0i64; 2 * rank];
    pads[rank + axis] = removed;
    let pad = nodes::pad_zeros(names, &mut gp.initializer, opset, &format!("{stem}.pad"), &x, &padded_in, pads);
    // The result's axis: the input's, or where a transpose inside the pattern moved it.
    let out_axis = written.as_ref().and_then(|w| w.perm.as_ref()).and_then(|p| p.iter().position(|&a| a == axis)).unwrap_or(axis);
    let slice =
        nodes::first_positions(names, &mut gp.initializer, opset, &format!("{stem}.slice"), &padded_out, value, out_axis, remaining);
    let Some(w) = written else {
        // The node's place holds the Pad; the layer and the Slice follow it.
        let mut norm = gp.node[producer].clone();
        for p in 1..norm.input.len().min(3) {
            if pad_parameters && !norm.input[p].is_empty() {
                norm.input[p] = padded_parameter(gp, names, padded, g0, &norm.input[p], axis, rank, removed)?;
            }
        }
        norm.input[0] = padded_in;
        for out in norm.output.iter_mut().filter(|o| *o == value) {
            *out = padded_out.clone();
        }
        gp.node[producer] = pad;
        inserts.push((producer, vec![norm, slice]));
        return Ok(());
    };
    // The first reader's place holds the Pad, the reader follows it; the nodes that read the input
    // read it padded (the scale and bias inside the batch-normalization form too, padded
    // with zeros); the pattern's last node writes the padded result, which the Slice cuts.
    let mut padded_params = Vec::new();
    for p in w.scale.iter().chain(&w.bias) {
        padded_params.push((p.clone(), padded_parameter(gp, names, padded, g0, p, axis, rank, removed)?));
    }
    for &k in &w.nodes {
        let reads_x = w.x_readers.contains(&k);
        for input in gp.node[k].input.iter_mut() {
            if reads_x && *input == x {
                *input = padded_in.clone();
            } else if let Some((_, padded)) = padded_params.iter().find(|(p, _)| p == input) {
                *input = padded.clone();
            }
        }
    }
    // (The first reader of the input may come before the mean: a Shape for a count.)
    let first = w.x_readers.iter().copied().min().unwrap_or(w.mean);
    let displaced = std::mem::replace(&mut gp.node[first], pad);
    inserts.push((first, vec![displaced]));
    for out in gp.node[w.end].output.iter_mut().filter(|o| *o == value) {
        *out = padded_out.clone();
    }
    inserts.push((w.end, vec![slice]));
    Ok(())
}

/// The padded copies made so far: (parameter, input axis, input rank, zeros) -> its name.
type PaddedParameters = HashMap<(String, usize, usize, i64), String>;

/// A copy of the (cut) scale or bias `name` of a layer normalization over an input of
/// rank `rank`, with `count` zeros appended along its axis matching the input's `axis`
/// (parameters broadcast against the normalized axes, aligned at the end); its name. The
/// copy made for an earlier layer norm reading the same parameter the same way is reused.
#[allow(clippy::too_many_arguments)]
fn padded_parameter(
    gp: &mut oto_onnx::proto::GraphProto,
    names: &mut HashSet<String>,
    made: &mut PaddedParameters,
    g0: &Group,
    name: &str,
    axis: usize,
    rank: usize,
    count: i64,
) -> Result<String> {
    let key = (name.to_string(), axis, rank, count);
    if let Some(copy) = made.get(&key) {
        return Ok(copy.clone());
    }
    let Some(t) = gp.initializer.iter().find(|t| t.name.as_deref() == Some(name)) else {
        return Err(mismatch(g0, format!("the scale or bias '{name}' of a layer normalization is not an initializer")));
    };
    let tensor = Tensor::from_proto(t, None).map_err(|e| mismatch(g0, format!("initializer '{name}': {}", e.0)))?;
    let k = (axis + tensor.shape.len()).checked_sub(rank).filter(|&k| k < tensor.shape.len());
    let (Some(k), Ok(count)) = (k, usize::try_from(count)) else {
        return Err(mismatch(g0, format!("the scale or bias '{name}' has no entries along axis {axis}")));
    };
    let Some(view) = crate::slice::AxisView::new(&tensor.shape, k) else {
        return Err(mismatch(g0, format!("the scale or bias '{name}' has no axis {k}")));
    };
    let Some(data) = crate::slice::pad_data(&tensor.data, &view, count) else {
        return Err(mismatch(g0, format!("the scale or bias '{name}' is not a float tensor")));
    };
    let mut shape = tensor.shape.clone();
    shape[k] = view.len + count;
    let Some(padded) = Tensor::new(shape, data) else {
        return Err(mismatch(g0, format!("the scale or bias '{name}': cannot pad it")));
    };
    let padded_name = fresh(names, &format!("{name}.padded"));
    gp.initializer.push(padded.to_proto(&padded_name));
    made.insert(key, padded_name.clone());
    Ok(padded_name)
}

fn write_back(gp: &mut oto_onnx::proto::GraphProto, value: &str, constant_node: Option<usize>, edited: &Tensor) {
    match constant_node {
        None => {
            for t in gp.initializer.iter_mut().filter(|t| t.name.as_deref() == Some(value)) {
                *t = edited.to_proto(value);
            }
        }
        Some(index) => {
            let n = &mut gp.node[index];
            let tensor_name = n.attribute.first().and_then(|a| a.t.as_ref()).and_then(|t| t.name.clone()).unwrap_or_default();
            n.attribute = vec![oto_onnx::proto::AttributeProto {
                name: Some("value".to_string()),
                r#type: Some(AttributeType::Tensor as i32),
                t: Some(edited.to_proto(&tensor_name)),
                ..Default::default()
            }];
        }
    }
}
