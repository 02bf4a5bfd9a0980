//! Indexing rules: `Gather` (embeddings produce spaces), `Resize`, `Pad`, `Concat` (offsets),
//! `Split` and `Slice` (parts of a space).

use super::*;

impl Ctx<'_, '_> {
    pub(super) fn gather(&mut self, node: &NodeProto, axis: i64) {
        let (data, idx) = (node.input[0].clone(), node.input[1].clone());
        let Some(od) = self.dims(&node.output[0]) else {
            if self.tracks.contains_key(&data) {
                self.block_node(node, "shapes unknown");
            }
            return;
        };
        if self.is_init(&data) {
            if matches!(&self.shared, crate::analyze::Shared::Untied(tables) if tables.contains(&data)) {
                return; // a per-head table the layers share, read per layer (`Shared`)
            }
            // Embedding lookup: a new space on the row width.
            let Some(dd) = self.init_dims(&data) else {
                return;
            };
            if dd.len() == 2 && norm_axis(axis, 2) == Some(0) && !od.is_empty() {
                let sp = self.new_space(dd[1]);
                self.member(&data, 1, sp, 0, 1, 1, Role::Producer);
                let mut out: ValueT = od.iter().map(|d| AxisT::plain(d.clone())).collect();
                let last = out.len() - 1;
                out[last] = AxisT::unit(sp, true);
                self.set(&node.output[0], out);
            }
            return;
        }
        let Some(t) = self.track(&data).cloned() else {
            return;
        };
        let Some(ax) = norm_axis(axis, t.len()) else {
            return;
        };
        let Some(id) = self.dims(&idx) else {
            self.block_node(node, "shapes unknown");
            return;
        };
        let mut out: Vec<AxisT> = Vec::new();
        out.extend(t[..ax].iter().cloned());
        out.extend(id.iter().map(|d| AxisT::plain(d.clone())));
        let rest: Vec<AxisT> = t[ax + 1..].to_vec();
        if let [Factor { track: Some(Track::Sub { k, ranges, zero, at, step }), size }] = t[ax].factors.as_slice() {
            // Picking sub-blocks (the q, k or v of BLOOM's per-head `[3, D]`): constant
            // indices inside the axis (negative: from the end) place the positions.
            let pick = ops::constant_ints(self.graph, Some(&self.shapes), &idx).ok().flatten();
            let n = size.known().unwrap_or(0);
            let inside = |i: i64| usize::try_from(if i < 0 { i.saturating_add(n) } else { i }).ok().filter(|&i| (i as i64) < n);
            let first = pick.as_deref().and_then(|p| p.first().copied()).and_then(inside);
            let Some(j) = first.filter(|_| pick.as_ref().is_some_and(|p| p.len() == 1)) else {
                self.block_axis_at(node, &t[ax], "gathers along sub-blocks of heads with indices that are not one constant");
                out.extend(rest);
                self.set(&node.output[0], out);
                return;
            };
            let Some(start) = j.checked_mul(*step).and_then(|o| o.checked_add(*at)) else {
                self.block_axis_at(node, &t[ax], "gathers outside the sub-blocks of heads");
                out.extend(rest);
                self.set(&node.output[0], out);
                return;
            };
            if id.is_empty() {
                // A scalar index drops the axis; the positions split off with it are placed.
                let (k, ranges, step) = (*k, ranges.clone(), *step);
                let axis = t[ax].clone();
                out.truncate(ax);
                out.extend(rest);
                if !crate::analyze::pick_sub(&mut out, k, &ranges, start, step) {
                    self.block_axis_at(node, &axis, "picks a sub-block of heads whose positions were rearranged");
                }
            } else if id.len() == 1 {
                // One index kept as an axis of one sub-block.
                out.truncate(ax);
                let track = Track::Sub { k: *k, ranges: ranges.clone(), zero: *zero, at: start, step: *step };
                out.push(AxisT { factors: vec![Factor { size: Dim::Known(1), track: Some(track) }] });
                out.extend(rest);
            } else {
                self.block_axis_at(node, &t[ax], "gathers along sub-blocks of heads with a nested index");
                out.extend(rest);
            }
            self.set(&node.output[0], out);
            return;
        }
        if t[ax].is_tracked() {
            // Picking one coarse position (q, k or v of a packed projection) turns the
            // matching inner axis into plain channels of that block.
            let pick = ops::constant_ints(self.graph, Some(&self.shapes), &idx).ok().flatten();
            // One index: a scalar (the axis dropped) or, counted from the end, a 1-D index
            // (an axis of one block kept: Falcon's `fused[..., [-2], :]` picking the one
            // key head after the query heads).
            let one = id.is_empty() || (id.len() == 1 && pick.as_deref().is_some_and(|p| matches!(p, [i] if *i < 0)));
            let coarse = match (t[ax].factors.as_slice(), pick.as_deref(), one) {
                ([Factor { track: Some(Track::Segs(segs)), .. }], Some([i]), true) => match segs.as_slice() {
                    [Seg::Tracked { range, scale: Scale::Coarse(k), .. }] => Some((*range, *k, *i)),
                    _ => None,
                },
                _ => None,
            };
            // The index must be inside the coarse axis (negative: from the end); a file may
            // hold any index.
            let n = coarse.map_or(0, |(range, k, _)| range.len / k.max(1));
            let inside = |i: i64| usize::try_from(if i < 0 { i.saturating_add(n as i64) } else { i }).ok().filter(|&i| i < n);
            let Some((range, k, i)) = coarse.and_then(|(range, k, i)| Some((range, k, inside(i)?))) else {
                self.block_axis_at(node, &t[ax], "gathers along the channel axis");
                out.extend(rest);
                self.set(&node.output[0], out);
                return;
            };
            if !id.is_empty() {
                // The index counts from the end: the blocks from the picked one on stay.
                let tail = range.sub(i * k, range.len - i * k);
                self.spaces.block(tail, format!("{}: picked by an index counted from the end", node_label(node)));
            }
            // The inner axis's positions (all of the block, or a window of it) in block `i`.
            let mut picked_any = false;
            let rest: Vec<AxisT> = rest
                .into_iter()
                .map(|a| match a.factors.as_slice() {
                    [Factor { track: Some(Track::Inner { k: kk, ranges, zero, at: Some(at) }), size }]
                        if *kk == k && ranges == &[range] =>
                    {
                        match size.known().and_then(|n| usize::try_from(n).ok()).filter(|n| at + n <= k) {
                            Some(n) => {
                                picked_any = true;
                                AxisT::unit(range.sub(i * k + at, n), *zero)
                            }
                            None => a,
                        }
                    }
                    _ => a,
                })
                .collect();
            if !picked_any {
                self.block_axis_at(node, &t[ax], "gathers along the channel axis");
            }
            out.extend(rest);
            self.set(&node.output[0], out);
            return;
        }
        out.extend(rest);
        self.set(&node.output[0], out);
    }

