//! Errors of the optimizer.

/// What can go wrong when building or stepping HESSO.
#[derive(Debug, thiserror::Error)]
pub enum HessoError {
    /// An invalid setting (the message names it).
    #[error("HESSO setting {setting}: {message}")]
    Config {
        /// The setting's name.
        setting: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A prunable group that cannot be matched with the parameters.
    #[error("pruning group '{group}': {message}")]
    Group {
        /// The group id.
        group: String,
        /// What is wrong.
        message: String,
    },
    /// A libtorch operation failed.
    #[error("{context}: {message}")]
    Torch {
        /// What was being done.
        context: String,
        /// libtorch's message.
        message: String,
    },
    /// The base optimizer failed.
    #[error(transparent)]
    Base(#[from] oto_torch::error::Error),
}

impl HessoError {
    pub(crate) fn torch(context: impl Into<String>, e: tch::TchError) -> HessoError {
        HessoError::Torch { context: context.into(), message: oto_torch::error::without_backtrace(&e.to_string()) }
    }
}

/// Result alias of this crate.
pub type Result<T, E = HessoError> = std::result::Result<T, E>;
