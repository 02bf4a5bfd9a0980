//! The groups do not depend on the exporter: every architecture of the zoo (dynamo
//! exporter with its defaults, graphs/zoo.py) against the same architecture as users' files
//! are made (graphs/user_zoo.py: the TorchScript exporter at opset 17, CNNs also at 13,
//! the transformers models also called as Optimum calls them; no cleanup).
//!
//! Compared: the number of groups; the element kind, element count and prunability of
//! every group (as a sorted list); the prunable parameters of the weights (initializers
//! of rank >= 2, which every exporter writes with the same shapes); and, where both
//! files hold the same number of parameters, all prunable parameters. Both exporters fold
//! eval-mode BatchNormalization into the convolution before it (their defaults); where a
//! BatchNormalization stays (after a Concat, before a convolution) the per-channel
//! vectors may still differ in number while the groups must not.
//!
//! `NOT_YET_INVARIANT` is a ratchet: a listed file must still differ (fix it, then
//! remove it from the list), any other file must agree.

use oto_graph::{analyze, Analysis, AnalyzeOptions};
use oto_onnx::Model;
use oto_testkit::{user_zoo_dir, user_zoo_index, zoo_dir, zoo_names};
use std::collections::HashMap;

/// TorchScript files whose groups still differ from the dynamo file's, and why.
const NOT_YET_INVARIANT: &[(&str, &str)] = &[];

/// What must not depend on the exporter.
#[derive(Debug, PartialEq)]
struct Signature {
    groups: usize,
    /// (element kind, element count, prunable), sorted.
    kinds: Vec<(String, usize, bool)>,
    /// Prunable parameters in initializers of rank >= 2.
    prunable_weights: u64,
    /// (total, prunable) parameters.
    params: (u64, u64),
}

fn signature(model: &Model, a: &Analysis) -> Signature {
    let graph = model.proto.graph.as_ref().expect("a graph");
    let dims: HashMap<&str, &[i64]> = graph.initializer.iter().map(|t| (t.name.as_deref().unwrap_or(""), t.dims.as_slice())).collect();
    let mut kinds: Vec<(String, usize, bool)> = a.groups.iter().map(|g| (g.kind.to_string(), g.num_elements, g.prunable)).collect();
    kinds.sort();
    let mut prunable_weights = 0u64;
    for g in a.prunable_groups() {
        for m in &g.members {
            let d = dims.get(m.initializer.as_str()).unwrap_or_else(|| panic!("{}: no initializer '{}'", a.model, m.initializer));
            if d.len() < 2 {
                continue;
            }
            let numel: i64 = d.iter().product();
            let per_index = (numel / d[m.axis]) as u64;
            let indices: u64 = (0..g.num_elements).map(|i| m.map.indices(i).len() as u64).sum();
            prunable_weights += per_index * indices;
        }
    }
    Signature { groups: a.groups.len(), kinds, prunable_weights, params: (a.total_params, a.prunable_params) }
}

fn load(path: &std::path::Path) -> (Signature, String) {
    // As every command reads a file: normalized.
    let model = oto_onnx::normalize::load(path).unwrap_or_else(|e| panic!("{e}")).0;
    let a = analyze(&model, &AnalyzeOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (signature(&model, &a), a.table())
}

/// Why two signatures differ, or `None`.
fn difference(dynamo: &Signature, other: &Signature) -> Option<String> {
    let mut why = Vec::new();
    if dynamo.groups != other.groups {
        why.push(format!("{} groups vs {}", dynamo.groups, other.groups));
    }
    if dynamo.kinds != other.kinds {
        why.push(format!("groups (kind, elements, prunable) {:?} vs {:?}", dynamo.kinds, other.kinds));
    }
    if dynamo.prunable_weights != other.prunable_weights {
        why.push(format!("prunable weight parameters {} vs {}", dynamo.prunable_weights, other.prunable_weights));
    }
    if dynamo.params.0 == other.params.0 && dynamo.params.1 != other.params.1 {
        why.push(format!("prunable parameters {} vs {} (of {} in both)", dynamo.params.1, other.params.1, dynamo.params.0));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

#[test]
fn torchscript_exports_have_the_groups_of_the_dynamo_exports() {
    let index = user_zoo_index("torchscript");
    let files = index["models"].as_array().expect("index.json lists models");
    let zoo: Vec<String> = zoo_names();
    let mut compared = 0;
    let mut failures = Vec::new();
    let mut seen_listed = Vec::new();
    for entry in files {
        let name = entry["name"].as_str().expect("a name");
        let file = entry["file"].as_str().expect("a file");
        if !zoo.iter().any(|z| z == name) {
            continue;
        }
        let (dynamo, dynamo_table) = load(&zoo_dir().join(format!("{name}.onnx")));
        let (ts, ts_table) = load(&user_zoo_dir().join("torchscript").join(file));
        compared += 1;
        let listed = NOT_YET_INVARIANT.iter().find(|(f, _)| *f == file);
        match (difference(&dynamo, &ts), listed) {
            (None, None) | (Some(_), Some(_)) => {}
            (Some(why), None) => failures
                .push(format!("{file}: differs from the dynamo export: {why}\n--- dynamo:\n{dynamo_table}--- torchscript:\n{ts_table}")),
            (None, Some(_)) => failures.push(format!("{file}: now invariant: remove it from NOT_YET_INVARIANT")),
        }
        if listed.is_some() {
            seen_listed.push(file.to_string());
        }
    }
    for (file, _) in NOT_YET_INVARIANT {
        if !seen_listed.iter().any(|f| f == file) {
            failures.push(format!("{file} is listed in NOT_YET_INVARIANT but is not in the user zoo's index"));
        }
    }
    // Every non-bench zoo architecture has its TorchScript file(s).
    assert!(compared >= zoo.len(), "compared {compared} files for {} zoo models", zoo.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
