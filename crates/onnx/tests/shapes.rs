//! Shape inference: every zoo model against the shapes graphs/zoo.py recorded (index.json,
//! the PyTorch outputs, the exporter's value_info), plus operator rules on small graphs.

use oto_onnx::proto::{
    attribute_proto::AttributeType, tensor_shape_proto::dimension::Value as DimValue, tensor_shape_proto::Dimension, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use oto_onnx::shape::infer;
use oto_onnx::{DType, Dim, Graph, Model, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;

fn zoo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../graphs/zoo")
}

fn zoo_index() -> serde_json::Value {
    let path = zoo_dir().join("index.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}; run `python graphs/zoo.py --out graphs/zoo`", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// graphs/user_zoo/torchscript: the zoo's architectures as the TorchScript exporter
/// writes them (graphs/user_zoo.py; `OTO_USER_ZOO_DIR` overrides graphs/user_zoo).
fn torchscript_dir() -> PathBuf {
    std::env::var_os("OTO_USER_ZOO_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../graphs/user_zoo"))
        .join("torchscript")
}

fn torchscript_index() -> serde_json::Value {
    let path = torchscript_dir().join("index.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `python graphs/user_zoo.py --out graphs/user_zoo`", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The dynamic axes of the TorchScript files at the saved inputs' sizes.
fn torchscript_bindings() -> HashMap<String, i64> {
    [("batch_size".to_string(), 2), ("sequence_length".to_string(), 16)].into()
}

/// The zoo's symbolic axes at the reference inputs: batch 2, sequence 16 (token models).
fn batch2() -> HashMap<String, i64> {
    [("batch".to_string(), 2), ("sequence".to_string(), 16)].into()
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "float32",
        DType::F16 => "float16",
        DType::F64 => "float64",
        DType::I64 => "int64",
        DType::I32 => "int32",
        DType::Bool => "bool",
        _ => "other",
    }
}

fn declared_dims(vi: &ValueInfoProto) -> Option<Vec<Dim>> {
    let Some(type_proto::Value::TensorType(tt)) = vi.r#type.as_ref()?.value.as_ref() else { return None };
    tt.shape
        .as_ref()?
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(DimValue::DimValue(v)) => Some(Dim::Known(*v)),
            Some(DimValue::DimParam(p)) => Dim::parse(p).ok(),
            None => None,
        })
        .collect()
}

#[test]
fn zoo_output_shapes_match_index_and_pytorch() {
    let index = zoo_index();
    let models = index["models"].as_array().unwrap();
    assert!(!models.is_empty());
    for entry in models {
        let name = entry["name"].as_str().unwrap();
        let model = Model::load(zoo_dir().join(format!("{name}.onnx"))).unwrap();
        let graph = Graph::new(&model).unwrap();
        let shapes = infer(&graph).unwrap_or_else(|e| panic!("{name}: {e}"));
        let outputs: HashMap<String, Tensor> =
            oto_onnx::npz::read_npz(zoo_dir().join(format!("{name}.outputs.npz"))).unwrap().into_iter().collect();
        for out in entry["outputs"].as_array().unwrap() {
            let oname = out["name"].as_str().unwrap();
            let want: Vec<i64> = out["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_i64().unwrap_or_else(|| batch2()[d.as_str().expect("a dim name or size")]))
                .collect();
            let got = shapes
                .bound_shape(oname, &batch2())
                .unwrap_or_else(|| panic!("{name}: output {oname}: no static shape: {:?}", shapes.shape(oname)));
            assert_eq!(got, want, "{name}: output {oname}");
            // The symbolic dims are the declared ones, not just equal at batch 2.
            let sym: Vec<String> = shapes.shape(oname).unwrap().iter().map(Dim::to_string).collect();
            let idx: Vec<String> =
                out["shape"].as_array().unwrap().iter().map(|d| d.as_str().map(String::from).unwrap_or_else(|| d.to_string())).collect();
            assert_eq!(sym, idx, "{name}: output {oname}");
            assert_eq!(dtype_name(shapes.dtype(oname).unwrap()), out["dtype"].as_str().unwrap(), "{name}: output {oname} dtype");
            let actual: Vec<i64> = outputs[oname].shape.iter().map(|&d| d as i64).collect();
            assert_eq!(got, actual, "{name}: output {oname} vs the saved PyTorch output");
        }
    }
}

/// The TorchScript exporter computes batch and sequence sizes at run time
/// (Shape -> Gather -> Unsqueeze -> Concat -> Reshape): inference follows that arithmetic,
/// so every output gets exactly the symbolic shape the file declares (`[batch_size, 10]`,
/// `[batch_size, sequence_length, 1000]`), and every value a shape in those symbols.
#[test]
fn torchscript_outputs_get_the_declared_symbolic_shapes() {
    let index = torchscript_index();
    let files = index["models"].as_array().unwrap();
    assert!(!files.is_empty());
    let bind = torchscript_bindings();
    for entry in files {
        let file = entry["file"].as_str().unwrap();
        let model = Model::load(torchscript_dir().join(file)).unwrap();
        let graph = Graph::new(&model).unwrap();
        let shapes = infer(&graph).unwrap_or_else(|e| panic!("{file}: {e}"));
        let saved: HashMap<String, Tensor> =
            oto_onnx::npz::read_npz(torchscript_dir().join(format!("{}.outputs.npz", entry["reference"].as_str().unwrap())))
                .unwrap()
                .into_iter()
                .collect();
        for out in entry["outputs"].as_array().unwrap() {
            let oname = out["name"].as_str().unwrap();
            let want: Vec<String> =
                out["shape"].as_array().unwrap().iter().map(|d| d.as_str().map(String::from).unwrap_or_else(|| d.to_string())).collect();
            let got: Vec<String> =
                shapes.shape(oname).unwrap_or_else(|| panic!("{file}: output {oname} has no shape")).iter().map(Dim::to_string).collect();
            assert_eq!(got, want, "{file}: output {oname}");
            let vi = graph.proto.output.iter().find(|o| o.name.as_deref() == Some(oname)).unwrap();
            assert_eq!(shapes.shape(oname).map(<[Dim]>::to_vec), declared_dims(vi), "{file}: output {oname} vs the graph's declaration");
            let actual: Vec<i64> = saved[oname].shape.iter().map(|&d| d as i64).collect();
            assert_eq!(shapes.bound_shape(oname, &bind), Some(actual), "{file}: output {oname} vs the saved PyTorch output");
        }
        for node in &graph.proto.node {
            for v in node.output.iter().filter(|v| !v.is_empty()) {
                let s = shapes.shape(v).unwrap_or_else(|| panic!("{file}: value '{v}' has no shape"));
                assert!(s.iter().all(|d| d.eval(&bind).is_some()), "{file}: value '{v}' has an undetermined dimension: {s:?}");
            }
        }
    }
}

#[test]
fn every_zoo_value_gets_a_type_and_shape() {
    for entry in zoo_index()["models"].as_array().unwrap() {
        let name = entry["name"].as_str().unwrap();
        let model = Model::load(zoo_dir().join(format!("{name}.onnx"))).unwrap();
        let graph = Graph::new(&model).unwrap();
        let shapes = infer(&graph).unwrap();
        let mut values: Vec<&str> = graph.proto.input.iter().filter_map(|v| v.name.as_deref()).collect();
        values.extend(graph.proto.initializer.iter().filter_map(|t| t.name.as_deref()));
        for node in &graph.proto.node {
            values.extend(node.output.iter().map(String::as_str).filter(|s| !s.is_empty()));
        }
        for v in values {
            let t = shapes.types.get(v).unwrap_or_else(|| panic!("{name}: value '{v}' was not reached"));
            assert!(t.dtype.is_some(), "{name}: value '{v}' has no element type");
            let s = t.shape.as_ref().unwrap_or_else(|| panic!("{name}: value '{v}' has no shape"));
            // Only the batch symbol: no dimension was left undetermined.
            for d in s {
                assert!(d.eval(&batch2()).is_some(), "{name}: value '{v}' has the undetermined dimension {d} in {s:?}");
            }
        }
    }
}

/// Where the exporter wrote value_info (intermediate values, initializers), inference agrees.
#[test]
fn zoo_value_info_agrees_with_inference() {
    let mut checked = 0;
    for entry in zoo_index()["models"].as_array().unwrap() {
        let name = entry["name"].as_str().unwrap();
        let model = Model::load(zoo_dir().join(format!("{name}.onnx"))).unwrap();
        let graph = Graph::new(&model).unwrap();
        let shapes = infer(&graph).unwrap();
        assert!(shapes.mismatches.is_empty(), "{name}: {:?}", shapes.mismatches);
        for vi in graph.proto.value_info.iter().chain(&graph.proto.output) {
            let v = vi.name.as_deref().unwrap();
            let Some(declared) = declared_dims(vi) else { continue };
            if graph.producer(v).is_none() {
                continue; // value_info left behind for a value the cleanup removed
            }
            let inferred = shapes.shape(v).unwrap_or_else(|| panic!("{name}: '{v}' has no inferred shape"));
            let bind = |s: &[Dim]| s.iter().map(|d| d.eval(&batch2())).collect::<Vec<_>>();
            assert_eq!(bind(inferred), bind(&declared), "{name}: '{v}': inferred {inferred:?}, declared {declared:?}");
            if declared.iter().all(|d| d.known().is_some()) {
                assert_eq!(inferred, declared.as_slice(), "{name}: '{v}'");
            }
            if let Some(type_proto::Value::TensorType(tt)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
                assert_eq!(shapes.dtype(v).map(DType::onnx_code), tt.elem_type, "{name}: '{v}' element type");
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} value_info entries checked");
}

// ---------------------------------------------------------------------------------
// Small graphs
// ---------------------------------------------------------------------------------

/// Builds one-off graphs: typed inputs, int64 initializers, nodes.
struct G {
    graph: GraphProto,
    opset: i64,
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Ints as i32), ints: v.to_vec(), ..Default::default() }
}
fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Int as i32), i: Some(v), ..Default::default() }
}
fn attr_str(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(v.as_bytes().to_vec().into()),
        ..Default::default()
    }
}

