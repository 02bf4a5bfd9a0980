//! `Resize` and `Upsample`. libtorch's interpolation kernels run the forms they compute
//! exactly as ONNX specifies (what PyTorch exports: 4-D, nearest asymmetric + floor, linear
//! and cubic half-pixel or align-corners); every other form runs the specification's own
//! separable sampling, one axis at a time: each output position reads a few input
//! positions (clamped to the edges) with weights from its source coordinate. That covers
//! every coordinate transformation (tf_crop_and_resize with its region and extrapolation
//! value), every nearest rounding, linear and cubic of any coefficient with or without
//! the outside samples, antialiasing, axes, the aspect-ratio policies and any rank.

use super::{Ctx, Kernel, OpError, OpResult};
use crate::exec::convert::host_floats;
use oto_onnx::op::{AspectPolicy, Coordinate, FloatsParam, NearestMode, Resize, ResizeMode};
use oto_onnx::ops as onnx_ops;
use oto_onnx::proto::NodeProto;
use oto_onnx::{Dim, Graph};
use tch::{Kind, Tensor};

/// How a Resize samples, checked once when the node is compiled.
#[derive(Debug, Clone)]
struct Sampling {
    mode: ResizeMode,
    nearest_mode: NearestMode,
    coordinate: Coordinate,
    cubic_coeff_a: f64,
    exclude_outside: bool,
    antialias: bool,
    policy: AspectPolicy,
    extrapolation_value: f64,
    /// tf_crop_and_resize's region: the starts of every axis (or of `axes`), then the ends;
    /// a constant, or the input read when the node runs.
    roi: Option<Region>,
}

#[derive(Debug, Clone)]
enum Region {
    Constant(Vec<f64>),
    Input(usize),
}

impl Sampling {
    fn new(graph: &Graph<'_>, node: &NodeProto, r: &Resize) -> Result<Sampling, String> {
        if r.antialias && r.mode == ResizeMode::Nearest {
            return Err("Resize nearest with antialias is not defined".into());
        }
        let roi = match r.roi.filter(|&k| node.input.get(k).is_some_and(|name| !name.is_empty())) {
            Some(k) if r.coordinate == Coordinate::TfCropAndResize => match onnx_ops::constant_floats(graph, None, &node.input[k]) {
                Ok(Some(v)) if !v.is_empty() => Some(Region::Constant(v)),
                Ok(Some(_)) => None,
                _ => Some(Region::Input(k)),
            },
            _ => None,
        };
        if r.coordinate == Coordinate::TfCropAndResize && roi.is_none() {
            return Err("Resize tf_crop_and_resize needs its region (input 1)".into());
        }
        Ok(Sampling {
            mode: r.mode,
            nearest_mode: r.nearest_mode,
            coordinate: r.coordinate,
            cubic_coeff_a: f64::from(r.cubic_coeff_a),
            exclude_outside: r.exclude_outside,
            antialias: r.antialias,
            policy: r.policy,
            extrapolation_value: f64::from(r.extrapolation_value),
            roi,
        })
    }

    /// The libtorch kernel that computes this sampling exactly, if one does (`None`: the
    /// separable sampling runs).
    fn libtorch(&self) -> Option<Libtorch> {
        if self.antialias || self.policy != AspectPolicy::Stretch {
            return None;
        }
        let half_pixel = matches!(self.coordinate, Coordinate::HalfPixel | Coordinate::PytorchHalfPixel);
        let corners = self.coordinate == Coordinate::AlignCorners;
        match (self.mode, self.nearest_mode) {
            (ResizeMode::Nearest, NearestMode::Floor) if self.coordinate == Coordinate::Asymmetric => Some(Libtorch::Nearest),
            // tf2onnx's `tf_half_pixel_for_nn` (Keras' UpSampling2D) picks floor((x + 0.5) / k),
            // which is floor(x / k), asymmetric's, when the size grows by a whole factor k.
            (ResizeMode::Nearest, NearestMode::Floor) if self.coordinate == Coordinate::TfHalfPixelForNn => {
                Some(Libtorch::NearestWholeFactors)
            }
            (ResizeMode::Linear, _) if half_pixel || corners => Some(Libtorch::Linear { align_corners: corners }),
            // PyTorch's bicubic: a = -0.75, samples outside clamped to the border.
            (ResizeMode::Cubic, _) if (half_pixel || corners) && self.cubic_coeff_a == -0.75 && !self.exclude_outside => {
                Some(Libtorch::Cubic { align_corners: corners })
            }
            _ => None,
        }
    }
}

