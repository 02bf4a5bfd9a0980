//! Matrix-product rules: `Gemm` and `MatMul` produce spaces on their output columns and
//! consume the inner dimension.

use super::*;

impl Ctx<'_, '_> {
    pub(super) fn gemm(&mut self, node: &NodeProto, g: &Gemm) {
        let a = node.input[0].clone();
        let b = node.input.get(1).cloned().unwrap_or_default();
        let (trans_a, trans_b) = (g.trans_a, g.trans_b);
        let at = self.track(&a).cloned();
        let Some(bd) = self.init_dims(&b) else {
            self.block_computed_weight(node, &b);
            return;
        };
        if bd.len() != 2 {
            self.block_node(node, "the weight is not 2-D");
            return;
        }
        let (k_axis_a, m_axis_a) = if trans_a { (0, 1) } else { (1, 0) };
        let (k_axis_b, n_axis_b) = if trans_b { (1, 0) } else { (0, 1) };
        let mut out = vec![AxisT::plain(Dim::Known(1)), AxisT::plain(Dim::Known(bd[n_axis_b] as i64))];
        if let Some(d) = self.dims(&node.output[0]) {
            if d.len() == 2 {
                out[0] = AxisT::plain(d[0].clone());
            }
        }
        if let Some(t) = &at {
            self.consume(node, &b, k_axis_b, &t[k_axis_a]);
            if t[m_axis_a].is_tracked() {
                out[0] = t[m_axis_a].clone();
            }
        }
        let r = self.new_space(bd[n_axis_b]);
        self.member(&b, n_axis_b, r, 0, 1, 1, Role::Producer);
        let zero = match ops::input(node, 2) {
            Some(c) => self.bias_on(c, r),
            None => true,
        };
        out[1] = AxisT::unit(r, zero);
        self.set(&node.output[0], out);
    }

