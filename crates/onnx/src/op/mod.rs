//! Typed operators: every `NodeProto` parsed once into an [`Op`], and one module per
//! operator family holding what oto knows about its operators.
//!
//! # Design
//!
//! * **Parse once.** [`Op::parse`] turns a node into an [`Op`]: the operator kind, and for
//!   the operators whose attributes are typed so far (convolutions, pooling, Gemm, Reduce*,
//!   ArgMax/ArgMin, TopK, Softmax/LogSoftmax/Hardmax, Clip, Split, Slice, Pad,
//!   Resize/Upsample, GridSample, Concat, Gather, Flatten, Transpose, Reshape, Cast, Squeeze, Unsqueeze)
//!   the attributes normalized across opsets, with defaults applied where they do not depend
//!   on shapes. A malformed attribute is an error naming the node. Parameters that moved from
//!   an attribute to an input over the opsets are an [`IntsParam`] (lists: Reduce, Squeeze
//!   and Unsqueeze axes, Split's sizes, Slice's bounds, Pad's pads, TopK's k) or a
//!   [`ScalarParam`] (Clip's bounds, Pad's value), resolved against constants and folded
//!   shapes by the operator's `resolve` method. Dropout and BatchNormalization still go
//!   through the opset-aware helpers of [`crate::ops`].
//! * **One module per family.** `conv`, `pool`, `norm`, `elementwise`, `matmul`, `reduce`,
//!   `layout`, `index`, `generate` and `quant` each hold, for their operators: the kind enums and
//!   typed attributes, the output shapes (as `impl Infer` methods, named as they were in
//!   `shape.rs`), and the cost (MACs) where the operator counts (`conv`, `matmul`).
//!   [`Infer::node_types`](crate::shape) below is the one dispatch of shape inference;
//!   `shape.rs` keeps the dimension algebra, the pass over the graph and the constant
//!   folding.
//! * **The other stages match the same type.** The pruning rules (`oto-graph`,
//!   `rules/mod.rs`, `Ctx::apply`) dispatch on [`Op`] with one exhaustive match, the rule
//!   bodies in one module per family (`rules/conv.rs`, `rules/norm.rs`...); the libtorch executor (`oto-torch`,
//!   `exec/ops/mod.rs`, `compile`) matches [`Op`] exhaustively, and the one-input,
//!   arithmetic and comparison kernels match their kind enums exhaustively. A new variant
//!   is therefore a compile error at every stage still missing it.
//! * **Opaque operators.** [`Op::Other`] holds an operator oto does not know (or one of a
//!   custom domain): shape inference leaves its outputs unknown, the rules block what it
//!   touches, the executor refuses it. These stages never match an operator's name, nor
//!   do the constant folding of `shape.rs` (`fold`, `fold_shape_values`), the folding
//!   plan of `normalize.rs` and the analysis (`oto-graph`'s shape-entry `locate`, the
//!   saved-analysis checks): each parses the node and matches the [`Op`]. Only the
//!   rewrites of `normalize.rs` that run on the bare protobuf before a graph exists
//!   (lifting `Constant`s, `Sum`/`Max`/`Min` chains, shared shape `Concat`s, tied
//!   transposes of `MatMul` weights) and the opset raiser of `oto-quant` (a table of
//!   ONNX schema versions) still go by name.
//!
//! Adding an operator: its name in [`OPERATORS`] (the test `every_listed_operator_parses`
//! then demands a parse entry), a variant (or a kind in a family enum) and its `parse`
//! entry here, its shape rule (an arm of `node_types` below, the body in the family
//! module), then follow the compiler: the rule's arm in `oto-graph` and the executor's arm
//! in `oto-torch`, whose `supported_ops` list follows by itself.

pub mod control;
pub mod conv;
pub mod elementwise;
pub mod generate;
pub mod index;
pub mod layout;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod quant;
pub mod recurrent;
pub mod reduce;

use crate::error::Result;
use crate::graph::{Graph, NodeExt};
use crate::ops::{attr_result, node_error};
use crate::proto::NodeProto;
use crate::shape::{Infer, Stop, ValueType, R};
use crate::tensor::DType;
pub use conv::{Conv, ConvTranspose, Window};
pub use elementwise::{Binary, Clip, Compare, Unary};
pub use index::{
    AspectPolicy, Coordinate, FloatsParam, GridMode, GridPadding, GridSample, NearestMode, Pad, PadAmounts, PadMode, Resize, ResizeMode,
    ResizeTo, Slice, SliceBounds, Split, SplitSizes,
};
pub use layout::{DepthSpace, DepthSpaceKind, DepthSpaceSteps};
pub use matmul::Gemm;
pub use norm::{LayerNorm, Softmax, SoftmaxKind, WrittenLayerNorm};
pub use pool::{Pool, PoolKind};
pub use quant::{
    is_contrib_quantized_matmul, is_quantized_layer, quantization_params, quantized_layers, quantized_weight_count,
    quantized_weight_tensors, quantized_weights, QLinear, QUANTIZED_WEIGHT,
};
pub use recurrent::{Direction, Rnn, RnnKind};
pub use reduce::{ArgReduce, Reduce, TopK};

