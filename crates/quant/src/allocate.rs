//! Per-layer bit widths under a size budget.
//!
//! HAWQ-V2 (Dong et al. 2020) measures how much a layer's quantization perturbs the loss by
//! `Omega_i(b) = (Tr(H_i) / n_i) * ||Q_b(W_i) - W_i||^2`: the layer's average Hessian trace
//! (a second-order estimate of the loss curvature per weight) times the squared error of
//! quantizing its weights to `b` bits. [`allocate`] picks one bit width per layer so that
//! `sum_i Omega_i(b_i)` is minimal among all allocations whose bytes fit the budget, exactly:
//! the problem is a multiple-choice knapsack, solved by dynamic programming over the
//! layers on the Pareto frontier of (bytes, Omega) of the allocations of the layers seen so
//! far, with dominance pruning and a branch-and-bound cut (see [`allocate`]).
//!
//! The baselines of the ablation ([`uniform`], [`random`], [`by_param_count`]) choose by
//! other rules under the same budget, and are scored by the same Omega.

use oto_onnx::rng::SplitMix64;
use serde::Serialize;

/// One way to quantize a layer's weights.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BitOption {
    /// The bit width of the weights.
    pub bits: u8,
    /// The bytes the quantized weights take (values, scales, zero points).
    pub bytes: u64,
    /// `||Q_b(W) - W||^2`: the squared error of the quantized weights.
    pub squared_error: f64,
}

/// What the allocation knows about one layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerSensitivity {
    /// The layer (its weight initializer or node), for messages and reports.
    pub name: String,
    /// `n_i`: the number of weights.
    pub params: u64,
    /// `Tr(H_i)`: the Hessian trace of the loss with respect to the weights (Hutchinson).
    pub trace: f64,
    /// The bit widths it may get (at least one; bytes non-decreasing with the bits).
    pub options: Vec<BitOption>,
}

impl LayerSensitivity {
    /// `Tr(H_i) / n_i`: the average Hessian trace per weight.
    pub fn sensitivity(&self) -> f64 {
        self.trace / self.params as f64
    }
}

/// Bit widths chosen per layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Allocation {
    /// The bits of each layer, in the input order.
    pub bits: Vec<u8>,
    /// The index of the chosen option in each layer's `options`.
    pub choices: Vec<usize>,
    /// The bytes of all quantized weights.
    pub bytes: u64,
    /// `sum_i Omega_i(b_i)`.
    pub omega: f64,
}

/// Why no allocation was made (bad input: a command reports it and exits with code 2).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AllocateError {
    /// A layer without options.
    #[error("layer '{layer}': no bit-width options to choose from")]
    NoOptions {
        /// The layer.
        layer: String,
    },
    /// A layer with 0 weights (its average trace is undefined).
    #[error("layer '{layer}': 0 parameters, so its average Hessian trace Tr(H)/n is undefined")]
    NoParams {
        /// The layer.
        layer: String,
    },
    /// A NaN or infinite trace, error or Omega.
    #[error("layer '{layer}': {what} is {value}, not a finite number")]
    NonFinite {
        /// The layer.
        layer: String,
        /// Which value (`trace`, `squared error at 4 bits`, ...).
        what: String,
        /// The value.
        value: f64,
    },
    /// A negative squared error.
    #[error("layer '{layer}': the squared error at {bits} bits is negative ({value})")]
    NegativeError {
        /// The layer.
        layer: String,
        /// The bit width.
        bits: u8,
        /// The value.
        value: f64,
    },
    /// The same bit width offered twice.
    #[error("layer '{layer}': {bits} bits offered twice")]
    DuplicateBits {
        /// The layer.
        layer: String,
        /// The bit width.
        bits: u8,
    },
    /// More bits taking fewer bytes.
    #[error("layer '{layer}': {high} bits take fewer bytes ({high_bytes}) than {low} bits ({low_bytes})")]
    BytesNotMonotone {
        /// The layer.
        layer: String,
        /// The smaller bit width.
        low: u8,
        /// Its bytes.
        low_bytes: u64,
        /// The larger bit width.
        high: u8,
        /// Its bytes.
        high_bytes: u64,
    },
    /// Even the smallest allocation does not fit.
    #[error(
        "a size budget of {budget} bytes is below the smallest allocation, {minimum} bytes \
         (every layer at its fewest bits)"
    )]
    BudgetTooSmall {
        /// The budget.
        budget: u64,
        /// The bytes of the smallest allocation.
        minimum: u128,
    },
    /// [`uniform`]: no bit width common to all layers fits.
    #[error("no single bit width fits a size budget of {budget} bytes: {detail}")]
    NoUniformWidth {
        /// The budget.
        budget: u64,
        /// The widths common to all layers and their bytes.
        detail: String,
    },
    /// The exact solver's frontier outgrew its memory bound.
    #[error(
        "the exact allocation outgrew {states} (bytes, Omega) states at layer {layer} of {layers}: \
         too many layers with distinct sizes for the exact solver"
    )]
    TooLarge {
        /// The states stored.
        states: usize,
        /// The layer (1-based) where it stopped.
        layer: usize,
        /// The number of layers.
        layers: usize,
    },
}

