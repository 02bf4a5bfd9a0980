//! The QDQ rewrite: quantized weights behind `DequantizeLinear`, and calibrated
//! `QuantizeLinear` -> `DequantizeLinear` pairs on the activations feeding them.
//!
//! **Targets.** A `Conv`, `Gemm` or `MatMul` node whose input 1 (the weight) is an f32
//! initializer. The output channel axis of the weight: `Conv` `[M, C/g, k...]` axis 0;
//! `Gemm` `B` axis 1 (`[K, N]`), or 0 with `transB` (`[N, K]`); `MatMul` `B`
//! `[..., K, N]` its last axis. The input axis (blocked for int4) is the other of the
//! two: `Conv` 1, `Gemm` 0 (1 with `transB`), `MatMul` the second to last. A weight
//! that something else reads too, or that two readers would cut along different axes,
//! stays float (listed in the report with the reason).
//!
//! **Weights.** Per [`BitPlan`]: int8 per output channel (`DequantizeLinear` with
//! `axis`, opset 13), int4 in blocks of `block_size` along the input axis (`axis` and
//! `block_size`, opset 21), both symmetric with explicit zero-point tensors of zeros
//! (of the integer type; onnxruntime's QDQ fusions look for them). The weight `W`
//! becomes the initializers `W_quantized`, `W_scale`, `W_zero_point` and the node
//! `W_DequantizeLinear` whose output `W_dequantized` the targets read.
//!
//! **Activations** (optional): the values [`activation_values`] lists (the input 0 of
//! every target with int8 weights, and the output of every `Conv` with int8 weights, taken after a
//! `Relu` that is its only reader) go through `X_QuantizeLinear` -> `X_DequantizeLinear` (8-bit,
//! per tensor, affine: [`crate::math::affine_params`] of the calibrated range), inserted
//! right after the value is computed. `X_dequantized` is read by the node groups
//! onnxruntime fuses (the targets, an `Add` of two listed values whose output is listed, a
//! `MaxPool` whose output is listed), and by every reader of the output of such a group
//! (computed in integers once fused); other readers (a graph output, a residual `Add` into
//! float values as in a transformer, a normalization) keep the float value, so quantization
//! adds no error where it buys no integer kernel. This is the
//! placement onnxruntime's QDQ selectors fuse:
//! `DQ -> Conv -> [Relu] -> Q` becomes `QLinearConv` (the `Relu` is redundant: the range
//! after it starts at 0, so the zero point is the lowest level), `DQ, DQ -> Add -> Q`
//! `QLinearAdd`, `DQ -> MaxPool -> Q` an 8-bit `MaxPool`, `DQ(x), DQ(W) -> MatMul`
//! `MatMulIntegerToFloat` (a `Gemm` stays float: `QGemm` wants an int32 bias, and biases
//! stay float here). Targets with int4 weights are weight-only (their input stays float):
//! onnxruntime computes with an int4 weight only in `MatMulNBits` (`DQ(int4 W, blocked along
//! the input axis) -> MatMul` with a float input) and has no int4 convolution, so a quantized
//! input would buy no kernel. The activations are stored as **uint8**: the same 256 levels as affine int8
//! (the zero point moved by 128, every dequantized value identical), but onnxruntime's x86
//! kernels are U8S8: it converts an int8 activation pair to uint8 only where its
//! `QuantizeLinear` has a single reader, so int8 activations read by two nodes (a residual
//! block's input: its first `Conv` and its `Add`) would block the fusion.
//!
//! The default-domain opset is raised to what the model needs ([`crate::opset::raise`]);
//! the graph's inputs, outputs and every other node keep their names.

use crate::allocate::BitOption;
use crate::calib::Range;
use crate::math::{self, QType, QuantizedWeight};
use crate::plan::{BitPlan, Bits};
use crate::{opset, Error, Result};
use oto_onnx::graph::{node_label, Graph};
use oto_onnx::op::Op;
use oto_onnx::proto::attribute_proto::AttributeType;
use oto_onnx::proto::{AttributeProto, ModelProto, NodeProto, TensorProto};
use oto_onnx::{DType, Model};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Unique value and node names in a graph.
pub(crate) struct Names(HashSet<String>);

