//! Normalizations: `BatchNormalization` (the channel parameters checked against the input)
//! and `LayerNormalization` (its statistics outputs). The other normalizations keep the
//! input's shape (`elementwise.rs`, `same_shape`). Not counted in MACs.

use super::ReduceKind;
use crate::error::Result;
use crate::graph::{Graph, NodeExt};
use crate::ops;
use crate::proto::NodeProto;
use crate::shape::*;
use crate::tensor::DType;

/// `LayerNormalization` or `RMSNormalization`: normalizes over the axes from `axis` on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerNorm {
    /// The first normalized axis (possibly negative; default -1).
    pub axis: i64,
    /// Added to the variance (default 1e-5).
    pub epsilon: f32,
    /// The element type of the statistics (an ONNX type code; default 1, float32).
    pub stash_type: i64,
}

impl LayerNorm {
    pub(crate) fn parse(graph: &Graph<'_>, node: &NodeProto) -> Result<LayerNorm> {
        let attr = |r| ops::attr_result(graph, node, r);
        Ok(LayerNorm {
            axis: attr(node.attr_int_or("axis", -1))?,
            epsilon: ops::attr_result(graph, node, node.attr_float_or("epsilon", 1e-5))?,
            stash_type: attr(node.attr_int_or("stash_type", 1))?,
        })
    }
}

/// Which of the softmax family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftmaxKind {
    /// `Softmax`.
    Softmax,
    /// `LogSoftmax`.
    LogSoftmax,
    /// `Hardmax`.
    Hardmax,
}

/// `Softmax`, `LogSoftmax` or `Hardmax`, normalized across opsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Softmax {
    /// Which operator.
    pub kind: SoftmaxKind,
    /// The axis as written (possibly negative); the default is 1 before opset 13, -1 from 13.
    pub axis: i64,
    /// Before opset 13 the input is coerced to 2-D at `axis`: the operator normalizes over
    /// every axis from `axis` on; from 13, over `axis` alone.
    pub coerce_2d: bool,
}

impl Softmax {
    pub(crate) fn parse(graph: &Graph<'_>, node: &NodeProto, kind: SoftmaxKind) -> Result<Softmax> {
        let coerce_2d = ops::node_opset(graph, node) < 13;
        let axis = ops::attr_result(graph, node, node.attr_int_or("axis", if coerce_2d { 1 } else { -1 }))?;
        Ok(Softmax { kind, axis, coerce_2d })
    }
}

impl Infer<'_, '_> {
    pub(crate) fn batch_norm(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        if x.len() < 2 {
            return Err(self.fail(node, format!("input has rank {}, expected at least 2", x.len())));
        }
        let c = x[1].clone();
        for k in 1..5 {
            if let Some(s) = ops::input(node, k).and_then(|n| self.out.shape(n)) {
                if s.len() != 1 || s[0].known().zip(c.known()).is_some_and(|(a, b)| a != b) {
                    return Err(self.fail(node, format!("input {k} has shape {}, expected [{c}] (the channels)", fmt_shape(s))));
                }
            }
        }
        let dt = self.dtype(node, 0);
        let mut outs = vec![vt(dt, x)];
        for _ in 1..node.output.len() {
            outs.push(vt(self.dtype(node, 3), vec![c.clone()]));
        }
        Ok(outs)
    }

    pub(crate) fn layer_norm(&mut self, node: &NodeProto, l: &LayerNorm) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        let a = self.axis(node, l.axis, x.len())?;
        let stash = i32::try_from(l.stash_type).ok().and_then(DType::from_onnx).or(Some(DType::F32));
        let mut stat = x[..a].to_vec();
        stat.resize(x.len(), Dim::Known(1));
        Ok(vec![vt(self.dtype(node, 0), x), vt(stash, stat.clone()), vt(stash, stat)])
    }
}