/// The allocation rules compared in the ablation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Strategy {
    /// [`allocate`]: minimal HAWQ-V2 Omega.
    Hawq,
    /// [`uniform`]: the largest bit width every layer can take.
    Uniform,
    /// [`random`] with this seed.
    Random(u64),
    /// [`by_param_count`]: the largest layers get fewer bits.
    ParamCount,
}

/// The allocation of `layers` under `budget_bytes` by `strategy`.
pub fn allocate_with(strategy: Strategy, layers: &[LayerSensitivity], budget_bytes: u64) -> Result<Allocation, AllocateError> {
    match strategy {
        Strategy::Hawq => allocate(layers, budget_bytes),
        Strategy::Uniform => uniform(layers, budget_bytes),
        Strategy::Random(seed) => random(layers, budget_bytes, seed),
        Strategy::ParamCount => by_param_count(layers, budget_bytes),
    }
}

/// The checked problem: `omega[i][o]` of every option, and each layer's option indices by
/// ascending bits.
struct Problem<'a> {
    layers: &'a [LayerSensitivity],
    omega: Vec<Vec<f64>>,
    by_bits: Vec<Vec<usize>>,
}

impl<'a> Problem<'a> {
    fn new(layers: &'a [LayerSensitivity]) -> Result<Problem<'a>, AllocateError> {
        let mut omega = Vec::with_capacity(layers.len());
        let mut by_bits = Vec::with_capacity(layers.len());
        for l in layers {
            let layer = || l.name.clone();
            if l.options.is_empty() {
                return Err(AllocateError::NoOptions { layer: layer() });
            }
            if l.params == 0 {
                return Err(AllocateError::NoParams { layer: layer() });
            }
            if !l.trace.is_finite() {
                return Err(AllocateError::NonFinite { layer: layer(), what: "the Hessian trace".into(), value: l.trace });
            }
            let s = l.sensitivity();
            let mut row = Vec::with_capacity(l.options.len());
            for o in &l.options {
                let e = o.squared_error;
                if !e.is_finite() {
                    return Err(AllocateError::NonFinite {
                        layer: layer(),
                        what: format!("the squared error at {} bits", o.bits),
                        value: e,
                    });
                }
                if e < 0.0 {
                    return Err(AllocateError::NegativeError { layer: layer(), bits: o.bits, value: e });
                }
                let w = s * e;
                if !w.is_finite() {
                    return Err(AllocateError::NonFinite { layer: layer(), what: format!("Omega at {} bits", o.bits), value: w });
                }
                row.push(w);
            }
            let mut order: Vec<usize> = (0..l.options.len()).collect();
            order.sort_by_key(|&o| l.options[o].bits);
            for pair in order.windows(2) {
                let (a, b) = (&l.options[pair[0]], &l.options[pair[1]]);
                if a.bits == b.bits {
                    return Err(AllocateError::DuplicateBits { layer: layer(), bits: a.bits });
                }
                if b.bytes < a.bytes {
                    return Err(AllocateError::BytesNotMonotone {
                        layer: layer(),
                        low: a.bits,
                        low_bytes: a.bytes,
                        high: b.bits,
                        high_bytes: b.bytes,
                    });
                }
            }
            omega.push(row);
            by_bits.push(order);
        }
        Ok(Problem { layers, omega, by_bits })
    }

    fn bytes(&self, i: usize, o: usize) -> u128 {
        u128::from(self.layers[i].options[o].bytes)
    }

    /// The bytes of the smallest allocation (every layer at its fewest bits), checked
    /// against the budget.
    fn check_minimum(&self, budget: u64) -> Result<(), AllocateError> {
        let minimum: u128 = (0..self.layers.len()).map(|i| self.bytes(i, self.by_bits[i][0])).sum();
        if minimum > u128::from(budget) {
            return Err(AllocateError::BudgetTooSmall { budget, minimum });
        }
        Ok(())
    }

    fn total_bytes(&self, choices: &[usize]) -> u128 {
        choices.iter().enumerate().map(|(i, &o)| self.bytes(i, o)).sum()
    }

    fn finish(&self, choices: Vec<usize>) -> Allocation {
        let bits = choices.iter().enumerate().map(|(i, &o)| self.layers[i].options[o].bits).collect();
        // Callers return only allocations within a u64 budget.
        let bytes = u64::try_from(self.total_bytes(&choices)).unwrap_or(u64::MAX);
        let omega = choices.iter().enumerate().map(|(i, &o)| self.omega[i][o]).sum();
        Allocation { bits, choices, bytes, omega }
    }

    /// A feasible allocation for the branch-and-bound cut: every layer at its fewest bytes
    /// (lowest Omega among ties), then the upgrade of best Omega decrease per byte that
    /// still fits, repeated while one does.
    fn greedy(&self, budget: u128) -> Vec<usize> {
        let n = self.layers.len();
        let mut choices: Vec<usize> = (0..n)
            .map(|i| {
                let least = self.bytes(i, self.by_bits[i][0]);
                let mut best = self.by_bits[i][0];
                for &o in &self.by_bits[i] {
                    if self.bytes(i, o) == least && self.omega[i][o] < self.omega[i][best] {
                        best = o;
                    }
                }
                best
            })
            .collect();
        let mut used = self.total_bytes(&choices);
        loop {
            let mut best: Option<(usize, usize, f64)> = None;
            for (i, &c) in choices.iter().enumerate() {
                for (o, &w) in self.omega[i].iter().enumerate() {
                    let gain = self.omega[i][c] - w;
                    let (b, b0) = (self.bytes(i, o), self.bytes(i, c));
                    if gain <= 0.0 || used - b0 + b > budget {
                        continue;
                    }
                    let ratio = if b > b0 { gain / (b - b0) as f64 } else { f64::INFINITY };
                    if best.is_none_or(|(_, _, r)| ratio > r) {
                        best = Some((i, o, ratio));
                    }
                }
            }
            let Some((i, o, _)) = best else { break };
            used = used - self.bytes(i, choices[i]) + self.bytes(i, o);
            choices[i] = o;
        }
        choices
    }
}

/// Most (bytes, Omega) states the exact solver keeps over all layers (16 bytes each).
const MAX_STATES: usize = 1 << 25;

/// The allocation of minimal `Omega = sum_i (trace_i / params_i) * squared_error_i(b_i)`
/// among all whose bytes are at most `budget_bytes` (ties: fewest bytes), then made
/// monotone (see below).
///
/// Method: dynamic programming over the layers in input order. After layer `i` it keeps
/// the Pareto frontier of the partial allocations of layers `0..=i`: the (bytes, Omega)
/// pairs not dominated by another with no more bytes and no more Omega (the rest of an
/// allocation can be completed in the same ways from both, so a dominated one is never
/// needed), sorted by bytes with Omega strictly decreasing. Two cuts keep it small, both
/// exact: a partial allocation whose bytes plus the fewest bytes of the remaining layers
/// exceed the budget is dropped, and so is one whose Omega plus the least Omega of the
/// remaining layers exceeds the Omega of a feasible greedy allocation (best Omega decrease
/// per byte first). The best final state is traced back through the per-layer choices.
/// Complexity: `O(L * F * k * log(F k))` time and `O(L * F)` memory for `L` layers, `k`
/// options per layer and a frontier of at most `F <= min(k^L, distinct byte totals within
/// the budget)` states; with 2 to 4 options per layer F stays in the thousands for a few
/// hundred layers of real models (see the tests), and the solver reports
/// [`AllocateError::TooLarge`] rather than exhaust memory past 2^25 stored states.
///
/// Monotone ties: HAWQ-V2 expects a more sensitive layer not to get fewer bits. Layer `A`
/// dominates `B` when both offer the same bit widths, `trace/params` of A is at least B's,
/// A's squared error at each width is at least B's, and one of these is strict. While some
/// A has fewer bits than a B it dominates and exchanging their widths keeps the budget and
/// does not increase Omega (beyond rounding: the exchange's Omega change is at most 4 ulps
/// of the terms), the widths are exchanged. Each exchange removes at least one such
/// inversion and adds none, so this ends; the result is still optimal. So a dominated
/// layer gets more bits than the layer dominating it only when that is strictly better or
/// the exchange does not fit.
pub fn allocate(layers: &[LayerSensitivity], budget_bytes: u64) -> Result<Allocation, AllocateError> {
    let p = Problem::new(layers)?;
    p.check_minimum(budget_bytes)?;
    let n = layers.len();
    let budget = u128::from(budget_bytes);
    // Fewest bytes and least Omega of layers i.. (suffix sums).
    let mut rest_bytes = vec![0u128; n + 1];
    let mut rest_omega = vec![0f64; n + 1];
    for i in (0..n).rev() {
        rest_bytes[i] = rest_bytes[i + 1] + p.bytes(i, p.by_bits[i][0]);
        rest_omega[i] = rest_omega[i + 1] + p.omega[i].iter().copied().fold(f64::INFINITY, f64::min);
    }
    let greedy = p.greedy(budget);
    let bound_omega: f64 = greedy.iter().enumerate().map(|(i, &o)| p.omega[i][o]).sum();
    // Rounding slack of the cut: sums in another order may differ by a few ulps.
    let scale: f64 = p.omega.iter().map(|row| row.iter().fold(0.0f64, |m, w| m.max(w.abs()))).sum();
    let bound = bound_omega + 1e-12 * scale.max(f64::MIN_POSITIVE);

    let mut frontier: Vec<(u128, f64)> = vec![(0, 0.0)];
    // back[i][s] = (state of the frontier before layer i, option of layer i).
    let mut back: Vec<Vec<(u32, u32)>> = Vec::with_capacity(n);
    let mut stored = 0usize;
    let mut candidates: Vec<(u128, f64, u32, u32)> = Vec::new();
    for i in 0..n {
        candidates.clear();
        for (s, &(b, w)) in frontier.iter().enumerate() {
            for (o, &wo) in p.omega[i].iter().enumerate() {
                let nb = b + p.bytes(i, o);
                let nw = w + wo;
                if nb + rest_bytes[i + 1] > budget || nw + rest_omega[i + 1] > bound {
                    continue;
                }
                candidates.push((nb, nw, s as u32, o as u32));
            }
        }
        candidates.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)));
        let mut next = Vec::new();
        let mut steps = Vec::new();
        let mut best = f64::INFINITY;
        for &(b, w, s, o) in &candidates {
            if w < best {
                best = w;
                next.push((b, w));
                steps.push((s, o));
            }
        }
        stored += steps.len();
        if stored > MAX_STATES || next.len() > u32::MAX as usize {
            return Err(AllocateError::TooLarge { states: stored, layer: i + 1, layers: n });
        }
        frontier = next;
        back.push(steps);
    }
    // Omega strictly decreases along the frontier: the last state is the best. The greedy
    // allocation is feasible and within the bound, so some state survives.
    let mut choices = vec![0usize; n];
    if frontier.is_empty() {
        choices = greedy;
    } else {
        let mut s = frontier.len() - 1;
        for i in (0..n).rev() {
            let (parent, o) = back[i][s];
            choices[i] = o as usize;
            s = parent as usize;
        }
    }
    make_monotone(&p, &mut choices, budget);
    Ok(p.finish(choices))
}

