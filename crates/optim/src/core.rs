//! What plain HESSO and CRIC share: the optimizer's state ([`Hesso`], with CRIC's state
//! when configured), the schedule's [`Phase`], and the element machinery both drive: the
//! producer slices of every group, index sets, importance scores, the decay of the chosen
//! elements and the projection that holds pruned elements at zero.
//!
//! `crate::hesso` (construction, the plain schedule, metrics, checkpoints) and
//! `crate::cric` (the cycles) both build on this module; neither imports the other.

use crate::budget::CostModel;
use crate::config::{CricConfig, HessoConfig};
use crate::error::{HessoError, Result};
use crate::select::GroupQuota;
use oto_torch::optim::{Optimizer, OptimizerConfig};
use std::collections::{BTreeMap, HashMap};
use tch::{Kind, Tensor};

/// One producer slice of a group: parameter, axis, and the indices of all elements
/// along the axis in element order (`num_elements * block` of them).
pub(crate) struct ProducerSlice {
    pub(crate) param: usize,
    pub(crate) axis: i64,
    pub(crate) indices: Tensor,
}

pub(crate) struct PrunableGroup {
    pub(crate) id: String,
    pub(crate) num_elements: usize,
    /// Element -> indices along the axis, per producer member (host copy, for index sets).
    pub(crate) element_indices: Vec<Vec<Vec<i64>>>,
    pub(crate) slices: Vec<ProducerSlice>,
}

/// Index tensors of a set of elements, per (parameter, axis): built once when the set
/// changes, so that each step only runs `index_fill_`/`index_copy_` on the device.
#[derive(Default)]
pub(crate) struct SliceSet {
    pub(crate) entries: Vec<(usize, i64, Tensor)>,
}

/// Where the schedule stands: the phase of the last step taken ([`Phase::Warmup`] before
/// the first one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Plain base-optimizer steps before the schedule starts (CRIC: up to and including
    /// the step after which the snapshot is taken).
    Warmup,
    /// Plain HESSO: a step inside the pruning periods.
    Pruning,
    /// CRIC: a step of a cycle (the violating set decays; the snapshot is restored after
    /// the cycle's last step).
    Cycle,
    /// CRIC: a step of the hybrid training, where the final choice decays to zero.
    Hybrid,
    /// The schedule is over: every chosen element is held at zero.
    Pruned,
}

impl Phase {
    /// The phase's name in logs and JSON (`warmup`, `pruning`, `cycle`, `hybrid`, `pruned`).
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Warmup => "warmup",
            Phase::Pruning => "pruning",
            Phase::Cycle => "cycle",
            Phase::Hybrid => "hybrid",
            Phase::Pruned => "pruned",
        }
    }
}

/// HESSO over named parameters and the prunable groups of an analysis.
pub struct Hesso {
    /// The base optimizer (its per-parameter state is public).
    pub base: Optimizer,
    pub(crate) config: HessoConfig,
    pub(crate) groups: Vec<PrunableGroup>,
    pub(crate) quotas: Vec<GroupQuota>,
    /// Per group, per element: chosen (decaying or pruned; CRIC: the cycle's violating set).
    pub(crate) chosen: Vec<Vec<bool>>,
    /// Elements chosen by the current period (decaying; CRIC: the cycle's violating set
    /// or the final choice during the hybrid training).
    pub(crate) decaying: Vec<(usize, usize)>,
    pub(crate) decaying_set: SliceSet,
    /// Elements held at zero.
    pub(crate) pruned: Vec<(usize, usize)>,
    pub(crate) pruned_set: SliceSet,
    /// T after the divisibility rule: what the whole schedule chooses.
    pub(crate) target_count: usize,
    pub(crate) total_elements: usize,
    pub(crate) steps: u64,
    pub(crate) last_lr: f64,
    /// Non-trainable state the model updates (BatchNorm running statistics), by name:
    /// part of CRIC's snapshot (empty when built with [`Hesso::new`]).
    pub(crate) buffers: Vec<(String, Tensor)>,
    /// CRIC's state, when configured.
    pub(crate) cric: Option<CricState>,
    /// The cost of the budgeted resource (MACs or parameters) over the removed counts per
    /// group, once [`Hesso::set_costs`] gave the weights' prices.
    pub(crate) costs: Option<CostModel>,
    /// The OBD saliency of every element (f64, groups concatenated, on the host) for the
    /// next choice, when the `obd` criterion is weighted; taken by that choice.
    pub(crate) obd_saliency: Option<Vec<f64>>,
}

