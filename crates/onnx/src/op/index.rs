//! Concatenation, splitting, slicing, padding, resizing, sampling, gathering and
//! scattering: `Concat`, `Split`, `Slice`, `Pad`, `Resize`/`Upsample`, `GridSample`,
//! `Gather`, `GatherElements`, `GatherND`, `ScatterND`, `ScatterElements`. Not counted in
//! MACs.

use super::{IntsParam, ScalarParam};
use crate::error::Result;
use crate::graph::{Graph, NodeExt};
use crate::ops::{self, attr_result, node_error, node_opset};
use crate::proto::NodeProto;
use crate::shape::*;

/// A `Split` node's attributes, normalized across opsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The axis as written (possibly negative; default 0).
    pub axis: i64,
    /// Explicit sizes: the `split` attribute before opset 13, input 1 from 13.
    pub split: IntsParam,
    /// The number of outputs (`num_outputs` at opset 18, checked against the node's
    /// outputs; otherwise the node's outputs).
    pub num_outputs: usize,
}

/// A Split's sizes, resolved against constants: what [`Split::resolve`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitSizes {
    /// The axis as written (possibly negative).
    pub axis: i64,
    /// Explicit sizes, one per output; `None`: an even split.
    pub sizes: Option<Vec<i64>>,
    /// The number of outputs.
    pub num_outputs: usize,
}

impl Split {
    pub(crate) fn parse(graph: &Graph<'_>, node: &NodeProto) -> Result<Split> {
        let opset = node_opset(graph, node);
        let axis = attr_result(graph, node, node.attr_int_or("axis", 0))?;
        let split = IntsParam::parse(graph, node, "split", 13, 1)?;
        let num_outputs = match attr_result(graph, node, node.attr_int("num_outputs"))? {
            Some(n) if opset >= 18 => match usize::try_from(n) {
                Ok(k) if k == node.output.len() && k >= 1 => k,
                _ => return Err(node_error(graph, node, format!("num_outputs is {n} but the node has {} outputs", node.output.len()))),
            },
            _ => node.output.len(),
        };
        Ok(Split { axis, split, num_outputs })
    }

    /// The explicit sizes resolved (an input's constant value, folded by shape inference
    /// when `folded` is given), checked to be one per output.
    pub fn resolve(&self, graph: &Graph<'_>, node: &NodeProto, folded: Option<&Shapes>) -> Result<SplitSizes> {
        let sizes = self.split.resolve(graph, node, folded, "split sizes")?;
        if let Some(s) = &sizes {
            if s.len() != node.output.len() {
                return Err(node_error(graph, node, format!("has {} split sizes for {} outputs", s.len(), node.output.len())));
            }
        }
        Ok(SplitSizes { axis: self.axis, sizes, num_outputs: self.num_outputs })
    }
}

impl SplitSizes {
    /// The size of every output along the axis, for an axis of length `len`: the
    /// explicit sizes, or an even split (the last part smaller when uneven, as opset 18 says).
    pub fn sizes_for(&self, len: i64) -> std::result::Result<Vec<i64>, String> {
        if let Some(s) = &self.sizes {
            if s.iter().try_fold(0i64, |acc, &x| acc.checked_add(x)) != Some(len) || s.iter().any(|&x| x < 0) {
                return Err(format!("split sizes {s:?} do not add up to the axis length {len}"));
            }
            return Ok(s.clone());
        }
        let n = i64::try_from(self.num_outputs).map_err(|_| "Split has too many outputs".to_string())?;
        if n == 0 {
            return Err("Split has no outputs".into());
        }
        if len < 0 {
            return Err(format!("an axis of length {len} cannot be split"));
        }
        let part = len / n + i64::from(len % n != 0);
        if len % n != 0 && part * (n - 1) >= len {
            return Err(format!("an axis of length {len} cannot be split into {n} parts"));
        }
        Ok((0..n).map(|i| if i < n - 1 { part } else { len - part * (n - 1) }).collect())
    }
}

