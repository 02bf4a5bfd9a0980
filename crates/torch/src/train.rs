//! The training loop (dense training of an ONNX model with a loss, an optimizer and a
//! schedule), checkpoint/resume, and evaluation (`oto eval`).

use crate::checkpoint::Checkpoint;
use crate::data::{Batch, DataPosition, Dataset, Prefetcher, Sampling};
use crate::dist::{ProcessGroup, ReduceOp};
use crate::error::{Error, Result};
use crate::exec::{Executor, Mode};
use crate::loss::{correct_predictions, Loss};
use crate::optim::{clip_grad_norm, ExtraState, Optimizer, OptimizerConfig, TrainingOptimizer};
use crate::schedule::Schedule;
use oto_onnx::Model;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::{Device, Tensor};

/// Sets libtorch's intra-op thread count; `None`: every core.
pub fn set_threads(threads: Option<usize>) {
    let n = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    tch::set_num_threads(i32::try_from(n.max(1)).unwrap_or(i32::MAX));
}

/// Settings of a training run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    /// Optimizer steps to take in total.
    pub steps: u64,
    /// Samples per batch.
    pub batch_size: usize,
    /// The optimizer.
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule.
    pub schedule: Schedule,
    /// The loss.
    pub loss: Loss,
    /// Clip gradients to this global L2 norm.
    pub clip_grad_norm: Option<f64>,
    /// Seed of the data order and of dropout.
    pub seed: u64,
    /// The checkpoint file, rewritten every `checkpoint_every` steps and at the end.
    pub checkpoint: Option<PathBuf>,
    /// Steps between checkpoints (0: only at the end).
    pub checkpoint_every: u64,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepRecord {
    /// The step number, counted from 1.
    pub step: u64,
    /// The batch loss (before the update).
    pub loss: f64,
    /// The learning rate used.
    pub lr: f64,
}

/// A training job: the model's executor, the optimizer over its trainable
/// parameters (a plain [`Optimizer`] or one built around it, such as HESSO), the data
/// stream, and the counters a checkpoint saves.
pub struct Trainer<O: TrainingOptimizer = Optimizer> {
    /// The model being trained.
    pub exec: Executor,
    /// The original model in eval mode, for distillation.
    pub teacher: Option<Executor>,
    /// The optimizer (its base optimizer's per-parameter state is public).
    pub optimizer: O,
    /// The settings.
    pub config: TrainConfig,
    /// The training data.
    pub dataset: Dataset,
    /// Steps completed.
    pub step: u64,
    /// Where the next batch comes from.
    pub position: DataPosition,
    /// The loss of every completed step.
    pub losses: Vec<f64>,
    /// The last checkpoint written (or resumed from).
    pub last_checkpoint: Option<PathBuf>,
    prefetch: Option<Prefetcher>,
    probe: Option<Vec<Batch>>,
    group: Option<Arc<ProcessGroup>>,
    /// Seconds spent in the gradient all-reduce (data-parallel), over the steps of this run.
    pub all_reduce_seconds: f64,
    /// Seconds spent in [`Trainer::train_step`], over the steps of this run.
    pub step_seconds: f64,
}

/// Batches the probe loss is measured on (the first ones of the data, in order).
const PROBE_BATCHES: usize = 2;

impl Trainer<Optimizer> {
    /// Sets up training of `exec` on `dataset` with the plain optimizer of
    /// `config.optimizer` (see [`Trainer::with_optimizer`]).
    pub fn new(exec: Executor, teacher: Option<Executor>, dataset: Dataset, config: TrainConfig) -> Result<Trainer> {
        let params = exec.trainable().map(|p| (p.name.clone(), p.tensor.shallow_clone())).collect();
        let optimizer = Optimizer::new(config.optimizer, params)?;
        Trainer::with_optimizer(exec, teacher, dataset, config, optimizer)
    }
}

