//! `make fuzz`: hostile models, saved analyses and job files through every stage of oto.
//!
//! `cargo run --profile fuzz -p oto-fuzz -- --iterations N [--seed S] [--start I]
//! [--corpus DIR]... [--jobs DIR] [--crash-dir DIR] [--max-model-bytes B] [--no-infer]
//! [--replay FILE...]`
//!
//! The harness is the library (`src/lib.rs`); `tests/smoke.rs` runs a short version under
//! `cargo test`. Exits 1 on any panic, allocation over its bound, error message of the
//! loading stages that does not name the file, or compact model that oto refuses; 2 on a
//! usage error.

use oto_fuzz as harness;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage: fuzz [--iterations N] [--seed S] [--start I] [--corpus DIR]... [--jobs DIR] [--crash-dir DIR] \
[--max-model-bytes B] [--no-infer] [--replay FILE...]
  --replay reads X.onnx (a model), X.toml (a job file) or X.json (a saved analysis, with its model X.onnx next to it);
  give the --seed S --start I of its name to choose the same elements to zero (or rerun with --seed S --start I --iterations 1)";

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
        jobs: harness::default_jobs(),
        crash_dir: harness::default_crash_dir(),
        infer: true,
        max_model_bytes: 1 << 20,
        progress_every: 10_000,
    };
    let mut corpus_given = false;
    let mut replay = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let number = |name: &str, v: String| v.parse::<u64>().map_err(|_| format!("{name}: not a number: {v:?}"));
        match arg.as_str() {
            "--iterations" => config.iterations = number("--iterations", value("--iterations")?)?,
            "--seed" => config.seed = number("--seed", value("--seed")?)?,
            "--start" => config.start = number("--start", value("--start")?)?,
            "--max-model-bytes" => {
                let n = number("--max-model-bytes", value("--max-model-bytes")?)?;
                config.max_model_bytes = usize::try_from(n).map_err(|_| format!("--max-model-bytes {n}: too large"))?;
            }
            "--corpus" => {
                if !corpus_given {
                    config.corpus.clear();
                    corpus_given = true;
                }
                config.corpus.push(PathBuf::from(value("--corpus")?));
            }
            "--jobs" => config.jobs = PathBuf::from(value("--jobs")?),
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
        let _hook = harness::capture_panics();
        let mut clean = true;
        for path in replay {
            let outcome = replay_one(&path, config.infer, config.seed ^ config.start)?;
            clean &= !outcome.starts_with("panic");
            println!("{}: {outcome}", path.display());
        }
        return Ok(clean);
    }
    println!(
        "fuzz: {} inputs from seed {} (corpus {}; job files from {}; shape inference and later stages {})",
        config.iterations,
        config.seed,
        config.corpus.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
        config.jobs.display(),
        if config.infer { "on" } else { "off" }
    );
    let summary = harness::run(&config)?;
    print!("{summary}");
    Ok(summary.failures.is_empty())
}

/// Runs one saved input again; says how it ended.
fn replay_one(path: &Path, infer: bool, choice: u64) -> Result<String, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let bytes = read(path)?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let model;
    let input = match ext {
        "toml" => harness::Input::Job(String::from_utf8_lossy(&bytes).into_owned()),
        "json" => {
            let model_path = path.with_extension("onnx");
            let m = oto_onnx::Model::from_bytes(read(&model_path)?, &model_path.display().to_string()).map_err(|e| e.to_string())?;
            model = m;
            harness::Input::Groups { model: &model, json: String::from_utf8_lossy(&bytes).into_owned() }
        }
        _ => harness::Input::Model(bytes),
    };
    Ok(match harness::catch(|| harness::run_input(input, infer, choice)) {
        Err((stage, msg)) => format!("panic in stage {stage:?}: {msg}"),
        Ok(r) => match (&r.refused_at, &r.error) {
            (Some(stage), Some(e)) => format!("refused at {stage:?}: {e}"),
            _ => format!(
                "accepted by every stage (constructed: {}){}",
                r.constructed,
                if r.invalid.is_empty() { String::new() } else { format!("; {}", r.invalid.join("; ")) }
            ),
        },
    })
}
