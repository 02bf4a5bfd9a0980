//! Normalizations: `BatchNormalization` (the channel parameters checked against the input)
//! and `LayerNormalization` (its statistics outputs). The other normalizations keep the
//! input's shape (`elementwise.rs`, `same_shape`). Not counted in MACs.

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