/// `"batch"` is a symbol, anything else a number.
fn dims(spec: &[&str]) -> Vec<Dim> {
    spec.iter().map(|s| s.parse::<i64>().map(Dim::Known).unwrap_or_else(|_| Dim::sym(*s))).collect()
}

impl G {
    fn new(opset: i64) -> G {
        G { graph: GraphProto::default(), opset }
    }
    fn input(mut self, name: &str, dtype: DType, shape: &[&str]) -> G {
        let dim = shape
            .iter()
            .map(|s| Dimension {
                value: Some(match s.parse::<i64>() {
                    Ok(v) => DimValue::DimValue(v),
                    Err(_) => DimValue::DimParam(s.to_string()),
                }),
                ..Default::default()
            })
            .collect();
        let ty = TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(dtype.onnx_code()),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        };
        self.graph.input.push(ValueInfoProto { name: Some(name.into()), r#type: Some(ty), ..Default::default() });
        self
    }
    fn ints(mut self, name: &str, v: &[i64]) -> G {
        self.graph.initializer.push(Tensor::from_i64s(v.to_vec()).to_proto(name));
        self
    }
    fn weight(mut self, name: &str, shape: &[usize]) -> G {
        let n = shape.iter().product();
        self.graph.initializer.push(Tensor::new(shape.to_vec(), oto_onnx::TensorData::F32(vec![0.5; n])).unwrap().to_proto(name));
        self
    }
    fn node(mut self, op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> G {
        self.graph.node.push(NodeProto {
            op_type: Some(op.into()),
            name: Some(format!("{op}_{}", self.graph.node.len())),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attrs,
            ..Default::default()
        });
        self
    }
    fn model(mut self) -> Model {
        let last = self.graph.node.last().and_then(|n| n.output.first().cloned());
        self.graph.output.push(ValueInfoProto { name: last, ..Default::default() });
        let proto = ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(self.opset) }],
            graph: Some(self.graph),
            ..Default::default()
        };
        Model::from_proto(proto, "small.onnx", None).unwrap()
    }
}

fn shape_of(model: &Model, value: &str) -> Vec<Dim> {
    let graph = Graph::new(model).unwrap();
    let shapes = infer(&graph).unwrap();
    shapes.shape(value).unwrap_or_else(|| panic!("'{value}' has no shape")).to_vec()
}

fn infer_error(model: &Model) -> String {
    let graph = Graph::new(model).unwrap();
    infer(&graph).unwrap_err().to_string()
}

#[test]
fn reshape_target_from_shape_arithmetic_is_symbolic() {
    // x: [batch, 32, 128] -> Reshape(x, Concat(Gather(Shape(x), 0), [16, 2, -1]))
    let m = G::new(18)
        .input("x", DType::F32, &["batch", "32", "128"])
        .ints("zero", &[0])
        .ints("tail", &[16, 2, -1])
        .node("Shape", &["x"], &["s"], vec![])
        .node("Gather", &["s", "zero"], &["b"], vec![attr_int("axis", 0)])
        .node("Concat", &["b", "tail"], &["target"], vec![attr_int("axis", 0)])
        .node("Reshape", &["x", "target"], &["y"], vec![])
        .model();
    let graph = Graph::new(&m).unwrap();
    let shapes = infer(&graph).unwrap();
    assert_eq!(shapes.shape_value("target").unwrap(), dims(&["batch", "16", "2", "-1"]).as_slice());
    assert_eq!(shapes.shape("y").unwrap(), dims(&["batch", "16", "2", "128"]).as_slice());
    // Not constant (the batch is symbolic), so not in the constants.
    assert!(!shapes.constants.contains_key("target"));
}

