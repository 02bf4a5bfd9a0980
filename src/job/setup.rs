//! The setup stage: the settings resolved, the model read and analyzed, the data read
//! and checked against the model (inputs and labels), before anything runs.

use super::config::{Job, JobSpec};
use super::files::{CHECKPOINT_DIR, COMPACT_FILE, JOB_FILE, SPARSE_FILE, STATE_FILE};
use crate::error::{classify, input_error};
use anyhow::{Context, Result};
use oto_graph::{Analysis, AnalyzeOptions};
use oto_onnx::Model;
use oto_torch::data::images::Part;
use oto_torch::data::{DataFormat, Dataset};
use oto_torch::exec::{Executor, GraphInput};
use std::path::Path;

/// Everything read and checked before training: the job, the model, its analysis, the data.
pub struct Setup {
    /// The resolved job.
    pub job: Job,
    pub(super) model: Model,
    pub(super) analysis: Analysis,
    pub(super) exec: Executor,
    pub(super) teacher: Option<Executor>,
    pub(super) train: Dataset,
    pub(super) val: Option<Dataset>,
    pub(super) resume: bool,
    /// Data-parallel training: this process's place in the job (set by the caller after
    /// [`Setup::new`] or [`Setup::resume`]; `None`: one process).
    pub parallel: Option<super::train::Parallel>,
}

impl Setup {
    /// The device the model was placed on.
    pub fn device(&self) -> oto_torch::tch::Device {
        self.exec.device()
    }

    /// A new job from user settings: reads the model and the data and decides every setting.
    pub fn new(spec: &JobSpec) -> Result<Setup> {
        let model_path =
            spec.model.as_deref().context("no model: give --model MODEL.onnx (or `model` in the job file)").map_err(input_error)?;
        let (data_path, format) = spec.data_source().map_err(input_error)?;
        let device = spec.device.as_deref().unwrap_or("auto");
        let (model, exec) = load_model(model_path, device)?;
        let inputs: Vec<_> = exec.inputs().cloned().collect();
        let train = open_train(&data_path, &format, spec.val.is_some(), spec.seed.unwrap_or(0), &model, &inputs)?;
        let job = spec.resolve(train.len, train.labels.is_some()).map_err(input_error)?;
        check_out(&job)?;
        Setup::finish(job, model, exec, train, false)
    }

    /// The job saved in `out`'s checkpoint, to continue; `device` and `threads` may change.
    pub fn resume(out: &Path, device: Option<String>, threads: Option<usize>) -> Result<Setup> {
        let dir = out.join(CHECKPOINT_DIR);
        let path = dir.join(JOB_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            input_error(anyhow::anyhow!("{}: cannot read ({e}); --resume takes the --out folder of an earlier run", path.display()))
        })?;
        let mut job: Job =
            serde_json::from_str(&text).map_err(|e| input_error(anyhow::anyhow!("{}: not a job file: {e}", path.display())))?;
        job.check().map_err(|e| input_error(e.context(format!("{}: invalid job settings", path.display()))))?;
        if !dir.join(STATE_FILE).is_file() {
            return Err(input_error(anyhow::anyhow!("{}: no training state to resume from", dir.join(STATE_FILE).display())));
        }
        job.device = device.unwrap_or(job.device);
        job.threads = threads.or(job.threads);
        job.out = std::path::absolute(out)?;
        let (model, exec) = load_model(&job.model, &job.device)?;
        let inputs: Vec<_> = exec.inputs().cloned().collect();
        let train = open_train(&job.data, &job.format, job.val.is_some(), job.seed, &model, &inputs)?;
        Setup::finish(job, model, exec, train, true)
    }

    fn finish(job: Job, model: Model, mut exec: Executor, train: Dataset, resume: bool) -> Result<Setup> {
        oto_torch::train::set_threads(job.threads);
        let inputs: Vec<_> = exec.inputs().cloned().collect();
        let val = match (&job.val, &job.format) {
            (Some(p), format) => Some(Dataset::open(p, format, &model, &inputs, Part::All, job.seed).map_err(classify)?),
            (None, DataFormat::Images(o)) if o.val_split.is_some() => {
                Some(Dataset::open(&job.data, &job.format, &model, &inputs, Part::Val, job.seed).map_err(classify)?)
            }
            (None, _) => None,
        };
        // Every label is checked before anything runs on it (the original model is
        // evaluated on the training data when there is no held-out data).
        for data in std::iter::once(&train).chain(&val) {
            oto_torch::train::check_labels(&exec, data, job.loss).map_err(classify)?;
        }
        if job.quantize.is_some() {
            super::quantize::refuse_branches(&model, &job.model)?;
        }
        let analysis = oto_graph::analyze(&model, &AnalyzeOptions { unprunable: job.unprunable.clone() }).map_err(input_error)?;
        if analysis.prunable_groups().next().is_none() {
            return Err(input_error(anyhow::anyhow!("{}: nothing to prune: {}", job.model.display(), unprunable_summary(&analysis))));
        }
        oto_optim::train_producers(&mut exec, &analysis);
        let teacher = match job.loss {
            oto_torch::loss::Loss::Distill { .. } => Some(Executor::first_pass(&model, exec.device()).map_err(classify)?),
            _ => None,
        };
        Ok(Setup { job, model, analysis, exec, teacher, train, val, resume, parallel: None })
    }
}

