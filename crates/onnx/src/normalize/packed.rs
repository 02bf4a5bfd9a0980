//! Projections packed as `[parts, heads, head_dim]` and taken apart after a transpose,
//! written as one slice of the projection per part.
//!
//! timm's vision transformers (`qkv.reshape(B, N, 3, H, D).permute(2, 0, 3, 1, 4)` then
//! `unbind(0)`) and ModernBERT (`view(B, S, 3, H, D)`, `transpose(3, 1)`, `unbind(2)`)
//! reshape the fused projection's last axis into `3 x H x D` at once and take the three
//! parts apart along the transposed `3` axis (a `Split` of ones then `Squeeze`, or a
//! `Gather` per part). The analysis follows heads through a reshape of one channel axis
//! into heads, as GPT-2's `c_attn` split first is; taken apart this way the heads of
//! the three parts were one block. So the `Reshape` + `Transpose` + parts become, per
//! part, a `Split` piece of the projection, `Reshape`d to `[..., H, D]` and transposed
//! without the parts axis (the same values: entry `(p, h, d)` of the packed axis is
//! position `p * H * D + h * D + d`).

use super::{is_default_domain, Names};
use crate::builder::Attr;
use crate::graph::{Graph, NodeExt};
use crate::proto::{GraphProto, NodeProto};
use crate::shape::{Dim, Shapes};
use crate::tensor::Tensor;
use std::collections::{HashMap, HashSet};

/// How the parts' reshape targets are made: the packed target without its parts entry.
enum Target {
    /// A constant target's entries.
    Constant(Vec<i64>),
    /// The inputs of the target's `Concat`, the parts entry's piece left out.
    Concat(Vec<String>),
}

/// What the parts are read as, per part (`None`: a part not read).
enum Reader {
    /// A `Split` of ones, or a `Slice` of one position per part, along the parts axis:
    /// the parts keep that axis (of 1).
    Kept(Vec<Option<String>>),
    /// A `Gather` of one index along the parts axis, per part.
    Gathers(Vec<Option<String>>),
}

/// One packed projection to rewrite.
pub(super) struct Packed {
    /// The projection (the `Reshape`'s input) and its rank.
    x: String,
    rank: usize,
    parts: usize,
    /// Channels per part (`H * D`).
    width: i64,
    target: Target,
    /// The `Transpose`'s permutation without the parts axis, and where that axis went.
    perm: Vec<i64>,
    parts_axis: i64,
    reader: Reader,
    /// The nodes replaced: the `Reshape`, the `Transpose`, the readers.
    replaced: Vec<String>,
    /// The `Reshape`'s output (the insertion point).
    reshaped: String,
}

/// Whether `graph` may hold one: a `Reshape` read by a `Transpose` read by a `Split`,
/// `Gather` or `Slice` (a scan, before shapes are inferred).
pub(super) fn pending(graph: &GraphProto) -> bool {
    let producer: HashMap<&str, &NodeProto> = graph.node.iter().flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n))).collect();
    let made_by = |value: &str, op: &str| producer.get(value).is_some_and(|n| n.op() == op);
    graph.node.iter().any(|n| {
        matches!(n.op(), "Split" | "Gather" | "Slice")
            && n.input
                .first()
                .and_then(|t| producer.get(t.as_str()))
                .is_some_and(|tr| tr.op() == "Transpose" && tr.input.first().is_some_and(|r| made_by(r, "Reshape")))
    })
}

/// Every packed projection taken apart as the module docs say.
pub(super) fn plan(view: &Graph<'_>, shapes: &Shapes) -> Vec<Packed> {
    let mut out = Vec::new();
    for (_, node) in view.nodes() {
        if let Some(p) = plan_one(view, shapes, node) {
            out.push(p);
        }
    }
    out
}

