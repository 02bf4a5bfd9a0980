//! Models whose caller chooses a branch: a merged decoder.
//!
//! Hugging Face Optimum writes a decoder with a key/value cache as one file,
//! `decoder_model_merged.onnx` (the default layout of its Whisper and encoder-decoder
//! exports, of its decoders before optimum 1.14, and of transformers.js models): one `If`
//! on the boolean graph input `use_cache_branch` holds the whole model twice, the first
//! pass without the cache in one branch and the later passes reading it in the other,
//! both reading the same weights from the main graph. The analysis, construction and
//! every rewrite work on one graph, so [`flatten`] (a step of normalization) writes such
//! an `If` as the nodes of both branches in the main graph, renamed apart where their
//! names collide, whose results meet in one [`BRANCHES`] node of the [`DOMAIN`] domain:
//! inputs `cond, then_1..then_k, else_1..else_k`, outputs the `If`'s. A channel is then
//! cut in both branches at once, as the weights they share require.
//!
//! That node is oto's own: [`nest`], which every serialization of a model runs
//! ([`crate::Model::to_bytes`], [`crate::Model::save`]), writes it back as the `If` it was,
//! each branch holding the nodes only its results need (nodes both need stay in the
//! main graph, which both branches read), so every file oto writes is a model onnxruntime
//! runs with the same inputs as the original. Training and evaluation run one branch:
//! [`specialize`] keeps the branch that reads the fewest graph inputs (a decoder's first
//! pass, without the cache inputs) as a model of its own.

use crate::error::Result;
use crate::graph::{identity, NodeExt};
use crate::model::Model;
use crate::proto::{type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TypeProto, ValueInfoProto};
use std::collections::{HashMap, HashSet};

/// The domain of [`BRANCHES`].
pub const DOMAIN: &str = "ai.oto";

/// The operator a flattened `If` becomes (see the module documentation).
pub const BRANCHES: &str = "Branches";

/// Whether `node` is a [`BRANCHES`] node.
pub fn is_branches(node: &NodeProto) -> bool {
    node.domain.as_deref() == Some(DOMAIN) && node.op() == BRANCHES
}

/// Whether the model holds a flattened `If` (see [`flatten`]).
pub fn has_branches(proto: &ModelProto) -> bool {
    proto.graph.as_ref().is_some_and(|g| g.node.iter().any(is_branches))
}

/// The graph inputs choosing the branches of a flattened `If` (a merged decoder's
/// `use_cache_branch`), one per [`BRANCHES`] node, in graph order.
pub fn conditions(proto: &ModelProto) -> Vec<String> {
    proto.graph.iter().flat_map(|g| &g.node).filter(|n| is_branches(n)).filter_map(|n| n.input.first().cloned()).collect()
}

/// Names not yet used in a graph, for the values and nodes a rewrite adds.
pub(crate) struct Names(HashSet<String>);

impl Names {
    /// Every name `graph` uses: inputs, outputs, value infos, initializers, node names and values.
    pub(crate) fn of(graph: &GraphProto) -> Names {
        let mut used: HashSet<String> = HashSet::new();
        used.extend(graph.input.iter().chain(&graph.output).chain(&graph.value_info).filter_map(|v| v.name.clone()));
        used.extend(graph.initializer.iter().filter_map(|t| t.name.clone()));
        for n in &graph.node {
            used.extend(n.input.iter().chain(&n.output).cloned());
            used.extend(n.name.clone());
        }
        Names(used)
    }

