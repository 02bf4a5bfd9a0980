//! Convolutions: `Conv`, `ConvInteger`, `ConvTranspose`. Their window attributes
//! ([`Window`]) are shared with the pools (`pool.rs`). Shapes, and MACs: every output
//! element of a Conv costs `C_in/group * kernel` MACs; every input element of a
//! ConvTranspose scatters into `C_out/group * kernel` outputs.

use crate::graph::NodeExt;
use crate::proto::NodeProto;
use crate::shape::{fmt_shape, vt, Dim, DimError, Infer, ValueType, R};
use crate::tensor::DType;

/// The spatial-window attributes of convolutions and pools, as written (defaults
/// depend on the number of spatial axes, known from the shapes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// `kernel_shape` (convolutions: the weight's spatial dims when absent).
    pub kernel_shape: Option<Vec<i64>>,
    /// `strides` (default 1 per axis).
    pub strides: Option<Vec<i64>>,
    /// `dilations` (default 1 per axis).
    pub dilations: Option<Vec<i64>>,
    /// `pads`: begins then ends (default 0).
    pub pads: Option<Vec<i64>>,
    /// `auto_pad`: `NOTSET` (also for an empty string), `VALID`, `SAME_UPPER`, `SAME_LOWER`.
    pub auto_pad: String,
}

impl Window {
    /// Reads the window attributes of `node`; an unknown `auto_pad` is an error.
    pub fn parse(node: &NodeProto) -> Result<Window, String> {
        let auto_pad = match node.attr_string("auto_pad")?.unwrap_or_default() {
            s if s.is_empty() => "NOTSET".to_string(),
            s => s,
        };
        if !matches!(auto_pad.as_str(), "NOTSET" | "VALID" | "SAME_UPPER" | "SAME_LOWER") {
            return Err(format!("unknown auto_pad '{auto_pad}'"));
        }
        Ok(Window {
            kernel_shape: node.attr_ints("kernel_shape")?,
            strides: node.attr_ints("strides")?,
            dilations: node.attr_ints("dilations")?,
            pads: node.attr_ints("pads")?,
            auto_pad,
        })
    }

    /// Strides for `n` spatial axes.
    pub fn strides(&self, n: usize) -> Vec<i64> {
        self.strides.clone().unwrap_or_else(|| vec![1; n])
    }

    /// Dilations for `n` spatial axes.
    pub fn dilations(&self, n: usize) -> Vec<i64> {
        self.dilations.clone().unwrap_or_else(|| vec![1; n])
    }
}

/// `Conv` and `ConvInteger`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conv {
    /// `ConvInteger`: an int32 result.
    pub integer: bool,
    /// Window attributes.
    pub window: Window,
    /// `group` (default 1).
    pub group: i64,
}

impl Conv {
    /// Reads the attributes of a Conv or ConvInteger node.
    pub fn parse(node: &NodeProto, integer: bool) -> Result<Conv, String> {
        Ok(Conv { integer, window: Window::parse(node)?, group: node.attr_int_or("group", 1)? })
    }

    /// MACs from the weight's and the output's bound shapes.
    pub fn macs(w: Option<&[u64]>, out: Option<&[u64]>) -> Option<u64> {
        let (w, o) = (w?, out?);
        Some(product(o).saturating_mul(product(w.get(1..).unwrap_or_default())))
    }
}

/// `ConvTranspose`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvTranspose {
    /// Window attributes.
    pub window: Window,
    /// `group` (default 1).
    pub group: i64,
    /// `output_padding` (default 0 per axis).
    pub output_padding: Option<Vec<i64>>,
    /// `output_shape`: the spatial output size, when given.
    pub output_shape: Option<Vec<i64>>,
}

impl ConvTranspose {
    /// Reads the attributes of a ConvTranspose node.
    pub fn parse(node: &NodeProto) -> Result<ConvTranspose, String> {
        Ok(ConvTranspose {
            window: Window::parse(node)?,
            group: node.attr_int_or("group", 1)?,
            output_padding: node.attr_ints("output_padding")?,
            output_shape: node.attr_ints("output_shape")?,
        })
    }

    /// MACs from the input's and the weight's bound shapes.
    pub fn macs(x: Option<&[u64]>, w: Option<&[u64]>) -> Option<u64> {
        let (x, w) = (x?, w?);
        Some(product(x).saturating_mul(product(w.get(1..).unwrap_or_default())))
    }
}

/// The product of bound dims, saturating.
pub(crate) fn product(v: &[u64]) -> u64 {
    v.iter().fold(1u64, |a, &b| a.saturating_mul(b))
}

