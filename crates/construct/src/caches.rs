//! Key/value caches keep their interface. A cache is a graph output that a `Concat`
//! makes of a graph input (the past) and this step's values; the analysis records it
//! with the group whose elements it holds ([`oto_graph::CacheSlice`]). Cutting those
//! elements would change the shapes of the model's inputs and outputs, which the
//! runtime that feeds the caches back (Optimum, onnxruntime-genai) sizes from the
//! model's configuration. So the compact model still writes every position: this
//! step's values, now narrower, get zeros back at the removed positions (`Pad` one zero
//! slice, then `Gather` it there) before the `Concat`, which therefore writes exactly what
//! the zeroed full model writes; and the model's other readers of the cache read only
//! its kept positions (`Gather`). A present without a past (the heads' keys or values
//! returned as they are) is restored the same way after the node that writes it, and
//! the model's other readers read the narrow value. A merged decoder's `Branches` node
//! (`oto_onnx::branches`), which gives a branch's cache out as the graph output, is not
//! one of those readers: it reads the full cache.

use crate::constants::{all_names, fresh};
use crate::nodes::{gather, push_indices};
use crate::{mismatch, Result};
use oto_graph::Group;
use oto_onnx::proto::{ModelProto, NodeProto};
use oto_onnx::shape::Shapes;
use oto_onnx::Dim;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// One axis of a cache: its full length and the positions kept.
struct Restore {
    axis: usize,
    full: usize,
    kept: Vec<usize>,
}

/// Rewrites every cache of `groups` in `proto` (already cut) as the module docs say.
/// `shapes` are the full model's; `opset` its default-domain opset.
pub(crate) fn rewrite(shapes: &Shapes, groups: &[(&Group, Vec<usize>)], proto: &mut ModelProto, opset: i64) -> Result<()> {
    // Per cache, per axis: the removed positions (and a group to name in errors).
    let mut cuts: BTreeMap<&str, BTreeMap<usize, (BTreeSet<usize>, &Group)>> = BTreeMap::new();
    for (g, removed) in groups {
        for c in &g.caches {
            let entry = cuts.entry(c.value.as_str()).or_default().entry(c.axis).or_insert_with(|| (BTreeSet::new(), *g));
            for &e in removed {
                entry.0.extend(c.map.indices(e));
            }
        }
    }
    let mut names = all_names(proto);
    for (value, axes) in cuts {
        let Some((_, (_, g0))) = axes.iter().next() else { continue };
        let g0 = *g0;
        let dims = shapes.shape(value).ok_or_else(|| mismatch(g0, format!("cache '{value}' has no known shape")))?;
        let rank = dims.len();
        let mut restores = Vec::new();
        for (&axis, (removed, g)) in &axes {
            let (full, kept) = kept_positions(dims, axis, removed, g, &format!("cache '{value}'"))?;
            restores.push(Restore { axis, full, kept });
        }
        if opset < 2 {
            return Err(mismatch(g0, format!("cache '{value}': a model of opset {opset} has no Pad to restore it")));
        }
        let gp = proto.graph.get_or_insert_with(Default::default);
        let graph_inputs: HashSet<String> = {
            let stored: HashSet<&str> = gp.initializer.iter().filter_map(|t| t.name.as_deref()).collect();
            gp.input.iter().filter_map(|i| i.name.clone()).filter(|n| !stored.contains(n.as_str())).collect()
        };
        let Some(at) = gp.node.iter().position(|n| n.output.iter().any(|o| o == value)) else {
            return Err(mismatch(g0, format!("cache '{value}' is not the output of a node")));
        };
        let is_past = |gp: &oto_onnx::proto::GraphProto, x: &str| graph_inputs.contains(uncast(gp, x).as_str());
        let with_past = gp.node[at].op_type.as_deref() == Some("Concat") && gp.node[at].input.iter().any(|x| is_past(gp, x));
        if !with_past {
            present(&mut names, gp, at, value, &restores, rank, opset, g0)?;
            continue;
        }
        let mut before = Vec::new();
        let operands = gp.node[at].input.clone();
        for (k, x) in operands.iter().enumerate() {
            if x.is_empty() || is_past(gp, x) {
                continue;
            }
            let mut current = x.clone();
            for r in &restores {
                current = restore(&mut names, &mut gp.initializer, &mut before, &current, r, rank, opset, g0)?;
            }
            gp.node[at].input[k] = current;
        }
        // The cache and the Casts that carry it whole to the graph output (float16 inside,
        // float32 outputs), each after the node that writes it, last first so that the
        // positions of the earlier ones hold; the model's other readers of any of them
        // read the kept positions.
        let (chain, casts) = cast_chain(gp, at, value);
        for (writer, carried) in chain.into_iter().rev() {
            let readers: Vec<usize> = (writer + 1..gp.node.len())
                .filter(|&n| !casts.contains(&n) && !oto_onnx::branches::is_branches(&gp.node[n]))
                .filter(|&n| gp.node[n].input.contains(&carried))
                .collect();
            if readers.is_empty() {
                continue;
            }
            let mut after = Vec::new();
            let mut kept_value = carried.clone();
            for r in &restores {
                let idx: Vec<i64> = r.kept.iter().map(|&p| p as i64).collect();
                let idx_name = push_indices(&mut names, &mut gp.initializer, &format!("{carried}.kept"), idx, g0)?;
                let out = fresh(&mut names, &format!("{carried}.kept"));
                after.push(gather(&mut names, &kept_value, &idx_name, &out, r.axis));
                kept_value = out;
            }
            for n in readers {
                for i in gp.node[n].input.iter_mut().filter(|i| **i == carried) {
                    *i = kept_value.clone();
                }
            }
            gp.node.splice(writer + 1..writer + 1, after);
        }
        gp.node.splice(at..at, before);
    }
    Ok(())
}

