//! Model size and compute: parameter count and a multiply-accumulate (MAC) estimate.
//!
//! Parameters are the elements of floating-point initializers, less what PyTorch
//! calls buffers and exporters add as constants: BatchNormalization running
//! statistics (inputs 3 and 4) and scalars (the `1.0` of `1 - mask`, the `sqrt(d)`
//! of attention...); in a quantized file, the integer weights of its quantized layers
//! count (as many weights as they hold, [`crate::op::quantized_weight_count`]) and its
//! scales and zero points do not. MACs are counted for the operators that dominate
//! compute (Conv, ConvTranspose, Gemm, MatMul and their integer and quantized forms;
//! RNN/GRU/LSTM: every step's products with W and R), from static shapes with
//! the batch symbol(s) bound to 1; the estimate is per batch element. The symbolic
//! axes of integer inputs after the batch (token ids, attention masks, position ids:
//! the sequence axes) are bound to 1 as well, so a transformer's MACs are per token
//! (the attention's terms that grow with the sequence length count as for one token);
//! [`MacsEstimate::sequence_symbols`] lists them so that the output can say so.
//! Elementwise operators, normalizations and pooling are not counted. The per-operator
//! formulas live with their families (`op/conv.rs`, `op/matmul.rs`).

use crate::graph::{Graph, NodeExt};
use crate::op::matmul::matmul_macs;
use crate::op::{Conv, ConvTranspose, Op};
use crate::shape::Shapes;
use crate::tensor::DType;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The parameters of a model, as counted from its initializers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParamCount {
    /// Elements of parameter initializers (floating point, not buffers or scalars).
    pub parameters: u64,
    /// Number of parameter initializers.
    pub tensors: usize,
    /// Elements of BatchNormalization running statistics (not parameters).
    pub running_stats: u64,
    /// Elements of other non-parameter initializers (integer tensors, scalars).
    pub other: u64,
}

/// What kind of initializer [`parameter_count`] sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InitKind {
    Parameter,
    RunningStats,
    Other,
}

/// The element count of a stored tensor by its dims (saturating; 0 for a negative dim).
pub(crate) fn stored_elements(t: &crate::proto::TensorProto) -> u64 {
    t.dims.iter().try_fold(1u64, |acc, &d| u64::try_from(d).ok().map(|d| acc.saturating_mul(d))).unwrap_or(0)
}

/// Every initializer once (the first of a repeated name), with its element count and kind.
fn initializers<'g>(graph: &'g Graph<'_>) -> Vec<(&'g str, &'g [i64], u64, InitKind)> {
    let mut stats: HashSet<&str> = HashSet::new();
    let mut learned: HashSet<&str> = HashSet::new();
    // Quantized layers' integer weights (with the number of weights they hold), and the
    // scales and zero points of quantization.
    let quantized = crate::op::quantized_weight_tensors(graph);
    let mut quantization: HashSet<&str> = HashSet::new();
    // Whether every reader takes the initializer as a setting (Op::reads_setting).
    let mut setting_only: HashMap<&str, bool> = HashMap::new();
    for (_, node) in graph.nodes() {
        quantization.extend(crate::op::quantization_params(node).iter().filter_map(|&k| node.input.get(k)).map(String::as_str));
        let op = crate::op::Op::parse(graph, node).ok();
        for (k, input) in node.input.iter().enumerate().filter(|(_, i)| !i.is_empty()) {
            *setting_only.entry(input.as_str()).or_insert(true) &= op.as_ref().is_some_and(|op| op.reads_setting(k));
        }
        let Some(op) = op else { continue };
        if op == crate::op::Op::BatchNormalization {
            stats.extend(node.input.iter().skip(3).take(2).map(String::as_str));
        }
        learned.extend(node.input.iter().enumerate().filter(|(k, _)| op.reads_learned(*k)).map(|(_, i)| i.as_str()));
    }
    let mut out = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for t in &graph.proto.initializer {
        let name = t.name.as_deref().unwrap_or("");
        if !seen.insert(name) {
            continue; // the same name twice: count once
        }
        let numel = stored_elements(t);
        let float = DType::from_onnx(t.data_type.unwrap_or(0)).is_some_and(DType::is_float);
        if let Some(&weights) = quantized.get(name).filter(|_| !float && numel > 1) {
            out.push((name, t.dims.as_slice(), weights, InitKind::Parameter));
            continue;
        }
        let kind = if stats.contains(name) {
            InitKind::RunningStats
        } else if (quantization.contains(name) || setting_only.get(name).copied().unwrap_or(false)) && !learned.contains(name) {
            InitKind::Other
        } else if float && (numel > 1 || (numel == 1 && learned.contains(name))) {
            // One element is a parameter where a layer learns it (a one-channel bias).
            InitKind::Parameter
        } else {
            InitKind::Other
        };
        out.push((name, t.dims.as_slice(), numel, kind));
    }
    out
}

