//! Shape, layout, indexing and type operators.

use super::{axis, Ctx, Ints, Kernel, OpError, OpResult};
use crate::exec::convert::kind_of;
use oto_onnx::op::{IntsParam, Op, Pad, PadMode, ScalarParam, Slice, SplitSizes};
use oto_onnx::ops as onnx_ops;
use oto_onnx::proto::NodeProto;
use oto_onnx::{DType, Dim, Graph, NodeExt};
use tch::{Device, Kind, Tensor};

/// Compiles the shape, layout, indexing and type operators.
pub fn compile(graph: &Graph<'_>, node: &NodeProto, op: &Op, device: Device) -> Result<Kernel, String> {
    let k: Kernel = match op {
        &Op::Reshape { allowzero } => Box::new(move |ctx: &Ctx<'_>| {
            let x = ctx.input(0)?;
            let mut shape = ctx.ints(1)?;
            if !allowzero {
                let size = x.size();
                for (i, d) in shape.iter_mut().enumerate() {
                    if *d == 0 {
                        *d = *size
                            .get(i)
                            .ok_or_else(|| OpError(format!("shape entry {i} is 0 (copy) but the input has rank {}", size.len())))?;
                    }
                }
            }
            Ok(vec![x.f_reshape(shape.as_slice())?])
        }),
        &Op::Flatten { axis: a } => Box::new(move |ctx: &Ctx<'_>| {
            let x = ctx.input(0)?;
            let size = x.size();
            let a = if a < 0 { a + size.len() as i64 } else { a };
            if a < 0 || a > size.len() as i64 {
                return Err(OpError(format!("axis {a} is out of range for rank {}", size.len())));
            }
            let rows: i64 = size[..a as usize].iter().product();
            let cols: i64 = size[a as usize..].iter().product();
            Ok(vec![x.f_reshape([rows, cols])?])
        }),
        Op::Transpose { perm } => {
            let perm = perm.clone();
            Box::new(move |ctx: &Ctx<'_>| {
                let x = ctx.input(0)?;
                let perm = perm.clone().unwrap_or_else(|| (0..x.dim() as i64).rev().collect());
                Ok(vec![x.f_permute(perm.as_slice())?])
            })
        }
        Op::Squeeze { axes } => {
            let axes = Ints::resolve(axes.resolve(graph, node, None, "axes"), node, 1)?;
            Box::new(move |ctx: &Ctx<'_>| {
                let x = ctx.input(0)?;
                let rank = x.dim();
                let dims: Vec<i64> = match axes.get(ctx)? {
                    Some(a) => a.iter().map(|&a| axis(a, rank)).collect::<OpResult<_>>()?,
                    None => x.size().iter().enumerate().filter(|(_, &d)| d == 1).map(|(i, _)| i as i64).collect(),
                };
                for &d in &dims {
                    if x.size()[d as usize] != 1 {
                        return Err(OpError(format!("cannot squeeze axis {d} of shape {:?} (size is not 1)", x.size())));
                    }
                }
                Ok(vec![x.f_squeeze_dims(dims.as_slice())?])
            })
        }
        Op::Unsqueeze { axes } => {
            let axes = Ints::resolve(axes.resolve(graph, node, None, "axes"), node, 1)?;
            Box::new(move |ctx: &Ctx<'_>| {
                let x = ctx.input(0)?;
                let axes = axes.get(ctx)?.ok_or("has no axes")?;
                let rank = x.dim() + axes.len();
                let mut dims = axes.iter().map(|&a| axis(a, rank)).collect::<OpResult<Vec<i64>>>()?;
                dims.sort_unstable();
                let mut y = x.shallow_clone();
                for d in dims {
                    y = y.f_unsqueeze(d)?;
                }
                Ok(vec![y])
            })
        }
        &Op::Concat { axis: a } => Box::new(move |ctx: &Ctx<'_>| {
            let ts: Vec<&Tensor> = ctx.inputs.iter().flatten().collect();
            let first = ts.first().ok_or("has no inputs")?;
            let a = axis(a, first.dim())?;
            Ok(vec![Tensor::f_cat(&ts, a)?])
        }),
        Op::Split(s) => {
            let (split, runtime_sizes) = match s.resolve(graph, node, None) {
                Ok(sizes) => (sizes, None),
                Err(_) if s.split.input().is_some_and(|k| onnx_ops::input(node, k).is_some()) => {
                    (SplitSizes { axis: s.axis, sizes: None, num_outputs: s.num_outputs }, s.split.input())
                }
                Err(e) => return Err(e.to_string()),
            };
            Box::new(move |ctx: &Ctx<'_>| {
                let x = ctx.input(0)?;
                let a = axis(split.axis, x.dim())?;
                let len = x.size()[a as usize];
                let sizes = if let Some(k) = runtime_sizes {
                    let s = ctx.ints(k)?;
                    if s.iter().sum::<i64>() != len {
                        return Err(OpError(format!("split sizes {s:?} do not add up to the axis length {len}")));
                    }
                    s
                } else {
                    split.sizes_for(len)?
                };
                Ok(x.f_split_with_sizes(sizes.as_slice(), a)?)
            })
        }
        Op::Slice(s) => slice(graph, node, s),
        &Op::Gather { axis: a } => {
            Box::new(move |ctx: &Ctx<'_>| {
                let (x, idx) = (ctx.input(0)?, ctx.input(1)?);
                let a = axis(a, x.dim())?;
                let idx = nonnegative_indices(idx, x.size()[a as usize])?;
                if a == 0 && x.dim() == 2 && idx.dim() >= 1 {
                    // An embedding lookup: the same kernel (and backward) as nn.Embedding.
                    return Ok(vec![Tensor::f_embedding(x, &idx, -1, false, false)?]);
                }
                let mut shape = x.size()[..a as usize].to_vec();
                shape.extend(idx.size());
                shape.extend(&x.size()[a as usize + 1..]);
                let flat = idx.f_reshape([-1])?;
                Ok(vec![x.f_index_select(a, &flat)?.f_reshape(shape.as_slice())?])
            })
        }
        Op::GatherElements => {
            let a = node.attr_int_or("axis", 0)?;
            Box::new(move |ctx: &Ctx<'_>| {
                let (x, idx) = (ctx.input(0)?, ctx.input(1)?);
                let a = axis(a, x.dim())?;
                let idx = nonnegative_indices(idx, x.size()[a as usize])?;
                Ok(vec![x.f_gather(a, &idx, false)?])
            })
        }
        Op::ScatterElements => {
            let a = node.attr_int_or("axis", 0)?;
            let reduction = node.attr_string("reduction")?.unwrap_or_else(|| "none".into());
            let reduce = match reduction.as_str() {
                "none" => None,
                "add" => Some("sum"),
                "mul" => Some("prod"),
                "max" => Some("amax"),
                "min" => Some("amin"),
                other => return Err(format!("ScatterElements reduction '{other}' is not valid (none, add, mul, max, min)")),
            };
            Box::new(move |ctx: &Ctx<'_>| {
                let (x, idx, updates) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
                let a = axis(a, x.dim())?;
                let idx = nonnegative_indices(idx, x.size()[a as usize])?;
                Ok(vec![match reduce {
                    None => x.f_scatter(a, &idx, updates)?,
                    Some(r) => x.f_internal_scatter_reduce(a, &idx, updates, r, true)?,
                }])
            })
        }
        &Op::OneHot { axis: a } => Box::new(move |ctx: &Ctx<'_>| {
            let (idx, values) = (ctx.input(0)?, ctx.input(2)?);
            let depth = ctx.opt_scalar(1)?.ok_or_else(|| OpError("depth is empty".into()))?;
            if !(depth >= 1.0 && depth.fract() == 0.0) {
                return Err(OpError(format!("depth {depth} is not a positive integer")));
            }
            let depth = depth as i64;
            let a = axis(a, idx.dim() + 1)?;
            // Negative indices count from the end; out of range ones give a row of `off`.
            let idx = idx.f_to_kind(Kind::Int64)?;
            let idx = idx.f_where_self(&idx.f_ge(0)?, &idx.f_add_scalar(depth)?)?;
            let valid = idx.f_ge(0)?.f_logical_and(&idx.f_lt(depth)?)?;
            let hot = idx.f_clamp(0, depth - 1)?.f_one_hot(depth)?.f_mul(&valid.f_unsqueeze(-1)?)?.f_movedim([-1], [a])?;
            let values = values.f_reshape([-1])?;
            if values.size() != [2] {
                return Err(OpError(format!("values has {} entries, not 2 (off, on)", values.numel())));
            }
            let (off, on) = (values.f_get(0)?, values.f_get(1)?);
            Ok(vec![hot.f_to_kind(values.kind())?.f_mul(&on.f_sub(&off)?)?.f_add(&off)?])
        }),
        Op::GatherNd => {
            let batch = node.attr_int_or("batch_dims", 0)?;
            let batch = usize::try_from(batch).map_err(|_| format!("batch_dims {batch} is negative"))?;
            Box::new(move |ctx: &Ctx<'_>| Ok(vec![gather_nd(ctx.input(0)?, ctx.input(1)?, batch)?]))
        }
        Op::ScatterNd => {
            let reduction = node.attr_string("reduction")?.unwrap_or_else(|| "none".into());
            let reduce = match reduction.as_str() {
                "none" | "add" => None,
                "mul" => Some("prod"),
                "max" => Some("amax"),
                "min" => Some("amin"),
                other => return Err(format!("ScatterND reduction '{other}' is not valid (none, add, mul, max, min)")),
            };
            let add = reduction == "add";
            Box::new(move |ctx: &Ctx<'_>| Ok(vec![scatter_nd(ctx.input(0)?, ctx.input(1)?, ctx.input(2)?, add, reduce)?]))
        }
        Op::Expand => Box::new(|ctx: &Ctx<'_>| {
            let x = ctx.input(0)?;
            let target = ctx.ints(1)?;
            let size = x.size();
            let rank = size.len().max(target.len());
            let mut out = vec![0i64; rank];
            for i in 0..rank {
                let a = if i + size.len() >= rank { size[i + size.len() - rank] } else { 1 };
                let b = if i + target.len() >= rank { target[i + target.len() - rank] } else { 1 };
                out[i] = if a == 1 {
                    b
                } else if b == 1 || b == a {
                    a
                } else {
                    return Err(OpError(format!("cannot broadcast shape {size:?} to {target:?}")));
                };
            }
            Ok(vec![x.f_expand(out.as_slice(), false)?])
        }),
        Op::Tile => Box::new(|ctx: &Ctx<'_>| Ok(vec![ctx.input(0)?.f_repeat(ctx.ints(1)?.as_slice())?])),
        &Op::DepthSpace(d) => Box::new(move |ctx: &Ctx<'_>| {
            // The spec's Reshape, Transpose, Reshape on the run's sizes.
            let x = ctx.input(0)?;
            let dims: Vec<Dim> = x.size().into_iter().map(Dim::Known).collect();
            let steps = d.steps(&dims).map_err(OpError)?;
            let sizes = |ds: &[Dim]| -> Result<Vec<i64>, OpError> {
                ds.iter().map(|d| d.known().ok_or_else(|| OpError(format!("size {d} is not a number")))).collect()
            };
            let perm: Vec<i64> = steps.perm.iter().map(|&p| p as i64).collect();
            let moved = x.f_reshape(sizes(&steps.split)?.as_slice())?.f_permute(perm.as_slice())?;
            Ok(vec![moved.f_reshape(sizes(&steps.out)?.as_slice())?])
        }),
        &Op::Shape { start, end } => {
            Box::new(move |ctx: &Ctx<'_>| {
                let size = ctx.input(0)?.size();
                let r = size.len() as i64;
                let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
                let (s, e) = (clamp(start), clamp(end.unwrap_or(r)));
                let dims = if s < e { size[s..e].to_vec() } else { Vec::new() };
                // Shapes stay on the host: readers (Reshape, Expand...) need no device sync.
                Ok(vec![Tensor::f_from_slice(&dims)?])
            })
        }
        Op::Size => Box::new(|ctx: &Ctx<'_>| Ok(vec![Tensor::f_from_slice(&[ctx.input(0)?.numel() as i64])?.f_reshape([0i64; 0])?])),
        Op::Cast { to } => {
            let to = to.ok_or("casts to an element type oto does not handle")?;
            let kind = kind_of(to);
            Box::new(move |ctx: &Ctx<'_>| Ok(vec![ctx.input(0)?.f_to_kind(kind)?]))
        }
        Op::CastLike => {
            if onnx_ops::input(node, 1).is_some_and(|like| super::quant::is_4bit(graph, like)) {
                return Err("CastLike to INT4/UINT4 is not supported (the executor holds 4-bit values as 8-bit ones)".into());
            }
            Box::new(|ctx: &Ctx<'_>| Ok(vec![ctx.input(0)?.f_to_kind(ctx.input(1)?.kind())?]))
        }
        Op::ConstantOfShape => {
            let value = match node.attr_tensor("value")? {
                Some(t) => Some(graph.model.tensor(t).map_err(|e| e.to_string())?),
                None => None,
            };
            let (fill, dtype) = match &value {
                Some(v) => (v.to_f64_vec().first().copied().unwrap_or(0.0), v.dtype()),
                None => (0.0, DType::F32),
            };
            let kind = kind_of(dtype);
            let place = if dtype.is_float() { device } else { Device::Cpu };
            Box::new(move |ctx: &Ctx<'_>| Ok(vec![Tensor::f_full(ctx.ints(0)?.as_slice(), fill, (kind, place))?]))
        }
        &Op::EyeLike { k, dtype } => Box::new(move |ctx: &Ctx<'_>| {
            let x = ctx.input(0)?;
            let &[rows, cols] = x.size().as_slice() else {
                return Err(OpError(format!("EyeLike input has rank {}, expected 2", x.dim())));
            };
            // Ones where column - row = k.
            let at = |n: i64| Tensor::f_arange(n, (Kind::Int64, x.device()));
            let offset = at(cols)?.f_unsqueeze(0)?.f_sub(&at(rows)?.f_unsqueeze(1)?)?;
            let kind = dtype.map(kind_of).unwrap_or(x.kind());
            Ok(vec![offset.f_eq(k)?.f_to_kind(kind)?])
        }),
        Op::Range => Box::new(|ctx: &Ctx<'_>| {
            let start = ctx.input(0)?;
            let kind = start.kind();
            let (s, l, d) = (ctx.opt_scalar(0)?.unwrap_or(0.0), ctx.opt_scalar(1)?.unwrap_or(0.0), ctx.opt_scalar(2)?.unwrap_or(1.0));
            if d == 0.0 {
                return Err(OpError("Range delta is 0".into()));
            }
            let n = ((l - s) / d).ceil().max(0.0) as i64;
            let y = Tensor::f_arange(n, (Kind::Double, start.device()))?.f_mul_scalar(d)?.f_add_scalar(s)?.f_to_kind(kind)?;
            Ok(vec![y])
        }),
        // ONNX wants `[rank, count]` (a scalar counts as rank 1); libtorch gives `[count, rank]`.
        Op::NonZero => Box::new(|ctx: &Ctx<'_>| {
            let x = ctx.input(0)?;
            let x = if x.dim() == 0 { x.f_reshape([1])? } else { x.shallow_clone() };
            Ok(vec![x.f_nonzero()?.f_transpose(0, 1)?.f_contiguous()?])
        }),
        Op::Pad(p) => pad(graph, node, p),
        &Op::Trilu { upper } => Box::new(move |ctx: &Ctx<'_>| {
            let x = ctx.input(0)?;
            let k = ctx.opt_ints(1)?.and_then(|v| v.first().copied()).unwrap_or(0);
            Ok(vec![if upper { x.f_triu(k)? } else { x.f_tril(k)? }])
        }),
        Op::Resize(r) => super::resize::compile(graph, node, r)?,
        &Op::GridSample(g) => grid_sample(g),
        _ => return Err(format!("operator {} is not one of the shape operators", node.op())),
    };
    Ok(k)
}

