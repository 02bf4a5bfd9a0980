//! `Einsum` of two operands written as `Transpose` -> `Reshape` -> `MatMul` -> `Reshape`
//! -> `Transpose`, the form every later stage follows (PyTorch's `torch.einsum` and
//! tf2onnx's Keras `EinsumDense` export the operator itself; the analysis follows a
//! `MatMul` through its batch, free and contracted axes, and an `Einsum` not at all).
//!
//! The labels of `A,B->Y` fall in four kinds: batch (in `A`, `B` and `Y`), free in `A`
//! (in `A` and `Y`), free in `B`, contracted (in `A` and `B`, not `Y`). `A` is transposed
//! to `[batch, freeA, contracted]` and `B` to `[batch, contracted, freeB]`, the free and
//! contracted axes of each merged into one (a `Reshape` whose batch entries are `0`,
//! copies, and whose merged sizes are constants when known, else `-1` or computed from
//! the operand's `Shape`), multiplied, split back into the free axes (sizes known or read
//! off the operands' shapes) and transposed into `Y`'s order. Steps that change nothing
//! are left out, so `bhqd,bhkd->bhqk` is a `Transpose` of `B` and a `MatMul`.
//!
//! Only what this rewrite is exact for: two operands, no ellipsis, no label twice in one
//! term, every output label in an input and every input label in `Y` or in both inputs
//! (a label summed inside one operand is left to the operator), ranks the shapes know.
//!
//! One operand, `A->Y` (a permutation, `bhqk->bqhk`, or a sum over labels, `bij->bi`):
//! a `ReduceSum` over the labels `Y` lacks, then a `Transpose` into `Y`'s order; the same
//! limits (distinct labels, no ellipsis).

use super::Names;
use crate::graph::{Graph, NodeExt};
use crate::op::Op;
use crate::proto::attribute_proto::AttributeType;
use crate::proto::{AttributeProto, GraphProto, NodeProto, TensorProto};
use crate::shape::{Dim, Shapes};
use crate::tensor::{DType, Tensor, TensorData};
use std::collections::HashSet;

/// The nodes and initializers that replace one `Einsum`.
pub(super) struct Rewrite {
    /// The `Einsum`'s position in the graph's node list.
    index: usize,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

/// The rewrites of every `Einsum` of `graph` this module can write as a `MatMul`.
pub(super) fn plan(graph: &Graph<'_>, shapes: &Shapes) -> Vec<Rewrite> {
    let mut names = Names::of(graph.proto);
    let mut out = Vec::new();
    for (index, node) in graph.proto.node.iter().enumerate() {
        if !matches!(Op::parse(graph, node), Ok(Op::Einsum)) {
            continue;
        }
        let rewritten = match node.input.len() {
            1 => rewrite_one(node, shapes, crate::ops::node_opset(graph, node), &mut names),
            _ => rewrite(node, shapes, &mut names),
        };
        if let Some(mut r) = rewritten {
            r.index = index;
            out.push(r);
        }
    }
    out
}

/// Replaces each planned `Einsum` by its nodes (in place, so the order stays topological)
/// and adds the initializers; the number of `Einsum`s rewritten.
pub(super) fn apply(graph: &mut GraphProto, rewrites: Vec<Rewrite>) -> usize {
    let count = rewrites.len();
    let mut by_index: std::collections::HashMap<usize, Rewrite> = rewrites.into_iter().map(|r| (r.index, r)).collect();
    let old = std::mem::take(&mut graph.node);
    for (i, n) in old.into_iter().enumerate() {
        match by_index.remove(&i) {
            Some(r) => {
                graph.node.extend(r.nodes);
                graph.initializer.extend(r.initializers);
            }
            None => graph.node.push(n),
        }
    }
    count
}

/// The labels of an equation `A,B->Y`, or `None` outside this module's cases.
fn parse(equation: &str) -> Option<(Vec<char>, Vec<char>, Vec<char>)> {
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    if eq.contains('.') {
        return None;
    }
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l.to_string(), Some(r.to_string())),
        None => (eq.clone(), None),
    };
    let (a, b) = lhs.split_once(',')?;
    if b.contains(',') {
        return None;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let y: Vec<char> = match rhs {
        Some(r) => r.chars().collect(),
        None => {
            // Implicit output: the labels that appear once, in alphabetical order.
            let mut once: Vec<char> = a.iter().chain(&b).copied().filter(|c| a.iter().chain(&b).filter(|d| *d == c).count() == 1).collect();
            once.sort_unstable();
            once
        }
    };
    let distinct = |t: &[char]| t.iter().collect::<HashSet<_>>().len() == t.len();
    let letters = |t: &[char]| t.iter().all(|c| c.is_ascii_alphabetic());
    if !(distinct(&a) && distinct(&b) && distinct(&y) && letters(&a) && letters(&b) && letters(&y)) {
        return None;
    }
    if y.iter().any(|c| !a.contains(c) && !b.contains(c)) {
        return None;
    }
    // A label of one operand that is not in the output is summed inside it.
    if a.iter().any(|c| !b.contains(c) && !y.contains(c)) || b.iter().any(|c| !a.contains(c) && !y.contains(c)) {
        return None;
    }
    Some((a, b, y))
}

