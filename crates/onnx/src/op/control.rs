//! Control flow: oto's [`crate::branches::BRANCHES`], an `If` chosen by a graph input
//! written as both its branches. Output `j` is branch output `j` of whichever branch
//! the condition picks: the element type of the then branch's, the dimensions both
//! branches agree on (a new symbol where they differ, as a cache's length does).
//! Not counted in MACs (the branches' nodes are).

use crate::proto::NodeProto;
use crate::shape::{vt, Infer, Stop, ValueType, R};

impl Infer<'_, '_> {
    /// [`crate::branches::BRANCHES`]: inputs `cond, then_1..then_k, else_1..else_k`.
    pub(crate) fn branches(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let k = node.output.len();
        if node.input.len() != 1 + 2 * k {
            return Err(self.fail(node, format!("has {} inputs; it needs the condition and {k} values of each branch", node.input.len())));
        }
        let mut out = Vec::with_capacity(k);
        for j in 0..k {
            let dtype = self.dtype(node, 1 + j).or_else(|| self.dtype(node, 1 + k + j));
            let shape = match (self.shape(node, 1 + j), self.shape(node, 1 + k + j)) {
                (Ok(a), Ok(b)) if a.len() == b.len() => {
                    let mut dims = Vec::with_capacity(a.len());
                    for (x, y) in a.into_iter().zip(b) {
                        dims.push(if x == y { x } else { self.fresh() });
                    }
                    Some(dims)
                }
                (Err(Stop::Fail(e)), _) | (_, Err(Stop::Fail(e))) => return Err(Stop::Fail(e)),
                _ => None,
            };
            out.push(match shape {
                Some(dims) => vt(dtype, dims),
                None => ValueType { dtype, shape: None },
            });
        }
        Ok(out)
    }
}
