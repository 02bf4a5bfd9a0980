//! CRIC (Corrective Redundant Identification Cycle), `shared/spec/hesso.md`: after a
//! warm-up, one snapshot (parameters, base-optimizer state, buffers), a reference loss and
//! per-group probes; then cycles that each restart from the snapshot and decay a violating
//! set while the running mean of every element's score accumulates; then the final choice
//! (mean score plus the probes' term) decays to zero from the snapshot and is held there.
//!
//! The state is O(parameters + elements): one snapshot, one running sum of scores and a
//! step count, the sets as flags per element, and a few numbers per group and per cycle.

use crate::budget;
use crate::config::CricConfig;
use crate::core::{CricState, GroupProbe, Hesso, Phase, SavedCric, Snapshot};
use crate::error::{HessoError, Result};
use crate::select::{self, GroupQuota};
use oto_torch::optim::{Optimizer, Probe};
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// The fractions of a group's lowest-scoring elements that the probes zero.
pub const PROBE_FRACTIONS: [f64; 3] = [0.25, 0.5, 0.75];

/// Bound on the magnitude of one probe's log loss ratio (a probe whose loss is not finite
/// counts as this bound), so that one exploding probe does not swamp the others.
const LOG_RATIO_CAP: f64 = 20.0;

/// What CRIC has measured and decided so far ([`Hesso::cric_report`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CricReport {
    /// The phase of the last step.
    pub phase: Phase,
    /// Steps taken when the snapshot was taken (`start_cric_step`), once it is.
    pub snapshot_step: Option<u64>,
    /// The probe loss at the snapshot.
    pub reference_loss: Option<f64>,
    /// Per prunable group, in group order.
    pub probes: Vec<GroupProbe>,
    /// Cycles started.
    pub cycles: u64,
    /// Per finished cycle: how many elements of the T lowest by mean score had never been
    /// violating before (the termination rule compares this with `tolerance`).
    pub new_elements: Vec<usize>,
    /// Per started cycle: the size of its violating set.
    pub violating: Vec<usize>,
    /// The step index (from 0) of the first hybrid-training step, once decided.
    pub hybrid_start: Option<u64>,
    /// The finished cycles' steps: the trainer trains that many steps more than the run's
    /// length, so that the final choice trains as long as plain HESSO's would.
    pub replayed_steps: u64,
}

const STATE_FIELDS: [&str; 3] = ["momentum_buffer", "exp_avg", "exp_avg_sq"];

fn deep_copy(t: &Tensor) -> std::result::Result<Tensor, tch::TchError> {
    t.f_detach_copy()
}

impl Snapshot {
    fn take(base: &Optimizer, buffers: &[(String, Tensor)]) -> Result<Snapshot> {
        let fail = |e| HessoError::torch("taking CRIC's snapshot", e);
        let params = base.params.iter().map(deep_copy).collect::<std::result::Result<Vec<_>, _>>().map_err(fail)?;
        let mut state = Vec::with_capacity(base.state.len());
        for s in &base.state {
            let mut copies: [Option<Tensor>; 3] = Default::default();
            for (slot, t) in copies.iter_mut().zip([&s.momentum_buffer, &s.exp_avg, &s.exp_avg_sq]) {
                *slot = t.as_ref().map(deep_copy).transpose().map_err(fail)?;
            }
            state.push(copies);
        }
        let steps = base.state.iter().map(|s| s.step).collect();
        let buffers = buffers.iter().map(|(_, t)| deep_copy(t)).collect::<std::result::Result<Vec<_>, _>>().map_err(fail)?;
        Ok(Snapshot { params, state, steps, buffers })
    }

