//! The group structure of zoo models, against counts derived by hand from the
//! architectures (see the comment of each test).

use oto_graph::{analyze, Analysis, AnalyzeOptions, ElementKind, ShapeLocation};
use oto_testkit::zoo_model;

fn analysis(name: &str) -> Analysis {
    analyze(&zoo_model(name), &AnalyzeOptions::default()).unwrap()
}

/// Sorted element counts of the prunable groups.
fn prunable_sizes(a: &Analysis) -> Vec<usize> {
    let mut v: Vec<usize> = a.prunable_groups().map(|g| g.num_elements).collect();
    v.sort_unstable();
    v
}

fn sorted(mut v: Vec<usize>) -> Vec<usize> {
    v.sort_unstable();
    v
}

/// demo_cnn: conv1 1->16 +bn1, conv2 16->32 +bn2, maxpool, conv3 32->64 +bn3, GAP, fc 64->10.
/// Groups: the three conv spaces (16, 32, 64 channels), prunable; the logits (10), not.
/// Parameters (the BatchNorms' running statistics are not): conv1 160, bn1 32, conv2 4640,
/// bn2 64, conv3 18496, bn3 128, fc 650: 24170. Every slice but fc.bias (10) is in a
/// prunable group: 24160.
#[test]
fn demo_cnn() {
    let a = analysis("demo_cnn");
    assert_eq!(a.groups.len(), 4, "{}", a.table());
    assert_eq!(prunable_sizes(&a), vec![16, 32, 64]);
    assert_eq!((a.total_params, a.prunable_params), (24170, 24160));
}

/// resnet18: the stem (64) and layer1's two identity blocks are one residual stream;
/// layers 2-4 each start with a downsample conv tied to their stream by the Adds: four
/// streams (64, 128, 256, 512). Each BasicBlock's first conv opens its own space: two
/// per layer (64, 64, 128, 128, 256, 256, 512, 512). 12 prunable groups plus the logits.
/// All parameters but fc.bias (10) are in prunable slices.
#[test]
fn resnet18() {
    let a = analysis("resnet18");
    assert_eq!(a.groups.len(), 13, "{}", a.table());
    assert_eq!(prunable_sizes(&a), sorted(vec![64, 128, 256, 512, 64, 64, 128, 128, 256, 256, 512, 512]));
    assert_eq!(a.prunable_params, a.total_params - 10);
    assert!(a.blocked.is_empty());
}

/// vgg16_bn: 13 conv+BN spaces (64, 64, 128, 128, 256 x3, 512 x6) and the two hidden
/// Linear layers (4096, 4096); the last conv's channels reach fc1 through the adaptive
/// pool and Flatten as blocks of H*W columns (fc1 has 512*H*W inputs). 15 prunable +
/// the logits.
#[test]
fn vgg16_bn() {
    let a = analysis("vgg16_bn");
    assert_eq!(a.groups.len(), 16, "{}", a.table());
    let mut want = vec![64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512, 4096, 4096];
    want.sort_unstable();
    assert_eq!(prunable_sizes(&a), want);
    let last_conv = a.groups.iter().find(|g| g.members.iter().any(|m| m.initializer == "classifier.0.weight" && m.axis == 1)).unwrap();
    let m = last_conv.members.iter().find(|m| m.initializer == "classifier.0.weight").unwrap();
    let model = zoo_model("vgg16_bn");
    let fc1 = model.proto.graph.as_ref().unwrap().initializer.iter().find(|t| t.name.as_deref() == Some("classifier.0.weight")).unwrap();
    assert_eq!(m.map.block() as i64, fc1.dims[1] / 512);
    assert!(m.map.block() > 1);
    assert_eq!(a.prunable_params, a.total_params - 10);
}

/// mobilenet_v2 (t, c, n, s stages (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2) (6,96,3,1)
/// (6,160,3,2) (6,320,1,1)): the stem's 32 channels pass through block 1's depthwise
/// conv (1 group); each expanded block opens an expansion space that its depthwise conv
/// passes through (16 blocks: 16 groups); each stage's projections are one stream,
/// tied by the residual Adds (7 groups: 16, 24, 32, 64, 96, 160, 320); the final 1x1
/// conv (1280): 1. 25 prunable + the logits. Uncovered: fc bias (10) (the scalar bounds of
/// ReLU6 are no parameters).
#[test]
fn mobilenet_v2() {
    let a = analysis("mobilenet_v2");
    assert_eq!(a.groups.len(), 26, "{}", a.table());
    let mut want = vec![32, 16, 24, 32, 64, 96, 160, 320, 1280];
    // expansion widths: 6 x the input width of each expanded block
    for c_in in [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160] {
        want.push(6 * c_in);
    }
    want.sort_unstable();
    assert_eq!(prunable_sizes(&a), want);
    assert_eq!(a.prunable_params, a.total_params - 10);
}

