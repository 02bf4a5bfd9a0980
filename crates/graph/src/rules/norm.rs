//! Normalization rules: per-channel parameters join the channel space (`BatchNormalization`,
//! `InstanceNormalization`, `GroupNormalization`), `LayerNormalization`/`RMSNormalization`
//! and softmax block the axes they normalize over.

use super::*;
use oto_onnx::op::WrittenLayerNorm;

impl Ctx<'_, '_> {
    pub(super) fn channel_params(&mut self, node: &NodeProto, params: &[(usize, Role)]) -> Option<ValueT> {
        let mut t = self.in_track(node, 0)?;
        if t.len() < 2 {
            self.block_node(node, "rank below 2");
            return None;
        }
        for &(k, role) in params {
            if let Some(p) = ops::input(node, k) {
                if self.is_init(p) {
                    let a = t[1].clone();
                    self.members_along(node, p, 0, &a, role);
                } else if t[1].is_tracked() {
                    let a = t[1].clone();
                    self.block_axis_at(node, &a, &format!("parameter '{p}' is not an initializer"));
                }
            }
        }
        zero_after_norm(&mut t);
        Some(t)
    }

    pub(super) fn batch_norm(&mut self, node: &NodeProto) {
        let params = [(1, Role::Producer), (2, Role::Producer), (3, Role::Aux), (4, Role::Aux)];
        if let Some(t) = self.channel_params(node, &params) {
            self.set(&node.output[0], t);
        }
    }

    pub(super) fn instance_norm(&mut self, node: &NodeProto) {
        if let Some(t) = self.in_track(node, 0) {
            // Statistics over the spatial axes: fine when those only hold the inside of
            // the channel axis's blocks (GroupNorm decomposed as [B, G, C/G*H*W]), or
            // when the one tracked spatial axis is zero where pruned and padded back.
            let over: Vec<usize> = (2..t.len()).filter(|&i| t[i].is_tracked() && !inside_channel_blocks(&t, &t[i])).collect();
            if !(over.len() == 1 && self.padded_instance_norm(node, &t, over[0])) {
                for &i in &over {
                    self.block_axis_at(node, &t[i], "normalizes over a tracked axis");
                }
            }
        }
        // On normalization groups (GroupNorm decomposed as Reshape [B, G, -1] ->
        // InstanceNormalization -> Reshape -> Mul -> Add) the scale is the
        // decomposition's constant, not the layer's: it is cut but not zeroed (a zero
        // group normalizes to 0 whatever the scale); the bias must be zero, so it stays a
        // producer.
        let on_groups = self
            .in_track(node, 0)
            .and_then(|t| t.get(1).and_then(|a| a.single_segs().cloned()))
            .is_some_and(|segs| segs.iter().any(|s| matches!(s, Seg::Tracked { scale: Scale::Coarse(_), .. })));
        if on_groups {
            let input_zero = self.in_track(node, 0).is_some_and(|t| t[1].all_zero());
            if let Some(t) = self.in_track(node, 0) {
                for s in t[1].single_segs().into_iter().flatten() {
                    if let Seg::Tracked { range, scale: Scale::Coarse(k), .. } = s {
                        self.spaces.require_block(*range, *k, ReqKind::NormGroup);
                    }
                }
            }
            if let Some(mut t) = self.channel_params(node, &[(1, Role::Aux), (2, Role::Producer)]) {
                for a in t.iter_mut() {
                    a.map_zero(&|z| z && input_zero);
                }
                self.set(&node.output[0], t);
            }
            return;
        }
        if let Some(t) = self.channel_params(node, &[(1, Role::Producer), (2, Role::Producer)]) {
            self.set(&node.output[0], t);
        }
    }