    pub(super) fn resize(&mut self, node: &NodeProto, r: &oto_onnx::op::Resize) {
        let Some(t) = self.in_track(node, 0) else {
            return;
        };
        // tf_crop_and_resize samples a region of every axis (the channels' too) and writes
        // its extrapolation value outside it: a removed channel would not stay zero.
        let crop = r.coordinate == oto_onnx::op::Coordinate::TfCropAndResize;
        let (Some(id), Some(od)) = (self.dims(&node.input[0]), self.dims(&node.output[0])) else {
            self.block_node(node, "shapes unknown");
            return;
        };
        let mut out: ValueT = od.iter().cloned().map(AxisT::plain).collect();
        // Output sizes given as `sizes` (input 3; the dynamo exporter's constant
        // `[1, 256, 14, 14]`): the entry of an axis whose channels go changes with them.
        // With `axes` (opset 18) the sizes list those axes only: axis `i` has entry
        // `axes.position(i)`, or none when it is not resized.
        let sizes = node.input.get(3).filter(|v| !v.is_empty()).cloned();
        let axes: Option<Vec<usize>> =
            node.attr_ints("axes").ok().flatten().map(|a| a.iter().filter_map(|&x| norm_axis(x, t.len())).collect());
        for (i, a) in t.iter().enumerate() {
            if crop {
                self.block_axis_at(node, a, "tf_crop_and_resize samples a region of every axis and extrapolates outside it");
            } else if id.get(i) == od.get(i) {
                out[i] = a.clone();
                let entry = match &axes {
                    Some(axes) => axes.iter().position(|&x| x == i),
                    None => Some(i),
                };
                if let (Some(sizes), Some(entry), true) = (&sizes, entry, a.is_tracked()) {
                    self.shape_entry(node, sizes, entry, count_parts(a));
                }
            } else {
                self.block_axis_at(node, a, "resizes a tracked axis");
            }
        }
        self.set(&node.output[0], out);
    }