    pub(super) fn matmul(&mut self, node: &NodeProto) {
        let (a, b) = (node.input[0].clone(), node.input[1].clone());
        // The weight and its axes read as B's rows and columns: an initializer, or the
        // transpose of one (an output layer tied to the embedding table).
        let weight = if self.is_init(&b) { Some((b.clone(), 0, 1)) } else { self.transposed_weight(&b).map(|w| (w, 1, 0)) };
        let (ia, ib) = (self.is_init(&a), weight.is_some());
        let (ta, tb) = (self.track(&a).cloned(), self.track(&b).cloned());
        let Some(od) = self.dims(&node.output[0]) else {
            self.block_node(node, "shapes unknown");
            return;
        };
        let r = od.len();
        let mut out: ValueT = od.iter().map(|d| AxisT::plain(d.clone())).collect();
        if !ib && self.dequantized(&b) {
            self.block_computed_weight(node, &b);
            return;
        }
        match (ia, ib) {
            // (A constant operand too: a table through an MLP, as Swin V2's continuous
            // position bias reads its coordinates; the weight's columns are the layer's.)
            (_, true) => {
                let Some((w, k_axis, n_axis)) = weight else { return };
                let Some(bd) = self.init_dims(&w) else { return };
                if bd.len() != 2 || r == 0 {
                    self.block_node(node, "the weight of MatMul is not 2-D");
                    return;
                }
                if let Some(t) = &ta {
                    let k = t.len() - 1;
                    self.consume(node, &w, k_axis, &t[k]);
                    for i in 0..k.min(r - 1) {
                        out[r - 1 - k + i] = t[i].clone();
                    }
                }
                let sp = self.new_space(bd[n_axis]);
                self.member(&w, n_axis, sp, 0, 1, 1, Role::Producer);
                out[r - 1] = AxisT::unit(sp, true);
            }
            (true, false) => {
                let Some(ad) = self.init_dims(&a) else { return };
                let Some(t) = &tb else {
                    if ad.len() == 2 && r >= 2 {
                        let sp = self.new_space(ad[0]);
                        self.member(&a, 0, sp, 0, 1, 1, Role::Producer);
                        out[r - 2] = AxisT::unit(sp, true);
                        self.set(&node.output[0], out);
                    }
                    return;
                };
                if ad.len() != 2 || t.len() < 2 {
                    self.block_node(node, "the constant operand of MatMul is not 2-D");
                    return;
                }
                let n = t.len();
                self.consume(node, &a, 1, &t[n - 2]);
                out[..n - 2].clone_from_slice(&t[..n - 2]);
                out[r - 1] = t[n - 1].clone();
                let sp = self.new_space(ad[0]);
                self.member(&a, 0, sp, 0, 1, 1, Role::Producer);
                out[r - 2] = AxisT::unit(sp, true);
            }
            (false, false) => {
                let (Some(da), Some(db)) = (self.dims(&a), self.dims(&b)) else {
                    self.block_node(node, "shapes unknown");
                    return;
                };
                if da.len() < 2 || db.len() < 2 || r < 2 {
                    self.block_node(node, "MatMul of vectors");
                    return;
                }
                let plain = |d: &[Dim]| -> ValueT { d.iter().map(|x| AxisT::plain(x.clone())).collect() };
                // An operand that is a graph input (a cross-attention cache) can follow the
                // heads of the other: the compact model reads its kept heads.
                let fed_a = if ta.is_none() { self.fed_input(node, &a) } else { None };
                let fed_b = if tb.is_none() { self.fed_input(node, &b) } else { None };
                let ta = ta.unwrap_or_else(|| plain(&da));
                let tb = tb.unwrap_or_else(|| plain(&db));
                let (na, nb) = (ta.len(), tb.len());
                // Contracted axes: one space; the product of an element is zero if either side is.
                let (ka, kb) = (&ta[na - 1], &tb[nb - 2]);
                // The inside of heads contracted with a fed input: each head meets the same
                // head of the input, if the heads axes join them (checked below).
                let mut inside_fed: Option<AxisT> = None;
                match (ka.is_tracked(), kb.is_tracked()) {
                    (false, false) => {}
                    (true, true) => {
                        if let Some(u) = self.union_axes(node, ka, kb, |p, q| p || q) {
                            if !u.all_zero() {
                                self.block_axis_at(node, &u, "contracts channels that are non-zero on both sides");
                            }
                        }
                    }
                    (true, false) if fed_b.is_some() && ka.is_inside_heads() => inside_fed = Some(ka.clone()),
                    (false, true) if fed_a.is_some() && kb.is_inside_heads() => inside_fed = Some(kb.clone()),
                    _ => {
                        self.block_axis_at(node, ka, "contracts channels with a tensor that does not follow them");
                        self.block_axis_at(node, kb, "contracts channels with a tensor that does not follow them");
                    }
                }
                let mut joined: Vec<Range> = Vec::new();
                out[r - 2] = ta[na - 2].clone();
                out[r - 1] = tb[nb - 1].clone();
                // Batch axes broadcast like an elementwise product.
                #[allow(clippy::needless_range_loop)]
                for ax in 0..r - 2 {
                    let pa = (ax + na).checked_sub(r).filter(|&p| p < na - 2);
                    let pb = (ax + nb).checked_sub(r).filter(|&p| p < nb - 2);
                    let xa = pa.map(|p| ta[p].clone()).filter(AxisT::is_tracked);
                    let xb = pb.map(|p| tb[p].clone()).filter(AxisT::is_tracked);
                    let full = |p: Option<usize>, d: &[Dim]| p.is_some_and(|p| d[p] != Dim::Known(1));
                    out[ax] = match (xa, xb) {
                        (None, None) => out[ax].clone(),
                        (Some(x), Some(y)) => {
                            // Heads of different widths joined (LeViT's subsampled attention,
                            // probabilities `[H, n, N]` by values `[H, N, vd]` of a `[H, kd + vd]`
                            // projection): the product's heads are described as the values'
                            // are, whose inside of heads it keeps, so that the two merge back.
                            let inner_block = |a: &AxisT| {
                                a.factors.iter().find_map(|f| match &f.track {
                                    Some(Track::Inner { k, .. }) => Some(*k),
                                    _ => None,
                                })
                            };
                            let head_block = |a: &AxisT| {
                                a.factors.iter().find_map(|f| match &f.track {
                                    Some(Track::Segs(segs)) => segs.iter().find_map(|s| match s {
                                        Seg::Tracked { scale: Scale::Coarse(k), .. } => Some(*k),
                                        _ => None,
                                    }),
                                    _ => None,
                                })
                            };
                            let values_first = inner_block(&tb[nb - 1])
                                .is_some_and(|k| head_block(&y) == Some(k) && head_block(&x).is_some_and(|kx| kx != k));
                            let joined = if values_first {
                                self.union_axes(node, &y, &x, |p, q| p || q)
                            } else {
                                self.union_axes(node, &x, &y, |p, q| p || q)
                            };
                            match joined {
                                Some(u) => u,
                                None => continue,
                            }
                        }
                        (Some(x), None) if !full(pb, &db) => x,
                        (None, Some(y)) if !full(pa, &da) => y,
                        (Some(x), None) if fed_b.is_some() => {
                            let (Some(fed), Some(p)) = (&fed_b, pb) else { continue };
                            let Some(x) = self.read_fed(node, fed, p, &x) else { continue };
                            joined.extend(x.ranges());
                            x
                        }
                        (None, Some(y)) if fed_a.is_some() => {
                            let (Some(fed), Some(p)) = (&fed_a, pa) else { continue };
                            let Some(y) = self.read_fed(node, fed, p, &y) else { continue };
                            joined.extend(y.ranges());
                            y
                        }
                        (Some(x), None) | (None, Some(x)) => {
                            self.block_axis_at(node, &x, "batched product with a tensor that does not follow these channels");
                            continue;
                        }
                    };
                    // Heads: a coarse batch axis of an activation product.
                    for f in &out[ax].factors {
                        if let Some(Track::Segs(segs)) = &f.track {
                            for s in segs {
                                if let Seg::Tracked { range, scale: Scale::Coarse(k), .. } = s {
                                    self.spaces.require_block(*range, *k, ReqKind::Head);
                                }
                            }
                        }
                    }
                }
                if let Some(inside) = inside_fed {
                    if !inside.ranges().iter().all(|r| joined.contains(r)) {
                        self.block_axis_at(node, &inside, "contracts channels with a tensor that does not follow them");
                    }
                }
                if fed_b.is_some() && !joined.is_empty() && !tb[nb - 1].is_tracked() {
                    inside_read_heads(&mut out);
                }
                self.heads_read_shared_channels(node, &mut out);
            }
        }
        self.set(&node.output[0], out);
    }