    /// `base` if it is unused, else `base_2`, `base_3`...; marked used.
    pub(crate) fn fresh(&mut self, base: &str) -> String {
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

/// A branch's nodes and initializers as nodes of the main graph.
pub(crate) struct Inlined {
    /// The branch's initializers, renamed.
    pub initializers: Vec<TensorProto>,
    /// The branch's nodes, renamed.
    pub nodes: Vec<NodeProto>,
    /// The names its outputs have now (a value of the main graph when the branch passes one on).
    pub outputs: Vec<String>,
}

/// The nodes and initializers of `branch` renamed for the main graph: each value the branch
/// makes gets `rename(value)` made fresh by `names`, each node `node_name(name)` likewise;
/// values it reads from the main graph keep their names. `None` for a branch holding
/// subgraphs of its own or sparse initializers.
pub(crate) fn inline_branch(
    branch: &GraphProto,
    names: &mut Names,
    rename: impl Fn(&str) -> String,
    node_name: impl Fn(&str) -> String,
) -> Option<Inlined> {
    if !branch.sparse_initializer.is_empty()
        || branch.node.iter().any(|n| n.attribute.iter().any(|a| a.g.is_some() || !a.graphs.is_empty()))
    {
        return None;
    }
    let mut renamed: HashMap<String, String> = HashMap::new();
    let internal = branch.node.iter().flat_map(|n| n.output.iter()).chain(branch.initializer.iter().filter_map(|t| t.name.as_ref()));
    for v in internal.filter(|v| !v.is_empty()) {
        if !renamed.contains_key(v) {
            renamed.insert(v.clone(), names.fresh(&rename(v)));
        }
    }
    let name_of = |v: &String| renamed.get(v).cloned().unwrap_or_else(|| v.clone());
    let initializers = branch
        .initializer
        .iter()
        .map(|t| {
            let mut t = t.clone();
            t.name = t.name.as_ref().map(name_of);
            t
        })
        .collect();
    let nodes = branch
        .node
        .iter()
        .map(|n| {
            let mut n = n.clone();
            n.input = n.input.iter().map(name_of).collect();
            n.output = n.output.iter().map(name_of).collect();
            n.name = Some(names.fresh(&node_name(n.name.as_deref().unwrap_or(n.op()))));
            n
        })
        .collect();
    let outputs = branch.output.iter().map(|o| o.name.as_ref().map(name_of).unwrap_or_default()).collect();
    Some(Inlined { initializers, nodes, outputs })
}

/// Writes every `If` of the main graph whose condition is a graph input (the caller's
/// choice, as a merged decoder's `use_cache_branch`) as both its branches and a
/// [`BRANCHES`] node (see the module documentation); returns how many. An `If` whose
/// branches hold subgraphs of their own or sparse initializers is left as it is.
/// Adds the import of [`DOMAIN`] when it flattens one.
pub(crate) fn flatten(proto: &mut ModelProto) -> usize {
    let Some(graph) = proto.graph.as_mut() else { return 0 };
    let initializers: HashSet<&str> = graph.initializer.iter().filter_map(|t| t.name.as_deref()).collect();
    let chosen_by_caller: HashSet<String> =
        graph.input.iter().filter_map(|i| i.name.clone()).filter(|n| !initializers.contains(n.as_str())).collect();
    let branch = |node: &NodeProto, attr: &str| node.attribute.iter().find(|a| a.name.as_deref() == Some(attr)).and_then(|a| a.g.clone());
    let mut names = Names::of(graph);
    let mut count = 0;
    let mut nodes = Vec::with_capacity(graph.node.len());
    for node in std::mem::take(&mut graph.node) {
        let candidate = node.op() == "If"
            && matches!(node.domain.as_deref().unwrap_or(""), "" | "ai.onnx")
            && node.input.first().is_some_and(|c| chosen_by_caller.contains(c));
        let parts = candidate.then(|| Some((branch(&node, "then_branch")?, branch(&node, "else_branch")?))).flatten();
        let Some((then_graph, else_graph)) =
            parts.filter(|(t, e)| t.output.len() == node.output.len() && e.output.len() == node.output.len())
        else {
            nodes.push(node);
            continue;
        };
        let label = node.name.clone().unwrap_or_else(|| node.output.first().cloned().unwrap_or_default());
        // The then branch keeps its names where they are free; the else branch's values
        // that collide with them get a suffix.
        let then_part = inline_branch(&then_graph, &mut names, |v| v.to_string(), |n| n.to_string());
        let else_part = inline_branch(&else_graph, &mut names, |v| v.to_string(), |n| n.to_string());
        let (Some(then_part), Some(else_part)) = (then_part, else_part) else {
            nodes.push(node);
            continue;
        };
        for part in [&then_part, &else_part] {
            graph.initializer.extend(part.initializers.iter().cloned());
            nodes.extend(part.nodes.iter().cloned());
        }
        let mut input = vec![node.input[0].clone()];
        input.extend(then_part.outputs.iter().cloned());
        input.extend(else_part.outputs.iter().cloned());
        nodes.push(NodeProto {
            name: Some(names.fresh(&label)),
            op_type: Some(BRANCHES.to_string()),
            domain: Some(DOMAIN.to_string()),
            input,
            output: node.output.clone(),
            doc_string: node.doc_string.clone(),
            ..Default::default()
        });
        count += 1;
    }
    graph.node = nodes;
    if count > 0 && !proto.opset_import.iter().any(|o| o.domain.as_deref() == Some(DOMAIN)) {
        proto.opset_import.push(OperatorSetIdProto { domain: Some(DOMAIN.to_string()), version: Some(1) });
    }
    count
}

/// The nodes of `graph` that `values` are computed by, directly or not (indices).
fn cone(graph: &GraphProto, producer: &HashMap<&str, usize>, values: &[String]) -> HashSet<usize> {
    let mut seen = HashSet::new();
    let mut stack: Vec<&str> = values.iter().map(String::as_str).collect();
    while let Some(v) = stack.pop() {
        let Some(&i) = producer.get(v) else { continue };
        if seen.insert(i) {
            stack.extend(graph.node[i].input.iter().map(String::as_str).filter(|s| !s.is_empty()));
        }
    }
    seen
}

/// Writes every [`BRANCHES`] node back as an `If` (see the module documentation): each
/// branch holds the nodes only its results need and that nothing else in the graph reads,
/// in the graph's order, and ends in an `Identity` per output (a branch may pass on a value
/// of the main graph); the branch outputs have the element type of the `If`'s output.
/// The [`DOMAIN`] import goes once no such node is left.
pub fn nest(proto: &mut ModelProto) {
    let Some(graph) = proto.graph.as_mut() else { return };
    // (A malformed one, which only a file could hold, is left as it is.)
    let well_formed = |n: &NodeProto| is_branches(n) && n.input.len() == 1 + 2 * n.output.len();
    while let Some(at) = graph.node.iter().position(well_formed) {
        let node = graph.node[at].clone();
        let k = node.output.len();
        let (then_values, else_values) = (node.input[1..=k].to_vec(), node.input[1 + k..].to_vec());
        let producer: HashMap<&str, usize> =
            graph.node.iter().enumerate().flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i))).collect();
        let (then_cone, else_cone) = (cone(graph, &producer, &then_values), cone(graph, &producer, &else_values));
        let graph_outputs: HashSet<&str> = graph.output.iter().filter_map(|o| o.name.as_deref()).collect();
        // The nodes reading each value, by input or from inside a subgraph.
        let mut readers_of: HashMap<String, Vec<usize>> = HashMap::new();
        for (j, n) in graph.node.iter().enumerate() {
            let mut read: HashSet<String> = n.input.iter().filter(|v| !v.is_empty()).cloned().collect();
            crate::graph::subgraph_reads(n, &mut read);
            for v in read {
                readers_of.entry(v).or_default().push(j);
            }
        }
        // Whether node i's outputs are read only by nodes of `part` and the Branches node.
        let readers = |i: usize, part: &HashSet<usize>| -> bool {
            graph.node[i].output.iter().all(|o| {
                !graph_outputs.contains(o.as_str()) && readers_of.get(o).is_none_or(|js| js.iter().all(|&j| j == at || part.contains(&j)))
            })
        };
        let own = |mine: &HashSet<usize>, other: &HashSet<usize>| -> HashSet<usize> {
            let mut part: HashSet<usize> = mine.difference(other).copied().collect();
            // Drop nodes read from outside the branch until none is (a node kept in the
            // main graph keeps what it reads there too).
            loop {
                let leaving: Vec<usize> = part.iter().copied().filter(|&i| !readers(i, &part)).collect();
                if leaving.is_empty() {
                    return part;
                }
                for i in leaving {
                    part.remove(&i);
                }
            }
        };
        let (then_own, else_own) = (own(&then_cone, &else_cone), own(&else_cone, &then_cone));
        let mut names = Names::of(graph);
        let label = node.name.clone().unwrap_or_default();
        let out_type = |o: &str| -> Option<TypeProto> {
            let info = graph.output.iter().chain(&graph.value_info).find(|v| v.name.as_deref() == Some(o))?;
            let elem_type = match info.r#type.as_ref()?.value.as_ref()? {
                type_proto::Value::TensorType(t) => t.elem_type,
                _ => return info.r#type.clone(),
            };
            Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type, shape: None })),
                ..Default::default()
            })
        };
        let mut body = |part: &HashSet<usize>, values: &[String], which: &str| -> GraphProto {
            let mut nodes: Vec<NodeProto> = (0..graph.node.len()).filter(|i| part.contains(i)).map(|i| graph.node[i].clone()).collect();
            let made: HashSet<String> = nodes.iter().flat_map(|n| n.output.iter().cloned()).collect();
            let value_info = graph.value_info.iter().filter(|v| v.name.as_ref().is_some_and(|n| made.contains(n))).cloned().collect();
            let mut output = Vec::with_capacity(values.len());
            for (v, o) in values.iter().zip(&node.output) {
                let name = names.fresh(&format!("{o}/{which}"));
                nodes.push(identity(names.fresh(&format!("{label}/{which}/{o}")), v, &name));
                output.push(ValueInfoProto { name: Some(name), r#type: out_type(o), ..Default::default() });
            }
            GraphProto { name: Some(format!("{label}/{which}")), node: nodes, output, value_info, ..Default::default() }
        };
        let then_graph = body(&then_own, &then_values, "then");
        let else_graph = body(&else_own, &else_values, "else");
        let graph_attr = |name: &str, g: GraphProto| crate::proto::AttributeProto {
            name: Some(name.to_string()),
            r#type: Some(crate::proto::attribute_proto::AttributeType::Graph as i32),
            g: Some(g),
            ..Default::default()
        };
        let if_node = NodeProto {
            name: node.name.clone(),
            op_type: Some("If".to_string()),
            input: vec![node.input[0].clone()],
            output: node.output.clone(),
            attribute: vec![graph_attr("then_branch", then_graph), graph_attr("else_branch", else_graph)],
            doc_string: node.doc_string.clone(),
            ..Default::default()
        };
        let moved: HashSet<usize> = then_own.union(&else_own).copied().collect();
        let made: HashSet<String> = moved.iter().flat_map(|&i| graph.node[i].output.iter().cloned()).collect();
        let mut nodes = Vec::with_capacity(graph.node.len() - moved.len());
        for (i, n) in std::mem::take(&mut graph.node).into_iter().enumerate() {
            if i == at {
                nodes.push(if_node.clone());
            } else if !moved.contains(&i) {
                nodes.push(n);
            }
        }
        graph.node = nodes;
        graph.value_info.retain(|v| !v.name.as_ref().is_some_and(|n| made.contains(n)));
    }
    if !has_branches(proto) {
        proto.opset_import.retain(|o| o.domain.as_deref() != Some(DOMAIN));
    }
}