impl Hesso {
    /// The decay's last step: the decaying elements join the pruned ones, which
    /// [`Hesso::hold_pruned`] sets to exactly zero (a product with 0.0 could give -0.0).
    pub(crate) fn prune_decaying(&mut self) {
        let done = std::mem::take(&mut self.decaying);
        self.decaying_set = SliceSet::default();
        self.pruned.extend(done);
        self.pruned_set = self.slice_set(&self.pruned);
    }

    /// Index tensors for a set of elements, per (parameter, axis), sorted and deduplicated.
    pub(crate) fn slice_set(&self, elements: &[(usize, usize)]) -> SliceSet {
        let mut host: BTreeMap<(usize, i64), Vec<i64>> = BTreeMap::new();
        for &(g, e) in elements {
            let group = &self.groups[g];
            for (s, per_element) in group.slices.iter().zip(&group.element_indices) {
                host.entry((s.param, s.axis)).or_default().extend(&per_element[e]);
            }
        }
        let entries = host
            .into_iter()
            .map(|((param, axis), mut idx)| {
                idx.sort_unstable();
                idx.dedup();
                (param, axis, Tensor::from_slice(&idx).to_device(self.base.params[param].device()))
            })
            .collect();
        SliceSet { entries }
    }

    pub(crate) fn scale_decaying(&mut self, factor: f64) -> Result<()> {
        for (param, axis, idx) in &self.decaying_set.entries {
            let name = &self.base.names[*param];
            let p = &mut self.base.params[*param];
            let _ = p
                .f_index_select(*axis, idx)
                .and_then(|s| s.f_mul_scalar(factor))
                .and_then(|s| p.f_index_copy_(*axis, idx, &s))
                .map_err(|e| HessoError::torch(format!("decaying slices of '{name}'"), e))?;
        }
        Ok(())
    }

    /// Sets the pruned slices and their optimizer state to exactly zero.
    pub(crate) fn hold_pruned(&mut self) -> Result<()> {
        for (param, axis, idx) in &self.pruned_set.entries {
            let name = &self.base.names[*param];
            let fail = |e| HessoError::torch(format!("zeroing pruned slices of '{name}'"), e);
            let _ = self.base.params[*param].f_index_fill_(*axis, idx, 0.0).map_err(fail)?;
            let state = &mut self.base.state[*param];
            for t in [&mut state.momentum_buffer, &mut state.exp_avg, &mut state.exp_avg_sq].into_iter().flatten() {
                let _ = t.f_index_fill_(*axis, idx, 0.0).map_err(fail)?;
            }
        }
        Ok(())
    }

    /// The base optimizer's update direction for parameter `i`: the momentum buffer
    /// (SGD) or the bias-corrected Adam step `m̂ / (sqrt(v̂) + eps)`; the gradient when
    /// there is no state yet; zeros when there is no gradient either.
    pub(crate) fn direction(&self, i: usize) -> std::result::Result<Tensor, tch::TchError> {
        let param = &self.base.params[i];
        let state = &self.base.state[i];
        let grad = param.grad();
        let fallback = || if grad.defined() { grad.f_detach() } else { param.f_zeros_like() };
        match self.base.config {
            OptimizerConfig::Sgd { .. } => match &state.momentum_buffer {
                Some(buf) => Ok(buf.shallow_clone()),
                None => fallback(),
            },
            OptimizerConfig::Adam { betas, eps, .. } | OptimizerConfig::AdamW { betas, eps, .. } => {
                match (&state.exp_avg, &state.exp_avg_sq) {
                    (Some(m), Some(v)) if state.step > 0 => {
                        let step = i32::try_from(state.step).unwrap_or(i32::MAX);
                        let bc1 = 1.0 - betas.0.powi(step);
                        let bc2 = 1.0 - betas.1.powi(step);
                        let denom = v.f_div_scalar(bc2)?.f_sqrt()?.f_add_scalar(eps)?;
                        m.f_div_scalar(bc1)?.f_div(&denom)
                    }
                    _ => fallback(),
                }
            }
        }
    }

