//! Opset-aware operator forms: where each operator keeps its parameters in each opset
//! (attribute or input) and what the defaults are, for the operators whose parameters
//! [`crate::op::Op`] does not type yet (the Reduce, Squeeze and Unsqueeze axes are
//! [`crate::op::IntsParam`]s of their `Op`).
//!
//! Several operators moved parameters from attributes to inputs over the opsets
//! (Split, Squeeze/Unsqueeze and the Reduce family at 13 or 18, Clip and Pad at 11,
//! Slice at 10, Dropout at 12, Resize/Upsample at 9-11). The functions here take a
//! node and return one normalized form, whatever the opset. Input-form parameters
//! must be constant: an initializer, a `Constant` node, or a value folded by shape
//! inference (pass the [`Shapes`] in progress as `folded`). Errors name the node.

use crate::error::{OnnxError, Result};
use crate::graph::{node_label, Graph, NodeExt};
use crate::proto::NodeProto;
use crate::shape::{Dim, Shapes};
use crate::tensor::Tensor;

/// Largest initializer (in elements) these helpers decode as a parameter: parameters
/// are short lists; anything bigger is a weight and is never decoded here.
const MAX_PARAM_ELEMENTS: usize = 1 << 16;

/// An error naming `node`.
pub fn node_error(graph: &Graph<'_>, node: &NodeProto, message: impl Into<String>) -> OnnxError {
    graph.model.error(node_label(node), message)
}

/// Turns an attribute getter's message into an error naming the node.
pub fn attr_result<T>(graph: &Graph<'_>, node: &NodeProto, r: std::result::Result<T, String>) -> Result<T> {
    r.map_err(|m| node_error(graph, node, m))
}

/// The opset version that applies to `node` (the import of its domain).
pub fn node_opset(graph: &Graph<'_>, node: &NodeProto) -> i64 {
    match node.domain.as_deref().unwrap_or("") {
        "" | "ai.onnx" => graph.model.opset(),
        d => graph.model.opset_of(d).unwrap_or(1),
    }
}

/// Input `k` of `node`, unless absent or omitted (empty name).
pub fn input(node: &NodeProto, k: usize) -> Option<&str> {
    node.input.get(k).map(String::as_str).filter(|s| !s.is_empty())
}

/// The constant value of `value`: folded by shape inference, or an initializer or
/// `Constant` node. Initializers larger than a parameter list are not decoded (`None`).
pub fn constant_tensor(graph: &Graph<'_>, folded: Option<&Shapes>, value: &str) -> Result<Option<Tensor>> {
    if let Some(t) = folded.and_then(|s| s.constants.get(value)) {
        return Ok(Some(t.clone()));
    }
    if let Some(init) = graph.initializer(value) {
        let numel = init.dims.iter().try_fold(1usize, |acc, &d| usize::try_from(d).ok().and_then(|d| acc.checked_mul(d)));
        if numel.is_none_or(|n| n > MAX_PARAM_ELEMENTS) {
            return Ok(None);
        }
    }
    graph.constant(value)
}

/// The constant integer entries of `value` (from folded shape values, folded
/// constants, initializers or `Constant` nodes); `None` when not constant.
pub fn constant_ints(graph: &Graph<'_>, folded: Option<&Shapes>, value: &str) -> Result<Option<Vec<i64>>> {
    if let Some(v) = folded.and_then(|s| s.shape_value(value)) {
        if let Some(ints) = v.iter().map(Dim::known).collect::<Option<Vec<i64>>>() {
            return Ok(Some(ints));
        }
    }
    Ok(constant_tensor(graph, folded, value)?.and_then(|t| t.to_i64_vec()))
}

/// The integer entries of `value`, possibly symbolic (e.g. `[batch, 16]`); `None` when unknown.
pub fn constant_dims(graph: &Graph<'_>, folded: Option<&Shapes>, value: &str) -> Result<Option<Vec<Dim>>> {
    if let Some(v) = folded.and_then(|s| s.shape_value(value)) {
        return Ok(Some(v.to_vec()));
    }
    Ok(constant_ints(graph, folded, value)?.map(|v| v.into_iter().map(Dim::Known).collect()))
}

