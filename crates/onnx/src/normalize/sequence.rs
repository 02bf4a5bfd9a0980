//! Sequences of a split, read part by part, written as the `Split` they are.
//!
//! The dynamo exporter without its optimizer (`optimize=False`) writes `torch.split` as
//! `SplitToSequence(x, sizes)` followed by a `SequenceAt(sequence, k)` per part (GPT-2's
//! `c_attn(x).split(n, dim=2)` into queries, keys and values). The analysis follows tensors,
//! not sequences, so the projection's channels stopped there. When the sizes and the
//! indices are constants, the split axis's length is known (for one size repeated), and
//! every reader of the sequence is such a `SequenceAt`, the pair is one `Split` whose
//! outputs are the parts read.

use super::{is_default_domain, Names};
use crate::builder::Attr;
use crate::graph::{Graph, NodeExt};
use crate::proto::{GraphProto, NodeProto};
use crate::shape::{Dim, Shapes};
use crate::tensor::Tensor;
use std::collections::HashMap;

/// One `SplitToSequence` to rewrite.
pub(super) struct SequenceSplit {
    /// Its sequence output.
    sequence: String,
    /// The parts' sizes.
    sizes: Vec<i64>,
    /// The output of the first `SequenceAt` of each part (`None`: a part nobody reads),
    /// and the outputs of any further `SequenceAt` of the same part.
    parts: Vec<(Option<String>, Vec<String>)>,
    /// Whether the sizes go in as input 1 (opset 13 on) or as the `split` attribute.
    as_input: bool,
}

/// Every `SplitToSequence` of constant sizes read only by `SequenceAt`s of constant indices.
pub(super) fn plan(view: &Graph<'_>, shapes: &Shapes) -> Vec<SequenceSplit> {
    let known = |v: &str| shapes.shape_value(v).and_then(|d| d.iter().map(Dim::known).collect::<Option<Vec<i64>>>());
    let mut out = Vec::new();
    for (_, node) in view.nodes() {
        if !is_default_domain(node) || node.op() != "SplitToSequence" {
            continue;
        }
        let (Some(x), Some(split), Some(sequence)) = (node.input.first(), node.input.get(1).filter(|s| !s.is_empty()), node.output.first())
        else {
            continue;
        };
        let (Some(dims), Some(given)) = (shapes.shape(x), known(split)) else { continue };
        let rank = dims.len() as i64;
        let axis = node.attr_int("axis").ok().flatten().unwrap_or(0);
        let axis = if axis < 0 { axis + rank } else { axis };
        let Some(len) = usize::try_from(axis).ok().and_then(|a| dims.get(a)).and_then(Dim::known) else { continue };
        let scalar = shapes.shape(split).is_some_and(|d| d.is_empty());
        let sizes = match (scalar, given.as_slice()) {
            // One size repeated; the last part takes what is left.
            (true, [size]) if *size > 0 => (0..len).step_by(usize::try_from(*size).unwrap_or(1)).map(|at| (*size).min(len - at)).collect(),
            (false, sizes) if sizes.iter().all(|&s| s >= 0) && sizes.iter().sum::<i64>() == len => sizes.to_vec(),
            _ => continue,
        };
        if view.is_output(sequence) || sizes.is_empty() {
            continue;
        }
        let mut parts: Vec<(Option<String>, Vec<String>)> = vec![(None, Vec::new()); sizes.len()];
        let readers = view.consumers(sequence);
        let all_read = readers.iter().all(|u| {
            let reader = &view.proto.node[u.node];
            let index = reader.input.get(1).and_then(|i| known(i)).and_then(|v| v.first().copied());
            let n = sizes.len() as i64;
            let slot = index.map(|k| if k < 0 { k + n } else { k }).filter(|k| (0..n).contains(k));
            match (is_default_domain(reader) && reader.op() == "SequenceAt" && u.input == 0, slot, reader.output.first()) {
                (true, Some(k), Some(o)) => {
                    let part = &mut parts[k as usize];
                    match part.0 {
                        None => part.0 = Some(o.clone()),
                        Some(_) => part.1.push(o.clone()),
                    }
                    true
                }
                _ => false,
            }
        });
        if all_read {
            out.push(SequenceSplit { sequence: sequence.clone(), sizes, parts, as_input: crate::ops::node_opset(view, node) >= 13 });
        }
    }
    out
}

/// Rewrites the [`plan`]ned splits; returns how many.
pub(super) fn apply(graph: &mut GraphProto, splits: Vec<SequenceSplit>) -> usize {
    if splits.is_empty() {
        return 0;
    }
    let mut names = Names::of(graph);
    let by_sequence: HashMap<String, SequenceSplit> = splits.into_iter().map(|s| (s.sequence.clone(), s)).collect();
    let mut added = Vec::new();
    let mut nodes = Vec::with_capacity(graph.node.len());
    let mut count = 0;
    for node in std::mem::take(&mut graph.node) {
        if node.op() == "SequenceAt" && node.input.first().is_some_and(|s| by_sequence.contains_key(s)) {
            continue;
        }
        let Some(s) = node.output.first().and_then(|o| by_sequence.get(o)).filter(|_| node.op() == "SplitToSequence") else {
            nodes.push(node);
            continue;
        };
        let outputs: Vec<String> = s
            .parts
            .iter()
            .enumerate()
            .map(|(k, (first, _))| first.clone().unwrap_or_else(|| names.fresh(&format!("{}_{k}", s.sequence))))
            .collect();
        let mut attrs: Vec<_> = node.attribute.iter().filter(|a| a.name.as_deref() == Some("axis")).cloned().collect();
        let mut inputs = vec![node.input[0].clone()];
        if s.as_input {
            let name = names.fresh(&format!("{}_sizes", s.sequence));
            added.push(Tensor::from_i64s(s.sizes.clone()).to_proto(&name));
            inputs.push(name);
        } else {
            attrs.push(Attr::Ints(s.sizes.clone()).to_proto("split"));
        }
        let name = node.name.clone().unwrap_or_else(|| s.sequence.clone());
        let copies: Vec<NodeProto> = s
            .parts
            .iter()
            .zip(&outputs)
            .flat_map(|((_, more), part)| more.iter().map(move |o| (part, o)))
            .map(|(part, o)| crate::graph::identity(names.fresh(&format!("{name}/Identity")), part, o))
            .collect();
        nodes.push(NodeProto { op_type: Some("Split".into()), name: Some(name), input: inputs, output: outputs, attribute: attrs, ..node });
        nodes.extend(copies);
        count += 1;
    }
    graph.node = nodes;
    graph.initializer.extend(added);
    count
}
