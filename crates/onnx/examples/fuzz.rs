//! Fuzzes model loading, graph building and shape inference with mutated zoo models.
//!
//! `cargo run --release -p oto-onnx --example fuzz -- --iterations N [--seed S]
//! [--corpus DIR] [--no-infer] [--start I] [--crash-dir DIR] [--replay FILE...]`
//!
//! The harness lives in `tests/fuzz.rs`, whose smoke test runs a short version under
//! `cargo test`. Exits non-zero on any panic, allocation over its bound, or error
//! message that does not name the file.

#[path = "../tests/fuzz.rs"]
mod harness;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: fuzz [--iterations N] [--seed S] [--start I] [--corpus DIR] [--crash-dir DIR] \
[--max-model-bytes B] [--no-infer] [--replay FILE...]";

fn main() -> ExitCode {
    match parse_and_run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(msg) => {
            eprintln!("fuzz: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn parse_and_run() -> Result<bool, String> {
    let mut config = harness::Config {
        iterations: 100_000,
        start: 0,
        seed: 0,
        corpus: harness::default_corpus(),
        crash_dir: std::env::temp_dir().join("oto-fuzz-crashes"),
        infer: true,
        max_model_bytes: 1 << 20,
        progress_every: 10_000,
    };
    let mut replay = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let number = |name: &str, v: String| v.parse::<u64>().map_err(|_| format!("{name}: not a number: {v:?}"));
        match arg.as_str() {
            "--iterations" => config.iterations = number("--iterations", value("--iterations")?)?,
            "--seed" => config.seed = number("--seed", value("--seed")?)?,
            "--start" => config.start = number("--start", value("--start")?)?,
            "--max-model-bytes" => config.max_model_bytes = number("--max-model-bytes", value("--max-model-bytes")?)? as usize,
            "--corpus" => config.corpus = PathBuf::from(value("--corpus")?),
            "--crash-dir" => config.crash_dir = PathBuf::from(value("--crash-dir")?),
            "--no-infer" => config.infer = false,
            "--replay" => replay.extend(args.by_ref().map(PathBuf::from)),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(true);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !replay.is_empty() {
        for path in replay {
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let report = harness::run_input(bytes, config.infer);
            println!(
                "{}: {:?}, {} initializers decoded, {} refused",
                path.display(),
                report.outcome,
                report.tensors_ok,
                report.tensors_err
            );
        }
        return Ok(true);
    }
    println!(
        "fuzz: {} inputs from seed {} (corpus {}, shape inference {})",
        config.iterations,
        config.seed,
        config.corpus.display(),
        if config.infer { "on" } else { "off" }
    );
    let summary = harness::run(&config)?;
    print!("{summary}");
    Ok(summary.failures.is_empty())
}
