//! The training stage: HESSO (optionally with CRIC) on libtorch, one step at a time so
//! that an interrupt is seen at once, with evaluations and checkpoints along the way.

use super::config::Job;
use super::files::{CHECKPOINT_DIR, JOB_FILE, PROGRESS_FILE, STATE_FILE};
use super::history::{EvalPoint, Progress, StepPoint};
use super::observe::{Event, Observer};
use super::setup::Setup;
use crate::error::{classify, input_error};
use crate::output::write_json;
use anyhow::{Context, Result};
use oto_graph::Analysis;
use oto_hessian::{hutchinson, HessianOperator, TraceConfig};
use oto_onnx::Model;
use oto_optim::{Hesso, HessoMetrics};
use oto_torch::data::Dataset;
use oto_torch::dist::ProcessGroup;
use oto_torch::exec::Executor;
use oto_torch::train::{evaluate_sharded, TrainConfig, Trainer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

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

/// This process's place in a data-parallel job.
pub struct Parallel {
    /// The process group (Gloo on CPU, NCCL on CUDA).
    pub group: Arc<ProcessGroup>,
    /// BatchNorm statistics over the global batch instead of each rank's slice.
    pub sync_batch_norm: bool,
}

/// Checksums of HESSO's decisions, compared over the ranks: a hash of its whole schedule
/// state as a checkpoint saves it (chosen, decaying and pruned elements; with CRIC its
/// counters, violating sets, reference and probe losses), and the sum of CRIC's tensors
/// (the snapshot the cycles restart from, the running score sum).
fn decisions_checksum(hesso: &Hesso) -> Result<[f64; 2]> {
    use oto_torch::optim::TrainingOptimizer;
    let state = hesso.extra_state()?;
    let text = serde_json::to_string(&state.json).context("HESSO's state as JSON")?;
    // FNV-1a, kept to f64's 53 exact bits.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        hash = (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let _guard = oto_torch::tch::no_grad_guard();
    let mut sum = 0.0;
    for (name, t) in &state.tensors {
        let t = t.f_to_kind(oto_torch::tch::Kind::Double).with_context(|| format!("checksum of HESSO's '{name}'"))?;
        sum += t.sum(oto_torch::tch::Kind::Double).double_value(&[]);
    }
    Ok([(hash >> 11) as f64, sum])
}

/// What HESSO produced, for the report.
pub struct Finals {
    /// Training seconds over all resumed parts.
    pub train_seconds: f64,
    /// HESSO's pruned elements per group.
    pub pruned: BTreeMap<String, Vec<usize>>,
    /// HESSO's final metrics.
    pub metrics: HessoMetrics,
    /// CRIC's report, when it ran.
    pub cric: Option<oto_optim::CricReport>,
    /// With a MACs or parameter budget: HESSO's cost model of the budgeted resource
    /// (whole model, after pruning).
    pub budget_estimate: Option<(f64, f64)>,
}

/// What every initializer of `model` costs, for a MACs or parameter budget
/// (`oto_onnx::cost::weight_costs_given`, symbolic input axes such as an image's height
/// and width at the sizes `data` has), and the MACs no initializer carries.
fn weight_prices(model: &Model, data: &Dataset) -> Result<(BTreeMap<String, oto_optim::WeightPrice>, f64)> {
    let graph = oto_onnx::Graph::new(model).map_err(input_error)?;
    let shapes = oto_onnx::shape::infer(&graph).map_err(input_error)?;
    let given = oto_onnx::cost::data_sizes(&graph, &shapes, &data_shapes(data));
    let costs = oto_onnx::cost::weight_costs_given(&graph, &shapes, &given);
    let prices = costs
        .weights
        .into_iter()
        .map(|(name, w)| {
            let numel = w.dims.iter().map(|&d| d as f64).product::<f64>();
            let macs_per_element = if numel > 0.0 { w.macs as f64 / numel } else { 0.0 };
            let params_per_element = if w.parameter { 1.0 } else { 0.0 };
            (name, oto_optim::WeightPrice { dims: w.dims, params_per_element, macs_per_element })
        })
        .collect();
    Ok((prices, costs.other_macs as f64))
}

/// Batches and Hutchinson samples of the Hessian diagonal behind the second-order (OBD)
/// criterion, estimated before each pruning period's choice: 8 Hessian-vector products
/// over the first 2 batches, each batch's gradient graph built once for the 8 directions:
/// about 35 gradient steps of work per period (measured: a product from a kept graph costs
/// about 2 gradient steps, bench/hvp.md).
const OBD_BATCHES: u64 = 2;
const OBD_SAMPLES: usize = 8;

/// The OBD saliency of every group element at the current weights, `1/2 sum diag(H) w^2`
/// with the Hutchinson diagonal of the job's loss on the first training batches.
/// Data-parallel: rank 0's values are broadcast, so that every rank chooses the same
/// elements even where the ranks' floating-point rounding differs (other thread counts).
fn obd_saliency(trainer: &Trainer<Hesso>, analysis: &Analysis, job: &Job) -> Result<Vec<(String, Vec<f64>)>> {
    let batches = oto_torch::train::first_batches(&trainer.dataset, trainer.dataset.len, job.batch_size, OBD_BATCHES).map_err(classify)?;
    let mut op = HessianOperator::new(&trainer.exec, trainer.teacher.as_ref(), batches, job.loss).map_err(classify)?;
    let seed = job.seed ^ trainer.step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let config = TraceConfig { tolerance: 0.0, min_samples: OBD_SAMPLES, max_samples: OBD_SAMPLES, seed };
    let h = hutchinson(&mut op, &[], &config, |_| {}).map_err(classify)?;
    let mut saliency = oto_hessian::obd_saliency(&op, &h.diagonal, analysis).map_err(classify)?;
    if let Some(group) = trainer.group() {
        let flat: Vec<f64> = saliency.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        let t = oto_torch::tch::Tensor::from_slice(&flat);
        group.broadcast(&[&t], 0)?;
        let flat = Vec::<f64>::try_from(&t).context("reading the broadcast OBD saliency")?;
        let mut rest = flat.as_slice();
        for (_, v) in &mut saliency {
            let (head, tail) = rest.split_at(v.len());
            v.copy_from_slice(head);
            rest = tail;
        }
    }
    Ok(saliency)
}

/// The shape of every input array of `data` (first axis: samples); empty for an image
/// folder (decoded batch by batch, at the model's fixed size).
pub(super) fn data_shapes(data: &Dataset) -> Vec<Vec<i64>> {
    data.inputs.iter().map(|t| t.size()).collect()
}

/// What training leaves for the later stages.
pub struct Trained {
    /// The job.
    pub job: Job,
    /// The original model.
    pub model: Model,
    /// Its analysis.
    pub analysis: Analysis,
    /// The trained model (pruned elements at zero).
    pub exec: Executor,
    /// The original model as the distillation teacher, when the loss distills.
    pub teacher: Option<Executor>,
    /// The held-out data (the training data when the job has none).
    pub eval_data: Dataset,
    /// The training data (the calibration data of `quantize`).
    pub train_data: Dataset,
    /// The measurements and the training curve.
    pub progress: Progress,
    /// What HESSO did.
    pub finals: Finals,
    /// Whether this process writes the outputs (rank 0 of a data-parallel job).
    pub writer: bool,
}

/// Trains the job's model with HESSO to the last step (or until `interrupt` is set:
/// then the checkpoint is written and the error is [`Interrupted`]), evaluating the
/// original model first and the model at every evaluation step.
pub fn train(setup: Setup, interrupt: &AtomicBool, observer: &mut dyn Observer) -> Result<Trained> {
    let Setup { job, model, analysis, exec, teacher, train, val, resume, parallel } = setup;
    let writer = parallel.as_ref().is_none_or(|p| p.group.rank() == 0);
    let group = parallel.as_ref().map(|p| p.group.as_ref());
    let ck_dir = job.out.join(CHECKPOINT_DIR);
    if writer {
        std::fs::create_dir_all(&ck_dir).with_context(|| format!("cannot create {}", ck_dir.display()))?;
    }
    // Without held-out data, the metric is measured on the training data (same tensors).
    let eval_set = val.unwrap_or_else(|| train.shallow_clone());
    let eval_data = &eval_set;

    let mut progress = if resume {
        let path = ck_dir.join(PROGRESS_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display())).map_err(input_error)?;
        serde_json::from_str(&text).with_context(|| format!("{}: invalid progress file", path.display())).map_err(input_error)?
    } else if writer {
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
    } else {
        Progress::default()
    };
    if progress.before.is_none() {
        observer.event(Event::Phase("evaluating the original model"));
        progress.before = Some(evaluate_sharded(&exec, teacher.as_ref(), eval_data, job.eval_batch(), job.loss, group).map_err(classify)?);
    }

    let mut hesso = Hesso::from_executor(&exec, &analysis, job.optimizer, job.hesso)?;
    if job.hesso.budget.ratio().is_some() {
        let (weights, other_macs) = weight_prices(&model, &train)?;
        hesso.set_costs(&analysis, &weights, other_macs);
    }
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
    if let Some(p) = &parallel {
        trainer.set_process_group(Arc::clone(&p.group), p.sync_batch_norm).map_err(classify)?;
        let world = p.group.world();
        observer.event(Event::Note(format!(
            "data-parallel over {world} processes: {} samples of each global batch of {} per process{}",
            job.batch_size / world,
            job.batch_size,
            if p.sync_batch_norm { ", BatchNorm synchronized" } else { "" }
        )));
    }
    let mut phase = String::new();
    let first_step = (trainer.group().is_some() && !trainer.finished()).then_some(trainer.step);

    // Training, one step at a time so that an interrupt is seen at once.
    let train_started = Instant::now();
    let log_every = job.steps.div_ceil(200).max(1);
    let mut total = trainer.total_steps();
    observer.event(Event::Training { total, done: trainer.step });
    while !trainer.finished() {
        if trainer.optimizer.needs_obd_saliency() {
            let saliency = obd_saliency(&trainer, &analysis, &job)?;
            trainer.optimizer.set_obd_saliency(&saliency)?;
        }
        let record = trainer.train_step().map_err(|e| match e {
            oto_torch::error::Error::NonFinite { step, value, .. } => anyhow::anyhow!(
                "the loss became {value} at step {step}; training stopped; the last good checkpoint is in {} (continue with --resume after lowering --lr)",
                ck_dir.display()
            ),
            other => other.into(),
        })?;
        let step = record.step;
        let last = trainer.finished();
        if trainer.total_steps() != total {
            total = trainer.total_steps();
            observer.event(Event::Extended { total, reason: "a CRIC cycle restarted from its snapshot: its steps are trained again" });
        }
        // Data-parallel: whether this rank's phase, set of chosen elements or CRIC cycle changed.
        let changed = match trainer.group() {
            Some(_) => {
                let m = trainer.optimizer.metrics()?;
                let cycles = trainer.optimizer.cric_report().map_or(0, |r| r.cycles);
                let key = format!("{} {} {} {cycles}", m.phase.name(), m.decaying, m.pruned);
                let changed = key != phase;
                phase = key;
                changed
            }
            None => false,
        };
        let point = if step % log_every == 0 || last || step == 1 {
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
        if step % job.eval_every == 0 || last {
            let r = evaluate_sharded(&trainer.exec, trainer.teacher.as_ref(), eval_data, job.eval_batch(), job.loss, trainer.group())?;
            progress.history.evals.push(EvalPoint { step, loss: r.loss, accuracy: r.accuracy });
            observer.event(Event::Eval(progress.history.evals.last().unwrap_or(&EvalPoint::default())));
        }
        // A Ctrl-C seen by any rank stops every rank after the same step.
        let [stop, changed] = trainer.any_rank([interrupt.load(Ordering::SeqCst), changed])?;
        if trainer.group().is_some() && (changed || step % job.checkpoint_every == 0) {
            // Every period starts from the same decisions on every rank: checked whenever the
            // phase, the set of chosen elements or CRIC's cycle changes on any rank (every
            // rank checks then: a check is a collective), and at every checkpoint.
            let m = trainer.optimizer.metrics()?;
            let [hash, tensors] = decisions_checksum(&trainer.optimizer)?;
            trainer.check_replicas(&[
                ("a hash of HESSO's state (chosen and pruned elements, CRIC's sets and probe losses)", hash),
                ("the sum of CRIC's snapshot and scores", tensors),
                ("the number of pruned elements", m.pruned as f64),
                ("the number of decaying elements", m.decaying as f64),
            ])?;
        }
        if stop || step % job.checkpoint_every == 0 || last {
            if writer {
                let mut saved = progress.clone();
                saved.seconds_before_resume += train_started.elapsed().as_secs_f64();
                write_json(&ck_dir.join(PROGRESS_FILE), &saved)?;
            }
            trainer.save(&state_path)?;
        }
        if stop {
            return Err(Interrupted { step, out: job.out.clone() }.into());
        }
    }
    let train_seconds = train_started.elapsed().as_secs_f64() + progress.seconds_before_resume;
    if let (Some(g), Some(first)) = (trainer.group(), first_step) {
        let steps = trainer.step.saturating_sub(first).max(1) as f64;
        let step_seconds = trainer.step_seconds / steps;
        let reduce = trainer.all_reduce_seconds / steps;
        observer.event(Event::Note(format!(
            "data-parallel over {} processes: gradient all-reduce {:.1} ms of {:.1} ms per step ({:.1}%) on rank {}",
            g.world(),
            1e3 * reduce,
            1e3 * step_seconds,
            100.0 * reduce / step_seconds.max(1e-12),
            g.rank()
        )));
    }
    if interrupt.load(Ordering::SeqCst) {
        return Err(Interrupted { step: trainer.step, out: job.out.clone() }.into());
    }

    let finals = Finals {
        budget_estimate: trainer.optimizer.budget_estimate(),
        train_seconds,
        pruned: trainer.optimizer.pruned_elements(),
        metrics: trainer.optimizer.metrics()?,
        cric: trainer.optimizer.cric_report(),
    };
    let train_data = trainer.dataset.shallow_clone();
    Ok(Trained {
        job,
        model,
        analysis,
        exec: trainer.exec,
        teacher: trainer.teacher,
        eval_data: eval_set,
        train_data,
        progress,
        finals,
        writer,
    })
}
