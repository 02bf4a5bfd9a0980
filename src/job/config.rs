//! The settings of a prune job: what a user gives (command-line options over a TOML job
//! file), and the resolved job with every default filled in, which the checkpoint keeps
//! so that `--resume` continues the same job.

use anyhow::{bail, Context, Result};
use oto_optim::{Budget, CricConfig, HessoConfig, ImportanceWeights};
use oto_torch::data::images::ImageOptions;
use oto_torch::data::text::TextOptions;
use oto_torch::data::DataFormat;
use oto_torch::loss::Loss;
use oto_torch::optim::OptimizerConfig;
use oto_torch::schedule::{AfterPruning, Schedule};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a user may set, from the command line or a TOML job file; every field optional.
/// In a job file, relative paths are relative to the file's folder.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The trained model to prune.
    pub model: Option<PathBuf>,
    /// Training data (`.npz` or `.safetensors`).
    pub data: Option<PathBuf>,
    /// Held-out data for the metric and the verification (default: the training data).
    pub val: Option<PathBuf>,
    /// Training data as raw text (instead of `data`): one example per line, or JSON Lines.
    pub text: Option<PathBuf>,
    /// Training data as an image folder (instead of `data`): one sub-folder per class.
    pub images: Option<PathBuf>,
    /// The `tokenizer.json` for `text` (default: the one beside the model).
    pub tokenizer: Option<PathBuf>,
    /// The JSON Lines text field [default: text].
    pub text_field: Option<String>,
    /// The JSON Lines label field [default: label].
    pub label_field: Option<String>,
    /// Tokens per text example (padded and truncated).
    pub max_length: Option<usize>,
    /// Image channel means (RGB) [default: ImageNet's].
    pub mean: Option<[f32; 3]>,
    /// Image channel standard deviations (RGB) [default: ImageNet's].
    pub std: Option<[f32; 3]>,
    /// Fraction of an image folder held out as validation data (when `val` is not given).
    pub val_split: Option<f64>,
    /// Output folder.
    pub out: Option<PathBuf>,
    /// Fraction of the prunable group elements to remove, in [0, 1).
    pub target_sparsity: Option<f64>,
    /// Fraction of the model's MACs to keep, in (0, 1] (instead of a group sparsity).
    pub target_macs: Option<f64>,
    /// Fraction of the model's parameters to keep, in (0, 1] (instead of a group sparsity).
    pub target_params: Option<f64>,
    /// The largest share of any group's elements to remove, in (0, 1] [default: 0.9].
    pub max_group_sparsity: Option<f64>,
    /// Training length in epochs (exclusive with `steps`).
    pub epochs: Option<f64>,
    /// Training length in optimizer steps (exclusive with `epochs`).
    pub steps: Option<u64>,
    /// Samples per batch.
    pub batch_size: Option<usize>,
    /// `sgd`, `adam` or `adamw`.
    pub optimizer: Option<String>,
    /// Base learning rate.
    pub lr: Option<f64>,
    /// `cosine`, `step` or `constant`.
    pub schedule: Option<String>,
    /// Linear learning-rate warm-up steps.
    pub warmup_steps: Option<u64>,
    /// `continue` (the default) or `restart`: whether the schedule starts again from the
    /// base rate once pruning has finished.
    pub lr_after_pruning: Option<String>,
    /// With `lr_after_pruning = "restart"`: the rate the restart starts from (default: `lr`).
    pub restart_lr: Option<f64>,
    /// With `lr_after_pruning = "restart"`: the restart's linear warm-up, as a share of
    /// the steps left, in [0, 1) (default 0).
    pub restart_warmup: Option<f64>,
    /// Weight decay of the optimizer (its default when absent).
    pub weight_decay: Option<f64>,
    /// `cross-entropy`, `mse`, `bce` or `distill` (default: cross-entropy with labels, distill without).
    pub loss: Option<String>,
    /// `auto`, `cpu`, `cuda`, `cuda:N`.
    pub device: Option<String>,
    /// Seed of the data order, dropout and the verification inputs.
    pub seed: Option<u64>,
    /// Run the CRIC phase before pruning.
    pub cric: Option<bool>,
    /// Also write the full-size trained model with its pruned elements at zero.
    pub save_sparse: Option<bool>,
    /// Quantize the compact model to this size budget (stored weight bytes over float32
    /// weight bytes; int8 is about 0.25), bits per layer by HAWQ-V2: `model.qdq.onnx`.
    pub quantize: Option<f64>,
    /// Block size of int4 weights with `quantize` (0: one scale per output channel) [default: 32].
    pub quantize_block_size: Option<usize>,
    /// libtorch threads (default: every core).
    pub threads: Option<usize>,
    /// Initializers (or nodes) whose groups must not be pruned.
    pub unprunable: Option<Vec<String>>,
    /// Clip gradients to this global L2 norm.
    pub clip_grad_norm: Option<f64>,
    /// Evaluations on the held-out data during training (the curve's metric points) [default: 10].
    pub evaluations: Option<u64>,
    /// Steps between checkpoints (default: about 20 per run).
    pub checkpoint_every: Option<u64>,
    /// The HESSO schedule (default: derived from the training length).
    pub hesso: Option<HessoSpec>,
    /// The CRIC phase lengths (`[cric_settings]`; default: derived from the training length).
    pub cric_settings: Option<CricConfig>,
    /// The job file these settings were read from, if any (errors name it).
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// The HESSO settings a job file may give (`[hesso]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HessoSpec {
    /// Plain training steps before pruning starts.
    pub start_pruning_step: Option<u64>,
    /// Steps over which the chosen elements decay to zero.
    pub pruning_steps: Option<u64>,
    /// Periods the pruning is split into.
    pub pruning_periods: Option<u64>,
    /// Every group keeps a multiple of this many elements.
    pub group_divisible: Option<usize>,
    /// Weights of the importance criteria.
    pub importance: Option<ImportanceWeights>,
}

