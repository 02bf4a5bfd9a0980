//! `QuantizeLinear` and `DequantizeLinear`: per tensor, per axis (`axis`) and blocked
//! (`block_size` entries of `axis` share a scale), for int8, uint8, int32 and INT4/UINT4
//! (held as int8/uint8, [`oto_onnx::DType::widened_from_onnx`]) integers.
//!
//! `DequantizeLinear`: `(x - zero_point) * scale`, the difference exact in int64, then
//! one multiplication in the scale's type (what onnxruntime computes). `QuantizeLinear`:
//! `saturate(round(x / scale) + zero_point)`, the division in the input's type, rounding
//! half to even (`torch.round`), saturating to the range of the result type: the zero
//! point's declared ONNX type, else `output_dtype`, else uint8.
//!
//! The integer layers of onnxruntime's quantizers, for evaluating a quantized model (not
//! for training: nothing here has a gradient): `DynamicQuantizeLinear` (uint8, scale and
//! zero point from the tensor's range); `MatMulInteger` and `ConvInteger` (int32 results
//! of the inputs less their zero points, per tensor, per row of A / column of B, per output
//! channel of W); `QLinearMatMul` and `QLinearConv` (the same, requantized:
//! `saturate(round(acc * (scale_a * scale_b / scale_y)) + zero_point_y)` with the scale
//! ratio in the scales' float32 and the product in float64, as onnx's reference). Sums
//! of integer products run in float64, exact below 2^53.

use super::{axis, Ctx, Kernel, OpError, OpResult};
use oto_onnx::op::{Conv, Op, QLinear};
use oto_onnx::proto::tensor_proto::DataType;
use oto_onnx::proto::{type_proto, NodeProto};
use oto_onnx::{ops, Graph};
use tch::{Kind, Tensor};

/// Compiles a `QuantizeLinear` or `DequantizeLinear` node.
pub fn compile(graph: &Graph<'_>, node: &NodeProto, op: &Op) -> Result<Kernel, String> {
    match op {
        Op::QuantizeLinear(q) => quantize(graph, node, *q),
        Op::DequantizeLinear(q) => Ok(dequantize(*q)),
        Op::DynamicQuantizeLinear => Ok(dynamic_quantize()),
        Op::MatMul { integer: true } => Ok(matmul_integer(INTEGER)),
        Op::QLinearMatMul => Ok(matmul_integer(QLINEAR)),
        Op::Conv(c) if c.integer => Ok(conv_integer(c, INTEGER)),
        Op::QLinearConv(c) => Ok(conv_integer(c, QLINEAR)),
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

/// Input positions of an integer layer: its two operands and their zero points, and the
/// scales of a QLinear form (none: the int32 result of `MatMulInteger` / `ConvInteger`).
#[derive(Clone, Copy)]
struct Inputs {
    a: usize,
    a_zero: usize,
    b: usize,
    b_zero: usize,
    scales: Option<Scales>,
}

/// Input positions of a QLinear form's scales and of its result's zero point.
#[derive(Clone, Copy)]
struct Scales {
    a: usize,
    b: usize,
    y: usize,
    y_zero: usize,
}

/// `MatMulInteger` and `ConvInteger`: `a, b, a_zero_point, b_zero_point`.
const INTEGER: Inputs = Inputs { a: 0, b: 1, a_zero: 2, b_zero: 3, scales: None };

/// `QLinearMatMul` and `QLinearConv`: `a, a_scale, a_zero_point, b, b_scale, b_zero_point,
/// y_scale, y_zero_point` (then QLinearConv's bias).
const QLINEAR: Inputs = Inputs { a: 0, a_zero: 2, b: 3, b_zero: 5, scales: Some(Scales { a: 1, b: 4, y: 6, y_zero: 7 }) };

/// `x` less its zero point `zp` (none: 0) in float64, `zp` shaped by `shape_zp` to
/// broadcast against `x`.
fn less_zero_point(x: &Tensor, zp: Option<&Tensor>, shape_zp: impl Fn(&Tensor) -> OpResult<Tensor>) -> OpResult<Tensor> {
    let x = x.f_to_kind(Kind::Double)?;
    match zp {
        Some(z) => Ok(x.f_sub(&shape_zp(&z.f_to_kind(Kind::Double)?)?)?),
        None => Ok(x),
    }
}

/// A scalar or one-entry tensor as a scalar; otherwise `per` shapes it.
fn scalar_or(t: &Tensor, per: impl Fn(&Tensor) -> OpResult<Tensor>) -> OpResult<Tensor> {
    if t.numel() == 1 {
        Ok(t.f_reshape([] as [i64; 0])?)
    } else {
        per(t)
    }
}

/// The integer range of a quantized result of kind `kind`.
fn range_of(kind: Kind) -> OpResult<(i64, i64)> {
    match kind {
        Kind::Uint8 => Ok((0, 255)),
        Kind::Int8 => Ok((-128, 127)),
        other => Err(OpError(format!("a quantized result of type {other:?} (uint8 or int8)"))),
    }
}

/// `acc` (float64 sums of integer products) requantized: `acc * (sa * sb / sy)` (the ratio
/// in the scales' type, `sa`/`sb` already shaped against `acc`), plus the result's zero
/// point, rounded half to even and saturated to the zero point's type.
fn requantize(acc: &Tensor, sa: &Tensor, sb: &Tensor, sy: &Tensor, zy: Option<&Tensor>, kind: Kind) -> OpResult<Tensor> {
    let ratio = sa.f_mul(sb)?.f_div(sy)?.f_to_kind(Kind::Double)?;
    let mut y = acc.f_mul(&ratio)?;
    if let Some(z) = zy {
        y = y.f_add(&z.f_to_kind(Kind::Double)?.f_reshape([] as [i64; 0])?)?;
    }
    let (lo, hi) = range_of(kind)?;
    Ok(y.f_round()?.f_clamp(lo, hi)?.f_to_kind(kind)?)
}

/// `DynamicQuantizeLinear`: uint8 over the range of `x` widened to hold 0.
fn dynamic_quantize() -> Kernel {
    Box::new(|ctx: &Ctx<'_>| {
        let x = ctx.input(0)?;
        let (lo, hi) = (x.f_min()?.f_clamp_max(0.0)?, x.f_max()?.f_clamp_min(0.0)?);
        let span = hi.f_sub(&lo)?;
        // A constant tensor of zeros: scale 1 (onnxruntime and the reference).
        let span = span.f_where_scalarother(&span.f_ne(0.0)?, 1.0)?;
        let scale = span.f_div_scalar(255.0)?;
        let zero_point = lo.f_neg()?.f_div(&scale)?.f_clamp(0.0, 255.0)?.f_round()?;
        let y = x.f_div(&scale)?.f_round()?.f_add(&zero_point)?.f_clamp(0.0, 255.0)?;
        Ok(vec![y.f_to_kind(Kind::Uint8)?, scale.f_to_kind(x.kind())?, zero_point.f_to_kind(Kind::Uint8)?])
    })
}

/// `MatMulInteger` or `QLinearMatMul`. A's zero point and scale are per tensor or per row
/// (`[M]`), B's per tensor or per column (`[N]`).
fn matmul_integer(at: Inputs) -> Kernel {
    Box::new(move |ctx: &Ctx<'_>| {
        let (a, b) = (ctx.input(at.a)?, ctx.input(at.b)?);
        let per_row = |t: &Tensor| -> OpResult<Tensor> { Ok(t.f_reshape([-1, 1])?) };
        let per_column = |t: &Tensor| -> OpResult<Tensor> { Ok(t.shallow_clone()) };
        let a0 = less_zero_point(a, ctx.opt(at.a_zero), |z| scalar_or(z, per_row))?;
        let b0 = less_zero_point(b, ctx.opt(at.b_zero), |z| scalar_or(z, per_column))?;
        let acc = a0.f_matmul(&b0)?;
        match at.scales {
            None => Ok(vec![acc.f_to_kind(Kind::Int)?]),
            Some(s) => {
                let sa = scalar_or(ctx.input(s.a)?, per_row)?;
                let sb = scalar_or(ctx.input(s.b)?, per_column)?;
                let zy = ctx.opt(s.y_zero);
                let kind = zy.map_or(a.kind(), Tensor::kind);
                Ok(vec![requantize(&acc, &sa, &sb, ctx.input(s.y)?, zy, kind)?])
            }
        }
    })
}

