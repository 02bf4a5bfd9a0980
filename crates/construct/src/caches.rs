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
use oto_onnx::{Dim, Graph, NodeExt};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// One axis of a cache: its full length and the positions kept.
struct Restore {
    axis: usize,
    full: usize,
    kept: Vec<usize>,
}

/// Rewrites every cache of `groups` in `proto` (already cut) as the module docs say.
/// `graph` and `shapes` are the full model's (the cut keeps the names of the values a
/// cache is made of, so what the full model says of them holds); `opset` its
/// default-domain opset.
pub(crate) fn rewrite(
    graph: &Graph<'_>,
    shapes: &Shapes,
    groups: &[(&Group, Vec<usize>)],
    proto: &mut ModelProto,
    opset: i64,
) -> Result<()> {
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
        // The operands of the writer that are the past: graph inputs, as they are or through Casts.
        let pasts: HashSet<&str> = match graph.producer_node(value) {
            Some((_, n)) if n.op() == "Concat" => {
                n.input.iter().map(String::as_str).filter(|x| !x.is_empty() && graph.is_real_input(graph.uncast(x))).collect()
            }
            _ => HashSet::new(),
        };
        let carried = graph.with_casts(value);
        let gp = proto.graph.get_or_insert_with(Default::default);
        let Some(at) = writer(gp, value) else {
            return Err(mismatch(g0, format!("cache '{value}' is not the output of a node")));
        };
        if pasts.is_empty() {
            present(&mut names, gp, at, value, &restores, rank, opset, g0)?;
            continue;
        }
        let mut before = Vec::new();
        let operands = gp.node[at].input.clone();
        for (k, x) in operands.iter().enumerate() {
            if x.is_empty() || pasts.contains(x.as_str()) {
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
        let mut chain: Vec<(usize, &String)> = carried.iter().filter_map(|v| writer(gp, v).map(|n| (n, v))).collect();
        chain.sort_by_key(|(n, _)| *n);
        let casts: HashSet<usize> = chain.iter().map(|(n, _)| *n).filter(|&n| n != at).collect();
        for (writer, carried) in chain.into_iter().rev() {
            let readers: Vec<usize> = (writer + 1..gp.node.len())
                .filter(|&n| !casts.contains(&n) && !oto_onnx::branches::is_branches(&gp.node[n]))
                .filter(|&n| gp.node[n].input.contains(carried))
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
                for i in gp.node[n].input.iter_mut().filter(|i| *i == carried) {
                    *i = kept_value.clone();
                }
            }
            gp.node.splice(writer + 1..writer + 1, after);
        }
        gp.node.splice(at..at, before);
    }
    Ok(())
}

/// The position of the node of `gp` that writes `value`.
fn writer(gp: &oto_onnx::proto::GraphProto, value: &str) -> Option<usize> {
    gp.node.iter().position(|n| n.output.iter().any(|o| o == value))
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