/// densenet121, blocks of (6, 12, 24, 16) layers: each layer's bottleneck conv1 (128)
/// and its growth conv2 (32, read by every later layer of the block through the
/// concatenations, and by the transition) are spaces: 2 x 58 = 116; conv0 (64) and the
/// three transitions (128, 256, 512): 4. 120 prunable + the logits.
#[test]
fn densenet121() {
    let a = analysis("densenet121");
    assert_eq!(a.groups.len(), 121, "{}", a.table());
    let mut want = vec![64, 128, 256, 512];
    want.extend(std::iter::repeat_n(128, 58));
    want.extend(std::iter::repeat_n(32, 58));
    want.sort_unstable();
    assert_eq!(prunable_sizes(&a), want);
    assert_eq!(a.prunable_params, a.total_params - 10);
}

/// concat_bn: stem 16, branches 8/12/4 concatenated (their BN slices at offsets 0, 8,
/// 20), conv 32: 5 prunable + the logits. Parameters: stem 448, branch_a 1160,
/// branch_b 204, branch_c 1604, bn 48 (its running statistics are not parameters), conv
/// 6944, fc 330 = 10738; all but fc.bias.
#[test]
fn concat_bn() {
    let a = analysis("concat_bn");
    assert_eq!(a.groups.len(), 6, "{}", a.table());
    assert_eq!(prunable_sizes(&a), vec![4, 8, 12, 16, 32]);
    assert_eq!((a.total_params, a.prunable_params), (10738, 10728));
    // Named after the first producer in name order: the BatchNorm after the concat.
    let c = a.group("bn.bias:0@20").unwrap();
    assert_eq!(c.num_elements, 4);
    assert!(c.members.iter().any(|m| m.initializer == "branch_c.weight" && m.axis == 0));
    let conv = c.members.iter().find(|m| m.initializer == "conv.weight").unwrap();
    assert_eq!((conv.axis, conv.map.offset()), (1, 20));
}

/// bert_tiny (hidden 128, 2 layers, 2 heads of 64, FFN 512): per layer one group of 2
/// heads (Q, K, V columns and the output projection's rows) and one of 512 FFN neurons;
/// the pooler's 128 (tanh keeps zeros); the residual width, one group through the
/// embeddings and the five LayerNorms (each records the width construction pads back
/// to); only the logits are not prunable: every parameter but the classifier's 2 biases.
#[test]
fn bert_tiny() {
    let a = analysis("bert_tiny");
    assert_eq!(a.groups.len(), 7, "{}", a.table());
    assert_eq!(prunable_sizes(&a), vec![2, 2, 128, 128, 512, 512]);
    let heads: Vec<_> = a.prunable_groups().filter(|g| g.kind == ElementKind::Head { dim: 64 }).collect();
    assert_eq!(heads.len(), 2);
    assert_eq!((a.prunable_params, a.total_params), (550016, 550018));
    let residual = a.groups.iter().find(|g| g.members.iter().any(|m| m.initializer.contains("word_embeddings"))).unwrap();
    assert!(residual.prunable, "{}", a.table());
    let widths = residual.shape_constants.iter().filter(|c| matches!(c.location, ShapeLocation::NormWidth { size: 128, .. })).count();
    assert_eq!(widths, 5, "{:?}", residual.shape_constants);
}

/// gpt2_tiny and vit_tiny: heads (2 of 64 / 2 of 32) and FFN neurons (512 / 128) per
/// layer are prunable, through GPT-2's packed c_attn + Split and ViT's packed in_proj +
/// [.., 3, E] reshape; so are their residual widths (128 / 64), with GPT-2's output layer
/// tied to the token embeddings and ViT's class token.
#[test]
fn gpt2_and_vit_heads() {
    let g = analysis("gpt2_tiny");
    assert_eq!(prunable_sizes(&g), vec![2, 2, 128, 512, 512], "{}", g.table());
    assert_eq!(g.prunable_groups().filter(|x| x.kind == ElementKind::Head { dim: 64 }).count(), 2);
    let v = analysis("vit_tiny");
    assert_eq!(prunable_sizes(&v), vec![2, 2, 64, 128, 128], "{}", v.table());
    assert_eq!(v.prunable_groups().filter(|x| x.kind == ElementKind::Head { dim: 32 }).count(), 2);
    assert!(v.prunable_groups().any(|x| x.members.iter().any(|m| m.initializer == "class_token")), "{}", v.table());
}

