//! Convolution rules: `Conv` and `ConvTranspose` produce channel spaces (their weights
//! and biases are the producers) and consume their input channels.

use super::*;

impl Ctx<'_, '_> {
    fn out_rank(&self, node: &NodeProto) -> Option<usize> {
        self.dims(&node.output[0]).map(|d| d.len())
    }

    /// What Conv and ConvTranspose read alike; `None` (the node blocked) when the weight is
    /// not an initializer.
    fn conv_parts(&mut self, node: &NodeProto, group: i64) -> Result<Option<ConvParts>, AnalysisError> {
        let x = node.input[0].clone();
        let w = node.input.get(1).cloned().unwrap_or_default();
        let bias = ops::input(node, 2).map(str::to_string);
        let xt = self.track(&x).cloned();
        let Some(wd) = self.init_dims(&w) else {
            self.block_computed_weight(node, &w);
            return Ok(None);
        };
        let g = group.max(1) as usize;
        Ok(Some(ConvParts { x, w, bias, xt, wd, g }))
    }

    /// A convolution's window mixes positions: channels tracked along a spatial axis cannot
    /// pass. But for positions inside the channels' own blocks (a dense layer's units viewed
    /// as `[C, H, W]`, as a generator's `view(-1, C, 4, 4)` does): the channel axis counts
    /// whole blocks of them, so an element is always whole channels, which the window never
    /// splits.
    fn block_tracked_spatial(&mut self, node: &NodeProto, xt: Option<&ValueT>) {
        let Some(t) = xt else { return };
        for a in t.iter().skip(2) {
            if !inside_channel_blocks(t, a) {
                self.block_axis_at(node, a, "a convolution mixes along a tracked spatial axis");
            }
        }
    }

    /// The new channel space `r` of a convolution's output: the weight's `w_axis` and the
    /// bias produce it, and the output carries it on axis 1 (`out` is the output's value).
    fn produce_channels(&mut self, node: &NodeProto, w: &str, w_axis: usize, bias: Option<&str>, r: Range, mut out: ValueT) {
        self.member(w, w_axis, r, 0, 1, 1, Role::Producer);
        if let Some(b) = bias {
            self.member(b, 0, r, 0, 1, 1, Role::Producer);
        }
        out[1] = AxisT::unit(r, true);
        self.set(&node.output[0], out);
    }

    pub(super) fn conv(&mut self, node: &NodeProto, group: i64) -> Result<(), AnalysisError> {
        let Some(ConvParts { x, w, bias, xt, wd, g }) = self.conv_parts(node, group)? else { return Ok(()) };
        let Some(rank) = self.out_rank(node).or(xt.as_ref().map(Vec::len)).or(self.dims(&x).map(|d| d.len())) else {
            self.block_node(node, "shapes unknown");
            return Ok(());
        };
        self.block_tracked_spatial(node, xt.as_ref());
        let mut out: ValueT = (0..rank).map(|_| AxisT::plain(Dim::Known(1))).collect();
        if let Some(d) = self.dims(&node.output[0]) {
            out = d.into_iter().map(AxisT::plain).collect();
        }
        // A malformed file: the output carries the channels on axis 1, the weight on axis 0.
        let Some(&m) = wd.first().filter(|_| out.len() >= 2) else {
            self.block_node(node, "the output has fewer than 2 axes or the weight none");
            return Ok(());
        };
        let cin_g = wd.get(1).copied().unwrap_or(1);
        if let Some(t) = &xt {
            out[0] = t[0].clone();
        }
        if g == 1 {
            if let Some(t) = &xt {
                self.consume(node, &w, 1, &t[1]);
            }
            let r = self.new_space(m);
            self.produce_channels(node, &w, 0, bias.as_deref(), r, out);
            return Ok(());
        }
        if m % g != 0 {
            self.block_node(node, "the weight's output channels are not a multiple of group");
            return Ok(());
        }
        // Grouped with C_in/g != C_out/g: the same on both sides, an element is the j-th
        // channel of every conv group (its input channels: the j-th column of the weight;
        // its output channels: a new space), so cutting keeps `group` and equal groups.
        if m / g != cin_g {
            if let Some(t) = &xt {
                self.grouped_input(node, &w, &t[1], g, cin_g);
            }
            let k = m / g;
            let r = self.new_space(m);
            for i in 1..g {
                self.spaces.tie(r.sub(0, k), r.sub(i * k, k));
            }
            self.produce_channels(node, &w, 0, bias.as_deref(), r, out);
            return Ok(());
        }
        // Grouped: a conv group passes its channels through when C_in/g == C_out/g.
        let Some(t) = xt else { return Ok(()) };
        let segs = match t[1].linear() {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(()),
            Err(why) => {
                self.block_axis_at(node, &t[1], &why);
                return Ok(());
            }
        };
        let mut new_segs = Vec::new();
        let mut parts = Vec::new();
        for s in &segs {
            if s.scale != Scale::Unit || s.repeat != 1 || s.offset % cin_g != 0 || s.range.len % cin_g != 0 {
                self.spaces.block(s.range, format!("{}: channels do not line up with whole conv groups", node_label(node)));
                self.blocked_op(node, "channels do not line up with whole conv groups");
                continue;
            }
            self.spaces.require_block(s.range, cin_g, ReqKind::ConvGroup);
            self.member(&w, 0, s.range, s.offset, 1, 1, Role::Producer);
            if let Some(b) = &bias {
                self.member(b, 0, s.range, s.offset, 1, 1, Role::Producer);
            }
            parts.push(Part::Fixed(s.range, 1, cin_g));
        }
        if let Some(Track::Segs(list)) = t[1].factors.first().and_then(|f| f.track.as_ref()) {
            for s in list {
                new_segs.push(match s {
                    Seg::Tracked { range, scale, .. } => Seg::Tracked { range: *range, scale: *scale, zero: true },
                    o => o.clone(),
                });
            }
        }
        let name = node.name.clone().unwrap_or_default();
        self.spaces.shape_ref(
            RefAt::Const(ShapeLocation::Attribute { node: name.clone(), attribute: "group".into() }, false),
            0,
            &name,
            parts,
        );
        out[1] = seg_axis(new_segs);
        self.set(&node.output[0], out);
        Ok(())
    }

