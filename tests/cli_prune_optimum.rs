//! `oto prune` by distillation and `oto check` on Hugging Face Optimum exports (graphs/optimum_zoo):
//! unlabeled token data, a short job, a smaller compact model that verifies and keeps
//! the file's input and output names.

mod common;
use common::*;
use oto_onnx::npz::{write_npz, NpzCompression};
use oto_onnx::{Model, Tensor, TensorData};
use oto_testkit::{optimum_zoo_dir, SplitMix64};
use std::path::Path;

/// 64 random token sequences of 8 tokens with an attention mask (the last tokens of some
/// sequences masked), and whatever other integer inputs the model takes (token types 0,
/// positions 0..8), named like the graph inputs; no labels, no past for a key/value cache.
fn unlabeled_tokens(model: &Model, vocab: u64, path: &Path) {
    let (n, seq) = (64usize, 8usize);
    let mut rng = SplitMix64::new(7);
    // A merged decoder trains its first pass: the inputs of that branch.
    let first_pass = oto_onnx::branches::specialize(model).unwrap();
    let model = first_pass.as_ref().unwrap_or(model);
    let graph = oto_onnx::Graph::new(model).unwrap();
    let mut arrays = Vec::new();
    let caches = graph.cache_inputs();
    for input in graph.real_inputs() {
        let name = input.name.clone().unwrap();
        if caches.contains_key(&name) {
            continue; // a key/value cache's past: the job feeds it empty
        }
        let data: Vec<i64> = match name.as_str() {
            "input_ids" => (0..n * seq).map(|_| rng.below(vocab) as i64).collect(),
            "attention_mask" => (0..n)
                .flat_map(|_| {
                    let len = 4 + rng.below(5) as usize;
                    (0..seq).map(move |t| i64::from(t < len))
                })
                .collect(),
            "position_ids" => (0..n).flat_map(|_| 0..seq as i64).collect(),
            "token_type_ids" => vec![0; n * seq],
            other => panic!("unexpected input {other}"),
        };
        arrays.push((name, Tensor { shape: vec![n, seq], data: TensorData::I64(data) }));
    }
    let refs: Vec<(&str, &Tensor)> = arrays.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write_npz(path, &refs, NpzCompression::Stored).unwrap();
}

fn io_names(model: &Model) -> (Vec<String>, Vec<String>) {
    let graph = oto_onnx::Graph::new(model).unwrap();
    let inputs = graph.real_inputs().filter_map(|v| v.name.clone()).collect();
    let outputs = model.proto.graph.as_ref().unwrap().output.iter().filter_map(|v| v.name.clone()).collect();
    (inputs, outputs)
}

fn prune_by_distillation(name: &str) {
    prune_by_distillation_with(name, &[]);
}

/// The arguments of a short `oto prune` by distillation of `file` on `data` into `out_dir`
/// at group sparsity `sparsity` (10 steps of AdamW, batch 8, 2 threads, quiet).
fn distill_args<'a>(file: &'a Path, data: &'a Path, out_dir: &'a Path, sparsity: &'a str) -> Vec<&'a str> {
    vec![
        "prune",
        "--model",
        s(file),
        "--data",
        s(data),
        "--target-sparsity",
        sparsity,
        "--steps",
        "10",
        "--batch-size",
        "8",
        "--optimizer",
        "adamw",
        "--lr",
        "1e-3",
        "--threads",
        "2",
        "--device",
        "cpu",
        "--out",
        s(out_dir),
        "-q",
    ]
}

/// onnxruntime computes the same outputs (within 1e-4 of their scale) for the sparse and
/// the compact model on `inputs`; `ctx` names the case in failures.
fn assert_same_in_ort(sparse: &Model, compact: &Model, inputs: &[(String, Tensor)], ctx: &str) {
    let (a, b) = (oto_testkit::run_ort(&sparse.proto, inputs), oto_testkit::run_ort(&compact.proto, inputs));
    assert_eq!(a.len(), b.len(), "{ctx}");
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb, "{ctx}");
        assert_eq!(va.len(), vb.len(), "{ctx}: {na}");
        let scale = va.iter().fold(1f64, |m, x| m.max(x.abs()));
        let diff = va.iter().zip(vb).fold(0f64, |m, (x, y)| m.max((x - y).abs()));
        assert!(diff <= 1e-4 * scale, "{ctx}: {na}: max |sparse - compact| = {diff}");
    }
}

