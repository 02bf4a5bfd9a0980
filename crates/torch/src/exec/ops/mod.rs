//! Operator rules: one function per operator (or family) that parses the node's
//! attributes once, opset-aware, and returns the kernel that computes it.

mod math;
mod nn;
mod quant;
mod recurrent;
mod resize;
mod shape;

use super::convert::{host_floats, host_ints};
use oto_onnx::op::{Op, Softmax, SoftmaxKind};
use oto_onnx::proto::NodeProto;
use oto_onnx::{Graph, NodeExt};
use tch::{Device, TchError, Tensor};

/// What a kernel failed with (a message; the executor adds the node).
#[derive(Debug)]
pub struct OpError(pub String);

impl From<TchError> for OpError {
    fn from(e: TchError) -> Self {
        OpError(crate::error::without_backtrace(&e.to_string()))
    }
}

impl From<String> for OpError {
    fn from(e: String) -> Self {
        OpError(e)
    }
}

impl From<&str> for OpError {
    fn from(e: &str) -> Self {
        OpError(e.to_string())
    }
}

/// Kernel result.
pub type OpResult<T = Vec<Tensor>> = Result<T, OpError>;

/// A compiled node.
pub type Kernel = Box<dyn Fn(&Ctx<'_>) -> OpResult + Send>;

/// The inputs of one node execution.
pub struct Ctx<'a> {
    /// Input tensors (`None`: omitted optional input).
    pub inputs: &'a [Option<Tensor>],
    /// Host copies of integer constant inputs.
    pub host: &'a [Option<&'a [i64]>],
    /// Training mode.
    pub training: bool,
    /// In training mode, BatchNormalization takes its batch statistics over every rank
    /// of this process group (synchronized BatchNorm), not over this rank's samples only.
    pub batch_norm_sync: Option<&'a crate::dist::ProcessGroup>,
}

impl Ctx<'_> {
    /// Required input `k`.
    pub fn input(&self, k: usize) -> OpResult<&Tensor> {
        self.opt(k).ok_or_else(|| OpError(format!("input {k} is missing")))
    }

    /// Optional input `k`.
    pub fn opt(&self, k: usize) -> Option<&Tensor> {
        self.inputs.get(k).and_then(Option::as_ref)
    }

    /// The integer entries of input `k` (host copy of a constant, or read from the tensor).
    pub fn ints(&self, k: usize) -> OpResult<Vec<i64>> {
        if let Some(Some(h)) = self.host.get(k) {
            return Ok(h.to_vec());
        }
        Ok(host_ints(self.input(k)?)?)
    }

    /// Like [`Ctx::ints`], `None` when the input is omitted.
    pub fn opt_ints(&self, k: usize) -> OpResult<Option<Vec<i64>>> {
        if self.opt(k).is_none() {
            return Ok(None);
        }
        self.ints(k).map(Some)
    }

    /// A scalar input read on the host, `None` when omitted.
    pub fn opt_scalar(&self, k: usize) -> OpResult<Option<f64>> {
        let Some(t) = self.opt(k) else {
            return Ok(None);
        };
        let v = host_floats(t)?;
        match v.as_slice() {
            [x] => Ok(Some(*x)),
            _ => Err(OpError(format!("input {k} has {} elements, expected a scalar", v.len()))),
        }
    }
}

/// A parameter known when compiling, or read from an input at run time.
#[derive(Debug, Clone)]
pub enum Ints {
    /// Known (attribute or constant input).
    Static(Option<Vec<i64>>),
    /// Read from this input at run time.
    Input(usize),
}

impl Ints {
    /// Uses the opset-aware form from `oto_onnx::ops` when it resolves; otherwise
    /// reads input `k` at run time (when the node has that input).
    fn resolve(form: oto_onnx::Result<Option<Vec<i64>>>, node: &NodeProto, k: usize) -> Result<Ints, String> {
        match form {
            Ok(v) => Ok(Ints::Static(v)),
            Err(_) if node.input.get(k).is_some_and(|s| !s.is_empty()) => Ok(Ints::Input(k)),
            Err(e) => Err(e.to_string()),
        }
    }

    fn get(&self, ctx: &Ctx<'_>) -> OpResult<Option<Vec<i64>>> {
        match self {
            Ints::Static(v) => Ok(v.clone()),
            Ints::Input(k) => ctx.opt_ints(*k),
        }
    }
}

/// Normalizes a possibly negative axis for a tensor of `rank` dimensions.
pub fn axis(a: i64, rank: usize) -> OpResult<i64> {
    let r = rank as i64;
    let n = if a < 0 { a + r } else { a };
    if (0..r.max(1)).contains(&n) || (r == 0 && n == 0) {
        Ok(n)
    } else {
        Err(OpError(format!("axis {a} is out of range for a tensor of rank {rank}")))
    }
}

/// What `compile` says of an operator it has no kernel for: the refusal that
/// [`supported_ops`] tells apart from errors about a node's attributes or inputs.
const NOT_SUPPORTED: &str = "is not supported by the libtorch executor";

/// The refusal of operator `op`.
pub(crate) fn not_supported(op: &str) -> String {
    format!("operator {op} {NOT_SUPPORTED}")
}

/// The operators of the default ONNX domain the executor runs, sorted: every operator
/// [`oto_onnx::op::OPERATORS`] lists that `compile` does not refuse. Derived by
/// compiling a node of each (no inputs; the attributes `Concat` and `Cast` require), so
/// it cannot disagree with the parser or the executor; an error about the synthetic
/// node's missing attributes or inputs is not a refusal of the operator.
pub fn supported_ops() -> &'static [&'static str] {
    static SUPPORTED: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    SUPPORTED.get_or_init(|| oto_onnx::op::OPERATORS.iter().copied().filter(|&name| compiles(name)).collect())
}

