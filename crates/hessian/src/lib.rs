//! Second-order information about a model's loss on libtorch, from Hessian-vector
//! products through the ONNX executor ([`oto_torch::hessian::Curvature`]):
//!
//! * [`hutchinson`]: Hutchinson's trace estimator `E[v^T H v]` with Rademacher `v`, for
//!   the whole model and for any set of [`Block`]s (parameter tensors, layers, pruning
//!   groups), with the standard error of each estimate and a stopping rule; its running
//!   mean of `v * Hv` is the Hessian diagonal estimate;
//! * [`top_eigenvalues`]: the k eigenvalues of largest magnitude by power iteration with
//!   deflation (the sharpness; SGD is linearly stable while `lambda_max <= 2 / lr`).
//!
//! The Hessian is that of the mean loss over the batches given to [`HessianOperator`].
#![warn(missing_docs)]

use oto_graph::{Analysis, Role};
use oto_onnx::rng::SplitMix64;
use oto_onnx::{node_label, Graph, Model};
use oto_torch::data::Batch;
use oto_torch::error::{Error, Result};
use oto_torch::exec::Executor;
use oto_torch::hessian::Curvature;
use oto_torch::loss::Loss;
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// `v -> H v` for the mean loss over a set of batches, with respect to the executor's
/// trainable parameters. With one batch the gradient graph is kept between products
/// (one extra graph of memory); with several, each product recomputes each batch's
/// gradient graph in turn (never more than one held at a time), and
/// [`HessianOperator::hvp_many`] shares each batch's graph among several directions.
pub struct HessianOperator<'a> {
    exec: &'a Executor,
    teacher: Option<&'a Executor>,
    batches: Vec<Batch>,
    loss: Loss,
    cached: Option<Curvature<'a>>,
    names: Vec<String>,
    products: usize,
    mean_loss: f64,
}

