//! The operator rules: one place per operator, saying how its input axes map to its
//! output axes, which parameter slices join which space, and whether a zero element
//! stays zero. Operators not listed here block every space they touch.
//!
//! One module per operator family (the families of `oto_onnx::op`); `Ctx::apply` below is
//! the one dispatch, an exhaustive match on [`Op`].

mod conv;
mod elementwise;
mod index;
mod layout;
mod matmul;
mod norm;
mod pool;
mod recurrent;
mod reduce;
mod tables;

pub(crate) use tables::table_axes;

use crate::analyze::{count_parts, normalize, seg_axis, window, window_whole, AnalysisError, Ctx};
use crate::model::{Role, ShapeLocation};
use crate::space::{AxisT, Factor, Part, Range, RefAt, ReqKind, Scale, Seg, Track, ValueT};
use oto_onnx::graph::{node_label, NodeExt};
use oto_onnx::op::{Binary as B, DepthSpace, DepthSpaceKind, Gemm, IntsParam, LayerNorm, Op, Pad, PadMode, Slice, Softmax, Split, Unary};
use oto_onnx::proto::NodeProto;
use oto_onnx::{ops, Dim};

/// Whether every tracked factor of axis `a` of a value tracked as `t` holds positions
/// inside the blocks its channel axis (axis 1) counts whole (`Coarse(k)` segments): the
/// `H, W` of a dense layer's units viewed as `[C, H, W]`, the `C/G*H*W` of a GroupNorm
/// decomposed as `[B, G, -1]`. An element is then always whole blocks, which an operator
/// mixing positions along `a` (a convolution's window, a norm's statistics) never splits.
fn inside_channel_blocks(t: &ValueT, a: &AxisT) -> bool {
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
    a.factors.iter().filter_map(|f| f.track.as_ref()).all(|track| match track {
        Track::Inner { k, ranges, .. } | Track::Sub { k, ranges, .. } => {
            ranges.iter().all(|r| blocks.iter().any(|(b, bk)| bk == k && b.base == r.base && b.start <= r.start && r.end() <= b.end()))
        }
        Track::Segs(_) => false,
    })
}

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
fn arity(op: &Op, opset: i64) -> (usize, usize) {
    let ins = match op {
        Op::Where => 3,
        Op::BatchNormalization => 5,
        Op::InstanceNormalization | Op::GroupNormalization => 3,
        Op::Slice(_) if opset >= 10 => 3,
        Op::Conv(c) if !c.integer => 2,
        Op::ConvTranspose(_)
        | Op::Gemm(_)
        | Op::MatMul { integer: false }
        | Op::Gather { .. }
        | Op::Binary(B::Add | B::Sub | B::Mul | B::Div | B::Pow)
        | Op::PRelu
        | Op::LayerNormalization(_)
        | Op::RmsNormalization(_)
        | Op::Reshape { .. }
        | Op::Expand => 2,
        Op::Squeeze { .. } | Op::Unsqueeze { .. } | Op::Flatten { .. } | Op::Concat { .. } | Op::Split(_) | Op::Slice(_) => 1,
        _ => 0,
    };
    (ins, 1)
}

/// The inputs of `op` read as sizes of its output (or as a number, for a `Cast` to a
/// float type): where such a size is measured off a tracked axis while nothing tracked
/// reaches the node, it must keep its value ([`Ctx::sizes_kept`]).
fn sized_inputs(op: &Op) -> Vec<usize> {
    match op {
        Op::Cast { to: Some(to) } if to.is_float() => vec![0],
        Op::Reshape { .. } | Op::Expand | Op::Tile | Op::Pad(_) | Op::Split(_) => vec![1],
        Op::ConstantOfShape => vec![0],
        Op::Range => vec![0, 1, 2],
        Op::Slice(_) => vec![1, 2, 3, 4],
        Op::Resize(_) => vec![3],
        _ => Vec::new(),
    }
}