/// The libtorch kernel of a sampling it computes as ONNX does.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Libtorch {
    Nearest,
    /// Nearest, when every spatial size grows by a whole factor.
    NearestWholeFactors,
    Linear {
        align_corners: bool,
    },
    Cubic {
        align_corners: bool,
    },
}

/// Every axis's output length and scale, as the specification derives them.
struct Plan {
    out: Vec<i64>,
    scale: Vec<f64>,
    /// The output length before rounding (the size itself when sizes are given; `in *
    /// scale` with scales: onnx's reference maps align_corners and half_pixel_symmetric by
    /// it, where onnxruntime takes the rounded length).
    width: Vec<f64>,
    /// The axes the node resizes, in order (all when it names none).
    axes: Vec<usize>,
    /// Whether the scales were given (else computed from sizes).
    scales_given: bool,
}

fn plan(size: &[i64], sizes: Option<&[i64]>, scales: Option<&[f64]>, axes: Option<&[i64]>, policy: AspectPolicy) -> OpResult<Plan> {
    let rank = size.len();
    let axes: Vec<usize> = match axes {
        Some(list) => list
            .iter()
            .map(|&a| {
                let a = if a < 0 { a + rank as i64 } else { a };
                usize::try_from(a)
                    .ok()
                    .filter(|&a| a < rank)
                    .ok_or_else(|| OpError(format!("Resize axis {a} is out of range for rank {rank}")))
            })
            .collect::<OpResult<_>>()?,
        None => (0..rank).collect(),
    };
    let mut out = size.to_vec();
    let mut scale = vec![1.0; rank];
    let mut width: Vec<f64> = size.iter().map(|&n| n as f64).collect();
    let count = |n: usize, what: &str| {
        if n == axes.len() {
            Ok(())
        } else {
            Err(OpError(format!("Resize has {n} {what} for {} axes", axes.len())))
        }
    };
    match (sizes, scales) {
        (Some(sizes), _) => {
            count(sizes.len(), "sizes")?;
            let ratios: Vec<f64> = axes.iter().zip(sizes).map(|(&a, &s)| s as f64 / size[a] as f64).collect();
            let common = policy.common_scale(&ratios);
            for ((&a, &s), &ratio) in axes.iter().zip(sizes).zip(&ratios) {
                match common {
                    // One scale for every axis, each size rounded half up.
                    Some(c) => (out[a], scale[a]) = ((c * size[a] as f64 + 0.5).floor() as i64, c),
                    None => (out[a], scale[a]) = (s, ratio),
                }
                width[a] = out[a] as f64;
            }
        }
        (None, Some(scales)) => {
            count(scales.len(), "scales")?;
            for (&a, &s) in axes.iter().zip(scales) {
                if s.is_nan() || s <= 0.0 {
                    return Err(OpError(format!("Resize scale {s} of axis {a} is not positive")));
                }
                (out[a], scale[a], width[a]) = ((size[a] as f64 * s).floor() as i64, s, size[a] as f64 * s);
            }
        }
        (None, None) => return Err(OpError("Resize has neither scales nor sizes".into())),
    }
    if out.iter().any(|&n| n < 0) {
        return Err(OpError(format!("Resize to {out:?} is not a shape")));
    }
    Ok(Plan { out, scale, width, axes, scales_given: sizes.is_none() })
}

/// One axis's sampling: per output position, `n` input positions (clamped to the axis)
/// and their weights, and whether tf_crop_and_resize writes its extrapolation value there.
struct Taps {
    n: usize,
    index: Vec<i64>,
    weight: Vec<f64>,
    outside: Vec<bool>,
}