    /// Sets parameters, base-optimizer state and buffers bitwise back to the snapshot
    /// (in place for the shared parameter and buffer tensors).
    fn restore(&self, base: &mut Optimizer, buffers: &[(String, Tensor)]) -> Result<()> {
        let fail = |e| HessoError::torch("restoring CRIC's snapshot", e);
        for (p, saved) in base.params.iter_mut().zip(&self.params) {
            p.f_copy_(saved).map_err(fail)?;
        }
        for ((s, saved), &step) in base.state.iter_mut().zip(&self.state).zip(&self.steps) {
            for (slot, t) in [&mut s.momentum_buffer, &mut s.exp_avg, &mut s.exp_avg_sq].into_iter().zip(saved) {
                *slot = t.as_ref().map(deep_copy).transpose().map_err(fail)?;
            }
            s.step = step;
        }
        for ((_, b), saved) in buffers.iter().zip(&self.buffers) {
            b.shallow_clone().f_copy_(saved).map_err(fail)?;
        }
        Ok(())
    }
}

impl CricState {
    pub(crate) fn new(config: CricConfig) -> CricState {
        CricState {
            config,
            next: Phase::Warmup,
            last: Phase::Warmup,
            cycle: 0,
            phase_step: 0,
            snapshot: None,
            score_sum: None,
            score_count: 0,
            violated: Vec::new(),
            snapshot_step: None,
            reference_loss: None,
            probes: Vec::new(),
            new_elements: Vec::new(),
            violating_sizes: Vec::new(),
            hybrid_start: None,
        }
    }

    pub(crate) fn cycles(&self) -> u64 {
        self.cycle
    }

    pub(crate) fn last_phase(&self) -> Phase {
        self.last
    }

    /// The steps of the finished cycles (each ended by restoring the snapshot).
    pub(crate) fn replayed_steps(&self) -> u64 {
        (self.new_elements.len() as u64).saturating_mul(self.config.sampling_steps)
    }

    /// The schedule step at which the hybrid training ends (the structure is final from
    /// there): known once it has started.
    pub(crate) fn structure_final_at(&self) -> Option<u64> {
        let end = self.hybrid_start?.saturating_add(self.config.hybrid_training_steps);
        Some(end.saturating_sub(self.replayed_steps()))
    }

    /// Whether the hybrid training's last step has run.
    pub(crate) fn hybrid_done(&self) -> bool {
        self.next == Phase::Pruned
    }
}

impl Hesso {
    /// CRIC's measurements and decisions so far (`None` without CRIC).
    pub fn cric_report(&self) -> Option<CricReport> {
        self.cric.as_ref().map(|c| CricReport {
            phase: c.last,
            snapshot_step: c.snapshot_step,
            reference_loss: c.reference_loss,
            probes: c.probes.clone(),
            cycles: c.cycle,
            new_elements: c.new_elements.clone(),
            violating: c.violating_sizes.clone(),
            hybrid_start: c.hybrid_start,
            replayed_steps: c.replayed_steps(),
        })
    }

    /// CRIC: the running mean of every element's score over the cycles' steps so far, per
    /// group (`None` without CRIC or before the first cycle step).
    pub fn cric_mean_scores(&self) -> Result<Option<Vec<Vec<f64>>>> {
        let Some(cric) = &self.cric else {
            return Ok(None);
        };
        Ok(self.mean_scores(cric)?.map(|flat| self.split_by_group(&flat)))
    }

    fn mean_scores(&self, cric: &CricState) -> Result<Option<Vec<f64>>> {
        let (Some(sum), true) = (&cric.score_sum, cric.score_count > 0) else {
            return Ok(None);
        };
        let fail = |e| HessoError::torch("reading CRIC's mean scores", e);
        let sum: Vec<f64> = Vec::try_from(sum.to_device(tch::Device::Cpu)).map_err(fail)?;
        Ok(Some(sum.iter().map(|s| s / cric.score_count as f64).collect()))
    }

    /// CRIC's part of step `index` (from 0), after the base update.
    pub(crate) fn cric_step(&mut self, index: u64, probe: Probe<'_>) -> Result<()> {
        let Some(mut cric) = self.cric.take() else {
            return Err(HessoError::Config { setting: "cric", message: "CRIC is not configured".into() });
        };
        let result = self.advance(&mut cric, index, probe);
        self.cric = Some(cric);
        result
    }