pub(crate) fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (0..rank as i64).contains(&a).then_some(a as usize)
}

fn attr<T>(cx: &Ctx<'_, '_>, node: &NodeProto, r: Result<T, String>) -> Result<T, AnalysisError> {
    Ok(ops::attr_result(cx.graph, node, r)?)
}

impl Ctx<'_, '_> {
    /// Applies the rule of `node`'s operator.
    pub fn apply(&mut self, node: &NodeProto) -> Result<(), AnalysisError> {
        self.block_subgraph_reads(node);
        let any_tracked = node.input.iter().any(|v| self.tracks.contains_key(v.as_str()));
        // A layer of a quantized file, whatever its operator: listed even when no channel
        // reaches it, so that a file quantized throughout says why it has no group (a
        // `DequantizeLinear`'s weight is told by the layer reading it).
        if oto_onnx::op::is_quantized_layer(self.graph, node) {
            self.block_node(node, oto_onnx::op::QUANTIZED_WEIGHT);
            self.blocked_op(node, oto_onnx::op::QUANTIZED_WEIGHT);
            return Ok(());
        }
        let custom = !matches!(node.domain.as_deref(), None | Some("") | Some("ai.onnx")) && !oto_onnx::branches::is_branches(node);
        if custom {
            let reason = if node.domain.as_deref() == Some("com.microsoft.nchwc") {
                "onnxruntime's hardware-specific NCHWc layout (a file saved at ORT_ENABLE_ALL): prune the original file, or one saved at ORT_ENABLE_EXTENDED"
            } else {
                "operator of a custom domain: not understood"
            };
            self.block_node(node, reason);
            // Listed even when no channel reaches it: its weights stay out of every group.
            if node.input.iter().any(|v| self.graph.initializer(v).is_some_and(|t| t.dims.len() >= 2)) {
                self.blocked_op(node, reason);
            }
            return Ok(());
        }
        if node.output.first().is_some_and(|o| self.written_norm_inner.contains(o)) {
            return Ok(());
        }
        let op = Op::parse(self.graph, node)?;
        let (ins, outs) = arity(&op, ops::node_opset(self.graph, node));
        if node.input.len() < ins || node.output.len() < outs || node.output.first().is_some_and(String::is_empty) {
            return Err(ops::node_error(
                self.graph,
                node,
                format!("has {} inputs and {} outputs; {} needs at least {ins} and {outs}", node.input.len(), node.output.len(), node.op()),
            )
            .into());
        }
        match &op {
            // Channel producers run even without tracked inputs.
            Op::Conv(c) if !c.integer => self.conv(node, c.group)?,
            Op::ConvTranspose(c) => self.conv_transpose(node, c.group)?,
            Op::Gemm(g) => self.gemm(node, g),
            Op::Rnn(r) => self.recurrent(node, r),
            Op::MatMul { integer: false } => self.matmul(node),
            Op::Gather { axis } => self.gather(node, *axis),
            Op::ConstantOfShape => self.constant_of_shape(node),
            Op::Branches => self.branches(node),
            // Not understood: blocks what it reads, and freezes the initializers it reads
            // even when nothing tracked reaches it yet (a weight it shares with a layer),
            // as every blocked node does.
            Op::Conv(_)
            | Op::MatMul { integer: true }
            | Op::QLinearConv(_)
            | Op::QLinearMatMul
            | Op::Binary(B::Mod | B::Mean | B::Sum | B::BitShift | B::BitwiseAnd | B::BitwiseOr | B::BitwiseXor)
            | Op::Compare(_)
            | Op::LpNormalization
            | Op::MeanVarianceNormalization
            | Op::Einsum
            | Op::ArgReduce(_)
            | Op::TopK(_)
            | Op::CumSum
            | Op::GatherElements
            | Op::ScatterElements
            | Op::Constant
            | Op::Range
            | Op::NonZero
            | Op::OneHot { .. }
            | Op::EyeLike { .. }
            | Op::Trilu { .. }
            | Op::Other(_) => self.block_node(node, &format!("operator {} is not understood", node.op())),
            // Max and Min of more than two inputs.
            Op::Binary(B::Max | B::Min) if node.input.len() != 2 => {
                self.block_node(node, &format!("operator {} is not understood", node.op()))
            }
            // A quantized model is pruned as its float model: the QDQ form is not cut.
            Op::QuantizeLinear(_) | Op::DequantizeLinear(_) | Op::DynamicQuantizeLinear => {
                self.block_node(node, "quantization is not pruned: prune the float model, then quantize it")
            }
            // A table sliced along some axes and only added to others (MPT's ALiBi buffer
            // cut to the sequence): the readers decide whether it is cut along another axis
            // ([`Ctx::sliced_tables_read_whole`]).
            Op::Slice(_) if !any_tracked && self.sliced_table(&node.output[0]).is_some() => {}
            Op::Binary(B::Mul) if !any_tracked && self.spread_constant(node) => {}
            // A class token broadcast over the batch: the Concats and Adds reading it cut it.
            Op::Expand if !any_tracked && self.expanded_token(node) => {}
            // Sizes, which may be sizes of tracked axes, read where no channels are followed:
            // as a number (a float computed from them), or as the shape of an untracked value.
            _ if !any_tracked && !sized_inputs(&op).is_empty() => {
                for k in sized_inputs(&op) {
                    self.sizes_kept(node, k);
                }
                self.freeze_initializers(node, "no tracked channels reach it, so the analysis does not follow it");
            }
            // A weight read transposed by MatMuls, which cut it ([`Ctx::transposed_weight`]).
            Op::Transpose { .. } if !any_tracked && self.transposed_weight(&node.output[0]).is_some() => {}
            // No channels reach it: nothing is followed through it, so the initializers
            // it reads (a bias it shares with a layer, say) are not cut either.
            _ if !any_tracked => self.freeze_initializers(node, "no tracked channels reach it, so the analysis does not follow it"),
            Op::Unary(u) => match unary_keeps_zero(*u) {
                Some(keeps) => self.unary(node, keeps),
                None => self.block_node(node, &format!("operator {} is not understood", node.op())),
            },
            // f(0) = 0 elementwise
            // (CastLike reads only the type of its input 1.)
            Op::Cast { .. } | Op::CastLike | Op::Dropout => self.unary(node, true),
            Op::Clip(c) => {
                let keeps = match c.bounds(self.graph, node, Some(&self.shapes)) {
                    Ok((lo, hi)) => lo.unwrap_or(f32::NEG_INFINITY) <= 0.0 && 0.0 <= hi.unwrap_or(f32::INFINITY),
                    Err(_) => false,
                };
                self.unary(node, keeps)
            }
            Op::Binary(B::Add) => self.binary(node, Bin::Add, 0, 1),
            Op::Binary(B::Sub) => self.binary(node, Bin::Sub, 0, 1),
            Op::Binary(B::Mul) => self.binary(node, Bin::Mul, 0, 1),
            Op::Binary(B::Div) => self.binary(node, Bin::Div, 0, 1),
            // Two inputs (more were blocked above).
            Op::Binary(B::Max) => self.binary(node, Bin::Max, 0, 1),
            Op::Binary(B::Min) => self.binary(node, Bin::Min, 0, 1),
            Op::Binary(B::Pow) => self.binary(node, Bin::Pow, 0, 1),
            Op::PRelu => self.binary(node, Bin::PRelu, 0, 1),
            Op::Where => {
                self.binary(node, Bin::Where, 1, 2);
                if self.tracks.contains_key(node.input[0].as_str()) {
                    self.where_condition(node);
                }
            }
            Op::Pool(p) => self.pool(node, Some(p)),
            Op::GlobalPool(_) => self.pool(node, None),
            Op::Resize(r) => self.resize(node, r),
            Op::GridSample(_) => self.grid_sample(node),
            Op::Pad(p) => self.pad(node, p),
            Op::BatchNormalization => self.batch_norm(node),
            Op::InstanceNormalization => self.instance_norm(node),
            Op::GroupNormalization => self.group_norm(node)?,
            Op::LayerNormalization(l) => self.layer_norm(node, l, false),
            Op::RmsNormalization(l) => self.layer_norm(node, l, true),
            // Each output channel depends on its neighbours' squares: never exact to cut.
            Op::Lrn => {
                self.block_node(node, "LRN normalizes over a window of neighbouring channels: removing a channel changes its neighbours")
            }
            Op::Softmax(s) => self.softmax(node, s),
            Op::Reduce(r) => self.reduce(node, r)?,
            Op::Transpose { perm } => self.transpose(node, perm.as_deref())?,
            Op::DepthSpace(d) => self.depth_space(node, d),
            Op::Reshape { .. } | Op::Flatten { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } => self.reshape(node, &op)?,
            Op::Concat { axis } => self.concat(node, *axis)?,
            Op::Split(s) => self.split(node, s)?,
            Op::Slice(s) => self.slice(node, s)?,
            Op::Expand => self.expand(node),
            Op::Tile => self.tile(node),
            Op::GatherNd => self.gather_nd(node),
            // Runtime indices pick whole slices (rows, channels, positions) of the data.
            Op::ScatterNd => self.block_node(node, "indexes slices of its data with runtime indices: channels are not followed through it"),
            // Integer results that do not carry channels.
            Op::Shape { .. } | Op::Size => {}
        }
        self.sliced_tables_read_whole(node);
        Ok(())
    }

