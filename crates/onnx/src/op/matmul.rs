//! Matrix products: `Gemm`, `MatMul`, `MatMulInteger`, `Einsum`. Shapes, and MACs: every
//! output element costs the inner dimension (`Einsum` is not counted).

use crate::graph::NodeExt;
use crate::proto::NodeProto;
use crate::shape::{broadcast_dim, broadcast_shapes, fmt_shape, vt, Dim, Infer, Stop, ValueType, R};
use crate::tensor::DType;
use std::collections::HashMap;

/// `Gemm`: `alpha * A' B' + beta * C`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gemm {
    /// `transA`.
    pub trans_a: bool,
    /// `transB`.
    pub trans_b: bool,
    /// `alpha` (default 1).
    pub alpha: f32,
    /// `beta` (default 1).
    pub beta: f32,
}

impl Gemm {
    /// Reads the attributes of a Gemm node.
    pub fn parse(node: &NodeProto) -> Result<Gemm, String> {
        Ok(Gemm {
            trans_a: node.attr_int_or("transA", 0)? != 0,
            trans_b: node.attr_int_or("transB", 0)? != 0,
            alpha: node.attr_float_or("alpha", 1.0)?,
            beta: node.attr_float_or("beta", 1.0)?,
        })
    }

    /// MACs from A's and the output's bound shapes.
    pub fn macs(&self, a: Option<&[u64]>, out: Option<&[u64]>) -> Option<u64> {
        let (a, o) = (a?, out?);
        let k = if self.trans_a { a.first() } else { a.last() }.copied().unwrap_or(1);
        Some(super::conv::product(o).saturating_mul(k))
    }
}

/// MACs of a MatMul from A's and the output's bound shapes.
pub fn matmul_macs(a: Option<&[u64]>, out: Option<&[u64]>) -> Option<u64> {
    let (a, o) = (a?, out?);
    Some(super::conv::product(o).saturating_mul(a.last().copied().unwrap_or(1)))
}

impl Infer<'_, '_> {
    pub(crate) fn gemm(&mut self, node: &NodeProto, g: &Gemm) -> R<Vec<ValueType>> {
        let a = self.shape(node, 0)?;
        let b = self.shape(node, 1)?;
        if a.len() != 2 || b.len() != 2 {
            return Err(self.fail(node, format!("inputs {} and {} must be 2-D", fmt_shape(&a), fmt_shape(&b))));
        }
        let (ta, tb) = (g.trans_a, g.trans_b);
        let (m, ka) = if ta { (&a[1], &a[0]) } else { (&a[0], &a[1]) };
        let (kb, n) = if tb { (&b[1], &b[0]) } else { (&b[0], &b[1]) };
        if ka.known().zip(kb.known()).is_some_and(|(x, y)| x != y) {
            return Err(self
                .fail(node, format!("inner dimensions differ: A {} (transA {ta}) and B {} (transB {tb})", fmt_shape(&a), fmt_shape(&b))));
        }
        let out = vec![m.clone(), n.clone()];
        if let Some(c) = crate::ops::input(node, 2).and_then(|n| self.out.shape(n)) {
            if c.len() > 2 {
                return Err(self.fail(node, format!("C has shape {}, which does not broadcast to {}", fmt_shape(c), fmt_shape(&out))));
            }
            let res = broadcast_shapes(&[&out, c]).map_err(|m| self.fail(node, m))?;
            if res != out && res.iter().zip(&out).any(|(r, o)| r.known().is_some() && o.known().is_some()) {
                return Err(self.fail(node, format!("C has shape {}, which does not broadcast to {}", fmt_shape(c), fmt_shape(&out))));
            }
        }
        Ok(vec![vt(self.dtype(node, 0), out)])
    }

    pub(crate) fn matmul(&mut self, node: &NodeProto, integer: bool) -> R<Vec<ValueType>> {
        let dtype = if integer { Some(DType::I32) } else { self.dtype(node, 0) };
        self.matmul_of(node, 1, dtype)
    }

    /// `QLinearMatMul`: the second operand is input 3; the output has the type of its zero
    /// point (input 7).
    pub(crate) fn qlinear_matmul(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let dtype = self.dtype(node, 7);
        self.matmul_of(node, 3, dtype)
    }

    /// The product of input 0 and input `second`.
    pub(crate) fn matmul_of(&mut self, node: &NodeProto, second: usize, dtype: Option<DType>) -> R<Vec<ValueType>> {
        let a = self.shape(node, 0)?;
        let b = self.shape(node, second)?;
        if a.is_empty() || b.is_empty() {
            return Err(self.fail(node, "MatMul inputs must have rank at least 1"));
        }
        let a2 = if a.len() == 1 { vec![Dim::Known(1), a[0].clone()] } else { a.clone() };
        let b2 = if b.len() == 1 { vec![b[0].clone(), Dim::Known(1)] } else { b.clone() };
        let (ka, kb) = (&a2[a2.len() - 1], &b2[b2.len() - 2]);
        if ka.known().zip(kb.known()).is_some_and(|(x, y)| x != y) {
            return Err(self.fail(node, format!("inner dimensions differ: {} @ {}", fmt_shape(&a), fmt_shape(&b))));
        }
        let mut out = broadcast_shapes(&[&a2[..a2.len() - 2], &b2[..b2.len() - 2]]).map_err(|m| self.fail(node, m))?;
        if a.len() > 1 {
            out.push(a2[a2.len() - 2].clone());
        }
        if b.len() > 1 {
            out.push(b2[b2.len() - 1].clone());
        }
        Ok(vec![vt(dtype, out)])
    }

    pub(crate) fn einsum(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let eq = self.attr(node, node.attr_string("equation"))?.ok_or_else(|| self.fail(node, "has no equation"))?;
        let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
        let (lhs, rhs) = match eq.split_once("->") {
            Some((l, r)) => (l.to_string(), Some(r.to_string())),
            None => (eq.clone(), None),
        };
        if lhs.contains("...") {
            return Err(Stop::Unknown);
        }
        let mut sizes: HashMap<char, Dim> = HashMap::new();
        let mut counts: HashMap<char, usize> = HashMap::new();
        for (k, term) in lhs.split(',').enumerate() {
            let s = self.shape(node, k)?;
            if s.len() != term.chars().count() {
                return Err(self.fail(node, format!("term '{term}' does not match input {k} of shape {}", fmt_shape(&s))));
            }
            for (c, d) in term.chars().zip(s) {
                *counts.entry(c).or_default() += 1;
                let e = sizes.entry(c).or_insert_with(|| d.clone());
                *e = broadcast_dim(e, &d).ok_or_else(|| self.fail(node, format!("label '{c}' has sizes {e} and {d}")))?;
            }
        }
        let rhs = rhs.unwrap_or_else(|| {
            let mut once: Vec<char> = counts.iter().filter(|(_, &n)| n == 1).map(|(&c, _)| c).collect();
            once.sort_unstable();
            once.into_iter().collect()
        });
        let out = rhs
            .chars()
            .map(|c| sizes.get(&c).cloned().ok_or_else(|| self.fail(node, format!("output label '{c}' is not in the inputs"))))
            .collect::<R<_>>()?;
        Ok(vec![vt(self.dtype(node, 0), out)])
    }
}
