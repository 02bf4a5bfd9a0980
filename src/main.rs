//! The `oto` command line. Everything lives in [`cli`]; this only maps the outcome
//! to an exit code (0 success, 1 runtime failure, 2 usage or input error).

mod cli;
mod job;
mod plot;

fn main() -> std::process::ExitCode {
    cli::main()
}