/// A node's operator, parsed once (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    // ---- conv.rs
    /// `Conv`, `ConvInteger`.
    Conv(Conv),
    /// `ConvTranspose`.
    ConvTranspose(ConvTranspose),
    // ---- pool.rs
    /// `MaxPool`, `AveragePool`, `LpPool`.
    Pool(Pool),
    /// `GlobalMaxPool`, `GlobalAveragePool`, `GlobalLpPool`.
    GlobalPool(PoolKind),
    // ---- norm (rules and executor; shapes in shape.rs)
    /// `BatchNormalization`.
    BatchNormalization,
    /// `InstanceNormalization`.
    InstanceNormalization,
    /// `GroupNormalization`.
    GroupNormalization,
    /// `LayerNormalization`: axis, epsilon, stash type.
    LayerNormalization(LayerNorm),
    /// `RMSNormalization` (opset 23): `x / sqrt(mean(x^2) + epsilon) * scale` over the axes from `axis`.
    RmsNormalization(LayerNorm),
    /// `LRN`.
    Lrn,
    /// `LpNormalization`.
    LpNormalization,
    /// `MeanVarianceNormalization`.
    MeanVarianceNormalization,
    /// `Softmax`, `LogSoftmax`, `Hardmax`: the kind and axis.
    Softmax(Softmax),
    // ---- elementwise.rs
    /// One-input elementwise functions (same shape and type as the input).
    Unary(Unary),
    /// Broadcasting arithmetic (the type of input 0).
    Binary(Binary),
    /// Broadcasting comparisons and logic (a boolean result).
    Compare(Compare),
    /// `Where`.
    Where,
    /// `PRelu`.
    PRelu,
    /// `Clip`: the bounds (attributes or inputs by opset).
    Clip(Clip),
    /// `Dropout`.
    Dropout,
    /// `Cast`.
    Cast {
        /// The target element type (`to`); `None` for one oto does not handle.
        to: Option<DType>,
    },
    /// `CastLike`.
    CastLike,
    // ---- matmul.rs
    /// `Gemm`.
    Gemm(Gemm),
    /// `MatMul`, `MatMulInteger` (`integer`).
    MatMul {
        /// `MatMulInteger`: an int32 result.
        integer: bool,
    },
    /// `Einsum`.
    Einsum,
    // ---- reductions
    /// `ReduceMean`, `ReduceSum`...: the kind, axes, `keepdims`, `noop_with_empty_axes`.
    Reduce(Reduce),
    /// `ArgMax` or `ArgMin`: axis, `keepdims`, `select_last_index`.
    ArgReduce(ArgReduce),
    /// `TopK`: `k` (attribute or input by opset), axis, `largest`, `sorted`.
    TopK(TopK),
    /// `RNN`, `GRU`, `LSTM`: the kind and attributes.
    Rnn(Rnn),
    /// `CumSum`.
    CumSum,
    // ---- layout
    /// `Reshape`.
    Reshape {
        /// `allowzero`: a 0 in the target is a real size instead of a copy of the input's.
        allowzero: bool,
    },
    /// `Flatten`.
    Flatten {
        /// The axis (possibly negative) before which the input axes become the rows (default 1).
        axis: i64,
    },
    /// `Transpose`.
    Transpose {
        /// The permutation; `None`: the axes reversed.
        perm: Option<Vec<i64>>,
    },
    /// `Squeeze`.
    Squeeze {
        /// The axes (attribute before opset 13, input 1 from 13); none: every size-1 axis.
        axes: IntsParam,
    },
    /// `Unsqueeze`.
    Unsqueeze {
        /// The axes (attribute before opset 13, input 1 from 13); required.
        axes: IntsParam,
    },
    /// `Expand`.
    Expand,
    /// `Tile`.
    Tile,
    /// `DepthToSpace` or `SpaceToDepth`.
    DepthSpace(DepthSpace),
    // ---- concat / split / slice / pad / resize / gather / scatter
    /// `Concat`.
    Concat {
        /// The axis (possibly negative; the attribute is required).
        axis: i64,
    },
    /// `Split`: axis, sizes (attribute or input by opset), number of outputs.
    Split(Split),
    /// `Slice`: starts, ends, axes, steps (attributes or inputs by opset).
    Slice(Slice),
    /// `Pad`: mode, pads, constant value, axes (attributes or inputs by opset).
    Pad(Pad),
    /// `Resize`, `Upsample`: modes and where the scales or sizes are.
    Resize(Resize),
    /// `GridSample`: interpolation, padding, corner alignment.
    GridSample(GridSample),
    /// `Gather`.
    Gather {
        /// The axis (possibly negative, default 0).
        axis: i64,
    },
    /// `GatherElements`.
    GatherElements,
    /// `GatherND`.
    GatherNd,
    /// `ScatterND`.
    ScatterNd,
    /// `ScatterElements`, `Scatter`.
    ScatterElements,
    // ---- generators and shape values
    /// `Shape`: the axes `start..end` of the input's shape (opset 15; default all).
    Shape {
        /// First axis (possibly negative, clamped; default 0).
        start: i64,
        /// End axis (exclusive; possibly negative, clamped); `None`: the rank.
        end: Option<i64>,
    },
    /// `Size`.
    Size,
    /// `Constant`.
    Constant,
    /// `ConstantOfShape`.
    ConstantOfShape,
    /// `Range`.
    Range,
    /// `NonZero`.
    NonZero,
    /// `OneHot`: where the new axis of `depth` entries goes (counted in the output's rank).
    OneHot {
        /// The axis (negative: from the end).
        axis: i64,
    },
    /// `EyeLike`: ones on a diagonal of a matrix shaped as the input.
    EyeLike {
        /// The diagonal: 0 the main one, above it positive.
        k: i64,
        /// The element type (`dtype`); the input's when absent.
        dtype: Option<DType>,
    },
    /// `Trilu`.
    Trilu {
        /// Keeps the upper triangle (default), else the lower.
        upper: bool,
    },
    // ---- quant.rs
    /// `QuantizeLinear`.
    QuantizeLinear(QLinear),
    /// `DequantizeLinear`.
    DequantizeLinear(QLinear),
    /// `DynamicQuantizeLinear`: uint8 values, their scale and zero point.
    DynamicQuantizeLinear,
    /// `QLinearConv`: a convolution of quantized input and weight (input 3) to a
    /// quantized output.
    QLinearConv(Conv),
    /// `QLinearMatMul`: a product of quantized operands (inputs 0 and 3).
    QLinearMatMul,
    // ---- control.rs
    /// oto's [`crate::branches::BRANCHES`]: a merged decoder's `If`, written as both branches.
    Branches,
    /// An operator oto does not know, or one of a custom domain: opaque.
    Other(String),
}