    /// A constant of one value per position along one axis, times a computed value that is
    /// one position long there (BLOOM's ALiBi: the heads' slopes `[H, 1]` times the token
    /// positions `[B, 1, S]`): the product's positions along that axis are the constant's,
    /// a new space whose slices of the constant go with it (`Aux`: cut, not zeroed). Joined
    /// with heads, they are cut with them; a space of its own has no producer and is never
    /// pruned. Whether `node` was taken so.
    fn spread_constant(&mut self, node: &NodeProto) -> bool {
        let (a, b) = (&node.input[0], &node.input[1]);
        let (table, other) = match (self.is_init(a), self.is_init(b)) {
            (true, false) => (a.clone(), b.clone()),
            (false, true) => (b.clone(), a.clone()),
            _ => return false,
        };
        let (Some(td), Some(od), Some(yd)) = (self.init_dims(&table), self.dims(&other), self.dims(&node.output[0])) else {
            return false;
        };
        let float = self.shapes.dtype(&table).is_some_and(|d| d.is_float());
        if !float || td.len() > yd.len() || od.len() > yd.len() {
            return false;
        }
        // Output axes along which the constant has more than one position and the
        // computed value one (or none).
        let spread: Vec<usize> = (0..yd.len())
            .filter(|&ax| {
                let t = (ax + td.len()).checked_sub(yd.len()).map(|p| td[p]);
                let o = (ax + od.len()).checked_sub(yd.len()).map(|p| od[p].clone());
                t.is_some_and(|n| n > 1) && o.is_none_or(|d| d == Dim::Known(1))
            })
            .collect();
        let [ax] = spread.as_slice() else { return false };
        let (ax, table_axis) = (*ax, *ax + td.len() - yd.len());
        let sp = self.new_space(td[table_axis]);
        self.member(&table, table_axis, sp, 0, 1, 1, Role::Aux);
        let mut out: ValueT = yd.iter().map(|d| AxisT::plain(d.clone())).collect();
        out[ax] = AxisT::unit(sp, false);
        self.set(&node.output[0], out);
        true
    }