impl Names {
    /// Every name `proto` uses (values, initializers, nodes).
    pub(crate) fn of(proto: &ModelProto) -> Names {
        let mut set = HashSet::new();
        if let Some(g) = &proto.graph {
            for n in &g.node {
                set.extend(n.input.iter().chain(&n.output).cloned());
                set.extend(n.name.clone());
            }
            set.extend(g.initializer.iter().filter_map(|t| t.name.clone()));
            set.extend(g.input.iter().chain(&g.output).chain(&g.value_info).filter_map(|v| v.name.clone()));
        }
        Names(set)
    }

    /// `base`, or `base_1`, `base_2`... whichever is not taken yet (and takes it).
    pub(crate) fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 0usize;
        while self.0.contains(&name) {
            k += 1;
            name = format!("{base}_{k}");
        }
        self.0.insert(name.clone());
        name
    }
}

/// An INT attribute.
pub(crate) fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Int as i32), i: Some(v), ..Default::default() }
}

fn node(op: &str, name: String, inputs: Vec<String>, outputs: Vec<String>, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto { op_type: Some(op.into()), name: Some(name), input: inputs, output: outputs, attribute, ..Default::default() }
}

fn f32_tensor(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(DType::F32.onnx_code()),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into()),
        ..Default::default()
    }
}

/// An integer tensor of type `q` (4-bit types packed), as `raw_data`.
pub fn int_tensor(name: &str, dims: &[usize], values: &[i32], q: QType) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(q.onnx_code()),
        raw_data: Some(math::storage(values, q).into()),
        ..Default::default()
    }
}

/// A weight the rewrite can quantize, and how.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Target {
    /// The weight initializer.
    pub weight: String,
    /// The nodes reading it (labels).
    pub nodes: Vec<String>,
    /// Its shape.
    pub shape: Vec<usize>,
    /// The output channel axis.
    pub out_axis: usize,
    /// The input axis (blocked for int4).
    pub in_axis: usize,
    /// The activations (input 0 of the readers) computed at run time in f32.
    pub activations: Vec<String>,
}

/// A weight of a `Conv`/`Gemm`/`MatMul` left float, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Skipped {
    /// The initializer.
    pub weight: String,
    /// Why it stays float.
    pub reason: String,
}

/// The output and input axes of input 1 of `op` when its rank is `rank`.
fn weight_axes(op: &Op, rank: usize) -> Option<(usize, usize)> {
    match op {
        Op::Conv(c) if !c.integer && rank >= 3 => Some((0, 1)),
        Op::Gemm(g) if rank == 2 => Some(if g.trans_b { (0, 1) } else { (1, 0) }),
        Op::MatMul { integer: false } if rank >= 2 => Some((rank - 1, rank - 2)),
        _ => None,
    }
}

