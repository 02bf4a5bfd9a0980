//! The normalization pass, rewrite by rewrite: what is gone, what it became (values
//! checked element by element), and what is kept (names, opsets, metadata, sharing).
//! Equivalence in onnxruntime is checked in crates/construct/tests/normalize_ort.rs.

#[path = "common/normalize_cases.rs"]
mod cases;

use oto_onnx::normalize::{normalize, NormalizeOptions, Summary};
use oto_onnx::proto::{GraphProto, ModelProto};
use oto_onnx::{Graph, Model, Tensor, TensorData};

fn run(model: &Model) -> (Model, Summary) {
    let copy = Model::from_proto(model.proto.clone(), "case.onnx", None).unwrap();
    normalize(copy, &NormalizeOptions::default()).unwrap()
}

fn graph(m: &Model) -> &GraphProto {
    m.proto.graph.as_ref().unwrap()
}

fn ops(m: &Model) -> Vec<String> {
    graph(m).node.iter().map(|n| n.op_type.clone().unwrap_or_default()).collect()
}

fn init(m: &Model, name: &str) -> Tensor {
    let t = graph(m).initializer.iter().find(|t| t.name.as_deref() == Some(name)).unwrap_or_else(|| panic!("no initializer '{name}'"));
    m.tensor(t).unwrap()
}

fn has_init(m: &Model, name: &str) -> bool {
    graph(m).initializer.iter().any(|t| t.name.as_deref() == Some(name))
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.as_f32().unwrap_or_else(|| panic!("not f32: {t:?}")).to_vec()
}

/// What must survive normalization unchanged: the real inputs, the outputs, opsets,
/// metadata, doc string, producer.
fn assert_kept(before: &Model, after: &Model) {
    let real = |m: &Model| Graph::new(m).unwrap().real_inputs().cloned().collect::<Vec<_>>();
    assert_eq!(real(before), real(after));
    assert_eq!(graph(before).output, graph(after).output);
    let same = |p: &ModelProto, q: &ModelProto| {
        (&p.opset_import, &p.metadata_props, &p.doc_string, &p.producer_name, &p.domain, &p.model_version)
            == (&q.opset_import, &q.metadata_props, &q.doc_string, &q.producer_name, &q.domain, &q.model_version)
    };
    assert!(same(&before.proto, &after.proto));
    assert!(after.proto.metadata_props.iter().any(|e| e.key.as_deref() == Some(cases::META.0)));
    // The result is valid, topologically ordered, and normalizing again changes nothing.
    let g = Graph::new(after).unwrap();
    assert!(g.order().iter().enumerate().all(|(i, &k)| i == k), "nodes out of order");
    let (again, summary) = run(after);
    assert!(summary.is_noop(), "second pass: {summary}");
    assert_eq!(again.proto, after.proto);
}

#[test]
fn constant_nodes_become_initializers() {
    let before = cases::constant_forms();
    let (after, s) = run(&before);
    assert_eq!(s.constants_lifted, 5, "{s}");
    assert_eq!(s.constants_kept, 1, "{s}");
    assert_eq!(ops(&after), ["Constant", "Add", "Mul", "Sub", "Gather", "Unsqueeze"]);
    assert_eq!(graph(&after).node[0].output, ["c_string"]);
    assert_eq!(f32s(&init(&after, "c_float")), [2.5]);
    assert_eq!(init(&after, "c_float").shape, Vec::<usize>::new());
    assert_eq!(f32s(&init(&after, "c_floats")), [0.5, -1.0, 2.0, 0.25]);
    assert_eq!(init(&after, "c_int"), Tensor { shape: vec![], data: TensorData::I64(vec![2]) });
    assert_eq!(init(&after, "c_ints"), Tensor::from_i64s(vec![1]));
    let value = Graph::new(&before).unwrap().constant("c_value").unwrap().unwrap();
    assert_eq!(init(&after, "c_value"), value);
    assert_kept(&before, &after);
}

#[test]
fn weight_layout_ops_fold_whatever_their_size() {
    let before = cases::weight_layouts();
    let (after, s) = run(&before);
    // The Gather of rows of the table is an embedding lookup: the table stays a weight.
    assert_eq!(ops(&after), ["MatMul", "Mul", "Add", "Gather", "ReduceSum", "Add"], "{s}");
    assert_eq!((s.folded, s.identities, s.dead_initializers), (3, 0, 1), "{s}");
    // Transpose of the 256 x 300 weight, under the weight's name: [i, j] is w[j, i].
    let w = f32s(&init(&before, "fc.weight"));
    let wt = init(&after, "fc.weight");
    assert_eq!(wt.shape, [300, 256]);
    let wt = f32s(&wt);
    assert!((0..300).all(|i| (0..256).all(|j| wt[i * 256 + j] == w[j * 300 + i])));
    assert_eq!(graph(&after).node[0].input, ["x", "fc.weight"]);
    assert!(!has_init(&after, "axes0"));
    let s2 = init(&after, "scale");
    assert_eq!((s2.shape.as_slice(), f32s(&s2)), ([1usize, 256].as_slice(), f32s(&init(&before, "scale"))));
    assert_eq!(graph(&after).node[1].input[1], "scale");
    let TensorData::F16(h) = &init(&before, "bias16").data else { panic!() };
    assert_eq!(f32s(&init(&after, "bias16")), h.iter().map(|v| v.to_f32()).collect::<Vec<_>>());
    assert_eq!(init(&after, "table"), init(&before, "table"));
    // The initializers keep their order; no declared type of the old shapes is left.
    let names: Vec<_> = graph(&after).initializer.iter().map(|t| t.name.clone().unwrap()).collect();
    assert_eq!(names, ["fc.weight", "scale", "bias16", "table", "rows"]);
    assert_kept(&before, &after);
}

