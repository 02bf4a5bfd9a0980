//! Reduction rules: the other axes pass; a reduced tracked axis blocks, except where the
//! reduction adds its entries up and the pruned entries are zero (the mean of squares of
//! an RMSNorm over the residual stream).

use super::*;
use crate::analyze::count_parts;
use oto_onnx::op::{Reduce, ReduceKind};

/// Whether a reduction of entries that are zero is the reduction without them (sums of
/// the entries, their squares or magnitudes; a mean once its divisor is kept).
fn ignores_zeros(kind: ReduceKind) -> bool {
    use ReduceKind::*;
    match kind {
        Mean | Sum | SumSquare | L1 | L2 | LogSum => true,
        Max | Min | Prod | LogSumExp => false,
    }
}

impl Ctx<'_, '_> {
    pub(super) fn reduce(&mut self, node: &NodeProto, red: &Reduce) -> Result<(), AnalysisError> {
        let Some(t) = self.in_track(node, 0) else {
            return Ok(());
        };
        if red.kind == ReduceKind::Mean && self.written_norm(node, &t) {
            return Ok(());
        }
        let listed = red.axes.resolve(self.graph, node, Some(&self.shapes), "axes")?;
        let rank = t.len();
        let axes: Vec<usize> = match &listed {
            Some(a) if !a.is_empty() => a.iter().filter_map(|&x| norm_axis(x, rank)).collect(),
            _ if red.noop_with_empty_axes => {
                self.set(&node.output[0], t);
                return Ok(());
            }
            _ => (0..rank).collect(),
        };
        self.reduced_axes(node, red.kind, &t, &axes);
        let keeps = !matches!(red.kind, ReduceKind::LogSum | ReduceKind::LogSumExp);
        let mut out = Vec::new();
        for (i, a) in t.iter().enumerate() {
            if axes.contains(&i) {
                if red.keepdims {
                    out.push(AxisT::plain(Dim::Known(1)));
                }
            } else {
                let mut a = a.clone();
                if !keeps {
                    a.map_zero(&|_| false);
                }
                out.push(a);
            }
        }
        self.set(&node.output[0], out);
        Ok(())
    }

    /// The tracked axes among `axes` that `node` reduces over: kept where zero entries do
    /// not change the result (a mean records its divisor, the number of entries it
    /// averages, as a width constant: construction keeps dividing by the original count),
    /// blocked otherwise.
    fn reduced_axes(&mut self, node: &NodeProto, kind: ReduceKind, t: &ValueT, axes: &[usize]) {
        let tracked: Vec<usize> = axes.iter().copied().filter(|&i| t.get(i).is_some_and(AxisT::is_tracked)).collect();
        if tracked.is_empty() {
            return;
        }
        let why = if !ignores_zeros(kind) {
            Some(format!("{} reduces over these channels", node.op()))
        } else if tracked.iter().any(|&i| !t[i].all_zero()) {
            Some(format!(
                "{} reduces over these channels, which are not zero when their elements are pruned (centred values, as in \
                 LayerNorm: the mean moves)",
                node.op()
            ))
        } else {
            None
        };
        if let Some(why) = why {
            for &i in &tracked {
                let a = t[i].clone();
                self.block_axis_at(node, &a, &why);
            }
            return;
        }
        if kind != ReduceKind::Mean {
            return;
        }
        self.mean_divisor(node, t, axes);
    }

    /// Records the divisor of a mean of `node` over `axes` of a value tracked as `t` (a
    /// ReduceMean, RMSNormalization's mean of squares): every averaged position, of which
    /// each element takes its share with it. Blocks the tracked axes when a size is unknown.
    pub(super) fn mean_divisor(&mut self, node: &NodeProto, t: &ValueT, axes: &[usize]) {
        let tracked: Vec<usize> = axes.iter().copied().filter(|&i| t.get(i).is_some_and(AxisT::is_tracked)).collect();
        let dims = self.dims(&node.input[0]).unwrap_or_default();
        let sizes: Option<Vec<usize>> =
            axes.iter().map(|&i| dims.get(i).and_then(Dim::known).and_then(|s| usize::try_from(s).ok())).collect();
        let Some(sizes) = sizes else {
            for &i in &tracked {
                let a = t[i].clone();
                self.block_axis_at(node, &a, "averages over an axis of unknown size");
            }
            return;
        };
        let product = |skip: Option<usize>| {
            sizes.iter().enumerate().filter(|(k, _)| Some(*k) != skip).try_fold(1usize, |acc, (_, &s)| acc.checked_mul(s))
        };
        let Some(count) = product(None) else {
            for &i in &tracked {
                let a = t[i].clone();
                self.block_axis_at(node, &a, "averages over more entries than oto can count");
            }
            return;
        };
        let mut parts = Vec::new();
        for (j, &i) in axes.iter().enumerate() {
            if t[i].is_tracked() {
                let others = product(Some(j)).unwrap_or(count);
                parts.extend(count_parts(&t[i]).into_iter().map(|p| p.times(others)));
            }
        }
        let location = ShapeLocation::MeanDivisor { value: node.output[0].clone(), count: count as u64 };
        let user = node.name.clone().unwrap_or_default();
        self.spaces.shape_ref(RefAt::Const(location, false), 0, &user, parts);
    }
}
