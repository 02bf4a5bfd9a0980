//! Prints the pruning-group table of ONNX models: `cargo run -p oto-graph --example analyze -- model.onnx...`
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let verbose = std::env::var_os("OTO_VERBOSE").is_some();
    for path in std::env::args().skip(1) {
        let model = oto_onnx::Model::load(&path)?;
        let t = std::time::Instant::now();
        let a = oto_graph::analyze(&model, &oto_graph::AnalyzeOptions::default())?;
        let dt = t.elapsed();
        if verbose {
            print!("{}", a.table());
        }
        if std::env::var_os("OTO_JSON").is_some() {
            println!("{}", serde_json::to_string_pretty(&a)?);
        }
        println!(
            "{path}: {} groups, {} prunable, share {:.1}% ({} of {}), {} blocked ops, {:.1} ms",
            a.groups.len(),
            a.prunable_groups().count(),
            100.0 * a.prunable_share(),
            a.prunable_params,
            a.total_params,
            a.blocked.len(),
            dt.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
