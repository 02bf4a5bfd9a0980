//! Neural-network operators: convolutions, pooling, normalizations, softmax, dropout.

use super::{axis, not_supported, Ctx, Kernel, OpError, OpResult};
use oto_onnx::op::{Conv, ConvTranspose, LayerNorm, Op, Pool, PoolKind, Softmax, SoftmaxKind, Window};
use oto_onnx::ops as onnx_ops;
use oto_onnx::proto::NodeProto;
use oto_onnx::{Graph, NodeExt};
use tch::{Kind, Tensor};

/// Padding of a convolution or pool window (attributes typed by `oto_onnx::op::Window`).
trait Padding {
    /// `(begin, end)` padding per spatial axis for an input of spatial size `input`.
    fn padding(&self, input: &[i64], kernel: &[i64]) -> OpResult<Vec<(i64, i64)>>;
}

impl Padding for Window {
    fn padding(&self, input: &[i64], kernel: &[i64]) -> OpResult<Vec<(i64, i64)>> {
        let n = input.len();
        let (strides, dilations) = (self.strides(n), self.dilations(n));
        if strides.len() != n || dilations.len() != n || kernel.len() != n {
            return Err(OpError(format!("strides/dilations/kernel_shape do not have {n} spatial entries")));
        }
        match self.auto_pad.as_str() {
            "VALID" => Ok(vec![(0, 0); n]),
            "SAME_UPPER" | "SAME_LOWER" => Ok((0..n)
                .map(|i| {
                    let out = (input[i] + strides[i] - 1) / strides[i];
                    let total = ((out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - input[i]).max(0);
                    split_padding(total, &self.auto_pad)
                })
                .collect()),
            _ => match &self.pads {
                None => Ok(vec![(0, 0); n]),
                Some(p) if p.len() == 2 * n => Ok((0..n).map(|i| (p[i], p[i + n])).collect()),
                Some(p) => Err(OpError(format!("pads has {} entries, expected {}", p.len(), 2 * n))),
            },
        }
    }
}

/// `(begin, end)` of `total` padding under `SAME_UPPER` (the odd unit at the end) or
/// `SAME_LOWER` (at the beginning).
fn split_padding(total: i64, auto_pad: &str) -> (i64, i64) {
    // Floor division, as onnx's reference does for the negative totals of ConvTranspose.
    let small = total.div_euclid(2);
    if auto_pad == "SAME_UPPER" {
        (small, total - small)
    } else {
        (total - small, small)
    }
}

/// Padding split for libtorch: `(explicit, symmetric)`, where `explicit` is the list for
/// `constant_pad_nd` (from the last axis backwards; empty when nothing needs padding by
/// hand) and `symmetric` the per-axis padding libtorch applies itself. Padding beyond
/// `limit[i]` (the pools take at most half their effective kernel) is explicit too.
fn split_pads(pads: &[(i64, i64)], limit: Option<&[i64]>) -> (Vec<i64>, Vec<i64>) {
    let common: Vec<i64> =
        pads.iter().enumerate().map(|(i, (b, e))| (*b).min(*e).min(limit.and_then(|l| l.get(i)).copied().unwrap_or(i64::MAX))).collect();
    if pads.iter().zip(&common).all(|((b, e), c)| b == c && e == c) {
        return (Vec::new(), common);
    }
    let mut list = Vec::new();
    for ((b, e), c) in pads.iter().zip(&common).rev() {
        list.push(b - c);
        list.push(e - c);
    }
    (list, common)
}

/// `x` padded by hand with `fill` as [`split_pads`] says, and the padding left to libtorch.
fn symmetric(x: &Tensor, pads: &[(i64, i64)], limit: Option<&[i64]>, fill: f64) -> OpResult<(Tensor, Vec<i64>)> {
    let (list, padding) = split_pads(pads, limit);
    if list.is_empty() {
        return Ok((x.shallow_clone(), padding));
    }
    let padded = x.f_constant_pad_nd(list.as_slice())?;
    if fill == 0.0 {
        return Ok((padded, padding));
    }
    let inside = x.f_ones_like()?.f_to_kind(Kind::Uint8)?.f_constant_pad_nd(list.as_slice())?.f_to_kind(Kind::Bool)?;
    Ok((padded.f_where_scalarother(&inside, fill)?, padding))
}

/// The most padding libtorch's pools take per axis: half the effective kernel.
fn pool_limit(kernel: &[i64], dilations: &[i64]) -> Vec<i64> {
    kernel.iter().zip(dilations).map(|(k, d)| ((k - 1) * d + 1) / 2).collect()
}

fn spatial(x: &Tensor) -> OpResult<Vec<i64>> {
    let size = x.size();
    if size.len() < 3 {
        return Err(OpError(format!("expected an input of rank >= 3 (N, C, spatial...), got shape {size:?}")));
    }
    Ok(size[2..].to_vec())
}

/// `MaxPool`, `AveragePool` (`LpPool` is not supported).
pub fn pool(node: &NodeProto, p: &Pool) -> Result<Kernel, String> {
    match p.kind {
        PoolKind::Max => max_pool(node, p),
        PoolKind::Average => avg_pool(p),
        PoolKind::Lp => Err(not_supported(node.op())),
    }
}

/// `GlobalMaxPool`, `GlobalAveragePool` (`GlobalLpPool` is not supported).
pub fn global_pool(node: &NodeProto, kind: PoolKind) -> Result<Kernel, String> {
    Ok(match kind {
        PoolKind::Average => Box::new(|ctx: &Ctx<'_>| {
            let x = ctx.input(0)?;
            let dims: Vec<i64> = (2..x.dim() as i64).collect();
            Ok(vec![x.f_mean_dim(dims.as_slice(), true, None)?])
        }),
        PoolKind::Max => Box::new(|ctx: &Ctx<'_>| {
            let x = ctx.input(0)?;
            let dims: Vec<i64> = (2..x.dim() as i64).collect();
            Ok(vec![x.f_amax(dims.as_slice(), true)?])
        }),
        PoolKind::Lp => return Err(not_supported(node.op())),
    })
}

