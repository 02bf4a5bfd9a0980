//! Static shape and type inference, with a symbolic batch axis.
//!
//! Every value of the graph gets an element type and a shape whose dimensions are
//! known integers or named symbols (the dynamic batch axis of the inputs). Integer
//! shape computations (`Shape -> Gather -> Concat -> Reshape`) are folded, so that
//! the analysis can read Reshape targets whose entries may themselves be symbolic.
//!
//! Symbolic dimensions are typed expressions ([`crate::dim`]: sums, products and floor
//! quotients of symbols and integers in canonical form, with checked arithmetic), so
//! that a Reshape to `[batch, -1]` of a `[batch, C, H, W]` tensor resolves to `C*H*W`
//! by cancelling `batch`; arithmetic that overflows fails the node with a message that
//! names the operation. An input dimension that is dynamic but unnamed becomes `<input>_dim<i>`;
//! a dimension that depends on data (or that no rule here can tell) gets a fresh
//! symbol `unk<N>`.
//!
//! One pass in topological order; nodes are handled in constant time apart from their
//! own tensor sizes. Weights are never decoded: initializers contribute their declared
//! dims, and only small integer tensors (shape lists, axes) are read.

use crate::error::{OnnxError, Result};
use crate::graph::{node_label, Graph, NodeExt};
use crate::op::{Binary as B, Compare, Op, Reduce, ReduceKind, Unary};
use crate::ops;
use crate::proto::{type_proto, NodeProto, TensorProto};
use crate::tensor::{DType, Tensor, TensorData};
use std::collections::HashMap;

pub use crate::dim::{Dim, DimError, Expr};

/// Element type and shape of a value; `None` where inference could not tell.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ValueType {
    /// Element type.
    pub dtype: Option<DType>,
    /// Shape (rank known when `Some`).
    pub shape: Option<Vec<Dim>>,
}

/// The result of [`infer`]: a type per value, plus folded integer values.
#[derive(Debug, Clone, Default)]
pub struct Shapes {
    /// Type and shape of every value that inference reached.
    pub types: HashMap<String, ValueType>,
    /// Values of 1-D (or scalar) integer tensors computed from shapes and constants,
    /// entry by entry (an entry may be symbolic, e.g. `[batch, 16, 2, 64]`).
    pub shape_values: HashMap<String, Vec<Dim>>,
    /// Fully constant tensors folded from constant subgraphs: outputs of `Constant`
    /// nodes and of nodes whose inputs are all constant (initializers themselves are
    /// not repeated here; see [`Graph::constant`]).
    pub constants: HashMap<String, Tensor>,
    /// Entries of small integer tensors of rank 2 or more computed from shapes, flat in
    /// row-major order (their static shape is in `types`): the steps between shape
    /// arithmetic that exporters take through matrices (the TorchScript exporter's
    /// dynamic `Pad` reorders its pads as a `[n, 2]` matrix).
    pub(crate) tensor_values: HashMap<String, Vec<Dim>>,
    /// Declared `value_info` shapes (fully static ones) that disagree with inference:
    /// `(value, declared, inferred)`.
    pub mismatches: Vec<(String, Vec<i64>, Vec<Dim>)>,
}

impl Shapes {
    /// The shape of a value, if inferred.
    pub fn shape(&self, value: &str) -> Option<&[Dim]> {
        self.types.get(value).and_then(|t| t.shape.as_deref())
    }

    /// The element type of a value, if inferred.
    pub fn dtype(&self, value: &str) -> Option<DType> {
        self.types.get(value).and_then(|t| t.dtype)
    }

    /// The static shape, when every dimension is known.
    pub fn static_shape(&self, value: &str) -> Option<Vec<i64>> {
        self.shape(value)?.iter().map(Dim::known).collect()
    }

    /// The (possibly symbolic) integer entries of a shape-like value.
    pub fn shape_value(&self, value: &str) -> Option<&[Dim]> {
        self.shape_values.get(value).map(Vec::as_slice)
    }

    /// The shape of a value with symbols bound (e.g. `batch = 2`).
    pub fn bound_shape(&self, value: &str, bindings: &HashMap<String, i64>) -> Option<Vec<i64>> {
        self.shape(value)?.iter().map(|d| d.eval(bindings)).collect()
    }
}

/// Infers the type and shape of every value of `graph`.
pub fn infer(graph: &Graph<'_>) -> Result<Shapes> {
    infer_bound(graph, &HashMap::new())
}

/// [`infer`] with sizes given to symbols of the graph inputs' shapes (an image's height
/// and width as the data has them): an input axis whose symbols are all bound starts as
/// that number, so that what the graph computes from it folds to numbers too (a window
/// padding `(window - width % window) % window`, which stays unknown symbolically).
pub fn infer_bound(graph: &Graph<'_>, bindings: &HashMap<String, i64>) -> Result<Shapes> {
    let mut cx = Infer { graph, out: Shapes::default(), fresh: 0, init_cache: HashMap::new(), bindings };
    cx.seed()?;
    for (_, node) in graph.nodes() {
        cx.node(node)?;
    }
    cx.cross_check();
    Ok(cx.out)
}

/// Largest tensor (in elements) folded into [`Shapes::constants`].
pub(crate) const FOLD_LIMIT: usize = 1 << 16;
/// Largest integer initializer read as a shape value.
const SHAPE_VALUE_LIMIT: usize = 1 << 10;

/// Why a node's outputs got no type: an input is unknown, or the node is malformed.
pub(crate) enum Stop {
    Unknown,
    Fail(OnnxError),
    /// Dimension arithmetic failed (overflow); the node is named where it is reported.
    Dim(DimError),
}

impl From<DimError> for Stop {
    fn from(e: DimError) -> Stop {
        Stop::Dim(e)
    }
}

impl From<OnnxError> for Stop {
    fn from(e: OnnxError) -> Stop {
        Stop::Fail(e)
    }
}

pub(crate) type R<T> = std::result::Result<T, Stop>;

pub(crate) struct Infer<'g, 'm> {
    pub(crate) graph: &'g Graph<'m>,
    pub(crate) out: Shapes,
    fresh: usize,
    init_cache: HashMap<String, Option<Tensor>>,
    /// Sizes of input symbols ([`infer_bound`]).
    bindings: &'g HashMap<String, i64>,
}

pub(crate) fn vt(dtype: Option<DType>, shape: Vec<Dim>) -> ValueType {
    ValueType { dtype, shape: Some(shape) }
}

pub(crate) fn known_dims(v: &[i64]) -> Vec<Dim> {
    v.iter().map(|&d| Dim::Known(d)).collect()
}

pub(crate) fn numel_of(dims: &[i64]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| usize::try_from(d).ok().and_then(|d| acc.checked_mul(d)))
}

pub(crate) fn is_int(d: DType) -> bool {
    matches!(d, DType::I64 | DType::I32 | DType::I8 | DType::U8 | DType::Bool)
}

/// The dimensions of a declared shape (of a graph input or a `value_info`) named `name`:
/// numbers, symbols (a product of literals such as `64*8` becomes its value, which must
/// fit), and `{name}_dim{i}` for an axis declared without either.
fn declared_dims(shape: &crate::proto::TensorShapeProto, name: &str) -> std::result::Result<Vec<Dim>, String> {
    use crate::proto::tensor_shape_proto::dimension::Value as V;
    let mut dims = Vec::with_capacity(shape.dim.len());
    for (i, d) in shape.dim.iter().enumerate() {
        dims.push(match &d.value {
            Some(V::DimValue(x)) if *x >= 0 => Dim::Known(*x),
            Some(V::DimParam(p)) if !p.is_empty() => Dim::parse(p).map_err(|e| format!("dimension {i}: {e}"))?,
            _ => Dim::sym(format!("{name}_dim{i}")),
        });
    }
    Ok(dims)
}

/// Numpy broadcasting of two dimensions; `None` when incompatible.
pub(crate) fn broadcast_dim(a: &Dim, b: &Dim) -> Option<Dim> {
    match (a, b) {
        _ if a == b => Some(a.clone()),
        (Dim::Known(1), _) => Some(b.clone()),
        (_, Dim::Known(1)) => Some(a.clone()),
        (Dim::Known(_), Dim::Known(_)) => None,
        // A symbol against a known size must equal it (numpy would fail otherwise).
        (Dim::Known(_), Dim::Sym(_)) => Some(a.clone()),
        (Dim::Sym(_), Dim::Known(_)) => Some(b.clone()),
        // Two different symbols: one of them must be 1 or they are equal; keep the first.
        (Dim::Sym(_), Dim::Sym(_)) => Some(a.clone()),
    }
}

/// Numpy broadcasting of several shapes.
pub fn broadcast_shapes(shapes: &[&[Dim]]) -> std::result::Result<Vec<Dim>, String> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![Dim::Known(1); rank];
    for s in shapes {
        let off = rank - s.len();
        for (i, d) in s.iter().enumerate() {
            out[off + i] = broadcast_dim(&out[off + i], d).ok_or_else(|| {
                let list: Vec<String> = shapes.iter().map(|s| fmt_shape(s)).collect();
                format!("shapes {} do not broadcast (axis {} of the result: {} vs {d})", list.join(", "), off + i, out[off + i])
            })?;
        }
    }
    Ok(out)
}