/// A `Slice` node's attributes: starts, ends and axes are attributes before opset 10;
/// from 10 they are inputs 1 to 3, with the steps input 4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    /// Start per sliced axis.
    pub starts: IntsParam,
    /// End (exclusive) per sliced axis.
    pub ends: IntsParam,
    /// Sliced axes (possibly negative); none: `0..starts.len()`.
    pub axes: IntsParam,
    /// Steps (input 4 from opset 10; none before); none: all 1.
    pub steps: IntsParam,
}

/// A Slice's bounds, resolved: what [`Slice::resolve`] returns. Starts and ends may be
/// symbolic (computed from shapes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceBounds {
    /// Start per sliced axis.
    pub starts: Vec<Dim>,
    /// End (exclusive) per sliced axis; `i64::MAX`-like values mean "to the end".
    pub ends: Vec<Dim>,
    /// Sliced axes (possibly negative); `None`: `0..starts.len()`.
    pub axes: Option<Vec<i64>>,
    /// Steps; `None`: all 1.
    pub steps: Option<Vec<i64>>,
}

impl Slice {
    pub(crate) fn parse(graph: &Graph<'_>, node: &NodeProto) -> Result<Slice> {
        if node_opset(graph, node) >= 10 {
            return Ok(Slice {
                starts: IntsParam::Input(1),
                ends: IntsParam::Input(2),
                axes: IntsParam::Input(3),
                steps: IntsParam::Input(4),
            });
        }
        let ints = |name: &str| attr_result(graph, node, node.attr_ints(name)).map(IntsParam::Attribute);
        Ok(Slice { starts: ints("starts")?, ends: ints("ends")?, axes: ints("axes")?, steps: IntsParam::Attribute(None) })
    }

    /// The bounds resolved against constants (and `folded` shapes), checked for equal
    /// lengths and non-zero steps.
    pub fn resolve(&self, graph: &Graph<'_>, node: &NodeProto, folded: Option<&Shapes>) -> Result<SliceBounds> {
        let starts = self.starts.resolve_dims(graph, node, folded, "starts")?;
        let ends = self.ends.resolve_dims(graph, node, folded, "ends")?;
        let axes = self.axes.resolve(graph, node, folded, "axes")?;
        let steps = self.steps.resolve(graph, node, folded, "steps")?;
        let (Some(starts), Some(ends)) = (starts, ends) else {
            return Err(node_error(graph, node, "needs both starts and ends"));
        };
        let n = starts.len();
        if ends.len() != n || axes.as_ref().is_some_and(|a| a.len() != n) || steps.as_ref().is_some_and(|s| s.len() != n) {
            return Err(node_error(graph, node, "starts, ends, axes and steps must have the same length"));
        }
        if steps.as_ref().is_some_and(|s| s.contains(&0)) {
            return Err(node_error(graph, node, "a slice step is 0"));
        }
        Ok(SliceBounds { starts, ends, axes, steps })
    }
}

/// How `Pad` fills the new elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadMode {
    /// `constant`: the constant value (default 0).
    Constant,
    /// `reflect`: mirrored without the edge.
    Reflect,
    /// `edge`: the edge repeated.
    Edge,
    /// `wrap` (opset 19): the other end.
    Wrap,
}

/// A `Pad` node's attributes: pads and the constant value are attributes before opset 11,
/// inputs 1 and 2 from then (and the axes input 3 from 18).
#[derive(Debug, Clone, PartialEq)]
pub struct Pad {
    /// `mode` (default `constant`).
    pub mode: PadMode,
    /// `[x1_begin, x2_begin, ..., x1_end, x2_end, ...]` over the axes (or every axis).
    pub pads: IntsParam,
    /// The fill value of `constant` mode (default 0).
    pub value: ScalarParam,
    /// The axes the pads apply to; none: every axis.
    pub axes: IntsParam,
}

/// A Pad's parameters, resolved: what [`Pad::resolve`] returns (`P = i64`), and
/// [`Pad::resolve_dims`] with pads that may be computed from symbolic sizes (`P = Dim`).
#[derive(Debug, Clone, PartialEq)]
pub struct PadAmounts<P = i64> {
    /// `[x1_begin, x2_begin, ..., x1_end, x2_end, ...]` over `axes` (or every axis).
    pub pads: Vec<P>,
    /// The fill mode.
    pub mode: PadMode,
    /// The fill value of `constant` mode.
    pub constant_value: f64,
    /// The axes the pads apply to; `None`: every axis.
    pub axes: Option<Vec<i64>>,
}

