//! Normalization checked against onnxruntime: every case computes the same outputs
//! before and after, with the exporters' patterns gone; then files as exporters write
//! them (an Identity-tied bias, an IR-3 file with initializers as inputs, Constant-node
//! BatchNorm parameters) go through the whole path of a command: load, analyze, zero,
//! construct, and the compact model must match the zeroed one and keep the user's
//! input/output names, opsets and metadata. Last, the raw zoo files normalize exactly.

#[path = "../../onnx/tests/common/normalize_cases.rs"]
mod cases;
mod common;
use common::*;

use oto_construct::{construct, zero_producers};
use oto_graph::{analyze, AnalyzeOptions, Role};
use oto_onnx::normalize::{normalize, NormalizeOptions};
use oto_onnx::{Graph, Model};
use oto_testkit::{deviation, run_ort, SplitMix64};

fn copy(m: &Model) -> Model {
    Model::from_proto(m.proto.clone(), "case.onnx", None).unwrap()
}

/// The exporters' patterns the pass removes: Sum, Constant (other than strings) and
/// Identity of an initializer.
/// At a batch of 3, each sample's `per_sample` output values from `symbolic` (a batch made
/// symbolic) are what `original` gives that sample alone; `input(k..k + 1)` gives sample
/// `k`'s inputs, `input(0..3)` all three.
fn assert_each_sample_as_alone(
    original: &Model,
    symbolic: &Model,
    input: impl Fn(std::ops::Range<usize>) -> Vec<(String, oto_onnx::Tensor)>,
    per_sample: usize,
) {
    let y3 = run_ort(&symbolic.proto, &input(0..3));
    for k in 0..3 {
        let alone = run_ort(&original.proto, &input(k..k + 1));
        let row: Vec<_> = y3.iter().map(|(n, y)| (n.clone(), y[k * per_sample..(k + 1) * per_sample].to_vec())).collect();
        let (err, tol) = deviation(&alone, &row);
        assert!(err <= tol, "sample {k} of a batch of 3: {err:.3e} > {tol:.3e}");
    }
}

fn assert_normal(name: &str, m: &Model) {
    let g = Graph::new(m).unwrap();
    for (_, n) in g.nodes() {
        let op = n.op_type.as_deref().unwrap_or("");
        assert_ne!(op, "Sum", "{name}: a Sum is left");
        let string = n.attribute.iter().any(|a| a.name.as_deref() == Some("value_string"));
        assert!(op != "Constant" || string, "{name}: a Constant is left");
        assert!(op != "Identity" || g.initializer(&n.input[0]).is_none(), "{name}: an Identity of an initializer is left");
        let fused = n.domain.as_deref() == Some("com.microsoft") || op == "SimplifiedLayerNormalization";
        assert!(!fused, "{name}: onnxruntime's fused {op} is left");
        let experimental = ["ImageScaler", "Affine", "Scale", "ScaledTanh", "ParametricSoftplus", "Crop"];
        assert!(!experimental.contains(&op), "{name}: the experimental {op} is left");
    }
}

/// Real input names, outputs, opsets and the user's metadata entries are those of `user`.
fn assert_interface(ctx: &str, user: &Model, other: &Model) {
    let inputs = |m: &Model| Graph::new(m).unwrap().real_inputs().map(|v| v.name.clone()).collect::<Vec<_>>();
    assert_eq!(inputs(other), inputs(user), "{ctx}: inputs");
    let outputs = |m: &Model| m.proto.graph.as_ref().unwrap().output.clone();
    assert_eq!(outputs(other), outputs(user), "{ctx}: outputs");
    assert_eq!(other.proto.opset_import, user.proto.opset_import, "{ctx}: opsets");
    for e in &user.proto.metadata_props {
        assert!(other.proto.metadata_props.contains(e), "{ctx}: metadata {e:?} lost");
    }
}

#[test]
fn every_rewrite_computes_the_same_in_onnxruntime() {
    let all = cases::all();
    for (name, before) in all {
        let (after, summary) = normalize(copy(&before), &NormalizeOptions::default()).unwrap();
        assert!(name == "shared_weights" || !summary.is_noop(), "{name}: nothing rewritten");
        assert_normal(name, &after);
        assert_interface(name, &before, &after);
        for seed in 0..2 {
            let inputs = cases::random_inputs(&before, seed);
            let (err, tol) = deviation(&run_ort(&before.proto, &inputs), &run_ort(&after.proto, &inputs));
            assert!(err <= tol, "{name} ({summary}): max deviation {err:.3e} > {tol:.3e}");
        }
    }
}

/// The path of every command on a file `user` as written by an exporter: load it
/// (normalized), analyze, zero random elements of every prunable group, construct,
/// save and reload; the compact model computes what the zeroed one computes and keeps
/// the user's interface. Returns the analysis for further checks.
fn prune_end_to_end(name: &str, user: &Model, groups: usize) -> oto_graph::Analysis {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.onnx"));
    user.save(&path, &Default::default()).unwrap();
    let (model, summary) = oto_onnx::normalize::load(&path).unwrap();
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let prunable = analysis.prunable_groups().filter(|g| g.num_elements > 1).count();
    assert_eq!(prunable, groups, "{name} ({summary}):\n{}", analysis.table());
    let inputs = cases::random_inputs(&model, 5);
    for seed in 0..3u64 {
        let ctx = format!("{name} seed {seed}");
        let removed = pick(&analysis, &mut SplitMix64::new(seed + 1), 0.5);
        let full = zero_producers(&model, &analysis, &removed).unwrap();
        let (compact, report) = construct(&full, &analysis, &removed).unwrap();
        assert!(report.params_after < report.params_before, "{ctx}: {report:?}");
        let out = dir.path().join(format!("{name}.compact.onnx"));
        compact.save(&out, &Default::default()).unwrap();
        let reloaded = Model::load(&out).unwrap();
        assert_interface(&ctx, user, &reloaded);
        let (err, tol) = deviation(&run_ort(&full.proto, &inputs), &run_ort(&reloaded.proto, &inputs));
        assert!(err <= tol, "{ctx}: max deviation {err:.3e} > {tol:.3e}");
    }
    analysis
}

#[test]
fn identity_tied_bias_prunes_end_to_end() {
    let analysis = prune_end_to_end("identity_bias", &cases::identity_bias(), 2);
    // Each bias is a producer of its own layer's group, not tied to the other layer.
    let group_of = |init: &str| {
        let owners: Vec<_> = analysis
            .prunable_groups()
            .filter(|g| g.members.iter().any(|m| m.initializer == init && m.role == Role::Producer))
            .map(|g| g.id.clone())
            .collect();
        assert_eq!(owners.len(), 1, "{init}: {owners:?}\n{}", analysis.table());
        owners[0].clone()
    };
    assert_ne!(group_of("fc1.bias"), group_of("fc2.bias"));
    assert_eq!(group_of("fc1.bias"), group_of("fc1.weight"));
    assert_eq!(group_of("fc2.bias"), group_of("fc2.weight"));
}

/// An equal Split (dynamo's `chunk`, every opset form) is given its sizes: each part of
/// the split layer is a group of its own that loses its own channels, its entry of the
/// sizes rewritten (6 groups: 3 parts, 3 scales), where the equal split held every part
/// to as many; construction is exact with parts of different widths.
#[test]
fn equal_splits_prune_part_by_part() {
    for opset in [11, 13, 18] {
        let name = format!("equal_split_{opset}");
        let analysis = prune_end_to_end(&name, &cases::equal_split(opset), 6);
        let parts: Vec<_> = analysis.groups.iter().filter(|g| g.members.iter().any(|m| m.initializer == "fc.weight")).collect();
        assert_eq!(parts.len(), 3, "{name}:\n{}", analysis.table());
        assert!(parts.iter().all(|g| g.prunable && g.shape_constants.len() == 1), "{name}:\n{}", analysis.table());
    }
}

