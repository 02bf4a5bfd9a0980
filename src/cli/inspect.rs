//! `oto inspect`: what a model is, at a glance or as JSON.

use crate::error::input_error;
use anyhow::Result;
use oto_onnx::cost::{self, MacsEstimate, ParamCount};
use oto_onnx::shape::{self, Shapes};
use oto_onnx::{DType, Dim, Graph, NodeExt};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Arguments of `oto inspect`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  oto inspect resnet18.onnx
      inputs and outputs (the batch axis by its symbolic name), opsets, operators,
      parameter count and MACs per batch element
  oto inspect bert.onnx --json | jq .parameters
      the same as one JSON object on stdout

The model is described as oto reads it, after normalization (Constant nodes and constant
subgraphs folded into initializers, Sum written as Add...): the `normalized` line says
what that changed.
MACs count Conv, ConvTranspose, Gemm and MatMul with the batch axis set to 1; the
symbolic axes of integer inputs (a transformer's sequence length) are set to 1 too, so
that a language model's MACs are per token, and the output names them. Other symbolic
axes (an image's height and width) take the size --dim gives, or the preprocessor's;
the output names them too, and counts the nodes left out when they have none.
Parameters are the elements of floating-point initializers, without BatchNormalization
running statistics and scalar constants.")]
pub struct Args {
    /// The ONNX model file.
    pub model: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Size of a symbol of the input shapes for the MACs, by its name (repeatable), e.g.
    /// `--dim height=224`; an image size also comes from a preprocessor_config.json beside
    /// the model
    #[arg(long = "dim", value_name = "NAME=SIZE")]
    pub dims: Vec<String>,
}

/// Everything `inspect` reports.
struct Summary {
    file: PathBuf,
    file_size: u64,
    ir_version: i64,
    producer: String,
    opsets: BTreeMap<String, i64>,
    inputs: Vec<Io>,
    outputs: Vec<Io>,
    nodes: usize,
    operators: BTreeMap<String, usize>,
    params: ParamCount,
    macs: MacsEstimate,
    /// The sizes the MACs take for symbolic input axes (--dim, the preprocessor, a Conv).
    macs_sizes: BTreeMap<String, i64>,
    /// What normalization rewrote (the counts describe the file; the rest, the model as oto reads it).
    normalized: oto_onnx::normalize::Summary,
}

/// A graph input or output.
struct Io {
    name: String,
    dtype: Option<DType>,
    shape: Option<Vec<Dim>>,
}

/// NumPy's name of an element type (the one users see in their data files).
fn dtype_name(d: Option<DType>) -> &'static str {
    match d {
        Some(DType::F32) => "float32",
        Some(DType::F16) => "float16",
        Some(DType::Bf16) => "bfloat16",
        Some(DType::F64) => "float64",
        Some(DType::I64) => "int64",
        Some(DType::I32) => "int32",
        Some(DType::I8) => "int8",
        Some(DType::U8) => "uint8",
        Some(DType::Bool) => "bool",
        None => "?",
    }
}

fn summarize(path: &std::path::Path, dims: &[String]) -> Result<Summary> {
    let file_size = std::fs::metadata(path).map_err(|e| input_error(anyhow::anyhow!("{}: cannot read: {e}", path.display())))?.len();
    let (model, normalized) = crate::model_file::load_model(path)?;
    let graph = Graph::new(&model).map_err(input_error)?;
    let started = std::time::Instant::now();
    let shapes: Shapes = shape::infer(&graph).map_err(input_error)?;
    tracing::debug!("shape inference took {:?}", started.elapsed());
    let mut macs_sizes = super::sizes::given_sizes(&graph, &shapes, path, dims)?;
    let macs = cost::macs_given(&graph, &shapes, &macs_sizes.iter().map(|(k, v)| (k.clone(), *v)).collect());
    // The batch and sequence axes count 1 (per element, per token) whatever is given.
    let per_element = cost::batch_symbols(&graph, &shapes);
    macs_sizes.retain(|k, _| !per_element.contains(k) && !macs.sequence_symbols.contains(k));
    let io = |name: &str| Io { name: name.to_string(), dtype: shapes.dtype(name), shape: shapes.shape(name).map(<[Dim]>::to_vec) };
    let mut operators = BTreeMap::new();
    for node in &graph.proto.node {
        let domain = node.domain.as_deref().unwrap_or("");
        // oto's flattened If (a merged decoder) is the file's If; its branches' nodes count.
        let key = if oto_onnx::branches::is_branches(node) {
            "If".to_string()
        } else if domain.is_empty() || domain == "ai.onnx" {
            node.op().to_string()
        } else {
            format!("{domain}::{}", node.op())
        };
        *operators.entry(key).or_insert(0usize) += 1;
    }
    let opsets = model
        .proto
        .opset_import
        .iter()
        .filter(|o| o.domain.as_deref() != Some(oto_onnx::branches::DOMAIN))
        .map(|o| {
            let d = o.domain.as_deref().unwrap_or("");
            (if d.is_empty() { "ai.onnx".to_string() } else { d.to_string() }, o.version.unwrap_or(0))
        })
        .collect();
    let producer = [model.proto.producer_name.as_deref(), model.proto.producer_version.as_deref()]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Summary {
        file: path.to_path_buf(),
        file_size,
        // The file's IR version (normalization may raise 3 to 4).
        ir_version: normalized.ir_version_raised.map_or(model.proto.ir_version.unwrap_or(0), |(from, _)| from),
        producer,
        opsets,
        inputs: graph.real_inputs().filter_map(|v| v.name.as_deref()).map(io).collect(),
        outputs: graph.proto.output.iter().filter_map(|v| v.name.as_deref()).map(io).collect(),
        nodes: graph.proto.node.len(),
        operators,
        params: cost::parameter_count(&graph),
        macs,
        macs_sizes,
        normalized,
    })
}

