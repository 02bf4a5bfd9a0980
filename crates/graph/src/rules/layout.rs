//! Layout rules: `Transpose` permutes the tracked axes, `Reshape`/`Flatten`/`Squeeze`/
//! `Unsqueeze` regroup them into factors, `Expand` broadcasts.

use super::*;

impl Ctx<'_, '_> {
    pub(super) fn transpose(&mut self, node: &NodeProto, perm: Option<&[i64]>) -> Result<(), AnalysisError> {
        let Some(t) = self.in_track(node, 0) else {
            return Ok(());
        };
        let perm: Vec<usize> = match perm {
            Some(p) => p.iter().filter_map(|&x| norm_axis(x, t.len())).collect(),
            None => (0..t.len()).rev().collect(),
        };
        if perm.len() != t.len() {
            self.block_node(node, "bad perm");
            return Ok(());
        }
        let out = perm.iter().map(|&p| t[p].clone()).collect();
        self.set(&node.output[0], out);
        Ok(())
    }

    /// Reshape, Flatten, Squeeze, Unsqueeze: the factors of the input axes regrouped
    /// into the output dims; a channel factor split in two becomes a coarse (head) and
    /// an inner (head dim) factor.
    pub(super) fn reshape(&mut self, node: &NodeProto, op: &Op) -> Result<(), AnalysisError> {
        let Some(t) = self.in_track(node, 0) else {
            return Ok(());
        };
        let Some(od) = self.dims(&node.output[0]) else {
            self.block_node(node, "output shape unknown");
            return Ok(());
        };
        let out = match self.regroup(&t, &od) {
            Ok(o) => o,
            Err(why) => match self.dims(&node.input[0]).and_then(|id| regroup_around(&t, &id, &od)) {
                Some(o) => o,
                None => {
                    self.block_node(node, &format!("cannot follow the channels through this reshape: {why}"));
                    return Ok(());
                }
            },
        };
        if matches!(op, Op::Reshape { .. }) {
            let target = ops::constant_dims(self.graph, Some(&self.shapes), &node.input[1]).ok().flatten();
            for (i, a) in out.iter().enumerate() {
                // An axis that follows no channels is checked too: its entry must not
                // change with any ([`Ctx::shape_entry`]).
                let parts = count_parts(a);
                match target.as_ref().and_then(|v| v.get(i)) {
                    Some(Dim::Known(-1)) | Some(Dim::Known(0)) => {}
                    _ => {
                        let shape_input = node.input[1].clone();
                        self.shape_entry(node, &shape_input, i, parts);
                    }
                }
            }
        }
        self.set(&node.output[0], out);
        Ok(())
    }

    /// `DepthToSpace` / `SpaceToDepth`: the channels followed through the spec's Reshape,
    /// Transpose and Reshape ([`DepthSpace::steps`]), factor by factor as those rules do.
    /// In mode CRD (PyTorch's `PixelShuffle`) an output channel is a block of `b * b`
    /// input channels, so the input's channels go by whole blocks. In mode DCR an output
    /// channel takes one channel of each of the `b * b` blocks: channels of one layer
    /// interleaved that way are not followed.
    pub(super) fn depth_space(&mut self, node: &NodeProto, d: &DepthSpace) {
        let Some(t) = self.in_track(node, 0) else {
            return;
        };
        if d.kind == DepthSpaceKind::DepthToSpaceDcr && t.get(1).is_some_and(|a| a.is_tracked()) {
            let reason = "DepthToSpace in mode DCR makes each output channel of one channel from every block of the input's channels: channels interleaved so are not followed";
            self.block_node(node, reason);
            return;
        }
        let steps = self.dims(&node.input[0]).ok_or_else(|| "the input shape is unknown".to_string()).and_then(|dims| d.steps(&dims));
        let followed = steps.and_then(|steps| {
            let split = self.regroup(&t, &steps.split)?;
            let moved: ValueT = steps.perm.iter().map(|&p| split[p].clone()).collect();
            self.regroup(&moved, &steps.out)
        });
        match followed {
            Ok(out) => self.set(&node.output[0], out),
            Err(why) => self.block_node(node, &format!("cannot follow the channels through this {}: {why}", node.op())),
        }
    }