/// Layers whose bias and scale live in the branch of an `If` with a known condition:
/// replaced by that branch, the hidden width is one prunable group, the branch's bias a
/// producer of it and its scale cut with it; construction is exact.
#[test]
fn known_branches_prune_end_to_end() {
    let analysis = prune_end_to_end("known_branches", &cases::known_branches(), 1);
    let g = analysis.prunable_groups().next().unwrap();
    let role = |init: &str| g.members.iter().find(|m| m.initializer == init).map(|m| m.role);
    assert_eq!((role("g1/bias1.weight"), role("g2/scale2.weight")), (Some(Role::Producer), Some(Role::Aux)), "{}", analysis.table());
}

/// A layer onnxruntime's transformer optimizer fused (BiasGelu, SkipLayerNormalization,
/// FastGelu...): written as standard ONNX, its FFN neurons are one prunable group, the
/// up projection's columns and bias and the down projection's rows, at both opsets.
#[test]
fn onnxruntime_fused_layer_prunes_end_to_end() {
    for opset in [14, 17] {
        let a = prune_end_to_end(&format!("onnxruntime_fused_{opset}"), &cases::onnxruntime_fused(opset), 1);
        let g = a.prunable_groups().find(|g| g.num_elements == 16).unwrap_or_else(|| panic!("no FFN group:\n{}", a.table()));
        let mut members: Vec<(&str, usize)> = g.members.iter().map(|m| (m.initializer.as_str(), m.axis)).collect();
        members.sort_unstable();
        assert_eq!(members, [("ffn.down.weight", 0), ("ffn.up.bias", 0), ("ffn.up.weight", 1)], "opset {opset}");
    }
}

/// A CNN and MLP as onnxruntime saves them optimized (FusedConv, FusedGemm, FusedMatMul):
/// written as standard ONNX, the convolutions (the residual pair as one group; the last one,
/// whose HardSigmoid of a zero is not zero, stays) and the hidden dense layer are groups, as
/// in the plain file; oto found none before.
#[test]
fn onnxruntime_saved_model_prunes_end_to_end() {
    for opset in [10, 13] {
        let a = prune_end_to_end(&format!("onnxruntime_saved_{opset}"), &cases::onnxruntime_saved(opset), 4);
        let group_of = |init: &str| a.prunable_groups().position(|g| g.members.iter().any(|m| m.initializer == init && m.axis == 0));
        assert!(group_of("c1.weight").is_some() && group_of("c1.weight") == group_of("c2.weight"), "opset {opset}:\n{}", a.table());
        assert!(group_of("c3.weight").is_some() && group_of("fc1.weight").is_some(), "opset {opset}:\n{}", a.table());
        // HardSigmoid(0) = 0.4: fc1's input slices are zeroed with c4's channels.
        let c4 = group_of("c4.weight").and_then(|i| a.prunable_groups().nth(i));
        let reader = c4.and_then(|g| g.members.iter().find(|m| m.initializer == "fc1.weight" && m.axis == 1));
        assert_eq!(reader.map(|m| m.role), Some(Role::Producer), "opset {opset}:\n{}", a.table());
    }
}

/// A model exported in training mode (a true `training_mode`, the dynamo exporter's inlined
/// random mask) computes, once normalized, what the model computes in inference (the MLP
/// without dropout) in onnxruntime, where it was random before; its two hidden layers are
/// groups (the masked one was blocked by the mask).
#[test]
fn training_mode_export_prunes_as_inference() {
    let (after, _) = normalize(copy(&cases::training_mode_dropouts(true)), &NormalizeOptions::default()).unwrap();
    let plain = cases::training_mode_dropouts(false);
    for seed in 0..2 {
        let inputs = cases::random_inputs(&plain, seed);
        let (err, tol) = deviation(&run_ort(&plain.proto, &inputs), &run_ort(&after.proto, &inputs));
        assert!(err <= tol, "max deviation {err:.3e} > {tol:.3e}");
    }
    prune_end_to_end("training_mode_dropouts", &cases::training_mode_dropouts(true), 2);
}

/// A file of batch fixed at 1 (input `x` of `[1, sample...]`, one output of `per_sample`
/// values a sample) normalized: it computes what the file computes at its batch of 1 (the
/// only one the file runs at) and runs at a batch of 3 sample by sample; with `conv_group`
/// its convolution `conv` is a group of 8 channels. Returns the normalization's summary.
fn fixed_batch_becomes_any_batch(before: &Model, sample: &[usize], per_sample: usize, conv_group: bool) -> oto_onnx::normalize::Summary {
    let (after, summary) = normalize(copy(before), &NormalizeOptions::default()).unwrap();
    assert!(summary.batch_symbolic, "{summary}");
    let size: usize = sample.iter().product();
    let draw = |seed: u64| -> Vec<f32> { (0..size).map(|i| ((i as u64 * 7 + seed * 13) % 17) as f32 / 17.0 - 0.5).collect() };
    let input = |data: Vec<f32>, n: usize| {
        let shape = std::iter::once(n).chain(sample.iter().copied()).collect();
        vec![("x".to_string(), oto_onnx::Tensor::new(shape, oto_onnx::TensorData::F32(data)).unwrap())]
    };
    let mut rows = Vec::new();
    for seed in 0..3 {
        let one = input(draw(seed), 1);
        let (err, tol) = deviation(&run_ort(&before.proto, &one), &run_ort(&after.proto, &one));
        assert!(err <= tol, "seed {seed}: max deviation {err:.3e} > {tol:.3e}");
        rows.push(run_ort(&after.proto, &one));
    }
    let three = run_ort(&after.proto, &input((0..3).flat_map(draw).collect(), 3));
    for (k, row) in rows.iter().enumerate() {
        let part: Vec<_> = three.iter().map(|(n, y)| (n.clone(), y[k * per_sample..(k + 1) * per_sample].to_vec())).collect();
        let (err, tol) = deviation(row, &part);
        assert!(err <= tol, "sample {k} of a batch of 3: {err:.3e} > {tol:.3e}");
    }
    if conv_group {
        let analysis = analyze(&after, &AnalyzeOptions::default()).unwrap();
        let conv = analysis.prunable_groups().find(|g| g.members.iter().any(|m| m.initializer == "conv.weight" && m.axis == 0));
        assert!(conv.is_some_and(|g| g.num_elements == 8), "{}", analysis.table());
        // Pruned and constructed, at a batch of 3, the compact model computes what the
        // zeroed one does (sizes and shapes the file holds follow the channels).
        let removed = pick(&analysis, &mut SplitMix64::new(7), 0.5);
        let full = zero_producers(&after, &analysis, &removed).unwrap();
        let (compact, _) = construct(&full, &analysis, &removed).unwrap();
        let inputs = input((0..3).flat_map(draw).collect(), 3);
        let (err, tol) = deviation(&run_ort(&full.proto, &inputs), &run_ort(&compact.proto, &inputs));
        assert!(err <= tol, "constructed: max deviation {err:.3e} > {tol:.3e}");
    }
    summary
}

