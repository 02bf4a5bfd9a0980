//! A short fuzz run under `cargo test` (`make fuzz` runs the long one): every kind of
//! input must reach the stages it is meant for, without a single failure.

#[path = "../../crates/onnx/tests/common/normalize_cases.rs"]
mod cases;

use oto_fuzz::{default_corpus, default_jobs, run, Config, Stage};

fn config(corpus: Vec<std::path::PathBuf>, seed: u64, iterations: u64, crash_dir: &std::path::Path) -> Config {
    Config {
        iterations,
        start: 0,
        seed,
        corpus,
        jobs: default_jobs(),
        crash_dir: crash_dir.to_path_buf(),
        infer: true,
        max_model_bytes: 1 << 20,
        progress_every: 0,
    }
}

/// One test: the harness' counters and panic hook are per process, runs must not overlap.
#[test]
fn fuzz_smoke() {
    let corpus = default_corpus();
    assert!(corpus[0].join("mlp.onnx").exists(), "{}: zoo models missing; run `make graphs`", corpus[0].display());
    let crash_dir = tempfile::tempdir().unwrap();
    let summary = run(&config(vec![corpus[0].clone()], 1, 2000, crash_dir.path())).unwrap();
    eprintln!("{summary}");
    assert_eq!(summary.iterations, 2000);
    assert!(summary.failures.is_empty(), "{summary}");
    // The mutations must reach every stage, or the smoke test proves little.
    let refused = |s: Stage| summary.refused.get(&s).copied().unwrap_or(0);
    for stage in [Stage::Load, Stage::Graph, Stage::GroupsParse, Stage::GroupsCheck, Stage::JobParse, Stage::JobResolve] {
        assert!(refused(stage) > 0, "no input refused at {stage:?}:\n{summary}");
    }
    assert!(summary.constructed > 0, "{summary}");
    assert!(summary.accepted.iter().all(|&n| n > 0), "{summary}");
    fuzz_normalization_cases();
    fuzz_regressions();
}

/// The same over the normalization test cases (Constant nodes, constant subgraphs, an
/// IR-3 file...), whose folds the zoo's clean models never reach.
fn fuzz_normalization_cases() {
    let corpus = tempfile::tempdir().unwrap();
    for (name, model) in cases::all() {
        model.save(corpus.path().join(format!("{name}.onnx")), &Default::default()).unwrap();
    }
    let crash_dir = tempfile::tempdir().unwrap();
    let summary = run(&config(vec![corpus.path().to_path_buf()], 2, 2000, crash_dir.path())).unwrap();
    eprintln!("{summary}");
    assert!(summary.failures.is_empty(), "{summary}");
    assert!(summary.accepted[0] > 0, "{summary}");
}

/// Inputs the fuzzer once broke oto with (fuzz/regressions: a Conv whose output is declared
/// with one axis panicked in the analysis; Reshapes whose computed target declares 4e9 to
/// 5e18 entries allocated that many axes; a weight whose declared dims multiply past 2^64
/// overflowed the analysis' parameter counts): each is now refused or accepted, never a
/// panic, and a refusal names the file.
fn fuzz_regressions() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let report = oto_fuzz::catch(|| oto_fuzz::run_input(oto_fuzz::Input::Model(bytes), true, 0))
            .unwrap_or_else(|(stage, msg)| panic!("{}: panic in stage {stage:?}: {msg}", path.display()));
        assert!(report.invalid.is_empty(), "{}: {:?}", path.display(), report.invalid);
        if let Some(error) = &report.error {
            assert!(error.contains("fuzz-input.onnx"), "{}: {error}", path.display());
        }
        count += 1;
    }
    assert_eq!(count, 5);
}
