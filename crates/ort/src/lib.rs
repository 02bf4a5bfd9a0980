//! onnxruntime oracle