impl Pad {
    pub(crate) fn parse(graph: &Graph<'_>, node: &NodeProto) -> Result<Pad> {
        let mode = match attr_result(graph, node, node.attr_string("mode"))?.as_deref() {
            None | Some("constant") => PadMode::Constant,
            Some("reflect") => PadMode::Reflect,
            Some("edge") => PadMode::Edge,
            Some("wrap") => PadMode::Wrap,
            Some(other) => return Err(node_error(graph, node, format!("Pad mode '{other}' is not one of constant, reflect, edge, wrap"))),
        };
        if node_opset(graph, node) >= 11 {
            return Ok(Pad { mode, pads: IntsParam::Input(1), value: ScalarParam::Input(2), axes: IntsParam::Input(3) });
        }
        Ok(Pad {
            mode,
            pads: IntsParam::Attribute(attr_result(graph, node, node.attr_ints("pads"))?),
            value: ScalarParam::Attribute(Some(attr_result(graph, node, node.attr_float_or("value", 0.0))?)),
            axes: IntsParam::Attribute(None),
        })
    }

    /// The pads, value and axes resolved against constants (and `folded` shapes).
    pub fn resolve(&self, graph: &Graph<'_>, node: &NodeProto, folded: Option<&Shapes>) -> Result<PadAmounts> {
        let Some(pads) = self.pads.resolve(graph, node, folded, "pads")? else {
            return Err(node_error(graph, node, "has no pads"));
        };
        let constant_value = self.value.resolve(graph, node, folded, "constant value")?.unwrap_or(0.0);
        let axes = self.axes.resolve(graph, node, folded, "axes")?;
        Ok(PadAmounts { pads, mode: self.mode, constant_value, axes })
    }

    /// Like [`Pad::resolve`], but pads may be symbolic: computed from the input's sizes
    /// (`(window - width % window) % window`, a padding to a multiple of a window).
    pub fn resolve_dims(&self, graph: &Graph<'_>, node: &NodeProto, folded: Option<&Shapes>) -> Result<PadAmounts<Dim>> {
        let Some(pads) = self.pads.resolve_dims(graph, node, folded, "pads")? else {
            return Err(node_error(graph, node, "has no pads"));
        };
        let constant_value = self.value.resolve(graph, node, folded, "constant value")?.unwrap_or(0.0);
        let axes = self.axes.resolve(graph, node, folded, "axes")?;
        Ok(PadAmounts { pads, mode: self.mode, constant_value, axes })
    }
}

/// A `Resize` or `Upsample` node's attributes, normalized across opsets.
#[derive(Debug, Clone, PartialEq)]
pub struct Resize {
    /// `Upsample` (whose default coordinate transformation is `asymmetric`).
    pub upsample: bool,
    /// `mode`: `nearest` (the default), `linear` (also Upsample's `bilinear`), `cubic`.
    pub mode: ResizeMode,
    /// `coordinate_transformation_mode` (default `half_pixel`; `asymmetric` for Upsample,
    /// which has no such attribute).
    pub coordinate: Coordinate,
    /// `nearest_mode` (default `round_prefer_floor`; `floor` for Upsample, which has no
    /// such attribute: onnx's reference repeats each element, onnxruntime truncates).
    pub nearest_mode: NearestMode,
    /// The scales: Upsample's attribute before opset 9; input 1 (Upsample from 9, Resize
    /// opset 10), input 2 (Resize from 11).
    pub scales: FloatsParam,
    /// The input holding the output sizes (Resize from opset 11: 3).
    pub sizes: Option<usize>,
    /// The input holding `tf_crop_and_resize`'s region (Resize from opset 11: 1).
    pub roi: Option<usize>,
    /// `keep_aspect_ratio_policy` with sizes (opset 18).
    pub policy: AspectPolicy,
    /// `extrapolation_value`: what `tf_crop_and_resize` writes outside the input (default 0).
    pub extrapolation_value: f32,
    /// The axes scales/sizes apply to (opset 18); `None`: every axis.
    pub axes: Option<Vec<i64>>,
    /// `cubic_coeff_a` (default -0.75, PyTorch's bicubic).
    pub cubic_coeff_a: f32,
    /// `exclude_outside` (default 0).
    pub exclude_outside: bool,
    /// `antialias` (opset 18; default 0).
    pub antialias: bool,
}