/// `oto prune` by distillation with `extra` arguments; returns the original model (as
/// loaded) and the compact one.
fn prune_by_distillation_with(name: &str, extra: &[&str]) -> (Model, Model) {
    let dir = tempfile::tempdir().unwrap();
    let file = optimum_zoo_dir().join(name).join("model.onnx");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(optimum_zoo_dir().join(name).join("config.json")).unwrap()).unwrap();
    let original = oto_onnx::normalize::load(&file).unwrap().0;
    let data = dir.path().join("tokens.npz");
    unlabeled_tokens(&original, config["vocab_size"].as_u64().unwrap(), &data);
    let out_dir = dir.path().join("out");
    let mut args = distill_args(&file, &data, &out_dir, "0.3");
    args.extend_from_slice(extra);
    let out = oto(&args);
    assert_eq!(out.status.code(), Some(0), "{name}: {}\n{}", text(&out.stdout), text(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["job"]["loss"]["kind"], "distill", "{name}");
    assert_eq!(report["verification"]["passed"], true, "{name}: {}", report["verification"]);
    let (before, after) = (report["params"]["before"].as_u64().unwrap(), report["params"]["after"].as_u64().unwrap());
    assert!(after < before, "{name}: parameters {before} -> {after}");
    let compact = Model::load(out_dir.join("model.onnx")).unwrap();
    let compact_params = oto_onnx::cost::parameter_count(&oto_onnx::Graph::new(&compact).unwrap()).parameters;
    let original_params = oto_onnx::cost::parameter_count(&oto_onnx::Graph::new(&original).unwrap()).parameters;
    assert!(compact_params < original_params, "{name}: compact model has {compact_params} of {original_params} parameters");
    assert_eq!(io_names(&compact), io_names(&original), "{name}: input/output names changed");
    (original, compact)
}

#[test]
fn prune_optimum_bert_by_distillation() {
    let _job = one_job_at_a_time();
    prune_by_distillation("bert");
}

#[test]
fn prune_optimum_llama_gqa_by_distillation() {
    let _job = one_job_at_a_time();
    prune_by_distillation("llama_gqa");
}

/// Multi-query attention (one K/V head read by every query head: Gemma-2B's layout by
/// repeat_kv, and GPT-BigCode's fused `[q | k | v]` projection): with every group but the
/// heads kept, the job prunes query heads, each with its Q projection columns and its
/// output projection rows (zeroed with it), and the compact model verifies.
#[test]
fn prune_optimum_multi_query_heads_by_distillation() {
    let _job = one_job_at_a_time();
    for name in ["llama_mqa", "gpt_bigcode"] {
        let model = oto_onnx::normalize::load(optimum_zoo_dir().join(name).join("model.onnx")).unwrap().0;
        let analysis = oto_graph::analyze(&model, &Default::default()).unwrap();
        let mut keep = Vec::new();
        let mut heads = Vec::new();
        for g in analysis.prunable_groups() {
            let first = g.members.iter().find(|m| m.role == oto_graph::Role::Producer).unwrap();
            if let oto_graph::ElementKind::Head { dim } = g.kind {
                heads.push((first.initializer.clone(), first.axis, dim, g.num_elements));
            } else {
                keep.extend(["--unprunable".to_string(), first.initializer.clone()]);
            }
        }
        assert_eq!(heads.len(), 2, "{name}: one head group per layer\n{}", analysis.table());
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        let (original, compact) = prune_by_distillation_with(name, &keep);
        // Whole heads go from the Q projection (of 4 heads of 32).
        let width = |m: &Model, init: &str, axis: usize| {
            let g = m.proto.graph.as_ref().unwrap();
            g.initializer.iter().find(|t| t.name.as_deref() == Some(init)).map(|t| t.dims[axis])
        };
        let mut removed = 0;
        for (init, axis, dim, n) in &heads {
            let before = width(&original, init, *axis).unwrap();
            let after = width(&compact, init, *axis).unwrap();
            assert_eq!((before - after) % *dim as i64, 0, "{name} {init}: {before} -> {after}");
            assert!(after >= *dim as i64, "{name} {init}: every head removed");
            removed += (before - after) / *dim as i64;
            assert_eq!(*n, 4, "{name} {init}");
        }
        assert!(removed > 0, "{name}: no head removed");
    }
}