impl<'a> HessianOperator<'a> {
    /// The operator of the mean `loss` over `batches` (at least one) of `exec`'s model; the
    /// `teacher` gives the targets of a distillation loss.
    pub fn new(exec: &'a Executor, teacher: Option<&'a Executor>, batches: Vec<Batch>, loss: Loss) -> Result<HessianOperator<'a>> {
        if batches.is_empty() {
            return Err(Error::Config("the Hessian needs at least one batch of data".into()));
        }
        let names = exec.trainable().map(|p| p.name.clone()).collect();
        let mut op = HessianOperator { exec, teacher, batches, loss, cached: None, names, products: 0, mean_loss: 0.0 };
        if op.batches.len() == 1 {
            let c = Curvature::new(exec, teacher, &op.batches[0], loss)?;
            op.mean_loss = c.loss();
            op.cached = Some(c);
        } else {
            let total = op.samples();
            let mut sum = 0.0;
            for b in &op.batches {
                sum += Curvature::new(exec, teacher, b, loss)?.loss() * b.len() as f64;
            }
            op.mean_loss = sum / total;
        }
        Ok(op)
    }

    /// The parameter names, in the order of the tensors `hvp` takes and returns.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The parameters (shallow handles), in [`HessianOperator::names`] order.
    pub fn params(&self) -> Vec<Tensor> {
        self.exec.trainable().map(|p| p.tensor.shallow_clone()).collect()
    }

    /// The mean loss over the batches.
    pub fn loss(&self) -> f64 {
        self.mean_loss
    }

    /// Hessian-vector products taken so far.
    pub fn products(&self) -> usize {
        self.products
    }

    fn samples(&self) -> f64 {
        self.batches.iter().map(|b| b.len() as f64).sum::<f64>().max(1.0)
    }

    /// `H v` (one tensor per parameter).
    pub fn hvp(&mut self, v: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(self.hvp_many(&[v.iter().map(Tensor::shallow_clone).collect()])?.pop().unwrap_or_default())
    }

    /// `H v` for each direction of `vs`, equal to [`HessianOperator::hvp`] of each in turn.
    /// With several batches each batch's gradient graph is built once for all the
    /// directions (a forward and a backward pass per batch, then one more backward pass per
    /// direction) instead of once per direction; the products of all directions are held
    /// meanwhile (see [`HessianOperator::directions_per_pass`]).
    pub fn hvp_many(&mut self, vs: &[Vec<Tensor>]) -> Result<Vec<Vec<Tensor>>> {
        self.products += vs.len();
        if let Some(c) = &self.cached {
            return vs.iter().map(|v| c.hvp(v)).collect();
        }
        let total = self.samples();
        let mut sums: Vec<Option<Vec<Tensor>>> = (0..vs.len()).map(|_| None).collect();
        for b in &self.batches {
            let c = Curvature::new(self.exec, self.teacher, b, self.loss)?;
            let w = b.len() as f64 / total;
            for (v, sum) in vs.iter().zip(sums.iter_mut()) {
                let hv = c.hvp(v)?;
                *sum = Some(match sum.take() {
                    None => hv.iter().map(|t| t * w).collect(),
                    Some(s) => s.iter().zip(&hv).map(|(a, t)| a + t * w).collect(),
                });
            }
        }
        Ok(sums.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// How many directions [`HessianOperator::hvp_many`] should take at once: 1 with one
    /// batch (its graph is kept, nothing is gained), else as many as fit in
    /// [`DIRECTIONS_BYTES`] (a direction and its product, 4-byte floats), at most 16.
    pub fn directions_per_pass(&self) -> usize {
        if self.cached.is_some() {
            return 1;
        }
        let params: u64 = self.exec.trainable().map(|p| p.tensor.numel() as u64).sum();
        usize::try_from(DIRECTIONS_BYTES / params.max(1).saturating_mul(8)).unwrap_or(usize::MAX).clamp(1, 16)
    }
}

/// The memory [`HessianOperator::hvp_many`] may spend on the directions it takes at once
/// and their products, in bytes, as [`HessianOperator::directions_per_pass`] sizes them.
pub const DIRECTIONS_BYTES: u64 = 1 << 30;

/// Entries of one parameter in a [`Block`]: `(axis, indices)` along it, `None` for all of them.
pub type Slice = Option<(i64, Vec<i64>)>;

/// A named set of parameter entries: whole tensors, or slices along an axis.
#[derive(Debug, Clone)]
pub struct Block {
    /// The name (a tensor, a node, a group id).
    pub name: String,
    /// `(parameter index, slice)`; slice `None`: the whole tensor, else `(axis, indices)`.
    pub parts: Vec<(usize, Slice)>,
    /// How many parameter entries the block covers.
    pub params: u64,
}

impl Block {
    /// The sum of the block's entries of `values` (one tensor per parameter), given the
    /// whole-tensor sums `totals` (so that whole tensors are not summed again).
    fn sum(&self, values: &[Tensor], totals: &[f64]) -> f64 {
        self.parts
            .iter()
            .map(|(p, slice)| match slice {
                None => totals[*p],
                Some((axis, idx)) => {
                    let idx = Tensor::from_slice(idx).to_device(values[*p].device());
                    values[*p].index_select(*axis, &idx).sum(Kind::Double).double_value(&[])
                }
            })
            .sum()
    }
}

/// One block per parameter tensor.
pub fn tensor_blocks(op: &HessianOperator<'_>) -> Vec<Block> {
    op.params()
        .iter()
        .zip(op.names())
        .enumerate()
        .map(|(i, (t, n))| Block { name: n.clone(), parts: vec![(i, None)], params: t.numel() as u64 })
        .collect()
}

/// The Hutchinson trace of each weight tensor named in `weights` (e.g. the Conv, Gemm and
/// MatMul weights a quantizer allocates bits to), in that order, with its standard error
/// and parameter count: [`hutchinson`] over those tensors' blocks. The stopping rule is
/// that of `config` on the whole Hessian's trace. An error names a weight that is not a
/// trainable parameter of `op`'s model (or is named twice).
pub fn weight_traces(
    op: &mut HessianOperator<'_>,
    weights: &[String],
    config: &TraceConfig,
    on_sample: impl FnMut(usize),
) -> Result<Vec<TraceEstimate>> {
    let all = tensor_blocks(op);
    let mut blocks = Vec::with_capacity(weights.len());
    for (k, name) in weights.iter().enumerate() {
        if weights[..k].contains(name) {
            return Err(Error::Config(format!("weight '{name}' is named twice for Hessian traces")));
        }
        let block = all.iter().find(|b| &b.name == name).ok_or_else(|| {
            Error::Config(format!("weight '{name}' is not a trainable parameter of the model, so it has no Hessian trace"))
        })?;
        blocks.push(block.clone());
    }
    let mut h = hutchinson(op, &[&blocks], config, on_sample)?;
    Ok(h.blocks.pop().unwrap_or_default())
}

/// One block per layer: the parameters grouped by the node that first reads them (a Conv's
/// weight and bias, a Gemm's; a bias added by a separate Add node is a layer of its own),
/// named by that node (`node 'name' (Op)`), in graph order.
pub fn layer_blocks(op: &HessianOperator<'_>, model: &Model) -> Result<Vec<Block>> {
    let graph = Graph::new(model)?;
    let params = op.params();
    let index: HashMap<&str, usize> = op.names().iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let mut seen = vec![false; params.len()];
    let mut blocks = Vec::new();
    for (_, node) in graph.nodes() {
        let mut parts = Vec::new();
        for input in &node.input {
            if let Some(&p) = index.get(input.as_str()) {
                if !seen[p] {
                    seen[p] = true;
                    parts.push((p, None));
                }
            }
        }
        if !parts.is_empty() {
            let count = parts.iter().map(|(p, _)| params[*p].numel() as u64).sum();
            blocks.push(Block { name: node_label(node), parts, params: count });
        }
    }
    Ok(blocks)
}

/// One block per prunable group of `analysis`: the slices of its producer members (the
/// weights HESSO drives to zero) that are trainable parameters.
pub fn group_blocks(op: &HessianOperator<'_>, analysis: &Analysis) -> Vec<Block> {
    let params = op.params();
    let index: HashMap<&str, usize> = op.names().iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let mut blocks = Vec::new();
    for g in analysis.prunable_groups() {
        let mut parts = Vec::new();
        let mut count = 0u64;
        for m in g.members.iter().filter(|m| m.role == Role::Producer) {
            let Some(&p) = index.get(m.initializer.as_str()) else { continue };
            let size = params[p].size();
            let Some(&len) = size.get(m.axis) else { continue };
            let idx: Vec<i64> = (0..g.num_elements).flat_map(|e| m.map.indices(e)).map(|x| x as i64).filter(|&x| x < len).collect();
            let per_index = params[p].numel() as u64 / len.max(1) as u64;
            count += per_index * idx.len() as u64;
            parts.push((p, Some((m.axis as i64, idx))));
        }
        if !parts.is_empty() {
            blocks.push(Block { name: g.id.clone(), parts, params: count });
        }
    }
    blocks
}

/// The second-order (Optimal Brain Damage) saliency of every element of every prunable
/// group of `analysis`: `1/2 sum diag(H) w^2` over the element's producer weights, the loss
/// increase a quadratic model predicts for zeroing it when off-diagonal terms are ignored.
/// `diagonal` is a Hessian diagonal estimate (e.g. [`Hutchinson::diagonal`]) in
/// [`HessianOperator::names`] order. Returns `(group id, saliency per element)`.
pub fn obd_saliency(op: &HessianOperator<'_>, diagonal: &[Tensor], analysis: &Analysis) -> Result<Vec<(String, Vec<f64>)>> {
    let params = op.params();
    if diagonal.len() != params.len() {
        return Err(Error::Config(format!("a diagonal of {} tensors for {} parameters", diagonal.len(), params.len())));
    }
    let index: HashMap<&str, usize> = op.names().iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let _guard = tch::no_grad_guard();
    let weighted: Vec<Tensor> =
        diagonal.iter().zip(&params).map(|(d, w)| d.to_kind(Kind::Double) * w.to_kind(Kind::Double).square() * 0.5).collect();
    let mut out = Vec::new();
    for g in analysis.prunable_groups() {
        let mut saliency = vec![0.0; g.num_elements];
        for m in g.members.iter().filter(|m| m.role == Role::Producer) {
            let Some(&p) = index.get(m.initializer.as_str()) else { continue };
            let t = &weighted[p];
            let Some(&len) = t.size().get(m.axis) else { continue };
            // Sum over every axis but the member's: one value per index along it.
            let per_index = t.transpose(0, m.axis as i64).reshape([len, -1]).sum_dim_intlist(1, false, Kind::Double);
            let per_index = Vec::<f64>::try_from(per_index).map_err(|e| Error::torch("reading saliencies", e))?;
            for (e, s) in saliency.iter_mut().enumerate() {
                *s += m.map.indices(e).into_iter().filter_map(|i| per_index.get(i)).sum::<f64>();
            }
        }
        out.push((g.id.clone(), saliency));
    }
    Ok(out)
}

/// When Hutchinson's estimator stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceConfig {
    /// Stop once the standard error of the whole trace is at most this fraction of the
    /// trace (after `min_samples`): 0.05 is a 5% relative standard error.
    pub tolerance: f64,
    /// Samples always taken (at least 2, for a standard error).
    pub min_samples: usize,
    /// The sample cap.
    pub max_samples: usize,
    /// Seed of the Rademacher vectors.
    pub seed: u64,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig { tolerance: 0.05, min_samples: 10, max_samples: 200, seed: 0 }
    }
}

