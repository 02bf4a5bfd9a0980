//! Elementwise, matrix and reduction operators.

use super::{axis, not_supported, Ctx, Ints, Kernel, OpError, OpResult};
use crate::exec::convert::is_float_kind;
use oto_onnx::op::{ArgReduce, Binary as B, Clip, Compare as C, Gemm, IntsParam, Op, Reduce, ReduceKind, Unary as U};
use oto_onnx::proto::NodeProto;
use oto_onnx::{Graph, NodeExt};
use tch::{Kind, Scalar, Tensor};

type Unary = fn(&Tensor) -> Result<Tensor, tch::TchError>;
type Binary = fn(&Tensor, &Tensor) -> Result<Tensor, tch::TchError>;

fn unary(f: Unary) -> Kernel {
    Box::new(move |ctx: &Ctx<'_>| Ok(vec![f(ctx.input(0)?)?]))
}

fn binary(f: Binary) -> Kernel {
    Box::new(move |ctx: &Ctx<'_>| Ok(vec![f(ctx.input(0)?, ctx.input(1)?)?]))
}

/// Folds all inputs with `f` (Max, Min, Sum).
fn variadic(f: Binary) -> Kernel {
    Box::new(move |ctx: &Ctx<'_>| {
        let mut acc = ctx.input(0)?.shallow_clone();
        for t in ctx.inputs.iter().skip(1).flatten() {
            acc = f(&acc, t)?;
        }
        Ok(vec![acc])
    })
}

fn float_attr(node: &NodeProto, name: &str, default: f32) -> Result<f64, String> {
    Ok(f64::from(node.attr_float_or(name, default)?))
}

/// A one-input elementwise operator.
pub fn unary_op(node: &NodeProto, u: U) -> Result<Kernel, String> {
    let k: Kernel = match u {
        U::Identity => Box::new(|ctx: &Ctx<'_>| Ok(vec![ctx.input(0)?.shallow_clone()])),
        U::Relu => unary(Tensor::f_relu),
        U::Sigmoid => unary(Tensor::f_sigmoid),
        U::Tanh => unary(Tensor::f_tanh),
        U::Exp => unary(Tensor::f_exp),
        U::Log => unary(Tensor::f_log),
        U::Sqrt => unary(Tensor::f_sqrt),
        U::Neg => unary(Tensor::f_neg),
        U::Abs => unary(Tensor::f_abs),
        U::Reciprocal => unary(Tensor::f_reciprocal),
        U::Erf => unary(Tensor::f_erf),
        U::Floor => unary(Tensor::f_floor),
        U::Ceil => unary(Tensor::f_ceil),
        U::Round => unary(Tensor::f_round),
        U::Sin => unary(Tensor::f_sin),
        U::Cos => unary(Tensor::f_cos),
        U::Sign => unary(Tensor::f_sign),
        U::Softplus => unary(Tensor::f_softplus),
        U::Selu => {
            // ONNX's defaults are PyTorch's constants, but either may be given.
            let alpha = float_attr(node, "alpha", 1.673_263_2)?;
            let gamma = float_attr(node, "gamma", 1.050_701)?;
            Box::new(move |ctx: &Ctx<'_>| {
                let x = ctx.input(0)?;
                let neg = x.f_clamp_max(0.0)?.f_exp()?.f_sub_scalar(1.0)?.f_mul_scalar(alpha)?;
                Ok(vec![x.f_where_self(&x.f_gt(0.0)?, &neg)?.f_mul_scalar(gamma)?])
            })
        }
        U::Mish => unary(Tensor::f_mish),
        U::IsNaN => unary(Tensor::f_isnan),
        U::Not => unary(Tensor::f_logical_not),
        U::Softsign => unary(|x| x.f_abs()?.f_add_scalar(1.0).and_then(|d| x.f_div(&d))),
        U::IsInf => {
            let (neg, pos) = (node.attr_int_or("detect_negative", 1)? != 0, node.attr_int_or("detect_positive", 1)? != 0);
            Box::new(move |ctx: &Ctx<'_>| {
                let x = ctx.input(0)?;
                let inf = x.f_isinf()?;
                let y = match (neg, pos) {
                    (true, true) => inf,
                    (true, false) => inf.f_logical_and(&x.f_lt(0.0)?)?,
                    (false, true) => inf.f_logical_and(&x.f_gt(0.0)?)?,
                    (false, false) => inf.f_zeros_like()?,
                };
                Ok(vec![y])
            })
        }
        U::HardSwish => unary(Tensor::f_hardswish),
        U::HardSigmoid => {
            let (alpha, beta) = (float_attr(node, "alpha", 0.2)?, float_attr(node, "beta", 0.5)?);
            Box::new(move |ctx: &Ctx<'_>| Ok(vec![ctx.input(0)?.f_mul_scalar(alpha)?.f_add_scalar(beta)?.f_clamp(0.0, 1.0)?]))
        }
        U::LeakyRelu => {
            let alpha = float_attr(node, "alpha", 0.01)?;
            Box::new(move |ctx: &Ctx<'_>| {
                let x = ctx.input(0)?;
                Ok(vec![x.f_where_self(&x.f_gt(0.0)?, &x.f_mul_scalar(alpha)?)?])
            })
        }
        U::Elu => {
            let alpha = float_attr(node, "alpha", 1.0)?;
            Box::new(move |ctx: &Ctx<'_>| {
                let x = ctx.input(0)?;
                let neg = x.f_clamp_max(0.0)?.f_exp()?.f_sub_scalar(1.0)?.f_mul_scalar(alpha)?;
                Ok(vec![x.f_where_self(&x.f_gt(0.0)?, &neg)?])
            })
        }
        U::Gelu => {
            let approximate = node.attr_string("approximate")?.unwrap_or_else(|| "none".into());
            if approximate != "none" && approximate != "tanh" {
                return Err(format!("Gelu approximate '{approximate}' is not supported"));
            }
            Box::new(move |ctx: &Ctx<'_>| Ok(vec![ctx.input(0)?.f_gelu(&approximate)?]))
        }
        U::Celu
        | U::ThresholdedRelu
        | U::Shrink
        | U::Tan
        | U::Asin
        | U::Acos
        | U::Atan
        | U::Sinh
        | U::Cosh
        | U::Asinh
        | U::Acosh
        | U::Atanh
        | U::BitwiseNot => return Err(not_supported(node.op())),
    };
    Ok(k)
}

