//! Shared helpers of the oto-graph tests: the zoo, onnxruntime runs, slice edits.
#![allow(dead_code)]

use oto_graph::{Analysis, Group, Role};
use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
use oto_onnx::rng::SplitMix64;
use oto_onnx::{Model, Tensor, TensorData};
use std::collections::HashMap;

/// The float initializers of a model, decoded once.
pub struct Originals {
    pub data: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Originals {
    pub fn new(model: &Model) -> Self {
        let graph = model.proto.graph.as_ref().unwrap();
        let data = graph
            .initializer
            .iter()
            .filter_map(|t| {
                let t2 = model.tensor(t).ok()?;
                let v = t2.as_f32()?.to_vec();
                Some((t.name.clone().unwrap_or_default(), (t2.shape.clone(), v)))
            })
            .collect();
        Originals { data }
    }
}

/// Float copies of initializers, edited slice by slice, then written back.
pub struct Edits<'m> {
    model: &'m Model,
    originals: &'m Originals,
    pub data: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl<'m> Edits<'m> {
    pub fn new(model: &'m Model, originals: &'m Originals) -> Self {
        Edits { model, originals, data: HashMap::new() }
    }

    fn get(&mut self, name: &str) -> &mut (Vec<usize>, Vec<f32>) {
        if !self.data.contains_key(name) {
            let v = self.originals.data.get(name).unwrap_or_else(|| panic!("'{name}' is not a float initializer")).clone();
            self.data.insert(name.to_string(), v);
        }
        self.data.get_mut(name).unwrap()
    }

    /// Sets every entry of `name` whose index along `axis` is in `idx` with `f`.
    pub fn set_slice(&mut self, name: &str, axis: usize, idx: &[usize], mut f: impl FnMut() -> f32) {
        let (dims, v) = self.get(name);
        let outer: usize = dims[..axis].iter().product();
        let inner: usize = dims[axis + 1..].iter().product();
        let n = dims[axis];
        for &i in idx {
            assert!(i < n, "index {i} out of axis {axis} of '{name}' (size {n})");
        }
        for o in 0..outer {
            for &i in idx {
                let base = (o * n + i) * inner;
                v[base..base + inner].iter_mut().for_each(|x| *x = f());
            }
        }
    }

    /// The edited model message.
    pub fn proto(&self) -> oto_onnx::proto::ModelProto {
        let mut p = self.model.proto.clone();
        let graph = p.graph.as_mut().unwrap();
        for t in graph.initializer.iter_mut() {
            let name = t.name.clone().unwrap_or_default();
            if let Some((dims, v)) = self.data.get(&name) {
                *t = Tensor { shape: dims.clone(), data: TensorData::F32(v.clone()) }.to_proto(&name);
            }
        }
        p
    }
}

/// The chosen elements of some groups.
pub type Choice<'a> = Vec<(&'a Group, Vec<usize>)>;

/// Zeroes the producer slices of the chosen elements; with `randomize`, first sets
/// their consumer slices to random values and their aux slices to valid random values
/// (positive, as a running variance must be).
pub fn zero_elements(edits: &mut Edits<'_>, choice: &Choice<'_>, rng: &mut SplitMix64, randomize: bool) {
    let roles: &[Role] = if randomize { &[Role::Consumer, Role::Aux, Role::Producer] } else { &[Role::Producer] };
    for &role in roles {
        for (g, elems) in choice {
            for m in g.members.iter().filter(|m| m.role == role) {
                let idx: Vec<usize> = elems.iter().flat_map(|&e| m.map.indices(e)).collect();
                match role {
                    Role::Consumer => edits.set_slice(&m.initializer, m.axis, &idx, || (rng.unit() * 4.0 - 2.0) as f32),
                    Role::Aux => edits.set_slice(&m.initializer, m.axis, &idx, || (rng.unit() + 0.5) as f32),
                    Role::Producer => edits.set_slice(&m.initializer, m.axis, &idx, || 0.0),
                }
            }
        }
    }
}

