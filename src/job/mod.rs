//! `oto prune`'s job: read the model and the data, analyze, train with HESSO (optionally
//! CRIC), construct the compact model, verify it against the sparse one in onnxruntime,
//! measure, and write the outputs. Checkpoints let an interrupted job continue.

pub mod config;
pub mod report;
pub mod verify;

use crate::cli::analyze::write_atomic;
use crate::cli::eval::classify;
use crate::cli::input_error;
use anyhow::{Context, Result};
use config::{Job, JobSpec};
use oto_graph::{Analysis, AnalyzeOptions};
use oto_onnx::Model;
use oto_optim::Hesso;
use oto_torch::data::Dataset;
use oto_torch::exec::Executor;
use oto_torch::train::{evaluate, EvalReport, TrainConfig, Trainer};
use report::{EvalPoint, History, StepPoint};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// What the job tells whoever shows its progress.
pub enum Event<'a> {
    /// A phase begins (`analyzing`, `training`, `constructing`...).
    Phase(&'a str),
    /// Training starts or resumes: `done` of `total` steps are behind.
    Training {
        /// Steps in the job.
        total: u64,
        /// Steps already done (resumed).
        done: u64,
    },
    /// A training step ended (`point` is set at logging steps).
    Step {
        /// Steps done.
        step: u64,
        /// The batch loss.
        loss: f64,
        /// Group sparsity and norms at logging steps.
        point: Option<&'a StepPoint>,
    },
    /// An evaluation on the held-out data.
    Eval(&'a EvalPoint),
    /// A line for the log.
    Note(String),
}

/// Receives the job's events (a progress bar, a log).
pub trait Observer {
    /// Handles one event.
    fn event(&mut self, event: Event<'_>);
}

/// The job stopped on request after writing its checkpoint.
#[derive(Debug)]
pub struct Interrupted {
    /// Steps done.
    pub step: u64,
    /// The job's output folder, to pass to `--resume`.
    pub out: PathBuf,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "interrupted after step {}; the checkpoint is in {}; continue with `oto prune --resume {}`",
            self.step,
            self.out.join(CHECKPOINT_DIR).display(),
            self.out.display()
        )
    }
}

impl std::error::Error for Interrupted {}

/// The checkpoint folder inside the output folder.
pub const CHECKPOINT_DIR: &str = "checkpoint";
const JOB_FILE: &str = "job.json";
const STATE_FILE: &str = "state.safetensors";
const PROGRESS_FILE: &str = "progress.json";

/// What the job has measured so far, kept beside the training state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Progress {
    before: Option<EvalReport>,
    history: History,
    seconds_before_resume: f64,
}

/// Everything read and checked before training: the job, the model, its analysis, the data.
pub struct Setup {
    /// The resolved job.
    pub job: Job,
    model: Model,
    analysis: Analysis,
    exec: Executor,
    teacher: Option<Executor>,
    train: Dataset,
    val: Option<Dataset>,
    resume: bool,
}

impl Setup {
    /// A new job from user settings: reads the model and the data and decides every setting.
    pub fn new(spec: &JobSpec) -> Result<Setup> {
        let model_path =
            spec.model.as_deref().context("no model: give --model MODEL.onnx (or `model` in the job file)").map_err(input_error)?;
        let data_path =
            spec.data.as_deref().context("no training data: give --data TRAIN.npz (or `data` in the job file)").map_err(input_error)?;
        let device = spec.device.as_deref().unwrap_or("auto");
        let (model, exec) = load_model(model_path, device)?;
        let inputs: Vec<_> = exec.inputs().cloned().collect();
        let train = Dataset::load(data_path, &inputs).map_err(classify)?;
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
        let train = Dataset::load(&job.data, &inputs).map_err(classify)?;
        Setup::finish(job, model, exec, train, true)
    }