impl<O: TrainingOptimizer> Trainer<O> {
    /// Sets up training of `exec` on `dataset` with `optimizer`, which must hold the
    /// executor's trainable parameters (shallow handles, as `exec.trainable()` gives);
    /// checks the data against the loss (labels present, class range or target shape).
    pub fn with_optimizer(exec: Executor, teacher: Option<Executor>, dataset: Dataset, config: TrainConfig, optimizer: O) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(Error::Config("the batch size must be at least 1".into()));
        }
        if matches!(config.loss, Loss::Distill { .. }) && teacher.is_none() {
            return Err(Error::Config("the distill loss needs the teacher model".into()));
        }
        check_labels(&exec, &dataset, config.loss)?;
        Ok(Trainer {
            exec,
            teacher,
            optimizer,
            config,
            dataset,
            step: 0,
            position: DataPosition::default(),
            losses: Vec::new(),
            last_checkpoint: None,
            prefetch: None,
            probe: None,
            group: None,
            all_reduce_seconds: 0.0,
            step_seconds: 0.0,
        })
    }

    /// Makes this trainer one replica of a data-parallel job over `group`: the model's
    /// parameters and buffers are overwritten with rank 0's; from then on each rank trains
    /// on its slice of every global batch (`batch_size` stays the global batch) and the
    /// gradients are summed over the ranks, so every rank takes the same steps as one
    /// process would on the whole batch. With `sync_batch_norm`, BatchNorm normalizes over
    /// the global batch (exactly one process's statistics); without, over the rank's slice
    /// (as DDP), rank 0's running statistics being broadcast after every step.
    pub fn set_process_group(&mut self, group: Arc<ProcessGroup>, sync_batch_norm: bool) -> Result<()> {
        if self.config.batch_size < group.world() {
            return Err(Error::Config(format!(
                "the batch size {} is smaller than the {} data-parallel processes: each needs at least one sample",
                self.config.batch_size,
                group.world()
            )));
        }
        if self.dataset.len < group.world() {
            return Err(Error::Config(format!("the data hold {} samples, fewer than the {} processes", self.dataset.len, group.world())));
        }
        let state = self.exec.state();
        tch::no_grad(|| group.broadcast(&state.iter().map(|(_, t)| t).collect::<Vec<_>>(), 0))?;
        self.exec.set_batch_norm_sync(sync_batch_norm.then(|| Arc::clone(&group)));
        if let Some(teacher) = &self.teacher {
            let state = teacher.state();
            tch::no_grad(|| group.broadcast(&state.iter().map(|(_, t)| t).collect::<Vec<_>>(), 0))?;
        }
        self.group = Some(group);
        Ok(())
    }

    /// The data-parallel process group, if any.
    pub fn group(&self) -> Option<&ProcessGroup> {
        self.group.as_deref()
    }

    /// Whether this process writes outputs (rank 0, or the only process).
    pub fn is_writer(&self) -> bool {
        self.group.as_ref().is_none_or(|g| g.rank() == 0)
    }

    /// Checks that every rank holds the same model and optimizer decisions: a checksum of
    /// the parameters and buffers plus the named values `extra` (e.g. a hash of the pruned
    /// elements) are compared over the ranks; an error names the first value that differs.
    pub fn check_replicas(&self, extra: &[(&str, f64)]) -> Result<()> {
        let Some(group) = &self.group else { return Ok(()) };
        let _guard = tch::no_grad_guard();
        let (mut sum, mut squares) = (0.0, 0.0);
        for (name, t) in self.exec.state() {
            let t = t.f_to_kind(tch::Kind::Double).map_err(|e| Error::torch(format!("checksum of '{name}'"), e))?;
            sum += t.sum(tch::Kind::Double).double_value(&[]);
            squares += t.square().sum(tch::Kind::Double).double_value(&[]);
        }
        let mut values = vec![sum, squares];
        values.extend(extra.iter().map(|(_, v)| *v));
        let max = Tensor::from_slice(&values);
        let neg_min = -Tensor::from_slice(&values);
        group.all_reduce(&[&max, &neg_min], ReduceOp::Max, 1.0)?;
        let max = Vec::<f64>::try_from(&max).map_err(|e| Error::torch("reading the checksums", e))?;
        let neg_min = Vec::<f64>::try_from(&neg_min).map_err(|e| Error::torch("reading the checksums", e))?;
        let names =
            ["the parameter and buffer sum", "the parameter and buffer sum of squares"].into_iter().chain(extra.iter().map(|(n, _)| *n));
        for ((hi, lo), what) in max.iter().zip(neg_min.iter().map(|v| -v)).zip(names) {
            if hi.to_bits() != lo.to_bits() {
                return Err(Error::Distributed(format!(
                    "the ranks diverged at step {}: {what} ranges from {lo} to {hi} over the ranks",
                    self.step
                )));
            }
        }
        Ok(())
    }

    /// Per flag, whether it is set on any rank (`local`: this rank's flags, the same number
    /// on every rank), in one all-reduce: every rank sees the same answers.
    pub fn any_rank<const N: usize>(&self, local: [bool; N]) -> Result<[bool; N]> {
        let Some(g) = &self.group else { return Ok(local) };
        let sums = g.sum_f64(&local.map(|f| f64::from(u8::from(f))))?;
        let mut any = [false; N];
        for (a, s) in any.iter_mut().zip(sums) {
            *a = s > 0.0;
        }
        Ok(any)
    }

    /// How batches are drawn (seeded shuffling, incomplete last batch dropped when
    /// the data holds at least one full batch).
    pub fn sampling(&self) -> Sampling {
        Sampling {
            batch_size: self.config.batch_size,
            shuffle: true,
            drop_last: self.dataset.len >= self.config.batch_size,
            seed: self.config.seed,
        }
    }

    /// Batches in one epoch.
    pub fn batches_per_epoch(&self) -> u64 {
        self.sampling().batches_per_epoch(self.dataset.len)
    }

    fn next_batch(&mut self) -> Result<Batch> {
        let sampling = self.sampling();
        let prefetch = match &mut self.prefetch {
            Some(p) => p,
            None => self.prefetch.insert(Prefetcher::start(&self.dataset, sampling, self.position, 4)),
        };
        let (pos, batch) = prefetch.next_batch()?;
        debug_assert_eq!(pos, self.position);
        self.position = sampling.next(self.dataset.len, pos);
        Ok(batch)
    }

    /// Forward and loss on `batch` in train mode (gradients recorded).
    pub fn loss_on(&self, batch: &Batch) -> Result<Tensor> {
        let device = self.exec.device();
        let batch = batch.to_device(device);
        let outputs = self.exec.forward(&batch.inputs, Mode::Train)?;
        let output = outputs.first().ok_or_else(|| Error::Config("the model has no outputs".into()))?;
        let teacher = match &self.teacher {
            Some(t) if matches!(self.config.loss, Loss::Distill { .. }) => {
                tch::no_grad(|| t.forward(&batch.inputs, Mode::Eval))?.into_iter().next()
            }
            _ => None,
        };
        self.config.loss.compute(output, batch.labels.as_ref(), teacher.as_ref())
    }

    /// One training step: next batch, forward, loss (a NaN/inf loss stops here, before
    /// any update), backward, optional clipping, optimizer update.
    pub fn train_step(&mut self) -> Result<StepRecord> {
        let started = std::time::Instant::now();
        let record = self.train_step_timed();
        self.step_seconds += started.elapsed().as_secs_f64();
        record
    }

    fn train_step_timed(&mut self) -> Result<StepRecord> {
        let step = self.step + 1;
        // Dropout draws from a generator seeded per step, so a resumed run draws the same masks.
        // Each rank draws its own dropout masks (rank 0 the ones one process would).
        let rank = self.group.as_ref().map_or(0, |g| g.rank() as u64);
        tch::manual_seed(if rank == 0 { mix(self.config.seed, step) } else { mix(mix(self.config.seed, step), rank) } as i64);
        let batch = self.next_batch()?;
        // Data-parallel: this rank's contiguous slice of the global batch, and its share of
        // the global mean loss (its samples over the batch's).
        let (batch, share) = match &self.group {
            Some(g) => shard(&batch, g.rank(), g.world())?,
            None => (batch, 1.0),
        };
        // The forward pass updates the BatchNorm running statistics: keep a copy to
        // undo that if the step turns out bad (they are small: one vector per channel).
        let buffers: Vec<Tensor> = tch::no_grad(|| self.exec.buffers().iter().map(|b| b.tensor.copy()).collect());
        let loss = self.loss_on(&batch)?;
        let mut value = loss.f_double_value(&[]).map_err(|e| Error::torch("reading the loss", e))?;
        if let Some(g) = &self.group {
            value = g.sum_f64(&[value * share])?[0];
        }
        if !value.is_finite() {
            tch::no_grad(|| {
                for (b, saved) in self.exec.buffers().iter().zip(&buffers) {
                    b.tensor.shallow_clone().copy_(saved);
                }
            });
            let checkpoint = match &self.last_checkpoint {
                Some(p) => format!("; the last good checkpoint is {} (step {})", p.display(), self.checkpoint_step(p).unwrap_or(0)),
                None => "; no checkpoint was written yet".into(),
            };
            return Err(Error::NonFinite { step, value, checkpoint });
        }
        let lr = self.config.schedule.lr_after_pruning(self.schedule_step(), self.optimizer.structure_final_at());
        self.optimizer.base_mut().zero_grad();
        let loss = if share == 1.0 { loss } else { loss * share };
        loss.f_backward().map_err(|e| Error::torch(format!("backward pass of step {step}"), e))?;
        if let Some(g) = &self.group {
            let started = std::time::Instant::now();
            let grads: Vec<Tensor> = self.optimizer.base().params.iter().map(|p| p.grad()).filter(Tensor::defined).collect();
            g.all_reduce(&grads.iter().collect::<Vec<_>>(), ReduceOp::Sum, 1.0)?;
            self.all_reduce_seconds += started.elapsed().as_secs_f64();
        }
        if let Some(max_norm) = self.config.clip_grad_norm {
            clip_grad_norm(&self.optimizer.base().params, max_norm)?;
        }
        if let (Some(g), false) = (&self.group, self.exec.batch_norm_synced()) {
            // DDP's broadcast_buffers: every rank continues with rank 0's running statistics,
            // before the optimizer step, so that what CRIC snapshots and probes (in eval mode,
            // on the running statistics) is the same on every rank.
            let buffers: Vec<&Tensor> = self.exec.buffers().iter().map(|b| &b.tensor).collect();
            tch::no_grad(|| g.broadcast(&buffers, 0))?;
        }
        // Split borrows: the optimizer steps while the probe reads the model and the data.
        let (exec, teacher, dataset, probe) = (&self.exec, self.teacher.as_ref(), &self.dataset, &mut self.probe);
        let (loss_fn, batch_size, group) = (self.config.loss, self.config.batch_size, self.group.as_deref());
        let mut probe_loss = || {
            let batches = match probe {
                Some(b) => b,
                None => probe.insert(probe_batches(dataset, batch_size)?),
            };
            probe_mean_loss(exec, teacher, batches, loss_fn, group)
        };
        self.optimizer.step(lr, &mut probe_loss)?;
        self.step = step;
        self.losses.push(value);
        Ok(StepRecord { step, loss: value, lr })
    }

    fn checkpoint_step(&self, path: &Path) -> Option<u64> {
        Checkpoint::read(path, Device::Cpu).ok().and_then(|c| c.state["step"].as_u64())
    }

    /// The steps behind on the learning-rate schedule: the steps completed less those the
    /// optimizer threw away ([`TrainingOptimizer::replayed_steps`]: CRIC's cycles).
    pub fn schedule_step(&self) -> u64 {
        self.step.saturating_sub(self.optimizer.replayed_steps())
    }

    /// The run's length as known so far: `config.steps` plus the steps the optimizer
    /// threw away (it grows when a CRIC cycle ends).
    pub fn total_steps(&self) -> u64 {
        self.config.steps.saturating_add(self.optimizer.replayed_steps())
    }

    /// Whether the whole schedule has been trained ([`Trainer::total_steps`] are done).
    pub fn finished(&self) -> bool {
        self.schedule_step() >= self.config.steps
    }

    /// Trains until the run is [`Trainer::finished`], calling `on_step` after each step and
    /// writing checkpoints as configured (including after the last step).
    pub fn run(&mut self, on_step: impl FnMut(&StepRecord)) -> Result<()> {
        self.run_until(u64::MAX, on_step)
    }

    /// Like [`Trainer::run`], but stops after step `stop` (or earlier, when the run is
    /// finished); the schedule still spans `config.steps`, so a later run continues the
    /// same job.
    pub fn run_until(&mut self, stop: u64, mut on_step: impl FnMut(&StepRecord)) -> Result<()> {
        while self.step < stop && !self.finished() {
            let record = self.train_step()?;
            on_step(&record);
            let every = self.config.checkpoint_every;
            let due = (every > 0 && self.step.is_multiple_of(every)) || self.finished();
            if let (true, Some(path)) = (due, self.config.checkpoint.clone()) {
                self.save(&path)?;
            }
        }
        Ok(())
    }

    /// The training state: weights and buffers, optimizer state (the base optimizer's
    /// and the wrapper's extra state), step, data position, seed, losses.
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        let mut tensors: Vec<(String, Tensor)> = self.exec.state().into_iter().map(|(n, t)| (format!("model/{n}"), t)).collect();
        let (optim, steps) = self.optimizer.base().state_tensors();
        tensors.extend(optim.into_iter().map(|(n, t)| (format!("optim/{n}"), t)));
        let extra = self.optimizer.extra_state()?;
        tensors.extend(extra.tensors.into_iter().map(|(n, t)| (format!("extra/{n}"), t)));
        let state = serde_json::json!({
            "step": self.step,
            "position": self.position,
            "seed": self.config.seed,
            "optimizer_steps": steps,
            "optimizer_extra": extra.json,
            "losses": self.losses,
        });
        Ok(Checkpoint { tensors, state })
    }

    /// Writes the checkpoint atomically to `path` (only rank 0 of a data-parallel job
    /// writes; the others only remember it).
    pub fn save(&mut self, path: &Path) -> Result<()> {
        if self.is_writer() {
            self.checkpoint()?.write(path)?;
        }
        self.last_checkpoint = Some(path.to_path_buf());
        Ok(())
    }

    /// Restores the state saved at `path`: the next step continues exactly where that run was.
    pub fn resume(&mut self, path: &Path) -> Result<()> {
        let fail = |message: String| Error::Checkpoint { path: path.to_path_buf(), message };
        let ck = Checkpoint::read(path, self.exec.device())?;
        let seed = ck.state["seed"].as_u64().ok_or_else(|| fail("has no seed".into()))?;
        if seed != self.config.seed {
            return Err(fail(format!("was written with seed {seed}, but this run uses seed {}", self.config.seed)));
        }
        let mut model = Vec::new();
        let mut optim = Vec::new();
        let mut extra = ExtraState { tensors: Vec::new(), json: ck.state["optimizer_extra"].clone() };
        for (name, t) in ck.tensors {
            if let Some(n) = name.strip_prefix("model/") {
                model.push((n.to_string(), t));
            } else if let Some(n) = name.strip_prefix("optim/") {
                optim.push((n.to_string(), t));
            } else if let Some(n) = name.strip_prefix("extra/") {
                extra.tensors.push((n.to_string(), t));
            }
        }
        self.exec.load_state(&model)?;
        let steps: Vec<(String, u64)> =
            serde_json::from_value(ck.state["optimizer_steps"].clone()).map_err(|e| fail(format!("optimizer steps: {e}")))?;
        self.optimizer.base_mut().load_state(&optim, &steps)?;
        self.optimizer.load_extra_state(extra).map_err(|e| fail(format!("optimizer state: {e}")))?;
        self.step = ck.state["step"].as_u64().ok_or_else(|| fail("has no step".into()))?;
        self.position = serde_json::from_value(ck.state["position"].clone()).map_err(|e| fail(format!("data position: {e}")))?;
        self.losses = serde_json::from_value(ck.state["losses"].clone()).unwrap_or_default();
        self.prefetch = None;
        self.last_checkpoint = Some(path.to_path_buf());
        Ok(())
    }
}

