//! The operator rules: one place per operator, saying how its input axes map to its
//! output axes, which parameter slices join which space, and whether a zero element
//! stays zero. Operators not listed here block every space they touch.

use crate::analyze::{count_parts, normalize, seg_axis, window, AnalysisError, Ctx};
use crate::model::{Role, ShapeLocation};
use crate::space::{AxisT, Factor, Part, Range, RefAt, ReqKind, Scale, Seg, Track, ValueT};
use oto_onnx::graph::{node_label, NodeExt};
use oto_onnx::op::{Binary as B, Op, Unary};
use oto_onnx::proto::NodeProto;
use oto_onnx::{ops, Dim};

/// Binary elementwise operators and how they treat a zero operand.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Bin {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Pow,
    Where,
    PRelu,
}

/// After a per-channel normalization on axis 1 whose producers (scale, bias) are zeroed:
/// the channels are zero; another tracked axis sees the shift and scale of a zero slice
/// (non-zero), except the inside of the channels' own blocks.
fn zero_after_norm(t: &mut ValueT) {
    let channel_ranges = t.get(1).map(AxisT::ranges).unwrap_or_default();
    for (i, a) in t.iter_mut().enumerate() {
        for f in a.factors.iter_mut().filter_map(|f| f.track.as_mut()) {
            let own = i == 1 || matches!(f, Track::Inner { ranges, .. } if ranges.iter().all(|r| channel_ranges.contains(r)));
            f.map_zero(&|_| own);
        }
    }
}

/// How a one-input elementwise function treats zero: `Some(true)` when `f(0) = 0` (a
/// zeroed channel stays zero), `Some(false)` when the channels stay tied but are no longer
/// zero, `None` when oto does not follow channels through it.
fn unary_keeps_zero(u: Unary) -> Option<bool> {
    use Unary::*;
    match u {
        Relu | LeakyRelu | Gelu | Erf | Tanh | Neg | Abs | Identity | Sign | Round | Floor | Ceil | HardSwish | Mish | Elu | Selu
        | Celu | Sin | Sqrt | Softsign | ThresholdedRelu | Shrink | Asin | Atan | Sinh | Tan | Asinh | Atanh | IsNaN | IsInf => Some(true),
        Sigmoid | HardSigmoid | Exp | Softplus | Cos | Log | Reciprocal | Cosh | Acos => Some(false),
        Acosh | Not | BitwiseNot => None,
    }
}

/// The fewest inputs and outputs the rules read for an operator at an opset.
fn arity(op: &str, opset: i64) -> (usize, usize) {
    let ins = match op {
        "Where" => 3,
        "BatchNormalization" => 5,
        "InstanceNormalization" | "GroupNormalization" => 3,
        "Slice" if opset >= 10 => 3,
        "Conv" | "ConvTranspose" | "Gemm" | "MatMul" | "Gather" | "Add" | "Sub" | "Mul" | "Div" | "Pow" | "PRelu"
        | "LayerNormalization" | "RMSNormalization" | "Reshape" | "Expand" => 2,
        "Squeeze" | "Unsqueeze" | "Flatten" | "Concat" | "Split" | "Slice" => 1,
        _ => 0,
    };
    (ins, 1)
}

fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (0..rank as i64).contains(&a).then_some(a as usize)
}

fn attr<T>(cx: &Ctx<'_, '_>, node: &NodeProto, r: Result<T, String>) -> Result<T, AnalysisError> {
    Ok(ops::attr_result(cx.graph, node, r)?)
}

