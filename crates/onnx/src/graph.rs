//! The IR view the other crates use: nodes in topological order, the producer and
//! consumers of every value, initializers by name, constants, typed attributes.
//!
//! Building a [`Graph`] validates the structure: every value read must be produced
//! (by a graph input, an initializer or a node), no value may have two producers,
//! and the nodes must form no cycle. Errors name the node and value at fault.

use crate::error::Result;
use crate::model::Model;
use crate::proto::{attribute_proto::AttributeType, AttributeProto, GraphProto, NodeProto, TensorProto, ValueInfoProto};
use crate::tensor::Tensor;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

/// Where a value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Producer {
    /// The graph input at this index of `GraphProto.input`.
    Input(usize),
    /// The initializer at this index of `GraphProto.initializer`.
    Initializer(usize),
    /// Output `output` of the node at index `node` of `GraphProto.node`.
    Node {
        /// Node index in `GraphProto.node`.
        node: usize,
        /// Output position.
        output: usize,
    },
}

/// One reading of a value by a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Use {
    /// Node index in `GraphProto.node`.
    pub node: usize,
    /// Input position of that node.
    pub input: usize,
}

/// A validated, indexed view of a model's main graph.
pub struct Graph<'m> {
    /// The model (for reading weights and naming the file in errors).
    pub model: &'m Model,
    /// The graph message.
    pub proto: &'m GraphProto,
    order: Vec<usize>,
    deps: DiGraph<(), &'m str>,
    producers: HashMap<&'m str, Producer>,
    consumers: HashMap<&'m str, Vec<Use>>,
    value_info: HashMap<&'m str, &'m ValueInfoProto>,
}

/// Describes a node for error messages: `node 'name' (OpType)`.
pub fn node_label(node: &NodeProto) -> String {
    let name = node.name.as_deref().unwrap_or("");
    let op = node.op_type.as_deref().unwrap_or("?");
    if name.is_empty() {
        let first = node.output.first().map(String::as_str).unwrap_or("");
        format!("node producing '{first}' ({op})")
    } else {
        format!("node '{name}' ({op})")
    }
}

/// Describes a value's producer for error messages.
fn describe_producer(proto: &GraphProto, p: Producer) -> String {
    let name = |n: Option<&String>| n.map(String::as_str).unwrap_or("").to_string();
    match p {
        Producer::Input(i) => format!("graph input '{}'", name(proto.input.get(i).and_then(|v| v.name.as_ref()))),
        Producer::Initializer(i) => {
            format!("initializer '{}'", name(proto.initializer.get(i).and_then(|t| t.name.as_ref())))
        }
        Producer::Node { node, .. } => proto.node.get(node).map(node_label).unwrap_or_else(|| format!("node {node}")),
    }
}

impl<'m> Graph<'m> {
    /// Indexes and validates the main graph of `model`.
    pub fn new(model: &'m Model) -> Result<Graph<'m>> {
        let Some(proto) = model.proto.graph.as_ref() else {
            return Err(model.error("model", "has no graph"));
        };
        let mut producers: HashMap<&str, Producer> = HashMap::new();
        let mut add = |name: &'m str, p: Producer, what: String| -> Result<()> {
            if name.is_empty() {
                return Ok(());
            }
            match producers.insert(name, p) {
                // A graph input that is also an initializer (IR < 4 style default) is fine.
                Some(Producer::Input(_)) if matches!(p, Producer::Initializer(_)) => Ok(()),
                Some(first) => Err(model.error(
                    what,
                    format!(
                        "produces value '{name}', which {} already produces (every value must have one producer)",
                        describe_producer(proto, first)
                    ),
                )),
                None => Ok(()),
            }
        };
        for (i, v) in proto.input.iter().enumerate() {
            add(v.name.as_deref().unwrap_or(""), Producer::Input(i), format!("graph input '{}'", v.name.as_deref().unwrap_or("")))?;
        }
        for (i, t) in proto.initializer.iter().enumerate() {
            add(t.name.as_deref().unwrap_or(""), Producer::Initializer(i), format!("initializer '{}'", t.name.as_deref().unwrap_or("")))?;
        }
        for (i, n) in proto.node.iter().enumerate() {
            for (o, out) in n.output.iter().enumerate() {
                add(out, Producer::Node { node: i, output: o }, node_label(n))?;
            }
        }
        let mut consumers: HashMap<&str, Vec<Use>> = HashMap::new();
        for (i, n) in proto.node.iter().enumerate() {
            for (k, inp) in n.input.iter().enumerate() {
                if inp.is_empty() {
                    continue; // an omitted optional input
                }
                if !producers.contains_key(inp.as_str()) {
                    return Err(model.error(
                        node_label(n),
                        format!("reads value '{inp}' (input {k}), which no graph input, initializer or node produces"),
                    ));
                }
                consumers.entry(inp.as_str()).or_default().push(Use { node: i, input: k });
            }
        }
        for out in &proto.output {
            let name = out.name.as_deref().unwrap_or("");
            if !producers.contains_key(name) {
                return Err(model.error(format!("graph output '{name}'"), "is not produced by any node, input or initializer"));
            }
        }
        let deps = dependencies(proto, &producers);
        let order = topological_order(model, proto, &deps)?;
        let value_info = proto
            .value_info
            .iter()
            .chain(proto.input.iter())
            .chain(proto.output.iter())
            .filter_map(|v| v.name.as_deref().map(|n| (n, v)))
            .collect();
        Ok(Graph { model, proto, order, deps, producers, consumers, value_info })
    }