/// The dynamo exporter's `as_strided` view after a pool (a Gather of `0..n` whose indices'
/// shape holds the batch, and which hid the channels from the analysis).
#[test]
fn flattened_view_gather_runs_at_any_batch_and_prunes() {
    assert_eq!(fixed_batch_becomes_any_batch(&cases::flattened_view_gather(), &[3, 6, 6], 5, true).view_gathers, 1);
}

/// `F.interpolate(x, size=...)` by the dynamo exporter (sizes holding the batch and the
/// channel count).
#[test]
fn resize_of_full_sizes_runs_at_any_batch_and_prunes() {
    assert_eq!(fixed_batch_becomes_any_batch(&cases::resize_full_sizes(), &[3, 6, 6], 4 * 144, true).resize_axes, 1);
}

/// Swin V2's norms broadcast back by an `Expand` to a constant shape whose first entry is
/// the batch folded with the channels (8 at a batch of 1).
#[test]
fn expand_of_folded_batch_runs_at_any_batch() {
    fixed_batch_becomes_any_batch(&cases::expand_folded_batch(), &[3, 6, 6], 8 * 36, false);
}

/// Sequence-first attention (`[S, N, E]`), its views holding the batch on an axis of its
/// own, as the outer factor of the heads and as the inner factor of the positions.
#[test]
fn sequence_first_attention_runs_at_any_batch() {
    let summary = fixed_batch_becomes_any_batch(&cases::sequence_first_attention(), &[5, 8], 30, false);
    assert_eq!(summary.batch_reshapes, 4, "{summary}");
}

/// Two hidden layers whose biases are one merged tensor of zeros prune apart (two groups,
/// not one tied group), while a non-uniform bias read twice stays shared.
#[test]
fn merged_uniform_biases_prune_apart() {
    let a = prune_end_to_end("merged_uniform_biases", &cases::merged_uniform_biases(), 1);
    let g = a.prunable_groups().next().unwrap();
    assert!(g.members.iter().any(|m| m.initializer == "fc1.weight"), "{}", a.table());
    assert!(!g.members.iter().any(|m| m.initializer == "fc2.weight" && m.axis == 1), "fc1's zero bias ties fc2:\n{}", a.table());
}

/// `F.normalize` over a layer's channels (the norm expanded to the layer's shape, then a
/// divisor): read as a broadcast norm, the layer's channels are one prunable group, where
/// the expanded divisor, as wide as the channels but not following them, blocked it.
#[test]
fn l2_normalized_channels_prune_end_to_end() {
    let user = cases::l2_normalized();
    let (after, summary) = normalize(copy(&user), &NormalizeOptions::default()).unwrap();
    assert_eq!(summary.broadcast_expands, 2, "{summary}");
    let count = |op: &str| after.proto.graph.iter().flat_map(|g| g.node.iter()).filter(|n| n.op_type.as_deref() == Some(op)).count();
    assert_eq!((count("Expand"), count("Shape")), (0, 0), "{:?}", after.proto.graph);
    let a = prune_end_to_end("l2_normalized", &user, 1);
    let g = a.prunable_groups().next().unwrap();
    assert!(g.members.iter().any(|m| m.initializer == "fc1.weight" && m.axis == 1), "{}", a.table());
    assert!(g.members.iter().any(|m| m.initializer == "scale"), "{}", a.table());
}

/// ONNX's experimental operators of an old model zoo CNN (ImageScaler, Scale, ScaledTanh,
/// ParametricSoftplus, Crop, Affine) written as standard ONNX: the convolutions they
/// follow are groups (oto followed nothing past the ImageScaler before), at opsets 8 and 9.
#[test]
fn experimental_operators_prune_end_to_end() {
    for opset in [8, 9] {
        let a = prune_end_to_end(&format!("experimental_{opset}"), &cases::experimental(opset), 3);
        let softplus = a.prunable_groups().find(|g| g.members.iter().any(|m| m.initializer == "c3.weight" && m.axis == 0));
        let reader = softplus.and_then(|g| g.members.iter().find(|m| m.initializer == "c4.weight" && m.axis == 1));
        assert_eq!(reader.map(|m| m.role), Some(Role::Producer), "opset {opset}: c4 reads c3's softplus:\n{}", a.table());
        for conv in ["c1", "c2"] {
            let w = format!("{conv}.weight");
            assert!(
                a.prunable_groups().any(|g| g.num_elements == 8 && g.members.iter().any(|m| m.initializer == w && m.axis == 0)),
                "opset {opset}: {conv} is no group:\n{}",
                a.table()
            );
        }
    }
}

/// onnxruntime's BERT fusions (EmbedLayerNormalization, Attention with the mask index
/// or the raw mask) written as standard ONNX compute what onnxruntime computes with the
/// fused operators, padded sequences included, at opsets 14 and 17; the attention heads
/// are then groups, and so is the hidden width (its layer norms `LayerNormalization`
/// nodes at opset 17, written out at 14); pruning them is exact.
#[test]
fn onnxruntime_fused_attention_is_written_exactly() {
    for opset in [14, 17] {
        let before = cases::onnxruntime_fused_attention(opset);
        let (after, summary) = normalize(copy(&before), &NormalizeOptions::default()).unwrap();
        assert_eq!(summary.fused_rewritten, 3, "opset {opset}: {summary}");
        assert_normal("fused attention", &after);
        for seed in 0..2 {
            let inputs = cases::fused_attention_inputs(seed);
            let (err, tol) = deviation(&run_ort(&before.proto, &inputs), &run_ort(&after.proto, &inputs));
            assert!(err <= tol, "opset {opset} seed {seed}: max deviation {err:.3e} > {tol:.3e}");
        }
        let a = analyze(&after, &AnalyzeOptions::default()).unwrap();
        let (heads, widths): (Vec<_>, Vec<_>) = a.prunable_groups().partition(|g| matches!(g.kind, oto_graph::ElementKind::Head { .. }));
        assert_eq!(heads.len(), 2, "opset {opset}:\n{}", a.table());
        for g in &heads {
            assert_eq!((g.kind, g.num_elements), (oto_graph::ElementKind::Head { dim: 4 }, 2), "{}", a.table());
        }
        let hidden =
            widths.iter().any(|g| g.shape_constants.iter().any(|c| matches!(c.location, oto_graph::ShapeLocation::NormWidth { .. })));
        assert_eq!((widths.len(), hidden), (1, true), "opset {opset}:\n{}", a.table());
        let inputs = cases::fused_attention_inputs(7);
        for seed in 0..2u64 {
            let removed = pick(&a, &mut SplitMix64::new(seed + 1), 0.5);
            let full = zero_producers(&after, &a, &removed).unwrap();
            let (compact, report) = construct(&full, &a, &removed).unwrap();
            assert!(report.params_after < report.params_before, "{report:?}");
            let (err, tol) = deviation(&run_ort(&full.proto, &inputs), &run_ort(&compact.proto, &inputs));
            assert!(err <= tol, "opset {opset} seed {seed}: compact deviates by {err:.3e} > {tol:.3e}");
        }
    }
}

#[test]
fn ir3_file_with_initializer_inputs_prunes_end_to_end() {
    let analysis = prune_end_to_end("ir3_inputs", &cases::ir3_inputs(), 1);
    // The three conv branches meet in the Sum: one group of 4 channels.
    let g = analysis.prunable_groups().next().unwrap();
    assert_eq!(g.num_elements, 4);
    for k in 0..3 {
        assert!(g.members.iter().any(|m| m.initializer == format!("conv{k}_w")), "{}", analysis.table());
    }
}

