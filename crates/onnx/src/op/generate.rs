//! Generators and shape values: `Shape`, `Size`, `Constant`, `ConstantOfShape`, `Range`,
//! `NonZero`, `OneHot`, `EyeLike`. Not counted in MACs.

use crate::graph::NodeExt;
use crate::ops;
use crate::proto::NodeProto;
use crate::shape::*;
use crate::tensor::{DType, Tensor, TensorData};

impl Infer<'_, '_> {
    pub(crate) fn shape_of(&mut self, node: &NodeProto, start: i64, end: Option<i64>) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        let (s, e) = shape_range(x.len(), start, end);
        Ok(vec![vt(Some(DType::I64), vec![Dim::Known((e - s) as i64)])])
    }

    pub(crate) fn size(&mut self) -> R<Vec<ValueType>> {
        Ok(vec![vt(Some(DType::I64), vec![])])
    }

    pub(crate) fn constant_of_shape(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let shape = self.values(node, 0)?;
        let dtype = match self.attr(node, node.attr_tensor("value"))? {
            Some(t) => dtype_of_proto(t),
            None => Some(DType::F32),
        };
        Ok(vec![vt(dtype, shape)])
    }

    pub(crate) fn range(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let dtype = self.dtype(node, 0);
        let len = match (self.values(node, 0), self.values(node, 1), self.values(node, 2)) {
            (Ok(s), Ok(l), Ok(d)) if s.len() == 1 && l.len() == 1 && d.len() == 1 => range_len(&s[0], &l[0], &d[0])?,
            _ => None,
        };
        let len = match len {
            Some(l) => l,
            None => match self.range_float_len(node) {
                Some(l) => Dim::Known(l),
                None => self.fresh(),
            },
        };
        Ok(vec![vt(dtype, vec![len])])
    }

    /// `[rank, count]`; the count (and the indices) are known where the input is a
    /// constant (repeat_interleave's mask, computed from static sizes in TorchScript
    /// exports), a fresh symbol otherwise.
    pub(crate) fn non_zero(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        let rank = Dim::Known(x.len() as i64);
        let known = ops::input(node, 0).and_then(|i| self.out.constants.get(i)).map(non_zero_indices);
        if let (Some(indices), Some(out)) = (known, node.output.first()) {
            let count = Dim::Known(indices.shape[1] as i64);
            self.store_constant(out, indices);
            return Ok(vec![vt(Some(DType::I64), vec![rank, count])]);
        }
        let n = self.fresh();
        Ok(vec![vt(Some(DType::I64), vec![rank, n])])
    }

    /// The indices' shape with an axis of `depth` entries inserted at `axis`, of the
    /// values' type (a mixture-of-experts router's choices as a mask per expert).
    pub(crate) fn one_hot(&mut self, node: &NodeProto, axis: i64) -> R<Vec<ValueType>> {
        let mut out = self.shape(node, 0)?;
        let a = self.axis(node, axis, out.len() + 1)?;
        let depth = match self.values(node, 1) {
            Ok(v) if v.len() == 1 => v[0].clone(),
            _ => self.fresh(),
        };
        out.insert(a, depth);
        Ok(vec![vt(self.dtype(node, 2), out)])
    }

    pub(crate) fn eye_like(&mut self, node: &NodeProto, dtype: Option<DType>) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        if x.len() != 2 {
            return Err(self.fail(node, format!("input has rank {}, expected 2", x.len())));
        }
        Ok(vec![vt(dtype.or(self.dtype(node, 0)), x)])
    }

    pub(crate) fn range_float_len(&self, node: &NodeProto) -> Option<i64> {
        let get = |k: usize| -> Option<f64> {
            self.out.constants.get(ops::input(node, k)?).map(|t| t.to_f64_vec()).filter(|v| v.len() == 1).map(|v| v[0])
        };
        let (s, l, d) = (get(0)?, get(1)?, get(2)?);
        (d != 0.0).then(|| ((l - s) / d).ceil().max(0.0) as i64)
    }

    pub(crate) fn constant(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let Some(out) = node.output.first() else { return Ok(vec![]) };
        if let Some(t) = self.attr(node, node.attr_tensor("value"))? {
            let ty = vt(dtype_of_proto(t), known_dims(&t.dims));
            if numel_of(&t.dims).is_some_and(|n| n <= FOLD_LIMIT) {
                let tensor = self.graph.model.tensor(t)?;
                self.store_constant(out, tensor);
            }
            return Ok(vec![ty]);
        }
        // Strings and sparse values are not tensors oto computes with: their type stays unknown.
        if node.attribute.first().is_some_and(|a| matches!(a.name.as_deref(), Some("value_string" | "value_strings" | "sparse_value"))) {
            return Err(Stop::Unknown);
        }
        let t = self.graph.constant(out)?.ok_or_else(|| self.fail(node, "Constant node has no value"))?;
        let ty = vt(Some(t.dtype()), t.shape.iter().map(|&d| Dim::Known(d as i64)).collect());
        self.store_constant(out, t);
        Ok(vec![ty])
    }
}

/// The axes `Shape` reports of a rank-`rank` input: `start..end` (`end` the rank when
/// absent), negative values counted from the end, both clamped to `0..=rank`.
pub(crate) fn shape_range(rank: usize, start: i64, end: Option<i64>) -> (usize, usize) {
    let r = rank as i64;
    let clamp = |v: i64| (if v < 0 { v.saturating_add(r) } else { v }).clamp(0, r) as usize;
    let (s, e) = (clamp(start), clamp(end.unwrap_or(r)));
    (s, e.max(s))
}

/// `NonZero` of a constant: the coordinates of its non-zero entries, `[rank, count]`, in
/// row-major order (a scalar counts as rank 1).
fn non_zero_indices(t: &Tensor) -> Tensor {
    let values = t.to_f64_vec();
    let dims: Vec<usize> = if t.shape.is_empty() { vec![1] } else { t.shape.clone() };
    let hits: Vec<usize> = values.iter().enumerate().filter(|(_, v)| **v != 0.0).map(|(i, _)| i).collect();
    let mut coords = Vec::with_capacity(dims.len() * hits.len());
    for axis in 0..dims.len() {
        let stride: usize = dims[axis + 1..].iter().product();
        coords.extend(hits.iter().map(|&flat| ((flat / stride.max(1)) % dims[axis].max(1)) as i64));
    }
    Tensor { shape: vec![dims.len(), hits.len()], data: TensorData::I64(coords) }
}
