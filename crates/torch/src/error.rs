//! The error type of execution and training: every variant names what is at fault
//! (the node and operator, the data array, the checkpoint file, the step).

use std::path::PathBuf;

/// Errors of the executor, the data pipeline and the training loop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ONNX model is invalid or could not be read or written.
    #[error(transparent)]
    Onnx(#[from] oto_onnx::OnnxError),
    /// A `--device` value that cannot be used.
    #[error(transparent)]
    Device(#[from] crate::TorchError),
    /// The model uses something the executor does not run.
    #[error("{model}: {node}: {message}")]
    Unsupported {
        /// The model file.
        model: PathBuf,
        /// The node (`node 'name' (Op)`).
        node: String,
        /// What is not supported.
        message: String,
    },
    /// An operator failed on the tensors it was given (e.g. a shape mismatch).
    #[error("{model}: {node} failed: {message}")]
    Op {
        /// The model file.
        model: PathBuf,
        /// The node (`node 'name' (Op)`).
        node: String,
        /// libtorch's or the executor's message.
        message: String,
    },
    /// The inputs given to the model do not match its graph inputs.
    #[error("model input '{name}': {message}")]
    Input {
        /// The graph input.
        name: String,
        /// Expected and actual.
        message: String,
    },
    /// A data file does not match the model (missing array, rank, dtype, shape, labels).
    #[error("{path}: {message}")]
    Data {
        /// The data file.
        path: PathBuf,
        /// What is wrong, naming the array, the expected and the actual.
        message: String,
    },
    /// A checkpoint could not be written or read.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint file or folder.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The loss became NaN or infinite.
    #[error("the loss became {value} at step {step}; training stopped{checkpoint}")]
    NonFinite {
        /// The step (counted from 1) whose loss was not finite.
        step: u64,
        /// The loss value (NaN or inf).
        value: f64,
        /// Where the last good checkpoint is, if any (`; the last good checkpoint ...`).
        checkpoint: String,
    },
    /// An optimizer built around the base optimizer (HESSO) failed.
    #[error(transparent)]
    Optimizer(Box<dyn std::error::Error + Send + Sync>),
    /// A training setting is invalid (names the setting).
    #[error("{0}")]
    Config(String),
    /// Data-parallel communication failed (a rank died, a timeout, a bad rendezvous), or
    /// the ranks disagree where they must agree.
    #[error("data-parallel: {0}")]
    Distributed(String),
    /// Any other libtorch failure, with what was being done.
    #[error("{context}: {message}")]
    Torch {
        /// What was being done.
        context: String,
        /// libtorch's message.
        message: String,
    },
}

impl Error {
    /// Wraps a libtorch error with what was being done.
    pub fn torch(context: impl Into<String>, e: impl std::fmt::Display) -> Error {
        Error::Torch { context: context.into(), message: without_backtrace(&e.to_string()) }
    }
}

/// A libtorch message without the C++ backtrace that follows it ("Exception raised from
/// ..." and the frames): users see what failed, not libtorch's call stack.
pub fn without_backtrace(text: &str) -> String {
    let lines: Vec<&str> = text.lines().take_while(|l| !l.trim_start().starts_with("Exception raised from")).collect();
    lines.join(" ").trim().to_string()
}

/// Result alias of execution and training.
pub type Result<T, E = Error> = std::result::Result<T, E>;
