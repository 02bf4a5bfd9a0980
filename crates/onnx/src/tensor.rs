//! Typed tensors decoded from (and encoded to) `TensorProto`.
//!
//! Decoding checks that the data length agrees with the shape; it never trusts the
//! declared shape to size an allocation before the bytes are known to be there.

use crate::proto::{tensor_proto::DataType as ProtoType, TensorProto};
use half::{bf16, f16};
use zerocopy::IntoBytes;

/// Element types oto handles. Other ONNX types are refused with a clear error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16.
    Bf16,
    /// 64-bit float.
    F64,
    /// 64-bit signed integer.
    I64,
    /// 32-bit signed integer.
    I32,
    /// 8-bit signed integer.
    I8,
    /// 8-bit unsigned integer.
    U8,
    /// Boolean (one byte per element).
    Bool,
}

impl DType {
    /// Maps an ONNX `TensorProto.DataType` code; `None` for types oto does not handle.
    pub fn from_onnx(code: i32) -> Option<DType> {
        Some(match ProtoType::try_from(code).ok()? {
            ProtoType::Float => DType::F32,
            ProtoType::Float16 => DType::F16,
            ProtoType::Bfloat16 => DType::Bf16,
            ProtoType::Double => DType::F64,
            ProtoType::Int64 => DType::I64,
            ProtoType::Int32 => DType::I32,
            ProtoType::Int8 => DType::I8,
            ProtoType::Uint8 => DType::U8,
            ProtoType::Bool => DType::Bool,
            _ => return None,
        })
    }

    /// Like [`DType::from_onnx`], and INT4/UINT4 as the type their values are decoded
    /// to, one per element: I8/U8 (oto has no 4-bit element type; the values, in
    /// [-8, 7] and [0, 15], are exact).
    pub fn widened_from_onnx(code: i32) -> Option<DType> {
        match ProtoType::try_from(code).ok()? {
            ProtoType::Int4 => Some(DType::I8),
            ProtoType::Uint4 => Some(DType::U8),
            _ => DType::from_onnx(code),
        }
    }

    /// The ONNX `TensorProto.DataType` code.
    pub fn onnx_code(self) -> i32 {
        (match self {
            DType::F32 => ProtoType::Float,
            DType::F16 => ProtoType::Float16,
            DType::Bf16 => ProtoType::Bfloat16,
            DType::F64 => ProtoType::Double,
            DType::I64 => ProtoType::Int64,
            DType::I32 => ProtoType::Int32,
            DType::I8 => ProtoType::Int8,
            DType::U8 => ProtoType::Uint8,
            DType::Bool => ProtoType::Bool,
        }) as i32
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::Bf16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// Whether this is a floating-point type (candidate for a trainable weight).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::Bf16 | DType::F64)
    }
}

/// A human-readable name of an ONNX data type code, for error messages.
pub fn onnx_type_name(code: i32) -> String {
    ProtoType::try_from(code).map(|t| t.as_str_name().to_string()).unwrap_or_else(|_| format!("unknown type {code}"))
}

/// The elements of a tensor, one vector per element type.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// f32 elements.
    F32(Vec<f32>),
    /// f16 elements.
    F16(Vec<f16>),
    /// bf16 elements.
    Bf16(Vec<bf16>),
    /// f64 elements.
    F64(Vec<f64>),
    /// i64 elements.
    I64(Vec<i64>),
    /// i32 elements.
    I32(Vec<i32>),
    /// i8 elements.
    I8(Vec<i8>),
    /// u8 elements.
    U8(Vec<u8>),
    /// bool elements.
    Bool(Vec<bool>),
}

/// A dense, row-major tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions (empty for a scalar).
    pub shape: Vec<usize>,
    /// Elements, `shape.iter().product()` of them.
    pub data: TensorData,
}

/// Why a tensor could not be decoded; the caller adds the file and tensor name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeIssue(pub String);

macro_rules! dispatch {
    ($data:expr, $v:ident => $e:expr) => {
        match $data {
            TensorData::F32($v) => $e,
            TensorData::F16($v) => $e,
            TensorData::Bf16($v) => $e,
            TensorData::F64($v) => $e,
            TensorData::I64($v) => $e,
            TensorData::I32($v) => $e,
            TensorData::I8($v) => $e,
            TensorData::U8($v) => $e,
            TensorData::Bool($v) => $e,
        }
    };
}

