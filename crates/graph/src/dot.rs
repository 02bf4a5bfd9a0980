//! Graphviz output of the dependency graph, coloured by group.

use crate::model::Analysis;
use oto_onnx::graph::NodeExt;
use oto_onnx::Graph;
use petgraph::dot::{Config, Dot};
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::HashMap;

const PALETTE: [&str; 12] =
    ["#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462", "#b3de69", "#fccde5", "#bc80bd", "#ccebc5", "#ffed6f", "#a6cee3"];

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Analysis {
    /// Graphviz `dot` of the graph's nodes and values, through petgraph's [`Dot`] over
    /// [`Graph::dependencies`]. A node is filled with the colour of the group its first producer
    /// slice belongs to (grey when unprunable, white when it produces no group's channels);
    /// edges are the values between nodes.
    pub fn to_dot(&self, graph: &Graph<'_>) -> String {
        let mut producer_group: HashMap<&str, (usize, bool)> = HashMap::new();
        for (i, g) in self.groups.iter().enumerate() {
            for m in g.members.iter().filter(|m| m.role == crate::Role::Producer) {
                producer_group.entry(m.initializer.as_str()).or_insert((i, g.prunable));
            }
        }
        let node_attributes = |_: &DiGraph<(), &str>, (v, _): (NodeIndex, &())| {
            let n = graph.node(v.index());
            let name = n.name.as_deref().unwrap_or("");
            let (fill, label) = match n.input.iter().find_map(|v| producer_group.get(v.as_str())) {
                Some(&(gi, true)) => (PALETTE[gi % PALETTE.len()], format!("{}\\n{name}\\n[{}]", n.op(), self.groups[gi].id)),
                Some(&(gi, false)) => ("#d9d9d9", format!("{}\\n{name}\\n[{}: unprunable]", n.op(), self.groups[gi].id)),
                None => ("#ffffff", format!("{}\\n{name}", n.op())),
            };
            format!("label={}, fillcolor=\"{fill}\"", quote(&label).replace("\\\\n", "\\n"))
        };
        let config = [Config::NodeNoLabel, Config::EdgeNoLabel, Config::GraphContentOnly];
        // Debug formatting: the weights are not printed (no labels), and () has no Display.
        let dot = Dot::with_attr_getters(graph.dependencies(), &config, &|_, _| String::new(), &node_attributes);
        format!("digraph oto {{\n  rankdir=TB;\n  node [shape=box, style=filled, fontsize=10];\n{dot:?}}}\n")
    }
}
