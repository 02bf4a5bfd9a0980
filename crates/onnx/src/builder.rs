//! A small builder for ONNX graphs in memory, for tests and examples: inputs,
//! initializers, nodes with attributes, outputs and declared shapes, without
//! writing protobuf literals.
//!
//! ```
//! use oto_onnx::builder::{GraphBuilder, Attr};
//! use oto_onnx::{Dim, Tensor};
//! let mut b = GraphBuilder::new("tiny");
//! let x = b.input_f32("x", &[Dim::sym("batch"), Dim::Known(4)]);
//! let w = b.initializer("w", Tensor::new(vec![4, 2], oto_onnx::TensorData::F32(vec![0.5; 8])).unwrap());
//! let y = b.node("MatMul", &[&x, &w], &[]);
//! b.output_f32(&y, &[Dim::sym("batch"), Dim::Known(2)]);
//! let model = b.build().unwrap();
//! assert_eq!(model.proto.graph.as_ref().unwrap().node.len(), 1);
//! ```

use crate::error::Result;
use crate::model::Model;
use crate::proto::{
    attribute_proto::AttributeType, tensor_shape_proto::dimension::Value as DimValue, tensor_shape_proto::Dimension, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use crate::shape::Dim;
use crate::tensor::{DType, Tensor, TensorData};

/// An attribute value for [`GraphBuilder::node_with`].
#[derive(Debug, Clone)]
pub enum Attr {
    /// `INT`.
    Int(i64),
    /// `INTS`.
    Ints(Vec<i64>),
    /// `FLOAT`.
    Float(f32),
    /// `FLOATS`.
    Floats(Vec<f32>),
    /// `STRING`.
    Str(String),
    /// `TENSOR`.
    Tensor(Tensor),
}

impl Attr {
    /// The attribute `name` holding this value.
    pub(crate) fn to_proto(&self, name: &str) -> AttributeProto {
        let mut a = AttributeProto { name: Some(name.to_string()), ..Default::default() };
        let ty = match self {
            Attr::Int(v) => {
                a.i = Some(*v);
                AttributeType::Int
            }
            Attr::Ints(v) => {
                a.ints = v.clone();
                AttributeType::Ints
            }
            Attr::Float(v) => {
                a.f = Some(*v);
                AttributeType::Float
            }
            Attr::Floats(v) => {
                a.floats = v.clone();
                AttributeType::Floats
            }
            Attr::Str(s) => {
                a.s = Some(s.as_bytes().to_vec().into());
                AttributeType::String
            }
            Attr::Tensor(t) => {
                a.t = Some(t.to_proto(""));
                AttributeType::Tensor
            }
        };
        a.r#type = Some(ty as i32);
        a
    }
}

/// Builds a `ModelProto` (IR 8, default-domain opset 18 unless changed).
#[derive(Debug, Clone)]
pub struct GraphBuilder {
    name: String,
    graph: GraphProto,
    opsets: Vec<(String, i64)>,
    counter: usize,
}

/// A tensor value's declaration: its name, element type and dimensions.
pub fn value_info(name: &str, dtype: DType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            denotation: None,
            value: Some(match d {
                Dim::Known(v) => DimValue::DimValue(*v),
                Dim::Sym(s) => DimValue::DimParam(s.to_string()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            denotation: None,
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(dtype.onnx_code()),
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
        ..Default::default()
    }
}

/// Shorthand for a shape with a symbolic leading `batch` axis: `batch_dims(&[3, 8, 8])`
/// is `[batch, 3, 8, 8]`.
pub fn batch_dims(rest: &[i64]) -> Vec<Dim> {
    std::iter::once(Dim::sym("batch")).chain(rest.iter().map(|&d| Dim::Known(d))).collect()
}

/// Shorthand for a fully static shape.
pub fn known_dims(dims: &[i64]) -> Vec<Dim> {
    dims.iter().map(|&d| Dim::Known(d)).collect()
}

impl GraphBuilder {
    /// An empty graph named `name`.
    pub fn new(name: &str) -> GraphBuilder {
        GraphBuilder {
            name: name.to_string(),
            graph: GraphProto { name: Some(name.to_string()), ..Default::default() },
            opsets: vec![(String::new(), 18)],
            counter: 0,
        }
    }

    /// Sets the default-domain opset version.
    pub fn opset(&mut self, version: i64) -> &mut Self {
        self.opsets[0].1 = version;
        self
    }

    /// Imports a custom domain (needed for nodes of that domain).
    pub fn import_domain(&mut self, domain: &str, version: i64) -> &mut Self {
        self.opsets.push((domain.to_string(), version));
        self
    }

    /// Adds a graph input of type `dtype` and shape `dims`; returns its name.
    pub fn input(&mut self, name: &str, dtype: DType, dims: &[Dim]) -> String {
        self.graph.input.push(value_info(name, dtype, dims));
        name.to_string()
    }

    /// Adds an f32 graph input.
    pub fn input_f32(&mut self, name: &str, dims: &[Dim]) -> String {
        self.input(name, DType::F32, dims)
    }

    /// Adds an initializer; returns its name.
    pub fn initializer(&mut self, name: &str, tensor: Tensor) -> String {
        self.graph.initializer.push(tensor.to_proto(name));
        name.to_string()
    }

    /// Adds an f32 initializer of the given shape filled by `fill(index)`.
    pub fn weight(&mut self, name: &str, shape: &[usize], fill: impl Fn(usize) -> f32) -> String {
        let n: usize = shape.iter().product();
        let data = TensorData::F32((0..n).map(fill).collect());
        self.initializer(name, Tensor { shape: shape.to_vec(), data })
    }

    /// Adds an f32 initializer stored as external data: `shape` elements at byte `offset`
    /// of the file `location` (relative to the folder given to [`GraphBuilder::build_in`]).
    /// Lets benchmarks describe big models without holding their weights.
    pub fn external_weight(&mut self, name: &str, shape: &[usize], location: &str, offset: u64) -> String {
        use crate::proto::{tensor_proto::DataLocation, StringStringEntryProto};
        let length = shape.iter().product::<usize>() as u64 * 4;
        let entry = |k: &str, v: String| StringStringEntryProto { key: Some(k.to_string()), value: Some(v) };
        self.graph.initializer.push(crate::proto::TensorProto {
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: Some(DType::F32.onnx_code()),
            name: Some(name.to_string()),
            data_location: Some(DataLocation::External as i32),
            external_data: vec![
                entry("location", location.to_string()),
                entry("offset", offset.to_string()),
                entry("length", length.to_string()),
            ],
            ..Default::default()
        });
        name.to_string()
    }

    /// Adds a 1-D i64 initializer (shape constants, axes).
    pub fn ints(&mut self, name: &str, values: &[i64]) -> String {
        self.initializer(name, Tensor::from_i64s(values.to_vec()))
    }

    /// Adds a node without attributes. Empty `outputs` gets one generated output name.
    /// Returns the first output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], outputs: &[&str]) -> String {
        self.node_with(op, inputs, outputs, &[])
    }

    /// Adds a node with attributes; see [`GraphBuilder::node`].
    pub fn node_with(&mut self, op: &str, inputs: &[&str], outputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        self.node_in_domain("", op, inputs, outputs, attrs)
    }

    /// Adds a node of a given domain (`""` for the default one); see [`GraphBuilder::node`].
    pub fn node_in_domain(&mut self, domain: &str, op: &str, inputs: &[&str], outputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        self.counter += 1;
        let name = format!("{}_{}", op.to_lowercase(), self.counter);
        let outputs: Vec<String> =
            if outputs.is_empty() { vec![format!("{name}_out")] } else { outputs.iter().map(|s| s.to_string()).collect() };
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.clone(),
            name: Some(name),
            op_type: Some(op.to_string()),
            domain: (!domain.is_empty()).then(|| domain.to_string()),
            attribute: attrs.iter().map(|(n, a)| a.to_proto(n)).collect(),
            ..Default::default()
        });
        outputs[0].clone()
    }

    /// Declares the type and shape of an intermediate value (`value_info`).
    pub fn shape(&mut self, value: &str, dtype: DType, dims: &[Dim]) -> &mut Self {
        self.graph.value_info.push(value_info(value, dtype, dims));
        self
    }

    /// Declares a graph output.
    pub fn output(&mut self, value: &str, dtype: DType, dims: &[Dim]) -> &mut Self {
        self.graph.output.push(value_info(value, dtype, dims));
        self
    }

    /// Declares an f32 graph output.
    pub fn output_f32(&mut self, value: &str, dims: &[Dim]) -> &mut Self {
        self.output(value, DType::F32, dims)
    }

    /// The message built so far.
    pub fn proto(&self) -> ModelProto {
        ModelProto {
            ir_version: Some(8),
            producer_name: Some("oto-builder".into()),
            opset_import: self.opsets.iter().map(|(d, v)| OperatorSetIdProto { domain: Some(d.clone()), version: Some(*v) }).collect(),
            graph: Some(self.graph.clone()),
            ..Default::default()
        }
    }

    /// The model (checked as [`Model::from_proto`] checks it).
    pub fn build(&self) -> Result<Model> {
        Model::from_proto(self.proto(), &format!("<builder:{}>", self.name), None)
    }

    /// The model, with external data resolved against `base_dir`.
    pub fn build_in(&self, base_dir: &std::path::Path) -> Result<Model> {
        Model::from_proto(self.proto(), &format!("<builder:{}>", self.name), Some(base_dir.to_path_buf()))
    }
}