    /// The initializer `value` is a `Slice` of, when every reader of `value` is an `Add`
    /// or a `Sub`: a table those readers may cut along an axis the slice keeps whole.
    pub(crate) fn sliced_table(&self, value: &str) -> Option<String> {
        let (_, n) = self.graph.producer_node(value)?;
        let data = n.input.first().filter(|d| n.op() == "Slice" && self.is_init(d))?;
        // Parsing the readers only for a slice of an initializer: this runs for every
        // input of every node.
        let adds = self.graph.consumers(value).iter().all(|u| {
            let reader = &self.graph.proto.node[u.node];
            self.is_op(reader, |o| matches!(o, Op::Binary(B::Add | B::Sub)))
        });
        adds.then(|| data.clone())
    }

    /// Whether `node` is an `Expand` of an initializer read only by `Concat`s, which
    /// cut the initializer along their tracked axes ([`Ctx::expanded_init`]), and by
    /// `Add`s or `Sub`s, which cut it as a table ([`Ctx::one_side`]), to a target that
    /// leaves every axis of the initializer longer than 1 as it is (an entry of 1: the
    /// width follows the initializer once it is cut).
    fn expanded_token(&self, node: &NodeProto) -> bool {
        let Some(dims) = node.input.first().and_then(|x| self.init_dims(x)) else {
            return false;
        };
        let readers_cut =
            self.graph.consumers(&node.output[0]).iter().all(|u| matches!(self.graph.proto.node[u.node].op(), "Concat" | "Add" | "Sub"));
        let target = ops::constant_dims(self.graph, Some(&self.shapes), &node.input[1]).ok().flatten();
        let Some(target) = target.filter(|t| t.len() >= dims.len()) else {
            return false;
        };
        let lead = target.len() - dims.len();
        readers_cut && dims.iter().enumerate().all(|(j, &d)| d <= 1 || target[lead + j] == Dim::Known(1))
    }