/// Whether layer `a` dominates layer `b` (same widths, sensitivity and every squared error
/// at least b's, one strictly).
fn dominates(p: &Problem<'_>, a: usize, b: usize) -> bool {
    let (la, lb) = (&p.layers[a], &p.layers[b]);
    if la.options.len() != lb.options.len() {
        return false;
    }
    let (sa, sb) = (la.sensitivity(), lb.sensitivity());
    if sa < sb {
        return false;
    }
    let mut strict = sa > sb;
    for (&oa, &ob) in p.by_bits[a].iter().zip(&p.by_bits[b]) {
        let (x, y) = (&la.options[oa], &lb.options[ob]);
        if x.bits != y.bits || x.squared_error < y.squared_error {
            return false;
        }
        strict |= x.squared_error > y.squared_error;
    }
    strict
}

/// The exchanges of [`allocate`]'s monotone tie rule.
fn make_monotone(p: &Problem<'_>, choices: &mut [usize], budget: u128) {
    let n = choices.len();
    let level = |i: usize, o: usize| p.by_bits[i].iter().position(|&x| x == o).unwrap_or(0);
    let pairs: Vec<(usize, usize)> =
        (0..n).flat_map(|a| (0..n).map(move |b| (a, b))).filter(|&(a, b)| a != b && dominates(p, a, b)).collect();
    if pairs.is_empty() {
        return;
    }
    let mut used = p.total_bytes(choices);
    let mut changed = true;
    while changed {
        changed = false;
        for &(a, b) in &pairs {
            let (la, lb) = (level(a, choices[a]), level(b, choices[b]));
            if la >= lb {
                continue;
            }
            // Same widths in the same order: level lb of a is b's width, and vice versa.
            let (na, nb) = (p.by_bits[a][lb], p.by_bits[b][la]);
            let bytes = used - p.bytes(a, choices[a]) - p.bytes(b, choices[b]) + p.bytes(a, na) + p.bytes(b, nb);
            let before = p.omega[a][choices[a]] + p.omega[b][choices[b]];
            let after = p.omega[a][na] + p.omega[b][nb];
            let ulps = 4.0 * f64::EPSILON * (before.abs() + after.abs());
            if bytes <= budget && after - before <= ulps {
                choices[a] = na;
                choices[b] = nb;
                used = bytes;
                changed = true;
            }
        }
    }
}