impl JobSpec {
    /// Reads a TOML job file; relative paths become relative to its folder.
    pub fn from_toml_file(path: &Path) -> Result<JobSpec> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read the job file", path.display()))?;
        JobSpec::from_toml_str(&text, path)
    }

    /// Parses and checks the text of a job file read from `path` (errors name it);
    /// relative paths become relative to its folder. [`JobSpec::from_toml_file`] reads
    /// the file and calls this.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<JobSpec> {
        let mut spec: JobSpec = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        spec.check(&Origin::File(path))?;
        spec.file = Some(path.to_path_buf());
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut spec.model, &mut spec.data, &mut spec.val, &mut spec.text, &mut spec.images, &mut spec.tokenizer, &mut spec.out]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(spec)
    }

    /// `self` with every field that `over` sets replaced (command line over job file);
    /// a training length in `over` (steps or epochs) replaces the other as well, and a
    /// budget (`target_sparsity`, `target_macs`, `target_params`) the other budgets.
    pub fn overridden_by(mut self, over: JobSpec) -> JobSpec {
        if over.steps.is_some() || over.epochs.is_some() {
            self.steps = None;
            self.epochs = None;
        }
        // Likewise a budget (group sparsity, MACs or parameters) replaces the others.
        if over.target_sparsity.is_some() || over.target_macs.is_some() || over.target_params.is_some() {
            self.target_sparsity = None;
            self.target_macs = None;
            self.target_params = None;
        }
        macro_rules! pick {
            ($($f:ident),*) => { JobSpec { $($f: over.$f.or(self.$f)),* } };
        }
        pick!(
            model,
            data,
            val,
            text,
            images,
            tokenizer,
            text_field,
            label_field,
            max_length,
            mean,
            std,
            val_split,
            out,
            target_sparsity,
            target_macs,
            target_params,
            max_group_sparsity,
            epochs,
            steps,
            batch_size,
            optimizer,
            lr,
            schedule,
            warmup_steps,
            lr_after_pruning,
            restart_lr,
            restart_warmup,
            weight_decay,
            loss,
            device,
            seed,
            cric,
            save_sparse,
            quantize,
            quantize_block_size,
            threads,
            unprunable,
            clip_grad_norm,
            evaluations,
            checkpoint_every,
            hesso,
            cric_settings,
            file
        )
    }
}

/// Where a setting was given, to name it in an error: a key of a job file (`job.toml:
/// checkpoint_every = 0`) or a command-line option (`--batch-size 0`).
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// A TOML job file.
    File(&'a Path),
    /// The command line (or a [`JobSpec`] built by a program).
    CommandLine,
}