/// The weights of the `n` positions around a source coordinate whose distance past the
/// lower one is `ratio` (in (0, 1]: 1 on a position itself), as onnx's reference weights them.
fn coefficients(s: &Sampling, ratio: f64, scale: f64) -> Vec<f64> {
    let a = s.cubic_coeff_a;
    match s.mode {
        ResizeMode::Nearest => {
            let upper = ratio == 1.0
                || match s.nearest_mode {
                    NearestMode::RoundPreferFloor => ratio > 0.5,
                    NearestMode::RoundPreferCeil => ratio >= 0.5,
                    NearestMode::Floor => false,
                    NearestMode::Ceil => true,
                };
            if upper {
                vec![0.0, 1.0]
            } else {
                vec![1.0, 0.0]
            }
        }
        ResizeMode::Linear if !s.antialias => vec![1.0 - ratio, ratio],
        ResizeMode::Linear => {
            // A triangle stretched by 1 / scale when downsampling.
            let scale = scale.min(1.0);
            let start = (-1.0 / scale).floor() as i64 + 1;
            let footprint = 2 - 2 * start;
            normalized((start..start + footprint).map(|i| (1.0 - ((i as f64 - ratio) * scale).abs()).clamp(0.0, 1.0)).collect())
        }
        ResizeMode::Cubic if !s.antialias => {
            let (r, q) = (ratio, 1.0 - ratio);
            vec![
                ((a * (r + 1.0) - 5.0 * a) * (r + 1.0) + 8.0 * a) * (r + 1.0) - 4.0 * a,
                ((a + 2.0) * r - (a + 3.0)) * r * r + 1.0,
                ((a + 2.0) * q - (a + 3.0)) * q * q + 1.0,
                ((a * (q + 1.0) - 5.0 * a) * (q + 1.0) + 8.0 * a) * (q + 1.0) - 4.0 * a,
            ]
        }
        ResizeMode::Cubic => {
            let scale = scale.min(1.0);
            let kernel = |x: f64| {
                let x = x.abs();
                if x <= 1.0 {
                    (a + 2.0) * x.powi(3) - (a + 3.0) * x * x + 1.0
                } else if x < 2.0 {
                    a * x.powi(3) - 5.0 * a * x * x + 8.0 * a * x - 4.0 * a
                } else {
                    0.0
                }
            };
            let start = (-2.0 / scale).floor() as i64 + 1;
            normalized((start..2 - start).map(|i| kernel(scale * (i as f64 - ratio))).collect())
        }
    }
}

fn normalized(mut v: Vec<f64>) -> Vec<f64> {
    let sum: f64 = v.iter().sum();
    if sum != 0.0 {
        v.iter_mut().for_each(|c| *c /= sum);
    }
    v
}

/// The taps of one axis of `len_in` positions resized to `len_out` (`width` before
/// rounding) at `scale`; `roi`: tf_crop_and_resize's (start, end) of the axis.
fn taps(s: &Sampling, len_in: i64, len_out: i64, width: f64, scale: f64, roi: (f64, f64)) -> Taps {
    let (l, o) = (len_in as f64, len_out as f64);
    let mut t = Taps { n: 0, index: Vec::new(), weight: Vec::new(), outside: Vec::new() };
    for y in 0..len_out {
        let x = y as f64;
        let source = match s.coordinate {
            Coordinate::HalfPixel => (x + 0.5) / scale - 0.5,
            Coordinate::HalfPixelSymmetric => l / 2.0 * (1.0 - o / width) + (x + 0.5) / scale - 0.5,
            Coordinate::PytorchHalfPixel if len_out > 1 => (x + 0.5) / scale - 0.5,
            Coordinate::PytorchHalfPixel => 0.0,
            Coordinate::AlignCorners if width == 1.0 => 0.0,
            Coordinate::AlignCorners => x * (l - 1.0) / (width - 1.0),
            Coordinate::Asymmetric => x / scale,
            Coordinate::TfHalfPixelForNn => (x + 0.5) / scale,
            Coordinate::TfCropAndResize if width == 1.0 => (roi.1 - roi.0) * (l - 1.0) / 2.0 + roi.0 * (l - 1.0),
            Coordinate::TfCropAndResize => x * (roi.1 - roi.0) * (l - 1.0) / (width - 1.0) + roi.0 * (l - 1.0),
        };
        let lower = source.floor();
        let ratio = if source == lower { 1.0 } else { source - lower };
        let mut coeffs = coefficients(s, ratio, scale);
        let n = coeffs.len();
        // The n positions nearest the source (ties to the lower), as the reference finds
        // them in the axis padded by n/2 (rounded up) on each side.
        let pad = n.div_ceil(2) as f64;
        let padded = source + pad;
        let p = padded.floor();
        let frac = padded - p;
        let half = (n / 2) as f64;
        let offset = if n.is_multiple_of(2) {
            if frac == 0.0 {
                -half
            } else {
                -half + 1.0
            }
        } else {
            let base = -(((n - 1) / 2) as f64);
            if frac <= 0.5 {
                base
            } else {
                base + 1.0
            }
        };
        let start = (p + offset - pad) as i64;
        let positions: Vec<i64> = (0..n as i64).map(|j| start + j).collect();
        if s.exclude_outside {
            for (c, &i) in coeffs.iter_mut().zip(&positions) {
                if i < 0 || i >= len_in {
                    *c = 0.0;
                }
            }
            coeffs = normalized(coeffs);
        }
        t.n = n;
        t.index.extend(positions.iter().map(|&i| i.clamp(0, (len_in - 1).max(0))));
        t.weight.extend(coeffs);
        t.outside.push(s.coordinate == Coordinate::TfCropAndResize && (source < 0.0 || source > l - 1.0));
    }
    t
}