/// A layer normalization written out (what exporters write before opset 17), in one of
/// three forms, from `m = ReduceMean(x)` (or a `GlobalAveragePool` over the axes from 2
/// on) and `d = x - m` over the same axes:
///
/// * the division form (the TorchScript exporter, without the layer's scale and bias,
///   which follow): `n = d / Sqrt(ReduceMean(d * d) + eps)`, the square a `Pow(d, 2)` or
///   `Mul(d, d)`, the division a `Div` or a `Mul` by the `Reciprocal`, or by the
///   reciprocal times the scale (`d * (r * scale)`: TensorFlow's, the bias following);
/// * the batch-normalization form (TensorFlow's `tf.nn.batch_normalization` after
///   `tf.nn.moments`, as tf2onnx converts it): `inv = Reciprocal(Sqrt(ReduceMean(d * d) +
///   eps)) * scale`, `n = x * inv + (bias - m * inv)`, the scale and the bias (its
///   `Sub`, or a `Neg` without bias) optional; or `n = x * inv + (-m * inv + bias)` (Keras
///   3's export), the centring reading the mean through a `Reshape` to its own shape (a
///   `Transpose` tf2onnx rewrote);
/// * the moments form (Keras's fused layer normalization, as tf2onnx converts it): `v =
///   ReduceSumSquare(d) / count`, `n = BatchNormalization(x, ..., Squeeze(m), v)` over the
///   input reshaped to `[1, rows, C, 1]` over the rows as channels (the count a constant, or
///   computed from `Shape(x)` alone: padded, it is the full width's).
///
/// In the first two, `d` may be cast to a wider float first (a float16 layer's statistics
/// in double), and in the division form transposed (`perm`). Every intermediate value is
/// read only inside the pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenLayerNorm {
    /// The normalized input.
    pub x: String,
    /// The reduced axes (as written: possibly negative).
    pub axes: Vec<i64>,
    /// Node indices: the first `ReduceMean`, the centring `Sub`, and the last node
    /// (whose output is the normalized value).
    pub mean: usize,
    /// See `mean`.
    pub center: usize,
    /// See `mean`.
    pub end: usize,
    /// Every node of the pattern, `mean` to `end`.
    pub nodes: Vec<usize>,
    /// The nodes of the pattern that read `x` (the mean, the centring, and in the
    /// batch-normalization form the product `x * inv`).
    pub x_readers: Vec<usize>,
    /// The scale and bias inside the pattern (the batch-normalization form's; the scale
    /// of the division form `d * (r * scale)`; `None` where they follow it).
    pub scale: Option<String>,
    /// See `scale`.
    pub bias: Option<String>,
    /// Where the pattern transposes the centred value (the division form): axis `j` of
    /// the result is axis `perm[j]` of `x`.
    pub perm: Option<Vec<usize>>,
}