/// `[batch, 3, 64, 64]`.
pub fn fmt_shape(s: &[Dim]) -> String {
    let parts: Vec<String> = s.iter().map(Dim::to_string).collect();
    format!("[{}]", parts.join(", "))
}

pub(crate) fn dtype_of_proto(t: &TensorProto) -> Option<DType> {
    DType::from_onnx(t.data_type.unwrap_or(0))
}

impl<'g, 'm> Infer<'g, 'm> {
    pub(crate) fn fail(&self, node: &NodeProto, msg: impl Into<String>) -> Stop {
        Stop::Fail(self.graph.model.error(node_label(node), msg))
    }

    pub(crate) fn attr<T>(&self, node: &NodeProto, r: std::result::Result<T, String>) -> R<T> {
        r.map_err(|m| self.fail(node, m))
    }

    pub(crate) fn fresh(&mut self) -> Dim {
        self.fresh += 1;
        Dim::sym(format!("unk{}", self.fresh))
    }

    /// Graph inputs (declared types) and initializers (declared dims).
    fn seed(&mut self) -> Result<()> {
        for t in &self.graph.proto.initializer {
            let name = t.name.clone().unwrap_or_default();
            let dtype = dtype_of_proto(t);
            self.out.types.insert(name.clone(), vt(dtype, known_dims(&t.dims)));
            let small = numel_of(&t.dims).is_some_and(|n| n <= SHAPE_VALUE_LIMIT);
            if t.dims.len() <= 1 && small && dtype.is_some_and(is_int) {
                if let Some(v) = self.graph.model.tensor(t)?.to_i64_vec() {
                    self.out.shape_values.insert(name, known_dims(&v));
                }
            }
        }
        for v in self.graph.real_inputs() {
            let name = v.name.clone().unwrap_or_default();
            let Some(type_proto::Value::TensorType(tt)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
                self.out.types.insert(name, ValueType::default());
                continue;
            };
            let dtype = tt.elem_type.and_then(DType::from_onnx);
            let shape = match tt.shape.as_ref() {
                Some(s) => {
                    let dims = declared_dims(s, &name).map_err(|e| self.graph.model.error(format!("graph input '{name}'"), e))?;
                    let bound = |d: Dim| d.eval(self.bindings).filter(|&v| v >= 0).map_or(d, Dim::Known);
                    Some(dims.into_iter().map(bound).collect())
                }
                None => None,
            };
            self.out.types.insert(name, ValueType { dtype, shape });
        }
        Ok(())
    }

