//! `oto construct`: cut every all-zero group element out of a group-sparse model.

use crate::error::input_error;
use crate::output::write_atomic;
use anyhow::Result;
use oto_graph::{analyze, Analysis, AnalyzeOptions};
use oto_onnx::{Model, SaveOptions};
use std::path::{Path, PathBuf};

/// Arguments of `oto construct`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  oto construct trained.sparse.onnx --out small.onnx
      remove every group element whose producer weights are all exactly zero
  oto construct trained.sparse.onnx --out small.onnx --groups groups.json
      use a saved analysis (from `oto analyze --json`) instead of analyzing again")]
pub struct Args {
    /// The group-sparse ONNX model.
    pub model: PathBuf,
    /// Where to write the compact model (never the input file).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The group description to use (JSON from `oto analyze --json`); default: analyze the model.
    #[arg(long, value_name = "FILE")]
    pub groups: Option<PathBuf>,
    /// Also write a JSON report (parameters, MACs, removed elements per group) to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

/// Reads a saved analysis (checked against the model), or analyzes the model.
pub fn load_or_analyze(model: &Model, groups: Option<&Path>) -> Result<Analysis> {
    match groups {
        Some(path) => Analysis::load(path, model).map_err(input_error),
        None => analyze(model, &AnalyzeOptions::default()).map_err(input_error),
    }
}

/// Runs `oto construct`.
pub fn run(args: &Args) -> Result<()> {
    if same_file(&args.model, &args.out) {
        return Err(input_error(anyhow::anyhow!("--out {} is the input model: oto never overwrites its input", args.out.display())));
    }
    let (model, _) = crate::model_file::load_model(&args.model)?;
    let analysis = load_or_analyze(&model, args.groups.as_deref())?;
    let removed = oto_construct::zero_elements(&analysis, &model).map_err(input_error)?;
    let (compact, report) = oto_construct::construct(&model, &analysis, &removed).map_err(input_error)?;
    compact.save(&args.out, &SaveOptions::default())?;
    let removed_total: usize = removed.values().map(Vec::len).sum();
    println!(
        "removed {removed_total} elements in {} groups; parameters {} -> {} ({:.1}%), MACs {} -> {}",
        report.groups.len(),
        report.params_before,
        report.params_after,
        100.0 * report.params_after as f64 / report.params_before.max(1) as f64,
        report.macs_before,
        report.macs_after
    );
    println!("wrote {}", args.out.display());
    if let Some(path) = &args.report {
        let groups: serde_json::Map<String, serde_json::Value> =
            report.groups.iter().map(|g| (g.id.clone(), serde_json::json!({ "kept": g.kept, "removed": g.removed }))).collect();
        let json = serde_json::json!({
            "params_before": report.params_before, "params_after": report.params_after,
            "macs_before": report.macs_before, "macs_after": report.macs_after,
            "removed": removed, "groups": groups,
        });
        write_atomic(path, serde_json::to_string_pretty(&json)?.as_bytes())?;
    }
    Ok(())
}

/// Whether two paths name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