#[test]
fn constant_batchnorm_parameters_prune_end_to_end() {
    let analysis = prune_end_to_end("constant_batchnorm", &cases::constant_batchnorm(), 1);
    let g = analysis.prunable_groups().next().unwrap();
    assert_eq!(g.num_elements, 6);
    for p in ["conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "fc.weight"] {
        assert!(g.members.iter().any(|m| m.initializer == p), "{p} not in the group\n{}", analysis.table());
    }
}

/// The zoo files are raw exports (graphs/zoo.py: `torch.onnx.export(dynamo=True)` with its
/// defaults): normalized, each computes onnxruntime's outputs of the file as written on
/// its reference inputs, and normalizing again changes nothing.
#[test]
fn zoo_files_normalize_exactly() {
    for name in oto_testkit::zoo_names() {
        let model = Model::load(oto_testkit::zoo_path(&format!("{name}.onnx"))).unwrap();
        let proto = model.proto.clone();
        let (after, summary) = normalize(model, &NormalizeOptions::default()).unwrap();
        let x = oto_testkit::zoo_inputs(&name);
        let (err, tol) = deviation(&run_ort(&proto, &x), &run_ort(&after.proto, &x));
        assert!(err <= tol, "{name} ({summary}): {err:.3e} > {tol:.3e}");
        let (_, again) = normalize(after, &NormalizeOptions::default()).unwrap();
        assert!(again.is_noop(), "{name}: a second pass still rewrites: {again}");
    }
}

/// Outputs of a reference `.outputs.npz` as `run_ort` gives them.
fn as_f64(outputs: &[(String, oto_onnx::Tensor)]) -> Vec<(String, Vec<f64>)> {
    outputs.iter().map(|(n, t)| (n.clone(), t.as_f32().unwrap().iter().map(|&v| f64::from(v)).collect())).collect()
}

/// Model zoo-era files (graphs/legacy_zoo.py: IR 3, opsets 7-9, batch fixed to 1):
/// normalized, the batch is symbolic and the Reshape targets that carried it copy it;
/// at batch 1 they compute onnxruntime's outputs of the original file, and at batch 3
/// each sample gives what it gives alone.
#[test]
fn legacy_files_take_any_batch() {
    use oto_testkit::{batched, legacy_inputs, legacy_outputs, legacy_path};
    for (name, reshapes) in [("alexnet_lite", 1), ("resnet_mul_add", 1), ("squeeze_head", 0)] {
        let (model, summary) = oto_onnx::normalize::load(legacy_path(&format!("{name}.onnx"))).unwrap();
        assert!(summary.batch_symbolic, "{name}: {summary}");
        assert_eq!((summary.batch_reshapes, summary.batch_kept.as_deref()), (reshapes, None), "{name}");
        let x = legacy_inputs(name);
        let (err, tol) = deviation(&as_f64(&legacy_outputs(name)), &run_ort(&model.proto, &x));
        assert!(err <= tol, "{name} at batch 1: {err:.3e} > {tol:.3e}");
        let x3 = batched(&x, 3, 11);
        let y3 = run_ort(&model.proto, &x3);
        for k in 0..3 {
            let alone: Vec<_> = x3
                .iter()
                .map(|(n, t)| {
                    let per = t.shape[1..].iter().product::<usize>();
                    let data = t.as_f32().unwrap()[k * per..(k + 1) * per].to_vec();
                    let mut shape = t.shape.clone();
                    shape[0] = 1;
                    (n.clone(), oto_onnx::Tensor { shape, data: oto_onnx::TensorData::F32(data) })
                })
                .collect();
            let yk = run_ort(&model.proto, &alone);
            let rows: Vec<_> =
                y3.iter().zip(&yk).map(|((n, y), (_, one))| (n.clone(), y[k * one.len()..(k + 1) * one.len()].to_vec())).collect();
            let (err, tol) = deviation(&yk, &rows);
            assert!(err <= tol, "{name}: sample {k} of a batch of 3: {err:.3e} > {tol:.3e}");
        }
    }
    // A Reshape that folds the batch into another axis: the file keeps its batch, and says why.
    let (model, summary) = oto_onnx::normalize::load(legacy_path("batch_mixed.onnx")).unwrap();
    assert!(!summary.batch_symbolic);
    assert_eq!(summary.batch_kept.as_deref(), Some("graph output 'prob' would not carry the batch (its shape would be [2*batch, 5])"));
    let (err, tol) = deviation(&as_f64(&legacy_outputs("batch_mixed")), &run_ort(&model.proto, &legacy_inputs("batch_mixed")));
    assert!(err <= tol, "batch_mixed: {err:.3e} > {tol:.3e}");
}

/// Samples `k` of every input (the batch is dimension 0).
fn sample(inputs: &[(String, oto_onnx::Tensor)], k: std::ops::Range<usize>) -> Vec<(String, oto_onnx::Tensor)> {
    inputs
        .iter()
        .map(|(n, t)| {
            let per = t.shape[1..].iter().product::<usize>();
            let mut shape = t.shape.clone();
            shape[0] = k.len();
            let data = t.as_f32().unwrap()[k.start * per..k.end * per].to_vec();
            (n.clone(), oto_onnx::Tensor { shape, data: oto_onnx::TensorData::F32(data) })
        })
        .collect()
}

/// A file whose batch is fixed at 4 (inputs [4, 3, 12, 12], Reshape target [4, 32]):
/// the batch becomes symbolic, at 4 it computes onnxruntime's outputs of the original
/// file, and at batches of 1 and 8 each sample gives what it gives in the batch of 4.
/// A batch fixed at 2 with a constant of 2 rows (a bias per sample) stays fixed, and
/// says why.
#[test]
fn fixed_batch_above_one_becomes_symbolic_where_exact() {
    use oto_testkit::{legacy_inputs, legacy_outputs, legacy_path};
    let (model, summary) = oto_onnx::normalize::load(legacy_path("batch4_cnn.onnx")).unwrap();
    assert!(summary.batch_symbolic, "{summary}");
    assert_eq!((summary.fixed_batch, summary.batch_reshapes, summary.batch_kept.as_deref()), (Some(4), 1, None));
    assert!(summary.to_string().contains("fixed batch 4 made symbolic 'batch'"), "{summary}");
    let x = legacy_inputs("batch4_cnn");
    let want = as_f64(&legacy_outputs("batch4_cnn"));
    let (err, tol) = deviation(&want, &run_ort(&model.proto, &x));
    assert!(err <= tol, "batch4_cnn at batch 4: {err:.3e} > {tol:.3e}");
    let rows = |y: &[(String, Vec<f64>)], k: std::ops::Range<usize>| -> Vec<(String, Vec<f64>)> {
        y.iter().map(|(n, v)| (n.clone(), v[k.start * 10..k.end * 10].to_vec())).collect()
    };
    for k in 0..4 {
        let (err, tol) = deviation(&rows(&want, k..k + 1), &run_ort(&model.proto, &sample(&x, k..k + 1)));
        assert!(err <= tol, "batch4_cnn sample {k} alone: {err:.3e} > {tol:.3e}");
    }
    let twice: Vec<_> = x
        .iter()
        .map(|(n, t)| {
            let mut data = t.as_f32().unwrap().to_vec();
            data.extend_from_within(..);
            let mut shape = t.shape.clone();
            shape[0] = 8;
            (n.clone(), oto_onnx::Tensor { shape, data: oto_onnx::TensorData::F32(data) })
        })
        .collect();
    let y8 = run_ort(&model.proto, &twice);
    for half in [0..4, 4..8] {
        let (err, tol) = deviation(&want, &rows(&y8, half.clone()));
        assert!(err <= tol, "batch4_cnn samples {half:?} of a batch of 8: {err:.3e} > {tol:.3e}");
    }

    let (model, summary) = oto_onnx::normalize::load(legacy_path("batch2_rows.onnx")).unwrap();
    assert!(!summary.batch_symbolic, "{summary}");
    assert_eq!(summary.fixed_batch, Some(2));
    assert_eq!(summary.batch_kept.as_deref(), Some("graph output 'prob' would not carry the batch (its shape would be [2, 5])"));
    assert!(summary.to_string().contains("fixed batch 2 kept"), "{summary}");
    let (err, tol) = deviation(&as_f64(&legacy_outputs("batch2_rows")), &run_ort(&model.proto, &legacy_inputs("batch2_rows")));
    assert!(err <= tol, "batch2_rows: {err:.3e} > {tol:.3e}");
}