/// Compiles the normalizations, softmax and dropout.
pub fn compile(graph: &Graph<'_>, node: &NodeProto, op: &Op) -> Result<Kernel, String> {
    let k: Kernel = match op {
        Op::BatchNormalization => batch_norm(graph, node)?,
        Op::InstanceNormalization => {
            let eps = f64::from(node.attr_float_or("epsilon", 1e-5)?);
            Box::new(move |ctx: &Ctx<'_>| {
                let x = ctx.input(0)?;
                Ok(vec![x.f_instance_norm(ctx.opt(1), ctx.opt(2), None::<&Tensor>, None::<&Tensor>, true, 0.0, eps, true)?])
            })
        }
        Op::LayerNormalization(l) => layer_norm(node, l)?,
        Op::RmsNormalization(l) => rms_norm(l)?,
        Op::Lrn => lrn(node)?,
        Op::GroupNormalization => group_norm(graph, node)?,
        Op::Softmax(s) => softmax(s)?,
        Op::Dropout => dropout(graph, node)?,
        _ => return Err(format!("operator {} is not one of the normalizations", node.op())),
    };
    Ok(k)
}

/// Local response normalization: `x / (bias + alpha / size * S)^beta`, `S` the sum of
/// squares over the window of `size` channels around each channel (ONNX's bounds:
/// `floor((size - 1) / 2)` before, `ceil((size - 1) / 2)` after, zeros past the edges).
fn lrn(node: &NodeProto) -> Result<Kernel, String> {
    let size = node.attr_int("size")?.ok_or("LRN needs the attribute 'size'")?;
    if size < 1 {
        return Err(format!("LRN size must be at least 1, got {size}"));
    }
    let alpha = f64::from(node.attr_float_or("alpha", 1e-4)?);
    let beta = f64::from(node.attr_float_or("beta", 0.75)?);
    let bias = f64::from(node.attr_float_or("bias", 1.0)?);
    let (before, after) = ((size - 1) / 2, size - 1 - (size - 1) / 2);
    Ok(Box::new(move |ctx: &Ctx<'_>| {
        let x = ctx.input(0)?;
        let mut shape = x.size();
        if shape.len() < 2 {
            return Err(OpError(format!("LRN expects an input of rank >= 2 (N, C, ...), got shape {shape:?}")));
        }
        let c = shape[1];
        let opts = (x.kind(), x.device());
        shape[1] = before;
        let lo = Tensor::f_zeros(shape.as_slice(), opts)?;
        shape[1] = after;
        let hi = Tensor::f_zeros(shape.as_slice(), opts)?;
        let padded = Tensor::f_cat(&[&lo, &x.f_square()?, &hi], 1)?;
        let mut sum = padded.f_narrow(1, 0, c)?;
        for i in 1..size {
            sum = sum.f_add(&padded.f_narrow(1, i, c)?)?;
        }
        let den = sum.f_mul_scalar(alpha / size as f64)?.f_add_scalar(bias)?.f_pow_tensor_scalar(beta)?;
        Ok(vec![x.f_div(&den)?])
    }))
}