fn plan_one(view: &Graph<'_>, shapes: &Shapes, reshape: &NodeProto) -> Option<Packed> {
    if !is_default_domain(reshape) || reshape.op() != "Reshape" {
        return None;
    }
    // `allowzero` (the dynamo exporter sets it) changes nothing for a target without 0s.
    let allowzero = reshape.attr_int("allowzero").ok().flatten().unwrap_or(0) != 0;
    let (x, target, reshaped) = (reshape.input.first()?, reshape.input.get(1)?, reshape.output.first()?);
    let xd = shapes.shape(x)?;
    let rd = shapes.shape(reshaped)?;
    let m = xd.len();
    if m < 2 || rd.len() != m + 2 || xd[..m - 1] != rd[..m - 1] || view.is_output(reshaped) {
        return None;
    }
    let known = |d: &Dim| d.known().filter(|&v| v > 0);
    let (len, parts, heads, dim) = (known(&xd[m - 1])?, known(&rd[m - 1])?, known(&rd[m])?, known(&rd[m + 1])?);
    if parts < 2 || heads < 2 || parts.checked_mul(heads)?.checked_mul(dim)? != len {
        return None;
    }
    // The target without its parts entry (entry m - 1).
    let mut concat_name = None;
    let target = if let Ok(Some(entries)) = view.constant_ints(target) {
        if entries.len() != m + 2 || entries[m - 1] != parts || (allowzero && entries.contains(&0)) {
            return None;
        }
        Target::Constant(entries.iter().enumerate().filter(|(i, _)| *i != m - 1).map(|(_, &e)| e).collect())
    } else {
        if allowzero {
            return None;
        }
        let (_, concat) = view.producer_node(target)?;
        if !is_default_domain(concat) || concat.op() != "Concat" || view.consumers(target).len() != 1 {
            return None;
        }
        let mut at = 0usize;
        let mut kept = Vec::new();
        let mut dropped = false;
        for piece in &concat.input {
            let n = match shapes.shape(piece)? {
                [d] => usize::try_from(d.known()?).ok()?,
                _ => return None,
            };
            if at == m - 1 && n == 1 {
                dropped = true;
            } else {
                kept.push(piece.clone());
            }
            at += n;
        }
        if !dropped || at != m + 2 {
            return None;
        }
        concat_name = concat.name.clone();
        Target::Concat(kept)
    };
    // The one reader: a Transpose.
    let [use_] = view.consumers(reshaped) else { return None };
    let transpose = &view.proto.node[use_.node];
    if !is_default_domain(transpose) || transpose.op() != "Transpose" {
        return None;
    }
    let perm = transpose.attr_ints("perm").ok().flatten()?;
    let packed = i64::try_from(m - 1).ok()?;
    let parts_axis = perm.iter().position(|&a| a == packed)?;
    if perm.len() != m + 2 {
        return None;
    }
    let new_perm: Vec<i64> = perm.iter().filter(|&&a| a != packed).map(|&a| if a > packed { a - 1 } else { a }).collect();
    let transposed = transpose.output.first()?;
    if view.is_output(transposed) {
        return None;
    }
    let readers = view.consumers(transposed);
    let parts_n = usize::try_from(parts).ok()?;
    let mut replaced = vec![reshape.name.clone().unwrap_or_default(), transpose.name.clone().unwrap_or_default()];
    replaced.extend(concat_name);
    let axis_is = |n: &NodeProto, rank: usize| {
        let a = n.attr_int("axis").ok().flatten().unwrap_or(0);
        let a = if a < 0 { a + rank as i64 } else { a };
        a == parts_axis as i64
    };
    let reader = match readers {
        [u] if view.proto.node[u.node].op() == "Split" => {
            let split = &view.proto.node[u.node];
            let ones = split.output.len() == parts_n
                && split.output.iter().all(|o| !view.is_output(o))
                && match split.input.get(1).filter(|s| !s.is_empty()) {
                    Some(sizes) => view.constant_ints(sizes).ok().flatten().is_some_and(|s| s.iter().all(|&v| v == 1)),
                    None => split.attr_ints("split").ok().flatten().is_none_or(|s| s.iter().all(|&v| v == 1)),
                };
            if !is_default_domain(split) || !axis_is(split, m + 2) || !ones {
                return None;
            }
            replaced.push(split.name.clone().unwrap_or_default());
            Reader::Kept(split.output.iter().cloned().map(Some).collect())
        }
        _ => {
            let mut gathered = vec![None; parts_n];
            let mut kept = vec![None; parts_n];
            for u in readers {
                let n = &view.proto.node[u.node];
                let part = |k: i64| usize::try_from(if k < 0 { k + parts } else { k }).ok().filter(|&k| k < parts_n);
                let o = n.output.first().filter(|o| !view.is_output(o))?;
                if !is_default_domain(n) || u.input != 0 {
                    return None;
                }
                let (k, slot) = match n.op() {
                    "Gather" if axis_is(n, m + 2) => {
                        let index = n.input.get(1).and_then(|i| {
                            let scalar = shapes.shape(i).is_some_and(<[Dim]>::is_empty);
                            scalar.then(|| view.constant_ints(i).ok().flatten()).flatten()
                        })?;
                        match index.as_slice() {
                            [k] => (part(*k)?, &mut gathered),
                            _ => return None,
                        }
                    }
                    "Slice" => {
                        let Ok(crate::op::Op::Slice(slice)) = crate::op::Op::parse(view, n) else { return None };
                        let b = slice.resolve(view, n, Some(shapes)).ok()?;
                        let axes = b.axes.clone().unwrap_or_else(|| vec![0]);
                        let one_step = b.steps.as_ref().is_none_or(|s| s.iter().all(|&v| v == 1));
                        let axis = axes.first().map(|&a| if a < 0 { a + (m + 2) as i64 } else { a });
                        match (b.starts.as_slice(), b.ends.as_slice(), axes.len(), axis, one_step) {
                            ([s], [e], 1, Some(a), true) if a == parts_axis as i64 && e.known() == s.known().map(|s| s + 1) => {
                                (part(s.known()?)?, &mut kept)
                            }
                            _ => return None,
                        }
                    }
                    _ => return None,
                };
                if slot[k].is_some() {
                    return None;
                }
                slot[k] = Some(o.clone());
                replaced.push(n.name.clone().unwrap_or_default());
            }
            match (gathered.iter().any(Option::is_some), kept.iter().any(Option::is_some)) {
                (true, false) => Reader::Gathers(gathered),
                (false, true) => Reader::Kept(kept),
                _ => return None,
            }
        }
    };
    if replaced.iter().any(String::is_empty) {
        return None;
    }
    Some(Packed {
        x: x.clone(),
        rank: m,
        parts: parts_n,
        width: heads * dim,
        target,
        perm: new_perm,
        parts_axis: parts_axis as i64,
        reader,
        replaced,
        reshaped: reshaped.clone(),
    })
}