/// Rank `rank`'s contiguous slice of `batch` (of `world` near-equal slices) and its share
/// of the batch's samples.
fn shard(batch: &Batch, rank: usize, world: usize) -> Result<(Batch, f64)> {
    let n = batch.len();
    match slice(batch, rank, world)? {
        Some(part) => {
            let share = part.len() as f64 / n as f64;
            Ok((part, share))
        }
        None => Err(Error::Config(format!("a batch of {n} samples cannot give each of the {world} processes a sample"))),
    }
}

/// Rank `rank`'s contiguous slice of `batch` (of `world` near-equal slices); `None` when
/// the batch is too short to give this rank a sample.
fn slice(batch: &Batch, rank: usize, world: usize) -> Result<Option<Batch>> {
    let n = batch.len();
    let (start, end) = (n * rank / world, n * (rank + 1) / world);
    if start == end {
        return Ok(None);
    }
    let take = |t: &Tensor| t.f_narrow(0, start as i64, (end - start) as i64).map_err(|e| Error::torch("slicing the batch per rank", e));
    let inputs = batch.inputs.iter().map(take).collect::<Result<_>>()?;
    let labels = batch.labels.as_ref().map(take).transpose()?;
    Ok(Some(Batch { inputs, labels }))
}

/// The first `PROBE_BATCHES` batches of `dataset` in order (fewer when it is small).
fn probe_batches(dataset: &Dataset, batch_size: usize) -> Result<Vec<Batch>> {
    first_batches(dataset, dataset.len, batch_size, PROBE_BATCHES as u64)
}

