//! ONNX I/O and IR for oto: prost message types, lossless load/save with external
//! data, typed tensors, and a validated graph view with typed attributes.
//! No libtorch here: the analysis and construction build on this crate alone.
#![warn(missing_docs)]

pub mod atomic;
pub mod branches;
pub mod builder;
pub mod cost;
pub mod dim;
pub mod error;
pub mod graph;
pub mod model;
pub mod normalize;
pub mod npz;
pub mod op;
pub mod ops;
pub mod proto;
pub mod rng;
pub mod shape;
pub mod tensor;

pub use error::{OnnxError, Result};
pub use graph::{node_label, Graph, NodeExt, Producer, Use};
pub use model::{ExternalDataOptions, Model, SaveOptions};
pub use shape::{Dim, Shapes, ValueType};
pub use tensor::{DType, Tensor, TensorData};
