//! Bad input gets an error, never a panic, and the error names the file and the
//! node, value or initializer at fault. Broken models are made by editing a decoded
//! zoo model, then written to a file and loaded the way users load them.

use oto_onnx::proto::{tensor_shape_proto::dimension::Value as DimValue, type_proto, ModelProto, NodeProto};
use oto_onnx::{Graph, Model};
use prost::Message;
use std::path::{Path, PathBuf};

fn zoo_model(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../graphs/zoo").join(format!("{name}.onnx"));
    assert!(path.exists(), "{}: missing; run `make graphs`", path.display());
    path
}

fn decoded(name: &str) -> ModelProto {
    ModelProto::decode(std::fs::read(zoo_model(name)).unwrap().as_slice()).unwrap()
}

/// Where a broken model is refused.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    Load,
    Graph,
}

/// Writes `proto` to a file, loads it and builds its graph; returns the error's
/// message after checking it names the file and every string of `names`.
fn refused(proto: &ModelProto, stage: Stage, names: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.onnx");
    std::fs::write(&path, proto.encode_to_vec()).unwrap();
    let err = match Model::load(&path) {
        Err(e) => {
            assert_eq!(stage, Stage::Load, "refused at load, expected at Graph::new: {e}");
            e
        }
        Ok(model) => {
            assert_eq!(stage, Stage::Graph, "loaded, but should have been refused at load");
            match Graph::new(&model) {
                Err(e) => e,
                Ok(_) => panic!("Graph::new accepted a broken model (expected an error naming {names:?})"),
            }
        }
    };
    let msg = err.to_string();
    assert!(msg.starts_with(&path.display().to_string()), "{msg:?} does not start with the file");
    for name in names {
        assert!(msg.contains(name), "{msg:?} does not name {name:?}");
    }
    msg
}

fn graph_of(m: &mut ModelProto) -> &mut oto_onnx::proto::GraphProto {
    m.graph.as_mut().unwrap()
}

/// A node of demo_cnn with a name and at least one input produced by another node.
fn inner_node(m: &ModelProto) -> usize {
    let g = m.graph.as_ref().unwrap();
    let produced: Vec<&str> = g.node.iter().flat_map(|n| n.output.iter().map(String::as_str)).collect();
    g.node.iter().position(|n| n.input.iter().any(|i| produced.contains(&i.as_str()))).unwrap()
}

fn label(node: &NodeProto) -> String {
    oto_onnx::node_label(node)
}

#[test]
fn truncated_files_are_refused_at_every_length() {
    let path = zoo_model("mlp");
    let bytes = std::fs::read(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("truncated.onnx");
    // Every length through Model::from_bytes, a stride of them through a real file.
    let mut refused = 0;
    for len in 0..bytes.len() {
        let name = format!("mlp-cut-{len}.onnx");
        match Model::from_bytes(bytes[..len].to_vec(), &name) {
            Err(e) => {
                assert!(e.to_string().starts_with(&name), "{e}");
                refused += 1;
            }
            // A cut exactly between two fields is a valid, shorter message: it must
            // then still be a consistent model or be refused by Graph::new.
            Ok(model) => {
                if let Err(e) = Graph::new(&model) {
                    assert!(e.to_string().starts_with(&name), "{e}");
                }
            }
        }
        if len % 97 == 0 {
            std::fs::write(&file, &bytes[..len]).unwrap();
            if let Err(e) = Model::load(&file) {
                assert!(e.to_string().contains(&file.display().to_string()), "{e}");
            }
        }
    }
    assert!(refused > bytes.len() * 9 / 10, "only {refused} of {} truncations refused", bytes.len());
}

#[test]
fn empty_random_and_non_model_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    let msg = Model::load(&empty).unwrap_err().to_string();
    assert!(msg.contains("empty.onnx"), "{msg}");

    // Seeded random bytes, many lengths.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..500 {
        let len = (next() % 4096) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let name = format!("random-{i}.onnx");
        if let Err(e) = Model::from_bytes(bytes, &name).and_then(|m| Graph::new(&m).map(|_| ())) {
            assert!(e.to_string().starts_with(&name), "{e}");
        }
    }
    let text = dir.path().join("text.onnx");
    std::fs::write(&text, "this is not a model\n").unwrap();
    let msg = Model::load(&text).unwrap_err().to_string();
    assert!(msg.contains("text.onnx") && msg.contains("not an ONNX model"), "{msg}");
}

#[test]
fn missing_file_and_directory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.onnx");
    let msg = Model::load(&missing).unwrap_err().to_string();
    assert!(msg.contains("missing.onnx"), "{msg}");
    let msg = Model::load(dir.path()).unwrap_err().to_string();
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
}