    pub(super) fn group_norm(&mut self, node: &NodeProto) -> Result<(), AnalysisError> {
        let Some(mut t) = self.in_track(node, 0) else {
            return Ok(());
        };
        let groups = attr(self, node, node.attr_int("num_groups"))?.unwrap_or(1).max(1) as usize;
        for a in t.iter().skip(2) {
            self.block_axis_at(node, a, "normalizes over a tracked axis");
        }
        let Some(c) = self.dims(&node.input[0]).and_then(|d| d.get(1).and_then(Dim::known)) else {
            self.block_node(node, "channel count unknown");
            return Ok(());
        };
        let k = c as usize / groups;
        let segs = match t[1].linear() {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(()),
            Err(why) => {
                let a = t[1].clone();
                self.block_axis_at(node, &a, &why);
                return Ok(());
            }
        };
        let mut parts = Vec::new();
        for s in &segs {
            if s.scale != Scale::Unit || s.repeat != 1 || s.offset % k != 0 || s.range.len % k != 0 {
                self.spaces.block(s.range, format!("{}: channels do not line up with normalization groups", node_label(node)));
                continue;
            }
            self.spaces.require_block(s.range, k, ReqKind::NormGroup);
            for p in [1usize, 2] {
                let Some(name) = ops::input(node, p).map(str::to_string) else {
                    continue;
                };
                match self.init_dims(&name) {
                    Some(d) if d == [groups] => self.member(&name, 0, s.range, s.offset / k, 1, k, Role::Producer),
                    Some(d) if d == [c as usize] => self.member(&name, 0, s.range, s.offset, 1, 1, Role::Producer),
                    _ => self.spaces.block(s.range, format!("{}: scale/bias '{name}' has an unexpected shape", node_label(node))),
                }
            }
            parts.push(Part::Fixed(s.range, 1, k));
        }
        let name = node.name.clone().unwrap_or_default();
        self.spaces.shape_ref(
            RefAt::Const(ShapeLocation::Attribute { node: name.clone(), attribute: "num_groups".into() }, false),
            0,
            &name,
            parts,
        );
        zero_after_norm(&mut t);
        self.set(&node.output[0], t);
        Ok(())
    }

    /// `LayerNormalization`, or `RMSNormalization` (`rms`).
    pub(super) fn layer_norm(&mut self, node: &NodeProto, l: &LayerNorm, rms: bool) {
        let Some(mut t) = self.in_track(node, 0) else {
            return;
        };
        let Some(first) = norm_axis(l.axis, t.len()) else {
            return;
        };
        let normalized: Vec<usize> = (first..t.len()).collect();
        let tracked: Vec<&AxisT> = normalized.iter().map(|&i| &t[i]).filter(|a| a.is_tracked()).collect();
        if !tracked.is_empty() && tracked.iter().all(|a| inside_heads_only(a)) {
            // Over the positions inside attention heads only (Qwen3's per-head query and key
            // norms): each head has statistics of its own and the scale, one per position, is
            // shared by every head, so removing heads changes neither. A removed head stays
            // zero where the form maps 0 to 0: RMS with a positive epsilon, LayerNorm without
            // a bias.
            let keeps_zero = if rms { l.epsilon > 0.0 } else { ops::input(node, 2).is_none() };
            if !keeps_zero {
                for a in &mut t {
                    a.map_zero(&|_| false);
                }
            }
            self.set(&node.output[0], t);
            return;
        }
        if rms && normalized.iter().all(|&i| t[i].all_zero()) {
            // A mean of squares: zero channels add nothing; construction keeps its divisor.
            let scale = node.input[1].clone();
            for &i in &normalized {
                if !t[i].is_tracked() {
                    continue;
                }
                let a = t[i].clone();
                // The scale's axes are the last ones of the normalized axes (broadcast).
                let r = t.len() - first;
                match self.init_dims(&scale) {
                    Some(d) if d.len() <= r => {
                        if let Some(k) = (i - first).checked_sub(r - d.len()).filter(|&k| d[k] != 1) {
                            self.members_along(node, &scale, k, &a, Role::Aux);
                        }
                    }
                    _ => self.block_axis_at(node, &a, &format!("scale '{scale}' is not an initializer along these channels")),
                }
            }
            self.mean_divisor(node, &t, &normalized);
            self.set(&node.output[0], t);
            return;
        }
        if !rms && normalized.iter().all(|&i| t[i].all_zero()) && self.padded_norm(node, &t, first) {
            // Zero channels in, zero channels out (their scale and bias are zeroed with
            // them); construction pads the compact input back to the original width so
            // that the statistics are those of the full layer.
            self.set(&node.output[0], t);
            return;
        }
        for i in first..t.len() {
            if t[i].is_tracked() {
                let a = t[i].clone();
                for p in [1usize, 2] {
                    if let Some(name) = ops::input(node, p).map(str::to_string) {
                        if self.init_dims(&name).is_some_and(|d| d.len() == t.len() - first) {
                            self.members_along(node, &name, i - first, &a, Role::Producer);
                        }
                    }
                }
                self.block_axis_at(
                    node,
                    &a,
                    &format!(
                        "{} normalizes over these channels: removing one moves the statistics of the others (the mean, as in LayerNorm), so the normalized width is not exactly prunable",
                        node.op()
                    ),
                );
            }
        }
        for a in &mut t {
            a.map_zero(&|_| false);
        }
        self.set(&node.output[0], t);
    }

