//! onnxruntime's fused operators written back as standard ONNX (step 3b of the module
//! documentation of [`super`]).
//!
//! onnxruntime's transformer optimizer (`optimum-cli onnxruntime optimize`,
//! `onnxruntime.transformers.optimizer`) fuses a layer's pieces into operators of the
//! `com.microsoft` domain. The element-wise ones and the fused normalizations have an
//! exact standard form, which every later stage understands:
//!
//! * `SkipLayerNormalization(x, skip, gamma, beta?, bias?)`: `s = x + skip (+ bias)`,
//!   then `LayerNormalization(s, gamma, beta)` over the last axis (opset >= 17; before,
//!   its ReduceMean/Sub/Mul/Sqrt/Div form); output 3, when read, is `s`;
//! * `SkipSimplifiedLayerNormalization(x, skip, gamma, bias?)` and
//!   `SimplifiedLayerNormalization(x, gamma)` (last axis): `s / sqrt(mean(s^2) + eps) * gamma`;
//! * `BiasGelu(x, bias)` and `Gelu(x)`: `0.5 * x * (1 + erf(x / sqrt(2)))` of `x (+ bias)`;
//! * `FastGelu(x, bias?)`: `0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))`;
//! * `QuickGelu(x)`: `x * sigmoid(alpha * x)`;
//! * `EmbedLayerNormalization` (opset >= 13): the word, position (`Range` of the sequence
//!   length unless position ids are given) and segment embeddings gathered and summed,
//!   then layer-normalized; its mask index is the mask's row sum (int32);
//! * `Attention` (opset >= 13; no past, no attention bias, not unidirectional, no
//!   rotary): `x @ W + b` split into Q, K, V, each `[batch, seq, heads, head]` moved to
//!   `[batch, heads, seq, head]`, `softmax(Q K^T * scale + mask) V` and the heads merged
//!   back; a mask index of end positions (from an `EmbedLayerNormalization`) or a raw
//!   `[batch, seq]` mask (a graph input) adds `mask_filter_value` where a key is masked;
//! * `FusedConv(x, w, b?, z?)` (a file onnxruntime saved at `ORT_ENABLE_EXTENDED`):
//!   `act(Conv(x, w, b) + z)`, the `Conv` keeping the node's convolution attributes;
//! * `FusedGemm(a, b, c?)`: `act(Gemm(a, b, c))`;
//! * `FusedMatMul(a, b)`: `alpha * MatMul(a', b')`, where `transBatchA` moves `a`'s first
//!   axis to just before its last and then `transA` swaps its last two (same for `b`).
//!
//! The fused activations are the standard operators of that name: `Relu`, `Sigmoid`, `Tanh`,
//! `Softsign`, `Softplus`, `LeakyRelu`, `Elu`, `ThresholdedRelu` (`alpha`), `HardSigmoid`
//! (`alpha`, `beta`), `Selu` (`alpha`, `gamma`), `Clip` (`min`, `max`); their parameters are
//! `FusedConv`'s `activation_params` in that order, or `FusedGemm`'s `activation_alpha`,
//! `activation_beta` and `activation_gamma`.
//!
//! ONNX's experimental operators, removed at opset 10 but still run by onnxruntime and
//! written in old model zoo files (tiny YOLOv2 begins with an `ImageScaler`), are
//! rewritten the same way:
//!
//! * `ImageScaler(x)`: `x * scale + bias` (one bias per channel of `NCHW`);
//! * `Affine(x)`: `x * alpha + beta`; `Scale(x)`: `x * scale`;
//! * `ScaledTanh(x)`: `alpha * tanh(beta * x)`; `ParametricSoftplus(x)`:
//!   `alpha * softplus(beta * x)` (both need their `alpha` and `beta`, as onnxruntime does);
//! * `Crop(x)`: the `Slice` of the spatial axes `border = [left, top, right, bottom]`
//!   leaves, or `scale = [height, width]` from the top left border.
//!
//! The constants take the element type of the node's parameters (its gamma or bias
//! initializer) or of its input where the file declares it, else the one float type of a
//! file that declares and casts to no other; a node whose type cannot be told, or that writes an output no standard form gives (the statistics outputs of the
//! normalizations, an attention's cache), stays as it is, as do the other attention
//! fusions (`MultiHeadAttention`, `GroupQueryAttention`...): the analysis treats them as
//! operators it does not understand.

use super::{is_default_domain, Names};
use crate::builder::Attr;
use crate::graph::NodeExt;
use crate::proto::{AttributeProto, GraphProto, NodeProto, TensorProto};
use crate::tensor::{DType, Tensor, TensorData};
use std::collections::HashMap;

/// The fused operators written back, by their `op_type`.
const FUSED: &[&str] = &[
    "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "SimplifiedLayerNormalization",
    "BiasGelu",
    "Gelu",
    "FastGelu",
    "QuickGelu",
    "EmbedLayerNormalization",
    "Attention",
    "FusedConv",
    "FusedGemm",
    "FusedMatMul",
];

