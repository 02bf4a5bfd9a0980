//! Raising a model's default-domain opset, keeping what it computes.
//!
//! QDQ needs opset 13 (per-axis scales) or 21 (blocked int4). Raising the opset changes
//! the meaning of the nodes whose operator got a new definition in between; every such
//! node is converted to the new form or the model is refused with an error naming it:
//!
//! * converted: the `axes` attribute of `Squeeze`/`Unsqueeze`/`ReduceSum` (13) and of
//!   the other `Reduce*` (18) becomes an int64 initializer input; `Split`'s `split`
//!   attribute becomes input 1 (13), and a `Split` without sizes gets `num_outputs` (18,
//!   which requires one of them); `Softmax`/`LogSoftmax`/`Hardmax` (13: from "flatten
//!   to 2-D at `axis`" to "along `axis`") when `axis` is the input's last axis, where
//!   both definitions agree (the axis written explicitly); `Dropout` (10: the mask
//!   became boolean; 12: `ratio` became input 1), an identity at inference, when its
//!   mask is not read (the ratio moves to an f32 initializer input);
//! * refused: `Slice`, `TopK`, `Upsample` (10), `Clip`, `Pad`, `Resize` (11), a
//!   `Dropout` whose mask is read, `Softmax`-family nodes on another axis or of unknown rank (13), `DFT`,
//!   `GridSample` (20), `GroupNormalization` (21: its scale and bias went from one value
//!   per group to one per channel).
//!
//! The other operators only gained element types or optional inputs with defaults that
//! keep the old behavior (e.g. `Reshape`'s `allowzero`, `Pad`'s `axes`).

use crate::rewrite::{int_attr, Names};
use crate::{Error, Result};
use oto_onnx::graph::{node_label, Graph, NodeExt};
use oto_onnx::op::{default_domain, Op, ReduceKind, Softmax};
use oto_onnx::proto::{ModelProto, NodeProto, OperatorSetIdProto, TensorProto};
use oto_onnx::{ops, Model, Tensor};

/// The versions (in increasing order) at which `op`'s definition changed in a way that
/// matters when raising the opset; see the module documentation.
fn changes(op: &str) -> &'static [i64] {
    match op {
        "Squeeze" | "Unsqueeze" | "ReduceSum" | "Softmax" | "LogSoftmax" | "Hardmax" => &[13],
        "Split" => &[13, 18],
        op if ReduceKind::parse(op).is_some() => &[18],
        "Slice" | "TopK" | "Upsample" => &[10],
        "Clip" | "Pad" | "Resize" => &[11],
        "Dropout" => &[10, 12],
        "DFT" | "GridSample" => &[20],
        "GroupNormalization" => &[21],
        _ => &[],
    }
}