/// `ConvInteger` or `QLinearConv` (its bias, input 8, is int32 in the accumulator's
/// scale). W's zero point and scale are per tensor or per output channel.
fn conv_integer(c: &Conv, at: Inputs) -> Kernel {
    let window = c.window.clone();
    let groups = c.group;
    Box::new(move |ctx: &Ctx<'_>| {
        let (x, w) = (ctx.input(at.a)?, ctx.input(at.b)?);
        let rank = w.dim();
        let per_channel = |t: &Tensor| -> OpResult<Tensor> {
            let mut shape = vec![1i64; rank];
            shape[0] = -1;
            Ok(t.f_reshape(shape)?)
        };
        let x0 = less_zero_point(x, ctx.opt(at.a_zero), |z| scalar_or(z, |t| Ok(t.shallow_clone())))?;
        let w0 = less_zero_point(w, ctx.opt(at.b_zero), |z| scalar_or(z, per_channel))?;
        let bias = match at.scales {
            Some(_) => ctx.opt(8).map(|b| b.f_to_kind(Kind::Double)).transpose()?,
            None => None,
        };
        let acc = super::nn::convolve(&window, groups, &x0, &w0, bias.as_ref())?;
        match at.scales {
            None => Ok(vec![acc.f_to_kind(Kind::Int)?]),
            Some(s) => {
                let sx = scalar_or(ctx.input(s.a)?, |t| Ok(t.shallow_clone()))?;
                let out_channel = |t: &Tensor| -> OpResult<Tensor> {
                    let mut shape = vec![1i64; acc.dim()];
                    shape[1] = -1;
                    Ok(t.f_reshape(shape)?)
                };
                let sw = scalar_or(ctx.input(s.b)?, out_channel)?;
                let zy = ctx.opt(s.y_zero);
                let kind = zy.map_or(x.kind(), Tensor::kind);
                Ok(vec![requantize(&acc, &sx, &sw, ctx.input(s.y)?, zy, kind)?])
            }
        }
    })
}