/// ONNX's experimental operators of opsets 1 to 9 written back, by their `op_type`.
const EXPERIMENTAL: &[&str] = &["ImageScaler", "Affine", "Scale", "ScaledTanh", "ParametricSoftplus", "Crop"];

/// How many nodes [`decompose`] wrote as standard ONNX, by origin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Decomposed {
    /// onnxruntime's fused operators.
    pub fused: usize,
    /// ONNX's experimental operators.
    pub experimental: usize,
}

/// Rewrites the fused and experimental operators of the module documentation. `inferred`
/// adds ranks to those the file declares (a `FusedMatMul`'s transposed operands need them,
/// and onnxruntime saves no `value_info`).
pub(super) fn decompose(graph: &mut GraphProto, opset: i64, inferred: &HashMap<String, usize>) -> Decomposed {
    let experimental = |n: &NodeProto| is_default_domain(n) && EXPERIMENTAL.contains(&n.op());
    let fused = |n: &NodeProto| {
        let domain = n.domain.as_deref().unwrap_or("");
        // SimplifiedLayerNormalization is registered in the default domain by onnxruntime.
        let contrib = domain == "com.microsoft" || (is_default_domain(n) && n.op() == "SimplifiedLayerNormalization");
        (contrib && FUSED.contains(&n.op())) || experimental(n)
    };
    let mut count = Decomposed::default();
    if !graph.node.iter().any(fused) {
        return count;
    }
    let mut declared: HashMap<String, DType> = HashMap::new();
    for t in &graph.initializer {
        if let (Some(name), Some(d)) = (t.name.clone(), t.data_type.and_then(DType::from_onnx)) {
            declared.insert(name, d);
        }
    }
    for v in graph.input.iter().chain(&graph.value_info).chain(&graph.output) {
        let elem = v.r#type.as_ref().and_then(|t| match t.value.as_ref() {
            Some(crate::proto::type_proto::Value::TensorType(tt)) => tt.elem_type,
            _ => None,
        });
        if let (Some(name), Some(d)) = (v.name.clone(), elem.and_then(DType::from_onnx)) {
            declared.entry(name).or_insert(d);
        }
    }
    let weight_cols: HashMap<String, i64> =
        graph.initializer.iter().filter(|t| t.dims.len() == 2).filter_map(|t| Some((t.name.clone()?, t.dims[1]))).collect();
    // Ranks the file declares (graph inputs, value_info, initializers), for the attention
    // masks and FusedMatMul's transposed operands.
    let mut ranks: HashMap<String, usize> = graph.initializer.iter().filter_map(|t| Some((t.name.clone()?, t.dims.len()))).collect();
    for v in graph.input.iter().chain(&graph.value_info) {
        let rank = v.r#type.as_ref().and_then(|t| match t.value.as_ref() {
            Some(crate::proto::type_proto::Value::TensorType(tt)) => tt.shape.as_ref().map(|s| s.dim.len()),
            _ => None,
        });
        if let (Some(name), Some(r)) = (v.name.clone(), rank) {
            ranks.insert(name, r);
        }
    }
    for (name, &r) in inferred {
        ranks.entry(name.clone()).or_insert(r);
    }
    // A Cast keeps the rank (the optimizer casts the int64 mask to int32).
    for n in &graph.node {
        if n.op() == "Cast" && is_default_domain(n) {
            if let (Some(i), Some(o)) = (n.input.first(), n.output.first()) {
                if let Some(&r) = ranks.get(i) {
                    ranks.insert(o.clone(), r);
                }
            }
        }
    }
    // The one float type of a file that declares no other and casts to no other: that of
    // every float value in it (old zoo files declare only their inputs and outputs).
    let only_float = {
        let mut floats = declared.values().filter(|d| d.is_float());
        let first = floats.next().copied();
        let casts_away = graph.node.iter().any(|n| {
            let to = n.attr_int("to").ok().flatten().and_then(|t| i32::try_from(t).ok()).and_then(DType::from_onnx);
            n.op() == "Cast" && to.is_some_and(|t| t.is_float() && Some(t) != first)
        });
        first.filter(|f| floats.all(|d| d == f) && !casts_away)
    };
    let mut names = Names::of(graph);
    let mut out = Vec::with_capacity(graph.node.len());
    let mut added: Vec<TensorProto> = Vec::new();
    for node in std::mem::take(&mut graph.node) {
        if !fused(&node) {
            out.push(node);
            continue;
        }
        // The compute type: the parameters' (inputs 1.. that are initializers), else the
        // input's, else the file's one float type (a QuickGelu between two layers).
        let dtype = node.input.iter().skip(1).chain(node.input.first()).filter_map(|v| declared.get(v)).find(|d| d.is_float()).copied();
        let Some(dtype) = dtype.or(only_float) else {
            out.push(node);
            continue;
        };
        let mut e = Emit {
            names: &mut names,
            weight_cols: &weight_cols,
            ranks: &ranks,
            stem: node.name.clone().or_else(|| node.output.first().cloned()).unwrap_or_default(),
            dtype,
            opset,
            nodes: Vec::new(),
            inits: Vec::new(),
        };
        let written = e.write(&node);
        let (nodes, inits) = (e.nodes, e.inits);
        if written.is_some() {
            for o in node.output.iter().filter(|o| !o.is_empty()) {
                declared.insert(o.clone(), dtype);
            }
            if node.op() == "EmbedLayerNormalization" {
                // The mask index: one end position per sequence.
                if let Some(m) = output(&node, 1) {
                    ranks.insert(m.to_string(), 1);
                    declared.insert(m.to_string(), DType::I32);
                }
            }
            out.extend(nodes);
            added.extend(inits);
            if experimental(&node) {
                count.experimental += 1;
            } else {
                count.fused += 1;
            }
        } else {
            out.push(node);
        }
    }
    graph.node = out;
    graph.initializer.extend(added);
    count
}

