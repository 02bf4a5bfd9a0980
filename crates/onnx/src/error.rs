//! The one error type of the ONNX layer. Every variant names the file and, where it
//! applies, the node and value at fault, so a user can find the problem.

use std::path::PathBuf;

/// Errors from loading, validating, reading or saving an ONNX model.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file (model or external data) could not be read or written.
    /// (The OS error is part of the message, not a `source`, so that error chains do not print it twice.)
    #[error("{path}: {action}: {error}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What we were doing ("cannot read", "cannot write", ...).
        action: &'static str,
        /// The operating system's error.
        error: std::io::Error,
    },
    /// The bytes are not a protobuf `ModelProto`.
    #[error("{path}: not an ONNX model (protobuf decoding failed: {error})")]
    Decode {
        /// The model file.
        path: PathBuf,
        /// The decoder's error (in the message, not a `source`).
        error: prost::DecodeError,
    },
    /// The model is structurally invalid or unsupported. `context` names the node,
    /// value, initializer or attribute involved.
    #[error("{path}: {context}: {message}")]
    Invalid {
        /// The model file (or a description such as `<memory>`).
        path: PathBuf,
        /// What is at fault, e.g. `node 'conv1' (Conv)` or `initializer 'fc.weight'`.
        context: String,
        /// What is wrong and, where possible, how to fix it.
        message: String,
    },
}

impl OnnxError {
    /// Builds an [`OnnxError::Invalid`].
    pub fn invalid(path: impl Into<PathBuf>, context: impl Into<String>, message: impl Into<String>) -> Self {
        OnnxError::Invalid { path: path.into(), context: context.into(), message: message.into() }
    }

    /// Builds an [`OnnxError::Io`].
    pub fn io(path: impl Into<PathBuf>, action: &'static str, source: std::io::Error) -> Self {
        OnnxError::Io { path: path.into(), action, error: source }
    }
}

/// Result alias of this crate.
pub type Result<T, E = OnnxError> = std::result::Result<T, E>;
