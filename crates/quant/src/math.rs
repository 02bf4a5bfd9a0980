//! Quantization arithmetic, exactly as ONNX `QuantizeLinear` / `DequantizeLinear` define it:
//!
//! * quantize: `q = saturate(round(x / scale) + zero_point)`, the division in f32, `round`
//!   to the nearest integer with ties to even, `saturate` clamping to the type's range;
//! * dequantize: `x = (q - zero_point) * scale`, the difference an exact integer, the
//!   product in f32 (what onnxruntime computes, bit for bit).
//!
//! Weights are quantized symmetrically (zero point 0): per output channel (`axis`, one
//! scale per index of that axis, opset 13) or blockwise (`block_size` consecutive entries
//! of `axis` share a scale, per index of every other axis, opset 21). The scale of a
//! channel or block is `max |w| / qmax` with `qmax` = 127 (int8) or 7 (int4), so that
//! `-max |w|` and `max |w|` both round to representable values (the negative end of the
//! range, -128 or -8, is unused). INT4/UINT4 are packed two per byte, the first element
//! in the low nibble, an odd count padded with a zero high nibble (ONNX `TensorProto`).

use crate::Error;

/// An integer element type of a quantized tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QType {
    /// Signed 8-bit, [-128, 127].
    Int8,
    /// Unsigned 8-bit, [0, 255].
    Uint8,
    /// Signed 4-bit, [-8, 7], packed two per byte.
    Int4,
    /// Unsigned 4-bit, [0, 15], packed two per byte.
    Uint4,
}

impl QType {
    /// The smallest representable value.
    pub fn min(self) -> i32 {
        match self {
            QType::Int8 => -128,
            QType::Uint8 | QType::Uint4 => 0,
            QType::Int4 => -8,
        }
    }

    /// The largest representable value.
    pub fn max(self) -> i32 {
        match self {
            QType::Int8 => 127,
            QType::Uint8 => 255,
            QType::Int4 => 7,
            QType::Uint4 => 15,
        }
    }

    /// Bits per element.
    pub fn bits(self) -> u32 {
        match self {
            QType::Int8 | QType::Uint8 => 8,
            QType::Int4 | QType::Uint4 => 4,
        }
    }

    /// The ONNX `TensorProto.DataType` code.
    pub fn onnx_code(self) -> i32 {
        use oto_onnx::proto::tensor_proto::DataType;
        (match self {
            QType::Int8 => DataType::Int8,
            QType::Uint8 => DataType::Uint8,
            QType::Int4 => DataType::Int4,
            QType::Uint4 => DataType::Uint4,
        }) as i32
    }

    /// The type of an ONNX `TensorProto.DataType` code, `None` for the others.
    pub fn from_onnx(code: i32) -> Option<QType> {
        use oto_onnx::proto::tensor_proto::DataType;
        Some(match DataType::try_from(code).ok()? {
            DataType::Int8 => QType::Int8,
            DataType::Uint8 => QType::Uint8,
            DataType::Int4 => QType::Int4,
            DataType::Uint4 => QType::Uint4,
            _ => return None,
        })
    }

    /// Bytes that `count` elements take in a `TensorProto` (4-bit types packed).
    pub fn storage_bytes(self, count: usize) -> usize {
        match self.bits() {
            4 => count / 2 + count % 2,
            _ => count,
        }
    }

    /// The signed symmetric type of `bits` (8 or 4).
    pub fn signed(bits: u32) -> Option<QType> {
        match bits {
            8 => Some(QType::Int8),
            4 => Some(QType::Int4),
            _ => None,
        }
    }
}

/// `QuantizeLinear` of one value: `saturate(round_half_even(x / scale) + zero_point)`.
/// NaN maps to the zero point (x / scale rounds to no integer; onnxruntime's conversion
/// of NaN is unspecified, so callers never feed NaN: weights are checked finite).
pub fn quantize(x: f32, scale: f32, zero_point: i32, q: QType) -> i32 {
    let r = (x / scale).round_ties_even();
    if r.is_nan() {
        return zero_point.clamp(q.min(), q.max());
    }
    // Clamp in f32 first: r may be far outside i32 (a huge x over a small scale).
    let v = r + zero_point as f32;
    v.clamp(q.min() as f32, q.max() as f32) as i32
}