#[test]
fn constant_subgraphs_fold_in_every_opset_form() {
    for opset in [9, 13] {
        let before = cases::shape_subgraph(opset);
        let (after, s) = run(&before);
        assert_eq!(ops(&after), ["Reshape", "Add", "Mul"], "opset {opset}: {s}");
        let g = graph(&after);
        assert_eq!(init(&after, &g.node[0].input[1]), Tensor::from_i64s(vec![-1, 6]), "opset {opset}");
        let b0 = f32s(&Graph::new(&before).unwrap().constant("b0").unwrap().unwrap());
        let bias = init(&after, &g.node[1].input[1]);
        assert_eq!((bias.shape.as_slice(), f32s(&bias)), ([6usize].as_slice(), b0[1..7].to_vec()), "opset {opset}");
        assert_eq!(f32s(&init(&after, &g.node[2].input[1])), [1.5; 6], "opset {opset}");
        // Everything else was only read by folded nodes: only the three results remain.
        assert_eq!(g.initializer.len(), 3, "opset {opset}: {:?}", g.initializer.iter().map(|t| t.name.clone()).collect::<Vec<_>>());
        assert_kept(&before, &after);
    }
}

#[test]
fn flatten_size_range_expand_where_fold() {
    let before = cases::integer_folds();
    let (after, s) = run(&before);
    assert_eq!(ops(&after), ["Mul", "Gather"], "{s}");
    assert_eq!(init(&after, "idx"), Tensor::from_i64s(vec![0, 1, 2, 2, 5, 4]));
    let w = init(&after, "w2");
    assert_eq!((w.shape.as_slice(), f32s(&w)), ([1usize, 6].as_slice(), f32s(&init(&before, "w2"))));
    assert_eq!(graph(&after).node[0].input[1], "w2");
    assert!(!has_init(&after, "sized"), "only Size read it");
    assert_eq!(graph(&after).initializer.len(), 2);
    assert_kept(&before, &after);
}

#[test]
fn identity_of_an_initializer_becomes_its_own_initializer() {
    let before = cases::identity_bias();
    let (after, s) = run(&before);
    assert_eq!((s.identities, s.folded), (1, 0), "{s}");
    assert!(!ops(&after).contains(&"Identity".to_string()));
    assert_eq!(init(&after, "fc2.bias"), init(&before, "fc1.bias"));
    assert!(has_init(&after, "fc1.bias"), "the source stays: the first Gemm reads it");
    let gemm2 = &graph(&after).node[2];
    assert_eq!(gemm2.input[2], "fc2.bias");
    assert_kept(&before, &after);
}

#[test]
fn ir3_initializer_inputs_become_weights() {
    let before = cases::ir3_inputs();
    assert_eq!(graph(&before).input.len(), 1 + graph(&before).initializer.len());
    let (after, s) = run(&before);
    assert_eq!(s.initializer_inputs, graph(&before).initializer.len(), "{s}");
    assert_eq!(s.ir_version_raised, Some((3, 4)), "{s}");
    assert_eq!(after.proto.ir_version, Some(4));
    let names: Vec<_> = graph(&after).input.iter().map(|v| v.name.clone().unwrap()).collect();
    assert_eq!(names, ["data"]);
    assert_eq!(graph(&after).initializer, graph(&before).initializer);
    // The Sum of three became two Adds, the last one still writing "sum".
    assert_eq!(s.sums, 1);
    let adds: Vec<_> = graph(&after).node.iter().filter(|n| n.op_type.as_deref() == Some("Add")).collect();
    assert_eq!(adds.len(), 2);
    assert_eq!(adds[1].output, ["sum"]);
    assert_eq!(adds[1].input[0], adds[0].output[0]);
    assert!(!ops(&after).contains(&"Sum".to_string()));
    assert_kept(&before, &after);
}