/// A broadcasting arithmetic operator.
pub fn binary_op(node: &NodeProto, b: B) -> Result<Kernel, String> {
    let k: Kernel = match b {
        B::Add => binary(Tensor::f_add),
        B::Sub => binary(Tensor::f_sub),
        B::Mul => binary(Tensor::f_mul),
        B::Div => binary(|a, b| if is_float_kind(a.kind()) { a.f_div(b) } else { a.f_div_tensor_mode(b, "trunc") }),
        B::Pow => binary(|a, b| a.f_pow(b)?.f_to_kind(a.kind())),
        B::Mod => {
            let fmod = node.attr_int_or("fmod", 0)? != 0;
            if fmod {
                binary(Tensor::f_fmod_tensor)
            } else {
                binary(Tensor::f_remainder_tensor)
            }
        }
        B::Max => variadic(Tensor::f_maximum),
        B::Min => variadic(Tensor::f_minimum),
        B::Sum => variadic(Tensor::f_add),
        B::Mean => Box::new(|ctx: &Ctx<'_>| {
            let n = ctx.inputs.iter().flatten().count() as f64;
            let mut acc = ctx.input(0)?.shallow_clone();
            for t in ctx.inputs.iter().skip(1).flatten() {
                acc = acc.f_add(t)?;
            }
            Ok(vec![acc.f_div_scalar(n)?])
        }),
        B::BitShift | B::BitwiseAnd | B::BitwiseOr | B::BitwiseXor => return Err(not_supported(node.op())),
    };
    Ok(k)
}

/// A broadcasting comparison or logic operator.
pub fn compare_op(c: C) -> Kernel {
    match c {
        C::Equal => binary(Tensor::f_eq_tensor),
        C::Less => binary(Tensor::f_lt_tensor),
        C::LessOrEqual => binary(Tensor::f_le_tensor),
        C::Greater => binary(Tensor::f_gt_tensor),
        C::GreaterOrEqual => binary(Tensor::f_ge_tensor),
        C::And => binary(Tensor::f_logical_and),
        C::Or => binary(Tensor::f_logical_or),
        C::Xor => binary(Tensor::f_logical_xor),
    }
}