impl WrittenLayerNorm {
    /// The pattern starting at node `mean`, if it is one.
    pub fn at_mean(graph: &Graph<'_>, folded: Option<&Shapes>, mean: usize) -> Option<WrittenLayerNorm> {
        let node = graph.proto.node.get(mean)?;
        let axes = mean_axes(graph, folded, node)?;
        let x = node.input.first()?.clone();
        // The first output of a node (a malformed node may have none).
        let out = |n: &NodeProto| -> Option<String> { n.output.first().cloned() };
        let readers = |value: &str| -> Vec<usize> {
            let mut r: Vec<usize> = graph.consumers(value).iter().map(|u| u.node).collect();
            r.sort_unstable();
            r.dedup();
            r
        };
        let only_reader = |value: &str| -> Option<(usize, &NodeProto)> {
            match graph.consumers(value) {
                [u] => Some((u.node, &graph.proto.node[u.node])),
                _ => None,
            }
        };
        // The other input of a two-input node reading `value`.
        let other = |n: &NodeProto, value: &str| -> Option<String> {
            match n.input.as_slice() {
                [a, b] if a == value => Some(b.clone()),
                [a, b] if b == value => Some(a.clone()),
                _ => None,
            }
        };
        let mean_out = out(node)?;
        let mean_readers = readers(&mean_out);
        // The mean may reach the centring through a Reshape to its own shape (a layout
        // change tf2onnx rewrote as a Reshape: Keras's channels-last layer norm).
        let same_shape = |a: &str, b: &str| folded.and_then(|s| Some(s.shape(a)? == s.shape(b)?)).unwrap_or(false);
        let viewed = mean_readers.iter().copied().find(|&r| {
            let n = &graph.proto.node[r];
            n.op() == "Reshape"
                && is_default(n)
                && n.output.first().is_some_and(|o| same_shape(o, &mean_out) && graph.consumers(o).len() == 1)
        });
        let centred_mean = match viewed {
            Some(r) => out(&graph.proto.node[r])?,
            None => mean_out.clone(),
        };
        let center = *readers(&centred_mean)
            .iter()
            .find(|&&r| graph.proto.node[r].op() == "Sub" && graph.proto.node[r].input.first() == Some(&x))?;
        let sub = &graph.proto.node[center];
        if !is_default(sub) || sub.input.as_slice() != [x.clone(), centred_mean.clone()] {
            return None;
        }
        // `-m`, read by `-m * inv` (Keras 3's `x * inv + (-m * inv + bias)`).
        let negated = mean_readers.iter().copied().find(|&r| graph.proto.node[r].op() == "Neg" && is_default(&graph.proto.node[r]));
        let mut d = sub.output.first()?.clone();
        // The pattern goes on past a cast of `d` to a wider float (a float16 layer's
        // statistics, as the TorchScript exporter writes them: in double) and past a
        // `Transpose` of `d` (onnxruntime's transpose optimizer moves a channels-first
        // layer norm's layout change there: ConvNeXt's); the rest reads the new `d`.
        let (mut widened, mut transposed, mut perm) = (None, None, None);
        for _ in 0..2 {
            let next = readers(&d);
            let [k] = next.as_slice() else { break };
            let n = &graph.proto.node[*k];
            if widened.is_none() && is_float_cast(n) {
                widened = Some(*k);
            } else if transposed.is_none() && n.op() == "Transpose" && is_default(n) {
                let p: Vec<usize> = n.attr_ints("perm").ok().flatten()?.iter().map(|&a| usize::try_from(a).ok()).collect::<Option<_>>()?;
                let mut sorted = p.clone();
                sorted.sort_unstable();
                if sorted.iter().enumerate().any(|(i, &a)| i != a) {
                    return None;
                }
                transposed = Some(*k);
                perm = Some(p);
            } else {
                break;
            }
            d = out(n)?;
        }
        let d = &d;
        let is_square = |n: &NodeProto| match n.op() {
            "Mul" => n.input.len() == 2 && n.input[0] == *d && n.input[1] == *d,
            "Pow" => {
                n.input.first() == Some(d)
                    && n.input.get(1).is_some_and(|e| ops::constant_floats(graph, folded, e).ok().flatten().is_some_and(|v| v == [2.0]))
            }
            _ => false,
        };
        // The readers of `d`: the square, and in the division form the division.
        let d_readers = readers(d);
        if let [k] = d_readers.as_slice() {
            let bare = widened.is_none() && perm.is_none();
            if bare && reduce_axes(graph, folded, &graph.proto.node[*k], ReduceKind::SumSquare).is_some_and(|(a, _)| a == axes) {
                return moments_batch_norm(graph, x, axes, mean, center, *k);
            }
        }
        let (square, divide) = match d_readers.as_slice() {
            [a, b] if is_square(&graph.proto.node[*a]) && !is_square(&graph.proto.node[*b]) => (*a, Some(*b)),
            [a, b] if is_square(&graph.proto.node[*b]) && !is_square(&graph.proto.node[*a]) => (*b, Some(*a)),
            [a] if is_square(&graph.proto.node[*a]) => (*a, None),
            _ => return None,
        };
        let squared = out(&graph.proto.node[square])?;
        let (variance, var) = only_reader(&squared)?;
        // The variance's axes are the mean's (through the transpose).
        let same_axes = match (&perm, mean_axes(graph, folded, var)) {
            (None, Some(a)) => a == axes,
            (Some(p), Some(a)) => {
                let rank = i64::try_from(p.len()).ok()?;
                let at = |a: i64| usize::try_from(if a < 0 { a + rank } else { a }).ok().filter(|&a| a < p.len());
                let mut through: Vec<usize> = a.iter().map(|&a| at(a).map(|j| p[j])).collect::<Option<_>>()?;
                let mut own: Vec<usize> = axes.iter().map(|&a| at(a)).collect::<Option<_>>()?;
                through.sort_unstable();
                own.sort_unstable();
                through == own
            }
            (_, None) => false,
        };
        if !same_axes || var.input.first() != Some(&squared) {
            return None;
        }
        let v = out(var)?;
        let (add, plus) = only_reader(&v)?;
        let eps = plus.input.iter().find(|i| **i != v)?;
        if plus.op() != "Add" || plus.input.len() != 2 || ops::constant_floats(graph, folded, eps).ok().flatten().is_none() {
            return None;
        }
        let (root, sqrt) = only_reader(&out(plus)?)?;
        if sqrt.op() != "Sqrt" || [sub, plus, sqrt].iter().any(|n| !is_default(n)) {
            return None;
        }
        let mut nodes = vec![mean, center];
        nodes.extend(viewed.into_iter().chain(widened).chain(transposed));
        nodes.extend([square, variance, add, root]);
        let std = out(sqrt)?;
        let (after, next) = only_reader(&std)?;
        let Some(divide) = divide else {
            // The batch-normalization form: the mean is read by the centring and by `m * inv`.
            if next.op() != "Reciprocal" || !is_default(next) || mean_readers.len() != 2 || perm.is_some() {
                return None;
            }
            nodes.push(after);
            let r = out(next)?;
            // `inv`: the reciprocal times the scale, or the reciprocal itself.
            let scaled = match readers(&r).as_slice() {
                [k] if graph.proto.node[*k].op() == "Mul" => Some(*k),
                _ => None,
            };
            let (inv, scale) = match scaled {
                Some(k) => {
                    let n = &graph.proto.node[k];
                    let s = other(n, &r)?;
                    // (`x * r` and `m * r` are the two products of the scale-less form.)
                    if s == x || s == mean_out || !is_default(n) {
                        (r, None)
                    } else {
                        nodes.push(k);
                        (out(n)?, Some(s))
                    }
                }
                None => (r, None),
            };
            let products = readers(&inv);
            let [p, q] = products.as_slice() else { return None };
            // The mean's side of the products: `m * inv`, or `-m * inv`.
            let neg_out = negated.and_then(|k| out(&graph.proto.node[k]));
            let is_mean = |v: &String| *v == mean_out || neg_out.as_ref() == Some(v);
            let (xi, mi) = match (other(&graph.proto.node[*p], &inv), other(&graph.proto.node[*q], &inv)) {
                (Some(a), Some(b)) if a == x && is_mean(&b) => (*p, *q),
                (Some(a), Some(b)) if is_mean(&a) && b == x => (*q, *p),
                _ => return None,
            };
            // (`m * inv` reads the mean; `-m` must be read by `-m * inv` alone.)
            let through_neg = other(&graph.proto.node[mi], &inv).as_ref() != Some(&mean_out);
            let neg_read_once = !through_neg || neg_out.as_deref().and_then(only_reader).is_some_and(|(r, _)| r == mi);
            if [xi, mi].iter().any(|&k| graph.proto.node[k].op() != "Mul" || !is_default(&graph.proto.node[k])) || !neg_read_once {
                return None;
            }
            // `bias - m * inv`, `-(m * inv)`, or `-m * inv + bias`.
            let (shift, sn) = only_reader(&out(&graph.proto.node[mi])?)?;
            let m_inv = out(&graph.proto.node[mi])?;
            let bias = match sn.op() {
                "Sub" if !through_neg && sn.input.len() == 2 && sn.input[1] == m_inv && sn.input[0] != m_inv => Some(sn.input[0].clone()),
                "Neg" if !through_neg => None,
                "Add" if through_neg => Some(other(sn, &m_inv).filter(|b| *b != m_inv)?),
                _ => return None,
            };
            nodes.extend(negated.filter(|_| through_neg));
            let (end, last) = only_reader(&out(sn)?)?;
            let x_inv = out(&graph.proto.node[xi])?;
            if !is_default(sn)
                || last.op() != "Add"
                || other(last, &out(sn)?) != Some(x_inv.clone())
                || only_reader(&x_inv)?.0 != end
                || !is_default(last)
            {
                return None;
            }
            out(last)?;
            nodes.extend([xi, mi, shift, end]);
            return Some(WrittenLayerNorm {
                x,
                axes,
                mean,
                center,
                end,
                nodes,
                x_readers: vec![mean, center, xi],
                scale,
                bias,
                perm: None,
            });
        };
        if mean_readers.len() != 1 {
            return None;
        }
        let div = &graph.proto.node[divide];
        let mut scale = None;
        let ends = match next.op() {
            "Div" => after == divide && div.input.as_slice() == [d.clone(), std],
            "Reciprocal" => {
                nodes.push(after);
                let mut r = out(next)?;
                // `d * (r * scale)`, as TensorFlow rewrites `d * rsqrt(v + eps) * scale`.
                if let Some((k, n)) = only_reader(&r).filter(|(k, n)| *k != divide && n.op() == "Mul" && is_default(n)) {
                    scale = Some(other(n, &r)?);
                    nodes.push(k);
                    r = out(n)?;
                }
                let by = (div.input.len() == 2).then(|| if div.input[0] == *d { &div.input[1] } else { &div.input[0] });
                only_reader(&r).is_some_and(|(m, _)| m == divide) && div.op() == "Mul" && by == Some(&r)
            }
            _ => false,
        };
        if !ends || out(div).is_none() || !is_default(div) {
            return None;
        }
        nodes.push(divide);
        Some(WrittenLayerNorm { x, axes, mean, center, end: divide, nodes, x_readers: vec![mean, center], scale, bias: None, perm })
    }

