//! Reading the user's model file, the one way every command and the job do it.

use crate::error::input_error;
use anyhow::Result;
use oto_onnx::normalize::{NormalizeOptions, Summary};
use oto_onnx::rng::SplitMix64;
use oto_onnx::shape::Shapes;
use oto_onnx::{DType, Dim, Graph, Model, NodeExt, Tensor, TensorData};
use std::collections::HashMap;
use std::path::Path;

/// Reads a model the way every command does: loaded, then normalized
/// ([`oto_onnx::normalize`]); what normalization rewrote is logged at `-v`. A fixed batch
/// made symbolic is checked in onnxruntime ([`symbolic_batch_agrees`]); where the model then
/// computes something else, it is normalized again keeping its batch, and the summary says
/// why. Errors are input errors (exit code 2).
pub fn load_model(path: &Path) -> anyhow::Result<(Model, Summary)> {
    let (model, summary) = oto_onnx::normalize::load(path).map_err(input_error)?;
    if let Some(inputs) = weights_as_inputs(&model)? {
        return Err(input_error(anyhow::anyhow!(
            "{}: the file holds no weights: its layers read them from the graph inputs {inputs}, as `torch.onnx.export(..., \
             export_params=False)` writes them; export the model with its weights",
            path.display()
        )));
    }
    let (model, summary) = if summary.batch_symbolic {
        // The file as written, read again: only files of a fixed batch pay for it.
        let original = Model::load(path).map_err(input_error)?;
        match symbolic_batch_agrees(&original, &model, &summary) {
            Ok(()) => (model, summary),
            Err(why) => {
                let keep = NormalizeOptions { keep_fixed_batch: Some(why), ..Default::default() };
                oto_onnx::normalize::normalize(original, &keep).map_err(input_error)?
            }
        }
    } else {
        (model, summary)
    };
    tracing::info!("{}: normalized: {summary}", path.display());
    Ok((model, summary))
}

/// The graph inputs that layers read as their weights (a kernel, a bias, a normalization's
/// scale), named for a message, when the file has no float weight of its own: a model
/// exported without its parameters. `None` for a model with weights.
fn weights_as_inputs(model: &Model) -> Result<Option<String>> {
    // Every file with a weight returns here, before a graph view is built.
    let has_weights = model
        .proto
        .graph
        .iter()
        .flat_map(|g| &g.initializer)
        .any(|t| DType::from_onnx(t.data_type.unwrap_or(0)).is_some_and(DType::is_float) && t.dims.iter().product::<i64>() > 1);
    if has_weights {
        return Ok(None);
    }
    let graph = Graph::new(model)?;
    let inputs: std::collections::HashSet<&str> = graph.real_inputs().filter_map(|v| v.name.as_deref()).collect();
    let mut read: Vec<&str> = Vec::new();
    for (_, node) in graph.nodes() {
        let Ok(op) = oto_onnx::op::Op::parse(&graph, node) else { continue };
        // A MatMul or Einsum of two inputs, or a Gemm's first operand, reads activations.
        let activations = matches!(op, oto_onnx::op::Op::MatMul { .. } | oto_onnx::op::Op::Einsum);
        for (k, i) in node.input.iter().enumerate() {
            let weight = op.reads_learned(k) && !activations && !(k == 0 && matches!(op, oto_onnx::op::Op::Gemm(_)));
            if weight && inputs.contains(i.as_str()) && !read.contains(&i.as_str()) {
                read.push(i);
            }
        }
    }
    Ok(match read.as_slice() {
        [] => None,
        names => {
            let shown: Vec<String> = names.iter().take(3).map(|n| format!("'{n}'")).collect();
            let more = if names.len() > 3 { format!(" (+{} more)", names.len() - 3) } else { String::new() };
            Some(format!("{}{more}", shown.join(", ")))
        }
    })
}

/// Samples compared by [`symbolic_batch_agrees`], each run alone at the file's batch.
const BATCH_CHECK_RUNS: u64 = 2;