/// The Reduce operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceKind {
    /// `ReduceMean`.
    Mean,
    /// `ReduceSum`.
    Sum,
    /// `ReduceMax`.
    Max,
    /// `ReduceMin`.
    Min,
    /// `ReduceProd`.
    Prod,
    /// `ReduceL1`.
    L1,
    /// `ReduceL2`.
    L2,
    /// `ReduceLogSum`.
    LogSum,
    /// `ReduceLogSumExp`.
    LogSumExp,
    /// `ReduceSumSquare`.
    SumSquare,
}

impl ReduceKind {
    /// The kind of a `Reduce*` operator name.
    pub fn parse(op: &str) -> Option<ReduceKind> {
        Some(match op {
            "ReduceMean" => ReduceKind::Mean,
            "ReduceSum" => ReduceKind::Sum,
            "ReduceMax" => ReduceKind::Max,
            "ReduceMin" => ReduceKind::Min,
            "ReduceProd" => ReduceKind::Prod,
            "ReduceL1" => ReduceKind::L1,
            "ReduceL2" => ReduceKind::L2,
            "ReduceLogSum" => ReduceKind::LogSum,
            "ReduceLogSumExp" => ReduceKind::LogSumExp,
            "ReduceSumSquare" => ReduceKind::SumSquare,
            _ => return None,
        })
    }
}

/// A list of integers an operator took as an attribute before some opset and as an
/// input from then on (Reduce, Squeeze and Unsqueeze axes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntsParam {
    /// The attribute's value (the node's opset is before the move); `None` when absent.
    Attribute(Option<Vec<i64>>),
    /// Input `k` (the opset is from the move on); an absent or omitted input means none.
    Input(usize),
}

impl IntsParam {
    /// The attribute `name` before opset `since`, input `k` from then on.
    fn parse(graph: &Graph<'_>, node: &NodeProto, name: &str, since: i64, k: usize) -> Result<IntsParam> {
        if crate::ops::node_opset(graph, node) >= since {
            Ok(IntsParam::Input(k))
        } else {
            Ok(IntsParam::Attribute(attr_result(graph, node, node.attr_ints(name))?))
        }
    }