/// Baseline: one bit width `w` for every layer, the largest whose total fits the budget.
/// A layer that does not offer `w` but offers wider widths takes the narrowest of those
/// (the caller drops a width that would store more bytes than a wider one with more error,
/// e.g. int4 in blocks longer than a short input axis: that layer is stored at the next
/// width, in fewer bytes); a width narrower than some layer's narrowest is not a candidate.
/// The bytes left over are not spent (no layer is raised above the common width): a
/// uniform allocation is what uniform-precision quantizers produce.
pub fn uniform(layers: &[LayerSensitivity], budget_bytes: u64) -> Result<Allocation, AllocateError> {
    let p = Problem::new(layers)?;
    if layers.is_empty() {
        return Ok(p.finish(Vec::new()));
    }
    let mut widths: Vec<u8> = layers.iter().flat_map(|l| l.options.iter().map(|o| o.bits)).collect();
    widths.sort_unstable();
    widths.dedup();
    let mut tried = Vec::new();
    for &w in widths.iter().rev() {
        // Per layer: the option at w, else the narrowest wider one; None: every option is narrower.
        let choices: Option<Vec<usize>> =
            (0..layers.len()).map(|i| p.by_bits[i].iter().copied().find(|&o| layers[i].options[o].bits >= w)).collect();
        let Some(choices) = choices else { continue };
        let bytes = p.total_bytes(&choices);
        if bytes <= u128::from(budget_bytes) {
            return Ok(p.finish(choices));
        }
        tried.push(format!("{w} bits take {bytes} bytes"));
    }
    let detail = if tried.is_empty() { "the layers have no bit width in common".to_string() } else { tried.join(", ") };
    Err(AllocateError::NoUniformWidth { budget: budget_bytes, detail })
}

