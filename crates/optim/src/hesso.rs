//! The optimizer's public face and plain HESSO: construction from an analysis, base
//! updates, importance scores at period starts and the choice per period, metrics and
//! checkpoints. The state and the element machinery are in `crate::core`; with CRIC
//! configured, the choice comes from `crate::cric` instead of the periods.

use crate::budget::{self, Budget, CostModel, SliceCost, WeightPrice};
use crate::config::HessoConfig;
use crate::core::{CricState, Hesso, Phase, ProducerSlice, PrunableGroup, SavedCric, SliceSet};
use crate::error::{HessoError, Result};
use crate::select::{self, GroupQuota};
use oto_graph::{Analysis, Role};
use oto_torch::exec::Executor;
use oto_torch::optim::{ExtraState, Optimizer, OptimizerConfig, Probe, TrainingOptimizer};
use std::collections::{BTreeMap, HashMap};
use tch::Tensor;

/// What [`Hesso::metrics`] reports.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct HessoMetrics {
    /// Steps taken.
    pub step: u64,
    /// The learning rate of the last step.
    pub lr: f64,
    /// Elements whose producer slices are all zero, over all prunable elements.
    pub group_sparsity: f64,
    /// Elements not chosen for pruning.
    pub important: usize,
    /// Elements chosen in the current period, still decaying.
    pub decaying: usize,
    /// Elements held at zero.
    pub pruned: usize,
    /// L2 norm of the producer slices of the important elements.
    pub norm_important: f64,
    /// L2 norm of the producer slices of the chosen (decaying or pruned) elements.
    pub norm_redundant: f64,
    /// The phase of the last step.
    pub phase: Phase,
    /// CRIC: the cycles started so far (0 with plain HESSO).
    pub cycle: u64,
}

/// Makes every producer of `analysis`'s prunable groups a trainable parameter of `exec`
/// (HESSO zeroes producers by training them): an initializer the executor keeps as a
/// constant for being read only as an operator's setting, such as a class token
/// broadcast by `Expand`, is trained too. Call it before [`Hesso::from_executor`].
pub fn train_producers(exec: &mut Executor, analysis: &Analysis) {
    let producers: Vec<&str> = analysis
        .prunable_groups()
        .flat_map(|g| g.members.iter().filter(|m| m.role == Role::Producer).map(|m| m.initializer.as_str()))
        .collect();
    exec.train_also(&producers);
}

impl Hesso {
    /// HESSO over the trainable parameters of `exec` (see [`train_producers`]); CRIC's
    /// snapshot also covers the executor's buffers (BatchNorm running statistics).
    pub fn from_executor(exec: &Executor, analysis: &Analysis, base: OptimizerConfig, config: HessoConfig) -> Result<Hesso> {
        let params = exec.trainable().map(|p| (p.name.clone(), p.tensor.shallow_clone())).collect();
        let mut hesso = Hesso::new(params, analysis, base, config)?;
        hesso.buffers = exec.buffers().iter().map(|b| (b.name.clone(), b.tensor.shallow_clone())).collect();
        Ok(hesso)
    }