/// The description serializes and reads back unchanged; the dot output names every node.
#[test]
fn json_round_trip_and_dot() {
    let model = zoo_model("concat_bn");
    let a = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let json = serde_json::to_string(&a).unwrap();
    let back: Analysis = serde_json::from_str(&json).unwrap();
    assert_eq!(back, a);
    let graph = oto_onnx::Graph::new(&model).unwrap();
    let dot = a.to_dot(&graph);
    assert!(dot.starts_with("digraph oto {") && dot.ends_with("}\n"), "{dot}");
    let nodes = &model.proto.graph.as_ref().unwrap().node;
    assert_eq!(dot.matches("fillcolor").count(), nodes.len());
    // One edge per value a node reads from another node.
    let from_nodes = nodes.iter().flat_map(|n| &n.input).filter(|v| graph.producer_node(v).is_some()).count();
    assert_eq!(dot.matches(" -> ").count(), from_nodes, "{dot}");
    let table = a.table();
    assert!(table.contains("prunable parameters 10728 of 10738"), "{table}");
}

/// `(id, elements, prunable)` of every group, sorted by id.
fn groups_of(a: &Analysis) -> Vec<(String, usize, bool)> {
    let mut v: Vec<_> = a.groups.iter().map(|g| (g.id.clone(), g.num_elements, g.prunable)).collect();
    v.sort();
    v
}

/// The members of group `id` on `init` (one per slice) as (their role, the indices of
/// elements 0 and 1 over all of them, sorted).
fn member_of(a: &Analysis, id: &str, init: &str) -> (oto_graph::Role, Vec<usize>, Vec<usize>) {
    let g = a.group(id).unwrap_or_else(|| panic!("no group {id}"));
    let ms: Vec<_> = g.members.iter().filter(|m| m.initializer == init).collect();
    assert!(!ms.is_empty() && ms.iter().all(|m| m.role == ms[0].role), "{id}: members on {init}: {ms:?}");
    let at = |i: usize| {
        let mut v: Vec<usize> = ms.iter().flat_map(|m| m.map.indices(i)).collect();
        v.sort();
        v
    };
    (ms[0].role, at(0), at(1))
}

/// Model zoo-era AlexNet (graphs/legacy_zoo.py): conv1's 16 channels are blocked by the
/// LRN after them (with its own reason); the grouped conv2 (group 2, 8 inputs and 12
/// outputs per group) has 12 elements, element j being output channel j of each group;
/// conv3 (16) and fc6 (32) are prunable, through the Reshape to [batch, 144]; the
/// logits (10) are not.
#[test]
fn legacy_alexnet_groups() {
    let a = analyze(&oto_testkit::legacy_model("alexnet_lite"), &AnalyzeOptions::default()).unwrap();
    let want = [
        ("conv1_b_0:0", 16, false),
        ("conv2_b_0:0", 12, true),
        ("conv3_b_0:0", 16, true),
        ("fc6_b_0:0", 32, true),
        ("fc8_b_0:0", 10, false),
    ];
    assert_eq!(groups_of(&a), want.map(|(i, n, p)| (i.to_string(), n, p)).to_vec(), "{}", a.table());
    let lrn = &a.group("conv1_b_0:0").unwrap().reasons;
    assert!(
        lrn.iter().any(|r| r.contains("LRN normalizes over a window of neighbouring channels"))
            && !lrn.iter().any(|r| r.contains("not understood")),
        "{lrn:?}"
    );
    assert_eq!(member_of(&a, "conv2_b_0:0", "conv2_w_0"), (oto_graph::Role::Producer, vec![0, 12], vec![1, 13]));
    assert_eq!(member_of(&a, "conv2_b_0:0", "conv3_w_0"), (oto_graph::Role::Consumer, vec![0, 12], vec![1, 13]));
}