/// `x` resampled along `axis` by `t`.
fn resample_axis(x: &Tensor, axis: usize, len_out: i64, t: &Taps, extrapolation_value: f64) -> OpResult<Tensor> {
    let device = x.device();
    let n = t.n.max(1);
    let axis_i = axis as i64;
    // Nearest (and any sampling whose every output reads one position whole) is a gather:
    // exact for every element type.
    let single: Option<Vec<i64>> = t
        .weight
        .chunks(n)
        .zip(t.index.chunks(n))
        .map(|(w, i)| {
            let ones: Vec<usize> = (0..w.len()).filter(|&k| w[k] != 0.0).collect();
            (ones.len() == 1 && w[ones[0]] == 1.0).then(|| i[ones[0]])
        })
        .collect();
    let mut y = match single {
        Some(index) if len_out > 0 => x.f_index_select(axis_i, &Tensor::from_slice(&index).f_to(device)?)?,
        _ => {
            let kind = x.kind();
            let compute = match kind {
                Kind::Double => Kind::Double,
                Kind::Float | Kind::Half | Kind::BFloat16 => Kind::Float,
                other => return Err(OpError(format!("Resize interpolating {other:?} values is not supported (float types are)"))),
            };
            let gathered = x.f_index_select(axis_i, &Tensor::from_slice(&t.index).f_to(device)?)?;
            let mut shape = x.size();
            shape.splice(axis..=axis, [len_out, n as i64]);
            let mut wshape = vec![len_out, n as i64];
            wshape.extend(std::iter::repeat_n(1, shape.len() - axis - 2));
            let w = Tensor::from_slice(&t.weight).f_to_kind(compute)?.f_to(device)?.f_reshape(wshape.as_slice())?;
            gathered
                .f_reshape(shape.as_slice())?
                .f_to_kind(compute)?
                .f_mul(&w)?
                .f_sum_dim_intlist(axis_i + 1, false, compute)?
                .f_to_kind(kind)?
        }
    };
    if t.outside.iter().any(|&o| o) {
        let mut mshape = vec![len_out];
        mshape.extend(std::iter::repeat_n(1, x.dim() - axis - 1));
        let mask = Tensor::from_slice(&t.outside).f_to(device)?.f_reshape(mshape.as_slice())?;
        y = y.f_masked_fill(&mask, extrapolation_value)?;
    }
    Ok(y)
}

/// `x` resized by `p` with the specification's separable sampling (`roi`: the region of
/// tf_crop_and_resize).
fn resample(x: &Tensor, s: &Sampling, p: &Plan, roi: Option<&[f64]>) -> OpResult<Tensor> {
    let size = x.size();
    let rank = size.len();
    let mut y = x.shallow_clone();
    for (k, &a) in p.axes.iter().enumerate() {
        // The region's start and end of this axis (listed per named axis when the node names axes).
        let roi = match roi {
            Some(r) if r.len() == 2 * p.axes.len() => (r[k], r[p.axes.len() + k]),
            Some(r) if r.len() == 2 * rank => (r[a], r[rank + a]),
            Some(r) => return Err(OpError(format!("Resize's region has {} values for rank {rank}", r.len()))),
            None => (0.0, 1.0),
        };
        let identity = p.out[a] == size[a] && (p.scale[a] - 1.0).abs() < 1e-9 && (roi.0.abs() < 1e-9 && (roi.1 - 1.0).abs() < 1e-9);
        if identity {
            continue;
        }
        if size[a] == 0 && p.out[a] > 0 {
            return Err(OpError(format!("Resize of an empty axis {a} to {} positions", p.out[a])));
        }
        let t = taps(s, size[a], p.out[a], p.width[a], p.scale[a], roi);
        y = resample_axis(&y, a, p.out[a], &t, s.extrapolation_value)?;
    }
    Ok(y)
}