    /// The pattern whose last node writes `value`, if it is one: tried from every mean
    /// of a value read up to three nodes before the last one (`x` is read by `d = x - m`
    /// before the division form's end, or its cast; by `x * inv` before the other's).
    pub fn ending_at(graph: &Graph<'_>, folded: Option<&Shapes>, value: &str) -> Option<WrittenLayerNorm> {
        let (_, end) = graph.producer_node(value)?;
        // The values up to three nodes before the end (`x -> Sub -> Cast -> Div`).
        let mut candidates: Vec<&str> = end.input.iter().map(String::as_str).collect();
        let mut from = 0;
        for _ in 0..2 {
            let upto = candidates.len();
            for k in from..upto {
                if let Some((_, n)) = graph.producer_node(candidates[k]) {
                    candidates.extend(n.input.iter().map(String::as_str));
                }
            }
            from = upto;
        }
        candidates.iter().flat_map(|c| graph.consumers(c).iter().map(|u| u.node)).find_map(|k| {
            let n = &graph.proto.node[k];
            if !matches!(n.op(), "ReduceMean" | "GlobalAveragePool") {
                return None;
            }
            WrittenLayerNorm::at_mean(graph, folded, k)
                .filter(|w| graph.proto.node[w.end].output.first().map(String::as_str) == Some(value))
        })
    }
}