/// A trace estimate: the mean over the samples and its standard error.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TraceEstimate {
    /// What it is the trace of (a block's name, `total` for the whole Hessian).
    pub name: String,
    /// Parameter entries covered.
    pub params: u64,
    /// The estimated trace.
    pub trace: f64,
    /// Its standard error (sample standard deviation / sqrt(samples)).
    pub std_error: f64,
    /// Samples for a 5% relative standard error at the observed spread
    /// (`(sd / (0.05 |trace|))^2`; `None` when the trace is 0).
    pub samples_for_5pct: Option<f64>,
}

/// What [`hutchinson`] measured.
pub struct Hutchinson {
    /// Samples taken.
    pub samples: usize,
    /// Whether the tolerance was met before the cap.
    pub converged: bool,
    /// The trace of the whole Hessian.
    pub total: TraceEstimate,
    /// Per block set given, the estimate of each block.
    pub blocks: Vec<Vec<TraceEstimate>>,
    /// The Hessian diagonal estimate, `mean(v * Hv)`, one tensor per parameter.
    pub diagonal: Vec<Tensor>,
}

/// Running mean and variance (Welford).
#[derive(Clone, Copy, Default)]
struct Running {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Running {
    fn push(&mut self, x: f64) {
        self.n += 1.0;
        let d = x - self.mean;
        self.mean += d / self.n;
        self.m2 += d * (x - self.mean);
    }