    /// The tracks of input 0 of a node that reads it at the positions input 1 gives
    /// (`GridSample`'s grid, `GatherND`'s indices), whose tracked axes block with `why`.
    fn data_read_at(&mut self, node: &NodeProto, why: &str) -> Option<ValueT> {
        if let Some(positions) = self.in_track(node, 1) {
            for a in &positions {
                self.block_axis_at(node, a, why);
            }
        }
        self.in_track(node, 0)
    }

    /// `GridSample`: every channel of the input (axis 1) is sampled at the grid's points
    /// on its own, and is zero where it is zero (an interpolation of zeros, and any padding
    /// of them). The batch (axis 0) must match the grid's, and the spatial axes are read
    /// at computed points: channels tracked there, or in the grid, block.
    pub(super) fn grid_sample(&mut self, node: &NodeProto) {
        let Some(t) = self.data_read_at(node, "the sampling grid's points are not channels") else {
            return;
        };
        let Some(od) = self.dims(&node.output[0]) else {
            self.block_node(node, "shapes unknown");
            return;
        };
        let mut out: ValueT = od.iter().cloned().map(AxisT::plain).collect();
        for (i, a) in t.iter().enumerate() {
            match (i, out.get_mut(i)) {
                (1, Some(o)) => *o = a.clone(),
                (0, _) => self.block_axis_at(node, a, "the input's batch must stay the grid's"),
                _ => self.block_axis_at(node, a, "samples a tracked axis at computed points"),
            }
        }
        self.set(&node.output[0], out);
    }

    /// `GatherND`: indices `[..., k]` pick positions of the data's first `batch_dims + k`
    /// axes, and the data's later axes pass whole to the output's last ones (channels
    /// moved last by a `Transpose`: the dynamo exporter's adaptive average pooling).
    /// Channels tracked on a picked axis, or in the indices, block.
    pub(super) fn gather_nd(&mut self, node: &NodeProto) {
        let Some(t) = self.data_read_at(node, "the indices are not channels") else {
            return;
        };
        let batch_dims = node.attr_int_or("batch_dims", 0).ok().and_then(|b| usize::try_from(b).ok());
        let k = self.dims(&node.input[1]).and_then(|d| d.last().and_then(Dim::known)).and_then(|k| usize::try_from(k).ok());
        let (Some(od), Some(lead)) = (self.dims(&node.output[0]), batch_dims.zip(k).map(|(b, k)| b + k)) else {
            self.block_node(node, "shapes unknown");
            return;
        };
        let Some(first) = (od.len() + lead).checked_sub(t.len()).filter(|_| lead <= t.len()) else {
            self.block_node(node, "the output's rank does not fit the data's");
            return;
        };
        let mut out: ValueT = od.iter().cloned().map(AxisT::plain).collect();
        for (i, a) in t.iter().enumerate() {
            match i.checked_sub(lead).and_then(|j| out.get_mut(first + j)) {
                Some(o) => *o = a.clone(),
                None => self.block_axis_at(node, a, "picks positions of a tracked axis with runtime indices"),
            }
        }
        self.set(&node.output[0], out);
    }

