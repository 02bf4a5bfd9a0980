//! Reductions: the `Reduce*` family (axes an attribute or an input by opset, see
//! [`Reduce`]), `ArgMax`/`ArgMin` and `TopK`. Not counted in MACs.

use super::{IntsParam, ReduceKind};
use crate::graph::NodeExt;
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

impl Infer<'_, '_> {
    pub(crate) fn arg_reduce(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        let a = self.axis(node, self.attr(node, node.attr_int_or("axis", 0))?, x.len())?;
        let keep = self.attr(node, node.attr_int_or("keepdims", 1))? != 0;
        let mut out = x;
        if keep {
            out[a] = Dim::Known(1);
        } else {
            out.remove(a);
        }
        Ok(vec![vt(Some(DType::I64), out)])
    }

    pub(crate) fn top_k(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        let a = self.axis(node, self.attr(node, node.attr_int_or("axis", -1))?, x.len())?;
        let k = self.values(node, 1)?;
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
