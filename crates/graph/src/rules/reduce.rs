//! Reduction rules: reduced axes are blocked, the others pass.

use super::*;
use oto_onnx::op::{Reduce, ReduceKind};

impl Ctx<'_, '_> {
    pub(super) fn reduce(&mut self, node: &NodeProto, red: &Reduce) -> Result<(), AnalysisError> {
        let Some(t) = self.in_track(node, 0) else {
            return Ok(());
        };
        let listed = red.axes.resolve(self.graph, node, Some(&self.shapes), "axes")?;
        let rank = t.len();
        let axes: Vec<usize> = match &listed {
            Some(a) if !a.is_empty() => a.iter().filter_map(|&x| norm_axis(x, rank)).collect(),
            _ if red.noop_with_empty_axes => {
                self.set(&node.output[0], t);
                return Ok(());
            }
            _ => (0..rank).collect(),
        };
        let keeps = !matches!(red.kind, ReduceKind::LogSum | ReduceKind::LogSumExp);
        let mut out = Vec::new();
        for (i, a) in t.iter().enumerate() {
            if axes.contains(&i) {
                self.block_axis_at(node, a, &format!("{} reduces over these channels", node.op()));
                if red.keepdims {
                    out.push(AxisT::plain(Dim::Known(1)));
                }
            } else {
                let mut a = a.clone();
                if !keeps {
                    a.map_zero(&|_| false);
                }
                out.push(a);
            }
        }
        self.set(&node.output[0], out);
        Ok(())
    }
}