/// Runs `oto inspect`.
pub fn run(args: &Args) -> Result<()> {
    let s = summarize(&args.model, &args.dims)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&s))?);
    } else {
        print!("{}", to_text(&s));
    }
    Ok(())
}

fn shape_json(shape: &Option<Vec<Dim>>) -> Value {
    match shape {
        Some(s) => Value::Array(
            s.iter()
                .map(|d| match d {
                    Dim::Known(v) => json!(v),
                    Dim::Sym(e) => json!(e.to_string()),
                })
                .collect(),
        ),
        None => Value::Null,
    }
}

fn to_json(s: &Summary) -> Value {
    let io = |v: &[Io]| -> Value {
        v.iter().map(|i| json!({"name": i.name, "dtype": dtype_name(i.dtype), "shape": shape_json(&i.shape)})).collect()
    };
    json!({
        "file": s.file.display().to_string(),
        "file_size": s.file_size,
        "ir_version": s.ir_version,
        "producer": s.producer,
        "opsets": s.opsets,
        "inputs": io(&s.inputs),
        "outputs": io(&s.outputs),
        "nodes": s.nodes,
        "operators": s.operators,
        "parameters": s.params.parameters,
        "parameter_tensors": s.params.tensors,
        "batchnorm_running_stats": s.params.running_stats,
        "macs": s.macs.total,
        "macs_by_op": s.macs.by_op,
        "macs_unresolved_nodes": s.macs.unresolved.len(),
        "macs_sizes": s.macs_sizes,
        "macs_sequence_symbols": s.macs.sequence_symbols.iter().map(|n| (n.clone(), json!(1))).collect::<serde_json::Map<String, Value>>(),
        "normalized": s.normalized,
    })
}

/// `11,181,642`.
fn thousands(v: u64) -> String {
    let digits: Vec<char> = v.to_string().chars().rev().collect();
    let groups: Vec<String> = digits.chunks(3).map(|c| c.iter().rev().collect()).collect();
    groups.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// `1.82 G`, `148.6 M`, `5.1 K`.
fn si(v: u64) -> String {
    let f = v as f64;
    match v {
        0..=999 => v.to_string(),
        1_000..=999_999 => format!("{:.1} K", f / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} M", f / 1e6),
        _ => format!("{:.2} G", f / 1e9),
    }
}

fn to_text(s: &Summary) -> String {
    use std::fmt::Write;
    let mut t = String::new();
    let shape = |i: &Io| i.shape.as_ref().map_or_else(|| "unknown shape".to_string(), |v| shape::fmt_shape(v));
    let width = s.inputs.iter().chain(&s.outputs).map(|i| i.name.len()).max().unwrap_or(0);
    let _ = writeln!(t, "model       {} ({:.2} MB)", s.file.display(), s.file_size as f64 / 1e6);
    let opsets: Vec<String> = s.opsets.iter().map(|(d, v)| format!("{d} {v}")).collect();
    let _ = writeln!(
        t,
        "format      IR version {}, opsets {}{}",
        s.ir_version,
        opsets.join(", "),
        if s.producer.is_empty() { String::new() } else { format!(", produced by {}", s.producer) }
    );
    let _ = writeln!(t, "normalized  {}", s.normalized);
    let _ = writeln!(t, "inputs");
    for i in &s.inputs {
        let _ = writeln!(t, "  {:width$}  {:8} {}", i.name, dtype_name(i.dtype), shape(i));
    }
    let _ = writeln!(t, "outputs");
    for i in &s.outputs {
        let _ = writeln!(t, "  {:width$}  {:8} {}", i.name, dtype_name(i.dtype), shape(i));
    }
    let _ = writeln!(t, "parameters  {} in {} tensors", thousands(s.params.parameters), s.params.tensors);
    if s.params.running_stats > 0 {
        let _ = writeln!(t, "            (plus {} BatchNormalization running statistics)", thousands(s.params.running_stats));
    }
    let by_op: Vec<String> = s.macs.by_op.iter().map(|(op, m)| format!("{op} {}", si(*m))).collect();
    let _ = writeln!(
        t,
        "MACs        {} ({}) per batch element{}{}{}",
        si(s.macs.total),
        thousands(s.macs.total),
        if s.macs.sequence_symbols.is_empty() {
            String::new()
        } else {
            let bound: Vec<String> = s.macs.sequence_symbols.iter().map(|n| format!("{n} = 1")).collect();
            format!(" and token ({})", bound.join(", "))
        },
        if s.macs_sizes.is_empty() {
            String::new()
        } else {
            let at: Vec<String> = s.macs_sizes.iter().map(|(n, v)| format!("{n} = {v}")).collect();
            format!(" at {}", at.join(", "))
        },
        if by_op.is_empty() { String::new() } else { format!(": {}", by_op.join(", ")) }
    );
    if !s.macs.unresolved.is_empty() {
        let _ = writeln!(
            t,
            "            ({} nodes left out: their shapes depend on a dynamic axis other than the batch)",
            s.macs.unresolved.len()
        );
    }
    let _ = writeln!(t, "operators   {} nodes", s.nodes);
    let mut ops: Vec<(&String, &usize)> = s.operators.iter().collect();
    ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let op_width = ops.iter().map(|(o, _)| o.len()).max().unwrap_or(0);
    for (op, n) in ops {
        let _ = writeln!(t, "  {op:op_width$}  {n:>5}");
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formatting() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(11_181_642), "11,181,642");
        assert_eq!(si(5_120), "5.1 K");
        assert_eq!(si(1_820_000_000), "1.82 G");
    }
}