/// Window attributes with their defaults resolved for a number of spatial axes.
pub(crate) struct ConvAttrs {
    pub(crate) kernel: Vec<i64>,
    pub(crate) strides: Vec<i64>,
    pub(crate) dilations: Vec<i64>,
    pub(crate) pads: Vec<i64>,
    pub(crate) auto_pad: String,
}

/// `ceil(d / s)` for a positive stride `s`: `floor((d + s - 1) / s)`.
pub(crate) fn ceil_div_dim(d: &Dim, s: i64) -> Result<Dim, DimError> {
    d.add(&Dim::Known(s - 1))?.floor_div(&Dim::Known(s))
}

impl Infer<'_, '_> {
    pub(crate) fn conv_attrs(&self, node: &NodeProto, w: &Window, spatial: usize, kernel: &[Dim]) -> R<ConvAttrs> {
        let get = |name: &str, v: &Option<Vec<i64>>, default: i64, len: usize| -> R<Vec<i64>> {
            let v = v.clone().unwrap_or_else(|| vec![default; len]);
            if v.len() != len {
                return Err(self.fail(node, format!("'{name}' has {} entries, expected {len}", v.len())));
            }
            Ok(v)
        };
        let kernel: Vec<i64> = match &w.kernel_shape {
            Some(k) => k.clone(),
            None => kernel.iter().map(|d| d.known().ok_or(crate::shape::Stop::Unknown)).collect::<R<_>>()?,
        };
        if kernel.len() != spatial {
            return Err(self.fail(node, format!("kernel_shape {kernel:?} does not match {spatial} spatial axes")));
        }
        let a = ConvAttrs {
            strides: get("strides", &w.strides, 1, spatial)?,
            dilations: get("dilations", &w.dilations, 1, spatial)?,
            pads: get("pads", &w.pads, 0, 2 * spatial)?,
            auto_pad: w.auto_pad.clone(),
            kernel,
        };
        // Sizes beyond 2^31 are nonsense and would overflow the arithmetic below.
        let limit = i64::from(i32::MAX);
        if a.kernel.iter().chain(&a.strides).chain(&a.dilations).chain(&a.pads).any(|v| v.unsigned_abs() > limit.unsigned_abs()) {
            return Err(self.fail(node, "kernel_shape, strides, dilations or pads hold values beyond 2^31"));
        }
        Ok(a)
    }

    /// Output spatial size of a convolution or pooling window sweep.
    pub(crate) fn window_out(&self, node: &NodeProto, a: &ConvAttrs, i: usize, input: &Dim, ceil: bool) -> R<Dim> {
        let (k, s, d) = (a.kernel[i], a.strides[i], a.dilations[i]);
        if s < 1 || d < 1 || k < 1 {
            return Err(self.fail(node, format!("kernel {k}, stride {s} and dilation {d} must be positive")));
        }
        let span = (k - 1) * d + 1;
        let spatial = a.kernel.len();
        match a.auto_pad.as_str() {
            "SAME_UPPER" | "SAME_LOWER" => return Ok(ceil_div_dim(input, s)?),
            "VALID" => {
                return Ok(match input {
                    Dim::Known(n) if *n >= span => Dim::Known((n - span) / s + 1),
                    Dim::Known(n) => return Err(self.fail(node, format!("input size {n} is smaller than the kernel span {span}"))),
                    d if span == 1 && s == 1 => d.clone(),
                    d => d.sub(&Dim::Known(span))?.floor_div(&Dim::Known(s))?.add(&Dim::Known(1))?,
                })
            }
            "NOTSET" | "" => {}
            other => return Err(self.fail(node, format!("unknown auto_pad '{other}'"))),
        }
        let (pb, pe) = (a.pads[i], a.pads[i + spatial]);
        match input {
            Dim::Known(n) => {
                let padded = n.saturating_add(pb + pe).saturating_sub(span);
                if padded < 0 {
                    return Err(self.fail(node, format!("input size {n} plus pads {pb}+{pe} is smaller than the kernel span {span}")));
                }
                let mut out = if ceil { (padded + s - 1) / s + 1 } else { padded / s + 1 };
                // The last window must start inside the input or the begin padding.
                if ceil && (out - 1).saturating_mul(s) >= n.saturating_add(pb) {
                    out -= 1;
                }
                Ok(Dim::Known(out))
            }
            d if span == 1 && s == 1 && pb + pe == 0 => Ok(d.clone()),
            d if s == 1 && pb + pe == span - 1 => Ok(d.clone()),
            d => Ok(d.add(&Dim::Known(pb + pe - span))?.floor_div(&Dim::Known(s))?.add(&Dim::Known(1))?),
        }
    }

    pub(crate) fn conv(&mut self, node: &NodeProto, c: &Conv) -> R<Vec<ValueType>> {
        // ConvInteger has no bias: its inputs 2 and 3 are zero points.
        match c.integer {
            true => self.conv_of(node, c, (1, None), Some(DType::I32)),
            false => {
                let dtype = self.dtype(node, 0);
                self.conv_of(node, c, (1, Some(2)), dtype)
            }
        }
    }