/// The smallest IR version that can hold default-domain opset `opset`.
fn ir_for(opset: i64) -> i64 {
    match opset {
        ..=12 => 3,
        13..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

/// `model` at default-domain opset `target` (unchanged when already there or above),
/// every node whose definition changed in between converted, or an error naming the
/// first node that cannot be converted.
pub fn raise(model: &Model, target: i64) -> Result<ModelProto> {
    let from = model.opset();
    let mut proto = model.proto.clone();
    if from >= target {
        return Ok(proto);
    }
    let graph = Graph::new(model)?;
    let shapes = oto_onnx::shape::infer(&graph).ok();
    let mut names = Names::of(&model.proto);
    let mut added: Vec<TensorProto> = Vec::new();
    let mut nodes = Vec::with_capacity(graph.proto.node.len());
    for node in &graph.proto.node {
        let crossed: Vec<i64> = changes(node.op()).iter().copied().filter(|&v| v > from && v <= target).collect();
        if !default_domain(node) || crossed.is_empty() {
            nodes.push(node.clone());
            continue;
        }
        let refuse = |why: &str| {
            Error::Model(format!(
                "{}: {}: cannot raise the opset from {from} to {target} (needed by the quantized model): {why}",
                model.path().display(),
                node_label(node)
            ))
        };
        let mut new = node.clone();
        match node.op() {
            "Squeeze" | "Unsqueeze" => axes_to_input(&graph, node, &mut new, &mut names, &mut added)?,
            op if ReduceKind::parse(op).is_some() => axes_to_input(&graph, node, &mut new, &mut names, &mut added)?,
            "Split" => {
                let Op::Split(split) = Op::parse(&graph, node)? else { return Err(refuse("is not a Split")) };
                let split = split.resolve(&graph, node, None)?;
                if crossed.contains(&13) {
                    new.attribute.retain(|a| a.name.as_deref() != Some("split"));
                    if let Some(sizes) = &split.sizes {
                        let name = names.fresh(&format!("{}_split", first_output(node)));
                        added.push(Tensor::from_i64s(sizes.clone()).to_proto(&name));
                        new.input.truncate(1);
                        new.input.push(name);
                    }
                }
                let has_sizes = ops::input(&new, 1).is_some();
                if target >= 18 && !has_sizes && new.attr("num_outputs").is_none() {
                    new.attribute.push(int_attr("num_outputs", node.output.len() as i64));
                }
            }
            "Softmax" | "LogSoftmax" | "Hardmax" => {
                let Op::Softmax(Softmax { axis, .. }) = Op::parse(&graph, node)? else {
                    return Err(refuse("is not of the softmax family"));
                };
                let rank = ops::input(node, 0).and_then(|x| shapes.as_ref()?.shape(x)).map(<[_]>::len);
                let Some(rank) = rank else {
                    return Err(refuse("the input's rank is unknown, so whether the opset 13 definition agrees cannot be told"));
                };
                let last = rank as i64 - 1;
                if axis != last && axis != -1 {
                    return Err(refuse(&format!(
                        "axis {axis} of a rank-{rank} input: before opset 13 the operator normalizes over every axis from {axis} on, from 13 over axis {axis} alone"
                    )));
                }
                new.attribute.retain(|a| a.name.as_deref() != Some("axis"));
                new.attribute.push(int_attr("axis", last));
            }
            "Dropout" => {
                if node.output.get(1).is_some_and(|m| !m.is_empty() && (!graph.consumers(m).is_empty() || graph.is_output(m))) {
                    return Err(refuse("its mask output is read, and the mask's type changed at opset 10"));
                }
                new.output.truncate(1);
                if crossed.contains(&12) {
                    let ratio = node.attr_float_or("ratio", 0.5).map_err(|m| refuse(&m))?;
                    new.attribute.retain(|a| !matches!(a.name.as_deref(), Some("ratio" | "is_test")));
                    let name = names.fresh(&format!("{}_ratio", first_output(node)));
                    added.push(
                        Tensor::new(vec![], oto_onnx::TensorData::F32(vec![ratio]))
                            .map(|t| t.to_proto(&name))
                            .ok_or_else(|| refuse("ratio"))?,
                    );
                    new.input.truncate(1);
                    new.input.push(name);
                }
            }
            other => {
                return Err(refuse(&format!("{other} changed its definition at opset {crossed:?} and oto does not convert it")));
            }
        }
        nodes.push(new);
    }
    let g = proto.graph.get_or_insert_with(Default::default);
    g.node = nodes;
    g.initializer.extend(added);
    set_opset(&mut proto, target);
    Ok(proto)
}

/// Sets the default-domain opset import to `opset` and the IR version to at least what it needs.
pub fn set_opset(proto: &mut ModelProto, opset: i64) {
    let entry = proto.opset_import.iter_mut().find(|o| matches!(o.domain.as_deref().unwrap_or(""), "" | "ai.onnx"));
    match entry {
        Some(o) => o.version = Some(opset),
        None => proto.opset_import.push(OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }),
    }
    proto.ir_version = Some(proto.ir_version.unwrap_or(3).max(ir_for(opset)));
}

fn first_output(node: &NodeProto) -> &str {
    node.output.first().map(String::as_str).unwrap_or("node")
}

/// Moves an `axes` attribute (the form before the crossed version) to input 1.
fn axes_to_input(graph: &Graph<'_>, node: &NodeProto, new: &mut NodeProto, names: &mut Names, added: &mut Vec<TensorProto>) -> Result<()> {
    let param = match Op::parse(graph, node)? {
        Op::Reduce(reduce) => reduce.axes,
        Op::Squeeze { axes } | Op::Unsqueeze { axes } => axes,
        _ => return Err(Error::Model(format!("{}: has no 'axes' to move to an input", node_label(node)))),
    };
    let axes = param.resolve(graph, node, None, "axes")?;
    new.attribute.retain(|a| a.name.as_deref() != Some("axes"));
    if let Some(axes) = axes {
        let name = names.fresh(&format!("{}_axes", first_output(node)));
        added.push(Tensor::from_i64s(axes).to_proto(&name));
        new.input.truncate(1);
        new.input.push(name);
    }
    Ok(())
}