impl Origin<'_> {
    /// `key` and its `value` as the user wrote them; `key` is the job-file spelling
    /// (`batch_size`, `hesso.pruning_steps`).
    pub fn setting(&self, key: &str, value: impl std::fmt::Display) -> String {
        match self {
            Origin::File(path) => format!("{}: {key} = {value}", path.display()),
            Origin::CommandLine => format!("--{} {value}", key.replace('_', "-")),
        }
    }
}

impl JobSpec {
    /// Checks the range of every setting given on its own (what does not depend on the
    /// data or on other settings): counts that are divided by or allocated from must be
    /// at least 1, rates finite. The error names the setting as `origin` spells it.
    pub fn check(&self, origin: &Origin<'_>) -> Result<()> {
        let at_least_one = |key: &str, value: Option<u64>, what: &str| match value {
            Some(0) => bail!("{}: {what} must be at least 1", origin.setting(key, 0)),
            _ => Ok(()),
        };
        if let Some(t) = self.target_sparsity {
            if !(t.is_finite() && (0.0..1.0).contains(&t)) {
                bail!("{}: the target sparsity must be in [0, 1)", origin.setting("target_sparsity", t));
            }
        }
        for (key, value) in [("target_macs", self.target_macs), ("target_params", self.target_params)] {
            if let Some(r) = value {
                if !(r.is_finite() && r > 0.0 && r <= 1.0) {
                    bail!("{}: the ratio of the original to keep must be in (0, 1]", origin.setting(key, r));
                }
            }
        }
        let budgets = [self.target_sparsity.is_some(), self.target_macs.is_some(), self.target_params.is_some()];
        if budgets.iter().filter(|b| **b).count() > 1 {
            bail!("give one budget: --target-sparsity, --target-macs or --target-params (`target_sparsity`, `target_macs`, `target_params` in a job file)");
        }
        if let Some(m) = self.max_group_sparsity {
            if !(m.is_finite() && m > 0.0 && m <= 1.0) {
                bail!("{}: the largest share of a group to remove must be in (0, 1]", origin.setting("max_group_sparsity", m));
            }
        }
        if let Some(e) = self.epochs {
            if !(e > 0.0 && e.is_finite()) {
                bail!("{}: the number of epochs must be a positive number", origin.setting("epochs", e));
            }
        }
        if self.steps == Some(0) {
            bail!("{}: the job has no training steps; give at least 1", origin.setting("steps", 0));
        }
        at_least_one("batch_size", self.batch_size.map(|b| b as u64), "the batch size")?;
        for (key, value) in [("lr", self.lr), ("restart_lr", self.restart_lr)] {
            if let Some(lr) = value.filter(|lr| !(*lr > 0.0 && lr.is_finite())) {
                bail!("{}: the learning rate must be a finite number > 0", origin.setting(key, lr));
            }
        }
        if let Some(w) = self.restart_warmup {
            if !(w.is_finite() && (0.0..1.0).contains(&w)) {
                bail!("{}: the restart's warm-up is a share of the steps left, in [0, 1)", origin.setting("restart_warmup", w));
            }
        }
        if let Some(wd) = self.weight_decay {
            if !(wd >= 0.0 && wd.is_finite()) {
                bail!("{}: the weight decay must be a finite number >= 0", origin.setting("weight_decay", wd));
            }
        }
        at_least_one("threads", self.threads.map(|t| t as u64), "the thread count")?;
        if let Some(r) = self.quantize {
            if !(r.is_finite() && r > 0.0) {
                bail!("{}: the quantized size budget must be a finite number > 0 (int8 is about 0.25)", origin.setting("quantize", r));
            }
        }
        if self.quantize_block_size == Some(1) {
            bail!("{}: an int4 block has at least 2 entries (0: one scale per output channel)", origin.setting("quantize_block_size", 1));
        }
        if let Some(c) = self.clip_grad_norm {
            if !(c > 0.0 && c.is_finite()) {
                bail!("{}: the gradient-norm limit must be a finite number > 0", origin.setting("clip_grad_norm", c));
            }
        }
        at_least_one("evaluations", self.evaluations, "the number of evaluations")?;
        at_least_one("checkpoint_every", self.checkpoint_every, "the steps between checkpoints")?;
        if let Some(h) = &self.hesso {
            at_least_one("hesso.pruning_steps", h.pruning_steps, "the pruning length")?;
            at_least_one("hesso.pruning_periods", h.pruning_periods, "the number of pruning periods")?;
            at_least_one("hesso.group_divisible", h.group_divisible.map(|d| d as u64), "the group divisor")?;
            if let Some(w) = h.importance {
                if let Some(v) = w.all().into_iter().find(|v| !(v.is_finite() && *v >= 0.0)) {
                    bail!("{}: every importance weight must be a finite number >= 0", origin.setting("hesso.importance", v));
                }
            }
        }
        if let Some(c) = &self.cric_settings {
            c.validate().map_err(|e| match origin {
                Origin::File(path) => anyhow::anyhow!("{}: [cric_settings]: {e}", path.display()),
                Origin::CommandLine => anyhow::anyhow!("{e}"),
            })?;
        }
        Ok(())
    }
}