/// The first pass's branch of each well-formed [`BRANCHES`] node of `graph`: the values of
/// the branch that reads the fewest graph inputs (the else branch on a tie: optimum's
/// first pass), by the node's index.
fn first_pass_sides(graph: &GraphProto) -> Vec<(usize, Vec<String>)> {
    let inputs: HashSet<&str> = graph.input.iter().filter_map(|i| i.name.as_deref()).collect();
    let producer: HashMap<&str, usize> =
        graph.node.iter().enumerate().flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i))).collect();
    let reads_inputs = |values: &[String]| -> usize {
        let nodes = cone(graph, &producer, values);
        let mut read: HashSet<&str> = values.iter().map(String::as_str).filter(|v| inputs.contains(*v)).collect();
        for &i in &nodes {
            read.extend(graph.node[i].input.iter().map(String::as_str).filter(|v| inputs.contains(*v)));
            let mut inner = HashSet::new();
            crate::graph::subgraph_reads(&graph.node[i], &mut inner);
            read.extend(inputs.iter().copied().filter(|v| inner.contains(*v)));
        }
        read.len()
    };
    let mut out = Vec::new();
    for (at, node) in graph.node.iter().enumerate().filter(|(_, n)| is_branches(n)) {
        let k = node.output.len();
        if node.input.len() != 1 + 2 * k {
            continue;
        }
        let (then_values, else_values) = (&node.input[1..=k], &node.input[1 + k..]);
        let taken = if reads_inputs(then_values) < reads_inputs(else_values) { then_values } else { else_values };
        out.push((at, taken.to_vec()));
    }
    out
}