/// `DequantizeLinear` of one value: `(q - zero_point) * scale` in f32.
pub fn dequantize(q: i32, scale: f32, zero_point: i32) -> f32 {
    // |q - zero_point| <= 255: exact in f32.
    (q - zero_point) as f32 * scale
}

/// A weight quantized symmetrically (zero points 0), per axis or blockwise.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedWeight {
    /// The integer type.
    pub qtype: QType,
    /// The weight's shape (also the quantized tensor's).
    pub shape: Vec<usize>,
    /// The integer values, one per element (unpacked), row-major.
    pub values: Vec<i32>,
    /// The scales, row-major in [`QuantizedWeight::scale_shape`].
    pub scales: Vec<f32>,
    /// `[shape[axis]]` per axis; `shape` with `shape[axis]` replaced by the block count blockwise.
    pub scale_shape: Vec<usize>,
    /// The axis of `DequantizeLinear` (the output channel per axis, the blocked axis blockwise).
    pub axis: usize,
    /// The block size (blockwise), `None` per axis.
    pub block_size: Option<usize>,
}

impl QuantizedWeight {
    /// Bytes of the stored tensors: the packed integers, the f32 scales and the zero
    /// points (one per scale, of the integer type).
    pub fn bytes(&self) -> usize {
        self.qtype.storage_bytes(self.values.len()) + 4 * self.scales.len() + self.qtype.storage_bytes(self.scales.len())
    }

    /// The scale index of every element.
    fn scale_index(&self) -> impl Iterator<Item = usize> + '_ {
        scale_indices(&self.shape, self.axis, self.block_size)
    }

    /// The dequantized values, as `DequantizeLinear` computes them.
    pub fn dequantize(&self) -> Vec<f32> {
        self.values.iter().zip(self.scale_index()).map(|(&q, s)| dequantize(q, self.scales[s], 0)).collect()
    }
}

/// `(outer, dim, inner)`: the products of the dimensions before `axis`, at it, after it.
fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// For every element of `shape` (row-major), the index of its scale: per axis the index
/// along `axis`; blockwise the row-major index in the scale tensor, whose `axis` holds
/// `ceil(shape[axis] / block)` blocks.
fn scale_indices(shape: &[usize], axis: usize, block: Option<usize>) -> impl Iterator<Item = usize> + '_ {
    let (outer, dim, inner) = split_at_axis(shape, axis);
    let blocks = block.map(|b| dim.div_ceil(b));
    (0..outer).flat_map(move |o| {
        (0..dim).flat_map(move |d| {
            (0..inner).map(move |i| match (block, blocks) {
                (Some(b), Some(n)) => (o * n + d / b) * inner + i,
                _ => d,
            })
        })
    })
}

/// Checks the arguments shared by the weight quantizers.
fn check(weight: &[f32], shape: &[usize], axis: usize) -> Result<(), Error> {
    if axis >= shape.len() {
        return Err(Error::Quantize(format!("axis {axis} is out of range for shape {shape:?}")));
    }
    if shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(weight.len()) {
        return Err(Error::Quantize(format!("{} values do not fill shape {shape:?}", weight.len())));
    }
    if let Some(i) = weight.iter().position(|w| !w.is_finite()) {
        return Err(Error::Quantize(format!("element {i} is {} (only finite weights can be quantized)", weight[i])));
    }
    Ok(())
}

/// The symmetric scale of values whose largest magnitude is `amax`: `amax / qmax`, or 1
/// for an all-zero channel (every value then quantizes to 0, whatever the scale).
pub fn symmetric_scale(amax: f32, q: QType) -> f32 {
    let scale = amax / q.max() as f32;
    if scale > 0.0 && scale.is_finite() {
        scale
    } else if amax > 0.0 {
        // Subnormal amax: the smallest positive normal scale still rounds it to 0 or 1.
        f32::MIN_POSITIVE
    } else {
        1.0
    }
}

