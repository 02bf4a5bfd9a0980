//! `RNN`, `GRU` and `LSTM` as ONNX defines them (gate orders `zrh` and `iofc`, biases
//! `[Wb, Rb]`, LSTM's peepholes `[Pi, Po, Pf]`), one time step after another with libtorch
//! operations, so training differentiates through them. The default activations only;
//! `clip`, `input_forget` and `sequence_lens` (other than every sequence whole) are
//! refused with the node named.

use super::{Kernel, OpError, OpResult};
use oto_onnx::op::{Direction, Rnn, RnnKind};
use oto_onnx::proto::NodeProto;
use tch::Tensor;

/// The kernel of a recurrent node.
pub(super) fn compile(node: &NodeProto, r: &Rnn) -> Result<Kernel, String> {
    if !r.default_activations_used() {
        return Err(format!("activations {:?} are not supported (only the defaults {:?})", r.activations, r.default_activations()));
    }
    if r.clip.is_some() {
        return Err("the 'clip' attribute is not supported".into());
    }
    if r.input_forget {
        return Err("input_forget = 1 is not supported".into());
    }
    if !matches!(r.layout, 0 | 1) {
        return Err(format!("layout {} is not 0 or 1", r.layout));
    }
    let r = r.clone();
    let outputs = node.output.len();
    Ok(Box::new(move |ctx| {
        let mut x = ctx.input(0)?.shallow_clone();
        if r.layout == 1 {
            x = x.f_transpose(0, 1)?;
        }
        let (w, rec) = (ctx.input(1)?, ctx.input(2)?);
        let [seq, batch, _] = x.size()[..] else { return Err(OpError("X must be 3-D".into())) };
        let hidden = rec.size().get(2).copied().ok_or("R must be 3-D")?;
        if r.hidden_size.is_some_and(|h| h != hidden) {
            return Err(OpError(format!("hidden_size {:?} but R is {:?}", r.hidden_size, rec.size())));
        }
        if let Some(lens) = ctx.opt(4) {
            let lens = super::host_ints(lens)?;
            if lens.iter().any(|&l| l != seq) {
                return Err(OpError(format!("sequence_lens {lens:?} shorter than the sequence ({seq}) are not supported")));
            }
        }
        let state = |k: usize| -> OpResult<Option<Tensor>> {
            Ok(match ctx.opt(k) {
                Some(t) if r.layout == 1 => Some(t.f_transpose(0, 1)?),
                Some(t) => Some(t.shallow_clone()),
                None => None,
            })
        };
        let (h0, c0) = (state(5)?, if r.kind == RnnKind::Lstm { state(6)? } else { None });
        let gates = r.kind.gates() as i64;
        let mut ys = Vec::new();
        let mut hs = Vec::new();
        let mut cs = Vec::new();
        for d in 0..r.direction.count() as i64 {
            let reverse = r.direction == Direction::Reverse || d == 1;
            let (wd, rd) = (w.f_select(0, d)?, rec.f_select(0, d)?);
            let (wb, rb) = match ctx.opt(3) {
                Some(b) => {
                    let b = b.f_select(0, d)?;
                    (Some(b.f_narrow(0, 0, gates * hidden)?), Some(b.f_narrow(0, gates * hidden, gates * hidden)?))
                }
                None => (None, None),
            };
            let zeros = || Tensor::f_zeros([batch, hidden], (x.kind(), x.device()));
            let mut h = match &h0 {
                Some(t) => t.f_select(0, d)?,
                None => zeros()?,
            };
            let mut c = match &c0 {
                Some(t) => t.f_select(0, d)?,
                None => zeros()?,
            };
            let peep = match (r.kind, ctx.opt(7)) {
                (RnnKind::Lstm, Some(p)) => Some(p.f_select(0, d)?.f_chunk(3, 0)?),
                _ => None,
            };
            // The input projection of every step at once: [seq, batch, gates * H].
            let mut xw = x.f_matmul(&wd.f_transpose(0, 1)?)?;
            if let Some(wb) = &wb {
                xw = xw.f_add(wb)?;
            }
            let rt = rd.f_transpose(0, 1)?;
            let mut out: Vec<Tensor> = Vec::with_capacity(seq as usize);
            let steps: Vec<i64> = if reverse { (0..seq).rev().collect() } else { (0..seq).collect() };
            for t in steps {
                let xt = xw.f_select(0, t)?;
                match r.kind {
                    RnnKind::Rnn => {
                        let mut a = xt.f_add(&h.f_matmul(&rt)?)?;
                        if let Some(rb) = &rb {
                            a = a.f_add(rb)?;
                        }
                        h = a.f_tanh()?;
                    }
                    RnnKind::Gru => {
                        let xg = xt.f_chunk(3, 1)?;
                        let rg = rt.f_chunk(3, 1)?;
                        let rbg = rb.as_ref().map(|b| b.f_chunk(3, 0)).transpose()?;
                        let with = |v: Tensor, k: usize| -> OpResult<Tensor> {
                            Ok(match &rbg {
                                Some(b) => v.f_add(&b[k])?,
                                None => v,
                            })
                        };
                        let z = with(xg[0].f_add(&h.f_matmul(&rg[0])?)?, 0)?.f_sigmoid()?;
                        let reset = with(xg[1].f_add(&h.f_matmul(&rg[1])?)?, 1)?.f_sigmoid()?;
                        let candidate = if r.linear_before_reset {
                            xg[2].f_add(&reset.f_mul(&with(h.f_matmul(&rg[2])?, 2)?)?)?
                        } else {
                            with(xg[2].f_add(&reset.f_mul(&h)?.f_matmul(&rg[2])?)?, 2)?
                        }
                        .f_tanh()?;
                        // H = (1 - z) * h~ + z * H_prev
                        h = candidate.f_sub(&z.f_mul(&candidate)?)?.f_add(&z.f_mul(&h)?)?;
                    }
                    RnnKind::Lstm => {
                        let mut a = xt.f_add(&h.f_matmul(&rt)?)?;
                        if let Some(rb) = &rb {
                            a = a.f_add(rb)?;
                        }
                        let g = a.f_chunk(4, 1)?;
                        let (mut i, mut o, mut f) = (g[0].shallow_clone(), g[1].shallow_clone(), g[2].shallow_clone());
                        if let Some(p) = &peep {
                            i = i.f_add(&p[0].f_mul(&c)?)?;
                            f = f.f_add(&p[2].f_mul(&c)?)?;
                        }
                        let (i, f) = (i.f_sigmoid()?, f.f_sigmoid()?);
                        let cell = g[3].f_tanh()?;
                        c = f.f_mul(&c)?.f_add(&i.f_mul(&cell)?)?;
                        if let Some(p) = &peep {
                            o = o.f_add(&p[1].f_mul(&c)?)?;
                        }
                        h = o.f_sigmoid()?.f_mul(&c.f_tanh()?)?;
                    }
                }
                out.push(h.shallow_clone());
            }
            if reverse {
                out.reverse();
            }
            ys.push(Tensor::f_stack(&out, 0)?);
            hs.push(h);
            cs.push(c);
        }
        // Y [seq, dirs, batch, H]; the states [dirs, batch, H] (batch first with layout 1).
        let mut y = Tensor::f_stack(&ys, 1)?;
        let (mut yh, mut yc) = (Tensor::f_stack(&hs, 0)?, Tensor::f_stack(&cs, 0)?);
        if r.layout == 1 {
            y = y.f_permute([2, 0, 1, 3])?;
            yh = yh.f_transpose(0, 1)?;
            yc = yc.f_transpose(0, 1)?;
        }
        let mut all = vec![y, yh];
        if r.kind == RnnKind::Lstm {
            all.push(yc);
        }
        all.truncate(outputs.max(1));
        Ok(all)
    }))
}