/// The declared shape of every graph input and output, by name (symbols as written).
fn io_shapes(model: &Model) -> Vec<(String, Vec<String>)> {
    use oto_onnx::proto::{tensor_shape_proto::dimension::Value, type_proto};
    let g = model.proto.graph.as_ref().unwrap();
    g.input
        .iter()
        .chain(&g.output)
        .map(|v| {
            let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else { panic!("{v:?}") };
            let dims = t.shape.as_ref().unwrap().dim.iter().map(|d| match &d.value {
                Some(Value::DimValue(n)) => n.to_string(),
                Some(Value::DimParam(p)) => p.clone(),
                None => "?".into(),
            });
            (v.name.clone().unwrap(), dims.collect())
        })
        .collect()
}

/// Optimum's default export of a causal LM (`-with-past`: `past_key_values.N.*` inputs,
/// `present.N.*` outputs) pruned from token data without any past (the job feeds the
/// caches' pasts empty): K/V heads go (each layer's other groups kept), yet the compact
/// model keeps the file's interface, every input and output with its declared shape, so
/// a runtime sizing the caches from config.json still runs it; and on the reference
/// inputs, whose past is not zero, it computes what the sparse model computes, caches
/// included.
#[test]
fn prune_optimum_decoder_with_past_keeps_its_cache_interface() {
    let _job = one_job_at_a_time();
    let name = "llama_past";
    let dir = tempfile::tempdir().unwrap();
    let file = optimum_zoo_dir().join(name).join("model.onnx");
    let original = oto_onnx::normalize::load(&file).unwrap().0;
    let analysis = oto_graph::analyze(&original, &Default::default()).unwrap();
    let mut args: Vec<String> = vec!["prune".to_string()];
    let mut o_proj = Vec::new();
    for g in analysis.prunable_groups() {
        let first = g.members.iter().find(|m| m.role == oto_graph::Role::Producer).unwrap();
        if matches!(g.kind, oto_graph::ElementKind::Head { .. }) {
            assert_eq!(g.caches.len(), 2, "{}", g.id);
            let rows = g.members.iter().find(|m| m.axis == 0 && m.role == oto_graph::Role::Producer).unwrap();
            o_proj.push(rows.initializer.clone());
        } else {
            args.extend(["--unprunable".to_string(), first.initializer.clone()]);
        }
    }
    assert_eq!(o_proj.len(), 2, "one head group per layer\n{}", analysis.table());
    let data = dir.path().join("tokens.npz");
    unlabeled_tokens(&original, 1000, &data);
    let out_dir = dir.path().join("out");
    for a in ["--model", s(&file), "--data", s(&data), "--target-sparsity", "0.5", "--steps", "10", "--batch-size", "8"] {
        args.push(a.to_string());
    }
    for a in ["--optimizer", "adamw", "--lr", "1e-3", "--threads", "2", "--device", "cpu", "--save-sparse", "--out", s(&out_dir), "-q"] {
        args.push(a.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = oto(&args);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let compact = Model::load(out_dir.join("model.onnx")).unwrap();
    let sparse = Model::load(out_dir.join("model.sparse.onnx")).unwrap();
    let rows = |m: &Model, init: &str| {
        let g = m.proto.graph.as_ref().unwrap();
        g.initializer.iter().find(|t| t.name.as_deref() == Some(init)).map(|t| t.dims[0]).unwrap()
    };
    let removed: i64 = o_proj.iter().map(|w| rows(&original, w) - rows(&compact, w)).sum();
    assert!(removed > 0, "no head removed");
    assert_eq!(io_shapes(&compact), io_shapes(&Model::load(&file).unwrap()), "the cache interface changed");
    let inputs: Vec<(String, Tensor)> = oto_onnx::npz::read_npz(optimum_zoo_dir().join(name).join("inputs.npz")).unwrap();
    let past = inputs.iter().find(|(n, _)| n == "past_key_values.0.key").unwrap();
    assert!(past.1.shape[2] > 0 && past.1.to_f64_vec().iter().any(|&x| x != 0.0), "the reference past is empty");
    assert_same_in_ort(&sparse, &compact, &inputs, name);
}

/// A merged decoder (optimum's older layout: one `If` on `use_cache_branch` holding the
/// decoder with and without its cache, graphs/optimum_zoo.py's `export_merged`), pruned
/// from token data (its first pass): heads, FFN neurons and the width go in both branches
/// at once, and the compact file is a merged decoder again, with the same inputs and
/// outputs, computing what the sparse one computes on either branch's reference inputs
/// (the cache branch's past not zero).
#[test]
fn prune_optimum_merged_decoder_keeps_both_branches() {
    let _job = one_job_at_a_time();
    let name = "gpt2_merged";
    let dir = tempfile::tempdir().unwrap();
    let file = optimum_zoo_dir().join(name).join("model.onnx");
    let original = oto_onnx::normalize::load(&file).unwrap().0;
    let analysis = oto_graph::analyze(&original, &Default::default()).unwrap();
    let heads = analysis.prunable_groups().filter(|g| matches!(g.kind, oto_graph::ElementKind::Head { .. })).count();
    assert_eq!(heads, 2, "a head group per layer\n{}", analysis.table());
    let data = dir.path().join("tokens.npz");
    unlabeled_tokens(&original, 1000, &data);
    let out_dir = dir.path().join("out");
    let mut args = distill_args(&file, &data, &out_dir, "0.5");
    args.push("--save-sparse");
    let out = oto(&args);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["verification"]["passed"], true, "{}", report["verification"]);
    assert_eq!(report["verification"]["branch_input"], "use_cache_branch", "{}", report["verification"]);
    let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(md.contains("the merged decoder's first pass"), "{md}");
    let compact = Model::load(out_dir.join("model.onnx")).unwrap();
    let sparse = Model::load(out_dir.join("model.sparse.onnx")).unwrap();
    for m in [&compact, &sparse] {
        let ops: Vec<&str> = m.proto.graph.as_ref().unwrap().node.iter().filter_map(|n| n.op_type.as_deref()).collect();
        assert!(ops.contains(&"If") && !oto_onnx::branches::has_branches(&m.proto), "{ops:?}");
    }
    let params = |m: &Model| oto_onnx::cost::parameter_count(&oto_onnx::Graph::new(m).unwrap()).parameters;
    assert!(params(&compact) < params(&sparse), "{} -> {}", params(&sparse), params(&compact));
    assert_eq!(io_shapes(&compact), io_shapes(&Model::load(&file).unwrap()), "the merged decoder's interface changed");
    for feeds in ["inputs.npz", "inputs_first.npz"] {
        let inputs: Vec<(String, Tensor)> = oto_onnx::npz::read_npz(optimum_zoo_dir().join(name).join(feeds)).unwrap();
        assert_same_in_ort(&sparse, &compact, &inputs, feeds);
    }
    // Quantizing one is refused, naming the file and the branch input (exit 2, nothing run).
    let refused = oto(&["quantize", s(&out_dir.join("model.onnx")), "--data", s(&data), "--out", s(&dir.path().join("q.onnx"))]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("merged decoder") && text(&refused.stderr).contains("use_cache_branch"),
        "{}",
        text(&refused.stderr)
    );
}

/// A mixture of experts (Qwen3-MoE): the trainer runs the router (TopK, OneHot, NonZero)
/// and the ScatterElements that brings the experts' outputs back, and the job removes
/// neurons of the experts, each expert a group of its own.
/// `oto check` of the zoo's merged decoders runs every trial on both branches and passes.
/// GPT-2's file (optimum's older merge) declares its mask `sequence_length` long, but the
/// cache branch reads past + sequence positions: its cache branch runs with an empty past
/// (and says so), unless `--dim` gives the past a size, which the file then refuses
/// (exit 2). Whisper's and BART's declared shapes fit: their pasts are not empty, and the
/// cross-attention heads, read from the encoder's keys and values, are cut.
#[test]
fn check_optimum_merged_decoders_on_both_branches() {
    let _job = one_job_at_a_time();
    for name in oto_testkit::optimum_merged_names() {
        let file = optimum_zoo_dir().join(&name).join("model.onnx");
        let out = oto(&["check", s(&file), "--trials", "1"]);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{name}: {stdout}\n{}", text(&out.stderr));
        assert!(stdout.contains("passed: 1 trials (each on both branches of the merged decoder)"), "{name}: {stdout}");
        assert!(!text(&out.stderr).contains("onnxruntime:"), "{name}: onnxruntime's own log: {}", text(&out.stderr));
        let empty = stdout.contains("(an empty past: the file's declared input shapes do not fit its cache branch");
        assert_eq!(empty, name == "gpt2_merged", "{name}: {stdout}");
    }
    let file = optimum_zoo_dir().join("gpt2_merged/model.onnx");
    let out = oto(&["check", s(&file), "--trials", "1", "--dim", "past_sequence_length=3"]);
    assert_eq!(out.status.code(), Some(2), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stderr).contains("use_cache_branch = true"), "{}", text(&out.stderr));
}

