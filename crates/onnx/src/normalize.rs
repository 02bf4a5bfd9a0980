//! Normalization: the one pass every command runs right after loading, so that the
//! later stages see the same graph whichever exporter wrote the file.
//!
//! Exporters write parameters in many forms: `Constant` nodes, weights reached through
//! `Transpose`/`Unsqueeze`/`Cast` of initializers, integer subgraphs computing shape
//! lists, an `Identity` of another initializer where the TorchScript exporter merged
//! two equal values, initializers also listed as graph inputs (IR < 4), the variadic
//! `Sum`. [`normalize`] rewrites them, exactly:
//!
//! 1. `Constant` nodes (`value`, `value_float(s)`, `value_int(s)`) become initializers
//!    named by their output (string and sparse constants are left as they are);
//! 2. initializers listed as graph inputs are removed from the inputs (they are weights;
//!    for IR >= 4 files [`NormalizeOptions::keep_overridable_inputs`] keeps them);
//! 3. `Sum` becomes a chain of `Add` (one input: `Identity`), `Max`/`Min` of more than
//!    two inputs a chain of binary ones; the last node keeps the output's name;
//! 4. nodes computed from initializers alone are folded into initializers: the data
//!    moves (`Identity`, `Reshape`, `Squeeze`, `Unsqueeze`, `Flatten`, `Transpose`,
//!    `Cast`, `CastLike`, `Gather`, `Slice`, `Concat`) whatever their size, `Shape` and
//!    `Size` of a constant, and small (up to 65536 elements) `ConstantOfShape`,
//!    `Expand`, `Where` and integer arithmetic, with the interpreter shape inference
//!    folds with ([`crate::shape`]). Every opset form is read through [`crate::ops`].
//!    An `Identity` of an initializer becomes its own initializer (a copy when the
//!    source is read elsewhere too): the exporters' de-duplication of equal values is
//!    not weight sharing. Other folds never copy a float initializer that something
//!    else also reads (one initializer read by several nodes is real weight tying);
//! 5. initializers only the folded nodes read are removed, and nodes are written in
//!    topological order.
//!
//! Graph inputs and outputs, opset imports, metadata, doc strings and the `value_info`
//! of surviving values are kept; a value that is a graph output is never folded. IR 3
//! files whose initializers are no longer all inputs are marked IR 4 (the one change
//! IR 4 made). Subgraphs (`If`, `Loop` bodies) are left as they are, and every value
//! they read from the main graph stays.

use crate::error::Result;
use crate::graph::{subgraph_reads, Graph, NodeExt};
use crate::model::Model;
use crate::proto::{GraphProto, NodeProto, TensorProto};
use crate::shape::{self, Shapes, FOLD_LIMIT};
use crate::tensor::{checked_numel, shape_of, DType, Tensor, TensorData};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Choices of [`normalize`].
#[derive(Debug, Clone, Default)]
pub struct NormalizeOptions {
    /// IR >= 4 files may list an initializer as a graph input too: a default value the
    /// caller may override. By default such an input is removed and the initializer
    /// treated as a weight (and counted in [`Summary::initializer_inputs`]); with this
    /// set it stays an input and nothing computed from it is folded. IR < 4 files list
    /// every initializer as an input, so there they are always removed.
    pub keep_overridable_inputs: bool,
}

/// What [`normalize`] rewrote, counted per rewrite.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// `Constant` nodes turned into initializers.
    pub constants_lifted: usize,
    /// `Constant` nodes left as they are (strings, sparse values, graph outputs).
    pub constants_kept: usize,
    /// Initializers removed from the graph inputs (they are weights).
    pub initializer_inputs: usize,
    /// Initializers kept as overridable graph inputs ([`NormalizeOptions::keep_overridable_inputs`]).
    pub overridable_inputs: usize,
    /// `Sum` nodes rewritten as `Add` chains.
    pub sums: usize,
    /// `Max`/`Min` nodes of more than two inputs rewritten as chains of binary ones.
    pub variadic: usize,
    /// `Identity` nodes of an initializer replaced by an initializer of their own.
    pub identities: usize,
    /// Other nodes computed from initializers alone, folded into initializers.
    pub folded: usize,
    /// Initializers removed because only folded nodes read them.
    pub dead_initializers: usize,
    /// Whether the nodes were reordered into a topological order.
    pub reordered: bool,
    /// `(from, to)` when the IR version was raised (IR 3 files with initializers that
    /// are not inputs any more).
    pub ir_version_raised: Option<(i64, i64)>,
}