    /// The input side of a grouped convolution with C_in/g != C_out/g: the channels of
    /// `axis` at the same column `c` of every conv group (of `cin_g` channels) are tied
    /// into one element, which reads column `c` of the weight's axis 1. Blocked when the
    /// groups do not hold the same tracked columns.
    fn grouped_input(&mut self, node: &NodeProto, w: &str, axis: &AxisT, g: usize, cin_g: usize) {
        let segs = match axis.linear() {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(why) => {
                self.block_axis_at(node, axis, &format!("'{w}' reads a layout it cannot slice: {why}"));
                return;
            }
        };
        // Per conv group: (first column, base range) of each tracked piece.
        let mut pieces: Vec<Vec<(usize, Range)>> = vec![Vec::new(); g];
        for s in &segs {
            if s.scale != Scale::Unit || s.repeat != 1 {
                self.block_axis_at(node, axis, "read by a grouped convolution in blocks it cannot follow");
                return;
            }
            let mut at = 0;
            while at < s.range.len {
                let pos = s.offset + at;
                let (j, col) = (pos / cin_g, pos % cin_g);
                let len = (cin_g - col).min(s.range.len - at);
                match pieces.get_mut(j) {
                    Some(p) => p.push((col, s.range.sub(at, len))),
                    None => {
                        self.block_axis_at(node, axis, "more input channels than the conv groups hold");
                        return;
                    }
                }
                at += len;
            }
        }
        let columns = |p: &[(usize, Range)]| -> Vec<(usize, usize)> {
            let mut c: Vec<(usize, usize)> = p.iter().map(|(col, r)| (*col, r.len)).collect();
            c.sort_unstable();
            c
        };
        let cover = |p: &[(usize, Range)]| -> usize { p.iter().map(|(_, r)| r.len).sum() };
        if pieces
            .iter()
            .any(|p| cover(p) != cover(&pieces[0]) || columns(p).iter().map(|c| c.0).ne(columns(&pieces[0]).iter().map(|c| c.0)))
        {
            self.block_axis_at(node, axis, "read by a grouped convolution whose groups hold different channels");
            return;
        }
        // A column not zero at a removed element is zeroed with it (see `Ctx::consume`).
        let role = if segs.iter().all(|s| s.zero) { Role::Consumer } else { Role::Producer };
        let first = pieces[0].clone();
        for &(col, r) in &first {
            self.member(w, 1, r, col, 1, 1, role);
        }
        for other in &pieces[1..] {
            for &(pc, p) in other {
                for &(qc, q) in &first {
                    let (lo, hi) = (pc.max(qc), (pc + p.len).min(qc + q.len));
                    if lo < hi {
                        self.spaces.tie(p.sub(lo - pc, hi - lo), q.sub(lo - qc, hi - lo));
                    }
                }
            }
        }
    }

    pub(super) fn conv_transpose(&mut self, node: &NodeProto, group: i64) -> Result<(), AnalysisError> {
        let Some(ConvParts { w, bias, xt, wd, g, .. }) = self.conv_parts(node, group)? else { return Ok(()) };
        let Some(d) = self.dims(&node.output[0]) else {
            self.block_node(node, "shapes unknown");
            return Ok(());
        };
        self.block_tracked_spatial(node, xt.as_ref());
        if d.len() < 2 || wd.len() < 2 {
            // A malformed file: the output carries the channels on axis 1, the weight on axis 1.
            self.block_node(node, "the output or the weight has fewer than 2 axes");
            return Ok(());
        }
        let mut out: ValueT = d.into_iter().map(AxisT::plain).collect();
        if let Some(t) = &xt {
            out[0] = t[0].clone();
        }
        if g != 1 {
            // Grouped transposed convolutions: not handled; their channels stay.
            if let Some(t) = &xt {
                self.block_axis_at(node, &t[1], "grouped ConvTranspose is not supported");
            }
            return Ok(());
        }
        if let Some(t) = &xt {
            self.consume(node, &w, 0, &t[1]);
        }
        let m = wd.get(1).copied().unwrap_or(0);
        let r = self.new_space(m);
        self.produce_channels(node, &w, 1, bias.as_deref(), r, out);
        Ok(())
    }

    /// A bias added to a fresh space: its slice is a producer; a broadcast bias makes
    /// the channels non-zero.
    pub(super) fn bias_on(&mut self, bias: &str, r: Range) -> bool {
        match self.init_dims(bias) {
            Some(d) if d.last() == Some(&r.len) && r.len > 1 || d.len() == 1 && d[0] == r.len => {
                self.member(bias, d.len() - 1, r, 0, 1, 1, Role::Producer);
                true
            }
            _ => self.is_zero_const(bias),
        }
    }
}

/// The inputs of a Conv or ConvTranspose node as the rules read them.
struct ConvParts {
    /// The data input.
    x: String,
    /// The weight (an initializer).
    w: String,
    bias: Option<String>,
    /// The data input's channel tracking.
    xt: Option<ValueT>,
    /// The weight's dims.
    wd: Vec<usize>,
    /// The `group` attribute (at least 1).
    g: usize,
}
