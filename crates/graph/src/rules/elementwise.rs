//! Elementwise rules: one-input functions (tied channels, zero kept or not), broadcasting
//! binary operators and `Where`, and the union of the axes they join.

use super::*;

impl Ctx<'_, '_> {
    pub(super) fn unary(&mut self, node: &NodeProto, keeps_zero: bool) {
        let Some(mut t) = self.in_track(node, 0) else {
            return;
        };
        if !keeps_zero {
            for a in &mut t {
                a.map_zero(&|_| false);
            }
        }
        self.set(&node.output[0], t);
    }

    /// Binary elementwise operators with numpy broadcasting, on inputs `ia` and `ib`.
    pub(super) fn binary(&mut self, node: &NodeProto, op: Bin, ia: usize, ib: usize) {
        let (a, b) = (node.input[ia].clone(), node.input[ib].clone());
        let out = node.output[0].clone();
        let (ta, tb) = (self.track(&a).cloned(), self.track(&b).cloned());
        let (Some(od), Some(da), Some(db)) = (self.dims(&out), self.dims(&a), self.dims(&b)) else {
            self.block_node(node, "shapes unknown");
            return;
        };
        let r = od.len();
        let heads_cut = self.heads_cut_by_added_table(op, (&a, &da, ta.as_ref()), (&b, &db, tb.as_ref()), &od);
        let mut out_t: ValueT = od.iter().map(|d| AxisT::plain(d.clone())).collect();
        for (ax, slot) in out_t.iter_mut().enumerate() {
            let pa = (ax + da.len()).checked_sub(r);
            let pb = (ax + db.len()).checked_sub(r);
            let xa = pa.and_then(|p| ta.as_ref().map(|t| t[p].clone())).filter(AxisT::is_tracked);
            let xb = pb.and_then(|p| tb.as_ref().map(|t| t[p].clone())).filter(AxisT::is_tracked);
            match (xa, xb) {
                (None, None) => {}
                (Some(x), Some(y)) => {
                    // One channel broadcast over the channels of the other operand
                    // (FocalNet's gates, `ctx * gates[:, l:l+1]`): every channel reads it, so
                    // it stays, and the output follows the other operand as it would against
                    // any value broadcast along this axis.
                    let one = |p: Option<usize>, d: &[Dim]| p.and_then(|p| d.get(p)) == Some(&Dim::Known(1));
                    let (a_one, b_one) = (one(pa, &da), one(pb, &db));
                    if a_one != b_one && od[ax] != Dim::Known(1) {
                        let (wide, single, single_name, single_axis, tracked_first) =
                            if b_one { (x, y, &b, pb, true) } else { (y, x, &a, pa, false) };
                        self.block_axis_at(node, &single, "one channel broadcast over the channels of the other operand");
                        *slot = self.one_side(node, op, wide, single_name, Some(Dim::Known(1)), single_axis, tracked_first);
                        continue;
                    }
                    // `x / rms(x)`: finite where the channels are zero, zero where `x` is.
                    if op == Bin::Div && self.positive_at_zero(&b) {
                        if let Some(u) = self.union_axes(node, &x, &y, |p, _| p) {
                            *slot = u;
                        }
                        continue;
                    }
                    if matches!(op, Bin::Div | Bin::Pow | Bin::PRelu) {
                        self.block_axis_at(node, &x, "divides or raises by a tensor of the same channels");
                        self.block_axis_at(node, &y, "divides or raises by a tensor of the same channels");
                        continue;
                    }
                    let both = |p: bool, q: bool| if op == Bin::Mul { p || q } else { p && q };
                    if let Some(u) = self.union_axes(node, &x, &y, both) {
                        *slot = u;
                    }
                }
                // The inside of heads the added table is cut along with: zero where they are.
                (Some(x), None) | (None, Some(x)) if x.is_inside_heads() && x.ranges().iter().all(|h| heads_cut.contains(h)) => *slot = x,
                (Some(x), None) => *slot = self.one_side(node, op, x, &b, pb.map(|p| db[p].clone()), pb, true),
                (None, Some(y)) => *slot = self.one_side(node, op, y, &a, pa.map(|p| da[p].clone()), pa, false),
            }
        }
        self.set(&out, out_t);
    }

