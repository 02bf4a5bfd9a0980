//! HESSO's settings and their validation.

use crate::budget::Budget;
use crate::error::{HessoError, Result};

/// Weights of the importance criteria (each criterion is normalized by its L2 norm over
/// all elements before weighting).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImportanceWeights {
    /// `||x_i||`.
    pub magnitude: f64,
    /// `||x_i|| / numel(x_i)`.
    pub avg_magnitude: f64,
    /// `1 + cos(x_i, g_i)`.
    pub cosine: f64,
    /// `|<x_i, g_i>|`.
    pub taylor1: f64,
    /// `0.5 <x_i, g_i>^2`.
    pub taylor2: f64,
    /// Optimal Brain Damage, `1/2 sum diag(H) x^2` over the element's producer weights:
    /// the loss increase a diagonal quadratic model predicts for zeroing it. Second order:
    /// the trainer estimates the Hessian diagonal (Hutchinson) before each period's choice
    /// and passes it with [`crate::Hesso::set_obd_saliency`]. 0 (the default) leaves it
    /// out; not available with CRIC.
    #[serde(default)]
    pub obd: f64,
}

impl Default for ImportanceWeights {
    fn default() -> Self {
        ImportanceWeights { magnitude: 0.2, avg_magnitude: 0.2, cosine: 0.2, taylor1: 0.2, taylor2: 0.2, obd: 0.0 }
    }
}

impl ImportanceWeights {
    /// The first-order weights in the order magnitude, avg_magnitude, cosine, taylor1,
    /// taylor2 (without [`ImportanceWeights::obd`]).
    pub fn as_array(&self) -> [f64; 5] {
        [self.magnitude, self.avg_magnitude, self.cosine, self.taylor1, self.taylor2]
    }

    /// Every weight, the first-order ones then `obd`.
    pub fn all(&self) -> [f64; 6] {
        let [a, b, c, d, e] = self.as_array();
        [a, b, c, d, e, self.obd]
    }
}

/// The pruning schedule and criteria.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HessoConfig {
    /// Fraction of all prunable elements to remove, in [0, 1).
    pub target_group_sparsity: f64,
    /// Steps (counted from 0) of plain base-optimizer training before pruning starts.
    pub start_pruning_step: u64,
    /// Steps over which the chosen elements decay to zero (split into the periods).
    pub pruning_steps: u64,
    /// Number of periods K (>= 1); each chooses its share of the elements.
    pub pruning_periods: u64,
    /// Every group keeps a multiple of this many elements, and at least this many (D >= 1).
    pub group_divisible: usize,
    /// Weights of the importance criteria.
    pub importance: ImportanceWeights,
    /// CRIC, the corrective cycles that choose the elements before they decay (`None`:
    /// plain HESSO). With CRIC on, `start_pruning_step`, `pruning_steps` and
    /// `pruning_periods` are not used; see [`CricConfig`] for how the steps are spent.
    #[serde(default)]
    pub cric: Option<CricConfig>,
    /// What the selection meets: `target_group_sparsity` (the default), or a fraction of
    /// the MACs or parameters to keep (needs [`crate::Hesso::set_costs`]).
    #[serde(default)]
    pub budget: Budget,
    /// The largest share of any group's elements the selection removes, in (0, 1]: a
    /// floor against layer collapse (every group also keeps at least D elements).
    #[serde(default = "default_max_group_sparsity")]
    pub max_group_sparsity: f64,
}

/// The default cap on a group's removed share (see [`HessoConfig::max_group_sparsity`]).
pub const DEFAULT_MAX_GROUP_SPARSITY: f64 = 0.9;

fn default_max_group_sparsity() -> f64 {
    DEFAULT_MAX_GROUP_SPARSITY
}

impl Default for HessoConfig {
    fn default() -> Self {
        HessoConfig {
            target_group_sparsity: 0.5,
            start_pruning_step: 0,
            pruning_steps: 1,
            pruning_periods: 1,
            group_divisible: 1,
            importance: ImportanceWeights::default(),
            cric: None,
            budget: Budget::GroupSparsity,
            max_group_sparsity: DEFAULT_MAX_GROUP_SPARSITY,
        }
    }
}