    fn advance(&mut self, cric: &mut CricState, index: u64, probe: Probe<'_>) -> Result<()> {
        let config = cric.config;
        cric.last = cric.next;
        match cric.next {
            Phase::Warmup => {
                if index + 1 == config.start_cric_step {
                    self.take_snapshot(cric, index, probe)?;
                }
                Ok(())
            }
            Phase::Cycle => self.cycle_step(cric, index),
            Phase::Hybrid => {
                let (t, h) = (cric.phase_step, config.hybrid_training_steps);
                if t + 1 < h {
                    self.scale_decaying((h - t - 1) as f64 / (h - t) as f64)?;
                    cric.phase_step += 1;
                } else {
                    self.prune_decaying();
                    cric.next = Phase::Pruned;
                }
                self.hold_pruned()
            }
            Phase::Pruning | Phase::Pruned => self.hold_pruned(),
        }
    }

    /// After the warm-up's last step: snapshot, reference loss, probes, first violating set.
    fn take_snapshot(&mut self, cric: &mut CricState, index: u64, probe: Probe<'_>) -> Result<()> {
        let snapshot = Snapshot::take(&self.base, &self.buffers)?;
        let reference = probe()?;
        if !reference.is_finite() {
            return Err(HessoError::Config {
                setting: "cric",
                message: format!("the probe loss at the snapshot (step {}) is {reference}", index + 1),
            });
        }
        let scores = self.scores()?;
        cric.probes = self.run_probes(&snapshot, &scores, reference, probe)?;
        cric.reference_loss = Some(reference);
        cric.snapshot_step = Some(index + 1);
        cric.snapshot = Some(snapshot);
        let device = self.groups.first().map_or(tch::Device::Cpu, |g| self.base.params[g.slices[0].param].device());
        cric.score_sum = Some(Tensor::zeros([self.total_elements as i64], (Kind::Double, device)));
        cric.score_count = 0;
        cric.violated = self.groups.iter().map(|g| vec![false; g.num_elements]).collect();
        let first = self.lowest(&scores)?;
        self.start_cycle(cric, first);
        Ok(())
    }

