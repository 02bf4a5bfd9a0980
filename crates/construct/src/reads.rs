//! Values read at their kept positions ([`oto_graph::ReadSlice`]): a value the group's
//! elements do not change (a decoder's cross-attention cache, given as a graph input; T5's
//! position bias, computed once for every layer) meets the elements at one node. That node
//! reads a `Gather` of the value's kept positions; the value's other readers read it whole
//! (each layer its own kept heads).

use crate::caches::kept_positions;
use crate::constants::{all_names, fresh};
use crate::nodes::{gather, push_indices};
use crate::{mismatch, Result};
use oto_graph::Group;
use oto_onnx::proto::ModelProto;
use oto_onnx::shape::Shapes;
use std::collections::{BTreeMap, BTreeSet};

/// Rewrites every read of `groups` in `proto` (already cut) as the module docs say.
/// `shapes` are the full model's.
pub(crate) fn rewrite(shapes: &Shapes, groups: &[(&Group, Vec<usize>)], proto: &mut ModelProto) -> Result<()> {
    // Per (reader, value), per axis: the removed positions (and a group to name in errors).
    type Cuts<'g> = BTreeMap<usize, (BTreeSet<usize>, &'g Group)>;
    let mut reads: BTreeMap<(&str, &str), Cuts> = BTreeMap::new();
    for (g, removed) in groups {
        for r in &g.reads {
            let entry =
                reads.entry((r.reader.as_str(), r.value.as_str())).or_default().entry(r.axis).or_insert_with(|| (BTreeSet::new(), *g));
            for &e in removed {
                entry.0.extend(r.map.indices(e));
            }
        }
    }
    let mut names = all_names(proto);
    let gp = proto.graph.get_or_insert_with(Default::default);
    for ((reader, value), axes) in reads {
        let Some((_, (_, g0))) = axes.iter().next() else { continue };
        let dims = shapes.shape(value).ok_or_else(|| mismatch(g0, format!("'{value}', read at its kept positions, has no known shape")))?;
        let Some(at) = gp.node.iter().position(|n| n.output.first().is_some_and(|o| o == reader)) else {
            return Err(mismatch(g0, format!("no node writes '{reader}', which reads '{value}'")));
        };
        let mut gathers = Vec::new();
        let mut current = value.to_string();
        for (&axis, (removed, g)) in &axes {
            let (_, kept) = kept_positions(dims, axis, removed, g, &format!("'{value}'"))?;
            let kept: Vec<i64> = kept.into_iter().map(|p| p as i64).collect();
            let idx = push_indices(&mut names, &mut gp.initializer, &format!("{value}.kept"), kept, g)?;
            let out = fresh(&mut names, &format!("{value}.kept"));
            gathers.push(gather(&mut names, &current, &idx, &out, axis));
            current = out;
        }
        for x in gp.node[at].input.iter_mut().filter(|x| x.as_str() == value) {
            *x = current.clone();
        }
        gp.node.splice(at..at, gathers);
    }
    Ok(())
}