    /// Node indices in a topological order (stable: ties keep file order).
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// The dependency graph: petgraph node `i` is `proto.node[i]`, and each value a node reads
    /// from another node is an edge producer -> reader (in node and input order), weighted
    /// with the value's name.
    pub fn dependencies(&self) -> &DiGraph<(), &'m str> {
        &self.deps
    }

    /// Nodes in topological order, with their index.
    pub fn nodes(&self) -> impl Iterator<Item = (usize, &'m NodeProto)> + '_ {
        self.order.iter().map(move |&i| (i, &self.proto.node[i]))
    }

    /// The node at an index of `GraphProto.node`.
    pub fn node(&self, index: usize) -> &'m NodeProto {
        &self.proto.node[index]
    }

    /// Who produces a value.
    pub fn producer(&self, value: &str) -> Option<Producer> {
        self.producers.get(value).copied()
    }

    /// The node producing a value, if a node does.
    pub fn producer_node(&self, value: &str) -> Option<(usize, &'m NodeProto)> {
        match self.producer(value)? {
            Producer::Node { node, .. } => Some((node, &self.proto.node[node])),
            _ => None,
        }
    }

    /// Every reading of a value by a node.
    pub fn consumers(&self, value: &str) -> &[Use] {
        self.consumers.get(value).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether a value is a graph output.
    pub fn is_output(&self, value: &str) -> bool {
        self.proto.output.iter().any(|o| o.name.as_deref() == Some(value))
    }

    /// Whether `value` leaves the model: a graph output, or a branch's value that a
    /// merged decoder's `Branches` node gives out as one ([`crate::branches`]).
    pub fn is_result(&self, value: &str) -> bool {
        self.is_output(value) || self.results().iter().any(|(v, _)| v == value)
    }

    /// The values that leave the model, each with the graph output it leaves as: the graph
    /// outputs, a merged decoder's (made by a `Branches` node) replaced by the value of
    /// each branch ([`crate::branches`]).
    pub fn results(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut stack: Vec<(String, String)> =
            self.proto.output.iter().filter_map(|o| o.name.clone()).map(|n| (n.clone(), n)).rev().collect();
        while let Some((value, output)) = stack.pop() {
            let branches = match self.producer(&value) {
                Some(Producer::Node { node, output: k }) => {
                    let n = &self.proto.node[node];
                    let count = n.output.len();
                    let ok = crate::branches::is_branches(n) && n.input.len() == 1 + 2 * count;
                    ok.then(|| [n.input[1 + k].clone(), n.input[1 + count + k].clone()])
                }
                _ => None,
            };
            match branches {
                Some([a, b]) => {
                    stack.push((b, output.clone()));
                    stack.push((a, output));
                }
                None => out.push((value, output)),
            }
        }
        out
    }

    /// `value` before the `Cast` nodes that made it: the value a chain of Casts reads (a
    /// graph input of a file converted to float16 with its inputs kept in float32), or
    /// `value` itself.
    pub fn uncast<'s>(&'s self, value: &'s str) -> &'s str {
        let mut current = value;
        // A chain is short; the bound only guards against a malformed cyclic file.
        for _ in 0..self.proto.node.len() {
            match self.producer_node(current) {
                Some((_, n)) if n.op() == "Cast" && crate::op::default_domain(n) => match n.input.first() {
                    Some(x) if !x.is_empty() => current = x,
                    _ => break,
                },
                _ => break,
            }
        }
        current
    }

    /// `value` and the values `Cast` nodes make of it, directly or through other Casts (a
    /// file converted to float16 with its inputs and outputs kept in float32), in the
    /// order they are found (each after the value its Cast reads).
    pub fn with_casts(&self, value: &str) -> Vec<String> {
        let mut values = vec![value.to_string()];
        let mut k = 0;
        while let Some(v) = values.get(k).cloned() {
            k += 1;
            for u in self.consumers(&v) {
                let n = &self.proto.node[u.node];
                if n.op() == "Cast" && crate::op::default_domain(n) {
                    values.extend(n.output.first().cloned());
                }
            }
        }
        values
    }

    /// Whether `value` leaves the model ([`Graph::is_result`]) as it is or through a chain
    /// of `Cast` nodes ([`Graph::with_casts`]).
    pub fn reaches_result(&self, value: &str) -> bool {
        self.with_casts(value).iter().any(|v| self.is_result(v))
    }

    /// The past of a key/value cache: graph inputs (not initializers) that a `Concat`
    /// whose output reaches a result ([`Graph::reaches_result`]: the present) reads, as
    /// they are or through `Cast`s ([`Graph::uncast`]), each with the axis the Concat
    /// extends (the sequence), counted from 0. Inputs whose rank the file does not
    /// declare, or whose Concat axis is not valid for it, are left out.
    pub fn cache_inputs(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for vi in &self.proto.input {
            let Some(name) = vi.name.as_deref() else { continue };
            if self.initializer(name).is_some() {
                continue;
            }
            let rank = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
                Some(crate::proto::type_proto::Value::TensorType(t)) => t.shape.as_ref().map(|s| s.dim.len()),
                _ => None,
            };
            let Some(rank) = rank.and_then(|r| i64::try_from(r).ok()) else { continue };
            let values = self.with_casts(name);
            for u in values.iter().flat_map(|v| self.consumers(v)) {
                let node = &self.proto.node[u.node];
                if node.op() != "Concat" || !node.output.first().is_some_and(|o| self.reaches_result(o)) {
                    continue;
                }
                let Ok(Some(axis)) = node.attr_int("axis") else { continue };
                let axis = if axis < 0 { axis.saturating_add(rank) } else { axis };
                if let Some(axis) = usize::try_from(axis).ok().filter(|&a| (a as i64) < rank) {
                    out.insert(name.to_string(), axis);
                }
            }
        }
        out
    }

    /// The initializer named `name`.
    pub fn initializer(&self, name: &str) -> Option<&'m TensorProto> {
        match self.producer(name)? {
            Producer::Initializer(i) => Some(&self.proto.initializer[i]),
            Producer::Input(_) => self.proto.initializer.iter().find(|t| t.name.as_deref() == Some(name)),
            Producer::Node { .. } => None,
        }
    }

    /// Graph inputs that are real inputs (not initializers listed as inputs).
    pub fn real_inputs(&self) -> impl Iterator<Item = &'m ValueInfoProto> + '_ {
        let inits: HashSet<&str> = self.proto.initializer.iter().filter_map(|t| t.name.as_deref()).collect();
        self.proto.input.iter().filter(move |v| !inits.contains(v.name.as_deref().unwrap_or("")))
    }

    /// Whether `value` is a real graph input ([`Graph::real_inputs`]).
    pub fn is_real_input(&self, value: &str) -> bool {
        matches!(self.producer(value), Some(Producer::Input(_))) && self.initializer(value).is_none()
    }

    /// Declared type information of a value (graph input/output or `value_info`).
    pub fn value_info(&self, value: &str) -> Option<&'m ValueInfoProto> {
        self.value_info.get(value).copied()
    }

    /// The constant value of `value`: an initializer, or the output of a `Constant`
    /// node with a tensor (or scalar/list) attribute. `Ok(None)` when not constant.
    pub fn constant(&self, value: &str) -> Result<Option<Tensor>> {
        if let Some(t) = self.initializer(value) {
            return self.model.tensor(t).map(Some);
        }
        let Some((_, node)) = self.producer_node(value) else {
            return Ok(None);
        };
        if node.op_type.as_deref() != Some("Constant") {
            return Ok(None);
        }
        let Some(attr) = node.attribute.first() else {
            return Err(self.model.error(node_label(node), "Constant node has no value attribute"));
        };
        let t = match attr.name.as_deref().unwrap_or("") {
            "value" => match &attr.t {
                Some(t) => self.model.tensor(t)?,
                None => return Err(self.model.error(node_label(node), "attribute 'value' holds no tensor")),
            },
            "value_float" => Tensor::new(vec![], crate::TensorData::F32(vec![attr.f.unwrap_or(0.0)])).unwrap_or_else(|| unreachable!()),
            "value_floats" => Tensor { shape: vec![attr.floats.len()], data: crate::TensorData::F32(attr.floats.clone()) },
            "value_int" => Tensor { shape: vec![], data: crate::TensorData::I64(vec![attr.i.unwrap_or(0)]) },
            "value_ints" => Tensor::from_i64s(attr.ints.clone()),
            other => return Err(self.model.error(node_label(node), format!("Constant attribute '{other}' is not supported"))),
        };
        Ok(Some(t))
    }

    /// The constant integer values of `value` (a shape constant, axes list...), if constant.
    pub fn constant_ints(&self, value: &str) -> Result<Option<Vec<i64>>> {
        Ok(self.constant(value)?.and_then(|t| t.to_i64_vec()))
    }
}