/// `x` resized by libtorch's kernel `k` when it computes `p` as ONNX does (4-D, only the
/// spatial axes resized); `None` otherwise.
fn libtorch_resize(x: &Tensor, k: Libtorch, p: &Plan, pytorch_half_pixel: bool) -> OpResult<Option<Tensor>> {
    let size = x.size();
    if size.len() != 4 || p.out[..2] != size[..2] || p.scale[..2] != [1.0, 1.0] {
        return Ok(None);
    }
    let out = [p.out[2], p.out[3]];
    let (mut sh, mut sw) = if p.scales_given { (Some(p.scale[2]), Some(p.scale[3])) } else { (None, None) };
    match k {
        Libtorch::NearestWholeFactors if out[0] % size[2].max(1) != 0 || out[1] % size[3].max(1) != 0 => return Ok(None),
        // align_corners with scales maps by the unrounded length `in * scale` (onnx's
        // reference), which libtorch does not: its kernel only when that length is whole.
        Libtorch::Linear { align_corners: true } | Libtorch::Cubic { align_corners: true } => {
            if let (Some(h), Some(w)) = (sh, sw) {
                let whole = |n: i64, s: f64| (n as f64 * s).fract() == 0.0;
                if !whole(size[2], h) || !whole(size[3], w) {
                    return Ok(None);
                }
            }
            (sh, sw) = (None, None);
        }
        _ => {}
    }
    // pytorch_half_pixel samples an axis resized to 1 at its first position (half_pixel,
    // as PyTorch's kernels, at its middle).
    let mut x = x.shallow_clone();
    if pytorch_half_pixel && matches!(k, Libtorch::Linear { .. } | Libtorch::Cubic { .. }) {
        if out[0] == 1 {
            (x, sh) = (x.f_narrow(2, 0, 1)?, None);
        }
        if out[1] == 1 {
            (x, sw) = (x.f_narrow(3, 0, 1)?, None);
        }
    }
    Ok(Some(match k {
        Libtorch::Nearest | Libtorch::NearestWholeFactors => x.f_upsample_nearest2d(out.as_slice(), sh, sw)?,
        Libtorch::Linear { align_corners } => x.f_upsample_bilinear2d(out.as_slice(), align_corners, sh, sw)?,
        Libtorch::Cubic { align_corners } => x.f_upsample_bicubic2d(out.as_slice(), align_corners, sh, sw)?,
    }))
}