    /// For each group, zero its 25/50/75% lowest-scoring elements (parameters only, the
    /// group keeps at least one), measure the probe loss, restore those parameters bitwise.
    fn run_probes(&mut self, snapshot: &Snapshot, scores: &[Vec<f64>], reference: f64, probe: Probe<'_>) -> Result<Vec<GroupProbe>> {
        let mut out = Vec::with_capacity(self.groups.len());
        for (g, group_scores) in scores.iter().enumerate() {
            let n = self.groups[g].num_elements;
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|a, b| group_scores[*a].total_cmp(&group_scores[*b]).then(a.cmp(b)));
            let mut zeroed = [0usize; 3];
            let mut loss = [reference; 3];
            for (k, fraction) in PROBE_FRACTIONS.iter().enumerate() {
                let count = ((fraction * n as f64).floor() as usize).min(n.saturating_sub(1));
                if count == 0 {
                    continue;
                }
                let elements: Vec<(usize, usize)> = order[..count].iter().map(|&e| (g, e)).collect();
                let set = self.slice_set(&elements);
                let zero = (|| -> std::result::Result<(), tch::TchError> {
                    for (param, axis, idx) in &set.entries {
                        let _ = self.base.params[*param].f_index_fill_(*axis, idx, 0.0)?;
                    }
                    Ok(())
                })();
                // Measure (if zeroing worked), then restore before anything can fail.
                let measured = if zero.is_ok() { Some(probe()) } else { None };
                for (param, _, _) in &set.entries {
                    self.base.params[*param]
                        .f_copy_(&snapshot.params[*param])
                        .map_err(|e| HessoError::torch("restoring the snapshot after a CRIC probe", e))?;
                }
                zero.map_err(|e| HessoError::torch(format!("zeroing elements of group '{}' for a CRIC probe", self.groups[g].id), e))?;
                if let Some(l) = measured {
                    loss[k] = l?;
                }
                zeroed[k] = count;
            }
            let log_ratio = loss.iter().map(|&l| bounded_log_ratio(l, reference)).sum::<f64>() / loss.len() as f64;
            out.push(GroupProbe { group: self.groups[g].id.clone(), zeroed, loss, log_ratio });
        }
        Ok(out)
    }

    /// The `target_count` lowest elements by `scores` under HESSO's selection rules
    /// (group divisibility, realized count), from an empty choice.
    /// With a MACs or parameter budget: the least-score choice meeting it ([`budget::solve`]).
    fn lowest(&self, scores: &[Vec<f64>]) -> Result<Vec<(usize, usize)>> {
        let mut chosen: Vec<Vec<bool>> = self.groups.iter().map(|g| vec![false; g.num_elements]).collect();
        let mut quotas: Vec<GroupQuota> = self.quotas.iter().map(|q| GroupQuota { chosen: 0, ..*q }).collect();
        if let (Some(ratio), Some(costs)) = (self.budget_ratio()?, self.costs.as_ref()) {
            return Ok(budget::solve(costs, scores, &mut chosen, &mut quotas, costs.original() * ratio));
        }
        Ok(select::select(scores, &mut chosen, &mut quotas, self.target_count, self.target_count).elements)
    }

    /// Makes `elements` the set the next steps decay (the flags and counts of the metrics too).
    fn set_decaying(&mut self, elements: Vec<(usize, usize)>) {
        for c in &mut self.chosen {
            c.fill(false);
        }
        for q in &mut self.quotas {
            q.chosen = 0;
        }
        for &(g, e) in &elements {
            self.chosen[g][e] = true;
            self.quotas[g].chosen += 1;
        }
        self.decaying_set = self.slice_set(&elements);
        self.decaying = elements;
    }

    fn start_cycle(&mut self, cric: &mut CricState, violating: Vec<(usize, usize)>) {
        for &(g, e) in &violating {
            cric.violated[g][e] = true;
        }
        cric.violating_sizes.push(violating.len());
        self.set_decaying(violating);
        cric.cycle += 1;
        cric.phase_step = 0;
        cric.next = Phase::Cycle;
    }

    /// One cycle step: add the scores (after the base update, before the decay) to the
    /// running sum, decay the violating set; after the cycle's last step, restore the
    /// snapshot and either start the next cycle or make the final choice.
    fn cycle_step(&mut self, cric: &mut CricState, index: u64) -> Result<()> {
        let fail = |e| HessoError::torch("accumulating CRIC's scores", e);
        // The violating set has been scaled by (d - t) / d so far in this cycle: its scores
        // are taken as if it had not (otherwise the decay alone keeps the first cycle's set
        // lowest and the cycles only confirm the choice at the snapshot).
        let (t, d) = (cric.phase_step, cric.config.sampling_steps);
        let mut factors = vec![1.0f64; self.total_elements];
        let offsets: Vec<usize> = self
            .groups
            .iter()
            .scan(0, |o, g| {
                let at = *o;
                *o += g.num_elements;
                Some(at)
            })
            .collect();
        for &(g, e) in &self.decaying {
            factors[offsets[g] + e] = (d - t) as f64 / d as f64;
        }
        let device = self.groups.first().map_or(tch::Device::Cpu, |g| self.base.params[g.slices[0].param].device());
        let factors = Tensor::from_slice(&factors).f_to_device(device).map_err(fail)?;
        let scores = self.score_tensor_undecayed(Some(&factors))?;
        if let Some(sum) = &mut cric.score_sum {
            let _ = sum.f_add_(&scores.f_to_device(sum.device()).map_err(fail)?).map_err(fail)?;
        }
        cric.score_count += 1;
        if t + 1 < d {
            cric.phase_step += 1;
            return self.scale_decaying((d - t - 1) as f64 / (d - t) as f64);
        }
        // The cycle's last step would bring the violating set to zero; the snapshot is
        // restored instead, so that the next cycle (or the hybrid training) starts from it.
        let mean = self.mean_scores(cric)?.unwrap_or_default();
        let mean = self.split_by_group(&mean);
        let lowest = self.lowest(&mean)?;
        let new: Vec<(usize, usize)> = lowest.into_iter().filter(|&(g, e)| !cric.violated[g][e]).collect();
        cric.new_elements.push(new.len());
        if let Some(snapshot) = &cric.snapshot {
            snapshot.restore(&mut self.base, &self.buffers)?;
        }
        if new.len() <= cric.config.tolerance || cric.cycle >= cric.config.max_cycles {
            let final_scores = self.final_scores(cric, &mean);
            let chosen = self.lowest(&final_scores)?;
            self.set_decaying(chosen);
            cric.next = Phase::Hybrid;
            cric.phase_step = 0;
            cric.hybrid_start = Some(index + 1);
        } else {
            self.start_cycle(cric, new);
        }
        Ok(())
    }

    /// Mean score plus `probe_weight` times the probes' term. The term is per element, by
    /// its rank in its group: the element whose removal would take the group to a share
    /// `f` of its elements removed (its rank by mean score + 1, over the group's size)
    /// carries the group's probe curve at `f`, interpolated linearly through (0, 0) and the
    /// probes' (fraction zeroed, log loss ratio), continued past the last probe with the
    /// last segment's slope when it rises, and never below 0. The vector is divided by its
    /// L2 norm over all elements (as each criterion is).
    ///
    /// A constant per group (the earlier rule, the mean of the group's log ratios added to
    /// every element) shifts a whole group down when its probes were mild, so the choice
    /// concentrated in that group: on the digits CNN at 0.8, 63 of the 64 channels of the
    /// last convolution went and accuracy fell to 26%. With the term rising along the
    /// group's own curve, the deeper a group is cut, the dearer its next element.
    fn final_scores(&self, cric: &CricState, mean: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let mut terms: Vec<Vec<f64>> = Vec::with_capacity(mean.len());
        for (g, m) in mean.iter().enumerate() {
            let n = m.len();
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| m[a].total_cmp(&m[b]).then(a.cmp(&b)));
            let mut curve = vec![(0.0, 0.0)];
            if let Some(p) = cric.probes.get(g) {
                for (&zeroed, &loss) in p.zeroed.iter().zip(&p.loss) {
                    let x = zeroed as f64 / n.max(1) as f64;
                    if zeroed > 0 && x > curve.last().map_or(0.0, |c| c.0) {
                        curve.push((x, bounded_log_ratio(loss, cric.reference_loss.unwrap_or(loss))));
                    }
                }
            }
            let mut t = vec![0.0; n];
            for (rank, &e) in order.iter().enumerate() {
                t[e] = probe_curve(&curve, (rank + 1) as f64 / n as f64).max(0.0);
            }
            terms.push(t);
        }
        let norm = terms.iter().flatten().map(|t| t * t).sum::<f64>().sqrt();
        let scale = if norm > 0.0 { cric.config.probe_weight / norm } else { 0.0 };
        mean.iter().zip(&terms).map(|(m, t)| m.iter().zip(t).map(|(s, t)| s + scale * t).collect()).collect()
    }

    /// CRIC's checkpoint: counters and sets as JSON, snapshot and score sum as tensors.
    pub(crate) fn saved_cric(&self, cric: &CricState) -> Result<(SavedCric, Vec<(String, Tensor)>)> {
        let mut tensors = Vec::new();
        if let Some(s) = &cric.snapshot {
            for (name, t) in self.base.names.iter().zip(&s.params) {
                tensors.push((format!("cric/param/{name}"), t.shallow_clone()));
            }
            for (name, fields) in self.base.names.iter().zip(&s.state) {
                for (field, t) in STATE_FIELDS.iter().zip(fields) {
                    if let Some(t) = t {
                        tensors.push((format!("cric/state/{name}/{field}"), t.shallow_clone()));
                    }
                }
            }
            for ((name, _), t) in self.buffers.iter().zip(&s.buffers) {
                tensors.push((format!("cric/buffer/{name}"), t.shallow_clone()));
            }
        }
        if let Some(sum) = &cric.score_sum {
            tensors.push(("cric/score_sum".to_string(), sum.shallow_clone()));
        }
        let violated = self
            .groups
            .iter()
            .zip(&cric.violated)
            .map(|(g, v)| (g.id.clone(), v.iter().enumerate().filter(|(_, &v)| v).map(|(e, _)| e).collect()))
            .collect();
        let snapshot_steps = match &cric.snapshot {
            Some(s) => self.base.names.iter().cloned().zip(s.steps.iter().copied()).collect(),
            None => Vec::new(),
        };
        let json = SavedCric {
            next: cric.next,
            last: cric.last,
            cycle: cric.cycle,
            phase_step: cric.phase_step,
            score_count: cric.score_count,
            violated,
            snapshot_steps,
            snapshot_step: cric.snapshot_step,
            reference_loss: cric.reference_loss,
            probes: cric.probes.clone(),
            new_elements: cric.new_elements.clone(),
            violating_sizes: cric.violating_sizes.clone(),
            hybrid_start: cric.hybrid_start,
        };
        Ok((json, tensors))
    }

    /// Restores what [`Hesso::saved_cric`] wrote.
    pub(crate) fn load_cric(&mut self, saved: SavedCric, tensors: Vec<(String, Tensor)>) -> Result<()> {
        let bad = |message: String| HessoError::Config { setting: "checkpoint", message };
        let config = self.config.cric.ok_or_else(|| bad("has CRIC state, but this run does not use CRIC".into()))?;
        let param_index: HashMap<&str, usize> = self.base.names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
        let buffer_index: HashMap<&str, usize> = self.buffers.iter().enumerate().map(|(i, (n, _))| (n.as_str(), i)).collect();
        let mut params: Vec<Option<Tensor>> = self.base.params.iter().map(|_| None).collect();
        let mut state: Vec<[Option<Tensor>; 3]> = self.base.params.iter().map(|_| Default::default()).collect();
        let mut buffers: Vec<Option<Tensor>> = self.buffers.iter().map(|_| None).collect();
        let mut score_sum = None;
        let like = |t: &Tensor, like: &Tensor, name: &str| {
            t.f_to_device(like.device())
                .and_then(|t| t.f_to_kind(like.kind()))
                .map_err(|e| HessoError::torch(format!("loading CRIC's '{name}'"), e))
        };
        for (name, t) in tensors {
            if let Some(p) = name.strip_prefix("cric/param/") {
                let &i = param_index.get(p).ok_or_else(|| bad(format!("CRIC snapshot of unknown parameter '{p}'")))?;
                params[i] = Some(like(&t, &self.base.params[i], &name)?);
            } else if let Some(rest) = name.strip_prefix("cric/state/") {
                let (p, field) = rest.rsplit_once('/').ok_or_else(|| bad(format!("CRIC state '{name}' is not NAME/FIELD")))?;
                let &i = param_index.get(p).ok_or_else(|| bad(format!("CRIC snapshot of unknown parameter '{p}'")))?;
                let k = STATE_FIELDS.iter().position(|f| *f == field).ok_or_else(|| bad(format!("unknown CRIC state field '{field}'")))?;
                state[i][k] = Some(like(&t, &self.base.params[i], &name)?);
            } else if let Some(b) = name.strip_prefix("cric/buffer/") {
                let &i = buffer_index.get(b).ok_or_else(|| bad(format!("CRIC snapshot of unknown buffer '{b}'")))?;
                buffers[i] = Some(like(&t, &self.buffers[i].1, &name)?);
            } else if name == "cric/score_sum" {
                let device = self.groups.first().map_or(tch::Device::Cpu, |g| self.base.params[g.slices[0].param].device());
                let t = t.f_to_device(device).map_err(|e| HessoError::torch("loading CRIC's score sum", e))?;
                if t.kind() != Kind::Double || t.size() != [self.total_elements as i64] {
                    return Err(bad(format!("CRIC's score sum is {:?} {:?}, expected f64 [{}]", t.kind(), t.size(), self.total_elements)));
                }
                score_sum = Some(t);
            }
        }
        if saved.snapshot_step.is_some() && score_sum.is_none() {
            return Err(bad("has no CRIC score sum (cric/score_sum)".into()));
        }
        let snapshot = if saved.snapshot_step.is_some() {
            let params = params
                .into_iter()
                .zip(&self.base.names)
                .map(|(t, n)| t.ok_or_else(|| bad(format!("has no CRIC snapshot of '{n}'"))))
                .collect::<Result<Vec<_>>>()?;
            let buffers = buffers
                .into_iter()
                .zip(&self.buffers)
                .map(|(t, (n, _))| t.ok_or_else(|| bad(format!("has no CRIC snapshot of buffer '{n}'"))))
                .collect::<Result<Vec<_>>>()?;
            let steps_by_name: HashMap<&str, u64> = saved.snapshot_steps.iter().map(|(n, s)| (n.as_str(), *s)).collect();
            let steps = self.base.names.iter().map(|n| steps_by_name.get(n.as_str()).copied().unwrap_or(0)).collect();
            Some(Snapshot { params, state, steps, buffers })
        } else {
            None
        };
        let group_index: HashMap<&str, usize> = self.groups.iter().enumerate().map(|(i, g)| (g.id.as_str(), i)).collect();
        let mut violated: Vec<Vec<bool>> =
            if saved.snapshot_step.is_some() { self.groups.iter().map(|g| vec![false; g.num_elements]).collect() } else { Vec::new() };
        for (id, elements) in &saved.violated {
            let &g = group_index.get(id.as_str()).ok_or_else(|| bad(format!("names group '{id}', which this model does not have")))?;
            for &e in elements {
                let slot = violated.get_mut(g).and_then(|v| v.get_mut(e));
                *slot.ok_or_else(|| bad(format!("names element {e} of group '{id}', which it does not have")))? = true;
            }
        }
        self.cric = Some(CricState {
            config,
            next: saved.next,
            last: saved.last,
            cycle: saved.cycle,
            phase_step: saved.phase_step,
            snapshot,
            score_sum,
            score_count: saved.score_count,
            violated,
            snapshot_step: saved.snapshot_step,
            reference_loss: saved.reference_loss,
            probes: saved.probes,
            new_elements: saved.new_elements,
            violating_sizes: saved.violating_sizes,
            hybrid_start: saved.hybrid_start,
        });
        Ok(())
    }
}

