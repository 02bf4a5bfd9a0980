//! Pooling rules: channels pass through; a tracked spatial axis is blocked.

use super::*;

impl Ctx<'_, '_> {
    pub(super) fn pool(&mut self, node: &NodeProto) {
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
            } else {
                self.block_axis_at(node, a, "pools along a tracked axis");
            }
        }
        self.set(&node.output[0], out);
    }
}