/// The nodes and constants of one rewrite (also those of [`super::attention`]).
pub(super) struct Emit<'a> {
    pub(super) names: &'a mut Names,
    /// The column count of each rank-2 initializer (an attention's packed Q/K/V weights).
    weight_cols: &'a HashMap<String, i64>,
    /// The ranks the file declares (graph inputs, value_info, initializers).
    ranks: &'a HashMap<String, usize>,
    /// The rewritten node's name, the stem of the names of what it is written as.
    pub(super) stem: String,
    /// The element type of the float constants.
    pub(super) dtype: DType,
    opset: i64,
    pub(super) nodes: Vec<NodeProto>,
    pub(super) inits: Vec<TensorProto>,
}

/// Input `k` of `node` when present.
pub(super) fn input(node: &NodeProto, k: usize) -> Option<&str> {
    node.input.get(k).map(String::as_str).filter(|s| !s.is_empty())
}

/// Output `k` of `node` when something may read it.
pub(super) fn output(node: &NodeProto, k: usize) -> Option<&str> {
    node.output.get(k).map(String::as_str).filter(|s| !s.is_empty())
}

pub(super) fn float_of(node: &NodeProto, name: &str, default: f32) -> f32 {
    node.attribute.iter().find(|a| a.name.as_deref() == Some(name)).and_then(|a| a.f).unwrap_or(default)
}

pub(super) fn int_of(node: &NodeProto, name: &str, default: i64) -> i64 {
    node.attribute.iter().find(|a| a.name.as_deref() == Some(name)).and_then(|a| a.i).unwrap_or(default)
}