/// The first `count` batches of `batch_size` samples taken in order from the first
/// `samples` samples of `dataset` (all of them when it has fewer), on the host (fewer
/// batches when the samples run out; the last may be short): fixed data for measurements
/// (CRIC's probe loss, the Hessian of the OBD criterion, `oto hessian`, the traces of
/// `oto quantize --size-budget`).
pub fn first_batches(dataset: &Dataset, samples: usize, batch_size: usize, count: u64) -> Result<Vec<Batch>> {
    let n = samples.min(dataset.len);
    let sampling = Sampling { batch_size, shuffle: false, drop_last: false, seed: 0 };
    let count = sampling.batches_per_epoch(n).min(count);
    let mut pos = DataPosition::default();
    let mut batches = Vec::new();
    for _ in 0..count {
        batches.push(dataset.batch(&sampling.indices(n, pos))?);
        pos = sampling.next(n, pos);
    }
    Ok(batches)
}

/// The mean loss over `batches` in eval mode, without gradients (CRIC's probe loss). Over
/// the ranks of `group`, each evaluates its slice of every batch and the sums are reduced:
/// every rank gets the same value, that of the whole batches.
fn probe_mean_loss(
    exec: &Executor,
    teacher: Option<&Executor>,
    batches: &[Batch],
    loss: Loss,
    group: Option<&ProcessGroup>,
) -> Result<f64> {
    let Some(g) = group else {
        return Ok(evaluate_batches(exec, teacher, batches.iter().map(Ok), loss)?.loss);
    };
    let slices = batches.iter().map(|b| slice(b, g.rank(), g.world())).filter_map(Result::transpose);
    let report = evaluate_batches(exec, teacher, slices, loss)?;
    let sums = g.sum_f64(&[report.loss * report.samples as f64, report.samples as f64])?;
    Ok(sums[0] / sums[1].max(1.0))
}