/// Window attention as the TorchScript exporter writes it for a batch of 1 (torchvision's
/// Swin): `x.view(B, H // 2, 2, W // 2, 2, C)` with `B` traced as the number 1 and the
/// other entries computed from `Shape`, `x.view(B * nW, 4, C)` with the entry `1 * nW`
/// computed, then constant targets back. Every Reshape gets the batch (four rewritten,
/// over rounds: each sees it only once the one before passes it on), and at a batch of 3
/// each sample gives what the file gives it alone. A target whose entry 0 comes from a
/// computed piece of several entries (sizes of a mean over the batch) cannot be
/// rewritten: that file keeps its batch and says which node.
#[test]
fn computed_targets_of_windows_take_the_batch() {
    use oto_onnx::builder::{known_dims, Attr, GraphBuilder};
    let windows = || {
        let mut b = GraphBuilder::new("windows");
        let x = b.input_f32("x", &known_dims(&[1, 4, 4, 2]));
        let w = b.weight("proj", &[2, 3], |i| 0.25 * i as f32 - 0.5);
        let shape = b.node("Shape", &[&x], &["x_shape"]);
        let two = b.ints("two", &[2]);
        let half = |b: &mut GraphBuilder, at: i64| {
            let i = b.ints(&format!("at{at}"), &[at]);
            let d = b.node("Gather", &[&shape, &i], &[&format!("dim{at}")]);
            b.node("Div", &[&d, &two], &[&format!("half{at}")])
        };
        let (h, wd) = (half(&mut b, 1), half(&mut b, 2));
        let one = b.ints("traced_batch", &[1]);
        let c = b.ints("c", &[2]);
        let t1 = b.node_with("Concat", &[&one, &h, &two, &wd, &two, &c], &["t1"], &[("axis", Attr::Int(0))]);
        let v1 = b.node("Reshape", &[&x, &t1], &["v1"]);
        let p1 = b.node_with("Transpose", &[&v1], &["p1"], &[("perm", Attr::Ints(vec![0, 1, 3, 2, 4, 5]))]);
        let nw = b.node("Mul", &[&h, &wd], &["nw"]);
        let bnw = b.node("Mul", &[&one, &nw], &["b_nw"]);
        let four = b.ints("four", &[4]);
        let t2 = b.node_with("Concat", &[&bnw, &four, &c], &["t2"], &[("axis", Attr::Int(0))]);
        let v2 = b.node("Reshape", &[&p1, &t2], &["v2"]);
        let m = b.node("MatMul", &[&v2, &w], &["m"]);
        let t3 = b.ints("t3", &[1, 2, 2, 2, 2, 3]);
        let v3 = b.node("Reshape", &[&m, &t3], &["v3"]);
        let p3 = b.node_with("Transpose", &[&v3], &["p3"], &[("perm", Attr::Ints(vec![0, 1, 3, 2, 4, 5]))]);
        let t4 = b.ints("t4", &[1, 4, 4, 3]);
        let y = b.node("Reshape", &[&p3, &t4], &["y"]);
        b.output_f32(&y, &known_dims(&[1, 4, 4, 3]));
        b.build().unwrap()
    };
    let original = windows();
    let (model, summary) = normalize(copy(&original), &NormalizeOptions::default()).unwrap();
    assert!(summary.batch_symbolic, "{summary}");
    assert_eq!((summary.batch_reshapes, summary.batch_kept.as_deref()), (4, None), "{summary}");
    let x3: Vec<f32> = (0..3 * 32).map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0).collect();
    let input = |k: std::ops::Range<usize>| {
        let t = oto_onnx::Tensor { shape: vec![k.len(), 4, 4, 2], data: oto_onnx::TensorData::F32(x3[k.start * 32..k.end * 32].to_vec()) };
        vec![("x".to_string(), t)]
    };
    assert_each_sample_as_alone(&original, &model, input, 48);

    let mut b = GraphBuilder::new("mean");
    b.opset(17);
    let x = b.input_f32("x", &known_dims(&[1, 4, 6]));
    let mean = b.node_with("ReduceMean", &[&x], &["mean"], &[("axes", Attr::Ints(vec![0]))]);
    let sizes = b.node("Shape", &[&mean], &["sizes"]);
    let (from, to) = (b.ints("from", &[0]), b.ints("to", &[2]));
    let lead = b.node("Slice", &[&sizes, &from, &to], &["lead"]);
    let six = b.ints("six", &[6]);
    let t = b.node_with("Concat", &[&lead, &six], &["t"], &[("axis", Attr::Int(0))]);
    let v = b.node("Reshape", &[&x, &t], &["v"]);
    let y = b.node("Sub", &[&v, &mean], &["y"]);
    b.output_f32(&y, &known_dims(&[1, 4, 6]));
    let (_, summary) = normalize(b.build().unwrap(), &NormalizeOptions::default()).unwrap();
    assert!(!summary.batch_symbolic, "{summary}");
    let why = summary.batch_kept.unwrap_or_default();
    assert!(why.contains("Reshape") && why.contains("'t'"), "{why}");
}

