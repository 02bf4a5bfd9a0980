//! Elementwise, matrix and reduction operators.

use super::{axis, Ctx, Ints, Kernel, OpError, OpResult};
use crate::exec::convert::is_float_kind;
use oto_onnx::ops as onnx_ops;
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

/// Compiles the operators of this module; `None` for other operators.
pub fn compile(graph: &Graph<'_>, node: &NodeProto, op: &str) -> Result<Option<Kernel>, String> {
    let k: Kernel = match op {
        "Identity" => Box::new(|ctx: &Ctx<'_>| Ok(vec![ctx.input(0)?.shallow_clone()])),
        "Relu" => unary(Tensor::f_relu),
        "Sigmoid" => unary(Tensor::f_sigmoid),
        "Tanh" => unary(Tensor::f_tanh),
        "Exp" => unary(Tensor::f_exp),
        "Log" => unary(Tensor::f_log),
        "Sqrt" => unary(Tensor::f_sqrt),
        "Neg" => unary(Tensor::f_neg),
        "Abs" => unary(Tensor::f_abs),
        "Reciprocal" => unary(Tensor::f_reciprocal),
        "Erf" => unary(Tensor::f_erf),
        "Floor" => unary(Tensor::f_floor),
        "Ceil" => unary(Tensor::f_ceil),
        "Round" => unary(Tensor::f_round),
        "Sin" => unary(Tensor::f_sin),
        "Cos" => unary(Tensor::f_cos),
        "Sign" => unary(Tensor::f_sign),
        "Softplus" => unary(Tensor::f_softplus),
        "Selu" => {
            // ONNX's defaults are PyTorch's constants, but either may be given.
            let alpha = float_attr(node, "alpha", 1.673_263_2)?;
            let gamma = float_attr(node, "gamma", 1.050_701)?;
            Box::new(move |ctx: &Ctx<'_>| {
                let x = ctx.input(0)?;
                let neg = x.f_clamp_max(0.0)?.f_exp()?.f_sub_scalar(1.0)?.f_mul_scalar(alpha)?;
                Ok(vec![x.f_where_self(&x.f_gt(0.0)?, &neg)?.f_mul_scalar(gamma)?])
            })
        }
        "Mish" => unary(Tensor::f_mish),
        "IsNaN" => unary(Tensor::f_isnan),
        "Not" => unary(Tensor::f_logical_not),
        "Softsign" => unary(|x| x.f_abs()?.f_add_scalar(1.0).and_then(|d| x.f_div(&d))),
        "IsInf" => {
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
        "HardSwish" => unary(Tensor::f_hardswish),
        "HardSigmoid" => {
            let (alpha, beta) = (float_attr(node, "alpha", 0.2)?, float_attr(node, "beta", 0.5)?);
            Box::new(move |ctx: &Ctx<'_>| Ok(vec![ctx.input(0)?.f_mul_scalar(alpha)?.f_add_scalar(beta)?.f_clamp(0.0, 1.0)?]))
        }
        "LeakyRelu" => {
            let alpha = float_attr(node, "alpha", 0.01)?;
            Box::new(move |ctx: &Ctx<'_>| {
                let x = ctx.input(0)?;
                Ok(vec![x.f_where_self(&x.f_gt(0.0)?, &x.f_mul_scalar(alpha)?)?])
            })
        }
        "Elu" => {
            let alpha = float_attr(node, "alpha", 1.0)?;
            Box::new(move |ctx: &Ctx<'_>| {
                let x = ctx.input(0)?;
                let neg = x.f_clamp_max(0.0)?.f_exp()?.f_sub_scalar(1.0)?.f_mul_scalar(alpha)?;
                Ok(vec![x.f_where_self(&x.f_gt(0.0)?, &neg)?])
            })
        }
        "PRelu" => Box::new(|ctx: &Ctx<'_>| {
            let (x, slope) = (ctx.input(0)?, ctx.input(1)?);
            Ok(vec![x.f_where_self(&x.f_ge(0.0)?, &x.f_mul(slope)?)?])
        }),
        "Gelu" => {
            let approximate = node.attr_string("approximate")?.unwrap_or_else(|| "none".into());
            if approximate != "none" && approximate != "tanh" {
                return Err(format!("Gelu approximate '{approximate}' is not supported"));
            }
            Box::new(move |ctx: &Ctx<'_>| Ok(vec![ctx.input(0)?.f_gelu(&approximate)?]))
        }
        "Add" => binary(Tensor::f_add),
        "Sub" => binary(Tensor::f_sub),
        "Mul" => binary(Tensor::f_mul),
        "Div" => binary(|a, b| if is_float_kind(a.kind()) { a.f_div(b) } else { a.f_div_tensor_mode(b, "trunc") }),
        "Pow" => binary(|a, b| a.f_pow(b)?.f_to_kind(a.kind())),
        "Mod" => {
            let fmod = node.attr_int_or("fmod", 0)? != 0;
            if fmod {
                binary(Tensor::f_fmod_tensor)
            } else {
                binary(Tensor::f_remainder_tensor)
            }
        }
        "Equal" => binary(Tensor::f_eq_tensor),
        "Less" => binary(Tensor::f_lt_tensor),
        "LessOrEqual" => binary(Tensor::f_le_tensor),
        "Greater" => binary(Tensor::f_gt_tensor),
        "GreaterOrEqual" => binary(Tensor::f_ge_tensor),
        "And" => binary(Tensor::f_logical_and),
        "Or" => binary(Tensor::f_logical_or),
        "Xor" => binary(Tensor::f_logical_xor),
        "Max" => variadic(Tensor::f_maximum),
        "Min" => variadic(Tensor::f_minimum),
        "Sum" => variadic(Tensor::f_add),
        "Mean" => Box::new(|ctx: &Ctx<'_>| {
            let n = ctx.inputs.iter().flatten().count() as f64;
            let mut acc = ctx.input(0)?.shallow_clone();
            for t in ctx.inputs.iter().skip(1).flatten() {
                acc = acc.f_add(t)?;
            }
            Ok(vec![acc.f_div_scalar(n)?])
        }),
        "Where" => Box::new(|ctx: &Ctx<'_>| Ok(vec![ctx.input(1)?.f_where_self(ctx.input(0)?, ctx.input(2)?)?])),
        "MatMul" => binary(Tensor::f_matmul),
        "Gemm" => gemm(node)?,
        "Clip" => clip(graph, node)?,
        "CumSum" => {
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
        "ArgMax" | "ArgMin" => {
            let a = node.attr_int_or("axis", 0)?;
            let keepdims = node.attr_int_or("keepdims", 1)? != 0;
            let last = node.attr_int_or("select_last_index", 0)? != 0;
            let max = op == "ArgMax";
            Box::new(move |ctx: &Ctx<'_>| {
                let x = ctx.input(0)?;
                let a = axis(a, x.dim())?;
                let x = if last { x.f_flip([a])? } else { x.shallow_clone() };
                let mut i = if max { x.f_argmax(a, keepdims)? } else { x.f_argmin(a, keepdims)? };
                if last {
                    i = i.f_neg()?.f_add_scalar(x.size()[a as usize] - 1)?;
                }
                Ok(vec![i])
            })
        }
        "Einsum" => {
            let equation = node.attr_string("equation")?.ok_or("has no 'equation' attribute")?;
            Box::new(move |ctx: &Ctx<'_>| {
                let ts: Vec<&Tensor> = ctx.inputs.iter().flatten().collect();
                Ok(vec![Tensor::f_einsum(&equation, &ts, None::<&[i64]>)?])
            })
        }
        op if onnx_ops::is_reduce(op) => reduce(graph, node, op)?,
        _ => return Ok(None),
    };
    Ok(Some(k))
}