impl Ctx<'_, '_> {
    /// Applies the rule of `node`'s operator.
    pub fn apply(&mut self, node: &NodeProto) -> Result<(), AnalysisError> {
        let any_tracked = node.input.iter().any(|v| self.tracks.contains_key(v.as_str()));
        let custom = !matches!(node.domain.as_deref(), None | Some("") | Some("ai.onnx"));
        if custom {
            self.block_node(node, "operator of a custom domain: not understood");
            return Ok(());
        }
        let (ins, outs) = arity(node.op(), ops::node_opset(self.graph, node));
        if node.input.len() < ins || node.output.len() < outs || node.output.first().is_some_and(String::is_empty) {
            return Err(ops::node_error(
                self.graph,
                node,
                format!("has {} inputs and {} outputs; {} needs at least {ins} and {outs}", node.input.len(), node.output.len(), node.op()),
            )
            .into());
        }
        let op = Op::parse(self.graph, node)?;
        match &op {
            // Channel producers run even without tracked inputs.
            Op::Conv(c) if !c.integer => self.conv(node)?,
            Op::ConvTranspose(_) => self.conv_transpose(node)?,
            Op::Gemm(_) => self.gemm(node)?,
            Op::MatMul { integer: false } => self.matmul(node),
            Op::Gather => self.gather(node),
            _ if !any_tracked => {}
            Op::Unary(u) => match unary_keeps_zero(*u) {
                Some(keeps) => self.unary(node, keeps),
                None => self.block_node(node, &format!("operator {} is not understood", node.op())),
            },
            // f(0) = 0 elementwise
            Op::Cast | Op::Dropout => self.unary(node, true),
            Op::Clip => {
                let keeps = match ops::clip_bounds(self.graph, node, Some(&self.shapes)) {
                    Ok((lo, hi)) => lo.unwrap_or(f32::NEG_INFINITY) <= 0.0 && 0.0 <= hi.unwrap_or(f32::INFINITY),
                    Err(_) => false,
                };
                self.unary(node, keeps)
            }
            Op::Binary(B::Add) => self.binary(node, Bin::Add, 0, 1),
            Op::Binary(B::Sub) => self.binary(node, Bin::Sub, 0, 1),
            Op::Binary(B::Mul) => self.binary(node, Bin::Mul, 0, 1),
            Op::Binary(B::Div) => self.binary(node, Bin::Div, 0, 1),
            Op::Binary(B::Max) if node.input.len() == 2 => self.binary(node, Bin::Max, 0, 1),
            Op::Binary(B::Min) if node.input.len() == 2 => self.binary(node, Bin::Min, 0, 1),
            Op::Binary(B::Pow) => self.binary(node, Bin::Pow, 0, 1),
            Op::PRelu => self.binary(node, Bin::PRelu, 0, 1),
            Op::Where => {
                self.binary(node, Bin::Where, 1, 2);
                if self.tracks.contains_key(node.input[0].as_str()) {
                    self.where_condition(node);
                }
            }
            Op::Pool(_) | Op::GlobalPool(_) => self.pool(node),
            Op::Resize { .. } => self.resize(node),
            Op::Pad => self.pad(node),
            Op::BatchNormalization => self.batch_norm(node),
            Op::InstanceNormalization => self.instance_norm(node),
            Op::GroupNormalization => self.group_norm(node)?,
            Op::LayerNormalization | Op::RmsNormalization => self.layer_norm(node)?,
            // Each output channel depends on its neighbours' squares: never exact to cut.
            Op::Lrn => {
                self.block_node(node, "LRN normalizes over a window of neighbouring channels: removing a channel changes its neighbours")
            }
            Op::Softmax | Op::LogSoftmax | Op::Hardmax => self.softmax(node)?,
            Op::Reduce(_) => self.reduce(node)?,
            Op::Transpose => self.transpose(node)?,
            Op::Reshape | Op::Flatten | Op::Squeeze | Op::Unsqueeze => self.reshape(node)?,
            Op::Concat => self.concat(node)?,
            Op::Split => self.split(node)?,
            Op::Slice => self.slice(node)?,
            Op::Expand => self.expand(node),
            // Runtime indices pick whole slices (rows, channels, positions) of the data.
            Op::GatherNd | Op::ScatterNd => {
                self.block_node(node, "indexes slices of its data with runtime indices: channels are not followed through it")
            }
            // Integer results that do not carry channels.
            Op::Shape | Op::Size => {}
            Op::Conv(_)
            | Op::MatMul { integer: true }
            | Op::Binary(B::Max | B::Min | B::Mod | B::Mean | B::Sum | B::BitShift | B::BitwiseAnd | B::BitwiseOr | B::BitwiseXor)
            | Op::Compare(_)
            | Op::CastLike
            | Op::LpNormalization
            | Op::MeanVarianceNormalization
            | Op::Einsum
            | Op::ArgReduce { .. }
            | Op::TopK
            | Op::CumSum
            | Op::Tile
            | Op::DepthToSpace
            | Op::SpaceToDepth
            | Op::GatherElements
            | Op::ScatterElements
            | Op::Constant
            | Op::ConstantOfShape
            | Op::Range
            | Op::NonZero
            | Op::EyeLike
            | Op::Trilu
            | Op::Other(_) => self.block_node(node, &format!("operator {} is not understood", node.op())),
        }
        Ok(())
    }

    fn in_track(&self, node: &NodeProto, k: usize) -> Option<ValueT> {
        ops::input(node, k).and_then(|v| self.track(v)).cloned()
    }

    // ---- elementwise -------------------------------------------------------------