/// The third form, tf2onnx's conversion of Keras's fused layer normalization
/// (`FusedBatchNorm` in training mode over the input reshaped to `[1, rows, C, 1]`):
/// `ss = ReduceSumSquare(d)` over the mean's axes, `v = ss / count` (the count a constant,
/// or computed from `Shape(x)`), `n = BatchNormalization(x, scale, bias, Squeeze(m), v)`
/// over the rows as channels. `sum` is the `ReduceSumSquare` node.
fn moments_batch_norm(graph: &Graph<'_>, x: String, axes: Vec<i64>, mean: usize, center: usize, sum: usize) -> Option<WrittenLayerNorm> {
    let out = |k: usize| graph.proto.node.get(k).and_then(|n| n.output.first().cloned());
    let only_reader = |value: &str| match graph.consumers(value) {
        [u] => Some(u.node),
        _ => None,
    };
    let node = |k: usize| &graph.proto.node[k];
    let divide = only_reader(&out(sum)?)?;
    let div = node(divide);
    if div.op() != "Div" || !is_default(div) || div.input.len() != 2 || div.input[0] != out(sum)? {
        return None;
    }
    let mut nodes = vec![mean, center, sum];
    let mut x_readers = vec![mean, center];
    // The count: a constant, or computed from the input's shape alone by nodes read only
    // here (the Shape then reads the padded input, so the count is the full width's).
    // (Walked even where shape inference folds it, so that its nodes are the pattern's.)
    let count = &div.input[1];
    if graph.initializer(count).is_none() {
        let mut stack = vec![count.clone()];
        let mut inner: Vec<usize> = Vec::new();
        while let Some(v) = stack.pop() {
            if graph.initializer(&v).is_some() {
                continue;
            }
            let (k, n) = graph.producer_node(&v)?;
            let readers_inside = graph.consumers(&v).iter().all(|u| u.node == divide || inner.contains(&u.node));
            if !readers_inside || n.output.len() != 1 || !is_default(n) {
                return None;
            }
            if !inner.contains(&k) {
                inner.push(k);
            }
            match n.op() {
                "Shape" if n.input.first() == Some(&x) => x_readers.push(k),
                "Gather" | "ReduceProd" | "Cast" | "Slice" | "Squeeze" | "Unsqueeze" | "Concat" | "Mul" | "Identity" | "Constant" => {
                    stack.extend(n.input.iter().filter(|i| !i.is_empty()).cloned());
                }
                _ => return None,
            }
        }
        nodes.extend(inner);
    }
    nodes.push(divide);
    // The mean, squeezed to one entry per row, and the variance, into the batch norm.
    let mean_out = out(mean)?;
    let mut squeeze = None;
    for u in graph.consumers(&mean_out) {
        if u.node != center {
            if squeeze.is_some() || node(u.node).op() != "Squeeze" || !is_default(node(u.node)) {
                return None;
            }
            squeeze = Some(u.node);
        }
    }
    let squeeze = squeeze?;
    let end = only_reader(&out(squeeze)?)?;
    let bn = node(end);
    let training = bn.attribute.iter().any(|a| a.name.as_deref() == Some("training_mode") && a.i.unwrap_or(0) != 0);
    if bn.op() != "BatchNormalization" || !is_default(bn) || training || bn.output.len() != 1 || bn.input.len() != 5 {
        return None;
    }
    if bn.input[0] != x || bn.input[3] != out(squeeze)? || bn.input[4] != out(divide)? || only_reader(&out(divide)?)? != end {
        return None;
    }
    nodes.extend([squeeze, end]);
    x_readers.push(end);
    Some(WrittenLayerNorm { x, axes, mean, center, end, nodes, x_readers, scale: None, bias: None, perm: None })
}

