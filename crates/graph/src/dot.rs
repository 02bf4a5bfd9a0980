//! Graphviz output of the dependency graph, coloured by group.

use crate::model::Analysis;
use oto_onnx::graph::NodeExt;
use oto_onnx::Model;
use std::collections::HashMap;
use std::fmt::Write;

const PALETTE: [&str; 12] =
    ["#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462", "#b3de69", "#fccde5", "#bc80bd", "#ccebc5", "#ffed6f", "#a6cee3"];

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Analysis {
    /// Graphviz `dot` of `model`'s nodes and values. A node is filled with the colour of
    /// the group its first producer slice belongs to (grey when unprunable, white when
    /// it produces no group's channels); edges are the values between nodes.
    pub fn to_dot(&self, model: &Model) -> String {
        let mut producer_group: HashMap<&str, (usize, bool)> = HashMap::new();
        for (i, g) in self.groups.iter().enumerate() {
            for m in g.members.iter().filter(|m| m.role == crate::Role::Producer) {
                producer_group.entry(m.initializer.as_str()).or_insert((i, g.prunable));
            }
        }
        let mut out = String::from("digraph oto {\n  rankdir=TB;\n  node [shape=box, style=filled, fontsize=10];\n");
        let Some(graph) = model.proto.graph.as_ref() else {
            out.push_str("}\n");
            return out;
        };
        let mut producer_of: HashMap<&str, String> = HashMap::new();
        for (i, n) in graph.node.iter().enumerate() {
            let id = format!("n{i}");
            let group = n.input.iter().find_map(|v| producer_group.get(v.as_str()));
            let (fill, label) = match group {
                Some(&(gi, true)) => {
                    (PALETTE[gi % PALETTE.len()], format!("{}\\n{}\\n[{}]", n.op(), n.name.as_deref().unwrap_or(""), self.groups[gi].id))
                }
                Some(&(gi, false)) => {
                    ("#d9d9d9", format!("{}\\n{}\\n[{}: unprunable]", n.op(), n.name.as_deref().unwrap_or(""), self.groups[gi].id))
                }
                None => ("#ffffff", format!("{}\\n{}", n.op(), n.name.as_deref().unwrap_or(""))),
            };
            let _ = writeln!(out, "  {id} [label={}, fillcolor=\"{fill}\"];", quote(&label).replace("\\\\n", "\\n"));
            for o in &n.output {
                producer_of.insert(o.as_str(), id.clone());
            }
        }
        for (i, n) in graph.node.iter().enumerate() {
            for v in &n.input {
                if let Some(src) = producer_of.get(v.as_str()) {
                    let _ = writeln!(out, "  {src} -> n{i};");
                }
            }
        }
        out.push_str("}\n");
        out
    }
}
