//! HESSO (Hybrid Efficient Structured Sparse Optimizer) on libtorch: trains with a base
//! optimizer (SGD, Adam, AdamW from `oto_torch::optim`) and, during a pruning schedule,
//! drives a chosen fraction of the pruning-group elements of an `oto_graph::Analysis`
//! to exactly zero, so that construction can cut them without changing the outputs.
//!
//! The contract is `shared/spec/hesso.md`. It fits a user's own training loop:
//!
//! ```no_run
//! # fn demo(exec: &mut oto_torch::exec::Executor, analysis: &oto_graph::Analysis, loss: tch::Tensor) -> Result<(), oto_optim::HessoError> {
//! use oto_optim::{train_producers, Hesso, HessoConfig};
//! let base = oto_torch::optim::OptimizerConfig::parse("sgd")?;
//! let config = HessoConfig { target_group_sparsity: 0.5, pruning_steps: 100, ..HessoConfig::default() };
//! train_producers(exec, analysis); // a class token, say, is a constant until then
//! let mut hesso = Hesso::from_executor(exec, analysis, base, config)?;
//! hesso.zero_grad();
//! loss.backward();
//! hesso.step(0.05)?;
//! let pruned = hesso.pruned_elements(); // group id -> element indices, for construction
//! # let _ = pruned; Ok(()) }
//! ```
//!
//! CRIC (`HessoConfig::cric`, see [`CricConfig`]) chooses the elements with cycles that
//! restart from one snapshot and with loss probes; it needs the probe loss at every step,
//! so it is stepped with [`Hesso::step_with_probe`] (the trainer,
//! `oto_torch::train::Trainer::<Hesso>`, passes one).
#![warn(missing_docs)]

mod budget;
mod config;
mod core;
mod cric;
mod error;
mod hesso;
mod select;

pub use crate::core::{GroupProbe, Hesso, Phase};
pub use budget::{solve, Budget, CostModel, SliceCost, WeightPrice};
pub use config::{CricConfig, HessoConfig, ImportanceWeights, DEFAULT_MAX_GROUP_SPARSITY};
pub use cric::{CricReport, PROBE_FRACTIONS};
pub use error::HessoError;
pub use hesso::{train_producers, HessoMetrics};
pub use select::{GroupQuota, Selection};