/// An `Identity` node named `name` writing `input` as `output`.
pub(crate) fn identity(name: String, input: &str, output: &str) -> NodeProto {
    NodeProto {
        name: Some(name),
        op_type: Some("Identity".to_string()),
        input: vec![input.to_string()],
        output: vec![output.to_string()],
        ..Default::default()
    }
}

/// Adds to `out` every value name read inside the subgraphs (`If`, `Loop`, `Scan` bodies)
/// of `node`, at any depth, including the subgraphs' outputs: a subgraph may read (or
/// return) a value of the enclosing graph by name.
pub fn subgraph_reads(node: &NodeProto, out: &mut HashSet<String>) {
    fn graph_reads(g: &GraphProto, out: &mut HashSet<String>) {
        for n in &g.node {
            out.extend(n.input.iter().filter(|s| !s.is_empty()).cloned());
            subgraph_reads(n, out);
        }
        out.extend(g.output.iter().filter_map(|o| o.name.clone()));
    }
    for a in &node.attribute {
        for sub in a.g.iter().chain(a.graphs.iter()) {
            graph_reads(sub, out);
        }
    }
}

/// The values of the enclosing graph that `node`'s subgraphs read: [`subgraph_reads`]
/// less the values defined inside them (their inputs, initializers and node outputs, at
/// any depth; ONNX names are unique across a graph and its subgraphs).
pub fn outer_reads(node: &NodeProto) -> HashSet<String> {
    fn defined(g: &GraphProto, out: &mut HashSet<String>) {
        out.extend(g.input.iter().filter_map(|v| v.name.clone()));
        out.extend(g.initializer.iter().filter_map(|t| t.name.clone()));
        for n in &g.node {
            out.extend(n.output.iter().filter(|s| !s.is_empty()).cloned());
            for a in &n.attribute {
                for sub in a.g.iter().chain(a.graphs.iter()) {
                    defined(sub, out);
                }
            }
        }
    }
    let mut reads = HashSet::new();
    subgraph_reads(node, &mut reads);
    let mut inside = HashSet::new();
    for a in &node.attribute {
        for sub in a.g.iter().chain(a.graphs.iter()) {
            defined(sub, &mut inside);
        }
    }
    reads.retain(|v| !inside.contains(v));
    reads
}