    /// `QLinearConv`: the weight is input 3, the bias input 8; the output has the type of
    /// its zero point (input 7).
    pub(crate) fn qlinear_conv(&mut self, node: &NodeProto, c: &Conv) -> R<Vec<ValueType>> {
        let dtype = self.dtype(node, 7);
        self.conv_of(node, c, (3, Some(8)), dtype)
    }

    /// A convolution of input 0 by the weight and bias at `(weight, bias)`.
    fn conv_of(&mut self, node: &NodeProto, c: &Conv, (weight, bias): (usize, Option<usize>), dtype: Option<DType>) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        let w = self.shape(node, weight)?;
        if x.len() < 3 || w.len() != x.len() {
            return Err(
                self.fail(node, format!("input {} and weight {} must have the same rank, at least 3", fmt_shape(&x), fmt_shape(&w)))
            );
        }
        let group = c.group;
        if group < 1 {
            return Err(self.fail(node, format!("group is {group}")));
        }
        if let (Some(ch), Some(wc)) = (x[1].known(), w[1].known()) {
            if wc.checked_mul(group) != Some(ch) {
                return Err(self.fail(
                    node,
                    format!("input has {ch} channels but the weight {} with group {group} expects {wc}*{group}", fmt_shape(&w)),
                ));
            }
        }
        if let Some(m) = w[0].known() {
            if m % group != 0 {
                return Err(self.fail(node, format!("{m} output channels are not divisible by group {group}")));
            }
        }
        if let Some(b) = bias.and_then(|k| crate::ops::input(node, k)).and_then(|n| self.out.shape(n)) {
            if b.len() != 1 || b[0].known().zip(w[0].known()).is_some_and(|(a, c)| a != c) {
                return Err(self.fail(node, format!("bias has shape {}, expected [{}]", fmt_shape(b), w[0])));
            }
        }
        let a = self.conv_attrs(node, &c.window, x.len() - 2, &w[2..])?;
        let mut out = vec![x[0].clone(), w[0].clone()];
        for i in 0..x.len() - 2 {
            out.push(self.window_out(node, &a, i, &x[i + 2], false)?);
        }
        Ok(vec![vt(dtype, out)])
    }

    pub(crate) fn conv_transpose(&mut self, node: &NodeProto, c: &ConvTranspose) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        let w = self.shape(node, 1)?;
        if x.len() < 3 || w.len() != x.len() {
            return Err(
                self.fail(node, format!("input {} and weight {} must have the same rank, at least 3", fmt_shape(&x), fmt_shape(&w)))
            );
        }
        let group = c.group;
        if let (Some(ch), Some(wc)) = (x[1].known(), w[0].known()) {
            if ch != wc {
                return Err(self.fail(node, format!("input has {ch} channels but the weight {} expects {wc}", fmt_shape(&w))));
            }
        }
        let spatial = x.len() - 2;
        let a = self.conv_attrs(node, &c.window, spatial, &w[2..])?;
        let out_pad = c.output_padding.clone().unwrap_or_else(|| vec![0; spatial]);
        let output_shape = &c.output_shape;
        if out_pad.len() != spatial {
            return Err(self.fail(node, format!("output_padding {out_pad:?} does not match {spatial} spatial axes")));
        }
        let mut out = vec![x[0].clone(), w[1].mul(&Dim::Known(group))?];
        for i in 0..spatial {
            if let Some(os) = output_shape {
                let v = os
                    .get(os.len().wrapping_sub(spatial) + i)
                    .ok_or_else(|| self.fail(node, format!("output_shape {os:?} is too short")))?;
                out.push(Dim::Known(*v));
                continue;
            }
            let (s, span) = (a.strides[i], (a.kernel[i] - 1) * a.dilations[i] + 1);
            let d = match a.auto_pad.as_str() {
                "SAME_UPPER" | "SAME_LOWER" => x[i + 2].mul(&Dim::Known(s))?,
                _ => {
                    let pads = if a.auto_pad == "VALID" { 0 } else { a.pads[i].saturating_add(a.pads[i + spatial]) };
                    // s*(in-1) + output_padding + span - pads
                    let shift = out_pad[i].saturating_add(span).saturating_sub(pads).saturating_sub(s);
                    x[i + 2].mul(&Dim::Known(s))?.add(&Dim::Known(shift))?
                }
            };
            if d.known().is_some_and(|v| v < 1) {
                return Err(self.fail(node, format!("spatial axis {i} would have size {d}")));
            }
            out.push(d);
        }
        Ok(vec![vt(self.dtype(node, 0), out)])
    }
}