/// The indices of the nodes of `graph` that a merged decoder's first pass runs (what
/// [`specialize`] keeps, the [`BRANCHES`] nodes aside); `None` when the graph has no
/// [`BRANCHES`] node. The MACs of such a model are those of one pass
/// ([`crate::cost::macs_with`]), not of both branches.
pub fn first_pass_nodes(graph: &GraphProto) -> Option<HashSet<usize>> {
    if !graph.node.iter().any(is_branches) {
        return None;
    }
    let sides: HashMap<usize, Vec<String>> = first_pass_sides(graph).into_iter().collect();
    let producer: HashMap<&str, usize> =
        graph.node.iter().enumerate().flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i))).collect();
    let mut live = HashSet::new();
    let mut stack: Vec<String> = graph.output.iter().filter_map(|o| o.name.clone()).collect();
    while let Some(v) = stack.pop() {
        let Some(&i) = producer.get(v.as_str()) else { continue };
        if !live.insert(i) {
            continue;
        }
        match sides.get(&i) {
            Some(taken) => stack.extend(taken.iter().cloned()),
            None => {
                let node = &graph.node[i];
                stack.extend(node.input.iter().filter(|s| !s.is_empty()).cloned());
                let mut inner = HashSet::new();
                crate::graph::subgraph_reads(node, &mut inner);
                stack.extend(inner);
            }
        }
    }
    live.retain(|&i| !is_branches(&graph.node[i]));
    Some(live)
}