/// A Resize's `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeMode {
    /// `nearest`: each output reads one input position.
    Nearest,
    /// `linear` (Upsample's `bilinear`).
    Linear,
    /// `cubic`.
    Cubic,
}

/// A Resize's `nearest_mode`: how a source coordinate between two positions picks one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NearestMode {
    /// `round_prefer_floor`.
    RoundPreferFloor,
    /// `round_prefer_ceil`.
    RoundPreferCeil,
    /// `floor`.
    Floor,
    /// `ceil`.
    Ceil,
}

/// A Resize's `coordinate_transformation_mode`: where an output position samples the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coordinate {
    /// `half_pixel`.
    HalfPixel,
    /// `half_pixel_symmetric` (opset 19).
    HalfPixelSymmetric,
    /// `pytorch_half_pixel`.
    PytorchHalfPixel,
    /// `align_corners`.
    AlignCorners,
    /// `asymmetric`.
    Asymmetric,
    /// `tf_half_pixel_for_nn`.
    TfHalfPixelForNn,
    /// `tf_crop_and_resize`: a region of every axis, an extrapolation value outside it.
    TfCropAndResize,
}

/// A Resize's `keep_aspect_ratio_policy` (with sizes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AspectPolicy {
    /// `stretch`: each axis to its size.
    Stretch,
    /// `not_larger`: one scale, the smallest of sizes / input.
    NotLarger,
    /// `not_smaller`: one scale, the largest.
    NotSmaller,
}

impl AspectPolicy {
    /// The one scale of every resized axis, from each axis's `size / input`: the smallest
    /// (`not_larger`) or the largest (`not_smaller`); `None` for `stretch` (each its own)
    /// or no axis.
    pub fn common_scale(self, ratios: &[f64]) -> Option<f64> {
        let all = ratios.iter().copied();
        match self {
            AspectPolicy::Stretch => None,
            AspectPolicy::NotLarger => all.reduce(f64::min),
            AspectPolicy::NotSmaller => all.reduce(f64::max),
        }
    }
}

/// A `GridSample` node's attributes (opset 16's names, and opset 20's, which also samples
/// volumes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridSample {
    /// `mode`: how a point between positions is interpolated.
    pub mode: GridMode,
    /// `padding_mode`: what a point outside the input reads.
    pub padding: GridPadding,
    /// `align_corners` (default 0): the grid's -1 and 1 are the centres of the corner
    /// positions, not their outer edges.
    pub align_corners: bool,
}

/// `GridSample`'s interpolation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridMode {
    /// `bilinear` (opset 16's default), `linear` (opset 20's).
    Linear,
    /// `nearest`.
    Nearest,
    /// `bicubic`, `cubic`.
    Cubic,
}

/// `GridSample`'s padding of points outside the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridPadding {
    /// `zeros` (the default).
    Zeros,
    /// `border`: the nearest border position.
    Border,
    /// `reflection`: reflected by the border.
    Reflection,
}

impl GridSample {
    pub(crate) fn parse(graph: &Graph<'_>, node: &NodeProto) -> Result<GridSample> {
        let string = |name: &str, default: &str| -> Result<String> {
            Ok(attr_result(graph, node, node.attr_string(name))?.unwrap_or_else(|| default.to_string()))
        };
        let mode = match string("mode", "linear")?.as_str() {
            "linear" | "bilinear" => GridMode::Linear,
            "nearest" => GridMode::Nearest,
            "cubic" | "bicubic" => GridMode::Cubic,
            other => return Err(node_error(graph, node, format!("has mode '{other}' (linear, nearest or cubic)"))),
        };
        let padding = match string("padding_mode", "zeros")?.as_str() {
            "zeros" => GridPadding::Zeros,
            "border" => GridPadding::Border,
            "reflection" => GridPadding::Reflection,
            other => return Err(node_error(graph, node, format!("has padding_mode '{other}' (zeros, border or reflection)"))),
        };
        let align_corners = attr_result(graph, node, node.attr_int_or("align_corners", 0))? != 0;
        Ok(GridSample { mode, padding, align_corners })
    }
}