/// The constant floats of `value` (any numeric type, converted); `None` when not constant.
pub fn constant_floats(graph: &Graph<'_>, folded: Option<&Shapes>, value: &str) -> Result<Option<Vec<f64>>> {
    Ok(constant_tensor(graph, folded, value)?.map(|t| t.to_f64_vec()))
}

/// Integers held by input `k`: `Ok(None)` when the input is absent, an error naming
/// the node when it is present but not computable from constants.
pub fn input_ints(graph: &Graph<'_>, node: &NodeProto, folded: Option<&Shapes>, k: usize, what: &str) -> Result<Option<Vec<i64>>> {
    let Some(name) = input(node, k) else { return Ok(None) };
    match constant_ints(graph, folded, name)? {
        Some(v) => Ok(Some(v)),
        None => Err(node_error(
            graph,
            node,
            format!("input {k} ('{name}', the {what}) is not a constant integer tensor; oto needs it computable from constants and shapes"),
        )),
    }
}

/// Like [`input_ints`], but entries may be symbolic dimensions.
pub fn input_dims(graph: &Graph<'_>, node: &NodeProto, folded: Option<&Shapes>, k: usize, what: &str) -> Result<Option<Vec<Dim>>> {
    let Some(name) = input(node, k) else { return Ok(None) };
    match constant_dims(graph, folded, name)? {
        Some(v) => Ok(Some(v)),
        None => Err(node_error(graph, node, format!("input {k} ('{name}', the {what}) is not computable from constants and shapes"))),
    }
}

fn input_scalar(graph: &Graph<'_>, node: &NodeProto, folded: Option<&Shapes>, k: usize, what: &str) -> Result<Option<f64>> {
    let Some(name) = input(node, k) else { return Ok(None) };
    match constant_floats(graph, folded, name)? {
        Some(v) if v.len() == 1 => Ok(Some(v[0])),
        Some(v) => Err(node_error(graph, node, format!("input {k} ('{name}', the {what}) has {} elements, expected a scalar", v.len()))),
        None => Err(node_error(graph, node, format!("input {k} ('{name}', the {what}) is not a constant"))),
    }
}

/// A Split node's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The axis as written (possibly negative).
    pub axis: i64,
    /// Explicit sizes (attribute before opset 13, input 1 from 13).
    pub sizes: Option<Vec<i64>>,
    /// The number of outputs (`num_outputs` at opset 18, otherwise the node's outputs).
    pub num_outputs: usize,
}

impl Split {
    /// The size of every output along the axis, for an axis of length `len`: the
    /// explicit sizes, or an even split (the last part smaller when uneven, as opset 18 says).
    pub fn sizes_for(&self, len: i64) -> std::result::Result<Vec<i64>, String> {
        if let Some(s) = &self.sizes {
            if s.iter().sum::<i64>() != len || s.iter().any(|&x| x < 0) {
                return Err(format!("split sizes {s:?} do not add up to the axis length {len}"));
            }
            return Ok(s.clone());
        }
        let n = self.num_outputs as i64;
        if n == 0 {
            return Err("Split has no outputs".into());
        }
        let part = (len + n - 1) / n;
        if len % n != 0 && part * (n - 1) >= len {
            return Err(format!("an axis of length {len} cannot be split into {n} parts"));
        }
        Ok((0..n).map(|i| if i < n - 1 { part } else { len - part * (n - 1) }).collect())
    }
}

/// The normalized form of a Split node.
pub fn split(graph: &Graph<'_>, node: &NodeProto, folded: Option<&Shapes>) -> Result<Split> {
    let opset = node_opset(graph, node);
    let axis = attr_result(graph, node, node.attr_int_or("axis", 0))?;
    let sizes =
        if opset >= 13 { input_ints(graph, node, folded, 1, "split sizes")? } else { attr_result(graph, node, node.attr_ints("split"))? };
    let num_outputs = match attr_result(graph, node, node.attr_int("num_outputs"))? {
        Some(n) if opset >= 18 => {
            if n as usize != node.output.len() || n < 1 {
                return Err(node_error(graph, node, format!("num_outputs is {n} but the node has {} outputs", node.output.len())));
            }
            n as usize
        }
        _ => node.output.len(),
    };
    if let Some(s) = &sizes {
        if s.len() != node.output.len() {
            return Err(node_error(graph, node, format!("has {} split sizes for {} outputs", s.len(), node.output.len())));
        }
    }
    Ok(Split { axis, sizes, num_outputs })
}