/// Whether `compile` has a kernel for a bare node of operator `name`.
fn compiles(name: &str) -> bool {
    use oto_onnx::proto::{attribute_proto::AttributeType, AttributeProto, GraphProto, ModelProto, OperatorSetIdProto, ValueInfoProto};
    let int = |attr: &str, v: i64| AttributeProto {
        name: Some(attr.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    };
    let attribute = match name {
        "Concat" => vec![int("axis", 0)],
        "Cast" => vec![int("to", 1)],
        _ => vec![],
    };
    let node = NodeProto { op_type: Some(name.into()), output: vec!["y".into()], attribute, ..Default::default() };
    let graph = GraphProto {
        node: vec![node],
        output: vec![ValueInfoProto { name: Some("y".into()), ..Default::default() }],
        ..Default::default()
    };
    let proto = ModelProto {
        ir_version: Some(oto_onnx::model::MAX_IR_VERSION),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(oto_onnx::model::MAX_OPSET) }],
        graph: Some(graph),
        ..Default::default()
    };
    let Ok(model) = oto_onnx::Model::from_proto(proto, "supported_ops.onnx", None) else { return false };
    let Ok(graph) = Graph::new(&model) else { return false };
    match compile(&graph, graph.node(0), Device::Cpu) {
        Ok(_) => true,
        Err(e) => !e.ends_with(NOT_SUPPORTED),
    }
}

/// Compiles `node` into a kernel; an error says why the node cannot run.
///
/// The match is exhaustive over [`Op`]: a new operator variant is a compile error here
/// until it gets its kernel (or is refused explicitly).
pub fn compile(graph: &Graph<'_>, node: &NodeProto, device: Device) -> Result<Kernel, String> {
    let domain = node.domain.as_deref().unwrap_or("");
    if oto_onnx::branches::is_branches(node) {
        let cond = node.input.first().map_or("", String::as_str);
        return Err(format!(
            "an If chosen by the graph input '{cond}' runs one branch at a time here: a merged decoder trains and evaluates its first pass"
        ));
    }
    if !domain.is_empty() && domain != "ai.onnx" {
        return Err(format!("operator domain '{domain}' is not supported (only the default ONNX domain)"));
    }
    let op = Op::parse(graph, node).map_err(|e| e.to_string())?;
    let unsupported = || Err(not_supported(node.op()));
    match &op {
        Op::Unary(u) => math::unary_op(node, *u),
        Op::Binary(b) => math::binary_op(node, *b),
        Op::Compare(c) => Ok(math::compare_op(*c)),
        Op::Where | Op::PRelu | Op::Clip(_) | Op::Gemm(_) | Op::MatMul { integer: false } | Op::Einsum => math::compile(graph, node, &op),
        Op::Reduce(_) | Op::ArgReduce(_) | Op::TopK(_) | Op::CumSum => math::compile(graph, node, &op),
        Op::Conv(c) if !c.integer => nn::conv(c),
        Op::ConvTranspose(c) => nn::conv_transpose(c),
        Op::Pool(p) => nn::pool(node, p),
        Op::GlobalPool(kind) => nn::global_pool(node, *kind),
        Op::BatchNormalization
        | Op::InstanceNormalization
        | Op::GroupNormalization
        | Op::LayerNormalization(_)
        | Op::RmsNormalization(_)
        | Op::Lrn
        | Op::Softmax(Softmax { kind: SoftmaxKind::Softmax | SoftmaxKind::LogSoftmax, .. })
        | Op::Dropout => nn::compile(graph, node, &op),
        Op::Reshape { .. }
        | Op::Flatten { .. }
        | Op::Transpose { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Expand
        | Op::Tile
        | Op::Concat { .. }
        | Op::Split(_)
        | Op::Slice(_)
        | Op::Pad(_)
        | Op::Resize(_)
        | Op::GridSample(_)
        | Op::Gather { .. }
        | Op::GatherElements
        | Op::GatherNd
        | Op::ScatterNd
        | Op::Shape { .. }
        | Op::Size
        | Op::Cast { .. }
        | Op::CastLike
        | Op::ConstantOfShape
        | Op::Range
        | Op::NonZero
        | Op::OneHot { .. }
        | Op::ScatterElements
        | Op::Trilu { .. }
        | Op::DepthSpace(_)
        | Op::EyeLike { .. } => shape::compile(graph, node, &op, device),
        Op::QuantizeLinear(_)
        | Op::DequantizeLinear(_)
        | Op::DynamicQuantizeLinear
        | Op::MatMul { integer: true }
        | Op::Conv(_)
        | Op::QLinearConv(_)
        | Op::QLinearMatMul => quant::compile(graph, node, &op),
        Op::Rnn(r) => recurrent::compile(node, r),
        // `Constant` nodes are evaluated once by the executor, not compiled (supported,
        // hence not the refusal).
        Op::Constant => Err("a Constant node is evaluated once by the executor, not compiled".into()),
        Op::LpNormalization | Op::MeanVarianceNormalization | Op::Softmax(Softmax { kind: SoftmaxKind::Hardmax, .. }) | Op::Other(_) => {
            unsupported()
        }
        // Refused above, by its domain.
        Op::Branches => unsupported(),
    }
}