/// The initializers [`parameter_count`] counts as parameters, by name.
pub fn parameter_names<'g>(graph: &'g Graph<'_>) -> HashSet<&'g str> {
    initializers(graph).into_iter().filter(|(_, _, _, kind)| *kind == InitKind::Parameter).map(|(name, ..)| name).collect()
}

/// Counts the parameters of `graph` (shared initializers once). Weights are not decoded.
pub fn parameter_count(graph: &Graph<'_>) -> ParamCount {
    let mut count = ParamCount::default();
    for (_, _, numel, kind) in initializers(graph) {
        match kind {
            InitKind::RunningStats => count.running_stats = count.running_stats.saturating_add(numel),
            InitKind::Parameter => {
                count.parameters = count.parameters.saturating_add(numel);
                count.tensors += 1;
            }
            InitKind::Other => count.other = count.other.saturating_add(numel),
        }
    }
    count
}

/// Every initializer [`parameter_count`] counts as parameters, with its element count.
pub fn parameter_tensors(graph: &Graph<'_>) -> Vec<(String, u64)> {
    initializers(graph)
        .into_iter()
        .filter(|(_, _, _, kind)| *kind == InitKind::Parameter)
        .map(|(name, _, numel, _)| (name.to_string(), numel))
        .collect()
}

/// What one initializer costs: the model's parameter count and MAC estimate are sums of
/// these over the initializers (plus [`WeightCosts::other_macs`]), and both scale with the
/// initializer's element count, so a pruning budget can price a removed slice of it.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightCost {
    /// The initializer's dims.
    pub dims: Vec<usize>,
    /// Whether its elements count as parameters in [`parameter_count`].
    pub parameter: bool,
    /// The MACs (per batch element, as [`macs`] counts them) of the nodes that read it as
    /// their weight: Conv/ConvTranspose input 1, the initializer operand of Gemm/MatMul.
    /// A node's MACs are proportional to its weight's element count, the other dims
    /// (output positions, rows) being unchanged by pruning the weight.
    pub macs: u64,
}

/// [`WeightCost`] of every initializer, and the MACs no initializer accounts for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WeightCosts {
    /// Per initializer name.
    pub weights: BTreeMap<String, WeightCost>,
    /// MACs of counted nodes without an initializer weight (activation x activation
    /// MatMul, such as attention scores): a budget treats them as fixed.
    pub other_macs: u64,
}

/// The cost of every initializer of `graph` (see [`WeightCost`]); MACs as [`macs`] counts them.
pub fn weight_costs(graph: &Graph<'_>, shapes: &Shapes) -> WeightCosts {
    weight_costs_given(graph, shapes, &HashMap::new())
}

/// [`weight_costs`] with MACs as [`macs_given`] counts them.
pub fn weight_costs_given(graph: &Graph<'_>, shapes: &Shapes, given: &HashMap<String, i64>) -> WeightCosts {
    let mut out = WeightCosts::default();
    for (name, dims, _, kind) in initializers(graph) {
        let dims = dims.iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect();
        out.weights.insert(name.to_string(), WeightCost { dims, parameter: kind == InitKind::Parameter, macs: 0 });
    }
    let est = macs_given(graph, shapes, given);
    let nodes = &graph.proto.node;
    let mut recurrent_seen: std::collections::HashSet<usize> = std::collections::HashSet::new();
    for m in &est.per_node {
        let Some(node) = nodes.get(m.node) else { continue };
        let weight_input = |k: usize| node.input.get(k).filter(|n| out.weights.contains_key(n.as_str())).cloned();
        let weight = match crate::op::Op::parse(graph, node) {
            Ok(crate::op::Op::Conv(_) | crate::op::Op::ConvTranspose(_)) => weight_input(1),
            // A recurrent layer's first record is W's share, the second R's.
            Ok(crate::op::Op::Rnn(_)) => weight_input(if recurrent_seen.insert(m.node) { 1 } else { 2 }),
            _ => weight_input(1).or_else(|| weight_input(0)),
        };
        match weight.and_then(|w| out.weights.get_mut(&w)) {
            Some(w) => w.macs = w.macs.saturating_add(m.macs),
            None => out.other_macs = out.other_macs.saturating_add(m.macs),
        }
    }
    out
}

