//! Tables computed at run time: a float initializer rearranged by layout operators, or
//! transformed elementwise, before it meets channels. DINOv2's and YOLOS's position
//! tables are interpolated to the image size (`Reshape`, `Transpose`, bicubic `Resize`,
//! `Transpose`, `Reshape`, `Concat` with the class token's entry) and then added to the
//! residual; SwinV2 scales each head's scores by `exp(clip(logit_scale))`. No rule opens
//! a space at such a table (spaces start at layers), so the width it meets stayed
//! blocked: the table does not follow the channels. The analysis seeds the table
//! instead: its axes are tracked from the initializer on, as producers (zeroed with their
//! channels), and the operators' own rules carry them, and whether they stay zero, to the
//! `Add`, `Sub` or `Mul` where they join the width.
//!
//! Which axis of the table meets the width is known only once the rules have carried
//! it there, so [`crate::analyze`] first runs with every axis seeded and keeps the axes
//! that end in a prunable group with a layer's producers; the other axes (positions)
//! are left as they were.

use super::*;
use std::collections::HashSet;

/// Layout operators and elementwise functions a table is carried through, reading it as
/// their data (input 0).
fn carries_table(op: &Op) -> bool {
    matches!(
        op,
        Op::Reshape { .. }
            | Op::Flatten { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Transpose { .. }
            | Op::Cast { .. }
            | Op::Resize(_)
            | Op::Slice(_)
            | Op::Expand
            // Elementwise functions of it (SwinV2's per-head `exp(clip(logit_scale))`).
            | Op::Unary(_)
            | Op::Clip(_)
    )
}

/// Every (initializer, axis longer than 1) of the tables [`crate::analyze`] may seed: a
/// float initializer whose values reach, through layout operators and elementwise
/// functions only (and `Concat`s with other constants, products and sums with constant
/// scalars), an `Add`, a `Sub` or a `Mul` with a computed value, where nothing else reads
/// them but `Shape`. Tables that only a `Slice` reads before the `Add` are left to
/// the elementwise rule, which cuts them (attention biases, ALiBi).
pub(crate) fn table_axes(cx: &Ctx<'_, '_>) -> Vec<(String, usize)> {
    let mut axes = Vec::new();
    for t in &cx.graph.proto.initializer {
        let Some(name) = t.name.as_deref() else { continue };
        if !cx.float_init(name) || t.dims.len() < 2 || cx.graph.is_output(name) || !cx.laid_out_table(name) {
            continue;
        }
        for (axis, &n) in t.dims.iter().enumerate() {
            if n > 1 {
                axes.push((name.to_string(), axis));
            }
        }
    }
    axes
}

impl Ctx<'_, '_> {
    /// Whether the initializer `init` is a table laid out or transformed by operators other
    /// than `Slice` before an `Add`, `Sub` or `Mul` meets it with a computed value
    /// ([`table_axes`]).
    fn laid_out_table(&self, init: &str) -> bool {
        let mut stack = vec![init.to_string()];
        let mut seen: HashSet<String> = HashSet::new();
        let (mut rearranged, mut meets) = (false, false);
        while let Some(v) = stack.pop() {
            if !seen.insert(v.clone()) {
                continue;
            }
            if self.graph.is_output(&v) {
                return false;
            }
            for u in self.graph.consumers(&v) {
                let node = &self.graph.proto.node[u.node];
                let Ok(op) = Op::parse(self.graph, node) else { return false };
                // The operand beside the table, for binary operators.
                let other = node.input.get(1 - u.input.min(1));
                match op {
                    Op::Shape { .. } | Op::Size => {}
                    Op::Concat { .. } if node.input.iter().filter(|i| !i.is_empty()).all(|i| self.constant_table(i, 16)) => {
                        stack.extend(node.output.first().cloned());
                    }
                    // Rows of a laid-out table picked (YOLOS's mid-layer position tables, one
                    // per layer); an initializer read by a Gather is an embedding table,
                    // which the Gather rule opens a space at.
                    Op::Gather { .. } if u.input == 0 && !self.is_init(&v) => {
                        rearranged = true;
                        stack.extend(node.output.first().cloned());
                    }
                    ref o if carries_table(o) && u.input == 0 => {
                        rearranged |= !matches!(o, Op::Slice(_));
                        stack.extend(node.output.first().cloned());
                    }
                    // Scaled or shifted by a constant scalar: still the table's channels.
                    Op::Binary(_) if other.is_some_and(|o| self.scalar_constant(o)) => {
                        rearranged = true;
                        stack.extend(node.output.first().cloned());
                    }
                    Op::Binary(B::Add | B::Sub | B::Mul) => {
                        let Some(other) = other else { return false };
                        if self.constant_table(other, 16) {
                            return false;
                        }
                        meets = true;
                    }
                    _ => return false,
                }
            }
        }
        rearranged && meets
    }

    /// Whether `value` is a constant of at most one element.
    fn scalar_constant(&self, value: &str) -> bool {
        self.const_floats(value).is_some_and(|v| v.len() <= 1)
    }

    /// Whether `name` is an initializer of floats.
    fn float_init(&self, name: &str) -> bool {
        self.graph.initializer(name).and_then(|t| oto_onnx::DType::from_onnx(t.data_type.unwrap_or(0))).is_some_and(|d| d.is_float())
    }

    /// Whether `value` is a float initializer or made of them by the operators a table is
    /// carried through ([`carries_table`], a `Gather` of rows) and `Concat`s, looking
    /// `depth` nodes back.
    fn constant_table(&self, value: &str, depth: usize) -> bool {
        if self.is_init(value) {
            return self.float_init(value);
        }
        let Some(depth) = depth.checked_sub(1) else { return false };
        let Some((_, node)) = self.graph.producer_node(value) else { return false };
        match Op::parse(self.graph, node) {
            Ok(Op::Concat { .. }) => node.input.iter().filter(|i| !i.is_empty()).all(|i| self.constant_table(i, depth)),
            // (A Gather of an initializer is an embedding lookup, not a table.)
            Ok(Op::Gather { .. }) => node.input.first().is_some_and(|i| !self.is_init(i) && self.constant_table(i, depth)),
            Ok(o) if carries_table(&o) => node.input.first().is_some_and(|i| self.constant_table(i, depth)),
            _ => false,
        }
    }

    /// Tracks every axis of `seeds` from its initializer on, a new space per axis whose
    /// slices of the table are producers: zeroed with their channels.
    pub(crate) fn seed_tables(&mut self, seeds: &[(String, usize)]) {
        for (init, axis) in seeds {
            let Some(dims) = self.init_dims(init) else { continue };
            let Some(&n) = dims.get(*axis) else { continue };
            let mut t: ValueT = match self.tracks.get(init.as_str()) {
                Some(t) => t.clone(),
                None => dims.iter().map(|&d| AxisT::plain(Dim::Known(d as i64))).collect(),
            };
            let sp = self.new_space(n);
            self.member(init, *axis, sp, 0, 1, 1, Role::Producer);
            t[*axis] = AxisT::unit(sp, true);
            self.set(init, t);
        }
    }
}
