//! Operator rules on small graphs built with `oto_onnx::builder`.

mod common;

use common::{attention_model, llama_block, residual_norm_model};
use oto_graph::{analyze, Analysis, AnalyzeOptions, ElementKind, Group, IndexMap, Role, ShapeLocation};
use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
use oto_onnx::Model;

fn run(model: &Model) -> Analysis {
    analyze(model, &AnalyzeOptions::default()).unwrap()
}

fn group<'a>(a: &'a Analysis, id: &str) -> &'a Group {
    a.group(id).unwrap_or_else(|| panic!("no group {id}:\n{}", a.table()))
}

/// The group holding slice `init:axis`.
fn group_with<'a>(a: &'a Analysis, init: &str, axis: usize) -> &'a Group {
    a.groups
        .iter()
        .find(|g| g.members.iter().any(|m| m.initializer == init && m.axis == axis))
        .unwrap_or_else(|| panic!("no group holds {init}:{axis}:\n{}", a.table()))
}

fn member<'a>(g: &'a Group, init: &str, axis: usize) -> &'a oto_graph::Member {
    g.members
        .iter()
        .find(|m| m.initializer == init && m.axis == axis)
        .unwrap_or_else(|| panic!("group {} has no member {init}:{axis}: {:?}", g.id, g.members))
}

fn w(b: &mut GraphBuilder, name: &str, shape: &[usize]) -> String {
    b.weight(name, shape, |i| ((i * 7919 % 13) as f32 - 6.0) / 10.0)
}

fn conv(b: &mut GraphBuilder, x: &str, name: &str, cin: usize, cout: usize, k: usize, group: usize) -> String {
    let wt = w(b, &format!("{name}.weight"), &[cout, cin / group, k, k]);
    let bias = w(b, &format!("{name}.bias"), &[cout]);
    let pad = (k / 2) as i64;
    b.node_with("Conv", &[x, &wt, &bias], &[], &[("group", Attr::Int(group as i64)), ("pads", Attr::Ints(vec![pad; 4]))])
}

fn bn(b: &mut GraphBuilder, x: &str, name: &str, c: usize) -> String {
    let s = w(b, &format!("{name}.weight"), &[c]);
    let bias = w(b, &format!("{name}.bias"), &[c]);
    let m = w(b, &format!("{name}.running_mean"), &[c]);
    let v = b.weight(&format!("{name}.running_var"), &[c], |_| 1.0);
    b.node("BatchNormalization", &[x, &s, &bias, &m, &v], &[])
}

/// GAP -> Flatten -> Gemm(classes): the classifier head of the CNN tests.
fn head(b: &mut GraphBuilder, x: &str, c: usize) {
    let p = b.node("GlobalAveragePool", &[x], &[]);
    let f = b.node_with("Flatten", &[&p], &[], &[("axis", Attr::Int(1))]);
    let fw = w(b, "fc.weight", &[10, c]);
    let fb = w(b, "fc.bias", &[10]);
    let y = b.node_with("Gemm", &[&f, &fw, &fb], &["y"], &[("transB", Attr::Int(1))]);
    b.output_f32(&y, &batch_dims(&[10]));
}

#[test]
fn conv_bn_relu_chain() {
    let mut b = GraphBuilder::new("chain");
    let x = b.input_f32("x", &batch_dims(&[3, 8, 8]));
    let c1 = conv(&mut b, &x, "c1", 3, 8, 3, 1);
    let n1 = bn(&mut b, &c1, "bn1", 8);
    let r1 = b.node("Relu", &[&n1], &[]);
    let c2 = conv(&mut b, &r1, "c2", 8, 16, 3, 1);
    let r2 = b.node("Relu", &[&c2], &[]);
    head(&mut b, &r2, 16);
    let a = run(&b.build().unwrap());
    let g = group(&a, "bn1.bias:0");
    assert!(g.prunable, "{:?}", g.reasons);
    assert_eq!((g.num_elements, g.kind), (8, ElementKind::Channel));
    assert_eq!(member(g, "c1.weight", 0).role, Role::Producer);
    assert_eq!(member(g, "c1.bias", 0).role, Role::Producer);
    assert_eq!(member(g, "bn1.weight", 0).role, Role::Producer);
    assert_eq!(member(g, "bn1.running_var", 0).role, Role::Aux);
    assert_eq!(member(g, "c2.weight", 1).role, Role::Consumer);
    let g2 = group(&a, "c2.bias:0");
    assert!(g2.prunable);
    assert_eq!(member(g2, "fc.weight", 1).map, IndexMap::Blocks { offset: 0, block: 1 });
    // The logits are a graph output: not prunable.
    assert!(!group(&a, "fc.bias:0").prunable);
}

#[test]
fn residual_add_joins_spaces() {
    let mut b = GraphBuilder::new("res");
    let x = b.input_f32("x", &batch_dims(&[3, 8, 8]));
    let c1 = conv(&mut b, &x, "c1", 3, 8, 3, 1);
    let r1 = b.node("Relu", &[&c1], &[]);
    let c2 = conv(&mut b, &r1, "c2", 8, 8, 3, 1);
    let s = b.node("Add", &[&c2, &r1], &[]);
    let r2 = b.node("Relu", &[&s], &[]);
    head(&mut b, &r2, 8);
    let a = run(&b.build().unwrap());
    let g = group(&a, "c1.bias:0");
    assert!(g.prunable);
    for (init, axis, role) in [("c1.weight", 0, Role::Producer), ("c2.weight", 0, Role::Producer), ("c2.weight", 1, Role::Consumer)] {
        assert_eq!(member(g, init, axis).role, role);
    }
    assert_eq!(a.groups.len(), 2, "{}", a.table());
}

#[test]
fn concat_offsets_then_batchnorm() {
    let mut b = GraphBuilder::new("cat");
    let x = b.input_f32("x", &batch_dims(&[3, 8, 8]));
    let a1 = conv(&mut b, &x, "a", 3, 4, 3, 1);
    let a2 = conv(&mut b, &x, "b", 3, 6, 1, 1);
    let cat = b.node_with("Concat", &[&a1, &a2], &[], &[("axis", Attr::Int(1))]);
    let n = bn(&mut b, &cat, "bn", 10);
    let r = b.node("Relu", &[&n], &[]);
    let c = conv(&mut b, &r, "c", 10, 8, 3, 1);
    head(&mut b, &c, 8);
    let an = run(&b.build().unwrap());
    let ga = group(&an, "a.bias:0");
    let gb = group(&an, "b.bias:0");
    assert!(ga.prunable && gb.prunable);
    assert_eq!((ga.num_elements, gb.num_elements), (4, 6));
    assert_eq!(member(ga, "bn.weight", 0).map, IndexMap::Blocks { offset: 0, block: 1 });
    assert_eq!(member(gb, "bn.weight", 0).map, IndexMap::Blocks { offset: 4, block: 1 });
    assert_eq!(member(gb, "c.weight", 1).map, IndexMap::Blocks { offset: 4, block: 1 });
    assert_eq!(member(gb, "c.weight", 1).role, Role::Consumer);
}

#[test]
fn flatten_into_gemm_takes_blocks() {
    let mut b = GraphBuilder::new("flat");
    let x = b.input_f32("x", &batch_dims(&[3, 4, 4]));
    let c = conv(&mut b, &x, "c", 3, 5, 3, 1);
    let r = b.node("Relu", &[&c], &[]);
    let f = b.node_with("Flatten", &[&r], &[], &[("axis", Attr::Int(1))]);
    let fw = w(&mut b, "fc.weight", &[7, 80]);
    let g = b.node_with("Gemm", &[&f, &fw], &[], &[("transB", Attr::Int(1))]);
    let r2 = b.node("Relu", &[&g], &[]);
    // MatMul with a [K, N] weight (GPT-2 style) after it.
    let mw = w(&mut b, "out.weight", &[7, 3]);
    let y = b.node("MatMul", &[&r2, &mw], &["y"]);
    b.output_f32(&y, &batch_dims(&[3]));
    let a = run(&b.build().unwrap());
    let gc = group(&a, "c.bias:0");
    assert!(gc.prunable);
    assert_eq!(member(gc, "fc.weight", 1).map, IndexMap::Blocks { offset: 0, block: 16 });
    let gf = group(&a, "fc.weight:0");
    assert!(gf.prunable, "{:?}", gf.reasons);
    assert_eq!(member(gf, "out.weight", 0).role, Role::Consumer);
}

#[test]
fn gemm_without_trans_b() {
    let mut b = GraphBuilder::new("gemm");
    let x = b.input_f32("x", &batch_dims(&[4]));
    let w1 = w(&mut b, "l1.weight", &[4, 6]);
    let b1 = w(&mut b, "l1.bias", &[6]);
    let h = b.node("Gemm", &[&x, &w1, &b1], &[]);
    let r = b.node("Relu", &[&h], &[]);
    let w2 = w(&mut b, "l2.weight", &[6, 2]);
    let y = b.node("Gemm", &[&r, &w2], &["y"]);
    b.output_f32(&y, &batch_dims(&[2]));
    let a = run(&b.build().unwrap());
    let g = group(&a, "l1.bias:0");
    assert!(g.prunable);
    assert_eq!(member(g, "l1.weight", 1).role, Role::Producer);
    assert_eq!(member(g, "l2.weight", 0).role, Role::Consumer);
}