/// Picks, for roughly half of the prunable groups, `sparsity` of their elements (at least one).
pub fn pick<'a>(analysis: &'a Analysis, rng: &mut SplitMix64, sparsity: f64) -> Choice<'a> {
    let mut out = Vec::new();
    for g in analysis.prunable_groups() {
        if rng.unit() < 0.5 {
            continue;
        }
        let k = ((g.num_elements as f64 * sparsity).round() as usize).clamp(1, g.num_elements);
        out.push((g, rng.choose(g.num_elements, k)));
    }
    if out.is_empty() {
        if let Some(g) = analysis.prunable_groups().next() {
            out.push((g, vec![0]));
        }
    }
    out
}

fn w(b: &mut GraphBuilder, name: &str, shape: &[usize]) -> String {
    b.weight(name, shape, |i| ((i * 7919 % 13) as f32 - 6.0) / 10.0)
}

/// Multi-head attention on a [B, S, 8] stream: 2 heads of 4, found from the Reshape
/// to [B, S, 2, 4] and the Transposes; the FFN neurons are channels; the LayerNorm'd
/// residual width is reported unprunable.
pub fn attention_model(h: i64, kv_heads: i64) -> Model {
    let (s, d) = (5i64, 8 / h);
    let e = h * d;
    let mut b = GraphBuilder::new("attn");
    let x = b.input_f32("x", &batch_dims(&[s, e]));
    let proj = |b: &mut GraphBuilder, name: &str, n: usize| -> String {
        let wt = w(b, &format!("{name}.weight"), &[e as usize, n]);
        let bias = w(b, &format!("{name}.bias"), &[n]);
        let m = b.node("MatMul", &[&x, &wt], &[]);
        b.node("Add", &[&m, &bias], &[])
    };
    let q = proj(&mut b, "q", (h * d) as usize);
    let k = proj(&mut b, "k", (kv_heads * d) as usize);
    let v = proj(&mut b, "v", (kv_heads * d) as usize);
    let heads = |b: &mut GraphBuilder, t: &str, name: &str, n: i64| -> String {
        let shape = b.ints(&format!("{name}.shape"), &[0, s, n, d]);
        let r = b.node("Reshape", &[t, &shape], &[]);
        b.node_with("Transpose", &[&r], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))])
    };
    let qh = heads(&mut b, &q, "qh", h);
    let (mut kh, mut vh) = (heads(&mut b, &k, "kh", kv_heads), heads(&mut b, &v, "vh", kv_heads));
    if kv_heads != h {
        // Grouped-query attention: each K/V head serves h / kv_heads query heads.
        let rep = h / kv_heads;
        let expand = |b: &mut GraphBuilder, t: &str, name: &str| -> String {
            let axes = b.ints(&format!("{name}.axes"), &[2]);
            let u = b.node("Unsqueeze", &[t, &axes], &[]);
            let shape = b.ints(&format!("{name}.expand"), &[1, kv_heads, rep, s, d]);
            let x = b.node("Expand", &[&u, &shape], &[]);
            let back = b.ints(&format!("{name}.merge"), &[0, h, s, d]);
            b.node("Reshape", &[&x, &back], &[])
        };
        kh = expand(&mut b, &kh, "kx");
        vh = expand(&mut b, &vh, "vx");
    }
    let kt = b.node_with("Transpose", &[&kh], &[], &[("perm", Attr::Ints(vec![0, 1, 3, 2]))]);
    let scores = b.node("MatMul", &[&qh, &kt], &[]);
    let scale = b.initializer("scale", Tensor::new(vec![], oto_onnx::TensorData::F32(vec![0.5])).unwrap());
    let scaled = b.node("Div", &[&scores, &scale], &[]);
    let mask = b.weight("mask", &[1, 1, s as usize, s as usize], |i| if i % 6 == 5 { -1e4 } else { 0.0 });
    let masked = b.node("Add", &[&scaled, &mask], &[]);
    let probs = b.node_with("Softmax", &[&masked], &[], &[("axis", Attr::Int(-1))]);
    let ctx = b.node("MatMul", &[&probs, &vh], &[]);
    let ctx_t = b.node_with("Transpose", &[&ctx], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
    let merge = b.ints("merge.shape", &[0, s, h * d]);
    let merged = b.node("Reshape", &[&ctx_t, &merge], &[]);
    let ow = w(&mut b, "o.weight", &[(h * d) as usize, e as usize]);
    let ob = w(&mut b, "o.bias", &[e as usize]);
    let o = b.node("MatMul", &[&merged, &ow], &[]);
    let o = b.node("Add", &[&o, &ob], &[]);
    let res = b.node("Add", &[&o, &x], &[]);
    let g = w(&mut b, "ln.weight", &[e as usize]);
    let beta = w(&mut b, "ln.bias", &[e as usize]);
    let ln = b.node_with("LayerNormalization", &[&res, &g, &beta], &[], &[("axis", Attr::Int(-1))]);
    // FFN
    let f1 = w(&mut b, "ff1.weight", &[e as usize, 16]);
    let f1b = w(&mut b, "ff1.bias", &[16]);
    let hdn = b.node("MatMul", &[&ln, &f1], &[]);
    let hdn = b.node("Add", &[&hdn, &f1b], &[]);
    let act = b.node("Gelu", &[&hdn], &[]);
    let f2 = w(&mut b, "ff2.weight", &[16, e as usize]);
    let y = b.node("MatMul", &[&act, &f2], &["y"]);
    b.output_f32(&y, &batch_dims(&[s, e]));
    b.opset(20);
    b.build().unwrap()
}