/// Rewrites the [`plan`]ned projections; returns how many. `opset`: the default domain's.
pub(super) fn apply(graph: &mut GraphProto, planned: Vec<Packed>, opset: i64) -> usize {
    if planned.is_empty() {
        return 0;
    }
    let mut names = Names::of(graph);
    let replaced: HashSet<String> = planned.iter().flat_map(|p| p.replaced.iter().cloned()).collect();
    let mut added = Vec::new();
    let mut nodes = Vec::with_capacity(graph.node.len());
    // What the replaced nodes read (their targets, sizes, indices): dropped below if
    // nothing reads it any more.
    let mut was_read = HashSet::new();
    for node in std::mem::take(&mut graph.node) {
        let at_reshape = node.output.first().and_then(|o| planned.iter().find(|p| &p.reshaped == o));
        if let Some(p) = at_reshape {
            nodes.extend(rewrite(p, &mut names, &mut added, opset));
        }
        if node.name.as_ref().is_some_and(|n| replaced.contains(n)) {
            was_read.extend(node.input);
        } else {
            nodes.push(node);
        }
    }
    let still_read: HashSet<&String> =
        nodes.iter().flat_map(|n| n.input.iter()).chain(graph.output.iter().filter_map(|o| o.name.as_ref())).collect();
    let unread: HashSet<String> = was_read.into_iter().filter(|v| !still_read.contains(v)).collect();
    graph.initializer.retain(|t| !t.name.as_ref().is_some_and(|n| unread.contains(n)));
    graph.node = nodes;
    graph.initializer.extend(added);
    planned.len()
}