#[test]
fn depthwise_passes_through_and_grouped_takes_conv_groups() {
    let mut b = GraphBuilder::new("dw");
    let x = b.input_f32("x", &batch_dims(&[3, 8, 8]));
    let c1 = conv(&mut b, &x, "c1", 3, 8, 1, 1);
    let r1 = b.node("Relu", &[&c1], &[]);
    let dw = conv(&mut b, &r1, "dw", 8, 8, 3, 8);
    let r2 = b.node("Relu", &[&dw], &[]);
    let c2 = conv(&mut b, &r2, "c2", 8, 12, 1, 1);
    let r3 = b.node("Relu", &[&c2], &[]);
    let gc = conv(&mut b, &r3, "gc", 12, 12, 3, 3);
    let r4 = b.node("Relu", &[&gc], &[]);
    head(&mut b, &r4, 12);
    let model = b.build().unwrap();
    let a = run(&model);
    let g = group(&a, "c1.bias:0");
    assert!(g.prunable);
    assert_eq!(g.kind, ElementKind::Channel);
    assert_eq!(member(g, "dw.weight", 0).role, Role::Producer);
    assert_eq!(member(g, "dw.bias", 0).role, Role::Producer);
    assert_eq!(member(g, "c2.weight", 1).role, Role::Consumer);
    let dw_node = model.proto.graph.as_ref().unwrap().node[2].name.clone().unwrap();
    assert_eq!(g.shape_constants.len(), 1);
    assert_eq!(g.shape_constants[0].location, ShapeLocation::Attribute { node: dw_node, attribute: "group".into() });
    assert_eq!(g.shape_constants[0].per_element, 1);
    let g2 = group(&a, "c2.bias:0");
    assert!(g2.prunable, "{:?}", g2.reasons);
    assert_eq!((g2.kind, g2.num_elements), (ElementKind::ConvGroup { channels: 4 }, 3));
    assert_eq!(member(g2, "gc.weight", 0).map, IndexMap::Blocks { offset: 0, block: 4 });
    assert_eq!(member(g2, "fc.weight", 1).map, IndexMap::Blocks { offset: 0, block: 4 });
}

#[test]
fn group_normalization_groups_are_elements() {
    let mut b = GraphBuilder::new("gn");
    let x = b.input_f32("x", &batch_dims(&[3, 8, 8]));
    let c1 = conv(&mut b, &x, "c1", 3, 8, 3, 1);
    let s = w(&mut b, "gn.weight", &[8]);
    let bias = w(&mut b, "gn.bias", &[8]);
    b.opset(21);
    let n = b.node_with("GroupNormalization", &[&c1, &s, &bias], &[], &[("num_groups", Attr::Int(4))]);
    let r = b.node("Relu", &[&n], &[]);
    head(&mut b, &r, 8);
    let a = run(&b.build().unwrap());
    let g = group(&a, "c1.bias:0");
    assert!(g.prunable, "{:?}", g.reasons);
    assert_eq!((g.kind, g.num_elements), (ElementKind::NormGroup { channels: 2 }, 4));
    assert_eq!(member(g, "gn.weight", 0).map, IndexMap::Blocks { offset: 0, block: 2 });
    assert_eq!(g.shape_constants[0].per_element, 1);
}

#[test]
fn custom_operator_blocks_exactly_what_it_touches() {
    let mut b = GraphBuilder::new("custom");
    b.import_domain("com.example", 1);
    let x = b.input_f32("x", &batch_dims(&[3, 8, 8]));
    let c1 = conv(&mut b, &x, "c1", 3, 8, 3, 1);
    let r1 = b.node("Relu", &[&c1], &[]);
    let c2 = conv(&mut b, &r1, "c2", 8, 8, 3, 1);
    let odd = b.node_in_domain("com.example", "Mystery", &[&c2], &["odd"], &[]);
    b.shape("odd", oto_onnx::DType::F32, &batch_dims(&[8, 8, 8]));
    let c3 = conv(&mut b, &odd, "c3", 8, 6, 3, 1);
    let r3 = b.node("Relu", &[&c3], &[]);
    head(&mut b, &r3, 6);
    // Shape inference cannot see through the custom operator: declare what follows it.
    let f32 = oto_onnx::DType::F32;
    b.shape(&c3, f32, &batch_dims(&[6, 8, 8])).shape(&r3, f32, &batch_dims(&[6, 8, 8]));
    b.shape("globalaveragepool_7_out", f32, &batch_dims(&[6, 1, 1])).shape("flatten_8_out", f32, &batch_dims(&[6]));
    let a = run(&b.build().unwrap());
    assert!(group(&a, "c1.bias:0").prunable);
    let g2 = group(&a, "c2.bias:0");
    assert!(!g2.prunable);
    assert!(g2.reasons.iter().any(|r| r.contains("Mystery")), "{:?}", g2.reasons);
    assert!(group(&a, "c3.bias:0").prunable, "{}", a.table());
    assert_eq!(a.blocked.len(), 1);
    assert_eq!(a.blocked[0].op_type, "com.example::Mystery");
}

/// An exporter or optimizer may share one initializer between a layer and a node the
/// analysis does not follow channels through: an operator it does not understand
/// (onnxruntime's optimizer feeds a Gemm's bias, de-duplicated with a layer's, to its
/// SkipLayerNormalization), or one that no tracked channels reach (the Add that
/// SkipLayerNormalization becomes, after an attention fusion oto cannot read). The
/// group holding the initializer stays whole, whether that node comes before the layer
/// or after.
#[test]
fn an_initializer_an_unfollowed_node_reads_is_not_cut() {
    for (reader, opaque_first) in [("Mystery", true), ("Mystery", false), ("Add", true), ("Add", false)] {
        let mut b = GraphBuilder::new("shared_with_custom");
        b.import_domain("com.example", 1);
        let x = b.input_f32("x", &batch_dims(&[3, 8, 8]));
        b.input_f32("side", &batch_dims(&[8]));
        let domain = if reader == "Add" { "" } else { "com.example" };
        let mystery = |b: &mut GraphBuilder| {
            b.node_in_domain(domain, reader, &["side", "c1.bias"], &["odd"], &[]);
            b.shape("odd", oto_onnx::DType::F32, &batch_dims(&[8]));
            b.output_f32("odd", &batch_dims(&[8]));
        };
        if opaque_first {
            // The bias exists before the node that reads it is added.
            w(&mut b, "c1.bias", &[8]);
            mystery(&mut b);
        }
        let wt = w(&mut b, "c1.weight", &[8, 3, 3, 3]);
        let c1 = b.node_with("Conv", &[&x, &wt, "c1.bias"], &[], &[("pads", Attr::Ints(vec![1; 4]))]);
        if !opaque_first {
            w(&mut b, "c1.bias", &[8]);
            mystery(&mut b);
        }
        let r1 = b.node("Relu", &[&c1], &[]);
        let c2 = conv(&mut b, &r1, "c2", 8, 8, 3, 1);
        let r2 = b.node("Relu", &[&c2], &[]);
        head(&mut b, &r2, 8);
        let a = run(&b.build().unwrap());
        let g1 = group(&a, "c1.bias:0");
        let ctx = format!("{reader}, first {opaque_first}");
        assert!(!g1.prunable, "{ctx}: {}", a.table());
        assert!(g1.reasons.iter().any(|r| r.contains("'c1.bias'") && r.contains(reader)), "{ctx}: {:?}", g1.reasons);
        assert!(group(&a, "c2.bias:0").prunable, "{ctx}: {}", a.table());
    }
}

#[test]
fn weight_sharing_is_one_member() {
    let mut b = GraphBuilder::new("shared");
    let x = b.input_f32("x", &batch_dims(&[3, 8, 8]));
    let c1 = conv(&mut b, &x, "stem", 3, 8, 3, 1);
    let r1 = b.node("Relu", &[&c1], &[]);
    let sw = w(&mut b, "shared.weight", &[8, 8, 3, 3]);
    let sb = w(&mut b, "shared.bias", &[8]);
    let pads = ("pads", Attr::Ints(vec![1; 4]));
    let s1 = b.node_with("Conv", &[&r1, &sw, &sb], &[], std::slice::from_ref(&pads));
    let r2 = b.node("Relu", &[&s1], &[]);
    let s2 = b.node_with("Conv", &[&r2, &sw, &sb], &[], &[pads]);
    let r3 = b.node("Relu", &[&s2], &[]);
    head(&mut b, &r3, 8);
    let a = run(&b.build().unwrap());
    let g = group(&a, "shared.bias:0");
    assert!(g.prunable, "{:?}", g.reasons);
    assert_eq!(g.members.iter().filter(|m| m.initializer == "shared.weight" && m.axis == 0).count(), 1);
    // stem, both uses and the head's input are one space.
    assert_eq!(member(g, "stem.weight", 0).role, Role::Producer);
    assert_eq!(member(g, "shared.weight", 1).role, Role::Consumer);
    assert_eq!(a.groups.len(), 2, "{}", a.table());
}

/// A sigmoid's `f(0) = 0.5` reaches the next convolution: its input slices are zeroed
/// with the element (producers), where after a Relu they are only read (consumers).
#[test]
fn sigmoid_before_a_consumer_zeroes_its_slices() {
    for (activation, role) in [("Sigmoid", Role::Producer), ("Relu", Role::Consumer)] {
        let mut b = GraphBuilder::new("sig");
        let x = b.input_f32("x", &batch_dims(&[3, 8, 8]));
        let c1 = conv(&mut b, &x, "c1", 3, 8, 3, 1);
        let s = b.node(activation, &[&c1], &[]);
        let c2 = conv(&mut b, &s, "c2", 8, 4, 3, 1);
        head(&mut b, &c2, 4);
        let a = run(&b.build().unwrap());
        let g = group(&a, "c1.bias:0");
        assert!(g.prunable, "{activation}: {:?}", g.reasons);
        assert_eq!(member(g, "c2.weight", 1).role, role, "{activation}");
    }
}