    fn unary(&mut self, node: &NodeProto, keeps_zero: bool) {
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
    fn binary(&mut self, node: &NodeProto, op: Bin, ia: usize, ib: usize) {
        let (a, b) = (node.input[ia].clone(), node.input[ib].clone());
        let out = node.output[0].clone();
        let (ta, tb) = (self.track(&a).cloned(), self.track(&b).cloned());
        let (Some(od), Some(da), Some(db)) = (self.dims(&out), self.dims(&a), self.dims(&b)) else {
            self.block_node(node, "shapes unknown");
            return;
        };
        let r = od.len();
        let mut out_t: ValueT = od.iter().map(|d| AxisT::plain(d.clone())).collect();
        for (ax, slot) in out_t.iter_mut().enumerate() {
            let pa = (ax + da.len()).checked_sub(r);
            let pb = (ax + db.len()).checked_sub(r);
            let xa = pa.and_then(|p| ta.as_ref().map(|t| t[p].clone())).filter(AxisT::is_tracked);
            let xb = pb.and_then(|p| tb.as_ref().map(|t| t[p].clone())).filter(AxisT::is_tracked);
            match (xa, xb) {
                (None, None) => {}
                (Some(x), Some(y)) => {
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
                (Some(x), None) => *slot = self.one_side(node, op, x, &b, pb.map(|p| db[p].clone()), pb, true),
                (None, Some(y)) => *slot = self.one_side(node, op, y, &a, pa.map(|p| da[p].clone()), pa, false),
            }
        }
        self.set(&out, out_t);
    }

    /// `Where(cond, a, b)` with a condition computed from tracked channels (the
    /// TorchScript exporter's `Where(IsNaN(p), 0, p)` after an attention softmax): each
    /// position selects from the same positions of `a` and `b`, so the condition's
    /// channels are the output's (tied); the output is zero where both branches are.
    fn where_condition(&mut self, node: &NodeProto) {
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
    fn one_side(
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
        if !self.is_init(other) {
            self.block_axis_at(node, &x, &format!("combined with '{other}', which has the same width but does not follow the channels"));
            return x;
        }
        let role = match op {
            Bin::Add | Bin::Sub | Bin::Max | Bin::Min | Bin::Where => Role::Producer,
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

    /// Ties two axes of equal layout; `None` (and blocked) when the layouts differ.
    pub(crate) fn union_axes(&mut self, node: &NodeProto, x: &AxisT, y: &AxisT, both: impl Fn(bool, bool) -> bool) -> Option<AxisT> {
        let same_shape = x.factors.len() == y.factors.len() && x.factors.iter().zip(&y.factors).all(|(f, g)| f.size == g.size);
        if !same_shape {
            if let Some(u) = self.union_repeated(x, y, &both).or_else(|| self.union_repeated(y, x, &both)) {
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
                (Some(Track::Inner { k, ranges, zero }), Some(Track::Inner { k: k2, ranges: r2, zero: z2 }))
                    if k == k2 && ranges.len() == r2.len() =>
                {
                    for (a, b) in ranges.iter().zip(r2) {
                        self.spaces.tie(*a, *b);
                    }
                    Some(Track::Inner { k: *k, ranges: ranges.clone(), zero: both(*zero, *z2) })
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

    /// Grouped-query attention: `x` is one tracked factor (the query heads), `y` a tracked
    /// factor (the K/V heads) followed by an untracked repeat of the same total size.
    /// Ties each K/V head to its query heads; the result keeps `x`'s layout.
    fn union_repeated(&mut self, x: &AxisT, y: &AxisT, both: &impl Fn(bool, bool) -> bool) -> Option<AxisT> {
        let [Factor { track: Some(Track::Segs(xs)), size: xn }] = x.factors.as_slice() else {
            return None;
        };
        let tracked: Vec<&Factor> = y.factors.iter().filter(|f| f.size != Dim::Known(1) || f.track.is_some()).collect();
        let [Factor { track: Some(Track::Segs(ys)), size: yn }, Factor { track: None, size: Dim::Known(rep) }] = tracked.as_slice() else {
            return None;
        };
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

    fn union_segs(&mut self, node: &NodeProto, p: &[Seg], q: &[Seg], both: &impl Fn(bool, bool) -> bool) -> Vec<Seg> {
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
            match (a, b) {
                (Seg::Tracked { range: ra, scale: sa, zero: za }, Seg::Tracked { range: rb, scale: sb, zero: zb }) if sa == sb => {
                    self.spaces.tie(*ra, *rb);
                    out.push(Seg::Tracked { range: *ra, scale: *sa, zero: both(*za, *zb) });
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
                    out.push(a.clone());
                }
            }
        }
        out
    }

    // ---- channel producers -------------------------------------------------------

    fn out_rank(&self, node: &NodeProto) -> Option<usize> {
        self.dims(&node.output[0]).map(|d| d.len())
    }

    /// What Conv and ConvTranspose read alike; `None` (the node blocked) when the weight is
    /// not an initializer.
    fn conv_parts(&mut self, node: &NodeProto) -> Result<Option<ConvParts>, AnalysisError> {
        let x = node.input[0].clone();
        let w = node.input.get(1).cloned().unwrap_or_default();
        let bias = ops::input(node, 2).map(str::to_string);
        let xt = self.track(&x).cloned();
        let Some(wd) = self.init_dims(&w) else {
            self.block_node(node, "the weight is not an initializer");
            return Ok(None);
        };
        let g = attr(self, node, node.attr_int_or("group", 1))?.max(1) as usize;
        Ok(Some(ConvParts { x, w, bias, xt, wd, g }))
    }

    /// A convolution's window mixes positions: channels tracked along a spatial axis cannot pass.
    fn block_tracked_spatial(&mut self, node: &NodeProto, xt: Option<&ValueT>) {
        for a in xt.into_iter().flat_map(|t| t.iter().skip(2)) {
            self.block_axis_at(node, a, "a convolution mixes along a tracked spatial axis");
        }
    }

    fn conv(&mut self, node: &NodeProto) -> Result<(), AnalysisError> {
        let Some(ConvParts { x, w, bias, xt, wd, g }) = self.conv_parts(node)? else { return Ok(()) };
        let Some(rank) = self.out_rank(node).or(xt.as_ref().map(Vec::len)).or(self.dims(&x).map(|d| d.len())) else {
            self.block_node(node, "shapes unknown");
            return Ok(());
        };
        self.block_tracked_spatial(node, xt.as_ref());
        let m = wd[0];
        let cin_g = wd.get(1).copied().unwrap_or(1);
        let mut out: ValueT = (0..rank).map(|_| AxisT::plain(Dim::Known(1))).collect();
        if let Some(d) = self.dims(&node.output[0]) {
            out = d.into_iter().map(AxisT::plain).collect();
        }
        if let Some(t) = &xt {
            out[0] = t[0].clone();
        }
        if g == 1 {
            if let Some(t) = &xt {
                self.consume(node, &w, 1, &t[1]);
            }
            let r = self.new_space(m);
            self.member(&w, 0, r, 0, 1, 1, Role::Producer);
            if let Some(b) = &bias {
                self.member(b, 0, r, 0, 1, 1, Role::Producer);
            }
            out[1] = AxisT::unit(r, true);
            self.set(&node.output[0], out);
            return Ok(());
        }
        if m % g != 0 {
            self.block_node(node, "the weight's output channels are not a multiple of group");
            return Ok(());
        }
        // Grouped with C_in/g != C_out/g: its input channels stay (cutting them would
        // break the conv groups); its output channels are a new space whose element j is
        // the j-th output channel of every group, so cutting keeps `group` and equal groups.
        if m / g != cin_g {
            if let Some(t) = &xt {
                self.block_axis_at(
                    node,
                    &t[1],
                    "read by a grouped convolution with C_in/group != C_out/group (its input groups stay whole)",
                );
            }
            let k = m / g;
            let r = self.new_space(m);
            for i in 1..g {
                self.spaces.tie(r.sub(0, k), r.sub(i * k, k));
            }
            self.member(&w, 0, r, 0, 1, 1, Role::Producer);
            if let Some(b) = &bias {
                self.member(b, 0, r, 0, 1, 1, Role::Producer);
            }
            out[1] = AxisT::unit(r, true);
            self.set(&node.output[0], out);
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

    fn conv_transpose(&mut self, node: &NodeProto) -> Result<(), AnalysisError> {
        let Some(ConvParts { w, bias, xt, wd, g, .. }) = self.conv_parts(node)? else { return Ok(()) };
        let Some(d) = self.dims(&node.output[0]) else {
            self.block_node(node, "shapes unknown");
            return Ok(());
        };
        self.block_tracked_spatial(node, xt.as_ref());
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
        self.member(&w, 1, r, 0, 1, 1, Role::Producer);
        if let Some(b) = &bias {
            self.member(b, 0, r, 0, 1, 1, Role::Producer);
        }
        out[1] = AxisT::unit(r, true);
        self.set(&node.output[0], out);
        Ok(())
    }

    /// A bias added to a fresh space: its slice is a producer; a broadcast bias makes
    /// the channels non-zero.
    fn bias_on(&mut self, bias: &str, r: Range) -> bool {
        match self.init_dims(bias) {
            Some(d) if d.last() == Some(&r.len) && r.len > 1 || d.len() == 1 && d[0] == r.len => {
                self.member(bias, d.len() - 1, r, 0, 1, 1, Role::Producer);
                true
            }
            _ => self.is_zero_const(bias),
        }
    }

    fn gemm(&mut self, node: &NodeProto) -> Result<(), AnalysisError> {
        let a = node.input[0].clone();
        let b = node.input.get(1).cloned().unwrap_or_default();
        let trans_a = attr(self, node, node.attr_int_or("transA", 0))? != 0;
        let trans_b = attr(self, node, node.attr_int_or("transB", 0))? != 0;
        let at = self.track(&a).cloned();
        let Some(bd) = self.init_dims(&b) else {
            self.block_node(node, "the weight is not an initializer");
            return Ok(());
        };
        if bd.len() != 2 {
            self.block_node(node, "the weight is not 2-D");
            return Ok(());
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
        Ok(())
    }

    fn matmul(&mut self, node: &NodeProto) {
        let (a, b) = (node.input[0].clone(), node.input[1].clone());
        let (ia, ib) = (self.is_init(&a), self.is_init(&b));
        let (ta, tb) = (self.track(&a).cloned(), self.track(&b).cloned());
        let Some(od) = self.dims(&node.output[0]) else {
            self.block_node(node, "shapes unknown");
            return;
        };
        let r = od.len();
        let mut out: ValueT = od.iter().map(|d| AxisT::plain(d.clone())).collect();
        match (ia, ib) {
            (false, true) => {
                let Some(bd) = self.init_dims(&b) else { return };
                if bd.len() != 2 || r == 0 {
                    self.block_node(node, "the weight of MatMul is not 2-D");
                    return;
                }
                if let Some(t) = &ta {
                    let k = t.len() - 1;
                    self.consume(node, &b, 0, &t[k]);
                    for i in 0..k.min(r - 1) {
                        out[r - 1 - k + i] = t[i].clone();
                    }
                }
                let sp = self.new_space(bd[1]);
                self.member(&b, 1, sp, 0, 1, 1, Role::Producer);
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
            (true, true) => return,
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
                let ta = ta.unwrap_or_else(|| plain(&da));
                let tb = tb.unwrap_or_else(|| plain(&db));
                let (na, nb) = (ta.len(), tb.len());
                // Contracted axes: one space; the product of an element is zero if either side is.
                let (ka, kb) = (&ta[na - 1], &tb[nb - 2]);
                match (ka.is_tracked(), kb.is_tracked()) {
                    (false, false) => {}
                    (true, true) => {
                        if let Some(u) = self.union_axes(node, ka, kb, |p, q| p || q) {
                            if !u.all_zero() {
                                self.block_axis_at(node, &u, "contracts channels that are non-zero on both sides");
                            }
                        }
                    }
                    _ => {
                        self.block_axis_at(node, ka, "contracts channels with a tensor that does not follow them");
                        self.block_axis_at(node, kb, "contracts channels with a tensor that does not follow them");
                    }
                }
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
                        (Some(x), Some(y)) => match self.union_axes(node, &x, &y, |p, q| p || q) {
                            Some(u) => u,
                            None => continue,
                        },
                        (Some(x), None) if !full(pb, &db) => x,
                        (None, Some(y)) if !full(pa, &da) => y,
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
            }
        }
        self.set(&node.output[0], out);
    }

    fn gather(&mut self, node: &NodeProto) {
        let (data, idx) = (node.input[0].clone(), node.input[1].clone());
        let Some(od) = self.dims(&node.output[0]) else {
            if self.tracks.contains_key(&data) {
                self.block_node(node, "shapes unknown");
            }
            return;
        };
        let axis = node.attr_int_or("axis", 0).unwrap_or(0);
        if self.is_init(&data) {
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
        if t[ax].is_tracked() {
            // Picking one coarse position (q, k or v of a packed projection) turns the
            // matching inner axis into plain channels of that block.
            let pick = ops::constant_ints(self.graph, Some(&self.shapes), &idx).ok().flatten();
            let coarse = match (t[ax].factors.as_slice(), pick.as_deref(), id.is_empty()) {
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
            let picked = range.sub(i * k, k);
            let rest: Vec<AxisT> = rest
                .into_iter()
                .map(|a| match a.factors.as_slice() {
                    [Factor { track: Some(Track::Inner { k: kk, ranges, zero }), .. }] if *kk == k && ranges == &[range] => {
                        AxisT::unit(picked, *zero)
                    }
                    _ => a,
                })
                .collect();
            if !rest.iter().any(|a| a.ranges().contains(&picked)) {
                self.block_axis_at(node, &t[ax], "gathers along the channel axis");
            }
            out.extend(rest);
            self.set(&node.output[0], out);
            return;
        }
        out.extend(rest);
        self.set(&node.output[0], out);
    }

    // ---- per-channel operators ---------------------------------------------------

    fn pool(&mut self, node: &NodeProto) {
        let Some(t) = self.in_track(node, 0) else {
            return;
        };
        let Some(od) = self.dims(&node.output[0]) else {
            self.block_node(node, "shapes unknown");
            return;
        };
        let mut out: ValueT = od.into_iter().map(AxisT::plain).collect();
        for (i, a) in t.iter().enumerate() {
            if i < 2 {
                if i < out.len() {
                    out[i] = a.clone();
                }
            } else {
                self.block_axis_at(node, a, "pools along a tracked axis");
            }
        }
        self.set(&node.output[0], out);
    }

    fn resize(&mut self, node: &NodeProto) {
        let Some(t) = self.in_track(node, 0) else {
            return;
        };
        let (Some(id), Some(od)) = (self.dims(&node.input[0]), self.dims(&node.output[0])) else {
            self.block_node(node, "shapes unknown");
            return;
        };
        let mut out: ValueT = od.iter().cloned().map(AxisT::plain).collect();
        for (i, a) in t.iter().enumerate() {
            if id.get(i) == od.get(i) {
                out[i] = a.clone();
            } else {
                self.block_axis_at(node, a, "resizes a tracked axis");
            }
        }
        self.set(&node.output[0], out);
    }

    fn pad(&mut self, node: &NodeProto) {
        let Some(mut t) = self.in_track(node, 0) else {
            return;
        };
        let Ok(p) = ops::pads(self.graph, node, Some(&self.shapes)) else {
            self.block_node(node, "pads are not constant");
            return;
        };
        let rank = t.len();
        let axes: Vec<usize> = match &p.axes {
            Some(a) => a.iter().filter_map(|&x| norm_axis(x, rank)).collect(),
            None => (0..rank).collect(),
        };
        let n = axes.len();
        for (j, &ax) in axes.iter().enumerate() {
            let (b, e) = (p.pads.get(j).copied().unwrap_or(0), p.pads.get(j + n).copied().unwrap_or(0));
            if (b != 0 || e != 0) && t[ax].is_tracked() {
                let a = t[ax].clone();
                self.block_axis_at(node, &a, "pads a tracked axis");
            }
        }
        if p.mode == "constant" && p.constant_value != 0.0 {
            for a in &mut t {
                a.map_zero(&|_| false);
            }
        }
        self.set(&node.output[0], t);
    }

    /// Per-channel parameters on axis 1: slices of `params` with their roles; the
    /// output's channels are zero when the producers are.
    fn channel_params(&mut self, node: &NodeProto, params: &[(usize, Role)]) -> Option<ValueT> {
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

    fn batch_norm(&mut self, node: &NodeProto) {
        let params = [(1, Role::Producer), (2, Role::Producer), (3, Role::Aux), (4, Role::Aux)];
        if let Some(t) = self.channel_params(node, &params) {
            self.set(&node.output[0], t);
        }
    }

    fn instance_norm(&mut self, node: &NodeProto) {
        if let Some(t) = self.in_track(node, 0) {
            // Statistics over the spatial axes: fine when those only hold the inside of
            // the channel axis's blocks (GroupNorm decomposed as [B, G, C/G*H*W]).
            let blocks: Vec<(Range, usize)> = match t.get(1).and_then(AxisT::single_segs) {
                Some(segs) => segs
                    .iter()
                    .filter_map(|s| match s {
                        Seg::Tracked { range, scale: Scale::Coarse(k), .. } => Some((*range, *k)),
                        _ => None,
                    })
                    .collect(),
                None => Vec::new(),
            };
            for a in t.iter().skip(2) {
                let inside = a.factors.iter().filter_map(|f| f.track.as_ref()).all(|tr| match tr {
                    Track::Inner { k, ranges, .. } => ranges.iter().all(|r| blocks.contains(&(*r, *k))),
                    Track::Segs(_) => false,
                });
                if !inside {
                    self.block_axis_at(node, a, "normalizes over a tracked axis");
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

    fn group_norm(&mut self, node: &NodeProto) -> Result<(), AnalysisError> {
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

    fn layer_norm(&mut self, node: &NodeProto) -> Result<(), AnalysisError> {
        let Some(mut t) = self.in_track(node, 0) else {
            return Ok(());
        };
        let axis = attr(self, node, node.attr_int_or("axis", -1))?;
        let Some(first) = norm_axis(axis, t.len()) else {
            return Ok(());
        };
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
                    &format!("{} normalizes over these channels: the normalized width is not exactly prunable", node.op()),
                );
            }
        }
        for a in &mut t {
            a.map_zero(&|_| false);
        }
        self.set(&node.output[0], t);
        Ok(())
    }

    fn softmax(&mut self, node: &NodeProto) -> Result<(), AnalysisError> {
        let Some(mut t) = self.in_track(node, 0) else {
            return Ok(());
        };
        let default = if ops::node_opset(self.graph, node) >= 13 { -1 } else { 1 };
        let axis = attr(self, node, node.attr_int_or("axis", default))?;
        let Some(ax) = norm_axis(axis, t.len()) else {
            return Ok(());
        };
        let mixed: Vec<usize> = if ops::node_opset(self.graph, node) >= 13 { vec![ax] } else { (ax..t.len()).collect() };
        for i in mixed {
            let a = t[i].clone();
            self.block_axis_at(node, &a, &format!("{} normalizes over these channels", node.op()));
        }
        for a in &mut t {
            a.map_zero(&|_| false);
        }
        self.set(&node.output[0], t);
        Ok(())
    }

    fn reduce(&mut self, node: &NodeProto) -> Result<(), AnalysisError> {
        let Some(t) = self.in_track(node, 0) else {
            return Ok(());
        };
        let red = ops::reduce(self.graph, node, Some(&self.shapes))?;
        let rank = t.len();
        let axes: Vec<usize> = match &red.axes {
            Some(a) if !a.is_empty() => a.iter().filter_map(|&x| norm_axis(x, rank)).collect(),
            _ if red.noop_with_empty_axes => {
                self.set(&node.output[0], t);
                return Ok(());
            }
            _ => (0..rank).collect(),
        };
        let keeps = !matches!(node.op(), "ReduceLogSum" | "ReduceLogSumExp");
        let mut out = Vec::new();
        for (i, a) in t.iter().enumerate() {
            if axes.contains(&i) {
                self.block_axis_at(node, a, &format!("{} reduces over these channels", node.op()));
                if red.keepdims {
                    out.push(AxisT::plain(Dim::Known(1)));
                }
            } else {
                let mut a = a.clone();
                if !keeps {
                    a.map_zero(&|_| false);
                }
                out.push(a);
            }
        }
        self.set(&node.output[0], out);
        Ok(())
    }

    // ---- layout ------------------------------------------------------------------

    fn transpose(&mut self, node: &NodeProto) -> Result<(), AnalysisError> {
        let Some(t) = self.in_track(node, 0) else {
            return Ok(());
        };
        let perm: Vec<usize> = match attr(self, node, node.attr_ints("perm"))? {
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
    fn reshape(&mut self, node: &NodeProto) -> Result<(), AnalysisError> {
        let Some(t) = self.in_track(node, 0) else {
            return Ok(());
        };
        let Some(od) = self.dims(&node.output[0]) else {
            self.block_node(node, "output shape unknown");
            return Ok(());
        };
        let out = match self.regroup(&t, &od) {
            Ok(o) => o,
            Err(why) => {
                self.block_node(node, &format!("cannot follow the channels through this reshape: {why}"));
                return Ok(());
            }
        };
        if node.op() == "Reshape" {
            let target = ops::constant_dims(self.graph, Some(&self.shapes), &node.input[1]).ok().flatten();
            for (i, a) in out.iter().enumerate() {
                let parts = count_parts(a);
                if parts.is_empty() {
                    continue;
                }
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

    fn regroup(&mut self, t: &ValueT, od: &[Dim]) -> Result<ValueT, String> {
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
            out.push(axis);
        }
        if fs.iter().any(|f| f.track.is_some() || f.size != Dim::Known(1)) {
            return Err("input dimensions left over".into());
        }
        Ok(out)
    }

    /// Splits a factor of known size into `outer` x `size/outer`.
    fn split_factor(&mut self, f: Factor, outer: usize) -> Result<(Factor, Factor), String> {
        let size = f.size.known().unwrap_or(0) as usize;
        let k = size / outer;
        let Some(track) = f.track else {
            return Ok((Factor { size: Dim::Known(outer as i64), track: None }, Factor { size: Dim::Known(k as i64), track: None }));
        };
        let Track::Segs(segs) = track else {
            return Err("a head dimension is split again".into());
        };
        let mut outer_segs = Vec::new();
        let mut ranges = Vec::new();
        let mut zero = true;
        let mut at = 0usize;
        for s in &segs {
            match s {
                Seg::Tracked { range, scale: Scale::Unit, zero: z } if at % k == 0 && range.len % k == 0 => {
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
            Factor { size: Dim::Known(k as i64), track: Some(Track::Inner { k, ranges, zero }) },
        ))
    }

    fn concat(&mut self, node: &NodeProto) -> Result<(), AnalysisError> {
        let Some(od) = self.dims(&node.output[0]) else {
            self.block_node(node, "shapes unknown");
            return Ok(());
        };
        let rank = od.len();
        let axis = attr(self, node, node.attr_int("axis"))?.unwrap_or(0);
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
            let Some(a) = acc else { continue };
            for v in untracked_inputs {
                let full = self.dims(&v).and_then(|d| d.get(i).cloned()).is_some_and(|d| d != Dim::Known(1));
                if !full {
                    continue;
                }
                if self.is_init(&v) {
                    self.members_along(node, &v, i, &a, Role::Producer);
                } else if let Some(src) = self.expanded_init(&v) {
                    let sr = self.init_dims(&src).map_or(0, |d| d.len());
                    if sr + i >= rank {
                        self.members_along(node, &src, sr + i - rank, &a, Role::Producer);
                    }
                } else {
                    self.block_axis_at(node, &a, &format!("concatenated with '{v}', which does not follow these channels"));
                }
            }
            *slot = a;
        }
        self.set(&node.output[0], out);
        Ok(())
    }

    /// Concat along an axis that is the inside of heads in every input: the pieces'
    /// ranges are tied, the result is still inside the heads.
    fn concat_inner(&mut self, inputs: &[String], ax: usize, od: &[Dim]) -> Option<AxisT> {
        let mut parts = Vec::new();
        for v in inputs {
            let a = self.track(v)?.get(ax)?;
            match a.factors.as_slice() {
                [Factor { track: Some(Track::Inner { k, ranges, zero }), .. }] => parts.push((*k, ranges.clone(), *zero)),
                _ => return None,
            }
        }
        let (k, ranges, _) = parts.first()?.clone();
        if parts.iter().any(|(kk, r, _)| *kk != k || r.len() != ranges.len()) {
            return None;
        }
        for (_, r, _) in &parts[1..] {
            for (a, b) in ranges.iter().zip(r) {
                self.spaces.tie(*a, *b);
            }
        }
        let zero = parts.iter().all(|p| p.2);
        Some(AxisT { factors: vec![Factor { size: od.get(ax)?.clone(), track: Some(Track::Inner { k, ranges, zero }) }] })
    }

    /// The initializer behind `Expand(init, shape)` (a class token broadcast over the batch).
    fn expanded_init(&self, v: &str) -> Option<String> {
        let (_, n) = self.graph.producer_node(v)?;
        (n.op() == "Expand" && self.is_init(&n.input[0])).then(|| n.input[0].clone())
    }

    fn split(&mut self, node: &NodeProto) -> Result<(), AnalysisError> {
        let Some(t) = self.in_track(node, 0) else {
            return Ok(());
        };
        let sp = ops::split(self.graph, node, Some(&self.shapes))?;
        let Some(ax) = norm_axis(sp.axis, t.len()) else {
            return Ok(());
        };
        let Some(len) = self.dims(&node.input[0]).and_then(|d| d.get(ax).and_then(Dim::known)) else {
            self.block_node(node, "shapes unknown");
            return Ok(());
        };
        let sizes = sp.sizes_for(len).map_err(|m| ops::node_error(self.graph, node, m))?;
        let tracked = t[ax].is_tracked();
        let segs = t[ax].single_segs().cloned();
        if tracked && segs.is_none() {
            let a = t[ax].clone();
            self.block_axis_at(node, &a, "splits a multi-factor channel axis");
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
                    } else if ops::node_opset(self.graph, node) >= 13 {
                        let s = node.input[1].clone();
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

    fn slice(&mut self, node: &NodeProto) -> Result<(), AnalysisError> {
        let Some(mut t) = self.in_track(node, 0) else {
            return Ok(());
        };
        let Some(id) = self.dims(&node.input[0]) else {
            self.block_node(node, "shapes unknown");
            return Ok(());
        };
        let Ok(sl) = ops::slice_params(self.graph, node, Some(&self.shapes)) else {
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
            if let [Factor { track: Some(Track::Inner { .. }), .. }] = a.factors.as_slice() {
                // A window inside every head (rotary embeddings): still inside the elements.
                if let Some(d) = od.as_ref().and_then(|d| d.get(ax)) {
                    let mut f = a.factors[0].clone();
                    f.size = d.clone();
                    t[ax] = AxisT { factors: vec![f] };
                    continue;
                }
            }
            let (Some(segs), Some(Dim::Known(dim)), Some(s), Some(e)) =
                (a.single_segs(), id.get(ax), sl.starts[j].known(), sl.ends[j].known())
            else {
                self.block_axis_at(node, &a, "slices a tracked axis with bounds that are not constant");
                continue;
            };
            if step != 1 || s < 0 || e < 0 {
                self.block_axis_at(node, &a, "slices a tracked axis with a step or negative bounds");
                continue;
            }
            let dim = *dim;
            let (s0, e0) = (s.min(dim) as usize, e.min(dim) as usize);
            let segs = segs.clone();
            let w = window(&segs, s0, e0.saturating_sub(s0));
            if s0 > 0 {
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
            if (e as usize) < dim as usize {
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

    fn expand(&mut self, node: &NodeProto) {
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
        for (i, a) in t.iter().enumerate() {
            if !a.is_tracked() {
                continue;
            }
            out[lead + i] = a.clone();
            let entry = target.as_ref().and_then(|v| (v.len() + i).checked_sub(t.len()).and_then(|p| v.get(p).cloned()));
            if entry != Some(Dim::Known(1)) {
                if let Some(tl) = target.as_ref().map(Vec::len) {
                    let Some(p) = (tl + i).checked_sub(t.len()) else {
                        continue;
                    };
                    let v = node.input[1].clone();
                    self.shape_entry(node, &v, p, count_parts(a));
                }
            }
        }
        self.set(&node.output[0], out);
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
