//! Raw text as training and evaluation data: one example per line (optionally a tab and
//! an integer label), or JSON Lines with a text field and an optional label field,
//! tokenized by a Hugging Face `tokenizer.json` (found beside the model when not given),
//! padded and truncated to a fixed length. The graph inputs are filled by their names:
//! `input_ids`, `attention_mask`, `token_type_ids` and `position_ids`, in the element type
//! the graph declares.

use crate::error::{Error, Result};
use crate::exec::GraphInput;
use oto_onnx::{DType, Model, Tensor as OnnxTensor, TensorData};
use std::path::{Path, PathBuf};
use tokenizers::{PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// Sequence length when neither the option, the graph, nor the tokenizer's files give one.
pub const DEFAULT_MAX_LENGTH: usize = 128;

/// How a text file is read and tokenized.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct TextOptions {
    /// The `tokenizer.json`; `None`: the one beside the model.
    pub tokenizer: Option<PathBuf>,
    /// The JSON Lines field holding the text [default: `text`].
    pub text_field: Option<String>,
    /// The JSON Lines field holding the integer label [default: `label`]; lines without it
    /// make the data unlabeled (all lines must agree).
    pub label_field: Option<String>,
    /// Tokens per example (padded and truncated) [default: the graph's fixed sequence
    /// length, else the tokenizer's, else `tokenizer_config.json`'s `model_max_length`, else 128].
    pub max_length: Option<usize>,
}

/// One example: its text and label, with the line it came from.
struct Example {
    line: usize,
    text: String,
    label: Option<i64>,
}

/// Reads the examples of `path`: JSON Lines when the file ends in `.jsonl` or `.json`,
/// else one example per line with an optional tab-separated integer label. Blank lines
/// are skipped. Every line must agree on having a label or not.
fn read_examples(path: &Path, options: &TextOptions) -> Result<Vec<Example>> {
    let data_error = |message: String| Error::Data { path: path.to_path_buf(), message };
    let text = std::fs::read_to_string(path).map_err(|e| data_error(format!("cannot read: {e}")))?;
    let jsonl = matches!(path.extension().and_then(|e| e.to_str()), Some("jsonl" | "json"));
    let text_field = options.text_field.as_deref().unwrap_or("text");
    let label_field = options.label_field.as_deref().unwrap_or("label");
    let mut examples = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let at = |message: String| data_error(format!("line {line}: {message}"));
        let example = if jsonl {
            let value: serde_json::Value = serde_json::from_str(raw).map_err(|e| at(format!("not a JSON object: {e}")))?;
            let object = value.as_object().ok_or_else(|| at("not a JSON object".into()))?;
            let text = object.get(text_field).ok_or_else(|| {
                let keys: Vec<&str> = object.keys().map(String::as_str).collect();
                at(format!("no field '{text_field}' (the line has: {}); choose the field with --text-field", keys.join(", ")))
            })?;
            let text = text.as_str().ok_or_else(|| at(format!("field '{text_field}' is not a string")))?.to_string();
            let label = match object.get(label_field) {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => Some(v.as_i64().ok_or_else(|| at(format!("field '{label_field}' is not an integer class label: {v}")))?),
            };
            Example { line, text, label }
        } else {
            match raw.split_once('\t') {
                Some((text, label)) => {
                    let label = label
                        .trim()
                        .parse::<i64>()
                        .map_err(|_| at(format!("the second tab-separated column '{}' is not an integer class label", label.trim())))?;
                    Example { line, text: text.to_string(), label: Some(label) }
                }
                None => Example { line, text: raw.to_string(), label: None },
            }
        };
        if let Some(first) = examples.first().map(|e: &Example| e.label.is_some()) {
            if first != example.label.is_some() {
                let what = if jsonl { format!("field '{label_field}'") } else { "label column".to_string() };
                return Err(at(format!(
                    "{} {what}, but line {} {}: either every example has a label or none has",
                    if example.label.is_some() { "has a" } else { "has no" },
                    examples.first().map_or(0, |e: &Example| e.line),
                    if first { "has one" } else { "has none" }
                )));
            }
        }
        examples.push(example);
    }
    if examples.is_empty() {
        return Err(data_error("the file has no examples (no non-blank lines)".into()));
    }
    Ok(examples)
}

/// The tokenizer file to use: the option, else `tokenizer.json` beside the model.
pub fn tokenizer_path(options: &TextOptions, model: &Path) -> Result<PathBuf> {
    if let Some(path) = &options.tokenizer {
        return Ok(path.clone());
    }
    let beside = model.parent().unwrap_or(Path::new(".")).join("tokenizer.json");
    if beside.is_file() {
        return Ok(beside);
    }
    Err(Error::Config(format!(
        "text data needs a tokenizer: no tokenizer.json beside {}; give --tokenizer tokenizer.json",
        model.display()
    )))
}

/// The number of rows of the embedding table that `input` indexes (a `Gather` of an
/// initializer by the input, possibly through a `Cast`), if the graph has one.
pub fn embedding_rows(model: &Model, input: &str) -> Option<usize> {
    let graph = oto_onnx::Graph::new(model).ok()?;
    let mut values = vec![input.to_string()];
    while let Some(value) = values.pop() {
        for u in graph.consumers(&value) {
            let node = graph.node(u.node);
            match node.op_type.as_deref() {
                Some("Gather") if u.input == 1 => {
                    let table = graph.initializer(node.input.first()?)?;
                    return usize::try_from(*table.dims.first()?).ok();
                }
                Some("Cast") => values.extend(node.output.first().cloned()),
                _ => {}
            }
        }
    }
    None
}