    /// The sample standard deviation (NaN below 2 samples).
    fn sd(&self) -> f64 {
        if self.n > 1.0 {
            (self.m2 / (self.n - 1.0)).sqrt()
        } else {
            f64::NAN
        }
    }

    /// The standard error of the mean (NaN below 2 samples).
    fn std_error(&self) -> f64 {
        self.sd() / self.n.sqrt()
    }

    fn estimate(&self, name: &str, params: u64) -> TraceEstimate {
        let sd = self.sd();
        let samples = (self.mean != 0.0).then(|| (sd / (0.05 * self.mean.abs())).powi(2));
        TraceEstimate { name: name.to_string(), params, trace: self.mean, std_error: self.std_error(), samples_for_5pct: samples }
    }
}

/// A Rademacher vector (entries +-1 with probability 1/2) shaped like each parameter,
/// drawn from `rng`, one bit per entry. Each estimator has its own generator, seeded from
/// its settings: tch 0.26 passes no `Generator` to libtorch's random functions, so drawing
/// with libtorch would share its one global generator between threads, and concurrent
/// estimators (tests in parallel) would interleave their draws and lose their seeds.
fn rademacher(rng: &mut SplitMix64, params: &[Tensor]) -> Vec<Tensor> {
    params
        .iter()
        .map(|p| {
            let n = p.numel();
            let mut signs = Vec::with_capacity(n);
            let mut bits = 0u64;
            for i in 0..n {
                if i % 64 == 0 {
                    bits = rng.next_u64();
                }
                signs.push(if bits & 1 == 1 { 1f32 } else { -1f32 });
                bits >>= 1;
            }
            Tensor::from_slice(&signs).reshape(p.size()).to_kind(p.kind()).to_device(p.device())
        })
        .collect()
}

/// Hutchinson's estimator of the trace of `op`'s Hessian and of each block's diagonal sum,
/// `v^T H v` averaged over Rademacher vectors, until the standard error of the whole trace
/// is at most `config.tolerance` of it (or `max_samples`). A rule on the change of the
/// running mean would stop early by chance: one sample near the mean changes it little
/// whatever the spread. Calls
/// `on_sample(k)` after sample k (from 1).
///
/// The samples are those of one product at a time, in the same order (the same estimates);
/// over several batches the first `min_samples` products (all of them with a tolerance of 0)
/// are taken several directions per pass ([`HessianOperator::hvp_many`]): every batch's
/// graph is built once per pass, not once per product. No product is taken past the stop.
pub fn hutchinson(
    op: &mut HessianOperator<'_>,
    block_sets: &[&[Block]],
    config: &TraceConfig,
    mut on_sample: impl FnMut(usize),
) -> Result<Hutchinson> {
    if config.max_samples < 2 || config.min_samples > config.max_samples || config.tolerance.is_nan() || config.tolerance < 0.0 {
        return Err(Error::Config(format!(
            "Hutchinson settings: need 2 <= min samples <= max samples and a tolerance >= 0 (got {}, {}, {})",
            config.min_samples, config.max_samples, config.tolerance
        )));
    }
    let mut rng = SplitMix64::new(config.seed);
    let params = op.params();
    let total_params: u64 = params.iter().map(|p| p.numel() as u64).sum();
    let mut total = Running::default();
    let mut per_block: Vec<Vec<Running>> = block_sets.iter().map(|s| vec![Running::default(); s.len()]).collect();
    let mut diagonal: Vec<Tensor> = params.iter().map(|p| p.zeros_like().to_kind(Kind::Double)).collect();
    let mut samples = 0;
    let mut converged = false;
    let min_samples = config.min_samples.max(2);
    'sampling: while samples < config.max_samples {
        // Several directions per pass over the batches (each batch's graph built once for
        // them) while the minimum is not reached, or all the rest when the rule cannot stop
        // early (tolerance 0); then one per pass, so that no product is taken past the stop.
        let wanted = if samples < min_samples {
            min_samples - samples
        } else if config.tolerance == 0.0 {
            config.max_samples - samples
        } else {
            1
        };
        let round = wanted.min(config.max_samples - samples).min(op.directions_per_pass()).max(1);
        let vs: Vec<Vec<Tensor>> = (0..round).map(|_| rademacher(&mut rng, &params)).collect();
        let hvs = op.hvp_many(&vs)?;
        for (v, hv) in vs.iter().zip(&hvs) {
            let products: Vec<Tensor> = v.iter().zip(hv).map(|(a, b)| (a * b).to_kind(Kind::Double)).collect();
            let sums: Vec<f64> = products.iter().map(|t| t.sum(Kind::Double).double_value(&[])).collect();
            total.push(sums.iter().sum());
            for (set, running) in block_sets.iter().zip(per_block.iter_mut()) {
                for (block, r) in set.iter().zip(running.iter_mut()) {
                    r.push(block.sum(&products, &sums));
                }
            }
            for (d, p) in diagonal.iter_mut().zip(&products) {
                *d += p;
            }
            samples += 1;
            on_sample(samples);
            if samples >= min_samples && total.std_error() <= config.tolerance * total.mean.abs() {
                converged = true;
                break 'sampling;
            }
        }
    }
    let n = samples.max(1) as f64;
    let diagonal = diagonal.iter().zip(&params).map(|(d, p)| (d / n).to_kind(p.kind())).collect();
    let blocks = block_sets
        .iter()
        .zip(&per_block)
        .map(|(set, running)| set.iter().zip(running).map(|(b, r)| r.estimate(&b.name, b.params)).collect())
        .collect();
    Ok(Hutchinson { samples, converged, total: total.estimate("total", total_params), blocks, diagonal })
}