#[test]
fn overridable_inputs_can_be_kept_in_ir4_files() {
    let mut proto = cases::ir3_inputs().proto;
    proto.ir_version = Some(8);
    proto.opset_import[0].version = Some(13);
    let inits = proto.graph.as_ref().unwrap().initializer.len();
    let model = || Model::from_proto(proto.clone(), "ir8.onnx", None).unwrap();
    let (after, s) = normalize(model(), &NormalizeOptions::default()).unwrap();
    assert_eq!((s.initializer_inputs, s.ir_version_raised), (inits, None), "{s}");
    assert_eq!(graph(&after).input.len(), 1);
    assert!(s.to_string().contains(&format!("{inits} initializers removed from the graph inputs (treated as weights)")), "{s}");
    let (after, s) = normalize(model(), &NormalizeOptions { keep_overridable_inputs: true, ..Default::default() }).unwrap();
    assert_eq!((s.initializer_inputs, s.overridable_inputs), (0, inits), "{s}");
    assert_eq!(graph(&after).input.len(), 1 + inits);
}

#[test]
fn overridable_inputs_are_not_folded() {
    // Unsqueeze of an initializer that is also an input: a caller may feed another value.
    let mut b = oto_onnx::builder::GraphBuilder::new("overridable");
    let x = b.input_f32("x", &oto_onnx::builder::batch_dims(&[1, 3]));
    let s = b.weight("s", &[3], |i| i as f32);
    b.input_f32("s", &oto_onnx::builder::known_dims(&[3]));
    let ax = b.ints("ax", &[0]);
    let u = b.node("Unsqueeze", &[&s, &ax], &[]);
    let y = b.node("Mul", &[&x, &u], &["y"]);
    b.output_f32(&y, &oto_onnx::builder::batch_dims(&[1, 3]));
    let (kept, summary) = normalize(b.build().unwrap(), &NormalizeOptions { keep_overridable_inputs: true, ..Default::default() }).unwrap();
    assert_eq!(ops(&kept), ["Unsqueeze", "Mul"], "{summary}");
    let (folded, summary) = normalize(b.build().unwrap(), &NormalizeOptions::default()).unwrap();
    assert_eq!(ops(&folded), ["Mul"], "{summary}");
}

#[test]
fn constant_batchnorm_parameters() {
    let before = cases::constant_batchnorm();
    let (after, s) = run(&before);
    assert_eq!(ops(&after), ["Conv", "BatchNormalization", "Relu", "GlobalAveragePool", "Flatten", "Gemm"], "{s}");
    assert_eq!((s.constants_lifted, s.folded), (7, 2), "{s}");
    let bn = &graph(&after).node[1];
    assert_eq!(bn.input[1..], ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"]);
    assert_eq!(
        init(&after, "bn.running_var"),
        Tensor { shape: vec![6], data: TensorData::F32((0..6).map(|i| 0.5 + 0.125 * i as f32).collect()) }
    );
    assert_eq!(init(&after, "bn.bias").shape, [6]);
    for gone in ["bn.bias2d", "sq_axes", "bn.var64"] {
        assert!(!has_init(&after, gone), "{gone}");
    }
    assert_kept(&before, &after);
}

#[test]
fn variadic_operators_become_binary_chains() {
    let before = cases::variadic();
    let (after, s) = run(&before);
    assert_eq!((s.sums, s.variadic), (2, 2), "{s}");
    assert_eq!(ops(&after), ["Add", "Add", "Identity", "Max", "Max", "Min", "Min"]);
    let g = graph(&after);
    let out = |i: usize| g.node[i].output[0].clone();
    assert_eq!((g.node[0].input.clone(), g.node[1].input.clone()), (vec!["x".into(), "z".into()], vec![out(0), "c".into()]));
    assert_eq!((out(1), out(2), out(4), out(6)), ("s".into(), "s1".into(), "m".into(), "n".into()));
    assert_eq!(g.node[2].input, ["s"]);
    // Node names stay unique.
    let names: std::collections::HashSet<_> = g.node.iter().map(|n| n.name.clone()).collect();
    assert_eq!(names.len(), g.node.len());
    assert_kept(&before, &after);
}

#[test]
fn shared_weights_stay_shared() {
    let before = cases::shared_weights();
    let (after, s) = run(&before);
    assert!(s.is_noop(), "{s}");
    assert_eq!(after.proto, before.proto);
}

#[test]
fn a_weight_equal_to_a_transposed_weight_is_tied_again() {
    let before = cases::tied_transpose();
    let (after, s) = run(&before);
    assert_eq!(s.tied_transposes, 1, "{s}");
    assert_eq!(s.to_string(), "1 weights equal to the transpose of another made a Transpose of it (tied again)");
    // lm_head is now Transpose(emb), under its own name; near (one value differs) stays.
    assert!(!has_init(&after, "lm_head") && has_init(&after, "emb") && has_init(&after, "near"));
    let g = graph(&after);
    let t: Vec<_> = g.node.iter().filter(|n| n.op_type.as_deref() == Some("Transpose")).collect();
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].input.as_slice(), t[0].output.as_slice()), (&["emb".to_string()][..], &["lm_head".to_string()][..]));
    assert_eq!(t[0].attribute[0].ints, [1, 0]);
    assert_eq!(f32s(&init(&after, "near")), f32s(&init(&before, "near")));
    assert_eq!(f32s(&init(&after, "emb")), f32s(&init(&before, "emb")));
    assert_kept(&before, &after);

    // Bit for bit: -0.0 where the transpose holds 0.0 is no tie (lm_head[5], row 1
    // column 1, is emb[7]); nor is a constant matrix (all zeros).
    type Edit = fn(&str, &mut [f32]);
    let signed_zero: Edit = |name, v| match name {
        "emb" => v[7] = 0.0,
        "lm_head" => v[5] = -0.0,
        _ => {}
    };
    let zeros: Edit = |_, v| v.iter_mut().for_each(|x| *x = 0.0);
    for (what, edit) in [("a signed zero", signed_zero), ("all zeros", zeros)] {
        let mut proto = before.proto.clone();
        for t in proto.graph.as_mut().unwrap().initializer.iter_mut() {
            let mut v = f32s(&Tensor::from_proto(t, None).unwrap());
            let name = t.name.clone().unwrap();
            edit(&name, &mut v);
            let shape: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
            *t = Tensor { shape, data: TensorData::F32(v) }.to_proto(&name);
        }
        let (_, s) = run(&Model::from_proto(proto, "case.onnx", None).unwrap());
        assert_eq!(s.tied_transposes, 0, "{what}: {s}");
    }
}

