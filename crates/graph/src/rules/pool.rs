//! Pooling rules: channels pass through; a tracked spatial axis is blocked, unless the
//! window leaves it as it is.

use super::*;
use oto_onnx::op::Pool;

impl Ctx<'_, '_> {
    /// A windowed pooling (`window`) or a global one (`None`).
    pub(super) fn pool(&mut self, node: &NodeProto, window: Option<&Pool>) {
        let Some(t) = self.in_track(node, 0) else {
            return;
        };
        // tf2onnx writes the mean of a layer normalization over `[B, S, C]` so.
        if node.op() == "GlobalAveragePool" && self.written_norm(node, &t) {
            return;
        }
        let Some(od) = self.dims(&node.output[0]) else {
            self.block_node(node, "shapes unknown");
            return;
        };
        let mut out: ValueT = od.into_iter().map(AxisT::plain).collect();
        for (i, a) in t.iter().enumerate() {
            if i < 2 {
                if i < out.len() {
                    out[i] = a.clone();
                }
            } else if window.is_some_and(|p| leaves_axis(p, i - 2, t.len() - 2)) && i < out.len() {
                // Features on a spatial axis the window does not touch (Funnel's `[B, 1, S, D]`
                // pooled over the sequence alone).
                out[i] = a.clone();
            } else {
                self.block_axis_at(node, a, "pools along a tracked axis");
            }
        }
        self.set(&node.output[0], out);
    }
}

/// Whether the window of `p` leaves spatial axis `s` (of `n`) as it is: a kernel and a
/// stride of 1 there, no padding.
fn leaves_axis(p: &Pool, s: usize, n: usize) -> bool {
    let w = &p.window;
    let one = |v: &Option<Vec<i64>>| v.as_ref().is_none_or(|v| v.get(s) == Some(&1));
    let unpadded = w.pads.as_ref().is_none_or(|v| v.get(s) == Some(&0) && v.get(s + n) == Some(&0));
    w.kernel_shape.as_ref().is_some_and(|k| k.get(s) == Some(&1)) && one(&w.strides) && unpadded
}