/// The TorchScript exporter's `token.expand(n, -1, -1)`: the target's `-1` entries are
/// replaced by ones through `Where(Equal(target, -1), ones, target)`; a symbol (a size)
/// never equals -1.
#[test]
fn expand_with_minus_one_entries_over_symbols() {
    let m = G::new(17)
        .input("x", DType::F32, &["batch", "16", "64"])
        .weight("token", &[1, 1, 64])
        .ints("zero", &[0])
        .ints("minus", &[-1, -1])
        .ints("ones", &[1, 1, 1])
        .ints("neg", &[-1, -1, -1])
        .node("Shape", &["x"], &["s"], vec![])
        .node("Gather", &["s", "zero"], &["b"], vec![attr_int("axis", 0)])
        .node("Concat", &["b", "minus"], &["target"], vec![attr_int("axis", 0)])
        .node("Equal", &["target", "neg"], &["is_neg"], vec![])
        .node("Where", &["is_neg", "ones", "target"], &["shape"], vec![])
        .node("Expand", &["token", "shape"], &["y"], vec![])
        .model();
    let graph = Graph::new(&m).unwrap();
    let shapes = infer(&graph).unwrap();
    assert_eq!(shapes.shape_value("is_neg").unwrap(), dims(&["0", "1", "1"]).as_slice());
    assert_eq!(shapes.shape_value("shape").unwrap(), dims(&["batch", "1", "1"]).as_slice());
    assert_eq!(shapes.shape("y").unwrap(), dims(&["batch", "1", "64"]).as_slice());
    // A symbol against a non-negative size stays undecided (the batch may be 1).
    let m = G::new(17)
        .input("x", DType::F32, &["batch", "16"])
        .ints("ones", &[1, 1])
        .node("Shape", &["x"], &["s"], vec![])
        .node("Equal", &["s", "ones"], &["is_one"], vec![])
        .model();
    let graph = Graph::new(&m).unwrap();
    let shapes = infer(&graph).unwrap();
    assert_eq!(shapes.shape("is_one").unwrap(), dims(&["2"]).as_slice());
    assert!(shapes.shape_value("is_one").is_none());
}

/// The TorchScript exporter's `F.pad` with pads computed from the input's size (Hugging
/// Face Swin pads its `[batch, height, width, channels]` map to a multiple of the window:
/// `(window - width % window) % window`): the pads list is reordered through a `[n, 2]`
/// matrix (Reshape, reversed by Slice, Transpose, Reshape). The remainders are unknown
/// sizes, but the channel axis is not padded, and inference must say so.
fn window_pad_model(input: &[&str]) -> Model {
    let mut g = G::new(17)
        .input("x", DType::F32, input)
        .ints("axis_h", &[1])
        .ints("axis_w", &[2])
        .ints("window", &[4])
        .ints("zero", &[0])
        .ints("pad_len", &[8])
        .ints("rows", &[-1, 2])
        .ints("start", &[-1])
        .ints("end", &[-9_223_372_036_854_775_807])
        .ints("step", &[-1])
        .ints("flat", &[-1])
        .node("Shape", &["x"], &["s"], vec![]);
    let int64_zero = AttributeProto {
        name: Some("value".into()),
        r#type: Some(AttributeType::Tensor as i32),
        t: Some(Tensor::from_i64s(vec![0]).to_proto("")),
        ..Default::default()
    };
    for (axis, out) in [("axis_h", "pad_h"), ("axis_w", "pad_w")] {
        let (size, rem, up) = (format!("{out}_size"), format!("{out}_rem"), format!("{out}_up"));
        g = g
            .node("Gather", &["s", axis], &[&size], vec![attr_int("axis", 0)])
            .node("Mod", &[&size, "window"], &[&rem], vec![])
            .node("Sub", &["window", &rem], &[&up], vec![])
            .node("Mod", &[&up, "window"], &[out], vec![]);
    }
    g.node("Concat", &["zero", "zero", "zero", "pad_w", "zero", "pad_h"], &["pairs6"], vec![attr_int("axis", 0)])
        .node("Shape", &["pairs6"], &["n6"], vec![])
        .node("Sub", &["pad_len", "n6"], &["n_rest"], vec![])
        .node("ConstantOfShape", &["n_rest"], &["rest"], vec![int64_zero])
        .node("Concat", &["pairs6", "rest"], &["pairs"], vec![attr_int("axis", 0)])
        .node("Reshape", &["pairs", "rows"], &["matrix"], vec![])
        .node("Slice", &["matrix", "start", "end", "zero", "step"], &["reversed"], vec![])
        .node("Transpose", &["reversed"], &["by_end"], vec![attr_ints("perm", &[1, 0])])
        .node("Reshape", &["by_end", "flat"], &["pads_i"], vec![])
        .node("Cast", &["pads_i"], &["pads"], vec![attr_int("to", 7)])
        .node("Pad", &["x", "pads"], &["y"], vec![attr_str("mode", "constant")])
        .model()
}

#[test]
fn pads_computed_from_symbolic_sizes_leave_the_channels_known() {
    let m = window_pad_model(&["batch", "height", "width", "8"]);
    let graph = Graph::new(&m).unwrap();
    let shapes = infer(&graph).unwrap();
    let pads = shapes.shape_value("pads").expect("the pads are folded entry by entry");
    assert_eq!(pads.len(), 8, "{pads:?}");
    // Begins all 0; ends: height and width get the (unknown) remainders, in that order.
    for (i, d) in pads.iter().enumerate() {
        assert_eq!(d.known() == Some(0), ![5, 6].contains(&i), "entry {i} of {pads:?}");
    }
    let y = shapes.shape("y").unwrap();
    assert_eq!(y.len(), 4);
    assert_eq!((&y[0], &y[3]), (&Dim::sym("batch"), &Dim::Known(8)), "{y:?}");
    assert!(y[1].symbols().contains(&"height") && y[1] != Dim::sym("height"), "{y:?}");
    assert!(y[2].symbols().contains(&"width") && y[2] != Dim::sym("width"), "{y:?}");
    // With static sizes the same arithmetic folds to numbers: 6 -> 8, 8 stays.
    let m = window_pad_model(&["2", "6", "8", "8"]);
    assert_eq!(shape_of(&m, "y"), dims(&["2", "8", "8", "8"]));
    // Integer Mod takes the divisor's sign: a negative divisor is not folded as a size.
    let m = G::new(17)
        .input("x", DType::F32, &["batch", "8"])
        .ints("minus", &[-3])
        .node("Shape", &["x"], &["s"], vec![])
        .node("Mod", &["s", "minus"], &["r"], vec![])
        .model();
    let graph = Graph::new(&m).unwrap();
    let shapes = infer(&graph).unwrap();
    assert!(shapes.shape_value("r").is_none(), "{:?}", shapes.shape_value("r"));
}

