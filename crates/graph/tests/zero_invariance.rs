//! The test that decides (spec/groups.md): on every zoo model, zeroing the producer
//! slices of random elements of random prunable groups makes the outputs independent
//! of their consumer slices, checked with onnxruntime. And a control: zeroing only part
//! of an element's producers must change the outputs.

mod common;
use common::*;
use oto_graph::{analyze, AnalyzeOptions, Role};
use oto_onnx::{Tensor, TensorData};
use oto_testkit::{deviation, run_ort, zoo_inputs, zoo_model, SplitMix64};

fn check_zero_invariance(name: &str) {
    let model = zoo_model(name);
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    assert!(analysis.prunable_groups().count() > 0, "{name}: no prunable group\n{}", analysis.table());
    let inputs = zoo_inputs(name);
    let originals = Originals::new(&model);
    // The outputs of the zeroed model, and of the zeroed model with randomized consumers.
    let check = |choice: &Choice<'_>, seed: u64| -> (f64, f64) {
        let mut zeroed = Edits::new(&model, &originals);
        zero_elements(&mut zeroed, choice, &mut SplitMix64::new(seed), false);
        let mut randomized = Edits::new(&model, &originals);
        zero_elements(&mut randomized, choice, &mut SplitMix64::new(seed), true);
        deviation(&run_ort(&zeroed.proto(), &inputs), &run_ort(&randomized.proto(), &inputs))
    };
    for seed in 0..3u64 {
        for sparsity in [0.1, 0.5, 0.9] {
            let mut rng = SplitMix64::new(seed * 7919 + (sparsity * 100.0) as u64);
            let choice = pick(&analysis, &mut rng, sparsity);
            let (err, tol) = check(&choice, seed + 1);
            let ids: Vec<&str> = choice.iter().map(|(g, _)| g.id.as_str()).collect();
            assert!(err <= tol, "{name} seed {seed} sparsity {sparsity}: max deviation {err:.3e} > {tol:.3e}; groups {ids:?}");
        }
    }
    // One group at a time (up to 12 of them, spread over the model), all its elements
    // zeroed but one.
    let prunable: Vec<_> = analysis.prunable_groups().collect();
    let stride = prunable.len().div_ceil(12).max(1);
    for g in prunable.into_iter().step_by(stride) {
        let elems: Vec<usize> = (0..g.num_elements).filter(|&e| g.num_elements == 1 || e != 0).collect();
        let (err, tol) = check(&vec![(g, elems)], 42);
        assert!(err <= tol, "{name} group {}: max deviation {err:.3e} > {tol:.3e}", g.id);
    }
}

macro_rules! zoo_tests {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            check_zero_invariance(stringify!($name));
        }
    )*};
}

zoo_tests!(
    mlp,
    demo_cnn,
    resnet18,
    resnet50,
    vgg16_bn,
    mobilenet_v2,
    densenet121,
    bert_tiny,
    gpt2_tiny,
    llama_tiny,
    vit_tiny,
    concat_bn,
    grouped_conv,
    groupnorm,
    convtranspose_in,
    shared_conv,
    flatten_linear,
    shufflenet_v2,
    squeezenet1_1,
    mobilenet_v3_small,
    regnet_x_400mf
);