    /// The declared type of `value` (its `value_info`), for a node output inference leaves
    /// unknown: exporters and simplifiers write them, and what follows needs at least
    /// their ranks. `None` without a declared shape whose every axis has a size or a
    /// symbol, and for a graph output, whose declaration is the interface, not a reading
    /// of the graph (a normalization that makes the batch symbolic edits it, and asks
    /// inference whether the graph then carries that batch to it).
    fn declared_type(&self, value: &str) -> Option<ValueType> {
        let declared = self.graph.value_info(value)?;
        if self.graph.proto.output.iter().any(|o| o.name.as_deref() == Some(value)) {
            return None;
        }
        let Some(type_proto::Value::TensorType(tt)) = declared.r#type.as_ref()?.value.as_ref() else {
            return None;
        };
        use crate::proto::tensor_shape_proto::dimension::Value as V;
        let shape = tt.shape.as_ref()?;
        if shape
            .dim
            .iter()
            .any(|d| !matches!(&d.value, Some(V::DimValue(x)) if *x >= 0) && !matches!(&d.value, Some(V::DimParam(p)) if !p.is_empty()))
        {
            return None;
        }
        let dims = declared_dims(shape, value).ok()?;
        Some(ValueType { dtype: tt.elem_type.and_then(DType::from_onnx), shape: Some(dims) })
    }

    /// Records every fully static declared `value_info` shape that disagrees.
    fn cross_check(&mut self) {
        for vi in &self.graph.proto.value_info {
            let Some(name) = vi.name.as_deref() else { continue };
            let Some(type_proto::Value::TensorType(tt)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else { continue };
            let Some(shape) = tt.shape.as_ref() else { continue };
            use crate::proto::tensor_shape_proto::dimension::Value as V;
            let declared: Option<Vec<i64>> =
                shape.dim.iter().map(|d| if let Some(V::DimValue(x)) = d.value { Some(x) } else { None }).collect();
            let (Some(declared), Some(inferred)) = (declared, self.out.shape(name)) else { continue };
            if inferred.len() != declared.len() || inferred.iter().zip(&declared).any(|(a, b)| a.known().is_some_and(|a| a != *b)) {
                self.out.mismatches.push((name.to_string(), declared, inferred.to_vec()));
            }
        }
    }

    fn node(&mut self, node: &NodeProto) -> Result<()> {
        let op = Op::parse(self.graph, node)?;
        let types = match self.node_types(node, &op) {
            Ok(t) => t,
            Err(Stop::Unknown) => Vec::new(),
            Err(Stop::Fail(e)) => return Err(e),
            Err(Stop::Dim(e)) => return Err(self.graph.model.error(node_label(node), e.to_string())),
        };
        for (k, out) in node.output.iter().enumerate() {
            if out.is_empty() {
                continue;
            }
            let mut t = types.get(k).cloned().unwrap_or_default();
            if t.shape.is_none() {
                // What inference cannot tell (an operator oto does not know, such as
                // `GridSample`, and what follows it), the file may declare.
                if let Some(declared) = self.declared_type(out) {
                    t = ValueType { dtype: t.dtype.or(declared.dtype), shape: declared.shape };
                }
            }
            self.out.types.insert(out.clone(), t);
        }
        match self.fold(node, &op) {
            Ok(()) | Err(Stop::Unknown) => Ok(()),
            Err(Stop::Fail(e)) => Err(e),
            Err(Stop::Dim(e)) => Err(self.graph.model.error(node_label(node), e.to_string())),
        }
    }

    pub(crate) fn has_input(node: &NodeProto, k: usize) -> bool {
        ops::input(node, k).is_some()
    }

    pub(crate) fn shape(&self, node: &NodeProto, k: usize) -> R<Vec<Dim>> {
        let Some(name) = ops::input(node, k) else {
            return Err(self.fail(node, format!("input {k} is missing")));
        };
        self.out.shape(name).map(<[Dim]>::to_vec).ok_or(Stop::Unknown)
    }

    pub(crate) fn dtype(&self, node: &NodeProto, k: usize) -> Option<DType> {
        ops::input(node, k).and_then(|n| self.out.dtype(n))
    }

    /// The (possibly symbolic) integer entries of input `k` (of rank 0 or 1), or `Unknown`.
    pub(crate) fn values(&self, node: &NodeProto, k: usize) -> R<Vec<Dim>> {
        ops::input(node, k).and_then(|n| self.out.shape_value(n)).map(<[Dim]>::to_vec).ok_or(Stop::Unknown)
    }

    /// The entries of input `k` of any rank, flat in row-major order, with its static
    /// shape (a rank-1 input of symbolic length counts its entries), or `Unknown`.
    fn flat_values(&self, node: &NodeProto, k: usize) -> R<(Vec<Dim>, Vec<usize>)> {
        let name = ops::input(node, k).ok_or(Stop::Unknown)?;
        if let Some(v) = self.out.shape_value(name) {
            let shape = if self.out.shape(name).is_some_and(<[Dim]>::is_empty) { vec![] } else { vec![v.len()] };
            return Ok((v.to_vec(), shape));
        }
        let shape = self.out.static_shape(name).and_then(|s| s.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<Vec<usize>>>());
        let shape = shape.ok_or(Stop::Unknown)?;
        if let Some(v) = self.out.tensor_values.get(name) {
            return Ok((v.clone(), shape));
        }
        let folded = self.out.constants.get(name).filter(|t| is_int(t.dtype())).and_then(Tensor::to_i64_vec);
        folded.map(|v| (known_dims(&v), shape)).ok_or(Stop::Unknown)
    }

    /// `Unknown` unless every present input among `ks` has a folded value (so that
    /// the opset helpers can read it); a runtime parameter is not an error.
    pub(crate) fn needs_values(&self, node: &NodeProto, ks: &[usize]) -> R<()> {
        for &k in ks {
            if let Some(name) = ops::input(node, k) {
                let known = self.out.shape_values.contains_key(name)
                    || self.out.constants.contains_key(name)
                    || self.graph.initializer(name).is_some();
                if !known {
                    return Err(Stop::Unknown);
                }
            }
        }
        Ok(())
    }

    pub(crate) fn axis(&self, node: &NodeProto, axis: i64, rank: usize) -> R<usize> {
        let r = rank as i64;
        if axis < -r || axis >= r {
            return Err(self.fail(node, format!("axis {axis} is out of range for rank {rank}")));
        }
        Ok(if axis < 0 { (axis + r) as usize } else { axis as usize })
    }

    /// The listed axes, normalized, or every axis of a rank-`rank` input when none are listed.
    pub(crate) fn axes_or_all(&self, node: &NodeProto, axes: Option<&[i64]>, rank: usize) -> R<Vec<usize>> {
        match axes {
            Some(a) => a.iter().map(|&v| self.axis(node, v, rank)).collect(),
            None => Ok((0..rank).collect()),
        }
    }

    pub(crate) fn store_constant(&mut self, name: &str, t: Tensor) {
        if t.shape.len() <= 1 && is_int(t.dtype()) {
            if let Some(v) = t.to_i64_vec() {
                self.out.shape_values.insert(name.to_string(), known_dims(&v));
            }
        }
        self.out.constants.insert(name.to_string(), t);
    }

    /// A constant input for folding: folded before, or a small initializer.
    fn const_input(&mut self, name: &str) -> R<Option<Tensor>> {
        if let Some(t) = self.out.constants.get(name) {
            return Ok(Some(t.clone()));
        }
        if let Some(t) = self.init_cache.get(name) {
            return Ok(t.clone());
        }
        let Some(init) = self.graph.initializer(name) else { return Ok(None) };
        let t = if numel_of(&init.dims).is_some_and(|n| n <= FOLD_LIMIT) && dtype_of_proto(init).is_some() {
            Some(self.graph.model.tensor(init)?)
        } else {
            None
        };
        self.init_cache.insert(name.to_string(), t.clone());
        Ok(t)
    }

    /// Folds the node's outputs: whole tensors when every input is constant, else
    /// (possibly symbolic) integer entries of shape-like outputs.
    fn fold(&mut self, node: &NodeProto, op: &Op) -> R<()> {
        // `Constant` stored its value in its rule; an opaque operator is not evaluated.
        if matches!(op, Op::Constant | Op::Other(_) | Op::Branches) || node.output.is_empty() {
            return Ok(());
        }
        let out_static: Vec<Option<Vec<usize>>> = node
            .output
            .iter()
            .map(|o| self.out.static_shape(o).and_then(|s| s.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<Vec<usize>>>()))
            .collect();
        let small = out_static[0]
            .as_ref()
            .is_some_and(|s| s.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).is_some_and(|n| n <= FOLD_LIMIT));
        if small && node.output.len() == 1 || *op == Op::Dropout {
            // Check every input before decoding any, so no weight is read for nothing.
            let foldable = |name: &String| {
                name.is_empty()
                    || self.out.constants.contains_key(name)
                    || self.graph.initializer(name).is_some_and(|t| numel_of(&t.dims).is_some_and(|n| n <= FOLD_LIMIT))
            };
            if !node.input.iter().all(foldable) {
                return self.fold_shape_values(node, op);
            }
            let mut inputs = Vec::with_capacity(node.input.len());
            let mut all = true;
            for name in &node.input {
                if name.is_empty() {
                    inputs.push(None);
                    continue;
                }
                match self.const_input(name)? {
                    Some(t) => inputs.push(Some(t)),
                    None => {
                        all = false;
                        break;
                    }
                }
            }
            if all && !node.input.is_empty() {
                let dtype = self.out.dtype(&node.output[0]);
                if let (Some(shape), Some(dtype)) = (out_static[0].clone(), dtype) {
                    if let Some(t) = fold::eval(self.graph, node, op, &inputs, &shape, dtype, &self.out) {
                        self.store_constant(&node.output[0], t);
                        return Ok(());
                    }
                }
            }
        }
        self.fold_shape_values(node, op)
    }

    /// Folds the (possibly symbolic) integer entries of a rank-0 or rank-1 integer output
    /// (shape arithmetic: `Shape`, `Gather`, `Concat`, `Slice`, integer arithmetic...).
    fn fold_shape_values(&mut self, node: &NodeProto, op: &Op) -> R<()> {
        let out_name = node.output[0].clone();
        let out_dtype = self.out.dtype(&out_name);
        if !out_dtype.is_some_and(is_int) {
            return Ok(());
        }
        // Rank 0 or 1 (shape arithmetic), or a small matrix-like tensor of static shape on
        // the way between two such values (rearranged by the ops below, entry by entry).
        let Some(out_rank) = self.out.shape(&out_name).map(<[Dim]>::len) else { return Ok(()) };
        let out_shape: Option<Vec<usize>> =
            self.out.static_shape(&out_name).and_then(|s| s.iter().map(|&d| usize::try_from(d).ok()).collect());
        if out_rank > 1 {
            let small =
                out_shape.as_ref().and_then(|s| s.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))).is_some_and(|n| n <= FOLD_LIMIT);
            if !small {
                return Ok(());
            }
            let supported = keeps_entries(op)
                || matches!(op, Op::Transpose { .. } | Op::Slice(_) | Op::Concat { .. } | Op::OneHot { .. })
                || matches!(op, &Op::Binary(B::Add | B::Sub | B::Mul | B::Div | B::Max | B::Min | B::Mod));
            if !supported {
                return Ok(());
            }
        }
        let v: Vec<Dim> = match op {
            &Op::Shape { start, end } => {
                let x = self.shape(node, 0)?;
                let (s, e) = crate::op::generate::shape_range(x.len(), start, end);
                x[s..e].to_vec()
            }
            Op::Size => vec![Dim::product(&self.shape(node, 0)?)?],
            // A size computed in floats and cast back (`ceil(h / s)` of TensorFlow's `same`
            // padding as the TorchScript exporter writes it, an interpolated output size):
            // an integer no rule here tells, a fresh symbol per entry, so that the entries
            // beside it (a pad of 0 on the channels) still fold.
            Op::Cast { .. } if out_rank <= 1 && self.out.dtype(&node.input[0]).is_some_and(|d| d.is_float()) => {
                match (self.flat_values(node, 0), out_shape.as_deref()) {
                    (Err(Stop::Unknown), Some([]) | None) if out_rank == 0 => vec![self.fresh()],
                    (Err(Stop::Unknown), Some(&[n])) if n <= FOLD_LIMIT => (0..n).map(|_| self.fresh()).collect(),
                    (values, _) => values?.0,
                }
            }
            op if keeps_entries(op) => self.flat_values(node, 0)?.0,
            Op::Transpose { perm } => {
                let (data, shape) = self.flat_values(node, 0)?;
                let perm: Vec<usize> = match perm {
                    Some(p) => p
                        .iter()
                        .map(|&a| usize::try_from(a).ok().filter(|&a| a < shape.len()))
                        .collect::<Option<_>>()
                        .ok_or(Stop::Unknown)?,
                    None => (0..shape.len()).rev().collect(),
                };
                if perm.len() != shape.len() {
                    return Err(Stop::Unknown);
                }
                let out: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
                let (in_strides, out_strides) = (row_major_strides(&shape), row_major_strides(&out));
                (0..data.len())
                    .map(|flat| {
                        let src: usize = (0..out.len()).map(|i| (flat / out_strides[i]) % out[i] * in_strides[perm[i]]).sum();
                        data.get(src).cloned().ok_or(Stop::Unknown)
                    })
                    .collect::<R<_>>()?
            }
            Op::Gather { .. } => {
                let data = self.values(node, 0)?;
                let idx = self.values(node, 1)?;
                idx.iter()
                    .map(|i| {
                        let i = i.known().ok_or(Stop::Unknown)?;
                        let j = if i < 0 { i + data.len() as i64 } else { i };
                        data.get(j as usize)
                            .cloned()
                            .ok_or_else(|| self.fail(node, format!("index {i} is out of range for {} entries", data.len())))
                    })
                    .collect::<R<_>>()?
            }
            &Op::Concat { axis } => {
                // Appending entries is concatenating along the first axis (of any rank).
                if out_rank > 1 && axis != 0 && axis != -(out_rank as i64) {
                    return Err(Stop::Unknown);
                }
                let mut all = Vec::new();
                for k in 0..node.input.len() {
                    if Self::has_input(node, k) {
                        all.extend(self.flat_values(node, k)?.0);
                    }
                }
                all
            }
            Op::Slice(sl) => {
                let (data, shape) = self.flat_values(node, 0)?;
                self.needs_values(node, &[1, 2, 3, 4])?;
                let p = sl.resolve(self.graph, node, Some(&self.out))?;
                let shape = if shape.is_empty() { vec![data.len()] } else { shape };
                // The input indices each axis keeps (all of them on axes not sliced).
                let mut keep: Vec<Vec<usize>> = shape.iter().map(|&d| (0..d).collect()).collect();
                for (j, (s, e)) in p.starts.iter().zip(&p.ends).enumerate() {
                    let axis = p.axes.as_ref().map_or(Some(j as i64), |a| a.get(j).copied()).ok_or(Stop::Unknown)?;
                    let axis = self.axis(node, axis, shape.len())?;
                    let (s, e) = (s.known().ok_or(Stop::Unknown)?, e.known().ok_or(Stop::Unknown)?);
                    let step = p.steps.as_ref().map_or(Some(1), |st| st.get(j).copied()).filter(|&st| st != 0).ok_or(Stop::Unknown)?;
                    keep[axis] = slice_indices(shape[axis] as i64, s, e, step);
                }
                let strides = row_major_strides(&shape);
                let mut flat = vec![0usize];
                for (idx, &stride) in keep.iter().zip(&strides) {
                    flat = flat.iter().flat_map(|&base| idx.iter().map(move |&i| base + i * stride)).collect();
                }
                flat.into_iter().map(|i| data.get(i).cloned().ok_or(Stop::Unknown)).collect::<R<_>>()?
            }
            &Op::Binary(bin @ (B::Add | B::Sub | B::Mul | B::Div | B::Max | B::Min | B::Mod)) => {
                let ((a, a_shape), (b, b_shape)) = (self.flat_values(node, 0)?, self.flat_values(node, 1)?);
                let n = a.len().max(b.len());
                if a.len() != n && a.len() != 1 || b.len() != n && b.len() != 1 {
                    return Err(Stop::Unknown);
                }
                // Entry by entry: the same shape, or one operand a single entry.
                if out_rank > 1 && a.len() == b.len() && a.len() > 1 && a_shape != b_shape {
                    return Err(Stop::Unknown);
                }
                let at = |v: &Vec<Dim>, i: usize| v[if v.len() == 1 { 0 } else { i }].clone();
                (0..n)
                    .map(|i| {
                        let (x, y) = (at(&a, i), at(&b, i));
                        Ok(match bin {
                            B::Add => x.add(&y)?,
                            B::Sub => x.sub(&y)?,
                            B::Mul => x.mul(&y)?,
                            B::Div => match (&x, &y) {
                                (_, Dim::Known(0)) => return Err(Stop::Unknown),
                                // Integer Div truncates; shapes are non-negative, so floor is the same.
                                (Dim::Known(p), Dim::Known(q)) => Dim::Known(p.checked_div(*q).ok_or(Stop::Unknown)?),
                                _ => x.floor_div(&y)?,
                            },
                            B::Mod => match (&x, &y) {
                                // Integer Mod takes the divisor's sign, like rem_euclid for q > 0.
                                (Dim::Known(p), Dim::Known(q)) if *q > 0 => Dim::Known(p.rem_euclid(*q)),
                                // A remainder of a size by a positive number (the padding a
                                // window needs): some size below q, which no expression tells.
                                (Dim::Sym(_), Dim::Known(q)) if *q > 0 => self.fresh(),
                                _ => return Err(Stop::Unknown),
                            },
                            B::Max | B::Min => match (&x, &y) {
                                (Dim::Known(p), Dim::Known(q)) => Dim::Known(if bin == B::Max { *p.max(q) } else { *p.min(q) }),
                                (p, q) if p == q => p.clone(),
                                _ => return Err(Stop::Unknown),
                            },
                            _ => return Err(Stop::Unknown),
                        })
                    })
                    .collect::<R<_>>()?
            }
            Op::Unary(Unary::Neg) => self.values(node, 0)?.iter().map(|d| Dim::Known(0).sub(d)).collect::<Result<_, _>>()?,
            Op::Compare(Compare::Equal) => {
                let (a, b) = (self.values(node, 0)?, self.values(node, 1)?);
                let n = a.len().max(b.len());
                if a.len() != n && a.len() != 1 || b.len() != n && b.len() != 1 {
                    return Err(Stop::Unknown);
                }
                (0..n)
                    .map(|i| {
                        let (x, y) = (&a[if a.len() == 1 { 0 } else { i }], &b[if b.len() == 1 { 0 } else { i }]);
                        match (x, y) {
                            _ if x == y => Ok(Dim::Known(1)),
                            (Dim::Known(_), Dim::Known(_)) => Ok(Dim::Known(0)),
                            // A symbol is a size, never negative: `Equal(shape, -1)`, the
                            // TorchScript exporter's `expand(n, -1, -1)`, is false on it.
                            (Dim::Sym(_), Dim::Known(k)) | (Dim::Known(k), Dim::Sym(_)) if *k < 0 => Ok(Dim::Known(0)),
                            _ => Err(Stop::Unknown),
                        }
                    })
                    .collect::<R<_>>()?
            }
            Op::Where => {
                let (c, a, b) = (self.values(node, 0)?, self.values(node, 1)?, self.values(node, 2)?);
                let n = c.len().max(a.len()).max(b.len());
                let at = |v: &Vec<Dim>, i: usize| v.get(if v.len() == 1 { 0 } else { i }).cloned();
                (0..n)
                    .map(|i| match at(&c, i).and_then(|d| d.known()) {
                        Some(0) => at(&b, i).ok_or(Stop::Unknown),
                        Some(_) => at(&a, i).ok_or(Stop::Unknown),
                        None => Err(Stop::Unknown),
                    })
                    .collect::<R<_>>()?
            }
            Op::Expand => {
                let a = self.values(node, 0)?;
                let n = self.out.shape(&out_name).and_then(|s| s.first().and_then(Dim::known)).unwrap_or(1);
                let n = usize::try_from(n).ok().filter(|&n| n <= FOLD_LIMIT).ok_or(Stop::Unknown)?;
                match a.len() {
                    l if l == n => a,
                    1 => vec![a[0].clone(); n],
                    _ => return Err(Stop::Unknown),
                }
            }
            Op::ConstantOfShape => {
                let shape = self.values(node, 0)?;
                let n = match shape.as_slice() {
                    [] => 1,
                    [d] => d.known().ok_or(Stop::Unknown)? as usize,
                    _ => return Err(Stop::Unknown),
                };
                let value = match self.attr(node, node.attr_tensor("value"))? {
                    Some(t) => self.graph.model.tensor(t)?.to_i64_vec().and_then(|v| v.first().copied()).ok_or(Stop::Unknown)?,
                    None => 0,
                };
                vec![Dim::Known(value); n.min(FOLD_LIMIT)]
            }
            // The TorchScript exporter's `repeat` counts, `[1, B // b, 1, 1, 1]`: the
            // on-value at each index, the off-value elsewhere; one row per index (an axis
            // other than the last only for a single index, where the order is the same).
            &Op::OneHot { axis } => {
                let (indices, depth, on_off) = (self.values(node, 0)?, self.values(node, 1)?, self.values(node, 2)?);
                let ([depth], [off, on]) = (depth.as_slice(), on_off.as_slice()) else { return Err(Stop::Unknown) };
                let depth = depth.known().filter(|&d| d > 0 && d as usize <= FOLD_LIMIT).ok_or(Stop::Unknown)?;
                let last = axis == -1 || axis == out_rank as i64 - 1;
                if !last && indices.len() != 1 {
                    return Err(Stop::Unknown);
                }
                let mut v = Vec::new();
                for index in &indices {
                    let i = index.known().ok_or(Stop::Unknown)?;
                    let i = if i < 0 { i + depth } else { i };
                    v.extend((0..depth).map(|j| if j == i { on.clone() } else { off.clone() }));
                }
                v
            }
            Op::Reduce(Reduce { kind: kind @ (ReduceKind::Prod | ReduceKind::Sum), .. }) => {
                let a = self.values(node, 0)?;
                if *kind == ReduceKind::Prod {
                    vec![Dim::product(&a)?]
                } else {
                    vec![a.iter().try_fold(Dim::Known(0), |acc, d| acc.add(d))?]
                }
            }
            _ => return Ok(()),
        };
        if out_rank > 1 {
            if out_shape.as_ref().and_then(|s| s.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))) != Some(v.len()) {
                return Err(Stop::Unknown);
            }
            if let (Some(ints), Some(shape), Some(dt)) = (v.iter().map(Dim::known).collect::<Option<Vec<i64>>>(), out_shape, out_dtype) {
                if let Some(t) = Tensor::new(shape, TensorData::I64(ints)) {
                    self.out.constants.insert(out_name.clone(), fold::cast_tensor(&t, dt));
                }
            }
            self.out.tensor_values.insert(out_name, v);
            return Ok(());
        }
        if let Some(ints) = v.iter().map(Dim::known).collect::<Option<Vec<i64>>>() {
            let scalar = out_rank == 0;
            let shape = if scalar { vec![] } else { vec![ints.len()] };
            if let (Some(dt), Some(t)) = (out_dtype, Tensor::new(shape, TensorData::I64(ints.clone()))) {
                let t = fold::cast_tensor(&t, dt);
                self.out.constants.insert(out_name.clone(), t);
            }
        }
        self.out.shape_values.insert(out_name, v);
        Ok(())
    }
}

