//! Reductions: the `Reduce*` family (axes an attribute or an input by opset, see
//! [`crate::ops::reduce`]), `ArgMax`/`ArgMin` and `TopK`. Not counted in MACs.

use crate::graph::NodeExt;
use crate::ops;
use crate::proto::NodeProto;
use crate::shape::*;
use crate::tensor::DType;

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

    pub(crate) fn reduce(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        self.needs_values(node, &[1])?;
        let r = ops::reduce(self.graph, node, Some(&self.out))?;
        let listed = r.axes.filter(|a| !a.is_empty());
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