#[test]
fn reshape_zero_copy_and_inferred_axis_over_symbols() {
    let m = G::new(13)
        .input("x", DType::F32, &["batch", "8", "4", "4"])
        .ints("t1", &[0, -1])
        .ints("t2", &[-1, 4])
        .node("Reshape", &["x", "t1"], &["a"], vec![])
        .node("Reshape", &["x", "t2"], &["b"], vec![])
        .model();
    assert_eq!(shape_of(&m, "a"), dims(&["batch", "128"]));
    let b = shape_of(&m, "b");
    assert_eq!(b, vec![Dim::sym("batch").mul(&Dim::Known(32)).unwrap(), Dim::Known(4)]);
    assert_eq!(b[0].eval(&batch2()), Some(64));
    // The element count must agree.
    let bad = G::new(13).input("x", DType::F32, &["2", "3"]).ints("t", &[4, -1]).node("Reshape", &["x", "t"], &["y"], vec![]).model();
    let e = infer_error(&bad);
    assert!(e.contains("Reshape_0") && e.contains("small.onnx") && e.contains("cannot reshape"), "{e}");
}

#[test]
fn broadcasting_and_matmul_batch_dims() {
    let m = G::new(18)
        .input("a", DType::F32, &["batch", "1", "4", "8"])
        .input("b", DType::F32, &["3", "8", "5"])
        .input("c", DType::F32, &["5"])
        .node("MatMul", &["a", "b"], &["ab"], vec![])
        .node("Add", &["ab", "c"], &["y"], vec![])
        .model();
    assert_eq!(shape_of(&m, "ab"), dims(&["batch", "3", "4", "5"]));
    assert_eq!(shape_of(&m, "y"), dims(&["batch", "3", "4", "5"]));
    // 1-D operands: [k] @ [b, k, n] -> [b, n]; [b, m, k] @ [k] -> [b, m].
    let m = G::new(18)
        .input("v", DType::F32, &["8"])
        .input("w", DType::F32, &["batch", "8", "5"])
        .input("u", DType::F32, &["batch", "4", "8"])
        .node("MatMul", &["v", "w"], &["vw"], vec![])
        .node("MatMul", &["u", "v"], &["uv"], vec![])
        .model();
    assert_eq!(shape_of(&m, "vw"), dims(&["batch", "5"]));
    assert_eq!(shape_of(&m, "uv"), dims(&["batch", "4"]));
    let bad = G::new(18)
        .input("a", DType::F32, &["2", "3"])
        .input("b", DType::F32, &["4", "5"])
        .node("MatMul", &["a", "b"], &["y"], vec![])
        .model();
    assert!(infer_error(&bad).contains("MatMul_0"));
    let bad =
        G::new(18).input("a", DType::F32, &["2", "3"]).input("b", DType::F32, &["4", "3"]).node("Add", &["a", "b"], &["y"], vec![]).model();
    let e = infer_error(&bad);
    assert!(e.contains("Add_0") && e.contains("broadcast"), "{e}");
}

#[test]
fn flatten_axis() {
    let m = G::new(13)
        .input("x", DType::F32, &["batch", "3", "4", "5"])
        .node("Flatten", &["x"], &["a"], vec![])
        .node("Flatten", &["x"], &["b"], vec![attr_int("axis", 0)])
        .node("Flatten", &["x"], &["c"], vec![attr_int("axis", -1)])
        .node("Flatten", &["x"], &["d"], vec![attr_int("axis", 4)])
        .model();
    let b = Dim::sym("batch");
    assert_eq!(shape_of(&m, "a"), dims(&["batch", "60"]));
    assert_eq!(shape_of(&m, "b"), vec![Dim::Known(1), b.mul(&Dim::Known(60)).unwrap()]);
    assert_eq!(shape_of(&m, "c"), vec![b.mul(&Dim::Known(12)).unwrap(), Dim::Known(5)]);
    assert_eq!(shape_of(&m, "d"), vec![b.mul(&Dim::Known(60)).unwrap(), Dim::Known(1)]);
}

#[test]
fn split_forms_by_opset() {
    let m = G::new(18)
        .input("x", DType::F32, &["batch", "10"])
        .ints("sizes", &[3, 7])
        .node("Split", &["x", "sizes"], &["a", "b"], vec![attr_int("axis", 1)])
        .node("Split", &["x"], &["c", "d", "e"], vec![attr_int("axis", -1), attr_int("num_outputs", 3)])
        .model();
    assert_eq!(shape_of(&m, "a"), dims(&["batch", "3"]));
    assert_eq!(shape_of(&m, "b"), dims(&["batch", "7"]));
    assert_eq!(shape_of(&m, "c"), dims(&["batch", "4"]));
    assert_eq!(shape_of(&m, "e"), dims(&["batch", "2"]));
    let m = G::new(11)
        .input("x", DType::F32, &["batch", "10"])
        .node("Split", &["x"], &["a", "b"], vec![attr_int("axis", 1), attr_ints("split", &[4, 6])])
        .model();
    assert_eq!(shape_of(&m, "b"), dims(&["batch", "6"]));
    let bad = G::new(11)
        .input("x", DType::F32, &["batch", "10"])
        .node("Split", &["x"], &["a", "b"], vec![attr_int("axis", 1), attr_ints("split", &[4, 5])])
        .model();
    assert!(infer_error(&bad).contains("Split_0"));
}

#[test]
fn conv_pads_strides_dilations_auto_pad() {
    let m = G::new(18)
        .input("x", DType::F32, &["batch", "4", "17", "20"])
        .weight("w", &[8, 4, 3, 3])
        .weight("wg", &[8, 2, 3, 3])
        .node("Conv", &["x", "w"], &["plain"], vec![])
        .node("Conv", &["x", "w"], &["padded"], vec![attr_ints("pads", &[1, 1, 1, 1])])
        .node("Conv", &["x", "w"], &["strided"], vec![attr_ints("pads", &[1, 0, 1, 2]), attr_ints("strides", &[2, 3])])
        .node("Conv", &["x", "w"], &["dilated"], vec![attr_ints("dilations", &[2, 2])])
        .node("Conv", &["x", "w"], &["same"], vec![attr_str("auto_pad", "SAME_UPPER"), attr_ints("strides", &[2, 2])])
        .node("Conv", &["x", "w"], &["valid"], vec![attr_str("auto_pad", "VALID"), attr_ints("strides", &[2, 2])])
        .node("Conv", &["x", "wg"], &["grouped"], vec![attr_int("group", 2)])
        .model();
    assert_eq!(shape_of(&m, "plain"), dims(&["batch", "8", "15", "18"]));
    assert_eq!(shape_of(&m, "padded"), dims(&["batch", "8", "17", "20"]));
    // (17 + 2 - 3) / 2 + 1 = 9; (20 + 2 - 3) / 3 + 1 = 7
    assert_eq!(shape_of(&m, "strided"), dims(&["batch", "8", "9", "7"]));
    assert_eq!(shape_of(&m, "dilated"), dims(&["batch", "8", "13", "16"]));
    assert_eq!(shape_of(&m, "same"), dims(&["batch", "8", "9", "10"]));
    assert_eq!(shape_of(&m, "valid"), dims(&["batch", "8", "8", "9"]));
    assert_eq!(shape_of(&m, "grouped"), dims(&["batch", "8", "15", "18"]));
    // Channels that do not match the weight are an error naming the node.
    let bad = G::new(18)
        .input("x", DType::F32, &["batch", "3", "8", "8"])
        .weight("w", &[8, 4, 3, 3])
        .node("Conv", &["x", "w"], &["y"], vec![])
        .model();
    let e = infer_error(&bad);
    assert!(e.contains("Conv_0") && e.contains("channels"), "{e}");
}