#[test]
fn user_marks_groups_unprunable() {
    let mut b = GraphBuilder::new("user");
    let x = b.input_f32("x", &batch_dims(&[3, 8, 8]));
    let c1 = conv(&mut b, &x, "c1", 3, 8, 3, 1);
    let r1 = b.node("Relu", &[&c1], &[]);
    let c2 = conv(&mut b, &r1, "c2", 8, 8, 3, 1);
    let r2 = b.node("Relu", &[&c2], &[]);
    head(&mut b, &r2, 8);
    let model = b.build().unwrap();
    let c2_node = model.proto.graph.as_ref().unwrap().node[2].name.clone().unwrap();
    let opts = AnalyzeOptions { unprunable: vec!["c1.weight".into(), c2_node] };
    let a = analyze(&model, &opts).unwrap();
    assert!(!group(&a, "c1.bias:0").prunable);
    assert!(!group(&a, "c2.bias:0").prunable);
    assert!(run(&model).group("c1.bias:0").unwrap().prunable);
}

#[test]
fn attention_heads_ffn_neurons_and_layernorm() {
    let model = attention_model(2, 2);
    let a = run(&model);
    let g = group_with(&a, "q.weight", 1);
    assert_eq!(g.id, "k.bias:0", "named after its first producer in name order");
    assert!(g.prunable, "{}", a.table());
    assert_eq!((g.kind, g.num_elements), (ElementKind::Head { dim: 4 }, 2));
    for (init, axis, role) in [
        ("q.weight", 1, Role::Producer),
        ("k.weight", 1, Role::Producer),
        ("v.weight", 1, Role::Producer),
        ("v.bias", 0, Role::Producer),
        ("o.weight", 0, Role::Consumer),
    ] {
        let m = member(g, init, axis);
        assert_eq!((m.role, m.map.clone()), (role, IndexMap::Blocks { offset: 0, block: 4 }), "{init}");
    }
    // H in the three head reshapes (1 per head), H*D in the merge (4 per head).
    let mut consts: Vec<(String, usize, i64)> = g
        .shape_constants
        .iter()
        .map(|c| match &c.location {
            ShapeLocation::Initializer { name } => (name.clone(), c.entry, c.per_element),
            other => panic!("{other}"),
        })
        .collect();
    consts.sort();
    let want = [("kh.shape", 2, 1), ("merge.shape", 2, 4), ("qh.shape", 2, 1), ("vh.shape", 2, 1)];
    assert_eq!(consts, want.map(|(a, b, c)| (a.to_string(), b, c)).to_vec());
    let ffn = group(&a, "ff1.bias:0");
    assert!(ffn.prunable);
    assert_eq!((ffn.kind, ffn.num_elements), (ElementKind::Channel, 16));
    // The residual width adds the graph input: unprunable for that, not for the
    // LayerNormalization over it (which construction keeps exact by padding).
    let resid = group_with(&a, "o.bias", 0);
    assert!(!resid.prunable);
    assert!(resid.reasons.iter().any(|r| r.contains("combined with 'x'")), "{:?}", resid.reasons);
    assert!(!resid.reasons.iter().any(|r| r.contains("LayerNormalization")), "{:?}", resid.reasons);
}

#[test]
fn grouped_query_attention_ties_kv_heads_to_query_heads() {
    let a = run(&attention_model(4, 2));
    let g = group_with(&a, "q.weight", 1);
    // Two K/V heads of dim 2, each serving two query heads: an element is a K/V head
    // (2 channels of k and v) with its two query heads (4 channels of q).
    assert!(g.prunable, "{}", a.table());
    assert_eq!(g.num_elements, 2, "{}", a.table());
    assert_eq!(member(g, "k.weight", 1).map, IndexMap::Blocks { offset: 0, block: 2 });
    assert_eq!(member(g, "v.bias", 0).map, IndexMap::Blocks { offset: 0, block: 2 });
    assert_eq!(member(g, "q.weight", 1).map, IndexMap::Blocks { offset: 0, block: 4 });
    assert_eq!(member(g, "o.weight", 0).map, IndexMap::Blocks { offset: 0, block: 4 });
}

#[test]
fn ids_do_not_depend_on_node_order() {
    let model = attention_model(2, 2);
    let mut p = model.proto.clone();
    p.graph.as_mut().unwrap().node.reverse();
    let reversed = Model::from_proto(p, "reversed", None).unwrap();
    let (a, b) = (run(&model), run(&reversed));
    let ids = |a: &Analysis| a.groups.iter().map(|g| (g.id.clone(), g.num_elements, g.prunable)).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b));
}

/// RMSNorm, rotary embeddings, grouped-query attention and SwiGLU: an element of the
/// attention group is a K/V head (4 channels of k and v) with its two query heads (8
/// channels of q, 8 rows of o); the SwiGLU neurons are channels of gate and up (rows of
/// down); the residual width starts at the graph input: unprunable, but not because of
/// RMSNorm's ReduceMean (see `rmsnorm_keeps_the_residual_stream_prunable`).
#[test]
fn llama_block_groups() {
    let a = run(&llama_block());
    let heads = group_with(&a, "q.weight", 1);
    assert!(heads.prunable, "{}", a.table());
    assert_eq!(heads.num_elements, 2);
    assert_eq!(member(heads, "q.weight", 1).map, IndexMap::Blocks { offset: 0, block: 8 });
    assert_eq!(member(heads, "k.weight", 1).map, IndexMap::Blocks { offset: 0, block: 4 });
    assert_eq!(member(heads, "o.weight", 0).map, IndexMap::Blocks { offset: 0, block: 8 });
    let mlp = group_with(&a, "gate.weight", 1);
    assert!(mlp.prunable, "{}", a.table());
    assert_eq!(mlp.num_elements, 24);
    assert_eq!(member(mlp, "up.weight", 1).role, Role::Producer);
    assert_eq!(member(mlp, "down.weight", 0).role, Role::Consumer);
    let hidden = group_with(&a, "o.weight", 1);
    assert!(!hidden.prunable);
    assert!(!hidden.reasons.iter().any(|r| r.contains("ReduceMean")), "{:?}", hidden.reasons);
}

/// RMSNorm (mean of squares over the residual width): a zero channel adds nothing to
/// the sum of squares, so the residual stream is one prunable group whose elements are
/// its channels, with each ReduceMean's divisor (16 entries, 1 per element) recorded for
/// construction to keep; the norms' weights are sliced, not zeroed.
#[test]
fn rmsnorm_keeps_the_residual_stream_prunable() {
    let a = run(&residual_norm_model(false));
    let hidden = group_with(&a, "in.weight", 1);
    assert!(hidden.prunable, "{}", a.table());
    assert_eq!((hidden.kind, hidden.num_elements), (ElementKind::Channel, 16));
    for (init, axis, role) in [
        ("in.weight", 1, Role::Producer),
        ("down.weight", 1, Role::Producer),
        ("ln1.weight", 0, Role::Aux),
        ("ln_f.weight", 0, Role::Aux),
        ("up.weight", 0, Role::Consumer),
        ("head.weight", 0, Role::Consumer),
    ] {
        assert_eq!(member(hidden, init, axis).role, role, "{init}:{axis}");
    }
    let mut divisors: Vec<(u64, usize, i64)> = hidden
        .shape_constants
        .iter()
        .map(|c| match &c.location {
            ShapeLocation::MeanDivisor { count, .. } => (*count, c.entry, c.per_element),
            other => panic!("unexpected shape constant {other}"),
        })
        .collect();
    divisors.sort_unstable();
    assert_eq!(divisors, vec![(16, 0, 1), (16, 0, 1)]);
    assert!(group_with(&a, "up.weight", 1).prunable, "{}", a.table());
    // A saved analysis whose divisor is not the node's count is refused.
    let model = residual_norm_model(false);
    a.check(&model).unwrap();
    let mut bad = a.clone();
    for c in bad.groups.iter_mut().flat_map(|g| g.shape_constants.iter_mut()) {
        if let ShapeLocation::MeanDivisor { count, .. } = &mut c.location {
            *count = 15;
        }
    }
    let err = bad.check(&model).unwrap_err().to_string();
    assert!(err.contains("the divisor 15 of the mean") && err.contains("the node averages 16 entries"), "{err}");
}

/// LayerNorm written out centres the channels first (a pruned channel becomes `-mean`),
/// but the whole pattern normalizes zeros as the operator does: the residual stream is
/// one prunable group whose norms record the width construction pads back to, with the
/// norms' scale and bias as producers (zeroed: they make the pruned channels zero again).
#[test]
fn decomposed_layernorm_keeps_the_residual_stream_prunable() {
    let model = residual_norm_model(true);
    let a = run(&model);
    let hidden = group_with(&a, "in.weight", 1);
    assert!(hidden.prunable, "{}", a.table());
    assert_eq!((hidden.kind, hidden.num_elements), (ElementKind::Channel, 16));
    for (init, axis, role) in [
        ("ln1.weight", 0, Role::Producer),
        ("ln1.bias", 0, Role::Producer),
        ("ln_f.weight", 0, Role::Producer),
        ("up.weight", 0, Role::Consumer),
        ("head.weight", 0, Role::Consumer),
    ] {
        assert_eq!(member(hidden, init, axis).role, role, "{init}:{axis}");
    }
    let widths: Vec<(usize, u64, i64)> = hidden
        .shape_constants
        .iter()
        .map(|c| match &c.location {
            ShapeLocation::NormWidth { axis, size, .. } => (*axis, *size, c.per_element),
            other => panic!("unexpected shape constant {other}"),
        })
        .collect();
    assert_eq!(widths, vec![(2, 16, 1), (2, 16, 1)]);
    assert!(group_with(&a, "up.weight", 1).prunable, "{}", a.table());
    // A saved analysis whose width is not the layer's is refused.
    a.check(&model).unwrap();
    let mut bad = a.clone();
    for c in bad.groups.iter_mut().flat_map(|g| g.shape_constants.iter_mut()) {
        if let ShapeLocation::NormWidth { size, .. } = &mut c.location {
            *size = 15;
        }
    }
    let err = bad.check(&model).unwrap_err().to_string();
    assert!(err.contains("the width 15 of axis 2") && err.contains("not a normalized axis of that size"), "{err}");
}