/// Zeroing a conv filter but not its bias (the BatchNorm's shift, fused into the conv by
/// the exporter) leaves the element non-zero: the randomized consumer slices must then
/// change the outputs.
#[test]
fn control_partial_zeroing_changes_outputs() {
    for name in ["demo_cnn", "resnet18"] {
        let model = zoo_model(name);
        let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
        let inputs = zoo_inputs(name);
        let originals = Originals::new(&model);
        let dims: std::collections::HashMap<String, usize> =
            model.proto.graph.as_ref().unwrap().initializer.iter().map(|t| (t.name.clone().unwrap(), t.dims.len())).collect();
        let g = analysis
            .prunable_groups()
            .find(|g| g.members.iter().any(|m| m.role == Role::Producer && dims[&m.initializer] == 1))
            .expect("a group with a per-channel bias");
        let elems: Vec<usize> = (0..g.num_elements).collect();
        let mut rng = SplitMix64::new(1);
        let mut zeroed = Edits::new(&model, &originals);
        let mut randomized = Edits::new(&model, &originals);
        for m in &g.members {
            let idx: Vec<usize> = elems.iter().flat_map(|&e| m.map.indices(e)).collect();
            match m.role {
                Role::Consumer => randomized.set_slice(&m.initializer, m.axis, &idx, || (rng.unit() * 4.0 - 2.0) as f32),
                Role::Producer if dims[&m.initializer] > 1 => {
                    zeroed.set_slice(&m.initializer, m.axis, &idx, || 0.0);
                    randomized.set_slice(&m.initializer, m.axis, &idx, || 0.0);
                }
                _ => {}
            }
        }
        let (err, tol) = deviation(&run_ort(&zeroed.proto(), &inputs), &run_ort(&randomized.proto(), &inputs));
        assert!(err > 10.0 * tol, "{name}: partial zeroing of {} left the outputs unchanged ({err:.3e})", g.id);
    }
}

/// Zeroes each element of each prunable group of a builder model, one at a time, and
/// checks with onnxruntime that its consumer slices no longer matter.
fn check_builder_model(name: &str, model: &oto_onnx::Model, input_shape: Vec<usize>) -> oto_graph::Analysis {
    let analysis = analyze(model, &AnalyzeOptions::default()).unwrap();
    let mut rng = SplitMix64::new(5);
    let n: usize = input_shape.iter().product();
    let x: Vec<f32> = (0..n).map(|_| (rng.unit() * 2.0 - 1.0) as f32).collect();
    let inputs = vec![("x".to_string(), Tensor { shape: input_shape, data: TensorData::F32(x) })];
    let originals = Originals::new(model);
    for g in analysis.prunable_groups() {
        for e in 0..g.num_elements {
            let choice = vec![(g, vec![e])];
            let mut zeroed = Edits::new(model, &originals);
            zero_elements(&mut zeroed, &choice, &mut SplitMix64::new(9), false);
            let mut randomized = Edits::new(model, &originals);
            zero_elements(&mut randomized, &choice, &mut SplitMix64::new(9), true);
            let (err, tol) = deviation(&run_ort(&zeroed.proto(), &inputs), &run_ort(&randomized.proto(), &inputs));
            assert!(err <= tol, "{name} group {} element {e}: {err:.3e} > {tol:.3e}", g.id);
        }
    }
    analysis
}

/// Attention built with the builder (2 heads; grouped-query attention with 4 query heads
/// on 2 K/V heads; a LLaMA-style block with RMSNorm, rotary embeddings, GQA and SwiGLU):
/// zeroing a head's Q, K, V columns makes the output projection's rows for it irrelevant.
#[test]
fn attention_heads_and_gqa() {
    for (name, model, shape) in [
        ("mha", attention_model(2, 2), vec![2, 5, 8]),
        ("gqa", attention_model(4, 2), vec![2, 5, 8]),
        ("llama", llama_block(), vec![2, 6, 16]),
    ] {
        let a = check_builder_model(name, &model, shape);
        let heads = a.groups.iter().find(|g| g.members.iter().any(|m| m.initializer == "q.weight")).unwrap();
        assert!(heads.prunable, "{name}: {}", a.table());
    }
}

/// RMSNorm over the residual stream: with a residual channel's producers zero, the
/// weights reading it no longer matter (the means of squares do not change).
#[test]
fn rmsnorm_residual_stream() {
    let a = check_builder_model("rmsnorm", &residual_norm_model(false), vec![2, 5, 8]);
    let hidden = a.groups.iter().find(|g| g.members.iter().any(|m| m.initializer == "in.weight" && m.axis == 1)).unwrap();
    assert!(hidden.prunable, "{}", a.table());
}