#[test]
fn conv_transpose_output_padding_and_pooling() {
    let m = G::new(18)
        .input("x", DType::F32, &["batch", "16", "8", "8"])
        .weight("w", &[16, 4, 3, 3])
        .node(
            "ConvTranspose",
            &["x", "w"],
            &["up"],
            vec![attr_ints("strides", &[2, 2]), attr_ints("pads", &[1, 1, 1, 1]), attr_ints("output_padding", &[1, 1])],
        )
        .node("ConvTranspose", &["x", "w"], &["grouped"], vec![attr_int("group", 2)])
        .node(
            "MaxPool",
            &["x"],
            &["mp"],
            vec![attr_ints("kernel_shape", &[3, 3]), attr_ints("strides", &[2, 2]), attr_ints("pads", &[1, 1, 1, 1])],
        )
        .node(
            "AveragePool",
            &["x"],
            &["ceil"],
            vec![attr_ints("kernel_shape", &[3, 3]), attr_ints("strides", &[2, 2]), attr_int("ceil_mode", 1)],
        )
        .node("GlobalAveragePool", &["x"], &["gap"], vec![])
        .model();
    // 2*(8-1) + 1 + 3 - 2 = 16
    assert_eq!(shape_of(&m, "up"), dims(&["batch", "4", "16", "16"]));
    assert_eq!(shape_of(&m, "grouped"), dims(&["batch", "8", "10", "10"]));
    assert_eq!(shape_of(&m, "mp"), dims(&["batch", "16", "4", "4"]));
    // ceil((8 - 3) / 2) + 1 = 4
    assert_eq!(shape_of(&m, "ceil"), dims(&["batch", "16", "4", "4"]));
    assert_eq!(shape_of(&m, "gap"), dims(&["batch", "16", "1", "1"]));
}

#[test]
fn slice_squeeze_unsqueeze_reduce_transpose() {
    let m = G::new(18)
        .input("x", DType::F32, &["batch", "6", "10"])
        .ints("st", &[1, -4])
        .ints("en", &[i64::MAX, 100])
        .ints("ax", &[1, 2])
        .ints("ax0", &[0])
        .ints("ax_last", &[-1])
        .node("Slice", &["x", "st", "en", "ax"], &["s"], vec![])
        .node("Unsqueeze", &["x", "ax0"], &["u"], vec![])
        .node("Squeeze", &["u", "ax0"], &["q"], vec![])
        .node("ReduceMean", &["x", "ax_last"], &["r"], vec![])
        .node("ReduceSum", &["x", "ax_last"], &["r0"], vec![attr_int("keepdims", 0)])
        .node("Transpose", &["x"], &["t"], vec![attr_ints("perm", &[0, 2, 1])])
        .model();
    assert_eq!(shape_of(&m, "s"), dims(&["batch", "5", "4"]));
    assert_eq!(shape_of(&m, "u"), dims(&["1", "batch", "6", "10"]));
    assert_eq!(shape_of(&m, "q"), dims(&["batch", "6", "10"]));
    assert_eq!(shape_of(&m, "r"), dims(&["batch", "6", "1"]));
    assert_eq!(shape_of(&m, "r0"), dims(&["batch", "6"]));
    assert_eq!(shape_of(&m, "t"), dims(&["batch", "10", "6"]));
}

#[test]
fn constant_subgraphs_fold() {
    // Range(0, 4, 1) -> Unsqueeze -> Mul by 3 -> Cast to float: fully constant.
    let m = G::new(18)
        .input("x", DType::F32, &["batch", "4"])
        .ints("zero", &[0])
        .ints("four", &[4])
        .ints("one", &[1])
        .ints("three", &[3])
        .node("Squeeze", &["zero"], &["z"], vec![])
        .node("Squeeze", &["four"], &["f"], vec![])
        .node("Squeeze", &["one"], &["o"], vec![])
        .node("Range", &["z", "f", "o"], &["r"], vec![])
        .node("Mul", &["r", "three"], &["m"], vec![])
        .node("Cast", &["m"], &["c"], vec![attr_int("to", DType::F32.onnx_code() as i64)])
        .node("Add", &["x", "c"], &["y"], vec![])
        .model();
    let graph = Graph::new(&m).unwrap();
    let shapes = infer(&graph).unwrap();
    assert_eq!(shapes.constants["m"].as_i64().unwrap(), &[0, 3, 6, 9]);
    assert_eq!(shapes.constants["c"].as_f32().unwrap(), &[0.0, 3.0, 6.0, 9.0]);
    assert_eq!(shapes.shape_value("m").unwrap(), dims(&["0", "3", "6", "9"]).as_slice());
    assert_eq!(shapes.shape("y").unwrap(), dims(&["batch", "4"]).as_slice());
    assert!(!shapes.constants.contains_key("y"));
}

/// TorchScript's `repeat_interleave(x, 2, dim)`: a mask `Range(0, max(repeats)) <
/// repeats` whose `NonZero` indices gather the rows. Every size is static, so the mask,
/// its maximum and the indices fold, and the gathered value keeps a known shape.
#[test]
fn repeat_interleave_mask_folds_through_reduce_max_and_non_zero() {
    let m = G::new(17)
        .input("x", DType::F32, &["batch", "3"])
        .ints("three", &[3])
        .ints("zero", &[0])
        .ints("one", &[1])
        .ints("axis0", &[0])
        .node(
            "ConstantOfShape",
            &["three"],
            &["reps"],
            vec![AttributeProto {
                name: Some("value".into()),
                r#type: Some(4),
                t: Some(oto_onnx::proto::TensorProto {
                    dims: vec![1],
                    data_type: Some(DType::I64.onnx_code()),
                    int64_data: vec![2],
                    ..Default::default()
                }),
                ..Default::default()
            }],
        )
        .node("ReduceMax", &["reps"], &["most"], vec![attr_int("keepdims", 0)])
        .node("Squeeze", &["zero"], &["z"], vec![])
        .node("Squeeze", &["one"], &["o"], vec![])
        .node("Range", &["z", "most", "o"], &["r"], vec![])
        .node("Unsqueeze", &["r", "axis0"], &["row"], vec![])
        .node("Unsqueeze", &["reps", "one"], &["col"], vec![])
        .node("Less", &["row", "col"], &["mask"], vec![])
        .node("NonZero", &["mask"], &["nz"], vec![])
        .node("Transpose", &["nz"], &["idx"], vec![attr_ints("perm", &[1, 0])])
        .node("Transpose", &["x"], &["xt"], vec![attr_ints("perm", &[1, 0])])
        .node("Unsqueeze", &["xt", "one"], &["xu"], vec![])
        .node("Expand", &["xu", "pair"], &["xe"], vec![])
        .ints("pair", &[1, 2, 1])
        .node("GatherND", &["xe", "idx"], &["g"], vec![])
        .model();
    let graph = Graph::new(&m).unwrap();
    let shapes = infer(&graph).unwrap();
    assert_eq!(shapes.constants["most"].as_i64().unwrap(), &[2]);
    // mask [[1, 1], [1, 1], [1, 1]] (3 rows of 2 repeats): 6 hits, row and column.
    assert_eq!(shapes.constants["nz"].as_i64().unwrap(), &[0, 0, 1, 1, 2, 2, 0, 1, 0, 1, 0, 1]);
    assert_eq!(shapes.shape("nz").unwrap(), dims(&["2", "6"]).as_slice());
    assert_eq!(shapes.shape("g").unwrap(), dims(&["6", "batch"]).as_slice());
}

