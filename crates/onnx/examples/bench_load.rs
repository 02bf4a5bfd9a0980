//! Benchmark: load an ONNX model and index its graph, reporting wall time and peak
//! resident memory of this process. Run one measurement per process (peak RSS is a
//! per-process high-water mark):
//!
//! `cargo run --release -p oto-onnx --example bench_load -- MODEL.onnx [--touch]`
//!
//! `--touch` also reads every weight byte (sums them), the fair comparison with a
//! loader that copies all weights into memory.
//!
//! Also prints `BENCH {json}` lines for `bench/report.py` (name `load STEM`; metrics
//! `seconds`/`peak_rss`, with `_all_weights` appended under `--touch`).

use std::time::Instant;

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// One machine-readable result line for `bench/report.py`.
fn bench_line(name: &str, metric: &str, value: f64, unit: &str) {
    let line = serde_json::json!({"name": name, "impl": "oto", "metric": metric, "value": value, "unit": unit});
    println!("BENCH {line}");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.iter().find(|a| !a.starts_with("--")).ok_or("usage: bench_load MODEL.onnx [--touch]")?;
    let touch = args.iter().any(|a| a == "--touch");
    let start = Instant::now();
    let model = oto_onnx::Model::load(path)?;
    let graph = oto_onnx::Graph::new(&model)?;
    let mut checksum = 0u64;
    if touch {
        for t in &graph.proto.initializer {
            if let Some(bytes) = model.tensor_bytes(t)? {
                checksum = bytes.iter().fold(checksum, |acc, &b| acc.wrapping_add(u64::from(b)));
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let file_size = std::fs::metadata(path)?.len();
    let peak = peak_rss_bytes().unwrap_or(0);
    println!(
        "{{\"seconds\": {secs:.6}, \"peak_rss\": {}, \"file_size\": {file_size}, \"nodes\": {}, \"touch\": {touch}, \"checksum\": {checksum}}}",
        peak,
        graph.proto.node.len()
    );
    let name = format!("load {}", std::path::Path::new(path).file_stem().map(|s| s.to_string_lossy()).unwrap_or_default());
    let suffix = if touch { "_all_weights" } else { "" };
    bench_line(&name, &format!("seconds{suffix}"), secs, "s");
    bench_line(&name, &format!("peak_rss{suffix}"), peak as f64, "B");
    bench_line(&name, "file_size", file_size as f64, "B");
    Ok(())
}