    /// The values: the attribute's, or the input's constant value (folded by shape
    /// inference when `folded` is given); `Ok(None)` when not given, an error naming the
    /// node (and calling the list `what`) when the input is not computable from constants.
    pub fn resolve(
        &self,
        graph: &Graph<'_>,
        node: &NodeProto,
        folded: Option<&crate::shape::Shapes>,
        what: &str,
    ) -> Result<Option<Vec<i64>>> {
        match self {
            IntsParam::Attribute(v) => Ok(v.clone()),
            IntsParam::Input(k) => crate::ops::input_ints(graph, node, folded, *k, what),
        }
    }

    /// Like [`IntsParam::resolve`], but an input's entries may be symbolic dimensions
    /// computed from shapes (Slice's starts and ends).
    pub fn resolve_dims(
        &self,
        graph: &Graph<'_>,
        node: &NodeProto,
        folded: Option<&crate::shape::Shapes>,
        what: &str,
    ) -> Result<Option<Vec<crate::dim::Dim>>> {
        match self {
            IntsParam::Attribute(v) => Ok(v.as_ref().map(|v| v.iter().copied().map(crate::dim::Dim::Known).collect())),
            IntsParam::Input(k) => crate::ops::input_dims(graph, node, folded, *k, what),
        }
    }

    /// The input this list is read from at run time, if it is an input.
    pub fn input(&self) -> Option<usize> {
        match self {
            IntsParam::Attribute(_) => None,
            IntsParam::Input(k) => Some(*k),
        }
    }
}

/// A number an operator took as an attribute before some opset and as a scalar input
/// from then on (Clip's bounds, Pad's constant value).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScalarParam {
    /// The attribute's value (the node's opset is before the move); `None` when absent.
    Attribute(Option<f32>),
    /// Input `k` (the opset is from the move on); an absent or omitted input means none.
    Input(usize),
}

impl ScalarParam {
    /// The float attribute `name` before opset `since`, input `k` from then on.
    fn parse(graph: &Graph<'_>, node: &NodeProto, name: &str, since: i64, k: usize) -> Result<ScalarParam> {
        if crate::ops::node_opset(graph, node) >= since {
            Ok(ScalarParam::Input(k))
        } else {
            Ok(ScalarParam::Attribute(attr_result(graph, node, node.attr_float(name))?))
        }
    }

    /// The value: the attribute's, or the input's constant scalar; `Ok(None)` when not
    /// given, an error naming the node (and calling the value `what`) when the input is not
    /// a constant scalar.
    pub fn resolve(&self, graph: &Graph<'_>, node: &NodeProto, folded: Option<&crate::shape::Shapes>, what: &str) -> Result<Option<f64>> {
        match self {
            ScalarParam::Attribute(v) => Ok(v.map(f64::from)),
            ScalarParam::Input(k) => crate::ops::input_scalar(graph, node, folded, *k, what),
        }
    }
}

/// Every operator of the default ONNX domain that [`Op::parse`] knows, sorted (byte
/// order). `Op::parse` looks a name up here first, so this table is what the parser
/// accepts: a name missing here is [`Op::Other`], and the tests check that every name here
/// parses to a known operator. The executor derives its list of supported operators
/// from it (`oto_torch::exec::supported_ops`).
pub const OPERATORS: &[&str] = &[
    "Abs",
    "Acos",
    "Acosh",
    "Add",
    "And",
    "ArgMax",
    "ArgMin",
    "Asin",
    "Asinh",
    "Atan",
    "Atanh",
    "AveragePool",
    "BatchNormalization",
    "BitShift",
    "BitwiseAnd",
    "BitwiseNot",
    "BitwiseOr",
    "BitwiseXor",
    "Cast",
    "CastLike",
    "Ceil",
    "Celu",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "ConvInteger",
    "ConvTranspose",
    "Cos",
    "Cosh",
    "CumSum",
    "DepthToSpace",
    "DequantizeLinear",
    "Div",
    "Dropout",
    "DynamicQuantizeLinear",
    "Einsum",
    "Elu",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "EyeLike",
    "Flatten",
    "Floor",
    "GRU",
    "Gather",
    "GatherElements",
    "GatherND",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "GlobalLpPool",
    "GlobalMaxPool",
    "Greater",
    "GreaterOrEqual",
    "GridSample",
    "GroupNormalization",
    "HardSigmoid",
    "HardSwish",
    "Hardmax",
    "Identity",
    "InstanceNormalization",
    "IsInf",
    "IsNaN",
    "LRN",
    "LSTM",
    "LayerNormalization",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "LogSoftmax",
    "LpNormalization",
    "LpPool",
    "MatMul",
    "MatMulInteger",
    "Max",
    "MaxPool",
    "Mean",
    "MeanVarianceNormalization",
    "Min",
    "Mish",
    "Mod",
    "Mul",
    "Neg",
    "NonZero",
    "Not",
    "OneHot",
    "Or",
    "PRelu",
    "Pad",
    "Pow",
    "QLinearConv",
    "QLinearMatMul",
    "QuantizeLinear",
    "RMSNormalization",
    "RNN",
    "Range",
    "Reciprocal",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
    "Relu",
    "Reshape",
    "Resize",
    "Round",
    "Scatter",
    "ScatterElements",
    "ScatterND",
    "Selu",
    "Shape",
    "Shrink",
    "Sigmoid",
    "Sign",
    "Sin",
    "Sinh",
    "Size",
    "Slice",
    "Softmax",
    "Softplus",
    "Softsign",
    "SpaceToDepth",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Sum",
    "Tan",
    "Tanh",
    "ThresholdedRelu",
    "Tile",
    "TopK",
    "Transpose",
    "Trilu",
    "Unsqueeze",
    "Upsample",
    "Where",
    "Xor",
];

