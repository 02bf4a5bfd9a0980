//! Second-order information through the executor: the gradient of the loss recorded
//! with its own graph (`create_graph`), and Hessian-vector products `H v` as the gradient
//! of `g . v` (Pearlmutter's double backpropagation). Memory is one extra graph (the
//! backward pass of the loss); no Hessian is ever formed.
//!
//! The model runs in [`Mode::Eval`] (BatchNorm running statistics, no Dropout): the
//! Hessian of the function the model computes at inference, as PyHessian and HAWQ
//! measure it. Operators whose backward libtorch cannot differentiate again are
//! reported by [`Executor::double_backward_gap`], naming the node.

use crate::data::Batch;
use crate::error::{Error, Result};
use crate::exec::{Executor, Mode};
use crate::loss::Loss;
use tch::Tensor;

/// The loss of one batch with its gradient graph kept, ready for Hessian-vector products
/// with respect to the executor's trainable parameters (in `exec.trainable()` order).
pub struct Curvature<'a> {
    exec: &'a Executor,
    inputs: Vec<Tensor>,
    params: Vec<Tensor>,
    /// Per parameter: the gradient (with its graph), or `None` when the loss does not depend on it.
    grads: Vec<Option<Tensor>>,
    loss: f64,
}

impl<'a> Curvature<'a> {
    /// Forward pass of `exec` on `batch` in eval mode, `loss` (the teacher, in eval mode
    /// and without gradients, gives the distillation targets), and its gradient with
    /// `create_graph`.
    pub fn new(exec: &'a Executor, teacher: Option<&Executor>, batch: &Batch, loss: Loss) -> Result<Curvature<'a>> {
        let batch = batch.to_device(exec.device());
        let params: Vec<Tensor> = exec.trainable().map(|p| p.tensor.shallow_clone()).collect();
        if params.is_empty() {
            return Err(Error::Config("the model has no trainable parameters: there is no Hessian to measure".into()));
        }
        let teacher_out = match teacher {
            Some(t) if matches!(loss, Loss::Distill { .. }) => tch::no_grad(|| t.forward(&batch.inputs, Mode::Eval))?.into_iter().next(),
            _ => None,
        };
        tch::with_grad(|| {
            let outputs = exec.forward(&batch.inputs, Mode::Eval)?;
            let output = outputs.first().ok_or_else(|| Error::Config("the model has no outputs".into()))?;
            let value = loss.compute(output, batch.labels.as_ref(), teacher_out.as_ref())?;
            let scalar = value.f_double_value(&[]).map_err(|e| Error::torch("reading the loss", e))?;
            if !scalar.is_finite() {
                return Err(Error::Config(format!("the loss is {scalar} at these weights: the Hessian is undefined")));
            }
            let grads = match Tensor::f_run_backward(&[&value], &params, true, true) {
                Ok(g) => g,
                Err(e) => return Err(diagnose(exec, &batch.inputs, "the gradient with its graph", e)),
            };
            let grads = grads.into_iter().map(|g| g.defined().then_some(g)).collect();
            Ok(Curvature { exec, inputs: batch.inputs, params, grads, loss: scalar })
        })
    }

    /// The loss value.
    pub fn loss(&self) -> f64 {
        self.loss
    }

    /// The parameters, in `exec.trainable()` order (shallow handles to the live tensors).
    pub fn params(&self) -> &[Tensor] {
        &self.params
    }

    /// The gradient (detached; zeros for parameters the loss does not depend on).
    pub fn gradient(&self) -> Vec<Tensor> {
        self.grads.iter().zip(&self.params).map(|(g, p)| g.as_ref().map_or_else(|| p.zeros_like(), Tensor::detach)).collect()
    }

    /// `H v`: one tensor per parameter, shaped like it. `v` holds one tensor per parameter
    /// (same shapes, on the executor's device). The graph is kept, so products can be
    /// taken again.
    pub fn hvp(&self, v: &[Tensor]) -> Result<Vec<Tensor>> {
        if v.len() != self.params.len() {
            return Err(Error::Config(format!("a direction of {} tensors for {} parameters", v.len(), self.params.len())));
        }
        for (k, (p, t)) in self.params.iter().zip(v).enumerate() {
            if p.size() != t.size() {
                return Err(Error::Config(format!("direction tensor {k} has shape {:?}, its parameter {:?}", t.size(), p.size())));
            }
        }
        tch::with_grad(|| {
            let mut dot: Option<Tensor> = None;
            let mut used = Vec::new();
            for (k, (g, t)) in self.grads.iter().zip(v).enumerate() {
                if let Some(g) = g.as_ref().filter(|g| g.requires_grad()) {
                    let term = (g * t.to_kind(g.kind())).sum(g.kind());
                    dot = Some(match dot {
                        Some(d) => d + term,
                        None => term,
                    });
                    used.push(k);
                }
            }
            let mut hv: Vec<Tensor> = self.params.iter().map(Tensor::zeros_like).collect();
            let Some(dot) = dot else {
                // The gradient is constant in the parameters: H = 0.
                return Ok(hv);
            };
            let inputs: Vec<&Tensor> = used.iter().map(|&k| &self.params[k]).collect();
            let products = match Tensor::f_run_backward(&[dot], &inputs, true, false) {
                Ok(p) => p,
                Err(e) => return Err(diagnose(self.exec, &self.inputs, "the Hessian-vector product", e)),
            };
            for (k, product) in used.into_iter().zip(products) {
                if product.defined() {
                    hv[k] = product.detach();
                }
            }
            Ok(hv)
        })
    }
}

/// The error of a failed second backward pass: the node libtorch cannot differentiate
/// twice when [`Executor::double_backward_gap`] finds one, else libtorch's message.
fn diagnose(exec: &Executor, inputs: &[Tensor], what: &str, e: tch::TchError) -> Error {
    match exec.double_backward_gap(inputs, Mode::Eval) {
        Ok(Some(gap)) => gap,
        _ => Error::torch(format!("computing {what}"), e),
    }
}
