//! Reductions: the `Reduce*` family (axes an attribute or an input by opset, see
//! [`Reduce`]), `ArgMax`/`ArgMin` and `TopK`. Not counted in MACs.

use super::{IntsParam, ReduceKind};
use crate::error::Result;
use crate::graph::{Graph, NodeExt};
use crate::ops::attr_result;
use crate::proto::NodeProto;
use crate::shape::*;
use crate::tensor::DType;

/// A `Reduce*` node's parameters, normalized across opsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reduce {
    /// Which reduction.
    pub kind: ReduceKind,
    /// The axes (possibly negative): the attribute before opset 18 (13 for ReduceSum),
    /// input 1 from then on. None or empty: see `noop_with_empty_axes`.
    pub axes: IntsParam,
    /// Whether reduced axes stay as size 1.
    pub keepdims: bool,
    /// With no axes: `true` means identity, `false` means reduce every axis.
    pub noop_with_empty_axes: bool,
}

/// `ArgMax` or `ArgMin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgReduce {
    /// `ArgMax` (else `ArgMin`).
    pub max: bool,
    /// The axis (possibly negative; default 0).
    pub axis: i64,
    /// Whether the reduced axis stays as size 1 (default true).
    pub keepdims: bool,
    /// Ties resolve to the last index (opset 12; default false: the first).
    pub select_last_index: bool,
}

impl ArgReduce {
    pub(crate) fn parse(graph: &Graph<'_>, node: &NodeProto, max: bool) -> Result<ArgReduce> {
        let int = |name: &str, default: i64| attr_result(graph, node, node.attr_int_or(name, default));
        Ok(ArgReduce {
            max,
            axis: int("axis", 0)?,
            keepdims: int("keepdims", 1)? != 0,
            select_last_index: int("select_last_index", 0)? != 0,
        })
    }
}

/// `TopK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopK {
    /// `k`: the attribute before opset 10 (a one-entry list), input 1 from then.
    pub k: IntsParam,
    /// The axis (possibly negative; default -1).
    pub axis: i64,
    /// The largest elements (default true; opset 11), else the smallest.
    pub largest: bool,
    /// The results sorted (default true; opset 11).
    pub sorted: bool,
}

impl TopK {
    pub(crate) fn parse(graph: &Graph<'_>, node: &NodeProto) -> Result<TopK> {
        let int = |name: &str, default: i64| attr_result(graph, node, node.attr_int_or(name, default));
        let k = if crate::ops::node_opset(graph, node) >= 10 {
            IntsParam::Input(1)
        } else {
            IntsParam::Attribute(attr_result(graph, node, node.attr_int("k"))?.map(|k| vec![k]))
        };
        Ok(TopK { k, axis: int("axis", -1)?, largest: int("largest", 1)? != 0, sorted: int("sorted", 1)? != 0 })
    }
}

impl Infer<'_, '_> {
    pub(crate) fn arg_reduce(&mut self, node: &NodeProto, r: &ArgReduce) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        let a = self.axis(node, r.axis, x.len())?;
        let mut out = x;
        if r.keepdims {
            out[a] = Dim::Known(1);
        } else {
            out.remove(a);
        }
        Ok(vec![vt(Some(DType::I64), out)])
    }

    pub(crate) fn top_k(&mut self, node: &NodeProto, t: &TopK) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        let a = self.axis(node, t.axis, x.len())?;
        let k = match &t.k {
            IntsParam::Attribute(k) => k.iter().flatten().map(|&k| Dim::Known(k)).collect(),
            IntsParam::Input(i) => self.values(node, *i)?,
        };
        let mut out = x;
        out[a] = k.first().cloned().ok_or(Stop::Unknown)?;
        Ok(vec![vt(self.dtype(node, 0), out.clone()), vt(Some(DType::I64), out)])
    }

    pub(crate) fn reduce(&mut self, node: &NodeProto, r: &Reduce) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        self.needs_values(node, &[1])?;
        let listed = r.axes.resolve(self.graph, node, Some(&self.out), "axes")?.filter(|a| !a.is_empty());
        if listed.is_none() && r.noop_with_empty_axes {
            return Ok(vec![vt(self.dtype(node, 0), x)]);
        }
        let axes = self.axes_or_all(node, listed.as_deref(), x.len())?;
        let mut out = Vec::new();
        for (i, d) in x.iter().enumerate() {
            if !axes.contains(&i) {
                out.push(d.clone());
            } else if r.keepdims {
                out.push(Dim::Known(1));
            }
        }
        Ok(vec![vt(self.dtype(node, 0), out)])
    }
}