impl Summary {
    /// Whether the pass left the model as it was.
    pub fn is_noop(&self) -> bool {
        self == &Summary { constants_kept: self.constants_kept, overridable_inputs: self.overridable_inputs, ..Summary::default() }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        let mut count = |n: usize, what: &str| {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        };
        count(self.constants_lifted, "Constant nodes made initializers");
        count(self.initializer_inputs, "initializers removed from the graph inputs (treated as weights)");
        count(self.sums, "Sum nodes rewritten as Add");
        count(self.variadic, "Max/Min nodes split into binary ones");
        count(self.identities, "Identity nodes of initializers made initializers of their own");
        count(self.folded, "constant nodes folded into initializers");
        count(self.dead_initializers, "unused initializers removed");
        count(self.constants_kept, "Constant nodes kept (strings, sparse values or graph outputs)");
        count(self.overridable_inputs, "initializers kept as overridable graph inputs");
        if self.reordered {
            parts.push("nodes sorted topologically".into());
        }
        if let Some((from, to)) = self.ir_version_raised {
            parts.push(format!("IR version {from} -> {to}"));
        }
        if parts.is_empty() {
            write!(f, "nothing to normalize")
        } else {
            write!(f, "{}", parts.join(", "))
        }
    }
}

/// Loads a model file and normalizes it with the default options: what every command
/// and the trainer read a model through.
pub fn load(path: impl AsRef<Path>) -> Result<(Model, Summary)> {
    normalize(Model::load(path)?, &NormalizeOptions::default())
}

/// Normalizes `model` (see the module documentation). Returns the model unchanged
/// (the same value) when there is nothing to rewrite.
pub fn normalize(model: Model, options: &NormalizeOptions) -> Result<(Model, Summary)> {
    let mut summary = Summary::default();
    let name = model.path().to_string_lossy().into_owned();
    let base = model.base_dir().map(Path::to_path_buf);
    let ir = model.proto.ir_version.unwrap_or(0);

    // Rewrites that need no graph view.
    let mut proto = model.proto.clone();
    let Some(graph) = proto.graph.as_mut() else {
        return Err(model.error("model", "has no graph"));
    };
    let outputs: HashSet<String> = graph.output.iter().filter_map(|o| o.name.clone()).collect();
    lift_constants(&model, graph, &outputs, &mut summary)?;
    let overridable = initializer_inputs(graph, ir, options, &mut summary);
    rewrite_variadic(graph, &mut summary);

    // Folding, on a validated view of the model so far.
    let staged = Model::from_proto(proto, &name, base.clone())?;
    let plan = {
        let view = Graph::new(&staged)?;
        let shapes = shape::infer(&view)?;
        Folder::new(&staged, &view, &shapes, &overridable).plan()?
    };
    let mut proto = staged.proto;
    let Some(graph) = proto.graph.as_mut() else {
        return Err(model.error("model", "has no graph"));
    };
    plan.apply(graph, &mut summary);
    if ir < 4 && graph.initializer.iter().any(|t| !graph.input.iter().any(|i| i.name == t.name)) {
        proto.ir_version = Some(4);
        summary.ir_version_raised = Some((ir, 4));
    }

    let mut out = Model::from_proto(proto, &name, base.clone())?;
    let order = Graph::new(&out)?.order().to_vec();
    if order.iter().enumerate().any(|(i, &k)| i != k) {
        let mut proto = out.proto;
        if let Some(g) = proto.graph.as_mut() {
            let mut nodes: Vec<Option<NodeProto>> = std::mem::take(&mut g.node).into_iter().map(Some).collect();
            g.node = order.iter().filter_map(|&k| nodes.get_mut(k).and_then(Option::take)).collect();
        }
        summary.reordered = true;
        out = Model::from_proto(proto, &name, base)?;
    }
    if summary.is_noop() {
        return Ok((model, summary));
    }
    Ok((out, summary))
}