/// ConvTranspose weights are [C_in, C_out/g, k, k]: axis 0 reads the incoming space,
/// axis 1 produces the new one; InstanceNormalization's scale and bias are producers.
#[test]
fn conv_transpose_and_instance_norm() {
    let mut b = GraphBuilder::new("convt");
    let x = b.input_f32("x", &batch_dims(&[3, 8, 8]));
    let c1 = conv(&mut b, &x, "c1", 3, 8, 3, 1);
    let r1 = b.node("Relu", &[&c1], &[]);
    let tw = w(&mut b, "up.weight", &[8, 5, 2, 2]);
    let tb = w(&mut b, "up.bias", &[5]);
    let up = b.node_with("ConvTranspose", &[&r1, &tw, &tb], &[], &[("strides", Attr::Ints(vec![2, 2]))]);
    let s = w(&mut b, "in.weight", &[5]);
    let bias = w(&mut b, "in.bias", &[5]);
    let n = b.node("InstanceNormalization", &[&up, &s, &bias], &[]);
    let r2 = b.node("Relu", &[&n], &[]);
    let c2 = conv(&mut b, &r2, "c2", 5, 3, 3, 1);
    b.output_f32(&c2, &batch_dims(&[3, 16, 16]));
    let a = run(&b.build().unwrap());
    let g1 = group(&a, "c1.bias:0");
    assert!(g1.prunable, "{}", a.table());
    assert_eq!(member(g1, "up.weight", 0).role, Role::Consumer);
    let g2 = group_with(&a, "up.weight", 1);
    assert!(g2.prunable, "{}", a.table());
    assert_eq!(g2.num_elements, 5);
    for (init, axis, role) in [
        ("up.weight", 1, Role::Producer),
        ("up.bias", 0, Role::Producer),
        ("in.weight", 0, Role::Producer),
        ("in.bias", 0, Role::Producer),
        ("c2.weight", 1, Role::Consumer),
    ] {
        assert_eq!(member(g2, init, axis).role, role, "{init}");
    }
}

/// An embedding lookup opens a space on the embedding width (its columns are producers).
#[test]
fn embedding_columns_are_producers() {
    let mut b = GraphBuilder::new("emb");
    let ids = b.input("ids", oto_onnx::DType::I64, &batch_dims(&[4]));
    let table = w(&mut b, "emb.weight", &[10, 6]);
    let e = b.node("Gather", &[&table, &ids], &[]);
    let r = b.node("Relu", &[&e], &[]);
    let fw = w(&mut b, "fc.weight", &[6, 3]);
    let y = b.node("MatMul", &[&r, &fw], &["y"]);
    b.output_f32(&y, &batch_dims(&[4, 3]));
    let a = run(&b.build().unwrap());
    let g = group(&a, "emb.weight:1");
    assert!(g.prunable, "{}", a.table());
    assert_eq!(g.num_elements, 6);
    assert_eq!(member(g, "fc.weight", 0).role, Role::Consumer);
}

/// `GatherND` and `ScatterND` index their data with runtime indices: channels on an axis
/// the indices pick (GatherND's channels, ScatterND's any) block; GatherND's axes after
/// the ones it picks pass whole (indices `[2, 1]` pick rows of the batch axis and keep the
/// channels: prunable).
#[test]
fn gather_nd_and_scatter_nd_block_the_channels_they_touch() {
    for (op, picks) in [("GatherND", 1usize), ("GatherND", 2), ("ScatterND", 1)] {
        let mut b = GraphBuilder::new("nd");
        let x = b.input_f32("x", &batch_dims(&[3, 8, 8]));
        let c1 = conv(&mut b, &x, "c1", 3, 8, 3, 1);
        let r1 = b.node("Relu", &[&c1], &[]);
        // Index rows address the first `picks` axes: [0] and [0] (GatherND: [2, 8, 8, 8];
        // ScatterND: the input's shape), or (0, 1) and (0, 3) (GatherND: [2, 8, 8]).
        let values = if picks == 1 { vec![0, 0] } else { vec![0, 1, 0, 3] };
        let idx = b.initializer("idx", oto_onnx::Tensor::new(vec![2, picks], oto_onnx::TensorData::I64(values)).unwrap());
        let y = if op == "GatherND" {
            let g = b.node("GatherND", &[&r1, &idx], &[]);
            if picks == 2 {
                let axes = b.ints("axes", &[1]);
                b.node("Unsqueeze", &[&g, &axes], &[])
            } else {
                g
            }
        } else {
            let u = b.input_f32("u", &oto_onnx::builder::known_dims(&[2, 8, 8, 8]));
            b.node("ScatterND", &[&r1, &idx, &u], &[])
        };
        let cin = if picks == 2 { 1 } else { 8 };
        let c2 = conv(&mut b, &y, "c2", cin, 4, 3, 1);
        head(&mut b, &c2, 4);
        let a = run(&b.build().unwrap());
        let g = group(&a, "c1.bias:0");
        if op == "GatherND" && picks == 1 {
            assert!(g.prunable, "{op}: {}", a.table());
            assert_eq!(member(g, "c2.weight", 1).role, Role::Consumer, "{}", a.table());
            continue;
        }
        assert!(!g.prunable, "{op}: {}", a.table());
        assert!(g.reasons.iter().any(|r| r.contains(op) && r.contains("runtime indices")), "{op}: {:?}", g.reasons);
        assert!(a.blocked.iter().any(|o| o.op_type == op), "{op}");
        assert!(group(&a, "c2.bias:0").prunable, "{op}: {}", a.table());
    }
}

/// `Where(IsNaN(h), 0, h)` (the TorchScript exporter's sdpa guard after the softmax):
/// the condition follows the channels of `h`, position by position; the channels stay
/// prunable.
#[test]
fn where_with_a_condition_from_the_channels() {
    let mut b = GraphBuilder::new("where_isnan");
    let x = b.input_f32("x", &batch_dims(&[16]));
    let w1 = w(&mut b, "fc1.weight", &[32, 16]);
    let b1 = w(&mut b, "fc1.bias", &[32]);
    let h = b.node_with("Gemm", &[&x, &w1, &b1], &[], &[("transB", Attr::Int(1))]);
    let h = b.node("Relu", &[&h], &[]);
    let nan = b.node("IsNaN", &[&h], &[]);
    let zero = b.initializer("zero", oto_onnx::Tensor::new(vec![], oto_onnx::TensorData::F32(vec![0.0])).unwrap());
    let g = b.node("Where", &[&nan, &zero, &h], &[]);
    let w2 = w(&mut b, "fc2.weight", &[10, 32]);
    let b2 = w(&mut b, "fc2.bias", &[10]);
    let y = b.node_with("Gemm", &[&g, &w2, &b2], &["y"], &[("transB", Attr::Int(1))]);
    b.output_f32(&y, &batch_dims(&[10]));
    let a = run(&b.build().unwrap());
    let g = group_with(&a, "fc1.weight", 0);
    assert!(g.prunable, "{}", a.table());
    assert_eq!(g.num_elements, 32);
    assert_eq!(member(g, "fc2.weight", 1).role, Role::Consumer);
    assert!(a.blocked.is_empty(), "{:?}", a.blocked);
}