/// DeBERTa's relative-position window: a table sliced from `16 - min(max(q, k), 16)`, a
/// bound inference does not follow. The sliced axis gets a size of its own and the
/// others keep theirs, so what reads the slice still has shapes.
#[test]
fn slice_bounds_known_only_at_run_time_keep_the_other_axes() {
    let m = G::new(17)
        .input("x", DType::F32, &["batch", "seq", "8"])
        .weight("table", &[32, 8])
        .ints("one", &[1])
        .ints("two", &[2])
        .ints("span", &[16])
        .ints("axis0", &[0])
        .node("Shape", &["x"], &["s"], vec![])
        .node("Slice", &["s", "one", "two"], &["len"], vec![])
        .node("Max", &["len", "len"], &["longest"], vec![])
        .node("Min", &["longest", "span"], &["window"], vec![])
        .node("Sub", &["span", "window"], &["start"], vec![])
        .node("Add", &["span", "window"], &["end"], vec![])
        .node("Slice", &["table", "start", "end", "axis0"], &["rel"], vec![])
        .node("MatMul", &["x", "rel_t"], &["scores"], vec![])
        .node("Transpose", &["rel"], &["rel_t"], vec![attr_ints("perm", &[1, 0])])
        .model();
    let graph = Graph::new(&m).unwrap();
    let shapes = infer(&graph).unwrap();
    let rel = shapes.shape("rel").unwrap();
    assert!(matches!(rel, [Dim::Sym(_), Dim::Known(8)]), "{rel:?}");
    let scores = shapes.shape("scores").unwrap();
    assert_eq!(&scores[..2], dims(&["batch", "seq"]).as_slice());
    assert_eq!(scores[2], rel[0]);
}

/// The TorchScript exporter writes `q.repeat(1, B // b, 1)` as `Tile` with counts from
/// `OneHot([1], 3, [1, B // b])`: the counts are followed through the OneHot, so the
/// Tile's output (GCViT's global query, repeated per window) keeps its shape.
#[test]
fn repeat_counts_written_as_one_hot_are_followed() {
    let m = G::new(17)
        .input("x", DType::F32, &["batch", "2", "8"])
        .input("windows", DType::F32, &["4*batch", "8"])
        .ints("at", &[1])
        .ints("depth", &[3])
        .ints("off", &[1])
        .ints("zero", &[0])
        .ints("flat", &[-1])
        .node("Shape", &["windows"], &["ws"], vec![])
        .node("Shape", &["x"], &["xs"], vec![])
        .node("Gather", &["ws", "zero"], &["nw"], vec![])
        .node("Gather", &["xs", "zero"], &["nb"], vec![])
        .node("Div", &["nw", "nb"], &["per"], vec![])
        .node("Concat", &["off", "per"], &["on_off"], vec![attr_int("axis", 0)])
        .node("OneHot", &["at", "depth", "on_off"], &["hot"], vec![])
        .node("Reshape", &["hot", "flat"], &["reps"], vec![])
        .node("Tile", &["x", "reps"], &["tiled"], vec![])
        .model();
    let graph = Graph::new(&m).unwrap();
    let shapes = infer(&graph).unwrap();
    assert_eq!(shapes.shape_value("reps").map(<[Dim]>::to_vec), Some(vec![Dim::Known(1), Dim::Known(4), Dim::Known(1)]));
    assert_eq!(shapes.shape("tiled").map(<[Dim]>::to_vec), Some(dims(&["batch", "8", "8"])));
}

#[test]
fn unknown_operators_leave_outputs_untyped() {
    let m = G::new(18)
        .input("x", DType::F32, &["batch", "4"])
        .node("FancyOp", &["x"], &["f"], vec![])
        .node("Relu", &["f"], &["y"], vec![])
        .model();
    let graph = Graph::new(&m).unwrap();
    let shapes = infer(&graph).unwrap();
    assert_eq!(shapes.types["f"], oto_onnx::ValueType::default());
    assert_eq!(shapes.types["y"], oto_onnx::ValueType::default());
}

#[test]
fn pad_resize_concat_gemm() {
    let m = G::new(18)
        .input("x", DType::F32, &["batch", "3", "8", "8"])
        .input("a", DType::F32, &["batch", "16"])
        .weight("w", &[10, 16])
        .ints("pads", &[0, 0, 1, 2, 0, 0, 3, 4])
        .weight("scales", &[4])
        .node("Pad", &["x", "pads"], &["p"], vec![])
        .node("Concat", &["x", "p"], &["bad_concat_skipped"], vec![attr_int("axis", 1)])
        .model();
    let e = infer_error(&m);
    assert!(e.contains("Concat_1"), "{e}");
    let m = G::new(18)
        .input("x", DType::F32, &["batch", "3", "8", "8"])
        .input("a", DType::F32, &["batch", "16"])
        .weight("w", &[10, 16])
        .ints("pads", &[0, 0, 1, 2, 0, 0, 3, 4])
        .node("Pad", &["x", "pads"], &["p"], vec![])
        .node("Concat", &["x", "x"], &["c"], vec![attr_int("axis", 1)])
        .node("Gemm", &["a", "w"], &["g"], vec![attr_int("transB", 1)])
        .model();
    assert_eq!(shape_of(&m, "p"), dims(&["batch", "3", "12", "14"]));
    assert_eq!(shape_of(&m, "c"), dims(&["batch", "6", "8", "8"]));
    assert_eq!(shape_of(&m, "g"), dims(&["batch", "10"]));
}

// ---------------------------------------------------------------------------------
// Parameter count and MACs
// ---------------------------------------------------------------------------------

