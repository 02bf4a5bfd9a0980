//! Quantization of ONNX models. [`allocate`]: per-layer bit widths by HAWQ-V2's
//! Hessian-aware criterion under a size budget, and the baselines it is compared with.
#![warn(missing_docs)]

pub mod allocate;
