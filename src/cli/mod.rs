//! The `oto` command line: argument parsing (clap derive), logging setup, and error
//! reporting with exit codes.
//! One module per subcommand; each exposes an `Args` struct and a `run` function.

mod analyze;
mod check;
mod construct;
pub mod data;
mod eval;
mod hessian;
mod inspect;
mod launch;
mod prune;
mod quantize;
mod sizes;

use crate::error::InputError;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Only-Train-Once structured pruning for ONNX models.
#[derive(Debug, Parser)]
#[command(name = "oto", about, disable_version_flag = true, arg_required_else_help = true)]
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
    /// Print the versions of oto, libtorch and onnxruntime and whether CUDA is available.
    #[arg(short = 'V', long)]
    pub version: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
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
    /// Quantize to an onnxruntime QDQ model: int8/int4 weights, calibrated 8-bit activations.
    Quantize(quantize::Args),
    /// Hessian traces per layer and per pruning group, top eigenvalues, the SGD stability bound.
    Hessian(hessian::Args),
    /// Print a shell completion script: `oto completions bash > ~/.local/share/bash-completion/completions/oto`.
    Completions {
        /// The shell: bash, zsh or fish.
        shell: Shell,
    },
}

/// The shells `oto completions` writes scripts for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    /// bash (bash-completion).
    Bash,
    /// zsh (a `_oto` file on `$fpath`).
    Zsh,
    /// fish (`~/.config/fish/completions/oto.fish`).
    Fish,
}

/// What `oto --version` prints: oto's version, the libtorch it is linked against and the
/// onnxruntime it loads (with where each was found), and whether CUDA is available.
pub fn version_text() -> String {
    let ort = match oto_ort::dylib_path() {
        Ok(path) => match oto_ort::runtime_version() {
            Ok(v) => format!("onnxruntime {v} ({})", path.display()),
            Err(e) => format!("onnxruntime: not loadable: {e}"),
        },
        Err(e) => format!("onnxruntime: not found: {e}"),
    };
    let cuda = if oto_torch::tch::Cuda::is_available() {
        format!("yes ({} device(s))", oto_torch::tch::Cuda::device_count())
    } else if !oto_torch::LIBTORCH_HAS_CUDA_LIB {
        "no (CPU-only libtorch build)".to_string()
    } else {
        "no (CUDA libtorch build, but no usable CUDA device)".to_string()
    };
    format!(
        "oto {}\nlibtorch {} ({})\n{ort}\nCUDA available: {cuda}",
        env!("CARGO_PKG_VERSION"),
        oto_torch::LIBTORCH_VERSION.unwrap_or("version unknown"),
        oto_torch::LIBTORCH_LIB_DIR.unwrap_or("library directory unknown"),
    )
}

fn completions(shell: Shell) {
    use clap::CommandFactory;
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(generator, &mut Cli::command(), "oto", &mut std::io::stdout());
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
    let Some(command) = &cli.command else {
        if cli.version {
            println!("{}", version_text());
            return ExitCode::SUCCESS;
        }
        use clap::CommandFactory;
        let _ = Cli::command().print_help();
        return ExitCode::from(2);
    };
    let result = match command {
        Command::Completions { shell } => {
            completions(*shell);
            Ok(())
        }
        Command::Inspect(args) => inspect::run(args),
        Command::Analyze(args) => analyze::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Check(args) => check::run(args),
        Command::Construct(args) => construct::run(args),
        Command::Prune(args) => prune::run(args, cli.quiet, cli.verbose),
        Command::Hessian(args) => hessian::run(args, cli.quiet),
        Command::Quantize(args) => quantize::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if let Some(exit) = err.downcast_ref::<launch::Exit>() {
                return ExitCode::from(exit.0);
            }
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