/// The dependency graph: petgraph node `i` is `GraphProto.node[i]`, and each value a node reads
/// from another node is an edge producer -> reader weighted with the value's name.
fn dependencies<'m>(proto: &'m GraphProto, producers: &HashMap<&str, Producer>) -> DiGraph<(), &'m str> {
    let n = proto.node.len();
    let mut deps = DiGraph::with_capacity(n, n);
    for _ in 0..n {
        deps.add_node(());
    }
    for (i, node) in proto.node.iter().enumerate() {
        for inp in node.input.iter().filter(|s| !s.is_empty()) {
            if let Some(Producer::Node { node: p, .. }) = producers.get(inp.as_str()) {
                deps.add_edge(NodeIndex::new(*p), NodeIndex::new(i), inp.as_str());
            }
        }
    }
    deps
}

/// Kahn's algorithm over the dependency graph, with a min-heap of ready nodes so that ties keep
/// file order; a cycle is reported through the strongly connected components.
fn topological_order(model: &Model, proto: &GraphProto, deps: &DiGraph<(), &str>) -> Result<Vec<usize>> {
    let mut indegree: Vec<usize> = deps.node_indices().map(|v| deps.edges_directed(v, Direction::Incoming).count()).collect();
    let mut ready: BinaryHeap<Reverse<usize>> = (0..indegree.len()).filter(|&i| indegree[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(indegree.len());
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for e in deps.edges_directed(NodeIndex::new(i), Direction::Outgoing) {
            let d = e.target().index();
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.push(Reverse(d));
            }
        }
    }
    if order.len() < indegree.len() {
        return Err(cycle_error(model, proto, deps));
    }
    Ok(order)
}