    /// A `LayerNormalization` (axes `first..` of its input, tracked as `t`, zero at
    /// pruned channels) kept exact by padding: the compact layer reads its narrow input
    /// padded with zeros back to the original width, normalizes that (zeros leave the sum
    /// and the sum of squares as they were, so mean and variance are the full layer's),
    /// and keeps the first positions. The pruned channels' scale and bias are producers,
    /// zeroed with them, so the output stays zero there in the sparse model too. Records
    /// the width to restore per tracked axis; false (nothing recorded) where a scale or
    /// bias is not an initializer with one entry per channel, or a size is unknown.
    fn padded_norm(&mut self, node: &NodeProto, t: &ValueT, first: usize) -> bool {
        let rank = t.len();
        let tracked: Vec<usize> = (first..rank).filter(|&i| t[i].is_tracked()).collect();
        let dims = self.dims(&node.input[0]).unwrap_or_default();
        let params: Vec<String> = [1usize, 2].iter().filter_map(|&p| ops::input(node, p).map(str::to_string)).collect();
        // Per tracked axis: its size and, per parameter, the parameter's axis along it.
        let mut plan = Vec::new();
        for &i in &tracked {
            let Some(size) = dims.get(i).and_then(Dim::known).and_then(|s| u64::try_from(s).ok()) else {
                return false;
            };
            let mut along = Vec::new();
            for p in &params {
                // (Parameters broadcast against the normalized axes only.)
                let within = self.init_dims(p).is_some_and(|d| d.len() <= rank - first);
                let Some(k) = self.param_axis(p, rank, i, size).filter(|_| within) else {
                    return false;
                };
                along.push((p.clone(), k));
            }
            plan.push((i, size, along));
        }
        let user = node.name.clone().unwrap_or_default();
        for (i, size, along) in plan {
            let a = t[i].clone();
            let padded = along.iter().map(|(p, _)| p.clone()).collect();
            for (p, k) in along {
                self.members_along(node, &p, k, &a, Role::Producer);
            }
            let location = ShapeLocation::NormWidth { value: node.output[0].clone(), axis: i, size, padded };
            self.spaces.shape_ref(RefAt::Const(location, false), 0, &user, count_parts(&a));
        }
        true
    }

    /// The axis of the initializer `p` (a layer norm's scale or bias, broadcast against
    /// an input of rank `rank`, aligned at the end) along the input's axis `i`, when it
    /// has `size` entries there; `None` otherwise (or when `p` is not an initializer).
    fn param_axis(&self, p: &str, rank: usize, i: usize, size: u64) -> Option<usize> {
        let d = self.init_dims(p).filter(|d| d.len() <= rank)?;
        let k = i.checked_sub(rank - d.len())?;
        (u64::try_from(d[k]).ok() == Some(size)).then_some(k)
    }

    /// An `InstanceNormalization` whose statistics run over a tracked spatial axis `i`
    /// (zero where pruned): the layer normalization tf2onnx writes, over `[B, S, C]` with
    /// the sequence as the operator's channels and a scale of ones and a bias of zeros, the
    /// layer's own scale and bias following as `Mul` and `Add`. Kept exact by padding,
    /// as [`Ctx::padded_norm`]; the result is not zero at pruned channels (minus the mean
    /// over the deviation), the scale that follows zeroes it. False where the size of
    /// the axis is unknown.
    fn padded_instance_norm(&mut self, node: &NodeProto, t: &ValueT, i: usize) -> bool {
        let size = self.dims(&node.input[0]).and_then(|d| d.get(i).and_then(Dim::known)).and_then(|s| u64::try_from(s).ok());
        let Some(size) = size.filter(|_| t[i].all_zero()) else {
            return false;
        };
        let location = ShapeLocation::NormWidth { value: node.output[0].clone(), axis: i, size, padded: Vec::new() };
        self.spaces.shape_ref(RefAt::Const(location, false), 0, &node.name.clone().unwrap_or_default(), count_parts(&t[i]));
        true
    }

