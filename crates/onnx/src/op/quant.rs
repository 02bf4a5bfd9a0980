//! Quantization: `QuantizeLinear` and `DequantizeLinear` (opsets 10, 13: `axis`, 19, 21:
//! `block_size` and `output_dtype`). The output has the input's shape; its element type
//! is the zero point's (else `output_dtype`, else uint8) for `QuantizeLinear`, the
//! scale's for `DequantizeLinear`. INT4/UINT4 values are I8/U8 here
//! ([`crate::DType::widened_from_onnx`]). Not counted in MACs. `DynamicQuantizeLinear`
//! (onnxruntime's `quantize_dynamic`): uint8 values of the input's shape, a float scale
//! and a uint8 zero point.
//!
//! The layers of a quantized file (`ConvInteger`, `MatMulInteger`, `QLinearConv`,
//! `QLinearMatMul`, the weights behind a `DequantizeLinear`, and onnxruntime's
//! `com.microsoft` quantized operators such as `MatMulNBits`) store their weights as
//! integers: [`quantized_weights`] names those inputs, so that they count as parameters
//! and the analysis can say why such a layer is not pruned.

use crate::graph::{node_label, Graph, NodeExt};
use crate::proto::tensor_proto::DataType as ProtoType;
use crate::proto::{NodeProto, TensorProto};
use crate::shape::{vt, Infer, ValueType, R};
use crate::tensor::DType;
use std::collections::HashMap;

/// The attributes of `QuantizeLinear` / `DequantizeLinear`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QLinear {
    /// The axis of per-axis or blocked scales (default 1; unused per tensor).
    pub axis: i64,
    /// Entries of `axis` sharing a scale (0: per axis or per tensor).
    pub block_size: i64,
    /// `QuantizeLinear`'s result type (an ONNX type code; 0: the zero point's, else uint8).
    pub output_dtype: i32,
}

impl QLinear {
    /// Reads the attributes of a `QuantizeLinear` / `DequantizeLinear` node.
    pub fn parse(node: &NodeProto) -> Result<QLinear, String> {
        let block_size = node.attr_int_or("block_size", 0)?;
        if block_size < 0 {
            return Err(format!("block_size {block_size} is negative"));
        }
        let output_dtype = node.attr_int_or("output_dtype", 0)?;
        Ok(QLinear {
            axis: node.attr_int_or("axis", 1)?,
            block_size,
            output_dtype: i32::try_from(output_dtype).map_err(|_| format!("output_dtype {output_dtype} is not a type"))?,
        })
    }
}

/// What the analysis and the commands say of a layer whose weight is stored as integers.
pub const QUANTIZED_WEIGHT: &str = "the weight is quantized (stored as integers): prune the float model, then quantize it (`oto quantize`)";

/// The inputs of `node` that hold a quantized layer's integer weights and biases (empty
/// for other nodes): `DequantizeLinear`'s values, `ConvInteger`'s weight, `QLinearConv`'s
/// weight and bias, either operand of `MatMulInteger` and `QLinearMatMul`, and the weight
/// operands of onnxruntime's quantized operators (`MatMulNBits`, `QGemm`,
/// `DynamicQuantizeMatMul`, `MatMulIntegerToFloat`, `QAttention`, `GatherBlockQuantized`).
pub fn quantized_weights(node: &NodeProto) -> &'static [usize] {
    match (node.domain.as_deref().unwrap_or(""), node.op()) {
        ("" | "ai.onnx", "DequantizeLinear") => &[0],
        ("" | "ai.onnx", "ConvInteger") => &[1],
        ("" | "ai.onnx", "QLinearConv") => &[3, 8],
        ("" | "ai.onnx", "MatMulInteger") => &[0, 1],
        ("" | "ai.onnx", "QLinearMatMul") => &[0, 3],
        ("com.microsoft", "MatMulNBits" | "DynamicQuantizeMatMul" | "QAttention") => &[1],
        ("com.microsoft", "MatMulIntegerToFloat") => &[0, 1],
        ("com.microsoft", "QGemm") => &[0, 3, 6],
        ("com.microsoft", "GatherBlockQuantized") => &[0],
        _ => &[],
    }
}

/// Whether `node` is a layer of a quantized file: it computes with integer weights
/// stored in the file, as its own inputs or through a `DequantizeLinear` of them (a QDQ
/// file; not the `DequantizeLinear` itself, whose readers are the layers).
pub fn is_quantized_layer(graph: &Graph<'_>, node: &NodeProto) -> bool {
    let stored = |v: &String| graph.initializer(v).is_some();
    let dequantized = |v: &String| {
        graph
            .producer_node(v)
            .is_some_and(|(_, p)| p.op() == "DequantizeLinear" && crate::op::default_domain(p) && p.input.first().is_some_and(stored))
    };
    node.op() != "DequantizeLinear"
        && (quantized_weights(node).iter().any(|&k| node.input.get(k).is_some_and(stored)) || node.input.iter().any(dequantized))
}

/// The layers of a quantized file ([`is_quantized_layer`]), as node labels.
pub fn quantized_layers(graph: &Graph<'_>) -> Vec<String> {
    graph.nodes().filter(|(_, n)| is_quantized_layer(graph, n)).map(|(_, n)| node_label(n)).collect()
}