/// The model with each [`BRANCHES`] node replaced by the branch that reads the fewest
/// graph inputs (the else branch on a tie: optimum's first pass), through an `Identity`
/// per output, without the nodes, initializers and graph inputs nothing then reads:
/// a model oto trains and evaluates like any other. `None` when the model has no
/// [`BRANCHES`] node; an error naming a malformed one.
pub fn specialize(model: &Model) -> Result<Option<Model>> {
    if !has_branches(&model.proto) {
        return Ok(None);
    }
    let mut proto = model.proto.clone();
    let Some(graph) = proto.graph.as_mut() else { return Ok(None) };
    if let Some(node) = graph.node.iter().find(|n| is_branches(n) && n.input.len() != 1 + 2 * n.output.len()) {
        let message = format!("has {} inputs; {BRANCHES} needs 1 + 2 x {}", node.input.len(), node.output.len());
        return Err(model.error(crate::graph::node_label(node), message));
    }
    let mut replaced: Vec<(usize, Vec<NodeProto>)> = Vec::new();
    for (at, taken) in first_pass_sides(graph) {
        let node = &graph.node[at];
        let label = node.name.clone().unwrap_or_default();
        let identities = taken.iter().zip(&node.output).map(|(v, o)| identity(format!("{label}/{o}"), v, o)).collect();
        replaced.push((at, identities));
    }
    for (at, identities) in replaced.into_iter().rev() {
        graph.node.splice(at..=at, identities);
    }
    prune_dead(graph);
    proto.opset_import.retain(|o| o.domain.as_deref() != Some(DOMAIN));
    let path = model.path().to_string_lossy().into_owned();
    Ok(Some(Model::from_proto(proto, &path, model.base_dir().map(|p| p.to_path_buf()))?))
}