    /// The heads an initializer added to (or subtracted from) a tracked value is cut along
    /// as a producer ([`Ctx::one_side`]): a per-head bias `[H, D]` added after the split
    /// into heads, as Keras's `MultiHeadAttention` writes its projections. Zeroed with a
    /// head, it leaves the inside of a removed head zero.
    fn heads_cut_by_added_table(
        &self,
        op: Bin,
        (a, da, ta): (&str, &[Dim], Option<&ValueT>),
        (b, db, tb): (&str, &[Dim], Option<&ValueT>),
        od: &[Dim],
    ) -> Vec<Range> {
        if !matches!(op, Bin::Add | Bin::Sub) {
            return Vec::new();
        }
        let (table_dims, x, x_rank) = match (ta, tb) {
            (Some(t), None) if self.is_init(b) => (db, t, da.len()),
            (None, Some(t)) if self.is_init(a) => (da, t, db.len()),
            _ => return Vec::new(),
        };
        let r = od.len();
        let mut heads = Vec::new();
        for (ax, d) in od.iter().enumerate() {
            let (Some(px), Some(pt)) = ((ax + x_rank).checked_sub(r), (ax + table_dims.len()).checked_sub(r)) else { continue };
            let Some(axis) = x.get(px).filter(|a| a.is_tracked() && !a.is_inside_heads()) else { continue };
            let coarse = axis.factors.iter().filter_map(|f| f.track.as_ref()).all(|t| match t {
                Track::Segs(segs) => segs.iter().all(|s| matches!(s, Seg::Tracked { scale: Scale::Coarse(_), .. })),
                _ => false,
            });
            if coarse && table_dims.get(pt) == Some(d) && *d != Dim::Known(1) {
                heads.extend(axis.ranges());
            }
        }
        heads
    }

    /// oto's `Branches` (a merged decoder's `If`, written as both branches: see
    /// `oto_onnx::branches`): output `j` is the then branch's value `j` or the else
    /// branch's, position for position, so their channels are the output's and tied: a
    /// channel is cut in both branches or in neither. An axis followed in one branch only
    /// is blocked, but in an output that only leaves the model.
    pub(super) fn branches(&mut self, node: &NodeProto) {
        let k = node.output.len();
        if node.input.len() != 1 + 2 * k {
            self.block_node(node, "the branches' values do not match its outputs");
            return;
        }
        for j in 0..k {
            let (a, b, out) = (node.input[1 + j].clone(), node.input[1 + k + j].clone(), node.output[j].clone());
            let (ta, tb) = (self.track(&a).cloned(), self.track(&b).cloned());
            if ta.is_none() && tb.is_none() {
                continue;
            }
            let (Some(da), Some(db)) = (self.dims(&a), self.dims(&b)) else {
                self.block_reads(node, &[a, b], "shapes unknown");
                continue;
            };
            if da.len() != db.len() {
                self.block_reads(node, &[a, b], "the branches give values of different ranks");
                continue;
            }
            let od = self.dims(&out).unwrap_or_else(|| da.clone());
            let mut out_t: ValueT = od.iter().map(|d| AxisT::plain(d.clone())).collect();
            for (ax, slot) in out_t.iter_mut().enumerate() {
                let xa = ta.as_ref().and_then(|t| t.get(ax).cloned()).filter(AxisT::is_tracked);
                let xb = tb.as_ref().and_then(|t| t.get(ax).cloned()).filter(AxisT::is_tracked);
                match (xa, xb) {
                    (None, None) => {}
                    (Some(x), Some(y)) => {
                        if let Some(u) = self.union_axes(node, &x, &y, |p, q| p && q) {
                            *slot = u;
                        }
                    }
                    // An output no node reads leaves the model as each branch's value,
                    // which the model's results handle one by one (a cache kept at full
                    // width, or blocked): the cache branch's encoder keys, given out as
                    // they were fed, beside the other branch's, computed.
                    (Some(_), None) | (None, Some(_)) if self.graph.consumers(&out).is_empty() => {}
                    (Some(x), None) | (None, Some(x)) => self.block_axis_at(node, &x, "is followed in one branch of the If only"),
                }
            }
            self.set(&out, out_t);
        }
    }

