//! Quantization: `QuantizeLinear` and `DequantizeLinear` (opsets 10, 13: `axis`, 19, 21:
//! `block_size` and `output_dtype`). The output has the input's shape; its element type
//! is the zero point's (else `output_dtype`, else uint8) for `QuantizeLinear`, the
//! scale's for `DequantizeLinear`. INT4/UINT4 values are I8/U8 here
//! ([`crate::DType::widened_from_onnx`]). Not counted in MACs.

use crate::graph::NodeExt;
use crate::proto::NodeProto;
use crate::shape::{vt, Infer, ValueType, R};
use crate::tensor::DType;

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

impl Infer<'_, '_> {
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
