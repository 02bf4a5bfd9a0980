//! `QuantizeLinear` and `DequantizeLinear`: per tensor, per axis (`axis`) and blocked
//! (`block_size` entries of `axis` share a scale), for int8, uint8, int32 and INT4/UINT4
//! (held as int8/uint8, [`oto_onnx::DType::widened_from_onnx`]) integers.
//!
//! `DequantizeLinear`: `(x - zero_point) * scale`, the difference exact in int64, then
//! one multiplication in the scale's type (what onnxruntime computes). `QuantizeLinear`:
//! `saturate(round(x / scale) + zero_point)`, the division in the input's type, rounding
//! half to even (`torch.round`), saturating to the range of the result type: the zero
//! point's declared ONNX type, else `output_dtype`, else uint8.

use super::{axis, Ctx, Kernel, OpError, OpResult};
use oto_onnx::op::{Op, QLinear};
use oto_onnx::proto::tensor_proto::DataType;
use oto_onnx::proto::{type_proto, NodeProto};
use oto_onnx::{ops, Graph};
use tch::{Kind, Tensor};

/// Compiles a `QuantizeLinear` or `DequantizeLinear` node.
pub fn compile(graph: &Graph<'_>, node: &NodeProto, op: &Op) -> Result<Kernel, String> {
    match op {
        Op::QuantizeLinear(q) => quantize(graph, node, *q),
        Op::DequantizeLinear(q) => Ok(dequantize(*q)),
        _ => Err(format!("{} is not a quantization operator", node.op_type.as_deref().unwrap_or(""))),
    }
}

/// The declared ONNX element type of `value`: an initializer's, or a graph input's,
/// output's or `value_info`'s.
pub(super) fn declared_type(graph: &Graph<'_>, value: &str) -> Option<i32> {
    if let Some(t) = graph.initializer(value) {
        return t.data_type;
    }
    let vi = graph.value_info(value).or_else(|| graph.proto.input.iter().find(|v| v.name.as_deref() == Some(value)))?;
    match vi.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(t) => t.elem_type,
        _ => None,
    }
}

/// Whether `value` is declared INT4 or UINT4 (held as int8/uint8 by the executor: only
/// the quantization operators know to saturate to 4 bits).
pub(super) fn is_4bit(graph: &Graph<'_>, value: &str) -> bool {
    matches!(declared_type(graph, value).map(DataType::try_from), Some(Ok(DataType::Int4 | DataType::Uint4)))
}

/// The libtorch kind and range of a quantized ONNX type.
fn integer_type(code: i32) -> Result<(Kind, i64, i64), String> {
    Ok(match DataType::try_from(code) {
        Ok(DataType::Int8) => (Kind::Int8, -128, 127),
        Ok(DataType::Uint8) => (Kind::Uint8, 0, 255),
        Ok(DataType::Int4) => (Kind::Int8, -8, 7),
        Ok(DataType::Uint4) => (Kind::Uint8, 0, 15),
        _ => {
            return Err(format!("QuantizeLinear to {} is not supported (int8, uint8, int4, uint4)", oto_onnx::tensor::onnx_type_name(code)))
        }
    })
}

/// `scale` (or a zero point) shaped to broadcast against `x`: a scalar per tensor, along
/// `axis` per axis, repeated `block_size` times along `axis` (the last block cut) blocked.
fn expand(scale: &Tensor, x: &Tensor, q: QLinear) -> OpResult<Tensor> {
    let rank = x.dim();
    if q.block_size == 0 && scale.numel() == 1 && scale.dim() <= 1 {
        return Ok(scale.f_reshape([] as [i64; 0])?);
    }
    let a = axis(q.axis, rank)? as usize;
    let dims = x.size();
    let d = dims[a];
    if q.block_size == 0 {
        if scale.size() != [d] {
            return Err(OpError(format!("per-axis scale of shape {:?} does not match axis {a} of the input {dims:?}", scale.size())));
        }
        let mut shape = vec![1i64; rank];
        shape[a] = d;
        return Ok(scale.f_reshape(shape)?);
    }
    let b = q.block_size;
    let mut want = dims.clone();
    want[a] = (d + b - 1) / b;
    if scale.size() != want {
        return Err(OpError(format!(
            "blocked scale of shape {:?} does not match the input {dims:?} in blocks of {b} along axis {a} (expected {want:?})",
            scale.size()
        )));
    }
    Ok(scale.f_repeat_interleave_self_int(b, a as i64, None)?.f_narrow(a as i64, 0, d)?)
}

fn dequantize(q: QLinear) -> Kernel {
    Box::new(move |ctx: &Ctx<'_>| {
        let x = ctx.input(0)?;
        let scale = ctx.input(1)?;
        let mut diff = x.f_to_kind(Kind::Int64)?;
        if let Some(zp) = ctx.opt(2) {
            diff = diff.f_sub(&expand(zp, x, q)?.f_to_kind(Kind::Int64)?)?;
        }
        Ok(vec![diff.f_to_kind(scale.kind())?.f_mul(&expand(scale, x, q)?)?])
    })
}

fn quantize(graph: &Graph<'_>, node: &NodeProto, q: QLinear) -> Result<Kernel, String> {
    let code = match ops::input(node, 2) {
        Some(zp) => declared_type(graph, zp).ok_or_else(|| format!("the type of the zero point '{zp}' is not declared"))?,
        None if q.output_dtype != 0 => q.output_dtype,
        None => DataType::Uint8 as i32,
    };
    let (kind, lo, hi) = integer_type(code)?;
    Ok(Box::new(move |ctx: &Ctx<'_>| {
        let x = ctx.input(0)?;
        let scale = expand(ctx.input(1)?, x, q)?;
        let mut y = x.f_div(&scale.f_to_kind(x.kind())?)?.f_round()?;
        if let Some(zp) = ctx.opt(2) {
            y = y.f_add(&expand(zp, x, q)?.f_to_kind(y.kind())?)?;
        }
        Ok(vec![y.f_clamp(lo, hi)?.f_to_kind(kind)?])
    }))
}
