//! Layout operators: `Reshape`, `Flatten`, `Transpose`, `Squeeze`, `Unsqueeze`, `Expand`,
//! `Tile`, `DepthToSpace`, `SpaceToDepth`. Not counted in MACs.

use super::IntsParam;
use crate::graph::NodeExt;
use crate::proto::NodeProto;
use crate::shape::*;

/// `DepthToSpace` or `SpaceToDepth`: blocks of channels moved to space and back. The ONNX
/// spec defines both as a Reshape to rank 6, a Transpose and a Reshape
/// ([`DepthSpace::steps`]); the shape rule, the pruning rule and the executor all follow
/// those steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepthSpace {
    /// `blocksize` (required).
    pub blocksize: i64,
    /// Which way and in which channel order.
    pub kind: DepthSpaceKind,
}

/// How a [`DepthSpace`] moves an input of given dims: a Reshape to `split`, a Transpose
/// by `perm`, a Reshape to `out`.
#[derive(Debug, Clone, PartialEq)]
pub struct DepthSpaceSteps {
    /// The rank-6 shape the input is reshaped to.
    pub split: Vec<Dim>,
    /// The permutation applied to it.
    pub perm: [usize; 6],
    /// The output dims.
    pub out: Vec<Dim>,
}

/// The direction and channel order of a [`DepthSpace`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepthSpaceKind {
    /// `DepthToSpace` in mode `DCR` (the default; TensorFlow's order): channel
    /// `(i * b + j) * C + c` goes to offset `(i, j)` of output channel `c`.
    DepthToSpaceDcr,
    /// `DepthToSpace` in mode `CRD` (PyTorch's `PixelShuffle`): channel `c * b * b + i * b + j`.
    DepthToSpaceCrd,
    /// `SpaceToDepth` in mode `DCR` (the default; the only one before opset 25): offset
    /// `(i, j)` of channel `c` to channel `(i * b + j) * C + c`.
    SpaceToDepthDcr,
    /// `SpaceToDepth` in mode `CRD` (PyTorch's `PixelUnshuffle`): to channel
    /// `c * b * b + i * b + j`.
    SpaceToDepthCrd,
}

impl DepthSpace {
    /// Reads a `DepthToSpace` (`to_space`) or `SpaceToDepth` node's attributes.
    pub fn parse(node: &NodeProto, to_space: bool) -> Result<DepthSpace, String> {
        let blocksize = node.attr_int("blocksize")?.ok_or("has no 'blocksize' attribute")?;
        if blocksize < 1 {
            return Err(format!("blocksize {blocksize} is not positive"));
        }
        let kind = match (to_space, node.attr_string("mode")?.as_deref().unwrap_or("DCR")) {
            (true, "DCR") => DepthSpaceKind::DepthToSpaceDcr,
            (true, "CRD") => DepthSpaceKind::DepthToSpaceCrd,
            (false, "DCR") => DepthSpaceKind::SpaceToDepthDcr,
            (false, "CRD") => DepthSpaceKind::SpaceToDepthCrd,
            (_, other) => return Err(format!("mode '{other}' is neither DCR nor CRD")),
        };
        Ok(DepthSpace { blocksize, kind })
    }

    /// The spec's steps for an input of dims `x` (`[N, C, H, W]`).
    pub fn steps(&self, x: &[Dim]) -> Result<DepthSpaceSteps, String> {
        let [n, c, h, w] = x else {
            return Err(format!("input has rank {}, expected 4", x.len()));
        };
        let b = Dim::Known(self.blocksize);
        let mul = |x: &Dim, y: &Dim| x.mul(y).map_err(|e| e.to_string());
        let bb = mul(&b, &b)?;
        Ok(match self.kind {
            DepthSpaceKind::DepthToSpaceDcr | DepthSpaceKind::DepthToSpaceCrd => {
                let depth = c.div_exact(&bb).ok_or_else(|| format!("{c} channels do not divide by blocksize^2 = {bb}"))?;
                let out = vec![n.clone(), depth.clone(), mul(h, &b)?, mul(w, &b)?];
                if self.kind == DepthSpaceKind::DepthToSpaceDcr {
                    DepthSpaceSteps {
                        split: vec![n.clone(), b.clone(), b.clone(), depth, h.clone(), w.clone()],
                        perm: [0, 3, 4, 1, 5, 2],
                        out,
                    }
                } else {
                    DepthSpaceSteps {
                        split: vec![n.clone(), depth, b.clone(), b.clone(), h.clone(), w.clone()],
                        perm: [0, 1, 4, 2, 5, 3],
                        out,
                    }
                }
            }
            DepthSpaceKind::SpaceToDepthDcr | DepthSpaceKind::SpaceToDepthCrd => {
                // The spec asks for divisible sizes; a symbolic one is taken at its word.
                let known_rest = |d: &Dim| d.known().map(|v| v % self.blocksize).filter(|&r| r != 0);
                if let Some(r) = known_rest(h).or_else(|| known_rest(w)) {
                    return Err(format!("the spatial size {h}x{w} does not divide by blocksize {b} (remainder {r})"));
                }
                let rows = h.floor_div(&b).map_err(|e| e.to_string())?;
                let cols = w.floor_div(&b).map_err(|e| e.to_string())?;
                let out = vec![n.clone(), mul(c, &bb)?, rows.clone(), cols.clone()];
                let perm = if self.kind == DepthSpaceKind::SpaceToDepthDcr { [0, 3, 5, 1, 2, 4] } else { [0, 1, 3, 5, 2, 4] };
                DepthSpaceSteps { split: vec![n.clone(), c.clone(), rows, b.clone(), cols, b], perm, out }
            }
        })
    }
}

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

    pub(crate) fn depth_space(&mut self, node: &NodeProto, d: &DepthSpace) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        let steps = d.steps(&x).map_err(|m| self.fail(node, m))?;
        Ok(vec![vt(self.dtype(node, 0), steps.out)])
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