/// A head split whose head dim is measured at run time from another value's width
/// (`q.view(B, S, 2, x.shape[2])`, as the TorchScript exporter writes `x.size(-1)`),
/// then attention of the heads with themselves:
/// removing heads edits only the head count; removing channels of `x` would shrink it by itself,
/// so construction adds them back in the computed target (a `Computed` edit of -1 per
/// element); the merge back (`[B, S, q.shape[2]]`) follows the heads by itself.
fn head_dim_measured_model() -> Model {
    let (s, e) = (4usize, 16usize);
    let mut b = GraphBuilder::new("measured");
    let x0 = b.input_f32("x0", &batch_dims(&[s as i64, 8]));
    let w0 = w(&mut b, "proj.weight", &[8, e]);
    let b0 = w(&mut b, "proj.bias", &[e]);
    let x = b.node("MatMul", &[&x0, &w0], &[]);
    let x = b.node("Add", &[&x, &b0], &[]);
    let x = b.node("Relu", &[&x], &[]);
    let wq = w(&mut b, "q.weight", &[e, 2 * e]);
    let bq = w(&mut b, "q.bias", &[2 * e]);
    let q = b.node("MatMul", &[&x, &wq], &[]);
    let q = b.node("Add", &[&q, &bq], &[]);
    let sx = b.node("Shape", &[&x], &[]);
    let (zero, two, heads, last) = (b.ints("zero", &[0]), b.ints("two", &[2]), b.ints("heads", &[2]), b.ints("last", &[2]));
    let bs = b.node("Slice", &[&sx, &zero, &two], &[]);
    let dx = b.node_with("Gather", &[&sx, &last], &[], &[("axis", Attr::Int(0))]);
    let target = b.node_with("Concat", &[&bs, &heads, &dx], &["split_target"], &[("axis", Attr::Int(0))]);
    let qh = b.node("Reshape", &[&q, &target], &["split"]);
    // Self-attention of the heads with themselves: q (q^T) q, per head.
    let qt = b.node_with("Transpose", &[&qh], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
    let kt = b.node_with("Transpose", &[&qt], &[], &[("perm", Attr::Ints(vec![0, 1, 3, 2]))]);
    let scores = b.node("MatMul", &[&qt, &kt], &[]);
    let o = b.node("MatMul", &[&scores, &qt], &[]);
    let r = b.node_with("Transpose", &[&o], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
    let sq = b.node("Shape", &[&q], &[]);
    let dq = b.node_with("Gather", &[&sq, &last], &[], &[("axis", Attr::Int(0))]);
    let merge = b.node_with("Concat", &[&bs, &dq], &[], &[("axis", Attr::Int(0))]);
    let m = b.node("Reshape", &[&r, &merge], &["merge"]);
    let wo = w(&mut b, "out.weight", &[2 * e, 10]);
    let y = b.node("MatMul", &[&m, &wo], &["y"]);
    b.output_f32(&y, &batch_dims(&[s as i64, 10]));
    b.build().unwrap()
}

#[test]
fn head_dim_measured_from_another_value() {
    let e = 16usize;
    let a = run(&head_dim_measured_model());
    let heads = group_with(&a, "q.weight", 1);
    assert!(heads.prunable, "{}", a.table());
    assert_eq!((heads.num_elements, heads.kind), (2, ElementKind::Head { dim: e }), "{}", a.table());
    // The head count, read by the Concat that builds the target.
    let edits: Vec<_> = heads.shape_constants.iter().map(|c| (c.location.clone(), c.entry, c.per_element)).collect();
    assert_eq!(edits, vec![(ShapeLocation::Initializer { name: "heads".into() }, 0, 1)]);
    let xg = group_with(&a, "proj.weight", 1);
    assert!(xg.prunable, "{}", a.table());
    assert_eq!(xg.num_elements, e);
    // Edited for the split Reshape alone (the merge's target measures q, which follows).
    let edits: Vec<_> = xg.shape_constants.iter().map(|c| (c.location.clone(), c.entry, c.per_element, c.nodes.len())).collect();
    assert_eq!(edits, vec![(ShapeLocation::Computed { value: "split_target".into(), len: 4 }, 3, -1, 1)], "{}", a.table());
}

/// Grouped-query attention as the TorchScript exporter writes transformers' `repeat_kv`:
/// the merge target's head count is `Shape(kv)[1] * n_rep`, computed at run time. The
/// measured K/V head count follows the heads by itself; `n_rep` is a multiplier that must
/// stay (before, it was taken for the constant counting the heads and edited).
#[test]
fn gqa_head_count_measured_times_a_constant() {
    let (s, e, d) = (4i64, 16usize, 8i64);
    let mut b = GraphBuilder::new("gqa_measured");
    let x = b.input_f32("x", &batch_dims(&[s, e as i64]));
    let proj = |b: &mut GraphBuilder, name: &str, heads: i64| -> String {
        let wt = w(b, &format!("{name}.weight"), &[e, (heads * d) as usize]);
        let m = b.node("MatMul", &[&x, &wt], &[]);
        let shape = b.ints(&format!("{name}.shape"), &[0, s, heads, d]);
        let r = b.node("Reshape", &[&m, &shape], &[]);
        b.node_with("Transpose", &[&r], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))])
    };
    let qh = proj(&mut b, "q", 4);
    let (kh, vh) = (proj(&mut b, "k", 2), proj(&mut b, "v", 2));
    let (i0, i1, axes, rep, tail) =
        (b.ints("i0", &[0]), b.ints("i1", &[1]), b.ints("axes", &[2]), b.ints("rep", &[2]), b.ints("tail", &[s, d]));
    let repeat = |b: &mut GraphBuilder, t: &str, name: &str| -> String {
        let u = b.node("Unsqueeze", &[t, &axes], &[]);
        let to = b.ints(&format!("{name}.expand"), &[1, 2, 2, s, d]);
        let x = b.node("Expand", &[&u, &to], &[]);
        let shape = b.node("Shape", &[t], &[]);
        let batch = b.node_with("Gather", &[&shape, &i0], &[], &[("axis", Attr::Int(0))]);
        let kv = b.node_with("Gather", &[&shape, &i1], &[], &[("axis", Attr::Int(0))]);
        let heads = b.node("Mul", &[&kv, &rep], &[]);
        let target = b.node_with("Concat", &[&batch, &heads, &tail], &[], &[("axis", Attr::Int(0))]);
        b.node("Reshape", &[&x, &target], &[])
    };
    let (kr, vr) = (repeat(&mut b, &kh, "k"), repeat(&mut b, &vh, "v"));
    let kt = b.node_with("Transpose", &[&kr], &[], &[("perm", Attr::Ints(vec![0, 1, 3, 2]))]);
    let scores = b.node("MatMul", &[&qh, &kt], &[]);
    let p = b.node_with("Softmax", &[&scores], &[], &[("axis", Attr::Int(-1))]);
    let o = b.node("MatMul", &[&p, &vr], &[]);
    let ot = b.node_with("Transpose", &[&o], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
    let merge = b.ints("merge", &[0, s, 4 * d]);
    let m = b.node("Reshape", &[&ot, &merge], &[]);
    let wo = w(&mut b, "o.weight", &[(4 * d) as usize, e]);
    let y = b.node("MatMul", &[&m, &wo], &["y"]);
    b.output_f32(&y, &batch_dims(&[s, e as i64]));
    let a = run(&b.build().unwrap());
    let g = group_with(&a, "k.weight", 1);
    assert!(g.prunable, "{}", a.table());
    assert_eq!(g.num_elements, 2, "{}", a.table());
    assert!(g.members.iter().any(|m| m.initializer == "q.weight"), "{:?}", g.members);
    let edited: Vec<(String, usize, i64)> = g
        .shape_constants
        .iter()
        .filter_map(|c| match &c.location {
            ShapeLocation::Initializer { name } => Some((name.clone(), c.entry, c.per_element)),
            _ => None,
        })
        .collect();
    // Per removed K/V head: one K/V head, two query heads; n_rep stays 2.
    for want in [("k.shape", 2, 1), ("v.shape", 2, 1), ("q.shape", 2, 2), ("k.expand", 1, 1), ("v.expand", 1, 1), ("merge", 2, 16)] {
        assert!(edited.contains(&(want.0.to_string(), want.1, want.2)), "{want:?} not in {edited:?}");
    }
    assert!(edited.iter().all(|(n, ..)| n != "rep"), "{edited:?}");
}

/// Found by the fuzz harness: an InstanceNormalization whose scale and bias are shorter
/// than its input's channels (shape inference does not read them) gave a group whose
/// scale member indexed past it, which the analysis' own `Analysis::check` then refused.
/// The analysis now refuses the model, naming the member and its size.
#[test]
fn norm_scale_shorter_than_the_channels_is_refused() {
    let mut b = GraphBuilder::new("short_scale");
    let x = b.input_f32("x", &batch_dims(&[3, 8, 8]));
    let c1 = conv(&mut b, &x, "c1", 3, 8, 3, 1);
    let scale = w(&mut b, "in1.weight", &[3]);
    let bias = w(&mut b, "in1.bias", &[3]);
    let n1 = b.node("InstanceNormalization", &[&c1, &scale, &bias], &[]);
    let r1 = b.node("Relu", &[&n1], &[]);
    head(&mut b, &r1, 8);
    let model = b.build().unwrap();
    let err = analyze(&model, &AnalyzeOptions::default()).unwrap_err().to_string();
    assert!(err.contains("member 'in1.") && err.contains("axis 0 of size 3"), "{err}");
}

/// Found by the fuzz harness: a saved analysis whose computed shape location claimed
/// u64::MAX entries passed `Analysis::check`, and construction then tried to allocate
/// them. The check now requires the length of the value the graph computes.
#[test]
fn saved_computed_location_with_a_wrong_length_is_refused() {
    let model = head_dim_measured_model();
    let a = run(&model);
    a.check(&model).unwrap();
    for len in [usize::MAX, 5, 0] {
        let mut bad = a.clone();
        for g in bad.groups.iter_mut() {
            for c in g.shape_constants.iter_mut() {
                if let ShapeLocation::Computed { len: l, .. } = &mut c.location {
                    *l = len;
                }
            }
        }
        let err = bad.check(&model).unwrap_err().to_string();
        assert!(err.contains(&format!("computed value 'split_target': {len} entries")), "{err}");
    }
}

/// RMSNormalization (opset 23) over a width whose pruned channels are zero: the width
/// stays prunable, its scale is sliced with it, and its mean's divisor is recorded; the
/// neurons of the MLP after it stay prunable.
#[test]
fn rms_normalization_keeps_the_normalized_width() {
    let mut b = GraphBuilder::new("rms");
    let x = b.input_f32("x", &batch_dims(&[5, 8]));
    let w1 = w(&mut b, "up.weight", &[8, 16]);
    let b1 = w(&mut b, "up.bias", &[16]);
    let h = b.node("MatMul", &[&x, &w1], &[]);
    let h = b.node("Add", &[&h, &b1], &[]);
    let scale = w(&mut b, "rms.weight", &[16]);
    let n = b.node_with("RMSNormalization", &[&h, &scale], &[], &[("axis", Attr::Int(-1))]);
    let w2 = w(&mut b, "ff1.weight", &[16, 12]);
    let f = b.node("MatMul", &[&n, &w2], &[]);
    let f = b.node("Relu", &[&f], &[]);
    let w3 = w(&mut b, "ff2.weight", &[12, 4]);
    let y = b.node("MatMul", &[&f, &w3], &["y"]);
    b.output_f32(&y, &batch_dims(&[5, 4]));
    b.opset(23);
    let model = b.build().unwrap();
    let a = run(&model);
    let width = group_with(&a, "up.weight", 1);
    assert!(width.prunable, "{}", a.table());
    assert_eq!(member(width, "rms.weight", 0).role, Role::Aux);
    assert_eq!(member(width, "ff1.weight", 0).role, Role::Consumer);
    let divisors: Vec<_> = width.shape_constants.iter().map(|c| (c.location.clone(), c.per_element)).collect();
    assert_eq!(divisors, vec![(ShapeLocation::MeanDivisor { value: n.clone(), count: 16 }, 1)]);
    let mlp = group_with(&a, "ff1.weight", 1);
    assert!(mlp.prunable, "{}", a.table());
    assert_eq!((mlp.kind, mlp.num_elements), (ElementKind::Channel, 12));
}