    pub(super) fn regroup(&mut self, t: &ValueT, od: &[Dim]) -> Result<ValueT, String> {
        let mut fs: Vec<Factor> =
            t.iter().flat_map(|a| a.factors.iter().cloned()).filter(|f| f.size != Dim::Known(1) || f.track.is_some()).collect();
        fs.reverse(); // a stack: next factor at the end
        let mut out = Vec::with_capacity(od.len());
        for d in od {
            let mut need = d.clone();
            let mut taken: Vec<Factor> = Vec::new();
            while need != Dim::Known(1) {
                let Some(f) = fs.pop() else {
                    return Err(format!("no input dimension left for output dimension {d}"));
                };
                if f.size == Dim::Known(1) {
                    taken.push(f);
                } else if f.size == need {
                    taken.push(f);
                    need = Dim::Known(1);
                } else if let Some(q) = need.div_exact(&f.size).filter(|_| f.size != Dim::Known(1)) {
                    taken.push(f);
                    need = q;
                } else if let (Some(have), Some(want)) = (f.size.known(), need.known()) {
                    if want > 0 && have % want == 0 {
                        let (outer, inner) = self.split_factor(f, want as usize)?;
                        taken.push(outer);
                        fs.push(inner);
                        need = Dim::Known(1);
                    } else {
                        return Err(format!("dimension {have} does not split into {want}"));
                    }
                } else if let Some((_, k)) = need.as_quotient().filter(|(n, _)| *n == f.size && f.track.is_none()) {
                    // `n` split into `floor(n / k)` windows of `k` (Swin's padded map at a
                    // symbolic image size): the element count of a valid Reshape makes the
                    // division exact.
                    taken.push(Factor { size: need.clone(), track: None });
                    fs.push(Factor { size: Dim::Known(k), track: None });
                    need = Dim::Known(1);
                } else if let Some(rest) = f.size.div_exact(&need).filter(|_| f.track.is_none()) {
                    // An untracked product such as `16*batch` split into `batch` and `16`.
                    taken.push(Factor { size: need.clone(), track: None });
                    fs.push(Factor { size: rest, track: None });
                    need = Dim::Known(1);
                } else {
                    return Err(format!("dimension {} does not match {need}", f.size));
                }
            }
            // A size-1 output axis takes the size-1 tracked factors there (a single head).
            while *d == Dim::Known(1) && fs.last().is_some_and(|f| f.size == Dim::Known(1)) {
                if let Some(f) = fs.pop() {
                    taken.push(f);
                }
            }
            let (axis, ties) = normalize(taken, d);
            for (a, b) in ties {
                self.spaces.tie(a, b);
            }
            // A window of every block is exact only while whole blocks go.
            let segs = axis.factors.iter().filter_map(|f| if let Some(Track::Segs(segs)) = &f.track { Some(segs) } else { None });
            for s in segs.flatten() {
                if let Seg::Tracked { range, scale: Scale::Window { k, .. }, .. } = s {
                    self.spaces.require_block(*range, *k, ReqKind::Split);
                }
            }
            out.push(axis);
        }
        if fs.iter().any(|f| f.track.is_some() || f.size != Dim::Known(1)) {
            return Err("input dimensions left over".into());
        }
        Ok(out)
    }

