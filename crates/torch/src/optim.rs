//! Optimizers on tch tensors, following PyTorch's single-tensor algorithms exactly
//! (SGD with momentum/dampening/Nesterov/weight decay, Adam, AdamW), with their
//! per-parameter state exposed so that HESSO can read and adjust it.

use crate::error::{Error, Result};
use tch::Tensor;

/// Which algorithm and its hyper-parameters (the learning rate comes from the schedule).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerConfig {
    /// `torch.optim.SGD`.
    Sgd {
        /// Momentum factor (0: plain SGD).
        momentum: f64,
        /// Dampening of the momentum.
        dampening: f64,
        /// Nesterov momentum.
        nesterov: bool,
        /// L2 penalty added to the gradient.
        weight_decay: f64,
    },
    /// `torch.optim.Adam` (L2 penalty added to the gradient).
    Adam {
        /// Coefficients of the running averages of the gradient and its square.
        betas: (f64, f64),
        /// Added to the denominator.
        eps: f64,
        /// L2 penalty added to the gradient.
        weight_decay: f64,
    },
    /// `torch.optim.AdamW` (decoupled weight decay).
    AdamW {
        /// Coefficients of the running averages of the gradient and its square.
        betas: (f64, f64),
        /// Added to the denominator.
        eps: f64,
        /// Decoupled weight decay.
        weight_decay: f64,
    },
}

/// As the command line names it, with its settings: `sgd (momentum 0.9, weight decay 0)`.
impl std::fmt::Display for OptimizerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            OptimizerConfig::Sgd { momentum, dampening, nesterov, weight_decay } => {
                write!(f, "sgd (momentum {momentum}")?;
                if dampening != 0.0 {
                    write!(f, ", dampening {dampening}")?;
                }
                if nesterov {
                    write!(f, ", nesterov")?;
                }
                write!(f, ", weight decay {weight_decay})")
            }
            OptimizerConfig::Adam { betas, eps, weight_decay } => {
                write!(f, "adam (betas {}/{}, eps {eps:e}, weight decay {weight_decay})", betas.0, betas.1)
            }
            OptimizerConfig::AdamW { betas, eps, weight_decay } => {
                write!(f, "adamw (betas {}/{}, eps {eps:e}, weight decay {weight_decay})", betas.0, betas.1)
            }
        }
    }
}

impl OptimizerConfig {
    /// PyTorch's defaults for `sgd` (momentum 0.9 here, the usual choice for training),
    /// `adam` and `adamw` (weight decay 0.01).
    pub fn parse(name: &str) -> Result<OptimizerConfig> {
        Ok(match name {
            "sgd" => OptimizerConfig::Sgd { momentum: 0.9, dampening: 0.0, nesterov: false, weight_decay: 0.0 },
            "adam" => OptimizerConfig::Adam { betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0 },
            "adamw" => OptimizerConfig::AdamW { betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.01 },
            other => return Err(Error::Config(format!("unknown optimizer '{other}': expected sgd, adam or adamw"))),
        })
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(format!("optimizer {self}: {m}")));
        match *self {
            OptimizerConfig::Sgd { momentum, dampening, nesterov, weight_decay } => {
                if momentum < 0.0 || weight_decay < 0.0 {
                    return bad("momentum and weight decay must be >= 0");
                }
                if nesterov && (momentum <= 0.0 || dampening != 0.0) {
                    return bad("Nesterov momentum requires a momentum and zero dampening");
                }
            }
            OptimizerConfig::Adam { betas, eps, weight_decay } | OptimizerConfig::AdamW { betas, eps, weight_decay } => {
                if !(0.0..1.0).contains(&betas.0) || !(0.0..1.0).contains(&betas.1) || eps < 0.0 || weight_decay < 0.0 {
                    return bad("betas must be in [0, 1), eps and weight decay >= 0");
                }
            }
        }
        Ok(())
    }
}

/// The state of one parameter, as PyTorch keeps it.
#[derive(Default)]
pub struct ParamState {
    /// SGD: the momentum buffer (created at the first step).
    pub momentum_buffer: Option<Tensor>,
    /// Adam(W): running average of the gradient.
    pub exp_avg: Option<Tensor>,
    /// Adam(W): running average of the squared gradient.
    pub exp_avg_sq: Option<Tensor>,
    /// Adam(W): steps taken for this parameter.
    pub step: u64,
}

/// Optimizer state for a checkpoint: named tensors and per-parameter step counts.
pub type OptimizerState = (Vec<(String, Tensor)>, Vec<(String, u64)>);

/// An optimizer over a fixed list of parameters (the executor's trainable ones).
pub struct Optimizer {
    /// The algorithm.
    pub config: OptimizerConfig,
    /// Parameter names, aligned with `params` and `state`.
    pub names: Vec<String>,
    /// The parameters (shallow handles to the executor's tensors).
    pub params: Vec<Tensor>,
    /// Per-parameter state.
    pub state: Vec<ParamState>,
}