    /// The 2-D initializer `value` is the transpose of, when every reader of `value` is a
    /// `MatMul` reading it as its weight (input 1): the output layer of a language model
    /// tied to its embedding table, which the MatMul rule cuts along the swapped axes.
    pub(crate) fn transposed_weight(&self, value: &str) -> Option<String> {
        let (_, n) = self.graph.producer_node(value)?;
        let w = n.input.first().filter(|w| n.op() == "Transpose" && self.init_dims(w).is_some_and(|d| d.len() == 2))?;
        let swapped = match Op::parse(self.graph, n) {
            Ok(Op::Transpose { perm }) => perm.is_none_or(|p| p == [1, 0]),
            _ => false,
        };
        let weight_only = self.graph.consumers(value).iter().all(|u| {
            let reader = &self.graph.proto.node[u.node];
            u.input == 1 && self.is_op(reader, |o| matches!(o, Op::MatMul { integer: false }))
        });
        (swapped && weight_only).then(|| w.clone())
    }

    /// A sliced table ([`Ctx::sliced_table`]) or an expanded token ([`Ctx::expanded_token`])
    /// that `node` reads without cutting it with channels is frozen: it keeps its shape for
    /// every reader.
    fn sliced_tables_read_whole(&mut self, node: &NodeProto) {
        let cut = std::mem::take(&mut self.tables_cut);
        let expanded =
            |v: &String| self.expanded_init(v).filter(|_| self.graph.producer_node(v).is_some_and(|(_, n)| self.expanded_token(n)));
        let tables: Vec<String> =
            node.input.iter().filter_map(|v| self.sliced_table(v).or_else(|| expanded(v))).filter(|t| !cut.contains(t)).collect();
        self.freeze_reads(node, &tables, "it reads it whole (through a Slice or an Expand), not cut with channels");
    }

    fn in_track(&self, node: &NodeProto, k: usize) -> Option<ValueT> {
        ops::input(node, k).and_then(|v| self.track(v)).cloned()
    }
}
