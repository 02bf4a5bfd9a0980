//! Writing output files: each one atomically (a temporary file, then a rename), so that
//! an interrupted write never leaves a truncated file behind.

use crate::error::input_error;
use anyhow::Result;
use serde::Serialize;
use std::path::Path;

/// Writes `contents` to `path` atomically ([`oto_onnx::atomic`]: a temporary file, then a rename); a path
/// that cannot be created is an input error (exit code 2).
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let mut file = oto_onnx::atomic::AtomicFile::create(path).map_err(input_error)?;
    file.write_all(contents, path)?;
    file.commit()?;
    Ok(())
}

/// Writes `value` as pretty JSON to `path` atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, serde_json::to_string_pretty(value)?.as_bytes())
}
