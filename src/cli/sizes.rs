//! The sizes of a model's symbolic input axes that the file and its folder give, for the
//! commands that need numbers for them (`oto check`'s random inputs, `oto inspect`'s
//! MACs): the channels a Conv fixes, the image size of a `preprocessor_config.json`
//! beside the model, and the user's `--dim NAME=SIZE`.

use crate::error::input_error;
use anyhow::Result;
use oto_onnx::shape::Shapes;
use oto_onnx::{DType, Dim, Graph};
use std::collections::{BTreeMap, HashSet};

/// The sizes given by the file, its folder and `--dim` (`dims`), by symbol; `--dim` wins.
pub(crate) fn given_sizes(graph: &Graph<'_>, shapes: &Shapes, model: &std::path::Path, dims: &[String]) -> Result<BTreeMap<String, i64>> {
    let mut sizes = conv_channels(graph, shapes);
    sizes.extend(preprocessor_sizes(graph, shapes, model)?);
    sizes.extend(parse_dims(dims, graph, shapes)?);
    Ok(sizes)
}

/// Sizes the graph fixes exactly: the symbolic channel axis (1) of an input read as
/// input 0 of a `Conv` whose weight is an initializer is the weight's input channels
/// times the groups, also through the element-wise steps before it (a `Cast` to the
/// model's float type, a normalization by per-channel mean and deviation) and a `Pad`
/// of the borders.
pub(crate) fn conv_channels(graph: &Graph<'_>, shapes: &Shapes) -> BTreeMap<String, i64> {
    use oto_onnx::op::Op;
    let mut out = BTreeMap::new();
    for input in graph.real_inputs() {
        let Some(name) = input.name.as_deref() else { continue };
        let Some(axis) = shapes.shape(name).and_then(|d| d.get(1)).and_then(Dim::as_symbol) else { continue };
        let rank = shapes.shape(name).map_or(0, <[Dim]>::len);
        // Values that hold the input's channels on axis 1 (same rank, element-wise).
        let mut todo = vec![name.to_string()];
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(value) = todo.pop() {
            if !seen.insert(value.clone()) || seen.len() > 64 {
                continue;
            }
            for u in graph.consumers(&value) {
                let node = graph.node(u.node);
                let Ok(op) = Op::parse(graph, node) else { continue };
                match op {
                    Op::Conv(conv) if u.input == 0 && !conv.integer => {
                        let Some(w) = node.input.get(1).and_then(|w| graph.initializer(w)) else { continue };
                        if let Some(channels) = w.dims.get(1).and_then(|&c| c.checked_mul(conv.group)).filter(|&c| c > 0) {
                            out.insert(axis.to_string(), channels);
                        }
                    }
                    Op::Cast { .. } | Op::Unary(_) | Op::Binary(_) => {
                        if let Some(o) = node.output.first().filter(|o| shapes.shape(o).map(<[Dim]>::len) == Some(rank)) {
                            todo.push(o.clone());
                        }
                    }
                    // Padding of the borders (EfficientNet's before its first Conv).
                    Op::Pad(_) if u.input == 0 => {
                        let channels = |v: &str| shapes.shape(v).and_then(|d| d.get(1)).cloned();
                        let kept = |o: &&String| channels(o).is_some() && channels(o) == channels(&value);
                        if let Some(o) = node.output.first().filter(kept) {
                            todo.push(o.clone());
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

/// Image sizes the model's preprocessor gives: the symbolic height and width (axes 2 and
/// 3) of an input `[N, C, H, W]` take the size of the `preprocessor_config.json` beside
/// the model (what `--images` resizes to), when there is one.
pub(crate) fn preprocessor_sizes(graph: &Graph<'_>, shapes: &Shapes, model: &std::path::Path) -> Result<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    for input in graph.real_inputs() {
        let Some(name) = input.name.as_deref() else { continue };
        let Some([_, _, height, width]) = shapes.shape(name) else { continue };
        let (Some(height), Some(width)) = (height.as_symbol(), width.as_symbol()) else { continue };
        let symbolic =
            oto_torch::exec::GraphInput { name: name.to_string(), dtype: DType::F32, dims: Some(vec![None; 4]), cache_axis: None };
        let sized = oto_torch::data::images::size_from_preprocessor(&symbolic, model).map_err(input_error)?;
        if let Some([_, _, Some(h), Some(w)]) = sized.as_ref().and_then(|s| s.dims.as_deref()) {
            out.insert(height.to_string(), *h);
            out.insert(width.to_string(), *w);
        }
    }
    out.extend(spectrogram_sizes(graph, shapes, model)?);
    Ok(out)
}

/// Spectrogram sizes the model's feature extractor gives: the symbolic mel bins and frames
/// (axes 1 and 2) of an input `[N, bins, frames]` take `feature_size` and `nb_max_frames`
/// of the `preprocessor_config.json` beside the model (Whisper's: 80 and 3,000, which its
/// encoder's position table fixes), when it has both.
fn spectrogram_sizes(graph: &Graph<'_>, shapes: &Shapes, model: &std::path::Path) -> Result<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    let inputs: Vec<(&str, &[Dim])> = graph
        .real_inputs()
        .filter_map(|v| v.name.as_deref())
        .filter_map(|n| Some((n, shapes.shape(n)?)))
        .filter(|(_, d)| d.len() == 3 && d[2].as_symbol().is_some())
        .collect();
    if inputs.is_empty() {
        return Ok(out);
    }
    let path = model.parent().unwrap_or(std::path::Path::new(".")).join("preprocessor_config.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(out) };
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| input_error(anyhow::anyhow!("{}: not JSON: {e}", path.display())))?;
    let size = |key: &str| config[key].as_i64().filter(|&v| v > 0);
    let (Some(bins), Some(frames)) = (size("feature_size"), size("nb_max_frames")) else { return Ok(out) };
    for (_, dims) in inputs {
        if dims[1].as_symbol().is_none() && dims[1] != Dim::Known(bins) {
            continue;
        }
        if let Some(symbol) = dims[1].as_symbol() {
            out.insert(symbol.to_string(), bins);
        }
        if let Some(symbol) = dims[2].as_symbol() {
            out.insert(symbol.to_string(), frames);
        }
    }
    Ok(out)
}

/// `--dim NAME=SIZE` values, each naming a symbol of the graph inputs' shapes (a whole
/// axis such as `height`, or one inside a sum such as `past` of `past + seq`).
pub(crate) fn parse_dims(given: &[String], graph: &Graph<'_>, shapes: &Shapes) -> Result<BTreeMap<String, i64>> {
    let mut symbols: Vec<String> = Vec::new();
    for d in graph.real_inputs().filter_map(|v| shapes.shape(v.name.as_deref()?)).flatten() {
        for symbol in d.symbols() {
            if !symbols.iter().any(|s| s == symbol) {
                symbols.push(symbol.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    for g in given {
        let parsed = g.split_once('=').and_then(|(n, v)| Some((n.trim().to_string(), v.trim().parse::<i64>().ok().filter(|&v| v > 0)?)));
        let (name, size) = parsed.ok_or_else(|| input_error(anyhow::anyhow!("--dim {g}: expected NAME=SIZE with a positive SIZE")))?;
        if !symbols.contains(&name) {
            return Err(input_error(anyhow::anyhow!(
                "--dim {g}: '{name}' is not a symbolic axis of the model's inputs (they have: {})",
                symbols.join(", ")
            )));
        }
        out.insert(name, size);
    }
    Ok(out)
}