/// Whether `node` is of the default ONNX domain.
pub fn default_domain(node: &NodeProto) -> bool {
    matches!(node.domain.as_deref().unwrap_or(""), "" | "ai.onnx")
}

impl Op {
    /// Whether input `k` is what a layer learns: a convolution's or dense layer's kernel
    /// and bias, either operand of a MatMul or Einsum, a normalization's scale and shift,
    /// PReLU's slope, a recurrent layer's weights, biases and peepholes. A one-element
    /// tensor is a parameter only where a layer reads it so; elsewhere (`x / 1.0`, a
    /// bound, a fill value) it is a literal of the file.
    pub fn reads_learned(&self, k: usize) -> bool {
        match self {
            // ConvInteger's inputs 2 and 3 are zero points.
            Op::Conv(c) if c.integer => k == 1,
            Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm(_) => (1..=2).contains(&k) || (k == 0 && matches!(self, Op::Gemm(_))),
            Op::MatMul { integer: true } => k <= 1,
            Op::MatMul { .. } | Op::Einsum => true,
            Op::QLinearConv(_) => k == 3 || k == 8,
            Op::QLinearMatMul => k == 0 || k == 3,
            Op::BatchNormalization
            | Op::InstanceNormalization
            | Op::GroupNormalization
            | Op::LayerNormalization(_)
            | Op::RmsNormalization(_) => (1..=2).contains(&k),
            Op::PRelu => k == 1,
            Op::Rnn(_) => (1..=3).contains(&k) || k == 7,
            _ => false,
        }
    }

    /// Whether input `k` is a setting of the operator rather than data it computes on or
    /// learns (a bound, a fill value, a ratio, a shape, axes, a Resize's region, scales and
    /// sizes, a recurrent layer's sequence lengths and initial state): a float initializer
    /// read only at such positions is a constant of the file, not a parameter.
    pub fn reads_setting(&self, k: usize) -> bool {
        match self {
            Op::Clip(_) | Op::Pad(_) | Op::Resize(_) | Op::QuantizeLinear(_) | Op::DequantizeLinear(_) | Op::Dropout => k >= 1,
            Op::Range | Op::ConstantOfShape => true,
            Op::Reshape { .. }
            | Op::Expand
            | Op::Tile
            | Op::Slice(_)
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Reduce(_)
            | Op::Split(_)
            | Op::CumSum
            | Op::TopK(_)
            | Op::Trilu { .. } => k >= 1,
            // sequence_lens and the initial states are inputs, not weights (LSTM's peepholes are).
            Op::Rnn(_) => (4..7).contains(&k),
            _ => false,
        }
    }