/// A LLaMA-style block on a [B, 6, 16] stream: RMSNorm (Pow, ReduceMean, Sqrt, Div),
/// grouped-query attention (4 query heads on 2 K/V heads of dim 4) with rotary
/// embeddings (Slice, Neg, Concat inside the heads; cos/sin constants), a causal mask,
/// and a SwiGLU MLP of 24 (gate * sigmoid(gate) * up).
pub fn llama_block() -> Model {
    let (s, h, kv, d, ff) = (6i64, 4i64, 2i64, 4i64, 24usize);
    let e = h * d;
    let mut b = GraphBuilder::new("llama");
    let x = b.input_f32("x", &batch_dims(&[s, e]));
    let two = b.initializer("two", Tensor::new(vec![], TensorData::F32(vec![2.0])).unwrap());
    let eps = b.initializer("eps", Tensor::new(vec![], TensorData::F32(vec![1e-5])).unwrap());
    let last = b.ints("last_axis", &[-1]);
    let rms = |b: &mut GraphBuilder, t: &str, name: &str| -> String {
        let p = b.node("Pow", &[t, &two], &[]);
        let m = b.node_with("ReduceMean", &[&p, &last], &[], &[("keepdims", Attr::Int(1))]);
        let a = b.node("Add", &[&m, &eps], &[]);
        let r = b.node("Sqrt", &[&a], &[]);
        let n = b.node("Div", &[t, &r], &[]);
        let wt = w(b, name, &[e as usize]);
        b.node("Mul", &[&n, &wt], &[])
    };
    let h1 = rms(&mut b, &x, "ln1.weight");
    let proj = |b: &mut GraphBuilder, t: &str, name: &str, n: usize| -> String {
        let wt = w(b, name, &[e as usize, n]);
        b.node("MatMul", &[t, &wt], &[])
    };
    let q = proj(&mut b, &h1, "q.weight", (h * d) as usize);
    let k = proj(&mut b, &h1, "k.weight", (kv * d) as usize);
    let v = proj(&mut b, &h1, "v.weight", (kv * d) as usize);
    let heads = |b: &mut GraphBuilder, t: &str, name: &str, n: i64| -> String {
        let shape = b.ints(&format!("{name}.shape"), &[0, s, n, d]);
        let r = b.node("Reshape", &[t, &shape], &[]);
        b.node_with("Transpose", &[&r], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))])
    };
    let cos = b.weight("cos", &[s as usize, d as usize], |i| ((i as f32) * 0.3).cos());
    let sin = b.weight("sin", &[s as usize, d as usize], |i| ((i as f32) * 0.3).sin());
    let (z, half, full, ax3) =
        (b.ints("rope.zero", &[0]), b.ints("rope.half", &[d / 2]), b.ints("rope.full", &[d]), b.ints("rope.axis", &[3]));
    let rope = |b: &mut GraphBuilder, t: &str| -> String {
        let x1 = b.node("Slice", &[t, &z, &half, &ax3], &[]);
        let x2 = b.node("Slice", &[t, &half, &full, &ax3], &[]);
        let n2 = b.node("Neg", &[&x2], &[]);
        let rot = b.node_with("Concat", &[&n2, &x1], &[], &[("axis", Attr::Int(3))]);
        let a = b.node("Mul", &[t, &cos], &[]);
        let c = b.node("Mul", &[&rot, &sin], &[]);
        b.node("Add", &[&a, &c], &[])
    };
    let qh = heads(&mut b, &q, "qh", h);
    let qh = rope(&mut b, &qh);
    let kh = heads(&mut b, &k, "kh", kv);
    let kh = rope(&mut b, &kh);
    let vh = heads(&mut b, &v, "vh", kv);
    let rep = h / kv;
    let expand = |b: &mut GraphBuilder, t: &str, name: &str| -> String {
        let axes = b.ints(&format!("{name}.axes"), &[2]);
        let u = b.node("Unsqueeze", &[t, &axes], &[]);
        let shape = b.ints(&format!("{name}.expand"), &[1, kv, rep, s, d]);
        let x = b.node("Expand", &[&u, &shape], &[]);
        let back = b.ints(&format!("{name}.merge"), &[0, h, s, d]);
        b.node("Reshape", &[&x, &back], &[])
    };
    let kh = expand(&mut b, &kh, "kx");
    let vh = expand(&mut b, &vh, "vx");
    let kt = b.node_with("Transpose", &[&kh], &[], &[("perm", Attr::Ints(vec![0, 1, 3, 2]))]);
    let scores = b.node("MatMul", &[&qh, &kt], &[]);
    let scale = b.initializer("scale", Tensor::new(vec![], TensorData::F32(vec![2.0])).unwrap());
    let scaled = b.node("Div", &[&scores, &scale], &[]);
    let su = s as usize;
    let mask = b.weight("causal", &[1, 1, su, su], |i| if i % su > i / su { -1e4 } else { 0.0 });
    let masked = b.node("Add", &[&scaled, &mask], &[]);
    let probs = b.node_with("Softmax", &[&masked], &[], &[("axis", Attr::Int(-1))]);
    let ctx = b.node("MatMul", &[&probs, &vh], &[]);
    let ctx = b.node_with("Transpose", &[&ctx], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
    let merge = b.ints("merge.shape", &[0, s, h * d]);
    let merged = b.node("Reshape", &[&ctx, &merge], &[]);
    let o = proj(&mut b, &merged, "o.weight", e as usize);
    let x2 = b.node("Add", &[&x, &o], &[]);
    let h2 = rms(&mut b, &x2, "ln2.weight");
    let gate = proj(&mut b, &h2, "gate.weight", ff);
    let sg = b.node("Sigmoid", &[&gate], &[]);
    let silu = b.node("Mul", &[&gate, &sg], &[]);
    let up = proj(&mut b, &h2, "up.weight", ff);
    let m = b.node("Mul", &[&silu, &up], &[]);
    let dw = w(&mut b, "down.weight", &[ff, e as usize]);
    let down = b.node("MatMul", &[&m, &dw], &[]);
    let y = b.node("Add", &[&x2, &down], &["y"]);
    b.output_f32(&y, &batch_dims(&[s, e]));
    b.build().unwrap()
}

