//! Shared helpers of the command-line tests: running the built `oto` binary.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `oto` binary with `args` and collects its output.
pub fn oto(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oto")).args(args).output().unwrap()
}

/// Lossy UTF-8 text of captured output.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A path as a `&str` argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