    /// Multi-query attention's `probs @ V`: the batch axis is the query heads (blocks of
    /// `k`), the last axis `k` channels of a value with no heads of its own (the one K/V
    /// head, repeated or broadcast to every query head). Output channel `j` of head `h` is
    /// then position `j` inside block `h`: the V channels are read inside every head and
    /// stay, and the heads go whole (the head dim of `Q @ K^T`'s contraction, the same),
    /// with the slices that read them.
    fn heads_read_shared_channels(&mut self, node: &NodeProto, out: &mut ValueT) {
        let Some((last, batch)) = out.split_last_mut() else { return };
        let [Factor { track: Some(Track::Segs(channels)), size }] = last.factors.as_slice() else {
            return;
        };
        let Some((ranges, k)) = coarse_heads(batch).filter(|&(_, k)| size.known() == i64::try_from(k).ok()) else {
            return;
        };
        let channels = channels.clone();
        self.block_read_inside_heads(node, &channels);
        // A zero query head's output is the mean of V, not zero: what reads it (the output
        // projection's rows) is zeroed with the head (`zero: false`, see `Ctx::consume`).
        *last = AxisT { factors: vec![Factor { size: size.clone(), track: Some(Track::Inner { k, ranges, zero: false, at: Some(0) }) }] };
    }
}

/// The heads the batch axes of a product's output follow (coarse segments, blocks of `k`
/// channels), and `k`; `None` without any, or with blocks of different sizes.
fn coarse_heads(batch: &[AxisT]) -> Option<(Vec<Range>, usize)> {
    let heads: Vec<(Range, usize)> = batch
        .iter()
        .flat_map(|a| a.factors.iter())
        .filter_map(|f| if let Some(Track::Segs(segs)) = &f.track { Some(segs) } else { None })
        .flatten()
        .filter_map(|s| if let Seg::Tracked { range, scale: Scale::Coarse(k), .. } = s { Some((*range, *k)) } else { None })
        .collect();
    let &(_, k) = heads.first()?;
    heads.iter().all(|&(_, kk)| kk == k).then(|| (heads.into_iter().map(|(r, _)| r).collect(), k))
}

/// `probs @ V` with V a fed input ([`Ctx::fed_input`]) whose heads follow the query
/// heads (blocks of `k`): the last axis, `k` channels of V per head, is the inside of
/// those heads, which go whole. Left untracked where V's head size is not `k`.
fn inside_read_heads(out: &mut ValueT) {
    let Some((last, batch)) = out.split_last_mut() else { return };
    let [Factor { size, track: None }] = last.factors.as_slice() else { return };
    let Some((ranges, k)) = coarse_heads(batch).filter(|&(_, k)| size.known() == i64::try_from(k).ok()) else {
        return;
    };
    let size = size.clone();
    *last = AxisT { factors: vec![Factor { size, track: Some(Track::Inner { k, ranges, zero: false, at: Some(0) }) }] };
}