fn is_default_domain(node: &NodeProto) -> bool {
    matches!(node.domain.as_deref().unwrap_or(""), "" | "ai.onnx")
}

/// Turns `Constant` nodes into initializers named by their output.
fn lift_constants(model: &Model, graph: &mut GraphProto, outputs: &HashSet<String>, summary: &mut Summary) -> Result<()> {
    let mut kept = Vec::with_capacity(graph.node.len());
    for node in std::mem::take(&mut graph.node) {
        if node.op() != "Constant" || !is_default_domain(&node) {
            kept.push(node);
            continue;
        }
        match constant_initializer(model, &node, outputs)? {
            Some(t) => {
                graph.initializer.push(t);
                summary.constants_lifted += 1;
            }
            None => {
                summary.constants_kept += 1;
                kept.push(node);
            }
        }
    }
    graph.node = kept;
    Ok(())
}

/// The initializer a `Constant` node stands for; `None` for the forms kept as nodes
/// (strings, sparse values, a graph output, a malformed node left for later stages).
fn constant_initializer(model: &Model, node: &NodeProto, outputs: &HashSet<String>) -> Result<Option<TensorProto>> {
    let [out] = node.output.as_slice() else { return Ok(None) };
    let [attr] = node.attribute.as_slice() else { return Ok(None) };
    if out.is_empty() || outputs.contains(out) {
        return Ok(None);
    }
    fn read<T>(model: &Model, node: &NodeProto, r: std::result::Result<T, String>) -> Result<T> {
        r.map_err(|m| model.error(crate::graph::node_label(node), m))
    }
    let scalar = |data: TensorData| Tensor { shape: vec![], data };
    let list = |data: TensorData| Tensor { shape: vec![data.len()], data };
    let tensor = match attr.name.as_deref().unwrap_or("") {
        "value" => {
            let Some(t) = read(model, node, node.attr_tensor("value"))? else {
                return Err(model.error(crate::graph::node_label(node), "attribute 'value' holds no tensor"));
            };
            let mut t = t.clone();
            t.name = Some(out.clone());
            return Ok(Some(t));
        }
        "value_float" => scalar(TensorData::F32(vec![read(model, node, node.attr_float("value_float"))?.unwrap_or(0.0)])),
        "value_floats" => list(TensorData::F32(read(model, node, node.attr_floats("value_floats"))?.unwrap_or_default())),
        "value_int" => scalar(TensorData::I64(vec![read(model, node, node.attr_int("value_int"))?.unwrap_or(0)])),
        "value_ints" => list(TensorData::I64(read(model, node, node.attr_ints("value_ints"))?.unwrap_or_default())),
        _ => return Ok(None),
    };
    Ok(Some(tensor.to_proto(out)))
}

/// Removes initializers from the graph inputs (IR < 4 files list them all), unless the
/// options keep them in an IR >= 4 file; returns the names kept as overridable inputs.
fn initializer_inputs(graph: &mut GraphProto, ir: i64, options: &NormalizeOptions, summary: &mut Summary) -> HashSet<String> {
    let inits: HashSet<&str> = graph.initializer.iter().filter_map(|t| t.name.as_deref()).collect();
    let listed: HashSet<String> =
        graph.input.iter().filter_map(|v| v.name.as_deref()).filter(|n| inits.contains(n)).map(str::to_string).collect();
    if listed.is_empty() {
        return HashSet::new();
    }
    if ir >= 4 && options.keep_overridable_inputs {
        summary.overridable_inputs = listed.len();
        return listed;
    }
    graph.input.retain(|v| !v.name.as_ref().is_some_and(|n| listed.contains(n)));
    summary.initializer_inputs = listed.len();
    HashSet::new()
}