impl Optimizer {
    /// An optimizer for `params` (name, tensor).
    pub fn new(config: OptimizerConfig, params: Vec<(String, Tensor)>) -> Result<Optimizer> {
        config.validate()?;
        let (names, params): (Vec<_>, Vec<_>) = params.into_iter().unzip();
        let state = names.iter().map(|_| ParamState::default()).collect();
        Ok(Optimizer { config, names, params, state })
    }

    /// Clears the gradients.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// One update with learning rate `lr`, as `optimizer.step()` does in PyTorch.
    /// Parameters without a gradient are skipped.
    pub fn step(&mut self, lr: f64) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for i in 0..self.params.len() {
            let grad = self.params[i].grad();
            if !grad.defined() {
                continue;
            }
            let name = &self.names[i];
            let fail = |e: tch::TchError| Error::torch(format!("optimizer step on '{name}'"), e);
            let param = &mut self.params[i];
            let state = &mut self.state[i];
            match self.config {
                OptimizerConfig::Sgd { momentum, dampening, nesterov, weight_decay } => {
                    sgd_step(param, &grad, state, lr, momentum, dampening, nesterov, weight_decay).map_err(fail)?
                }
                OptimizerConfig::Adam { betas, eps, weight_decay } => {
                    adam_step(param, &grad, state, lr, betas, eps, weight_decay, false).map_err(fail)?
                }
                OptimizerConfig::AdamW { betas, eps, weight_decay } => {
                    adam_step(param, &grad, state, lr, betas, eps, weight_decay, true).map_err(fail)?
                }
            }
        }
        Ok(())
    }

    /// The state tensors by name (`NAME/momentum_buffer`, `NAME/exp_avg`, `NAME/exp_avg_sq`)
    /// and the per-parameter Adam step counts, for checkpoints.
    pub fn state_tensors(&self) -> OptimizerState {
        let mut tensors = Vec::new();
        let mut steps = Vec::new();
        for (name, s) in self.names.iter().zip(&self.state) {
            for (key, t) in [("momentum_buffer", &s.momentum_buffer), ("exp_avg", &s.exp_avg), ("exp_avg_sq", &s.exp_avg_sq)] {
                if let Some(t) = t {
                    tensors.push((format!("{name}/{key}"), t.shallow_clone()));
                }
            }
            steps.push((name.clone(), s.step));
        }
        (tensors, steps)
    }

    /// Restores what [`Optimizer::state_tensors`] returned.
    pub fn load_state(&mut self, tensors: &[(String, Tensor)], steps: &[(String, u64)]) -> Result<()> {
        for (key, t) in tensors {
            let (name, field) = key.rsplit_once('/').ok_or_else(|| Error::Config(format!("optimizer state '{key}' is not NAME/FIELD")))?;
            let i = self
                .names
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| Error::Config(format!("optimizer state for unknown parameter '{name}'")))?;
            let t = t.to_device(self.params[i].device()).to_kind(self.params[i].kind());
            let s = &mut self.state[i];
            match field {
                "momentum_buffer" => s.momentum_buffer = Some(t),
                "exp_avg" => s.exp_avg = Some(t),
                "exp_avg_sq" => s.exp_avg_sq = Some(t),
                other => return Err(Error::Config(format!("unknown optimizer state field '{other}'"))),
            }
        }
        for (name, step) in steps {
            if let Some(i) = self.names.iter().position(|n| n == name) {
                self.state[i].step = *step;
            }
        }
        Ok(())
    }
}

/// State an optimizer keeps beyond its base [`Optimizer`]'s, for checkpoints: named
/// tensors and a JSON value.
#[derive(Default)]
pub struct ExtraState {
    /// Tensors by name (stored on the host in the checkpoint).
    pub tensors: Vec<(String, Tensor)>,
    /// Counters, chosen sets, anything else.
    pub json: serde_json::Value,
}

/// The loss of the model's current parameters on fixed data, forward only; what the
/// trainer hands to [`TrainingOptimizer::step`] for optimizers that probe (CRIC).
pub type Probe<'a> = &'a mut dyn FnMut() -> Result<f64>;