/// An eigenvalue found by power iteration.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Eigenvalue {
    /// The Rayleigh quotient at the last iterate.
    pub value: f64,
    /// Hessian-vector products it took.
    pub iterations: usize,
    /// Whether it changed by less than the tolerance (relative) before the iteration cap.
    pub converged: bool,
}

fn dot(a: &[Tensor], b: &[Tensor]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x.to_kind(Kind::Double) * y.to_kind(Kind::Double)).sum(Kind::Double).double_value(&[])).sum()
}

/// `a - c b`, tensor by tensor.
fn axpy(a: &[Tensor], c: f64, b: &[Tensor]) -> Vec<Tensor> {
    a.iter().zip(b).map(|(x, y)| x - y * c).collect()
}

fn normalized(v: &[Tensor]) -> Vec<Tensor> {
    let norm = dot(v, v).sqrt().max(f64::MIN_POSITIVE);
    v.iter().map(|t| t / norm).collect()
}

/// The `k` eigenvalues of `op`'s Hessian of largest magnitude, by power iteration with
/// deflation: each iterate is kept orthogonal to the eigenvectors found before; an
/// eigenvalue is done when its Rayleigh quotient changes by less than `tolerance` of itself
/// (or after `max_iterations` products). Each starts from a Rademacher vector drawn with
/// `seed` (see `rademacher`). In order found (descending magnitude).
pub fn top_eigenvalues(
    op: &mut HessianOperator<'_>,
    k: usize,
    max_iterations: usize,
    tolerance: f64,
    seed: u64,
) -> Result<Vec<Eigenvalue>> {
    let mut rng = SplitMix64::new(seed);
    let params = op.params();
    let mut found: Vec<Vec<Tensor>> = Vec::new();
    let mut values = Vec::new();
    for _ in 0..k {
        let orthogonal = |v: Vec<Tensor>, found: &[Vec<Tensor>]| found.iter().fold(v, |v, u| axpy(&v, dot(&v, u), u));
        let start = rademacher(&mut rng, &params);
        let mut v = normalized(&orthogonal(start, &found));
        let mut value = f64::NAN;
        let mut iterations = 0;
        let mut converged = false;
        while iterations < max_iterations {
            let hv = orthogonal(op.hvp(&v)?, &found);
            iterations += 1;
            let next = dot(&v, &hv);
            let done = value.is_finite() && (next - value).abs() <= tolerance * next.abs();
            value = next;
            if dot(&hv, &hv) == 0.0 {
                converged = true;
                break;
            }
            v = normalized(&hv);
            if done {
                converged = true;
                break;
            }
        }
        values.push(Eigenvalue { value, iterations, converged });
        found.push(v);
    }
    Ok(values)
}

