//! Learning-rate schedules with linear warm-up.

use crate::error::{Error, Result};

/// The decay after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Decay {
    /// The base learning rate throughout.
    Constant,
    /// Multiplied by `gamma` every `step_size` steps (`StepLR`).
    Step {
        /// Steps between decays.
        step_size: u64,
        /// Decay factor.
        gamma: f64,
    },
    /// Cosine annealing from the base rate to `min_lr` at the last step (`CosineAnnealingLR`).
    Cosine {
        /// The final learning rate.
        min_lr: f64,
    },
}

/// `constant`, `step (x0.1 every 100 steps)`, `cosine (to 0)`.
impl std::fmt::Display for Decay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Decay::Constant => write!(f, "constant"),
            Decay::Step { step_size, gamma } => write!(f, "step (x{gamma} every {step_size} steps)"),
            Decay::Cosine { min_lr } => write!(f, "cosine (to {min_lr})"),
        }
    }
}

/// A learning rate per step.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    /// The base learning rate.
    pub lr: f64,
    /// The decay after warm-up.
    pub decay: Decay,
    /// Steps of linear warm-up from `lr / warmup_steps` to `lr`.
    pub warmup_steps: u64,
    /// Total training steps (the end of the cosine).
    pub total_steps: u64,
}

impl Schedule {
    /// A schedule named `constant`, `step` (decays by 0.1 at every third of training) or `cosine` (to 0).
    pub fn parse(name: &str, lr: f64, warmup_steps: u64, total_steps: u64) -> Result<Schedule> {
        let decay = match name {
            "constant" => Decay::Constant,
            "step" => Decay::Step { step_size: (total_steps / 3).max(1), gamma: 0.1 },
            "cosine" => Decay::Cosine { min_lr: 0.0 },
            other => return Err(Error::Config(format!("unknown schedule '{other}': expected constant, step or cosine"))),
        };
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(Error::Config(format!("learning rate {lr} must be a positive number")));
        }
        Ok(Schedule { lr, decay, warmup_steps, total_steps })
    }

    /// The learning rate of step `step` (counted from 0).
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let t = step - self.warmup_steps;
        match self.decay {
            Decay::Constant => self.lr,
            Decay::Step { step_size, gamma } => self.lr * gamma.powi((t / step_size.max(1)) as i32),
            Decay::Cosine { min_lr } => {
                let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
                let progress = (t.min(span)) as f64 / span as f64;
                min_lr + (self.lr - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_reaches_the_minimum() {
        let s = Schedule { lr: 0.1, decay: Decay::Cosine { min_lr: 0.001 }, warmup_steps: 10, total_steps: 110 };
        assert!((s.lr_at(0) - 0.01).abs() < 1e-12);
        assert!((s.lr_at(9) - 0.1).abs() < 1e-12);
        assert!((s.lr_at(10) - 0.1).abs() < 1e-12);
        assert!((s.lr_at(60) - (0.001 + 0.099 * 0.5)).abs() < 1e-12);
        assert!((s.lr_at(110) - 0.001).abs() < 1e-12);
        let step = Schedule { lr: 1.0, decay: Decay::Step { step_size: 5, gamma: 0.5 }, warmup_steps: 0, total_steps: 20 };
        assert_eq!([step.lr_at(0), step.lr_at(4), step.lr_at(5), step.lr_at(12)], [1.0, 1.0, 0.5, 0.25]);
    }
}