/// `Conv`.
pub fn conv(c: &Conv) -> Result<Kernel, String> {
    let window = c.window.clone();
    let groups = c.group;
    Ok(Box::new(move |ctx: &Ctx<'_>| Ok(vec![convolve(&window, groups, ctx.input(0)?, ctx.input(1)?, ctx.opt(2))?])))
}

/// The convolution of `x` by `w` (plus `b`) under a Conv's window attributes: `Conv`, and
/// the integer convolutions on their inputs less the zero points.
pub(super) fn convolve(window: &Window, groups: i64, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> OpResult<Tensor> {
    let input = spatial(x)?;
    let kernel = window.kernel_shape.clone().unwrap_or_else(|| w.size()[2..].to_vec());
    let n = input.len();
    let pads = window.padding(&input, &kernel)?;
    let (x, padding) = symmetric(x, &pads, None, 0.0)?;
    Ok(x.f_convolution(
        w,
        b,
        window.strides(n).as_slice(),
        padding.as_slice(),
        window.dilations(n).as_slice(),
        false,
        vec![0; n].as_slice(),
        groups,
    )?)
}

/// `ConvTranspose`.
pub fn conv_transpose(c: &ConvTranspose) -> Result<Kernel, String> {
    let window = c.window.clone();
    let groups = c.group;
    let output_padding = c.output_padding.clone();
    let output_shape = c.output_shape.clone();
    Ok(Box::new(move |ctx: &Ctx<'_>| {
        let (x, w) = (ctx.input(0)?, ctx.input(1)?);
        let input = spatial(x)?;
        let n = input.len();
        let kernel = window.kernel_shape.clone().unwrap_or_else(|| w.size()[2..].to_vec());
        let (strides, dilations) = (window.strides(n), window.dilations(n));
        let out_pad = output_padding.clone().unwrap_or_else(|| vec![0; n]);
        let pads: Vec<(i64, i64)> = if let Some(shape) = &output_shape {
            // As onnx's reference computes it: under SAME_* the difference to the natural
            // size is split, otherwise the output starts after the begin pads and is cut
            // (or extended with zeros) at the end.
            let shape = &shape[shape.len().saturating_sub(n)..];
            let explicit = if window.auto_pad.starts_with("SAME") { None } else { Some(window.padding(&input, &kernel)?) };
            (0..n)
                .map(|i| {
                    let total = strides[i] * (input[i] - 1) + out_pad[i] + (kernel[i] - 1) * dilations[i] + 1 - shape[i];
                    match &explicit {
                        Some(p) => (p[i].0, total - p[i].0),
                        None => split_padding(total, &window.auto_pad),
                    }
                })
                .collect()
        } else if window.auto_pad.starts_with("SAME") {
            (0..n)
                .map(|i| {
                    let total =
                        (strides[i] * (input[i] - 1) + out_pad[i] + (kernel[i] - 1) * dilations[i] + 1 - input[i] * strides[i]).max(0);
                    split_padding(total, &window.auto_pad)
                })
                .collect()
        } else {
            window.padding(&input, &kernel)?
        };
        // libtorch takes symmetric padding; extra end padding crops less, i.e. more output padding.
        let torch_out_pad: Vec<i64> = (0..n).map(|i| out_pad[i] + pads[i].0 - pads[i].1).collect();
        let fits = (0..n).all(|i| pads[i].0 >= 0 && (0..strides[i].max(dilations[i])).contains(&torch_out_pad[i]));
        if fits {
            let begin: Vec<i64> = pads.iter().map(|p| p.0).collect();
            let y = x.f_convolution(
                w,
                ctx.opt(2),
                strides.as_slice(),
                begin.as_slice(),
                dilations.as_slice(),
                true,
                torch_out_pad.as_slice(),
                groups,
            )?;
            return Ok(vec![y]);
        }
        // Otherwise the whole output, cropped (or extended with zeros) to the ONNX one, then the bias.
        let zeros = vec![0; n];
        let full = x.f_convolution(w, None::<&Tensor>, strides.as_slice(), &zeros, dilations.as_slice(), true, &zeros, groups)?;
        let mut list = Vec::with_capacity(2 * n);
        for i in (0..n).rev() {
            list.push(-pads[i].0);
            list.push(out_pad[i] - pads[i].1);
        }
        let mut y = full.f_constant_pad_nd(list.as_slice())?;
        if let Some(b) = ctx.opt(2) {
            let mut shape = vec![1i64; y.dim()];
            shape[1] = -1;
            y = y.f_add(&b.f_reshape(shape.as_slice())?)?;
        }
        Ok(vec![y])
    }))
}

fn pool_kernel(window: &Window) -> Result<Vec<i64>, String> {
    window.kernel_shape.clone().ok_or_else(|| "has no kernel_shape attribute".to_string())
}

fn max_pool(node: &NodeProto, p: &Pool) -> Result<Kernel, String> {
    let window = p.window.clone();
    let kernel = pool_kernel(&window)?;
    let ceil = p.ceil_mode;
    if node.output.get(1).is_some_and(|o| !o.is_empty()) {
        return Err("MaxPool's Indices output is not supported".into());
    }
    Ok(Box::new(move |ctx: &Ctx<'_>| {
        let x = ctx.input(0)?;
        let input = spatial(x)?;
        let n = input.len();
        let pads = window.padding(&input, &kernel)?;
        let (s, d) = (window.strides(n), window.dilations(n));
        let (x, padding) = symmetric(x, &pads, Some(&pool_limit(&kernel, &d)), f64::NEG_INFINITY)?;
        let y = match n {
            1 => x.f_max_pool1d(kernel.as_slice(), s.as_slice(), padding.as_slice(), d.as_slice(), ceil)?,
            2 => x.f_max_pool2d(kernel.as_slice(), s.as_slice(), padding.as_slice(), d.as_slice(), ceil)?,
            3 => x.f_max_pool3d(kernel.as_slice(), s.as_slice(), padding.as_slice(), d.as_slice(), ceil)?,
            _ => return Err(OpError(format!("MaxPool over {n} spatial axes is not supported"))),
        };
        Ok(vec![y])
    }))
}

fn avg_pool(p: &Pool) -> Result<Kernel, String> {
    let window = p.window.clone();
    let kernel = pool_kernel(&window)?;
    let ceil = p.ceil_mode;
    let include_pad = p.count_include_pad;
    if window.dilations.as_ref().is_some_and(|d| d.iter().any(|&d| d != 1)) {
        return Err("AveragePool with dilations is not supported".into());
    }
    Ok(Box::new(move |ctx: &Ctx<'_>| {
        let x = ctx.input(0)?;
        let input = spatial(x)?;
        let n = input.len();
        let pads = window.padding(&input, &kernel)?;
        let (list, padding) = split_pads(&pads, Some(&pool_limit(&kernel, &vec![1; n])));
        let s = window.strides(n);
        let pool = |t: &Tensor, include: bool| -> OpResult<Tensor> {
            Ok(match n {
                1 => t.f_avg_pool1d(kernel.as_slice(), s.as_slice(), padding.as_slice(), ceil, include)?,
                2 => t.f_avg_pool2d(kernel.as_slice(), s.as_slice(), padding.as_slice(), ceil, include, None)?,
                3 => t.f_avg_pool3d(kernel.as_slice(), s.as_slice(), padding.as_slice(), ceil, include, None)?,
                _ => return Err(OpError(format!("AveragePool over {n} spatial axes is not supported"))),
            })
        };
        if list.is_empty() {
            return Ok(vec![pool(x, include_pad)?]);
        }
        // Padding by hand: the zeros count as elements, so without count_include_pad the
        // mean is rescaled by the share of real elements in each window.
        let y = pool(&x.f_constant_pad_nd(list.as_slice())?, include_pad)?;
        if include_pad {
            return Ok(vec![y]);
        }
        let real = pool(&x.f_ones_like()?.f_constant_pad_nd(list.as_slice())?, false)?;
        Ok(vec![y.f_div(&real)?])
    }))
}