/// Compiles a `Resize` or `Upsample` node.
pub(super) fn compile(graph: &Graph<'_>, node: &NodeProto, r: &Resize) -> Result<Kernel, String> {
    // Sizes or scales computed at run time (from the input's shape: DINOv2's position
    // embeddings interpolated to the image, SegFormer's decoder) are read when the node runs.
    let given = |k: usize| node.input.get(k).is_some_and(|v| !v.is_empty());
    let runtime_sizes = r.sizes.filter(|&k| given(k));
    let runtime_scales = match r.scales {
        FloatsParam::Input(k) if given(k) => Some(k),
        _ => None,
    };
    let form = match r.resolve(graph, node, None) {
        Ok(form) => Some(form),
        Err(_) if runtime_sizes.is_some() || runtime_scales.is_some() => None,
        Err(e) => return Err(e.to_string()),
    };
    let sampling = Sampling::new(graph, node, r)?;
    let fast = sampling.libtorch();
    let pytorch_half_pixel = sampling.coordinate == Coordinate::PytorchHalfPixel;
    let axes = r.axes.clone().or_else(|| form.as_ref().and_then(|f| f.axes.clone()));
    let sizes = form.as_ref().and_then(|f| f.sizes.as_ref()).and_then(|s| s.iter().map(Dim::known).collect::<Option<Vec<i64>>>());
    let scales = form.as_ref().and_then(|f| f.scales.clone());
    Ok(Box::new(move |ctx: &Ctx<'_>| {
        let x = ctx.input(0)?;
        // Read at run time only when neither was known when compiling; an empty tensor
        // (the scales of a Resize given sizes) is absent.
        let (sizes, scales) = if sizes.is_none() && scales.is_none() {
            let sizes = match runtime_sizes {
                Some(k) if ctx.opt(k).is_some() => Some(ctx.ints(k)?).filter(|v| !v.is_empty()),
                _ => None,
            };
            let scales = match runtime_scales {
                Some(k) if ctx.opt(k).is_some() => Some(host_floats(ctx.input(k)?).map_err(OpError)?).filter(|v| !v.is_empty()),
                _ => None,
            };
            (sizes, scales)
        } else {
            (sizes.clone(), scales.clone())
        };
        let p = plan(&x.size(), sizes.as_deref(), scales.as_deref(), axes.as_deref(), sampling.policy)?;
        if let Some(k) = fast {
            if let Some(y) = libtorch_resize(x, k, &p, pytorch_half_pixel)? {
                return Ok(vec![y]);
            }
        }
        let roi = match &sampling.roi {
            Some(Region::Constant(v)) => Some(v.clone()),
            Some(Region::Input(k)) => Some(host_floats(ctx.input(*k)?).map_err(OpError)?),
            None => None,
        };
        Ok(vec![resample(x, &sampling, &p, roi.as_deref())?])
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling(mode: ResizeMode, nearest_mode: NearestMode, coordinate: Coordinate) -> Sampling {
        Sampling {
            mode,
            nearest_mode,
            coordinate,
            cubic_coeff_a: -0.75,
            exclude_outside: false,
            antialias: false,
            policy: AspectPolicy::Stretch,
            extrapolation_value: 0.0,
            roi: None,
        }
    }

    #[test]
    fn nearest_half_pixel_by_whole_factors_repeats_each_position() {
        // Whatever the rounding, half-pixel sources of a whole factor k never fall on a
        // half: position y reads y / k.
        for rounding in [NearestMode::RoundPreferFloor, NearestMode::RoundPreferCeil] {
            let t = taps(&sampling(ResizeMode::Nearest, rounding, Coordinate::HalfPixel), 3, 9, 9.0, 3.0, (0.0, 1.0));
            let picked: Vec<i64> = t.index.chunks(2).zip(t.weight.chunks(2)).map(|(i, w)| if w[0] == 1.0 { i[0] } else { i[1] }).collect();
            assert_eq!(picked, vec![0, 0, 0, 1, 1, 1, 2, 2, 2]);
        }
    }

    #[test]
    fn linear_weights_sum_to_one_and_clamp_at_the_edges() {
        let t = taps(&sampling(ResizeMode::Linear, NearestMode::RoundPreferFloor, Coordinate::HalfPixel), 4, 8, 8.0, 2.0, (0.0, 1.0));
        for w in t.weight.chunks(t.n) {
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{w:?}");
        }
        // Output 0's source is -0.25: both taps clamp to position 0.
        assert_eq!(&t.index[..2], &[0, 0]);
        assert!(t.index.iter().all(|&i| (0..4).contains(&i)));
    }

    #[test]
    fn aspect_policies_share_one_scale() {
        let p = plan(&[1, 1, 4, 8], Some(&[6, 6]), None, Some(&[2, 3]), AspectPolicy::NotLarger).unwrap();
        // min(6/4, 6/8) = 0.75: 3 x 6.
        assert_eq!((p.out, p.scale[2]), (vec![1, 1, 3, 6], 0.75));
        let p = plan(&[1, 1, 4, 8], Some(&[6, 6]), None, Some(&[-2, -1]), AspectPolicy::NotSmaller).unwrap();
        assert_eq!(p.out, vec![1, 1, 6, 12]);
        assert!(plan(&[1, 4], None, Some(&[1.0]), None, AspectPolicy::Stretch).is_err(), "one scale for two axes");
    }
}