/// Names not yet used in a graph, for the values and nodes a rewrite adds.
struct Names(HashSet<String>);

impl Names {
    fn of(graph: &GraphProto) -> Names {
        let mut used: HashSet<String> = HashSet::new();
        used.extend(graph.input.iter().chain(&graph.output).chain(&graph.value_info).filter_map(|v| v.name.clone()));
        used.extend(graph.initializer.iter().filter_map(|t| t.name.clone()));
        for n in &graph.node {
            used.extend(n.input.iter().chain(&n.output).cloned());
            used.extend(n.name.clone());
        }
        Names(used)
    }

    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1usize;
        while self.0.contains(&name) {
            k += 1;
            name = format!("{base}_{k}");
        }
        self.0.insert(name.clone());
        name
    }
}

/// Rewrites `Sum` as a chain of `Add` and `Max`/`Min` of more than two inputs as chains
/// of binary nodes (exact: the same operations in the same order).
fn rewrite_variadic(graph: &mut GraphProto, summary: &mut Summary) {
    let wanted = |n: &NodeProto| {
        let ok = is_default_domain(n) && n.output.len() == 1 && !n.input.is_empty() && n.input.iter().all(|i| !i.is_empty());
        ok && (n.op() == "Sum" || matches!(n.op(), "Max" | "Min") && n.input.len() > 2)
    };
    if !graph.node.iter().any(wanted) {
        return;
    }
    let mut names = Names::of(graph);
    let mut out = Vec::with_capacity(graph.node.len());
    for node in std::mem::take(&mut graph.node) {
        if !wanted(&node) {
            out.push(node);
            continue;
        }
        let (binary, counter) = match node.op() {
            "Sum" => ("Add", &mut summary.sums),
            op => (if op == "Max" { "Max" } else { "Min" }, &mut summary.variadic),
        };
        *counter += 1;
        let like = |op: &str, input: Vec<String>, output: String, name: Option<String>| {
            let mut n = node.clone();
            n.op_type = Some(op.to_string());
            n.input = input;
            n.output = vec![output];
            n.name = name;
            n.attribute.clear();
            n
        };
        let result = node.output[0].clone();
        if node.input.len() == 1 {
            out.push(like("Identity", node.input.clone(), result, node.name.clone()));
            continue;
        }
        let mut acc = node.input[0].clone();
        let last = node.input.len() - 1;
        for (k, x) in node.input.iter().enumerate().skip(1) {
            let (value, name) = if k == last {
                (result.clone(), node.name.clone())
            } else {
                let stem = node.name.as_deref().filter(|s| !s.is_empty()).unwrap_or(&result).to_string();
                (names.fresh(&format!("{result}_{binary}{k}")), Some(names.fresh(&format!("{stem}_{binary}{k}"))))
            };
            out.push(like(binary, vec![acc, x.clone()], value.clone(), name));
            acc = value;
        }
    }
    graph.node = out;
}

/// How a foldable operator is folded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Same elements, new shape: the initializer is copied as it is stored.
    Reshape,
    /// Moves or converts elements exactly: folded whatever the size.
    Move,
    /// Reads only the input's shape.
    Meta,
    /// Creates or selects elements exactly: folded when the result is small.
    Small,
    /// Integer arithmetic: folded when every operand is an integer and the result small.
    Integer,
}