/// Quantizes `weight` symmetrically, one scale per index of `axis` (opset 13 per-axis).
pub fn quantize_per_axis(weight: &[f32], shape: &[usize], axis: usize, q: QType) -> Result<QuantizedWeight, Error> {
    check(weight, shape, axis)?;
    let mut amax = vec![0f32; shape[axis]];
    for (w, s) in weight.iter().zip(scale_indices(shape, axis, None)) {
        amax[s] = amax[s].max(w.abs());
    }
    finish(weight, shape, axis, None, vec![shape[axis]], amax, q)
}

/// Quantizes `weight` symmetrically in blocks of `block_size` consecutive entries along
/// `axis` (opset 21 blocked quantization; the last block may be shorter).
pub fn quantize_blockwise(weight: &[f32], shape: &[usize], axis: usize, block_size: usize, q: QType) -> Result<QuantizedWeight, Error> {
    check(weight, shape, axis)?;
    if block_size < 2 {
        return Err(Error::Quantize(format!("block size {block_size} must be at least 2")));
    }
    let mut scale_shape = shape.to_vec();
    scale_shape[axis] = shape[axis].div_ceil(block_size);
    let mut amax = vec![0f32; scale_shape.iter().product()];
    for (w, s) in weight.iter().zip(scale_indices(shape, axis, Some(block_size))) {
        amax[s] = amax[s].max(w.abs());
    }
    finish(weight, shape, axis, Some(block_size), scale_shape, amax, q)
}

fn finish(
    weight: &[f32],
    shape: &[usize],
    axis: usize,
    block_size: Option<usize>,
    scale_shape: Vec<usize>,
    amax: Vec<f32>,
    q: QType,
) -> Result<QuantizedWeight, Error> {
    let scales: Vec<f32> = amax.iter().map(|&a| symmetric_scale(a, q)).collect();
    let values = weight.iter().zip(scale_indices(shape, axis, block_size)).map(|(&w, s)| quantize(w, scales[s], 0, q)).collect();
    Ok(QuantizedWeight { qtype: q, shape: shape.to_vec(), values, scales, scale_shape, axis, block_size })
}

/// Packs 4-bit values two per byte, the first in the low nibble (ONNX INT4/UINT4 storage).
pub fn pack_int4(values: &[i32]) -> Vec<u8> {
    values.chunks(2).map(|c| (c[0] as u8 & 0x0f) | ((c.get(1).copied().unwrap_or(0) as u8 & 0x0f) << 4)).collect()
}

/// The bytes of `values` as an ONNX tensor of type `q` stores them in `raw_data`.
pub fn storage(values: &[i32], q: QType) -> Vec<u8> {
    match q {
        QType::Int8 => values.iter().map(|&v| v as i8 as u8).collect(),
        QType::Uint8 => values.iter().map(|&v| v as u8).collect(),
        QType::Int4 | QType::Uint4 => pack_int4(values),
    }
}