impl<'a> Emit<'a> {
    /// An empty rewrite of the node named `stem`, its float constants of type `dtype`, for
    /// rewrites that need neither the declared ranks nor the weights' widths.
    pub(super) fn new(
        names: &'a mut Names,
        empty: &'a (HashMap<String, i64>, HashMap<String, usize>),
        stem: String,
        dtype: DType,
        opset: i64,
    ) -> Emit<'a> {
        Emit { names, weight_cols: &empty.0, ranks: &empty.1, stem, dtype, opset, nodes: Vec::new(), inits: Vec::new() }
    }

    /// Adds `op(inputs)`; its output is `out` when given, else a fresh name.
    pub(super) fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>, out: Option<&str>) -> String {
        let value = match out {
            Some(o) => o.to_string(),
            None => self.names.fresh(&format!("{}/{op}_output", self.stem)),
        };
        self.nodes.push(NodeProto {
            op_type: Some(op.into()),
            name: Some(self.names.fresh(&format!("{}/{op}", self.stem))),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![value.clone()],
            attribute: attrs,
            ..Default::default()
        });
        value
    }

    /// A scalar constant of the compute type.
    pub(super) fn scalar(&mut self, v: f64) -> Option<String> {
        let data = match self.dtype {
            DType::F32 => TensorData::F32(vec![v as f32]),
            DType::F64 => TensorData::F64(vec![v]),
            DType::F16 => TensorData::F16(vec![half::f16::from_f64(v)]),
            DType::Bf16 => TensorData::Bf16(vec![half::bf16::from_f64(v)]),
            _ => return None,
        };
        let name = self.names.fresh(&format!("{}/const", self.stem));
        self.inits.push(Tensor::new(vec![], data)?.to_proto(&name));
        Some(name)
    }

    /// A constant of the compute type and shape `dims` holding `values`.
    fn floats(&mut self, values: &[f32], dims: Vec<i64>) -> Option<String> {
        let data = match self.dtype {
            DType::F32 => TensorData::F32(values.to_vec()),
            DType::F64 => TensorData::F64(values.iter().map(|&v| f64::from(v)).collect()),
            DType::F16 => TensorData::F16(values.iter().map(|&v| half::f16::from_f32(v)).collect()),
            DType::Bf16 => TensorData::Bf16(values.iter().map(|&v| half::bf16::from_f32(v)).collect()),
            _ => return None,
        };
        let dims: Vec<usize> = dims.into_iter().map(usize::try_from).collect::<Result<_, _>>().ok()?;
        let name = self.names.fresh(&format!("{}/const", self.stem));
        self.inits.push(Tensor::new(dims, data)?.to_proto(&name));
        Some(name)
    }

    /// `ReduceMean` over the last axis, keeping it (axes an attribute before opset 18).
    fn mean_last(&mut self, x: &str) -> String {
        if self.opset >= 18 {
            let axes = self.ints(vec![-1]);
            self.op("ReduceMean", &[x, &axes], vec![Attr::Int(1).to_proto("keepdims")], None)
        } else {
            self.op("ReduceMean", &[x], vec![Attr::Ints(vec![-1]).to_proto("axes"), Attr::Int(1).to_proto("keepdims")], None)
        }
    }

    /// `x + a (+ b)`, the last sum written as `out` when given.
    fn sum(&mut self, x: &str, a: &str, b: Option<&str>, out: Option<&str>) -> String {
        match b {
            Some(b) => {
                let s = self.op("Add", &[x, a], vec![], None);
                self.op("Add", &[&s, b], vec![], out)
            }
            None => self.op("Add", &[x, a], vec![], out),
        }
    }

    /// `0.5 * x * (1 + erf(x / sqrt(2)))` into `out`.
    fn gelu_erf(&mut self, x: &str, out: &str) -> Option<()> {
        let (root2, one, half) = (self.scalar(std::f64::consts::SQRT_2)?, self.scalar(1.0)?, self.scalar(0.5)?);
        let d = self.op("Div", &[x, &root2], vec![], None);
        let erf = self.op("Erf", &[&d], vec![], None);
        let p = self.op("Add", &[&erf, &one], vec![], None);
        let m = self.op("Mul", &[x, &p], vec![], None);
        self.op("Mul", &[&m, &half], vec![], Some(out));
        Some(())
    }

    /// An int64 constant.
    pub(super) fn ints(&mut self, v: Vec<i64>) -> String {
        let name = self.names.fresh(&format!("{}/ints", self.stem));
        self.inits.push(Tensor::from_i64s(v).to_proto(&name));
        name
    }

    /// An int64 scalar constant.
    pub(super) fn int_scalar(&mut self, v: i64) -> Option<String> {
        let name = self.names.fresh(&format!("{}/int", self.stem));
        self.inits.push(Tensor::new(vec![], TensorData::I64(vec![v]))?.to_proto(&name));
        Some(name)
    }

    /// `[[0, 1, ..., n - 1]]` (`[1, n]`, int64) for `n` the size of `x`'s axis 1: the
    /// positions of a sequence.
    fn positions(&mut self, x: &str) -> Option<String> {
        let n = self.size_of(x, 1)?;
        self.range(&n, vec![0])
    }

    /// The size of `x`'s axis `axis`, as an int64 scalar.
    pub(super) fn size_of(&mut self, x: &str, axis: i64) -> Option<String> {
        let shape = self.op("Shape", &[x], vec![], None);
        let k = self.int_scalar(axis)?;
        Some(self.op("Gather", &[&shape, &k], vec![Attr::Int(0).to_proto("axis")], None))
    }

    /// `0..n` (int64) for the scalar `n`, with `axes` inserted.
    pub(super) fn range(&mut self, n: &str, axes: Vec<i64>) -> Option<String> {
        let (zero, one) = (self.int_scalar(0)?, self.int_scalar(1)?);
        let r = self.op("Range", &[&zero, n, &one], vec![], None);
        Some(self.unsqueeze(&r, axes))
    }

    /// `x` with axes inserted (opset >= 13: axes as an input).
    pub(super) fn unsqueeze(&mut self, x: &str, axes: Vec<i64>) -> String {
        let axes = self.ints(axes);
        self.op("Unsqueeze", &[x, &axes], vec![], None)
    }

    /// Layer normalization of `s` over the last axis into `out`.
    fn layer_norm(&mut self, s: &str, gamma: &str, beta: Option<&str>, eps: f32, out: &str) -> Option<()> {
        if self.opset >= 17 {
            let mut ins = vec![s, gamma];
            ins.extend(beta);
            self.op("LayerNormalization", &ins, vec![Attr::Int(-1).to_proto("axis"), Attr::Float(eps).to_proto("epsilon")], Some(out));
            return Some(());
        }
        let eps = self.scalar(f64::from(eps))?;
        let mean = self.mean_last(s);
        let d = self.op("Sub", &[s, &mean], vec![], None);
        let sq = self.op("Mul", &[&d, &d], vec![], None);
        let var = self.mean_last(&sq);
        let v = self.op("Add", &[&var, &eps], vec![], None);
        let std = self.op("Sqrt", &[&v], vec![], None);
        let n = self.op("Div", &[&d, &std], vec![], None);
        match beta {
            Some(beta) => {
                let g = self.op("Mul", &[&n, gamma], vec![], None);
                self.op("Add", &[&g, beta], vec![], Some(out));
            }
            None => {
                self.op("Mul", &[&n, gamma], vec![], Some(out));
            }
        }
        Some(())
    }

    /// `EmbedLayerNormalization`: see the module documentation.
    fn embed_layer_norm(&mut self, node: &NodeProto) -> Option<()> {
        if self.opset < 13 {
            return None;
        }
        let (ids, words, positions) = (input(node, 0)?, input(node, 2)?, input(node, 3)?);
        let (gamma, beta) = (input(node, 5)?, input(node, 6)?);
        let w = self.op("Gather", &[words, ids], vec![Attr::Int(0).to_proto("axis")], None);
        let pos_ids = match input(node, 8) {
            Some(p) => p.to_string(),
            // One row broadcast over the batch.
            None => self.positions(ids)?,
        };
        let p = self.op("Gather", &[positions, &pos_ids], vec![Attr::Int(0).to_proto("axis")], None);
        let mut sum = self.op("Add", &[&w, &p], vec![], None);
        if let (Some(seg), Some(table)) = (input(node, 1), input(node, 4)) {
            let s = self.op("Gather", &[table, seg], vec![Attr::Int(0).to_proto("axis")], None);
            sum = self.op("Add", &[&sum, &s], vec![], output(node, 2));
        } else if let Some(o) = output(node, 2) {
            sum = self.op("Identity", &[&sum], vec![], Some(o));
        }
        self.layer_norm(&sum, gamma, Some(beta), float_of(node, "epsilon", 1e-12), output(node, 0)?)?;
        if let Some(mask_index) = output(node, 1) {
            let mask = input(node, 7)?;
            let axes = self.ints(vec![1]);
            let total = self.op("ReduceSum", &[mask, &axes], vec![Attr::Int(0).to_proto("keepdims")], None);
            self.op("Cast", &[&total], vec![Attr::Int(DType::I32.onnx_code().into()).to_proto("to")], Some(mask_index));
        }
        Some(())
    }

    /// `Attention`: see the module documentation. `ranks` tells a raw mask from end positions.
    fn attention(&mut self, node: &NodeProto) -> Option<()> {
        let plain = int_of(node, "unidirectional", 0) == 0 && int_of(node, "do_rotary", 0) == 0;
        if self.opset < 13 || !plain || (4..node.input.len()).any(|k| input(node, k).is_some()) || output(node, 1).is_some() {
            return None;
        }
        let (x, weights) = (input(node, 0)?, input(node, 1)?);
        let heads = int_of(node, "num_heads", 0);
        let sizes: Vec<i64> =
            node.attribute.iter().find(|a| a.name.as_deref() == Some("qkv_hidden_sizes")).map(|a| a.ints.clone()).unwrap_or_default();
        let hidden = *self.weight_cols.get(weights)?;
        let sizes = if sizes.is_empty() { vec![hidden / 3; 3] } else { sizes };
        if heads <= 0
            || sizes.len() != 3
            || sizes.iter().sum::<i64>() != hidden
            || sizes.iter().any(|s| s % heads != 0 || *s <= 0)
            || sizes[0] != sizes[1]
        {
            return None;
        }
        let head = sizes[0] / heads;
        let scale = match float_of(node, "scale", 0.0) {
            s if s != 0.0 => f64::from(s),
            _ => 1.0 / (head as f64).sqrt(),
        };
        let mask = match input(node, 3) {
            None => None,
            Some(m) => Some((m, *self.ranks.get(m)?)),
        };
        if mask.is_some_and(|(_, r)| r != 1 && r != 2) {
            return None;
        }
        let mut qkv = self.op("MatMul", &[x, weights], vec![], None);
        if let Some(b) = input(node, 2) {
            qkv = self.op("Add", &[&qkv, b], vec![], None);
        }
        let split = self.ints(sizes.clone());
        let parts: Vec<String> = (0..3).map(|k| self.names.fresh(&format!("{}/{}", self.stem, ["q", "k", "v"][k]))).collect();
        self.nodes.push(NodeProto {
            op_type: Some("Split".into()),
            name: Some(self.names.fresh(&format!("{}/Split", self.stem))),
            input: vec![qkv, split],
            output: parts.clone(),
            attribute: vec![Attr::Int(-1).to_proto("axis")],
            ..Default::default()
        });
        let per_head = self.ints(vec![0, 0, heads, -1]);
        let mut moved = Vec::new();
        for (k, perm) in [vec![0, 2, 1, 3], vec![0, 2, 3, 1], vec![0, 2, 1, 3]].into_iter().enumerate() {
            let r = self.op("Reshape", &[&parts[k], &per_head], vec![], None);
            moved.push(self.op("Transpose", &[&r], vec![Attr::Ints(perm).to_proto("perm")], None));
        }
        let scores = self.op("MatMul", &[&moved[0], &moved[1]], vec![], None);
        let scale = self.scalar(scale)?;
        let mut scores = self.op("Mul", &[&scores, &scale], vec![], None);
        if let Some((m, rank)) = mask {
            // 1 where a key is seen, 0 where it is masked, as [batch, 1, 1, keys].
            let seen = if rank == 2 {
                m.to_string()
            } else {
                let row = self.positions(x)?;
                let end = self.op("Cast", &[m], vec![Attr::Int(DType::I64.onnx_code().into()).to_proto("to")], None);
                let end = self.unsqueeze(&end, vec![1]);
                self.op("Less", &[&row, &end], vec![], None)
            };
            let seen = self.op("Cast", &[&seen], vec![Attr::Int(self.dtype.onnx_code().into()).to_proto("to")], None);
            let (one, filter) = (self.scalar(1.0)?, self.scalar(f64::from(float_of(node, "mask_filter_value", -10000.0)))?);
            let hidden_keys = self.op("Sub", &[&one, &seen], vec![], None);
            let bias = self.op("Mul", &[&hidden_keys, &filter], vec![], None);
            let bias = self.unsqueeze(&bias, vec![1, 2]);
            scores = self.op("Add", &[&scores, &bias], vec![], None);
        }
        let probs = self.op("Softmax", &[&scores], vec![Attr::Int(-1).to_proto("axis")], None);
        let ctx = self.op("MatMul", &[&probs, &moved[2]], vec![], None);

        let ctx = self.op("Transpose", &[&ctx], vec![Attr::Ints(vec![0, 2, 1, 3]).to_proto("perm")], None);
        let merged = self.ints(vec![0, 0, sizes[2]]);
        self.op("Reshape", &[&ctx, &merged], vec![], Some(output(node, 0)?));
        Some(())
    }

    /// `FusedMatMul`'s operand `which` ("A" or "B") moved as `transBatch{which}` and
    /// `trans{which}` say. Both need the rank, which only the file's declarations give, so a
    /// transposed operand of undeclared rank keeps the node.
    fn matmul_operand(&mut self, node: &NodeProto, x: &str, which: &str) -> Option<String> {
        let batch = int_of(node, &format!("transBatch{which}"), 0) != 0;
        let swap = int_of(node, &format!("trans{which}"), 0) != 0;
        if !batch && !swap {
            return Some(x.to_string());
        }
        let rank = *self.ranks.get(x)?;
        if rank < 2 || (batch && rank < 3) {
            // onnxruntime ignores `trans` on a vector and refuses `transBatch` below rank 3.
            return if batch { None } else { Some(x.to_string()) };
        }
        let mut perm: Vec<i64> = (0..i64::try_from(rank).ok()?).collect();
        if batch {
            let first = perm.remove(0);
            perm.insert(rank - 2, first);
        }
        if swap {
            perm.swap(rank - 2, rank - 1);
        }
        Some(self.op("Transpose", &[x], vec![Attr::Ints(perm).to_proto("perm")], None))
    }

    /// `act(x)` into `out`.
    fn activation(&mut self, act: &Activation, x: &str, out: &str) -> Option<()> {
        let float = |name: &str, v: f32| Attr::Float(v).to_proto(name);
        match act {
            Activation::None => {
                self.op("Identity", &[x], vec![], Some(out));
            }
            Activation::Plain(op) => {
                self.op(op, &[x], vec![], Some(out));
            }
            Activation::Alpha(op, alpha) => {
                self.op(op, &[x], vec![float("alpha", *alpha)], Some(out));
            }
            Activation::HardSigmoid(alpha, beta) => {
                self.op("HardSigmoid", &[x], vec![float("alpha", *alpha), float("beta", *beta)], Some(out));
            }
            Activation::Selu(alpha, gamma) => {
                self.op("Selu", &[x], vec![float("alpha", *alpha), float("gamma", *gamma)], Some(out));
            }
            Activation::Clip(min, max) => {
                if self.opset >= 11 {
                    let (lo, hi) = (self.scalar(f64::from(*min))?, self.scalar(f64::from(*max))?);
                    self.op("Clip", &[x, &lo, &hi], vec![], Some(out));
                } else {
                    self.op("Clip", &[x], vec![float("min", *min), float("max", *max)], Some(out));
                }
            }
        }
        Some(())
    }

    /// The standard form of `node`; `None` (nothing kept) when it has none.
    fn write(&mut self, node: &NodeProto) -> Option<()> {
        let x = input(node, 0)?;
        match node.op() {
            "EmbedLayerNormalization" => self.embed_layer_norm(node)?,
            "Attention" => self.attention(node)?,
            "SkipLayerNormalization" => {
                if output(node, 1).is_some() || output(node, 2).is_some() {
                    return None;
                }
                let (skip, gamma) = (input(node, 1)?, input(node, 2)?);
                let s = self.sum(x, skip, input(node, 4), output(node, 3));
                self.layer_norm(&s, gamma, input(node, 3), float_of(node, "epsilon", 1e-12), output(node, 0)?)?;
            }
            "SkipSimplifiedLayerNormalization" | "SimplifiedLayerNormalization" => {
                let skipped = node.op() == "SkipSimplifiedLayerNormalization";
                let (gamma, s) = if skipped {
                    if output(node, 1).is_some() || output(node, 2).is_some() {
                        return None;
                    }
                    let s = self.sum(x, input(node, 1)?, input(node, 3), output(node, 3));
                    (input(node, 2)?, s)
                } else {
                    if output(node, 1).is_some() || int_of(node, "axis", -1) != -1 {
                        return None;
                    }
                    (input(node, 1)?, x.to_string())
                };
                let eps = self.scalar(f64::from(float_of(node, "epsilon", 1e-5)))?;
                let sq = self.op("Mul", &[&s, &s], vec![], None);
                let ms = self.mean_last(&sq);
                let v = self.op("Add", &[&ms, &eps], vec![], None);
                let rms = self.op("Sqrt", &[&v], vec![], None);
                let n = self.op("Div", &[&s, &rms], vec![], None);
                self.op("Mul", &[&n, gamma], vec![], Some(output(node, 0)?));
            }
            "BiasGelu" => {
                let s = self.op("Add", &[x, input(node, 1)?], vec![], None);
                self.gelu_erf(&s, output(node, 0)?)?;
            }
            "Gelu" => self.gelu_erf(x, output(node, 0)?)?,
            "FastGelu" => {
                let x = match input(node, 1) {
                    Some(bias) => self.op("Add", &[x, bias], vec![], None),
                    None => x.to_string(),
                };
                let (c, k, one, half) =
                    (self.scalar(0.044_715)?, self.scalar((2.0 / std::f64::consts::PI).sqrt())?, self.scalar(1.0)?, self.scalar(0.5)?);
                let x2 = self.op("Mul", &[&x, &x], vec![], None);
                let x3 = self.op("Mul", &[&x2, &x], vec![], None);
                let cx3 = self.op("Mul", &[&x3, &c], vec![], None);
                let inner = self.op("Add", &[&x, &cx3], vec![], None);
                let scaled = self.op("Mul", &[&inner, &k], vec![], None);
                let t = self.op("Tanh", &[&scaled], vec![], None);
                let p = self.op("Add", &[&t, &one], vec![], None);
                let m = self.op("Mul", &[&x, &p], vec![], None);
                self.op("Mul", &[&m, &half], vec![], Some(output(node, 0)?));
            }
            "ImageScaler" => {
                let scale = self.scalar(f64::from(float_of(node, "scale", 1.0)))?;
                let bias = node.attr_floats("bias").ok().flatten().unwrap_or_default();
                let scaled = self.op("Mul", &[x, &scale], vec![], if bias.is_empty() { output(node, 0) } else { None });
                if !bias.is_empty() {
                    let c = i64::try_from(bias.len()).ok()?;
                    let bias = self.floats(&bias, vec![c, 1, 1])?;
                    self.op("Add", &[&scaled, &bias], vec![], Some(output(node, 0)?));
                }
            }
            "Affine" => {
                let (alpha, beta) =
                    (self.scalar(f64::from(float_of(node, "alpha", 1.0)))?, self.scalar(f64::from(float_of(node, "beta", 0.0)))?);
                let scaled = self.op("Mul", &[x, &alpha], vec![], None);
                self.op("Add", &[&scaled, &beta], vec![], Some(output(node, 0)?));
            }
            "Scale" => {
                let scale = self.scalar(f64::from(float_of(node, "scale", 1.0)))?;
                self.op("Mul", &[x, &scale], vec![], Some(output(node, 0)?));
            }
            "ScaledTanh" | "ParametricSoftplus" => {
                let (alpha, beta) = (
                    self.scalar(f64::from(node.attr_float("alpha").ok().flatten()?))?,
                    self.scalar(f64::from(node.attr_float("beta").ok().flatten()?))?,
                );
                let bx = self.op("Mul", &[x, &beta], vec![], None);
                let f = self.op(if node.op() == "ScaledTanh" { "Tanh" } else { "Softplus" }, &[&bx], vec![], None);
                self.op("Mul", &[&f, &alpha], vec![], Some(output(node, 0)?));
            }
            "Crop" => {
                let border = node.attr_ints("border").ok().flatten().unwrap_or_default();
                let [left, top, right, bottom] = border.as_slice() else {
                    return None;
                };
                if border.iter().any(|&b| b < 0) {
                    return None;
                }
                // Ends past the top left border, or short of the far border (negative).
                let ends = match node.attr_ints("scale").ok().flatten().unwrap_or_default().as_slice() {
                    [h, w] if *h >= 0 && *w >= 0 => vec![top.checked_add(*h)?, left.checked_add(*w)?],
                    [] => [bottom, right].iter().map(|&&b| if b == 0 { i64::MAX } else { -b }).collect(),
                    _ => return None,
                };
                let starts = vec![*top, *left];
                let out = output(node, 0)?;
                if self.opset >= 10 {
                    let (s, e, a) = (self.ints(starts), self.ints(ends), self.ints(vec![2, 3]));
                    self.op("Slice", &[x, &s, &e, &a], vec![], Some(out));
                } else {
                    let attrs = vec![
                        Attr::Ints(starts).to_proto("starts"),
                        Attr::Ints(ends).to_proto("ends"),
                        Attr::Ints(vec![2, 3]).to_proto("axes"),
                    ];
                    self.op("Slice", &[x], attrs, Some(out));
                }
            }
            "FusedConv" | "FusedGemm" => {
                // The Conv or Gemm keeps the node's other attributes; a FusedConv's input 3
                // is added before the activation.
                let conv = node.op() == "FusedConv";
                let act = if conv { Activation::of_conv(node)? } else { Activation::of_gemm(node)? };
                let mut ins = vec![x, input(node, 1)?];
                ins.extend(input(node, 2));
                let attrs = node.attribute.iter().filter(|a| !a.name.as_deref().unwrap_or("").starts_with("activation")).cloned().collect();
                let y = self.op(if conv { "Conv" } else { "Gemm" }, &ins, attrs, None);
                let y = match input(node, 3).filter(|_| conv) {
                    Some(z) => self.op("Add", &[&y, z], vec![], None),
                    None => y,
                };
                self.activation(&act, &y, output(node, 0)?)?;
            }
            "FusedMatMul" => {
                let a = self.matmul_operand(node, x, "A")?;
                let b = self.matmul_operand(node, input(node, 1)?, "B")?;
                let alpha = float_of(node, "alpha", 1.0);
                if alpha == 1.0 {
                    self.op("MatMul", &[&a, &b], vec![], Some(output(node, 0)?));
                } else {
                    let product = self.op("MatMul", &[&a, &b], vec![], None);
                    let alpha = self.scalar(f64::from(alpha))?;
                    self.op("Mul", &[&product, &alpha], vec![], Some(output(node, 0)?));
                }
            }
            "QuickGelu" => {
                let alpha = self.scalar(f64::from(float_of(node, "alpha", 1.702)))?;
                let ax = self.op("Mul", &[x, &alpha], vec![], None);
                let sig = self.op("Sigmoid", &[&ax], vec![], None);
                self.op("Mul", &[x, &sig], vec![], Some(output(node, 0)?));
            }
            _ => return None,
        }
        Some(())
    }
}