/// The weights of `model` the rewrite can quantize, in initializer order, and the
/// weights of such operators it leaves float.
pub fn targets(model: &Model) -> Result<(Vec<Target>, Vec<Skipped>)> {
    let graph = Graph::new(model)?;
    let shapes = oto_onnx::shape::infer(&graph)?;
    let mut found: BTreeMap<usize, Target> = BTreeMap::new();
    let mut skipped: Vec<Skipped> = Vec::new();
    let skip = |weight: &str, reason: String, skipped: &mut Vec<Skipped>| {
        if !skipped.iter().any(|s| s.weight == weight) {
            skipped.push(Skipped { weight: weight.to_string(), reason });
        }
    };
    let init_index: HashMap<&str, usize> =
        graph.proto.initializer.iter().enumerate().filter_map(|(i, t)| Some((t.name.as_deref()?, i))).collect();
    for (_, n) in graph.nodes() {
        let op = Op::parse(&graph, n)?;
        if !matches!(op, Op::Conv(_) | Op::Gemm(_) | Op::MatMul { .. }) {
            continue;
        }
        let Some(w) = oto_onnx::ops::input(n, 1) else { continue };
        let Some(&index) = init_index.get(w) else { continue };
        let init = &graph.proto.initializer[index];
        if init.data_type != Some(DType::F32.onnx_code()) {
            skip(w, "not float32".into(), &mut skipped);
            continue;
        }
        let shape: Vec<usize> = init.dims.iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect();
        let Some((out_axis, in_axis)) = weight_axes(&op, shape.len()) else {
            skip(w, format!("{} reads it with rank {}", node_label(n), shape.len()), &mut skipped);
            continue;
        };
        let others: Vec<String> = graph
            .consumers(w)
            .iter()
            .filter_map(|u| {
                let reader = graph.node(u.node);
                let same =
                    u.input == 1 && Op::parse(&graph, reader).ok().and_then(|o| weight_axes(&o, shape.len())) == Some((out_axis, in_axis));
                (!same).then(|| node_label(reader))
            })
            .collect();
        if !others.is_empty() || graph.is_output(w) {
            skip(w, format!("also read by {} (as another operand or along other axes)", others.join(", ")), &mut skipped);
            continue;
        }
        let target = found.entry(index).or_insert_with(|| Target {
            weight: w.to_string(),
            nodes: Vec::new(),
            shape: shape.clone(),
            out_axis,
            in_axis,
            activations: Vec::new(),
        });
        target.nodes.push(node_label(n));
        if let Some(x) = oto_onnx::ops::input(n, 0) {
            let computed = graph.initializer(x).is_none() && graph.constant(x).ok().flatten().is_none();
            if computed && shapes.dtype(x) == Some(DType::F32) && !target.activations.iter().any(|a| a == x) {
                target.activations.push(x.to_string());
            }
        }
    }
    skipped.retain(|s| !found.values().any(|t| t.weight == s.weight));
    Ok((found.into_values().collect(), skipped))
}

/// `value`, or the output of the `Relu` that is its only reader (and not a graph output):
/// where a quantized operator's output is quantized.
fn after_relu(graph: &Graph, value: &str) -> String {
    if let [u] = graph.consumers(value) {
        let reader = graph.node(u.node);
        if !graph.is_output(value) && is_op(reader, "Relu") {
            if let Some(y) = reader.output.first() {
                return y.clone();
            }
        }
    }
    value.to_string()
}

/// Where the activations are quantized (see [`activation_values`]).
#[derive(Default)]
struct Placement {
    /// The values, in graph order.
    values: Vec<String>,
    /// Those every reader reads dequantized: the outputs of quantized `Conv`s (after their
    /// `Relu`) and of the `readers`, which onnxruntime computes in integers (their float
    /// value does not exist; a float reader would also keep the producer from fusing).
    everywhere: HashSet<String>,
    /// Nodes (by their first output) other than the quantized targets that read the
    /// dequantized inputs: the `Add`s of two quantized values and the `MaxPool`s whose
    /// output is quantized, which onnxruntime then runs in 8 bits.
    readers: HashSet<String>,
    /// The int8 weights: their readers read input 0 dequantized. int4 weights are
    /// weight-only (see [`placement`]).
    int8_weights: HashSet<String>,
}

/// Whether `n` is the default-domain operator `op`.
fn is_op(n: &NodeProto, op: &str) -> bool {
    n.op_type.as_deref() == Some(op) && n.domain.as_deref().unwrap_or("").is_empty()
}