/// The labels of a one-operand equation `A->Y` (implicit `Y`: `A`'s labels sorted), or
/// `None` outside this module's cases.
fn parse_one(equation: &str) -> Option<(Vec<char>, Vec<char>)> {
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    if eq.contains('.') || eq.contains(',') {
        return None;
    }
    let (a, y): (Vec<char>, Vec<char>) = match eq.split_once("->") {
        Some((l, r)) => (l.chars().collect(), r.chars().collect()),
        None => {
            let a: Vec<char> = eq.chars().collect();
            let mut y = a.clone();
            y.sort_unstable();
            (a, y)
        }
    };
    let distinct = |t: &[char]| t.iter().collect::<HashSet<_>>().len() == t.len();
    let letters = |t: &[char]| t.iter().all(|c| c.is_ascii_alphabetic());
    (distinct(&a) && distinct(&y) && letters(&a) && letters(&y) && y.iter().all(|c| a.contains(c))).then_some((a, y))
}

/// `A->Y`: the labels `Y` lacks summed (`ReduceSum`, axes an input from opset 13), the rest
/// transposed into `Y`'s order.
fn rewrite_one(node: &NodeProto, shapes: &Shapes, opset: i64, names: &mut Names) -> Option<Rewrite> {
    let equation = node.attr_string("equation").ok()??;
    let (a, y) = parse_one(&equation)?;
    let ([x], [out]) = (node.input.as_slice(), node.output.as_slice()) else { return None };
    if shapes.shape(x)?.len() != a.len() {
        return None;
    }
    let mut w = Writer { base: out.clone(), names, nodes: Vec::new(), initializers: Vec::new() };
    let summed: Vec<i64> = (0..a.len()).filter(|&i| !y.contains(&a[i])).map(|i| i as i64).collect();
    let kept: Vec<char> = a.iter().copied().filter(|c| y.contains(c)).collect();
    let perm: Vec<i64> = y.iter().map(|c| kept.iter().position(|k| k == c).map(|p| p as i64)).collect::<Option<_>>()?;
    let identity = perm.iter().enumerate().all(|(i, &p)| p == i as i64);
    let mut current = x.clone();
    let sums = !summed.is_empty();
    if sums {
        let output = identity.then(|| out.clone());
        current = if opset >= 13 {
            let axes = w.ints("axes", summed)?;
            w.node("ReduceSum", vec![current, axes], vec![int_attr("keepdims", 0)], output)
        } else {
            w.node("ReduceSum", vec![current], vec![ints_attr("axes", summed), int_attr("keepdims", 0)], output)
        };
    }
    if !identity {
        w.node("Transpose", vec![current], vec![ints_attr("perm", perm)], Some(out.clone()));
    } else if !sums {
        w.node("Identity", vec![current], vec![], Some(out.clone()));
    }
    Some(Rewrite { index: 0, nodes: w.nodes, initializers: w.initializers })
}