/// Gemm: `alpha * A' B' + beta * C`, as PyTorch's Linear computes it (addmm) in the common case.
fn gemm(node: &NodeProto) -> Result<Kernel, String> {
    let alpha = f64::from(node.attr_float_or("alpha", 1.0)?);
    let beta = f64::from(node.attr_float_or("beta", 1.0)?);
    let (ta, tb) = (node.attr_int_or("transA", 0)? != 0, node.attr_int_or("transB", 0)? != 0);
    Ok(Box::new(move |ctx: &Ctx<'_>| {
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
    }))
}

fn clip(graph: &Graph<'_>, node: &NodeProto) -> Result<Kernel, String> {
    let bounds = onnx_ops::clip_bounds(graph, node, None);
    let static_bounds = bounds.ok();
    Ok(Box::new(move |ctx: &Ctx<'_>| {
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
    }))
}

fn reduce(graph: &Graph<'_>, node: &NodeProto, op: &str) -> Result<Kernel, String> {
    let keepdims = node.attr_int_or("keepdims", 1)? != 0;
    let noop = node.attr_int_or("noop_with_empty_axes", 0)? != 0;
    let axes = Ints::resolve(onnx_ops::reduce(graph, node, None).map(|r| r.axes), node, 1)?;
    let op = op.to_string();
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
        if axes.iter().any(|&a| size[a as usize] == 0) && matches!(op.as_str(), "ReduceMax" | "ReduceMin") {
            // The maximum of nothing is the lowest value (-inf, false), the minimum the highest.
            let mut shape = size.clone();
            for &a in &axes {
                shape[a as usize] = 1;
            }
            if !keepdims {
                shape = shape.iter().enumerate().filter(|(i, _)| !axes.contains(&(*i as i64))).map(|(_, &d)| d).collect();
            }
            let max = op == "ReduceMax";
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
        let y = match op.as_str() {
            "ReduceMean" => x.f_mean_dim(axes.as_slice(), keepdims, None)?,
            "ReduceSum" => x.f_sum_dim_intlist(axes.as_slice(), keepdims, None)?,
            "ReduceMax" => x.f_amax(axes.as_slice(), keepdims)?,
            "ReduceMin" => x.f_amin(axes.as_slice(), keepdims)?,
            "ReduceL1" => x.f_abs()?.f_sum_dim_intlist(axes.as_slice(), keepdims, None)?,
            "ReduceL2" => x.f_square()?.f_sum_dim_intlist(axes.as_slice(), keepdims, None)?.f_sqrt()?,
            "ReduceSumSquare" => x.f_square()?.f_sum_dim_intlist(axes.as_slice(), keepdims, None)?,
            "ReduceLogSum" => x.f_sum_dim_intlist(axes.as_slice(), keepdims, None)?.f_log()?,
            "ReduceLogSumExp" => x.f_logsumexp(axes.as_slice(), keepdims)?,
            "ReduceProd" => {
                let mut sorted = axes.clone();
                sorted.sort_unstable_by(|a, b| b.cmp(a));
                let mut y = x.shallow_clone();
                for a in sorted {
                    y = y.f_prod_dim_int(a, keepdims, None)?;
                }
                y
            }
            other => return Err(OpError(format!("{other} is not a reduction"))),
        };
        Ok(vec![y])
    }))
}