#[test]
fn prune_optimum_mixture_of_experts_by_distillation() {
    let _job = one_job_at_a_time();
    let model = oto_onnx::normalize::load(optimum_zoo_dir().join("qwen3_moe/model.onnx")).unwrap().0;
    let analysis = oto_graph::analyze(&model, &Default::default()).unwrap();
    // The experts' gate and up projections (64 neurons each; 2 layers of 4 experts).
    let experts: Vec<(String, usize)> = analysis
        .prunable_groups()
        .filter(|g| g.num_elements == 64)
        .flat_map(|g| g.members.iter().filter(|m| m.role == oto_graph::Role::Producer).map(|m| (m.initializer.clone(), m.axis)))
        .collect();
    assert_eq!(experts.len(), 16, "{}", analysis.table());
    let (original, compact) = prune_by_distillation_with("qwen3_moe", &[]);
    let width = |m: &Model, init: &str, axis: usize| {
        let g = m.proto.graph.as_ref().unwrap();
        g.initializer.iter().find(|t| t.name.as_deref() == Some(init)).map(|t| t.dims[axis])
    };
    let removed: i64 =
        experts.iter().map(|(init, axis)| width(&original, init, *axis).unwrap() - width(&compact, init, *axis).unwrap()).sum();
    assert!(removed > 0, "no expert neuron removed");
}

