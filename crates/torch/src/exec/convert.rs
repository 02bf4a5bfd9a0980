//! Conversions between oto-onnx tensors and libtorch tensors.

use oto_onnx::{DType, Tensor as OnnxTensor, TensorData};
use tch::{Device, Kind, Tensor};

/// The libtorch kind of an ONNX element type.
pub fn kind_of(dtype: DType) -> Kind {
    match dtype {
        DType::F32 => Kind::Float,
        DType::F16 => Kind::Half,
        DType::Bf16 => Kind::BFloat16,
        DType::F64 => Kind::Double,
        DType::I64 => Kind::Int64,
        DType::I32 => Kind::Int,
        DType::I8 => Kind::Int8,
        DType::U8 => Kind::Uint8,
        DType::Bool => Kind::Bool,
    }
}

/// The ONNX element type of a libtorch kind, if oto handles it.
pub fn dtype_of(kind: Kind) -> Option<DType> {
    Some(match kind {
        Kind::Float => DType::F32,
        Kind::Half => DType::F16,
        Kind::BFloat16 => DType::Bf16,
        Kind::Double => DType::F64,
        Kind::Int64 => DType::I64,
        Kind::Int => DType::I32,
        Kind::Int8 => DType::I8,
        Kind::Uint8 => DType::U8,
        Kind::Bool => DType::Bool,
        _ => return None,
    })
}

/// Whether a kind is a floating-point kind.
pub fn is_float_kind(kind: Kind) -> bool {
    matches!(kind, Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double)
}

/// Copies an ONNX tensor into a libtorch tensor on `device`.
pub fn to_tch(t: &OnnxTensor, device: Device) -> Result<Tensor, String> {
    let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
    let bytes = t.data.to_le_bytes();
    let host = Tensor::f_from_data_size(&bytes, &shape, kind_of(t.dtype())).map_err(|e| e.to_string())?;
    if device == Device::Cpu {
        Ok(host)
    } else {
        host.f_to_device(device).map_err(|e| e.to_string())
    }
}

/// Copies a libtorch tensor (any device) into an ONNX tensor.
pub fn from_tch(t: &Tensor) -> Result<OnnxTensor, String> {
    let kind = t.kind();
    let dtype = dtype_of(kind).ok_or_else(|| format!("libtorch kind {kind:?} has no ONNX equivalent oto handles"))?;
    let host = t.f_detach().and_then(|d| d.f_to_device(Device::Cpu)).and_then(|d| d.f_contiguous()).map_err(|e| e.to_string())?;
    let shape: Vec<usize> = host.size().iter().map(|&d| d as usize).collect();
    let numel: usize = shape.iter().product();
    let mut bytes = vec![0u8; numel * dtype.size()];
    host.f_copy_data_u8(&mut bytes, numel).map_err(|e| e.to_string())?;
    let data = TensorData::from_le_bytes(dtype, &bytes, numel).map_err(|e| e.0)?;
    OnnxTensor::new(shape, data).ok_or_else(|| "tensor data does not match its shape".to_string())
}

/// The entries of an integer (or any real) tensor as `i64`, read on the host.
pub fn host_ints(t: &Tensor) -> Result<Vec<i64>, String> {
    let host =
        t.f_to_device(Device::Cpu).and_then(|h| h.f_to_kind(Kind::Int64)).and_then(|h| h.f_reshape([-1])).map_err(|e| e.to_string())?;
    Vec::<i64>::try_from(&host).map_err(|e| e.to_string())
}

/// The entries of a real tensor as `f64`, read on the host.
pub fn host_floats(t: &Tensor) -> Result<Vec<f64>, String> {
    let host =
        t.f_to_device(Device::Cpu).and_then(|h| h.f_to_kind(Kind::Double)).and_then(|h| h.f_reshape([-1])).map_err(|e| e.to_string())?;
    Vec::<f64>::try_from(&host).map_err(|e| e.to_string())
}