/// Split sizes of a Split node whose axis has length `len`.
pub fn split_sizes(graph: &Graph<'_>, node: &NodeProto, folded: Option<&Shapes>, len: i64) -> Result<Vec<i64>> {
    split(graph, node, folded)?.sizes_for(len).map_err(|m| node_error(graph, node, m))
}

/// The bounds of a Clip node (attributes before opset 11, inputs 1 and 2 from then);
/// `None` for an absent bound.
pub fn clip_bounds(graph: &Graph<'_>, node: &NodeProto, folded: Option<&Shapes>) -> Result<(Option<f32>, Option<f32>)> {
    if node_opset(graph, node) >= 11 {
        let lo = input_scalar(graph, node, folded, 1, "min")?;
        let hi = input_scalar(graph, node, folded, 2, "max")?;
        Ok((lo.map(|v| v as f32), hi.map(|v| v as f32)))
    } else {
        Ok((attr_result(graph, node, node.attr_float("min"))?, attr_result(graph, node, node.attr_float("max"))?))
    }
}

/// A Pad node's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Pad {
    /// `[x1_begin, x2_begin, ..., x1_end, x2_end, ...]` over `axes` (or every axis).
    pub pads: Vec<i64>,
    /// `constant`, `reflect`, `edge` or `wrap`.
    pub mode: String,
    /// The fill value of `constant` mode.
    pub constant_value: f64,
    /// The axes the pads apply to (opset 18); `None`: every axis.
    pub axes: Option<Vec<i64>>,
}

/// The normalized form of a Pad node (attributes before opset 11, inputs from then).
pub fn pads(graph: &Graph<'_>, node: &NodeProto, folded: Option<&Shapes>) -> Result<Pad> {
    let mode = attr_result(graph, node, node.attr_string("mode"))?.unwrap_or_else(|| "constant".into());
    if node_opset(graph, node) >= 11 {
        let Some(pads) = input_ints(graph, node, folded, 1, "pads")? else {
            return Err(node_error(graph, node, "has no pads input"));
        };
        let constant_value = input_scalar(graph, node, folded, 2, "constant value")?.unwrap_or(0.0);
        let axes = input_ints(graph, node, folded, 3, "axes")?;
        Ok(Pad { pads, mode, constant_value, axes })
    } else {
        let Some(pads) = attr_result(graph, node, node.attr_ints("pads"))? else {
            return Err(node_error(graph, node, "has no 'pads' attribute"));
        };
        let constant_value = f64::from(attr_result(graph, node, node.attr_float_or("value", 0.0))?);
        Ok(Pad { pads, mode, constant_value, axes: None })
    }
}

/// A Slice node's parameters. Starts and ends may be symbolic (computed from shapes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    /// Start per sliced axis.
    pub starts: Vec<Dim>,
    /// End (exclusive) per sliced axis; `i64::MAX`-like values mean "to the end".
    pub ends: Vec<Dim>,
    /// Sliced axes (possibly negative); `None`: `0..starts.len()`.
    pub axes: Option<Vec<i64>>,
    /// Steps; `None`: all 1.
    pub steps: Option<Vec<i64>>,
}

/// The normalized form of a Slice node (attributes before opset 10, inputs from then).
pub fn slice_params(graph: &Graph<'_>, node: &NodeProto, folded: Option<&Shapes>) -> Result<Slice> {
    let (starts, ends, axes, steps) = if node_opset(graph, node) >= 10 {
        (
            input_dims(graph, node, folded, 1, "starts")?,
            input_dims(graph, node, folded, 2, "ends")?,
            input_ints(graph, node, folded, 3, "axes")?,
            input_ints(graph, node, folded, 4, "steps")?,
        )
    } else {
        let known = |v: Option<Vec<i64>>| v.map(|v| v.into_iter().map(Dim::Known).collect::<Vec<_>>());
        (
            known(attr_result(graph, node, node.attr_ints("starts"))?),
            known(attr_result(graph, node, node.attr_ints("ends"))?),
            attr_result(graph, node, node.attr_ints("axes"))?,
            None,
        )
    };
    let (Some(starts), Some(ends)) = (starts, ends) else {
        return Err(node_error(graph, node, "needs both starts and ends"));
    };
    let n = starts.len();
    if ends.len() != n || axes.as_ref().is_some_and(|a| a.len() != n) || steps.as_ref().is_some_and(|s| s.len() != n) {
        return Err(node_error(graph, node, "starts, ends, axes and steps must have the same length"));
    }
    if steps.as_ref().is_some_and(|s| s.contains(&0)) {
        return Err(node_error(graph, node, "a slice step is 0"));
    }
    Ok(Slice { starts, ends, axes, steps })
}