/// Mixes a seed and a step into a generator seed (SplitMix64 finalizer).
fn mix(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) >> 1
}

/// Loss and metric of a model on a data set in eval mode.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalReport {
    /// Mean loss over the samples.
    pub loss: f64,
    /// Accuracy (classification with labels), else `None` (the loss is the metric).
    pub accuracy: Option<f64>,
    /// Samples evaluated.
    pub samples: usize,
}

/// Evaluates `exec` on `dataset` in eval mode, without gradients.
pub fn evaluate(exec: &Executor, teacher: Option<&Executor>, dataset: &Dataset, batch_size: usize, loss: Loss) -> Result<EvalReport> {
    evaluate_sharded(exec, teacher, dataset, batch_size, loss, None)
}

/// [`evaluate`] split over the ranks of `group`: each evaluates every `world`-th batch and
/// the sums are reduced, so every rank gets the report of the whole data set.
pub fn evaluate_sharded(
    exec: &Executor,
    teacher: Option<&Executor>,
    dataset: &Dataset,
    batch_size: usize,
    loss: Loss,
    group: Option<&ProcessGroup>,
) -> Result<EvalReport> {
    let sampling = Sampling { batch_size: batch_size.max(1), shuffle: false, drop_last: false, seed: 0 };
    let (rank, world) = group.map_or((0, 1), |g| (g.rank() as u64, g.world() as u64));
    let batches = (0..sampling.batches_per_epoch(dataset.len)).filter(|i| i % world == rank).map(|i| {
        let pos = DataPosition { epoch: 0, batch: i };
        dataset.batch(&sampling.indices(dataset.len, pos))
    });
    let report = evaluate_batches(exec, teacher, batches, loss)?;
    let Some(g) = group else { return Ok(report) };
    let samples = report.samples as f64;
    // The correct predictions are a count: rounding undoes the division's rounding.
    let correct = report.accuracy.map_or(0.0, |a| (a * samples).round());
    let sums = g.sum_f64(&[report.loss * samples, samples, correct, f64::from(u8::from(report.accuracy.is_some()))])?;
    let total = sums[1].max(1.0);
    Ok(EvalReport { loss: sums[0] / total, accuracy: (sums[3] > 0.0).then(|| sums[2] / total), samples: sums[1] as usize })
}