/// The integer initializers of `graph` that hold quantized weights, each with the number
/// of weights it holds ([`quantized_weight_count`]): the inputs [`quantized_weights`]
/// names, and a quantized embedding's rows (looked up by a `Gather`, then dequantized).
pub fn quantized_weight_tensors<'g>(graph: &'g Graph<'_>) -> HashMap<&'g str, u64> {
    let mut out = HashMap::new();
    for (_, node) in graph.nodes() {
        for &k in quantized_weights(node) {
            let Some(t) = node.input.get(k).and_then(|v| graph.initializer(v)) else { continue };
            out.insert(node.input[k].as_str(), quantized_weight_count(node, k, t));
        }
        if node.op() == "DequantizeLinear" {
            let lookup = node.input.first().and_then(|v| graph.producer_node(v)).filter(|(_, p)| p.op() == "Gather");
            if let Some((_, lookup)) = lookup {
                if let Some(t) = lookup.input.first().and_then(|v| graph.initializer(v)) {
                    out.insert(lookup.input[0].as_str(), crate::cost::stored_elements(t));
                }
            }
        }
    }
    out
}

/// The number of weights that `tensor`, input `k` of `node` (one of
/// [`quantized_weights`]), holds: its element count, except where weights are packed
/// several to a byte (`MatMulNBits`: `K x N` weights, by its attributes;
/// `GatherBlockQuantized`'s uint8 data: `8 / bits` a byte).
pub fn quantized_weight_count(node: &NodeProto, k: usize, tensor: &TensorProto) -> u64 {
    let numel = crate::cost::stored_elements(tensor);
    let attr = |name: &str, default: i64| node.attr_int_or(name, default).ok().and_then(|v| u64::try_from(v).ok());
    match (node.op(), k) {
        ("MatMulNBits", 1) => attr("N", 0).zip(attr("K", 0)).map(|(n, k)| n.saturating_mul(k)).filter(|&c| c > 0).unwrap_or(numel),
        ("GatherBlockQuantized", 0) if tensor.data_type == Some(ProtoType::Uint8 as i32) => match attr("bits", 4) {
            Some(bits @ 1..=8) => numel.saturating_mul(8 / bits),
            _ => numel,
        },
        _ => numel,
    }
}

/// The inputs of `node` that are quantization parameters (scales and zero points): not
/// parameters a layer learns, whatever their size (per-channel scales).
pub fn quantization_params(node: &NodeProto) -> &'static [usize] {
    match (node.domain.as_deref().unwrap_or(""), node.op()) {
        ("" | "ai.onnx", "QuantizeLinear" | "DequantizeLinear") => &[1, 2],
        ("" | "ai.onnx", "ConvInteger" | "MatMulInteger") => &[2, 3],
        ("" | "ai.onnx", "QLinearConv" | "QLinearMatMul") => &[1, 2, 4, 5, 6, 7],
        ("com.microsoft", "MatMulNBits" | "DynamicQuantizeMatMul" | "GatherBlockQuantized") => &[2, 3],
        ("com.microsoft", "MatMulIntegerToFloat") => &[2, 3, 4, 5],
        ("com.microsoft", "QGemm") => &[1, 2, 4, 5, 7, 8],
        ("com.microsoft", "QAttention") => &[3, 4, 6, 7],
        _ => &[],
    }
}

/// Whether `node` is one of onnxruntime's quantized matrix products whose shape and MACs
/// oto knows (`com.microsoft` `MatMulNBits`, `DynamicQuantizeMatMul`,
/// `MatMulIntegerToFloat`): a float product of input 0 by a quantized weight.
pub fn is_contrib_quantized_matmul(node: &NodeProto) -> bool {
    node.domain.as_deref() == Some("com.microsoft") && matches!(node.op(), "MatMulNBits" | "DynamicQuantizeMatMul" | "MatMulIntegerToFloat")
}

impl Infer<'_, '_> {
    /// A `com.microsoft` quantized matrix product ([`is_contrib_quantized_matmul`]): input
    /// 0's shape with its last axis `N` (`MatMulNBits`, by its attribute; the others, the
    /// product with input 1), in the type of input 0 (`MatMulIntegerToFloat`: of its
    /// scales, input 2).
    pub(crate) fn contrib_quantized_matmul(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        if node.op() != "MatMulNBits" {
            let dtype = self.dtype(node, if node.op() == "MatMulIntegerToFloat" { 2 } else { 0 });
            return self.matmul_of(node, 1, dtype);
        }
        let mut a = self.shape(node, 0)?;
        let n = self.attr(node, node.attr_int_or("N", 0))?;
        if a.is_empty() || n <= 0 {
            return Err(self.fail(node, format!("needs an input of rank at least 1 and N > 0 (N = {n})")));
        }
        let last = a.len() - 1;
        a[last] = crate::Dim::Known(n);
        let dtype = self.dtype(node, 0);
        Ok(vec![vt(dtype, a)])
    }

    /// `DynamicQuantizeLinear`: uint8 values of the input's shape, a scalar float scale
    /// and a scalar uint8 zero point.
    pub(crate) fn dynamic_quantize(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        Ok(vec![vt(Some(DType::U8), x), vt(Some(DType::F32), Vec::new()), vt(Some(DType::U8), Vec::new())])
    }

    /// `QuantizeLinear` (`dequantize` false) or `DequantizeLinear`: the input's shape.
    pub(crate) fn qlinear(&mut self, node: &NodeProto, q: &QLinear, dequantize: bool) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        let dtype = if dequantize {
            self.dtype(node, 1)
        } else if crate::ops::input(node, 2).is_some() {
            self.dtype(node, 2)
        } else if q.output_dtype != 0 {
            DType::widened_from_onnx(q.output_dtype)
        } else {
            Some(DType::U8)
        };
        Ok(vec![vt(dtype, x)])
    }
}