impl HessoConfig {
    /// Checks every setting; the error names the offending one.
    pub fn validate(&self) -> Result<()> {
        let bad = |setting: &'static str, message: String| Err(HessoError::Config { setting, message });
        let t = self.target_group_sparsity;
        if !(t.is_finite() && (0.0..1.0).contains(&t)) {
            return bad("target_group_sparsity", format!("{t} is not in [0, 1)"));
        }
        let cap = self.max_group_sparsity;
        if !(cap.is_finite() && cap > 0.0 && cap <= 1.0) {
            return bad("max_group_sparsity", format!("{cap} is not in (0, 1]"));
        }
        if let Some(r) = self.budget.ratio() {
            if !(r.is_finite() && r > 0.0 && r <= 1.0) {
                return bad("budget", format!("the {} ratio to keep, {r}, is not in (0, 1]", self.budget.name()));
            }
        }
        if self.pruning_periods == 0 {
            return bad("pruning_periods", "is 0, must be at least 1".into());
        }
        if self.pruning_steps < self.pruning_periods {
            return bad(
                "pruning_steps",
                format!(
                    "{} steps cannot hold {} pruning periods (each period needs at least one step)",
                    self.pruning_steps, self.pruning_periods
                ),
            );
        }
        if self.group_divisible == 0 {
            return bad("group_divisible", "is 0, must be at least 1".into());
        }
        let w = self.importance.all();
        if w.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return bad("importance", format!("weights must be finite and >= 0, got {:?}", self.importance));
        }
        if t > 0.0 && w.iter().all(|v| *v == 0.0) {
            return bad("importance", "at least one weight must be positive to rank elements".into());
        }
        if let Some(cric) = &self.cric {
            cric.validate()?;
            if self.importance.obd > 0.0 {
                return bad("importance", "the second-order criterion (obd) is not available with CRIC".into());
            }
        }
        Ok(())
    }

    /// The most steps the schedule takes before every chosen element is held at zero:
    /// `start_pruning_step + d * K` for plain HESSO, [`CricConfig::max_schedule_steps`]
    /// with CRIC. A run with fewer steps ends before the pruning is complete.
    pub fn schedule_steps(&self) -> u64 {
        match &self.cric {
            Some(cric) => cric.max_schedule_steps(),
            None => self.start_pruning_step.saturating_add(self.period_steps().saturating_mul(self.pruning_periods)),
        }
    }

    /// Steps per period, `d = pruning_steps / K`.
    pub fn period_steps(&self) -> u64 {
        self.pruning_steps / self.pruning_periods.max(1)
    }
}

/// The settings of CRIC (Corrective Redundant Identification Cycle), `shared/spec/hesso.md`.
///
/// How the optimizer's steps are spent (steps counted from 0):
///
/// 1. steps `0 .. start_cric_step`: plain base-optimizer steps (warm-up). After the last
///    of them the parameters and the base optimizer's state are snapshotted, the
///    reference loss and the per-group probes are measured (forward passes only) and the
///    first violating set is chosen;
/// 2. cycles of `sampling_steps` steps each, at least 1 and at most `max_cycles`: each
///    starts from the snapshot, decays its violating set linearly to zero and adds every
///    element's score to a running mean; after a cycle's last step the snapshot is
///    restored. The cycles stop when one brings at most `tolerance` new low-score
///    elements (or after `max_cycles`). A finished cycle's steps are trained again: the
///    trainer adds them to the run and goes back on the learning-rate schedule with the
///    snapshot ([`oto_torch::optim::TrainingOptimizer::replayed_steps`]), so that the
///    final choice trains as many steps after the snapshot as plain HESSO's model does;
/// 3. `hybrid_training_steps` steps from the snapshot again, while the final choice decays
///    linearly to exactly zero;
/// 4. every later step holds the chosen elements at zero (parameters and optimizer
///    state), up to the trainer's last step.
///
/// The whole schedule takes at most
/// `start_cric_step + max_cycles * sampling_steps + hybrid_training_steps` steps
/// ([`CricConfig::max_schedule_steps`]): keep it below the run's step count (the job
/// checks it; on the learning-rate schedule it ends at `start_cric_step +
/// hybrid_training_steps`, the cycles being extra steps).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CricConfig {
    /// Warm-up steps before the snapshot (>= 1: scores need the base optimizer's state).
    pub start_cric_step: u64,
    /// Steps of one cycle (>= 1).
    pub sampling_steps: u64,
    /// The most cycles (>= 1).
    pub max_cycles: u64,
    /// A cycle that brings at most this many new low-score elements ends the cycles.
    pub tolerance: usize,
    /// Steps over which the final choice decays to zero (>= 1).
    pub hybrid_training_steps: u64,
    /// Weight of the probes' term (the group's mean log loss ratio, normalized over all
    /// elements like a criterion) in the final choice (>= 0; 0 ignores the probes).
    pub probe_weight: f64,
}