/// Loss (mean over the samples) and, for classification with labels, accuracy over
/// `batches`, in eval mode and without gradients. The teacher runs for distillation only.
fn evaluate_batches<B: std::borrow::Borrow<Batch>>(
    exec: &Executor,
    teacher: Option<&Executor>,
    batches: impl Iterator<Item = Result<B>>,
    loss: Loss,
) -> Result<EvalReport> {
    let _guard = tch::no_grad_guard();
    let mut total = 0.0;
    let mut samples = 0usize;
    let mut correct: Option<Tensor> = None;
    for batch in batches {
        let batch = batch?.borrow().to_device(exec.device());
        let outputs = exec.forward(&batch.inputs, Mode::Eval)?;
        let output = outputs.first().ok_or_else(|| Error::Config("the model has no outputs".into()))?;
        let teacher_out = match teacher {
            Some(t) if matches!(loss, Loss::Distill { .. }) => t.forward(&batch.inputs, Mode::Eval)?.into_iter().next(),
            _ => None,
        };
        let l = loss.compute(output, batch.labels.as_ref(), teacher_out.as_ref())?;
        total += l.f_double_value(&[]).map_err(|e| Error::torch("reading the loss", e))? * batch.len() as f64;
        samples += batch.len();
        if let (true, Some(labels)) = (loss.is_classification(), &batch.labels) {
            let c = correct_predictions(output, labels)?;
            correct = Some(match correct {
                Some(acc) => acc + c,
                None => c,
            });
        }
    }
    let accuracy = correct.map(|c| c.int64_value(&[]) as f64 / samples.max(1) as f64);
    Ok(EvalReport { loss: total / samples.max(1) as f64, accuracy, samples })
}