    fn finish(job: Job, model: Model, exec: Executor, train: Dataset, resume: bool) -> Result<Setup> {
        oto_torch::train::set_threads(job.threads);
        let inputs: Vec<_> = exec.inputs().cloned().collect();
        let val = job.val.as_deref().map(|p| Dataset::load(p, &inputs)).transpose().map_err(classify)?;
        // Every label is checked before anything runs on it (the original model is
        // evaluated on the training data when there is no held-out data).
        for data in std::iter::once(&train).chain(&val) {
            oto_torch::train::check_labels(&exec, data, job.loss).map_err(classify)?;
        }
        let analysis = oto_graph::analyze(&model, &AnalyzeOptions { unprunable: job.unprunable.clone() }).map_err(input_error)?;
        if analysis.prunable_groups().next().is_none() {
            return Err(input_error(anyhow::anyhow!("{}: nothing to prune: {}", job.model.display(), unprunable_summary(&analysis))));
        }
        let teacher = match job.loss {
            oto_torch::loss::Loss::Distill { .. } => Some(Executor::new(&model, exec.device()).map_err(classify)?),
            _ => None,
        };
        Ok(Setup { job, model, analysis, exec, teacher, train, val, resume })
    }
}

fn load_model(path: &Path, device: &str) -> Result<(Model, Executor)> {
    let device = oto_torch::parse_device(device).map_err(input_error)?;
    let model = Model::load(path).map_err(input_error)?;
    let exec = Executor::new(&model, device).map_err(classify)?;
    Ok((model, exec))
}

/// The output folder must be a folder (or not exist), and no output may be the input model.
fn check_out(job: &Job) -> Result<()> {
    if job.out.exists() && !job.out.is_dir() {
        return Err(input_error(anyhow::anyhow!("--out {} is a file; give a folder (it is created if missing)", job.out.display())));
    }
    let input = job.model.canonicalize().unwrap_or_else(|_| job.model.clone());
    for name in [report::COMPACT_FILE, report::SPARSE_FILE] {
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
        return "the analysis found no structure that can be removed (see `oto analyze`)".into();
    }
    let list: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} ({n} group{})", if *n == 1 { "" } else { "s" })).collect();
    format!("every group is unprunable: {} (see `oto analyze` for each group)", list.join("; "))
}