#[test]
fn a_node_reading_a_missing_value() {
    let mut m = decoded("demo_cnn");
    let i = inner_node(&m);
    graph_of(&mut m).node[i].input[0] = "nobody_makes_this".into();
    let node = label(&graph_of(&mut m).node[i]);
    refused(&m, Stage::Graph, &[&node, "'nobody_makes_this'", "no graph input, initializer or node produces"]);
}

#[test]
fn a_cycle() {
    let mut m = decoded("demo_cnn");
    let i = inner_node(&m);
    let g = graph_of(&mut m);
    // Node i reads a value of a later node: i -> ... -> later -> i.
    let later = g.node.len() - 1;
    let back = g.node[later].output[0].clone();
    g.node[i].input[0] = back.clone();
    let msg = refused(&m, Stage::Graph, &[&format!("'{back}'"), "acyclic"]);
    assert!(msg.contains(&label(&m.graph.as_ref().unwrap().node[i])), "{msg}");

    // A node reading its own output.
    let mut m = decoded("demo_cnn");
    let i = inner_node(&m);
    let g = graph_of(&mut m);
    let own = g.node[i].output[0].clone();
    g.node[i].input[0] = own.clone();
    let node = label(&g.node[i]);
    refused(&m, Stage::Graph, &[&node, &format!("'{own}'"), "acyclic"]);
}

#[test]
fn two_producers_of_one_value() {
    let mut m = decoded("demo_cnn");
    let i = inner_node(&m);
    let g = graph_of(&mut m);
    let taken = g.node[0].output[0].clone();
    g.node[i].output[0] = taken.clone();
    let (first, second) = (label(&g.node[0]), label(&g.node[i]));
    refused(&m, Stage::Graph, &[&first, &second, &format!("'{taken}'"), "one producer"]);

    // An initializer and a node output with one name.
    let mut m = decoded("demo_cnn");
    let g = graph_of(&mut m);
    let init = g.initializer[0].name.clone().unwrap();
    g.node[0].output[0] = init.clone();
    let node = label(&g.node[0]);
    refused(&m, Stage::Graph, &[&node, &format!("'{init}', which initializer '{init}' already produces")]);
}

#[test]
fn initializer_data_disagreeing_with_its_shape() {
    // raw_data one element short.
    let mut m = decoded("demo_cnn");
    let t = &mut graph_of(&mut m).initializer[0];
    let name = t.name.clone().unwrap();
    let raw = t.raw_data.clone().unwrap();
    t.raw_data = Some(raw.slice(..raw.len() - 4));
    refused(&m, Stage::Load, &[&format!("initializer '{name}'"), &format!("holds {} bytes", raw.len() - 4)]);

    // The same data in float_data, with one element too many.
    let mut m = decoded("demo_cnn");
    let t = &mut graph_of(&mut m).initializer[0];
    let raw = t.raw_data.take().unwrap();
    t.float_data = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    t.float_data.push(1.0);
    refused(&m, Stage::Load, &[&format!("initializer '{name}'"), &format!("holds {} bytes", raw.len() + 4)]);

    // int64_data for an int64 tensor, one short.
    let mut m = decoded("demo_cnn");
    let g = graph_of(&mut m);
    g.initializer.push(oto_onnx::proto::TensorProto {
        name: Some("shape_const".into()),
        data_type: Some(7),
        dims: vec![3],
        int64_data: vec![1, 2],
        ..Default::default()
    });
    refused(&m, Stage::Load, &["initializer 'shape_const'", "holds 16 bytes", "needs 24"]);
}

#[test]
fn negative_and_overflowing_dims() {
    let mut m = decoded("demo_cnn");
    let t = &mut graph_of(&mut m).initializer[0];
    let name = t.name.clone().unwrap();
    t.dims[0] = -3;
    refused(&m, Stage::Load, &[&format!("initializer '{name}'"), "negative dimension -3"]);

    let mut m = decoded("demo_cnn");
    let t = &mut graph_of(&mut m).initializer[0];
    t.dims = vec![i64::MAX, i64::MAX, 2];
    refused(&m, Stage::Load, &[&format!("initializer '{name}'"), "too many elements"]);

    // Fits usize, but not the data: a plain size mismatch, with no giant allocation.
    let mut m = decoded("demo_cnn");
    let t = &mut graph_of(&mut m).initializer[0];
    t.dims = vec![1 << 40];
    refused(&m, Stage::Load, &[&format!("initializer '{name}'"), "needs 4398046511104"]);
}

