//! Recurrent layers: `RNN`, `GRU`, `LSTM` (what `torch.nn.LSTM`/`GRU`/`RNN` and Keras'
//! recurrent layers export). Shapes; not counted in MACs.
//!
//! Inputs `X, W, R, B, sequence_lens, initial_h` (and `initial_c, P` for LSTM); `W` is
//! `[directions, gates * H, input]`, `R` `[directions, gates * H, H]`, `B`
//! `[directions, 2 * gates * H]`, with gates 1 (RNN), 3 (GRU: z, r, h) or 4 (LSTM: i, o,
//! f, c). Outputs `Y` `[seq, directions, batch, H]` and `Y_h` (`Y_c`) `[directions,
//! batch, H]`; with `layout = 1` the batch comes first: `X` `[batch, seq, input]`, `Y`
//! `[batch, seq, directions, H]`, the states `[batch, directions, H]`.

use crate::graph::NodeExt;
use crate::proto::NodeProto;
use crate::shape::{fmt_shape, vt, Dim, Infer, ValueType, R};

/// Which recurrent layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RnnKind {
    /// `RNN`: one gate.
    Rnn,
    /// `GRU`: update, reset and hidden gates.
    Gru,
    /// `LSTM`: input, output, forget and cell gates.
    Lstm,
}

impl RnnKind {
    /// Gates per hidden unit (the blocks of `W`'s and `R`'s axis 1).
    pub fn gates(self) -> usize {
        match self {
            RnnKind::Rnn => 1,
            RnnKind::Gru => 3,
            RnnKind::Lstm => 4,
        }
    }
}

/// The direction a recurrent layer reads its sequence in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// First to last.
    Forward,
    /// Last to first.
    Reverse,
    /// Both, as two directions of the outputs.
    Bidirectional,
}

impl Direction {
    /// The number of directions (axis 0 of the weights).
    pub fn count(self) -> usize {
        if self == Direction::Bidirectional {
            2
        } else {
            1
        }
    }
}

/// `RNN`, `GRU` or `LSTM` and its attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Rnn {
    /// Which layer.
    pub kind: RnnKind,
    /// `hidden_size` (required by the spec; inferred from `R` when missing).
    pub hidden_size: Option<i64>,
    /// `direction`.
    pub direction: Direction,
    /// `layout`: 0 sequence first, 1 batch first.
    pub layout: i64,
    /// `activations`, empty for the defaults.
    pub activations: Vec<String>,
    /// `clip`, if any.
    pub clip: Option<f32>,
    /// GRU's `linear_before_reset`.
    pub linear_before_reset: bool,
    /// LSTM's `input_forget` (coupled input and forget gates).
    pub input_forget: bool,
}

impl Rnn {
    /// Reads the attributes of an `RNN`/`GRU`/`LSTM` node.
    pub fn parse(node: &NodeProto, kind: RnnKind) -> Result<Rnn, String> {
        let direction = match node.attr_string("direction")?.as_deref().unwrap_or("forward") {
            "forward" => Direction::Forward,
            "reverse" => Direction::Reverse,
            "bidirectional" => Direction::Bidirectional,
            other => return Err(format!("unknown direction '{other}'")),
        };
        let activations = match node.attribute.iter().find(|a| a.name.as_deref() == Some("activations")) {
            Some(a) => a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect(),
            None => Vec::new(),
        };
        Ok(Rnn {
            kind,
            hidden_size: node.attr_int("hidden_size")?,
            direction,
            layout: node.attr_int_or("layout", 0)?,
            activations,
            clip: node.attr_float("clip")?,
            linear_before_reset: node.attr_int_or("linear_before_reset", 0)? != 0,
            input_forget: node.attr_int_or("input_forget", 0)? != 0,
        })
    }

    /// The default activations of the layer, as ONNX names them, one set per direction.
    pub fn default_activations(&self) -> Vec<&'static str> {
        let one: &[&str] = match self.kind {
            RnnKind::Rnn => &["Tanh"],
            RnnKind::Gru => &["Sigmoid", "Tanh"],
            RnnKind::Lstm => &["Sigmoid", "Tanh", "Tanh"],
        };
        (0..self.direction.count()).flat_map(|_| one.iter().copied()).collect()
    }

    /// Whether the activations are the defaults (given explicitly or not; case as ONNX
    /// writes them, compared without case).
    pub fn default_activations_used(&self) -> bool {
        self.activations.is_empty()
            || self.activations.len() == self.default_activations().len()
                && self.activations.iter().zip(self.default_activations()).all(|(a, d)| a.eq_ignore_ascii_case(d))
    }
}

impl Infer<'_, '_> {
    pub(crate) fn rnn(&mut self, node: &NodeProto, r: &Rnn) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        let w = self.shape(node, 1)?;
        let rec = self.shape(node, 2)?;
        if x.len() != 3 || w.len() != 3 || rec.len() != 3 {
            return Err(self.fail(node, format!("X {}, W {} and R {} must be 3-D", fmt_shape(&x), fmt_shape(&w), fmt_shape(&rec))));
        }
        let hidden = match r.hidden_size {
            Some(h) => Dim::Known(h),
            None => rec[2].clone(),
        };
        let dirs = Dim::Known(r.direction.count() as i64);
        let (seq, batch) = if r.layout == 0 { (x[0].clone(), x[1].clone()) } else { (x[1].clone(), x[0].clone()) };
        let dtype = self.dtype(node, 0);
        let (y, state) = if r.layout == 0 {
            (vec![seq, dirs.clone(), batch.clone(), hidden.clone()], vec![dirs, batch, hidden])
        } else {
            (vec![batch.clone(), seq, dirs.clone(), hidden.clone()], vec![batch, dirs, hidden])
        };
        let mut out = vec![vt(dtype, y), vt(dtype, state.clone())];
        if r.kind == RnnKind::Lstm {
            out.push(vt(dtype, state));
        }
        Ok(out.into_iter().take(node.output.len().max(1)).collect())
    }
}