/// Runs the job to the end (or until `interrupt` is set), writing every output into
/// `job.out`, and returns the report.
pub fn run(setup: Setup, interrupt: &AtomicBool, observer: &mut dyn Observer) -> Result<report::Report> {
    let started = Instant::now();
    let Setup { job, model, analysis, exec, teacher, train, val, resume } = setup;
    let ck_dir = job.out.join(CHECKPOINT_DIR);
    std::fs::create_dir_all(&ck_dir).with_context(|| format!("cannot create {}", ck_dir.display()))?;
    // Without held-out data, the metric is measured on the training data (same tensors).
    let eval_set = val.unwrap_or_else(|| Dataset {
        path: train.path.clone(),
        inputs: train.inputs.iter().map(|t| t.shallow_clone()).collect(),
        labels: train.labels.as_ref().map(|t| t.shallow_clone()),
        len: train.len,
    });
    let eval_data = &eval_set;

    let mut progress = if resume {
        let path = ck_dir.join(PROGRESS_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display())).map_err(input_error)?;
        serde_json::from_str(&text).with_context(|| format!("{}: invalid progress file", path.display())).map_err(input_error)?
    } else {
        // A new job in a folder used before: the old training state must not be resumed
        // under this job's settings.
        for stale in [STATE_FILE, PROGRESS_FILE] {
            let path = ck_dir.join(stale);
            if path.exists() {
                std::fs::remove_file(&path).with_context(|| format!("cannot remove the previous job's {}", path.display()))?;
            }
        }
        write_json(&ck_dir.join(JOB_FILE), &job)?;
        Progress::default()
    };
    if progress.before.is_none() {
        observer.event(Event::Phase("evaluating the original model"));
        progress.before = Some(evaluate(&exec, teacher.as_ref(), eval_data, job.eval_batch(), job.loss).map_err(classify)?);
    }

    let hesso = Hesso::from_executor(&exec, &analysis, job.optimizer, job.hesso)?;
    let config = TrainConfig {
        steps: job.steps,
        batch_size: job.batch_size,
        optimizer: job.optimizer,
        schedule: job.schedule,
        loss: job.loss,
        clip_grad_norm: job.clip_grad_norm,
        seed: job.seed,
        // The job writes its checkpoints itself, with its progress beside them.
        checkpoint: None,
        checkpoint_every: 0,
    };
    let mut trainer = Trainer::with_optimizer(exec, teacher, train, config, hesso).map_err(classify)?;
    let state_path = ck_dir.join(STATE_FILE);
    if resume {
        trainer.resume(&state_path).map_err(input_error)?;
        let step = trainer.step;
        progress.history.steps.retain(|p| p.step <= step);
        progress.history.evals.retain(|p| p.step <= step);
        observer.event(Event::Note(format!("resumed from {} at step {step}", state_path.display())));
    }

    // Training, one step at a time so that an interrupt is seen at once.
    let train_started = Instant::now();
    let log_every = job.steps.div_ceil(200).max(1);
    observer.event(Event::Training { total: job.steps, done: trainer.step });
    while trainer.step < job.steps {
        let record = trainer.train_step().map_err(|e| match e {
            oto_torch::error::Error::NonFinite { step, value, .. } => anyhow::anyhow!(
                "the loss became {value} at step {step}; training stopped; the last good checkpoint is in {} (continue with --resume after lowering --lr)",
                ck_dir.display()
            ),
            other => other.into(),
        })?;
        let step = record.step;
        let point = if step % log_every == 0 || step == job.steps || step == 1 {
            let m = trainer.optimizer.metrics()?;
            progress.history.steps.push(StepPoint {
                step,
                loss: record.loss,
                lr: record.lr,
                group_sparsity: m.group_sparsity,
                norm_important: m.norm_important,
                norm_redundant: m.norm_redundant,
                phase: m.phase.name().to_string(),
            });
            progress.history.steps.last()
        } else {
            None
        };
        observer.event(Event::Step { step, loss: record.loss, point });
        if step % job.eval_every == 0 || step == job.steps {
            let r = evaluate(&trainer.exec, trainer.teacher.as_ref(), eval_data, job.eval_batch(), job.loss)?;
            progress.history.evals.push(EvalPoint { step, loss: r.loss, accuracy: r.accuracy });
            observer.event(Event::Eval(progress.history.evals.last().unwrap_or(&EvalPoint::default())));
        }
        let stop = interrupt.load(Ordering::SeqCst);
        if stop || step % job.checkpoint_every == 0 || step == job.steps {
            let mut saved = progress.clone();
            saved.seconds_before_resume += train_started.elapsed().as_secs_f64();
            write_json(&ck_dir.join(PROGRESS_FILE), &saved)?;
            trainer.save(&state_path)?;
        }
        if stop {
            return Err(Interrupted { step, out: job.out.clone() }.into());
        }
    }
    let train_seconds = train_started.elapsed().as_secs_f64() + progress.seconds_before_resume;
    if interrupt.load(Ordering::SeqCst) {
        return Err(Interrupted { step: trainer.step, out: job.out.clone() }.into());
    }

    let finals = report::Finals {
        train_seconds,
        pruned: trainer.optimizer.pruned_elements(),
        metrics: trainer.optimizer.metrics()?,
        cric: trainer.optimizer.cric_report(),
    };
    report::finish(&job, &model, &analysis, &trainer.exec, trainer.teacher.as_ref(), eval_data, &progress, finals, started, observer)
}

/// Writes `value` as pretty JSON to `path` atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, serde_json::to_string_pretty(value)?.as_bytes())
}
