//! Shared by the `regen_proto` example and the drift test: turns the vendored
//! `onnx.proto` into Rust source with protox (parser) and prost-build (codegen).

use std::path::Path;

/// Returns the generated Rust source for `proto/onnx.proto` under `crate_dir`.
pub fn generate(crate_dir: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let proto_dir = crate_dir.join("proto");
    let fds = protox::compile([proto_dir.join("onnx.proto")], [&proto_dir])?;
    let out = tempfile::tempdir()?;
    prost_build::Config::new()
        // `bytes` fields (raw tensor data) as `bytes::Bytes`, so decoding from a
        // memory-mapped file slices the mapping instead of copying the weights.
        .bytes(["."])
        .out_dir(out.path())
        .compile_fds(fds)?;
    Ok(std::fs::read_to_string(out.path().join("onnx.rs"))?)
}