/// `GridSample` as libtorch's `grid_sampler` (2-D and 3-D; cubic in 2-D), which numbers
/// the modes as ONNX orders them.
fn grid_sample(g: oto_onnx::op::GridSample) -> Kernel {
    use oto_onnx::op::{GridMode, GridPadding};
    let mode = match g.mode {
        GridMode::Linear => 0,
        GridMode::Nearest => 1,
        GridMode::Cubic => 2,
    };
    let padding = match g.padding {
        GridPadding::Zeros => 0,
        GridPadding::Border => 1,
        GridPadding::Reflection => 2,
    };
    Box::new(move |ctx: &Ctx<'_>| {
        let (x, grid) = (ctx.input(0)?, ctx.input(1)?);
        let grid = grid.f_to_kind(x.kind())?;
        Ok(vec![x.f_grid_sampler(&grid, mode, padding, g.align_corners)?])
    })
}

/// Gather-style indices as int64 with negative ones counted from the end of an axis of length `len`.
fn nonnegative_indices(idx: &Tensor, len: i64) -> Result<Tensor, OpError> {
    let idx = idx.f_to_kind(Kind::Int64)?;
    Ok(idx.f_where_self(&idx.f_ge(0)?, &idx.f_add_scalar(len)?)?)
}

/// The last axis of ND `indices` (`[..., k]`, read for `data` after `batch` leading batch
/// axes) as one linear index into the `k` axes `data[batch..batch + k]`: `(k, linear)`.
fn linear_nd_indices(data: &Tensor, indices: &Tensor, batch: usize) -> OpResult<(usize, Tensor)> {
    let (shape, isize) = (data.size(), indices.size());
    let k = match isize.last() {
        Some(&k) if isize.len() > batch => usize::try_from(k).map_err(|_| OpError(format!("indices shape {isize:?} is invalid")))?,
        _ => return Err(OpError(format!("indices of shape {isize:?} need more than {batch} axes (batch_dims)"))),
    };
    if batch + k > shape.len() || shape[..batch] != isize[..batch] {
        return Err(OpError(format!("indices of shape {isize:?} do not index data of shape {shape:?} with batch_dims {batch}")));
    }
    let indices = indices.f_to_kind(Kind::Int64)?;
    let mut linear = indices.f_select(-1, 0)?.f_zeros_like()?;
    let mut outside = linear.f_ne(0)?;
    for (j, &dim) in shape[batch..batch + k].iter().enumerate() {
        let i = nonnegative_indices(&indices.f_select(-1, j as i64)?, dim)?;
        outside = outside.f_logical_or(&i.f_lt(0)?)?.f_logical_or(&i.f_ge(dim)?)?;
        linear = linear.f_mul_scalar(dim)?.f_add(&i)?;
    }
    // One check (one device sync) for all axes.
    if bool::try_from(&outside.f_any()?).map_err(|e| OpError(e.to_string()))? {
        return Err(OpError(format!("indices of shape {isize:?} hold an index out of range for data of shape {shape:?}")));
    }
    Ok((k, linear))
}