/// The axes of a reduction of `kind` and whether it keeps them (`None` for other nodes,
/// or axes not written out).
fn reduce_axes(graph: &Graph<'_>, folded: Option<&Shapes>, node: &NodeProto, kind: ReduceKind) -> Option<(Vec<i64>, bool)> {
    if !is_default(node) {
        return None;
    }
    match crate::op::Op::parse(graph, node).ok()? {
        crate::op::Op::Reduce(r) if r.kind == kind => {
            let axes = r.axes.resolve(graph, node, folded, "axes").ok().flatten().filter(|a| !a.is_empty())?;
            Some((axes, r.keepdims))
        }
        _ => None,
    }
}

/// A `Cast` to a floating-point type.
fn is_float_cast(node: &NodeProto) -> bool {
    let to = node.attribute.iter().find(|a| a.name.as_deref() == Some("to")).and_then(|a| a.i);
    node.op() == "Cast"
        && is_default(node)
        && to.and_then(|t| i32::try_from(t).ok()).and_then(DType::from_onnx).is_some_and(|d| d.is_float())
}

fn is_default(node: &NodeProto) -> bool {
    matches!(node.domain.as_deref(), None | Some("") | Some("ai.onnx"))
}

/// The axes of a `ReduceMean` that keeps its reduced axes, or of a `GlobalAveragePool`
/// (axes 2 on, when the rank is known: tf2onnx writes a mean over the last axis of a
/// `[B, S, C]` value so) (`None` for other nodes, or axes not written out).
fn mean_axes(graph: &Graph<'_>, folded: Option<&Shapes>, node: &NodeProto) -> Option<Vec<i64>> {
    if !is_default(node) {
        return None;
    }
    if node.op() == "GlobalAveragePool" {
        let rank = folded?.shape(node.input.first()?)?.len();
        return (rank > 2).then(|| (2..rank as i64).collect());
    }
    reduce_axes(graph, folded, node, ReduceKind::Mean).filter(|(_, keepdims)| *keepdims).map(|(axes, _)| axes)
}
