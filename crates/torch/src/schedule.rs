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

/// What the learning rate does once the model's structure is final (the pruning
/// optimizer holds its last element at zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterPruning {
    /// The schedule goes on unchanged.
    #[default]
    Continue,
    /// The decay starts again over the steps left, from the base rate or
    /// [`Schedule::restart_lr`], after [`Schedule::restart_warmup`]'s linear warm-up:
    /// the pruned model is retrained at a large rate, not only fine-tuned at the small
    /// one the schedule has reached (the "learning-rate restarting" of Le & Hua, ICLR 2021).
    /// Measured: it helps a model trained from scratch by the job (the digits CNN, SGD and
    /// AdamW, most of all at the smallest sizes) and hurts a trained model distilled into
    /// its pruned self (BERT-tiny: the large rate moves it away from its teacher).
    Restart,
}

impl AfterPruning {
    /// `continue` or `restart`.
    pub fn parse(name: &str) -> Result<AfterPruning> {
        match name {
            "continue" => Ok(AfterPruning::Continue),
            "restart" => Ok(AfterPruning::Restart),
            other => Err(Error::Config(format!("unknown lr_after_pruning '{other}': expected restart or continue"))),
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
    /// What the rate does once pruning has finished (absent in files written before it
    /// existed: those jobs continued).
    #[serde(default)]
    pub after_pruning: AfterPruning,
    /// The rate the restart starts from (`None`: the base rate `lr`).
    #[serde(default)]
    pub restart_lr: Option<f64>,
    /// The restart's linear warm-up, as a share of the steps left (0: none).
    #[serde(default)]
    pub restart_warmup: f64,
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
        Ok(Schedule { lr, decay, warmup_steps, total_steps, after_pruning: AfterPruning::Continue, restart_lr: None, restart_warmup: 0.0 })
    }

    /// The learning rate of step `step` when the model's structure is final from step
    /// `final_at` (`None`: nothing is pruned, or not known yet): [`Schedule::lr_at`]; with
    /// [`AfterPruning::Restart`], from `final_at` on, the same decay again over the steps
    /// left (a step decay's interval shrunk in proportion), from the restart's rate after
    /// its warm-up.
    pub fn lr_after_pruning(&self, step: u64, final_at: Option<u64>) -> f64 {
        let Some(at) = final_at.filter(|&at| self.after_pruning == AfterPruning::Restart && at <= step && at < self.total_steps) else {
            return self.lr_at(step);
        };
        let left = self.total_steps - at;
        let decay = match self.decay {
            Decay::Step { step_size, gamma } => {
                let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
                let scaled = u64::try_from(u128::from(step_size) * u128::from(left) / u128::from(span)).unwrap_or(u64::MAX);
                Decay::Step { step_size: scaled.max(1), gamma }
            }
            other => other,
        };
        // Rounded down (a float-to-integer cast truncates and saturates); the share is
        // checked to lie in [0, 1).
        let warmup_steps = (left as f64 * self.restart_warmup) as u64;
        let lr = self.restart_lr.unwrap_or(self.lr);
        Schedule {
            lr,
            decay,
            warmup_steps,
            total_steps: left,
            after_pruning: AfterPruning::Continue,
            restart_lr: None,
            restart_warmup: 0.0,
        }
        .lr_at(step - at)
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

    /// 0.1 with 10 warm-up steps, then cosine to 0.001 at step 110.
    fn cosine_schedule(after_pruning: AfterPruning) -> Schedule {
        Schedule {
            lr: 0.1,
            decay: Decay::Cosine { min_lr: 0.001 },
            warmup_steps: 10,
            total_steps: 110,
            after_pruning,
            restart_lr: None,
            restart_warmup: 0.0,
        }
    }

    /// 1.0 halved every 5 steps over 20.
    fn step_schedule(after_pruning: AfterPruning) -> Schedule {
        Schedule {
            lr: 1.0,
            decay: Decay::Step { step_size: 5, gamma: 0.5 },
            warmup_steps: 0,
            total_steps: 20,
            after_pruning,
            restart_lr: None,
            restart_warmup: 0.0,
        }
    }

    #[test]
    fn warmup_then_cosine_reaches_the_minimum() {
        let s = cosine_schedule(AfterPruning::Continue);
        assert!((s.lr_at(0) - 0.01).abs() < 1e-12);
        assert!((s.lr_at(9) - 0.1).abs() < 1e-12);
        assert!((s.lr_at(10) - 0.1).abs() < 1e-12);
        assert!((s.lr_at(60) - (0.001 + 0.099 * 0.5)).abs() < 1e-12);
        assert!((s.lr_at(110) - 0.001).abs() < 1e-12);
        let step = step_schedule(AfterPruning::Continue);
        assert_eq!([step.lr_at(0), step.lr_at(4), step.lr_at(5), step.lr_at(12)], [1.0, 1.0, 0.5, 0.25]);
    }

    /// Restarting: before the structure is final, and without restart or a final step,
    /// the plain schedule; from the final step, the decay again from the base rate over
    /// the steps left, without warm-up (a step decay's interval in proportion).
    #[test]
    fn restart_after_pruning() {
        let cosine = cosine_schedule(AfterPruning::Restart);
        for step in 0..30 {
            assert_eq!(cosine.lr_after_pruning(step, Some(30)), cosine.lr_at(step));
        }
        assert!((cosine.lr_after_pruning(30, Some(30)) - 0.1).abs() < 1e-12);
        assert!((cosine.lr_after_pruning(70, Some(30)) - (0.001 + 0.099 * 0.5)).abs() < 1e-12);
        assert!((cosine.lr_after_pruning(110, Some(30)) - 0.001).abs() < 1e-12);
        assert!(cosine.lr_after_pruning(31, Some(30)) > cosine.lr_at(31));
        let continuing = Schedule { after_pruning: AfterPruning::Continue, ..cosine };
        for step in 0..=110 {
            assert_eq!(continuing.lr_after_pruning(step, Some(30)), continuing.lr_at(step));
            assert_eq!(cosine.lr_after_pruning(step, None), cosine.lr_at(step));
            // Pruning that ends with the run leaves nothing to restart.
            assert_eq!(cosine.lr_after_pruning(step, Some(110)), cosine.lr_at(step));
        }
        let step = step_schedule(AfterPruning::Restart);
        let lrs: Vec<f64> = (8..20).map(|s| step.lr_after_pruning(s, Some(10))).collect();
        assert_eq!(lrs, [0.5, 0.5, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.0625, 0.0625]);
        assert_eq!(AfterPruning::parse("restart").unwrap(), AfterPruning::Restart);
        assert!(AfterPruning::parse("rewind").unwrap_err().to_string().contains("expected restart or continue"));
    }

    /// A restart at its own rate with warm-up: the plain schedule until the final step,
    /// then a linear warm-up over the share of the steps left to `restart_lr`, then the
    /// decay from it to the end; the warm-up's first step is `restart_lr / warm-up steps`.
    #[test]
    fn restart_at_its_own_rate_after_a_warmup() {
        let s = Schedule { restart_lr: Some(0.2), restart_warmup: 0.1, ..cosine_schedule(AfterPruning::Restart) };
        for step in 0..30 {
            assert_eq!(s.lr_after_pruning(step, Some(30)), s.lr_at(step));
        }
        // 80 steps left: 8 of warm-up, then cosine from 0.2 to 0.001 over the other 72.
        for k in 0..8u64 {
            assert!((s.lr_after_pruning(30 + k, Some(30)) - 0.2 * (k + 1) as f64 / 8.0).abs() < 1e-12, "warm-up step {k}");
        }
        assert!((s.lr_after_pruning(38, Some(30)) - 0.2).abs() < 1e-12);
        assert!((s.lr_after_pruning(38 + 36, Some(30)) - (0.001 + 0.199 * 0.5)).abs() < 1e-12);
        assert!((s.lr_after_pruning(110, Some(30)) - 0.001).abs() < 1e-12);
        // Without a restart the two settings change nothing.
        let continuing = Schedule { after_pruning: AfterPruning::Continue, ..s };
        for step in 0..=110 {
            assert_eq!(continuing.lr_after_pruning(step, Some(30)), continuing.lr_at(step));
        }
    }
}
