//! The test that decides (spec/groups.md): on every zoo model, zero the producer slices
//! of random elements of every prunable group, construct the compact model, and check
//! with onnxruntime that it computes what the zeroed full model computes; its parameter
//! count must be the one the groups predict, and it must pass shape inference and reload.

mod common;
use common::*;
use oto_construct::{construct, zero_elements, PRUNED_METADATA_KEY};
use oto_graph::{analyze, AnalyzeOptions};
use oto_onnx::{Graph, Model};
use oto_testkit::{batched, deviation, legacy_inputs, legacy_model, run_ort, user_zoo_dir, zoo_inputs, zoo_model, SplitMix64};

fn check_construct(name: &str, seeds: u64) {
    check_model(name, &zoo_model(name), &zoo_inputs(name), seeds);
}

/// A file of the user zoo (graphs/user_zoo/torchscript) with its reference inputs.
fn check_torchscript(file: &str, reference: &str, seeds: u64) {
    let dir = user_zoo_dir().join("torchscript");
    let model = oto_onnx::normalize::load(dir.join(file)).unwrap_or_else(|e| panic!("{e}; run `make graphs`")).0;
    let inputs = oto_onnx::npz::read_npz(dir.join(format!("{reference}.inputs.npz"))).unwrap();
    check_model(file, &model, &inputs, seeds);
}