/// MACs of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeMacs {
    /// Node index in `GraphProto.node`.
    pub node: usize,
    /// Multiply-accumulates per batch element.
    pub macs: u64,
}

/// A MAC estimate of a whole model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MacsEstimate {
    /// Total multiply-accumulates per batch element.
    pub total: u64,
    /// Per counted node, in topological order.
    pub per_node: Vec<NodeMacs>,
    /// Total per operator type.
    pub by_op: BTreeMap<String, u64>,
    /// Counted operators whose shapes are not static once the batch is bound
    /// (another dynamic axis, or unknown shapes): left out of the total.
    pub unresolved: Vec<usize>,
    /// The sequence symbols bound to 1 (see [`sequence_symbols`]), in input order.
    pub sequence_symbols: Vec<String>,
}

/// The symbols that stand for the batch: every symbolic leading dimension of the real inputs.
pub fn batch_symbols(graph: &Graph<'_>, shapes: &Shapes) -> Vec<String> {
    let mut syms = Vec::new();
    for v in graph.real_inputs() {
        if let Some(d) = v.name.as_deref().and_then(|n| shapes.shape(n)).and_then(|s| s.first()) {
            for s in d.symbols() {
                if !syms.iter().any(|x| x == s) {
                    syms.push(s.to_string());
                }
            }
        }
    }
    syms
}

/// The sequence symbols: the symbolic dimensions after the first of the integer real
/// inputs (token ids, masks, positions), other than the batch symbols.
pub fn sequence_symbols(graph: &Graph<'_>, shapes: &Shapes) -> Vec<String> {
    let batch = batch_symbols(graph, shapes);
    let mut syms = Vec::new();
    for v in graph.real_inputs() {
        let Some(name) = v.name.as_deref() else { continue };
        if shapes.dtype(name).is_none_or(DType::is_float) {
            continue;
        }
        for d in shapes.shape(name).unwrap_or_default().iter().skip(1) {
            for s in d.symbols() {
                if !batch.iter().any(|x| x == s) && !syms.iter().any(|x| x == s) {
                    syms.push(s.to_string());
                }
            }
        }
    }
    syms
}

/// Estimates MACs per batch element: batch symbols (see [`batch_symbols`]) and sequence
/// symbols (see [`sequence_symbols`]) are bound to 1.
pub fn macs(graph: &Graph<'_>, shapes: &Shapes) -> MacsEstimate {
    macs_given(graph, shapes, &HashMap::new())
}

/// [`macs`] with the sizes of other symbolic input axes given (an image's height and
/// width, as the data has them); the batch and sequence symbols stay 1 whatever is given.
///
/// With sizes given, shapes are inferred again with the inputs at those sizes: sizes the
/// graph computes from them that no symbolic expression tells (a window padding, a
/// remainder) are then numbers, and the operators after them count.
pub fn macs_given(graph: &Graph<'_>, shapes: &Shapes, given: &HashMap<String, i64>) -> MacsEstimate {
    let sequence = sequence_symbols(graph, shapes);
    let per_element = batch_symbols(graph, shapes).into_iter().chain(sequence.iter().cloned()).map(|s| (s, 1));
    let bindings: HashMap<String, i64> = given.iter().map(|(k, v)| (k.clone(), *v)).chain(per_element).collect();
    let bound = if given.is_empty() { None } else { crate::shape::infer_bound(graph, &bindings).ok() };
    MacsEstimate { sequence_symbols: sequence, ..macs_with(graph, bound.as_ref().unwrap_or(shapes), &bindings) }
}