/// A grouped conv with C_in/g != C_out/g (16 -> 24 in 2 groups: 8 in, 12 out per group,
/// AlexNet's conv2): its input side (c1's channels) and its output side are prunable, an
/// element taking the same position in every conv group so that the groups stay equal.
#[test]
fn grouped_conv_with_unequal_sides_prunes_both() {
    let mut b = GraphBuilder::new("gc2");
    let x = b.input_f32("x", &batch_dims(&[3, 8, 8]));
    let c1 = conv(&mut b, &x, "c1", 3, 16, 3, 1);
    let r1 = b.node("Relu", &[&c1], &[]);
    let gc = conv(&mut b, &r1, "gc", 16, 24, 3, 2);
    let r2 = b.node("Relu", &[&gc], &[]);
    let c3 = conv(&mut b, &r2, "c3", 24, 8, 1, 1);
    let r3 = b.node("Relu", &[&c3], &[]);
    head(&mut b, &r3, 8);
    let a = run(&b.build().unwrap());
    let input_side = group(&a, "c1.bias:0");
    assert!(input_side.prunable, "{}", a.table());
    assert_eq!(input_side.num_elements, 8, "{}", a.table());
    assert_eq!(member(input_side, "gc.weight", 1).role, Role::Consumer);
    let output_side = group(&a, "gc.bias:0");
    assert!(output_side.prunable, "{}", a.table());
    assert_eq!(output_side.num_elements, 12, "{}", a.table());
    assert_eq!(member(output_side, "c3.weight", 1).role, Role::Consumer);
}

/// GPT-NeoX's attention: one projection whose columns are per head `[q | k | v]`, viewed
/// as `[B, S, H, 3D]` and sliced into q, k and v. A head is an element (its 3D columns),
/// the output projection loses the head's D rows, read through the window `v` is of
/// each head's block. The same with q, k and v taken by one Split (`chunk(3)`). A slice
/// of the merged heads that cuts a head's rows in two blocks the heads.
#[test]
fn heads_of_a_per_head_packed_projection() {
    for (cut_inside, by_split) in [(false, false), (false, true), (true, false)] {
        let (h, d, s) = (2i64, 4i64, 3i64);
        let e = h * d;
        let mut b = GraphBuilder::new("neox");
        let x = b.input_f32("x", &batch_dims(&[s, e]));
        let wqkv = w(&mut b, "qkv.weight", &[e as usize, (3 * e) as usize]);
        let bqkv = w(&mut b, "qkv.bias", &[(3 * e) as usize]);
        let m = b.node("MatMul", &[&x, &wqkv], &[]);
        let qkv = b.node("Add", &[&m, &bqkv], &[]);
        let shape = b.ints("heads.shape", &[0, s, h, 3 * d]);
        let heads = b.node("Reshape", &[&qkv, &shape], &[]);
        let part = |b: &mut GraphBuilder, name: &str, at: i64| -> String {
            let (st, en, ax) = (
                b.ints(&format!("{name}.starts"), &[at]),
                b.ints(&format!("{name}.ends"), &[at + d]),
                b.ints(&format!("{name}.axes"), &[3]),
            );
            let p = b.node("Slice", &[&heads, &st, &en, &ax], &[]);
            b.node_with("Transpose", &[&p], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))])
        };
        let (q, k, v) = if by_split {
            let sizes = b.ints("qkv.split", &[d, d, d]);
            b.node_with("Split", &[&heads, &sizes], &["sq", "sk", "sv"], &[("axis", Attr::Int(3))]);
            let t = |b: &mut GraphBuilder, p: &str| b.node_with("Transpose", &[p], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
            (t(&mut b, "sq"), t(&mut b, "sk"), t(&mut b, "sv"))
        } else {
            (part(&mut b, "q", 0), part(&mut b, "k", d), part(&mut b, "v", 2 * d))
        };
        let kt = b.node_with("Transpose", &[&k], &[], &[("perm", Attr::Ints(vec![0, 1, 3, 2]))]);
        let scores = b.node("MatMul", &[&q, &kt], &[]);
        let probs = b.node_with("Softmax", &[&scores], &[], &[("axis", Attr::Int(-1))]);
        let ctx = b.node("MatMul", &[&probs, &v], &[]);
        let ctx_t = b.node_with("Transpose", &[&ctx], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
        let merge = b.ints("merge.shape", &[0, s, e]);
        let mut merged = b.node("Reshape", &[&ctx_t, &merge], &[]);
        let rows = if cut_inside {
            // The first 6 of the 8 merged channels: head 0's 4 and half of head 1's.
            let (st, en, ax) = (b.ints("cut.starts", &[0]), b.ints("cut.ends", &[6]), b.ints("cut.axes", &[2]));
            merged = b.node("Slice", &[&merged, &st, &en, &ax], &[]);
            6
        } else {
            e as usize
        };
        let ow = w(&mut b, "o.weight", &[rows, e as usize]);
        let y = b.node("MatMul", &[&merged, &ow], &["y"]);
        b.output_f32(&y, &batch_dims(&[s, e]));
        let a = run(&b.build().unwrap());
        let g = group_with(&a, "qkv.weight", 1);
        if cut_inside {
            assert!(!g.prunable, "{}", a.table());
            assert!(g.reasons.iter().any(|r| r.contains("inside the blocks of a window of heads")), "{:?}", g.reasons);
            continue;
        }
        assert!(g.prunable, "{}", a.table());
        assert_eq!((g.kind, g.num_elements), (ElementKind::Head { dim: (3 * d) as usize }, h as usize), "{}", a.table());
        let cols = &member(g, "qkv.weight", 1).map;
        let rows = &member(g, "o.weight", 0).map;
        for head in 0..h as usize {
            let block = 3 * d as usize;
            assert_eq!(cols.indices(head), (head * block..(head + 1) * block).collect::<Vec<_>>());
            // The output projection reads the v window of the head: its D rows.
            let dd = d as usize;
            assert_eq!(rows.indices(head), (head * dd..(head + 1) * dd).collect::<Vec<_>>());
        }
    }
}

/// An `If` whose branches read a layer's output by name (the TorchScript exporter's
/// data-dependent `if`): the value is not among the node's inputs, and channels are not
/// followed into subgraphs, so the layer is not pruned (its consumer after the `If` would
/// keep the old width). The same graph with the branch's `Mul` inline prunes it.
#[test]
fn values_read_inside_subgraphs_are_blocked() {
    use oto_onnx::proto::{attribute_proto::AttributeType, AttributeProto, GraphProto, NodeProto, ValueInfoProto};
    let build = |with_if: bool| {
        let mut b = GraphBuilder::new("branch");
        b.opset(17);
        let x = b.input_f32("x", &batch_dims(&[8]));
        let w1 = b.weight("w1", &[8, 16], |i| (i as f32 * 0.37).sin());
        let b1 = b.weight("b1", &[16], |i| i as f32 * 0.01);
        let h = b.node("MatMul", &[&x, &w1], &[]);
        let h = b.node("Add", &[&h, &b1], &["h"]);
        let h = b.node("Relu", &[&h], &["hidden"]);
        let two = b.weight("two", &[], |_| 2.0);
        let branch = if with_if {
            let total = b.node_with("ReduceSum", &[&x], &[], &[("keepdims", Attr::Int(0))]);
            let zero = b.weight("zero", &[], |_| 0.0);
            let cond = b.node("Greater", &[&total, &zero], &["cond"]);
            b.node("If", &[&cond], &["branch"])
        } else {
            b.node("Mul", &[&h, &two], &["branch"])
        };
        let w2 = b.weight("w2", &[16, 4], |i| (i as f32 * 0.11).cos());
        let y = b.node("MatMul", &[&branch, &w2], &["y"]);
        b.output_f32(&y, &batch_dims(&[4]));
        let mut proto = b.proto();
        if with_if {
            let out = |name: &str| ValueInfoProto { name: Some(name.into()), ..Default::default() };
            let body = |name: &str, op: &str, inputs: &[&str]| GraphProto {
                name: Some(name.into()),
                node: vec![NodeProto {
                    op_type: Some(op.into()),
                    input: inputs.iter().map(|s| s.to_string()).collect(),
                    output: vec![format!("{name}_out")],
                    ..Default::default()
                }],
                output: vec![out(&format!("{name}_out"))],
                ..Default::default()
            };
            let graph = proto.graph.as_mut().unwrap();
            let node = graph.node.iter_mut().find(|n| n.op_type.as_deref() == Some("If")).unwrap();
            for (attr, g) in [("then_branch", body("then", "Mul", &[&h, &two])), ("else_branch", body("else", "Identity", &[&h]))] {
                node.attribute.push(AttributeProto {
                    name: Some(attr.into()),
                    r#type: Some(AttributeType::Graph as i32),
                    g: Some(g),
                    ..Default::default()
                });
            }
        }
        Model::from_proto(proto, "<builder:branch>", None).unwrap()
    };
    let inline = run(&build(false));
    assert!(group_with(&inline, "w1", 1).prunable, "{}", inline.table());
    let a = run(&build(true));
    let g = group_with(&a, "w1", 1);
    assert!(!g.prunable, "{}", a.table());
    assert!(g.reasons.iter().any(|r| r.contains("If") && r.contains("subgraph")), "{:?}", g.reasons);
    assert!(a.blocked.iter().any(|b| b.op_type == "If"), "{:?}", a.blocked);
}