    /// Splits a factor of known size into `outer` x `size/outer`.
    pub(super) fn split_factor(&mut self, f: Factor, outer: usize) -> Result<(Factor, Factor), String> {
        let size = f.size.known().unwrap_or(0) as usize;
        let k = size / outer;
        let Some(track) = f.track else {
            return Ok((Factor { size: Dim::Known(outer as i64), track: None }, Factor { size: Dim::Known(k as i64), track: None }));
        };
        let segs = match track {
            Track::Segs(segs) => segs,
            // Positions inside heads split again (BLOOM's per-head `[3, D]`): sub-blocks of
            // `k` positions each, and the positions inside them, placed once one is picked.
            Track::Inner { k: block, ranges, zero, at: Some(at) } if k > 0 => {
                let sub = Track::Sub { k: block, ranges: ranges.clone(), zero, at, step: k };
                let inner = Track::Inner { k: block, ranges, zero, at: None };
                return Ok((
                    Factor { size: Dim::Known(outer as i64), track: Some(sub) },
                    Factor { size: Dim::Known(k as i64), track: Some(inner) },
                ));
            }
            _ => return Err("a head dimension is split again".into()),
        };
        let mut outer_segs = Vec::new();
        let mut ranges = Vec::new();
        let mut zero = true;
        let mut at = 0usize;
        for s in &segs {
            match s {
                Seg::Tracked { range, scale: Scale::Unit, zero: z } if at.is_multiple_of(k) && range.len % k == 0 => {
                    outer_segs.push(Seg::Tracked { range: *range, scale: Scale::Coarse(k), zero: *z });
                    ranges.push(*range);
                    zero &= *z;
                }
                Seg::Tracked { .. } => return Err(format!("channels do not split into blocks of {k}")),
                Seg::Opaque(_) => return Err("a partly untracked axis is split".into()),
            }
            at += s.axis_len();
        }
        Ok((
            Factor { size: Dim::Known(outer as i64), track: Some(Track::Segs(outer_segs)) },
            Factor { size: Dim::Known(k as i64), track: Some(Track::Inner { k, ranges, zero, at: Some(0) }) },
        ))
    }