/// A list of floats given as an attribute or read from an input (Resize's scales).
#[derive(Debug, Clone, PartialEq)]
pub enum FloatsParam {
    /// The attribute's value; `None` when absent.
    Attribute(Option<Vec<f32>>),
    /// Input `k`; absent, omitted or empty means none.
    Input(usize),
}

/// A Resize's output size, resolved: what [`Resize::resolve`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct ResizeTo {
    /// Scale per axis (of `axes`, or of every axis).
    pub scales: Option<Vec<f64>>,
    /// Output size per axis (of `axes`, or of every axis).
    pub sizes: Option<Vec<Dim>>,
    /// The axes scales/sizes apply to; `None`: every axis.
    pub axes: Option<Vec<i64>>,
}

impl Resize {
    pub(crate) fn parse(graph: &Graph<'_>, node: &NodeProto, upsample: bool) -> Result<Resize> {
        let opset = node_opset(graph, node);
        let string = |name: &str, default: &str| -> Result<String> {
            Ok(attr_result(graph, node, node.attr_string(name))?.unwrap_or_else(|| default.to_string()))
        };
        let (scales, sizes, axes) = match (upsample, opset) {
            (true, ..9) => (FloatsParam::Attribute(attr_result(graph, node, node.attr_floats("scales"))?), None, None),
            (true, _) | (false, ..11) => (FloatsParam::Input(1), None, None),
            (false, _) => (FloatsParam::Input(2), Some(3), attr_result(graph, node, node.attr_ints("axes"))?),
        };
        let unknown = |name: &str, value: &str, known: &str| node_error(graph, node, format!("has {name} '{value}' ({known})"));
        let mode = match string("mode", "nearest")?.as_str() {
            "nearest" => ResizeMode::Nearest,
            "linear" | "bilinear" => ResizeMode::Linear,
            "cubic" => ResizeMode::Cubic,
            other => return Err(unknown("mode", other, "nearest, linear or cubic")),
        };
        let (coordinate, nearest_mode) = if upsample {
            (Coordinate::Asymmetric, NearestMode::Floor)
        } else {
            let coordinate = match string("coordinate_transformation_mode", "half_pixel")?.as_str() {
                "half_pixel" => Coordinate::HalfPixel,
                "half_pixel_symmetric" => Coordinate::HalfPixelSymmetric,
                "pytorch_half_pixel" => Coordinate::PytorchHalfPixel,
                "align_corners" => Coordinate::AlignCorners,
                "asymmetric" => Coordinate::Asymmetric,
                "tf_half_pixel_for_nn" => Coordinate::TfHalfPixelForNn,
                "tf_crop_and_resize" => Coordinate::TfCropAndResize,
                other => return Err(unknown("coordinate_transformation_mode", other, "one ONNX defines")),
            };
            let nearest_mode = match string("nearest_mode", "round_prefer_floor")?.as_str() {
                "round_prefer_floor" => NearestMode::RoundPreferFloor,
                "round_prefer_ceil" => NearestMode::RoundPreferCeil,
                "floor" => NearestMode::Floor,
                "ceil" => NearestMode::Ceil,
                other => return Err(unknown("nearest_mode", other, "round_prefer_floor, round_prefer_ceil, floor or ceil")),
            };
            (coordinate, nearest_mode)
        };
        let policy = match string("keep_aspect_ratio_policy", "stretch")?.as_str() {
            "stretch" => AspectPolicy::Stretch,
            "not_larger" => AspectPolicy::NotLarger,
            "not_smaller" => AspectPolicy::NotSmaller,
            other => return Err(unknown("keep_aspect_ratio_policy", other, "stretch, not_larger or not_smaller")),
        };
        Ok(Resize {
            upsample,
            mode,
            coordinate,
            nearest_mode,
            scales,
            sizes,
            roi: (!upsample && opset >= 11).then_some(1),
            policy,
            extrapolation_value: attr_result(graph, node, node.attr_float_or("extrapolation_value", 0.0))?,
            axes,
            cubic_coeff_a: attr_result(graph, node, node.attr_float_or("cubic_coeff_a", -0.75))?,
            exclude_outside: attr_result(graph, node, node.attr_int_or("exclude_outside", 0))? != 0,
            antialias: attr_result(graph, node, node.attr_int_or("antialias", 0))? != 0,
        })
    }