/// BatchNormalization: running statistics in eval mode; batch statistics in train
/// mode, updating the running mean/var in place with PyTorch's momentum
/// (`1 - ONNX momentum`) and the unbiased batch variance, as `nn.BatchNorm` does.
fn batch_norm(graph: &Graph<'_>, node: &NodeProto) -> Result<Kernel, String> {
    let params = onnx_ops::batch_norm(graph, node).map_err(|e| e.to_string())?;
    let eps = f64::from(params.epsilon);
    let torch_momentum = 1.0 - f64::from(params.momentum);
    if node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err("BatchNormalization's running mean/var outputs are not supported (the executor updates the running statistics itself in training mode)".into());
    }
    // Statistics computed at run time (tf2onnx writes Keras' LayerNormalization as a
    // BatchNormalization fed by ReduceMean of the input) are the statistics to normalize
    // with, in training too: the inference formula, differentiable through them.
    let stored = |i: usize| node.input.get(i).is_some_and(|v| graph.initializer(v).is_some());
    let computed_statistics = !(stored(3) && stored(4));
    Ok(Box::new(move |ctx: &Ctx<'_>| {
        let x = ctx.input(0)?;
        let (mean, var) = (ctx.input(3)?, ctx.input(4)?);
        if computed_statistics {
            let rank = x.dim();
            let per_channel = |t: &Tensor| -> Result<Tensor, tch::TchError> {
                let mut shape = vec![1i64; rank.max(2)];
                shape[1] = -1;
                t.f_reshape(shape.as_slice())
            };
            let mut y = x.f_sub(&per_channel(mean)?)?.f_div(&per_channel(&var.f_add_scalar(eps)?.f_sqrt()?)?)?;
            if let Some(scale) = ctx.opt(1) {
                y = y.f_mul(&per_channel(scale)?)?;
            }
            if let Some(bias) = ctx.opt(2) {
                y = y.f_add(&per_channel(bias)?)?;
            }
            return Ok(vec![y]);
        }
        if let (true, Some(group)) = (ctx.training, ctx.batch_norm_sync) {
            return Ok(vec![synchronized_batch_norm(x, ctx.opt(1), ctx.opt(2), (mean, var), group, torch_momentum, eps)?]);
        }
        let y = x.f_batch_norm(ctx.opt(1), ctx.opt(2), Some(mean), Some(var), ctx.training, torch_momentum, eps, true)?;
        Ok(vec![y])
    }))
}

