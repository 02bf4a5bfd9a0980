//! The nodes construction adds to a model (a `Pad` of zeros, a `Slice` of the first
//! positions, a `Gather`, element-wise arithmetic), written for the model's opset, with
//! fresh names.

use crate::constants::fresh;
use crate::{mismatch, Result};
use oto_graph::Group;
use oto_onnx::proto::{attribute_proto::AttributeType, AttributeProto, NodeProto, TensorProto};
use oto_onnx::{Tensor, TensorData};
use std::collections::HashSet;

/// A node of the default domain named `name` (made fresh) reading `inputs` into `output`.
pub(crate) fn node(names: &mut HashSet<String>, op_type: &str, name: &str, inputs: Vec<String>, output: &str) -> NodeProto {
    NodeProto {
        name: Some(fresh(names, name)),
        op_type: Some(op_type.to_string()),
        input: inputs,
        output: vec![output.to_string()],
        ..Default::default()
    }
}

/// A `Pad` of `x` with zeros into `out` (`pads` as ONNX orders them: the begins, then
/// the ends): its pads an input from opset 11 on (an initializer added to
/// `initializers`), an attribute before.
pub(crate) fn pad_zeros(
    names: &mut HashSet<String>,
    initializers: &mut Vec<TensorProto>,
    opset: i64,
    name: &str,
    x: &str,
    out: &str,
    pads: Vec<i64>,
) -> NodeProto {
    let mut pad = node(names, "Pad", name, vec![x.to_string()], out);
    if opset >= 11 {
        let pads_name = fresh(names, &format!("{out}.pads"));
        initializers.push(Tensor::from_i64s(pads).to_proto(&pads_name));
        pad.input.push(pads_name);
    } else {
        pad.attribute.push(ints_attribute("pads", pads));
    }
    pad
}

/// A `Slice` of the first `len` positions of `x` along `axis` into `out`: its bounds
/// inputs from opset 10 on (initializers added to `initializers`), attributes before.
#[allow(clippy::too_many_arguments)]
pub(crate) fn first_positions(
    names: &mut HashSet<String>,
    initializers: &mut Vec<TensorProto>,
    opset: i64,
    name: &str,
    x: &str,
    out: &str,
    axis: usize,
    len: i64,
) -> NodeProto {
    let mut slice = node(names, "Slice", name, vec![x.to_string()], out);
    for (what, v) in [("starts", 0), ("ends", len), ("axes", axis as i64)] {
        if opset >= 10 {
            let bound = fresh(names, &format!("{out}.{what}"));
            initializers.push(Tensor::from_i64s(vec![v]).to_proto(&bound));
            slice.input.push(bound);
        } else {
            slice.attribute.push(ints_attribute(what, vec![v]));
        }
    }
    slice
}

fn ints_attribute(name: &str, ints: Vec<i64>) -> AttributeProto {
    AttributeProto { name: Some(name.to_string()), r#type: Some(AttributeType::Ints as i32), ints, ..Default::default() }
}

/// A fresh int64 initializer holding `values` (1-D), added to `initializers`; its name.
pub(crate) fn push_indices(
    names: &mut HashSet<String>,
    initializers: &mut Vec<TensorProto>,
    base: &str,
    values: Vec<i64>,
    g: &Group,
) -> Result<String> {
    let len = values.len();
    let t = Tensor::new(vec![len], TensorData::I64(values)).ok_or_else(|| mismatch(g, format!("cannot build '{base}'")))?;
    let name = fresh(names, base);
    initializers.push(t.to_proto(&name));
    Ok(name)
}

/// A `Gather` of `data` at `indices` along `axis` into `out`.
pub(crate) fn gather(names: &mut HashSet<String>, data: &str, indices: &str, out: &str, axis: usize) -> NodeProto {
    NodeProto {
        name: Some(fresh(names, &format!("{out}.gather"))),
        op_type: Some("Gather".into()),
        input: vec![data.to_string(), indices.to_string()],
        output: vec![out.to_string()],
        attribute: vec![AttributeProto {
            name: Some("axis".into()),
            r#type: Some(AttributeType::Int as i32),
            i: Some(axis as i64),
            ..Default::default()
        }],
        ..Default::default()
    }
}