/// Float initializers that PyTorch does not count as parameters and that no shape
/// property tells apart from weights (see cost.rs): the ones/zeros scale and bias of the
/// InstanceNormalization that GroupNorm(4, 16) and GroupNorm(8, 32) export to
/// (2 * (4 + 8)); LLaMA's rotary `inv_freq` buffer (head dim 16 / 2 = 8 values). (The
/// causal masks and rotary tables are computed from the dynamic sequence length.)
fn constant_excess(name: &str) -> u64 {
    match name {
        "llama_tiny" => 8,
        "groupnorm" => 2 * (4 + 8),
        _ => 0,
    }
}

#[test]
fn zoo_parameter_counts_match_pytorch() {
    for entry in zoo_index()["models"].as_array().unwrap() {
        let name = entry["name"].as_str().unwrap();
        let model = Model::load(zoo_dir().join(format!("{name}.onnx"))).unwrap();
        let graph = Graph::new(&model).unwrap();
        let count = oto_onnx::cost::parameter_count(&graph);
        assert_eq!(count.parameters, entry["exported_params"].as_u64().unwrap() + constant_excess(name), "{name}: {count:?}");
    }
}

/// MACs per batch element, computed independently with PyTorch forward hooks on the
/// zoo's modules (Conv2d: output elements * in/groups * kh * kw; ConvTranspose2d: input
/// elements * out/groups * kh * kw; Linear: output elements * in_features).
#[test]
fn zoo_macs_match_pytorch_hooks() {
    let expected: &[(&str, u64)] = &[
        ("mlp", 6_784),
        ("demo_cnn", 599_680),
        ("resnet18", 148_050_944),
        ("resnet50", 333_664_256),
        ("vgg16_bn", 1_277_992_960),
        ("mobilenet_v2", 24_461_312),
        ("densenet121", 231_286_784),
        ("grouped_conv", 1_540_576),
        ("convtranspose_in", 856_064),
        ("flatten_linear", 120_640),
    ];
    for (name, want) in expected {
        let model = Model::load(zoo_dir().join(format!("{name}.onnx"))).unwrap();
        let graph = Graph::new(&model).unwrap();
        let shapes = infer(&graph).unwrap();
        let est = oto_onnx::cost::macs(&graph, &shapes);
        assert!(est.unresolved.is_empty(), "{name}: {:?}", est.unresolved);
        assert_eq!(est.total, *want, "{name}: {:?}", est.by_op);
    }
}

#[test]
fn gather_nd_and_scatter_nd() {
    // data [batch, 5, 6, 7], indices [batch, 3, 2] with batch_dims 1: rows of 7.
    let m = G::new(13)
        .input("x", DType::F32, &["batch", "5", "6", "7"])
        .input("i", DType::I64, &["batch", "3", "2"])
        .node("GatherND", &["x", "i"], &["y"], vec![attr_int("batch_dims", 1)])
        .model();
    assert_eq!(shape_of(&m, "y"), dims(&["batch", "3", "7"]));
    let m = G::new(13)
        .input("x", DType::F32, &["4", "5", "6"])
        .input("i", DType::I64, &["2", "3", "1"])
        .node("GatherND", &["x", "i"], &["y"], vec![])
        .model();
    assert_eq!(shape_of(&m, "y"), dims(&["2", "3", "5", "6"]));
    // Index rows longer than the data's rank are an error naming the node.
    let bad = G::new(13)
        .input("x", DType::F32, &["4", "5"])
        .input("i", DType::I64, &["2", "3"])
        .node("GatherND", &["x", "i"], &["y"], vec![])
        .model();
    let e = infer_error(&bad);
    assert!(e.contains("GatherND_0") && e.contains("cannot index"), "{e}");
    // ScatterND keeps the data shape; updates must be indices[:-1] + data[k:].
    let m = G::new(16)
        .input("x", DType::F32, &["4", "5", "6"])
        .input("i", DType::I64, &["3", "1"])
        .input("u", DType::F32, &["3", "5", "6"])
        .node("ScatterND", &["x", "i", "u"], &["y"], vec![attr_str("reduction", "add")])
        .model();
    assert_eq!(shape_of(&m, "y"), dims(&["4", "5", "6"]));
    let bad = G::new(16)
        .input("x", DType::F32, &["4", "5", "6"])
        .input("i", DType::I64, &["3", "2"])
        .input("u", DType::F32, &["3", "5", "6"])
        .node("ScatterND", &["x", "i", "u"], &["y"], vec![])
        .model();
    let e = infer_error(&bad);
    assert!(e.contains("ScatterND_0") && e.contains("updates have shape [3, 5, 6], expected [3, 6]"), "{e}");
}

/// TorchScript writes `t.expand(batch, -1)` as `Expand(t, Where(Equal(s, -1), ones, s))`
/// with `s` built from `Shape(x)`: a symbolic size is never -1, so the target is `s`.
#[test]
fn expand_to_a_shape_tested_against_minus_one() {
    use oto_onnx::builder::{batch_dims, GraphBuilder};
    let mut b = GraphBuilder::new("expand");
    let x = b.input("x", DType::I64, &batch_dims(&[16]));
    let t = b.initializer("t", Tensor::new(vec![1, 16], oto_onnx::TensorData::I64(vec![0; 16])).unwrap());
    let s = b.node("Shape", &[&x], &[]);
    let minus = b.ints("minus_one", &[-1]);
    let eq = b.node("Equal", &[&s, &minus], &[]);
    let ones = b.ints("ones", &[1, 1]);
    let target = b.node("Where", &[&eq, &ones, &s], &[]);
    let y = b.node("Expand", &[&t, &target], &["y"]);
    b.output(&y, DType::I64, &batch_dims(&[16]));
    let model = b.build().unwrap();
    assert_eq!(shape_of(&model, "y"), dims(&["batch", "16"]));
}

/// Symbolic dimensions whose products leave the 64-bit range: inference fails with an
/// error naming the file, the node and the operation, instead of panicking or wrapping.
#[test]
fn symbolic_overflow_is_an_error_naming_the_node_and_value() {
    let m = G::new(13)
        .input("x", DType::F32, &["4294967296*a", "4294967296*b"])
        .node("Flatten", &["x"], &["y"], vec![attr_int("axis", 0)])
        .model();
    let e = infer_error(&m);
    assert!(e.contains("small.onnx") && e.contains("Flatten_0") && e.contains("4294967296*a*4294967296*b"), "{e}");
    assert!(e.contains("overflows a 64-bit integer"), "{e}");
    // A literal product that overflows is refused where it is read, naming the input.
    let m = G::new(13).input("x", DType::F32, &["99999999999*99999999999"]).node("Relu", &["x"], &["y"], vec![]).model();
    let e = infer_error(&m);
    assert!(e.contains("small.onnx") && e.contains("'x'") && e.contains("99999999999*99999999999"), "{e}");
    // Sums and quotients stay symbolic and exact: Slice(x, 1, end) then a strided Conv
    // gives floor((seq-1-3)/2)+1, in canonical form, which the binding evaluates.
    let m = G::new(13)
        .input("x", DType::F32, &["batch", "3", "seq"])
        .ints("starts", &[1])
        .ints("ends", &[i64::MAX])
        .ints("axes", &[2])
        .weight("w", &[4, 3, 3])
        .node("Slice", &["x", "starts", "ends", "axes"], &["s"], vec![])
        .node("Conv", &["s", "w"], &["y"], vec![attr_ints("strides", &[2])])
        .model();
    let y = shape_of(&m, "y");
    assert_eq!(y[2].to_string(), "(seq/2)-1");
    let bind: HashMap<String, i64> = [("batch".to_string(), 2), ("seq".to_string(), 16)].into();
    // seq 16: sliced 15, kernel 3, stride 2: (15 - 3) / 2 + 1 = 7.
    assert_eq!(y[2].eval(&bind), Some(7));
}