    /// HESSO over `params` (initializer name, tensor). Every producer slice of every
    /// prunable group of `analysis` must be among them. CRIC's snapshot covers the
    /// parameters and the base optimizer's state only (see [`Hesso::from_executor`]).
    pub fn new(params: Vec<(String, Tensor)>, analysis: &Analysis, base: OptimizerConfig, config: HessoConfig) -> Result<Hesso> {
        config.validate()?;
        let base = Optimizer::new(base, params)?;
        let by_name: HashMap<&str, usize> = base.names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
        let mut groups = Vec::new();
        for g in analysis.prunable_groups() {
            let fail = |message: String| HessoError::Group { group: g.id.clone(), message };
            let mut slices = Vec::new();
            let mut element_indices = Vec::new();
            for m in g.members.iter().filter(|m| m.role == Role::Producer) {
                let &param = by_name.get(m.initializer.as_str()).ok_or_else(|| {
                    fail(format!(
                        "producer '{}' is not a trainable parameter (an initializer kept as a constant: train_producers makes it one)",
                        m.initializer
                    ))
                })?;
                let tensor = &base.params[param];
                let dims = tensor.size();
                let len = *dims.get(m.axis).ok_or_else(|| fail(format!("'{}' has no axis {}", m.initializer, m.axis)))?;
                let per_element: Vec<Vec<i64>> =
                    (0..g.num_elements).map(|i| m.map.indices(i).into_iter().map(|x| x as i64).collect()).collect();
                let block = m.map.block();
                if block == 0 || per_element.iter().any(|v| v.len() != block || v.iter().any(|&x| x < 0 || x >= len)) {
                    return Err(fail(format!(
                        "the slices of '{}' along axis {} are not {} blocks of {block} indices below {len}",
                        m.initializer, m.axis, g.num_elements
                    )));
                }
                let flat: Vec<i64> = per_element.concat();
                let indices = Tensor::from_slice(&flat).to_device(tensor.device());
                slices.push(ProducerSlice { param, axis: m.axis as i64, indices });
                element_indices.push(per_element);
            }
            if slices.is_empty() || g.num_elements == 0 {
                continue;
            }
            groups.push(PrunableGroup { id: g.id.clone(), num_elements: g.num_elements, element_indices, slices });
        }
        let quotas: Vec<GroupQuota> =
            groups.iter().map(|g| GroupQuota::new(g.num_elements, config.group_divisible, config.max_group_sparsity)).collect();
        let total_elements: usize = groups.iter().map(|g| g.num_elements).sum();
        let requested = (total_elements as f64 * config.target_group_sparsity).floor() as usize;
        let target_count = select::largest_feasible(&quotas, requested);
        let chosen = groups.iter().map(|g| vec![false; g.num_elements]).collect();
        Ok(Hesso {
            base,
            config,
            groups,
            quotas,
            chosen,
            decaying: Vec::new(),
            decaying_set: SliceSet::default(),
            pruned: Vec::new(),
            pruned_set: SliceSet::default(),
            target_count,
            total_elements,
            steps: 0,
            last_lr: 0.0,
            buffers: Vec::new(),
            cric: config.cric.map(CricState::new),
            costs: None,
            obd_saliency: None,
        })
    }