/// The piecewise-linear curve through `points` (x increasing, starting at (0, 0)) at `x`;
/// past the last point, continued with the last segment's slope when it rises (flat otherwise).
fn probe_curve(points: &[(f64, f64)], x: f64) -> f64 {
    for w in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if x <= x1 {
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
        }
    }
    match points {
        [.., (x0, y0), (x1, y1)] => y1 + ((y1 - y0) / (x1 - x0)).max(0.0) * (x - x1),
        [(_, y)] => *y,
        [] => 0.0,
    }
}

/// `ln(loss / reference)`, bounded to `[-LOG_RATIO_CAP, LOG_RATIO_CAP]`; a loss that is not
/// finite counts as the bound (zeroing made the model diverge: as harmful as it gets).
fn bounded_log_ratio(loss: f64, reference: f64) -> f64 {
    if !loss.is_finite() {
        return LOG_RATIO_CAP;
    }
    let tiny = f64::MIN_POSITIVE;
    (loss.max(tiny).ln() - reference.max(tiny).ln()).clamp(-LOG_RATIO_CAP, LOG_RATIO_CAP)
}

#[cfg(test)]
mod tests {
    use super::probe_curve;

    #[test]
    fn probe_curve_interpolates_and_rises_past_the_last_probe() {
        let points = [(0.0, 0.0), (0.25, 0.1), (0.5, 0.3), (0.75, 0.9)];
        assert_eq!(probe_curve(&points, 0.0), 0.0);
        assert!((probe_curve(&points, 0.125) - 0.05).abs() < 1e-12);
        assert!((probe_curve(&points, 0.625) - 0.6).abs() < 1e-12);
        // Past 0.75: the last slope (2.4 per unit) continues.
        assert!((probe_curve(&points, 1.0) - 1.5).abs() < 1e-12);
        // A falling last segment stays flat past the last probe.
        assert!((probe_curve(&[(0.0, 0.0), (0.5, 0.4), (0.75, 0.2)], 1.0) - 0.2).abs() < 1e-12);
        assert_eq!(probe_curve(&[(0.0, 0.0)], 0.7), 0.0);
    }
}
