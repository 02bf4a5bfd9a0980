//! Quantization of ONNX models to the QDQ form onnxruntime runs: weights of `Conv`,
//! `Gemm` and `MatMul` stored as integers behind `DequantizeLinear` (int8 per output
//! channel, or int4 in blocks along the input axis), activations feeding those operators
//! passed through a `QuantizeLinear` -> `DequantizeLinear` pair with calibrated scales.
//!
//! * [`math`]: the quantization arithmetic, exactly as ONNX defines it;
//! * [`calib`]: activation ranges from calibration samples (min/max, percentile);
//! * [`plan`]: [`BitPlan`], the bits of every weight, which the rewrite consumes;
//! * [`allocate`]: per-layer bits by HAWQ-V2's Hessian-aware criterion under a size budget,
//!   and the baselines it is compared with;
//! * [`opset`]: raising a model's default opset without changing what it computes;
//! * [`rewrite`]: the QDQ rewrite itself, with its size report.
//!
//! No libtorch here: running the model on calibration data is the caller's.
#![warn(missing_docs)]

pub mod allocate;
pub mod calib;
pub mod math;
pub mod opset;
pub mod plan;
pub mod rewrite;

pub use plan::{BitPlan, Bits};
pub use rewrite::{quantize_model, QuantizeOptions, QuantizeReport};

/// What went wrong while quantizing: bad arguments or a model the rewrite refuses.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The arithmetic's arguments are invalid (shape, axis, non-finite values).
    #[error("{0}")]
    Quantize(String),
    /// The model cannot be quantized as asked; the message names the file and node or value.
    #[error("{0}")]
    Model(String),
    /// Reading the model failed.
    #[error(transparent)]
    Onnx(#[from] oto_onnx::OnnxError),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