/// The placement of [`activation_values`] for the quantized weights of `plan`.
fn placement(model: &Model, targets: &[Target], plan: &BitPlan) -> Result<Placement> {
    let graph = Graph::new(model)?;
    let shapes = oto_onnx::shape::infer(&graph)?;
    let int8_weights: HashSet<String> = targets.iter().filter(|t| plan.bits(&t.weight) == Bits::Int8).map(|t| t.weight.clone()).collect();
    let mut values: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut add = |v: String, values: &mut Vec<String>| {
        let computed = graph.initializer(&v).is_none() && graph.constant(&v).ok().flatten().is_none();
        let ok = computed && !graph.is_output(&v) && shapes.dtype(&v) == Some(DType::F32);
        if ok && seen.insert(v.clone()) {
            values.push(v);
        }
        ok
    };
    // int4 weights are weight-only: onnxruntime has no kernel that computes with an int4
    // weight and a quantized input (it fuses `DQ(int4 W) -> MatMul` with a float input into
    // `MatMulNBits`, and has no int4 convolution), so quantizing their input would only add
    // error and two element-wise passes.
    for t in targets.iter().filter(|t| int8_weights.contains(&t.weight)) {
        for x in &t.activations {
            add(x.clone(), &mut values);
        }
    }
    let mut everywhere = HashSet::new();
    for (_, n) in graph.nodes() {
        let Some(y) = n.output.first().filter(|y| !y.is_empty()) else { continue };
        // int8 only: onnxruntime has no int4 convolution kernel, so a quantized output would
        // only add a rounding and two element-wise passes around a float Conv.
        if is_op(n, "Conv") && n.input.get(1).is_some_and(|w| int8_weights.contains(w)) {
            let v = after_relu(&graph, y);
            if add(v.clone(), &mut values) {
                everywhere.insert(v);
            }
        }
    }
    let listed: HashSet<&str> = values.iter().map(String::as_str).collect();
    let mut readers = HashSet::new();
    for (_, n) in graph.nodes() {
        let Some(y) = n.output.first().filter(|y| !y.is_empty()) else { continue };
        let quantized_out = if is_op(n, "Add") && n.input.len() == 2 && n.input.iter().all(|x| listed.contains(x.as_str())) {
            Some(after_relu(&graph, y))
        } else if is_op(n, "MaxPool") && n.output.len() == 1 && n.input.first().is_some_and(|x| listed.contains(x.as_str())) {
            Some(y.clone())
        } else {
            None
        };
        // Fused, the node computes its (listed) output in integers: every reader reads it dequantized.
        if let Some(v) = quantized_out.filter(|v| listed.contains(v.as_str())) {
            readers.insert(y.clone());
            everywhere.insert(v);
        }
    }
    Ok(Placement { values, everywhere, readers, int8_weights })
}

/// The activations the rewrite quantizes when the weights `plan` does not keep float are
/// quantized, in graph order: the input 0 of the int8 weights' readers ([`Target::activations`];
/// int4 weights are weight-only)
/// and the output of those readers that are a `Conv` with int8 weights (after a `Relu` that
/// is its only reader); f32 values computed at run time, never a graph output. The `Add`s of two listed
/// values and the `MaxPool`s of one whose output (after a `Relu` that is its only reader)
/// is listed read them dequantized too: onnxruntime fuses those groups. The outputs of the
/// fused groups (quantized `Conv`s, those `Add`s and `MaxPool`s) are read dequantized by
/// every reader; the other values only by the targets and those groups, every other reader
/// keeps reading the float value.
pub fn activation_values(model: &Model, targets: &[Target], plan: &BitPlan) -> Result<Vec<String>> {
    Ok(placement(model, targets, plan)?.values)
}

/// What [`quantize_model`] does.
#[derive(Debug, Clone)]
pub struct QuantizeOptions {
    /// Bits per weight.
    pub plan: BitPlan,
    /// Block size along the input axis of int4 weights; 0: one int4 scale per output
    /// channel (no blocks), for weights whose input axis is too short for blocks to pay.
    pub block_size: usize,
    /// Calibrated ranges of the activations to quantize (by value name); `None` keeps
    /// activations float. Every value [`activation_values`] lists must have one.
    pub activations: Option<HashMap<String, Range>>,
}

/// One weight in the size table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WeightReport {
    /// The initializer.
    pub weight: String,
    /// The nodes reading it.
    pub nodes: Vec<String>,
    /// Its shape.
    pub shape: Vec<usize>,
    /// How it is stored.
    pub bits: Bits,
    /// Bytes as float32.
    pub float_bytes: usize,
    /// Bytes as stored: integers (packed), scales and zero points; the float bytes if kept float.
    pub stored_bytes: usize,
    /// Largest |dequantized - float| over its elements (0 if kept float).
    pub max_error: f32,
}