/// BatchNorm written as Mul + Add of Unsqueeze'd [C] parameters: the scales are cut
/// with their channels (Aux), the shifts are producers; the residual (Sum) ties the
/// stem (8) and res2_b (8); res2_a has 12.
#[test]
fn legacy_mul_add_batchnorm_groups() {
    let a = analyze(&oto_testkit::legacy_model("resnet_mul_add"), &AnalyzeOptions::default()).unwrap();
    let want = [("bn1_b:0", 8, true), ("pred_b:0", 5, false), ("res2_a_bn_b:0", 12, true)];
    assert_eq!(groups_of(&a), want.map(|(i, n, p)| (i.to_string(), n, p)).to_vec(), "{}", a.table());
    for (id, init, role) in [
        ("bn1_b:0", "bn1_s", oto_graph::Role::Aux),
        ("bn1_b:0", "bn1_b", oto_graph::Role::Producer),
        ("bn1_b:0", "res2_b_bn_s", oto_graph::Role::Aux),
        ("bn1_b:0", "res2_b_bn_b", oto_graph::Role::Producer),
        ("res2_a_bn_b:0", "res2_a_bn_s", oto_graph::Role::Aux),
    ] {
        assert_eq!(member_of(&a, id, init), (role, vec![0], vec![1]), "{id} {init}");
    }
    assert_eq!(a.prunable_params, a.total_params - 5);
}

/// InstanceNormalization with constant scale and bias after conv1: both are members
/// (producers) of conv1's 12 channels; the [N, C, 1, 1] logits (7) are not prunable.
#[test]
fn legacy_instance_norm_groups() {
    let a = analyze(&oto_testkit::legacy_model("squeeze_head"), &AnalyzeOptions::default()).unwrap();
    let want = [("conv10_b_0:0", 7, false), ("conv1_b_0:0", 12, true), ("fire2_b_0:0", 16, true)];
    assert_eq!(groups_of(&a), want.map(|(i, n, p)| (i.to_string(), n, p)).to_vec(), "{}", a.table());
    for init in ["in1_s", "in1_b"] {
        assert_eq!(member_of(&a, "conv1_b_0:0", init), (oto_graph::Role::Producer, vec![0], vec![1]), "{init}");
    }
}

/// Tiny YOLOv2's layout, opened by the experimental ImageScaler: written as Mul + Add,
/// the channels of each Conv + BatchNormalization + LeakyRelu stage are a group (the
/// analysis followed nothing past the ImageScaler before); the grid output is not.
#[test]
fn legacy_image_scaler_groups() {
    let a = analyze(&oto_testkit::legacy_model("yolo_lite"), &AnalyzeOptions::default()).unwrap();
    let want = [
        ("BatchNormalization1_B:0", 8, true),
        ("BatchNormalization2_B:0", 16, true),
        ("BatchNormalization3_B:0", 16, true),
        ("convolution_out_B:0", 10, false),
    ];
    assert_eq!(groups_of(&a), want.map(|(i, n, p)| (i.to_string(), n, p)).to_vec(), "{}", a.table());
}

/// Found by the fuzz harness: vit_tiny's packed q/k/v projection is split by Gathers with
/// a constant index; an index outside the packed axis (a hostile file) overflowed
/// `index * block` in the Gather rule. Now the Gather blocks the axis like any other
/// gather along channels, and the analysis still passes its own check.
#[test]
fn vit_tiny_gather_index_outside_the_packed_axis() {
    let base = zoo_model("vit_tiny");
    let graph = oto_onnx::Graph::new(&base).unwrap();
    let indices: Vec<String> = graph
        .nodes()
        .filter(|(_, n)| n.op_type.as_deref() == Some("Gather"))
        .filter_map(|(_, n)| n.input.get(1).cloned())
        .filter(|i| graph.initializer(i).is_some_and(|t| t.data_type == Some(7) && t.dims.is_empty()))
        .collect();
    drop(graph);
    assert!(!indices.is_empty(), "vit_tiny has no Gather with a constant scalar index");
    let original = analyze(&base, &AnalyzeOptions::default()).unwrap();
    for bad in [i64::MIN, -4, 3, 1 << 40, i64::MAX] {
        let mut proto = base.proto.clone();
        for t in proto.graph.as_mut().unwrap().initializer.iter_mut().filter(|t| t.name.as_ref().is_some_and(|n| indices.contains(n))) {
            t.raw_data = Some(bad.to_le_bytes().to_vec().into());
            t.int64_data.clear();
        }
        let model = oto_onnx::Model::from_proto(proto, "vit_tiny_bad_index.onnx", None).unwrap();
        // Shape inference may refuse the index first; the analysis must not panic either way.
        if let Ok(a) = analyze(&model, &AnalyzeOptions::default()) {
            a.check(&model).unwrap();
            assert!(a.prunable_groups().count() <= original.prunable_groups().count(), "index {bad}:\n{}", a.table());
        }
    }
}