/// A residual stream opened by a projection ([B, 5, 8] -> 16 channels), an MLP block
/// reading it through a normalization and adding back to it, and a final normalization
/// before the output projection (16 -> 4). `centred`: LayerNorm written out
/// (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add), otherwise RMSNorm as
/// the exporters write LLaMA's (Pow, ReduceMean, Add, Sqrt, Reciprocal, Mul, Mul).
pub fn residual_norm_model(centred: bool) -> Model {
    let (s, e, f) = (5i64, 16usize, 12usize);
    let mut b = GraphBuilder::new(if centred { "layernorm_residual" } else { "rmsnorm_residual" });
    let x = b.input_f32("x", &batch_dims(&[s, 8]));
    let two = b.initializer("two", Tensor::new(vec![], TensorData::F32(vec![2.0])).unwrap());
    let eps = b.initializer("eps", Tensor::new(vec![], TensorData::F32(vec![1e-5])).unwrap());
    let last = b.ints("last_axis", &[-1]);
    let norm = |b: &mut GraphBuilder, t: &str, name: &str| -> String {
        let mean = |b: &mut GraphBuilder, v: &str| b.node_with("ReduceMean", &[v, &last], &[], &[("keepdims", Attr::Int(1))]);
        let c = if centred {
            let mu = mean(b, t);
            b.node("Sub", &[t, &mu], &[])
        } else {
            t.to_string()
        };
        let p = b.node("Pow", &[&c, &two], &[]);
        let m = mean(b, &p);
        let a = b.node("Add", &[&m, &eps], &[]);
        let r = b.node("Sqrt", &[&a], &[]);
        let r = b.node("Reciprocal", &[&r], &[]);
        let n = b.node("Mul", &[&c, &r], &[]);
        let wt = b.weight(&format!("{name}.weight"), &[e], |i| 0.5 + (i % 5) as f32 / 4.0);
        let n = b.node("Mul", &[&wt, &n], &[]);
        if centred {
            let bias = w(b, &format!("{name}.bias"), &[e]);
            b.node("Add", &[&n, &bias], &[])
        } else {
            n
        }
    };
    let win = w(&mut b, "in.weight", &[8, e]);
    let h0 = b.node("MatMul", &[&x, &win], &[]);
    let n1 = norm(&mut b, &h0, "ln1");
    let wu = w(&mut b, "up.weight", &[e, f]);
    let u = b.node("MatMul", &[&n1, &wu], &[]);
    let u = b.node("Relu", &[&u], &[]);
    let wd = w(&mut b, "down.weight", &[f, e]);
    let d = b.node("MatMul", &[&u, &wd], &[]);
    let h1 = b.node("Add", &[&h0, &d], &[]);
    let n2 = norm(&mut b, &h1, "ln_f");
    let wh = w(&mut b, "head.weight", &[e, 4]);
    let y = b.node("MatMul", &[&n2, &wh], &["y"]);
    b.output_f32(&y, &batch_dims(&[s, 4]));
    b.build().unwrap()
}