    /// `Where(cond, a, b)` with a condition computed from tracked channels (the
    /// TorchScript exporter's `Where(IsNaN(p), 0, p)` after an attention softmax): each
    /// position selects from the same positions of `a` and `b`, so the condition's
    /// channels are the output's (tied); the output is zero where both branches are.
    pub(super) fn where_condition(&mut self, node: &NodeProto) {
        let (cond, out) = (node.input[0].clone(), node.output[0].clone());
        let (Some(tc), Some(dc), Some(od)) = (self.track(&cond).cloned(), self.dims(&cond), self.dims(&out)) else {
            self.block_node(node, "shapes unknown");
            return;
        };
        let mut out_t: ValueT = match self.track(&out) {
            Some(t) => t.clone(),
            None => od.iter().map(|d| AxisT::plain(d.clone())).collect(),
        };
        let r = od.len();
        for (ax, slot) in out_t.iter_mut().enumerate() {
            let Some(p) = (ax + dc.len()).checked_sub(r) else { continue };
            let Some(c) = tc.get(p).filter(|a| a.is_tracked()).cloned() else { continue };
            if dc[p] != od[ax] {
                self.block_axis_at(node, &c, "a condition broadcast along the channels it follows");
                continue;
            }
            if slot.is_tracked() {
                let x = slot.clone();
                if let Some(u) = self.union_axes(node, &x, &c, |p, _| p) {
                    *slot = u;
                }
            } else {
                // Constant branches chosen channel by channel: the channels follow, not zero.
                let mut c = c;
                c.map_zero(&|_| false);
                *slot = c;
            }
        }
        self.set(&out, out_t);
    }