/// Training-mode BatchNorm over the global batch: per-channel sums of `x` and `x^2` and
/// the sample count (in f64) are summed over the ranks differentiably, so the backward
/// pass carries every rank's share; the running statistics get the global mean and
/// unbiased variance, as `torch.nn.SyncBatchNorm` does.
fn synchronized_batch_norm(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    (running_mean, running_var): (&Tensor, &Tensor),
    group: &crate::dist::ProcessGroup,
    momentum: f64,
    eps: f64,
) -> OpResult<Tensor> {
    let size = x.size();
    if size.len() < 2 {
        return Err("BatchNormalization needs an input of rank 2 or more".into());
    }
    let channels = size[1];
    let dims: Vec<i64> = (0..size.len() as i64).filter(|&d| d != 1).collect();
    let per_channel: i64 = dims.iter().map(|&d| size[d as usize]).product();
    let xd = x.f_to_kind(Kind::Double)?;
    let count = Tensor::from_slice(&[per_channel as f64]).to_device(x.device());
    let local = Tensor::f_cat(
        &[
            xd.f_sum_dim_intlist(dims.as_slice(), false, Kind::Double)?,
            xd.f_square()?.f_sum_dim_intlist(dims.as_slice(), false, Kind::Double)?,
            count,
        ],
        0,
    )?;
    let total = group.sum_differentiable(&local).map_err(|e| OpError(e.to_string()))?;
    let n = total.f_double_value(&[2 * channels])?;
    if n < 1.0 {
        return Err("synchronized BatchNorm saw no samples on any rank".into());
    }
    let mean = total.f_narrow(0, 0, channels)? / n;
    let var = (total.f_narrow(0, channels, channels)? / n).f_sub(&mean.f_square()?)?.f_clamp_min(0.0)?;
    let mut shape = vec![1i64; size.len()];
    shape[1] = channels;
    let mut y = xd.f_sub(&mean.f_view(shape.as_slice())?)?.f_mul(&var.f_add_scalar(eps)?.f_rsqrt()?.f_view(shape.as_slice())?)?;
    if let Some(w) = weight {
        y = y.f_mul(&w.f_to_kind(Kind::Double)?.f_view(shape.as_slice())?)?;
    }
    if let Some(b) = bias {
        y = y.f_add(&b.f_to_kind(Kind::Double)?.f_view(shape.as_slice())?)?;
    }
    tch::no_grad(|| -> OpResult<()> {
        let unbiased = if n > 1.0 { var.f_mul_scalar(n / (n - 1.0))? } else { var.shallow_clone() };
        for (running, batch) in [(running_mean, &mean), (running_var, &unbiased)] {
            let updated = running.f_to_kind(Kind::Double)?.f_mul_scalar(1.0 - momentum)?.f_add(&batch.f_mul_scalar(momentum)?)?;
            running.shallow_clone().f_copy_(&updated.f_to_kind(running.kind())?)?;
        }
        Ok(())
    })?;
    Ok(y.f_to_kind(x.kind())?)
}

