//! oto: structured pruning of ONNX models (Only-Train-Once with HESSO).
//!
//! The `oto` binary is [`cli`]; the prune job it runs is [`job`], usable by other
//! programs: build a [`job::config::JobSpec`], read and check everything with
//! [`job::Setup::new`], and run it with [`job::run`]. The analysis, the optimizer,
//! construction and the libtorch executor are the crates `oto-graph`, `oto-optim`,
//! `oto-construct` and `oto-torch`.
#![warn(missing_docs)]

pub mod cli;
pub mod error;
pub mod job;
pub mod model_file;
pub mod output;
mod plot;