fn kind(op: &str) -> Option<Kind> {
    Some(match op {
        "Identity" | "Reshape" | "Squeeze" | "Unsqueeze" | "Flatten" => Kind::Reshape,
        "Transpose" | "Cast" | "CastLike" | "Gather" | "Slice" | "Concat" => Kind::Move,
        "Shape" | "Size" => Kind::Meta,
        "ConstantOfShape" | "Expand" | "Where" => Kind::Small,
        "Add" | "Sub" | "Mul" | "Div" | "Mod" | "Max" | "Min" | "Neg" | "Abs" | "Sign" | "Equal" | "Less" | "Greater" | "LessOrEqual"
        | "GreaterOrEqual" | "Not" | "And" | "Or" | "Xor" | "Range" => Kind::Integer,
        _ => return None,
    })
}

fn is_integer(d: DType) -> bool {
    !d.is_float()
}

/// Decides, in topological order, which nodes fold and into what.
struct Folder<'a, 'm> {
    model: &'a Model,
    graph: &'a Graph<'m>,
    shapes: &'a Shapes,
    overridable: &'a HashSet<String>,
    /// Values read inside subgraphs: shared with the subgraph, never copied.
    outer_reads: HashSet<String>,
    /// Initializers made so far, by value name.
    made: HashMap<String, TensorProto>,
}

/// The folds decided: what [`Plan::apply`] does to the graph.
struct Plan {
    folded: HashSet<usize>,
    made: Vec<TensorProto>,
    /// Values read by folded nodes: removed when nothing else reads them.
    read: HashSet<String>,
    identities: usize,
    others: usize,
}

impl<'a, 'm> Folder<'a, 'm> {
    fn new(model: &'a Model, graph: &'a Graph<'m>, shapes: &'a Shapes, overridable: &'a HashSet<String>) -> Self {
        let mut outer_reads = HashSet::new();
        for n in &graph.proto.node {
            subgraph_reads(n, &mut outer_reads);
        }
        Folder { model, graph, shapes, overridable, outer_reads, made: HashMap::new() }
    }

    /// The initializer holding `value`, if it is a constant (not an overridable input).
    fn constant(&self, value: &str) -> Option<&TensorProto> {
        if let Some(t) = self.made.get(value) {
            return Some(t);
        }
        if self.overridable.contains(value) {
            return None;
        }
        self.graph.initializer(value)
    }

    fn plan(mut self) -> Result<Plan> {
        let mut plan = Plan { folded: HashSet::new(), made: Vec::new(), read: HashSet::new(), identities: 0, others: 0 };
        for (i, node) in self.graph.nodes() {
            let Some(t) = self.fold(node)? else { continue };
            plan.folded.insert(i);
            plan.read.extend(node.input.iter().filter(|s| !s.is_empty()).cloned());
            if node.op() == "Identity" {
                plan.identities += 1;
            } else {
                plan.others += 1;
            }
            plan.made.push(t.clone());
            self.made.insert(node.output[0].clone(), t);
        }
        Ok(plan)
    }