/// Attention over heads `[B, H, S, D]` in the test graphs: `softmax(q @ k_t (+ bias)) @ v`,
/// the heads merged back (`Transpose`, then `Reshape` to `merge`); the context's name.
fn attend(b: &mut oto_onnx::builder::GraphBuilder, q: &str, k_t: &str, v: &str, bias: Option<&str>, merge: &str) -> String {
    use oto_onnx::builder::Attr;
    let scores = b.node("MatMul", &[q, k_t], &[]);
    let scores = match bias {
        Some(bias) => b.node("Add", &[&scores, bias], &[]),
        None => scores,
    };
    let probs = b.node_with("Softmax", &[&scores], &[], &[("axis", Attr::Int(-1))]);
    let ctx = b.node("MatMul", &[&probs, v], &[]);
    let ctx = b.node_with("Transpose", &[&ctx], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
    b.node("Reshape", &[&ctx, merge], &[])
}

/// A projection `t` (`[B, s, h * d]`) split into heads `[B, h, s, d]`: `Reshape` to
/// `[0, s, h, d]` (its target the initializer `shape`), then `Transpose`; `out` names it.
fn into_heads(b: &mut oto_onnx::builder::GraphBuilder, t: &str, shape: &str, (s, h, d): (i64, i64, i64), out: &[&str]) -> String {
    let shape = b.ints(shape, &[0, s, h, d]);
    let t = b.node("Reshape", &[t, &shape], &[]);
    b.node_with("Transpose", &[&t], out, &[("perm", oto_onnx::builder::Attr::Ints(vec![0, 2, 1, 3]))])
}

/// A projection of the test graphs' `x` by a weight `name` (`[h * d, h * d]`, its values
/// set by `k`), split into heads `[B, h, s, d]` ([`into_heads`]).
fn projected_heads(b: &mut oto_onnx::builder::GraphBuilder, x: &str, name: &str, k: usize, (s, h, d): (i64, i64, i64)) -> String {
    let e = (h * d) as usize;
    let w = b.weight(name, &[e, e], |i| ((i * 7 + k) % 11) as f32 / 5.0 - 1.0);
    let t = b.node("MatMul", &[x, &w], &[]);
    into_heads(b, &t, &format!("{name}.shape"), (s, h, d), &[])
}

/// The output projection of the test graphs: `ctx @ o.weight`, the graph output `y`
/// (`[B, s, e]`).
fn project_out(b: &mut oto_onnx::builder::GraphBuilder, ctx: &str, s: i64, e: usize) {
    let o = b.weight("o.weight", &[e, e], |i| ((i * 5 + 3) % 13) as f32 / 6.0 - 1.0);
    let y = b.node("MatMul", &[ctx, &o], &["y"]);
    b.output_f32(&y, &oto_onnx::builder::batch_dims(&[s, e as i64]));
}

/// The first group whose elements are heads; panics with the table when there is none.
fn first_head_group(analysis: &oto_graph::Analysis) -> &oto_graph::Group {
    let g = analysis.groups.iter().find(|g| matches!(g.kind, oto_graph::ElementKind::Head { .. }));
    g.unwrap_or_else(|| panic!("no head group\n{}", analysis.table()))
}

/// The input `x` of the test graphs, a batch of 2 `[2, s, e]`, element `i` being `value(i)`.
fn x_batch(s: usize, e: usize, value: impl Fn(f32) -> f32) -> Vec<(String, oto_onnx::Tensor)> {
    let data = (0..2 * s * e).map(|i| value(i as f32)).collect();
    vec![("x".to_string(), oto_onnx::Tensor { shape: vec![2, s, e], data: oto_onnx::TensorData::F32(data) })]
}

fn check_model(name: &str, model: &Model, inputs: &[(String, oto_onnx::Tensor)], seeds: u64) {
    let analysis = analyze(model, &AnalyzeOptions::default()).unwrap();
    assert!(analysis.prunable_groups().any(|g| g.num_elements > 1), "{name}: nothing to prune\n{}", analysis.table());
    let dir = tempfile::tempdir().unwrap();
    for seed in 0..seeds {
        for sparsity in [0.1, 0.5, 0.9] {
            let ctx = format!("{name} seed {seed} sparsity {sparsity}");
            let mut rng = SplitMix64::new(seed * 7919 + (sparsity * 100.0) as u64 + 1);
            let removed = pick(&analysis, &mut rng, sparsity);
            let full = oto_construct::zero_producers(model, &analysis, &removed).unwrap();

            // The zero elements found are at least the chosen ones.
            let found = zero_elements(&analysis, &full).unwrap();
            for (id, elems) in &removed {
                let f = found.get(id).unwrap_or_else(|| panic!("{ctx}: no zero element found in {id}"));
                assert!(elems.iter().all(|e| f.contains(e)), "{ctx}: {id}: chose {elems:?}, found {f:?}");
            }

            let (compact, report) = construct(&full, &analysis, &removed).unwrap();
            assert!(report.params_after < report.params_before, "{ctx}: {report:?}");
            assert!(report.macs_after <= report.macs_before, "{ctx}: {report:?}");
            assert_eq!(report.groups.len(), removed.len(), "{ctx}");
            for gr in &report.groups {
                assert_eq!(gr.removed, removed[&gr.id].len(), "{ctx}");
                assert_eq!(gr.kept + gr.removed, analysis.group(&gr.id).unwrap().num_elements, "{ctx}");
            }

            // Parameter count predicted from the groups.
            assert_eq!(float_elements(&compact), predicted_float_elements(&full, &analysis, &removed), "{ctx}: parameter count");

            // Shape inference passes and agrees with the declared shapes; save and reload.
            let graph = Graph::new(&compact).unwrap();
            let shapes = oto_onnx::shape::infer(&graph).unwrap();
            assert!(shapes.mismatches.is_empty(), "{ctx}: stale shapes {:?}", shapes.mismatches);
            let path = dir.path().join("compact.onnx");
            compact.save(&path, &Default::default()).unwrap();
            let reloaded = Model::load(&path).unwrap();
            assert!(reloaded.proto.metadata_props.iter().any(|e| e.key.as_deref() == Some(PRUNED_METADATA_KEY)));
            // As files hold them: a merged decoder's branches back in their If.
            let written = |m: &Model| {
                let mut proto = m.proto.clone();
                oto_onnx::branches::nest(&mut proto);
                proto
            };
            assert!(!oto_onnx::branches::has_branches(&reloaded.proto), "{ctx}: the file holds oto's internal node");
            assert_eq!(reloaded.proto.opset_import, written(model).opset_import, "{ctx}");
            let io = |m: &Model| {
                let g = m.proto.graph.as_ref().unwrap();
                (g.output.clone(), Graph::new(m).unwrap().real_inputs().cloned().collect::<Vec<_>>())
            };
            assert_eq!(io(&reloaded), io(model), "{ctx}: inputs/outputs changed");

            let (err, tol) = deviation(&run_ort(&written(&full), inputs), &run_ort(&reloaded.proto, inputs));
            assert!(err <= tol, "{ctx}: max deviation {err:.3e} > {tol:.3e}");
        }
    }
}

macro_rules! zoo_tests {
    ($($name:ident: $seeds:expr),* $(,)?) => {$(
        #[test]
        fn $name() {
            check_construct(stringify!($name), $seeds);
        }
    )*};
}

zoo_tests!(
    mlp: 3,
    demo_cnn: 3,
    resnet18: 2,
    vgg16_bn: 1,
    mobilenet_v2: 2,
    densenet121: 1,
    concat_bn: 3,
    grouped_conv: 3,
    flatten_linear: 3,
    shared_conv: 3,
    bert_tiny: 3,
    gpt2_tiny: 3,
    vit_tiny: 3,
    distilbert_tiny: 3,
    llama_tiny: 3,
    groupnorm: 3,
    convtranspose_in: 3,
    resnet50: 1,
);

/// TorchScript exports whose widths are computed at run time from `Shape`s
/// (nn.MultiheadAttention's `[T*B, E]`, the packed QKV's `[T, B, 3, E]`): construction
/// edits those computed values.
#[test]
fn vit_tiny_torchscript() {
    check_torchscript("vit_tiny.onnx", "vit_tiny", 3);
}

/// transformers models as Optimum exports them: masks built inside transformers, sdpa
/// attention (`Where(IsNaN(p), 0, p)` after the softmax).
#[test]
fn bert_tiny_optimum() {
    check_torchscript("bert_tiny.optimum.onnx", "bert_tiny.optimum", 3);
}

#[test]
fn gpt2_tiny_optimum() {
    check_torchscript("gpt2_tiny.optimum.onnx", "gpt2_tiny.optimum", 3);
}

#[test]
fn distilbert_tiny_optimum() {
    check_torchscript("distilbert_tiny.optimum.onnx", "distilbert_tiny.optimum", 3);
}

/// Grouped-query attention (8 query heads on 2 K/V heads), RMSNorm, rotary embeddings.
#[test]
fn llama_tiny_optimum() {
    check_torchscript("llama_tiny.optimum.onnx", "llama_tiny.optimum", 3);
}

/// Model zoo-era files (graphs/legacy_zoo.py) as commands load them (batch made
/// symbolic), at their batch of 1 and at a batch of 3.
fn check_legacy(name: &str, seeds: u64) {
    let model = legacy_model(name);
    let inputs = legacy_inputs(name);
    check_model(name, &model, &inputs, seeds);
    check_model(&format!("{name} at batch 3"), &model, &batched(&inputs, 3, 5), 1);
}

/// LRN, a grouped conv with C_in/group != C_out/group, a Reshape to [1, 144].
#[test]
fn alexnet_lite_legacy() {
    check_legacy("alexnet_lite", 3);
}

/// BatchNorm as Mul + Add of Unsqueeze'd parameters, a Sum residual.
#[test]
fn resnet_mul_add_legacy() {
    check_legacy("resnet_mul_add", 3);
}

/// InstanceNormalization, a [N, C, 1, 1] output.
#[test]
fn squeeze_head_legacy() {
    check_legacy("squeeze_head", 3);
}

/// Tiny YOLOv2's layout: the experimental ImageScaler, then Conv + BatchNormalization +
/// LeakyRelu stages.
#[test]
fn yolo_lite_legacy() {
    check_legacy("yolo_lite", 3);
}

/// Every Hugging Face Optimum export (graphs/optimum_zoo/NAME/model.onnx, loaded as the
/// commands load it) with its reference inputs from onnxruntime.
#[test]
fn optimum_zoo() {
    for name in oto_testkit::optimum_zoo_names() {
        let dir = oto_testkit::optimum_zoo_dir().join(&name);
        let model = oto_onnx::normalize::load(dir.join("model.onnx")).unwrap().0;
        let inputs = oto_onnx::npz::read_npz(dir.join("inputs.npz")).unwrap();
        check_model(&format!("optimum {name}"), &model, &inputs, 1);
    }
}

/// The Optimum zoo's merged decoders: normalization follows the `If` on `use_cache_branch`
/// into both branches, so a channel is cut in both; the compact file holds the `If` again
/// and computes what the zeroed full model computes on the inputs of either branch.
#[test]
fn optimum_merged_decoders() {
    let names = oto_testkit::optimum_merged_names();
    assert!(!names.is_empty(), "no merged decoder in the Optimum zoo");
    for name in names {
        let dir = oto_testkit::optimum_zoo_dir().join(&name);
        let (model, summary) = oto_onnx::normalize::load(dir.join("model.onnx")).unwrap();
        assert_eq!(summary.branches_flattened, 1, "{name}: {summary}");
        for inputs in ["inputs.npz", "inputs_first.npz"] {
            let feeds = oto_onnx::npz::read_npz(dir.join(inputs)).unwrap();
            check_model(&format!("optimum {name} ({inputs})"), &model, &feeds, 1);
        }
    }
}

/// Every file of graphs/user_zoo/torchscript (opset 17, `.op13` and `.optimum` variants),
/// with the reference inputs of its architecture.
#[test]
fn every_torchscript_file() {
    let dir = user_zoo_dir().join("torchscript");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; run `make graphs`", dir.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.ends_with(".onnx"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "{files:?}");
    for file in files {
        let stem = file.trim_end_matches(".onnx");
        let reference = stem.strip_suffix(".op13").unwrap_or(stem);
        check_torchscript(&file, reference, 1);
    }
}

/// Grouped-query attention with as many K/V heads as each repeats (2 K/V heads, 4 query
/// heads), the dynamo exporter's way: the Expand shape `[B, 2, 2, S, D]` is a Concat that
/// reads one constant `2` twice (the K/V head count and the repeat count). Pruning a K/V
/// head rewrites the first entry only: normalization gives each position its own constant.
/// Loaded as the commands load it, exact through construction.
#[test]
fn repeated_constant_in_an_expand_shape() {
    use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
    let (s, kv, rep, d) = (4i64, 2i64, 2i64, 4i64);
    let h = kv * rep;
    let e = (h * d) as usize;
    let mut b = GraphBuilder::new("gqa_shared_two");
    b.opset(17);
    let x = b.input_f32("x", &batch_dims(&[s, e as i64]));
    let weight = |b: &mut GraphBuilder, name: &str, rows: usize, cols: usize, k: usize| {
        b.weight(name, &[rows, cols], |i| ((i * 7 + k) % 11) as f32 / 5.0 - 1.0)
    };
    let q = weight(&mut b, "q.weight", e, e, 0);
    let k = weight(&mut b, "k.weight", e, (kv * d) as usize, 1);
    let v = weight(&mut b, "v.weight", e, (kv * d) as usize, 2);
    let heads = |b: &mut GraphBuilder, w: &str, n: i64, name: &str| {
        let t = b.node("MatMul", &[&x, w], &[]);
        into_heads(b, &t, name, (s, n, d), &[])
    };
    let qh = heads(&mut b, &q, h, "q.shape");
    let (kh, vh) = (heads(&mut b, &k, kv, "k.shape"), heads(&mut b, &v, kv, "v.shape"));
    // [batch, 2, 2, S, D] from the input's batch and one constant `2` read twice.
    let (zero, one, two) = (b.ints("zero", &[0]), b.ints("one", &[1]), b.ints("two", &[2]));
    let rest = b.ints("rest", &[s, d]);
    let shape_x = b.node("Shape", &[&x], &[]);
    let batch = b.node("Slice", &[&shape_x, &zero, &one], &[]);
    let expand_shape = b.node_with("Concat", &[&batch, &two, &two, &rest], &[], &[("axis", Attr::Int(0))]);
    let merge = b.ints("merge.shape", &[0, h, s, d]);
    let repeat = |b: &mut GraphBuilder, t: &str| {
        let u = b.node("Unsqueeze", &[t, &two], &[]);
        let u = b.node("Expand", &[&u, &expand_shape], &[]);
        b.node("Reshape", &[&u, &merge], &[])
    };
    let (kh, vh) = (repeat(&mut b, &kh), repeat(&mut b, &vh));
    let kt = b.node_with("Transpose", &[&kh], &[], &[("perm", Attr::Ints(vec![0, 1, 3, 2]))]);
    let out_shape = b.ints("out.shape", &[0, s, e as i64]);
    let ctx = attend(&mut b, &qh, &kt, &vh, None, &out_shape);
    let o = weight(&mut b, "o.weight", e, e, 3);
    let y = b.node("MatMul", &[&ctx, &o], &["y"]);
    b.output_f32(&y, &batch_dims(&[s, e as i64]));
    let (model, summary) = oto_onnx::normalize::normalize(b.build().unwrap(), &Default::default()).unwrap();
    assert_eq!(summary.shape_constants_untied, 1, "{summary}");
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let g = analysis.prunable_groups().find(|g| matches!(g.kind, oto_graph::ElementKind::Head { .. })).unwrap();
    assert_eq!(g.num_elements, kv as usize, "{}", analysis.table());
    let inputs = x_batch(4, 16, |i| (i * 0.29).sin());
    check_model("GQA with a repeated constant in the Expand shape", &model, &inputs, 2);
}

/// BLOOM's attention layout: one projection packs q, k and v per head, `[B, S, H, 3, D]`,
/// and each is picked from the `3` axis: q by a scalar Gather, k by a Slice, v by a
/// Gather of the index `[-1]` (both squeezed). Head `h` is the block of `3 * D` columns
/// of the packed projection; removing it is exact through construction.
#[test]
fn per_head_packed_qkv_picked_from_a_sub_axis() {
    use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
    let (s, h, d) = (4i64, 4i64, 4i64);
    let e = (h * d) as usize;
    let mut b = GraphBuilder::new("bloom_layout");
    b.opset(17);
    let x = b.input_f32("x", &batch_dims(&[s, e as i64]));
    let qkv = b.weight("qkv.weight", &[e, 3 * e], |i| ((i * 7) % 11) as f32 / 5.0 - 1.0);
    let t = b.node("MatMul", &[&x, &qkv], &[]);
    let packed = b.ints("packed.shape", &[0, s, h, 3, d]);
    let t = b.node("Reshape", &[&t, &packed], &[]);
    let zero = b.initializer("zero", oto_onnx::Tensor { shape: vec![], data: oto_onnx::TensorData::I64(vec![0]) });
    let (axis3, one, two, last) = (b.ints("axis3", &[3]), b.ints("one", &[1]), b.ints("two", &[2]), b.ints("last", &[-1]));
    let q = b.node_with("Gather", &[&t, &zero], &[], &[("axis", Attr::Int(3))]);
    let k = b.node("Slice", &[&t, &one, &two, &axis3], &[]);
    let k = b.node("Squeeze", &[&k, &axis3], &[]);
    let v = b.node_with("Gather", &[&t, &last], &[], &[("axis", Attr::Int(3))]);
    let v = b.node("Squeeze", &[&v, &axis3], &[]);
    let q = b.node_with("Transpose", &[&q], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
    let k = b.node_with("Transpose", &[&k], &[], &[("perm", Attr::Ints(vec![0, 2, 3, 1]))]);
    let v = b.node_with("Transpose", &[&v], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
    let out_shape = b.ints("out.shape", &[0, s, e as i64]);
    let ctx = attend(&mut b, &q, &k, &v, None, &out_shape);
    project_out(&mut b, &ctx, s, e);
    let model = b.build().unwrap();
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let heads: Vec<_> = analysis.prunable_groups().filter(|g| matches!(g.kind, oto_graph::ElementKind::Head { .. })).collect();
    assert_eq!(heads.len(), 1, "{}", analysis.table());
    assert_eq!(
        (heads[0].num_elements, heads[0].kind),
        (h as usize, oto_graph::ElementKind::Head { dim: 3 * d as usize }),
        "{}",
        analysis.table()
    );
    let inputs = x_batch(4, 16, |i| (i * 0.37).cos());
    check_model("BLOOM's per-head packed q, k, v", &model, &inputs, 2);
}

/// Two attention layers of T5 in miniature, both adding one position bias `[1, H, S, S]`
/// to their scores: T5's self-attention bias (an embedding of one column per head,
/// gathered by constant buckets) or, with `zeros`, its cross-attention bias (zeros of a
/// constant shape, plus a mask). Each layer reads its own kept heads of the bias (a
/// `Gather` before its `Add`), so each layer's heads are a group of their own (the table
/// stays whole, in no group), exact through construction. (Before, the bias tied head `h`
/// of both layers into one element.)
fn check_position_bias_shared_by_layers(zeros: bool) {
    use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
    let (s, h, d) = (4i64, 2i64, 4i64);
    let e = (h * d) as usize;
    let mut b = GraphBuilder::new("shared_bias");
    b.opset(17);
    let x = b.input_f32("x", &batch_dims(&[s, h * d]));
    let bias = if zeros {
        // `[1, H]` then the sequence length twice, read from the input's shape at run
        // time, as T5 computes it.
        let (one, two) = (b.ints("one", &[1]), b.ints("two", &[2]));
        let shape_x = b.node("Shape", &[&x], &[]);
        let seq = b.node("Slice", &[&shape_x, &one, &two], &[]);
        let heads = b.ints("bias_heads", &[1, h]);
        let shape = b.node_with("Concat", &[&heads, &seq, &seq], &[], &[("axis", Attr::Int(0))]);
        let zero = oto_onnx::Tensor::new(vec![1], oto_onnx::TensorData::F32(vec![0.0])).unwrap();
        let bias = b.node_with("ConstantOfShape", &[&shape], &[], &[("value", Attr::Tensor(zero))]);
        let mask = b.weight("mask", &[1, 1, 1, s as usize], |i| if i == 3 { -1e4 } else { 0.0 });
        b.node("Add", &[&bias, &mask], &[])
    } else {
        let table = b.weight("relative_attention_bias.weight", &[5, h as usize], |i| (i as f32 * 0.7).sin());
        let buckets = b.initializer(
            "buckets",
            oto_onnx::Tensor::new(
                vec![s as usize, s as usize],
                oto_onnx::TensorData::I64((0..s * s).map(|i| (i % 5 + i / 7) % 5).collect()),
            )
            .unwrap(),
        );
        let bias = b.node_with("Gather", &[&table, &buckets], &[], &[("axis", Attr::Int(0))]);
        let bias = b.node_with("Transpose", &[&bias], &[], &[("perm", Attr::Ints(vec![2, 0, 1]))]);
        let zero = b.ints("axes0", &[0]);
        b.node("Unsqueeze", &[&bias, &zero], &[])
    };
    let split = b.ints("split_shape", &[0, s, h, d]);
    let merge = b.ints("merge_shape", &[0, s, h * d]);
    let mut stream = x.clone();
    for layer in 0..2usize {
        let mut heads = Vec::new();
        for (j, p) in ["q", "k", "v"].iter().enumerate() {
            let w = b.weight(&format!("l{layer}.{p}.weight"), &[e, e], |i| ((i * 7 + layer * 3 + j) % 11) as f32 / 5.0 - 1.0);
            let t = b.node("MatMul", &[&stream, &w], &[]);
            let t = b.node("Reshape", &[&t, &split], &[]);
            heads.push(b.node_with("Transpose", &[&t], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]));
        }
        let kt = b.node_with("Transpose", &[&heads[1]], &[], &[("perm", Attr::Ints(vec![0, 1, 3, 2]))]);
        let ctx = attend(&mut b, &heads[0], &kt, &heads[2], Some(&bias), &merge);
        let wo = b.weight(&format!("l{layer}.o.weight"), &[e, e], |i| ((i * 3 + layer) % 13) as f32 / 6.0 - 1.0);
        let o = b.node("MatMul", &[&ctx, &wo], &[]);
        stream = b.node("Add", &[&stream, &o], &[]);
    }
    let y = b.node("Identity", &[&stream], &["y"]);
    b.output_f32(&y, &batch_dims(&[s, h * d]));
    let model = b.build().unwrap();
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let heads: Vec<_> = analysis.prunable_groups().filter(|g| matches!(g.kind, oto_graph::ElementKind::Head { .. })).collect();
    assert_eq!(heads.len(), 2, "{}", analysis.table());
    for layer in 0..2 {
        let mine = |init: &str| init.starts_with(&format!("l{layer}."));
        let g = heads.iter().find(|g| g.members.iter().any(|m| mine(&m.initializer))).unwrap();
        assert_eq!(g.num_elements, h as usize, "{}", analysis.table());
        for p in ["q", "k", "v", "o"] {
            let init = format!("l{layer}.{p}.weight");
            assert!(g.members.iter().any(|m| m.initializer == init), "{init} is not in {}: {:?}", g.id, g.members);
        }
        assert!(g.members.iter().all(|m| mine(&m.initializer)), "{}: {:?}", g.id, g.members);
        // The layer's Add reads the kept heads (axis 1) of the one bias.
        assert_eq!(g.reads.len(), 1, "{}: {:?}", g.id, g.reads);
        assert_eq!((g.reads[0].value.as_str(), g.reads[0].axis), (bias.as_str(), 1), "{:?}", g.reads);
        assert!(g.shape_constants.iter().all(|c| !c.location.to_string().contains("bias_heads")), "{:?}", g.shape_constants);
    }
    let ungrouped: Vec<&str> = analysis.ungrouped.iter().map(|w| w.initializer.as_str()).collect();
    let whole: &[&str] = if zeros { &["mask"] } else { &["relative_attention_bias.weight"] };
    assert_eq!(ungrouped, whole, "{}", analysis.table());
    let inputs = x_batch(4, 8, |i| (i * 0.29).sin());
    check_model(if zeros { "shared zero position bias" } else { "shared position bias" }, &model, &inputs, 2);
}

#[test]
fn position_bias_shared_by_layers() {
    check_position_bias_shared_by_layers(false);
}

/// T5's decoder cross-attention: no table, a zero bias whose head count is a constant.
#[test]
fn zero_position_bias_shared_by_layers() {
    check_position_bias_shared_by_layers(true);
}

/// timm's ViT attention (`qkv.reshape(B, N, 3, H, D).permute(2, 0, 3, 1, 4)` then
/// `unbind(0)`, exported as a Split of ones and Squeezes) and ModernBERT's (`view(B, S, 3,
/// H, D)`, `transpose(3, 1)`, one Gather per part): the packed projection becomes one
/// slice per part reshaped into heads, which computes what the file computes, and every
/// head is an element of a prunable group, exact through construction.
#[test]
fn packed_projection_taken_apart_by_heads() {
    use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
    let (s, h, d) = (4i64, 4i64, 4i64);
    let e = (h * d) as usize;
    for gathers in [false, true] {
        let mut b = GraphBuilder::new("packed_qkv");
        b.opset(17);
        let x = b.input_f32("x", &batch_dims(&[s, e as i64]));
        let qkv = b.weight("qkv.weight", &[e, 3 * e], |i| ((i * 7) % 11) as f32 / 5.0 - 1.0);
        let t = b.node("MatMul", &[&x, &qkv], &[]);
        let packed = b.ints("packed.shape", &[0, s, 3, h, d]);
        let t = b.node("Reshape", &[&t, &packed], &[]);
        let (q, k, v) = if gathers {
            // [B, H, 3, S, D], a Gather of each part on axis 2.
            let t = b.node_with("Transpose", &[&t], &[], &[("perm", Attr::Ints(vec![0, 3, 2, 1, 4]))]);
            let part = |b: &mut GraphBuilder, i: i64| {
                let index =
                    b.initializer(&format!("part{i}"), oto_onnx::Tensor { shape: vec![], data: oto_onnx::TensorData::I64(vec![i]) });
                b.node_with("Gather", &[&t, &index], &[], &[("axis", Attr::Int(2))])
            };
            (part(&mut b, 0), part(&mut b, 1), part(&mut b, 2))
        } else {
            // [3, B, H, S, D], split into ones on axis 0 and squeezed.
            let t = b.node_with("Transpose", &[&t], &[], &[("perm", Attr::Ints(vec![2, 0, 3, 1, 4]))]);
            let ones = b.ints("ones", &[1, 1, 1]);
            let parts: Vec<String> = (0..3).map(|i| format!("part{i}")).collect();
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            b.node_with("Split", &[&t, &ones], &refs, &[("axis", Attr::Int(0))]);
            let zero = b.ints("axis0", &[0]);
            let squeeze = |b: &mut GraphBuilder, p: &str| b.node("Squeeze", &[p, &zero], &[]);
            (squeeze(&mut b, "part0"), squeeze(&mut b, "part1"), squeeze(&mut b, "part2"))
        };
        let kt = b.node_with("Transpose", &[&k], &[], &[("perm", Attr::Ints(vec![0, 1, 3, 2]))]);
        let out_shape = b.ints("out.shape", &[0, s, e as i64]);
        let ctx = attend(&mut b, &q, &kt, &v, None, &out_shape);
        project_out(&mut b, &ctx, s, e);
        let original = b.build().unwrap().proto;
        let (model, summary) = oto_onnx::normalize::normalize(b.build().unwrap(), &Default::default()).unwrap();
        let name = if gathers { "ModernBERT's layout" } else { "timm's layout" };
        assert_eq!(summary.packed_projections, 1, "{name}: {summary}");
        let inputs = x_batch(4, 16, |i| (i * 0.37).sin());
        let (before, after) = (oto_testkit::run_ort(&original, &inputs), oto_testkit::run_ort(&model.proto, &inputs));
        assert_eq!(before, after, "{name}: the rewrite changed the outputs");
        let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
        let heads: Vec<_> = analysis.prunable_groups().filter(|g| matches!(g.kind, oto_graph::ElementKind::Head { .. })).collect();
        assert_eq!(heads.len(), 1, "{name}\n{}", analysis.table());
        assert_eq!(heads[0].num_elements, h as usize, "{name}\n{}", analysis.table());
        check_model(name, &model, &inputs, 2);
    }
}

/// LeViT's and TinyViT's attention biases: a learned table `[H, offsets]` read at constant
/// positions (`biases[:, idx]`, a Gather along axis 1) and added to the scores. Its rows
/// are cut with the heads (kept, not zeroed: a removed head's scores are its bias, its
/// values are zero), exact through construction.
#[test]
fn attention_bias_table_gathered_by_position() {
    use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
    let (s, h, d, offsets) = (4i64, 4i64, 4i64, 7usize);
    let e = (h * d) as usize;
    let mut b = GraphBuilder::new("gathered_bias");
    b.opset(17);
    let x = b.input_f32("x", &batch_dims(&[s, e as i64]));
    let heads = |b: &mut GraphBuilder, name: &str, k: usize| projected_heads(b, &x, name, k, (s, h, d));
    let (q, k, v) = (heads(&mut b, "q.weight", 0), heads(&mut b, "k.weight", 1), heads(&mut b, "v.weight", 2));
    let kt = b.node_with("Transpose", &[&k], &[], &[("perm", Attr::Ints(vec![0, 1, 3, 2]))]);
    let table = b.weight("biases", &[h as usize, offsets], |i| (i as f32 * 0.41).cos());
    let idx: Vec<i64> = (0..s * s).map(|p| ((p / s - p % s).abs() + p % 3) % offsets as i64).collect();
    let idx = b.initializer("bias_idxs", oto_onnx::Tensor { shape: vec![s as usize, s as usize], data: oto_onnx::TensorData::I64(idx) });
    let bias = b.node_with("Gather", &[&table, &idx], &[], &[("axis", Attr::Int(1))]);
    let out_shape = b.ints("out.shape", &[0, s, e as i64]);
    let ctx = attend(&mut b, &q, &kt, &v, Some(&bias), &out_shape);
    project_out(&mut b, &ctx, s, e);
    let model = oto_onnx::normalize::normalize(b.build().unwrap(), &Default::default()).unwrap().0;
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let g = analysis.prunable_groups().find(|g| matches!(g.kind, oto_graph::ElementKind::Head { .. }));
    let g = g.unwrap_or_else(|| panic!("no prunable head group\n{}", analysis.table()));
    assert_eq!(g.num_elements, h as usize, "{}", analysis.table());
    let rows = g.members.iter().find(|m| m.initializer == "biases").unwrap_or_else(|| panic!("{:?}", g.members));
    assert_eq!((rows.axis, rows.role), (0, oto_graph::Role::Aux));
    let inputs = x_batch(4, 16, |i| (i * 0.37).sin());
    check_model("attention biases gathered by position", &model, &inputs, 2);
}

/// A decoder exported with its cache on but without a past (`torch.onnx.export` of a
/// causal LM, Optimum's `decoder_model.onnx`) returns each layer's keys and values
/// `[B, H, S, D]` as graph outputs. Those outputs keep their width, with the zeros the
/// sparse model writes at removed heads, so the heads are cut; attention probabilities
/// returned as well are not zero at a removed head (its softmax is uniform), so they still
/// keep every head.
#[test]
fn present_keys_and_values_without_a_past() {
    use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
    let (s, h, d) = (4i64, 4i64, 4i64);
    let e = (h * d) as usize;
    for with_probs in [false, true] {
        let mut b = GraphBuilder::new("presents");
        b.opset(17);
        let x = b.input_f32("x", &batch_dims(&[s, e as i64]));
        let heads = |b: &mut GraphBuilder, name: &str, k: usize, out: &[&str]| {
            let w = b.weight(name, &[e, e], |i| ((i * 7 + k) % 11) as f32 / 5.0 - 1.0);
            let bias = b.weight(&format!("{name}.bias"), &[e], |i| (i as f32 * 0.29 + k as f32).sin());
            let t = b.node("MatMul", &[&x, &w], &[]);
            let t = b.node("Add", &[&t, &bias], &[]);
            into_heads(b, &t, &format!("{name}.shape"), (s, h, d), out)
        };
        let q = heads(&mut b, "q", 0, &[]);
        let k = heads(&mut b, "k", 1, &["present.key"]);
        let v = heads(&mut b, "v", 2, &["present.value"]);
        let kt = b.node_with("Transpose", &[&k], &[], &[("perm", Attr::Ints(vec![0, 1, 3, 2]))]);
        let out_shape = b.ints("out.shape", &[0, s, e as i64]);
        let ctx = if with_probs {
            let scores = b.node("MatMul", &[&q, &kt], &[]);
            let probs = b.node_with("Softmax", &[&scores], &["probs"], &[("axis", Attr::Int(-1))]);
            b.output_f32(&probs, &batch_dims(&[h, s, s]));
            let ctx = b.node("MatMul", &[&probs, &v], &[]);
            let ctx = b.node_with("Transpose", &[&ctx], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
            b.node("Reshape", &[&ctx, &out_shape], &[])
        } else {
            attend(&mut b, &q, &kt, &v, None, &out_shape)
        };
        project_out(&mut b, &ctx, s, e);
        b.output_f32(&k, &batch_dims(&[h, s, d]));
        b.output_f32(&v, &batch_dims(&[h, s, d]));
        let model = oto_onnx::normalize::normalize(b.build().unwrap(), &Default::default()).unwrap().0;
        let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
        let g = first_head_group(&analysis);
        if with_probs {
            assert!(!g.prunable, "{}", analysis.table());
            assert!(g.reasons.iter().any(|r| r.contains("'probs'")), "{:?}", g.reasons);
            continue;
        }
        assert!(g.prunable, "{}", analysis.table());
        assert_eq!(g.num_elements, h as usize, "{}", analysis.table());
        let mut caches: Vec<(&str, usize)> = g.caches.iter().map(|c| (c.value.as_str(), c.axis)).collect();
        caches.sort();
        assert_eq!(caches, [("present.key", 1), ("present.value", 1)]);
        let inputs = x_batch(4, 16, |i| (i * 0.37).sin());
        check_model("presents without a past", &model, &inputs, 2);
    }
}

/// A cache carried through `Cast`s, as a decoder converted to float16 with its inputs and
/// outputs kept in float32 writes it (onnxruntime's `float16.convert_float_to_float16`
/// with `keep_io_types`): the past is cast before the `Concat`, the present after it, and
/// the attention reads either the Concat's output or the cast graph output. The heads
/// are cut, the caches keep their width, and the compact model computes what the zeroed
/// one does. (Here the inside is float32 and the caches' inputs and outputs float64, so
/// that the layers run in float32; the rules read the Casts, not their types. A real
/// float16 file, the Optimum zoo's `llama_past` converted so, gave 5 prunable groups
/// instead of 3 and passed `oto check`.)
#[test]
fn cache_through_casts() {
    use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
    use oto_onnx::DType;
    let (s, h, d, past) = (4i64, 4i64, 4i64, 3i64);
    let e = (h * d) as usize;
    let mut b = GraphBuilder::new("cast caches");
    b.opset(17);
    let x = b.input_f32("x", &batch_dims(&[s, e as i64]));
    let heads = |b: &mut GraphBuilder, name: &str, k: usize| projected_heads(b, &x, name, k, (s, h, d));
    let q = heads(&mut b, "q", 0);
    let mut presents = Vec::new();
    for (name, k) in [("key", 1), ("value", 2)] {
        let new = heads(&mut b, &name[..1], k);
        let past_input = b.input(&format!("past.{name}"), DType::F64, &batch_dims(&[h, past, d]));
        let cast_past = b.node_with("Cast", &[&past_input], &[], &[("to", Attr::Int(1))]);
        let cache = b.node_with("Concat", &[&cast_past, &new], &[], &[("axis", Attr::Int(2))]);
        let present = format!("present.{name}");
        b.node_with("Cast", &[&cache], &[&present], &[("to", Attr::Int(11))]);
        b.output(&present, DType::F64, &batch_dims(&[h, past + s, d]));
        presents.push((cache, present));
    }
    // The keys are read as the graph output (cast back), the values as the Concat's output.
    let keys = b.node_with("Cast", &[&presents[0].1], &[], &[("to", Attr::Int(1))]);
    let kt = b.node_with("Transpose", &[&keys], &[], &[("perm", Attr::Ints(vec![0, 1, 3, 2]))]);
    let out_shape = b.ints("out.shape", &[0, s, e as i64]);
    let ctx = attend(&mut b, &q, &kt, &presents[1].0, None, &out_shape);
    project_out(&mut b, &ctx, s, e);
    let model = oto_onnx::normalize::normalize(b.build().unwrap(), &Default::default()).unwrap().0;
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let g = first_head_group(&analysis);
    assert!(g.prunable, "{}", analysis.table());
    assert_eq!(g.num_elements, h as usize, "{}", analysis.table());
    let mut caches: Vec<(&str, usize)> = g.caches.iter().map(|c| (c.value.as_str(), c.axis)).collect();
    caches.sort();
    let mut expected: Vec<(&str, usize)> = presents.iter().map(|(cache, _)| (cache.as_str(), 1)).collect();
    expected.sort();
    assert_eq!(caches, expected);
    let mut inputs = x_batch(s as usize, e, |i| (i * 0.37).sin());
    for (name, phase) in [("past.key", 0.5), ("past.value", 1.5)] {
        let n = 2 * (h * past * d) as usize;
        let data = (0..n).map(|i| (i as f64 * 0.23 + phase).cos()).collect();
        let shape = vec![2, h as usize, past as usize, d as usize];
        inputs.push((name.to_string(), oto_onnx::Tensor { shape, data: oto_onnx::TensorData::F64(data) }));
    }
    check_model("cache through casts", &model, &inputs, 2);
}

/// Heads of different widths joined head by head: LeViT's subsampled attention, whose
/// queries come from a projection of their own (`[H, kd]` a head) and whose keys and values
/// are split from one projection (`[H, kd + vd]` a head, split into `kd` and `vd`). Head `h`
/// of the queries is head `h` of the keys and values: one group of `H` heads over both
/// projections and the output projection, cut exactly.
#[test]
fn heads_of_different_widths() {
    use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
    let (s, h, kd, vd, e) = (4i64, 4i64, 2i64, 4i64, 8usize);
    let mut b = GraphBuilder::new("subsampled attention");
    b.opset(17);
    let x = b.input_f32("x", &batch_dims(&[s, e as i64]));
    let wq = b.weight("q.weight", &[e, (h * kd) as usize], |i| ((i * 7 + 1) % 11) as f32 / 5.0 - 1.0);
    let q = b.node("MatMul", &[&x, &wq], &[]);
    let q = into_heads(&mut b, &q, "q.shape", (s, h, kd), &[]);
    let wkv = b.weight("kv.weight", &[e, (h * (kd + vd)) as usize], |i| ((i * 5 + 2) % 13) as f32 / 6.0 - 1.0);
    let kv = b.node("MatMul", &[&x, &wkv], &[]);
    let kv = into_heads(&mut b, &kv, "kv.shape", (s, h, kd + vd), &[]);
    let sizes = b.ints("kv.split", &[kd, vd]);
    b.node_with("Split", &[&kv, &sizes], &["k", "v"], &[("axis", Attr::Int(3))]);
    let kt = b.node_with("Transpose", &["k"], &[], &[("perm", Attr::Ints(vec![0, 1, 3, 2]))]);
    let merge = b.ints("out.shape", &[0, s, h * vd]);
    let ctx = attend(&mut b, &q, &kt, "v", None, &merge);
    let wo = b.weight("o.weight", &[(h * vd) as usize, e], |i| ((i * 3 + 5) % 7) as f32 / 3.0 - 1.0);
    let y = b.node("MatMul", &[&ctx, &wo], &["y"]);
    b.output_f32(&y, &batch_dims(&[s, e as i64]));
    let model = oto_onnx::normalize::normalize(b.build().unwrap(), &Default::default()).unwrap().0;
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let g = first_head_group(&analysis);
    assert!(g.prunable, "{}", analysis.table());
    assert_eq!(g.num_elements, h as usize, "{}", analysis.table());
    let mut weights: Vec<(&str, usize)> = g.members.iter().map(|m| (m.initializer.as_str(), m.axis)).collect();
    weights.sort();
    weights.dedup();
    assert_eq!(weights, [("kv.weight", 1), ("o.weight", 0), ("q.weight", 1)], "{g:?}");
    let inputs = x_batch(s as usize, e, |i| (i * 0.41).sin());
    check_model("heads of different widths", &model, &inputs, 2);
}

/// MPT's ALiBi: one buffer `[H, 1, max_len]` of per-head position biases, sliced to the
/// sequence along its last axis and added to the scores of every layer. Its rows are cut
/// with the heads (kept, not zeroed, as a learned bias table is); the layers share it, so
/// their heads are one group. A slice of it read by anything but an `Add` keeps it whole,
/// and the heads with it.
#[test]
fn alibi_buffer_sliced_to_the_sequence() {
    use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
    let (s, h, d, max_len) = (4i64, 4i64, 4i64, 9usize);
    let e = (h * d) as usize;
    for read_elsewhere in [false, true] {
        let mut b = GraphBuilder::new("alibi");
        b.opset(17);
        let mut x = b.input_f32("x", &batch_dims(&[s, e as i64]));
        let table = b.weight("alibi", &[h as usize, 1, max_len], |i| -((i % max_len) as f32) * (1.0 + (i / max_len) as f32) / 8.0);
        for layer in 0..2 {
            let heads = |b: &mut GraphBuilder, name: &str, k: usize, x: &str| {
                let w = b.weight(&format!("{name}{layer}.weight"), &[e, e], |i| ((i * 7 + k + layer) % 11) as f32 / 5.0 - 1.0);
                let t = b.node("MatMul", &[x, &w], &[]);
                into_heads(b, &t, &format!("{name}{layer}.shape"), (s, h, d), &[])
            };
            let (q, k, v) = (heads(&mut b, "q", 0, &x), heads(&mut b, "k", 1, &x), heads(&mut b, "v", 2, &x));
            let kt = b.node_with("Transpose", &[&k], &[], &[("perm", Attr::Ints(vec![0, 1, 3, 2]))]);
            let (starts, ends, axes) = (
                b.ints(&format!("starts{layer}"), &[max_len as i64 - s]),
                b.ints(&format!("ends{layer}"), &[max_len as i64]),
                b.ints(&format!("axes{layer}"), &[2]),
            );
            let bias = b.node("Slice", &[&table, &starts, &ends, &axes], &[]);
            if read_elsewhere && layer == 1 {
                let scaled = b.node("Mul", &[&bias, &bias], &["scaled"]);
                b.output_f32(&scaled, &[oto_onnx::Dim::Known(h), oto_onnx::Dim::Known(1), oto_onnx::Dim::Known(s)]);
            }
            let out_shape = b.ints(&format!("out{layer}.shape"), &[0, s, e as i64]);
            let ctx = attend(&mut b, &q, &kt, &v, Some(&bias), &out_shape);
            let o = b.weight(&format!("o{layer}.weight"), &[e, e], |i| ((i * 5 + 3 + layer) % 13) as f32 / 6.0 - 1.0);
            let y = b.node("MatMul", &[&ctx, &o], &[]);
            x = b.node("Add", &[&x, &y], &[]);
        }
        let y = b.node("Identity", &[&x], &["y"]);
        b.output_f32(&y, &batch_dims(&[s, e as i64]));
        let model = oto_onnx::normalize::normalize(b.build().unwrap(), &Default::default()).unwrap().0;
        let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
        let heads: Vec<_> = analysis.groups.iter().filter(|g| matches!(g.kind, oto_graph::ElementKind::Head { .. })).collect();
        assert_eq!(heads.len(), 1, "the layers share the buffer\n{}", analysis.table());
        let g = heads[0];
        if read_elsewhere {
            assert!(!g.prunable && g.reasons.iter().any(|r| r.contains("'alibi'")), "{:?}", g.reasons);
            continue;
        }
        assert!(g.prunable && g.num_elements == h as usize, "{}", analysis.table());
        let rows = g.members.iter().find(|m| m.initializer == "alibi").unwrap_or_else(|| panic!("{:?}", g.members));
        assert_eq!((rows.axis, rows.role), (0, oto_graph::Role::Aux));
        let inputs = x_batch(4, 16, |i| (i * 0.37).sin());
        check_model("ALiBi buffer sliced to the sequence", &model, &inputs, 2);
    }
}

/// Whisper's decoder before transformers 4.37: the position table `[max_len, E]` sliced to
/// the sequence (`weight[past : past + seq]`) and added to the embedded tokens, then a layer
/// norm. The table's columns are zeroed with the channels (producers), so the sum stays
/// zero at a removed channel and the width, normalized, is one prunable group (before, the
/// table was cut but not zeroed, and the layer norm blocked it); exact through construction.
#[test]
fn position_table_sliced_to_the_sequence_and_added_to_channels() {
    use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
    let (s, e, max_len) = (4i64, 8usize, 9usize);
    let mut b = GraphBuilder::new("sliced_positions");
    b.opset(17);
    let x = b.input_f32("x", &batch_dims(&[s, e as i64]));
    let w = b.weight("embed.weight", &[e, e], |i| ((i * 7) % 11) as f32 / 5.0 - 1.0);
    let tokens = b.node("MatMul", &[&x, &w], &[]);
    let table = b.weight("positions.weight", &[max_len, e], |i| ((i * 3) % 7) as f32 / 4.0 - 0.7);
    // `[0 : seq]` along the positions, seq read from the input's shape.
    let (one, two, zero, axes) = (b.ints("one", &[1]), b.ints("two", &[2]), b.ints("zero", &[0]), b.ints("axes", &[0]));
    let shape = b.node("Shape", &[&x], &[]);
    let seq = b.node("Slice", &[&shape, &one, &two], &[]);
    let positions = b.node("Slice", &[&table, &zero, &seq, &axes], &[]);
    let h = b.node("Add", &[&tokens, &positions], &[]);
    let (scale, bias) = (b.weight("ln.weight", &[e], |i| 1.0 + i as f32 / 10.0), b.weight("ln.bias", &[e], |i| i as f32 / 20.0));
    let h = b.node_with("LayerNormalization", &[&h, &scale, &bias], &[], &[("axis", Attr::Int(-1))]);
    let out = b.weight("out.weight", &[e, 3], |i| ((i * 5) % 13) as f32 / 6.0 - 1.0);
    let y = b.node("MatMul", &[&h, &out], &["y"]);
    b.output_f32(&y, &batch_dims(&[s, 3]));
    let model = oto_onnx::normalize::normalize(b.build().unwrap(), &Default::default()).unwrap().0;
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let g = analysis.prunable_groups().find(|g| g.members.iter().any(|m| m.initializer == "embed.weight"));
    let g = g.unwrap_or_else(|| panic!("the width is not prunable\n{}", analysis.table()));
    assert_eq!(g.num_elements, e, "{}", analysis.table());
    let columns = g.members.iter().find(|m| m.initializer == "positions.weight").unwrap_or_else(|| panic!("{:?}", g.members));
    assert_eq!((columns.axis, columns.role), (1, oto_graph::Role::Producer));
    let inputs = x_batch(4, e, |i| (i * 0.41).sin());
    check_model("position table sliced to the sequence", &model, &inputs, 2);
}

/// Falcon's multi-query layout: one fused projection `[H + 2, D]`, the query heads
/// `fused[..., :-2, :]` and the one key and value head `fused[..., [-2], :]` and
/// `[..., [-1], :]`, all counted from the end. The query heads are a group (the fused
/// reshape's `H + 2` drops with them); the key and value, after them, stay.
#[test]
fn multi_query_heads_picked_from_the_end() {
    use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
    let (s, h, d) = (4i64, 4i64, 4i64);
    let e = (h * d) as usize;
    let mut b = GraphBuilder::new("falcon_mqa");
    b.opset(17);
    let x = b.input_f32("x", &batch_dims(&[s, e as i64]));
    let w = b.weight("qkv.weight", &[e, (h as usize + 2) * d as usize], |i| ((i * 7) % 11) as f32 / 5.0 - 1.0);
    let t = b.node("MatMul", &[&x, &w], &[]);
    let fused = b.ints("fused.shape", &[0, s, h + 2, d]);
    let t = b.node("Reshape", &[&t, &fused], &[]);
    let (starts, ends, axes) = (b.ints("q.starts", &[0]), b.ints("q.ends", &[-2]), b.ints("q.axes", &[2]));
    let q = b.node("Slice", &[&t, &starts, &ends, &axes], &[]);
    let pick = |b: &mut GraphBuilder, name: &str, i: i64| {
        let index = b.ints(name, &[i]);
        let p = b.node_with("Gather", &[&t, &index], &[], &[("axis", Attr::Int(2))]);
        b.node_with("Transpose", &[&p], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))])
    };
    let (k, v) = (pick(&mut b, "k.index", -2), pick(&mut b, "v.index", -1));
    let q = b.node_with("Transpose", &[&q], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
    let kt = b.node_with("Transpose", &[&k], &[], &[("perm", Attr::Ints(vec![0, 1, 3, 2]))]);
    let out_shape = b.ints("out.shape", &[0, s, e as i64]);
    let ctx = attend(&mut b, &q, &kt, &v, None, &out_shape);
    project_out(&mut b, &ctx, s, e);
    let model = oto_onnx::normalize::normalize(b.build().unwrap(), &Default::default()).unwrap().0;
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let g = analysis.prunable_groups().find(|g| matches!(g.kind, oto_graph::ElementKind::Head { .. }));
    let g = g.unwrap_or_else(|| panic!("no prunable head group\n{}", analysis.table()));
    assert_eq!(g.num_elements, h as usize, "the query heads\n{}", analysis.table());
    let fused_rows = g.members.iter().find(|m| m.initializer == "qkv.weight").unwrap_or_else(|| panic!("{:?}", g.members));
    assert!((0..h as usize).flat_map(|i| fused_rows.map.indices(i)).all(|c| c < e), "only query columns: {:?}", fused_rows.map);
    let inputs = x_batch(4, 16, |i| (i * 0.37).sin());
    check_model("Falcon's multi-query heads", &model, &inputs, 2);
}

/// BLOOM's attention: heads merged into the batch (`[B * H, S, D]`), the ALiBi bias built
/// per batch and head (the slopes `[H, 1]` times the positions `[B, 1, S]`, reshaped to
/// `[B * H, 1, S]`) and added to the scores, and the heads split back out by a target whose
/// batch is computed as `size(0) / H`. The slopes are cut with the heads, and the divisor
/// `H` drops with them (left as it was, the batch would come out wrong); construction is
/// exact.
#[test]
fn alibi_built_per_batch_and_head() {
    use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
    let (s, h, d) = (4i64, 4i64, 4i64);
    let e = (h * d) as usize;
    let mut b = GraphBuilder::new("bloom_alibi");
    b.opset(17);
    let x = b.input_f32("x", &batch_dims(&[s, e as i64]));
    let merged = b.ints("merged.shape", &[-1, s, d]);
    let heads = |b: &mut GraphBuilder, name: &str, k: usize| {
        let t = projected_heads(b, &x, name, k, (s, h, d));
        b.node("Reshape", &[&t, &merged], &[])
    };
    let (q, k, v) = (heads(&mut b, "q.weight", 0), heads(&mut b, "k.weight", 1), heads(&mut b, "v.weight", 2));
    // Positions from the input (one per token, the same for every head): [B, 1, S].
    let mean = b.node_with("ReduceMean", &[&x], &[], &[("axes", Attr::Ints(vec![2])), ("keepdims", Attr::Int(1))]);
    let positions = b.node_with("Transpose", &[&mean], &[], &[("perm", Attr::Ints(vec![0, 2, 1]))]);
    let slopes = b.weight("slopes", &[h as usize, 1], |i| 0.5f32.powi(i as i32 + 1));
    let alibi = b.node("Mul", &[&slopes, &positions], &[]);
    let per_head = b.ints("alibi.shape", &[-1, 1, s]);
    let alibi = b.node("Reshape", &[&alibi, &per_head], &[]);
    let kt = b.node_with("Transpose", &[&k], &[], &[("perm", Attr::Ints(vec![0, 2, 1]))]);
    let scores = b.node("MatMul", &[&q, &kt], &[]);
    let scores = b.node("Add", &[&scores, &alibi], &[]);
    let probs = b.node_with("Softmax", &[&scores], &[], &[("axis", Attr::Int(-1))]);
    let ctx = b.node("MatMul", &[&probs, &v], &[]);
    // batch = size(0) / H, then [batch, H, S, D].
    let size = b.node("Shape", &[&ctx], &[]);
    let zero = b.initializer("zero", oto_onnx::Tensor { shape: vec![], data: oto_onnx::TensorData::I64(vec![0]) });
    let rows = b.node_with("Gather", &[&size, &zero], &[], &[("axis", Attr::Int(0))]);
    let num_heads = b.initializer("num_heads", oto_onnx::Tensor { shape: vec![], data: oto_onnx::TensorData::I64(vec![h]) });
    let batch = b.node("Div", &[&rows, &num_heads], &[]);
    let axis0 = b.ints("axis0", &[0]);
    let batch = b.node("Unsqueeze", &[&batch, &axis0], &[]);
    let rest = b.ints("split.rest", &[h, s, d]);
    let split = b.node_with("Concat", &[&batch, &rest], &[], &[("axis", Attr::Int(0))]);
    let ctx = b.node("Reshape", &[&ctx, &split], &[]);
    let ctx = b.node_with("Transpose", &[&ctx], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
    let out_shape = b.ints("out.shape", &[0, s, e as i64]);
    let ctx = b.node("Reshape", &[&ctx, &out_shape], &[]);
    project_out(&mut b, &ctx, s, e);
    let model = oto_onnx::normalize::normalize(b.build().unwrap(), &Default::default()).unwrap().0;
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let g = analysis.prunable_groups().find(|g| matches!(g.kind, oto_graph::ElementKind::Head { .. }));
    let g = g.unwrap_or_else(|| panic!("no prunable head group\n{}", analysis.table()));
    assert_eq!(g.num_elements, h as usize, "{}", analysis.table());
    let rows = g.members.iter().find(|m| m.initializer == "slopes").unwrap_or_else(|| panic!("{:?}", g.members));
    assert_eq!((rows.axis, rows.role), (0, oto_graph::Role::Aux));
    assert!(g.shape_constants.iter().any(|c| format!("{:?}", c.location).contains("num_heads")), "{:?}", g.shape_constants);
    let inputs = x_batch(4, 16, |i| (i * 0.37).sin());
    check_model("BLOOM's ALiBi", &model, &inputs, 2);
}