/// An `If` on an input whose branches hold the layers (an Optimum merged decoder: the
/// decoder with and without its cache, the weights shared at the top), analyzed as it is
/// written: no channel reaches it, so there are no groups, and the blocked operators say
/// why. (Every command analyzes it normalized, both branches in the main graph: see
/// crates/graph/tests/optimum_groups.rs's merged decoders.)
#[test]
fn layers_inside_branches_are_listed() {
    use oto_onnx::proto::{attribute_proto::AttributeType, AttributeProto, GraphProto, NodeProto, ValueInfoProto};
    let mut b = GraphBuilder::new("merged");
    b.opset(17);
    let x = b.input_f32("x", &batch_dims(&[8]));
    b.input("use_cache_branch", oto_onnx::DType::Bool, &[oto_onnx::Dim::Known(1)]);
    b.weight("w", &[8, 4], |i| (i as f32 * 0.37).sin());
    b.weight("v", &[8, 4], |i| (i as f32 * 0.11).cos());
    let y = b.node("If", &["use_cache_branch"], &["y"]);
    b.output_f32(&y, &batch_dims(&[4]));
    let mut proto = b.proto();
    let body = |name: &str, weight: &str| GraphProto {
        name: Some(name.into()),
        node: vec![NodeProto {
            op_type: Some("MatMul".into()),
            input: vec![x.clone(), weight.to_string()],
            output: vec![format!("{name}_out")],
            ..Default::default()
        }],
        output: vec![ValueInfoProto { name: Some(format!("{name}_out")), ..Default::default() }],
        ..Default::default()
    };
    let node = proto.graph.as_mut().unwrap().node.iter_mut().find(|n| n.op_type.as_deref() == Some("If")).unwrap();
    for (attr, g) in [("then_branch", body("then", "w")), ("else_branch", body("else", "v"))] {
        node.attribute.push(AttributeProto {
            name: Some(attr.into()),
            r#type: Some(AttributeType::Graph as i32),
            g: Some(g),
            ..Default::default()
        });
    }
    let a = run(&Model::from_proto(proto, "<builder:merged>", None).unwrap());
    assert_eq!(a.prunable_groups().count(), 0, "{}", a.table());
    let listed = a.blocked.iter().find(|b| b.op_type == "If").unwrap_or_else(|| panic!("{:?}", a.blocked));
    assert!(listed.reason.contains("2 weight tensors") && listed.reason.contains("subgraphs"), "{}", listed.reason);
    // The branches' weights are in no group, and the table says so.
    let ungrouped: Vec<(&str, u64)> = a.ungrouped.iter().map(|u| (u.initializer.as_str(), u.params)).collect();
    assert_eq!(ungrouped, [("v", 32), ("w", 32)], "{}", a.table());
    assert!(a.table().contains("parameters in no group: 64 in 2 tensors"), "{}", a.table());
}

/// YOLO's box decoding as a dynamic-shape export writes it: one DFL channel `[B, 1, 4, A]`
/// reshaped by a computed target to `[B, 4, A]` (the channel a factor of the 4 sides), the
/// first two sides sliced (`chunk(2)`, bounds computed from `Shape`) and subtracted from a
/// constant `[1, 2, A]` of anchor points. The slice cuts inside the channel's block: its
/// channels are blocked and the sliced axis is followed no further, so the constant is
/// not taken for a slice of 4 sides (before, the analysis failed on the constant's dims).
#[test]
fn a_blocked_slice_leaves_its_own_size() {
    let mut b = GraphBuilder::new("dfl");
    b.opset(17);
    let x = b.input_f32("x", &batch_dims(&[16, 4, 6]));
    let wt = w(&mut b, "dfl.weight", &[1, 16, 1, 1]);
    let c = b.node("Conv", &[&x, &wt], &[]);
    let shape = b.node("Shape", &[&c], &[]);
    let (i0, i3) = (b.ints("i0", &[0]), b.ints("i3", &[3]));
    let n = b.node("Gather", &[&shape, &i0], &[]);
    let a = b.node("Gather", &[&shape, &i3], &[]);
    let four = b.ints("four", &[4]);
    let target = b.node_with("Concat", &[&n, &four, &a], &[], &[("axis", Attr::Int(0))]);
    let r = b.node("Reshape", &[&c, &target], &[]);
    let sides = b.node("Shape", &[&r], &[]);
    let i1 = b.ints("i1", &[1]);
    let count = b.node("Gather", &[&sides, &i1], &[]);
    let two = b.ints("two", &[2]);
    let half = b.node("Div", &[&count, &two], &[]);
    let (zero, axis) = (b.ints("zero", &[0]), b.ints("axis", &[1]));
    let lt = b.node("Slice", &[&r, &zero, &half, &axis], &[]);
    let anchors = w(&mut b, "anchors", &[1, 2, 6]);
    let y = b.node("Sub", &[&anchors, &lt], &["y"]);
    b.output_f32(&y, &batch_dims(&[2, 6]));
    let a = run(&b.build().unwrap());
    assert!(!group_with(&a, "dfl.weight", 0).prunable, "{}", a.table());
}

/// A quantized file (weights stored as int8 behind `DequantizeLinear`, as tf2onnx writes an
/// int8 TFLite model or `oto quantize` writes its output): no group, and every layer is
/// listed with what to do instead, even the first one, which no channel reaches.
#[test]
fn quantized_weights_say_to_prune_the_float_model() {
    use oto_onnx::{Tensor, TensorData};
    let mut b = GraphBuilder::new("quantized");
    b.opset(13);
    let x = b.input_f32("x", &batch_dims(&[3, 8, 8]));
    let q = b.initializer("conv.weight_quantized", Tensor::new(vec![4, 3, 1, 1], TensorData::I8(vec![1; 12])).unwrap());
    let scale = b.initializer("conv.weight_scale", Tensor::new(vec![], TensorData::F32(vec![0.1])).unwrap());
    let wt = b.node("DequantizeLinear", &[&q, &scale], &[]);
    let y = b.node("Conv", &[&x, &wt], &[]);
    let y = b.node("Relu", &[&y], &[]);
    let shape = b.ints("flat", &[-1, 256]);
    let y = b.node("Reshape", &[&y, &shape], &[]);
    let q2 = b.initializer("fc.weight_quantized", Tensor::new(vec![256, 5], TensorData::I8(vec![1; 1280])).unwrap());
    let wt2 = b.node("DequantizeLinear", &[&q2, &scale], &[]);
    let y = b.node("MatMul", &[&y, &wt2], &["y"]);
    b.output_f32(&y, &batch_dims(&[5]));
    let a = run(&b.build().unwrap());
    assert!(a.prunable_groups().next().is_none(), "{}", a.table());
    let quantized: Vec<&str> = a.blocked.iter().filter(|o| o.reason.contains("quantized")).map(|o| o.op_type.as_str()).collect();
    assert_eq!(quantized, ["Conv", "MatMul"], "{:?}", a.blocked);
    assert!(a.blocked[0].reason.contains("prune the float model"), "{:?}", a.blocked);
}

/// The other forms of a quantized file: onnxruntime's dynamic quantization
/// (`DynamicQuantizeLinear` -> `ConvInteger`), its operator format (`QLinearConv` with
/// per-channel scales and an int32 bias) and its 4-bit weights (`com.microsoft`
/// `MatMulNBits`, two weights a byte). Every layer is listed with what to do instead; its
/// integer weights count as the parameters they hold (the scales and zero points do not),
/// and its MACs as the float layer's.
#[test]
fn integer_layers_say_to_prune_the_float_model() {
    use oto_onnx::{DType, Tensor, TensorData};
    let mut b = GraphBuilder::new("integer layers");
    b.opset(13).import_domain("com.microsoft", 1);
    let x = b.input_f32("x", &batch_dims(&[3, 8, 8]));
    let int8 = |b: &mut GraphBuilder, name: &str, dims: &[usize]| {
        let n = dims.iter().product();
        b.initializer(name, Tensor::new(dims.to_vec(), TensorData::I8(vec![1; n])).unwrap())
    };
    let float = |b: &mut GraphBuilder, name: &str, dims: &[usize], v: f32| {
        let n = dims.iter().product();
        b.initializer(name, Tensor::new(dims.to_vec(), TensorData::F32(vec![v; n])).unwrap())
    };
    b.node("DynamicQuantizeLinear", &[&x], &["xq", "xs", "xzp"]);
    let w1 = int8(&mut b, "conv1.weight_quantized", &[4, 3, 1, 1]);
    let c1 = b.node("ConvInteger", &["xq", &w1, "xzp"], &[]);
    let c1 = b.node_with("Cast", &[&c1], &[], &[("to", Attr::Int(1))]);
    let w1s = float(&mut b, "conv1.weight_scale", &[], 0.1);
    let scale = b.node("Mul", &["xs", &w1s], &[]);
    let y1 = b.node("Mul", &[&c1, &scale], &[]);
    let y1 = b.node("Relu", &[&y1], &[]);
    let ys = float(&mut b, "y_scale", &[], 0.05);
    let yzp = b.initializer("y_zero_point", Tensor::new(vec![], TensorData::U8(vec![0])).unwrap());
    let yq = b.node("QuantizeLinear", &[&y1, &ys, &yzp], &[]);
    let w2 = int8(&mut b, "conv2.weight_quantized", &[6, 4, 1, 1]);
    let w2s = float(&mut b, "conv2.weight_scale", &[6], 0.1);
    let w2zp = int8(&mut b, "conv2.weight_zero_point", &[6]);
    let bias = b.initializer("conv2.bias_quantized", Tensor::new(vec![6], TensorData::I32(vec![3; 6])).unwrap());
    let y2 = b.node("QLinearConv", &[&yq, &ys, &yzp, &w2, &w2s, &w2zp, &ys, &yzp, &bias], &[]);
    let y2 = b.node("DequantizeLinear", &[&y2, &ys, &yzp], &[]);
    let flat = b.ints("flat", &[-1, 384]);
    let y2 = b.node("Reshape", &[&y2, &flat], &[]);
    // K = 384 in blocks of 32: 12 blocks of 16 bytes per output.
    let packed = b.initializer("fc.weight_Q4", Tensor::new(vec![5, 12, 16], TensorData::U8(vec![0x11; 960])).unwrap());
    let scales = float(&mut b, "fc.weight_scales", &[60], 0.1);
    let attrs = [("K", Attr::Int(384)), ("N", Attr::Int(5)), ("bits", Attr::Int(4)), ("block_size", Attr::Int(32))];
    let y = b.node_in_domain("com.microsoft", "MatMulNBits", &[&y2, &packed, &scales], &["y"], &attrs);
    b.output_f32(&y, &batch_dims(&[5]));
    let model = b.build().unwrap();
    let a = run(&model);
    assert!(a.prunable_groups().next().is_none(), "{}", a.table());
    let listed: Vec<&str> = a.blocked.iter().filter(|o| o.reason == oto_onnx::op::QUANTIZED_WEIGHT).map(|o| o.op_type.as_str()).collect();
    assert_eq!(listed, ["ConvInteger", "QLinearConv", "com.microsoft::MatMulNBits"], "{:?}", a.blocked);
    // 12 + 24 weights, 6 biases, 384 x 5 packed weights.
    assert_eq!(a.total_params, 12 + 24 + 6 + 384 * 5, "{}", a.table());
    let graph = oto_onnx::Graph::new(&model).unwrap();
    let shapes = oto_onnx::shape::infer(&graph).unwrap();
    assert_eq!(shapes.dtype("y"), Some(DType::F32));
    let macs = oto_onnx::cost::macs(&graph, &shapes);
    assert!(macs.unresolved.is_empty(), "{:?}", macs.unresolved);
    // Per sample: 64 positions x 4 x 3, 64 x 6 x 4, then 384 x 5.
    assert_eq!(macs.total, 64 * 4 * 3 + 64 * 6 * 4 + 384 * 5);
}