    /// Per element of every group (concatenated in group order): sum of squares of the
    /// producer slices, of the direction's slices, their inner product, and the count
    /// of scalars. Computed on the device.
    pub(crate) fn element_statistics(&self, with_direction: bool) -> Result<[Tensor; 4]> {
        let fail = |e| HessoError::torch("computing element statistics", e);
        let mut directions: HashMap<usize, Tensor> = HashMap::new();
        let mut parts: [Vec<Tensor>; 4] = Default::default();
        for g in &self.groups {
            let n = g.num_elements as i64;
            let mut acc: Option<[Tensor; 4]> = None;
            for s in &g.slices {
                let p = &self.base.params[s.param];
                let rows =
                    |t: &Tensor| t.f_index_select(s.axis, &s.indices)?.f_transpose(0, s.axis)?.f_reshape([n, -1])?.f_to_kind(Kind::Double);
                let x = rows(p).map_err(fail)?;
                let count = Tensor::full([n], x.size()[1] as f64, (Kind::Double, x.device()));
                let sq = x.f_square().and_then(|t| t.f_sum_dim_intlist(1, false, Kind::Double)).map_err(fail)?;
                let (gsq, dot) = if with_direction {
                    let dir = match directions.entry(s.param) {
                        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::hash_map::Entry::Vacant(e) => e.insert(self.direction(s.param).map_err(fail)?),
                    };
                    let dir = rows(dir).map_err(fail)?;
                    let gsq = dir.f_square().and_then(|t| t.f_sum_dim_intlist(1, false, Kind::Double)).map_err(fail)?;
                    let dot = x.f_mul(&dir).and_then(|t| t.f_sum_dim_intlist(1, false, Kind::Double)).map_err(fail)?;
                    (gsq, dot)
                } else {
                    (sq.zeros_like(), sq.zeros_like())
                };
                let next = [sq, gsq, dot, count];
                acc = Some(match acc {
                    None => next,
                    Some(a) => {
                        let mut out = Vec::with_capacity(4);
                        for (a, b) in a.iter().zip(&next) {
                            out.push(a.f_add(b).map_err(fail)?);
                        }
                        [out.remove(0), out.remove(0), out.remove(0), out.remove(0)]
                    }
                });
            }
            if let Some(a) = acc {
                for (part, t) in parts.iter_mut().zip(a) {
                    part.push(t);
                }
            }
        }
        let mut out = Vec::with_capacity(4);
        for part in &parts {
            out.push(Tensor::f_cat(part, 0).map_err(fail)?);
        }
        Ok([out.remove(0), out.remove(0), out.remove(0), out.remove(0)])
    }

    /// The importance score of every element, per group (low: redundant).
    pub fn scores(&self) -> Result<Vec<Vec<f64>>> {
        let score = self.score_tensor()?;
        let flat: Vec<f64> =
            Vec::try_from(score.to_device(tch::Device::Cpu)).map_err(|e| HessoError::torch("reading importance scores", e))?;
        Ok(self.split_by_group(&flat))
    }

    /// Per group, its part of `flat` (one value per element, groups concatenated in order).
    pub(crate) fn split_by_group(&self, flat: &[f64]) -> Vec<Vec<f64>> {
        let mut out = Vec::with_capacity(self.groups.len());
        let mut offset = 0;
        for g in &self.groups {
            out.push(flat[offset..offset + g.num_elements].to_vec());
            offset += g.num_elements;
        }
        out
    }

    /// The importance scores of all elements on the device (f64, groups concatenated in
    /// order; empty on the host when there is no prunable group).
    pub(crate) fn score_tensor(&self) -> Result<Tensor> {
        self.score_tensor_undecayed(None)
    }

    /// [`Hesso::score_tensor`] with every element's producer slices taken as divided by
    /// `decay` (one factor per element, groups concatenated; 1 for an element not
    /// decaying): CRIC scores its violating set as if its linear decay had not shrunk it.
    pub(crate) fn score_tensor_undecayed(&self, decay: Option<&Tensor>) -> Result<Tensor> {
        if self.groups.is_empty() {
            return Ok(Tensor::zeros([0], (Kind::Double, tch::Device::Cpu)));
        }
        let _guard = tch::no_grad_guard();
        let fail = |e| HessoError::torch("computing importance scores", e);
        let obd = if self.config.importance.obd > 0.0 {
            Some(self.obd_saliency.as_ref().ok_or_else(|| HessoError::Config {
                setting: "importance",
                message: "the second-order criterion (obd) needs the saliency of every element before each choice: call Hesso::set_obd_saliency (the job's trainer does)".into(),
            })?)
        } else {
            None
        };
        let [mut xsq, gsq, mut dot, count] = self.element_statistics(true)?;
        if let Some(f) = decay {
            xsq = xsq.f_div(&f.f_square().map_err(fail)?).map_err(fail)?;
            dot = dot.f_div(f).map_err(fail)?;
        }
        let score = (|| -> std::result::Result<Tensor, tch::TchError> {
            let xnorm = xsq.f_sqrt()?;
            let magnitude = xnorm.shallow_clone();
            let avg_magnitude = xnorm.f_div(&count)?;
            let denom = xnorm.f_mul(&gsq.f_sqrt()?)?;
            let positive = denom.f_gt(0.0)?;
            let cos = dot.f_div(&denom.f_clamp_min(f64::MIN_POSITIVE)?)?;
            let cosine = cos.f_where_scalarother(&positive, 0.0)?.f_add_scalar(1.0)?;
            let taylor1 = dot.f_abs()?;
            let taylor2 = dot.f_square()?.f_mul_scalar(0.5)?;
            let mut criteria = vec![magnitude, avg_magnitude, cosine, taylor1, taylor2];
            if let Some(obd) = &obd {
                criteria.push(Tensor::f_from_slice(obd)?.f_to_device(xnorm.device())?);
            }
            let mut total = xnorm.f_zeros_like()?;
            for (criterion, weight) in criteria.iter().zip(self.config.importance.all()) {
                if weight == 0.0 {
                    continue;
                }
                let norm = criterion.f_norm()?.f_double_value(&[])?;
                if norm > 0.0 {
                    total = total.f_add(&criterion.f_mul_scalar(weight / norm)?)?;
                }
            }
            Ok(total)
        })()
        .map_err(fail)?;
        Ok(score)
    }
}

