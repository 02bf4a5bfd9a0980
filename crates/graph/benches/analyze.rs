//! Analysis speed: a LLaMA-7B-shaped graph (32 layers, hidden 4096, 32 heads of 128,
//! SwiGLU 11008, vocabulary 32000) described from shapes alone (its weights are a
//! sparse external-data file that is never read), and the zoo's big models if exported.
//! Targets: < 1 s for resnet50 / BERT-base, < 5 s for the LLaMA-7B shape. Also prints
//! `BENCH {json}` lines for `bench/report.py` (name `analyze MODEL`, metric `seconds`).
//!
//! Real exports (bench/transformer_graphs.py writes them into graphs/bench/transformers/:
//! an Optimum-exported BERT-base and a LLaMA-7B-shaped TorchScript export whose weights
//! are never read) are timed as `oto analyze` reads them: load, normalization and
//! analysis (name `analyze MODEL`, metric `seconds_from_file`); targets < 1 s and < 5 s.
//!
//! `cargo bench -p oto-graph`

use oto_graph::{analyze, AnalyzeOptions};
use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
use oto_onnx::{Model, Tensor, TensorData};
use std::path::Path;
use std::time::Instant;

struct Weights {
    offset: u64,
}

impl Weights {
    fn add(&mut self, b: &mut GraphBuilder, name: &str, shape: &[usize]) -> String {
        let n = b.external_weight(name, shape, "weights.bin", self.offset);
        self.offset += shape.iter().product::<usize>() as u64 * 4;
        n
    }
}

/// RMSNorm: x / sqrt(mean(x^2) + eps) * weight.
struct Norm<'a> {
    two: &'a str,
    eps: &'a str,
    last: &'a str,
    e: usize,
}

impl Norm<'_> {
    fn apply(&self, b: &mut GraphBuilder, wts: &mut Weights, t: &str, name: &str) -> String {
        let sq = b.node("Pow", &[t, self.two], &[]);
        let m = b.node_with("ReduceMean", &[&sq, self.last], &[], &[("keepdims", Attr::Int(1))]);
        let a = b.node("Add", &[&m, self.eps], &[]);
        let r = b.node("Sqrt", &[&a], &[]);
        let n = b.node("Div", &[t, &r], &[]);
        let w = wts.add(b, name, &[self.e]);
        b.node("Mul", &[&n, &w], &[])
    }
}

fn llama(dir: &Path, layers: usize) -> Model {
    let (s, h, kv, d, ff, vocab) = (16i64, 32i64, 32i64, 128i64, 11008usize, 32000usize);
    let e = (h * d) as usize;
    let mut b = GraphBuilder::new("llama7b");
    let mut wts = Weights { offset: 0 };
    let ids = b.input("input_ids", oto_onnx::DType::I64, &batch_dims(&[s]));
    let emb = wts.add(&mut b, "embed_tokens.weight", &[vocab, e]);
    let mut x = b.node("Gather", &[&emb, &ids], &[]);
    let two = b.initializer("two", Tensor::new(vec![], TensorData::F32(vec![2.0])).unwrap());
    let eps = b.initializer("eps", Tensor::new(vec![], TensorData::F32(vec![1e-5])).unwrap());
    let last = b.ints("last_axis", &[-1]);
    let cos = b.weight("cos", &[s as usize, d as usize], |i| (i as f32 * 0.01).cos());
    let sin = b.weight("sin", &[s as usize, d as usize], |i| (i as f32 * 0.01).sin());
    let (z, half, full, ax3) = (b.ints("z", &[0]), b.ints("half", &[d / 2]), b.ints("full", &[d]), b.ints("ax3", &[3]));
    let scale = b.initializer("scale", Tensor::new(vec![], TensorData::F32(vec![11.3])).unwrap());
    let su = s as usize;
    let mask = b.weight("causal", &[1, 1, su, su], |i| if i % su > i / su { -1e4 } else { 0.0 });
    let qshape = b.ints("qshape", &[0, s, h, d]);
    let kshape = b.ints("kshape", &[0, s, kv, d]);
    let merge = b.ints("merge", &[0, s, h * d]);
    for l in 0..layers {
        let p = format!("layers.{l}");
        let norm = Norm { two: &two, eps: &eps, last: &last, e };
        let h1 = norm.apply(&mut b, &mut wts, &x, &format!("{p}.input_layernorm.weight"));
        let proj = |b: &mut GraphBuilder, wts: &mut Weights, t: &str, name: &str, rows: usize, n: usize| -> String {
            let w = wts.add(b, name, &[rows, n]);
            b.node("MatMul", &[t, &w], &[])
        };
        let q = proj(&mut b, &mut wts, &h1, &format!("{p}.q_proj.weight"), e, (h * d) as usize);
        let k = proj(&mut b, &mut wts, &h1, &format!("{p}.k_proj.weight"), e, (kv * d) as usize);
        let v = proj(&mut b, &mut wts, &h1, &format!("{p}.v_proj.weight"), e, (kv * d) as usize);
        let heads = |b: &mut GraphBuilder, t: &str, shape: &str| -> String {
            let r = b.node("Reshape", &[t, shape], &[]);
            b.node_with("Transpose", &[&r], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))])
        };
        let rope = |b: &mut GraphBuilder, t: &str| -> String {
            let x1 = b.node("Slice", &[t, &z, &half, &ax3], &[]);
            let x2 = b.node("Slice", &[t, &half, &full, &ax3], &[]);
            let n2 = b.node("Neg", &[&x2], &[]);
            let rot = b.node_with("Concat", &[&n2, &x1], &[], &[("axis", Attr::Int(3))]);
            let a = b.node("Mul", &[t, &cos], &[]);
            let c = b.node("Mul", &[&rot, &sin], &[]);
            b.node("Add", &[&a, &c], &[])
        };
        let qh = heads(&mut b, &q, &qshape);
        let qh = rope(&mut b, &qh);
        let kh = heads(&mut b, &k, &kshape);
        let kh = rope(&mut b, &kh);
        let vh = heads(&mut b, &v, &kshape);
        let kt = b.node_with("Transpose", &[&kh], &[], &[("perm", Attr::Ints(vec![0, 1, 3, 2]))]);
        let sc = b.node("MatMul", &[&qh, &kt], &[]);
        let sc = b.node("Div", &[&sc, &scale], &[]);
        let sc = b.node("Add", &[&sc, &mask], &[]);
        let pr = b.node_with("Softmax", &[&sc], &[], &[("axis", Attr::Int(-1))]);
        let ctx = b.node("MatMul", &[&pr, &vh], &[]);
        let ctx = b.node_with("Transpose", &[&ctx], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
        let ctx = b.node("Reshape", &[&ctx, &merge], &[]);
        let o = proj(&mut b, &mut wts, &ctx, &format!("{p}.o_proj.weight"), e, e);
        let x2 = b.node("Add", &[&x, &o], &[]);
        let h2 = norm.apply(&mut b, &mut wts, &x2, &format!("{p}.post_attention_layernorm.weight"));
        let g = proj(&mut b, &mut wts, &h2, &format!("{p}.gate_proj.weight"), e, ff);
        let sg = b.node("Sigmoid", &[&g], &[]);
        let g = b.node("Mul", &[&g, &sg], &[]);
        let u = proj(&mut b, &mut wts, &h2, &format!("{p}.up_proj.weight"), e, ff);
        let m = b.node("Mul", &[&g, &u], &[]);
        let dn = proj(&mut b, &mut wts, &m, &format!("{p}.down_proj.weight"), ff, e);
        x = b.node("Add", &[&x2, &dn], &[]);
    }
    let head = wts.add(&mut b, "lm_head.weight", &[e, vocab]);
    let y = b.node("MatMul", &[&x, &head], &["logits"]);
    b.output_f32(&y, &batch_dims(&[s, vocab as i64]));
    // A sparse file: the analysis checks its size but never reads it.
    let file = std::fs::File::create(dir.join("weights.bin")).expect("create weights.bin");
    file.set_len(wts.offset).expect("sparse weights file");
    b.build_in(dir).expect("llama model")
}

