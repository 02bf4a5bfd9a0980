//! The two kinds of failure the command line tells apart: a problem with what the user
//! gave (exit code 2, [`InputError`]) and everything else (a runtime failure, exit code 1).
//! Shared by the command line and the job, which both classify the errors they meet.

use oto_torch::error::Error as TorchError;

/// A problem with what the user gave us (a missing or invalid file, a bad option
/// value): exit code 2. Everything else that fails is a runtime failure: exit code 1.
#[derive(Debug)]
pub struct InputError(pub anyhow::Error);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `{:#}` prints the whole context chain on one line.
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for InputError {}

/// Marks an error as an input error (exit code 2).
pub fn input_error(e: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(InputError(e.into()))
}

/// Whether a training-crate error is the user's input (exit code 2) or a runtime failure.
pub fn classify(e: TorchError) -> anyhow::Error {
    match e {
        TorchError::Onnx(_)
        | TorchError::Device(_)
        | TorchError::Unsupported { .. }
        | TorchError::Input { .. }
        | TorchError::Data { .. }
        | TorchError::Config(_) => input_error(e),
        other => other.into(),
    }
}