    /// A binary operator where only one operand is tracked on this axis.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn one_side(
        &mut self,
        node: &NodeProto,
        op: Bin,
        mut x: AxisT,
        other: &str,
        other_dim: Option<Dim>,
        other_axis: Option<usize>,
        tracked_first: bool,
    ) -> AxisT {
        // An axis that is only the inside of heads keeps its length when heads go: a
        // full-size operand along it (rotary cos/sin) needs no slicing.
        let inner_only = x.factors.iter().filter_map(|f| f.track.as_ref()).all(|t| matches!(t, Track::Inner { .. }));
        let broadcast = inner_only || other_dim.as_ref().is_none_or(|d| *d == Dim::Known(1));
        if broadcast {
            let keeps = match op {
                Bin::Add | Bin::Sub | Bin::Max | Bin::Min | Bin::Where => self.is_zero_const(other),
                Bin::Mul | Bin::PRelu => true,
                Bin::Div if tracked_first => true,
                // `1 / rms(x)`: finite, and not zero, where the channels are zero.
                Bin::Div if node.input.get(1).is_some_and(|d| self.positive_at_zero(d)) => false,
                Bin::Div => {
                    self.block_axis_at(node, &x, "divides by a tensor of these channels");
                    return x;
                }
                Bin::Pow => tracked_first && self.const_floats(other).is_some_and(|v| v.iter().all(|&e| e > 0.0)),
            };
            if !keeps {
                x.map_zero(&|_| false);
            }
            return x;
        }
        // The other operand has the full width: it must be a parameter, sliced with the channels.
        let Some(oa) = other_axis else { return x };
        if let Some((table, axis)) = self.table_read_along(other, oa).filter(|_| matches!(op, Bin::Add | Bin::Sub)) {
            // A table read at constant positions or sliced along another axis (LeViT's and
            // TinyViT's attention biases, `biases[:, idx]`; MPT's ALiBi buffer cut to the
            // sequence): its slices go with the channels. Added to heads, cut, not zeroed:
            // a removed head's scores are its bias, and its values zero. Added to channels
            // that are zero where removed (a position table sliced to the sequence, as
            // Whisper's decoder did before transformers 4.37), zeroed with them, so the sum
            // stays zero there.
            let channels = x.factors.iter().filter_map(|f| f.track.as_ref()).all(|t| match t {
                Track::Segs(segs) => segs.iter().all(|s| !matches!(s, Seg::Tracked { scale: Scale::Coarse(_), .. })),
                _ => false,
            });
            let zeroed = channels && x.all_zero();
            self.members_along(node, &table, axis, &x.clone(), if zeroed { Role::Producer } else { Role::Aux });
            self.tables_cut.insert(table);
            if !zeroed {
                x.map_zero(&|_| false);
            }
            return x;
        }
        if !self.is_init(other) {
            // A value computed without the elements (T5's position bias, computed once and
            // added to every layer's scores): this node reads its kept positions, the value
            // stays whole for its other readers. (A graph input added to channels, a
            // residual stream that starts at the input, blocks them, saying so.)
            let summed = matches!(op, Bin::Add | Bin::Sub);
            let computed = self.graph.producer_node(other).is_some();
            if (summed || op == Bin::Mul) && computed && self.track(other).is_none() {
                let reader = node.output.first().cloned().unwrap_or_default();
                if self.read_kept(node, other, &reader, oa, &x) && summed {
                    x.map_zero(&|_| false);
                }
                return x;
            }
            self.block_axis_at(node, &x, &format!("combined with '{other}', which has the same width but does not follow the channels"));
            return x;
        }
        let role = match op {
            Bin::Add | Bin::Sub | Bin::Max | Bin::Min | Bin::Where => Role::Producer,
            // A scale of channels that are not zero where pruned (a layer norm's, after its
            // centred values) makes them zero once its slices are zeroed with them.
            Bin::Mul if !x.all_zero() => {
                x.map_zero(&|_| true);
                Role::Producer
            }
            Bin::Mul | Bin::PRelu => Role::Aux,
            Bin::Div if tracked_first => Role::Aux,
            Bin::Div | Bin::Pow => {
                self.block_axis_at(node, &x, "divides or raises by these channels");
                return x;
            }
        };
        self.members_along(node, other, oa, &x.clone(), role);
        x
    }

    /// The initializer `value` reads whole along its axis `axis`, and the axis of it that
    /// is: a `Gather` at constant indices along another axis, a `Slice` (of any bounds)
    /// of other axes, or an `Expand` along other axes (a class token broadcast over the
    /// batch, read by a `Concat` and added to the class attention's output, as CaiT).
    fn table_read_along(&self, value: &str, axis: usize) -> Option<(String, usize)> {
        let (_, n) = self.graph.producer_node(value)?;
        let data = n.input.first()?;
        if !self.is_init(data) {
            return None;
        }
        if self.is_op(n, |o| *o == Op::Expand) {
            let (dims, out) = (self.dims(data)?, self.dims(value)?);
            let at = (axis + dims.len()).checked_sub(out.len())?;
            return (dims.get(at) == out.get(axis)).then(|| (data.clone(), at));
        }
        if let Ok(Op::Slice(slice)) = Op::parse(self.graph, n) {
            let rank = self.dims(data)?.len();
            let bounds = slice.resolve(self.graph, n, Some(&self.shapes)).ok()?;
            let sliced: Vec<usize> = match &bounds.axes {
                Some(a) => a.iter().map(|&x| norm_axis(x, rank)).collect::<Option<_>>()?,
                None => (0..bounds.starts.len()).collect(),
            };
            return (axis < rank && !sliced.contains(&axis)).then(|| (data.clone(), axis));
        }
        let indices = n.input.get(1)?;
        if !self.is_op(n, |o| matches!(o, Op::Gather { .. })) || !self.is_init(indices) {
            return None;
        }
        let rank = self.dims(data)?.len();
        let index_rank = self.dims(indices)?.len();
        let g = n.attr_int("axis").ok().flatten().unwrap_or(0);
        let g = usize::try_from(if g < 0 { g + rank as i64 } else { g }).ok().filter(|&g| g < rank)?;
        match axis {
            a if a < g => Some((data.clone(), a)),
            a if a >= g + index_rank => Some((data.clone(), a + 1 - index_rank)),
            _ => None,
        }
    }

    /// Ties two axes of equal layout; `None` (and blocked) when the layouts differ.
    pub(crate) fn union_axes(&mut self, node: &NodeProto, x: &AxisT, y: &AxisT, both: impl Fn(bool, bool) -> bool) -> Option<AxisT> {
        let same_shape = x.factors.len() == y.factors.len() && x.factors.iter().zip(&y.factors).all(|(f, g)| f.size == g.size);
        if !same_shape {
            if let Some(u) = self.union_repeated(x, y, &both).or_else(|| self.union_repeated(y, x, &both)) {
                return Some(u);
            }
            if let Some(u) = self.union_inside_heads(x, y, &both).or_else(|| self.union_inside_heads(y, x, &both)) {
                return Some(u);
            }
            if let Some(u) = self.inside_heads_reads(node, x, y, true, &both).or_else(|| self.inside_heads_reads(node, y, x, false, &both))
            {
                return Some(u);
            }
            self.block_axis_at(node, x, "joins two tensors whose channel layouts differ");
            self.block_axis_at(node, y, "joins two tensors whose channel layouts differ");
            return None;
        }
        let mut factors = Vec::new();
        for (f, g) in x.factors.iter().zip(&y.factors) {
            let track = match (&f.track, &g.track) {
                (None, None) => None,
                (Some(Track::Segs(p)), Some(Track::Segs(q))) => Some(Track::Segs(self.union_segs(node, p, q, &both))),
                // (Blocks of different sizes: heads of different widths joined head by head,
                // which their coarse factors tie; see `union_segs`.)
                (Some(Track::Inner { k, ranges, zero, at }), Some(Track::Inner { k: k2, ranges: r2, zero: z2, at: at2 }))
                    if ranges.len() == r2.len() =>
                {
                    for (a, b) in ranges.iter().zip(r2) {
                        self.spaces.tie(*a, *b);
                    }
                    // Different windows of a block combined: still inside it, no longer a window.
                    let at = if at == at2 && k == k2 { *at } else { None };
                    Some(Track::Inner { k: *k, ranges: ranges.clone(), zero: both(*zero, *z2), at })
                }
                // Channels of their own read position by position inside every head
                // (RoFormer's sinusoidal table, an initializer gathered by position): the
                // heads go whole and need no slice of them; they cannot go themselves.
                (Some(inner @ Track::Inner { .. }), Some(Track::Segs(segs)))
                | (Some(Track::Segs(segs)), Some(inner @ Track::Inner { .. })) => {
                    self.block_read_inside_heads(node, segs);
                    let mut inner = inner.clone();
                    // The blocked channels are never zeroed.
                    let inner_first = matches!(f.track, Some(Track::Inner { .. }));
                    inner.map_zero(&|z| if inner_first { both(z, false) } else { both(false, z) });
                    Some(inner)
                }
                _ => {
                    self.block_axis_at(node, x, "joins two tensors whose channel layouts differ");
                    self.block_axis_at(node, y, "joins two tensors whose channel layouts differ");
                    return None;
                }
            };
            factors.push(Factor { size: f.size.clone(), track });
        }
        Some(AxisT { factors })
    }

    /// Two axes inside the same heads laid out differently: `x` one inner factor, `y` an
    /// inner factor of the same blocks with untracked factors beside it (GPT-J's
    /// `rotate_every_two`, a stack of the even and odd positions flattened back). The
    /// positions stay inside every head, rearranged; the result keeps `x`'s layout.
    fn union_inside_heads(&mut self, x: &AxisT, y: &AxisT, both: &impl Fn(bool, bool) -> bool) -> Option<AxisT> {
        let [Factor { track: Some(Track::Inner { k, ranges, zero, at }), size }] = x.factors.as_slice() else {
            return None;
        };
        let mut tracked = y.factors.iter().filter_map(|f| f.track.as_ref());
        let (Some(Track::Inner { k: k2, ranges: r2, zero: z2, at: at2 }), None) = (tracked.next(), tracked.next()) else {
            return None;
        };
        let total = y.factors.iter().try_fold(1i64, |acc, f| acc.checked_mul(f.size.known()?));
        if k != k2 || ranges.len() != r2.len() || size.known().is_none() || total != size.known() {
            return None;
        }
        for (a, b) in ranges.iter().zip(r2) {
            self.spaces.tie(*a, *b);
        }
        // `y`'s positions are no longer a window of each block in order.
        let at = if y.factors.len() == 1 && at == at2 { *at } else { None };
        let track = Track::Inner { k: *k, ranges: ranges.clone(), zero: both(*zero, *z2), at };
        Some(AxisT { factors: vec![Factor { size: size.clone(), track: Some(track) }] })
    }

    /// Blocks channels read position by position inside attention heads.
    pub(super) fn block_read_inside_heads(&mut self, node: &NodeProto, segs: &[Seg]) {
        let why = format!("{}: read position by position inside attention heads", node_label(node));
        for s in segs {
            if let Seg::Tracked { range, .. } = s {
                self.spaces.block(*range, why.clone());
            }
        }
    }

    /// `x` inside heads only (its tracked factor an inner one), `y` channels of their own
    /// laid out differently along the same positions (RoFormer's sinusoidal table
    /// stacked as `[d/2, 2]`): `y`'s channels are blocked, the result keeps `x`'s layout
    /// (see the same-layout case in [`Self::union_axes`]). `x_first`: `x` is the left operand.
    fn inside_heads_reads(
        &mut self,
        node: &NodeProto,
        x: &AxisT,
        y: &AxisT,
        x_first: bool,
        both: &impl Fn(bool, bool) -> bool,
    ) -> Option<AxisT> {
        let inner_only = x.factors.iter().filter_map(|f| f.track.as_ref()).all(|t| matches!(t, Track::Inner { .. }));
        let y_tracks: Vec<&Track> = y.factors.iter().filter_map(|f| f.track.as_ref()).collect();
        let size = |a: &AxisT| a.factors.iter().try_fold(1i64, |acc, f| acc.checked_mul(f.size.known()?));
        if !inner_only || !x.is_tracked() || y_tracks.is_empty() || size(x).is_none() || size(x) != size(y) {
            return None;
        }
        let segs: Vec<Seg> =
            y_tracks.iter().filter_map(|t| if let Track::Segs(s) = t { Some(s.clone()) } else { None }).flatten().collect();
        if segs.is_empty() || y_tracks.iter().any(|t| !matches!(t, Track::Segs(_))) {
            return None;
        }
        self.block_read_inside_heads(node, &segs);
        let mut out = x.clone();
        out.map_zero(&|z| if x_first { both(z, false) } else { both(false, z) });
        Some(out)
    }

    /// Grouped-query attention: `x` is one tracked factor (the query heads), `y` a tracked
    /// factor (the K/V heads) followed by a repeat of the same total size (untracked, or
    /// the copies an `Expand` opened, which stay as they are). Ties each K/V head to its
    /// query heads; the result keeps `x`'s layout.
    pub(super) fn union_repeated(&mut self, x: &AxisT, y: &AxisT, both: &impl Fn(bool, bool) -> bool) -> Option<AxisT> {
        let [Factor { track: Some(Track::Segs(xs)), size: xn }] = x.factors.as_slice() else {
            return None;
        };
        let tracked: Vec<&Factor> = y.factors.iter().filter(|f| f.size != Dim::Known(1) || f.track.is_some()).collect();
        let [Factor { track: Some(Track::Segs(ys)), size: yn }, Factor { track: copies, size: Dim::Known(rep) }] = tracked.as_slice()
        else {
            return None;
        };
        let copies_only =
            |segs: &[Seg]| matches!(segs, [Seg::Tracked { range, scale: Scale::Unit, .. }] if i64::try_from(range.len) == Ok(*rep));
        if copies.is_some() && !matches!(copies, Some(Track::Segs(segs)) if copies_only(segs)) {
            return None;
        }
        let (Some(xn), Some(yn)) = (xn.known(), yn.known()) else {
            return None;
        };
        let (
            [Seg::Tracked { range: rx, scale: Scale::Coarse(kx), zero: zx }],
            [Seg::Tracked { range: ry, scale: Scale::Coarse(ky), zero: zy }],
        ) = (xs.as_slice(), ys.as_slice())
        else {
            return None;
        };
        if xn != yn * rep || kx != ky {
            return None;
        }
        self.spaces.tie(*rx, *ry);
        // An element is a K/V head with its query heads.
        self.spaces.require_block(*ry, *ky, ReqKind::Head);
        self.spaces.require_block(*rx, *kx * *rep as usize, ReqKind::Split);
        let z = both(*zx, *zy);
        Some(AxisT {
            factors: vec![Factor {
                size: Dim::Known(xn),
                track: Some(Track::Segs(vec![Seg::Tracked { range: *rx, scale: Scale::Coarse(*kx), zero: z }])),
            }],
        })
    }

    pub(super) fn union_segs(&mut self, node: &NodeProto, p: &[Seg], q: &[Seg], both: &impl Fn(bool, bool) -> bool) -> Vec<Seg> {
        let mut cuts: Vec<usize> = Vec::new();
        for segs in [p, q] {
            let mut at = 0;
            for s in segs {
                cuts.push(at);
                at += s.axis_len();
                cuts.push(at);
            }
        }
        cuts.sort_unstable();
        cuts.dedup();
        let mut out = Vec::new();
        for w in cuts.windows(2) {
            let (s, l) = (w[0], w[1] - w[0]);
            let (a, b) = (window(p, s, l), window(q, s, l));
            let (Some(a), Some(b)) = (a.first(), b.first()) else {
                continue;
            };
            let whole = window_whole(p, s, l) && window_whole(q, s, l);
            match (a, b) {
                (Seg::Tracked { range: ra, scale: sa, zero: za }, Seg::Tracked { range: rb, scale: sb, zero: zb }) if sa == sb && whole => {
                    self.spaces.tie(*ra, *rb);
                    out.push(Seg::Tracked { range: *ra, scale: *sa, zero: both(*za, *zb) });
                }
                // One value per head (T5's relative position bias, an embedding of one
                // column per head) joined with the heads' blocks: position `h` of the one
                // is block `h` of the other.
                (
                    Seg::Tracked { range: ru, scale: Scale::Unit, zero: zu },
                    Seg::Tracked { range: rc, scale: Scale::Coarse(k), zero: zc },
                )
                | (
                    Seg::Tracked { range: rc, scale: Scale::Coarse(k), zero: zc },
                    Seg::Tracked { range: ru, scale: Scale::Unit, zero: zu },
                ) if ru.len.checked_mul(*k) == Some(rc.len) => {
                    self.spaces.tie(*ru, *rc);
                    self.spaces.require_block(*rc, *k, ReqKind::Head);
                    let (pz, qz) = if matches!(a, Seg::Tracked { scale: Scale::Unit, .. }) { (*zu, *zc) } else { (*zc, *zu) };
                    out.push(Seg::Tracked { range: *rc, scale: Scale::Coarse(*k), zero: both(pz, qz) });
                }
                // Heads of different widths joined head by head (LeViT's subsampled
                // attention: queries of their own projection, `[H, kd]` a head, against the
                // keys of a projection giving `[H, kd + vd]` a head): head `h` of one is head
                // `h` of the other.
                (
                    Seg::Tracked { range: ra, scale: Scale::Coarse(ka), zero: za },
                    Seg::Tracked { range: rb, scale: Scale::Coarse(kb), zero: zb },
                ) if whole && ra.len % ka == 0 && rb.len % kb == 0 && ra.len / ka == rb.len / kb => {
                    self.spaces.tie(*ra, *rb);
                    self.spaces.require_block(*ra, *ka, ReqKind::Head);
                    self.spaces.require_block(*rb, *kb, ReqKind::Head);
                    out.push(Seg::Tracked { range: *ra, scale: Scale::Coarse(*ka), zero: both(*za, *zb) });
                }
                (Seg::Opaque(n), Seg::Opaque(_)) => out.push(Seg::Opaque(*n)),
                _ => {
                    let reason = format!("{}: joins channels with a differently laid out tensor", node_label(node));
                    for s in [a, b] {
                        if let Seg::Tracked { range, .. } = s {
                            self.spaces.block(*range, reason.clone());
                        }
                    }
                    self.blocked_op(node, "joins channels with a differently laid out tensor");
                    // A window cut inside its blocks has no segment of this length.
                    out.push(if whole { a.clone() } else { Seg::Opaque(l) });
                }
            }
        }
        out
    }
}