/// The sizes `data` gives the symbolic axes of the real graph inputs after the batch
/// axis: `data` holds one shape per real input, in graph order, its first axis the
/// samples. For [`macs_given`] and [`weight_costs_given`].
pub fn data_sizes(graph: &Graph<'_>, shapes: &Shapes, data: &[Vec<i64>]) -> HashMap<String, i64> {
    let mut given = HashMap::new();
    for (v, sizes) in graph.real_inputs().zip(data) {
        let Some(dims) = v.name.as_deref().and_then(|n| shapes.shape(n)) else { continue };
        for (d, &size) in dims.iter().zip(sizes).skip(1) {
            if let (Some(s), true) = (d.as_symbol(), size > 0) {
                given.entry(s.to_string()).or_insert(size);
            }
        }
    }
    given
}

/// Estimates MACs with the given symbol values. A merged decoder (see
/// [`crate::branches`]) counts its first pass ([`crate::branches::first_pass_nodes`]).
pub fn macs_with(graph: &Graph<'_>, shapes: &Shapes, bindings: &HashMap<String, i64>) -> MacsEstimate {
    let mut est = MacsEstimate::default();
    // A merged decoder runs one branch a call: its first pass counts.
    let first_pass = crate::branches::first_pass_nodes(graph.proto);
    for (index, node) in graph.nodes() {
        if first_pass.as_ref().is_some_and(|nodes| !nodes.contains(&index)) {
            continue;
        }
        let op = node.op();
        // A node that does not parse was reported by shape inference; it is not counted here.
        let Ok(parsed) = Op::parse(graph, node) else { continue };
        let contrib_matmul = crate::op::is_contrib_quantized_matmul(node);
        if !contrib_matmul
            && !matches!(
                parsed,
                Op::Conv(_) | Op::QLinearConv(_) | Op::ConvTranspose(_) | Op::Gemm(_) | Op::MatMul { .. } | Op::QLinearMatMul | Op::Rnn(_)
            )
        {
            continue;
        }
        let shape = |k: usize| -> Option<Vec<u64>> {
            let name = node.input.get(k).filter(|s| !s.is_empty())?;
            shapes.bound_shape(name, bindings)?.into_iter().map(|d| u64::try_from(d).ok()).collect()
        };
        let out = node
            .output
            .first()
            .and_then(|o| shapes.bound_shape(o, bindings))
            .and_then(|s| s.into_iter().map(|d| u64::try_from(d).ok()).collect::<Option<Vec<u64>>>());
        if let Op::Rnn(_) = parsed {
            // Every step multiplies the input by W and the state by R, in every direction:
            // two records, W's share first, then R's (see `weight_costs_given`).
            let steps = shape(0).filter(|x| x.len() == 3).map(|x| x[0].saturating_mul(x[1]));
            let numel = |k: usize| shape(k).map(|d| d.iter().product::<u64>());
            match (steps, numel(1), numel(2)) {
                (Some(steps), Some(w), Some(r)) => {
                    for m in [steps.saturating_mul(w), steps.saturating_mul(r)] {
                        est.total = est.total.saturating_add(m);
                        let by_op = est.by_op.entry(op.to_string()).or_default();
                        *by_op = by_op.saturating_add(m);
                        est.per_node.push(NodeMacs { node: index, macs: m });
                    }
                }
                _ => est.unresolved.push(index),
            }
            continue;
        }
        let m = match &parsed {
            Op::Conv(_) => Conv::macs(shape(1).as_deref(), out.as_deref()),
            Op::QLinearConv(_) => Conv::macs(shape(3).as_deref(), out.as_deref()),
            Op::ConvTranspose(_) => ConvTranspose::macs(shape(0).as_deref(), shape(1).as_deref()),
            Op::Gemm(g) => g.macs(shape(0).as_deref(), out.as_deref()),
            Op::MatMul { .. } | Op::QLinearMatMul => matmul_macs(shape(0).as_deref(), out.as_deref()),
            Op::Other(_) if contrib_matmul => matmul_macs(shape(0).as_deref(), out.as_deref()),
            _ => continue,
        };
        match m {
            Some(m) => {
                est.total = est.total.saturating_add(m);
                let by_op = est.by_op.entry(op.to_string()).or_default();
                *by_op = by_op.saturating_add(m);
                est.per_node.push(NodeMacs { node: index, macs: m });
            }
            None => est.unresolved.push(index),
        }
    }
    est
}
