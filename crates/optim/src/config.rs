//! HESSO's settings and their validation.

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
}

impl Default for ImportanceWeights {
    fn default() -> Self {
        ImportanceWeights { magnitude: 0.2, avg_magnitude: 0.2, cosine: 0.2, taylor1: 0.2, taylor2: 0.2 }
    }
}

impl ImportanceWeights {
    /// The weights in the order magnitude, avg_magnitude, cosine, taylor1, taylor2.
    pub fn as_array(&self) -> [f64; 5] {
        [self.magnitude, self.avg_magnitude, self.cosine, self.taylor1, self.taylor2]
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
        if self.pruning_periods == 0 {
            return bad("pruning_periods", "must be at least 1".into());
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
            return bad("group_divisible", "must be at least 1".into());
        }
        let w = self.importance.as_array();
        if w.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return bad("importance", format!("weights must be finite and >= 0, got {:?}", self.importance));
        }
        if t > 0.0 && w.iter().all(|v| *v == 0.0) {
            return bad("importance", "at least one weight must be positive to rank elements".into());
        }
        Ok(())
    }

    /// Steps per period, `d = pruning_steps / K`.
    pub fn period_steps(&self) -> u64 {
        self.pruning_steps / self.pruning_periods.max(1)
    }
}