fn layer_norm(node: &NodeProto, l: &LayerNorm) -> Result<Kernel, String> {
    let (a, eps) = (l.axis, f64::from(l.epsilon));
    if node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err("LayerNormalization's Mean/InvStdDev outputs are not supported".into());
    }
    Ok(Box::new(move |ctx: &Ctx<'_>| {
        let x = ctx.input(0)?;
        let a = axis(a, x.dim())? as usize;
        let normalized = x.size()[a..].to_vec();
        let (scale, bias) = (ctx.input(1)?, ctx.opt(2));
        let exact = scale.size() == normalized && bias.is_none_or(|b| b.size() == normalized);
        if exact {
            return Ok(vec![x.f_layer_norm(normalized.as_slice(), Some(scale), bias, eps, true)?]);
        }
        // Broadcastable scale/bias: normalize, then apply them as ONNX broadcasting says.
        let y = x.f_layer_norm(normalized.as_slice(), None::<&Tensor>, None::<&Tensor>, eps, true)?.f_mul(scale)?;
        Ok(vec![match bias {
            Some(b) => y.f_add(b)?,
            None => y,
        }])
    }))
}

/// RMSNormalization: `x / sqrt(mean(x^2) + epsilon) * scale`, the mean over the axes from
/// `axis` on, computed in float32 (`stash_type` 1, the only type ONNX defines) and cast back.
fn rms_norm(l: &LayerNorm) -> Result<Kernel, String> {
    let (a, eps, stash) = (l.axis, f64::from(l.epsilon), l.stash_type);
    if stash != 1 {
        return Err(format!("RMSNormalization stash_type {stash} is not supported (only 1, float32)"));
    }
    Ok(Box::new(move |ctx: &Ctx<'_>| {
        let x = ctx.input(0)?;
        let a = axis(a, x.dim())?;
        let dims: Vec<i64> = (a..x.dim() as i64).collect();
        let xf = x.f_to_kind(Kind::Float)?;
        let inv = xf.f_square()?.f_mean_dim(dims.as_slice(), true, None)?.f_add_scalar(eps)?.f_rsqrt()?;
        let y = xf.f_mul(&inv)?.f_to_kind(x.kind())?.f_mul(ctx.input(1)?)?;
        Ok(vec![y])
    }))
}