/// How a Resize or Upsample node sets its output size.
#[derive(Debug, Clone, PartialEq)]
pub struct Resize {
    /// Scale per axis (of `axes`, or of every axis).
    pub scales: Option<Vec<f64>>,
    /// Output size per axis (of `axes`, or of every axis).
    pub sizes: Option<Vec<Dim>>,
    /// The axes scales/sizes apply to (opset 18); `None`: every axis.
    pub axes: Option<Vec<i64>>,
    /// `mode` attribute (`nearest`, `linear`, `cubic`).
    pub mode: String,
}

/// The normalized form of a Resize (opset 10: input 1 scales; 11+: inputs 2 scales and
/// 3 sizes) or Upsample (attribute before opset 9, input 1 from then) node.
pub fn resize(graph: &Graph<'_>, node: &NodeProto, folded: Option<&Shapes>) -> Result<Resize> {
    let opset = node_opset(graph, node);
    let mode = attr_result(graph, node, node.attr_string("mode"))?.unwrap_or_else(|| "nearest".into());
    let floats = |k: usize| -> Result<Option<Vec<f64>>> {
        let Some(name) = input(node, k) else { return Ok(None) };
        match constant_floats(graph, folded, name)? {
            Some(v) if v.is_empty() => Ok(None), // an empty tensor stands for "absent"
            Some(v) => Ok(Some(v)),
            None => Err(node_error(graph, node, format!("input {k} ('{name}', the scales) is not a constant"))),
        }
    };
    let (scales, sizes, axes) = match node.op() {
        "Upsample" if opset < 9 => {
            (attr_result(graph, node, node.attr_floats("scales"))?.map(|v| v.into_iter().map(f64::from).collect()), None, None)
        }
        "Upsample" => (floats(1)?, None, None),
        _ if opset < 11 => (floats(1)?, None, None),
        _ => {
            let sizes = input_dims(graph, node, folded, 3, "sizes")?.filter(|s| !s.is_empty());
            (floats(2)?, sizes, attr_result(graph, node, node.attr_ints("axes"))?)
        }
    };
    if scales.is_none() && sizes.is_none() {
        return Err(node_error(graph, node, "has neither scales nor sizes"));
    }
    Ok(Resize { scales, sizes, axes, mode })
}

/// A Dropout node's parameters (attribute `ratio` before opset 12, inputs 1 and 2 from then).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    /// Drop probability.
    pub ratio: f64,
    /// Whether it drops at all (`training_mode` input, opset 12+; false before, as
    /// inference runtimes treat it).
    pub training: bool,
}

/// The normalized form of a Dropout node.
pub fn dropout(graph: &Graph<'_>, node: &NodeProto, folded: Option<&Shapes>) -> Result<Dropout> {
    if node_opset(graph, node) >= 12 {
        let ratio = input_scalar(graph, node, folded, 1, "ratio")?.unwrap_or(0.5);
        let training = input_scalar(graph, node, folded, 2, "training mode")?.is_some_and(|v| v != 0.0);
        Ok(Dropout { ratio, training })
    } else {
        Ok(Dropout { ratio: f64::from(attr_result(graph, node, node.attr_float_or("ratio", 0.5))?), training: false })
    }
}

/// A BatchNormalization node's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNorm {
    /// Added to the variance.
    pub epsilon: f32,
    /// Running-statistics momentum.
    pub momentum: f32,
    /// Training mode: batch statistics, and the running mean/var outputs (opset 14's
    /// `training_mode`; before 14, extra outputs mean training).
    pub training: bool,
}