impl TensorData {
    /// Element type.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F16(_) => DType::F16,
            TensorData::Bf16(_) => DType::Bf16,
            TensorData::F64(_) => DType::F64,
            TensorData::I64(_) => DType::I64,
            TensorData::I32(_) => DType::I32,
            TensorData::I8(_) => DType::I8,
            TensorData::U8(_) => DType::U8,
            TensorData::Bool(_) => DType::Bool,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        dispatch!(self, v => v.len())
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Little-endian bytes, as ONNX `raw_data` stores them.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            TensorData::F32(v) => le_bytes(v),
            TensorData::F16(v) => le_bytes(v),
            TensorData::Bf16(v) => le_bytes(v),
            TensorData::F64(v) => le_bytes(v),
            TensorData::I64(v) => le_bytes(v),
            TensorData::I32(v) => le_bytes(v),
            TensorData::I8(v) => le_bytes(v),
            TensorData::U8(v) => v.clone(),
            TensorData::Bool(v) => v.iter().map(|&x| u8::from(x)).collect(),
        }
    }

    /// Decodes `count` little-endian elements of `dtype`; `bytes` must hold exactly that many.
    pub fn from_le_bytes(dtype: DType, bytes: &[u8], count: usize) -> Result<TensorData, DecodeIssue> {
        let expected = count.checked_mul(dtype.size()).ok_or_else(|| DecodeIssue("element count overflows".into()))?;
        if bytes.len() != expected {
            return Err(DecodeIssue(format!(
                "data has {} bytes but the shape needs {count} elements of {dtype:?} = {expected} bytes",
                bytes.len()
            )));
        }
        Ok(match dtype {
            DType::F32 => TensorData::F32(from_le(bytes)),
            DType::F16 => TensorData::F16(from_le(bytes)),
            DType::Bf16 => TensorData::Bf16(from_le(bytes)),
            DType::F64 => TensorData::F64(from_le(bytes)),
            DType::I64 => TensorData::I64(from_le(bytes)),
            DType::I32 => TensorData::I32(from_le(bytes)),
            DType::I8 => TensorData::I8(from_le(bytes)),
            DType::U8 => TensorData::U8(bytes.to_vec()),
            DType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        })
    }
}

/// A plain number type whose bytes are its value (zerocopy's guarantees), with its
/// little-endian byte swap for big-endian hosts.
trait LeNumber: zerocopy::FromBytes + zerocopy::IntoBytes + zerocopy::Immutable + Copy {
    /// The value with its bytes reversed (big-endian hosts only).
    fn swapped(self) -> Self;
}

macro_rules! le_number {
    ($($t:ty),*) => {$(
        impl LeNumber for $t {
            fn swapped(self) -> Self {
                <$t>::from_le_bytes(self.to_ne_bytes())
            }
        }
    )*};
}
le_number!(f32, f16, bf16, f64, i64, i32, i8);

/// The little-endian bytes of `values`: one copy on little-endian hosts (weights of
/// hundreds of megabytes are encoded on every save).
fn le_bytes<T: LeNumber>(values: &[T]) -> Vec<u8> {
    if cfg!(target_endian = "little") {
        values.as_bytes().to_vec()
    } else {
        values.iter().flat_map(|v| v.swapped().as_bytes().to_vec()).collect()
    }
}

/// Elements decoded from little-endian bytes (whose length the caller checked): one
/// copy into a buffer of the element type, so unaligned bytes are fine.
fn from_le<T: LeNumber>(bytes: &[u8]) -> Vec<T> {
    let mut out = vec![T::new_zeroed(); bytes.len() / std::mem::size_of::<T>()];
    out.as_mut_bytes().copy_from_slice(bytes);
    if cfg!(target_endian = "big") {
        out.iter_mut().for_each(|v| *v = v.swapped());
    }
    out
}

impl Tensor {
    /// `parts` stacked along their first axis (the samples of several batches as one):
    /// every part of the same element type and the same shape after the first axis.
    pub fn concat_first(parts: &[&Tensor]) -> std::result::Result<Tensor, String> {
        let Some(first) = parts.first() else { return Err("nothing to concatenate".into()) };
        if first.shape.is_empty() || parts.iter().any(|p| p.shape.get(1..) != first.shape.get(1..) || p.dtype() != first.dtype()) {
            return Err(format!("tensors of shape {:?} and others cannot be stacked along axis 0", first.shape));
        }
        let mut shape = first.shape.clone();
        shape[0] = parts.iter().map(|p| p.shape[0]).sum();
        macro_rules! join {
            ($($v:ident),*) => {
                match &first.data {
                    $(TensorData::$v(_) => TensorData::$v(
                        parts.iter().flat_map(|p| match &p.data { TensorData::$v(d) => d.clone(), _ => Vec::new() }).collect(),
                    ),)*
                }
            };
        }
        let data = join!(F32, F16, Bf16, F64, I64, I32, I8, U8, Bool);
        Ok(Tensor { shape, data })
    }
    /// A tensor from a shape and data; `None` when the element count disagrees (or
    /// the shape's element count overflows).
    pub fn new(shape: Vec<usize>, data: TensorData) -> Option<Tensor> {
        (checked_numel(&shape).ok()? == data.len()).then_some(Tensor { shape, data })
    }

