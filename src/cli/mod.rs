//! The `oto` command line: argument parsing (clap derive), logging setup, and error
//! reporting with exit codes.
//! One module per subcommand; each exposes an `Args` struct and a `run` function.

mod analyze;
mod check;
mod construct;
mod eval;
mod hessian;
mod inspect;
mod prune;

use crate::error::InputError;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Only-Train-Once structured pruning for ONNX models.
#[derive(Debug, Parser)]
#[command(name = "oto", version, about, propagate_version = true, arg_required_else_help = true)]
#[command(
    after_help = "Examples:\n  oto inspect model.onnx\n  oto analyze model.onnx --json groups.json\n  oto prune --model model.onnx --data train.npz --val val.npz --target-sparsity 0.5 --out pruned/\n\nRun `oto <COMMAND> --help` for the options and examples of each command."
)]
pub struct Cli {
    /// Only print errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More log output (-v: info, -vv: debug, -vvv: trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inputs, outputs, opsets, operator histogram, parameter count and MACs of a model.
    Inspect(inspect::Args),
    /// The pruning groups: which structures can be removed together, and why others cannot.
    Analyze(analyze::Args),
    /// Loss and accuracy (or the task's metric) of a model on a data file.
    Eval(eval::Args),
    /// Zero random group elements, construct, and compare the models in onnxruntime.
    Check(check::Args),
    /// Cut every all-zero group element out of a group-sparse model.
    Construct(construct::Args),
    /// Train with HESSO and prune: the one-shot job from a trained model to a compact one.
    Prune(Box<prune::Args>),
    /// Hessian traces per layer and per pruning group, top eigenvalues, the SGD stability bound.
    Hessian(hessian::Args),
}

fn init_logging(quiet: bool, verbose: u8) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // A second initialisation (never in the binary) is harmless.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}

/// Parses the command line, runs the subcommand, reports errors; returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.quiet, cli.verbose);
    let result = match &cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Analyze(args) => analyze::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Check(args) => check::run(args),
        Command::Construct(args) => construct::run(args),
        Command::Prune(args) => prune::run(args, cli.quiet, cli.verbose),
        Command::Hessian(args) => hessian::run(args, cli.quiet),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if let Some(stop) = err.downcast_ref::<crate::job::Interrupted>() {
                eprintln!("{stop}");
                return ExitCode::from(130);
            }
            let input = err.chain().any(|c| c.is::<InputError>());
            eprintln!("error: {err:#}");
            ExitCode::from(if input { 2 } else { 1 })
        }
    }
}