/// An affine (asymmetric) per-tensor quantization of values in `[lo, hi]` to `q`, as
/// for activations: the range is widened to include 0 (so that 0 is exact), `scale =
/// (hi - lo) / (qmax - qmin)`, `zero_point = saturate(round_half_even(qmin - lo / scale))`.
pub fn affine_params(lo: f32, hi: f32, q: QType) -> Result<(f32, i32), Error> {
    if !(lo.is_finite() && hi.is_finite()) || lo > hi {
        return Err(Error::Quantize(format!("range [{lo}, {hi}] is not a finite interval")));
    }
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let span = (q.max() - q.min()) as f32;
    let scale = (hi - lo) / span;
    if !(scale > 0.0 && scale.is_finite()) {
        return Ok((1.0, 0i32.clamp(q.min(), q.max())));
    }
    let zp = (q.min() as f32 - lo / scale).round_ties_even().clamp(q.min() as f32, q.max() as f32) as i32;
    Ok((scale, zp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_to_even_and_saturates() {
        // 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0, -1.5 -> -2, -2.5 -> -2.
        let got: Vec<i32> = [0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5].iter().map(|&x| quantize(x, 1.0, 0, QType::Int8)).collect();
        assert_eq!(got, vec![0, 2, 2, 0, -2, -2]);
        assert_eq!(quantize(1e9, 1.0, 0, QType::Int8), 127);
        assert_eq!(quantize(-1e9, 1.0, 0, QType::Int8), -128);
        assert_eq!(quantize(-3.0, 1.0, 10, QType::Uint8), 7);
        assert_eq!(quantize(-30.0, 1.0, 10, QType::Uint8), 0);
        assert_eq!(quantize(100.0, 1.0, 0, QType::Int4), 7);
        assert_eq!(quantize(-100.0, 1.0, 0, QType::Int4), -8);
        assert_eq!(quantize(20.0, 1.0, 0, QType::Uint4), 15);
    }

    #[test]
    fn int4_packing_matches_the_onnx_layout() {
        // [1, -1, 7, -8, 3]: low nibble first, odd count padded with 0.
        let packed = pack_int4(&[1, -1, 7, -8, 3]);
        assert_eq!(packed, vec![0xf1, 0x87, 0x03]);
        // oto-onnx's reader decodes it back.
        let t = crate::rewrite::int_tensor("t", &[5], &[1, -1, 7, -8, 3], QType::Int4);
        let back = oto_onnx::Tensor::from_proto(&t, None).unwrap();
        assert_eq!(back.to_i64_vec().unwrap(), vec![1, -1, 7, -8, 3]);
        let t = crate::rewrite::int_tensor("t", &[2], &[1, 15], QType::Uint4);
        assert_eq!(oto_onnx::Tensor::from_proto(&t, None).unwrap().to_i64_vec().unwrap(), vec![1, 15]);
        assert_eq!(QType::Int4.storage_bytes(5), 3);
    }

    #[test]
    fn per_axis_scales_follow_the_channel_maximum() {
        // Shape [2, 3], axis 1: channel maxima 4, 2, 0 -> scales 4/127, 2/127, 1 (all zero).
        let w = [1.0f32, -2.0, 0.0, -4.0, 0.5, 0.0];
        let q = quantize_per_axis(&w, &[2, 3], 1, QType::Int8).unwrap();
        assert_eq!(q.scales, vec![4.0 / 127.0, 2.0 / 127.0, 1.0]);
        assert_eq!(q.values[3], -127);
        assert_eq!(q.values[1], -127);
        let back = q.dequantize();
        for (a, b) in w.iter().zip(&back) {
            assert!((a - b).abs() <= 0.5 * 4.0 / 127.0 + 1e-7, "{a} vs {b}");
        }
    }

    #[test]
    fn blockwise_scales_cover_odd_blocks() {
        // Shape [5, 2], axis 0, blocks of 2: blocks {0,1}, {2,3}, {4} per column.
        let w: Vec<f32> = (0..10).map(|i| i as f32 - 4.5).collect();
        let q = quantize_blockwise(&w, &[5, 2], 0, 2, QType::Int4).unwrap();
        assert_eq!(q.scale_shape, vec![3, 2]);
        // Column 0 holds -4.5, -2.5, -0.5, 1.5, 3.5: block maxima 4.5, 1.5, 3.5.
        assert_eq!(q.scales[0], 4.5 / 7.0);
        assert_eq!(q.scales[2], 1.5 / 7.0);
        assert_eq!(q.scales[4], 3.5 / 7.0);
        assert!(quantize_blockwise(&w, &[5, 2], 2, 2, QType::Int4).is_err());
        assert!(quantize_per_axis(&[f32::NAN], &[1], 0, QType::Int8).is_err());
    }

    #[test]
    fn affine_parameters_keep_zero_exact() {
        let (scale, zp) = affine_params(-1.0, 3.0, QType::Int8).unwrap();
        assert_eq!(scale, 4.0 / 255.0);
        assert_eq!(dequantize(quantize(0.0, scale, zp, QType::Int8), scale, zp), 0.0);
        // A positive-only range includes 0: zero point at qmin.
        let (_, zp) = affine_params(0.5, 2.0, QType::Int8).unwrap();
        assert_eq!(zp, -128);
        assert_eq!(affine_params(0.0, 0.0, QType::Int8).unwrap(), (1.0, 0));
        assert!(affine_params(1.0, f32::INFINITY, QType::Int8).is_err());
    }
}