/// GatherND: the slices of `data` that the rows of `indices` address, through `gather`
/// (differentiable in `data`).
fn gather_nd(data: &Tensor, indices: &Tensor, batch: usize) -> OpResult<Tensor> {
    let (k, linear) = linear_nd_indices(data, indices, batch)?;
    let shape = data.size();
    let batches: i64 = shape[..batch].iter().product();
    let rows: i64 = shape[batch..batch + k].iter().product();
    let rest: i64 = shape[batch + k..].iter().product();
    let flat = data.f_reshape([batches, rows, rest])?;
    let picks = linear.f_reshape([batches, -1, 1])?;
    let count = picks.size()[1];
    let y = flat.f_gather(1, &picks.f_expand([batches, count, rest], false)?, false)?;
    let mut out = indices.size();
    out.pop();
    out.extend_from_slice(&shape[batch + k..]);
    Ok(y.f_reshape(out.as_slice())?)
}

/// ScatterND: `data` with the slices that the rows of `indices` address replaced by (or,
/// with `add` or `reduce`, combined with) `updates`; differentiable in both.
fn scatter_nd(data: &Tensor, indices: &Tensor, updates: &Tensor, add: bool, reduce: Option<&str>) -> OpResult<Tensor> {
    let (k, linear) = linear_nd_indices(data, indices, 0)?;
    let shape = data.size();
    let rows: i64 = shape[..k].iter().product();
    let rest: i64 = shape[k..].iter().product();
    let mut expected = indices.size();
    expected.pop();
    expected.extend_from_slice(&shape[k..]);
    if updates.size() != expected {
        return Err(OpError(format!("updates have shape {:?}, expected {expected:?}", updates.size())));
    }
    let flat = data.f_reshape([rows, rest])?;
    let linear = linear.f_reshape([-1])?;
    let updates = updates.f_reshape([-1, rest])?;
    let y = match reduce {
        Some(how) => flat.f_index_reduce(0, &linear, &updates, how, true)?,
        None => flat.f_index_put(&[Some(linear)], &updates, add)?,
    };
    Ok(y.f_reshape(shape.as_slice())?)
}