/// One run of stochastic Lanczos quadrature: the Ritz values of the Lanczos tridiagonal
/// matrix started from a random unit vector `v` and their weights (squared first
/// components of its eigenvectors), a quadrature of the spectral density seen from `v`:
/// `v^T f(H) v ~ sum weights * f(nodes)`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Quadrature {
    /// Ritz values, ascending.
    pub nodes: Vec<f64>,
    /// Their weights (they sum to 1).
    pub weights: Vec<f64>,
}

impl Quadrature {
    /// `v^T H v` for the unit start vector, times the dimension: one sample of the trace.
    pub fn trace(&self, dimension: u64) -> f64 {
        dimension as f64 * self.nodes.iter().zip(&self.weights).map(|(n, w)| n * w).sum::<f64>()
    }
}

/// Stochastic Lanczos quadrature (Ghorbani et al. 2019; PyHessian's density): `runs` Lanczos
/// runs of `steps` Hessian-vector products each, from Rademacher start vectors, with full
/// reorthogonalization (so `steps` vectors of the parameters' size are kept during a run).
pub fn slq(op: &mut HessianOperator<'_>, runs: usize, steps: usize, seed: u64) -> Result<Vec<Quadrature>> {
    if runs == 0 || steps == 0 {
        return Err(Error::Config(format!("stochastic Lanczos quadrature needs runs >= 1 and steps >= 1 (got {runs}, {steps})")));
    }
    let mut rng = SplitMix64::new(seed);
    let params = op.params();
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut basis: Vec<Vec<Tensor>> = vec![normalized(&rademacher(&mut rng, &params))];
        let (mut alpha, mut beta) = (Vec::new(), Vec::new());
        for j in 0..steps {
            let q = &basis[j];
            let mut w = op.hvp(q)?;
            let a = dot(&w, q);
            alpha.push(a);
            w = axpy(&w, a, q);
            if j > 0 {
                w = axpy(&w, beta[j - 1], &basis[j - 1]);
            }
            // Full reorthogonalization (twice is enough in floating point).
            for _ in 0..2 {
                for u in &basis {
                    w = axpy(&w, dot(&w, u), u);
                }
            }
            let b = dot(&w, &w).sqrt();
            if j + 1 == steps || b <= 1e-10 * a.abs().max(1.0) {
                break;
            }
            beta.push(b);
            basis.push(w.iter().map(|t| t / b).collect());
        }
        let m = alpha.len() as i64;
        let t = Tensor::from_slice(&alpha).diag(0);
        let t = if m > 1 {
            let off = Tensor::from_slice(&beta[..(m - 1) as usize]);
            t + off.diag(1) + off.diag(-1)
        } else {
            t
        };
        let (values, vectors) = t.f_linalg_eigh("L").map_err(|e| Error::torch("eigenvalues of the Lanczos matrix", e))?;
        let nodes = Vec::<f64>::try_from(values).map_err(|e| Error::torch("reading Ritz values", e))?;
        let weights = Vec::<f64>::try_from(vectors.get(0).square()).map_err(|e| Error::torch("reading quadrature weights", e))?;
        out.push(Quadrature { nodes, weights });
    }
    Ok(out)
}