/// The sequence length: the option, the graph's fixed sequence axis, the tokenizer's
/// truncation, `tokenizer_config.json`'s `model_max_length`, else [`DEFAULT_MAX_LENGTH`].
fn max_length(options: &TextOptions, tokenizer: &Tokenizer, tokenizer_file: &Path, inputs: &[GraphInput]) -> usize {
    if let Some(n) = options.max_length {
        return n;
    }
    let fixed = inputs.iter().filter_map(|i| i.dims.as_ref()?.get(1).copied().flatten()).find_map(|d| usize::try_from(d).ok());
    let config = || -> Option<usize> {
        let path = tokenizer_file.parent()?.join("tokenizer_config.json");
        let value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
        // Tokenizers without a limit store a huge sentinel (1e30).
        value.get("model_max_length")?.as_u64().filter(|&n| n <= 1 << 20).and_then(|n| usize::try_from(n).ok())
    };
    fixed.or_else(|| tokenizer.get_truncation().map(|t| t.max_length)).or_else(config).unwrap_or(DEFAULT_MAX_LENGTH)
}

/// The padding id: the tokenizer's own padding, else its `[PAD]`/`<pad>` token, else 0.
fn pad_token(tokenizer: &Tokenizer) -> (u32, String) {
    if let Some(p) = tokenizer.get_padding() {
        return (p.pad_id, p.pad_token.clone());
    }
    for token in ["[PAD]", "<pad>", "<|pad|>"] {
        if let Some(id) = tokenizer.token_to_id(token) {
            return (id, token.to_string());
        }
    }
    (0, tokenizer.id_to_token(0).unwrap_or_default())
}

/// Reads and tokenizes the text file `path` for `model` with graph inputs `inputs` (the
/// model's file locates the default tokenizer, its embedding table bounds the
/// vocabulary): arrays named like the graph inputs, plus `labels` when the lines have them.
pub fn read_text(path: &Path, options: &TextOptions, model: &Model, inputs: &[GraphInput]) -> Result<Vec<(String, OnnxTensor)>> {
    let model_path = model.path();
    let data_error = |message: String| Error::Data { path: path.to_path_buf(), message };
    let tokenizer_file = tokenizer_path(options, model_path)?;
    let tok_error = |message: String| Error::Data { path: tokenizer_file.clone(), message };
    let mut tokenizer = Tokenizer::from_file(&tokenizer_file).map_err(|e| tok_error(format!("not a tokenizer.json: {e}")))?;
    if let Some(rows) = inputs.iter().find(|i| i.name == "input_ids").and_then(|_| embedding_rows(model, "input_ids")) {
        let vocab = tokenizer.get_vocab_size(true);
        if vocab > rows {
            return Err(tok_error(format!(
                "the tokenizer has {vocab} tokens but the model's embedding table has {rows} rows: this tokenizer does not belong to {}",
                model_path.display()
            )));
        }
    }
    let length = max_length(options, &tokenizer, &tokenizer_file, inputs);
    if length == 0 {
        return Err(Error::Config("--max-length must be at least 1".into()));
    }
    let (pad_id, pad_token) = pad_token(&tokenizer);
    tokenizer
        .with_truncation(Some(TruncationParams { max_length: length, ..TruncationParams::default() }))
        .map_err(|e| tok_error(format!("cannot truncate to {length} tokens: {e}")))?;
    tokenizer.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::Fixed(length),
        direction: PaddingDirection::Right,
        pad_id,
        pad_token,
        ..PaddingParams::default()
    }));
    let examples = read_examples(path, options)?;
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let encodings = tokenizer.encode_batch(texts, true).map_err(|e| data_error(format!("tokenizing: {e}")))?;
    let n = encodings.len();
    let mut arrays = Vec::new();
    // A key/value cache's past is left out: the dataset feeds it empty.
    for input in inputs.iter().filter(|i| i.cache_axis.is_none()) {
        let values: Vec<i64> = match input.name.as_str() {
            "input_ids" => encodings.iter().flat_map(|e| e.get_ids().iter().map(|&v| i64::from(v))).collect(),
            "attention_mask" => encodings.iter().flat_map(|e| e.get_attention_mask().iter().map(|&v| i64::from(v))).collect(),
            "token_type_ids" => encodings.iter().flat_map(|e| e.get_type_ids().iter().map(|&v| i64::from(v))).collect(),
            "position_ids" => (0..n).flat_map(|_| 0..length as i64).collect(),
            other => {
                return Err(data_error(format!(
                "model input '{other}' cannot be filled from text (oto fills input_ids, attention_mask, token_type_ids and position_ids, and a key/value cache's past empty)"
            )))
            }
        };
        let data = match input.dtype {
            DType::I64 => TensorData::I64(values),
            DType::I32 => TensorData::I32(values.into_iter().map(|v| v as i32).collect()),
            other => return Err(data_error(format!("model input '{}' has element type {other:?}; text fills integer inputs", input.name))),
        };
        let tensor =
            OnnxTensor::new(vec![n, length], data).ok_or_else(|| data_error(format!("input '{}': inconsistent sizes", input.name)))?;
        arrays.push((input.name.clone(), tensor));
    }
    if examples.first().is_some_and(|e| e.label.is_some()) {
        let labels: Vec<i64> = examples.iter().map(|e| e.label.unwrap_or(0)).collect();
        arrays.push(("labels".to_string(), OnnxTensor { shape: vec![n], data: TensorData::I64(labels) }));
    }
    Ok(arrays)
}
