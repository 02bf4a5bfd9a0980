//! Shared helpers of the command-line tests: running the built `oto` binary.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

/// Serializes the tests of one file that run training jobs. libtorch's and onnxruntime's
/// worker threads spin while they wait: two jobs at once on a 2-core machine (cargo runs
/// the tests of a file on every core) take longer together than one after the other
/// (cli_prune: 255 s against 153 s), and the tests that kill workers bound how long a
/// job takes to stop.
static ONE_JOB_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Holds the machine for one test's jobs (a failed test's poisoned lock is taken over).
pub fn one_job_at_a_time() -> MutexGuard<'static, ()> {
    ONE_JOB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

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