/// Batch-1 exports of Hugging Face models: the dynamo exporter writes attention's
/// `view(B, S, -1, d)` with `allowzero = 1` (no 0 in the target, so it may take the 0 that
/// copies the batch), and RoBERTa's token-type buffer reaches `GatherElements`, which does
/// not broadcast, as a one-row constant (dynamo: folded) or an Expand of one to `[1, S]`
/// (TorchScript), beside position ids that carry the batch; a `Concat` with a class token
/// expanded to one row likewise. Each gets the batch, and at a batch of 3 every sample
/// gives what the file gives it alone. An input of one row computed from the batch (a mean
/// over it) cannot take it: that file keeps its batch and names the node.
#[test]
fn batch_one_exports_of_transformers_take_the_batch() {
    use oto_onnx::builder::{known_dims, Attr, GraphBuilder};
    let build = |mean_over_batch: bool| {
        let mut b = GraphBuilder::new("hf");
        b.opset(18);
        let x = b.input_f32("x", &known_dims(&[1, 6, 8]));
        let ids = b.input("ids", oto_onnx::DType::I64, &known_dims(&[1, 6]));
        let heads = b.ints("heads", &[1, 6, -1, 2]);
        let v = b.node_with("Reshape", &[&x, &heads], &["v"], &[("allowzero", Attr::Int(1))]);
        let t = b.node_with("Transpose", &[&v], &["t"], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
        let back = b.ints("back", &[1, 6, 8]);
        let p = b.node_with("Transpose", &[&t], &["p"], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
        let h = b.node_with("Reshape", &[&p, &back], &["h"], &[("allowzero", Attr::Int(1))]);
        // Batch times sequence folded (a Linear on rows), then unfolded.
        let (rows, unrows) = (b.ints("fold", &[6, 8]), b.ints("unfold", &[1, 6, 8]));
        let flat = b.node("Reshape", &[&h, &rows], &["flat"]);
        let h = b.node("Reshape", &[&flat, &unrows], &["h2"]);
        let table = b.weight("token_type_buffer", &[1, 8], |i| i as f32 / 4.0);
        let types = if mean_over_batch {
            let axes = b.ints("axes", &[0, 1]);
            let m = b.node_with("ReduceMean", &[&x, &axes], &["mean"], &[("keepdims", Attr::Int(1))]);
            let rows = b.ints("rows", &[1, 8]);
            b.node("Reshape", &[&m, &rows], &["types"])
        } else {
            let to = b.ints("to", &[1, 8]);
            b.node("Expand", &[&table, &to], &["types"])
        };
        let g = b.node_with("GatherElements", &[&types, &ids], &["g"], &[("axis", Attr::Int(1))]);
        let cls = b.weight("cls", &[1, 8], |i| 1.0 - i as f32 / 8.0);
        let gathered = b.node_with("GatherElements", &[&cls, &ids], &["gc"], &[("axis", Attr::Int(1))]);
        let s = b.node("Add", &[&g, &gathered], &["s"]);
        let u = b.ints("u", &[2]);
        let s3 = b.node("Unsqueeze", &[&s, &u], &["s3"]);
        let y = b.node_with("Concat", &[&h, &s3], &["y"], &[("axis", Attr::Int(2))]);
        b.output_f32(&y, &known_dims(&[1, 6, 9]));
        // Declared shapes of intermediates, as exporters write them (the second folds the
        // batch into its first dimension): stale once the batch is symbolic.
        b.shape(&t, oto_onnx::DType::F32, &known_dims(&[1, 4, 6, 2]));
        b.shape(&flat, oto_onnx::DType::F32, &known_dims(&[6, 8]));
        b.build().unwrap()
    };
    let original = build(false);
    let (model, summary) = normalize(copy(&original), &NormalizeOptions::default()).unwrap();
    assert!(summary.batch_symbolic, "{summary}");
    assert_eq!((summary.batch_reshapes, summary.batch_expands), (4, 2), "{summary}");
    let declared: Vec<_> = model.proto.graph.as_ref().unwrap().value_info.iter().filter_map(|v| v.name.clone()).collect();
    assert!(declared.iter().all(|v| v != "t" && v != "flat"), "stale declared shapes: {declared:?}");
    let xs: Vec<f32> = (0..3 * 48).map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0).collect();
    let ids: Vec<i64> = (0..3 * 6).map(|i| (i * 3 % 8) as i64).collect();
    let input = |k: std::ops::Range<usize>| {
        let x = oto_onnx::Tensor { shape: vec![k.len(), 6, 8], data: oto_onnx::TensorData::F32(xs[k.start * 48..k.end * 48].to_vec()) };
        let i = oto_onnx::Tensor { shape: vec![k.len(), 6], data: oto_onnx::TensorData::I64(ids[k.start * 6..k.end * 6].to_vec()) };
        vec![("x".to_string(), x), ("ids".to_string(), i)]
    };
    assert_each_sample_as_alone(&original, &model, input, 54);
    let (_, summary) = normalize(build(true), &NormalizeOptions::default()).unwrap();
    assert!(!summary.batch_symbolic, "{summary}");
    let why = summary.batch_kept.unwrap_or_default();
    assert!(why.contains("GatherElements") && why.contains("'types'"), "{why}");
}

/// A batch-1 export of a recurrent layer (the dynamo exporter's `LSTM`, its initial
/// states stored as constants `[directions, 1, hidden]`, read beside a sequence `[S, 1,
/// in]`): made symbolic, the states are expanded to the batch (onnxruntime refused a
/// batch of 2 beside them), and at a batch of 3 every sample gives what the file gives it
/// alone. States sized for rows of the sample folded with the batch (`[directions, 4,
/// hidden]` beside `[S, 4 * batch, in]`, sequencer2d) keep the batch fixed, naming the node.
#[test]
fn batch_one_recurrent_layers_take_the_batch() {
    use oto_onnx::builder::{known_dims, Attr, GraphBuilder};
    let build = |rows: usize| {
        let mut b = GraphBuilder::new("lstm");
        b.opset(18);
        let x = b.input_f32("x", &known_dims(&[1, 5, 4 * rows as i64]));
        // [1, S, rows * 4] -> [S, rows, 4]: the rows of the one sample as the LSTM's batch.
        let t = b.node_with("Transpose", &[&x], &["t"], &[("perm", Attr::Ints(vec![1, 0, 2]))]);
        let seq = b.ints("seq", &[5, rows as i64, 4]);
        let t = b.node("Reshape", &[&t, &seq], &["seq_in"]);
        let w = b.weight("w", &[2, 12, 4], |i| ((i * 7 % 13) as f32 - 6.0) / 8.0);
        let r = b.weight("r", &[2, 12, 3], |i| ((i * 5 % 11) as f32 - 5.0) / 8.0);
        let bias = b.weight("b", &[2, 24], |i| (i % 5) as f32 / 10.0);
        let h0 = b.weight("h0", &[2, rows, 3], |i| (i % 3) as f32 / 4.0 - 0.25);
        let c0 = b.weight("c0", &[2, rows, 3], |i| (i % 4) as f32 / 5.0);
        let attrs = [("hidden_size", Attr::Int(3)), ("direction", Attr::Str("bidirectional".into()))];
        let y = b.node_with("LSTM", &[&t, &w, &r, &bias, "", &h0, &c0], &["y"], &attrs);
        // [S, 2, rows, 3] -> [rows, S, 6] -> [1, rows * S * 6]
        let p = b.node_with("Transpose", &[&y], &["p"], &[("perm", Attr::Ints(vec![2, 0, 1, 3]))]);
        let flat = b.ints("flat", &[1, -1]);
        let out = b.node("Reshape", &[&p, &flat], &["out"]);
        b.output_f32(&out, &known_dims(&[1, (rows * 5 * 6) as i64]));
        b.build().unwrap()
    };
    let original = build(1);
    let (model, summary) = normalize(copy(&original), &NormalizeOptions::default()).unwrap();
    assert!(summary.batch_symbolic, "{summary}");
    assert_eq!(summary.batch_expands, 2, "{summary}");
    let xs: Vec<f32> = (0..3 * 20).map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0).collect();
    let input = |k: std::ops::Range<usize>| {
        let x = oto_onnx::Tensor { shape: vec![k.len(), 5, 4], data: oto_onnx::TensorData::F32(xs[k.start * 20..k.end * 20].to_vec()) };
        vec![("x".to_string(), x)]
    };
    assert_each_sample_as_alone(&original, &model, input, 30);
    let (_, summary) = normalize(build(4), &NormalizeOptions::default()).unwrap();
    assert!(!summary.batch_symbolic, "{summary}");
    let why = summary.batch_kept.unwrap_or_default();
    assert!(why.contains("LSTM") && why.contains("initial state 'h0'"), "{why}");
}