/// The nodes that replace one packed projection.
fn rewrite(p: &Packed, names: &mut Names, added: &mut Vec<crate::proto::TensorProto>, opset: i64) -> Vec<NodeProto> {
    let mut out = Vec::new();
    let base = p.reshaped.clone();
    let node = |op: &str, name: String, input: Vec<String>, output: Vec<String>| NodeProto {
        op_type: Some(op.into()),
        name: Some(name),
        input,
        output,
        ..Default::default()
    };
    // The projection in equal parts along its last axis.
    let pieces: Vec<String> = (0..p.parts).map(|k| names.fresh(&format!("{base}_part{k}"))).collect();
    let mut split = node("Split", names.fresh(&format!("{base}/Split")), vec![p.x.clone()], pieces.clone());
    split.attribute.push(Attr::Int(p.rank as i64 - 1).to_proto("axis"));
    let sizes = vec![p.width; p.parts];
    if opset >= 13 {
        let s = names.fresh(&format!("{base}_part_sizes"));
        added.push(Tensor::from_i64s(sizes).to_proto(&s));
        split.input.push(s);
    } else {
        split.attribute.push(Attr::Ints(sizes).to_proto("split"));
    }
    out.push(split);
    for (k, piece) in pieces.iter().enumerate() {
        // Each part's own target: a constant, or a Concat of the same pieces.
        let target = names.fresh(&format!("{base}_part{k}_shape"));
        match &p.target {
            Target::Constant(entries) => added.push(Tensor::from_i64s(entries.clone()).to_proto(&target)),
            Target::Concat(inputs) => {
                let mut concat = node("Concat", names.fresh(&format!("{base}/Concat_part{k}")), inputs.clone(), vec![target.clone()]);
                concat.attribute.push(Attr::Int(0).to_proto("axis"));
                out.push(concat);
            }
        }
        let heads = names.fresh(&format!("{base}_part{k}_heads"));
        out.push(node("Reshape", names.fresh(&format!("{base}/Reshape_part{k}")), vec![piece.clone(), target], vec![heads.clone()]));
        let (result, kept) = match &p.reader {
            Reader::Gathers(outputs) => match &outputs[k] {
                Some(o) => (o.clone(), None),
                None => continue,
            },
            Reader::Kept(outputs) => match &outputs[k] {
                Some(o) => (names.fresh(&format!("{o}_heads")), Some(o.clone())),
                None => continue,
            },
        };
        let mut transpose = node("Transpose", names.fresh(&format!("{base}/Transpose_part{k}")), vec![heads], vec![result.clone()]);
        transpose.attribute.push(Attr::Ints(p.perm.clone()).to_proto("perm"));
        out.push(transpose);
        if let Some(o) = kept {
            let mut u = node("Unsqueeze", names.fresh(&format!("{base}/Unsqueeze_part{k}")), vec![result], vec![o]);
            if opset >= 13 {
                let a = names.fresh(&format!("{base}_part{k}_axes"));
                added.push(Tensor::from_i64s(vec![p.parts_axis]).to_proto(&a));
                u.input.push(a);
            } else {
                u.attribute.push(Attr::Ints(vec![p.parts_axis]).to_proto("axes"));
            }
            out.push(u);
        }
    }
    out
}