    /// `ConstantOfShape` of zeros (T5's cross-attention position bias, `zeros([1, H, q,
    /// k])` added to every layer's scores): each axis whose size is a constant entry of
    /// the shape opens a space of its own, all zero, which construction shrinks by
    /// rewriting that entry. Joined with heads, position `h` is head `h`; joined with
    /// channels, channel `c`; tied to nothing, it holds no parameter and makes no group.
    /// Not followed in the analysis that unties the layers ([`crate::analyze::Shared`]):
    /// each layer then reads its kept heads of the zeros.
    pub(super) fn constant_of_shape(&mut self, node: &NodeProto) {
        let zeros = match node.attr_tensor("value") {
            Ok(None) => true,
            Ok(Some(t)) => oto_onnx::Tensor::from_proto(t, None).is_ok_and(|t| t.to_f64_vec().iter().all(|&v| v == 0.0)),
            Err(_) => false,
        };
        let (Some(od), Some(shape)) = (self.dims(&node.output[0]), node.input.first()) else {
            return;
        };
        if !zeros || matches!(self.shared, crate::analyze::Shared::Untied(_)) {
            return;
        }
        let user = node.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| node_label(node));
        let mut out: ValueT = od.iter().cloned().map(AxisT::plain).collect();
        for (i, d) in od.iter().enumerate() {
            let Some(n) = d.known().and_then(|n| usize::try_from(n).ok()).filter(|&n| n > 1) else {
                continue;
            };
            if !matches!(self.locate(&user, shape, i), Ok(crate::analyze::Located::Const(..))) {
                continue;
            }
            let range = self.spaces.new_base(n);
            out[i] = AxisT::unit(range, true);
            self.shape_entry(node, shape, i, vec![Part::Fixed(range, 1, 1)]);
            self.zero_spaces = true;
        }
        self.set(&node.output[0], out);
    }

    pub(super) fn expand(&mut self, node: &NodeProto) {
        let Some(t) = self.in_track(node, 0) else {
            return;
        };
        let Some(od) = self.dims(&node.output[0]) else {
            self.block_node(node, "shapes unknown");
            return;
        };
        let r = od.len();
        let Some(lead) = r.checked_sub(t.len()) else {
            self.block_node(node, "rank decreases");
            return;
        };
        let target = ops::constant_dims(self.graph, Some(&self.shapes), &node.input[1]).ok().flatten();
        let mut out: ValueT = od.iter().cloned().map(AxisT::plain).collect();
        let shape = node.input[1].clone();
        let user = node.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| node_label(node));
        let input_dims = self.dims(&node.input[0]);
        for (i, a) in t.iter().enumerate() {
            if !a.is_tracked() {
                // A size-1 axis broadcast to a constant entry (repeat_kv's `n_rep` copies
                // of each K/V head) opens a space of copies, which construction shrinks
                // by rewriting that entry: joined with query heads, copy `r` is the
                // `r`-th query head reading its K/V head. Tied to nothing, it makes no
                // group.
                let n = od.get(lead + i).and_then(Dim::known).and_then(|n| usize::try_from(n).ok()).filter(|&n| n > 1);
                let p = target.as_ref().and_then(|v| (v.len() + i).checked_sub(t.len()));
                let one = input_dims.as_ref().is_some_and(|d| d.get(i) == Some(&Dim::Known(1)));
                if let (Some(n), Some(p), true) = (n, p, one) {
                    if matches!(self.locate(&user, &shape, p), Ok(crate::analyze::Located::Const(..))) {
                        let range = self.spaces.new_base(n);
                        out[lead + i] = AxisT::unit(range, false);
                        self.shape_entry(node, &shape, p, vec![Part::Fixed(range, 1, 1)]);
                    }
                }
                continue;
            }
            out[lead + i] = a.clone();
            let entry = target.as_ref().and_then(|v| (v.len() + i).checked_sub(t.len()).and_then(|p| v.get(p).cloned()));
            if entry != Some(Dim::Known(1)) {
                if let Some(tl) = target.as_ref().map(Vec::len) {
                    let Some(p) = (tl + i).checked_sub(t.len()) else {
                        continue;
                    };
                    self.shape_entry(node, &shape, p, count_parts(a));
                }
            }
        }
        self.set(&node.output[0], out);
    }

    /// `Tile`: an axis repeated once keeps its channels (WavLM's position bias, repeated
    /// over the batch only); channels repeated several times, or a number of times the
    /// analysis cannot tell, are not followed (each would be several positions).
    pub(super) fn tile(&mut self, node: &NodeProto) {
        let Some(t) = self.in_track(node, 0) else {
            return;
        };
        let Some(od) = self.dims(&node.output[0]).filter(|d| d.len() == t.len()) else {
            self.block_node(node, "shapes unknown");
            return;
        };
        let repeats = ops::constant_dims(self.graph, Some(&self.shapes), &node.input[1]).ok().flatten();
        let mut out: ValueT = od.iter().cloned().map(AxisT::plain).collect();
        for (i, a) in t.iter().enumerate() {
            if repeats.as_ref().and_then(|r| r.get(i)) == Some(&Dim::Known(1)) {
                out[i] = a.clone();
            } else {
                self.block_axis_at(node, a, "repeats these channels");
            }
        }
        self.set(&node.output[0], out);
    }
}

/// [`Ctx::regroup`]'s fallback where symbolic sizes do not match factor by factor (Swin's
/// windows at a symbolic image size, whose counts shape inference names afresh): the
/// axes of equal size at both ends stay as they are, and the middle, where no channels
/// are tracked, becomes the output's middle. Row-major order keeps every element of the
/// end axes where it was, as the middles hold the same number of elements.
fn regroup_around(t: &ValueT, id: &[Dim], od: &[Dim]) -> Option<ValueT> {
    if t.len() != id.len() {
        return None;
    }
    let most = id.len().min(od.len());
    let lead = (0..most).take_while(|&i| id[i] == od[i]).count();
    let trail = (0..most - lead).take_while(|&j| id[id.len() - 1 - j] == od[od.len() - 1 - j]).count();
    let middle = &t[lead..t.len() - trail];
    if middle.iter().any(AxisT::is_tracked) || (lead == 0 && trail == 0) {
        return None;
    }
    let mut out: ValueT = t[..lead].to_vec();
    out.extend(od[lead..od.len() - trail].iter().cloned().map(AxisT::plain));
    out.extend(t[t.len() - trail..].iter().cloned());
    Some(out)
}