    /// A 1-D i64 tensor (shape constants).
    pub fn from_i64s(values: Vec<i64>) -> Tensor {
        Tensor { shape: vec![values.len()], data: TensorData::I64(values) }
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// The f32 elements, if this is an f32 tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The i64 elements, if this is an i64 tensor.
    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            TensorData::I64(v) => Some(v),
            _ => None,
        }
    }

    /// The elements as f64 (lossless for every supported type but i64 beyond 2^53).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::Bf16(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::F64(v) => v.clone(),
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::I8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
        }
    }

    /// The elements as i64, for integer (and bool) tensors; `None` for floats.
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        Some(match &self.data {
            TensorData::I64(v) => v.clone(),
            TensorData::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
            TensorData::I8(v) => v.iter().map(|&x| i64::from(x)).collect(),
            TensorData::U8(v) => v.iter().map(|&x| i64::from(x)).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| i64::from(x)).collect(),
            _ => return None,
        })
    }

    /// Encodes as a `TensorProto` with `raw_data` (the compact form).
    pub fn to_proto(&self, name: &str) -> TensorProto {
        TensorProto {
            dims: self.shape.iter().map(|&d| d as i64).collect(),
            data_type: Some(self.dtype().onnx_code()),
            name: Some(name.to_string()),
            raw_data: Some(bytes::Bytes::from(self.data.to_le_bytes())),
            ..Default::default()
        }
    }

    /// Decodes a `TensorProto` whose data is inline (`raw_data` or a typed field).
    /// `external` supplies the bytes of a tensor stored in external data. INT4/UINT4
    /// tensors (two elements per byte, the first in the low nibble) decode widened to
    /// I8/U8 ([`DType::widened_from_onnx`]).
    pub fn from_proto(proto: &TensorProto, external: Option<&[u8]>) -> Result<Tensor, DecodeIssue> {
        let code = proto.data_type.unwrap_or(0);
        if let Some(signed) = match ProtoType::try_from(code) {
            Ok(ProtoType::Int4) => Some(true),
            Ok(ProtoType::Uint4) => Some(false),
            _ => None,
        } {
            return Self::from_4bit_proto(proto, external, signed);
        }
        let dtype = DType::from_onnx(code).ok_or_else(|| DecodeIssue(format!("element type {} is not supported", onnx_type_name(code))))?;
        let shape = shape_of(proto)?;
        let count = checked_numel(&shape)?;
        if let Some(bytes) = external.or(proto.raw_data.as_deref()) {
            let data = TensorData::from_le_bytes(dtype, bytes, count)?;
            return Ok(Tensor { shape, data });
        }
        let typed_len = match dtype {
            DType::F32 => proto.float_data.len(),
            DType::F64 => proto.double_data.len(),
            DType::I64 => proto.int64_data.len(),
            _ => proto.int32_data.len(),
        };
        if typed_len != count {
            return Err(DecodeIssue(format!("has {typed_len} elements but its shape {shape:?} needs {count}")));
        }
        // Narrow types are stored widened in int32_data (f16/bf16 as their bit patterns).
        let data = match dtype {
            DType::F32 => TensorData::F32(proto.float_data.clone()),
            DType::F64 => TensorData::F64(proto.double_data.clone()),
            DType::I64 => TensorData::I64(proto.int64_data.clone()),
            DType::I32 => TensorData::I32(proto.int32_data.clone()),
            DType::I8 => TensorData::I8(proto.int32_data.iter().map(|&x| x as i8).collect()),
            DType::U8 => TensorData::U8(proto.int32_data.iter().map(|&x| x as u8).collect()),
            DType::Bool => TensorData::Bool(proto.int32_data.iter().map(|&x| x != 0).collect()),
            DType::F16 => TensorData::F16(proto.int32_data.iter().map(|&x| f16::from_bits(x as u16)).collect()),
            DType::Bf16 => TensorData::Bf16(proto.int32_data.iter().map(|&x| bf16::from_bits(x as u16)).collect()),
        };
        Ok(Tensor { shape, data })
    }
}