/// Operators whose output holds input 0's entries in the same order (only the shape or
/// the integer type changes): folded entry by entry at any rank.
pub(crate) fn keeps_entries(op: &Op) -> bool {
    matches!(
        op,
        Op::Unary(Unary::Identity)
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Reshape { .. }
            | Op::Flatten { .. }
            | Op::Cast { .. }
            | Op::CastLike
    )
}

/// Row-major strides of a static shape (sizes small enough to fold).
fn row_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1].saturating_mul(shape[i + 1]);
    }
    s
}

/// Number of elements of `Range(start, limit, delta)`; `None` when it cannot be told.
pub(crate) fn range_len(start: &Dim, limit: &Dim, delta: &Dim) -> Result<Option<Dim>, DimError> {
    Ok(match (start, limit, delta) {
        (Dim::Known(s), Dim::Known(l), Dim::Known(d)) if *d != 0 => {
            Some(Dim::Known((l.saturating_sub(*s) as f64 / *d as f64).ceil().max(0.0) as i64))
        }
        (s, l, Dim::Known(1)) => Some(l.sub(s)?),
        _ => None,
    })
}

/// The input indices a 1-D slice picks (ONNX clamping rules).
pub(crate) fn slice_indices(len: i64, start: i64, end: i64, step: i64) -> Vec<usize> {
    let (s, e) = slice_bounds(len, start, end, step);
    let mut out = Vec::new();
    let mut i = s;
    while (step > 0 && i < e) || (step < 0 && i > e) {
        out.push(i as usize);
        i += step;
    }
    out
}