/// `oto eval MODEL --data TEST [--batch-size B] [--device D]`: loads the model (normalized,
/// as every command reads it: [`oto_onnx::normalize::load`]) and evaluates it ([`eval_model`]).
pub fn eval_file(model: &Path, data: &Path, batch_size: usize, device: &str, loss: Loss) -> Result<EvalReport> {
    let device = crate::parse_device(device)?;
    let (model, _) = oto_onnx::normalize::load(model)?;
    eval_model(&model, data, &crate::data::DataFormat::Arrays, 0, batch_size, device, loss)
}

/// Loads the data for `model` (read as `format`; an image folder with a held-out split
/// is evaluated on the held-out images that `seed` chooses), checks them against each
/// other, and reports loss and metric in eval mode. `distill` is evaluated as
/// cross-entropy against the labels (the model is its own teacher).
pub fn eval_model(
    model: &Model,
    data: &Path,
    format: &crate::data::DataFormat,
    seed: u64,
    batch_size: usize,
    device: Device,
    loss: Loss,
) -> Result<EvalReport> {
    // Evaluating a model against itself as teacher is meaningless: use its labels.
    let loss = match loss {
        Loss::Distill { .. } => Loss::CrossEntropy { label_smoothing: 0.0 },
        other => other,
    };
    let exec = Executor::first_pass(model, device)?;
    let inputs: Vec<_> = exec.inputs().cloned().collect();
    let part = match format {
        crate::data::DataFormat::Images(o) if o.val_split.is_some() => crate::data::images::Part::Val,
        _ => crate::data::images::Part::All,
    };
    let dataset = Dataset::open(data, format, model, &inputs, part, seed)?;
    check_labels(&exec, &dataset, loss)?;
    evaluate(&exec, None, &dataset, batch_size, loss)
}

/// Checks the labels of `dataset` against what `loss` needs and the model's output (class
/// range, or target shape), from a forward pass on two samples. Distillation needs no
/// labels; labels it is given must still be valid classes (they give the accuracy).
pub fn check_labels(exec: &Executor, dataset: &Dataset, loss: Loss) -> Result<()> {
    let probe = dataset.batch(&(0..dataset.len.min(2) as i64).collect::<Vec<_>>())?.to_device(exec.device());
    let out = tch::no_grad(|| exec.forward(&probe.inputs, Mode::Eval))?;
    let first = out.first().ok_or_else(|| Error::Config("the model has no outputs".into()))?;
    let classes = crate::loss::class_count(&first.size());
    match loss {
        Loss::CrossEntropy { .. } => dataset.check_class_labels(classes),
        Loss::Mse | Loss::Bce => dataset.check_dense_labels(&first.size()),
        Loss::Distill { .. } if dataset.labels.is_some() => dataset.check_class_labels(classes),
        Loss::Distill { .. } => Ok(()),
    }
}