/// A dimension as written in Slice parameters (symbolic ones are not constant).
fn known(dims: &[oto_onnx::Dim]) -> Option<Vec<i64>> {
    dims.iter().map(oto_onnx::Dim::known).collect()
}

fn slice(graph: &Graph<'_>, node: &NodeProto, sl: &Slice) -> Kernel {
    // The resolved bounds when every parameter is constant; otherwise read inputs 1..4.
    let fixed = sl.resolve(graph, node, None).ok().and_then(|s| Some((known(&s.starts)?, known(&s.ends)?, s.axes, s.steps)));
    Box::new(move |ctx: &Ctx<'_>| {
        let x = ctx.input(0)?;
        let (starts, ends, axes, steps) = match &fixed {
            Some(f) => f.clone(),
            None => (ctx.ints(1)?, ctx.ints(2)?, ctx.opt_ints(3)?, ctx.opt_ints(4)?),
        };
        let rank = x.dim();
        let size = x.size();
        let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return Err(OpError("starts, ends, axes and steps must have the same length".into()));
        }
        let mut y = x.shallow_clone();
        for i in 0..starts.len() {
            let a = axis(axes[i], rank)?;
            let dim = size[a as usize];
            let step = steps[i];
            if step == 0 {
                return Err(OpError("a slice step is 0".into()));
            }
            let norm = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
            if step > 0 {
                let s = norm(starts[i]).clamp(0, dim);
                let e = norm(ends[i]).clamp(0, dim).max(s);
                y = y.f_slice(a, s, e, step)?;
            } else {
                let s = norm(starts[i]).clamp(0, dim - 1);
                let e = norm(ends[i]).clamp(-1, dim - 1);
                let idx: Vec<i64> = (0..).map(|k| s + k * step).take_while(|&v| v > e).collect();
                let idx = Tensor::f_from_slice(&idx)?.f_to_device(y.device())?;
                y = y.f_index_select(a, &idx)?;
            }
        }
        Ok(vec![y])
    })
}