fn ints_attr(name: &str, v: Vec<i64>) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Ints as i32), ints: v, ..Default::default() }
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Int as i32), i: Some(v), ..Default::default() }
}

/// Builds the replacement nodes, naming everything after the `Einsum`'s output.
struct Writer<'n> {
    base: String,
    names: &'n mut Names,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl Writer<'_> {
    fn fresh(&mut self, what: &str) -> String {
        self.names.fresh(&format!("{}/einsum_{what}", self.base))
    }

    fn node(&mut self, op: &str, inputs: Vec<String>, attribute: Vec<AttributeProto>, output: Option<String>) -> String {
        let out = output.unwrap_or_else(|| self.fresh(&op.to_lowercase()));
        let name = self.fresh(&format!("{}_node", op.to_lowercase()));
        self.nodes.push(NodeProto {
            op_type: Some(op.into()),
            name: Some(name),
            input: inputs,
            output: vec![out.clone()],
            attribute,
            ..Default::default()
        });
        out
    }

    fn ints(&mut self, what: &str, values: Vec<i64>) -> Option<String> {
        let name = self.fresh(what);
        let t = Tensor::new(vec![values.len()], TensorData::I64(values))?;
        self.initializers.push(t.to_proto(&name));
        Some(name)
    }

    fn transpose(&mut self, x: &str, perm: Vec<i64>) -> String {
        if perm.iter().enumerate().all(|(i, &p)| p == i as i64) {
            return x.to_string();
        }
        self.node("Transpose", vec![x.to_string()], vec![ints_attr("perm", perm)], None)
    }

    /// Entries of a shape: a constant, or the product of the sizes of axes `axes` of
    /// `source` read off its `Shape` at run time (one entry, an int64 `[1]` value).
    fn computed_size(&mut self, source: &str, axes: &[usize]) -> Option<String> {
        let shape = self.node("Shape", vec![source.to_string()], vec![], None);
        let at = self.ints("axes", axes.iter().map(|&a| a as i64).collect())?;
        let picked = self.node("Gather", vec![shape, at], vec![int_attr("axis", 0)], None);
        Some(self.node("ReduceProd", vec![picked], vec![int_attr("keepdims", 1)], None))
    }
}

/// One entry of a reshape target: a known constant, or a computed `[1]` value.
enum Entry {
    Known(i64),
    Computed(String),
}

/// A `Reshape` of `x` to `entries` (constants gathered into one initializer when all are).
fn reshape(w: &mut Writer<'_>, x: &str, entries: Vec<Entry>, output: Option<String>) -> Option<String> {
    let target = if entries.iter().all(|e| matches!(e, Entry::Known(_))) {
        w.ints("shape", entries.iter().map(|e| if let Entry::Known(v) = e { *v } else { 0 }).collect())?
    } else {
        let mut pieces = Vec::new();
        for e in entries {
            pieces.push(match e {
                Entry::Known(v) => w.ints("entry", vec![v])?,
                Entry::Computed(name) => name,
            });
        }
        w.node("Concat", pieces, vec![int_attr("axis", 0)], None)
    };
    Some(w.node("Reshape", vec![x.to_string(), target], vec![], output))
}

/// The known product of `dims`, if every one is known.
fn known_product(dims: &[&Dim]) -> Option<i64> {
    dims.iter().try_fold(1i64, |acc, d| d.known().and_then(|v| acc.checked_mul(v)))
}