    pub(super) fn pad(&mut self, node: &NodeProto, pad: &Pad) {
        let Some(mut t) = self.in_track(node, 0) else {
            return;
        };
        let Ok(p) = pad.resolve_dims(self.graph, node, Some(&self.shapes)) else {
            self.block_node(node, "pads are not computable from constants and shapes");
            return;
        };
        let rank = t.len();
        let axes: Vec<usize> = match &p.axes {
            Some(a) => a.iter().filter_map(|&x| norm_axis(x, rank)).collect(),
            None => (0..rank).collect(),
        };
        let n = axes.len();
        let od = self.dims(&node.output[0]);
        for (j, &ax) in axes.iter().enumerate() {
            // A symbolic pad (computed from sizes) may be non-zero.
            let zero = |k: usize| p.pads.get(k).is_none_or(|d| *d == Dim::Known(0));
            if zero(j) && zero(j + n) {
                continue;
            }
            if t[ax].is_tracked() {
                let a = t[ax].clone();
                self.block_axis_at(node, &a, "pads a tracked axis");
            }
            // The padded axis has the output's length (Swin's windows padded to a
            // multiple of their size), which the Reshape after it splits.
            if let Some(d) = od.as_ref().and_then(|d| d.get(ax)) {
                t[ax] = AxisT::plain(d.clone());
            }
        }
        if p.mode == PadMode::Constant && p.constant_value != 0.0 {
            for a in &mut t {
                a.map_zero(&|_| false);
            }
        }
        self.set(&node.output[0], t);
    }

    /// Per-channel parameters on axis 1: slices of `params` with their roles; the
    /// output's channels are zero when the producers are.
    pub(super) fn concat(&mut self, node: &NodeProto, axis: i64) -> Result<(), AnalysisError> {
        let Some(od) = self.dims(&node.output[0]) else {
            self.block_node(node, "shapes unknown");
            return Ok(());
        };
        let rank = od.len();
        let Some(ax) = norm_axis(axis, rank) else {
            return Ok(());
        };
        let inputs: Vec<String> = node.input.iter().filter(|s| !s.is_empty()).cloned().collect();
        let mut out: ValueT = od.iter().cloned().map(AxisT::plain).collect();
        // Pieces of the inside of heads put back together (rotary embeddings).
        let inner = self.concat_inner(&inputs, ax, &od);
        let inner_done = inner.is_some();
        if let Some(a) = inner {
            out[ax] = a;
        }
        // The concatenated axis: segments laid end to end.
        let mut segs = Vec::new();
        let mut ok = true;
        for v in inputs.iter().filter(|_| !inner_done) {
            let len = self.dims(v).and_then(|d| d.get(ax).and_then(Dim::known));
            let tr = self.track(v).map(|t| t[ax].clone()).filter(AxisT::is_tracked);
            match (tr, len) {
                (Some(a), _) => match a.single_segs() {
                    Some(s) => segs.extend(s.iter().cloned()),
                    None => {
                        self.block_axis_at(node, &a, "concatenates a multi-factor channel axis");
                        ok = false;
                    }
                },
                (None, Some(n)) => segs.push(Seg::Opaque(n as usize)),
                (None, None) => ok = false,
            }
        }
        if ok && segs.iter().any(|s| matches!(s, Seg::Tracked { .. })) {
            out[ax] = seg_axis(segs);
        } else if !ok {
            for v in &inputs {
                if let Some(a) = self.track(v).map(|t| t[ax].clone()) {
                    self.block_axis_at(node, &a, "concatenates along a tracked axis of unknown length");
                }
            }
        }
        // Other axes: the inputs' spaces are one.
        for (i, slot) in out.iter_mut().enumerate() {
            if i == ax {
                continue;
            }
            let mut acc: Option<AxisT> = None;
            let mut untracked_inputs = Vec::new();
            for v in &inputs {
                match self.track(v).map(|t| t[i].clone()).filter(AxisT::is_tracked) {
                    Some(a) => {
                        acc = match acc {
                            None => Some(a),
                            Some(prev) => self.union_axes(node, &prev, &a, |p, q| p && q),
                        };
                        if acc.is_none() {
                            break;
                        }
                    }
                    None => untracked_inputs.push(v.clone()),
                }
            }
            let Some(mut a) = acc else { continue };
            let mut cached = false;
            for v in untracked_inputs {
                let full = self.dims(&v).and_then(|d| d.get(i).cloned()).is_some_and(|d| d != Dim::Known(1));
                if !full {
                    continue;
                }
                if self.is_cache_input(node, &v, ax) {
                    cached = true;
                } else if self.is_init(&v) {
                    self.members_along(node, &v, i, &a, Role::Producer);
                } else if let Some(src) = self.expanded_init(&v) {
                    let sr = self.init_dims(&src).map_or(0, |d| d.len());
                    if sr + i >= rank {
                        self.members_along(node, &src, sr + i - rank, &a, Role::Producer);
                        self.tables_cut.insert(src);
                    }
                } else {
                    self.block_axis_at(node, &a, &format!("concatenated with '{v}', which does not follow these channels"));
                }
            }
            if cached {
                self.cache_along(node, &node.output[0], i, &mut a);
            }
            *slot = a;
        }
        self.set(&node.output[0], out);
        Ok(())
    }

