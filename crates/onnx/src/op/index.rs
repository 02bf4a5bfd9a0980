//! Concatenation, splitting, slicing, padding, resizing, gathering and scattering:
//! `Concat`, `Split`, `Slice`, `Pad`, `Resize`/`Upsample`, `Gather`, `GatherElements`,
//! `GatherND`, `ScatterND`, `ScatterElements`. Not counted in MACs.

use crate::graph::NodeExt;
use crate::ops;
use crate::proto::NodeProto;
use crate::shape::*;

impl Infer<'_, '_> {
    pub(crate) fn gather(&mut self, node: &NodeProto, axis: i64) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        let idx = self.shape(node, 1)?;
        let a = self.axis(node, axis, x.len())?;
        let mut out = x[..a].to_vec();
        out.extend(idx);
        out.extend_from_slice(&x[a + 1..]);
        Ok(vec![vt(self.dtype(node, 0), out)])
    }

    pub(crate) fn gather_elements(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        Ok(vec![vt(self.dtype(node, 0), self.shape(node, 1)?)])
    }

    pub(crate) fn gather_nd(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let (x, mut out, batch, k) = self.nd_indices(node)?;
        out.pop();
        out.extend_from_slice(&x[batch + k..]);
        Ok(vec![vt(self.dtype(node, 0), out)])
    }

    pub(crate) fn scatter_nd(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let (x, idx, _, k) = self.nd_indices(node)?;
        let mut expected = idx[..idx.len() - 1].to_vec();
        expected.extend_from_slice(&x[k..]);
        if let Ok(updates) = self.shape(node, 2) {
            let differs = updates.len() != expected.len()
                || updates.iter().zip(&expected).any(|(u, e)| u.known().zip(e.known()).is_some_and(|(u, e)| u != e));
            if differs {
                return Err(self.fail(node, format!("updates have shape {}, expected {}", fmt_shape(&updates), fmt_shape(&expected))));
            }
        }
        Ok(vec![vt(self.dtype(node, 0), x)])
    }

    pub(crate) fn scatter_elements(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        Ok(vec![vt(self.dtype(node, 0), self.shape(node, 0)?)])
    }

    /// GatherND/ScatterND: the data and indices shapes, `batch_dims` and `k`, the number of
    /// data axes each index row addresses (the last indices axis; it must be known), checked
    /// against the data after the batch axes.
    pub(crate) fn nd_indices(&self, node: &NodeProto) -> R<(Vec<Dim>, Vec<Dim>, usize, usize)> {
        let x = self.shape(node, 0)?;
        let idx = self.shape(node, 1)?;
        let batch = self.attr(node, node.attr_int_or("batch_dims", 0))?;
        let Some(last) = idx.last() else {
            return Err(self.fail(node, "indices are a scalar; they need at least one axis"));
        };
        let k = last.known().ok_or(Stop::Unknown)?;
        let fits = usize::try_from(batch).ok().zip(usize::try_from(k).ok()).filter(|(b, k)| *b < idx.len() && b + k <= x.len());
        let Some((batch, k)) = fits else {
            return Err(self.fail(
                node,
                format!("indices of shape {} cannot index data of shape {} with batch_dims {batch}", fmt_shape(&idx), fmt_shape(&x)),
            ));
        };
        if let Some(a) = (0..batch).find(|&a| x[a].known().zip(idx[a].known()).is_some_and(|(d, i)| d != i)) {
            return Err(self.fail(node, format!("batch axis {a} is {} in the data but {} in the indices", x[a], idx[a])));
        }
        Ok((x, idx, batch, k))
    }

    pub(crate) fn concat(&mut self, node: &NodeProto, axis: i64) -> R<Vec<ValueType>> {
        let shapes: Vec<Vec<Dim>> =
            (0..node.input.len()).filter(|&k| Self::has_input(node, k)).map(|k| self.shape(node, k)).collect::<R<_>>()?;
        let Some(first) = shapes.first() else { return Err(self.fail(node, "has no inputs")) };
        let rank = first.len();
        let a = self.axis(node, axis, rank)?;
        let mut out = first.clone();
        for s in &shapes[1..] {
            if s.len() != rank {
                return Err(self.fail(node, format!("inputs have ranks {} and {}", rank, s.len())));
            }
            for i in 0..rank {
                if i == a {
                    out[a] = out[a].add(&s[a])?;
                } else {
                    out[i] = match (&out[i], &s[i]) {
                        (p, q) if p == q => p.clone(),
                        (Dim::Known(p), Dim::Known(q)) => {
                            return Err(self.fail(node, format!("inputs differ on axis {i} ({p} vs {q}), which is not the concat axis {a}")))
                        }
                        (Dim::Known(_), _) => out[i].clone(),
                        (_, q) => q.clone(),
                    };
                }
            }
        }
        Ok(vec![vt(self.dtype(node, 0), out)])
    }

    pub(crate) fn split(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        self.needs_values(node, &[1])?;
        let form = ops::split(self.graph, node, Some(&self.out))?;
        let a = self.axis(node, form.axis, x.len())?;
        let dt = self.dtype(node, 0);
        let sizes: Vec<Dim> = match (&form.sizes, x[a].known()) {
            (_, Some(len)) => form.sizes_for(len).map_err(|m| self.fail(node, m))?.into_iter().map(Dim::Known).collect(),
            (Some(s), None) => known_dims(s),
            (None, None) => {
                match (0..form.num_outputs).map(|_| x[a].div_exact(&Dim::Known(form.num_outputs as i64))).collect::<Option<Vec<_>>>() {
                    Some(v) => v,
                    None => (0..form.num_outputs).map(|_| self.fresh()).collect(),
                }
            }
        };
        Ok(sizes
            .into_iter()
            .map(|s| {
                let mut o = x.clone();
                o[a] = s;
                vt(dt, o)
            })
            .collect())
    }

    pub(crate) fn slice(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        self.needs_values(node, &[1, 2, 3, 4])?;
        let p = ops::slice_params(self.graph, node, Some(&self.out))?;
        let mut out = x.clone();
        let mut touched = vec![false; x.len()];
        for i in 0..p.starts.len() {
            let axis = p.axes.as_ref().map_or(i as i64, |a| a[i]);
            let a = self.axis(node, axis, x.len())?;
            if std::mem::replace(&mut touched[a], true) {
                return Err(self.fail(node, format!("axis {a} is sliced twice")));
            }
            let step = p.steps.as_ref().map_or(1, |s| s[i]);
            out[a] = match slice_len(&x[a], &p.starts[i], &p.ends[i], step)? {
                Some(d) => d,
                None => self.fresh(),
            };
        }
        Ok(vec![vt(self.dtype(node, 0), out)])
    }

    pub(crate) fn pad(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        self.needs_values(node, &[1, 2, 3])?;
        let p = ops::pads(self.graph, node, Some(&self.out))?;
        let axes = self.axes_or_all(node, p.axes.as_deref(), x.len())?;
        if p.pads.len() != 2 * axes.len() {
            return Err(self.fail(node, format!("pads {:?} needs {} entries for {} axes", p.pads, 2 * axes.len(), axes.len())));
        }
        let mut out = x;
        let n = axes.len();
        for (i, &a) in axes.iter().enumerate() {
            let total = p.pads[i].checked_add(p.pads[i + n]).ok_or_else(|| {
                self.fail(node, format!("pads {} and {} of axis {a} overflow a 64-bit integer", p.pads[i], p.pads[i + n]))
            })?;
            out[a] = out[a].add(&Dim::Known(total))?;
        }
        Ok(vec![vt(self.dtype(node, 0), out)])
    }

    pub(crate) fn resize(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        self.needs_values(node, &[1, 2, 3])?;
        let r = ops::resize(self.graph, node, Some(&self.out))?;
        let axes = self.axes_or_all(node, r.axes.as_deref(), x.len())?;
        let mut out = x.clone();
        if let Some(sizes) = &r.sizes {
            if sizes.len() != axes.len() {
                return Err(self.fail(node, format!("sizes has {} entries for {} axes", sizes.len(), axes.len())));
            }
            for (&a, s) in axes.iter().zip(sizes) {
                out[a] = s.clone();
            }
        } else if let Some(scales) = &r.scales {
            if scales.len() != axes.len() {
                return Err(self.fail(node, format!("scales has {} entries for {} axes", scales.len(), axes.len())));
            }
            for (&a, &s) in axes.iter().zip(scales) {
                out[a] = match &x[a] {
                    Dim::Known(n) => Dim::Known((*n as f64 * s).floor() as i64),
                    d if s == 1.0 => d.clone(),
                    d if s.fract() == 0.0 => d.mul(&Dim::Known(s as i64))?,
                    _ => self.fresh(),
                };
            }
        }
        Ok(vec![vt(self.dtype(node, 0), out)])
    }
}
