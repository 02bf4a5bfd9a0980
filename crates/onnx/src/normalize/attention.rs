//! ONNX's attention operators of opset 23 written as the operators they are defined by
//! (the ONNX specification gives both as functions).
//!
//! The torch exporter writes them at `opset_version=23`: `scaled_dot_product_attention`
//! becomes an `Attention`, and its graph optimizer fuses a LLaMA-like model's rotary
//! embedding into `RotaryEmbedding` (and its RMS norms into `RMSNormalization`, which every
//! stage understands as it is). Written out, the heads are an axis of plain `MatMul`s, which
//! the analysis prunes as in the same model exported at an earlier opset.
//!
//! * `RotaryEmbedding(x, cos, sin, position_ids?)`: `x` is `[batch, heads, seq, head]`, or
//!   `[batch, seq, heads * head]` with `num_heads`; the caches are `[batch, seq, rot / 2]`,
//!   or `[positions, rot / 2]` gathered at `position_ids`. The first `rot` entries of each
//!   head (`rotary_embedding_dim`, else all) are split into halves `x1`, `x2` (or into even
//!   and odd entries when `interleaved`) and become `cos * x1 - sin * x2` and
//!   `sin * x1 + cos * x2`; the rest pass unchanged. A 3-D input is moved to the 4-D layout
//!   and back, so that its heads are an axis of their own. (An interleaved rotation of part
//!   of each head, written so, concatenates pairs with the unturned rest along the head's
//!   axis, which the analysis does not split: its heads stay, correctly but unpruned.)
//! * `Attention(q, k, v, mask?, past_key?, past_value?)`: 3-D operands `[batch, seq,
//!   heads * head]` (with `q_num_heads`, `kv_num_heads`) are moved to `[batch, heads, seq,
//!   head]`; the past keys and values are concatenated before the new ones (the `present`
//!   outputs); with fewer key/value heads than query heads (grouped-query attention) each is
//!   repeated for its group; `softmax(softcap(q k^T * scale) + bias) v` with `scale`
//!   (default `1 / sqrt(head)`), `softcap` (`c * tanh(x / c)` when above 0), and a bias of
//!   the mask (a boolean mask as 0 where a key is seen, -inf where not) plus, when
//!   `is_causal`, -inf where a key comes after the query (offset by the past's length); a
//!   query row that sees no key at all gives zeros, as the specification (and onnxruntime)
//!   says; `softmax_precision` is the type the softmax is computed in.
//!
//! A node stays as it is (the analysis then blocks what it touches) when its form needs what
//! the shapes do not tell (the operands' ranks, the head counts, the head size of the default
//! scale or of repeated key/value heads, the element types) or asks for what no form here
//! gives: opset 24's `nonpad_kv_seqlen`, the `qk_matmul_output` output, attributes of later
//! opsets.

use super::contrib::{float_of, input, int_of, output, Emit};
use super::{is_default_domain, Names};
use crate::builder::Attr;
use crate::graph::NodeExt;
use crate::proto::{GraphProto, NodeProto};
use crate::shape::Shapes;
use crate::tensor::DType;

/// Whether `graph` has an operator of this module.
pub(super) fn pending(graph: &GraphProto) -> bool {
    graph.node.iter().any(is_attention_op)
}

fn is_attention_op(node: &NodeProto) -> bool {
    is_default_domain(node) && matches!(node.op(), "Attention" | "RotaryEmbedding")
}

/// Rewrites every `Attention` and `RotaryEmbedding` whose form `shapes` tell; returns how many.
pub(super) fn decompose(graph: &mut GraphProto, shapes: &Shapes, opset: i64) -> usize {
    if !pending(graph) {
        return 0;
    }
    let mut names = Names::of(graph);
    let no_facts = Default::default();
    let mut count = 0;
    let mut out = Vec::with_capacity(graph.node.len());
    for node in std::mem::take(&mut graph.node) {
        let Some(dtype) = is_attention_op(&node).then(|| input(&node, 0).and_then(|x| shapes.dtype(x))).flatten().filter(|d| d.is_float())
        else {
            out.push(node);
            continue;
        };
        let stem = node.name.clone().or_else(|| node.output.first().cloned()).unwrap_or_default();
        let mut e = Emit::new(&mut names, &no_facts, stem, dtype, opset);
        let written = match node.op() {
            "Attention" => attention(&mut e, &node, shapes),
            _ => rotary(&mut e, &node, shapes),
        };
        if written.is_some() {
            out.append(&mut e.nodes);
            graph.initializer.append(&mut e.inits);
            count += 1;
        } else {
            out.push(node);
        }
    }
    graph.node = out;
    count
}