/// Baseline: every layer at its fewest bits, then, while some layer can go up one width
/// within the budget, one of those chosen uniformly at random (seeded) goes up. The budget
/// is filled as far as single steps allow, like [`allocate`]'s, but blind to sensitivity.
pub fn random(layers: &[LayerSensitivity], budget_bytes: u64, seed: u64) -> Result<Allocation, AllocateError> {
    let p = Problem::new(layers)?;
    p.check_minimum(budget_bytes)?;
    let budget = u128::from(budget_bytes);
    let mut rng = SplitMix64::new(seed);
    let mut level = vec![0usize; layers.len()];
    let mut used: u128 = (0..layers.len()).map(|i| p.bytes(i, p.by_bits[i][0])).sum();
    loop {
        let up: Vec<usize> = (0..layers.len())
            .filter(|&i| {
                p.by_bits[i].get(level[i] + 1).is_some_and(|&o| used - p.bytes(i, p.by_bits[i][level[i]]) + p.bytes(i, o) <= budget)
            })
            .collect();
        if up.is_empty() {
            break;
        }
        let i = up[rng.below(up.len() as u64) as usize];
        used = used - p.bytes(i, p.by_bits[i][level[i]]) + p.bytes(i, p.by_bits[i][level[i] + 1]);
        level[i] += 1;
    }
    Ok(p.finish(level.iter().enumerate().map(|(i, &l)| p.by_bits[i][l]).collect()))
}