    /// Parses `node`: the operator kind and its typed attributes. An operator of a custom
    /// domain, or one oto does not know, is [`Op::Other`]; a malformed attribute of a
    /// known operator is an error naming the node.
    pub fn parse(graph: &Graph<'_>, node: &NodeProto) -> Result<Op> {
        let op = node.op();
        if crate::branches::is_branches(node) {
            return Ok(Op::Branches);
        }
        if !default_domain(node) || OPERATORS.binary_search(&op).is_err() {
            return Ok(Op::Other(op.to_string()));
        }
        let attrs = |r: std::result::Result<Op, String>| attr_result(graph, node, r);
        let int_or = |name: &str, default: i64| attr_result(graph, node, node.attr_int_or(name, default));
        if let Some(u) = Unary::parse(op) {
            return Ok(Op::Unary(u));
        }
        if let Some(b) = Binary::parse(op) {
            return Ok(Op::Binary(b));
        }
        if let Some(c) = Compare::parse(op) {
            return Ok(Op::Compare(c));
        }
        if let Some(kind) = ReduceKind::parse(op) {
            // ReduceSum moved its axes to an input at opset 13, the others at 18.
            let since = if kind == ReduceKind::Sum { 13 } else { 18 };
            return Ok(Op::Reduce(Reduce {
                kind,
                axes: IntsParam::parse(graph, node, "axes", since, 1)?,
                keepdims: attr_result(graph, node, node.attr_int_or("keepdims", 1))? != 0,
                noop_with_empty_axes: attr_result(graph, node, node.attr_int_or("noop_with_empty_axes", 0))? != 0,
            }));
        }
        Ok(match op {
            "Conv" | "ConvInteger" => attrs(Conv::parse(node, op == "ConvInteger").map(Op::Conv))?,
            "ConvTranspose" => attrs(ConvTranspose::parse(node).map(Op::ConvTranspose))?,
            "MaxPool" | "AveragePool" | "LpPool" => {
                let kind = PoolKind::parse(op).ok_or_else(|| node_error(graph, node, "is not a pool"))?;
                attrs(Pool::parse(node, kind).map(Op::Pool))?
            }
            "GlobalMaxPool" => Op::GlobalPool(PoolKind::Max),
            "GlobalAveragePool" => Op::GlobalPool(PoolKind::Average),
            "GlobalLpPool" => Op::GlobalPool(PoolKind::Lp),
            "BatchNormalization" => Op::BatchNormalization,
            "InstanceNormalization" => Op::InstanceNormalization,
            "GroupNormalization" => Op::GroupNormalization,
            "LayerNormalization" => Op::LayerNormalization(LayerNorm::parse(graph, node)?),
            "RMSNormalization" => Op::RmsNormalization(LayerNorm::parse(graph, node)?),
            "LRN" => Op::Lrn,
            "LpNormalization" => Op::LpNormalization,
            "MeanVarianceNormalization" => Op::MeanVarianceNormalization,
            "Softmax" => Op::Softmax(Softmax::parse(graph, node, SoftmaxKind::Softmax)?),
            "LogSoftmax" => Op::Softmax(Softmax::parse(graph, node, SoftmaxKind::LogSoftmax)?),
            "Hardmax" => Op::Softmax(Softmax::parse(graph, node, SoftmaxKind::Hardmax)?),
            "Where" => Op::Where,
            "PRelu" => Op::PRelu,
            "Clip" => Op::Clip(Clip::parse(graph, node)?),
            "Dropout" => Op::Dropout,
            "Cast" => {
                let Some(code) = attr_result(graph, node, node.attr_int("to"))? else {
                    return Err(node_error(graph, node, "has no 'to' attribute"));
                };
                Op::Cast { to: i32::try_from(code).ok().and_then(DType::from_onnx) }
            }
            "CastLike" => Op::CastLike,
            "Gemm" => attrs(Gemm::parse(node).map(Op::Gemm))?,
            "MatMul" => Op::MatMul { integer: false },
            "MatMulInteger" => Op::MatMul { integer: true },
            "Einsum" => Op::Einsum,
            "ArgMax" => Op::ArgReduce(ArgReduce::parse(graph, node, true)?),
            "ArgMin" => Op::ArgReduce(ArgReduce::parse(graph, node, false)?),
            "TopK" => Op::TopK(TopK::parse(graph, node)?),
            "RNN" => attrs(Rnn::parse(node, RnnKind::Rnn).map(Op::Rnn))?,
            "GRU" => attrs(Rnn::parse(node, RnnKind::Gru).map(Op::Rnn))?,
            "LSTM" => attrs(Rnn::parse(node, RnnKind::Lstm).map(Op::Rnn))?,
            "CumSum" => Op::CumSum,
            "Reshape" => Op::Reshape { allowzero: int_or("allowzero", 0)? != 0 },
            "Flatten" => Op::Flatten { axis: int_or("axis", 1)? },
            "Transpose" => Op::Transpose { perm: attr_result(graph, node, node.attr_ints("perm"))? },
            "Squeeze" => Op::Squeeze { axes: IntsParam::parse(graph, node, "axes", 13, 1)? },
            "Unsqueeze" => Op::Unsqueeze { axes: IntsParam::parse(graph, node, "axes", 13, 1)? },
            "Expand" => Op::Expand,
            "Tile" => Op::Tile,
            "DepthToSpace" => attrs(DepthSpace::parse(node, true).map(Op::DepthSpace))?,
            "SpaceToDepth" => attrs(DepthSpace::parse(node, false).map(Op::DepthSpace))?,
            "Concat" => match attr_result(graph, node, node.attr_int("axis"))? {
                Some(axis) => Op::Concat { axis },
                None => return Err(node_error(graph, node, "has no 'axis' attribute")),
            },
            "Split" => Op::Split(Split::parse(graph, node)?),
            "Slice" => Op::Slice(Slice::parse(graph, node)?),
            "Pad" => Op::Pad(Pad::parse(graph, node)?),
            "Resize" => Op::Resize(Resize::parse(graph, node, false)?),
            "Upsample" => Op::Resize(Resize::parse(graph, node, true)?),
            "GridSample" => Op::GridSample(GridSample::parse(graph, node)?),
            "Gather" => Op::Gather { axis: int_or("axis", 0)? },
            "GatherElements" => Op::GatherElements,
            "GatherND" => Op::GatherNd,
            "ScatterND" => Op::ScatterNd,
            "ScatterElements" | "Scatter" => Op::ScatterElements,
            "Shape" => Op::Shape { start: int_or("start", 0)?, end: attr_result(graph, node, node.attr_int("end"))? },
            "Size" => Op::Size,
            "Constant" => Op::Constant,
            "ConstantOfShape" => Op::ConstantOfShape,
            "Range" => Op::Range,
            "NonZero" => Op::NonZero,
            "OneHot" => Op::OneHot { axis: int_or("axis", -1)? },
            "EyeLike" => Op::EyeLike {
                k: int_or("k", 0)?,
                dtype: match attr_result(graph, node, node.attr_int("dtype"))? {
                    None => None,
                    Some(code) => match i32::try_from(code).ok().and_then(DType::from_onnx) {
                        Some(d) => Some(d),
                        None => return Err(node_error(graph, node, format!("dtype {code} is not a tensor element type"))),
                    },
                },
            },
            "Trilu" => Op::Trilu { upper: int_or("upper", 1)? != 0 },
            "QuantizeLinear" => attrs(QLinear::parse(node).map(Op::QuantizeLinear))?,
            "DequantizeLinear" => attrs(QLinear::parse(node).map(Op::DequantizeLinear))?,
            "DynamicQuantizeLinear" => Op::DynamicQuantizeLinear,
            "QLinearConv" => attrs(Conv::parse(node, true).map(Op::QLinearConv))?,
            "QLinearMatMul" => Op::QLinearMatMul,
            other => Op::Other(other.to_string()),
        })
    }
}