impl Tensor {
    /// Decodes an INT4 (`signed`) or UINT4 tensor widened to I8 or U8.
    fn from_4bit_proto(proto: &TensorProto, external: Option<&[u8]>, signed: bool) -> Result<Tensor, DecodeIssue> {
        let shape = shape_of(proto)?;
        let count = checked_numel(&shape)?;
        let nibble = |n: u8| if signed && n >= 8 { n as i8 - 16 } else { n as i8 };
        let values: Vec<i8> = if let Some(bytes) = external.or(proto.raw_data.as_deref()) {
            if bytes.len() != count.div_ceil(2) {
                return Err(DecodeIssue(format!(
                    "data has {} bytes but the shape needs {count} 4-bit elements = {} bytes",
                    bytes.len(),
                    count.div_ceil(2)
                )));
            }
            bytes.iter().flat_map(|&b| [nibble(b & 0x0f), nibble(b >> 4)]).take(count).collect()
        } else {
            // int32_data holds one packed byte per entry.
            if proto.int32_data.len() != count.div_ceil(2) {
                return Err(DecodeIssue(format!(
                    "has {} packed entries but its shape {shape:?} needs {}",
                    proto.int32_data.len(),
                    count.div_ceil(2)
                )));
            }
            proto.int32_data.iter().flat_map(|&b| [nibble(b as u8 & 0x0f), nibble((b as u8) >> 4)]).take(count).collect()
        };
        let data = if signed { TensorData::I8(values) } else { TensorData::U8(values.into_iter().map(|v| v as u8).collect()) };
        Ok(Tensor { shape, data })
    }
}

/// The shape of a `TensorProto`, refusing negative dimensions.
pub fn shape_of(proto: &TensorProto) -> Result<Vec<usize>, DecodeIssue> {
    proto
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| DecodeIssue(format!("has a negative dimension {d} in {:?}", proto.dims))))
        .collect()
}

/// Product of dimensions, refusing overflow.
pub fn checked_numel(shape: &[usize]) -> Result<usize, DecodeIssue> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| DecodeIssue(format!("shape {shape:?} has too many elements")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_round_trip_every_dtype() {
        let cases = vec![
            TensorData::F32(vec![1.5, -2.0]),
            TensorData::F16(vec![f16::from_f32(0.5), f16::from_f32(-3.0)]),
            TensorData::Bf16(vec![bf16::from_f32(0.5), bf16::from_f32(7.0)]),
            TensorData::F64(vec![1e-300, 2.0]),
            TensorData::I64(vec![i64::MIN, 3]),
            TensorData::I32(vec![-1, 2]),
            TensorData::I8(vec![-128, 127]),
            TensorData::U8(vec![0, 255]),
            TensorData::Bool(vec![true, false]),
        ];
        for data in cases {
            let t = Tensor::new(vec![2], data).unwrap();
            let back = Tensor::from_proto(&t.to_proto("t"), None).unwrap();
            assert_eq!(back, t);
        }
    }

    #[test]
    fn typed_fields_decode() {
        let p =
            TensorProto { dims: vec![2], data_type: Some(DType::F16.onnx_code()), int32_data: vec![0x3c00, 0xc000], ..Default::default() };
        let t = Tensor::from_proto(&p, None).unwrap();
        assert_eq!(t.to_f64_vec(), vec![1.0, -2.0]);
    }

    #[test]
    fn int4_decodes_widened() {
        // [1, -1, 7, -8, 3] packed low nibble first, the odd count padded.
        let p = TensorProto {
            dims: vec![5],
            data_type: Some(ProtoType::Int4 as i32),
            raw_data: Some(vec![0xf1u8, 0x87, 0x03].into()),
            ..Default::default()
        };
        assert_eq!(Tensor::from_proto(&p, None).unwrap().data, TensorData::I8(vec![1, -1, 7, -8, 3]));
        let p = TensorProto { data_type: Some(ProtoType::Uint4 as i32), int32_data: vec![0xf1, 0x87, 0x03], raw_data: None, ..p };
        assert_eq!(Tensor::from_proto(&p, None).unwrap().data, TensorData::U8(vec![1, 15, 7, 8, 3]));
        let p = TensorProto { int32_data: vec![0xf1], ..p };
        assert!(Tensor::from_proto(&p, None).is_err());
        assert_eq!(DType::widened_from_onnx(ProtoType::Int4 as i32), Some(DType::I8));
    }

    #[test]
    fn length_mismatch_is_an_issue() {
        let p = TensorProto {
            dims: vec![3],
            data_type: Some(DType::F32.onnx_code()),
            raw_data: Some(vec![0u8; 8].into()),
            ..Default::default()
        };
        let err = Tensor::from_proto(&p, None).unwrap_err();
        assert!(err.0.contains("8 bytes"), "{}", err.0);
        let p = TensorProto { dims: vec![i64::MAX, 4], data_type: Some(DType::F32.onnx_code()), ..Default::default() };
        assert!(Tensor::from_proto(&p, None).is_err());
        assert!(Tensor::new(vec![usize::MAX, 2], TensorData::F32(vec![])).is_none());
    }
}
