//! Pooling: `MaxPool`, `AveragePool`, `LpPool` over a window ([`Window`], shared with the
//! convolutions), and their `Global*` forms over every spatial axis. Not counted in MACs.

use super::conv::Window;
use crate::graph::NodeExt;
use crate::proto::NodeProto;
use crate::shape::{vt, Dim, Infer, ValueType, R};
use crate::tensor::DType;

/// Which pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// `MaxPool`, `GlobalMaxPool`.
    Max,
    /// `AveragePool`, `GlobalAveragePool`.
    Average,
    /// `LpPool`, `GlobalLpPool`.
    Lp,
}

impl PoolKind {
    /// The kind of a windowed pool's operator name.
    pub fn parse(op: &str) -> Option<PoolKind> {
        match op {
            "MaxPool" => Some(PoolKind::Max),
            "AveragePool" => Some(PoolKind::Average),
            "LpPool" => Some(PoolKind::Lp),
            _ => None,
        }
    }
}

/// `MaxPool`, `AveragePool`, `LpPool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Which pooling.
    pub kind: PoolKind,
    /// Window attributes (`kernel_shape` is required by the shapes and the executor).
    pub window: Window,
    /// `ceil_mode`.
    pub ceil_mode: bool,
    /// `count_include_pad` (AveragePool).
    pub count_include_pad: bool,
}

impl Pool {
    /// Reads the attributes of a pooling node.
    pub fn parse(node: &NodeProto, kind: PoolKind) -> Result<Pool, String> {
        Ok(Pool {
            kind,
            window: Window::parse(node)?,
            ceil_mode: node.attr_int_or("ceil_mode", 0)? != 0,
            count_include_pad: node.attr_int_or("count_include_pad", 0)? != 0,
        })
    }
}

impl Infer<'_, '_> {
    pub(crate) fn pool(&mut self, node: &NodeProto, p: &Pool) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        if x.len() < 3 {
            return Err(self.fail(node, format!("input has rank {}, expected at least 3", x.len())));
        }
        if p.window.kernel_shape.is_none() {
            return Err(self.fail(node, "has no kernel_shape"));
        }
        let a = self.conv_attrs(node, &p.window, x.len() - 2, &[])?;
        let mut out = x[..2].to_vec();
        for i in 0..x.len() - 2 {
            out.push(self.window_out(node, &a, i, &x[i + 2], p.ceil_mode)?);
        }
        Ok(vec![vt(self.dtype(node, 0), out.clone()), vt(Some(DType::I64), out)])
    }

    pub(crate) fn global_pool(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        if x.len() < 2 {
            return Err(self.fail(node, format!("input has rank {}, expected at least 2", x.len())));
        }
        let mut out = x[..2].to_vec();
        out.resize(x.len(), Dim::Known(1));
        Ok(vec![vt(self.dtype(node, 0), out)])
    }
}
