//! Shape inference and analysis time over every model of `graphs/zoo` (the dynamo zoo):
//! per model the fastest of several runs (robust on a shared machine), then the totals.
//! Prints `BENCH {json}` lines for `bench/report.py` (`infer zoo`, `analyze zoo`).
//!
//! `cargo bench -p oto-graph --bench zoo`

use oto_graph::{analyze, AnalyzeOptions};
use oto_onnx::{shape, Graph, Model};
use std::path::Path;
use std::time::{Duration, Instant};

/// The fastest of `runs` calls of `f`.
fn fastest(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../graphs/zoo");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "onnx")).collect())
        .unwrap_or_default();
    paths.sort();
    if paths.is_empty() {
        println!("{} has no models (make graphs), skipped", dir.display());
        return;
    }
    let opts = AnalyzeOptions::default();
    let (mut infer_total, mut analyze_total) = (Duration::ZERO, Duration::ZERO);
    for path in &paths {
        let model = Model::load(path).expect("load");
        let graph = Graph::new(&model).expect("graph");
        let infer = fastest(10, || {
            shape::infer(&graph).expect("infer");
        });
        let analysis = fastest(5, || {
            analyze(&model, &opts).expect("analyze");
        });
        infer_total += infer;
        analyze_total += analysis;
        let name = path.file_stem().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        println!("{name:24} infer {:8.2} ms   analyze {:8.2} ms", infer.as_secs_f64() * 1e3, analysis.as_secs_f64() * 1e3);
    }
    println!(
        "zoo ({} models): infer {:.1} ms, analyze {:.1} ms (sums of per-model minima)",
        paths.len(),
        infer_total.as_secs_f64() * 1e3,
        analyze_total.as_secs_f64() * 1e3
    );
    for (name, d) in [("infer zoo", infer_total), ("analyze zoo", analyze_total)] {
        let line = serde_json::json!({"name": name, "impl": "oto", "metric": "seconds", "value": d.as_secs_f64(), "unit": "s"});
        println!("BENCH {line}");
    }
}