fn time(name: &str, model: &Model) {
    let opts = AnalyzeOptions::default();
    let _ = analyze(model, &opts).expect("analysis");
    let runs = 5;
    let t = Instant::now();
    let mut a = None;
    for _ in 0..runs {
        a = Some(analyze(model, &opts).expect("analysis"));
    }
    let dt = t.elapsed().as_secs_f64() / runs as f64;
    let a = a.expect("ran");
    println!(
        "{name}: {:.1} ms per analysis; {} groups, {} prunable, {:.1}% of {} parameters prunable",
        dt * 1e3,
        a.groups.len(),
        a.prunable_groups().count(),
        100.0 * a.prunable_share(),
        a.total_params
    );
    let line = serde_json::json!({"name": format!("analyze {name}"), "impl": "oto", "metric": "seconds", "value": dt, "unit": "s"});
    println!("BENCH {line}");
}

/// Load + normalization + analysis, as `oto analyze` does, mean of 5 after a warm-up.
fn time_from_file(name: &str, path: &Path) {
    let run = || {
        let (model, _) = oto_onnx::normalize::load(path).expect("load and normalize");
        analyze(&model, &AnalyzeOptions::default()).expect("analysis")
    };
    let _ = run();
    let runs = 5;
    let t = Instant::now();
    let mut a = None;
    for _ in 0..runs {
        a = Some(run());
    }
    let dt = t.elapsed().as_secs_f64() / runs as f64;
    let a = a.expect("ran");
    println!(
        "{name}: {:.1} ms per load + normalization + analysis; {} groups, {} prunable, {:.1}% of {} parameters prunable",
        dt * 1e3,
        a.groups.len(),
        a.prunable_groups().count(),
        100.0 * a.prunable_share(),
        a.total_params
    );
    let line =
        serde_json::json!({"name": format!("analyze {name}"), "impl": "oto", "metric": "seconds_from_file", "value": dt, "unit": "s"});
    println!("BENCH {line}");
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let t = Instant::now();
    let model = llama(dir.path(), 32);
    println!("llama7b-shaped graph built in {:.1} s", t.elapsed().as_secs_f64());
    time("llama7b-shaped", &model);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../graphs");
    for path in [root.join("zoo/resnet50.onnx"), root.join("bench/bert_base.onnx"), root.join("zoo/densenet121.onnx")] {
        if path.exists() {
            let model = Model::load(&path).expect("load");
            time(&path.file_stem().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(), &model);
        } else {
            println!("{} not exported, skipped", path.display());
        }
    }
    for name in ["bert_base_optimum", "llama7b_torchscript"] {
        let path = root.join("bench/transformers").join(name).join("model.onnx");
        if path.exists() {
            time_from_file(name, &path);
        } else {
            println!("{} not generated (bench/transformer_graphs.py), skipped", path.display());
        }
    }
}