    /// Prices the budgeted resource: `weights` gives every initializer's dims and cost per
    /// element (`oto_onnx::cost::weight_costs`), `other_macs` the MACs no initializer
    /// carries, `analysis` the member slices of the groups (the same analysis as at
    /// construction). Needed when the budget is MACs or parameters; harmless otherwise.
    pub fn set_costs(&mut self, analysis: &Analysis, weights: &BTreeMap<String, WeightPrice>, other_macs: f64) {
        let (per_element, fixed): (fn(&WeightPrice) -> f64, f64) = match self.config.budget {
            Budget::Params(_) => (|w| w.params_per_element, 0.0),
            _ => (|w| w.macs_per_element, other_macs),
        };
        let priced: BTreeMap<String, (Vec<usize>, f64)> =
            weights.iter().map(|(n, w)| (n.clone(), (w.dims.clone(), per_element(w)))).collect();
        // A layer norm's scale and bias that the compact model keeps at the original width
        // (padded with zeros) cost as much after the cut as before.
        let slices: Vec<Vec<SliceCost>> = self
            .groups
            .iter()
            .map(|g| {
                analysis
                    .group(&g.id)
                    .map(|a| {
                        let padded: Vec<&str> = a.padded_parameters().collect();
                        a.members
                            .iter()
                            .filter(|m| !padded.contains(&m.initializer.as_str()))
                            .map(|m| SliceCost { initializer: m.initializer.clone(), axis: m.axis, per_element: m.map.block() })
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        self.costs = Some(CostModel::new(&priced, &slices, fixed));
    }

    /// The budgeted resource under the cost model: (whole model, with the chosen elements
    /// removed); `None` without a MACs or parameter budget and its prices.
    pub fn budget_estimate(&self) -> Option<(f64, f64)> {
        self.config.budget.ratio()?;
        let costs = self.costs.as_ref()?;
        let k: Vec<usize> = self.quotas.iter().map(|q| q.chosen).collect();
        Some((costs.original(), costs.cost(&k)))
    }

    /// The ratio to keep for a MACs or parameter budget, once its cost model is there (an
    /// error when [`Hesso::set_costs`] was not called); `None` for a group-sparsity budget.
    pub(crate) fn budget_ratio(&self) -> Result<Option<f64>> {
        let Some(ratio) = self.config.budget.ratio() else {
            return Ok(None);
        };
        if self.costs.is_none() {
            return Err(HessoError::Config {
                setting: "budget",
                message: format!("a {} budget needs the weights' costs: call Hesso::set_costs", self.config.budget.name()),
            });
        }
        Ok(Some(ratio))
    }

    /// The settings.
    pub fn config(&self) -> &HessoConfig {
        &self.config
    }

    /// Prunable elements over all groups.
    pub fn total_elements(&self) -> usize {
        self.total_elements
    }

    /// How many elements the whole schedule removes: `floor(total * target)`, or the
    /// largest count below it that the group-divisibility rule allows.
    pub fn target_count(&self) -> usize {
        self.target_count
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Clears the gradients of all parameters.
    pub fn zero_grad(&mut self) {
        self.base.zero_grad();
    }

    /// One step after `backward()`: the base optimizer updates every parameter once,
    /// then the schedule scores (at a period's first step), decays and zeroes.
    ///
    /// With CRIC configured this is an error (CRIC measures losses): use
    /// [`Hesso::step_with_probe`].
    pub fn step(&mut self, lr: f64) -> Result<()> {
        if self.cric.is_some() {
            return Err(HessoError::Config {
                setting: "cric",
                message: "CRIC needs a probe loss: call Hesso::step_with_probe (the trainer does)".into(),
            });
        }
        self.base.step(lr)?;
        let _guard = tch::no_grad_guard();
        let index = self.take_step(lr);
        self.plain_schedule(index)
    }

    /// One step after `backward()`, with `probe` measuring the loss of the current
    /// parameters on fixed data, forward only (for CRIC: the mean loss over a few fixed
    /// batches in eval mode; the trainer passes such a probe). Without CRIC the probe is
    /// never called and this is [`Hesso::step`].
    pub fn step_with_probe(&mut self, lr: f64, probe: Probe<'_>) -> Result<()> {
        if self.cric.is_none() {
            return self.step(lr);
        }
        self.base.step(lr)?;
        let _guard = tch::no_grad_guard();
        let index = self.take_step(lr);
        self.cric_step(index, probe)
    }

    /// Counts a step; returns its index (from 0).
    fn take_step(&mut self, lr: f64) -> u64 {
        let index = self.steps;
        self.steps += 1;
        self.last_lr = lr;
        index
    }

    /// Plain HESSO's schedule after the base update of step `index`.
    fn plain_schedule(&mut self, index: u64) -> Result<()> {
        let Some(k) = index.checked_sub(self.config.start_pruning_step) else {
            return Ok(());
        };
        let d = self.config.period_steps();
        let periods = self.config.pruning_periods;
        if k < d * periods {
            let (p, t) = (k / d, k % d);
            if t == 0 {
                self.choose(p)?;
            }
            if t + 1 < d {
                let factor = (d - t - 1) as f64 / (d - t) as f64;
                self.scale_decaying(factor)?;
            } else {
                self.prune_decaying();
            }
        }
        self.hold_pruned()
    }

    /// Whether the next step chooses elements with the second-order criterion weighted,
    /// so that [`Hesso::set_obd_saliency`] must be called before it (plain HESSO: the
    /// first step of each pruning period).
    pub fn needs_obd_saliency(&self) -> bool {
        if self.config.importance.obd <= 0.0 || self.cric.is_some() {
            return false;
        }
        let Some(k) = self.steps.checked_sub(self.config.start_pruning_step) else {
            return false;
        };
        let d = self.config.period_steps().max(1);
        k < d.saturating_mul(self.config.pruning_periods) && k % d == 0
    }

    /// The OBD saliency of every element for the next choice, per group id as
    /// `oto_hessian::obd_saliency` gives it (`1/2 sum diag(H) x^2` over the element's
    /// producer weights). Every prunable group must be there with one finite value per
    /// element. The next choice uses it once; the one after needs a new one.
    pub fn set_obd_saliency(&mut self, saliency: &[(String, Vec<f64>)]) -> Result<()> {
        let mut flat = Vec::with_capacity(self.total_elements);
        for g in &self.groups {
            let fail = |message: String| HessoError::Group { group: g.id.clone(), message };
            let (_, values) = saliency.iter().find(|(id, _)| id == &g.id).ok_or_else(|| fail("has no OBD saliency".into()))?;
            if values.len() != g.num_elements {
                return Err(fail(format!("{} OBD saliencies for {} elements", values.len(), g.num_elements)));
            }
            if let Some(v) = values.iter().find(|v| !v.is_finite()) {
                return Err(fail(format!("an OBD saliency is {v}")));
            }
            flat.extend_from_slice(values);
        }
        self.obd_saliency = Some(flat);
        Ok(())
    }

    /// Scores every element and chooses period `p`'s share.
    fn choose(&mut self, p: u64) -> Result<()> {
        let periods = self.config.pruning_periods;
        let base_quota = self.target_count / periods as usize;
        let cumulative = if p + 1 == periods { self.target_count } else { base_quota * (p as usize + 1) };
        let already: usize = self.quotas.iter().map(|q| q.chosen).sum();
        let scores = self.scores()?;
        self.obd_saliency = None;
        if let (Some(ratio), Some(costs)) = (self.budget_ratio()?, self.costs.as_ref()) {
            // The cost falls linearly over the periods to `ratio` of the original.
            let share = (p + 1) as f64 / periods as f64;
            let target = costs.original() * (1.0 - (1.0 - ratio) * share);
            let elements = budget::solve(costs, &scores, &mut self.chosen, &mut self.quotas, target);
            self.decaying = elements;
            self.decaying_set = self.slice_set(&self.decaying);
            return Ok(());
        }
        let selection = select::select(
            &scores,
            &mut self.chosen,
            &mut self.quotas,
            cumulative.saturating_sub(already),
            self.target_count.saturating_sub(already),
        );
        self.decaying = selection.elements;
        self.decaying_set = self.slice_set(&self.decaying);
        Ok(())
    }

    /// Metrics of the current state (reads a few values back from the device: call it
    /// when logging, not necessarily every step). During CRIC's cycles, the "chosen"
    /// elements are the violating set the next step decays.
    pub fn metrics(&self) -> Result<HessoMetrics> {
        let _guard = tch::no_grad_guard();
        let fail = |e| HessoError::torch("computing metrics", e);
        let (mut zero, mut sq_important, mut sq_redundant) = (0usize, 0.0, 0.0);
        if !self.groups.is_empty() {
            let [xsq, ..] = self.element_statistics(false)?;
            let xsq: Vec<f64> = Vec::try_from(xsq.to_device(tch::Device::Cpu)).map_err(fail)?;
            let mut offset = 0;
            for (g, chosen) in self.groups.iter().zip(&self.chosen) {
                for (e, &c) in chosen.iter().enumerate() {
                    let v = xsq[offset + e];
                    zero += usize::from(v == 0.0);
                    if c {
                        sq_redundant += v;
                    } else {
                        sq_important += v;
                    }
                }
                offset += g.num_elements;
            }
        }
        let chosen: usize = self.quotas.iter().map(|q| q.chosen).sum();
        Ok(HessoMetrics {
            step: self.steps,
            lr: self.last_lr,
            group_sparsity: if self.total_elements == 0 { 0.0 } else { zero as f64 / self.total_elements as f64 },
            important: self.total_elements - chosen,
            decaying: self.decaying.len(),
            pruned: self.pruned.len(),
            norm_important: sq_important.sqrt(),
            norm_redundant: sq_redundant.sqrt(),
            phase: self.phase(),
            cycle: self.cric.as_ref().map_or(0, CricState::cycles),
        })
    }

    /// The phase of the last step taken.
    pub fn phase(&self) -> Phase {
        if let Some(cric) = &self.cric {
            return cric.last_phase();
        }
        let Some(last) = self.steps.checked_sub(1) else {
            return Phase::Warmup;
        };
        let start = self.config.start_pruning_step;
        if last < start {
            Phase::Warmup
        } else if last < self.config.schedule_steps() {
            Phase::Pruning
        } else {
            Phase::Pruned
        }
    }

    /// The elements held at zero, per group id (what construction cuts); every prunable
    /// group appears, possibly with no elements.
    pub fn pruned_elements(&self) -> BTreeMap<String, Vec<usize>> {
        let mut out: BTreeMap<String, Vec<usize>> = self.groups.iter().map(|g| (g.id.clone(), Vec::new())).collect();
        for &(g, e) in &self.pruned {
            if let Some(v) = out.get_mut(&self.groups[g].id) {
                v.push(e);
            }
        }
        for v in out.values_mut() {
            v.sort_unstable();
        }
        out
    }

    /// Whether the whole schedule has run (every chosen element is held at zero).
    pub fn schedule_done(&self) -> bool {
        match &self.cric {
            Some(cric) => cric.last_phase() == Phase::Pruned || (cric.last_phase() == Phase::Hybrid && cric.hybrid_done()),
            None => self.steps >= self.config.schedule_steps(),
        }
    }
}

/// HESSO's schedule state in a checkpoint (the base optimizer's state is saved beside it).
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedState {
    config: HessoConfig,
    steps: u64,
    last_lr: f64,
    /// Per group id: its chosen elements (decaying or pruned).
    chosen: BTreeMap<String, Vec<usize>>,
    /// (group id, element) chosen by the current period.
    decaying: Vec<(String, usize)>,
    /// (group id, element) held at zero.
    pruned: Vec<(String, usize)>,
    /// CRIC's counters and sets (its tensors are saved beside).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cric: Option<SavedCric>,
}

impl Hesso {
    fn saved_state(&self) -> SavedState {
        let id = |&(g, e): &(usize, usize)| (self.groups[g].id.clone(), e);
        SavedState {
            config: self.config,
            steps: self.steps,
            last_lr: self.last_lr,
            chosen: self
                .groups
                .iter()
                .zip(&self.chosen)
                .map(|(g, c)| (g.id.clone(), c.iter().enumerate().filter(|(_, &c)| c).map(|(e, _)| e).collect()))
                .collect(),
            decaying: self.decaying.iter().map(id).collect(),
            pruned: self.pruned.iter().map(id).collect(),
            cric: None,
        }
    }

    fn restore(&mut self, saved: SavedState, tensors: Vec<(String, Tensor)>) -> Result<()> {
        let bad = |message: String| HessoError::Config { setting: "checkpoint", message };
        if saved.config != self.config {
            return Err(bad(format!("was written with HESSO settings {:?}, but this run uses {:?}", saved.config, self.config)));
        }
        let index: HashMap<&str, usize> = self.groups.iter().enumerate().map(|(i, g)| (g.id.as_str(), i)).collect();
        let locate = |(id, e): &(String, usize)| -> Result<(usize, usize)> {
            let &g = index.get(id.as_str()).ok_or_else(|| bad(format!("names group '{id}', which this model does not have")))?;
            if *e >= self.groups[g].num_elements {
                return Err(bad(format!("names element {e} of group '{id}', which has {}", self.groups[g].num_elements)));
            }
            Ok((g, *e))
        };
        let mut chosen: Vec<Vec<bool>> = self.groups.iter().map(|g| vec![false; g.num_elements]).collect();
        for (id, elements) in &saved.chosen {
            for e in elements {
                let (g, e) = locate(&(id.clone(), *e))?;
                chosen[g][e] = true;
            }
        }
        let decaying = saved.decaying.iter().map(locate).collect::<Result<Vec<_>>>()?;
        let pruned = saved.pruned.iter().map(locate).collect::<Result<Vec<_>>>()?;
        for (quota, c) in self.quotas.iter_mut().zip(&chosen) {
            quota.chosen = c.iter().filter(|&&c| c).count();
        }
        self.chosen = chosen;
        self.decaying_set = self.slice_set(&decaying);
        self.decaying = decaying;
        self.pruned_set = self.slice_set(&pruned);
        self.pruned = pruned;
        self.steps = saved.steps;
        self.last_lr = saved.last_lr;
        if self.cric.is_some() {
            let cric = saved.cric.ok_or_else(|| bad("has no CRIC state, but this run uses CRIC".into()))?;
            self.load_cric(cric, tensors)?;
        }
        Ok(())
    }
}

impl TrainingOptimizer for Hesso {
    fn base(&self) -> &Optimizer {
        &self.base
    }

    fn base_mut(&mut self) -> &mut Optimizer {
        &mut self.base
    }

    fn step(&mut self, lr: f64, probe: Probe<'_>) -> oto_torch::error::Result<()> {
        Hesso::step_with_probe(self, lr, probe).map_err(|e| oto_torch::error::Error::Optimizer(Box::new(e)))
    }

    fn extra_state(&self) -> oto_torch::error::Result<ExtraState> {
        let mut saved = self.saved_state();
        let mut tensors = Vec::new();
        if let Some(cric) = &self.cric {
            let (json, t) = self.saved_cric(cric).map_err(|e| oto_torch::error::Error::Optimizer(Box::new(e)))?;
            saved.cric = Some(json);
            tensors = t;
        }
        let json = serde_json::to_value(saved).map_err(|e| oto_torch::error::Error::Config(format!("HESSO state: {e}")))?;
        Ok(ExtraState { tensors, json })
    }

    fn load_extra_state(&mut self, state: ExtraState) -> oto_torch::error::Result<()> {
        let saved: SavedState = serde_json::from_value(state.json)
            .map_err(|e| oto_torch::error::Error::Config(format!("the checkpoint has no valid HESSO state: {e}")))?;
        self.restore(saved, state.tensors).map_err(|e| oto_torch::error::Error::Optimizer(Box::new(e)))
    }

    /// CRIC's finished cycles: each restarted from the snapshot, so their steps are
    /// trained again (the final choice trains as long as plain HESSO's would).
    fn replayed_steps(&self) -> u64 {
        self.cric.as_ref().map_or(0, |c| c.replayed_steps())
    }

    /// Plain HESSO: the end of its last period (known from the start); CRIC: the end of
    /// the hybrid training, once it has started. `None` when the target prunes nothing.
    fn structure_final_at(&self) -> Option<u64> {
        if self.target_count == 0 && self.config.budget.ratio().is_none() {
            return None;
        }
        match &self.cric {
            None => Some(self.config.schedule_steps()),
            Some(c) => c.structure_final_at(),
        }
    }
}
