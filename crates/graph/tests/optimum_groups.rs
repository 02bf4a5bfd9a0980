//! The group structure of the Hugging Face Optimum exports (graphs/optimum_zoo), against
//! the sizes of each model's config.json: every attention head is an element of one
//! prunable group per layer (for grouped-query attention the elements are the K/V groups,
//! each carrying its K/V head and the query heads that read it), and every FFN neuron is
//! an element of one prunable group per layer (with a mixture of experts, per expert).
//! DeBERTa, whose heads the analysis does not follow yet, is checked for its FFNs. The
//! same on the zoo's transformers, in
//! every exporter's file (graphs/zoo: dynamo; graphs/user_zoo/torchscript: TorchScript,
//! as the module and as Optimum calls the transformers model), sizes from graphs/zoo.py.

use oto_graph::{analyze, AnalyzeOptions, ElementKind, Group, Role};
use oto_onnx::Model;
use oto_testkit::{optimum_zoo_dir, optimum_zoo_names, user_zoo_dir, zoo_dir};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// The sizes of one transformer layer.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Layer {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

/// The sizes of a transformers config's layers, whichever names the architecture uses:
/// the attention of each layer and the width of each FFN (one per layer, or one per
/// expert of every layer).
#[derive(Debug)]
struct Sizes {
    layers: Vec<Layer>,
    ffn: Vec<usize>,
}

impl Sizes {
    /// `n` layers of the same sizes.
    fn uniform(n: usize, heads: usize, kv_heads: usize, head_dim: usize, intermediate: usize) -> Sizes {
        Sizes { layers: vec![Layer { heads, kv_heads, head_dim }; n], ffn: vec![intermediate; n] }
    }
}

fn sizes(config: &serde_json::Value) -> Sizes {
    let get = |keys: &[&str]| keys.iter().find_map(|k| config[*k].as_u64()).map(|v| v as usize);
    let list = |key: &str| config[key].as_array().map(|a| a.iter().map(|v| v.as_u64().expect("an integer") as usize).collect::<Vec<_>>());
    if let (Some(depths), Some(heads), Some(embed)) = (list("depths"), list("num_heads"), get(&["embed_dim"])) {
        // Swin: stage i has depths[i] blocks of width embed * 2^i and num_heads[i] heads.
        let ratio = config["mlp_ratio"].as_f64().expect("mlp_ratio in config.json");
        let (mut layers, mut ffn) = (Vec::new(), Vec::new());
        for (i, (&depth, &h)) in depths.iter().zip(&heads).enumerate() {
            let width = embed << i;
            layers.extend(vec![Layer { heads: h, kv_heads: h, head_dim: width / h }; depth]);
            ffn.extend(vec![(ratio * width as f64) as usize; depth]);
        }
        return Sizes { layers, ffn };
    }
    // (Whisper's and BART's decoders: d_model, decoder_layers, decoder_attention_heads,
    // decoder_ffn_dim; T5's: num_decoder_layers, num_heads, d_kv, d_ff.)
    let hidden = get(&["hidden_size", "dim", "n_embd", "d_model"]).expect("hidden size in config.json");
    let heads = get(&["num_attention_heads", "n_heads", "n_head", "decoder_attention_heads", "num_heads"]).expect("heads in config.json");
    // GPT-BigCode says multi-query attention with a flag: one K/V head.
    let multi_query = config["multi_query"].as_bool() == Some(true);
    let mut s = Sizes::uniform(
        get(&["decoder_layers", "num_decoder_layers", "num_hidden_layers", "n_layers", "n_layer"]).expect("layers in config.json"),
        heads,
        get(&["num_key_value_heads"]).unwrap_or(if multi_query { 1 } else { heads }),
        get(&["head_dim", "d_kv"]).unwrap_or(hidden / heads),
        // GPT-2's n_inner is null: 4 x the hidden size.
        get(&["intermediate_size", "hidden_dim", "n_inner", "decoder_ffn_dim", "d_ff"]).unwrap_or(4 * hidden),
    );
    // An encoder-decoder's decoder: each layer attends to itself and to the encoder (the
    // keys and values of its states), two attentions of the same sizes.
    if config["is_encoder_decoder"].as_bool() == Some(true) {
        s.layers = s.layers.iter().flat_map(|&l| [l, l]).collect();
    }
    // A mixture of experts in every layer: an FFN per expert.
    if let (Some(experts), Some(width)) = (get(&["num_experts"]), get(&["moe_intermediate_size"])) {
        s.ffn = vec![width; s.layers.len() * experts];
    }
    s
}