/// TensorFlow's `same` padding as the TorchScript exporter writes timm's `tf_` models
/// (`pad = max((ceil(h / s) - 1) * s + (k - 1) * d + 1 - h, 0)` in floats from `Shape`,
/// clipped at 0, halved, cast to integers and laid out as `Pad`'s pads), on an image of
/// `height` x `width`.
fn same_padding_model(height: &str, width: &str) -> Model {
    let scalar = |v: f32| Tensor::new(vec![], oto_onnx::TensorData::F32(vec![v])).unwrap();
    let mut g = G::new(17).input("x", DType::F32, &["batch", "3", height, width]).ints("zero4", &[0, 0, 0, 0]).ints("pairs", &[-1, 2]);
    g = g.ints("rev_start", &[-1]).ints("rev_end", &[i64::MIN + 1]).ints("rev_axes", &[0]).ints("rev_step", &[-1]).ints("flat", &[-1]);
    for (name, v) in [("two", 2.0), ("one", 1.0), ("three", 3.0), ("zero", 0.0)] {
        g.graph.initializer.push(scalar(v).to_proto(name));
    }
    g = g.ints("axes0", &[0]).weight("w", &[4, 3, 3, 3]).node("Shape", &["x"], &["shape"], vec![]);
    // Per spatial axis (height 2, width 3): the pad before and after.
    let mut pieces = Vec::new();
    for axis in [2i64, 3] {
        let p = |s: &str| format!("{s}{axis}");
        g = g
            .ints(&p("at"), &[axis])
            .node("Gather", &["shape", &p("at")], &[&p("size")], vec![attr_int("axis", 0)])
            .node("Squeeze", &[&p("size"), "axes0"], &[&p("n")], vec![])
            .node("Cast", &[&p("n")], &[&p("f")], vec![attr_int("to", 1)])
            .node("Div", &[&p("f"), "two"], &[&p("q")], vec![])
            .node("Ceil", &[&p("q")], &[&p("c")], vec![])
            .node("Sub", &[&p("c"), "one"], &[&p("c1")], vec![])
            .node("Mul", &[&p("c1"), "two"], &[&p("span")], vec![])
            .node("Add", &[&p("span"), "three"], &[&p("need")], vec![])
            .node("Sub", &[&p("need"), &p("f")], &[&p("total")], vec![])
            .node("Clip", &[&p("total"), "zero", ""], &[&p("clipped")], vec![])
            .node("Div", &[&p("clipped"), "two"], &[&p("half")], vec![])
            .node("Cast", &[&p("half")], &[&p("before")], vec![attr_int("to", 7)])
            .node("Cast", &[&p("clipped")], &[&p("total_i")], vec![attr_int("to", 7)])
            .node("Sub", &[&p("total_i"), &p("before")], &[&p("after")], vec![])
            .node("Unsqueeze", &[&p("before"), "axes0"], &[&p("b1")], vec![])
            .node("Unsqueeze", &[&p("after"), "axes0"], &[&p("a1")], vec![]);
        pieces.push(p("b1"));
        pieces.push(p("a1"));
    }
    // [w_before, w_after, h_before, h_after] then zeros for the batch and channels,
    // as pairs reversed and transposed into ONNX's [starts..., ends...].
    let order = [pieces[2].as_str(), pieces[3].as_str(), pieces[0].as_str(), pieces[1].as_str(), "zero4"];
    g.node("Concat", &order, &["torch_pads"], vec![attr_int("axis", 0)])
        .node("Reshape", &["torch_pads", "pairs"], &["paired"], vec![])
        .node("Slice", &["paired", "rev_start", "rev_end", "rev_axes", "rev_step"], &["reversed"], vec![])
        .node("Transpose", &["reversed"], &["onnx_pads2"], vec![attr_ints("perm", &[1, 0])])
        .node("Reshape", &["onnx_pads2", "flat"], &["pads"], vec![])
        .node("Pad", &["x", "pads"], &["padded"], vec![])
        .node("Conv", &["padded", "w"], &["y"], vec![attr_ints("strides", &[2, 2])])
        .model()
}

/// With the image size fixed, every pad folds, so the padded image and what follows have
/// shapes (the Clip stopped the folding: the whole network was unknown to the analysis).
#[test]
fn same_padding_computed_from_the_image_size_folds() {
    let m = same_padding_model("7", "9");
    // Height 7: ceil(3.5) = 4 windows need 9 rows, pads 1 and 1; width 9: 5 windows need
    // 11 columns, pads 1 and 1. The stride-2 convolution then gives 4 x 5, as TensorFlow.
    assert_eq!(shape_of(&m, "padded"), dims(&["batch", "3", "9", "11"]));
    assert_eq!(shape_of(&m, "y"), dims(&["batch", "4", "4", "5"]));
}

/// With a symbolic image size, the pads computed in floats are sizes no rule tells (fresh
/// symbols), but the batch's and the channels' pads are the constant zeros beside them:
/// the padded image keeps its batch and channels, and so does the convolution after it
/// (its channels were unknown, and the network with them).
#[test]
fn same_padding_of_a_symbolic_image_size_keeps_the_channels() {
    let m = same_padding_model("h", "w");
    let shapes = infer(&Graph::new(&m).unwrap()).unwrap();
    let pads = shapes.shape_value("pads").expect("the pads' entries");
    assert_eq!(pads.len(), 8);
    for i in [0, 1, 4, 5] {
        assert_eq!(pads[i], Dim::Known(0), "{pads:?}");
    }
    for i in [2, 3, 6, 7] {
        assert!(pads[i].known().is_none(), "{pads:?}");
    }
    for (value, channels) in [("padded", 3), ("y", 4)] {
        let s = shape_of(&m, value);
        assert_eq!(s.len(), 4, "{value}: {s:?}");
        assert_eq!((&s[0], &s[1]), (&Dim::sym("batch"), &Dim::Known(channels)), "{value}: {s:?}");
        assert!(s[2].known().is_none() && s[3].known().is_none(), "{value}: {s:?}");
    }
}