impl Default for CricConfig {
    fn default() -> Self {
        CricConfig::for_budget(300)
    }
}

impl CricConfig {
    /// Lengths for a run of `total_steps` steps: warm-up 10%, cycles of 5% (at most 3),
    /// hybrid training 15%, so the schedule ends by 40% of the run at the latest, where
    /// plain HESSO's default schedule (warm-up 10%, pruning 30%) ends, and the rest trains
    /// with the chosen elements held at zero. Each length is at least 1.
    ///
    /// A CRIC run takes up to `3 * 5% = 15%` more steps than the plain run of the same
    /// length: the cycles are replayed (see above). When the run's schedule went on during
    /// the cycles instead, the final choice trained 15% less than plain HESSO's, and CRIC
    /// lost to HESSO at low compression (bench/quality.md, the digits CNN at 352 steps:
    /// group sparsity 0.5 98.70% vs HESSO's 98.98%, MACs 0.25 98.70% vs 98.98%; replayed,
    /// 98.98% both) and gained less at high compression (30 epochs, group sparsity 0.9:
    /// 91.55% vs HESSO's 93.69%; replayed, 95.26%). The earlier lengths (warm-up 20%, hybrid 20%: done
    /// by 55%) took the final choice later on the learning-rate schedule and left less of
    /// the run, at a lower learning rate, to recover: on the digits CNN at 30 epochs, CRIC
    /// lost to HESSO at MACs 0.25 (97.77% vs 98.61%, same structure [0, 25, 0] removed) and
    /// at group sparsity 0.9 (88.49% vs 92.57%, every group at its cap); warm-up 10% and
    /// hybrid 15% gave 98.24% and 91.18% (bench/quality.md has the grid).
    pub fn for_budget(total_steps: u64) -> CricConfig {
        let part = |percent: u64| (total_steps / 100 * percent + total_steps % 100 * percent / 100).max(1);
        CricConfig {
            start_cric_step: part(10),
            sampling_steps: part(5),
            max_cycles: 3,
            tolerance: 0,
            hybrid_training_steps: part(15),
            probe_weight: 0.2,
        }
    }

    /// The most steps the schedule can take before the chosen elements are held at zero.
    pub fn max_schedule_steps(&self) -> u64 {
        self.start_cric_step.saturating_add(self.max_cycles.saturating_mul(self.sampling_steps)).saturating_add(self.hybrid_training_steps)
    }

    /// Checks every setting; the error names the offending one.
    pub fn validate(&self) -> Result<()> {
        let bad = |setting: &'static str, message: &str| Err(HessoError::Config { setting, message: message.into() });
        if self.start_cric_step == 0 {
            return bad("cric.start_cric_step", "is 0, must be at least 1 (the scores need one base-optimizer step)");
        }
        if self.sampling_steps == 0 {
            return bad("cric.sampling_steps", "is 0, must be at least 1");
        }
        if self.max_cycles == 0 {
            return bad("cric.max_cycles", "is 0, must be at least 1");
        }
        if self.hybrid_training_steps == 0 {
            return bad("cric.hybrid_training_steps", "is 0, must be at least 1");
        }
        if !(self.probe_weight.is_finite() && self.probe_weight >= 0.0) {
            return bad("cric.probe_weight", &format!("{} is not a finite number >= 0", self.probe_weight));
        }
        Ok(())
    }
}