/// `value` before the `Cast` nodes of `gp` that made it (a graph input of a file converted
/// to float16 with its inputs kept in float32), or `value` itself.
fn uncast(gp: &oto_onnx::proto::GraphProto, value: &str) -> String {
    let mut current = value.to_string();
    while let Some(n) = gp.node.iter().find(|n| n.output.first() == Some(&current) && n.op_type.as_deref() == Some("Cast")) {
        match n.input.first() {
            Some(x) if !x.is_empty() && *x != current => current = x.clone(),
            _ => break,
        }
    }
    current
}

/// The cache `value` (written by node `at`) and the values `Cast` nodes make of it, each
/// with the position of the node writing it, in the order of the nodes; and the positions
/// of those Casts.
fn cast_chain(gp: &oto_onnx::proto::GraphProto, at: usize, value: &str) -> (Vec<(usize, String)>, HashSet<usize>) {
    let mut chain = vec![(at, value.to_string())];
    let mut casts = HashSet::new();
    let mut k = 0;
    while let Some((_, v)) = chain.get(k).cloned() {
        k += 1;
        for (n, node) in gp.node.iter().enumerate() {
            if node.op_type.as_deref() == Some("Cast") && node.input.first() == Some(&v) && casts.insert(n) {
                chain.extend(node.output.first().map(|o| (n, o.clone())));
            }
        }
    }
    chain.sort_by_key(|(n, _)| *n);
    (chain, casts)
}

/// Along `axis` of a value of shape `dims` (`what` names it in errors), its length and
/// the positions kept when `removed` go.
pub(crate) fn kept_positions(dims: &[Dim], axis: usize, removed: &BTreeSet<usize>, g: &Group, what: &str) -> Result<(usize, Vec<usize>)> {
    let full = match dims.get(axis) {
        Some(Dim::Known(n)) => usize::try_from(*n).ok(),
        _ => None,
    }
    .ok_or_else(|| mismatch(g, format!("{what} axis {axis} has no known length")))?;
    if let Some(&bad) = removed.iter().find(|&&p| p >= full) {
        return Err(mismatch(g, format!("{what} axis {axis} has {full} positions, not a position {bad}")));
    }
    Ok((full, (0..full).filter(|p| !removed.contains(p)).collect()))
}

/// A present without a past (node `at` writes `value`, now narrow): the node writes a
/// fresh name that the model's other readers read, and `value` is restored from it.
#[allow(clippy::too_many_arguments)]
fn present(
    names: &mut HashSet<String>,
    gp: &mut oto_onnx::proto::GraphProto,
    at: usize,
    value: &str,
    restores: &[Restore],
    rank: usize,
    opset: i64,
    g: &Group,
) -> Result<()> {
    let narrow = fresh(names, &format!("{value}.narrow"));
    for o in gp.node[at].output.iter_mut().filter(|o| o.as_str() == value) {
        *o = narrow.clone();
    }
    for n in gp.node.iter_mut().skip(at + 1).filter(|n| !oto_onnx::branches::is_branches(n)) {
        for i in n.input.iter_mut().filter(|i| i.as_str() == value) {
            *i = narrow.clone();
        }
    }
    let mut after = Vec::new();
    let mut current = narrow;
    for r in restores {
        current = restore(names, &mut gp.initializer, &mut after, &current, r, rank, opset, g)?;
    }
    let Some(last) = after.last_mut().and_then(|n| n.output.first_mut()) else {
        return Err(mismatch(g, format!("cache '{value}' has no axis to restore")));
    };
    *last = value.to_string();
    gp.node.splice(at + 1..at + 1, after);
    Ok(())
}

/// `x` (narrow along `r.axis`) with zeros at the removed positions: `Pad` one zero slice
/// at the end of the axis, `Gather` every position from `x` or that slice.
#[allow(clippy::too_many_arguments)]
fn restore(
    names: &mut HashSet<String>,
    initializers: &mut Vec<oto_onnx::proto::TensorProto>,
    nodes: &mut Vec<NodeProto>,
    x: &str,
    r: &Restore,
    rank: usize,
    opset: i64,
    g: &Group,
) -> Result<String> {
    let mut pads = vec![0i64; 2 * rank];
    if let Some(p) = pads.get_mut(rank + r.axis) {
        *p = 1;
    }
    let padded = fresh(names, &format!("{x}.padded"));
    nodes.push(crate::nodes::pad_zeros(names, initializers, opset, &format!("{x}.pad"), x, &padded, pads));
    // Position p: its place among the kept ones, or the zero slice after them.
    let zero_slot = r.kept.len() as i64;
    let mut idx = vec![zero_slot; r.full];
    for (i, &p) in r.kept.iter().enumerate() {
        if let Some(slot) = idx.get_mut(p) {
            *slot = i as i64;
        }
    }
    let idx_name = push_indices(names, initializers, &format!("{x}.restore"), idx, g)?;
    let out = fresh(names, &format!("{x}.restored"));
    nodes.push(gather(names, &padded, &idx_name, &out, r.axis));
    Ok(out)
}