/// What the trainer steps after `backward()`: a plain [`Optimizer`], or an optimizer
/// built around one (HESSO), which may keep more state for its checkpoints.
pub trait TrainingOptimizer {
    /// The base optimizer: parameters and their per-parameter state.
    fn base(&self) -> &Optimizer;
    /// The base optimizer, mutable (for restoring its state).
    fn base_mut(&mut self) -> &mut Optimizer;
    /// One update with learning rate `lr`; `probe` measures the loss of the current
    /// parameters on fixed data without training (most optimizers ignore it).
    fn step(&mut self, lr: f64, probe: Probe<'_>) -> Result<()>;
    /// The state beyond the base optimizer's, for a checkpoint.
    fn extra_state(&self) -> Result<ExtraState> {
        Ok(ExtraState::default())
    }
    /// Restores what [`TrainingOptimizer::extra_state`] returned.
    fn load_extra_state(&mut self, _state: ExtraState) -> Result<()> {
        Ok(())
    }
    /// Steps whose work the optimizer has thrown away by going back to an earlier state
    /// (CRIC's cycles each restart from one snapshot). The trainer adds them to the run
    /// and takes the learning rate at `step - replayed_steps()`, so that the model it
    /// returns has trained the run's length along the schedule.
    fn replayed_steps(&self) -> u64 {
        0
    }
    /// The schedule step (counted as [`crate::train::Trainer::schedule_step`] counts) from
    /// which the model's structure no longer changes: a pruning optimizer's last element
    /// is held at zero from there on. `None` when nothing is pruned or it is not known yet.
    fn structure_final_at(&self) -> Option<u64> {
        None
    }
}

impl TrainingOptimizer for Optimizer {
    fn base(&self) -> &Optimizer {
        self
    }
    fn base_mut(&mut self) -> &mut Optimizer {
        self
    }
    fn step(&mut self, lr: f64, _probe: Probe<'_>) -> Result<()> {
        Optimizer::step(self, lr)
    }
}

/// `torch.optim.SGD`'s single-tensor update.
#[allow(clippy::too_many_arguments)]
fn sgd_step(
    param: &mut Tensor,
    grad: &Tensor,
    state: &mut ParamState,
    lr: f64,
    momentum: f64,
    dampening: f64,
    nesterov: bool,
    weight_decay: f64,
) -> Result<(), tch::TchError> {
    let mut d_p = if weight_decay != 0.0 { grad.f_add(&param.f_mul_scalar(weight_decay)?)? } else { grad.shallow_clone() };
    if momentum != 0.0 {
        let buf = match state.momentum_buffer.take() {
            None => d_p.f_detach_copy()?,
            Some(mut buf) => {
                let _ = buf.f_mul_scalar_(momentum)?;
                let _ = buf.f_add_(&d_p.f_mul_scalar(1.0 - dampening)?)?;
                buf
            }
        };
        d_p = if nesterov { d_p.f_add(&buf.f_mul_scalar(momentum)?)? } else { buf.shallow_clone() };
        state.momentum_buffer = Some(buf);
    }
    let _ = param.f_sub_(&d_p.f_mul_scalar(lr)?)?;
    Ok(())
}

/// `torch.optim.Adam` / `AdamW`'s single-tensor update (no amsgrad).
#[allow(clippy::too_many_arguments)]
fn adam_step(
    param: &mut Tensor,
    grad: &Tensor,
    state: &mut ParamState,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
) -> Result<(), tch::TchError> {
    state.step += 1;
    let mut grad = grad.shallow_clone();
    if weight_decay != 0.0 {
        if decoupled {
            let _ = param.f_mul_scalar_(1.0 - lr * weight_decay)?;
        } else {
            grad = grad.f_add(&param.f_mul_scalar(weight_decay)?)?;
        }
    }
    let mut exp_avg = match state.exp_avg.take() {
        Some(t) => t,
        None => param.f_zeros_like()?,
    };
    let mut exp_avg_sq = match state.exp_avg_sq.take() {
        Some(t) => t,
        None => param.f_zeros_like()?,
    };
    let _ = exp_avg.f_lerp_(&grad, 1.0 - betas.0)?;
    let _ = exp_avg_sq.f_mul_scalar_(betas.1)?;
    let _ = exp_avg_sq.f_addcmul_(&grad, &grad.f_mul_scalar(1.0 - betas.1)?)?;
    let step = state.step as i32;
    let bias_correction1 = 1.0 - betas.0.powi(step);
    let bias_correction2 = 1.0 - betas.1.powi(step);
    let step_size = lr / bias_correction1;
    let denom = exp_avg_sq.f_sqrt()?.f_div_scalar(bias_correction2.sqrt())?.f_add_scalar(eps)?;
    let _ = param.f_sub_(&exp_avg.f_div(&denom)?.f_mul_scalar(step_size)?)?;
    state.exp_avg = Some(exp_avg);
    state.exp_avg_sq = Some(exp_avg_sq);
    Ok(())
}

/// Scales the gradients so that their global L2 norm is at most `max_norm`
/// (`torch.nn.utils.clip_grad_norm_`); returns the norm before clipping (a scalar tensor).
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> Result<Option<Tensor>> {
    let _guard = tch::no_grad_guard();
    let fail = |e: tch::TchError| Error::torch("clipping gradients", e);
    let grads: Vec<Tensor> = params.iter().map(Tensor::grad).filter(Tensor::defined).collect();
    if grads.is_empty() {
        return Ok(None);
    }
    let norms = grads.iter().map(|g| g.f_norm()).collect::<Result<Vec<_>, _>>().map_err(fail)?;
    let total = Tensor::f_stack(&norms, 0).and_then(|s| s.f_norm()).map_err(fail)?;
    let coef = total
        .f_add_scalar(1e-6)
        .and_then(|d| d.f_reciprocal())
        .and_then(|r| r.f_mul_scalar(max_norm))
        .and_then(|c| c.f_clamp_max(1.0))
        .map_err(fail)?;
    for mut g in grads {
        let _ = g.f_mul_(&coef).map_err(fail)?;
    }
    Ok(Some(total))
}