#[test]
fn a_shared_shape_concat_gets_one_copy_per_reader() {
    let before = cases::shared_shape_concat();
    let (after, s) = run(&before);
    assert_eq!(s.concats_untied, 1, "{s}");
    let g = graph(&after);
    let concats: Vec<&str> = g.node.iter().filter(|n| n.op_type.as_deref() == Some("Concat")).map(|n| n.output[0].as_str()).collect();
    assert_eq!(concats.len(), 2, "{:?}", ops(&after));
    for c in &concats {
        let readers: Vec<&str> =
            g.node.iter().filter(|n| n.input.iter().any(|i| i == c)).map(|n| n.op_type.as_deref().unwrap_or("")).collect();
        assert_eq!(readers, ["Reshape"], "{c}");
    }
    let (_, again) = run(&after);
    assert!(again.is_noop(), "{again}");
}

#[test]
fn ifs_of_known_conditions_become_their_branches() {
    let before = cases::known_branches();
    let (after, s) = run(&before);
    assert_eq!(s.branches_inlined, 2, "{s}");
    let names = ops(&after);
    assert!(!names.iter().any(|o| o == "If"), "{names:?}");
    // The else branches ran: their weights are the model's now, under the If's output.
    assert_eq!(f32s(&init(&after, "g1/bias1.weight")).len(), 16);
    assert!(has_init(&after, "g2/scale2.weight") && !has_init(&after, "g1/double1.weight"), "{names:?}");
    let (_, again) = run(&after);
    assert!(again.is_noop(), "{again}");
    // A condition given at run time (a graph input) is followed into both branches (the
    // main graph holds both and oto's Branches node), and the file written holds its If again.
    let mut flag = oto_onnx::builder::GraphBuilder::new("flag");
    flag.input("flag", oto_onnx::DType::Bool, &[]);
    let mut proto = before.proto.clone();
    let g = proto.graph.as_mut().unwrap();
    g.input.extend(flag.proto().graph.unwrap().input);
    if let Some(n) = g.node.iter_mut().filter(|n| n.op_type.as_deref() == Some("If")).nth(1) {
        n.input[0] = "flag".into();
    }
    let (kept, s) = run(&Model::from_proto(proto, "case.onnx", None).unwrap());
    let ifs = ops(&kept).iter().filter(|o| *o == "If").count();
    assert_eq!((s.branches_inlined, s.branches_flattened, ifs), (1, 1, 0), "{s}");
    assert!(oto_onnx::branches::has_branches(&kept.proto));
    let written = <oto_onnx::proto::ModelProto as prost::Message>::decode(kept.to_bytes().unwrap().as_slice()).unwrap();
    let written_ops: Vec<&str> = written.graph.as_ref().unwrap().node.iter().filter_map(|n| n.op_type.as_deref()).collect();
    assert_eq!(written_ops.iter().filter(|o| **o == "If").count(), 1, "{written_ops:?}");
    assert!(!oto_onnx::branches::has_branches(&written), "{written_ops:?}");
}

#[test]
fn unsorted_nodes_are_sorted() {
    let mut proto = cases::identity_bias().proto;
    proto.graph.as_mut().unwrap().node.reverse();
    let before = Model::from_proto(proto, "reversed.onnx", None).unwrap();
    let (after, s) = run(&before);
    assert!(s.reordered, "{s}");
    assert!(Graph::new(&after).unwrap().order().iter().enumerate().all(|(i, &k)| i == k));
}

#[test]
fn a_clean_model_is_returned_as_it_is() {
    let mut b = oto_onnx::builder::GraphBuilder::new("clean");
    let x = b.input_f32("x", &oto_onnx::builder::batch_dims(&[4]));
    let w = b.weight("w", &[4, 2], |i| i as f32);
    let y = b.node("MatMul", &[&x, &w], &["y"]);
    b.output_f32(&y, &oto_onnx::builder::batch_dims(&[2]));
    let model = b.build().unwrap();
    let (after, s) = run(&model);
    assert!(s.is_noop());
    assert_eq!(s.to_string(), "nothing to normalize");
    assert_eq!(after.proto, model.proto);
}