/// What the rewrite did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QuantizeReport {
    /// Default-domain opset of the input and of the output.
    pub opset: (i64, i64),
    /// Every target weight.
    pub weights: Vec<WeightReport>,
    /// Weights of Conv/Gemm/MatMul left float, with why.
    pub skipped: Vec<Skipped>,
    /// Activations quantized (value name, scale, uint8 zero point).
    pub activations: Vec<(String, f32, i32)>,
    /// Bytes of every other initializer (biases, normalization parameters...), unchanged.
    pub other_bytes: usize,
}

impl QuantizeReport {
    /// Float32 bytes of the target weights.
    pub fn float_bytes(&self) -> usize {
        self.weights.iter().map(|w| w.float_bytes).sum()
    }

    /// Stored bytes of the target weights (with scales and zero points).
    pub fn stored_bytes(&self) -> usize {
        self.weights.iter().map(|w| w.stored_bytes).sum()
    }
}

/// Quantizes `model` (see the module documentation): the QDQ model and its report.
pub fn quantize_model(model: &Model, options: &QuantizeOptions) -> Result<(Model, QuantizeReport)> {
    let path = model.path().display().to_string();
    let (found, skipped) = targets(model)?;
    let from = model.opset();
    let int4 = found.iter().any(|t| options.plan.bits(&t.weight) == Bits::Int4);
    let need = if int4 { 21 } else { 13 };
    if int4 && options.block_size == 1 {
        return Err(Error::Model("block size 1 must be at least 2 (or 0: int4 per output channel)".into()));
    }
    let raised = opset::raise(model, need)?;
    let mut names = Names::of(&raised);
    let mut proto = raised;
    let graph_proto = proto.graph.get_or_insert_with(Default::default);

    let mut rename: HashMap<String, String> = HashMap::new();
    let mut weight_nodes = Vec::new();
    let mut new_inits = Vec::new();
    let mut removed: HashSet<String> = HashSet::new();
    let mut weights = Vec::new();
    for t in &found {
        let bits = options.plan.bits(&t.weight);
        let float_bytes = 4 * t.shape.iter().product::<usize>();
        if bits == Bits::Float {
            weights.push(WeightReport {
                weight: t.weight.clone(),
                nodes: t.nodes.clone(),
                shape: t.shape.clone(),
                bits,
                float_bytes,
                stored_bytes: float_bytes,
                max_error: 0.0,
            });
            continue;
        }
        let data = weight_values(model, t)?;
        let q = quantize_weight(&data, t, bits, options.block_size)
            .map_err(|e| Error::Model(format!("{path}: initializer '{}': {e}", t.weight)))?;
        let max_error = data.iter().zip(q.dequantize()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        weights.push(WeightReport {
            weight: t.weight.clone(),
            nodes: t.nodes.clone(),
            shape: t.shape.clone(),
            bits,
            float_bytes,
            stored_bytes: q.bytes(),
            max_error,
        });
        let out = dequantize_weight(&t.weight, &q, &mut names, &mut new_inits, &mut weight_nodes);
        rename.insert(t.weight.clone(), out);
        removed.insert(t.weight.clone());
    }

    // Activations: one Q/DQ pair per value, right after it is computed; its readers read
    // the dequantized value.
    let place = match &options.activations {
        Some(_) => placement(model, &found, &options.plan)?,
        None => Placement::default(),
    };
    let acts = &place.values;
    let mut act_rename: HashMap<String, String> = HashMap::new();
    let mut act_report = Vec::new();
    let mut act_nodes: HashMap<String, Vec<NodeProto>> = HashMap::new();
    if let Some(ranges) = &options.activations {
        for x in acts {
            let r = ranges.get(x).ok_or_else(|| Error::Model(format!("{path}: activation '{x}' has no calibrated range")))?;
            let (scale, zp) =
                math::affine_params(r.min, r.max, QType::Uint8).map_err(|e| Error::Model(format!("{path}: activation '{x}': {e}")))?;
            let s = names.fresh(&format!("{x}_scale"));
            let z = names.fresh(&format!("{x}_zero_point"));
            let qv = names.fresh(&format!("{x}_quantized"));
            let dv = names.fresh(&format!("{x}_dequantized"));
            new_inits.push(f32_tensor(&s, &[], &[scale]));
            new_inits.push(int_tensor(&z, &[], &[zp], QType::Uint8));
            let qn = node(
                "QuantizeLinear",
                names.fresh(&format!("{x}_QuantizeLinear")),
                vec![x.clone(), s.clone(), z.clone()],
                vec![qv.clone()],
                vec![],
            );
            let dn = node("DequantizeLinear", names.fresh(&format!("{x}_DequantizeLinear")), vec![qv, s, z], vec![dv.clone()], vec![]);
            act_nodes.insert(x.clone(), vec![qn, dn]);
            act_rename.insert(x.clone(), dv);
            act_report.push((x.clone(), scale, zp));
        }
    }

    // Nodes: weight DequantizeLinear first, then the pairs of graph inputs, then every node
    // (reading dequantized values) followed by the pairs of the values it computes.
    let mut nodes = weight_nodes;
    for i in &graph_proto.input {
        if let Some(pair) = i.name.as_deref().and_then(|x| act_nodes.remove(x)) {
            nodes.extend(pair);
        }
    }
    for mut n in std::mem::take(&mut graph_proto.node) {
        let is_target = n.input.get(1).is_some_and(|w| rename.contains_key(w));
        // An int4 target reads its input float (weight-only, see `placement`) unless that
        // value exists only in integers (the output of a fused group).
        let int8_target = n.input.get(1).is_some_and(|w| place.int8_weights.contains(w));
        let fused_reader = n.output.first().is_some_and(|y| place.readers.contains(y));
        for (k, x) in n.input.iter_mut().enumerate() {
            let reads_dequantized = place.everywhere.contains(x.as_str()) || fused_reader || (int8_target && k == 0);
            if let Some(dv) = act_rename.get(x.as_str()).filter(|_| reads_dequantized) {
                *x = dv.clone();
            } else if is_target && k == 1 {
                if let Some(w) = rename.get(x.as_str()) {
                    *x = w.clone();
                }
            }
        }
        let pairs: Vec<NodeProto> = n.output.iter().filter_map(|y| act_nodes.remove(y)).flatten().collect();
        nodes.push(n);
        nodes.extend(pairs);
    }
    graph_proto.node = nodes;
    let other_bytes = graph_proto
        .initializer
        .iter()
        .filter(|i| !i.name.as_deref().is_some_and(|n| found.iter().any(|t| t.weight == n)))
        .map(initializer_bytes)
        .sum();
    graph_proto.initializer.retain(|i| !i.name.as_deref().is_some_and(|n| removed.contains(n)));
    graph_proto.initializer.extend(new_inits);
    graph_proto.value_info.retain(|v| !v.name.as_deref().is_some_and(|n| removed.contains(n)));
    let to = proto
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref().unwrap_or(""), "" | "ai.onnx"))
        .and_then(|o| o.version)
        .unwrap_or(from);
    let out = Model::from_proto(proto, &path, model.base_dir().map(|p| p.to_path_buf()))?;
    Ok((out, QuantizeReport { opset: (from, to), weights, skipped, activations: act_report, other_bytes }))
}

