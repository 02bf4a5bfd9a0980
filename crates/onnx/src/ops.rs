//! Opset-aware helpers: the opset of a node, errors naming it, and the constant values of
//! the inputs that hold an operator's parameters (an initializer, a `Constant` node, or a
//! value folded by shape inference: pass the [`Shapes`] in progress as `folded`). The typed
//! operators of [`crate::op`] read their attributes once and resolve their input-form
//! parameters ([`crate::op::IntsParam`], [`crate::op::ScalarParam`]) through these; the
//! Dropout and BatchNormalization forms below are still read here.

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

/// The scalar held by input `k` (any numeric type, as f64): `Ok(None)` when the input is
/// absent, an error naming the node when it is not a constant scalar.
pub fn input_scalar(graph: &Graph<'_>, node: &NodeProto, folded: Option<&Shapes>, k: usize, what: &str) -> Result<Option<f64>> {
    let Some(name) = input(node, k) else { return Ok(None) };
    match constant_floats(graph, folded, name)? {
        Some(v) if v.len() == 1 => Ok(Some(v[0])),
        Some(v) => Err(node_error(graph, node, format!("input {k} ('{name}', the {what}) has {} elements, expected a scalar", v.len()))),
        None => Err(node_error(graph, node, format!("input {k} ('{name}', the {what}) is not a constant"))),
    }
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
    fn floats_attr(name: &str, v: &[f32]) -> AttributeProto {
        AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Floats as i32), floats: v.to_vec(), ..Default::default() }
    }
    fn str_attr(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(AttributeType::String as i32),
            s: Some(v.as_bytes().to_vec().into()),
            ..Default::default()
        }
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

    /// The split sizes of a Split node whose axis has length `len`, parsed and resolved.
    fn split_sizes(g: &Graph<'_>, node: &NodeProto, folded: Option<&Shapes>, len: i64) -> Result<Vec<i64>> {
        let crate::op::Op::Split(s) = crate::op::Op::parse(g, node)? else { panic!("not a Split") };
        s.resolve(g, node, folded)?.sizes_for(len).map_err(|m| node_error(g, node, m))
    }
    fn clip_bounds(g: &Graph<'_>, node: &NodeProto, folded: Option<&Shapes>) -> Result<(Option<f32>, Option<f32>)> {
        let crate::op::Op::Clip(c) = crate::op::Op::parse(g, node)? else { panic!("not a Clip") };
        c.bounds(g, node, folded)
    }
    fn pads(g: &Graph<'_>, node: &NodeProto, folded: Option<&Shapes>) -> Result<crate::op::PadAmounts> {
        let crate::op::Op::Pad(p) = crate::op::Op::parse(g, node)? else { panic!("not a Pad") };
        p.resolve(g, node, folded)
    }
    fn slice_params(g: &Graph<'_>, node: &NodeProto, folded: Option<&Shapes>) -> Result<crate::op::SliceBounds> {
        let crate::op::Op::Slice(s) = crate::op::Op::parse(g, node)? else { panic!("not a Slice") };
        s.resolve(g, node, folded)
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
    fn softmax_argmax_topk_resize_forms() {
        use crate::op::{ArgReduce, Coordinate, FloatsParam, IntsParam, Op, ResizeMode, Softmax, SoftmaxKind, TopK};
        let parse = |opset: i64, n: NodeProto| {
            let m = model(opset, &[], n);
            let g = Graph::new(&m).unwrap();
            Op::parse(&g, g.node(0)).unwrap()
        };
        // Softmax's default axis: 1 (coerced to 2-D) before opset 13, -1 from 13.
        assert_eq!(
            parse(11, node("LogSoftmax", &["x"], &["y"], vec![])),
            Op::Softmax(Softmax { kind: SoftmaxKind::LogSoftmax, axis: 1, coerce_2d: true })
        );
        assert_eq!(
            parse(13, node("Softmax", &["x"], &["y"], vec![])),
            Op::Softmax(Softmax { kind: SoftmaxKind::Softmax, axis: -1, coerce_2d: false })
        );
        assert_eq!(
            parse(13, node("Hardmax", &["x"], &["y"], vec![int_attr("axis", 2)])),
            Op::Softmax(Softmax { kind: SoftmaxKind::Hardmax, axis: 2, coerce_2d: false })
        );
        assert_eq!(
            parse(13, node("ArgMin", &["x"], &["y"], vec![int_attr("keepdims", 0), int_attr("select_last_index", 1)])),
            Op::ArgReduce(ArgReduce { max: false, axis: 0, keepdims: false, select_last_index: true })
        );
        // TopK's k: an attribute before opset 10, input 1 from 10.
        assert_eq!(
            parse(9, node("TopK", &["x"], &["v", "i"], vec![int_attr("k", 3)])),
            Op::TopK(TopK { k: IntsParam::Attribute(Some(vec![3])), axis: -1, largest: true, sorted: true })
        );
        assert_eq!(
            parse(11, node("TopK", &["x", "x"], &["v", "i"], vec![int_attr("largest", 0), int_attr("axis", 1)])),
            Op::TopK(TopK { k: IntsParam::Input(1), axis: 1, largest: false, sorted: true })
        );
        // Upsample: scales an attribute before opset 9; asymmetric coordinates by default.
        let Op::Resize(r) = parse(7, node("Upsample", &["x"], &["y"], vec![floats_attr("scales", &[1.0, 1.0, 2.0, 2.0])])) else {
            panic!("not a Resize")
        };
        assert_eq!(
            (r.upsample, r.scales, r.sizes, r.coordinate),
            (true, FloatsParam::Attribute(Some(vec![1.0, 1.0, 2.0, 2.0])), None, Coordinate::Asymmetric)
        );
        let Op::Resize(r) = parse(13, node("Resize", &["x", "", "", "x"], &["y"], vec![str_attr("mode", "linear")])) else {
            panic!("not a Resize")
        };
        assert_eq!((r.scales, r.sizes, r.mode, r.coordinate), (FloatsParam::Input(2), Some(3), ResizeMode::Linear, Coordinate::HalfPixel));
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
        assert_eq!((p.pads, p.mode, p.constant_value, p.axes), (vec![0, 1, 0, 2], crate::op::PadMode::Constant, 0.0, None));
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

        let m = model(7, &[], node("Pad", &["x"], &["y"], vec![ints_attr("pads", &[1, 1]), str_attr("mode", "mirror")]));
        let g = Graph::new(&m).unwrap();
        let e = pads(&g, g.node(0), None).unwrap_err().to_string();
        assert!(e.contains("Pad_0") && e.contains("'mirror'") && e.contains("test.onnx"), "{e}");

        let m = model(10, &[], node("Dropout", &["x"], &["y"], vec![float_attr("ratio", 0.25)]));
        let g = Graph::new(&m).unwrap();
        assert_eq!(dropout(&g, g.node(0), None).unwrap(), Dropout { ratio: 0.25, training: false });
    }
}