fn dims(model: &Model, name: &str) -> Vec<i64> {
    let g = model.proto.graph.as_ref().unwrap();
    g.initializer.iter().find(|t| t.name.as_deref() == Some(name)).unwrap_or_else(|| panic!("no initializer {name}")).dims.clone()
}

/// For the matrix members of `role`, per (initializer, axis): the indices of each element.
fn matrix_slices(model: &Model, g: &Group, role: Role) -> BTreeMap<(String, usize), Vec<Vec<usize>>> {
    let mut out: BTreeMap<(String, usize), Vec<Vec<usize>>> = BTreeMap::new();
    for m in g.members.iter().filter(|m| m.role == role && dims(model, &m.initializer).len() == 2) {
        let per = out.entry((m.initializer.clone(), m.axis)).or_insert_with(|| vec![Vec::new(); g.num_elements]);
        for (e, idx) in per.iter_mut().enumerate() {
            idx.extend(m.map.indices(e));
        }
    }
    out
}

/// Each element's indices are whole heads (aligned runs of `head_dim`), elements are
/// disjoint and together cover the whole axis; returns the indices per element.
fn check_heads(model: &Model, ctx: &str, key: &(String, usize), per: &[Vec<usize>], head_dim: usize) -> usize {
    let len = dims(model, &key.0)[key.1] as usize;
    check_heads_covering(ctx, key, per, head_dim, len)
}

/// As [`check_heads`], the elements covering `len` indices of the axis.
fn check_heads_covering(ctx: &str, key: &(String, usize), per: &[Vec<usize>], head_dim: usize, len: usize) -> usize {
    let mut all = BTreeSet::new();
    for (e, idx) in per.iter().enumerate() {
        assert!(!idx.is_empty() && idx.len() % head_dim == 0, "{ctx}: {key:?} element {e}: {} indices", idx.len());
        let mut sorted = idx.clone();
        sorted.sort_unstable();
        for head in sorted.chunks(head_dim) {
            assert!(
                head[0] % head_dim == 0 && head.windows(2).all(|w| w[1] == w[0] + 1),
                "{ctx}: {key:?} element {e}: not whole heads: {head:?}"
            );
        }
        for i in idx {
            assert!(all.insert(*i), "{ctx}: {key:?}: index {i} in two elements");
        }
    }
    assert_eq!(all.len(), len, "{ctx}: {key:?}: the elements do not cover the axis of {len}");
    per[0].len()
}

#[test]
fn optimum_exports_have_every_head_and_ffn_neuron_per_layer() {
    let names = optimum_zoo_names();
    assert_eq!(names.len(), 18, "{names:?}");
    for name in names.into_iter().filter(|n| n != "deberta") {
        let dir = optimum_zoo_dir().join(&name);
        let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        check_heads_and_ffn(&name, &dir.join("model.onnx"), &sizes(&config));
    }
}

/// The merged decoders (graphs/optimum_zoo.py's `export_merged`: one `If` on
/// `use_cache_branch` holding the decoder with and without its cache): normalization writes
/// both branches into the main graph, so the groups are those of the decoder alone, every
/// head and FFN neuron of each layer, each cut in both branches (the heads' caches in the
/// one branch, the presents in the other); an encoder-decoder's (Whisper, BART) also
/// every head of its cross-attention, whose cache branch reads the encoder's keys and
/// values from graph inputs. T5's relative-position table, looked up once for every
/// layer, is in no group: each layer reads its own kept heads of the bias.
#[test]
fn merged_decoders_have_every_head_and_ffn_neuron_per_layer() {
    let names = oto_testkit::optimum_merged_names();
    assert!(!names.is_empty());
    for name in names {
        let dir = optimum_zoo_dir().join(&name);
        let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        check_heads_and_ffn(&name, &dir.join("model.onnx"), &sizes(&config));
        let model = oto_onnx::normalize::load(dir.join("model.onnx")).unwrap().0;
        let a = analyze(&model, &AnalyzeOptions::default()).unwrap();
        let ungrouped: Vec<&str> = a.ungrouped.iter().map(|w| w.initializer.as_str()).collect();
        let shared: &[&str] =
            if name == "t5_merged" { &["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight_merged_0"] } else { &[] };
        assert_eq!(ungrouped, shared, "{name}: {}", a.table());
    }
}