/// A squeeze-and-excitation block: conv 3->8, ReLU, then x * sigmoid(conv(relu(conv(GAP(x)))))
/// (8 -> 2 -> 8), then conv 8->4 and a global-pooled output.
pub fn se_block() -> Model {
    let mut b = GraphBuilder::new("se");
    let x = b.input_f32("x", &batch_dims(&[3, 8, 8]));
    let conv = |b: &mut GraphBuilder, t: &str, name: &str, cin: usize, cout: usize, k: usize| -> String {
        let wt = w(b, &format!("{name}.weight"), &[cout, cin, k, k]);
        let bias = w(b, &format!("{name}.bias"), &[cout]);
        let pad = (k / 2) as i64;
        b.node_with("Conv", &[t, &wt, &bias], &[], &[("pads", Attr::Ints(vec![pad; 4]))])
    };
    let c1 = conv(&mut b, &x, "c1", 3, 8, 3);
    let r1 = b.node("Relu", &[&c1], &[]);
    let p = b.node("GlobalAveragePool", &[&r1], &[]);
    let s1 = conv(&mut b, &p, "se1", 8, 2, 1);
    let s1 = b.node("Relu", &[&s1], &[]);
    let s2 = conv(&mut b, &s1, "se2", 2, 8, 1);
    let gate = b.node("Sigmoid", &[&s2], &[]);
    let y = b.node("Mul", &[&r1, &gate], &[]);
    let c2 = conv(&mut b, &y, "c2", 8, 4, 3);
    let r2 = b.node("Relu", &[&c2], &[]);
    let out = b.node("GlobalAveragePool", &[&r2], &["y"]);
    b.output_f32(&out, &batch_dims(&[4, 1, 1]));
    b.build().unwrap()
}