/// Whether `normalized`, whose fixed batch `N` normalization made symbolic, computes at a
/// batch of `2 N` what `original` computes on each half at its own batch `N`, in
/// onnxruntime on random inputs: the symbolic batch must not mix samples (a Reshape
/// merging the batch with another axis can be written two ways that differ only in
/// values). `Err` says how it differs; a model onnxruntime cannot run on random inputs
/// (or no onnxruntime) is not judged here.
pub fn symbolic_batch_agrees(original: &Model, normalized: &Model, summary: &Summary) -> std::result::Result<(), String> {
    let (true, Some(n)) = (summary.batch_symbolic, summary.fixed_batch) else { return Ok(()) };
    let Ok(n) = usize::try_from(n) else { return Ok(()) };
    let check = || -> Result<Option<String>> {
        let graph = Graph::new(original)?;
        let shapes = oto_onnx::shape::infer(&graph)?;
        let mut rng = SplitMix64::new(0x0b47c4);
        let mut halves = Vec::new();
        for _ in 0..BATCH_CHECK_RUNS {
            let inputs = random_inputs(&graph, &shapes, &mut rng, &HashMap::new())?;
            let outputs = crate::job::verify::run_model(original, &inputs)?;
            halves.push((inputs, outputs));
        }
        let joined: Vec<(String, Tensor)> = halves[0]
            .0
            .iter()
            .enumerate()
            .map(|(k, (name, _))| -> Result<(String, Tensor)> {
                let parts: Vec<&Tensor> = halves.iter().map(|(inputs, _)| &inputs[k].1).collect();
                Ok((name.clone(), Tensor::concat_first(&parts).map_err(anyhow::Error::msg)?))
            })
            .collect::<Result<_>>()?;
        let together = crate::job::verify::run_model(normalized, &joined)?;
        for (k, (name, whole)) in together.iter().enumerate() {
            let parts: Vec<&Tensor> = halves.iter().filter_map(|(_, outputs)| outputs.get(k).map(|(_, t)| t)).collect();
            let expected = Tensor::concat_first(&parts).map_err(anyhow::Error::msg)?;
            let (diff, largest) = crate::job::verify::compare_outputs(&[(name.clone(), expected)], &[(name.clone(), whole.clone())])?;
            if diff > crate::job::verify::tolerance(largest) {
                return Ok(Some(format!(
                    "with the batch symbolic, output '{name}' at a batch of {} differs from the file's own results at its batch {n} by {diff:.3e}",
                    n * BATCH_CHECK_RUNS as usize
                )));
            }
        }
        Ok(None)
    };
    match check() {
        Ok(Some(why)) => Err(why),
        Ok(None) => Ok(()),
        Err(e) => {
            tracing::debug!("the symbolic batch was not checked in onnxruntime: {e:#}");
            Ok(())
        }
    }
}

/// The layers of a quantized `model` ([`oto_onnx::op::quantized_layers`]) as a message
/// says them ("node 'a' (ConvInteger) and 3 more compute"), or `None` for a float model.
pub fn quantized_layers(model: &oto_onnx::Model) -> Option<String> {
    let layers = oto_onnx::Graph::new(model).map(|g| oto_onnx::op::quantized_layers(&g)).unwrap_or_default();
    let (first, rest) = layers.split_first()?;
    Some(match rest.len() {
        0 => format!("{first} computes"),
        n => format!("{first} and {n} more compute"),
    })
}

/// A file whose fixed batch normalization had to keep (making it symbolic would not be
/// exact, [`Summary::batch_kept`] says why) runs only on batches of exactly that size:
/// an input error naming the batch and the reason when `batch` differs, or always when
/// `batch` is `None` (a command that needs batches of other sizes, such as training with
/// its evaluations).
pub fn check_fixed_batch(path: &Path, summary: &Summary, batch: Option<usize>) -> anyhow::Result<()> {
    let (Some(n), Some(why)) = (summary.fixed_batch, &summary.batch_kept) else {
        return Ok(());
    };
    if batch.is_some_and(|b| i64::try_from(b).is_ok_and(|b| b == n)) {
        return Ok(());
    }
    let fix = match batch {
        Some(_) => format!("run with --batch-size {n} on a number of samples that is a multiple of {n}"),
        None => "export the model with a dynamic batch axis".to_string(),
    };
    Err(input_error(anyhow::anyhow!("{}: the model fixes its batch at {n} and it cannot be made any batch ({why}); {fix}", path.display())))
}

/// Most elements of one random input (1 GiB of float32); larger dimensions in a model
/// file are refused rather than allocated.
const MAX_INPUT_ELEMENTS: usize = 1 << 28;