/// GroupNormalization: per-channel scale/bias from opset 21, per-group before.
fn group_norm(graph: &Graph<'_>, node: &NodeProto) -> Result<Kernel, String> {
    let groups = node.attr_int("num_groups")?.ok_or("has no num_groups attribute")?;
    let eps = f64::from(node.attr_float_or("epsilon", 1e-5)?);
    let per_channel = onnx_ops::node_opset(graph, node) >= 21;
    Ok(Box::new(move |ctx: &Ctx<'_>| {
        let x = ctx.input(0)?;
        let (scale, bias) = (ctx.input(1)?, ctx.input(2)?);
        let size = x.size();
        if size.len() < 2 || size[1] % groups != 0 {
            return Err(OpError(format!("{} channels cannot form {groups} groups", size.get(1).copied().unwrap_or(0))));
        }
        let channels = size[1];
        let (scale, bias) = if per_channel {
            (scale.shallow_clone(), bias.shallow_clone())
        } else {
            let per = channels / groups;
            (scale.f_repeat_interleave_self_int(per, 0, None)?, bias.f_repeat_interleave_self_int(per, 0, None)?)
        };
        Ok(vec![x.f_group_norm(groups, Some(&scale), Some(&bias), eps, true)?])
    }))
}

fn softmax(s: &Softmax) -> Result<Kernel, String> {
    let (a, legacy) = (s.axis, s.coerce_2d);
    let log = match s.kind {
        SoftmaxKind::Softmax => false,
        SoftmaxKind::LogSoftmax => true,
        SoftmaxKind::Hardmax => return Err(not_supported("Hardmax")),
    };
    Ok(Box::new(move |ctx: &Ctx<'_>| {
        let x = ctx.input(0)?;
        let a = axis(a, x.dim())?;
        let f = |t: &Tensor, d: i64| {
            if log {
                t.f_log_softmax(d, None)
            } else {
                t.f_softmax(d, None)
            }
        };
        if !legacy {
            return Ok(vec![f(x, a)?]);
        }
        // Before opset 13 the input is coerced to 2-D at `axis`.
        let size = x.size();
        let rows: i64 = size[..a as usize].iter().product();
        let y = f(&x.f_reshape([rows, -1])?, 1)?.f_reshape(size.as_slice())?;
        Ok(vec![y])
    }))
}

/// Dropout: identity in eval mode; in train mode drops with the node's ratio.
fn dropout(graph: &Graph<'_>, node: &NodeProto) -> Result<Kernel, String> {
    let ratio = onnx_ops::dropout(graph, node, None).map(|d| d.ratio).ok();
    // The executor's mode decides whether Dropout drops; a training_mode input that could
    // say otherwise (true, or computed) would be silently ignored.
    if let Some(mode) = node.input.get(2).filter(|s| !s.is_empty()) {
        match onnx_ops::constant_floats(graph, None, mode).map_err(|e| e.to_string())? {
            Some(v) if v.iter().all(|&t| t == 0.0) => {}
            Some(_) => {
                return Err(
                    "Dropout with training_mode true is not supported (the executor drops only when it runs in training mode)".into()
                )
            }
            None => {
                return Err(format!(
                    "Dropout's training_mode input '{mode}' is not a constant (the executor drops only when it runs in training mode)"
                ))
            }
        }
    }
    let wants_mask = node.output.get(1).is_some_and(|o| !o.is_empty());
    Ok(Box::new(move |ctx: &Ctx<'_>| {
        let x = ctx.input(0)?;
        let p = match ratio {
            Some(p) => p,
            None => ctx.opt_scalar(1)?.unwrap_or(0.5),
        };
        if !ctx.training || p == 0.0 {
            let mut out = vec![x.shallow_clone()];
            if wants_mask {
                out.push(x.f_ones_like()?.f_to_kind(Kind::Bool)?);
            }
            return Ok(out);
        }
        let mask = x.f_empty_like()?.f_bernoulli_float_(1.0 - p)?.f_to_kind(Kind::Bool)?;
        let y = x.f_mul(&mask)?.f_div_scalar(1.0 - p)?;
        let mut out = vec![y];
        if wants_mask {
            out.push(mask);
        }
        Ok(out)
    }))
}