/// Keras' attention as tf2onnx writes it, and attention written with `Einsum` (Keras at
/// opset 13, `torch.einsum`). tf2onnx's form: the projection kernels reshaped by targets
/// computed from their own shapes become initializers, and the batched products' sizes
/// computed from measured shapes (`ReduceProd` of `[N, H]` and of `[H, D]`, `Max` of two
/// operands' `[N, H]`) follow the heads. The `Einsum`s become `Transpose`/`Reshape`/
/// `MatMul` (the `Einsum` itself blocked them before). Both: the heads are one prunable
/// group whose removal is exact.
#[test]
fn keras_attention_prunes_heads_end_to_end() {
    for (name, case) in [("tf2onnx_attention", cases::tf2onnx_attention()), ("einsum_attention", cases::einsum_attention())] {
        let analysis = prune_end_to_end(name, &case, 1);
        let g = analysis.prunable_groups().next().unwrap();
        assert_eq!(g.num_elements, 2, "{name}: the two heads:\n{}", analysis.table());
        let mut members: Vec<(&str, usize)> = g.members.iter().map(|m| (m.initializer.as_str(), m.axis)).collect();
        members.sort_unstable();
        members.dedup();
        let want = [("key/kernel", 1), ("output/kernel", 0), ("query/kernel", 1), ("value/kernel", 1)];
        assert_eq!(members, want, "{name}: {}", analysis.table());
    }
}

/// Recurrent layers as exporters write them: a bidirectional LSTM whose zero initial
/// states are computed (omitted by normalization) and whose `[seq, 2, batch, H]` output is
/// flattened for a linear layer; a GRU with a zero state from an `Expand`; an
/// RNN whose initial state is 0.5 (not pruned). The LSTM's and GRU's hidden units are
/// groups (W and R rows in every gate block, R's columns, the biases, `hidden_size`), the
/// features they read are cut from W's columns, and removal is exact.
#[test]
fn recurrent_layers_prune_their_units_end_to_end() {
    let a = prune_end_to_end("recurrent_lstm", &cases::recurrent_lstm(), 2);
    let units = a.groups.iter().find(|g| g.members.iter().any(|m| m.initializer == "lstm.w" && m.axis == 1)).unwrap();
    assert!(units.prunable && units.num_elements == 4, "{}", a.table());
    let w = units.members.iter().find(|m| m.initializer == "lstm.w").unwrap();
    assert_eq!(w.map.indices(1), vec![1, 5, 9, 13], "unit 1 in each of the four gate blocks");
    let head = units.members.iter().find(|m| m.initializer == "head.weight").unwrap();
    assert_eq!(head.map.indices(1), vec![1, 5], "unit 1 of both directions in the flattened [2, H]");
    let mut names: Vec<(&str, usize)> = units.members.iter().map(|m| (m.initializer.as_str(), m.axis)).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names, [("head.weight", 0), ("lstm.b", 1), ("lstm.r", 1), ("lstm.r", 2), ("lstm.w", 1)], "{}", a.table());
    let edits: Vec<(String, usize)> = units.shape_constants.iter().map(|c| (format!("{:?}", c.location), c.per_element as usize)).collect();
    assert!(edits.iter().any(|(l, n)| l.contains("hidden_size") && *n == 1), "{edits:?}");
    assert_eq!(edits.len(), 1, "the flatten's target is computed from the shape: {edits:?}");

    let a = prune_end_to_end("recurrent_gru", &cases::recurrent_gru(), 2);
    let gru = a.groups.iter().find(|g| g.members.iter().any(|m| m.initializer == "gru.w" && m.axis == 1)).unwrap();
    assert!(gru.prunable && gru.num_elements == 5, "{}", a.table());
    let rnn = a.groups.iter().find(|g| g.members.iter().any(|m| m.initializer == "mid.weight" && m.axis == 1));
    assert!(rnn.is_some_and(|g| g.prunable), "the features the RNN reads:\n{}", a.table());
    assert!(
        a.groups.iter().all(|g| !g.members.iter().any(|m| m.initializer == "rnn.w" && m.axis == 1)),
        "the RNN's units stay:\n{}",
        a.table()
    );
    // ...and say why, though they open no group to carry the reason.
    let why = a.blocked.iter().find(|b| b.op_type == "RNN").map(|b| b.reason.as_str());
    assert_eq!(why, Some("its units are not pruned: its initial state is not zero"), "{:?}", a.blocked);

    // Keras's Bidirectional(GRU) through tf2onnx: its concatenated zero states omitted,
    // the units of both directions are one group.
    let a = prune_end_to_end("recurrent_bidirectional", &cases::recurrent_bidirectional(), 1);
    let gru = a.groups.iter().find(|g| g.members.iter().any(|m| m.initializer == "gru.w" && m.axis == 1)).unwrap();
    assert!(gru.prunable && gru.num_elements == 5, "{}", a.table());
}

/// Opset 23's `Attention` and `RotaryEmbedding` in every form the torch exporter and the
/// specification allow here (heads first or packed, grouped-query, interleaved and partial
/// rotation, position ids, a past, causal, softcap, boolean and float masks, a query that
/// sees no key) are written as the operators they are defined by and compute what
/// onnxruntime computes with them; the attention's heads (the key/value heads, with
/// grouped queries) are then one prunable group, and pruning it is exact. Before, both
/// operators were not understood and nothing in the layer was prunable.
#[test]
fn opset23_attention_is_written_exactly_and_prunes_heads() {
    use cases::Attention23;
    for (form, heads) in [(Attention23::HeadsFirst, 4), (Attention23::Packed, 2), (Attention23::WithPast, 2)] {
        let name = format!("opset23 {form:?}");
        let before = cases::opset23_attention(form);
        let (after, summary) = normalize(copy(&before), &NormalizeOptions::default()).unwrap();
        assert_eq!(summary.attention_rewritten, 3, "{name}: {summary}");
        let ops: Vec<String> = Graph::new(&after).unwrap().nodes().map(|(_, n)| n.op_type.clone().unwrap_or_default()).collect();
        assert!(!ops.iter().any(|o| o == "Attention" || o == "RotaryEmbedding"), "{name}: {ops:?}");
        assert_interface(&name, &before, &after);
        for seed in 0..2 {
            let inputs = cases::random_inputs(&before, seed);
            let (err, tol) = deviation(&run_ort(&before.proto, &inputs), &run_ort(&after.proto, &inputs));
            assert!(err <= tol, "{name} seed {seed}: max deviation {err:.3e} > {tol:.3e}");
        }
        let a = prune_end_to_end(&format!("opset23_{form:?}"), &before, 1);
        let g = a.prunable_groups().next().unwrap();
        assert_eq!((g.kind, g.num_elements), (oto_graph::ElementKind::Head { dim: 4 }, heads), "{name}:\n{}", a.table());
        // The present keys and values (graph outputs; here the past is computed, so they
        // are zero at a removed head) keep their width, with zeros there.
        let mut caches: Vec<&str> = g.caches.iter().map(|c| c.value.as_str()).collect();
        caches.sort_unstable();
        let want: &[&str] = if matches!(form, Attention23::WithPast) { &["present_key", "present_value"] } else { &[] };
        assert_eq!(caches, want, "{name}");
    }
}