    /// Concat along an axis that is the inside of heads in every input: the pieces'
    /// ranges are tied, the result is still inside the heads.
    pub(super) fn concat_inner(&mut self, inputs: &[String], ax: usize, od: &[Dim]) -> Option<AxisT> {
        let mut parts = Vec::new();
        // The pieces are one window when each starts where the previous one ends.
        let mut next_at: Option<Option<usize>> = None;
        let mut contiguous = true;
        for v in inputs {
            let a = self.track(v)?.get(ax)?;
            match a.factors.as_slice() {
                [Factor { track: Some(Track::Inner { k, ranges, zero, at }), size }] => {
                    parts.push((*k, ranges.clone(), *zero, *at));
                    let n = size.known().and_then(|n| usize::try_from(n).ok());
                    if next_at.is_some_and(|want| want.is_none() || want != *at) {
                        contiguous = false;
                    }
                    next_at = Some(at.zip(n).map(|(at, n)| at + n));
                }
                _ => return None,
            }
        }
        let (k, ranges, _, first_at) = parts.first()?.clone();
        if parts.iter().any(|(kk, r, ..)| *kk != k || r.len() != ranges.len()) {
            return None;
        }
        for (_, r, ..) in &parts[1..] {
            for (a, b) in ranges.iter().zip(r) {
                self.spaces.tie(*a, *b);
            }
        }
        let zero = parts.iter().all(|p| p.2);
        let at = if contiguous { first_at } else { None };
        Some(AxisT { factors: vec![Factor { size: od.get(ax)?.clone(), track: Some(Track::Inner { k, ranges, zero, at }) }] })
    }

    /// The initializer behind `Expand(init, shape)` (a class token broadcast over the batch).
    pub(super) fn expanded_init(&self, v: &str) -> Option<String> {
        let (_, n) = self.graph.producer_node(v)?;
        (self.is_op(n, |o| *o == Op::Expand) && self.is_init(&n.input[0])).then(|| n.input[0].clone())
    }