/// A job with every setting decided; saved in the checkpoint folder as `job.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Job {
    /// The input model (absolute).
    pub model: PathBuf,
    /// Training data (absolute).
    pub data: PathBuf,
    /// How the training and held-out data are read (arrays, text, image folder).
    #[serde(default)]
    pub format: DataFormat,
    /// Held-out data (absolute), if given.
    pub val: Option<PathBuf>,
    /// Output folder (absolute).
    pub out: PathBuf,
    /// Target group sparsity.
    pub target_sparsity: f64,
    /// Optimizer steps.
    pub steps: u64,
    /// Samples per batch.
    pub batch_size: usize,
    /// Base optimizer.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// The loss.
    pub loss: Loss,
    /// Device string.
    pub device: String,
    /// Seed.
    pub seed: u64,
    /// HESSO (and CRIC) settings.
    pub hesso: HessoConfig,
    /// Write `model.sparse.onnx`.
    pub save_sparse: bool,
    /// Quantize the compact model to this size budget (`model.qdq.onnx`).
    pub quantize: Option<f64>,
    /// Block size of int4 weights with `quantize` (0: per output channel).
    pub quantize_block_size: Option<usize>,
    /// libtorch threads.
    pub threads: Option<usize>,
    /// Names kept unprunable.
    pub unprunable: Vec<String>,
    /// Gradient clipping.
    pub clip_grad_norm: Option<f64>,
    /// Steps between evaluations on the held-out data.
    pub eval_every: u64,
    /// Steps between checkpoints.
    pub checkpoint_every: u64,
    /// Data-parallel: BatchNorm statistics over the global batch (`--sync-batch-norm`),
    /// saved with the job so that `--resume` keeps it.
    #[serde(default)]
    pub sync_batch_norm: bool,
}

impl Job {
    /// Batch size of the evaluations (no gradients, so at least 64 even for small training batches).
    pub fn eval_batch(&self) -> usize {
        self.batch_size.max(64)
    }
}

/// Default training length when neither steps nor epochs are given.
const DEFAULT_EPOCHS: f64 = 10.0;