/// A cross-attention reading the encoder's keys and values from graph inputs (a
/// `decoder_with_past_model.onnx`): its heads are a group that reads the kept heads of
/// those inputs (a `Gather` before the first node of each path: the keys' `Transpose` and
/// the values' product, or the `Reshape`s that merge the batch and the heads in the folded
/// layout; the keys' `Shape` still reads them whole), the output projection's rows zeroed
/// with a head (producers: a removed head's query is zero, but its average of the values
/// is not); the inputs keep their shapes and construction is exact.
#[test]
fn cross_attention_reads_the_kept_heads_of_its_cache_inputs() {
    for folded in [false, true] {
        let name = if folded { "cross_attention_folded" } else { "cross_attention_with_past" };
        let model = cases::cross_attention_with_past(folded);
        let a = prune_end_to_end(name, &model, 1);
        let g = a.prunable_groups().next().unwrap();
        assert_eq!((g.kind, g.num_elements), (oto_graph::ElementKind::Head { dim: 4 }, 2), "{name}: {}", a.table());
        assert!(g.caches.is_empty(), "{name}: {}", a.table());
        let graph = Graph::new(&model).unwrap();
        let op = |r: &oto_graph::ReadSlice| graph.producer_node(&r.reader).and_then(|(_, n)| n.op_type.as_deref()).unwrap_or("?");
        let mut reads: Vec<(&str, &str, usize)> = g.reads.iter().map(|r| (r.value.as_str(), op(r), r.axis)).collect();
        reads.sort_unstable();
        let want: &[(&str, &str, usize)] = if folded {
            &[("encoder_key", "Reshape", 1), ("encoder_value", "Reshape", 1)]
        } else {
            &[("encoder_key", "Transpose", 1), ("encoder_value", "MatMul", 1)]
        };
        assert_eq!(reads, want, "{name}: {}", a.table());
        let mut members: Vec<(&str, usize, Role)> = g.members.iter().map(|m| (m.initializer.as_str(), m.axis, m.role)).collect();
        members.sort_unstable_by_key(|m| (m.0, m.1));
        let want = [("o.weight", 0, Role::Producer), ("q.bias", 0, Role::Producer), ("q.weight", 1, Role::Producer)];
        assert_eq!(members, want, "{name}: {}", a.table());
    }
}

/// Calls of the file's own functions (`export_modules_as_functions`) are inlined, the
/// referenced attribute taken from the call or the function's default: the blocks' hidden
/// and output widths are groups (the calls were operators of an unknown domain that blocked
/// everything), and the definitions are gone with the calls.
#[test]
fn local_functions_are_inlined_and_prune() {
    let (after, summary) = normalize(copy(&cases::local_functions()), &NormalizeOptions::default()).unwrap();
    assert_eq!(summary.functions_inlined, 2, "{summary}");
    assert!(after.proto.functions.is_empty());
    let alphas: Vec<f32> = Graph::new(&after)
        .unwrap()
        .nodes()
        .filter(|(_, n)| n.op_type.as_deref() == Some("LeakyRelu"))
        .map(|(_, n)| n.attribute.iter().find(|a| a.name.as_deref() == Some("alpha")).and_then(|a| a.f).unwrap())
        .collect();
    assert_eq!(alphas, [0.2, 0.1]);
    prune_end_to_end("local_functions", &cases::local_functions(), 4);
}

/// The dynamo exporter without its optimizer gives a layer without bias the bias
/// `Expand(CastLike(0, x), [out])`: folded and dropped, the convolutions have no bias (as
/// the model) and their channels are groups (the analysis failed on the computed bias);
/// the zero bias the file holds as a weight stays.
#[test]
fn unoptimized_dynamo_zero_biases_are_dropped() {
    let (after, summary) = normalize(copy(&cases::unoptimized_dynamo_convs()), &NormalizeOptions::default()).unwrap();
    assert_eq!(summary.zero_biases_dropped, 2, "{summary}");
    for (_, n) in Graph::new(&after).unwrap().nodes() {
        match n.op_type.as_deref() {
            Some("Conv") => assert_eq!(n.input.len(), 2, "{n:?}"),
            Some("Gemm") => assert_eq!(n.input.get(2).map(String::as_str), Some("fc.bias"), "{n:?}"),
            _ => {}
        }
    }
    prune_end_to_end("unoptimized_dynamo_convs", &cases::unoptimized_dynamo_convs(), 2);
}

/// `SplitToSequence` read part by part by `SequenceAt`s (negative and repeated indices) is
/// the `Split` it is, at both opset forms: each part is a group of its own (the sequence
/// blocked the layer before).
#[test]
fn sequence_splits_prune_part_by_part() {
    for opset in [11, 13] {
        let (_, summary) = normalize(copy(&cases::sequence_split(opset)), &NormalizeOptions::default()).unwrap();
        assert_eq!(summary.sequence_splits, 1, "opset {opset}: {summary}");
        prune_end_to_end(&format!("sequence_split_{opset}"), &cases::sequence_split(opset), 3);
    }
}

/// Weight-normalized convolutions (`g * v / ||v||`, folded into their weight) prune like
/// any layer: the first convolution's channels are a group, construction is exact.
#[test]
fn weight_normalized_layers_prune_end_to_end() {
    for opset in [13, 18] {
        let a = prune_end_to_end(&format!("weight_normalized_{opset}"), &cases::weight_normalized(opset), 1);
        let group = a.prunable_groups().find(|g| g.num_elements > 1).unwrap();
        assert!(group.members.iter().any(|m| m.initializer == "conv0.v"), "{}", a.table());
    }
}

/// Weight-standardized convolutions (BiT's, folded into their weight) prune like any
/// layer: the first convolution's channels are a group, construction is exact.
#[test]
fn weight_standardized_layers_prune_end_to_end() {
    let a = prune_end_to_end("weight_standardized", &cases::weight_standardized(), 1);
    let group = a.prunable_groups().find(|g| g.num_elements > 1).unwrap();
    assert!(group.members.iter().any(|m| m.initializer == "conv0.weight"), "{}", a.table());
}

/// Nodes without names (the dynamo exporter leaves some Slices unnamed; hand-built and
/// converted files too) are named when loaded, so that the constants construction edits
/// can name the nodes reading them: a convolution's channels taken apart by two unnamed
/// Slices of constant bounds, `a * a + b * b`, failed the analysis's own check before
/// ("node 'node producing ... (Slice)' is not in the model").
#[test]
fn unnamed_nodes_prune_end_to_end() {
    use oto_onnx::builder::{Attr, GraphBuilder};
    use oto_onnx::Dim;
    let mut b = GraphBuilder::new("unnamed");
    let x = b.input_f32("x", &[Dim::sym("batch"), Dim::Known(3), Dim::Known(12)]);
    let pads = [("pads", Attr::Ints(vec![1, 1]))];
    let w1 = b.weight("w1", &[16, 3, 3], |i| ((i * 7919 % 17) as f32 - 8.0) / 9.0);
    let c = b.node_with("Conv", &[&x, &w1], &[], &pads);
    let (s0, e0, s1, e1, axis) =
        (b.ints("s0", &[0]), b.ints("e0", &[8]), b.ints("s1", &[8]), b.ints("e1", &[i64::MAX]), b.ints("axis", &[1]));
    let first = b.node("Slice", &[&c, &s0, &e0, &axis], &[]);
    let second = b.node("Slice", &[&c, &s1, &e1, &axis], &[]);
    let (a2, b2) = (b.node("Mul", &[&first, &first], &[]), b.node("Mul", &[&second, &second], &[]));
    let s = b.node("Add", &[&a2, &b2], &[]);
    let w2 = b.weight("w2", &[4, 8, 3], |i| ((i * 31 % 13) as f32 - 6.0) / 7.0);
    let y = b.node_with("Conv", &[&s, &w2], &["y"], &pads);
    b.output_f32(&y, &[Dim::sym("batch"), Dim::Known(4), Dim::Known(12)]);
    let mut m = b.build().unwrap();
    for node in &mut m.proto.graph.as_mut().unwrap().node {
        node.name = None;
    }
    let a = prune_end_to_end("unnamed", &m, 1);
    let g = a.prunable_groups().next().unwrap();
    assert_eq!(g.num_elements, 8, "the halves' channels pair up:\n{}", a.table());
}