/// Random inputs of the right dtypes and shapes: every dimension evaluated at the symbol
/// sizes `sizes` (`oto check` gives every symbol a size); integer inputs that index an embedding stay
/// inside it, other integer inputs (masks) are 0 or 1.
pub fn random_inputs(
    graph: &Graph<'_>,
    shapes: &Shapes,
    rng: &mut SplitMix64,
    sizes: &HashMap<String, i64>,
) -> Result<Vec<(String, Tensor)>> {
    let model = graph.model.path().display();
    let mut out = Vec::new();
    for input in graph.real_inputs() {
        let name = input.name.clone().unwrap_or_default();
        let dims = shapes.shape(&name).ok_or_else(|| input_error(anyhow::anyhow!("{model}: graph input '{name}' has no known shape")))?;
        let too_large = |what: String| {
            input_error(anyhow::anyhow!("{model}: graph input '{name}': {what}; random inputs have at most {MAX_INPUT_ELEMENTS} elements"))
        };
        let mut shape = Vec::with_capacity(dims.len());
        for (i, d) in dims.iter().enumerate() {
            let at = || {
                let bound: Vec<String> =
                    d.symbols().iter().map(|s| format!("{s}={}", sizes.get(*s).map_or("?".to_string(), i64::to_string))).collect();
                bound.join(", ")
            };
            let size = d.eval(sizes).ok_or_else(|| too_large(format!("dimension {i} is {d}, which overflows at {}", at())))?;
            let size = usize::try_from(size).map_err(|_| {
                input_error(anyhow::anyhow!(
                    "{model}: graph input '{name}': dimension {i} is {d}, which is {size} at {}; give its symbols other sizes with --dim NAME=SIZE",
                    at()
                ))
            })?;
            shape.push(size);
        }
        let n = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).filter(|&n| n <= MAX_INPUT_ELEMENTS).ok_or_else(|| {
            let declared: Vec<String> = dims.iter().map(Dim::to_string).collect();
            let bound = if dims.iter().all(|d| d.known().is_some()) { String::new() } else { format!(" (generated as {shape:?})") };
            too_large(format!("shape [{}]{bound} has too many elements", declared.join(", ")))
        })?;
        let dtype = shapes.dtype(&name).unwrap_or(DType::F32);
        let data = match dtype {
            DType::F32 => TensorData::F32((0..n).map(|_| (2.0 * rng.unit() - 1.0) as f32).collect()),
            DType::F64 => TensorData::F64((0..n).map(|_| 2.0 * rng.unit() - 1.0).collect()),
            // Half-precision models (exported after `.half()`, or converted to float16).
            DType::F16 => TensorData::F16((0..n).map(|_| half::f16::from_f64(2.0 * rng.unit() - 1.0)).collect()),
            DType::Bf16 => TensorData::Bf16((0..n).map(|_| half::bf16::from_f64(2.0 * rng.unit() - 1.0)).collect()),
            DType::I64 | DType::I32 => {
                let limit = index_limit(graph, &name).unwrap_or(2);
                let v: Vec<i64> = (0..n).map(|_| rng.below(limit) as i64).collect();
                if dtype == DType::I64 {
                    TensorData::I64(v)
                } else {
                    TensorData::I32(v.into_iter().map(|x| x as i32).collect())
                }
            }
            DType::Bool => TensorData::Bool((0..n).map(|_| rng.below(2) == 1).collect()),
            other => {
                return Err(input_error(anyhow::anyhow!("graph input '{name}' has type {other:?}, for which no random input is generated")))
            }
        };
        out.push((name, Tensor { shape, data }));
    }
    Ok(out)
}

/// Rows of the embedding that an integer input indexes (through `Gather`, possibly
/// after a `Cast`), so random token ids stay valid.
fn index_limit(graph: &Graph<'_>, value: &str) -> Option<u64> {
    for u in graph.consumers(value) {
        let node = graph.node(u.node);
        match node.op() {
            "Gather" if u.input == 1 => {
                let table = graph.initializer(node.input.first()?)?;
                let rows = *table.dims.first()?;
                return u64::try_from(rows).ok();
            }
            "Cast" => {
                if let Some(limit) = node.output.first().and_then(|o| index_limit(graph, o)) {
                    return Some(limit);
                }
            }
            _ => {}
        }
    }
    None
}