/// The activation a `FusedConv` or `FusedGemm` applies last.
#[derive(Debug, Clone, PartialEq)]
enum Activation {
    /// None: the node is a plain `Conv` or `Gemm`.
    None,
    /// An operator without parameters.
    Plain(&'static str),
    /// An operator of one `alpha`.
    Alpha(&'static str, f32),
    /// `HardSigmoid(alpha, beta)`.
    HardSigmoid(f32, f32),
    /// `Selu(alpha, gamma)`.
    Selu(f32, f32),
    /// `Clip(min, max)`.
    Clip(f32, f32),
}

impl Activation {
    /// From the activation's name and its parameters in order; `None` for an activation
    /// without a standard form or with missing parameters.
    fn of(name: &str, params: &[Option<f32>]) -> Option<Self> {
        let p = |k: usize| params.get(k).copied().flatten();
        Some(match name {
            "" => Self::None,
            "Relu" => Self::Plain("Relu"),
            "Sigmoid" => Self::Plain("Sigmoid"),
            "Tanh" => Self::Plain("Tanh"),
            "Softsign" => Self::Plain("Softsign"),
            "Softplus" => Self::Plain("Softplus"),
            "LeakyRelu" => Self::Alpha("LeakyRelu", p(0).unwrap_or(0.01)),
            "Elu" => Self::Alpha("Elu", p(0).unwrap_or(1.0)),
            "ThresholdedRelu" => Self::Alpha("ThresholdedRelu", p(0).unwrap_or(1.0)),
            "HardSigmoid" => Self::HardSigmoid(p(0).unwrap_or(0.2), p(1).unwrap_or(0.5)),
            "Selu" => Self::Selu(p(0)?, p(1)?),
            "Clip" => Self::Clip(p(0)?, p(1)?),
            _ => return None,
        })
    }

    /// `FusedConv`'s: `activation` and `activation_params`.
    fn of_conv(node: &NodeProto) -> Option<Self> {
        let name = node.attr_string("activation").ok()?.unwrap_or_default();
        let params = node.attr_floats("activation_params").ok()?.unwrap_or_default();
        Self::of(&name, &params.into_iter().map(Some).collect::<Vec<_>>())
    }

    /// `FusedGemm`'s: `activation` and `activation_alpha`, `_beta`, `_gamma` (a `Selu`'s
    /// `gamma` is its second parameter).
    fn of_gemm(node: &NodeProto) -> Option<Self> {
        let name = node.attr_string("activation").ok()?.unwrap_or_default();
        let get = |k: &str| node.attr_float(k).ok().flatten();
        let second = if name == "Selu" { get("activation_gamma") } else { get("activation_beta") };
        Self::of(&name, &[get("activation_alpha"), second])
    }
}

/// The `FusedMatMul` nodes whose transposed operands' ranks `decompose` did not know, with
/// those operands: they are decomposed again once shape inference gives the ranks.
pub(super) fn pending_matmul_operands(graph: &GraphProto) -> Vec<String> {
    graph
        .node
        .iter()
        .filter(|n| n.domain.as_deref() == Some("com.microsoft") && n.op() == "FusedMatMul")
        .flat_map(|n| n.input.iter().take(2).cloned())
        .collect()
}
