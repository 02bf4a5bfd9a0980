//! Cutting parameter slices: every member of a group loses the indices of the removed
//! elements along its axis.

use crate::{mismatch, Result};
use oto_graph::Group;
use oto_onnx::proto::tensor_shape_proto::{dimension, Dimension};
use oto_onnx::proto::{type_proto, ModelProto};
use oto_onnx::{Graph, Model, Tensor, TensorData};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A row-major tensor seen as `[outer, len, inner]` around one axis.
pub(crate) struct AxisView {
    pub outer: usize,
    pub len: usize,
    pub inner: usize,
}

impl AxisView {
    /// `None` when the axis is beyond the rank.
    pub fn new(shape: &[usize], axis: usize) -> Option<AxisView> {
        let len = *shape.get(axis)?;
        Some(AxisView { outer: shape[..axis].iter().product(), len, inner: shape[axis + 1..].iter().product() })
    }

    /// Flat offsets of the entries whose index along the axis is `i`.
    pub fn offsets(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.outer).flat_map(move |o| {
            let base = (o * self.len + i) * self.inner;
            base..base + self.inner
        })
    }
}

/// Whether the entries at `offsets` are all exactly zero (`false` for a non-float tensor,
/// which no optimizer zeroes).
pub(crate) fn all_zero(data: &TensorData, mut offsets: impl Iterator<Item = usize>) -> bool {
    match data {
        TensorData::F32(v) => offsets.all(|k| v[k] == 0.0),
        TensorData::F64(v) => offsets.all(|k| v[k] == 0.0),
        TensorData::F16(v) => offsets.all(|k| v[k].to_f32() == 0.0),
        TensorData::Bf16(v) => offsets.all(|k| v[k].to_f32() == 0.0),
        _ => false,
    }
}

/// Keeps the indices `kept` (in order) along `axis`.
fn gather<T: Copy>(data: &[T], view: &AxisView, kept: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(view.outer * kept.len() * view.inner);
    for o in 0..view.outer {
        for &i in kept {
            let base = (o * view.len + i) * view.inner;
            out.extend_from_slice(&data[base..base + view.inner]);
        }
    }
    out
}

fn gather_data(data: &TensorData, view: &AxisView, kept: &[usize]) -> TensorData {
    match data {
        TensorData::F32(v) => TensorData::F32(gather(v, view, kept)),
        TensorData::F16(v) => TensorData::F16(gather(v, view, kept)),
        TensorData::Bf16(v) => TensorData::Bf16(gather(v, view, kept)),
        TensorData::F64(v) => TensorData::F64(gather(v, view, kept)),
        TensorData::I64(v) => TensorData::I64(gather(v, view, kept)),
        TensorData::I32(v) => TensorData::I32(gather(v, view, kept)),
        TensorData::I8(v) => TensorData::I8(gather(v, view, kept)),
        TensorData::U8(v) => TensorData::U8(gather(v, view, kept)),
        TensorData::Bool(v) => TensorData::Bool(gather(v, view, kept)),
    }
}

/// `count` zeros appended along the axis of `view`.
fn pad<T: Copy + Default>(data: &[T], view: &AxisView, count: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(view.outer * (view.len + count) * view.inner);
    for o in 0..view.outer {
        let base = o * view.len * view.inner;
        out.extend_from_slice(&data[base..base + view.len * view.inner]);
        out.extend(std::iter::repeat_n(T::default(), count * view.inner));
    }
    out
}

/// A float tensor's data with `count` zeros appended along the axis of `view` (`None`
/// for other element types).
pub(crate) fn pad_data(data: &TensorData, view: &AxisView, count: usize) -> Option<TensorData> {
    Some(match data {
        TensorData::F32(v) => TensorData::F32(pad(v, view, count)),
        TensorData::F16(v) => TensorData::F16(pad(v, view, count)),
        TensorData::Bf16(v) => TensorData::Bf16(pad(v, view, count)),
        TensorData::F64(v) => TensorData::F64(pad(v, view, count)),
        _ => return None,
    })
}

/// Indices to remove per initializer and axis, with the first group asking (for errors).
type Cuts<'a> = HashMap<&'a str, BTreeMap<usize, (BTreeSet<usize>, &'a Group)>>;

/// Replaces every initializer that has members in `groups` by its cut copy.
pub(crate) fn cut_initializers(model: &Model, graph: &Graph<'_>, groups: &[(&Group, Vec<usize>)], proto: &mut ModelProto) -> Result<()> {
    let mut cuts: Cuts<'_> = HashMap::new();
    for (g, removed) in groups {
        for m in &g.members {
            let entry = cuts.entry(m.initializer.as_str()).or_default().entry(m.axis).or_insert_with(|| (BTreeSet::new(), *g));
            for &e in removed {
                entry.0.extend(m.map.indices(e));
            }
        }
    }
    let mut new_shapes: HashMap<String, Vec<usize>> = HashMap::new();
    let Some(gp) = proto.graph.as_mut() else { return Ok(()) };
    for t in gp.initializer.iter_mut() {
        let Some(name) = t.name.clone() else { continue };
        let Some(axes) = cuts.get(name.as_str()) else { continue };
        let Some(original) = graph.initializer(&name) else { continue };
        let mut tensor: Tensor = model.tensor(original)?;
        for (&axis, (remove, g)) in axes {
            if remove.is_empty() {
                continue;
            }
            let view = AxisView::new(&tensor.shape, axis)
                .ok_or_else(|| mismatch(g, format!("member '{name}' has no axis {axis} (shape {:?})", tensor.shape)))?;
            if let Some(&i) = remove.iter().find(|&&i| i >= view.len) {
                return Err(mismatch(g, format!("member '{name}' index {i} is beyond axis {axis} (size {})", view.len)));
            }
            let kept: Vec<usize> = (0..view.len).filter(|i| !remove.contains(i)).collect();
            if kept.is_empty() {
                return Err(mismatch(g, format!("member '{name}' would lose all of axis {axis}")));
            }
            tensor.data = gather_data(&tensor.data, &view, &kept);
            tensor.shape[axis] = kept.len();
        }
        let doc = t.doc_string.clone();
        *t = tensor.to_proto(&name);
        t.doc_string = doc;
        new_shapes.insert(name, tensor.shape);
    }
    // An initializer also listed as a graph input (IR < 4) declares its shape there too.
    for v in gp.input.iter_mut() {
        let Some(shape) = v.name.as_ref().and_then(|n| new_shapes.get(n)) else { continue };
        if let Some(type_proto::Value::TensorType(tt)) = v.r#type.as_mut().and_then(|t| t.value.as_mut()) {
            if let Some(s) = tt.shape.as_mut() {
                s.dim =
                    shape.iter().map(|&d| Dimension { value: Some(dimension::Value::DimValue(d as i64)), ..Default::default() }).collect();
            }
        }
    }
    Ok(())
}

/// Sets the entries at `offsets` to zero; `false` (and nothing changed) for a
/// non-float tensor.
pub(crate) fn set_zero(data: &mut TensorData, offsets: impl Iterator<Item = usize>) -> bool {
    match data {
        TensorData::F32(v) => offsets.for_each(|k| v[k] = 0.0),
        TensorData::F64(v) => offsets.for_each(|k| v[k] = 0.0),
        TensorData::F16(v) => offsets.for_each(|k| v[k] = half::f16::ZERO),
        TensorData::Bf16(v) => offsets.for_each(|k| v[k] = half::bf16::ZERO),
        _ => return false,
    }
    true
}