/// DeBERTa (v1): the If nodes of its scripted helpers are replaced by the branches they
/// take, so the trainer runs the model; its FFN neurons are pruned.
#[test]
fn prune_optimum_deberta_by_distillation() {
    let _job = one_job_at_a_time();
    prune_by_distillation("deberta");
}

/// GPT-NeoX (Pythia's layout): heads of a per-head packed [q | k | v] projection, with
/// rotary embeddings on part of each head.
#[test]
fn prune_optimum_gpt_neox_by_distillation() {
    let _job = one_job_at_a_time();
    prune_by_distillation("gpt_neox");
}

/// GPT-J and RoFormer: rotary embeddings rotating interleaved pairs, with sin/cos
/// gathered from a table (RoFormer's a weight of the file).
#[test]
fn prune_optimum_rotary_pairs_by_distillation() {
    let _job = one_job_at_a_time();
    prune_by_distillation("gptj");
    prune_by_distillation("roformer");
}

/// `oto check` on the Optimum ViT, whose pixel_values are `[batch_size, num_channels,
/// height, width]`, all symbolic: the model fixes the image (3x32x32, the position
/// embeddings' 17 tokens). The channels follow from the patch embedding's Conv weight;
/// height and width do not (17 tokens fit 4x4 patches as well as 2x8), so they come from
/// the preprocessor_config.json beside the model (32x32), or from --dim; a copy of the
/// model without that file and without --dim fails in onnxruntime at 4x4 and 16x16 and
/// runs at 32x32, the next size `oto check` tries, and says so; a malformed config and
/// a name that is not an input axis are input errors (exit code 2).
#[test]
fn check_optimum_vit_with_the_image_size_given() {
    let _job = one_job_at_a_time();
    let file = optimum_zoo_dir().join("vit/model.onnx");
    for sparsity in ["0.1", "0.5", "0.9"] {
        let out = oto(&["check", s(&file), "--sparsity", sparsity, "--trials", "1"]);
        assert_eq!(out.status.code(), Some(0), "{sparsity}: {}\n{}", text(&out.stdout), text(&out.stderr));
        assert!(text(&out.stdout).contains("passed: 1 trials"), "{}", text(&out.stdout));
    }
    let dir = tempfile::tempdir().unwrap();
    let alone = dir.path().join("model.onnx");
    std::fs::copy(&file, &alone).unwrap();
    let out = oto(&["check", s(&alone), "--trials", "1", "--dim", "height=32", "--dim", "width=32"]);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let out = oto(&["check", s(&alone), "--trials", "1"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("trial 1 ('height', 'width' at 32: onnxruntime refused the full model at 4; --dim sets them)"), "{stdout}");
    std::fs::write(dir.path().join("preprocessor_config.json"), r#"{"size": {"height": "big"}}"#).unwrap();
    let out = oto(&["check", s(&alone), "--trials", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("preprocessor_config.json"), "{}", text(&out.stderr));
    let out = oto(&["check", s(&file), "--dim", "hight=32"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("'hight' is not a symbolic axis"), "{}", text(&out.stderr));
}

/// `oto prune` on the Optimum ViT (pixel_values `[batch_size, num_channels, height,
/// width]`, all symbolic) with 3x32x32 images as data: the MACs of the report count the
/// patch embedding's Conv at the data's height and width (hidden x channels x patch^2
/// per patch, (32 / patch)^2 patches), which without the data's sizes are left out.
#[test]
fn prune_optimum_vit_counts_macs_at_the_data_image_size() {
    let _job = one_job_at_a_time();
    let (file, report) = prune_optimum_image("vit", "0.3");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(optimum_zoo_dir().join("vit/config.json")).unwrap()).unwrap();
    let get = |k: &str| config[k].as_u64().unwrap();
    let (hidden, channels, patch, image) = (get("hidden_size"), get("num_channels"), get("patch_size"), get("image_size"));
    let original = oto_onnx::normalize::load(&file).unwrap().0;
    let graph = oto_onnx::Graph::new(&original).unwrap();
    let without_sizes = oto_onnx::cost::macs(&graph, &oto_onnx::shape::infer(&graph).unwrap()).total;
    let conv = hidden * channels * patch * patch * (image / patch) * (image / patch);
    let (before, after) = (report["macs"]["before"].as_u64().unwrap(), report["macs"]["after"].as_u64().unwrap());
    assert_eq!(before, without_sizes + conv, "report MACs {before}, without the image size {without_sizes}, patch Conv {conv}");
    assert!(after < before, "MACs {before} -> {after}");
}

/// `oto prune` (4 steps, pixels of the config's image size as data) on an Optimum image
/// classifier of graphs/optimum_zoo: the model file and report.json, after checking that
/// the job succeeded and its verification (compact vs zeroed model) passed.
fn prune_optimum_image(name: &str, target: &str) -> (std::path::PathBuf, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let file = optimum_zoo_dir().join(name).join("model.onnx");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(optimum_zoo_dir().join(name).join("config.json")).unwrap()).unwrap();
    let (channels, image) = (config["num_channels"].as_u64().unwrap() as usize, config["image_size"].as_u64().unwrap() as usize);
    let n = 16usize;
    let mut rng = SplitMix64::new(3);
    let x = Tensor {
        shape: vec![n, channels, image, image],
        data: TensorData::F32((0..n * channels * image * image).map(|_| (rng.unit() * 2.0 - 1.0) as f32).collect()),
    };
    let data = dir.path().join("pixels.npz");
    write_npz(&data, &[("pixel_values", &x)], NpzCompression::Stored).unwrap();
    let out_dir = dir.path().join("out");
    let out = oto(&[
        "prune",
        "--model",
        s(&file),
        "--data",
        s(&data),
        "--target-sparsity",
        target,
        "--steps",
        "4",
        "--batch-size",
        "8",
        "--threads",
        "2",
        "--device",
        "cpu",
        "--out",
        s(&out_dir),
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "{name}: {}\n{}", text(&out.stdout), text(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["verification"]["passed"], true, "{name}: {}", report["verification"]);
    (file, report)
}

/// The Optimum Swin pads its token map to a multiple of the window with pads computed
/// from the image size (`(window - width % window) % window`, through the TorchScript
/// exporter's pads matrix): its attention heads and FFN neurons are groups (before, the
/// unknown pads left every shape after them unknown and nothing was prunable), and the
/// job removes them at the data's image size with the compact model equal to the zeroed
/// one (the report's verification).
///
/// The report's MACs are every layer's at the data's image size, those after the
/// padding included (whose sizes only the numbers tell): per image, the patch embedding,
/// per block Q/K/V, the windows' scores and weighted sums, the output projection and the
/// MLP, the patch merging between stages, and the classifier.
#[test]
fn prune_optimum_swin_through_its_window_padding() {
    let _job = one_job_at_a_time();
    let (_, report) = prune_optimum_image("swin", "0.5");
    let (before, after) = (report["params"]["before"].as_u64().unwrap(), report["params"]["after"].as_u64().unwrap());
    assert!(after < before, "parameters {before} -> {after}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(optimum_zoo_dir().join("swin/config.json")).unwrap()).unwrap();
    let get = |k: &str| config[k].as_u64().unwrap();
    let list = |k: &str| config[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect::<Vec<_>>();
    let (image, patch, embed, window, channels) =
        (get("image_size"), get("patch_size"), get("embed_dim"), get("window_size"), get("num_channels"));
    let mlp = config["mlp_ratio"].as_f64().unwrap() as u64;
    let labels = config["id2label"].as_object().unwrap().len() as u64;
    let mut side = image / patch;
    let mut macs = embed * channels * patch * patch * side * side;
    let mut width = embed;
    for (stage, (&depth, &heads)) in list("depths").iter().zip(&list("num_heads")).enumerate() {
        if stage > 0 {
            // Patch merging: 2x2 neighbours concatenated (4 x width) projected to 2 x width.
            side /= 2;
            macs += side * side * 4 * width * 2 * width;
            width *= 2;
        }
        let tokens = side * side;
        let head = width / heads;
        let windows = tokens / (window * window);
        let attention = 2 * windows * heads * (window * window) * (window * window) * head;
        macs += depth * (tokens * width * 3 * width + attention + tokens * width * width + 2 * tokens * width * mlp * width);
    }
    macs += width * labels;
    let (before, after) = (report["macs"]["before"].as_u64().unwrap(), report["macs"]["after"].as_u64().unwrap());
    assert_eq!(before, macs, "report MACs {before}, the layers' {macs}");
    assert!(after < before, "MACs {before} -> {after}");
}