    /// The initializer `node` folds into, or `None` when it does not fold.
    fn fold(&self, node: &NodeProto) -> Result<Option<TensorProto>> {
        let op = node.op();
        let Some(kind) = kind(op) else { return Ok(None) };
        let [out] = node.output.as_slice() else { return Ok(None) };
        if !is_default_domain(node) || out.is_empty() || self.graph.is_output(out) || node.input.first().is_none_or(String::is_empty) {
            return Ok(None);
        }
        let mut inputs: Vec<Option<&TensorProto>> = Vec::with_capacity(node.input.len());
        for name in &node.input {
            if name.is_empty() {
                inputs.push(None);
                continue;
            }
            match self.constant(name) {
                Some(t) => inputs.push(Some(t)),
                None => return Ok(None),
            }
        }
        let (Some(dtype), Some(dims)) = (self.shapes.dtype(out), self.shapes.static_shape(out)) else { return Ok(None) };
        let Some(out_shape) = dims.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<Vec<usize>>>() else { return Ok(None) };
        let Ok(numel) = checked_numel(&out_shape) else { return Ok(None) };
        let input_types: Option<Vec<DType>> = inputs.iter().flatten().map(|t| DType::from_onnx(t.data_type.unwrap_or(0))).collect();
        let small = numel <= FOLD_LIMIT;
        let fits = match kind {
            Kind::Reshape | Kind::Move | Kind::Meta => true,
            Kind::Small => small,
            Kind::Integer => small && is_integer(dtype) && input_types.as_ref().is_some_and(|ts| ts.iter().all(|&d| is_integer(d))),
        };
        if !fits {
            return Ok(None);
        }
        // A copy of a float initializer that something else reads too would untie a
        // shared weight (Identity excepted: see the module documentation).
        if op != "Identity" && kind != Kind::Meta {
            for (name, t) in node.input.iter().zip(&inputs) {
                let Some(t) = t else { continue };
                let float = DType::from_onnx(t.data_type.unwrap_or(0)).is_some_and(DType::is_float);
                let shared = self.graph.consumers(name).len() != 1 || self.graph.is_output(name) || self.outer_reads.contains(name);
                if float && shared {
                    return Ok(None);
                }
            }
        }
        let tensor = match kind {
            Kind::Reshape => {
                let Some(Some(src)) = inputs.first() else { return Ok(None) };
                let same_count = shape_of(src).ok().and_then(|s| checked_numel(&s).ok()) == Some(numel);
                if !same_count || DType::from_onnx(src.data_type.unwrap_or(0)) != Some(dtype) {
                    return Ok(None);
                }
                let mut t = (*src).clone();
                t.name = Some(out.clone());
                t.dims = dims;
                t.doc_string = None;
                return Ok(Some(t));
            }
            Kind::Meta => match self.shapes.shape_value(out).map(|v| v.iter().map(|d| d.known()).collect::<Option<Vec<i64>>>()) {
                Some(Some(v)) => Tensor::new(out_shape.clone(), TensorData::I64(v)),
                _ => None,
            },
            _ => match self.shapes.constants.get(out) {
                Some(t) => Some(t.clone()),
                None => {
                    let mut values = Vec::with_capacity(inputs.len());
                    for t in &inputs {
                        values.push(match t {
                            Some(t) if DType::from_onnx(t.data_type.unwrap_or(0)).is_some() => Some(self.model.tensor(t)?),
                            Some(_) => return Ok(None),
                            None => None,
                        });
                    }
                    shape::eval_node(self.graph, node, &values, &out_shape, dtype, self.shapes)
                }
            },
        };
        Ok(tensor.filter(|t| t.shape == out_shape && t.dtype() == dtype).map(|t| t.to_proto(out)))
    }
}

impl Plan {
    /// Removes the folded nodes, adds their initializers, and drops the initializers
    /// and declared types nothing reads any more.
    fn apply(self, graph: &mut GraphProto, summary: &mut Summary) {
        summary.identities = self.identities;
        summary.folded = self.others;
        if self.folded.is_empty() {
            return;
        }
        let mut index = 0usize;
        graph.node.retain(|_| {
            index += 1;
            !self.folded.contains(&(index - 1))
        });
        let mut live: HashSet<String> = graph.output.iter().chain(&graph.input).filter_map(|v| v.name.clone()).collect();
        for n in &graph.node {
            live.extend(n.input.iter().filter(|s| !s.is_empty()).cloned());
            subgraph_reads(n, &mut live);
        }
        let dead = |t: &TensorProto| t.name.as_ref().is_some_and(|n| self.read.contains(n) && !live.contains(n));
        let before = graph.initializer.len();
        graph.initializer.retain(|t| !dead(t));
        summary.dead_initializers = before - graph.initializer.len();
        graph.initializer.extend(self.made.into_iter().filter(|t| !dead(t)));
        let mut produced: HashSet<String> = graph.initializer.iter().filter_map(|t| t.name.clone()).collect();
        produced.extend(graph.input.iter().filter_map(|v| v.name.clone()));
        produced.extend(graph.node.iter().flat_map(|n| n.output.iter().cloned()));
        graph.value_info.retain(|v| v.name.as_ref().is_some_and(|n| produced.contains(n)));
    }
}
