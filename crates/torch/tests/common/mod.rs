//! Shared helpers of the integration tests: the zoo and the reference files.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// The arrays of an npz file by name.
pub fn read_npz_map(path: &Path) -> HashMap<String, oto_onnx::Tensor> {
    oto_onnx::npz::read_npz(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).into_iter().collect()
}

/// `(max |y - r|, 1e-4 * max(1, max |r|))` computed in f64.
pub fn rel_error(y: &Tensor, r: &Tensor) -> (f64, f64) {
    let y = y.to_kind(Kind::Double).to_device(Device::Cpu);
    let r = r.to_kind(Kind::Double).to_device(Device::Cpu);
    let err = (&y - &r).abs().max().double_value(&[]);
    let tol = 1e-4 * r.abs().max().double_value(&[]).max(1.0);
    (err, tol)
}