/// Compiles `Where`, `PRelu`, the matrix products, `Clip`, `CumSum`, `ArgMax`/`ArgMin` and the reductions.
pub fn compile(graph: &Graph<'_>, node: &NodeProto, op: &Op) -> Result<Kernel, String> {
    let k: Kernel = match op {
        Op::PRelu => Box::new(|ctx: &Ctx<'_>| {
            let (x, slope) = (ctx.input(0)?, ctx.input(1)?);
            Ok(vec![x.f_where_self(&x.f_ge(0.0)?, &x.f_mul(slope)?)?])
        }),
        Op::Where => Box::new(|ctx: &Ctx<'_>| Ok(vec![ctx.input(1)?.f_where_self(ctx.input(0)?, ctx.input(2)?)?])),
        Op::MatMul { integer: false } => binary(Tensor::f_matmul),
        Op::Gemm(g) => gemm(g),
        Op::Clip(c) => clip(graph, node, c),
        Op::CumSum => {
            let (exclusive, reverse) = (node.attr_int_or("exclusive", 0)? != 0, node.attr_int_or("reverse", 0)? != 0);
            Box::new(move |ctx: &Ctx<'_>| {
                let x = ctx.input(0)?;
                let a = ctx.ints(1)?.first().copied().ok_or("the axis input is empty")?;
                let a = axis(a, x.dim())?;
                let mut x = if reverse { x.f_flip([a])? } else { x.shallow_clone() };
                let mut y = x.f_cumsum(a, x.kind())?;
                if exclusive {
                    y = y.f_sub(&x)?;
                }
                if reverse {
                    y = y.f_flip([a])?;
                }
                x = y;
                Ok(vec![x])
            })
        }
        &Op::ArgReduce(ArgReduce { max, axis: a, keepdims, select_last_index: last }) => Box::new(move |ctx: &Ctx<'_>| {
            let x = ctx.input(0)?;
            let a = axis(a, x.dim())?;
            let x = if last { x.f_flip([a])? } else { x.shallow_clone() };
            let mut i = if max { x.f_argmax(a, keepdims)? } else { x.f_argmin(a, keepdims)? };
            if last {
                i = i.f_neg()?.f_add_scalar(x.size()[a as usize] - 1)?;
            }
            Ok(vec![i])
        }),
        Op::TopK(t) => {
            // Sorted whether or not `sorted` asks (the order is then unspecified).
            let (a, largest) = (t.axis, t.largest);
            let k = match &t.k {
                IntsParam::Attribute(k) => Some(k.as_ref().and_then(|k| k.first().copied()).ok_or("has no 'k'")?),
                IntsParam::Input(_) => None,
            };
            Box::new(move |ctx: &Ctx<'_>| {
                let x = ctx.input(0)?;
                let a = axis(a, x.dim())?;
                let k = match k {
                    Some(k) => k,
                    None => *ctx.ints(1)?.first().ok_or_else(|| OpError("k is empty".into()))?,
                };
                if k < 0 || k > x.size()[a as usize] {
                    return Err(OpError(format!("k = {k} is outside the axis of length {}", x.size()[a as usize])));
                }
                // A stable sort: of equal values the lower index comes first, as ONNX
                // says (libtorch's topk does not promise an order among ties).
                let (values, indices) = x.f_sort_stable(true, a, largest)?;
                Ok(vec![values.f_narrow(a, 0, k)?, indices.f_narrow(a, 0, k)?])
            })
        }
        Op::Einsum => {
            let equation = node.attr_string("equation")?.ok_or("has no 'equation' attribute")?;
            Box::new(move |ctx: &Ctx<'_>| {
                let ts: Vec<&Tensor> = ctx.inputs.iter().flatten().collect();
                Ok(vec![Tensor::f_einsum(&equation, &ts, None::<&[i64]>)?])
            })
        }
        Op::Reduce(r) => reduce(graph, node, r)?,
        _ => return Err(format!("operator {} is not one of the math operators", node.op())),
    };
    Ok(k)
}

/// Gemm: `alpha * A' B' + beta * C`, as PyTorch's Linear computes it (addmm) in the common case.
fn gemm(g: &Gemm) -> Kernel {
    let (alpha, beta) = (f64::from(g.alpha), f64::from(g.beta));
    let (ta, tb) = (g.trans_a, g.trans_b);
    Box::new(move |ctx: &Ctx<'_>| {
        let a = ctx.input(0)?;
        let b = ctx.input(1)?;
        let a = if ta { a.f_tr()? } else { a.shallow_clone() };
        let b = if tb { b.f_tr()? } else { b.shallow_clone() };
        let y = match ctx.opt(2) {
            Some(c) if alpha == 1.0 && beta == 1.0 => c.f_addmm(&a, &b)?,
            Some(c) => a.f_mm(&b)?.f_mul_scalar(alpha)?.f_add(&c.f_mul_scalar(beta)?)?,
            None if alpha == 1.0 => a.f_mm(&b)?,
            None => a.f_mm(&b)?.f_mul_scalar(alpha)?,
        };
        Ok(vec![y])
    })
}