impl Infer<'_, '_> {
    /// The output types of `node` (parsed as `op`): the family's shape rule.
    pub(crate) fn node_types(&mut self, node: &NodeProto, op: &Op) -> R<Vec<ValueType>> {
        match op {
            Op::Other(_) if quant::is_contrib_quantized_matmul(node) => self.contrib_quantized_matmul(node),
            Op::Other(_) => Err(Stop::Unknown),
            Op::Branches => self.branches(node),
            Op::Unary(_)
            | Op::PRelu
            | Op::Clip(_)
            | Op::Softmax(_)
            | Op::Lrn
            | Op::CumSum
            | Op::Trilu { .. }
            | Op::InstanceNormalization
            | Op::GroupNormalization
            | Op::MeanVarianceNormalization
            | Op::LpNormalization
            | Op::RmsNormalization(_) => self.same_shape(node, op),
            Op::Binary(_) | Op::Compare(_) | Op::Where => self.broadcast(node, op),
            Op::Reduce(r) => self.reduce(node, r),
            Op::Conv(c) => self.conv(node, c),
            Op::ConvTranspose(c) => self.conv_transpose(node, c),
            Op::Pool(p) => self.pool(node, p),
            Op::GlobalPool(_) => self.global_pool(node),
            Op::BatchNormalization => self.batch_norm(node),
            Op::LayerNormalization(l) => self.layer_norm(node, l),
            Op::Dropout => self.dropout(node),
            Op::Gemm(g) => self.gemm(node, g),
            Op::MatMul { integer } => self.matmul(node, *integer),
            Op::Einsum => self.einsum(node),
            Op::Flatten { axis } => self.flatten(node, *axis),
            Op::Reshape { allowzero } => self.reshape(node, *allowzero),
            Op::Transpose { perm } => self.transpose(node, perm.as_deref()),
            Op::Concat { axis } => self.concat(node, *axis),
            Op::Split(s) => self.split(node, s),
            Op::Slice(s) => self.slice(node, s),
            Op::Gather { axis } => self.gather(node, *axis),
            Op::GatherElements => self.gather_elements(node),
            Op::GatherNd => self.gather_nd(node),
            Op::ScatterNd => self.scatter_nd(node),
            Op::ScatterElements => self.scatter_elements(node),
            Op::Squeeze { axes } => self.squeeze(node, axes),
            Op::Unsqueeze { axes } => self.unsqueeze(node, axes),
            &Op::Shape { start, end } => self.shape_of(node, start, end),
            Op::Size => self.size(),
            Op::Constant => self.constant(node),
            Op::ConstantOfShape => self.constant_of_shape(node),
            Op::Expand => self.expand(node),
            Op::Cast { to } => self.cast(node, *to),
            Op::CastLike => self.cast(node, self.dtype(node, 1)),
            Op::Range => self.range(node),
            Op::Tile => self.tile(node),
            Op::Pad(p) => self.pad(node, p),
            Op::Resize(r) => self.resize(node, r),
            Op::GridSample(_) => self.grid_sample(node),
            Op::ArgReduce(r) => self.arg_reduce(node, r),
            Op::TopK(t) => self.top_k(node, t),
            Op::Rnn(r) => self.rnn(node, r),
            Op::DepthSpace(d) => self.depth_space(node, d),
            Op::NonZero => self.non_zero(node),
            &Op::OneHot { axis } => self.one_hot(node, axis),
            &Op::EyeLike { dtype, .. } => self.eye_like(node, dtype),
            Op::QuantizeLinear(q) => self.qlinear(node, q, false),
            Op::DequantizeLinear(q) => self.qlinear(node, q, true),
            Op::DynamicQuantizeLinear => self.dynamic_quantize(node),
            Op::QLinearConv(c) => self.qlinear_conv(node, c),
            Op::QLinearMatMul => self.qlinear_matmul(node),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::proto::{attribute_proto::AttributeType, AttributeProto, GraphProto, ModelProto, OperatorSetIdProto, ValueInfoProto};

    fn model(node: NodeProto) -> Model {
        let value = |n: &str| ValueInfoProto { name: Some(n.into()), ..Default::default() };
        let graph = GraphProto { input: vec![value("x"), value("w")], output: vec![value("y")], node: vec![node], ..Default::default() };
        let proto = ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
            graph: Some(graph),
            ..Default::default()
        };
        Model::from_proto(proto, "test.onnx", None).unwrap()
    }

    fn node(op: &str, attribute: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            name: Some("n0".into()),
            input: vec!["x".into(), "w".into()],
            output: vec!["y".into()],
            attribute,
            ..Default::default()
        }
    }

