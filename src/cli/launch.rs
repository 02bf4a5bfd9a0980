//! `oto prune --nproc N`: starts N local worker processes of the same command, each one
//! rank of a data-parallel job (the environment torchrun would set), and watches them: a
//! rank that fails or is killed stops the job, whose exit code is that rank's.

use crate::error::input_error;
use anyhow::{Context, Result};
use std::process::{Child, Command};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the other ranks get to stop by themselves (their collectives fail at once
/// when a peer is gone) before they are killed.
const GRACE: Duration = Duration::from_secs(30);

/// The job ended with a non-zero exit code that was already reported.
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// A free TCP port on the loopback interface for rank 0's store.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free TCP port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// Runs this command line again as `nproc` ranks (`threads` libtorch threads each: the
/// cores shared out when not given) and waits for them.
pub fn launch(nproc: usize, threads: Option<usize>) -> Result<()> {
    if !oto_torch::dist::AVAILABLE {
        return Err(input_error(anyhow::anyhow!("--nproc: {}", oto_torch::dist::MISSING)));
    }
    let port = free_port()?;
    let exe = std::env::current_exe().context("cannot find the oto executable to start the workers")?;
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if threads.is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        args.extend(["--threads".into(), (cores / nproc).max(1).to_string().into()]);
    }
    // Ctrl-C reaches every worker (one process group on a terminal): they agree on a step,
    // checkpoint and exit 130, which is forwarded; the launcher itself only waits.
    let ignored = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&ignored))?;
    }
    let mut children: Vec<Option<Child>> = Vec::with_capacity(nproc);
    for rank in 0..nproc {
        let child = Command::new(&exe)
            .args(&args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .spawn();
        match child {
            Ok(c) => children.push(Some(c)),
            Err(e) => {
                stop(&mut children);
                return Err(anyhow::anyhow!("cannot start worker {rank} ({}): {e}", exe.display()));
            }
        }
    }
    let mut failure: Option<(usize, String, u8)> = None;
    let mut deadline: Option<Instant> = None;
    loop {
        for (rank, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            let Some(status) = child.try_wait().with_context(|| format!("waiting for rank {rank}"))? else { continue };
            *slot = None;
            if status.success() || failure.is_some() {
                continue;
            }
            let (what, code) = match status.code() {
                Some(c) => (format!("exited with code {c}"), u8::try_from(c).unwrap_or(1)),
                None => ("was killed by a signal".to_string(), 1),
            };
            failure = Some((rank, what, code));
            deadline = Some(Instant::now() + GRACE);
        }
        if children.iter().all(Option::is_none) {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            stop(&mut children);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match failure {
        None => Ok(()),
        Some((rank, what, code)) => {
            if code != 130 {
                eprintln!(
                    "error: rank {rank} of {nproc} {what}; every rank was stopped (the last checkpoint written is kept: continue with `oto prune --resume OUT`)"
                );
            }
            Err(Exit(code).into())
        }
    }
}

/// Kills the workers still running and reaps them.
fn stop(children: &mut [Option<Child>]) {
    for child in children.iter_mut().flatten() {
        let _ = child.kill();
        let _ = child.wait();
    }
}
