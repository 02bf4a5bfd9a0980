//! Benchmark: construction time and peak memory at 50% of every prunable group, and the
//! onnxruntime latency of the compact model against the full one (same threads, same
//! batch, alternating blocks of runs), with the MACs ratio beside it. Also prints `BENCH {json}` lines
//! for `bench/report.py` (names `construct STEM` and `ort latency STEM`).
//!
//! `cargo run --release -p oto-construct --example bench_construct -- MODEL.onnx [--batch B] [--runs N] [--threads T]`

use oto_graph::{analyze, AnalyzeOptions};
use oto_onnx::{DType, Dim, Graph, Tensor, TensorData};
use oto_testkit::bench::{arg, bench_line, peak_rss_bytes};
use std::collections::BTreeMap;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().ok_or("usage: bench_construct MODEL.onnx [--batch B] [--runs N] [--threads T]")?;
    let (batch, runs, threads) = (arg(&args, "--batch", 8), arg(&args, "--runs", 20), arg(&args, "--threads", 2));
    let model = oto_onnx::Model::load(path)?;
    let analysis = analyze(&model, &AnalyzeOptions::default())?;
    // Every other element of every prunable group: 50%, spread over the group.
    let chosen: BTreeMap<String, Vec<usize>> = analysis
        .prunable_groups()
        .filter(|g| g.num_elements > 1)
        .map(|g| (g.id.clone(), (0..g.num_elements).filter(|i| i % 2 == 1).collect()))
        .collect();
    let zeroed = oto_construct::zero_producers(&model, &analysis, &chosen)?;
    let rss_before = peak_rss_bytes().unwrap_or(0);
    let start = Instant::now();
    let (compact, report) = oto_construct::construct(&zeroed, &analysis, &chosen)?;
    let construct_s = start.elapsed().as_secs_f64();
    let rss_after = peak_rss_bytes().unwrap_or(0);
    let file_size = std::fs::metadata(path)?.len();
    println!(
        "construct: {construct_s:.3} s; process peak RSS {:.0} MB before, {:.0} MB after ({:.2}x the model file of {:.0} MB); params {} -> {}",
        rss_before as f64 / 1e6,
        rss_after as f64 / 1e6,
        rss_after as f64 / file_size as f64,
        file_size as f64 / 1e6,
        report.params_before,
        report.params_after
    );
    let stem = std::path::Path::new(path).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let construct_name = format!("construct {stem}");
    bench_line(&construct_name, "oto", "seconds", construct_s, "s");
    bench_line(&construct_name, "oto", "peak_rss", rss_after as f64, "B");
    bench_line(&construct_name, "oto", "file_size", file_size as f64, "B");
    bench_line(&construct_name, "oto", "params_ratio", report.params_after as f64 / report.params_before.max(1) as f64, "");

    // Latency in onnxruntime, interleaved so drift affects both equally.
    let graph = Graph::new(&zeroed)?;
    let shapes = oto_onnx::shape::infer(&graph)?;
    let mut inputs = Vec::new();
    for input in graph.real_inputs() {
        let name = input.name.clone().unwrap_or_default();
        let dims = shapes.shape(&name).ok_or("input without shape")?;
        let shape: Vec<usize> = dims
            .iter()
            .enumerate()
            .map(|(i, d)| {
                if let Dim::Known(v) = d {
                    *v as usize
                } else if i == 0 {
                    batch
                } else {
                    16
                }
            })
            .collect();
        let n: usize = shape.iter().product();
        let data = match shapes.dtype(&name) {
            Some(DType::I64) => TensorData::I64((0..n).map(|k| (k % 7) as i64).collect()),
            _ => TensorData::F32((0..n).map(|k| ((k % 13) as f32) / 13.0).collect()),
        };
        inputs.push((name, Tensor { shape, data }));
    }
    let refs: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let options = oto_ort::SessionOptions::with_threads(threads);
    let timing =
        oto_ort::paired_latency(&zeroed.to_bytes()?, &compact.to_bytes()?, &options, &refs, 1, std::time::Duration::from_secs(3600), runs)?;
    let (f, s) = (timing.first_s, timing.second_s);
    println!(
        "onnxruntime latency (batch {batch}, {threads} threads, median of {} in alternating blocks): full {:.2} ms, compact {:.2} ms, ratio {:.3}; MACs ratio {:.3}",
        timing.runs,
        f * 1e3,
        s * 1e3,
        s / f,
        report.macs_after as f64 / report.macs_before.max(1) as f64
    );
    let latency_name = format!("ort latency {stem}");
    bench_line(&latency_name, "full", "median_latency", f, "s");
    bench_line(&latency_name, "compact", "median_latency", s, "s");
    bench_line(&latency_name, "compact", "macs_ratio", report.macs_after as f64 / report.macs_before.max(1) as f64, "");
    bench_line(&latency_name, "compact", "batch", batch as f64, "");
    Ok(())
}
