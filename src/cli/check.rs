//! `oto check`: zero random group elements, construct the compact model, and check
//! with onnxruntime that it computes what the zeroed full model computes.

use super::construct::load_or_analyze;
use crate::error::input_error;
use crate::job::verify;
use anyhow::{Context, Result};
use oto_graph::Analysis;
use oto_onnx::rng::SplitMix64;
use oto_onnx::shape::{self, Shapes};
use oto_onnx::{Dim, Graph, Model, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// Arguments of `oto check`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  oto check resnet18.onnx
      3 trials at 50% of every prunable group: zero, construct, compare in onnxruntime
  oto check bert.onnx --sparsity 0.9 --trials 5 --seed 7
  oto check model.onnx --groups groups.json
      check a saved group description (from `oto analyze --json`) instead of a fresh one
  oto check vit.onnx --dim height=32 --dim width=32
      sizes of symbolic input axes that the model fixes (an image size); without --dim
      they come from the preprocessor_config.json beside the model when there is one
      (a Hugging Face export: an image size, a spectrogram's bins and frames), the
      channels of an image read by a Conv from its weight, the batch from --batch, and
      other symbols get 4 (then 16, 32, 64, 224, 256 or 1024 if onnxruntime refuses the
      model at 4); an axis that is a sum such as `past_sequence_length + sequence_length`
      gets the sum of its symbols' sizes

Exit code 0 when every trial matches (max |difference| <= 1e-4 * max(1, max |output|)),
1 on a mismatch, 2 on bad input (including random inputs that onnxruntime refuses for
the full model: give the sizes with --dim; a merged decoder whose declared shapes do not
fit its cache branch runs that branch with an empty past, and a decoder with its cache
declared for one new token per call runs with one, and says so). A model that
makes discrete decisions on values (a detector's TopK of scores, a threshold,
NonMaxSuppression in an If) can decide a near tie differently after float rounding:
where the outputs differ, the compact model runs again given the full model's decisions,
and must then match on its outputs and on every value the decisions read.")]
pub struct Args {
    /// The ONNX model file.
    pub model: PathBuf,
    /// Share of each prunable group's elements to zero and remove (at least one is kept).
    #[arg(long, default_value_t = 0.5)]
    pub sparsity: f64,
    /// Number of random trials.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub trials: u64,
    /// Seed of the random choices and inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Batch size of the random inputs.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// Size of a symbol of the input shapes, by its name (repeatable); default 4, larger if the model refuses it (the batch: --batch).
    /// An axis such as `past + seq` gets the sum of the sizes of `past` and `seq`.
    #[arg(long = "dim", value_name = "NAME=SIZE")]
    pub dims: Vec<String>,
    /// The group description to check (JSON from `oto analyze --json`); default: analyze the model.
    #[arg(long, value_name = "FILE")]
    pub groups: Option<PathBuf>,
}

/// Runs `oto check`.
pub fn run(args: &Args) -> Result<()> {
    if !(0.0..1.0).contains(&args.sparsity) {
        return Err(input_error(anyhow::anyhow!("--sparsity must be in [0, 1), got {}", args.sparsity)));
    }
    let (model, _) = crate::model_file::load_model(&args.model)?;
    let analysis = load_or_analyze(&model, args.groups.as_deref())?;
    let candidates: Vec<_> = analysis.prunable_groups().filter(|g| g.num_elements > 1).collect();
    if candidates.is_empty() {
        return Err(input_error(anyhow::anyhow!(
            "{}: no prunable group has more than one element, so there is nothing to check (see `oto analyze`)",
            args.model.display()
        )));
    }
    let graph = Graph::new(&model).map_err(input_error)?;
    let shapes = shape::infer(&graph).map_err(input_error)?;
    let dims = super::sizes::given_sizes(&graph, &shapes, &args.model, &args.dims)?;
    let (mut sizes, defaulted) = symbol_sizes(&graph, &shapes, args.batch, &dims);
    // The graph inputs choosing a merged decoder's branch (`oto_onnx::branches`).
    let conditions = oto_onnx::branches::conditions(&model.proto);
    let mut failures = 0;
    let mut runs = 0;
    let mut all_zero = true;
    for trial in 0..args.trials {
        let mut rng = SplitMix64::new(args.seed.wrapping_mul(1_000_003).wrapping_add(trial));
        let chosen = pick(&analysis, &mut rng, args.sparsity);
        let zeroed = oto_construct::zero_producers(&model, &analysis, &chosen)?;
        let (compact, report) = oto_construct::construct(&zeroed, &analysis, &chosen)?;
        let random = crate::model_file::random_inputs(&graph, &shapes, &mut rng, &sizes)?;
        let removed: usize = chosen.values().map(Vec::len).sum();
        // A merged decoder's trial runs each branch: its conditions all false, then all true.
        let branches: Vec<Option<bool>> = if conditions.is_empty() { vec![None] } else { vec![Some(false), Some(true)] };
        for branch in branches {
            let mut inputs = random.clone();
            let mut label = format!("trial {}", trial + 1);
            if let Some(value) = branch {
                choose_branch(&mut inputs, &conditions, value);
                for (name, _) in inputs.iter().filter(|(n, _)| conditions.contains(n)) {
                    label += &format!(" ({name} = {value})");
                }
            }
            // The full model failing on the random inputs is the input's fault (sizes that
            // do not fit it): exit code 2. The compact model failing where the full one ran is not.
            let mut full_out = run_ort(&zeroed, &inputs);
            if full_out.is_err() && branch == Some(true) {
                // A merged decoder whose declared shapes do not fit its cache branch
                // (optimum's older merge declares the mask `sequence_length` long where the
                // branch reads past + sequence): with an empty past they do.
                if let Some(empty) = empty_past(&graph, &shapes, &inputs, &dims) {
                    if let Ok(out) = run_ort(&zeroed, &empty) {
                        inputs = empty;
                        label += " (an empty past: the file's declared input shapes do not fit its cache branch with a past)";
                        full_out = Ok(out);
                    }
                }
            }
            if full_out.is_err() && branch != Some(false) {
                // A decoder with its cache declared for one new token per call (optimum
                // 1.x's GPT-2: a mask `past_sequence_length + 1` long): the sequence
                // symbols the random inputs sized at 4 get 1.
                if let Some(one) = one_token_sizes(&graph, &shapes, &sizes, &defaulted) {
                    let mut step = crate::model_file::random_inputs(&graph, &shapes, &mut rng, &one)?;
                    choose_branch(&mut step, &conditions, true);
                    if let Ok(out) = run_ort(&zeroed, &step) {
                        inputs = step;
                        label += " (one new token: the file's declared input shapes fit a step of one token)";
                        full_out = Ok(out);
                    }
                }
            }
            if full_out.is_err() && !defaulted.is_empty() {
                // Sizes the model refuses at DEFAULT_SIZE (a convolution's window over audio
                // samples, an attention window, a pooling of the sequence): larger ones, the
                // same for every symbol sized by default; kept for the trials after.
                for size in LARGER_SIZES {
                    let larger = with_size(&sizes, &defaulted, size);
                    let mut retry = crate::model_file::random_inputs(&graph, &shapes, &mut rng, &larger)?;
                    if let Some(value) = branch {
                        choose_branch(&mut retry, &conditions, value);
                    }
                    if let Ok(out) = run_ort(&zeroed, &retry) {
                        let named: Vec<String> = defaulted.iter().map(|(_, symbol)| format!("'{symbol}'")).collect();
                        label += &format!(
                            " ({} at {size}: onnxruntime refused the full model at {DEFAULT_SIZE}; --dim sets them)",
                            named.join(", ")
                        );
                        (inputs, sizes, full_out) = (retry, larger, Ok(out));
                        break;
                    }
                }
            }
            let full_out = full_out.map_err(input_error).with_context(|| {
                let hint = if defaulted.is_empty() {
                    String::new()
                } else {
                    let flags: Vec<String> = defaulted.iter().map(|(_, symbol)| format!("--dim {symbol}=SIZE")).collect();
                    let named: Vec<String> = defaulted.iter().map(|(input, symbol)| format!("'{symbol}' of '{input}'")).collect();
                    let tried: Vec<String> = LARGER_SIZES.iter().map(i64::to_string).collect();
                    format!(
                        "; the random inputs gave the symbolic axes {} the size {DEFAULT_SIZE} (and then {}): if the model fixes them (e.g. an image size), give them with {}",
                        named.join(", "),
                        tried.join(", "),
                        flags.join(" ")
                    )
                };
                format!("{label}: onnxruntime on the zeroed full model (if the random inputs do not fit the model, give the sizes of its symbolic input axes with --dim NAME=SIZE){hint}")
            })?;
            let small_out = run_ort(&compact, &inputs).context("onnxruntime on the compact model")?;
            // MACs at the sizes the trial ran with (an image's height and width count), the
            // batch and sequence symbols at 1 as `macs_given` binds them.
            let (macs_before, macs_after) = (macs_at(&zeroed, &sizes)?, macs_at(&compact, &sizes)?);
            let verdict = verify::judge(&zeroed, &compact, &inputs, &full_out, &small_out)?;
            failures += usize::from(!verdict.passed);
            runs += 1;
            all_zero &= verdict.max_abs_output == 0.0;
            println!(
                "{label}: removed {removed} elements in {} groups; parameters {} -> {} ({:.1}%), MACs {} -> {} ({:.1}%); max |difference| {:.3e} (outputs up to {:.3e}): {}",
                chosen.len(),
                report.params_before,
                report.params_after,
                100.0 * report.params_after as f64 / report.params_before.max(1) as f64,
                macs_before,
                macs_after,
                100.0 * macs_after as f64 / macs_before.max(1) as f64,
                verdict.max_abs_diff,
                verdict.max_abs_output,
                verify::verdict_words(&verdict)
            );
        }
    }
    if failures > 0 {
        anyhow::bail!(
            "{failures} of {runs} runs changed the outputs: the group description is wrong for this model (please report it with the model)"
        );
    }
    if all_zero {
        // A zero-initialized output layer (torchvision's ViT head) hides every difference.
        println!(
            "passed, but shows nothing: every output was 0 in all {} trials (a zero-initialized output layer?), so no difference could be seen; check a trained model",
            args.trials
        );
        return Ok(());
    }
    let each = if conditions.is_empty() { "" } else { " (each on both branches of the merged decoder)" };
    println!("passed: {} trials{each}, the compact models compute the same outputs", args.trials);
    Ok(())
}

/// The size of a symbolic input axis that nothing else sizes.
const DEFAULT_SIZE: i64 = 4;

/// The sizes tried, in order, for the symbols sized by default when onnxruntime refuses
/// the full model at [`DEFAULT_SIZE`]: CIFAR's and ImageNet's image sizes among them, up
/// to a second of 16 kHz audio.
const LARGER_SIZES: [i64; 6] = [16, 32, 64, 224, 256, 1024];

/// `sizes` with every symbol of `defaulted` at `size`.
fn with_size(sizes: &HashMap<String, i64>, defaulted: &[(String, String)], size: i64) -> HashMap<String, i64> {
    let mut out = sizes.clone();
    for (_, symbol) in defaulted {
        out.insert(symbol.clone(), size);
    }
    out
}

/// Sets every input of `inputs` named in `conditions` (a merged decoder's branch choice) to `value`.
fn choose_branch(inputs: &mut [(String, Tensor)], conditions: &[String], value: bool) {
    for (_, t) in inputs.iter_mut().filter(|(n, _)| conditions.contains(n)) {
        t.data = oto_onnx::TensorData::Bool(vec![value; t.data.len()]);
    }
}

/// `inputs` with every key/value cache's past ([`Graph::cache_inputs`]) empty along its
/// cache axis, unless `given` (--dim) sizes that axis; `None` when no past changes.
fn empty_past(
    graph: &Graph<'_>,
    shapes: &Shapes,
    inputs: &[(String, Tensor)],
    given: &BTreeMap<String, i64>,
) -> Option<Vec<(String, Tensor)>> {
    let caches = graph.cache_inputs();
    let mut changed = false;
    let mut out = inputs.to_vec();
    for (name, t) in &mut out {
        let Some(&axis) = caches.get(name.as_str()) else { continue };
        let Some(dim) = shapes.shape(name).and_then(|d| d.get(axis)) else { continue };
        if !matches!(dim, Dim::Sym(_)) || dim.symbols().iter().any(|s| given.contains_key(*s)) || t.shape.get(axis) == Some(&0) {
            continue;
        }
        let mut shape = t.shape.clone();
        shape[axis] = 0;
        *t = Tensor::new(shape, oto_onnx::TensorData::from_le_bytes(t.dtype(), &[], 0).ok()?)?;
        changed = true;
    }
    changed.then_some(out)
}

/// `sizes` with every symbol the random inputs sized by default (`defaulted`) at 1, but
/// those of a key/value cache's past ([`Graph::cache_inputs`]); `None` without a cache
/// or when nothing changes.
fn one_token_sizes(
    graph: &Graph<'_>,
    shapes: &Shapes,
    sizes: &HashMap<String, i64>,
    defaulted: &[(String, String)],
) -> Option<HashMap<String, i64>> {
    let caches = graph.cache_inputs();
    let past: Vec<&str> =
        caches.iter().filter_map(|(name, &axis)| shapes.shape(name).and_then(|d| d.get(axis))).flat_map(Dim::symbols).collect();
    if past.is_empty() {
        return None;
    }
    let mut one = sizes.clone();
    let mut changed = false;
    for (_, symbol) in defaulted.iter().filter(|(_, s)| !past.contains(&s.as_str())) {
        if let Some(size) = one.get_mut(symbol).filter(|v| **v != 1) {
            *size = 1;
            changed = true;
        }
    }
    changed.then_some(one)
}

/// `round(n * sparsity)` random elements of every prunable group, keeping at least one.
fn pick(analysis: &Analysis, rng: &mut SplitMix64, sparsity: f64) -> BTreeMap<String, Vec<usize>> {
    let mut out = BTreeMap::new();
    for g in analysis.prunable_groups().filter(|g| g.num_elements > 1) {
        let k = ((g.num_elements as f64 * sparsity).round() as usize).min(g.num_elements - 1);
        if k > 0 {
            out.insert(g.id.clone(), rng.choose(g.num_elements, k));
        }
    }
    out
}

/// Sizes of the symbols in the shapes of the graph inputs, for the random inputs: those
/// in `given` (--dim, the preprocessor, Conv channels), else `batch` for a symbol of an
/// input's axis 0 and [`DEFAULT_SIZE`] for every other. Also (input, symbol) of the symbols
/// sized by default, each with the first input that holds it. An axis is then its
/// dimension evaluated at these sizes (`past + seq` is the sum of both).
fn symbol_sizes(
    graph: &Graph<'_>,
    shapes: &Shapes,
    batch: u64,
    given: &BTreeMap<String, i64>,
) -> (HashMap<String, i64>, Vec<(String, String)>) {
    let mut sizes: HashMap<String, i64> = given.iter().map(|(k, &v)| (k.clone(), v)).collect();
    let inputs: Vec<(&str, &[Dim])> =
        graph.real_inputs().filter_map(|v| v.name.as_deref()).filter_map(|n| Some((n, shapes.shape(n)?))).collect();
    let batch = i64::try_from(batch).unwrap_or(i64::MAX);
    for symbol in inputs.iter().filter_map(|(_, dims)| dims.first()).flat_map(Dim::symbols) {
        sizes.entry(symbol.to_string()).or_insert(batch);
    }
    let mut defaulted = Vec::new();
    for (input, dims) in &inputs {
        for symbol in dims.iter().skip(1).flat_map(Dim::symbols) {
            if !sizes.contains_key(symbol) {
                sizes.insert(symbol.to_string(), DEFAULT_SIZE);
                defaulted.push((input.to_string(), symbol.to_string()));
            }
        }
    }
    (sizes, defaulted)
}

/// MACs per batch element of `model` (`oto_onnx::cost::macs_given`) with the symbolic
/// input axes at `sizes`, other than the batch and sequence symbols, which count as 1.
fn macs_at(model: &Model, sizes: &HashMap<String, i64>) -> Result<u64> {
    let graph = Graph::new(model).context("the MACs")?;
    let shapes = shape::infer(&graph).context("shape inference for the MACs")?;
    Ok(oto_onnx::cost::macs_given(&graph, &shapes, sizes).total)
}

fn run_ort(model: &Model, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>> {
    verify::run_model(model, inputs)
}