    /// A layer normalization written out ([`WrittenLayerNorm`]) from its first node, the
    /// mean of `x` (tracked as `t`), over channels that are zero where pruned: as the
    /// operator ([`Ctx::padded_norm`]), construction pads `x` back to the original width
    /// for the pattern and keeps the first positions of its result, so the statistics are
    /// the full layer's. Without a scale inside, the result is not zero at pruned channels
    /// (their centred value is minus the mean): the scale that follows (a `Mul` by a
    /// parameter) zeroes them; with the scale (and bias) inside (the batch-normalization
    /// form, `d * (r * scale)`), they are producers of the width, zeroed with it, and the
    /// result is zero there.
    /// False (nothing done) where the nodes are not that pattern, no tracked axis is
    /// normalized, or one is not zero or of unknown size.
    pub(super) fn written_norm(&mut self, node: &NodeProto, t: &ValueT) -> bool {
        let Some(index) = self.graph.producer_node(&node.output[0]).map(|(i, _)| i) else {
            return false;
        };
        let Some(w) = WrittenLayerNorm::at_mean(self.graph, Some(&self.shapes), index) else {
            return false;
        };
        let rank = t.len();
        let Some(axes) = w.axes.iter().map(|&a| norm_axis(a, rank)).collect::<Option<Vec<usize>>>() else {
            return false;
        };
        let tracked: Vec<usize> = axes.iter().copied().filter(|&i| t[i].is_tracked()).collect();
        let order: Vec<usize> = match &w.perm {
            Some(p) if p.len() == rank => p.clone(),
            Some(_) => return false,
            None => (0..rank).collect(),
        };
        let dims = self.dims(&w.x).unwrap_or_default();
        let sizes: Option<Vec<u64>> =
            tracked.iter().map(|&i| dims.get(i).and_then(Dim::known).and_then(|s| u64::try_from(s).ok())).collect();
        let Some(sizes) = sizes.filter(|_| !tracked.is_empty() && tracked.iter().all(|&i| t[i].all_zero())) else {
            return false;
        };
        // The batch-normalization form's scale and bias: initializers along the
        // normalized axes (aligned at the end), one entry per channel of each tracked one.
        let params: Vec<&String> = w.scale.iter().chain(&w.bias).collect();
        let mut along = Vec::new();
        for (&i, &size) in tracked.iter().zip(&sizes) {
            for p in &params {
                let Some(k) = self.param_axis(p, rank, i, size) else {
                    return false;
                };
                along.push((i, (*p).clone(), k));
            }
        }
        for (i, p, k) in along {
            let a = t[i].clone();
            self.members_along(node, &p, k, &a, Role::Producer);
        }
        let end = self.graph.proto.node[w.end].output[0].clone();
        let user = node.name.clone().unwrap_or_default();
        // The result's axes: the input's, in the transposed order where the pattern
        // transposes (`out[j]` is axis `perm[j]` of `x`).
        let mut out: ValueT = order.iter().map(|&a| t[a].clone()).collect();
        for (&i, size) in tracked.iter().zip(sizes) {
            let padded = params.iter().map(|p| (*p).clone()).collect();
            let location = ShapeLocation::NormWidth { value: end.clone(), axis: i, size, padded };
            self.spaces.shape_ref(RefAt::Const(location, false), 0, &user, count_parts(&t[i]));
            // Zero there only when a scale (zeroed with the channels) multiplies the
            // result: in the division form the scale follows the pattern.
            if w.scale.is_none() {
                for j in (0..rank).filter(|&j| order[j] == i) {
                    out[j].map_zero(&|_| false);
                }
            }
        }
        for &k in &w.nodes[1..] {
            self.written_norm_inner.extend(self.graph.proto.node[k].output.iter().cloned());
        }
        self.set(&end, out);
        true
    }

    pub(super) fn softmax(&mut self, node: &NodeProto, s: &Softmax) {
        let Some(mut t) = self.in_track(node, 0) else {
            return;
        };
        let Some(ax) = norm_axis(s.axis, t.len()) else {
            return;
        };
        let mixed: Vec<usize> = if s.coerce_2d { (ax..t.len()).collect() } else { vec![ax] };
        for i in mixed {
            let a = t[i].clone();
            // Over positions inside attention heads only (XCiT's cross-covariance attention,
            // a softmax over the channels of each head): a head's positions go together with
            // it, so the others' normalization is unchanged.
            if a.is_tracked() && inside_heads_only(&a) {
                continue;
            }
            self.block_axis_at(node, &a, &format!("{} normalizes over these channels", node.op()));
        }
        for a in &mut t {
            a.map_zero(&|_| false);
        }
        self.set(&node.output[0], t);
    }
}

/// Whether every tracked factor of `a` is a position inside attention heads (the `D` of
/// `[H, D]`), not a channel.
fn inside_heads_only(a: &AxisT) -> bool {
    a.factors.iter().filter_map(|f| f.track.as_ref()).all(|t| matches!(t, Track::Inner { .. }))
}