/// `p` made absolute, with `.` and `..` folded lexically (a job file's `../x` reads better
/// as `/abs/x` in reports; symbolic links are not resolved).
fn absolute(p: &Path) -> Result<PathBuf> {
    let full = std::path::absolute(p).with_context(|| format!("{}: cannot make the path absolute", p.display()))?;
    let mut out = PathBuf::new();
    for c in full.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// The base optimizer named `name`, with `weight_decay` (checked by [`JobSpec::check`]) when given.
fn optimizer(name: &str, weight_decay: Option<f64>) -> Result<OptimizerConfig> {
    let mut config = OptimizerConfig::parse(name)?;
    if let Some(wd) = weight_decay {
        match &mut config {
            OptimizerConfig::Sgd { weight_decay, .. }
            | OptimizerConfig::Adam { weight_decay, .. }
            | OptimizerConfig::AdamW { weight_decay, .. } => *weight_decay = wd,
        }
    }
    Ok(config)
}

/// The HESSO schedule a user can start from: warm-up on the first 10% of the steps,
/// pruning over the next 30% in up to 5 periods, then training on with the pruned
/// elements held at zero.
pub fn default_hesso(steps: u64, target: f64) -> HessoConfig {
    let start = steps / 10;
    // `steps * 3 / 10` without overflow for any step count.
    let pruning = (steps / 10 * 3 + steps % 10 * 3 / 10).max(1);
    HessoConfig {
        target_group_sparsity: target,
        start_pruning_step: start,
        pruning_steps: pruning,
        pruning_periods: pruning.clamp(1, 5),
        ..HessoConfig::default()
    }
}

impl JobSpec {
    /// The training data and how to read it: `data` (arrays), `text` or `images`, exactly one.
    pub fn data_source(&self) -> Result<(PathBuf, DataFormat)> {
        let text_options = || TextOptions {
            tokenizer: self.tokenizer.clone(),
            text_field: self.text_field.clone(),
            label_field: self.label_field.clone(),
            max_length: self.max_length,
        };
        let image_options = || ImageOptions { mean: self.mean, std: self.std, val_split: self.val_split };
        let text_only = self.tokenizer.is_some() || self.text_field.is_some() || self.label_field.is_some() || self.max_length.is_some();
        let images_only = self.mean.is_some() || self.std.is_some() || self.val_split.is_some();
        let source = match (&self.data, &self.text, &self.images) {
            (Some(d), None, None) => (d.clone(), DataFormat::Arrays),
            (None, Some(t), None) => (t.clone(), DataFormat::Text(text_options())),
            (None, None, Some(i)) => (i.clone(), DataFormat::Images(image_options())),
            (None, None, None) => bail!(
                "no training data: give --data TRAIN.npz, --text CORPUS.txt or --images DIR (or `data`, `text` or `images` in the job file)"
            ),
            _ => bail!("give one of --data, --text and --images (or `data`, `text`, `images` in the job file), not several"),
        };
        if text_only && !matches!(source.1, DataFormat::Text(_)) {
            bail!("--tokenizer, --text-field, --label-field and --max-length apply to --text data only");
        }
        if images_only && !matches!(source.1, DataFormat::Images(_)) {
            bail!("--mean, --std and --val-split apply to --images data only");
        }
        if self.val_split.is_some() && self.val.is_some() {
            bail!("give either --val or --val-split, not both");
        }
        if self.max_length == Some(0) {
            bail!("--max-length 0: expected at least 1 token");
        }
        Ok(source)
    }

    /// Decides every setting. `samples` counts the training samples (for epochs).
    /// Errors are the user's: they name the option.
    pub fn resolve(&self, samples: usize, has_labels: bool) -> Result<Job> {
        let model = self.model.as_deref().context("no model: give --model MODEL.onnx (or `model` in the job file)")?;
        let (data, format) = self.data_source()?;
        let data = data.as_path();
        self.check(&Origin::CommandLine)?;
        let budget = match (self.target_macs, self.target_params) {
            (Some(r), _) => Budget::Macs(r),
            (None, Some(r)) => Budget::Params(r),
            (None, None) => Budget::GroupSparsity,
        };
        // With a MACs or parameter budget the group sparsity is what the budget gives.
        let target = if budget == Budget::GroupSparsity { self.target_sparsity.unwrap_or(0.5) } else { 0.0 };
        let batch_size = self.batch_size.unwrap_or(32);
        let batches_per_epoch = if samples >= batch_size { samples / batch_size } else { 1 } as f64;
        let steps = match (self.steps, self.epochs) {
            (Some(_), Some(_)) => bail!("give either --steps or --epochs, not both"),
            (Some(s), None) => s,
            // A float-to-integer cast saturates: a huge epoch count is a long job, not an overflow.
            (None, e) => (e.unwrap_or(DEFAULT_EPOCHS) * batches_per_epoch).round() as u64,
        };
        if steps == 0 {
            bail!("the job has no training steps: give --steps N or --epochs N with N > 0");
        }
        let optimizer_name = self.optimizer.as_deref().unwrap_or("sgd");
        let optimizer = optimizer(optimizer_name, self.weight_decay)?;
        let lr = self.lr.unwrap_or(if optimizer_name == "sgd" { 0.01 } else { 1e-3 });
        let warmup = self.warmup_steps.unwrap_or(0);
        let mut schedule = Schedule::parse(self.schedule.as_deref().unwrap_or("cosine"), lr, warmup, steps)?;
        schedule.after_pruning = AfterPruning::parse(self.lr_after_pruning.as_deref().unwrap_or("continue"))?;
        // An explicit `continue` leaves them unused (it overrides a job file's restart);
        // given without saying to restart at all, they are a mistake.
        if let (None, Some((key, value))) = (
            &self.lr_after_pruning,
            [("restart_lr", self.restart_lr), ("restart_warmup", self.restart_warmup)].into_iter().find_map(|(k, v)| v.map(|v| (k, v))),
        ) {
            bail!(
                "{key} = {value} (--{}) sets the learning-rate restart after pruning, which this job does not do: add lr_after_pruning = \"restart\" (--lr-after-pruning restart)",
                key.replace('_', "-")
            );
        }
        schedule.restart_lr = self.restart_lr;
        schedule.restart_warmup = self.restart_warmup.unwrap_or(0.0);
        let loss = match self.loss.as_deref() {
            Some(name) => Loss::parse(name)?,
            None if has_labels => Loss::CrossEntropy { label_smoothing: 0.0 },
            None => Loss::Distill { temperature: 1.0 },
        };
        if loss.needs_labels() && !has_labels {
            bail!(
                "{}: the {} loss needs labels, but the data has no `labels` (or `y`) array; add labels, or use --loss distill to learn from the original model's outputs",
                data.display(),
                self.loss.as_deref().unwrap_or("cross-entropy")
            );
        }
        let mut hesso = default_hesso(steps, target);
        hesso.budget = budget;
        hesso.max_group_sparsity = self.max_group_sparsity.unwrap_or(hesso.max_group_sparsity);
        if let Some(h) = &self.hesso {
            hesso.start_pruning_step = h.start_pruning_step.unwrap_or(hesso.start_pruning_step);
            hesso.pruning_steps = h.pruning_steps.unwrap_or(hesso.pruning_steps);
            hesso.pruning_periods = h.pruning_periods.unwrap_or(hesso.pruning_periods.min(hesso.pruning_steps));
            hesso.group_divisible = h.group_divisible.unwrap_or(hesso.group_divisible);
            hesso.importance = h.importance.unwrap_or(hesso.importance);
        }
        if self.cric.unwrap_or(false) {
            hesso.cric = Some(self.cric_settings.unwrap_or_else(|| CricConfig::for_budget(steps)));
        } else if self.cric_settings.is_some() {
            bail!("the job file has [cric_settings] but CRIC is off: set `cric = true` (or give --cric)");
        }
        let evaluations = self.evaluations.unwrap_or(10).max(1);
        let job = Job {
            model: absolute(model)?,
            data: absolute(data)?,
            format: match format {
                DataFormat::Text(mut o) => {
                    o.tokenizer = o.tokenizer.as_deref().map(absolute).transpose()?;
                    DataFormat::Text(o)
                }
                other => other,
            },
            val: self.val.as_deref().map(absolute).transpose()?,
            out: absolute(self.out.as_deref().unwrap_or(Path::new("oto-out")))?,
            target_sparsity: target,
            steps,
            batch_size,
            optimizer,
            schedule,
            loss,
            device: self.device.clone().unwrap_or_else(|| "auto".into()),
            seed: self.seed.unwrap_or(0),
            hesso,
            save_sparse: self.save_sparse.unwrap_or(false),
            quantize: self.quantize,
            quantize_block_size: self.quantize_block_size,
            threads: self.threads,
            unprunable: self.unprunable.clone().unwrap_or_default(),
            clip_grad_norm: self.clip_grad_norm,
            eval_every: steps.div_ceil(evaluations).max(1),
            checkpoint_every: self.checkpoint_every.unwrap_or_else(|| steps.div_ceil(20).max(1)),
            sync_batch_norm: false,
        };
        job.check().map_err(|e| match &self.file {
            Some(file) => e.context(format!("the settings of {} (and the command line)", file.display())),
            None => e,
        })?;
        Ok(job)
    }
}

impl Job {
    /// Checks the settings together (what [`JobSpec::check`] cannot see alone): the
    /// counts the job divides by, the HESSO and CRIC settings, the schedule inside the
    /// job. [`JobSpec::resolve`] ends with it, and a resumed `job.json` is checked with it.
    pub fn check(&self) -> Result<()> {
        let positive = [
            ("steps", self.steps),
            ("batch_size", self.batch_size as u64),
            ("eval_every", self.eval_every),
            ("checkpoint_every", self.checkpoint_every),
            ("threads", self.threads.map_or(1, |t| t as u64)),
        ];
        if let Some((key, value)) = positive.iter().find(|(_, v)| *v == 0) {
            bail!("{key} = {value}: must be at least 1");
        }
        let t = self.target_sparsity;
        if !(t.is_finite() && (0.0..1.0).contains(&t)) {
            bail!("target_sparsity = {t}: must be in [0, 1)");
        }
        for (key, value) in [("lr", Some(self.schedule.lr)), ("restart_lr", self.schedule.restart_lr)] {
            if let Some(lr) = value.filter(|lr| !(*lr > 0.0 && lr.is_finite())) {
                bail!("{key} = {lr}: the learning rate must be a finite number > 0");
            }
        }
        let w = self.schedule.restart_warmup;
        if !(w.is_finite() && (0.0..1.0).contains(&w)) {
            bail!("restart_warmup = {w}: must be in [0, 1)");
        }
        if self.schedule.warmup_steps > self.steps {
            bail!("--warmup-steps {} is longer than the job ({} steps)", self.schedule.warmup_steps, self.steps);
        }
        if let Some(c) = self.clip_grad_norm {
            if !(c > 0.0 && c.is_finite()) {
                bail!("clip_grad_norm = {c}: must be a finite number > 0");
            }
        }
        if self.hesso.target_group_sparsity != t {
            bail!("hesso.target_group_sparsity = {} differs from target_sparsity = {t}", self.hesso.target_group_sparsity);
        }
        self.hesso.validate()?;
        let prune_end = self.hesso.schedule_steps();
        if prune_end > self.steps {
            bail!(
                "the pruning schedule ends at step {prune_end}, after the job's last step {}: give more steps or a shorter schedule",
                self.steps
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JobSpec {
        JobSpec { model: Some("m.onnx".into()), data: Some("d.npz".into()), ..JobSpec::default() }
    }

    #[test]
    fn defaults_derive_the_length_and_the_hesso_schedule() {
        let job = spec().resolve(1000, true).unwrap();
        // 10 epochs of 1000 samples in batches of 32 (incomplete batch dropped).
        assert_eq!(job.steps, 310);
        assert_eq!((job.hesso.start_pruning_step, job.hesso.pruning_steps, job.hesso.pruning_periods), (31, 93, 5));
        assert_eq!(job.target_sparsity, 0.5);
        assert!(matches!(job.loss, Loss::CrossEntropy { .. }));
        assert!(matches!(job.optimizer, OptimizerConfig::Sgd { .. }));
        assert_eq!(job.schedule.lr, 0.01);
        assert!(job.out.is_absolute() && job.model.is_absolute());
        let folded = JobSpec { model: Some("a/../b/./m.onnx".into()), ..spec() }.resolve(1000, true).unwrap();
        assert!(folded.model.ends_with("b/m.onnx") && !folded.model.to_string_lossy().contains(".."), "{}", folded.model.display());
        // Without labels the job distills.
        assert!(matches!(spec().resolve(1000, false).unwrap().loss, Loss::Distill { .. }));
        // The schedule goes on after pruning unless told to restart.
        assert_eq!(job.schedule.after_pruning, AfterPruning::Continue);
        let restarting = JobSpec { lr_after_pruning: Some("restart".into()), ..spec() }.resolve(1000, true).unwrap();
        assert_eq!(restarting.schedule.after_pruning, AfterPruning::Restart);
        let bad = JobSpec { lr_after_pruning: Some("rewind".into()), ..spec() }.resolve(1000, true).unwrap_err();
        assert!(format!("{bad:#}").contains("lr_after_pruning 'rewind': expected restart or continue"), "{bad:#}");
        // The restart's own rate and warm-up reach the schedule; without a restart, or out
        // of range, they are refused naming the setting.
        let own = JobSpec { lr_after_pruning: Some("restart".into()), restart_lr: Some(0.1), restart_warmup: Some(0.1), ..spec() };
        let schedule = own.clone().resolve(1000, true).unwrap().schedule;
        assert_eq!((schedule.restart_lr, schedule.restart_warmup), (Some(0.1), 0.1));
        assert_eq!((restarting.schedule.restart_lr, restarting.schedule.restart_warmup), (None, 0.0));
        let without = JobSpec { restart_lr: Some(0.1), ..spec() }.resolve(1000, true).unwrap_err();
        assert!(
            format!("{without:#}").contains("restart_lr = 0.1") && format!("{without:#}").contains("--lr-after-pruning restart"),
            "{without:#}"
        );
        // An explicit `continue` (over a job file's restart) leaves them unused.
        let continuing = JobSpec { lr_after_pruning: Some("continue".into()), ..own.clone() }.resolve(1000, true).unwrap();
        assert_eq!(continuing.schedule.after_pruning, AfterPruning::Continue);
        for (bad, named) in [
            (JobSpec { restart_warmup: Some(1.0), ..own.clone() }, "--restart-warmup 1"),
            (JobSpec { restart_lr: Some(0.0), ..own.clone() }, "--restart-lr 0"),
        ] {
            let e = bad.resolve(1000, true).unwrap_err();
            assert!(format!("{e:#}").contains(named), "{e:#}");
        }
    }

    /// CRIC's default lengths take its first decision where plain HESSO's default schedule
    /// starts pruning and end its schedule by 40% of the run, HESSO's end: with the earlier
    /// lengths (snapshot at 20%, done by 55%) CRIC chose later on the learning-rate schedule
    /// and left less of the run to recover, and lost to HESSO on the same pruned structure
    /// (bench/quality.md).
    #[test]
    fn cric_defaults_decide_within_the_default_hesso_pruning_window() {
        for steps in 20..3000u64 {
            let hesso = default_hesso(steps, 0.5);
            let cric = CricConfig::for_budget(steps);
            assert_eq!(cric.start_cric_step, hesso.start_pruning_step, "{steps} steps");
            assert!(cric.max_schedule_steps() * 10 <= steps * 4, "{steps} steps: CRIC ends at {}", cric.max_schedule_steps());
            assert!(cric.max_schedule_steps() + 3 >= hesso.schedule_steps(), "{steps} steps: CRIC ends at {}", cric.max_schedule_steps());
        }
        let job = JobSpec { cric: Some(true), steps: Some(690), ..spec() }.resolve(100, true).unwrap();
        let cric = job.hesso.cric.unwrap();
        assert_eq!((cric.start_cric_step, cric.sampling_steps, cric.hybrid_training_steps, cric.max_schedule_steps()), (69, 34, 103, 274));
        assert_eq!(job.hesso.start_pruning_step, 69);
    }

    #[test]
    fn command_line_overrides_the_job_file_and_a_length_replaces_the_other() {
        let file = JobSpec { epochs: Some(3.0), lr: Some(0.1), ..spec() };
        let merged = file.overridden_by(JobSpec { steps: Some(50), ..JobSpec::default() });
        let job = merged.resolve(1000, true).unwrap();
        assert_eq!((job.steps, job.schedule.lr), (50, 0.1));
    }

    #[test]
    fn invalid_settings_name_the_option() {
        let err = |s: JobSpec| s.resolve(100, true).unwrap_err().to_string();
        assert!(err(JobSpec { target_sparsity: Some(1.0), ..spec() }).contains("--target-sparsity"));
        assert!(err(JobSpec { steps: Some(10), epochs: Some(1.0), ..spec() }).contains("--steps or --epochs"));
        assert!(err(JobSpec { steps: Some(0), ..spec() }).contains("no training steps"));
        assert!(err(JobSpec { optimizer: Some("lion".into()), ..spec() }).contains("lion"));
        let late = JobSpec {
            steps: Some(20),
            hesso: Some(HessoSpec { start_pruning_step: Some(15), pruning_steps: Some(10), ..HessoSpec::default() }),
            ..spec()
        };
        assert!(err(late).contains("after the job's last step"));
        assert!(err(JobSpec { cric_settings: Some(CricConfig::default()), ..spec() }).contains("cric = true"));
        let cric = JobSpec { cric: Some(true), steps: Some(200), ..spec() }.resolve(100, true).unwrap();
        assert_eq!(cric.hesso.cric, Some(CricConfig::for_budget(200)));
        let unlabeled = spec().resolve(100, false);
        assert!(unlabeled.is_ok());
        let supervised = JobSpec { loss: Some("cross-entropy".into()), ..spec() }.resolve(100, false).unwrap_err().to_string();
        assert!(supervised.contains("needs labels"), "{supervised}");
    }
}
