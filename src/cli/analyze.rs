//! `oto analyze`: the pruning groups of a model, as a table, JSON and a picture.

use crate::error::input_error;
use crate::output::write_atomic;
use anyhow::{Context, Result};
use oto_graph::{analyze, AnalyzeOptions};
use oto_onnx::{Graph, Model};
use std::path::{Path, PathBuf};

/// Arguments of `oto analyze`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  oto analyze resnet18.onnx
      the table of pruning groups and the share of prunable parameters
  oto analyze bert.onnx --json groups.json
      also write the description that `oto prune` and `oto construct` consume
  oto analyze model.onnx --svg groups.svg
      draw the dependency graph coloured by group (needs Graphviz's `dot`)
  oto analyze model.onnx --unprunable classifier.weight --unprunable node_conv2d_3
      keep the groups of these initializers or nodes out of pruning")]
pub struct Args {
    /// The ONNX model file.
    pub model: PathBuf,
    /// Write the group description as JSON to this file (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the dependency graph in Graphviz dot format to this file.
    #[arg(long, value_name = "FILE")]
    pub dot: Option<PathBuf>,
    /// Render the dependency graph to SVG with Graphviz's `dot`.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Mark the group(s) of this initializer or node unprunable (repeatable).
    #[arg(long, value_name = "NAME")]
    pub unprunable: Vec<String>,
}

/// Runs `oto analyze`.
pub fn run(args: &Args) -> Result<()> {
    let (model, _) = crate::model_file::load_model(&args.model)?;
    check_names(&model, &args.unprunable)?;
    let started = std::time::Instant::now();
    let analysis = analyze(&model, &AnalyzeOptions { unprunable: args.unprunable.clone() }).map_err(input_error)?;
    tracing::info!("analysis took {:?}", started.elapsed());
    let to_stdout = args.json.as_deref() == Some(Path::new("-"));
    if !to_stdout {
        print!("{}", analysis.table());
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&analysis)?;
        if to_stdout {
            println!("{json}");
        } else {
            write_atomic(path, json.as_bytes())?;
            eprintln!("wrote {}", path.display());
        }
    }
    if args.dot.is_some() || args.svg.is_some() {
        let dot = analysis.to_dot(&Graph::new(&model).map_err(input_error)?);
        if let Some(path) = &args.dot {
            write_atomic(path, dot.as_bytes())?;
            eprintln!("wrote {}", path.display());
        }
        if let Some(path) = &args.svg {
            write_atomic(path, &render_svg(&dot)?)?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

/// Every `--unprunable` name must exist, or the user's intent silently does nothing.
fn check_names(model: &Model, names: &[String]) -> Result<()> {
    let Some(graph) = &model.proto.graph else { return Ok(()) };
    for name in names {
        let known =
            graph.initializer.iter().any(|t| t.name.as_deref() == Some(name)) || graph.node.iter().any(|n| n.name.as_deref() == Some(name));
        if !known {
            return Err(input_error(anyhow::anyhow!(
                "--unprunable {name:?}: no initializer or node of {} has that name",
                model.path().display()
            )));
        }
    }
    Ok(())
}

/// Runs Graphviz's `dot -Tsvg` on the dot text.
fn render_svg(dot: &str) -> Result<Vec<u8>> {
    use std::io::Write;
    let child = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(input_error(anyhow::anyhow!(
                "--svg needs Graphviz's `dot` program, which is not installed (e.g. `apt-get install graphviz`); \
                 or write the dot file with --dot and render it elsewhere"
            )))
        }
        Err(e) => return Err(e).context("cannot start Graphviz's `dot`"),
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(dot.as_bytes()).context("cannot send the graph to `dot`")?;
    }
    let out = child.wait_with_output().context("`dot` failed")?;
    if !out.status.success() {
        anyhow::bail!("`dot -Tsvg` failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out.stdout)
}