    /// The scales or sizes resolved against constants (and `folded` shapes); an error
    /// naming the node when neither is given or an input is not constant.
    pub fn resolve(&self, graph: &Graph<'_>, node: &NodeProto, folded: Option<&Shapes>) -> Result<ResizeTo> {
        let scales = match &self.scales {
            FloatsParam::Attribute(v) => v.as_ref().map(|v| v.iter().copied().map(f64::from).collect::<Vec<f64>>()),
            FloatsParam::Input(k) => match ops::input(node, *k) {
                None => None,
                Some(name) => match ops::constant_floats(graph, folded, name)? {
                    Some(v) if v.is_empty() => None, // an empty tensor stands for "absent"
                    Some(v) => Some(v),
                    None => return Err(node_error(graph, node, format!("input {k} ('{name}', the scales) is not a constant"))),
                },
            },
        };
        let sizes = match self.sizes {
            Some(k) => ops::input_dims(graph, node, folded, k, "sizes")?.filter(|s| !s.is_empty()),
            None => None,
        };
        if scales.is_none() && sizes.is_none() {
            return Err(node_error(graph, node, "has neither scales nor sizes"));
        }
        Ok(ResizeTo { scales, sizes, axes: self.axes.clone() })
    }
}

impl Infer<'_, '_> {
    pub(crate) fn gather(&mut self, node: &NodeProto, axis: i64) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        let idx = self.shape(node, 1)?;
        let a = self.axis(node, axis, x.len())?;
        let mut out = x[..a].to_vec();
        out.extend(idx);
        out.extend_from_slice(&x[a + 1..]);
        Ok(vec![vt(self.dtype(node, 0), out)])
    }

    pub(crate) fn gather_elements(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        Ok(vec![vt(self.dtype(node, 0), self.shape(node, 1)?)])
    }

    pub(crate) fn gather_nd(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let (x, mut out, batch, k) = self.nd_indices(node)?;
        out.pop();
        out.extend_from_slice(&x[batch + k..]);
        Ok(vec![vt(self.dtype(node, 0), out)])
    }

    pub(crate) fn scatter_nd(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let (x, idx, _, k) = self.nd_indices(node)?;
        let mut expected = idx[..idx.len() - 1].to_vec();
        expected.extend_from_slice(&x[k..]);
        if let Ok(updates) = self.shape(node, 2) {
            let differs = updates.len() != expected.len()
                || updates.iter().zip(&expected).any(|(u, e)| u.known().zip(e.known()).is_some_and(|(u, e)| u != e));
            if differs {
                return Err(self.fail(node, format!("updates have shape {}, expected {}", fmt_shape(&updates), fmt_shape(&expected))));
            }
        }
        Ok(vec![vt(self.dtype(node, 0), x)])
    }

    pub(crate) fn scatter_elements(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        Ok(vec![vt(self.dtype(node, 0), self.shape(node, 0)?)])
    }

    /// GatherND/ScatterND: the data and indices shapes, `batch_dims` and `k`, the number of
    /// data axes each index row addresses (the last indices axis; it must be known), checked
    /// against the data after the batch axes.
    pub(crate) fn nd_indices(&self, node: &NodeProto) -> R<(Vec<Dim>, Vec<Dim>, usize, usize)> {
        let x = self.shape(node, 0)?;
        let idx = self.shape(node, 1)?;
        let batch = self.attr(node, node.attr_int_or("batch_dims", 0))?;
        let Some(last) = idx.last() else {
            return Err(self.fail(node, "indices are a scalar; they need at least one axis"));
        };
        let k = last.known().ok_or(Stop::Unknown)?;
        let fits = usize::try_from(batch).ok().zip(usize::try_from(k).ok()).filter(|(b, k)| *b < idx.len() && b + k <= x.len());
        let Some((batch, k)) = fits else {
            return Err(self.fail(
                node,
                format!("indices of shape {} cannot index data of shape {} with batch_dims {batch}", fmt_shape(&idx), fmt_shape(&x)),
            ));
        };
        if let Some(a) = (0..batch).find(|&a| x[a].known().zip(idx[a].known()).is_some_and(|(d, i)| d != i)) {
            return Err(self.fail(node, format!("batch axis {a} is {} in the data but {} in the indices", x[a], idx[a])));
        }
        Ok((x, idx, batch, k))
    }

    pub(crate) fn concat(&mut self, node: &NodeProto, axis: i64) -> R<Vec<ValueType>> {
        let shapes: Vec<Vec<Dim>> =
            (0..node.input.len()).filter(|&k| Self::has_input(node, k)).map(|k| self.shape(node, k)).collect::<R<_>>()?;
        let Some(first) = shapes.first() else { return Err(self.fail(node, "has no inputs")) };
        let rank = first.len();
        let a = self.axis(node, axis, rank)?;
        let mut out = first.clone();
        for s in &shapes[1..] {
            if s.len() != rank {
                return Err(self.fail(node, format!("inputs have ranks {} and {}", rank, s.len())));
            }
            for i in 0..rank {
                if i == a {
                    out[a] = out[a].add(&s[a])?;
                } else {
                    out[i] = match (&out[i], &s[i]) {
                        (p, q) if p == q => p.clone(),
                        (Dim::Known(p), Dim::Known(q)) => {
                            return Err(self.fail(node, format!("inputs differ on axis {i} ({p} vs {q}), which is not the concat axis {a}")))
                        }
                        (Dim::Known(_), _) => out[i].clone(),
                        (_, q) => q.clone(),
                    };
                }
            }
        }
        Ok(vec![vt(self.dtype(node, 0), out)])
    }

    pub(crate) fn split(&mut self, node: &NodeProto, s: &Split) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        self.needs_values(node, &[1])?;
        let form = s.resolve(self.graph, node, Some(&self.out))?;
        let a = self.axis(node, form.axis, x.len())?;
        let dt = self.dtype(node, 0);
        let sizes: Vec<Dim> = match (&form.sizes, x[a].known()) {
            (_, Some(len)) => form.sizes_for(len).map_err(|m| self.fail(node, m))?.into_iter().map(Dim::Known).collect(),
            (Some(s), None) => known_dims(s),
            (None, None) => {
                match (0..form.num_outputs).map(|_| x[a].div_exact(&Dim::Known(form.num_outputs as i64))).collect::<Option<Vec<_>>>() {
                    Some(v) => v,
                    None => (0..form.num_outputs).map(|_| self.fresh()).collect(),
                }
            }
        };
        Ok(sizes
            .into_iter()
            .map(|s| {
                let mut o = x.clone();
                o[a] = s;
                vt(dt, o)
            })
            .collect())
    }

    pub(crate) fn slice(&mut self, node: &NodeProto, s: &Slice) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        self.needs_values(node, &[3, 4])?;
        if self.needs_values(node, &[1, 2]).is_err() {
            // Bounds computed at run time from values inference does not follow
            // (DeBERTa's relative-position window, `min(max(q, k), span)`): each sliced
            // axis gets a size of its own, the others keep theirs.
            let Some(axes) = s.axes.resolve(self.graph, node, Some(&self.out), "axes")? else {
                return Err(Stop::Unknown);
            };
            let mut out = x.clone();
            let mut touched = vec![false; x.len()];
            for axis in axes {
                let a = self.axis(node, axis, x.len())?;
                if std::mem::replace(&mut touched[a], true) {
                    return Err(self.fail(node, format!("axis {a} is sliced twice")));
                }
                out[a] = self.fresh();
            }
            return Ok(vec![vt(self.dtype(node, 0), out)]);
        }
        let p = s.resolve(self.graph, node, Some(&self.out))?;
        let mut out = x.clone();
        let mut touched = vec![false; x.len()];
        for i in 0..p.starts.len() {
            let axis = p.axes.as_ref().map_or(i as i64, |a| a[i]);
            let a = self.axis(node, axis, x.len())?;
            if std::mem::replace(&mut touched[a], true) {
                return Err(self.fail(node, format!("axis {a} is sliced twice")));
            }
            let step = p.steps.as_ref().map_or(1, |s| s[i]);
            out[a] = match slice_len(&x[a], &p.starts[i], &p.ends[i], step)? {
                Some(d) => d,
                None => self.fresh(),
            };
        }
        Ok(vec![vt(self.dtype(node, 0), out)])
    }

    pub(crate) fn pad(&mut self, node: &NodeProto, pad: &Pad) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        self.needs_values(node, &[1, 2, 3])?;
        let p = pad.resolve_dims(self.graph, node, Some(&self.out))?;
        let axes = self.axes_or_all(node, p.axes.as_deref(), x.len())?;
        if p.pads.len() != 2 * axes.len() {
            let pads: Vec<String> = p.pads.iter().map(Dim::to_string).collect();
            return Err(self.fail(node, format!("pads [{}] needs {} entries for {} axes", pads.join(", "), 2 * axes.len(), axes.len())));
        }
        let mut out = x;
        let n = axes.len();
        for (i, &a) in axes.iter().enumerate() {
            out[a] = out[a].add(&p.pads[i])?.add(&p.pads[i + n])?;
        }
        Ok(vec![vt(self.dtype(node, 0), out)])
    }

    pub(crate) fn resize(&mut self, node: &NodeProto, resize: &Resize) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        self.needs_values(node, &[1, 2, 3])?;
        let r = resize.resolve(self.graph, node, Some(&self.out))?;
        let axes = self.axes_or_all(node, r.axes.as_deref(), x.len())?;
        let mut out = x.clone();
        if let Some(sizes) = &r.sizes {
            if sizes.len() != axes.len() {
                return Err(self.fail(node, format!("sizes has {} entries for {} axes", sizes.len(), axes.len())));
            }
            match resize.policy {
                AspectPolicy::Stretch => {
                    for (&a, s) in axes.iter().zip(sizes) {
                        out[a] = s.clone();
                    }
                }
                policy => {
                    // One scale for every axis (the smallest or largest of sizes / input),
                    // each size rounded half up, as the specification says.
                    let ratios: Option<Vec<f64>> =
                        axes.iter().zip(sizes).map(|(&a, s)| Some(s.known()? as f64 / x[a].known().filter(|&n| n > 0)? as f64)).collect();
                    let scale = ratios.and_then(|r| policy.common_scale(&r));
                    for &a in &axes {
                        out[a] = match (scale, x[a].known()) {
                            (Some(scale), Some(n)) => Dim::Known((scale * n as f64 + 0.5).floor() as i64),
                            _ => self.fresh(),
                        };
                    }
                }
            }
        } else if let Some(scales) = &r.scales {
            if scales.len() != axes.len() {
                return Err(self.fail(node, format!("scales has {} entries for {} axes", scales.len(), axes.len())));
            }
            for (&a, &s) in axes.iter().zip(scales) {
                out[a] = match &x[a] {
                    Dim::Known(n) => Dim::Known((*n as f64 * s).floor() as i64),
                    d if s == 1.0 => d.clone(),
                    d if s.fract() == 0.0 => d.mul(&Dim::Known(s as i64))?,
                    _ => self.fresh(),
                };
            }
        }
        Ok(vec![vt(self.dtype(node, 0), out)])
    }

    /// `GridSample`: `X [N, C, D1..Dr]` sampled at `grid [N, H1..Hr, r]` gives
    /// `[N, C, H1..Hr]`.
    pub(crate) fn grid_sample(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let (x, grid) = (self.shape(node, 0)?, self.shape(node, 1)?);
        if x.len() < 3 || grid.len() != x.len() {
            return Err(self.fail(node, format!("input of rank {} and grid of rank {} (both N + 2 or more)", x.len(), grid.len())));
        }
        let mut out = vec![broadcast_dim(&x[0], &grid[0]).unwrap_or_else(|| x[0].clone()), x[1].clone()];
        out.extend(grid[1..grid.len() - 1].iter().cloned());
        Ok(vec![vt(self.dtype(node, 0), out)])
    }
}