fn rewrite(node: &NodeProto, shapes: &Shapes, names: &mut Names) -> Option<Rewrite> {
    let equation = node.attr_string("equation").ok()??;
    let (a, b, y) = parse(&equation)?;
    let ([x_a, x_b], [out]) = (node.input.as_slice(), node.output.as_slice()) else { return None };
    let (sa, sb) = (shapes.shape(x_a)?, shapes.shape(x_b)?);
    if sa.len() != a.len() || sb.len() != b.len() || shapes.dtype(x_a) != shapes.dtype(x_b) {
        return None;
    }
    if !shapes.dtype(x_a).is_some_and(|d| matches!(d, DType::F32 | DType::F64 | DType::F16 | DType::I32 | DType::I64)) {
        return None;
    }
    let batch: Vec<char> = y.iter().copied().filter(|c| a.contains(c) && b.contains(c)).collect();
    let free_a: Vec<char> = y.iter().copied().filter(|c| a.contains(c) && !b.contains(c)).collect();
    let free_b: Vec<char> = y.iter().copied().filter(|c| b.contains(c) && !a.contains(c)).collect();
    let contracted: Vec<char> = a.iter().copied().filter(|c| b.contains(c) && !y.contains(c)).collect();
    let pos = |t: &[char], c: char| t.iter().position(|&d| d == c);
    // Batch sizes must agree (the operator does not broadcast labels).
    for &c in &batch {
        let (da, db) = (&sa[pos(&a, c)?], &sb[pos(&b, c)?]);
        if da != db {
            return None;
        }
    }
    let mut w = Writer { base: out.clone(), names, nodes: Vec::new(), initializers: Vec::new() };
    let nb = batch.len();

    // A -> [batch, freeA, contracted] -> [batch, Fa, K].
    let order_a: Vec<char> = batch.iter().chain(&free_a).chain(&contracted).copied().collect();
    let perm_a: Vec<i64> = order_a.iter().map(|&c| pos(&a, c).map(|p| p as i64)).collect::<Option<_>>()?;
    let ta = w.transpose(x_a, perm_a);
    let dim_a = |c: char| pos(&a, c).map(|p| &sa[p]);
    let dims_fa: Vec<&Dim> = free_a.iter().map(|&c| dim_a(c)).collect::<Option<_>>()?;
    let dims_k: Vec<&Dim> = contracted.iter().map(|&c| dim_a(c)).collect::<Option<_>>()?;
    let (fa, k) = (known_product(&dims_fa), known_product(&dims_k));
    // Positions in the transposed A of its free and contracted axes.
    let free_at: Vec<usize> = (nb..nb + free_a.len()).collect();
    let contracted_at: Vec<usize> = (nb + free_a.len()..order_a.len()).collect();
    // A merged size: known, else -1 when the target has no other unknown entry (the first
    // of the two merged entries is computed from the shape when neither is known).
    let merged = |w: &mut Writer<'_>, known: Option<i64>, other_known: bool, source: &str, at: &[usize]| -> Option<Entry> {
        Some(match known {
            Some(v) => Entry::Known(v),
            None if other_known => Entry::Known(-1),
            None => Entry::Computed(w.computed_size(source, at)?),
        })
    };
    let a3 = if free_a.len() == 1 && contracted.len() == 1 {
        ta
    } else {
        let mut entries: Vec<Entry> = (0..nb).map(|_| Entry::Known(0)).collect();
        entries.push(merged(&mut w, fa, k.is_some(), &ta, &free_at)?);
        entries.push(merged(&mut w, k, true, &ta, &contracted_at)?);
        reshape(&mut w, &ta, entries, None)?
    };

    // B -> [batch, contracted, freeB] -> [batch, K, Fb].
    let order_b: Vec<char> = batch.iter().chain(&contracted).chain(&free_b).copied().collect();
    let perm_b: Vec<i64> = order_b.iter().map(|&c| pos(&b, c).map(|p| p as i64)).collect::<Option<_>>()?;
    let tb = w.transpose(x_b, perm_b);
    let dim_b = |c: char| pos(&b, c).map(|p| &sb[p]);
    let dims_fb: Vec<&Dim> = free_b.iter().map(|&c| dim_b(c)).collect::<Option<_>>()?;
    let fb = known_product(&dims_fb);
    let contracted_at_b: Vec<usize> = (nb..nb + contracted.len()).collect();
    let free_at_b: Vec<usize> = (nb + contracted.len()..order_b.len()).collect();
    let b3 = if free_b.len() == 1 && contracted.len() == 1 {
        tb
    } else {
        let mut entries: Vec<Entry> = (0..nb).map(|_| Entry::Known(0)).collect();
        entries.push(merged(&mut w, k, fb.is_some(), &tb, &contracted_at_b)?);
        entries.push(merged(&mut w, fb, true, &tb, &free_at_b)?);
        reshape(&mut w, &tb, entries, None)?
    };

    // [batch, Fa, Fb] -> [batch, freeA, freeB] -> Y's order.
    let order_y: Vec<char> = batch.iter().chain(&free_a).chain(&free_b).copied().collect();
    let perm_y: Vec<i64> = y.iter().map(|&c| pos(&order_y, c).map(|p| p as i64)).collect::<Option<_>>()?;
    let identity = perm_y.iter().enumerate().all(|(i, &p)| p == i as i64);
    let split = !(free_a.len() == 1 && free_b.len() == 1);
    let product_out = (identity && !split).then(|| out.clone());
    let product = w.node("MatMul", vec![a3, b3], vec![], product_out);
    let split_out = (identity && split).then(|| out.clone());
    let full = if split {
        let mut entries: Vec<Entry> = (0..nb).map(|_| Entry::Known(0)).collect();
        // Each free axis: its size, or read off its operand's shape.
        for (dims, free, source, term) in [(&dims_fa, &free_a, x_a, &a), (&dims_fb, &free_b, x_b, &b)] {
            for (d, &c) in dims.iter().zip(free.iter()) {
                entries.push(match d.known() {
                    Some(v) => Entry::Known(v),
                    None => Entry::Computed(w.computed_size(source, &[pos(term, c)?])?),
                });
            }
        }
        reshape(&mut w, &product, entries, split_out)?
    } else {
        product
    };
    if !identity {
        w.node("Transpose", vec![full], vec![ints_attr("perm", perm_y)], Some(out.clone()));
    }
    Some(Rewrite { index: 0, nodes: w.nodes, initializers: w.initializers })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn equations_this_rewrite_takes() {
        assert_eq!(parse("bhqd,bhkd->bhqk"), Some(("bhqd".chars().collect(), "bhkd".chars().collect(), "bhqk".chars().collect())));
        // Implicit output: labels seen once, sorted.
        assert_eq!(parse("ij,jk").map(|p| p.2), Some(vec!['i', 'k']));
        assert_eq!(parse("...ij,jk->...ik"), None);
        assert_eq!(parse("ii,ij->j"), None, "a label twice in one term");
        assert_eq!(parse("ij,jk,kl->il"), None, "three operands");
        assert_eq!(parse("ijx,jk->ik"), None, "x is summed inside A");
    }

    #[test]
    fn one_operand_equations_this_rewrite_takes() {
        use super::parse_one;
        let labels = |s: &str| s.chars().collect::<Vec<_>>();
        assert_eq!(parse_one("bhqk->bqhk"), Some((labels("bhqk"), labels("bqhk"))));
        assert_eq!(parse_one("bij->bi"), Some((labels("bij"), labels("bi"))));
        assert_eq!(parse_one("ji"), Some((labels("ji"), labels("ij"))), "implicit output: sorted");
        assert_eq!(parse_one("ii->i"), None, "a diagonal");
        assert_eq!(parse_one("ij->ik"), None, "k is in no input");
        assert_eq!(parse_one("...ij->...ji"), None);
    }
}
