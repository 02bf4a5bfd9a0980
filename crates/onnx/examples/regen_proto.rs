//! Regenerates `src/proto/onnx.rs` from the vendored `proto/onnx.proto`.
//!
//! Run with `cargo run -p oto-onnx --example regen_proto` (or `make proto`).
//! Uses `protox` to parse the `.proto`, so no system `protoc` is needed.

use std::path::{Path, PathBuf};

#[path = "../tests/common/codegen.rs"]
mod codegen;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let generated = codegen::generate(&crate_dir)?;
    let target: &Path = &crate_dir.join("src/proto/onnx.rs");
    std::fs::write(target, generated)?;
    println!("wrote {}", target.display());
    Ok(())
}