/// The training data: an image folder with a held-out split (and no --val) gives its
/// training part.
fn open_train(path: &Path, format: &DataFormat, has_val: bool, seed: u64, model: &Model, inputs: &[GraphInput]) -> Result<Dataset> {
    let part = match format {
        DataFormat::Images(o) if o.val_split.is_some() && !has_val => Part::Train,
        _ => Part::All,
    };
    Dataset::open(path, format, model, inputs, part, seed).map_err(classify)
}

/// The model, read as every command reads it (normalized), and its executor.
fn load_model(path: &Path, device: &str) -> Result<(Model, Executor)> {
    let device = oto_torch::parse_device(device).map_err(input_error)?;
    let (model, summary) = crate::model_file::load_model(path)?;
    // Training evaluates at other batch sizes (and ends on a partial batch).
    crate::model_file::check_fixed_batch(path, &summary, None)?;
    // A quantized file says so, with what to do instead: its integer layers hold no
    // gradient to train (the executor runs them only to evaluate).
    if let Some(layers) = crate::model_file::quantized_layers(&model) {
        return Err(input_error(anyhow::anyhow!(
            "{}: nothing to prune: the model is quantized ({layers} with integer weights): prune the float model, then quantize it (`oto quantize`)",
            path.display()
        )));
    }
    let exec = Executor::first_pass(&model, device).map_err(classify)?;
    Ok((model, exec))
}

/// The output folder must be a folder (or not exist), and no output may be the input model.
fn check_out(job: &Job) -> Result<()> {
    if job.out.exists() && !job.out.is_dir() {
        return Err(input_error(anyhow::anyhow!("--out {} is a file; give a folder (it is created if missing)", job.out.display())));
    }
    let input = job.model.canonicalize().unwrap_or_else(|_| job.model.clone());
    for name in [COMPACT_FILE, SPARSE_FILE] {
        let target = job.out.join(name);
        if target.canonicalize().is_ok_and(|t| t == input) {
            return Err(input_error(anyhow::anyhow!(
                "{} is the input model: oto never overwrites its input; choose another --out",
                target.display()
            )));
        }
    }
    Ok(())
}

/// Why no group can be pruned: each distinct reason with how many groups it blocks.
fn unprunable_summary(analysis: &Analysis) -> String {
    let mut reasons: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for g in &analysis.groups {
        for r in &g.reasons {
            *reasons.entry(r.as_str()).or_default() += 1;
        }
    }
    if reasons.is_empty() {
        // No group at all: what stopped the analysis is on the operators (a quantized file).
        if let Some(first) = analysis.blocked.iter().map(|b| b.reason.as_str()).min() {
            return format!("the analysis found no structure that can be removed: {first} (see `oto analyze`)");
        }
        return "the analysis found no structure that can be removed (see `oto analyze`)".into();
    }
    let list: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} ({n} group{})", if *n == 1 { "" } else { "s" })).collect();
    format!("every group is unprunable: {} (see `oto analyze` for each group)", list.join("; "))
}