/// Clamped start and end of a slice over an axis of length `len`.
pub(crate) fn slice_bounds(len: i64, start: i64, end: i64, step: i64) -> (i64, i64) {
    if len <= 0 {
        // Nothing to pick (and `clamp` needs a non-empty range).
        return (0, 0);
    }
    let norm = |v: i64| if v < 0 { v.saturating_add(len) } else { v };
    if step > 0 {
        (norm(start).clamp(0, len), norm(end).clamp(0, len))
    } else {
        (norm(start).clamp(0, len - 1), norm(end).clamp(-1, len - 1))
    }
}

/// An end from which a slice of a symbolic axis runs to the axis's end: exporters write
/// "to the end" as a huge number (INT64_MAX, INT32_MAX, 1e9 as magika's Keras model has
/// it); no axis a model reads is this long (2^24 entries), where a smaller end on a
/// symbolic axis is a crop (Whisper's 480,000 samples).
const TO_THE_END: i64 = 1 << 24;

/// Length of a slice; `None` when it cannot be told statically.
pub(crate) fn slice_len(d: &Dim, start: &Dim, end: &Dim, step: i64) -> Result<Option<Dim>, DimError> {
    let to_end = |e: &Dim| e.known().is_some_and(|v| v >= TO_THE_END);
    Ok(match (d, start, end) {
        (Dim::Known(n), Dim::Known(s), Dim::Known(e)) => {
            let (s, e) = slice_bounds(*n, *s, *e, step);
            // In i128: a step near i64::MAX must not overflow the rounding.
            let (s, e, step) = (i128::from(s), i128::from(e), i128::from(step));
            let len = if step > 0 { (e - s + step - 1) / step } else { (s - e + (-step) - 1) / (-step) };
            Some(Dim::Known(i64::try_from(len.max(0)).unwrap_or(i64::MAX)))
        }
        (d, Dim::Known(0), e) if step == 1 && (to_end(e) || e == d) => Some(d.clone()),
        (d, Dim::Known(s), e) if step == 1 && *s > 0 && (to_end(e) || e == d) => Some(d.sub(&Dim::Known(*s))?),
        (_, Dim::Known(s), Dim::Known(e)) if step == 1 && *s >= 0 && *e >= *s && *e < TO_THE_END => {
            // Within a symbolic axis: correct as long as the axis is at least `e` long.
            Some(Dim::Known(e - s))
        }
        (d, s, e) if step == 1 && e == d => Some(d.sub(s)?),
        (_, s, e) if step == 1 && s.known().is_some_and(|v| v >= 0) && !to_end(e) && e.known().is_none_or(|v| v >= 0) => Some(e.sub(s)?),
        _ => None,
    })
}

/// Output dims of a Reshape; `None` entries could not be determined.
pub fn reshape_dims(input: &[Dim], target: &[Dim], allowzero: bool) -> std::result::Result<Vec<Option<Dim>>, String> {
    let mut out: Vec<Option<Dim>> = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, t) in target.iter().enumerate() {
        match t {
            Dim::Known(0) if !allowzero => {
                let d = input.get(i).ok_or_else(|| {
                    format!("target {} copies axis {i} (0) but the input {} has no such axis", fmt_shape(target), fmt_shape(input))
                })?;
                out.push(Some(d.clone()));
            }
            Dim::Known(-1) => {
                if infer_at.replace(i).is_some() {
                    return Err(format!("target {} has more than one -1", fmt_shape(target)));
                }
                out.push(None);
            }
            Dim::Known(v) if *v < -1 => return Err(format!("target {} has the invalid entry {v}", fmt_shape(target))),
            d => out.push(Some(d.clone())),
        }
    }
    let total = Dim::product(input).map_err(|e| e.to_string())?;
    let rest = Dim::product(out.iter().flatten()).map_err(|e| e.to_string())?;
    match infer_at {
        Some(i) => {
            out[i] = match total.div_exact(&rest) {
                Some(d) => Some(d),
                None if total.known().is_some() && rest.known().is_some() => {
                    return Err(format!("cannot reshape {} ({total} elements) to {}", fmt_shape(input), fmt_shape(target)))
                }
                None => None,
            };
        }
        None => {
            if let (Some(a), Some(b)) = (total.known(), rest.known()) {
                if a != b {
                    return Err(format!("cannot reshape {} ({a} elements) to {} ({b} elements)", fmt_shape(input), fmt_shape(target)));
                }
            }
        }
    }
    Ok(out)
}

/// Evaluates `node` on constant `inputs` (one per input, `None` for an omitted one) with
/// the interpreter shape inference folds small constants with, whatever the tensors'
/// sizes: `out_shape` and `dtype` are the output's inferred static shape and type, and
/// `shapes` the inference result (for parameters such as Slice bounds). `None` when the
/// operator is not one the interpreter evaluates, or the inputs do not fit it.
pub(crate) fn eval_node(
    graph: &Graph<'_>,
    node: &NodeProto,
    op: &Op,
    inputs: &[Option<Tensor>],
    out_shape: &[usize],
    dtype: DType,
    shapes: &Shapes,
) -> Option<Tensor> {
    fold::eval(graph, node, op, inputs, out_shape, dtype, shapes)
}

/// Whole-tensor evaluation of constant subgraphs: small tensors during inference, any
/// size for the data moves of [`crate::normalize`].
mod fold {
    use super::*;

    /// Numeric contents: integers (and bools) exactly, floats as f64.
    #[derive(Clone)]
    enum Vals {
        I(Vec<i64>),
        F(Vec<f64>),
    }

    impl Vals {
        fn of(t: &Tensor) -> Vals {
            match t.to_i64_vec() {
                Some(v) if !t.dtype().is_float() => Vals::I(v),
                _ => Vals::F(t.to_f64_vec()),
            }
        }
        fn len(&self) -> usize {
            match self {
                Vals::I(v) => v.len(),
                Vals::F(v) => v.len(),
            }
        }
        fn pick(&self, idx: &[usize]) -> Vals {
            match self {
                Vals::I(v) => Vals::I(idx.iter().map(|&i| v[i]).collect()),
                Vals::F(v) => Vals::F(idx.iter().map(|&i| v[i]).collect()),
            }
        }
        fn f(&self, i: usize) -> f64 {
            match self {
                Vals::I(v) => v[i] as f64,
                Vals::F(v) => v[i],
            }
        }
        fn i(&self, i: usize) -> i64 {
            match self {
                Vals::I(v) => v[i],
                Vals::F(v) => v[i] as i64,
            }
        }
    }

    fn to_tensor(shape: Vec<usize>, v: Vals, dtype: DType) -> Option<Tensor> {
        use half::{bf16, f16};
        let n = v.len();
        let data = match dtype {
            DType::F32 => TensorData::F32((0..n).map(|i| v.f(i) as f32).collect()),
            DType::F64 => TensorData::F64((0..n).map(|i| v.f(i)).collect()),
            DType::F16 => TensorData::F16((0..n).map(|i| f16::from_f64(v.f(i))).collect()),
            DType::Bf16 => TensorData::Bf16((0..n).map(|i| bf16::from_f64(v.f(i))).collect()),
            DType::I64 => TensorData::I64((0..n).map(|i| v.i(i)).collect()),
            DType::I32 => TensorData::I32((0..n).map(|i| v.i(i) as i32).collect()),
            DType::I8 => TensorData::I8((0..n).map(|i| v.i(i) as i8).collect()),
            DType::U8 => TensorData::U8((0..n).map(|i| v.i(i) as u8).collect()),
            DType::Bool => TensorData::Bool((0..n).map(|i| v.f(i) != 0.0).collect()),
        };
        Tensor::new(shape, data)
    }

    /// Converts a tensor to another element type (ONNX Cast semantics for the
    /// values shape computations produce).
    pub(super) fn cast_tensor(t: &Tensor, dtype: DType) -> Tensor {
        if t.dtype() == dtype {
            return t.clone();
        }
        to_tensor(t.shape.clone(), Vals::of(t), dtype).unwrap_or_else(|| t.clone())
    }

    /// For every element of `out`, the index of the element of `input` it reads under broadcasting.
    fn broadcast_index(out: &[usize], input: &[usize]) -> Option<Vec<usize>> {
        if input.len() > out.len() {
            return None;
        }
        let off = out.len() - input.len();
        let in_strides = row_major_strides(input);
        for (i, &d) in input.iter().enumerate() {
            if d != 1 && d != out[off + i] {
                return None;
            }
        }
        let n: usize = out.iter().product();
        let out_strides = row_major_strides(out);
        Some(
            (0..n)
                .map(|flat| {
                    let mut src = 0;
                    for (i, &d) in input.iter().enumerate() {
                        let coord = (flat / out_strides[off + i]) % out[off + i];
                        if d != 1 {
                            src += coord * in_strides[i];
                        }
                    }
                    src
                })
                .collect(),
        )
    }

    /// An arithmetic or comparison operator of `Op::Binary` or `Op::Compare`, as folded.
    #[derive(Clone, Copy)]
    enum Arith {
        B(B),
        C(Compare),
    }