fn clip(graph: &Graph<'_>, node: &NodeProto, c: &Clip) -> Kernel {
    let static_bounds = c.bounds(graph, node, None).ok();
    Box::new(move |ctx: &Ctx<'_>| {
        let x = ctx.input(0)?;
        let (lo, hi) = match static_bounds {
            Some((lo, hi)) => (lo.map(f64::from), hi.map(f64::from)),
            None => (ctx.opt_scalar(1)?, ctx.opt_scalar(2)?),
        };
        let y = match (lo, hi) {
            (Some(lo), Some(hi)) => x.f_clamp(lo, hi)?,
            (Some(lo), None) => x.f_clamp_min(lo)?,
            (None, Some(hi)) => x.f_clamp_max(hi)?,
            (None, None) => x.shallow_clone(),
        };
        // A float bound promotes an integer tensor to float; the bounds of an integer Clip are integers.
        Ok(vec![y.f_to_kind(x.kind())?])
    })
}

fn reduce(graph: &Graph<'_>, node: &NodeProto, r: &Reduce) -> Result<Kernel, String> {
    let (keepdims, noop, kind) = (r.keepdims, r.noop_with_empty_axes, r.kind);
    let axes = Ints::resolve(r.axes.resolve(graph, node, None, "axes"), node, 1)?;
    Ok(Box::new(move |ctx: &Ctx<'_>| {
        let x = ctx.input(0)?;
        let rank = x.dim();
        let axes = match axes.get(ctx)? {
            Some(a) if !a.is_empty() => a.iter().map(|&a| axis(a, rank)).collect::<OpResult<Vec<i64>>>()?,
            _ if noop => return Ok(vec![x.shallow_clone()]),
            _ => (0..rank as i64).collect(),
        };
        if rank == 0 {
            return Ok(vec![x.shallow_clone()]);
        }
        let size = x.size();
        if axes.iter().any(|&a| size[a as usize] == 0) && matches!(kind, ReduceKind::Max | ReduceKind::Min) {
            // The maximum of nothing is the lowest value (-inf, false), the minimum the highest.
            let mut shape = size.clone();
            for &a in &axes {
                shape[a as usize] = 1;
            }
            if !keepdims {
                shape = shape.iter().enumerate().filter(|(i, _)| !axes.contains(&(*i as i64))).map(|(_, &d)| d).collect();
            }
            let max = kind == ReduceKind::Max;
            let fill = match (x.kind(), max) {
                (k, true) if is_float_kind(k) => Scalar::float(f64::NEG_INFINITY),
                (k, false) if is_float_kind(k) => Scalar::float(f64::INFINITY),
                (Kind::Bool | Kind::Uint8, true) => Scalar::int(0),
                (Kind::Bool, false) => Scalar::int(1),
                (Kind::Uint8, false) => Scalar::int(i64::from(u8::MAX)),
                (Kind::Int8, true) => Scalar::int(i64::from(i8::MIN)),
                (Kind::Int8, false) => Scalar::int(i64::from(i8::MAX)),
                (Kind::Int, true) => Scalar::int(i64::from(i32::MIN)),
                (Kind::Int, false) => Scalar::int(i64::from(i32::MAX)),
                (_, true) => Scalar::int(i64::MIN),
                (_, false) => Scalar::int(i64::MAX),
            };
            return Ok(vec![Tensor::f_full(shape.as_slice(), fill, (x.kind(), x.device()))?]);
        }
        let y = match kind {
            ReduceKind::Mean => x.f_mean_dim(axes.as_slice(), keepdims, None)?,
            ReduceKind::Sum => x.f_sum_dim_intlist(axes.as_slice(), keepdims, None)?,
            ReduceKind::Max => x.f_amax(axes.as_slice(), keepdims)?,
            ReduceKind::Min => x.f_amin(axes.as_slice(), keepdims)?,
            ReduceKind::L1 => x.f_abs()?.f_sum_dim_intlist(axes.as_slice(), keepdims, None)?,
            ReduceKind::L2 => x.f_square()?.f_sum_dim_intlist(axes.as_slice(), keepdims, None)?.f_sqrt()?,
            ReduceKind::SumSquare => x.f_square()?.f_sum_dim_intlist(axes.as_slice(), keepdims, None)?,
            ReduceKind::LogSum => x.f_sum_dim_intlist(axes.as_slice(), keepdims, None)?.f_log()?,
            ReduceKind::LogSumExp => x.f_logsumexp(axes.as_slice(), keepdims)?,
            ReduceKind::Prod => {
                let mut sorted = axes.clone();
                sorted.sort_unstable_by(|a, b| b.cmp(a));
                let mut y = x.shallow_clone();
                for a in sorted {
                    y = y.f_prod_dim_int(a, keepdims, None)?;
                }
                y
            }
        };
        Ok(vec![y])
    }))
}