/// Describes a cycle: among the strongly connected components that hold one (more than one node,
/// or a node reading its own output), the one with the earliest node in file order; from that
/// node, the shortest walk back along the values read within the component closes the cycle.
fn cycle_error(model: &Model, proto: &GraphProto, deps: &DiGraph<(), &str>) -> crate::OnnxError {
    let cyclic = tarjan_scc(deps)
        .into_iter()
        .filter(|c| c.len() > 1 || c.iter().any(|&v| deps.contains_edge(v, v)))
        .min_by_key(|c| c.iter().min().copied());
    let Some((component, start)) = cyclic.and_then(|c| c.iter().min().copied().map(|s| (c, s))) else {
        return model.error("graph", "the nodes form a cycle: the graph must be acyclic");
    };
    let inside: HashSet<NodeIndex> = component.into_iter().collect();
    // Breadth first along reads: `reached[p] = (r, v)` when `r` reads value `v` from `p`.
    let mut reached: HashMap<NodeIndex, (NodeIndex, &str)> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    let mut closing = None;
    'search: while let Some(reader) = queue.pop_front() {
        for e in deps.edges_directed(reader, Direction::Incoming) {
            let p = e.source();
            if p == start {
                closing = Some((reader, *e.weight()));
                break 'search;
            }
            if inside.contains(&p) && !reached.contains_key(&p) {
                reached.insert(p, (reader, *e.weight()));
                queue.push_back(p);
            }
        }
    }
    let label = |v: NodeIndex| proto.node.get(v.index()).map(node_label).unwrap_or_else(|| format!("node {}", v.index()));
    let Some((last, value)) = closing else {
        return model.error(label(start), "is part of a cycle: the graph must be acyclic");
    };
    // Reads from `start` back to `last`, then `last` reads from `start`.
    let mut reads = vec![(last, value)];
    let mut at = last;
    while at != start {
        let Some(&(reader, v)) = reached.get(&at) else { break };
        reads.push((reader, v));
        at = reader;
    }
    reads.reverse();
    let mut path = label(start);
    for (k, &(_, v)) in reads.iter().enumerate() {
        let from = reads.get(k + 1).map_or(start, |&(r, _)| r);
        let which = if k == 0 { "" } else { ", which" };
        path.push_str(&format!("{which} reads '{v}' from {}", label(from)));
    }
    let first = reads.first().map_or(value, |&(_, v)| v);
    model.error(label(start), format!("reads value '{first}', which depends on this node's own output (the graph must be acyclic): {path}"))
}

/// Typed attribute access with defaults. Getters return `Err` (naming the node) when
/// the attribute exists with another type.
pub trait NodeExt {
    /// The attribute named `name`.
    fn attr(&self, name: &str) -> Option<&AttributeProto>;
    /// The operator type (`""` if unset).
    fn op(&self) -> &str;
    /// An `INT` attribute.
    fn attr_int(&self, name: &str) -> std::result::Result<Option<i64>, String>;
    /// An `INTS` attribute.
    fn attr_ints(&self, name: &str) -> std::result::Result<Option<Vec<i64>>, String>;
    /// A `FLOAT` attribute.
    fn attr_float(&self, name: &str) -> std::result::Result<Option<f32>, String>;
    /// A `FLOATS` attribute.
    fn attr_floats(&self, name: &str) -> std::result::Result<Option<Vec<f32>>, String>;
    /// A `STRING` attribute (lossy UTF-8).
    fn attr_string(&self, name: &str) -> std::result::Result<Option<String>, String>;
    /// A `TENSOR` attribute.
    fn attr_tensor(&self, name: &str) -> std::result::Result<Option<&TensorProto>, String>;
    /// An `INT` attribute or a default.
    fn attr_int_or(&self, name: &str, default: i64) -> std::result::Result<i64, String> {
        Ok(self.attr_int(name)?.unwrap_or(default))
    }
    /// A `FLOAT` attribute or a default.
    fn attr_float_or(&self, name: &str, default: f32) -> std::result::Result<f32, String> {
        Ok(self.attr_float(name)?.unwrap_or(default))
    }
}