    #[test]
    fn every_listed_operator_parses() {
        assert!(OPERATORS.windows(2).all(|w| w[0] < w[1]), "OPERATORS must be sorted and without repeats");
        let int = |name: &str, v: i64| AttributeProto {
            name: Some(name.into()),
            r#type: Some(AttributeType::Int as i32),
            i: Some(v),
            ..Default::default()
        };
        for &name in OPERATORS {
            // The attributes an operator requires.
            let attrs = match name {
                "Concat" => vec![int("axis", 0)],
                "Cast" => vec![int("to", 1)],
                "DepthToSpace" | "SpaceToDepth" => vec![int("blocksize", 2)],
                _ => vec![],
            };
            let m = model(node(name, attrs));
            let g = Graph::new(&m).unwrap();
            let op = Op::parse(&g, g.node(0)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!matches!(op, Op::Other(_)), "{name} is listed but parses as an opaque operator");
        }
    }

    #[test]
    fn conv_attributes_are_typed_once() {
        let ints = |name: &str, v: &[i64]| AttributeProto {
            name: Some(name.into()),
            r#type: Some(AttributeType::Ints as i32),
            ints: v.to_vec(),
            ..Default::default()
        };
        let int = |name: &str, v: i64| AttributeProto {
            name: Some(name.into()),
            r#type: Some(AttributeType::Int as i32),
            i: Some(v),
            ..Default::default()
        };
        let m = model(node("Conv", vec![ints("strides", &[2, 2]), int("group", 4)]));
        let g = Graph::new(&m).unwrap();
        let Op::Conv(c) = Op::parse(&g, g.node(0)).unwrap() else { panic!("not a conv") };
        assert_eq!((c.group, c.integer, c.window.strides.as_deref(), c.window.auto_pad.as_str()), (4, false, Some(&[2, 2][..]), "NOTSET"));
        // A malformed attribute names the node and the file.
        let m = model(node("Conv", vec![int("strides", 2)]));
        let g = Graph::new(&m).unwrap();
        let e = Op::parse(&g, g.node(0)).unwrap_err().to_string();
        assert!(e.contains("n0") && e.contains("strides") && e.contains("test.onnx"), "{e}");
        let m = model(node("MyOp", vec![]));
        let g = Graph::new(&m).unwrap();
        assert_eq!(Op::parse(&g, g.node(0)).unwrap(), Op::Other("MyOp".into()));
    }
}