#[test]
fn load_normalizes_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ir3.onnx");
    cases::ir3_inputs().save(&path, &Default::default()).unwrap();
    let (model, s) = oto_onnx::normalize::load(&path).unwrap();
    assert_eq!(model.path(), path);
    assert_eq!(s.sums, 1);
    assert_eq!(graph(&model).input.len(), 1);
}

#[test]
fn bad_constants_name_the_node() {
    let mut b = oto_onnx::builder::GraphBuilder::new("bad");
    let x = b.input_f32("x", &oto_onnx::builder::batch_dims(&[1]));
    let c = b.node_with("Constant", &[], &["c"], &[("value_float", oto_onnx::builder::Attr::Ints(vec![1]))]);
    let y = b.node("Add", &[&x, &c], &["y"]);
    b.output_f32(&y, &oto_onnx::builder::batch_dims(&[1]));
    let err = normalize(b.build().unwrap(), &NormalizeOptions::default()).unwrap_err().to_string();
    assert!(err.contains("constant_1") && err.contains("value_float"), "{err}");
}

/// A batch fixed at 2 that only seems to reach the output: `x + c` with a constant of 2
/// rows (one per sample), reshaped back to the input's shape read at run time. The
/// output would carry the symbolic batch, but the sum would not: the batch is kept, and
/// the reason names the value.
#[test]
fn a_batch_lost_inside_the_graph_is_kept() {
    use oto_onnx::builder::{known_dims, GraphBuilder};
    let mut b = GraphBuilder::new("rows");
    let x = b.input_f32("x", &known_dims(&[2, 4]));
    let c = b.weight("c", &[2, 4], |i| i as f32);
    let t = b.node("Add", &[&x, &c], &["t"]);
    let s = b.node("Shape", &[&x], &[]);
    let y = b.node("Reshape", &[&t, &s], &["y"]);
    b.output_f32(&y, &known_dims(&[2, 4]));
    let (after, s) = run(&b.build().unwrap());
    assert!(!s.batch_symbolic, "{s}");
    assert_eq!(s.fixed_batch, Some(2));
    assert_eq!(s.batch_kept.as_deref(), Some("value 't' would keep the fixed batch 2 (its shape would be [2, 4])"), "{s}");
    let dim0 = |v: &oto_onnx::proto::ValueInfoProto| format!("{:?}", v.r#type.as_ref().unwrap());
    assert!(dim0(&graph(&after).input[0]).contains("DimValue(2)"), "{}", dim0(&graph(&after).input[0]));
}

/// Equal Splits get their sizes written out, in each opset's form: input 1 from opset 13
/// (and `num_outputs` dropped at 18), the `split` attribute before.
#[test]
fn equal_splits_get_their_sizes() {
    for opset in [11, 13, 18] {
        let (after, s) = run(&cases::equal_split(opset));
        assert_eq!(s.splits_sized, 1, "{s}");
        let split = graph(&after).node.iter().find(|n| n.op_type.as_deref() == Some("Split")).unwrap();
        let names: Vec<_> = split.attribute.iter().filter_map(|a| a.name.as_deref()).collect();
        assert!(!names.contains(&"num_outputs"), "{names:?}");
        if opset >= 13 {
            let sizes =
                graph(&after).initializer.iter().find(|t| Some(t.name.as_deref().unwrap_or("")) == split.input.get(1).map(String::as_str));
            assert_eq!(
                sizes
                    .map(|t| t.int64_data.clone())
                    .filter(|v| !v.is_empty())
                    .or_else(|| sizes.and_then(|t| oto_onnx::Tensor::from_proto(t, None).ok()).and_then(|t| t.to_i64_vec())),
                Some(vec![4, 4, 4]),
                "opset {opset}"
            );
        } else {
            let attr = split.attribute.iter().find(|a| a.name.as_deref() == Some("split")).unwrap();
            assert_eq!(attr.ints, vec![4, 4, 4]);
        }
    }
}

/// Every `Einsum` of two operands becomes `Transpose`/`Reshape`/`MatMul`, and one of one
/// operand `ReduceSum`/`Transpose` (what they compute is compared in onnxruntime in the
/// construct crate's normalize_ort); the projection kernels, reshaped, keep their names.
#[test]
fn einsums_become_matmuls() {
    for (case, count, matmuls, sums) in [(cases::einsum_attention(), 6, 6, 0), (cases::einsum_forms(), 7, 5, 1)] {
        let (after, s) = run(&case);
        assert_eq!(s.einsums, count, "{s}");
        let ops: Vec<&str> = graph(&after).node.iter().filter_map(|n| n.op_type.as_deref()).collect();
        assert!(!ops.contains(&"Einsum"), "{ops:?}");
        assert_eq!(ops.iter().filter(|o| **o == "MatMul").count(), matmuls, "{ops:?}");
        assert_eq!(ops.iter().filter(|o| **o == "ReduceSum").count(), sums, "{ops:?}");
    }
    let (after, _) = run(&cases::einsum_attention());
    let kernel = graph(&after).initializer.iter().find(|t| t.name.as_deref() == Some("query/kernel")).unwrap();
    assert_eq!(kernel.dims, vec![8, 8], "folded as [E, H*D]");
}

/// Zero initial states of recurrent layers (a sliced `ConstantOfShape`, an `Expand` of a
/// zero) are omitted, with the nodes that computed only them; a non-zero one stays.
#[test]
fn zero_initial_states_are_omitted() {
    let (after, s) = run(&cases::recurrent_lstm());
    assert_eq!(s.zero_states_omitted, 2, "{s}");
    let ops: Vec<&str> = graph(&after).node.iter().filter_map(|n| n.op_type.as_deref()).collect();
    // The states' ConstantOfShape and its two Slices are gone (the four Slices left read
    // the output's shape for the flatten).
    assert!(!ops.contains(&"ConstantOfShape") && ops.iter().filter(|o| **o == "Slice").count() == 4, "{ops:?}");
    let lstm = graph(&after).node.iter().find(|n| n.op_type.as_deref() == Some("LSTM")).unwrap();
    assert!(lstm.input[5].is_empty() && lstm.input[6].is_empty(), "{:?}", lstm.input);
    let (after, s) = run(&cases::recurrent_gru());
    assert_eq!(s.zero_states_omitted, 1, "{s}");
    let rnn = graph(&after).node.iter().find(|n| n.op_type.as_deref() == Some("RNN")).unwrap();
    assert!(!rnn.input[5].is_empty(), "the 0.5 state stays");
    // A bidirectional layer's two zero states, concatenated (tf2onnx's Keras Bidirectional).
    let (after, s) = run(&cases::recurrent_bidirectional());
    assert_eq!(s.zero_states_omitted, 1, "{s}");
    let gru = graph(&after).node.iter().find(|n| n.op_type.as_deref() == Some("GRU")).unwrap();
    assert!(gru.input[5].is_empty(), "{:?}", gru.input);
}

/// A BatchNormalization reading one initializer as its scale and its variance (and one as
/// its bias and its mean, tf2onnx's merged constants) gets copies for the statistics: the
/// scale and bias are parameters again, the statistics buffers of their own.
#[test]
fn merged_batchnorm_statistics_get_their_own_copies() {
    let (after, s) = run(&cases::merged_bn_constants());
    assert_eq!(s.statistics_untied, 2, "{s}");
    let bn = graph(&after).node.iter().find(|n| n.op_type.as_deref() == Some("BatchNormalization")).unwrap();
    let distinct: std::collections::HashSet<&String> = bn.input[1..].iter().collect();
    assert_eq!(distinct.len(), 4, "{:?}", bn.input);
    let g = oto_onnx::Graph::new(&after).unwrap();
    assert_eq!(oto_onnx::cost::parameter_count(&g).parameters, 6 * 27 + 5 * 6 + 12, "scale and bias count as parameters");
}

/// The two hidden layers' biases, one merged tensor of zeros, become two tensors (the
/// second reader gets a copy); a non-uniform bias read twice stays one tensor (tying).
#[test]
fn merged_uniform_constants_get_a_copy_per_reader() {
    let (after, s) = run(&cases::merged_uniform_biases());
    assert_eq!(s.uniform_untied, 1, "{s}");
    let readers = |init: &str| graph(&after).node.iter().filter(|n| n.input.iter().any(|i| i == init)).count();
    assert_eq!((readers("fc1.bias"), readers("tied.bias")), (1, 2));
    let g = graph(&after);
    let copy = g
        .node
        .iter()
        .filter(|n| n.op_type.as_deref() == Some("Add"))
        .find_map(|n| n.input.iter().find(|i| i.ends_with("fc1.bias") && i.as_str() != "fc1.bias").cloned());
    let copy = copy.unwrap_or_else(|| panic!("no copy of fc1.bias: {:?}", g.node));
    assert!(g.initializer.iter().any(|t| t.name.as_deref() == Some(copy.as_str())), "{copy} is no initializer");
}

/// A model exported in training mode: the `Dropout` whose `training_mode` is a true
/// constant loses that input, and the inlined random mask becomes a `Dropout` of ratio
/// 0.25 reading the masked value, with the nodes that computed only the mask gone.
#[test]
fn training_mode_dropouts_become_inference_ones() {
    let (after, s) = run(&cases::training_mode_dropouts(true));
    assert_eq!(s.dropouts_made_inference, 2, "{s}");
    let g = graph(&after);
    let ops: Vec<&str> = g.node.iter().filter_map(|n| n.op_type.as_deref()).collect();
    assert_eq!(ops, ["MatMul", "Relu", "Dropout", "MatMul", "Relu", "Dropout", "MatMul"]);
    let dropouts: Vec<_> = g.node.iter().filter(|n| n.op_type.as_deref() == Some("Dropout")).collect();
    assert!(dropouts.iter().all(|n| n.input.len() == 2), "{dropouts:?}");
    let ratio = g.initializer.iter().find(|t| t.name.as_deref() == Some(dropouts[1].input[1].as_str())).unwrap();
    assert_eq!(oto_onnx::Tensor::from_proto(ratio, None).unwrap().to_f64_vec(), [0.25]);
}

/// The dynamo exporter's `as_strided` view (a Gather of `0..n` from a flattened tensor)
/// becomes a Reshape of the pooled tensor itself, its indices gone, and the file's fixed
/// batch of 1 (which the indices' shape held) becomes symbolic.
#[test]
fn flattened_view_gathers_become_reshapes() {
    let (after, s) = run(&cases::flattened_view_gather());
    assert_eq!(s.view_gathers, 1, "{s}");
    assert!(s.batch_symbolic, "{s}");
    let g = graph(&after);
    assert!(!g.node.iter().any(|n| n.op_type.as_deref() == Some("Gather")), "{:?}", g.node);
    assert!(!g.initializer.iter().any(|t| t.name.as_deref() == Some("as_strided_indices")));
    let view = g.node.iter().find(|n| n.output[0] == "as_strided").unwrap();
    let pooled = g.node.iter().find(|n| n.op_type.as_deref() == Some("ReduceMean")).unwrap();
    assert_eq!((view.op_type.as_deref(), &view.input[0]), (Some("Reshape"), &pooled.output[0]));
}

/// A merged constant stored as external data (the dynamo exporter writes a model's weights
/// beside it): read in, and the copies written inline.
#[test]
fn external_merged_constants_get_inline_copies() {
    use oto_onnx::builder::{batch_dims, GraphBuilder};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.onnx.data"), vec![0u8; 16 * 4]).unwrap();
    let mut b = GraphBuilder::new("external_zeros");
    b.opset(18);
    let x = b.input_f32("x", &batch_dims(&[16]));
    let zeros = b.external_weight("zeros", &[16], "model.onnx.data", 0);
    let h = b.node("Add", &[&x, &zeros], &[]);
    let y = b.node("Add", &[&h, &zeros], &["y"]);
    b.output_f32(&y, &batch_dims(&[16]));
    let model = b.build_in(dir.path()).unwrap();
    let (after, s) = normalize(model, &NormalizeOptions::default()).unwrap();
    assert_eq!(s.uniform_untied, 1, "{s}");
    let g = graph(&after);
    let copy = g.node[1].input[1].clone();
    assert_ne!(copy, "zeros");
    let t = g.initializer.iter().find(|t| t.name.as_deref() == Some(copy.as_str())).unwrap();
    assert!(t.external_data.is_empty(), "the copy is inline");
    assert_eq!(Tensor::from_proto(t, None).unwrap().to_f64_vec(), vec![0.0; 16]);
}

/// A zero literal expanded into part of a bias (Swin V2's `zeros_like` key bias) stays
/// computed: folded, it would be an initializer, which training takes for a weight.
#[test]
fn expanded_literals_stay_constants_outside_biases() {
    let before = cases::constant_zero_part();
    let (after, _) = run(&before);
    assert!(ops(&after).iter().any(|o| o == "Expand"), "{:?}", ops(&after));
    let floats = |m: &Model| graph(m).initializer.iter().filter(|t| t.data_type == Some(1) && !t.dims.is_empty()).count();
    assert_eq!(floats(&after), floats(&before));
}

/// A function calling another is inlined through both levels, every inner value and node
/// given a fresh name; the definitions go with the last call.
#[test]
fn nested_functions_inline_completely() {
    let before = cases::nested_functions();
    let (after, summary) = run(&before);
    assert_eq!(summary.functions_inlined, 2, "{summary}");
    assert_eq!(ops(&after), ["MatMul", "Relu", "MatMul"]);
    assert!(after.proto.functions.is_empty());
    assert!(graph(&after).node.iter().all(|n| n.domain.as_deref().unwrap_or("").is_empty()));
    let names: std::collections::HashSet<_> = graph(&after).node.iter().flat_map(|n| n.output.iter()).collect();
    assert_eq!(names.len(), 3);
    assert_kept(&before, &after);
}

/// GPT-J's export returns its key cache through `.to(dtype)`: a `Cast` to the type the
/// `Concat` of past and keys already has. It is dropped, the `Concat` writing the output
/// itself (its other reader follows), so the output is the cache the analysis recognizes;
/// a `Cast` that changes the type stays.
#[test]
fn casts_to_their_inputs_type_before_outputs_are_dropped() {
    use oto_onnx::builder::{Attr, GraphBuilder};
    use oto_onnx::{DType, Dim};
    let (b_, p, s, h, d) = (Dim::sym("batch"), Dim::sym("past"), Dim::sym("seq"), Dim::Known(2), Dim::Known(4));
    let mut b = GraphBuilder::new("cast_cache");
    b.opset(17);
    let past = b.input_f32("past", &[b_.clone(), h.clone(), p, d.clone()]);
    let k = b.input_f32("k", &[b_.clone(), h.clone(), s, d.clone()]);
    let cache = b.node_with("Concat", &[&past, &k], &["cache"], &[("axis", Attr::Int(2))]);
    b.node_with("Cast", &[&cache], &["present"], &[("to", Attr::Int(1))]);
    let sum = b.node_with("ReduceSum", &[&cache], &["sum"], &[("keepdims", Attr::Int(0))]);
    b.node_with("Cast", &[&sum], &["sum_f64"], &[("to", Attr::Int(11))]);
    let any = Dim::sym("n");
    b.output_f32("present", &[b_.clone(), h.clone(), any.clone(), d.clone()]);
    b.output("sum_f64", DType::F64, &[]);
    let before = b.build().unwrap();
    let (after, s) = run(&before);
    assert_eq!(s.output_casts, 1, "{s}");
    let g = graph(&after);
    let casts: Vec<_> = g.node.iter().filter(|n| n.op_type.as_deref() == Some("Cast")).collect();
    assert_eq!(casts.len(), 1, "{:?}", g.node);
    assert_eq!(casts[0].output[0], "sum_f64");
    let concat = g.node.iter().find(|n| n.op_type.as_deref() == Some("Concat")).unwrap();
    assert_eq!(concat.output[0], "present");
    let reduce = g.node.iter().find(|n| n.op_type.as_deref() == Some("ReduceSum")).unwrap();
    assert_eq!(reduce.input[0], "present");
    assert_eq!(Graph::new(&after).unwrap().cache_inputs().get("past"), Some(&2));
}

/// Weight normalization (`w = g * v / ||v||`, one norm per output channel or per kernel
/// tap) folds into one weight named after the direction `v`, equal to the formula
/// evaluated here; `g` goes. A computation whose `g` is also read elsewhere stays as it is.
#[test]
fn weight_normalizations_fold_into_their_weight() {
    for opset in [13, 18] {
        let before = cases::weight_normalized(opset);
        let (after, s) = run(&before);
        assert_eq!(s.weights_reparametrized, 2, "opset {opset}: {s}");
        assert_kept(&before, &after);
        for (name, norm_axes) in [("conv0", [false, true, true]), ("conv1", [true, true, false])] {
            let (v, g) = (f32s(&init(&before, &format!("{name}.v"))), f32s(&init(&before, &format!("{name}.g"))));
            let shape = init(&before, &format!("{name}.v")).shape;
            let folded = init(&after, &format!("{name}.v"));
            assert_eq!(folded.shape, shape, "{name}");
            assert!(!has_init(&after, &format!("{name}.g")), "{name}.g is left");
            // The position of element `i` along each axis; the norm's and g's entry for it.
            let coords = |i: usize| [i / (shape[1] * shape[2]), (i / shape[2]) % shape[1], i % shape[2]];
            let key = |c: [usize; 3]| -> Vec<usize> { (0..3).map(|a| if norm_axes[a] { 0 } else { c[a] }).collect() };
            let mut norms: std::collections::HashMap<Vec<usize>, f64> = Default::default();
            for (i, &x) in v.iter().enumerate() {
                *norms.entry(key(coords(i))).or_default() += f64::from(x) * f64::from(x);
            }
            for (i, &got) in f32s(&folded).iter().enumerate() {
                let c = coords(i);
                let gi = if name == "conv0" { c[0] } else { c[2] };
                let want = f64::from(g[gi]) * f64::from(v[i]) / norms[&key(c)].sqrt();
                assert!((f64::from(got) - want).abs() <= 1e-6 * want.abs().max(1e-3), "{name}[{i}]: {got} vs {want}");
            }
        }
        // The classifier's g is read by the output's Add too: its computation stays.
        assert_eq!(ops(&after).iter().filter(|o| *o == "ReduceL2").count(), 1, "opset {opset}: {:?}", ops(&after));
        assert!(has_init(&after, "fc.v") && has_init(&after, "fc.g"));
    }
}

/// Weight standardization (BiT: a training-mode BatchNormalization or an
/// InstanceNormalization of the weight's rows) folds into the weight: each output
/// channel of the folded weight has mean 0 and variance 1; the normalizations are gone.
#[test]
fn weight_standardizations_fold_into_their_weight() {
    let before = cases::weight_standardized();
    let (after, s) = run(&before);
    assert_eq!(s.weights_reparametrized, 2, "{s}");
    assert_kept(&before, &after);
    let left = ops(&after);
    assert!(!left.iter().any(|o| o.ends_with("Normalization")), "{left:?}");
    for name in ["conv0.weight", "conv1.weight"] {
        let t = init(&after, name);
        assert_eq!(t.shape, init(&before, name).shape, "{name}");
        let per_channel = t.shape[1..].iter().product::<usize>();
        for row in f32s(&t).chunks(per_channel) {
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / per_channel as f64;
            let var = row.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / per_channel as f64;
            assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-4, "{name}: mean {mean}, variance {var}");
        }
    }
}