/// The normalized form of a BatchNormalization node.
pub fn batch_norm(graph: &Graph<'_>, node: &NodeProto) -> Result<BatchNorm> {
    let epsilon = attr_result(graph, node, node.attr_float_or("epsilon", 1e-5))?;
    let momentum = attr_result(graph, node, node.attr_float_or("momentum", 0.9))?;
    let training = if node_opset(graph, node) >= 14 {
        attr_result(graph, node, node.attr_int_or("training_mode", 0))? != 0
    } else {
        node.output.iter().skip(1).any(|o| !o.is_empty())
    };
    Ok(BatchNorm { epsilon, momentum, training })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::proto::{attribute_proto::AttributeType, AttributeProto, GraphProto, ModelProto, OperatorSetIdProto};

    fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Ints as i32), ints: v.to_vec(), ..Default::default() }
    }
    fn int_attr(name: &str, v: i64) -> AttributeProto {
        AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Int as i32), i: Some(v), ..Default::default() }
    }
    fn float_attr(name: &str, v: f32) -> AttributeProto {
        AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Float as i32), f: Some(v), ..Default::default() }
    }
    fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            name: Some(format!("{op}_0")),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attrs,
            ..Default::default()
        }
    }
    /// A model with input `x`, the given int64 initializers and one node.
    fn model(opset: i64, inits: &[(&str, Vec<i64>)], n: NodeProto) -> Model {
        let graph = GraphProto {
            input: vec![crate::proto::ValueInfoProto { name: Some("x".into()), ..Default::default() }],
            initializer: inits.iter().map(|(name, v)| Tensor::from_i64s(v.clone()).to_proto(name)).collect(),
            output: vec![crate::proto::ValueInfoProto { name: n.output.first().cloned(), ..Default::default() }],
            node: vec![n],
            ..Default::default()
        };
        let proto = ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
            graph: Some(graph),
            ..Default::default()
        };
        Model::from_proto(proto, "test.onnx", None).unwrap()
    }

    /// The axes of a Squeeze, Unsqueeze or Reduce node, parsed and resolved.
    fn axes(g: &Graph<'_>) -> Result<Option<Vec<i64>>> {
        use crate::op::{Op, Reduce};
        let node = g.node(0);
        match Op::parse(g, node)? {
            Op::Squeeze { axes } | Op::Unsqueeze { axes } | Op::Reduce(Reduce { axes, .. }) => axes.resolve(g, node, None, "axes"),
            other => panic!("{other:?} has no axes"),
        }
    }

    #[test]
    fn axes_move_from_attribute_to_input() {
        use crate::op::{IntsParam, Op, Reduce, ReduceKind};
        let m = model(11, &[], node("Unsqueeze", &["x"], &["y"], vec![ints_attr("axes", &[0, -1])]));
        let g = Graph::new(&m).unwrap();
        assert_eq!(axes(&g).unwrap(), Some(vec![0, -1]));
        let m = model(13, &[("ax", vec![2])], node("Unsqueeze", &["x", "ax"], &["y"], vec![]));
        let g = Graph::new(&m).unwrap();
        assert_eq!(axes(&g).unwrap(), Some(vec![2]));
        // ReduceMean keeps the attribute until opset 18, ReduceSum moves at 13.
        let m = model(17, &[], node("ReduceMean", &["x"], &["y"], vec![ints_attr("axes", &[-1]), int_attr("keepdims", 0)]));
        let g = Graph::new(&m).unwrap();
        let r = Op::parse(&g, g.node(0)).unwrap();
        let want =
            Reduce { kind: ReduceKind::Mean, axes: IntsParam::Attribute(Some(vec![-1])), keepdims: false, noop_with_empty_axes: false };
        assert_eq!(r, Op::Reduce(want));
        let m = model(18, &[("ax", vec![1, 2])], node("ReduceMean", &["x", "ax"], &["y"], vec![]));
        let g = Graph::new(&m).unwrap();
        assert_eq!(axes(&g).unwrap(), Some(vec![1, 2]));
        let m = model(13, &[], node("ReduceSum", &["x"], &["y"], vec![]));
        let g = Graph::new(&m).unwrap();
        assert_eq!(axes(&g).unwrap(), None);
    }

    #[test]
    fn non_constant_axes_name_the_node() {
        let m = model(13, &[], node("Squeeze", &["x", "x"], &["y"], vec![]));
        let g = Graph::new(&m).unwrap();
        let e = axes(&g).unwrap_err().to_string();
        assert!(e.contains("Squeeze_0") && e.contains("axes") && e.contains("test.onnx"), "{e}");
    }

    #[test]
    fn split_forms() {
        let m = model(11, &[], node("Split", &["x"], &["a", "b"], vec![ints_attr("split", &[3, 5]), int_attr("axis", 1)]));
        let g = Graph::new(&m).unwrap();
        assert_eq!(split_sizes(&g, g.node(0), None, 8).unwrap(), vec![3, 5]);
        assert!(split_sizes(&g, g.node(0), None, 9).is_err());
        let m = model(13, &[("s", vec![2, 2, 4])], node("Split", &["x", "s"], &["a", "b", "c"], vec![]));
        let g = Graph::new(&m).unwrap();
        assert_eq!(split_sizes(&g, g.node(0), None, 8).unwrap(), vec![2, 2, 4]);
        let m = model(18, &[], node("Split", &["x"], &["a", "b", "c"], vec![int_attr("num_outputs", 3)]));
        let g = Graph::new(&m).unwrap();
        assert_eq!(split_sizes(&g, g.node(0), None, 7).unwrap(), vec![3, 3, 1]);
        assert_eq!(split_sizes(&g, g.node(0), None, 9).unwrap(), vec![3, 3, 3]);
        let m = model(13, &[], node("Split", &["x"], &["a", "b"], vec![]));
        let g = Graph::new(&m).unwrap();
        assert_eq!(split_sizes(&g, g.node(0), None, 8).unwrap(), vec![4, 4]);
    }

    #[test]
    fn clip_pad_slice_dropout_forms() {
        let m = model(7, &[], node("Clip", &["x"], &["y"], vec![float_attr("min", 0.0), float_attr("max", 6.0)]));
        let g = Graph::new(&m).unwrap();
        assert_eq!(clip_bounds(&g, g.node(0), None).unwrap(), (Some(0.0), Some(6.0)));
        let mut m = model(13, &[], node("Clip", &["x", "", "hi"], &["y"], vec![]));
        m.proto.graph.as_mut().unwrap().initializer.push(Tensor::new(vec![], crate::TensorData::F32(vec![6.0])).unwrap().to_proto("hi"));
        let g = Graph::new(&m).unwrap();
        assert_eq!(clip_bounds(&g, g.node(0), None).unwrap(), (None, Some(6.0)));

        let m = model(18, &[("p", vec![0, 1, 0, 2])], node("Pad", &["x", "p"], &["y"], vec![]));
        let g = Graph::new(&m).unwrap();
        let p = pads(&g, g.node(0), None).unwrap();
        assert_eq!((p.pads, p.mode.as_str(), p.constant_value, p.axes), (vec![0, 1, 0, 2], "constant", 0.0, None));
        let m = model(7, &[], node("Pad", &["x"], &["y"], vec![ints_attr("pads", &[1, 1])]));
        let g = Graph::new(&m).unwrap();
        assert_eq!(pads(&g, g.node(0), None).unwrap().pads, vec![1, 1]);

        let m =
            model(9, &[], node("Slice", &["x"], &["y"], vec![ints_attr("starts", &[1]), ints_attr("ends", &[3]), ints_attr("axes", &[1])]));
        let g = Graph::new(&m).unwrap();
        let s = slice_params(&g, g.node(0), None).unwrap();
        assert_eq!((s.starts, s.ends, s.axes, s.steps), (vec![Dim::Known(1)], vec![Dim::Known(3)], Some(vec![1]), None));
        let m = model(
            13,
            &[("st", vec![0]), ("en", vec![-1]), ("ax", vec![2]), ("sp", vec![2])],
            node("Slice", &["x", "st", "en", "ax", "sp"], &["y"], vec![]),
        );
        let g = Graph::new(&m).unwrap();
        let s = slice_params(&g, g.node(0), None).unwrap();
        assert_eq!((s.ends, s.axes, s.steps), (vec![Dim::Known(-1)], Some(vec![2]), Some(vec![2])));

        let m = model(10, &[], node("Dropout", &["x"], &["y"], vec![float_attr("ratio", 0.25)]));
        let g = Graph::new(&m).unwrap();
        assert_eq!(dropout(&g, g.node(0), None).unwrap(), Dropout { ratio: 0.25, training: false });
    }
}
