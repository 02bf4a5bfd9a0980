//! Benchmark: raw-data throughput. Images decoded, resized to the model's input and
//! normalized per second (an image folder, batches of 32 through
//! [`oto_torch::data::images::ImageFolder::decode`], rayon threads as set by
//! `RAYON_NUM_THREADS`), and text examples tokenized per second
//! ([`oto_torch::data::text::read_text`] on a corpus file for a model with its tokenizer).
//! Prints `BENCH {json}` lines for `bench/report.py`.
//!
//! `cargo run --release -p oto-torch --example bench_data -- --images DIR [--size 224]`
//! `cargo run --release -p oto-torch --example bench_data -- --text CORPUS --model MODEL.onnx [--max-length 128]`

use oto_testkit::bench::{arg, bench_line};
use oto_torch::data::images::{ImageFolder, Part};
use oto_torch::data::text::{read_text, TextOptions};
use oto_torch::exec::GraphInput;
use std::path::PathBuf;
use std::time::Instant;

fn value(args: &[String], name: &str) -> Option<PathBuf> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(PathBuf::from)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads = rayon::current_num_threads();
    if let Some(dir) = value(&args, "--images") {
        let size = arg(&args, "--size", 224) as i64;
        let input = GraphInput {
            name: "x".into(),
            dtype: oto_onnx::DType::F32,
            dims: Some(vec![None, Some(3), Some(size), Some(size)]),
            cache_axis: None,
        };
        let folder = ImageFolder::open(&dir, &Default::default(), Part::All, 0, &input)?;
        let indices: Vec<i64> = (0..folder.len() as i64).collect();
        let start = Instant::now();
        for batch in indices.chunks(32) {
            let _pixels = folder.decode(batch)?;
        }
        let rate = folder.len() as f64 / start.elapsed().as_secs_f64();
        println!("{} images -> {size}x{size}: {rate:.1} images/s on {threads} threads", folder.len());
        bench_line(&format!("decode images {size}px"), "oto", &format!("images/s, {threads} threads"), rate, "1/s");
    }
    if let (Some(corpus), Some(model)) = (value(&args, "--text"), value(&args, "--model")) {
        let model = oto_onnx::normalize::load(&model)?.0;
        let exec = oto_torch::exec::Executor::new(&model, tch::Device::Cpu)?;
        let inputs: Vec<GraphInput> = exec.inputs().cloned().collect();
        let length = arg(&args, "--max-length", 128);
        let options = TextOptions { max_length: Some(length), ..Default::default() };
        let start = Instant::now();
        let arrays = read_text(&corpus, &options, &model, &inputs)?;
        let seconds = start.elapsed().as_secs_f64();
        let n = arrays.first().map_or(0, |(_, t)| t.shape[0]);
        let bytes = std::fs::metadata(&corpus)?.len() as f64;
        println!(
            "{n} lines ({:.1} MB) tokenized to {length}: {:.0} lines/s, {:.2} MB/s on {threads} threads",
            bytes / 1e6,
            n as f64 / seconds,
            bytes / 1e6 / seconds
        );
        bench_line("tokenize", "oto", &format!("lines/s, {threads} threads"), n as f64 / seconds, "1/s");
    }
    Ok(())
}
