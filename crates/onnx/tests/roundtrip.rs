//! Load -> save -> load is lossless for every zoo model, at the message level and
//! (for files written by onnx's serializer) at the byte level, including the fields
//! oto never touches: opset imports, metadata, doc strings, value_info, functions.

use oto_onnx::proto::{
    attribute_proto::AttributeType, type_proto, AttributeProto, FunctionProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use oto_onnx::{Graph, Model, SaveOptions};
use prost::Message;
use std::path::{Path, PathBuf};

/// The zoo models, or a failure telling how to produce them.
fn zoo_models() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../graphs/zoo");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}: the model zoo is missing; run `make graphs`", dir.display()));
    let mut models: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "onnx")).collect();
    models.sort();
    assert!(!models.is_empty(), "{}: no .onnx files; run `make graphs`", dir.display());
    models
}

fn zoo_model(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../graphs/zoo").join(format!("{name}.onnx"));
    assert!(path.exists(), "{}: missing; run `make graphs`", path.display());
    path
}

#[test]
fn every_zoo_model_round_trips_losslessly() {
    let dir = tempfile::tempdir().unwrap();
    for path in zoo_models() {
        let bytes = std::fs::read(&path).unwrap();
        let original = ModelProto::decode(bytes.as_slice()).unwrap();
        let model = Model::load(&path).unwrap();
        assert!(model.proto == original, "{}: the loaded message differs from the file's", path.display());
        // Files written by onnx's (C++) serializer re-encode to the same bytes.
        assert!(model.proto.encode_to_vec() == bytes, "{}: re-encoding changes the bytes", path.display());

        let saved = dir.path().join(path.file_name().unwrap());
        model.save(&saved, &SaveOptions::default()).unwrap();
        let saved_bytes = std::fs::read(&saved).unwrap();
        assert!(saved_bytes == bytes, "{}: the saved file differs from the original bytes", path.display());
        let reloaded = Model::load(&saved).unwrap();
        assert!(reloaded.proto == original, "{}: load -> save -> load changed the message", path.display());
        Graph::new(&reloaded).unwrap_or_else(|e| panic!("{e}"));
        std::fs::remove_file(&saved).unwrap();
    }
}

fn str_entry(key: &str, value: &str) -> StringStringEntryProto {
    StringStringEntryProto { key: Some(key.into()), value: Some(value.into()) }
}

fn float_value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    use oto_onnx::proto::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|&d| Dimension { value: Some(if d < 0 { Value::DimParam("batch".into()) } else { Value::DimValue(d) }), ..Default::default() })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type: Some(1), shape: Some(TensorShapeProto { dim }) })),
            denotation: Some("TENSOR".into()),
        }),
        doc_string: Some(format!("doc of value_info {name}")),
        metadata_props: vec![str_entry("origin", "roundtrip test")],
    }
}

/// Adds to a model every kind of field oto never edits.
fn enrich(model: &mut ModelProto) {
    model.doc_string = Some("model doc string, with ünïcödé".into());
    model.domain = Some("org.example.oto".into());
    model.model_version = Some(42);
    model.producer_name = Some("roundtrip-test".into());
    model.metadata_props = vec![str_entry("author", "oto"), str_entry("license", "MIT"), str_entry("empty", "")];
    model.opset_import.push(OperatorSetIdProto { domain: Some("com.microsoft".into()), version: Some(1) });
    model.opset_import.push(OperatorSetIdProto { domain: Some("ai.onnx.ml".into()), version: Some(3) });
    model.opset_import.push(OperatorSetIdProto { domain: Some("org.example.oto".into()), version: Some(1) });
    model.functions.push(FunctionProto {
        name: Some("DoubleRelu".into()),
        domain: Some("org.example.oto".into()),
        input: vec!["x".into()],
        output: vec!["y".into()],
        attribute: vec!["unused_attr".into()],
        node: vec![
            NodeProto {
                input: vec!["x".into()],
                output: vec!["t".into()],
                op_type: Some("Relu".into()),
                name: Some("inner_relu".into()),
                ..Default::default()
            },
            NodeProto { input: vec!["t".into(), "t".into()], output: vec!["y".into()], op_type: Some("Add".into()), ..Default::default() },
        ],
        doc_string: Some("function doc".into()),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(18) }],
        ..Default::default()
    });
    let graph = model.graph.as_mut().unwrap();
    graph.doc_string = Some("graph doc".into());
    graph.metadata_props = vec![str_entry("graph-key", "graph-value")];
    for (i, node) in graph.node.iter_mut().enumerate() {
        node.doc_string = Some(format!("node {i} doc"));
        node.attribute.push(AttributeProto {
            name: Some("oto_note".into()),
            r#type: Some(AttributeType::String as i32),
            s: Some(format!("note {i}").into_bytes().into()),
            doc_string: Some("attribute doc".into()),
            ..Default::default()
        });
    }
    let first_output = graph.node[0].output[0].clone();
    graph.value_info.push(float_value_info(&first_output, &[-1, 3]));
    for input in graph.input.iter_mut() {
        input.doc_string = Some("input doc".into());
    }
}

#[test]
fn fields_oto_never_edits_survive_the_round_trip() {
    let bytes = std::fs::read(zoo_model("mlp")).unwrap();
    let mut proto = ModelProto::decode(bytes.as_slice()).unwrap();
    enrich(&mut proto);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rich.onnx");
    std::fs::write(&path, proto.encode_to_vec()).unwrap();

    let model = Model::load(&path).unwrap();
    assert!(model.proto == proto);
    let saved = dir.path().join("rich2.onnx");
    model.save(&saved, &SaveOptions::default()).unwrap();
    let back = Model::load(&saved).unwrap();
    assert!(back.proto == proto, "the round trip lost a field");
    assert_eq!(std::fs::read(&saved).unwrap(), proto.encode_to_vec());
    // Spot checks, so a failure of the comparison above is easy to read.
    assert_eq!(back.proto.metadata_props.len(), 3);
    assert_eq!(back.proto.functions[0].node.len(), 2);
    assert_eq!(back.opset_of("com.microsoft"), Some(1));
    assert_eq!(back.opset_of("ai.onnx.ml"), Some(3));
    assert_eq!(
        back.proto.graph.as_ref().unwrap().value_info.last().unwrap().doc_string.as_deref(),
        proto.graph.as_ref().unwrap().value_info.last().unwrap().doc_string.as_deref()
    );
    Graph::new(&back).unwrap();
}

#[test]
fn typed_field_initializers_stay_typed() {
    // Tensors stored in float_data (not raw_data) are kept as they are.
    let bytes = std::fs::read(zoo_model("mlp")).unwrap();
    let mut proto = ModelProto::decode(bytes.as_slice()).unwrap();
    let graph = proto.graph.as_mut().unwrap();
    let t = graph.initializer.iter_mut().find(|t| t.data_type == Some(1) && t.raw_data.is_some()).unwrap();
    let raw = t.raw_data.take().unwrap();
    t.float_data = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    let name = t.name.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typed.onnx");
    std::fs::write(&path, proto.encode_to_vec()).unwrap();
    let model = Model::load(&path).unwrap();
    let saved = dir.path().join("typed2.onnx");
    model.save(&saved, &SaveOptions::default()).unwrap();
    let back = Model::load(&saved).unwrap();
    assert!(back.proto == proto);
    let t = back.proto.graph.as_ref().unwrap().initializer.iter().find(|t| t.name.as_deref() == Some(name.as_str())).unwrap();
    let decoded = back.tensor(t).unwrap();
    let expected: Vec<f32> = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(decoded.as_f32().unwrap(), expected.as_slice());
}