/// What the probes measured for one group at the snapshot.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupProbe {
    /// The group id.
    pub group: String,
    /// Per fraction of [`crate::PROBE_FRACTIONS`]: how many of its lowest-scoring elements were
    /// zeroed (`floor(fraction * n)`, at most `n - 1`: the group keeps one element).
    pub zeroed: [usize; 3],
    /// Per fraction: the probe loss with those elements zeroed (the reference loss when
    /// none was zeroed).
    pub loss: [f64; 3],
    /// The group's term: the mean over the fractions of `ln(loss / reference)`, each
    /// bounded to [-20, 20] (a non-finite loss counts as 20).
    pub log_ratio: f64,
}

/// One copy of everything a cycle restarts from.
pub(crate) struct Snapshot {
    pub(crate) params: Vec<Tensor>,
    /// Per parameter: momentum buffer, Adam moments, Adam step count.
    pub(crate) state: Vec<[Option<Tensor>; 3]>,
    pub(crate) steps: Vec<u64>,
    pub(crate) buffers: Vec<Tensor>,
}

/// CRIC's state inside [`Hesso`].
pub(crate) struct CricState {
    pub(crate) config: CricConfig,
    /// What the next step does (Warmup, Cycle, Hybrid or Pruned).
    pub(crate) next: Phase,
    /// The phase of the last step.
    pub(crate) last: Phase,
    /// Cycles started.
    pub(crate) cycle: u64,
    /// Steps done in the current cycle, or in the hybrid training.
    pub(crate) phase_step: u64,
    pub(crate) snapshot: Option<Snapshot>,
    /// Running sum of every element's score over the cycles' steps (f64, on the device).
    pub(crate) score_sum: Option<Tensor>,
    pub(crate) score_count: u64,
    /// Per group, per element: violating in some cycle so far.
    pub(crate) violated: Vec<Vec<bool>>,
    pub(crate) snapshot_step: Option<u64>,
    pub(crate) reference_loss: Option<f64>,
    pub(crate) probes: Vec<GroupProbe>,
    pub(crate) new_elements: Vec<usize>,
    pub(crate) violating_sizes: Vec<usize>,
    pub(crate) hybrid_start: Option<u64>,
}

/// CRIC's counters and sets in a checkpoint (JSON); the snapshot and the running score
/// sum are saved as tensors beside it (`cric/param/NAME`, `cric/state/NAME/FIELD`,
/// `cric/buffer/NAME`, `cric/score_sum`).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct SavedCric {
    pub(crate) next: Phase,
    pub(crate) last: Phase,
    pub(crate) cycle: u64,
    pub(crate) phase_step: u64,
    pub(crate) score_count: u64,
    /// Per group id: the elements violating in some cycle so far.
    pub(crate) violated: BTreeMap<String, Vec<usize>>,
    /// Per parameter name: the snapshot's Adam step count.
    pub(crate) snapshot_steps: Vec<(String, u64)>,
    pub(crate) snapshot_step: Option<u64>,
    pub(crate) reference_loss: Option<f64>,
    pub(crate) probes: Vec<GroupProbe>,
    pub(crate) new_elements: Vec<usize>,
    pub(crate) violating_sizes: Vec<usize>,
    pub(crate) hybrid_start: Option<u64>,
}