/// `None` when `node` has an attribute not in `known` (one of a later opset).
fn only_attributes(node: &NodeProto, known: &[&str]) -> Option<()> {
    node.attribute.iter().all(|a| a.name.as_deref().is_some_and(|n| known.contains(&n))).then_some(())
}

fn ints_attr(name: &str, v: Vec<i64>) -> crate::proto::AttributeProto {
    Attr::Ints(v).to_proto(name)
}

impl Emit<'_> {
    /// The last node written computes `value`: it writes `out` instead.
    fn finish_as(&mut self, value: &str, out: &str) {
        match self.nodes.last_mut() {
            Some(n) if n.output.first().is_some_and(|o| o == value) => n.output[0] = out.to_string(),
            _ => {
                self.op("Identity", &[value], vec![], Some(out));
            }
        }
    }

    /// `x[..., start:end:step]` on the last axis.
    fn slice_last(&mut self, x: &str, start: i64, end: i64, step: i64) -> String {
        let (s, e, a, st) = (self.ints(vec![start]), self.ints(vec![end]), self.ints(vec![-1]), self.ints(vec![step]));
        self.op("Slice", &[x, &s, &e, &a, &st], vec![], None)
    }

    /// `[batch, seq, heads * head]` as `[batch, heads, seq, head]`.
    fn heads_first(&mut self, x: &str, heads: i64) -> String {
        let split = self.ints(vec![0, 0, heads, -1]);
        let r = self.op("Reshape", &[x, &split], vec![], None);
        self.op("Transpose", &[&r], vec![ints_attr("perm", vec![0, 2, 1, 3])], None)
    }

    /// `[batch, heads, seq, head]` as `[batch, seq, heads * head]`.
    fn heads_merged(&mut self, x: &str) -> String {
        let t = self.op("Transpose", &[x], vec![ints_attr("perm", vec![0, 2, 1, 3])], None);
        let merged = self.ints(vec![0, 0, -1]);
        self.op("Reshape", &[&t, &merged], vec![], None)
    }
}

/// `RotaryEmbedding`: see the module documentation.
fn rotary(e: &mut Emit<'_>, node: &NodeProto, shapes: &Shapes) -> Option<()> {
    only_attributes(node, &["interleaved", "num_heads", "rotary_embedding_dim"])?;
    let (x, cos, sin, y) = (input(node, 0)?, input(node, 1)?, input(node, 2)?, output(node, 0)?);
    let dims = shapes.shape(x)?;
    let heads = int_of(node, "num_heads", 0);
    let interleaved = int_of(node, "interleaved", 0) != 0;
    let rot = int_of(node, "rotary_embedding_dim", 0);
    let head = match dims.len() {
        4 => dims[3].known(),
        3 if heads > 0 => dims[2].known().filter(|h| h % heads == 0).map(|h| h / heads),
        _ => return None,
    };
    let partial = rot > 0 && head != Some(rot);
    if rot < 0 || rot % 2 != 0 || (partial && head.is_none_or(|h| rot > h)) {
        return None;
    }
    let half = if rot > 0 { Some(rot / 2) } else { head.filter(|h| h % 2 == 0).map(|h| h / 2) };
    // [batch, heads, seq, head] (a 3-D input is moved there and back, so that its heads
    // are an axis of their own, as the 4-D form's are): the caches broadcast over axis 1.
    let xh = match dims.len() {
        4 => x.to_string(),
        _ => e.heads_first(x, heads),
    };
    let (mut cos, mut sin) = (cos.to_string(), sin.to_string());
    if let Some(ids) = input(node, 3) {
        cos = e.op("Gather", &[&cos, ids], vec![Attr::Int(0).to_proto("axis")], None);
        sin = e.op("Gather", &[&sin, ids], vec![Attr::Int(0).to_proto("axis")], None);
    }
    let cos = e.unsqueeze(&cos, vec![1]);
    let sin = e.unsqueeze(&sin, vec![1]);
    let (turned, passed) = if partial { (e.slice_last(&xh, 0, rot, 1), Some(e.slice_last(&xh, rot, i64::MAX, 1))) } else { (xh, None) };
    let (x1, x2) = if interleaved {
        (e.slice_last(&turned, 0, i64::MAX, 2), e.slice_last(&turned, 1, i64::MAX, 2))
    } else {
        let parts = [e.names.fresh(&format!("{}/x1", e.stem)), e.names.fresh(&format!("{}/x2", e.stem))];
        let (inputs, attrs) = match half {
            Some(h) => (vec![turned.clone(), e.ints(vec![h, h])], vec![Attr::Int(-1).to_proto("axis")]),
            None => (vec![turned.clone()], vec![Attr::Int(-1).to_proto("axis"), Attr::Int(2).to_proto("num_outputs")]),
        };
        e.nodes.push(NodeProto {
            op_type: Some("Split".into()),
            name: Some(e.names.fresh(&format!("{}/Split", e.stem))),
            input: inputs,
            output: parts.to_vec(),
            attribute: attrs,
            ..Default::default()
        });
        let [a, b] = parts;
        (a, b)
    };
    let (c1, s2) = (e.op("Mul", &[&cos, &x1], vec![], None), e.op("Mul", &[&sin, &x2], vec![], None));
    let real = e.op("Sub", &[&c1, &s2], vec![], None);
    let (s1, c2) = (e.op("Mul", &[&sin, &x1], vec![], None), e.op("Mul", &[&cos, &x2], vec![], None));
    let imag = e.op("Add", &[&s1, &c2], vec![], None);
    let axis = || Attr::Int(-1).to_proto("axis");
    let mut result = if interleaved {
        // Pairs (real, imag) side by side: [..., rot / 2, 2] read as [..., rot].
        let (r, i) = (e.unsqueeze(&real, vec![-1]), e.unsqueeze(&imag, vec![-1]));
        let pairs = e.op("Concat", &[&r, &i], vec![axis()], None);
        let whole = e.ints(vec![0, 0, 0, -1]);
        e.op("Reshape", &[&pairs, &whole], vec![], None)
    } else {
        e.op("Concat", &[&real, &imag], vec![axis()], None)
    };
    if let Some(p) = passed {
        result = e.op("Concat", &[&result, &p], vec![axis()], None);
    }
    if dims.len() == 3 {
        result = e.heads_merged(&result);
    }
    e.finish_as(&result, y);
    Some(())
}

