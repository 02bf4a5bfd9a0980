//! Training losses and the evaluation metric.

use crate::error::{Error, Result};
use tch::{Kind, Reduction, Tensor};

/// A training objective.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Loss {
    /// Softmax cross-entropy over the last axis against class indices, mean over samples.
    CrossEntropy {
        /// Label smoothing in [0, 1) (PyTorch's `label_smoothing`).
        label_smoothing: f64,
    },
    /// Mean squared error against float targets shaped like the output.
    Mse,
    /// Binary cross-entropy with logits against float targets in [0, 1].
    Bce,
    /// Distillation: KL divergence between the teacher's and the model's softmax at
    /// temperature `temperature`, times T^2 (Hinton et al.), mean over samples.
    Distill {
        /// The softmax temperature.
        temperature: f64,
    },
}

/// As `--loss` names it, with its settings: `cross-entropy (label smoothing 0.1)`.
impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Loss::CrossEntropy { label_smoothing: 0.0 } => write!(f, "cross-entropy"),
            Loss::CrossEntropy { label_smoothing } => write!(f, "cross-entropy (label smoothing {label_smoothing})"),
            Loss::Mse => write!(f, "mse"),
            Loss::Bce => write!(f, "bce"),
            Loss::Distill { temperature } => write!(f, "distill (temperature {temperature})"),
        }
    }
}

impl Loss {
    /// Parses a `--loss` name (`cross-entropy`, `mse`, `bce`, `distill`) with default settings.
    pub fn parse(name: &str) -> Result<Loss> {
        Ok(match name {
            "cross-entropy" | "ce" => Loss::CrossEntropy { label_smoothing: 0.0 },
            "mse" => Loss::Mse,
            "bce" => Loss::Bce,
            "distill" => Loss::Distill { temperature: 1.0 },
            other => return Err(Error::Config(format!("unknown loss '{other}': expected cross-entropy, mse, bce or distill"))),
        })
    }

    /// Whether the loss needs labels from the data (distillation needs the teacher instead).
    pub fn needs_labels(&self) -> bool {
        !matches!(self, Loss::Distill { .. })
    }

    /// Whether the task is classification (accuracy is the metric).
    pub fn is_classification(&self) -> bool {
        matches!(self, Loss::CrossEntropy { .. } | Loss::Distill { .. })
    }

    /// The loss of `output` against `labels` (class indices or targets) or, for
    /// distillation, against the `teacher` outputs. A scalar tensor.
    pub fn compute(&self, output: &Tensor, labels: Option<&Tensor>, teacher: Option<&Tensor>) -> Result<Tensor> {
        let fail = |e: tch::TchError| Error::torch(format!("computing the {self} loss of an output of shape {:?}", output.size()), e);
        let need = |t: Option<&Tensor>, what: &str| {
            t.map(Tensor::shallow_clone).ok_or_else(|| Error::Config(format!("the {self} loss needs {what}")))
        };
        match *self {
            Loss::CrossEntropy { label_smoothing } => {
                let labels = need(labels, "class labels")?;
                let (logits, labels) = class_axis_last(output, &labels).map_err(fail)?;
                logits.f_cross_entropy_loss(&labels, None::<&Tensor>, Reduction::Mean, -100, label_smoothing).map_err(fail)
            }
            Loss::Mse => {
                let target = need(labels, "targets")?;
                output.f_mse_loss(&target.f_to_kind(output.kind()).map_err(fail)?, Reduction::Mean).map_err(fail)
            }
            Loss::Bce => {
                let target = need(labels, "targets")?;
                output
                    .f_binary_cross_entropy_with_logits(
                        &target.f_to_kind(output.kind()).map_err(fail)?,
                        None::<&Tensor>,
                        None::<&Tensor>,
                        Reduction::Mean,
                    )
                    .map_err(fail)
            }
            Loss::Distill { temperature } => {
                let teacher = need(teacher, "the teacher's outputs")?;
                let t = temperature;
                let (output, teacher) = (class_logits(output).map_err(fail)?, class_logits(&teacher).map_err(fail)?);
                let student = output.f_div_scalar(t).and_then(|s| s.f_log_softmax(-1, None)).map_err(fail)?;
                let target = teacher.f_div_scalar(t).and_then(|s| s.f_log_softmax(-1, None)).map_err(fail)?;
                let rows = output.size().first().copied().unwrap_or(1).max(1) as f64;
                let kl = student.f_kl_div(&target, Reduction::Sum, true).map_err(fail)?;
                kl.f_mul_scalar(t * t / rows).map_err(fail)
            }
        }
    }
}

/// Whether an output of this shape is `[N, C, 1, ...]` (a caffe2-era classifier's
/// output): its classes are on axis 1, as in PyTorch, not on the last axis.
fn classes_on_axis1(size: &[i64]) -> bool {
    size.len() >= 3 && size[2..].iter().all(|&d| d == 1)
}

/// The number of classes of an output: its last axis, or axis 1 for `[N, C, 1, ...]`.
pub fn class_count(size: &[i64]) -> i64 {
    let axis = if classes_on_axis1(size) { size.get(1) } else { size.last() };
    axis.copied().unwrap_or(1)
}

/// The logits as `[M, C]`: `[N, ..., C]` flattened, `[N, C, 1, ...]` squeezed to `[N, C]`.
fn class_logits(output: &Tensor) -> Result<Tensor, tch::TchError> {
    output.f_reshape([-1, class_count(&output.size())])
}

