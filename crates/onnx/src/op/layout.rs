//! Layout operators: `Reshape`, `Flatten`, `Transpose`, `Squeeze`, `Unsqueeze`, `Expand`,
//! `Tile`, `DepthToSpace`, `SpaceToDepth`. Not counted in MACs.

use super::{IntsParam, Op};
use crate::graph::NodeExt;
use crate::proto::NodeProto;
use crate::shape::*;

/// Most axes a Reshape whose target is computed at run time may produce (libtorch allows
/// 64; a larger declared target length is a malformed file).
const MAX_RESHAPE_RANK: i64 = 64;

impl Infer<'_, '_> {
    pub(crate) fn flatten(&mut self, node: &NodeProto, axis: i64) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        let r = x.len() as i64;
        if axis < -r || axis > r {
            return Err(self.fail(node, format!("axis {axis} is out of range for rank {r}")));
        }
        let a = if axis < 0 { axis + r } else { axis } as usize;
        Ok(vec![vt(self.dtype(node, 0), vec![Dim::product(&x[..a])?, Dim::product(&x[a..])?])])
    }

    pub(crate) fn transpose(&mut self, node: &NodeProto, perm: Option<&[i64]>) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        let perm = perm.map_or_else(|| (0..x.len() as i64).rev().collect(), <[i64]>::to_vec);
        let mut seen = vec![false; x.len()];
        let mut out = Vec::with_capacity(x.len());
        for &p in &perm {
            let a = self.axis(node, p, x.len())?;
            if std::mem::replace(&mut seen[a], true) {
                return Err(self.fail(node, format!("perm {perm:?} repeats axis {a}")));
            }
            out.push(x[a].clone());
        }
        if perm.len() != x.len() {
            return Err(self.fail(node, format!("perm {perm:?} does not match the input rank {}", x.len())));
        }
        Ok(vec![vt(self.dtype(node, 0), out)])
    }

    pub(crate) fn expand(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        let target = self.values(node, 1)?;
        let out = broadcast_shapes(&[&x, &target]).map_err(|m| self.fail(node, m))?;
        Ok(vec![vt(self.dtype(node, 0), out)])
    }

    pub(crate) fn tile(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        let reps = self.values(node, 1)?;
        if reps.len() != x.len() {
            return Err(self.fail(node, format!("repeats has {} entries for an input of rank {}", reps.len(), x.len())));
        }
        Ok(vec![vt(self.dtype(node, 0), x.iter().zip(&reps).map(|(d, r)| d.mul(r)).collect::<Result<_, _>>()?)])
    }

    pub(crate) fn depth_space(&mut self, node: &NodeProto, op: &Op) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        let b = Dim::Known(self.attr(node, node.attr_int_or("blocksize", 1))?);
        if x.len() != 4 {
            return Err(self.fail(node, format!("input has rank {}, expected 4", x.len())));
        }
        let bb = b.mul(&b)?;
        let out = if *op == Op::DepthToSpace {
            vec![
                x[0].clone(),
                x[1].div_exact(&bb).ok_or_else(|| self.fail(node, "channels not divisible by blocksize^2"))?,
                x[2].mul(&b)?,
                x[3].mul(&b)?,
            ]
        } else {
            vec![x[0].clone(), x[1].mul(&bb)?, x[2].floor_div(&b)?, x[3].floor_div(&b)?]
        };
        Ok(vec![vt(self.dtype(node, 0), out)])
    }

    pub(crate) fn reshape(&mut self, node: &NodeProto, allowzero: bool) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        let target = match self.values(node, 1) {
            Ok(t) => t,
            Err(_) => {
                // Unknown target: the rank is still known from the target's length.
                let len = self.shape(node, 1)?.first().and_then(Dim::known).ok_or(Stop::Unknown)?;
                // The declared length of a shape tensor is the file's word: bound it before
                // making that many axes.
                if !(0..=MAX_RESHAPE_RANK).contains(&len) {
                    return Err(self.fail(node, format!("the target shape has {len} entries (at most {MAX_RESHAPE_RANK} axes)")));
                }
                let dims = (0..len).map(|_| self.fresh()).collect();
                return Ok(vec![vt(self.dtype(node, 0), dims)]);
            }
        };
        let out = reshape_dims(&x, &target, allowzero).map_err(|m| self.fail(node, m))?;
        let out = out.into_iter().map(|d| d.unwrap_or_else(|| self.fresh())).collect();
        Ok(vec![vt(self.dtype(node, 0), out)])
    }

    pub(crate) fn squeeze(&mut self, node: &NodeProto, axes: &IntsParam) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        self.needs_values(node, &[1])?;
        let axes = axes.resolve(self.graph, node, Some(&self.out), "axes")?;
        let out = match axes {
            Some(axes) => {
                let axes: Vec<usize> = axes.iter().map(|&a| self.axis(node, a, x.len())).collect::<R<_>>()?;
                for &a in &axes {
                    if x[a].known().is_some_and(|d| d != 1) {
                        return Err(self.fail(node, format!("cannot squeeze axis {a} of size {}", x[a])));
                    }
                }
                x.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, d)| d.clone()).collect()
            }
            None => x.iter().filter(|d| d.known() != Some(1)).cloned().collect(),
        };
        Ok(vec![vt(self.dtype(node, 0), out)])
    }

    pub(crate) fn unsqueeze(&mut self, node: &NodeProto, axes: &IntsParam) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        self.needs_values(node, &[1])?;
        let axes = axes.resolve(self.graph, node, Some(&self.out), "axes")?.ok_or_else(|| self.fail(node, "has no axes"))?;
        let rank = x.len() + axes.len();
        let mut axes: Vec<usize> = axes.iter().map(|&a| self.axis(node, a, rank)).collect::<R<_>>()?;
        axes.sort_unstable();
        if axes.windows(2).any(|w| w[0] == w[1]) {
            return Err(self.fail(node, format!("axes {axes:?} repeat an axis")));
        }
        let mut src = x.into_iter();
        let out = (0..rank).map(|i| if axes.contains(&i) { Dim::Known(1) } else { src.next().unwrap_or(Dim::Known(1)) }).collect();
        Ok(vec![vt(self.dtype(node, 0), out)])
    }
}