    pub(super) fn split(&mut self, node: &NodeProto, split: &Split) -> Result<(), AnalysisError> {
        let Some(t) = self.in_track(node, 0) else {
            return Ok(());
        };
        let sp = split.resolve(self.graph, node, Some(&self.shapes))?;
        let Some(ax) = norm_axis(sp.axis, t.len()) else {
            return Ok(());
        };
        let Some(len) = self.dims(&node.input[0]).and_then(|d| d.get(ax).and_then(Dim::known)) else {
            self.block_node(node, "shapes unknown");
            return Ok(());
        };
        let sizes = sp.sizes_for(len).map_err(|m| ops::node_error(self.graph, node, m))?;
        if let [Factor { track: Some(Track::Inner { k, ranges, zero, at }), .. }] = t[ax].factors.as_slice() {
            // Windows inside every head (a per-head [q | k | v] split by `chunk`), each
            // at its offset in the block, as Slice's.
            let mut from = 0usize;
            for (out, &n) in node.output.iter().zip(&sizes) {
                let n = n as usize;
                let mut o = t.clone();
                let track = Track::Inner { k: *k, ranges: ranges.clone(), zero: *zero, at: at.map(|at| at + from) };
                o[ax] = AxisT { factors: vec![Factor { size: Dim::Known(n as i64), track: Some(track) }] };
                self.set(out, o);
                from += n;
            }
            return Ok(());
        }
        if let [Factor { track: Some(Track::Sub { k, ranges, zero, at, step }), .. }] = t[ax].factors.as_slice() {
            // Sub-blocks of heads split into runs of them, each from its offset.
            let mut from = *at;
            for (out, &n) in node.output.iter().zip(&sizes) {
                let n = n as usize;
                let mut o = t.clone();
                let track = Track::Sub { k: *k, ranges: ranges.clone(), zero: *zero, at: from, step: *step };
                o[ax] = AxisT { factors: vec![Factor { size: Dim::Known(n as i64), track: Some(track) }] };
                self.set(out, o);
                from = from.saturating_add(n.saturating_mul(*step));
            }
            return Ok(());
        }
        let mut tracked = t[ax].is_tracked();
        let segs = t[ax].single_segs().cloned();
        if tracked && segs.is_none() {
            let a = t[ax].clone();
            self.block_axis_at(node, &a, "splits a multi-factor channel axis");
        }
        if let Some(segs) = segs.as_ref().filter(|_| tracked) {
            let mut at = 0usize;
            let whole = sizes.iter().all(|&n| {
                let n = n as usize;
                at += n;
                window_whole(segs, at - n, n)
            });
            if !whole {
                // Its channels are blocked; the parts are not followed further.
                let a = t[ax].clone();
                self.block_axis_at(node, &a, "splits inside the blocks of a window of heads");
                tracked = false;
            }
        }
        let mut at = 0usize;
        let mut balanced: Vec<Vec<Range>> = Vec::new();
        for (j, out) in node.output.iter().enumerate() {
            let n = sizes.get(j).copied().unwrap_or(0) as usize;
            let mut o = t.clone();
            if let (true, Some(segs)) = (tracked, &segs) {
                let w = window(segs, at, n);
                let parts = count_parts(&seg_axis(w.clone()));
                o[ax] = seg_axis(w);
                if !parts.is_empty() {
                    if sp.sizes.is_none() {
                        balanced.push(parts.iter().flat_map(Part::ranges).collect());
                    } else if let IntsParam::Input(k) = split.split {
                        let s = node.input[k].clone();
                        self.shape_entry(node, &s, j, parts);
                    } else {
                        let name = node.name.clone().unwrap_or_default();
                        self.spaces.shape_ref(
                            RefAt::Const(ShapeLocation::Attribute { node: name.clone(), attribute: "split".into() }, false),
                            j,
                            &name,
                            parts,
                        );
                    }
                }
            } else {
                o[ax] = AxisT::plain(Dim::Known(n as i64));
            }
            self.set(out, o);
            at += n;
        }
        if !balanced.is_empty() {
            // An equal split without sizes stays equal only if every part loses as much.
            let why = format!("{}: an equal split (no sizes) would become unequal", node_label(node));
            self.spaces.balanced(why, balanced);
        }
        Ok(())
    }