/// The float32 values of the weight of `target` in `model`.
fn weight_values(model: &Model, target: &Target) -> Result<Vec<f32>> {
    let path = model.path().display().to_string();
    let init = model
        .proto
        .graph
        .as_ref()
        .and_then(|g| g.initializer.iter().find(|i| i.name.as_deref() == Some(target.weight.as_str())))
        .ok_or_else(|| Error::Model(format!("{path}: initializer '{}' not found", target.weight)))?;
    let value = model.tensor(init)?;
    let data = value.as_f32().ok_or_else(|| Error::Model(format!("{path}: initializer '{}' is not float32", target.weight)))?;
    Ok(data.to_vec())
}

/// `data` (the weight of `target`) quantized as the rewrite stores it with `bits` (int8
/// per output channel, int4 in blocks of `block_size` along the input axis, or per output
/// channel when `block_size` is 0).
/// `bits` must not be [`Bits::Float`].
pub fn quantize_weight(data: &[f32], target: &Target, bits: Bits, block_size: usize) -> Result<QuantizedWeight> {
    match bits {
        Bits::Int8 => math::quantize_per_axis(data, &target.shape, target.out_axis, QType::Int8),
        Bits::Int4 if block_size == 0 => math::quantize_per_axis(data, &target.shape, target.out_axis, QType::Int4),
        Bits::Int4 => math::quantize_blockwise(data, &target.shape, target.in_axis, block_size, QType::Int4),
        Bits::Float => Err(Error::Quantize(format!("weight '{}': float is not a quantized width", target.weight))),
    }
}