fn pad(graph: &Graph<'_>, node: &NodeProto, p: &Pad) -> Kernel {
    let fixed = p.resolve(graph, node, None).ok();
    let torch_mode = match p.mode {
        PadMode::Constant => "constant",
        PadMode::Reflect => "reflect",
        PadMode::Edge => "replicate",
        PadMode::Wrap => "circular",
    };
    // Pads, value and axes read from inputs at run time when they are not constant.
    let runtime = match (&p.pads, &p.value, &p.axes) {
        (IntsParam::Input(k), ScalarParam::Input(v), IntsParam::Input(a)) => Some((*k, *v, *a)),
        _ => None,
    };
    Box::new(move |ctx: &Ctx<'_>| {
        let x = ctx.input(0)?;
        let (pads, value, axes) = match (&fixed, runtime) {
            (Some(p), _) => (p.pads.clone(), p.constant_value, p.axes.clone()),
            (None, Some((k, v, a))) => (ctx.ints(k)?, ctx.opt_scalar(v)?.unwrap_or(0.0), ctx.opt_ints(a)?),
            (None, None) => return Err(OpError("pads are not available".into())),
        };
        let rank = x.dim();
        let axes = match axes {
            Some(a) => a.iter().map(|&a| axis(a, rank)).collect::<OpResult<Vec<i64>>>()?,
            None => (0..rank as i64).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return Err(OpError(format!("pads has {} entries for {} axes", pads.len(), axes.len())));
        }
        let mut per_axis = vec![(0i64, 0i64); rank];
        for (i, &a) in axes.iter().enumerate() {
            per_axis[a as usize] = (pads[i], pads[i + axes.len()]);
        }
        // torch lists (begin, end) from the last axis backwards, up to the first padded axis.
        let first = per_axis.iter().position(|p| *p != (0, 0)).unwrap_or(rank);
        let mut list = Vec::new();
        for p in per_axis[first..].iter().rev() {
            list.push(p.0);
            list.push(p.1);
        }
        if list.is_empty() {
            return Ok(vec![x.shallow_clone()]);
        }
        let y = if torch_mode == "constant" {
            x.f_pad(list.as_slice(), "constant", value)?
        } else {
            x.f_pad(list.as_slice(), torch_mode, None)?
        };
        Ok(vec![y])
    })
}