/// `Attention`: see the module documentation.
fn attention(e: &mut Emit<'_>, node: &NodeProto, shapes: &Shapes) -> Option<()> {
    let known = ["is_causal", "kv_num_heads", "q_num_heads", "qk_matmul_output_mode", "scale", "softcap", "softmax_precision"];
    only_attributes(node, &known)?;
    if input(node, 6).is_some() || output(node, 3).is_some() {
        return None;
    }
    let (q, k, v, y) = (input(node, 0)?, input(node, 1)?, input(node, 2)?, output(node, 0)?);
    let (qd, kd, vd) = (shapes.shape(q)?, shapes.shape(k)?, shapes.shape(v)?);
    let rank = qd.len();
    if kd.len() != rank || vd.len() != rank {
        return None;
    }
    let past = match (input(node, 4), input(node, 5)) {
        (Some(pk), Some(pv)) => Some((pk, pv)),
        (None, None) => None,
        _ => return None,
    };
    // Head counts and the head sizes of the queries, keys and values.
    let (q_heads, kv_heads, q_head, k_head, v_head) = match rank {
        4 => (qd[1].known()?, kd[1].known()?, qd[3].known(), kd[3].known(), vd[3].known()),
        3 => {
            let (qh, kvh) = (int_of(node, "q_num_heads", 0), int_of(node, "kv_num_heads", 0));
            let per = |d: Option<i64>, h: i64| d.filter(|d| h > 0 && d % h == 0).map(|d| d / h);
            (qh, kvh, per(qd[2].known(), qh), per(kd[2].known(), kvh), per(vd[2].known(), kvh))
        }
        _ => return None,
    };
    if q_heads <= 0 || kv_heads <= 0 || q_heads % kv_heads != 0 || (rank == 4 && vd[1].known() != Some(kv_heads)) {
        return None;
    }
    let scale = match node.attribute.iter().find(|a| a.name.as_deref() == Some("scale")) {
        Some(_) => f64::from(float_of(node, "scale", 1.0)),
        None => 1.0 / (q_head.filter(|&h| h > 0)? as f64).sqrt(),
    };
    let mask = match input(node, 3) {
        Some(m) => Some((m, shapes.dtype(m)?)),
        None => None,
    };
    if mask.is_some_and(|(_, d)| d != DType::Bool && !d.is_float()) {
        return None;
    }
    let precision = match int_of(node, "softmax_precision", 0) {
        0 => None,
        code => Some(i32::try_from(code).ok().and_then(DType::from_onnx).filter(|d| d.is_float())?).filter(|&d| d != e.dtype),
    };

    let (mut q4, mut k4, mut v4) = (q.to_string(), k.to_string(), v.to_string());
    if rank == 3 {
        q4 = e.heads_first(q, q_heads);
        k4 = e.heads_first(k, kv_heads);
        v4 = e.heads_first(v, kv_heads);
    }
    let axis2 = || Attr::Int(2).to_proto("axis");
    if let Some((pk, pv)) = past {
        k4 = e.op("Concat", &[pk, &k4], vec![axis2()], output(node, 1));
        v4 = e.op("Concat", &[pv, &v4], vec![axis2()], output(node, 2));
    } else {
        for (value, k) in [(&k4, 1), (&v4, 2)] {
            if let Some(o) = output(node, k) {
                e.op("Identity", &[value], vec![], Some(o));
            }
        }
    }
    // Key/value heads repeated for their group of query heads: h0, h0, h1, h1...
    let (mut keys, mut values) = (k4.clone(), v4.clone());
    if q_heads != kv_heads {
        let group = q_heads / kv_heads;
        let mut repeat = |x: &str, head: i64| {
            let u = e.unsqueeze(x, vec![2]);
            let times = e.ints(vec![1, 1, group, 1, 1]);
            let wide = e.op("Expand", &[&u, &times], vec![], None);
            let merged = e.ints(vec![0, q_heads, -1, head]);
            e.op("Reshape", &[&wide, &merged], vec![], None)
        };
        keys = repeat(&k4, k_head?);
        values = repeat(&v4, v_head?);
    }
    let kt = e.op("Transpose", &[&keys], vec![ints_attr("perm", vec![0, 1, 3, 2])], None);
    let raw = e.op("MatMul", &[&q4, &kt], vec![], None);
    let scale = e.scalar(scale)?;
    let mut scores = e.op("Mul", &[&raw, &scale], vec![], None);
    let softcap = float_of(node, "softcap", 0.0);
    if softcap > 0.0 {
        let c = e.scalar(f64::from(softcap))?;
        let d = e.op("Div", &[&scores, &c], vec![], None);
        let t = e.op("Tanh", &[&d], vec![], None);
        scores = e.op("Mul", &[&t, &c], vec![], None);
    }
    let (zero, blocked) = (e.scalar(0.0)?, e.scalar(f64::NEG_INFINITY)?);
    let mut bias = match mask {
        Some((m, DType::Bool)) => Some(e.op("Where", &[m, &zero, &blocked], vec![], None)),
        Some((m, _)) => Some(m.to_string()),
        None => None,
    };
    if int_of(node, "is_causal", 0) != 0 {
        // Key j is seen from query i where j <= i + the past's length.
        let queries = e.size_of(&q4, 2)?;
        let keys_len = e.size_of(&k4, 2)?;
        let mut rows = e.range(&queries, vec![1])?;
        if let Some((pk, _)) = past {
            let offset = e.size_of(pk, 2)?;
            rows = e.op("Add", &[&rows, &offset], vec![], None);
        }
        let cols = e.range(&keys_len, vec![0])?;
        let seen = e.op("LessOrEqual", &[&cols, &rows], vec![], None);
        let causal = e.op("Where", &[&seen, &zero, &blocked], vec![], None);
        bias = Some(match bias {
            Some(b) => e.op("Add", &[&b, &causal], vec![], None),
            None => causal,
        });
    }
    if let Some(b) = &bias {
        scores = e.op("Add", &[&scores, b], vec![], None);
    }
    let softmax = |e: &mut Emit<'_>, x: &str| e.op("Softmax", &[x], vec![Attr::Int(-1).to_proto("axis")], None);
    let mut probs = match precision {
        Some(p) => {
            let cast = e.op("Cast", &[&scores], vec![Attr::Int(p.onnx_code().into()).to_proto("to")], None);
            let s = softmax(e, &cast);
            e.op("Cast", &[&s], vec![Attr::Int(e.dtype.onnx_code().into()).to_proto("to")], None)
        }
        None => softmax(e, &scores),
    };
    if let (Some(b), Some(_)) = (&bias, mask) {
        // A query that sees no key: zeros (softmax of a row of -inf is NaN).
        let last = e.ints(vec![-1]);
        let best = e.op("ReduceMax", &[b, &last], vec![Attr::Int(1).to_proto("keepdims")], None);
        let none = e.op("Equal", &[&best, &blocked], vec![], None);
        probs = e.op("Where", &[&none, &zero, &probs], vec![], None);
    }
    let mut result = e.op("MatMul", &[&probs, &values], vec![], None);
    if rank == 3 {
        result = e.heads_merged(&result);
    }
    e.finish_as(&result, y);
    Some(())
}