/// Removes the nodes no graph output needs, then the initializers, value infos and graph
/// inputs nothing reads.
fn prune_dead(graph: &mut GraphProto) {
    let producer: HashMap<&str, usize> =
        graph.node.iter().enumerate().flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i))).collect();
    let outputs: Vec<String> = graph.output.iter().filter_map(|o| o.name.clone()).collect();
    let mut live = cone(graph, &producer, &outputs);
    // Nodes with subgraphs read values by name: follow those reads too.
    loop {
        let mut inner = HashSet::new();
        for &i in &live {
            crate::graph::subgraph_reads(&graph.node[i], &mut inner);
        }
        let more = cone(graph, &producer, &inner.into_iter().collect::<Vec<_>>());
        let before = live.len();
        live.extend(more);
        if live.len() == before {
            break;
        }
    }
    let nodes: Vec<NodeProto> = graph.node.iter().enumerate().filter(|(i, _)| live.contains(i)).map(|(_, n)| n.clone()).collect();
    let mut read: HashSet<String> = nodes.iter().flat_map(|n| n.input.iter().cloned()).collect();
    for n in &nodes {
        crate::graph::subgraph_reads(n, &mut read);
    }
    read.extend(outputs);
    let made: HashSet<String> = nodes.iter().flat_map(|n| n.output.iter().cloned()).collect();
    graph.node = nodes;
    graph.initializer.retain(|t| t.name.as_ref().is_some_and(|n| read.contains(n)));
    graph.input.retain(|i| i.name.as_ref().is_some_and(|n| read.contains(n)));
    graph.value_info.retain(|v| v.name.as_ref().is_some_and(|n| made.contains(n)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{batch_dims, GraphBuilder};
    use crate::proto::attribute_proto::AttributeType;
    use crate::proto::AttributeProto;
    use crate::tensor::DType;
    use crate::Dim;

    /// A merged decoder in miniature: `y = If(use_cache_branch, then: relu(x @ w) + past,
    /// else: relu(x @ w))`, both branches reading the weight `w` of the main graph and
    /// naming their values alike (as optimum's merge leaves them).
    fn merged() -> Model {
        let mut b = GraphBuilder::new("merged");
        b.opset(17);
        let x = b.input_f32("x", &batch_dims(&[4]));
        b.input_f32("past", &batch_dims(&[3]));
        b.input("use_cache_branch", DType::Bool, &[Dim::Known(1)]);
        b.weight("w", &[4, 3], |i| i as f32 * 0.1 - 0.5);
        let y = b.node("If", &["use_cache_branch"], &["y"]);
        b.output_f32(&y, &batch_dims(&[3]));
        let mut proto = b.proto();
        let node = |op: &str, input: &[&str], output: &str| NodeProto {
            name: Some(format!("/{op}")),
            op_type: Some(op.into()),
            input: input.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..Default::default()
        };
        let body = |with_past: bool| {
            let mut nodes = vec![node("MatMul", &[&x, "w"], "h"), node("Relu", &["h"], "r")];
            if with_past {
                nodes.push(node("Add", &["r", "past"], "out"));
            }
            let out = if with_past { "out" } else { "r" };
            GraphProto {
                name: Some(if with_past { "then" } else { "else" }.into()),
                node: nodes,
                output: vec![ValueInfoProto { name: Some(out.into()), ..Default::default() }],
                ..Default::default()
            }
        };
        let graph = proto.graph.as_mut().unwrap();
        let if_node = graph.node.iter_mut().find(|n| n.op() == "If").unwrap();
        for (attr, g) in [("then_branch", body(true)), ("else_branch", body(false))] {
            if_node.attribute.push(AttributeProto {
                name: Some(attr.into()),
                r#type: Some(AttributeType::Graph as i32),
                g: Some(g),
                ..Default::default()
            });
        }
        Model::from_proto(proto, "<builder:merged>", None).unwrap()
    }

    fn ops(graph: &GraphProto) -> Vec<String> {
        graph.node.iter().map(|n| n.op().to_string()).collect()
    }

    #[test]
    fn flatten_writes_both_branches_and_nest_the_if_again() {
        let model = merged();
        let mut proto = model.proto.clone();
        assert_eq!(flatten(&mut proto), 1);
        let graph = proto.graph.as_ref().unwrap();
        assert_eq!(ops(graph), ["MatMul", "Relu", "Add", "MatMul", "Relu", "Branches"]);
        // The else branch's values, named like the then branch's, were renamed apart.
        let made: Vec<&String> = graph.node.iter().flat_map(|n| &n.output).collect();
        let unique: HashSet<&String> = made.iter().copied().collect();
        assert_eq!(unique.len(), made.len(), "{made:?}");
        let branches = graph.node.last().unwrap();
        assert_eq!(branches.input, ["use_cache_branch", "out", "r_2"]);
        assert_eq!(branches.output, ["y"]);
        assert!(proto.opset_import.iter().any(|o| o.domain.as_deref() == Some(DOMAIN)));
        assert!(has_branches(&proto));

        nest(&mut proto);
        assert!(!has_branches(&proto));
        assert!(proto.opset_import.iter().all(|o| o.domain.as_deref() != Some(DOMAIN)));
        let graph = proto.graph.as_ref().unwrap();
        assert_eq!(ops(graph), ["If"]);
        let branch = |attr: &str| graph.node[0].attribute.iter().find(|a| a.name.as_deref() == Some(attr)).unwrap().g.clone().unwrap();
        assert_eq!(ops(&branch("then_branch")), ["MatMul", "Relu", "Add", "Identity"]);
        assert_eq!(ops(&branch("else_branch")), ["MatMul", "Relu", "Identity"]);
        // Each branch output has the If output's element type.
        let out = &branch("then_branch").output[0];
        let Some(type_proto::Value::TensorType(t)) = out.r#type.as_ref().and_then(|t| t.value.as_ref()) else { panic!("{out:?}") };
        assert_eq!(t.elem_type, Some(1), "float");
    }

    #[test]
    fn nest_keeps_nodes_both_branches_read_in_the_main_graph() {
        let mut proto = merged().proto.clone();
        flatten(&mut proto);
        // Both branches read one Relu (as normalization's folding may leave them).
        let graph = proto.graph.as_mut().unwrap();
        graph.node.retain(|n| !(n.output == ["h_2"] || n.output == ["r_2"]));
        graph.node.last_mut().unwrap().input[2] = "r".into();
        nest(&mut proto);
        let graph = proto.graph.as_ref().unwrap();
        assert_eq!(ops(graph), ["MatMul", "Relu", "If"]);
        let branch = |attr: &str| graph.node[2].attribute.iter().find(|a| a.name.as_deref() == Some(attr)).unwrap().g.clone().unwrap();
        assert_eq!(ops(&branch("then_branch")), ["Add", "Identity"]);
        assert_eq!(ops(&branch("else_branch")), ["Identity"]);
        assert_eq!(branch("else_branch").node[0].input, ["r"]);
    }

    /// A file holding oto's node with the wrong number of inputs: serialization leaves it
    /// as it is, specializing it is an error naming the node, nothing panics.
    #[test]
    fn a_malformed_branches_node_from_a_file_is_refused_not_a_panic() {
        let mut proto = merged().proto.clone();
        flatten(&mut proto);
        proto.graph.as_mut().unwrap().node.last_mut().unwrap().input.pop();
        let model = Model::from_proto(proto.clone(), "hostile.onnx", None).unwrap();
        let err = specialize(&model).unwrap_err().to_string();
        assert!(err.contains("hostile.onnx") && err.contains("Branches"), "{err}");
        let mut written = proto.clone();
        nest(&mut written);
        assert_eq!(written, proto);
        // Shape inference reports it (or leaves its outputs unknown) without panicking.
        let graph = crate::Graph::new(&model).unwrap();
        if let Err(e) = crate::shape::infer(&graph) {
            assert!(e.to_string().contains("Branches"), "{e}");
        }
    }

    #[test]
    fn specialize_keeps_the_branch_that_reads_fewer_inputs() {
        let model = merged();
        assert!(specialize(&model).unwrap().is_none(), "not flattened yet");
        let mut proto = model.proto.clone();
        flatten(&mut proto);
        let flat = Model::from_proto(proto, "<builder:merged>", None).unwrap();
        let first = specialize(&flat).unwrap().unwrap();
        let graph = first.proto.graph.as_ref().unwrap();
        assert_eq!(ops(graph), ["MatMul", "Relu", "Identity"]);
        let inputs: Vec<&str> = graph.input.iter().filter_map(|i| i.name.as_deref()).collect();
        assert_eq!(inputs, ["x"], "the condition and the cache branch's input go");
        assert_eq!(graph.node[2].input, ["r_2"]);
        assert_eq!(graph.node[2].output, ["y"]);
        assert!(first.proto.opset_import.iter().all(|o| o.domain.as_deref() != Some(DOMAIN)));
        // The same nodes count for its MACs: one pass (x @ w: 4 x 3 per sample), not both branches.
        let nodes = first_pass_nodes(flat.proto.graph.as_ref().unwrap()).unwrap();
        assert_eq!(nodes, HashSet::from([3, 4]), "{:?}", ops(flat.proto.graph.as_ref().unwrap()));
        let graph = crate::Graph::new(&flat).unwrap();
        let shapes = crate::shape::infer(&graph).unwrap();
        assert_eq!(crate::cost::macs(&graph, &shapes).total, 12);
        assert_eq!(first_pass_nodes(model.proto.graph.as_ref().unwrap()), None);
    }
}