/// DeBERTa (v1): the `If`s its scripted helpers leave in the export compare sizes that are
/// equal, so they are replaced by the branches they take and the whole model has shapes:
/// every FFN neuron of each layer is an element of a prunable group. Its heads are read
/// by the relative-position terms through GatherElements, which the analysis does not
/// follow yet.
#[test]
fn deberta_branches_are_inlined_and_its_ffns_prunable() {
    let dir = optimum_zoo_dir().join("deberta");
    let (model, summary) = oto_onnx::normalize::load(dir.join("model.onnx")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let s = sizes(&config);
    assert_eq!(summary.branches_inlined, 2 * s.layers.len(), "{summary}");
    let g = oto_onnx::Graph::new(&model).unwrap();
    assert!(g.nodes().all(|(_, n)| n.op_type.as_deref() != Some("If")), "{summary}");
    let a = analyze(&model, &AnalyzeOptions::default()).unwrap();
    check_ffn(&model, &format!("deberta\n{}", a.table()), &a, &s.ffn, &mut HashSet::new());
}

/// The zoo's transformers with attention heads and FFNs (ViT included), with their sizes
/// in graphs/zoo.py.
#[test]
fn zoo_transformers_have_every_head_and_ffn_neuron_per_layer_in_every_export() {
    let zoo = [
        ("bert_tiny", Sizes::uniform(2, 2, 2, 64, 512)),
        ("gpt2_tiny", Sizes::uniform(2, 2, 2, 64, 512)),
        ("distilbert_tiny", Sizes::uniform(2, 2, 2, 64, 512)),
        ("llama_tiny", Sizes::uniform(2, 8, 2, 16, 256)),
        // torchvision's VisionTransformer (nn.MultiheadAttention, packed QKV); no Optimum call.
        ("vit_tiny", Sizes::uniform(2, 2, 2, 32, 128)),
    ];
    for (name, s) in &zoo {
        let ts = user_zoo_dir().join("torchscript");
        let mut paths = vec![zoo_dir().join(format!("{name}.onnx")), ts.join(format!("{name}.onnx"))];
        if *name != "vit_tiny" {
            paths.push(ts.join(format!("{name}.optimum.onnx")));
        }
        for path in paths {
            check_heads_and_ffn(&path.display().to_string(), &path, s);
        }
    }
}

/// One prunable group per layer whose elements are the heads (K/V groups), one per
/// layer whose elements are the FFN neurons.
fn check_heads_and_ffn(name: &str, path: &std::path::Path, s: &Sizes) {
    let model = oto_onnx::normalize::load(path).unwrap_or_else(|e| panic!("{e}")).0;
    let a = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let ctx = format!("{name} {s:?}\n{}", a.table());

    // Attention: one group per layer, one element per K/V head (= per head without GQA).
    let head_groups: Vec<&Group> = a.prunable_groups().filter(|g| matches!(g.kind, ElementKind::Head { .. })).collect();
    assert_eq!(head_groups.len(), s.layers.len(), "{ctx}");
    let mut unmatched = s.layers.clone();
    let mut seen_weights = HashSet::new();
    for g in &head_groups {
        let ctx = format!("{name} group {}", g.id);
        // The layer this group is: one of those with its head size and count. A projection
        // packed per head as [q | k | v] (GPT-NeoX) has blocks of 3 x head_dim.
        let head_of = |l: &Layer| matches!(g.kind, ElementKind::Head { dim } if dim == l.head_dim || dim == 3 * l.head_dim);
        // Multi-query attention: the elements are the query heads.
        let elements = |l: &Layer| if l.kv_heads == 1 { l.heads } else { l.kv_heads };
        let at = unmatched.iter().position(|l| head_of(l) && g.num_elements == elements(l));
        let l = unmatched.remove(at.unwrap_or_else(|| panic!("{ctx}: {:?} x {} is no layer's heads in {s:?}", g.kind, g.num_elements)));
        if l.kv_heads == 1 && l.heads > 1 {
            check_multi_query(&model, &ctx, g, &l, &mut seen_weights);
            continue;
        }
        let rep = l.heads / l.kv_heads;
        assert_eq!(rep * l.kv_heads, l.heads, "{ctx}");
        // Producers: the Q, K and V projections' output columns (packed or not):
        // per element its K and V head and its `rep` query heads.
        let mut producers = matrix_slices(&model, g, Role::Producer);
        // With a key/value cache (a `-with-past` export) a removed head still reads its
        // past, which is not zero: the output projection's rows are zeroed with it
        // (producers), and both caches keep the head, restored by construction.
        let cached = !g.caches.is_empty();
        let readers = if cached {
            check_caches(&model, &ctx, g, l.kv_heads);
            let (rows, columns) = std::mem::take(&mut producers).into_iter().partition(|(key, _)| key.1 == 0);
            producers = columns;
            rows
        } else {
            matrix_slices(&model, g, Role::Consumer)
        };
        let mut per_element = 0;
        let mut total = 0;
        for (key, per) in &producers {
            assert!(seen_weights.insert(key.0.clone()), "{ctx}: {} in two head groups", key.0);
            let n = check_heads(&model, &ctx, key, per, l.head_dim);
            per_element += n;
            total += dims(&model, &key.0)[key.1] as usize;
            if n == rep * l.head_dim && rep > 1 {
                // The query heads of K/V head j are j*rep .. (j+1)*rep (repeat_kv's order).
                let base = per.iter().flatten().min().copied().unwrap_or(0);
                for (j, idx) in per.iter().enumerate() {
                    let mut sorted = idx.clone();
                    sorted.sort_unstable();
                    let want: Vec<usize> = (base + j * rep * l.head_dim..base + (j + 1) * rep * l.head_dim).collect();
                    assert_eq!(sorted, want, "{ctx}: {key:?} element {j}");
                }
            }
        }
        assert_eq!(per_element, l.head_dim * (rep + 2), "{ctx}: {producers:?}");
        assert_eq!(total, l.head_dim * (l.heads + 2 * l.kv_heads), "{ctx}");
        // Consumers (producers with a cache): the output projection's rows, the `rep` query
        // heads of each element.
        assert_eq!(readers.len(), 1, "{ctx}: {readers:?}");
        if cached {
            assert!(matrix_slices(&model, g, Role::Consumer).is_empty(), "{ctx}");
        }
        for (key, per) in &readers {
            assert_eq!(check_heads(&model, &ctx, key, per, l.head_dim), rep * l.head_dim, "{ctx}");
        }
    }

    check_ffn(&model, &ctx, &a, &s.ffn, &mut seen_weights);
}

/// A `-with-past` export's head group: its layer's two caches (`present.N.key` and
/// `.value`, `[batch, K/V heads, positions, head dim]`), element `j` K/V head `j`; in a
/// merged decoder, each written by both branches (a cache value per branch that leaves
/// the model as that output: `Graph::results`), but a cross-attention's: the first pass
/// writes the encoder's keys and values, the cache branch reads the kept heads of them
/// from its inputs (`past_key_values.N.encoder.key` and `.value`: reads, not caches).
fn check_caches(model: &oto_onnx::Model, ctx: &str, g: &Group, kv_heads: usize) {
    let results: HashMap<String, String> = oto_onnx::Graph::new(model).unwrap().results().into_iter().collect();
    let mut names: Vec<&str> = g.caches.iter().map(|c| results.get(&c.value).map_or(c.value.as_str(), String::as_str)).collect();
    names.sort_unstable();
    // (T5's layers also read their kept heads of the position bias.)
    let past_reads: Vec<&oto_graph::ReadSlice> = g.reads.iter().filter(|r| r.value.starts_with("past_key_values.")).collect();
    let mut pasts: Vec<&str> = past_reads.iter().map(|r| r.value.as_str()).collect();
    pasts.sort_unstable();
    let branches = if oto_onnx::branches::has_branches(&model.proto) && pasts.is_empty() { 2 } else { 1 };
    assert_eq!(names.len(), 2 * branches, "{ctx}: {:?}", g.caches);
    names.dedup();
    assert_eq!(names.len(), 2, "{ctx}: {:?}", g.caches);
    assert!(names[0].starts_with("present.") && names[0].ends_with(".key") && names[1].ends_with(".value"), "{ctx}: {names:?}");
    if !pasts.is_empty() {
        let read: Vec<String> = names.iter().map(|n| n.replacen("present.", "past_key_values.", 1)).collect();
        assert!(names[0].contains(".encoder.") && pasts == read, "{ctx}: {pasts:?} {names:?}");
    }
    assert_eq!(g.num_elements, kv_heads, "{ctx}");
    let axes = g.caches.iter().map(|c| (c.axis, &c.map)).chain(past_reads.iter().map(|r| (r.axis, &r.map)));
    for (axis, map) in axes {
        assert_eq!(axis, 1, "{ctx}: {g:?}");
        for j in 0..kv_heads {
            assert_eq!(map.indices(j), vec![j], "{ctx}: {map:?}");
        }
    }
}

/// A multi-query layer's head group: per query head, its columns of the Q projection (alone
/// or the `q` part of a fused one) and its rows of the output projection, both zeroed with
/// it (producers: a zero query head averages the shared V, which only zero rows discard);
/// the one K/V head, read by every query head, is in no group and nothing is a consumer.
fn check_multi_query(model: &Model, ctx: &str, g: &Group, l: &Layer, seen_weights: &mut HashSet<String>) {
    assert!(g.prunable, "{ctx}: {:?}", g.reasons);
    let producers = matrix_slices(model, g, Role::Producer);
    assert_eq!(producers.len(), 2, "{ctx}: {producers:?}");
    let mut axes = BTreeSet::new();
    for (key, per) in &producers {
        assert!(seen_weights.insert(key.0.clone()), "{ctx}: {} in two head groups", key.0);
        assert_eq!(check_heads_covering(ctx, key, per, l.head_dim, l.heads * l.head_dim), l.head_dim, "{ctx}: {key:?}");
        axes.insert(key.1);
    }
    // The projections' output columns (axis 1 of a MatMul weight) and input rows (axis 0).
    assert_eq!(axes, BTreeSet::from([0, 1]), "{ctx}: {producers:?}");
    assert!(matrix_slices(model, g, Role::Consumer).is_empty(), "{ctx}");
}

/// FFN: one group per layer whose elements are the FFN neurons.
fn check_ffn(model: &Model, ctx: &str, a: &oto_graph::Analysis, ffn_widths: &[usize], seen_weights: &mut HashSet<String>) {
    // FFN: one group of `intermediate` neurons per layer (per expert), from the up (and
    // gate) projections to the down projection.
    let widths: BTreeSet<usize> = ffn_widths.iter().copied().collect();
    for &width in &widths {
        let ffn: Vec<&Group> = a.prunable_groups().filter(|g| g.kind == ElementKind::Channel && g.num_elements == width).collect();
        assert_eq!(ffn.len(), ffn_widths.iter().filter(|&&w| w == width).count(), "{ctx}");
        for g in ffn {
            let ctx = format!("{ctx} group {}", g.id);
            for role in [Role::Producer, Role::Consumer] {
                let slices = matrix_slices(model, g, role);
                assert!(!slices.is_empty(), "{ctx}: no {role:?} matrix");
                for (key, per) in &slices {
                    assert!(seen_weights.insert(key.0.clone()) || role == Role::Consumer, "{ctx}: {} in two groups", key.0);
                    assert_eq!(dims(model, &key.0)[key.1] as usize, width, "{ctx}: {key:?}");
                    assert!(per.iter().enumerate().all(|(e, idx)| idx == &vec![e]), "{ctx}: {key:?} is not one neuron per element");
                }
            }
        }
    }
}