    fn binary(op: Arith, a: &Vals, b: &Vals, ia: &[usize], ib: &[usize]) -> Option<Vals> {
        use Arith::{B as Ar, C as Cm};
        let n = ia.len();
        if let (Vals::I(x), Vals::I(y)) = (a, b) {
            let f = |p: i64, q: i64| -> Option<i64> {
                Some(match op {
                    Ar(B::Add) => p.wrapping_add(q),
                    Ar(B::Sub) => p.wrapping_sub(q),
                    Ar(B::Mul) => p.wrapping_mul(q),
                    Ar(B::Div) => p.checked_div(q)?,
                    Ar(B::Mod) => p.checked_rem_euclid(q)?,
                    Ar(B::Max) => p.max(q),
                    Ar(B::Min) => p.min(q),
                    Cm(Compare::Equal) => i64::from(p == q),
                    Cm(Compare::Less) => i64::from(p < q),
                    Cm(Compare::Greater) => i64::from(p > q),
                    Cm(Compare::LessOrEqual) => i64::from(p <= q),
                    Cm(Compare::GreaterOrEqual) => i64::from(p >= q),
                    Cm(Compare::And) => i64::from(p != 0 && q != 0),
                    Cm(Compare::Or) => i64::from(p != 0 || q != 0),
                    Cm(Compare::Xor) => i64::from((p != 0) != (q != 0)),
                    Ar(B::Pow) => p.checked_pow(u32::try_from(q).ok()?)?,
                    Ar(B::Sum | B::Mean | B::BitShift | B::BitwiseAnd | B::BitwiseOr | B::BitwiseXor) => return None,
                })
            };
            return (0..n).map(|i| f(x[ia[i]], y[ib[i]])).collect::<Option<Vec<_>>>().map(Vals::I);
        }
        let f = |p: f64, q: f64| -> Option<f64> {
            let b = |c: bool| f64::from(u8::from(c));
            Some(match op {
                Ar(B::Add) => p + q,
                Ar(B::Sub) => p - q,
                Ar(B::Mul) => p * q,
                Ar(B::Div) => p / q,
                Ar(B::Pow) => p.powf(q),
                Ar(B::Max) => p.max(q),
                Ar(B::Min) => p.min(q),
                Ar(B::Mod) => p % q,
                Cm(Compare::Equal) => b(p == q),
                Cm(Compare::Less) => b(p < q),
                Cm(Compare::Greater) => b(p > q),
                Cm(Compare::LessOrEqual) => b(p <= q),
                Cm(Compare::GreaterOrEqual) => b(p >= q),
                Ar(B::Sum | B::Mean | B::BitShift | B::BitwiseAnd | B::BitwiseOr | B::BitwiseXor)
                | Cm(Compare::And | Compare::Or | Compare::Xor) => return None,
            })
        };
        (0..n).map(|i| f(a.f(ia[i]), b.f(ib[i]))).collect::<Option<Vec<_>>>().map(Vals::F)
    }

    fn unary(op: Unary, a: &Vals) -> Option<Vals> {
        if let Vals::I(x) = a {
            let r = match op {
                Unary::Neg => x.iter().map(|v| v.wrapping_neg()).collect(),
                Unary::Abs => x.iter().map(|v| v.wrapping_abs()).collect(),
                Unary::Not => x.iter().map(|&v| i64::from(v == 0)).collect(),
                Unary::Relu => x.iter().map(|&v| v.max(0)).collect(),
                Unary::Sign => x.iter().map(|v| v.signum()).collect(),
                Unary::Identity => x.clone(),
                _ => return None,
            };
            return Some(Vals::I(r));
        }
        let Vals::F(x) = a else { return None };
        let f: fn(f64) -> f64 = match op {
            Unary::Neg => |v| -v,
            Unary::Abs => f64::abs,
            Unary::Sqrt => f64::sqrt,
            Unary::Exp => f64::exp,
            Unary::Log => f64::ln,
            Unary::Reciprocal => |v| 1.0 / v,
            Unary::Floor => f64::floor,
            Unary::Ceil => f64::ceil,
            Unary::Relu => |v| v.max(0.0),
            Unary::Sigmoid => |v| 1.0 / (1.0 + (-v).exp()),
            Unary::Tanh => f64::tanh,
            Unary::Identity => |v| v,
            _ => return None,
        };
        Some(Vals::F(x.iter().map(|&v| f(v)).collect()))
    }