    pub(super) fn slice(&mut self, node: &NodeProto, slice: &Slice) -> Result<(), AnalysisError> {
        let Some(mut t) = self.in_track(node, 0) else {
            return Ok(());
        };
        let Some(id) = self.dims(&node.input[0]) else {
            self.block_node(node, "shapes unknown");
            return Ok(());
        };
        let Ok(sl) = slice.resolve(self.graph, node, Some(&self.shapes)) else {
            self.block_node(node, "slice bounds are not constant");
            return Ok(());
        };
        let rank = t.len();
        let axes: Vec<usize> = match &sl.axes {
            Some(a) => a.iter().filter_map(|&x| norm_axis(x, rank)).collect(),
            None => (0..sl.starts.len()).collect(),
        };
        let od = self.dims(&node.output[0]);
        for (j, &ax) in axes.iter().enumerate() {
            let step = sl.steps.as_ref().map_or(1, |s| s[j]);
            if !t[ax].is_tracked() {
                if let Some(d) = od.as_ref().and_then(|d| d.get(ax)) {
                    t[ax] = AxisT::plain(d.clone());
                }
                continue;
            }
            let a = t[ax].clone();
            // The whole axis (`x[:, :, :]` as Keras and TensorFlow write a copy): it passes
            // as it is, whatever its layout.
            let whole = match (id.get(ax), sl.starts[j].known(), sl.ends[j].known()) {
                (Some(Dim::Known(dim)), Some(0), Some(e)) => step == 1 && e >= *dim,
                _ => false,
            };
            if whole {
                continue;
            }
            if let [Factor { track: Some(Track::Sub { k, ranges, zero, at, step: sub }), .. }] = a.factors.as_slice() {
                // Sub-blocks of heads sliced (Falcon's queries `[..., :-2, :]` of a
                // per-group `[q.., k, v]`): the sub-blocks from the start, as long as the
                // bounds are constant.
                let from = match (id.get(ax).and_then(Dim::known), sl.starts[j].known()) {
                    (Some(dim), Some(s)) if step == 1 => Some(if s < 0 { s.saturating_add(dim) } else { s }.clamp(0, dim) as usize),
                    _ => None,
                };
                let start = from.and_then(|f| f.checked_mul(*sub)).and_then(|o| o.checked_add(*at));
                match (start, od.as_ref().and_then(|d| d.get(ax))) {
                    (Some(start), Some(d)) => {
                        let track = Track::Sub { k: *k, ranges: ranges.clone(), zero: *zero, at: start, step: *sub };
                        t[ax] = AxisT { factors: vec![Factor { size: d.clone(), track: Some(track) }] };
                    }
                    _ => {
                        self.block_axis_at(node, &a, "slices sub-blocks of heads with a step or bounds that are not constant");
                        cut_blocked(&mut t, ax, &od);
                    }
                }
                continue;
            }
            if let [Factor { track: Some(Track::Inner { k, ranges, zero, at }), .. }] = a.factors.as_slice() {
                // A window inside every head (rotary embeddings, GPT-NeoX's q, k and v of a
                // per-head [q | k | v]): still inside the elements, at a known offset when
                // the bounds are constant.
                if let Some(d) = od.as_ref().and_then(|d| d.get(ax)) {
                    let from = match (id.get(ax).and_then(Dim::known), sl.starts[j].known()) {
                        (Some(dim), Some(s)) if step == 1 => Some(if s < 0 { s.saturating_add(dim) } else { s }.clamp(0, dim) as usize),
                        _ => None,
                    };
                    let at = at.zip(from).map(|(at, from)| at + from);
                    let track = Track::Inner { k: *k, ranges: ranges.clone(), zero: *zero, at };
                    t[ax] = AxisT { factors: vec![Factor { size: d.clone(), track: Some(track) }] };
                    continue;
                }
            }
            let Some(segs) = a.single_segs() else {
                self.block_axis_at(node, &a, "slices a tracked axis that holds several factors (channels merged with another axis)");
                cut_blocked(&mut t, ax, &od);
                continue;
            };
            let (Some(Dim::Known(dim)), Some(s), Some(e)) = (id.get(ax), sl.starts[j].known(), sl.ends[j].known()) else {
                self.block_axis_at(node, &a, "slices a tracked axis with bounds that are not constant");
                cut_blocked(&mut t, ax, &od);
                continue;
            };
            if step != 1 || *dim < 0 {
                self.block_axis_at(node, &a, "slices a tracked axis with a step, or one of negative length");
                cut_blocked(&mut t, ax, &od);
                continue;
            }
            let dim = *dim;
            // A bound counted from the end (Falcon's query heads `[..., :-2, :]` before
            // its key and value) stays right while the positions after it stay.
            let from_end = |b: i64| (b < 0).then(|| b.saturating_add(dim).clamp(0, dim) as usize);
            let (s_end, e_end) = (from_end(s), from_end(e));
            let (s0, e0) = (s_end.unwrap_or(s.min(dim) as usize), e_end.unwrap_or(e.min(dim) as usize));
            let segs = segs.clone();
            if let Some(tail) = s_end.into_iter().chain(e_end).min() {
                if !window_whole(&segs, tail, dim as usize - tail) {
                    self.block_axis_at(node, &a, "counts from the end inside the blocks of a window of heads");
                    cut_blocked(&mut t, ax, &od);
                    continue;
                }
                let why = format!("{}: after a slice bound counted from the end", node_label(node));
                for r in seg_axis(window(&segs, tail, dim as usize - tail)).ranges() {
                    self.spaces.block(r, why.clone());
                }
            }
            if !window_whole(&segs, s0, e0.saturating_sub(s0)) {
                // Its channels are blocked; the part is not followed further.
                self.block_axis_at(node, &a, "slices inside the blocks of a window of heads");
                t[ax] = AxisT::plain(Dim::Known(e0.saturating_sub(s0) as i64));
                continue;
            }
            let w = window(&segs, s0, e0.saturating_sub(s0));
            if s0 > 0 && s_end.is_none() {
                let parts = count_parts(&seg_axis(window(&segs, 0, s0)));
                if ops::node_opset(self.graph, node) >= 10 {
                    let v = node.input[1].clone();
                    self.shape_entry(node, &v, j, parts);
                } else {
                    let name = node.name.clone().unwrap_or_default();
                    self.spaces.shape_ref(
                        RefAt::Const(ShapeLocation::Attribute { node: name.clone(), attribute: "starts".into() }, false),
                        j,
                        &name,
                        parts,
                    );
                }
            }
            if e0 < dim as usize && e_end.is_none() {
                let parts = count_parts(&seg_axis(window(&segs, 0, e0)));
                if ops::node_opset(self.graph, node) >= 10 {
                    let v = node.input[2].clone();
                    self.shape_entry(node, &v, j, parts);
                } else {
                    let name = node.name.clone().unwrap_or_default();
                    self.spaces.shape_ref(
                        RefAt::Const(ShapeLocation::Attribute { node: name.clone(), attribute: "ends".into() }, false),
                        j,
                        &name,
                        parts,
                    );
                }
            }
            t[ax] = seg_axis(w);
        }
        self.set(&node.output[0], t);
        Ok(())
    }
}

/// A sliced axis whose channels were blocked: the output's axis is its own size, followed
/// no further (the input's layout, longer than the slice, would describe other positions).
fn cut_blocked(t: &mut ValueT, ax: usize, od: &Option<Vec<Dim>>) {
    if let Some(d) = od.as_ref().and_then(|d| d.get(ax)) {
        t[ax] = AxisT::plain(d.clone());
    }
}