/// Flattens logits to `[M, C]` ([`class_logits`]) and `[N, ...]` labels to `[M]`.
fn class_axis_last(output: &Tensor, labels: &Tensor) -> Result<(Tensor, Tensor), tch::TchError> {
    Ok((class_logits(output)?, labels.f_to_kind(Kind::Int64)?.f_reshape([-1])?))
}

/// The number of correct argmax predictions (a scalar int64 tensor, on the output's device).
pub fn correct_predictions(output: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let fail = |e: tch::TchError| Error::torch("computing accuracy", e);
    let (logits, labels) = class_axis_last(output, labels).map_err(fail)?;
    logits.f_argmax(-1, false).and_then(|p| p.f_eq_tensor(&labels)).and_then(|c| c.f_sum(Kind::Int64)).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn logits() -> Tensor {
        Tensor::from_slice(&[1.0f32, -0.5, 2.0, 0.3, 0.0, -1.0]).reshape([2, 3])
    }

    /// Cross-entropy with label smoothing `e` is (1 - e) * NLL + e * mean over classes of -log p.
    #[test]
    fn classes_of_nc11_outputs_are_on_axis_1() {
        // [2, 3, 1, 1]: a caffe2-era classifier's output takes labels [2], like its [2, 3] form.
        let flat = logits();
        let nc11 = flat.reshape([2, 3, 1, 1]);
        let labels = Tensor::from_slice(&[2i64, 0]);
        assert_eq!(class_count(&nc11.size()), 3);
        assert_eq!(class_count(&[2, 5, 3]), 3);
        let ce = |o: &Tensor| Loss::CrossEntropy { label_smoothing: 0.0 }.compute(o, Some(&labels), None).unwrap().double_value(&[]);
        assert!((ce(&nc11) - ce(&flat)).abs() < 1e-7);
        assert_eq!(correct_predictions(&nc11, &labels).unwrap().int64_value(&[]), 2);
        let kd = |o: &Tensor, t: &Tensor| Loss::Distill { temperature: 2.0 }.compute(o, None, Some(t)).unwrap().double_value(&[]);
        let teacher = flat.flip([1]);
        assert!((kd(&nc11, &teacher.reshape([2, 3, 1, 1])) - kd(&flat, &teacher)).abs() < 1e-7);
    }

    #[test]
    fn label_smoothing_matches_its_definition() {
        let (x, y) = (logits(), Tensor::from_slice(&[2i64, 0]));
        let e = 0.1;
        let got = Loss::CrossEntropy { label_smoothing: e }.compute(&x, Some(&y), None).unwrap().double_value(&[]);
        let logp = x.to_kind(Kind::Double).log_softmax(-1, None);
        let nll = -(logp.double_value(&[0, 2]) + logp.double_value(&[1, 0])) / 2.0;
        let uniform = -logp.mean(Kind::Double).double_value(&[]);
        assert!((got - ((1.0 - e) * nll + e * uniform)).abs() < 1e-6, "{got}");
    }

    /// Distillation is T^2 * KL(teacher || student) at temperature T, averaged over samples, and 0 for a perfect student.
    #[test]
    fn distillation_is_scaled_kl_divergence() {
        let t = 2.0;
        let student = logits();
        let teacher = Tensor::from_slice(&[0.5f32, 0.5, 1.0, -0.3, 0.2, 0.1]).reshape([2, 3]);
        let loss = Loss::Distill { temperature: t };
        assert!(loss.compute(&teacher, None, Some(&teacher)).unwrap().double_value(&[]).abs() < 1e-7);
        let got = loss.compute(&student, None, Some(&teacher)).unwrap().double_value(&[]);
        let ls = (student.to_kind(Kind::Double) / t).log_softmax(-1, None);
        let lt = (teacher.to_kind(Kind::Double) / t).log_softmax(-1, None);
        let kl = (lt.exp() * (&lt - &ls)).sum(Kind::Double).double_value(&[]) / 2.0;
        assert!((got - t * t * kl).abs() < 1e-6, "{got} vs {}", t * t * kl);
        assert!(got > 1e-3);
    }

    #[test]
    fn accuracy_counts_argmax_hits() {
        let c = correct_predictions(&logits(), &Tensor::from_slice(&[2i64, 1])).unwrap();
        assert_eq!(c.int64_value(&[]), 1);
    }

    /// Reports name the settings as the command line does (`--loss`, `--optimizer`, `--schedule`).
    #[test]
    fn settings_print_as_command_line_names() {
        use crate::optim::OptimizerConfig;
        use crate::schedule::Decay;
        assert_eq!(Loss::parse("ce").unwrap().to_string(), "cross-entropy");
        assert_eq!(Loss::CrossEntropy { label_smoothing: 0.1 }.to_string(), "cross-entropy (label smoothing 0.1)");
        assert_eq!(Loss::parse("distill").unwrap().to_string(), "distill (temperature 1)");
        assert_eq!(OptimizerConfig::parse("sgd").unwrap().to_string(), "sgd (momentum 0.9, weight decay 0)");
        assert_eq!(OptimizerConfig::parse("adamw").unwrap().to_string(), "adamw (betas 0.9/0.999, eps 1e-8, weight decay 0.01)");
        assert_eq!(Decay::Cosine { min_lr: 0.0 }.to_string(), "cosine (to 0)");
        assert_eq!(Decay::Step { step_size: 100, gamma: 0.1 }.to_string(), "step (x0.1 every 100 steps)");
    }
}