/// Baseline: every layer at its most bits, then, while over budget, the layer with the most
/// parameters among those not yet at their fewest bits (the first in input order among
/// equals) goes down one width. The largest layers thus get the fewest bits; the bytes the
/// last step frees beyond the budget are not spent again.
pub fn by_param_count(layers: &[LayerSensitivity], budget_bytes: u64) -> Result<Allocation, AllocateError> {
    let p = Problem::new(layers)?;
    p.check_minimum(budget_bytes)?;
    let budget = u128::from(budget_bytes);
    let mut level: Vec<usize> = p.by_bits.iter().map(|o| o.len() - 1).collect();
    let mut used: u128 = (0..layers.len()).map(|i| p.bytes(i, p.by_bits[i][level[i]])).sum();
    while used > budget {
        // check_minimum: some layer is above its fewest bits while over budget.
        let Some(i) = (0..layers.len()).filter(|&i| level[i] > 0).max_by_key(|&i| (layers[i].params, std::cmp::Reverse(i))) else {
            break;
        };
        used = used - p.bytes(i, p.by_bits[i][level[i]]) + p.bytes(i, p.by_bits[i][level[i] - 1]);
        level[i] -= 1;
    }
    Ok(p.finish(level.iter().enumerate().map(|(i, &l)| p.by_bits[i][l]).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random layer: 1 to 4 widths out of {2, 3, 4, 8}, bytes `params * bits / 8` plus a
    /// per-channel scale overhead, squared error `c * 4^-bits` with noise.
    fn random_layer(rng: &mut SplitMix64, name: usize, widths: usize) -> LayerSensitivity {
        let params = 16 + rng.below(5000);
        let all = [2u8, 3, 4, 8];
        let chosen = rng.choose(all.len(), widths);
        let c = 0.1 + rng.unit() * 10.0;
        let overhead = 4 * (1 + rng.below(8));
        let options = chosen
            .iter()
            .map(|&k| {
                let bits = all[k];
                BitOption {
                    bits,
                    bytes: params * u64::from(bits) / 8 + overhead,
                    squared_error: c * 4f64.powi(-i32::from(bits)) * (0.5 + rng.unit()),
                }
            })
            .collect();
        LayerSensitivity { name: format!("l{name}"), params, trace: rng.unit() * 100.0, options }
    }

    fn brute_force(layers: &[LayerSensitivity], budget: u64) -> Option<f64> {
        let mut best: Option<f64> = None;
        let mut idx = vec![0usize; layers.len()];
        loop {
            let bytes: u128 = idx.iter().enumerate().map(|(i, &o)| u128::from(layers[i].options[o].bytes)).sum();
            if bytes <= u128::from(budget) {
                let w: f64 = idx.iter().enumerate().map(|(i, &o)| layers[i].sensitivity() * layers[i].options[o].squared_error).sum();
                if best.is_none_or(|b| w < b) {
                    best = Some(w);
                }
            }
            let mut i = 0;
            loop {
                if i == layers.len() {
                    return best;
                }
                idx[i] += 1;
                if idx[i] < layers[i].options.len() {
                    break;
                }
                idx[i] = 0;
                i += 1;
            }
        }
    }

    fn check_consistent(layers: &[LayerSensitivity], a: &Allocation, budget: u64) {
        assert_eq!(a.choices.len(), layers.len());
        let bytes: u64 = a.choices.iter().enumerate().map(|(i, &o)| layers[i].options[o].bytes).sum();
        let omega: f64 = a.choices.iter().enumerate().map(|(i, &o)| layers[i].sensitivity() * layers[i].options[o].squared_error).sum();
        assert_eq!(a.bytes, bytes);
        assert!(bytes <= budget, "{bytes} bytes over the budget {budget}");
        assert!((a.omega - omega).abs() <= 1e-12 * omega.abs().max(1e-300));
        let bits: Vec<u8> = a.choices.iter().enumerate().map(|(i, &o)| layers[i].options[o].bits).collect();
        assert_eq!(a.bits, bits);
    }

    fn extremes(layers: &[LayerSensitivity]) -> (u64, u64) {
        let min = layers.iter().map(|l| l.options.iter().map(|o| o.bytes).min().unwrap()).sum();
        let max = layers.iter().map(|l| l.options.iter().map(|o| o.bytes).max().unwrap()).sum();
        (min, max)
    }

    #[test]
    fn optimal_omega_equals_brute_force() {
        let mut rng = SplitMix64::new(11);
        let mut cases = 0;
        for _ in 0..600 {
            let n = 1 + rng.below(7) as usize;
            let layers: Vec<_> = (0..n)
                .map(|i| {
                    let w = 1 + rng.below(4) as usize;
                    random_layer(&mut rng, i, w)
                })
                .collect();
            let (min, max) = extremes(&layers);
            // Budgets across the whole range, including both ends and just below the minimum.
            for budget in [min, max, min + rng.below(max - min + 1), min + rng.below(max - min + 1)] {
                let a = allocate(&layers, budget).unwrap();
                check_consistent(&layers, &a, budget);
                let best = brute_force(&layers, budget).unwrap();
                assert!(
                    (a.omega - best).abs() <= 1e-9 * best.abs(),
                    "Omega {} vs brute force {best} ({layers:?}, budget {budget})",
                    a.omega
                );
                cases += 1;
            }
            if min > 0 {
                assert_eq!(allocate(&layers, min - 1), Err(AllocateError::BudgetTooSmall { budget: min - 1, minimum: u128::from(min) }));
            }
        }
        assert_eq!(cases, 2400);
    }

    /// Negative traces (Hutchinson estimates of a non-convex loss can be) make Omega
    /// negative for a layer: still the exact minimum.
    #[test]
    fn negative_traces_are_still_solved_exactly() {
        let mut rng = SplitMix64::new(5);
        for _ in 0..200 {
            let n = 2 + rng.below(5) as usize;
            let mut layers: Vec<_> = (0..n)
                .map(|i| {
                    let w = 2 + rng.below(3) as usize;
                    random_layer(&mut rng, i, w)
                })
                .collect();
            for l in layers.iter_mut().step_by(2) {
                l.trace = -l.trace;
            }
            let (min, max) = extremes(&layers);
            let budget = min + rng.below(max - min + 1);
            let a = allocate(&layers, budget).unwrap();
            check_consistent(&layers, &a, budget);
            let best = brute_force(&layers, budget).unwrap();
            assert!((a.omega - best).abs() <= 1e-9 * best.abs().max(1e-12), "Omega {} vs brute force {best}", a.omega);
        }
    }

    /// Same-size layers with errors `c_i * 4^-b` and widths {4, 8}: the layer that
    /// dominates never has fewer bits unless the exchange is over budget or strictly worse
    /// (checked pair by pair on random cases with many dominations).
    #[test]
    fn dominating_layers_never_get_fewer_bits_unless_strictly_better() {
        let mut rng = SplitMix64::new(3);
        let mut inverted_but_justified = 0;
        let mut checked = 0;
        for _ in 0..300 {
            let n = 3 + rng.below(8) as usize;
            let layers: Vec<LayerSensitivity> = (0..n)
                .map(|i| {
                    // Two sizes only, so that exchanges often fit; coarse values, so that ties occur.
                    let params = [256u64, 1024][rng.below(2) as usize];
                    let c = (1 + rng.below(4)) as f64;
                    let trace = (1 + rng.below(4)) as f64 * params as f64;
                    let options = [4u8, 8]
                        .iter()
                        .map(|&bits| BitOption {
                            bits,
                            bytes: params * u64::from(bits) / 8,
                            squared_error: c * 4f64.powi(-i32::from(bits)) * (1.0 + f64::from(bits == 8) * rng.below(3) as f64),
                        })
                        .collect();
                    LayerSensitivity { name: format!("l{i}"), params, trace, options }
                })
                .collect();
            let (min, max) = extremes(&layers);
            let budget = min + rng.below(max - min + 1);
            let a = allocate(&layers, budget).unwrap();
            check_consistent(&layers, &a, budget);
            let best = brute_force(&layers, budget).unwrap();
            assert!((a.omega - best).abs() <= 1e-9 * best.abs());
            let p = Problem::new(&layers).unwrap();
            for x in 0..n {
                for y in 0..n {
                    if x == y || !dominates(&p, x, y) {
                        continue;
                    }
                    checked += 1;
                    if a.bits[x] >= a.bits[y] {
                        continue;
                    }
                    let mut swapped = a.choices.clone();
                    swapped.swap(x, y); // same widths in the same order: option indices exchange
                    let bytes: u64 = swapped.iter().enumerate().map(|(i, &o)| layers[i].options[o].bytes).sum();
                    let omega: f64 =
                        swapped.iter().enumerate().map(|(i, &o)| layers[i].sensitivity() * layers[i].options[o].squared_error).sum();
                    assert!(
                        bytes > budget || omega > a.omega,
                        "{x} dominates {y} but has fewer bits, and the exchange fits with Omega {omega} <= {}",
                        a.omega
                    );
                    inverted_but_justified += 1;
                }
            }
        }
        // The property was exercised, and the exception does occur (larger layers).
        assert!(checked > 1000, "{checked} dominating pairs");
        assert!(inverted_but_justified > 0);
    }

    /// A tie the exchange rule decides: A has twice B's sensitivity and at least B's errors,
    /// and the same Omega gain from 4 to 8 bits; one upgrade fits. A (listed second) gets it.
    #[test]
    fn ties_go_to_the_more_sensitive_layer() {
        let layer = |name: &str, trace: f64, e4: f64, e8: f64| LayerSensitivity {
            name: name.into(),
            params: 100,
            trace,
            options: vec![BitOption { bits: 4, bytes: 50, squared_error: e4 }, BitOption { bits: 8, bytes: 100, squared_error: e8 }],
        };
        let b = layer("b", 100.0, 1.5, 0.5); // s = 1, gain 1
        let a = layer("a", 200.0, 2.0, 1.5); // s = 2, gain 1
        for layers in [vec![b.clone(), a.clone()], vec![a.clone(), b.clone()]] {
            let got = allocate(&layers, 150).unwrap();
            let ia = layers.iter().position(|l| l.name == "a").unwrap();
            assert_eq!(got.bits[ia], 8, "{got:?}");
            assert_eq!(got.bits[1 - ia], 4);
            assert_eq!((got.bytes, got.omega), (150, 4.5));
        }
        // Strictly better the other way: B's gain is larger, B gets 8 bits although A dominates.
        let b = layer("b", 100.0, 1.9, 0.1); // gain 1.8
        let got = allocate(&[a, b], 150).unwrap();
        assert_eq!(got.bits, vec![4, 8]);
    }

    /// A few hundred layers of realistic sizes with 2 to 4 widths: exact (against the
    /// LP-style greedy, which it must never be worse than) and fast enough.
    #[test]
    fn hundreds_of_layers() {
        let mut rng = SplitMix64::new(1);
        for (n, widths) in [(300usize, 2usize), (200, 3), (120, 4)] {
            let layers: Vec<LayerSensitivity> = (0..n)
                .map(|i| {
                    let mut l = random_layer(&mut rng, i, widths);
                    // Real layers: 1k to 2.4M weights.
                    l.params = 1000 + rng.below(2_400_000);
                    for o in &mut l.options {
                        o.bytes = l.params * u64::from(o.bits) / 8 + 4 * (l.params / 512 + 1);
                    }
                    l
                })
                .collect();
            let (min, max) = extremes(&layers);
            let budget = min + (max - min) * 2 / 5;
            let started = std::time::Instant::now();
            let a = allocate(&layers, budget).unwrap();
            let elapsed = started.elapsed();
            check_consistent(&layers, &a, budget);
            let p = Problem::new(&layers).unwrap();
            let greedy = p.finish(p.greedy(u128::from(budget)));
            assert!(a.omega <= greedy.omega, "exact {} worse than greedy {}", a.omega, greedy.omega);
            println!("{n} layers x {widths} widths: {elapsed:?}, Omega {} (greedy {})", a.omega, greedy.omega);
        }
    }

    #[test]
    fn bad_input_is_reported() {
        let ok = |bits: u8, bytes: u64, e: f64| BitOption { bits, bytes, squared_error: e };
        let layer = |options: Vec<BitOption>| LayerSensitivity { name: "conv1.weight".into(), params: 10, trace: 1.0, options };
        let msg = |l: LayerSensitivity| allocate(&[l], 1000).unwrap_err().to_string();
        assert_eq!(msg(layer(vec![])), "layer 'conv1.weight': no bit-width options to choose from");
        assert!(msg(layer(vec![ok(4, 5, f64::NAN)])).contains("squared error at 4 bits is NaN"));
        assert!(msg(layer(vec![ok(4, 5, -1.0)])).contains("negative"));
        assert!(msg(layer(vec![ok(4, 5, 1.0), ok(4, 6, 1.0)])).contains("4 bits offered twice"));
        assert!(msg(layer(vec![ok(4, 9, 1.0), ok(8, 6, 1.0)])).contains("8 bits take fewer bytes (6) than 4 bits (9)"));
        assert!(msg(LayerSensitivity { trace: f64::INFINITY, ..layer(vec![ok(4, 5, 1.0)]) }).contains("Hessian trace is inf"));
        assert!(msg(LayerSensitivity { params: 0, ..layer(vec![ok(4, 5, 1.0)]) }).contains("0 parameters"));
        assert!(msg(LayerSensitivity { trace: 1e300, params: 1, ..layer(vec![ok(4, 5, 1e300)]) }).contains("Omega at 4 bits is inf"));
        let two = [layer(vec![ok(4, 50, 1.0), ok(8, 100, 0.1)]), layer(vec![ok(4, 50, 1.0), ok(8, 100, 0.1)])];
        assert_eq!(
            allocate(&two, 99).unwrap_err().to_string(),
            "a size budget of 99 bytes is below the smallest allocation, 100 bytes (every layer at its fewest bits)"
        );
        for s in [Strategy::Random(1), Strategy::ParamCount] {
            assert!(matches!(allocate_with(s, &two, 99), Err(AllocateError::BudgetTooSmall { .. })));
        }
        assert_eq!(
            uniform(&two, 99).unwrap_err().to_string(),
            "no single bit width fits a size budget of 99 bytes: 8 bits take 200 bytes, 4 bits take 100 bytes"
        );
        assert_eq!(allocate(&[], 0).unwrap().bits, Vec::<u8>::new());
    }

    #[test]
    fn baselines_follow_their_rules_within_the_budget() {
        let layer = |name: &str, params: u64, trace: f64| LayerSensitivity {
            name: name.into(),
            params,
            trace,
            options: vec![
                BitOption { bits: 8, bytes: params, squared_error: 1e-4 * params as f64 },
                BitOption { bits: 4, bytes: params / 2, squared_error: 0.03 * params as f64 },
            ],
        };
        let layers = vec![layer("small", 100, 500.0), layer("big", 1000, 10.0), layer("mid", 400, 40.0)];
        // Budget: all at 4 bits is 750, all at 8 is 1500.
        assert_eq!(uniform(&layers, 1499).unwrap().bits, vec![4, 4, 4]);
        assert_eq!(uniform(&layers, 1500).unwrap().bits, vec![8, 8, 8]);
        // A layer without 4 bits (dropped: it stored more than 8) is at 8 in the uniform 4-bit allocation.
        let mut no4 = layers.clone();
        no4[0].options.truncate(1);
        let a = uniform(&no4, 1499).unwrap();
        assert_eq!(a.bits, vec![8, 4, 4]);
        assert_eq!(a.bytes, 100 + 500 + 200);
        assert!(uniform(&no4, 799).is_err());
        // By parameter count: big goes down first, then mid.
        assert_eq!(by_param_count(&layers, 1200).unwrap().bits, vec![8, 4, 8]);
        assert_eq!(by_param_count(&layers, 900).unwrap().bits, vec![8, 4, 4]);
        // Random: within the budget, and no single step up still fits; seeds differ (at
        // 1250 bytes: either big alone goes up, or small and mid).
        let mut seen = std::collections::HashSet::new();
        for seed in 0..20 {
            let a = random(&layers, 1250, seed).unwrap();
            check_consistent(&layers, &a, 1250);
            for (i, l) in layers.iter().enumerate() {
                if a.bits[i] == 4 {
                    assert!(a.bytes - l.options[1].bytes + l.options[0].bytes > 1250, "seed {seed}: {a:?} could raise {}", l.name);
                }
            }
            assert_eq!(random(&layers, 1250, seed).unwrap(), a, "seeded");
            seen.insert(a.bits);
        }
        assert_eq!(seen, [vec![4, 8, 4], vec![8, 4, 8]].into_iter().collect(), "20 seeds");
        // HAWQ at the same budget is never worse than any baseline.
        for budget in [750, 900, 1000, 1200, 1500] {
            let h = allocate(&layers, budget).unwrap();
            for s in [Strategy::Uniform, Strategy::Random(7), Strategy::ParamCount] {
                let b = allocate_with(s, &layers, budget).unwrap();
                check_consistent(&layers, &b, budget);
                assert!(h.omega <= b.omega, "{s:?} at {budget}: {} < HAWQ {}", b.omega, h.omega);
            }
        }
    }
}