/// Squeeze-and-excitation: the sigmoid gate (f(0) = 0.5) multiplies channels that are
/// zero, so the gate's conv joins the channels' group and stays exact without folding.
/// Prunable: c1's channels (with se2's outputs) and the squeeze width; c2 reaches the output.
#[test]
fn squeeze_excitation() {
    let a = check_builder_model("se", &se_block(), vec![2, 3, 8, 8]);
    let g = a.groups.iter().find(|g| g.members.iter().any(|m| m.initializer == "c1.weight" && m.axis == 0)).unwrap();
    assert!(g.prunable, "{}", a.table());
    assert!(g.members.iter().any(|m| m.initializer == "se2.weight" && m.axis == 0));
    assert!(g.members.iter().any(|m| m.initializer == "se1.weight" && m.axis == 1));
    assert_eq!(a.prunable_groups().count(), 2, "{}", a.table());
}

/// Conv channels normalized by their own root mean square over the image (the per-head
/// q/k norm of Qwen3 and OLMo-2, on a channel axis): `x * (1 / sqrt(mean(x^2) + eps))`
/// and `x / sqrt(mean(x^2) + eps)`. With `eps > 0` a zero channel stays zero (0 * 1/sqrt(eps))
/// and its channels prune exactly; with `eps = 0` it would be 0 / 0, and they stay.
#[test]
fn division_by_the_channels_own_rms() {
    use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
    let model = |reciprocal: bool, eps: f32| {
        let mut b = GraphBuilder::new("rms_div");
        let x = b.input_f32("x", &batch_dims(&[3, 6, 6]));
        let weight = |b: &mut GraphBuilder, name: &str, shape: &[usize]| b.weight(name, shape, |i| ((i * 7919 % 13) as f32 - 6.0) / 10.0);
        let scalar =
            |b: &mut GraphBuilder, name: &str, v: f32| b.initializer(name, Tensor { shape: vec![], data: TensorData::F32(vec![v]) });
        let (w1, b1) = (weight(&mut b, "c1.weight", &[8, 3, 3, 3]), weight(&mut b, "c1.bias", &[8]));
        let c1 = b.node_with("Conv", &[&x, &w1, &b1], &[], &[("pads", Attr::Ints(vec![1; 4]))]);
        let (two, eps, one) = (scalar(&mut b, "two", 2.0), scalar(&mut b, "eps", eps), scalar(&mut b, "one", 1.0));
        let spatial = b.ints("spatial", &[2, 3]);
        let p = b.node("Pow", &[&c1, &two], &[]);
        let m = b.node_with("ReduceMean", &[&p, &spatial], &[], &[("keepdims", Attr::Int(1))]);
        let a = b.node("Add", &[&m, &eps], &[]);
        let r = b.node("Sqrt", &[&a], &[]);
        let y = if reciprocal {
            let inv = b.node("Div", &[&one, &r], &[]);
            b.node("Mul", &[&c1, &inv], &[])
        } else {
            b.node("Div", &[&c1, &r], &[])
        };
        let (w2, b2) = (weight(&mut b, "c2.weight", &[4, 8, 3, 3]), weight(&mut b, "c2.bias", &[4]));
        let c2 = b.node_with("Conv", &[&y, &w2, &b2], &[], &[("pads", Attr::Ints(vec![1; 4]))]);
        let out = b.node("GlobalAveragePool", &[&c2], &["y"]);
        b.output_f32(&out, &batch_dims(&[4, 1, 1]));
        b.build().unwrap()
    };
    for reciprocal in [true, false] {
        let name = if reciprocal { "x * 1/rms" } else { "x / rms" };
        let a = check_builder_model(name, &model(reciprocal, 1e-6), vec![2, 3, 6, 6]);
        let g = a.groups.iter().find(|g| g.members.iter().any(|m| m.initializer == "c1.weight" && m.axis == 0)).unwrap();
        assert!(g.prunable && g.num_elements == 8, "{name}:\n{}", a.table());
        let a = analyze(&model(reciprocal, 0.0), &AnalyzeOptions::default()).unwrap();
        let g = a.groups.iter().find(|g| g.members.iter().any(|m| m.initializer == "c1.weight" && m.axis == 0)).unwrap();
        assert!(!g.prunable, "{name} without eps:\n{}", a.table());
    }
}
