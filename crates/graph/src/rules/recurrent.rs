//! Recurrent layers (`RNN`, `GRU`, `LSTM`): the hidden units are elements. A unit whose
//! rows of `W` and `R` (in every gate block), biases and peepholes are zero computes a zero
//! state from a zero start: `tanh(0) = 0` (RNN); GRU's candidate is `tanh(0) = 0` and its
//! state `z * h + (1 - z) * 0` stays 0; LSTM's cell `f * c + i * tanh(0)` stays 0 and its
//! output `o * tanh(0) = 0`. Its column of `R` then multiplies zeros, so the unit is cut
//! from `W`, `R` (rows and column), the biases, the peepholes and the initial states, and
//! `hidden_size` drops by one. A bidirectional layer's unit is the same index in both
//! directions (`hidden_size` is shared). The input features are consumed by `W`'s columns.
//! Only where this holds: default activations, no coupled input/forget gates, weights
//! stored as initializers, initial states absent or all-zero initializers.

use super::*;
use crate::space::Outer;
use oto_onnx::op::{Rnn, RnnKind};

impl Ctx<'_, '_> {
    pub(super) fn recurrent(&mut self, node: &NodeProto, r: &Rnn) {
        let input = |k: usize| ops::input(node, k).map(str::to_string);
        let (w, rec) = (input(1).unwrap_or_default(), input(2).unwrap_or_default());
        let (Some(wd), Some(rd)) = (self.init_dims(&w), self.init_dims(&rec)) else {
            self.block_node(node, "the weights of the recurrent layer are not initializers");
            return;
        };
        // Absent, or a zero initializer (which is cut with the units).
        let zero_start = |ctx: &Self, k: usize| input(k).is_none_or(|v| ctx.is_init(&v) && ctx.is_zero_const(&v));
        let name = node.name.clone().unwrap_or_default();
        let why = if !r.default_activations_used() {
            Some("its activations are not the defaults (a zero unit may not stay zero)")
        } else if r.input_forget {
            Some("its input and forget gates are coupled")
        } else if !zero_start(self, 5) || !zero_start(self, 6) {
            Some("its initial state is not zero")
        } else if r.hidden_size.is_none() || name.is_empty() {
            Some("it has no hidden_size attribute or no name to edit it by")
        } else if [3usize, 7].iter().any(|&k| input(k).is_some_and(|v| !self.is_init(&v))) {
            Some("its biases or peepholes are computed")
        } else {
            None
        };
        let gates = r.kind.gates();
        let hidden = rd.get(2).copied().unwrap_or(0);
        let shapes_ok = wd.len() == 3 && rd.len() == 3 && wd[1] == gates * hidden && rd[1] == gates * hidden && hidden > 0;
        // The input features: columns of W.
        let x = input(0).unwrap_or_default();
        if let Some(t) = self.track(&x).cloned() {
            if t.len() == 3 {
                for a in &t[..2] {
                    self.block_axis_at(node, a, "a recurrent layer mixes along a tracked sequence or batch axis");
                }
                if shapes_ok {
                    self.consume(node, &w, 2, &t[2]);
                } else {
                    self.block_axis_at(node, &t[2], "the recurrent layer's weights have unexpected shapes");
                }
            }
        }
        let out_dims: Vec<Option<Vec<Dim>>> = node.output.iter().map(|o| self.dims(o)).collect();
        if let Some(reason) = why.or((!shapes_ok).then_some("its weights have unexpected shapes")) {
            // The units stay: every initializer but W (whose columns the input features
            // may still lose) is read whole.
            // Listed as blocked: its units open no group that could carry the reason.
            let whole: Vec<String> = node.input.iter().skip(2).filter(|v| !v.is_empty()).cloned().collect();
            self.freeze_reads(node, &whole, &format!("the recurrent layer is not pruned: {reason}"));
            self.blocked_op(node, &format!("its units are not pruned: {reason}"));
            return;
        }
        let sp = self.new_space(hidden);
        let repeated = |n: usize| if n > 1 { Outer { count: n, period: hidden } } else { Outer::ONCE };
        self.member_repeated(&w, 1, sp, 0, 1, 1, repeated(gates), Role::Producer);
        self.member_repeated(&rec, 1, sp, 0, 1, 1, repeated(gates), Role::Producer);
        self.member(&rec, 2, sp, 0, 1, 1, Role::Consumer);
        if let Some(b) = input(3) {
            self.member_repeated(&b, 1, sp, 0, 1, 1, repeated(2 * gates), Role::Producer);
        }
        if r.kind == RnnKind::Lstm {
            if let Some(p) = input(7) {
                self.member_repeated(&p, 1, sp, 0, 1, 1, repeated(3), Role::Producer);
            }
        }
        for k in [5usize, 6] {
            if let Some(s) = input(k) {
                self.member(&s, 2, sp, 0, 1, 1, Role::Aux);
            }
        }
        self.spaces.shape_ref(
            RefAt::Const(ShapeLocation::Attribute { node: name.clone(), attribute: "hidden_size".into() }, false),
            0,
            &name,
            vec![Part::Fixed(sp, 1, 1)],
        );
        // Y's last axis and the states' last axis are the units.
        for (k, dims) in out_dims.into_iter().enumerate() {
            let (Some(out), Some(dims)) = (node.output.get(k).filter(|o| !o.is_empty()), dims) else { continue };
            let mut t: ValueT = dims.iter().map(|d| AxisT::plain(d.clone())).collect();
            if let Some(last) = t.last_mut() {
                *last = AxisT::unit(sp, true);
            }
            let out = out.clone();
            self.set(&out, t);
        }
    }
}