fn typed<'a>(node: &'a NodeProto, name: &str, want: AttributeType) -> std::result::Result<Option<&'a AttributeProto>, String> {
    match node.attribute.iter().find(|a| a.name.as_deref() == Some(name)) {
        None => Ok(None),
        Some(a) => {
            let ty = a.r#type.unwrap_or(0);
            if ty != want as i32 {
                let got = AttributeType::try_from(ty).map(|t| t.as_str_name()).unwrap_or("unknown");
                Err(format!("attribute '{name}' has type {got}, expected {}", want.as_str_name()))
            } else {
                Ok(Some(a))
            }
        }
    }
}

impl NodeExt for NodeProto {
    fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.attribute.iter().find(|a| a.name.as_deref() == Some(name))
    }
    fn op(&self) -> &str {
        self.op_type.as_deref().unwrap_or("")
    }
    fn attr_int(&self, name: &str) -> std::result::Result<Option<i64>, String> {
        Ok(typed(self, name, AttributeType::Int)?.map(|a| a.i.unwrap_or(0)))
    }
    fn attr_ints(&self, name: &str) -> std::result::Result<Option<Vec<i64>>, String> {
        Ok(typed(self, name, AttributeType::Ints)?.map(|a| a.ints.clone()))
    }
    fn attr_float(&self, name: &str) -> std::result::Result<Option<f32>, String> {
        Ok(typed(self, name, AttributeType::Float)?.map(|a| a.f.unwrap_or(0.0)))
    }
    fn attr_floats(&self, name: &str) -> std::result::Result<Option<Vec<f32>>, String> {
        Ok(typed(self, name, AttributeType::Floats)?.map(|a| a.floats.clone()))
    }
    fn attr_string(&self, name: &str) -> std::result::Result<Option<String>, String> {
        Ok(typed(self, name, AttributeType::String)?.map(|a| String::from_utf8_lossy(a.s.as_deref().unwrap_or(&[])).into_owned()))
    }
    fn attr_tensor(&self, name: &str) -> std::result::Result<Option<&TensorProto>, String> {
        Ok(typed(self, name, AttributeType::Tensor)?.and_then(|a| a.t.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{known_dims, GraphBuilder};

    /// A model of Relu/Add nodes in the given file order, `(op, inputs, output)`, on input `x`.
    fn model(nodes: &[(&str, &[&str], &str)], output: &str) -> Result<Model> {
        let mut b = GraphBuilder::new("order");
        b.input_f32("x", &known_dims(&[2]));
        for (op, inputs, out) in nodes {
            b.node(op, inputs, &[out]);
        }
        b.output_f32(output, &known_dims(&[2]));
        Model::from_proto(b.proto(), "order.onnx", None)
    }

    #[test]
    fn order_is_topological_with_ties_in_file_order() {
        let m = model(&[("Relu", &["b"], "c"), ("Relu", &["x"], "a"), ("Relu", &["a"], "b"), ("Relu", &["x"], "d")], "c").unwrap();
        let g = Graph::new(&m).unwrap();
        // Ready at first: nodes 1 and 3; 1 frees 2, which frees 0, which comes before 3.
        assert_eq!(g.order(), [1, 2, 0, 3]);
        assert_eq!(g.dependencies().edge_count(), 2);
    }

    #[test]
    fn a_cycle_names_every_node_and_value_in_it() {
        let nodes: &[(&str, &[&str], &str)] =
            &[("Relu", &["x"], "a"), ("Add", &["a", "d"], "b"), ("Relu", &["b"], "c"), ("Relu", &["c"], "d"), ("Relu", &["a"], "e")];
        let m = model(nodes, "e").unwrap();
        let err = Graph::new(&m).map(|_| ()).unwrap_err().to_string();
        let label = |i: usize| node_label(&m.proto.graph.as_ref().unwrap().node[i]);
        let (add, c, d) = (label(1), label(2), label(3));
        let path = format!("{add} reads 'd' from {d}, which reads 'c' from {c}, which reads 'b' from {add}");
        assert!(err.contains(&path) && err.contains("reads value 'd'") && err.contains("acyclic"), "{err}");
        assert!(!err.contains(&label(0)) && !err.contains(&label(4)), "only the cycle's nodes: {err}");
    }
}