#[test]
fn unsupported_versions() {
    let mut m = decoded("mlp");
    m.ir_version = Some(99);
    refused(&m, Stage::Load, &["IR version 99 is not supported"]);
    m.ir_version = None;
    refused(&m, Stage::Load, &["IR version 0 is not supported"]);

    let mut m = decoded("mlp");
    m.opset_import.iter_mut().for_each(|o| o.version = Some(1));
    refused(&m, Stage::Load, &["opset 1 is not supported"]);
    m.opset_import.iter_mut().for_each(|o| o.version = Some(1000));
    refused(&m, Stage::Load, &["opset 1000 is not supported"]);
    m.opset_import.clear();
    refused(&m, Stage::Load, &["imports no opset of the default ONNX domain"]);
}

#[test]
fn missing_graph_and_unproduced_output() {
    let mut m = decoded("mlp");
    m.graph = None;
    refused(&m, Stage::Load, &["has no graph"]);

    let mut m = decoded("mlp");
    let g = graph_of(&mut m);
    g.output[0].name = Some("ghost_output".into());
    refused(&m, Stage::Graph, &["graph output 'ghost_output'", "not produced"]);

    // Two graph inputs with one name.
    let mut m = decoded("mlp");
    let g = graph_of(&mut m);
    let dup = g.input[0].clone();
    g.input.push(dup.clone());
    refused(&m, Stage::Graph, &[&format!("graph input '{0}': produces value '{0}', which graph input '{0}'", dup.name.unwrap())]);
}

#[test]
fn unsupported_element_types_are_refused_when_read() {
    // A string tensor loads (it is kept as it is) but decoding it names the type.
    let mut m = decoded("mlp");
    let t = &mut graph_of(&mut m).initializer[0];
    let name = t.name.clone().unwrap();
    t.data_type = Some(8); // STRING
    let model = Model::from_proto(m, "strings.onnx", None).unwrap();
    let t = &model.proto.graph.as_ref().unwrap().initializer[0];
    let msg = model.tensor(t).unwrap_err().to_string();
    assert!(msg.starts_with("strings.onnx") && msg.contains(&name) && msg.contains("STRING"), "{msg}");
}

#[test]
fn hostile_value_info_does_not_break_the_graph() {
    // Declared shapes are information, not structure: nonsense in them must not panic.
    let mut m = decoded("demo_cnn");
    let g = graph_of(&mut m);
    for v in g.input.iter_mut().chain(g.output.iter_mut()) {
        if let Some(type_proto::Value::TensorType(tt)) = v.r#type.as_mut().and_then(|t| t.value.as_mut()) {
            for d in tt.shape.as_mut().unwrap().dim.iter_mut() {
                d.value = Some(DimValue::DimValue(i64::MIN));
            }
        }
    }
    let model = Model::from_proto(m, "hostile.onnx", None).unwrap();
    let graph = Graph::new(&model).unwrap();
    if let Err(e) = oto_onnx::shape::infer(&graph) {
        assert!(e.to_string().starts_with("hostile.onnx"), "{e}");
    }
}

/// mlp with its first node wrapped in `depth` nested `If` subgraphs (in an attribute).
fn nested(depth: usize) -> ModelProto {
    use oto_onnx::proto::{attribute_proto::AttributeType, AttributeProto, GraphProto};
    let mut m = decoded("mlp");
    let mut inner = GraphProto { name: Some("innermost".into()), ..Default::default() };
    for level in 0..depth {
        let node = NodeProto {
            op_type: Some("If".into()),
            name: Some(format!("if_{level}")),
            attribute: vec![AttributeProto {
                name: Some("then_branch".into()),
                r#type: Some(AttributeType::Graph as i32),
                g: Some(inner),
                ..Default::default()
            }],
            ..Default::default()
        };
        inner = GraphProto { name: Some(format!("level_{level}")), node: vec![node], ..Default::default() };
    }
    graph_of(&mut m).node[0].attribute.push(oto_onnx::proto::AttributeProto {
        name: Some("nested".into()),
        r#type: Some(AttributeType::Graph as i32),
        g: Some(inner),
        ..Default::default()
    });
    m
}

#[test]
fn deeply_nested_subgraphs_are_refused_not_a_stack_overflow() {
    // prost stops at 100 nested messages (3 per level here, plus model, graph, node
    // and attribute): the deepest accepted nesting decodes without exhausting a test
    // thread's stack, and one level more is a decoding error, not a stack overflow
    // (which would abort the process instead of failing the test).
    let ok = Model::from_bytes(nested(32).encode_to_vec(), "nested-32.onnx").unwrap();
    Graph::new(&ok).unwrap();
    let msg = Model::from_bytes(nested(33).encode_to_vec(), "nested-33.onnx").unwrap_err().to_string();
    assert!(msg.starts_with("nested-33.onnx") && msg.contains("not an ONNX model"), "{msg}");
}
