//! Model-local functions inlined (step 1 of the module documentation of [`super`]).
//!
//! A file may define functions (`ModelProto.functions`) and call them as operators of their
//! domain: the TorchScript exporter writes every module of the classes given to
//! `export_modules_as_functions` so (`torchvision.models.resnet::BasicBlock`), and
//! onnxscript models can carry functions of their own. To the analysis such a call is an
//! operator it does not know, which blocks every channel through it. Each call becomes the
//! function's body: its formal inputs and outputs are the call's values, its inner values
//! get fresh names, an attribute that refers to one of the function's (`ref_attr_name`)
//! takes the call's value or else the function's default (and is left out without either,
//! as the specification says). Calls inside functions are inlined the same way, to a
//! bounded depth.
//!
//! A function stays called when inlining could change what it computes: its body imports
//! the default domain at another version than the model, or holds subgraphs (`If`, `Loop`
//! bodies), whose reads of outer values would need renaming too.

use super::Names;
use crate::proto::{FunctionProto, ModelProto, NodeProto};
use std::collections::HashMap;

/// How deep calls inside function bodies are followed (the specification forbids recursion).
const MAX_DEPTH: usize = 16;

/// Inlines every call of a model-local function in the main graph; returns how many.
pub(super) fn inline(proto: &mut ModelProto) -> usize {
    if proto.functions.is_empty() {
        return 0;
    }
    let model_opset = default_version(&proto.opset_import);
    let functions: HashMap<(String, String, String), FunctionProto> = proto
        .functions
        .iter()
        .filter(|f| inlinable(f, model_opset))
        .map(|f| {
            ((f.domain.clone().unwrap_or_default(), f.name.clone().unwrap_or_default(), f.overload.clone().unwrap_or_default()), f.clone())
        })
        .collect();
    let Some(graph) = proto.graph.as_mut() else {
        return 0;
    };
    let key = |n: &NodeProto| {
        (n.domain.clone().unwrap_or_default(), n.op_type.clone().unwrap_or_default(), n.overload.clone().unwrap_or_default())
    };
    let mut names = Names::of(graph);
    let mut count = 0;
    for _ in 0..MAX_DEPTH {
        if !graph.node.iter().any(|n| functions.contains_key(&key(n))) {
            break;
        }
        let mut out = Vec::with_capacity(graph.node.len());
        for node in std::mem::take(&mut graph.node) {
            match functions.get(&key(&node)) {
                Some(f) => {
                    out.extend(body_of_call(f, &node, &mut names));
                    count += 1;
                }
                None => out.push(node),
            }
        }
        graph.node = out;
    }
    // The definitions go once nothing calls them (a call left, past the depth, keeps them all).
    if !graph.node.iter().any(|n| proto.functions.iter().any(|f| f.domain == n.domain && f.name == n.op_type)) {
        proto.functions.clear();
    }
    count
}

/// The default domain's version in `imports` (`None` when not imported).
fn default_version(imports: &[crate::proto::OperatorSetIdProto]) -> Option<i64> {
    imports.iter().find(|o| o.domain.as_deref().unwrap_or("").is_empty() || o.domain.as_deref() == Some("ai.onnx")).and_then(|o| o.version)
}

fn inlinable(f: &FunctionProto, model_opset: Option<i64>) -> bool {
    let own = default_version(&f.opset_import);
    let same_opset = own.is_none() || own == model_opset;
    let subgraphs = f.node.iter().flat_map(|n| &n.attribute).any(|a| a.g.is_some() || !a.graphs.is_empty());
    same_opset && !subgraphs
}

/// The nodes of `f`'s body as called by `call`.
fn body_of_call(f: &FunctionProto, call: &NodeProto, names: &mut Names) -> Vec<NodeProto> {
    let stem = call.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| call.output.first().cloned().unwrap_or_default());
    let mut rename: HashMap<String, String> = HashMap::new();
    for (k, formal) in f.input.iter().enumerate() {
        rename.insert(formal.clone(), call.input.get(k).cloned().unwrap_or_default());
    }
    for (k, formal) in f.output.iter().enumerate() {
        let actual = call.output.get(k).filter(|o| !o.is_empty()).cloned().unwrap_or_else(|| names.fresh(&format!("{stem}/{formal}")));
        rename.insert(formal.clone(), actual);
    }
    let mut nodes = Vec::with_capacity(f.node.len());
    for inner in &f.node {
        let mut node = inner.clone();
        for v in node.input.iter_mut().chain(node.output.iter_mut()).filter(|v| !v.is_empty()) {
            let actual = rename.entry(v.clone()).or_insert_with(|| names.fresh(&format!("{stem}/{v}"))).clone();
            *v = actual;
        }
        let inner_name = inner.name.clone().unwrap_or_else(|| inner.op_type.clone().unwrap_or_default());
        node.name = Some(names.fresh(&format!("{stem}/{inner_name}")));
        node.attribute = inner
            .attribute
            .iter()
            .filter_map(|a| match a.ref_attr_name.as_deref() {
                None => Some(a.clone()),
                Some(r) => {
                    let given = call.attribute.iter().chain(&f.attribute_proto).find(|c| c.name.as_deref() == Some(r))?;
                    let mut value = given.clone();
                    value.name = a.name.clone();
                    value.ref_attr_name = None;
                    Some(value)
                }
            })
            .collect();
        nodes.push(node);
    }
    nodes
}