/// What each of `choices` costs for every target of `model` (in `targets` order): the
/// bytes the rewrite stores (integers, scales and zero points; 4 bytes per weight kept
/// float) and `||Q_b(W) - W||^2` (0 kept float), for a bit allocation.
pub fn bit_options(model: &Model, targets: &[Target], choices: &[Bits], block_size: usize) -> Result<Vec<Vec<BitOption>>> {
    let path = model.path().display().to_string();
    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        let data = weight_values(model, t)?;
        let mut options = Vec::with_capacity(choices.len());
        for &bits in choices {
            let option = match bits {
                Bits::Float => BitOption { bits: bits.width(), bytes: 4 * data.len() as u64, squared_error: 0.0 },
                _ => {
                    let q = quantize_weight(&data, t, bits, block_size)
                        .map_err(|e| Error::Model(format!("{path}: initializer '{}': {e}", t.weight)))?;
                    let squared_error = data.iter().zip(q.dequantize()).map(|(&a, b)| (f64::from(a) - f64::from(b)).powi(2)).sum::<f64>();
                    BitOption { bits: bits.width(), bytes: q.bytes() as u64, squared_error }
                }
            };
            options.push(option);
        }
        out.push(options);
    }
    Ok(out)
}

/// Bytes of an initializer's elements (4-bit types packed; 0 for types without a fixed size).
fn initializer_bytes(t: &TensorProto) -> usize {
    let count: usize = t.dims.iter().map(|&d| usize::try_from(d).unwrap_or(0)).product();
    let code = t.data_type.unwrap_or(0);
    if let Some(q) = QType::from_onnx(code) {
        return q.storage_bytes(count);
    }
    DType::from_onnx(code).map_or(0, |d| d.size() * count)
}

/// Adds the initializers and the `DequantizeLinear` node of a quantized weight; returns
/// the name of the dequantized value.
fn dequantize_weight(
    weight: &str,
    q: &QuantizedWeight,
    names: &mut Names,
    inits: &mut Vec<TensorProto>,
    nodes: &mut Vec<NodeProto>,
) -> String {
    let qn = names.fresh(&format!("{weight}_quantized"));
    let s = names.fresh(&format!("{weight}_scale"));
    let z = names.fresh(&format!("{weight}_zero_point"));
    let out = names.fresh(&format!("{weight}_dequantized"));
    inits.push(int_tensor(&qn, &q.shape, &q.values, q.qtype));
    inits.push(f32_tensor(&s, &q.scale_shape, &q.scales));
    inits.push(int_tensor(&z, &q.scale_shape, &vec![0; q.scales.len()], q.qtype));
    let mut attrs = vec![int_attr("axis", q.axis as i64)];
    if let Some(b) = q.block_size {
        attrs.push(int_attr("block_size", b as i64));
    }
    nodes.push(node("DequantizeLinear", names.fresh(&format!("{weight}_DequantizeLinear")), vec![qn, s, z], vec![out.clone()], attrs));
    out
}