/// BiT's weight-standardized convolutions: each weight is computed from its initializer
/// (reshaped, batch-normalized over its rows, reshaped back). No group is followed
/// through them, and each is listed with the node computing its weight, even the first,
/// which no channel reaches: the file has no group, and the list says why.
#[test]
fn computed_weights_are_listed() {
    let mut b = GraphBuilder::new("standardized");
    b.opset(13);
    let x = b.input_f32("x", &batch_dims(&[3, 8, 8]));
    let standardized = |b: &mut GraphBuilder, name: &str, shape: &[usize]| {
        let raw = w(b, name, shape);
        let rows = b.ints(&format!("{name}.rows"), &[1, shape[0] as i64, -1]);
        let r = b.node("Reshape", &[&raw, &rows], &[]);
        let (scale, bias) = (w(b, &format!("{name}.ones"), &[shape[0]]), w(b, &format!("{name}.zeros"), &[shape[0]]));
        let n = b.node("InstanceNormalization", &[&r, &scale, &bias], &[]);
        let back = b.ints(&format!("{name}.back"), &shape.iter().map(|&d| d as i64).collect::<Vec<_>>());
        b.node("Reshape", &[&n, &back], &[])
    };
    let w1 = standardized(&mut b, "conv1.weight", &[4, 3, 3, 3]);
    let y = b.node_with("Conv", &[&x, &w1], &[], &[("pads", Attr::Ints(vec![1, 1, 1, 1]))]);
    let y = b.node("Relu", &[&y], &[]);
    let w2 = standardized(&mut b, "conv2.weight", &[6, 4, 1, 1]);
    let y = b.node("Conv", &[&y, &w2], &["y"]);
    b.output_f32(&y, &batch_dims(&[6, 8, 8]));
    let a = run(&b.build().unwrap());
    assert!(a.prunable_groups().next().is_none(), "{}", a.table());
    let listed: Vec<&str> =
        a.blocked.iter().filter(|o| o.reason.contains("the weight is computed by")).map(|o| o.op_type.as_str()).collect();
    assert_eq!(listed, ["Conv", "Conv"], "{:?}", a.blocked);
}

/// A file onnxruntime saved at `ORT_ENABLE_ALL` computes its convolutions in a blocked
/// layout (`com.microsoft.nchwc`, weights reordered for the CPU): no channel reaches the
/// first one, yet each is listed with what to do instead, as is any custom operator
/// holding a weight; one holding none is not listed.
#[test]
fn custom_operators_holding_weights_are_listed() {
    let mut b = GraphBuilder::new("nchwc");
    b.opset(13);
    b.import_domain("com.microsoft.nchwc", 1);
    b.import_domain("com.example", 1);
    let nchwc = "com.microsoft.nchwc";
    let x = b.input_f32("x", &batch_dims(&[8, 8, 8]));
    let r = b.node_in_domain(nchwc, "ReorderInput", &[&x], &["reordered"], &[]);
    let w1 = w(&mut b, "conv.weight", &[8, 8, 1, 1]);
    let c = b.node_in_domain(nchwc, "Conv", &[&r, &w1], &["conv"], &[]);
    let o = b.node_in_domain(nchwc, "ReorderOutput", &[&c], &["plain"], &[("channels", Attr::Int(8))]);
    let w2 = w(&mut b, "opaque.weight", &[8, 8]);
    let y = b.node_in_domain("com.example", "Opaque", &[&o, &w2], &["y"], &[]);
    b.output_f32(&y, &batch_dims(&[8, 8, 8]));
    let a = run(&b.build().unwrap());
    let listed: Vec<(&str, bool)> = a.blocked.iter().map(|o| (o.op_type.as_str(), o.reason.contains("ORT_ENABLE_EXTENDED"))).collect();
    assert_eq!(listed, [("com.microsoft.nchwc::Conv", true), ("com.example::Opaque", false)], "{:?}", a.blocked);
}

/// Where shape inference stops (an operator without a shape rule, here a custom one) the
/// analysis takes the shapes the file declares (`value_info`); the check of the analysis
/// reads them too. An RMSNormalization after such a value recorded its mean's divisor from
/// the declared width, and the check, which did not read them, refused the model ('the
/// node averages an unknown number of entries': a LLaMA exported at opset 23).
#[test]
fn declared_shapes_serve_the_analysis_and_its_check_alike() {
    use oto_onnx::builder::value_info;
    use oto_onnx::DType;
    let mut b = GraphBuilder::new("declared");
    b.opset(23);
    b.import_domain("com.example", 1);
    let x = b.input_f32("x", &batch_dims(&[8]));
    let w1 = w(&mut b, "up.weight", &[8, 8]);
    let h = b.node("MatMul", &[&x, &w1], &[]);
    let u = b.node_in_domain("com.example", "Opaque", &[&x], &["opaque"], &[]);
    let s = b.node("Add", &[&h, &u], &["residual"]);
    let scale = w(&mut b, "norm.weight", &[8]);
    let r = b.node_with("RMSNormalization", &[&s, &scale], &[], &[("axis", Attr::Int(-1))]);
    let w2 = w(&mut b, "down.weight", &[8, 3]);
    let y = b.node("MatMul", &[&r, &w2], &["y"]);
    b.output_f32(&y, &batch_dims(&[3]));
    let mut model = b.build().unwrap();
    let g = model.proto.graph.as_mut().unwrap();
    g.value_info.push(value_info("opaque", DType::F32, &batch_dims(&[8])));
    g.value_info.push(value_info("residual", DType::F32, &batch_dims(&[8])));
    let a = run(&model);
    assert!(a.groups.iter().any(|g| g.members.iter().any(|m| m.initializer == "up.weight")), "{}", a.table());
}

/// A Resize passes channels through (each is resampled on its own, zeros stay zeros),
/// except tf_crop_and_resize, which samples a region of every axis and writes its
/// extrapolation value outside it.
#[test]
fn resize_passes_channels_but_crop_and_resize_blocks_them() {
    for (coordinate, prunable) in [("half_pixel", true), ("tf_crop_and_resize", false)] {
        let mut b = GraphBuilder::new("resize");
        b.opset(13);
        let x = b.input_f32("x", &batch_dims(&[3, 8, 8]));
        let h = conv(&mut b, &x, "conv1", 3, 8, 3, 1);
        let roi = b.initializer(
            "roi",
            oto_onnx::Tensor::new(vec![8], oto_onnx::TensorData::F32(vec![0.0, 0.0, 0.1, 0.1, 1.0, 1.0, 0.9, 0.9])).unwrap(),
        );
        let sizes = b.ints("sizes", &[1, 8, 16, 16]);
        let mut attrs = vec![("mode", Attr::Str("linear".into())), ("coordinate_transformation_mode", Attr::Str(coordinate.into()))];
        attrs.push(("extrapolation_value", Attr::Float(1.0)));
        let r = b.node_with("Resize", &[&h, &roi, "", &sizes], &[], &attrs);
        let h = conv(&mut b, &r, "conv2", 8, 4, 3, 1);
        head(&mut b, &h, 4);
        let a = run(&b.build().unwrap());
        let g = group_with(&a, "conv1.weight", 0);
        assert_eq!(g.prunable, prunable, "{coordinate}: {:?}", g.reasons);
        if !prunable {
            assert!(g.reasons.iter().any(|r| r.contains("tf_crop_and_resize")), "{:?}", g.reasons);
        }
    }
}