    /// Evaluates `node` on constant inputs; `None` when the operator is not folded.
    pub(super) fn eval(
        graph: &Graph<'_>,
        node: &NodeProto,
        op: &Op,
        inputs: &[Option<Tensor>],
        out_shape: &[usize],
        dtype: DType,
        shapes: &Shapes,
    ) -> Option<Tensor> {
        let x = inputs.first()?.as_ref()?;
        let n_out: usize = out_shape.iter().product();
        let vals = match op {
            Op::Unary(Unary::Identity)
            | Op::Reshape { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Flatten { .. }
            | Op::Dropout => Vals::of(x),
            Op::Cast { .. } | Op::CastLike => return Some(cast_tensor(&Tensor { shape: out_shape.to_vec(), data: x.data.clone() }, dtype)),
            &Op::Unary(
                u @ (Unary::Neg
                | Unary::Abs
                | Unary::Not
                | Unary::Relu
                | Unary::Sign
                | Unary::Sqrt
                | Unary::Exp
                | Unary::Log
                | Unary::Reciprocal
                | Unary::Floor
                | Unary::Ceil
                | Unary::Sigmoid
                | Unary::Tanh),
            ) => unary(u, &Vals::of(x))?,
            &(Op::Binary(_) | Op::Compare(_)) => {
                let arith = match *op {
                    Op::Binary(b) => Arith::B(b),
                    Op::Compare(c) => Arith::C(c),
                    _ => return None,
                };
                if inputs.len() != 2 {
                    return None;
                }
                let y = inputs[1].as_ref()?;
                let (ia, ib) = (broadcast_index(out_shape, &x.shape)?, broadcast_index(out_shape, &y.shape)?);
                let (a, b) = (Vals::of(x), Vals::of(y));
                // Integer Pow/Div with float operands follow the float path.
                let r = binary(arith, &a, &b, &ia, &ib)?;
                return to_tensor(out_shape.to_vec(), r, dtype);
            }
            Op::Where => {
                let (a, b) = (inputs.get(1)?.as_ref()?, inputs.get(2)?.as_ref()?);
                let (ic, ia, ib) =
                    (broadcast_index(out_shape, &x.shape)?, broadcast_index(out_shape, &a.shape)?, broadcast_index(out_shape, &b.shape)?);
                let (c, va, vb) = (Vals::of(x), Vals::of(a), Vals::of(b));
                match (&va, &vb) {
                    (Vals::I(p), Vals::I(q)) => Vals::I((0..n_out).map(|i| if c.f(ic[i]) != 0.0 { p[ia[i]] } else { q[ib[i]] }).collect()),
                    _ => Vals::F((0..n_out).map(|i| if c.f(ic[i]) != 0.0 { va.f(ia[i]) } else { vb.f(ib[i]) }).collect()),
                }
            }
            Op::Expand => Vals::of(x).pick(&broadcast_index(out_shape, &x.shape)?),
            // (TorchScript's `same` padding clips its computed pads at 0.)
            Op::Clip(c) => {
                let lo = c.min.resolve(graph, node, Some(shapes), "min").ok()?;
                let hi = c.max.resolve(graph, node, Some(shapes), "max").ok()?;
                match Vals::of(x) {
                    Vals::I(v) => Vals::I(
                        v.into_iter()
                            .map(|p| {
                                let p = lo.map_or(p, |l| p.max(l.ceil() as i64));
                                hi.map_or(p, |h| p.min(h.floor() as i64))
                            })
                            .collect(),
                    ),
                    Vals::F(v) => Vals::F(
                        v.into_iter()
                            .map(|p| {
                                let p = lo.map_or(p, |l| p.max(l));
                                hi.map_or(p, |h| p.min(h))
                            })
                            .collect(),
                    ),
                }
            }
            &Op::Concat { axis } => {
                let rank = x.shape.len();
                let a = if axis < 0 { axis + rank as i64 } else { axis } as usize;
                let inner: usize = out_shape.get(a + 1..)?.iter().product();
                let outer: usize = out_shape.get(..a)?.iter().product();
                let parts: Vec<(Vals, usize)> =
                    inputs.iter().flatten().map(|t| (Vals::of(t), t.shape.get(a).copied().unwrap_or(0) * inner)).collect();
                let all_int = parts.iter().all(|(v, _)| matches!(v, Vals::I(_)));
                let mut ints = Vec::with_capacity(n_out);
                let mut floats = Vec::with_capacity(n_out);
                for o in 0..outer {
                    for (v, block) in &parts {
                        for j in o * block..(o + 1) * block {
                            if all_int {
                                ints.push(v.i(j));
                            } else {
                                floats.push(v.f(j));
                            }
                        }
                    }
                }
                if all_int {
                    Vals::I(ints)
                } else {
                    Vals::F(floats)
                }
            }
            &Op::Gather { axis } => {
                let idx = Vals::of(inputs.get(1)?.as_ref()?);
                let rank = x.shape.len();
                let a = if axis < 0 { axis + rank as i64 } else { axis } as usize;
                let dim = *x.shape.get(a)?;
                let outer: usize = x.shape[..a].iter().product();
                let inner: usize = x.shape[a + 1..].iter().product();
                let mut pick = Vec::with_capacity(n_out);
                for o in 0..outer {
                    for j in 0..idx.len() {
                        let k = idx.i(j);
                        let k = if k < 0 { k + dim as i64 } else { k };
                        if k < 0 || k as usize >= dim {
                            return None;
                        }
                        for i in 0..inner {
                            pick.push((o * dim + k as usize) * inner + i);
                        }
                    }
                }
                Vals::of(x).pick(&pick)
            }
            Op::Slice(sl) => {
                let p = sl.resolve(graph, node, Some(shapes)).ok()?;
                let rank = x.shape.len();
                let mut start = vec![0i64; rank];
                let mut step = vec![1i64; rank];
                for i in 0..p.starts.len() {
                    let axis = p.axes.as_ref().map_or(i as i64, |a| a[i]);
                    let a = if axis < 0 { axis + rank as i64 } else { axis } as usize;
                    let st = p.steps.as_ref().map_or(1, |s| s[i]);
                    let (s, _) = slice_bounds(*x.shape.get(a)? as i64, p.starts[i].known()?, p.ends[i].known()?, st);
                    start[a] = s;
                    step[a] = st;
                }
                let in_strides = row_major_strides(&x.shape);
                let out_strides = row_major_strides(out_shape);
                let pick: Vec<usize> = (0..n_out)
                    .map(|flat| {
                        (0..rank)
                            .map(|i| ((start[i] + ((flat / out_strides[i]) % out_shape[i]) as i64 * step[i]) as usize) * in_strides[i])
                            .sum()
                    })
                    .collect();
                Vals::of(x).pick(&pick)
            }
            Op::Transpose { perm } => {
                let rank = x.shape.len();
                let perm = perm.clone().unwrap_or_else(|| (0..rank as i64).rev().collect());
                let in_strides = row_major_strides(&x.shape);
                let out_strides = row_major_strides(out_shape);
                let pick: Vec<usize> = (0..n_out)
                    .map(|flat| (0..rank).map(|i| ((flat / out_strides[i]) % out_shape[i]) * in_strides[perm[i] as usize]).sum())
                    .collect();
                Vals::of(x).pick(&pick)
            }
            Op::ConstantOfShape => {
                let v = match node.attr_tensor("value").ok()? {
                    Some(t) => Vals::of(&graph.model.tensor(t).ok()?),
                    None => Vals::F(vec![0.0]),
                };
                v.pick(&vec![0; n_out])
            }
            Op::Range => {
                let (s, d) = (Vals::of(x), Vals::of(inputs.get(2)?.as_ref()?));
                match (s, d) {
                    (Vals::I(s), Vals::I(d)) => Vals::I((0..n_out as i64).map(|i| s[0] + i * d[0]).collect()),
                    (s, d) => Vals::F((0..n_out).map(|i| s.f(0) + i as f64 * d.f(0)).collect()),
                }
            }
            &Op::Shape { start, end } => {
                let (s, e) = crate::op::generate::shape_range(x.shape.len(), start, end);
                Vals::I(x.shape[s..e].iter().map(|&d| d as i64).collect())
            }
            Op::Reduce(red) => {
                // Small constant reductions (repeat_interleave's `max(repeats)` in
                // TorchScript exports); the others are not folded.
                let listed = red.axes.resolve(graph, node, Some(shapes), "axes").ok()?;
                let rank = x.shape.len();
                let axes: Vec<usize> = match listed {
                    Some(a) if !a.is_empty() => a
                        .iter()
                        .map(|&v| usize::try_from(if v < 0 { v + rank as i64 } else { v }).ok().filter(|&v| v < rank))
                        .collect::<Option<_>>()?,
                    _ if red.noop_with_empty_axes => (0..0).collect(),
                    _ => (0..rank).collect(),
                };
                let kept: Vec<usize> = (0..rank).map(|i| if axes.contains(&i) { 1 } else { x.shape[i] }).collect();
                let (in_strides, kept_strides) = (row_major_strides(&x.shape), row_major_strides(&kept));
                let n_in: usize = x.shape.iter().product();
                let target = |flat: usize| -> usize {
                    (0..rank).map(|i| if axes.contains(&i) { 0 } else { (flat / in_strides[i]) % x.shape[i] * kept_strides[i] }).sum()
                };
                let counted = (n_in / n_out.max(1)) as f64;
                match (Vals::of(x), red.kind) {
                    // Integers exactly (wrapping, as ONNX's integer arithmetic), but their mean.
                    (Vals::I(v), kind @ (ReduceKind::Max | ReduceKind::Min | ReduceKind::Sum | ReduceKind::Prod)) => {
                        let (init, step): (i64, fn(i64, i64) -> i64) = match kind {
                            ReduceKind::Max => (i64::MIN, i64::max),
                            ReduceKind::Min => (i64::MAX, i64::min),
                            ReduceKind::Sum => (0, i64::wrapping_add),
                            _ => (1, i64::wrapping_mul),
                        };
                        let mut acc = vec![init; n_out];
                        for (flat, &e) in v.iter().enumerate() {
                            let o = acc.get_mut(target(flat))?;
                            *o = step(*o, e);
                        }
                        Vals::I(acc)
                    }
                    (v, kind) => {
                        let (init, step): (f64, fn(f64, f64) -> f64) = match kind {
                            ReduceKind::Max => (f64::NEG_INFINITY, f64::max),
                            ReduceKind::Min => (f64::INFINITY, f64::min),
                            ReduceKind::Sum | ReduceKind::Mean => (0.0, |a, b| a + b),
                            ReduceKind::Prod => (1.0, |a, b| a * b),
                            // The norms of a weight normalization (`g * v / ||v||`).
                            ReduceKind::L1 => (0.0, |a, b| a + b.abs()),
                            ReduceKind::L2 | ReduceKind::SumSquare => (0.0, |a, b| a + b * b),
                            _ => return None,
                        };
                        let mut acc = vec![init; n_out];
                        for flat in 0..n_in {
                            let o = acc.get_mut(target(flat))?;
                            *o = step(*o, v.f(flat));
                        }
                        match kind {
                            ReduceKind::Mean => acc.iter_mut().for_each(|a| *a /= counted),
                            ReduceKind::L2 => acc.iter_mut().for_each(|a| *a = a.sqrt()),
                            _ => {}
                        }
                        Vals::F(acc)
                    }
                }
            }
            // A standardized weight (BiT's convolutions): normalized per channel (axis 1) over
            // the other axes in training mode, by the given statistics otherwise; instance
            // normalization per sample and channel.
            Op::BatchNormalization | Op::InstanceNormalization => {
                let (scale, bias) = (Vals::of(inputs.get(1)?.as_ref()?), Vals::of(inputs.get(2)?.as_ref()?));
                let eps = node.attr_float("epsilon").ok().flatten().map_or(1e-5, f64::from);
                let (&n, &c) = (x.shape.first()?, x.shape.get(1)?);
                let spatial: usize = x.shape.get(2..)?.iter().product();
                // (an empty weight has no statistics: nothing to divide by)
                if n_out == 0 || scale.len() != c || bias.len() != c || n * c * spatial != n_out {
                    return None;
                }
                let v = Vals::of(x);
                let channel = |flat: usize| (flat / spatial) % c;
                let instance = *op == Op::InstanceNormalization;
                let training = node.attr_int("training_mode").ok().flatten() == Some(1);
                // Statistics per key: the channel, or the sample's channel.
                let key = |flat: usize| if instance { flat / spatial } else { channel(flat) };
                let keys = if instance { n * c } else { c };
                let (mean, var) = if instance || training {
                    let count = (n_out / keys) as f64;
                    let (mut sum, mut sq) = (vec![0.0; keys], vec![0.0; keys]);
                    for flat in 0..n_out {
                        sum[key(flat)] += v.f(flat);
                    }
                    let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
                    for flat in 0..n_out {
                        let d = v.f(flat) - mean[key(flat)];
                        sq[key(flat)] += d * d;
                    }
                    (mean, sq.iter().map(|s| s / count).collect::<Vec<f64>>())
                } else {
                    let (m, s2) = (Vals::of(inputs.get(3)?.as_ref()?), Vals::of(inputs.get(4)?.as_ref()?));
                    if m.len() != c || s2.len() != c {
                        return None;
                    }
                    ((0..c).map(|i| m.f(i)).collect(), (0..c).map(|i| s2.f(i)).collect())
                };
                Vals::F(
                    (0..n_out)
                        .map(|flat| {
                            let (k, ch) = (key(flat), channel(flat));
                            (v.f(flat) - mean[k]) / (var[k] + eps).sqrt() * scale.f(ch) + bias.f(ch)
                        })
                        .collect(),
                )
            }
            &Op::Trilu { upper } => {
                let k = match inputs.get(1) {
                    Some(Some(t)) => t.to_i64_vec()?.first().copied()?,
                    _ => 0,
                };
                let rank = out_shape.len();
                if rank < 2 {
                    return None;
                }
                let (rows, cols) = (out_shape[rank - 2], out_shape[rank - 1]);
                let keep: Vec<bool> = (0..n_out)
                    .map(|flat| {
                        let (r, c) = (((flat / cols) % rows) as i64, (flat % cols) as i64);
                        if upper {
                            c - r >= k
                        } else {
                            c - r <= k
                        }
                    })
                    .collect();
                match Vals::of(x) {
                    Vals::I(v) => Vals::I(v.iter().zip(&keep).map(|(&a, &k)| if k { a } else { 0 }).collect()),
                    Vals::F(v) => Vals::F(v.iter().zip(&keep).map(|(&a, &k)| if k { a } else { 0.0 }).collect()),
                }
            }
            _ => return None,
        };
        if vals.len() != n_out {
            return None;
        }
        to_tensor(out_shape.to_vec(), vals, dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str) -> Dim {
        Dim::sym(name)
    }

    #[test]
    fn symbolic_products_cancel() {
        let b = s("batch");
        let p = Dim::product(&[b.clone(), Dim::Known(16), Dim::Known(4)]).unwrap();
        assert_eq!(p, Dim::parse("64*batch").unwrap());
        assert_eq!(p.to_string(), "64*batch");
        assert_eq!(p.div_exact(&Dim::Known(16)), Some(Dim::parse("4*batch").unwrap()));
        assert_eq!(p.div_exact(&b.mul(&Dim::Known(64)).unwrap()), Some(Dim::Known(1)));
        assert_eq!(p.div_exact(&s("seq")), None);
        assert_eq!(b.mul(&s("seq")), s("seq").mul(&b));
        let bind: HashMap<String, i64> = [("batch".to_string(), 2), ("seq".to_string(), 5)].into();
        assert_eq!(b.mul(&s("seq")).unwrap().add(&Dim::Known(3)).unwrap().eval(&bind), Some(13));
        assert_eq!(s("seq").sub(&Dim::Known(1)).unwrap().eval(&bind), Some(4));
        assert_eq!(s("seq").sub(&s("seq")), Ok(Dim::Known(0)));
        assert_eq!(b.add(&b.mul(&Dim::Known(2)).unwrap()), b.mul(&Dim::Known(3)));
        assert_eq!(b.mul(&Dim::Known(3)).unwrap().sub(&b), b.mul(&Dim::Known(2)));
        assert_eq!(s("weird name+1").eval(&bind), None);
        let odd: HashMap<String, i64> = [("batch-size".to_string(), 3)].into();
        assert_eq!(s("batch-size").mul(&Dim::Known(2)).unwrap().eval(&odd), Some(6));
    }

    /// Dimensions from a file may be anything: arithmetic on them never panics; a
    /// value that does not fit when bound is unknown (`None`) rather than wrapped, and
    /// arithmetic whose coefficients overflow is an error naming the operation.
    #[test]
    fn dimension_arithmetic_does_not_overflow() {
        let (a, m) = (s("a"), s("m"));
        let big: HashMap<String, i64> = [("a".to_string(), i64::MAX), ("m".to_string(), i64::MIN)].into();
        assert_eq!(a.mul(&a).unwrap().eval(&big), None);
        assert_eq!(a.add(&s("b")).unwrap().eval(&[("a".to_string(), i64::MAX), ("b".to_string(), 1)].into()), None);
        assert_eq!(m.sub(&a).unwrap().eval(&big), None);
        assert_eq!(m.floor_div(&s("n")).unwrap().eval(&[("m".to_string(), i64::MIN), ("n".to_string(), -1)].into()), None);
        assert_eq!(m.floor_div(&s("z")).unwrap().eval(&[("m".to_string(), 1), ("z".to_string(), 0)].into()), None);
        let e = Dim::parse("99999999999*99999999999").unwrap_err();
        assert_eq!(e.to_string(), "dimension 99999999999*99999999999 overflows a 64-bit integer");
        let e = Dim::Known(i64::MIN).floor_div(&Dim::Known(-1)).unwrap_err();
        assert_eq!(e.to_string(), "dimension (-9223372036854775808)/(-1) overflows a 64-bit integer");
        assert_eq!(Dim::Known(i64::MIN).div_exact(&Dim::Known(-1)), None);
    }

    /// A declared `dim_param` that is a sum (an Optimum with-past attention mask,
    /// `[batch_size, "past_sequence_length + sequence_length"]`) is the same dimension
    /// inference gives a concatenation of the past and the new tokens.
    #[test]
    fn declared_sums_meet_inferred_ones() {
        use crate::builder::GraphBuilder;
        let mut b = GraphBuilder::new("past");
        let past = b.input_f32("past", &[s("batch_size"), s("past_sequence_length")]);
        let new = b.input_f32("new", &[s("batch_size"), s("sequence_length")]);
        let mask = b.input("mask", DType::F32, &[s("batch_size"), Dim::parse("past_sequence_length + sequence_length").unwrap()]);
        let cat = b.node_with("Concat", &[&past, &new], &[], &[("axis", crate::builder::Attr::Int(1))]);
        let sum = b.node("Add", &[&cat, &mask], &[]);
        b.output_f32(&sum, &[s("batch_size"), s("total")]);
        let mut proto = b.proto();
        // The text as Optimum writes it, with spaces.
        let graph = proto.graph.as_mut().unwrap();
        let Some(crate::proto::type_proto::Value::TensorType(t)) = graph.input[2].r#type.as_mut().unwrap().value.as_mut() else { panic!() };
        t.shape.as_mut().unwrap().dim[1].value =
            Some(crate::proto::tensor_shape_proto::dimension::Value::DimParam("past_sequence_length + sequence_length".into()));
        let model = crate::Model::from_proto(proto, "<past>", None).unwrap();
        let graph = crate::Graph::new(&model).unwrap();
        let shapes = infer(&graph).unwrap();
        let total = s("past_sequence_length").add(&s("sequence_length")).unwrap();
        assert_eq!(shapes.shape("mask").unwrap(), &[s("batch_size"), total.clone()]);
        assert_eq!(shapes.shape(&sum).unwrap(), &[s("batch_size"), total]);
        let bind: HashMap<String, i64> =
            [("batch_size".to_string(), 2), ("past_sequence_length".to_string(), 3), ("sequence_length".to_string(), 5)].into();
        assert_eq!(shapes.bound_shape(&sum, &bind), Some(vec![2, 8]));
    }

    #[test]
    fn reshape_zero_and_minus_one() {
        let k = |v: i64| Dim::Known(v);
        let b = s("batch");
        let x = vec![b.clone(), k(8), k(4), k(4)];
        let r = reshape_dims(&x, &[b.clone(), k(-1)], false).unwrap();
        assert_eq!(r, vec![Some(b.clone()), Some(k(128))]);
        let r = reshape_dims(&x, &[k(0), k(2), k(-1), k(4)], false).unwrap();
        assert_eq!(r, vec![Some(b.clone()), Some(k(2)), Some(k(16)), Some(k(4))]);
        let r = reshape_dims(&x, &[k(-1), k(16)], false).unwrap();
        assert_eq!(r, vec![Some(b.mul(&k(8)).unwrap()), Some(k(16))]);
        assert!(reshape_dims(&[k(2), k(3)], &[k(4), k(-1)], false).is_err());
        assert!(reshape_dims(&[k(2), k(3)], &[k(5)], false).is_err());
        assert!(reshape_dims(&[k(2), k(3)], &[k(-1), k(-1)], false).is_err());
        // allowzero: 0 is a real size.
        assert_eq!(reshape_dims(&[k(0), k(3)], &[k(3), k(0)], true).unwrap(), vec![Some(k(3)), Some(k(0))]);
    }

    #[test]
    fn broadcasting() {
        let k = |v: i64| Dim::Known(v);
        let b = s("batch");
        assert_eq!(broadcast_shapes(&[&[b.clone(), k(1), k(4)], &[k(3), k(1)]]).unwrap(), vec![b.clone(), k(3), k(4)]);
        assert_eq!(broadcast_shapes(&[&[b.clone(), k(4)], &[k(1), k(4)]]).unwrap(), vec![b.clone(), k(4)]);
        let one = std::slice::from_ref(&b);
        assert_eq!(broadcast_shapes(&[one, one]).unwrap(), vec![b.clone()]);
        assert!(broadcast_shapes(&[&[k(2), k(4)], &[k(3), k(4)]]).is_err());
        assert_eq!(broadcast_shapes(&[&[], &[k(5)]]).unwrap(), vec![k(5)]);
    }

    #[test]
    fn slice_lengths() {
        let k = |v: i64| Dim::Known(v);
        assert_eq!(slice_len(&k(10), &k(2), &k(-1), 1), Ok(Some(k(7))));
        assert_eq!(slice_len(&k(10), &k(0), &k(i64::MAX), 3), Ok(Some(k(4))));
        assert_eq!(slice_len(&k(10), &k(-1), &k(i64::MIN), -1), Ok(Some(k(10))));
        assert_eq!(slice_len(&k(10), &k(20), &k(30), 1), Ok(Some(k(0))));
        assert_eq!(slice_len(&s("b"), &k(0), &k(i64::MAX), 1), Ok(Some(s("b"))));
        assert_eq!(slice_len(&s("b"), &k(0), &k(1_000_000_000), 1), Ok(Some(s("b"))));
        assert_eq!(slice_len(&s("b"), &k(2), &k(1_000_000_000), 1), Ok(Some(s("b").sub(&k(2)).unwrap())));
        assert_eq!(slice_len(&s("b"), &k(0), &k(480_000), 1), Ok(Some(k(480_000))));
        assert_eq!(slice_len(&s("b"), &k(0), &s("b"), 1), Ok(Some(s("b"))));
        // Huge steps and empty axes do not overflow or panic.
        assert_eq!(slice_len(&k(10), &k(0), &k(10), i64::MAX), Ok(Some(k(1))));
        assert_eq!(slice_len(&k(0), &k(0), &k(i64::MIN), -1), Ok(Some(k(0))));
        assert_eq!(slice_len(&s("b"), &k(1), &s("b"), 1).unwrap().unwrap().to_string(), "b-1");
        assert_eq!(slice_indices(5, -1, i64::MIN, -2), vec![4, 2, 0]);
    }
}
