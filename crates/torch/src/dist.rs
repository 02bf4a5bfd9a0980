//! Data-parallel communication on PyTorch's c10d (the engine of torch.distributed):
//! a TCPStore rendezvous and a Gloo process group (CPU tensors) or an NCCL one (CUDA
//! tensors), through the C++ shim `csrc/c10d_shim.cpp` that build.rs compiles against
//! libtorch's own headers.
//!
//! A group is joined from the standard environment ([`DistEnv::from_env`]: `RANK`,
//! `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`, as torchrun and Slurm
//! wrappers set them). Without the Gloo headers at build time the shim is not built:
//! [`AVAILABLE`] is `false` and [`ProcessGroup::init`] says what to install.

use crate::error::{Error, Result};
use std::time::Duration;
use tch::{Device, Tensor};

/// Whether this build has the distributed path (the shim was compiled).
pub const AVAILABLE: bool = cfg!(oto_c10d);

/// Whether this build has the NCCL backend (CUDA tensors).
pub const HAS_NCCL: bool = cfg!(oto_c10d_nccl);

/// What to do when the distributed path was not built.
pub const MISSING: &str = "this oto was built without data-parallel training (no Gloo headers at build time, or OTO_C10D=0): \
     install Debian's libgloo-dev (`make setup` as root does) or set GLOO_INCLUDE_DIR, and rebuild";

/// Bytes per all-reduce bucket (DDP's default is 25 MiB).
pub const BUCKET_BYTES: usize = 25 << 20;

/// The place of this process in a data-parallel job, as launchers describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistEnv {
    /// This process's rank, from 0.
    pub rank: usize,
    /// The number of processes.
    pub world: usize,
    /// The rank on this machine (the CUDA device index with one GPU per process).
    pub local_rank: usize,
    /// The address of rank 0's store.
    pub master_addr: String,
    /// Its port.
    pub master_port: u16,
    /// The launcher's agent serves the store at that address (torchrun:
    /// `TORCHELASTIC_USE_AGENT_STORE=True`); rank 0 then only connects to it.
    pub agent_store: bool,
    /// How many times the launcher restarted the job (`TORCHELASTIC_RESTART_COUNT`): each
    /// attempt keeps its keys apart in a store that outlives it.
    pub restart: u64,
}

impl DistEnv {
    /// Reads the environment: `None` without `WORLD_SIZE` (or with `WORLD_SIZE=1`, a
    /// one-process job), an error when a variable is malformed or missing.
    pub fn from_env() -> Result<Option<DistEnv>> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`DistEnv::from_env`] over any lookup (for tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<DistEnv>> {
        let number = |name: &str, default: Option<usize>| -> Result<usize> {
            match get(name) {
                Some(v) => {
                    v.trim().parse().map_err(|_| Error::Config(format!("environment variable {name}={v:?} is not a non-negative integer")))
                }
                None => default.ok_or_else(|| Error::Config(format!("WORLD_SIZE is set but {name} is not"))),
            }
        };
        let Some(_) = get("WORLD_SIZE") else { return Ok(None) };
        let world = number("WORLD_SIZE", None)?;
        if world <= 1 {
            return Ok(None);
        }
        let rank = number("RANK", None)?;
        if rank >= world {
            return Err(Error::Config(format!("RANK={rank} is not below WORLD_SIZE={world}")));
        }
        let local_rank = number("LOCAL_RANK", Some(rank))?;
        let master_addr = get("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into());
        let port = number("MASTER_PORT", Some(29500))?;
        let master_port =
            u16::try_from(port).ok().filter(|&p| p > 0).ok_or_else(|| Error::Config(format!("MASTER_PORT={port} is not a TCP port")))?;
        let agent_store = get("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v.trim() == "True");
        let restart = number("TORCHELASTIC_RESTART_COUNT", Some(0))? as u64;
        Ok(Some(DistEnv { rank, world, local_rank, master_addr, master_port, agent_store, restart }))
    }
}

/// How [`ProcessGroup::all_reduce`] combines the ranks' tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Element-wise sum.
    Sum,
    /// Element-wise maximum.
    Max,
}

#[cfg(oto_c10d)]
mod ffi {
    use std::ffi::{c_char, c_double, c_int, c_void};
    use tch::Tensor;
    type TensorPtr = *const torch_sys::C_tensor;

    extern "C" {
        pub fn oto_c10d_free_error(error: *mut c_char);
        pub fn oto_c10d_init(
            addr: *const c_char,
            port: c_int,
            rank: c_int,
            world: c_int,
            server: c_int,
            prefix: *const c_char,
            timeout_ms: c_int,
            nccl: c_int,
            device: c_int,
            error: *mut *mut c_char,
        ) -> *mut c_void;
        pub fn oto_c10d_broadcast(
            handle: *mut c_void,
            tensors: *const TensorPtr,
            count: usize,
            root: c_int,
            error: *mut *mut c_char,
        ) -> c_int;
        pub fn oto_c10d_all_reduce(
            handle: *mut c_void,
            tensors: *const TensorPtr,
            count: usize,
            op: c_int,
            scale: c_double,
            bucket_bytes: usize,
            error: *mut *mut c_char,
        ) -> c_int;
        pub fn oto_c10d_all_reduce_autograd(
            handle: *mut c_void,
            x: TensorPtr,
            out: *mut *mut torch_sys::C_tensor,
            error: *mut *mut c_char,
        ) -> c_int;
        pub fn oto_c10d_barrier(handle: *mut c_void, error: *mut *mut c_char) -> c_int;
        pub fn oto_c10d_shutdown(handle: *mut c_void);
    }

    /// The tensors as the shim takes them (`at::Tensor*`).
    pub fn pointers(tensors: &[&Tensor]) -> Vec<TensorPtr> {
        tensors.iter().map(|t| t.as_ptr()).collect()
    }

    /// Takes the shim's error message (freeing it).
    pub fn message(error: *mut c_char) -> String {
        if error.is_null() {
            return "unknown error (no message)".into();
        }
        // SAFETY: the shim returns a NUL-terminated malloc'd string, freed once here.
        let text = unsafe { std::ffi::CStr::from_ptr(error) }.to_string_lossy().into_owned();
        unsafe { oto_c10d_free_error(error) };
        text
    }
}

/// A joined c10d process group; dropping it leaves the group.
pub struct ProcessGroup {
    #[cfg(oto_c10d)]
    handle: *mut std::ffi::c_void,
    rank: usize,
    world: usize,
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProcessGroup(rank {} of {})", self.rank, self.world)
    }
}

impl ProcessGroup {
    /// Joins the group `env` describes: Gloo for CPU training, NCCL for a CUDA `device`.
    /// `timeout` bounds the rendezvous and every collective, so a rank that died or hangs
    /// makes the others fail instead of waiting for ever.
    pub fn init(env: &DistEnv, device: Device, timeout: Duration) -> Result<ProcessGroup> {
        #[cfg(oto_c10d)]
        {
            let nccl = matches!(device, Device::Cuda(_));
            if nccl && !HAS_NCCL {
                return Err(Error::Distributed(
                    "this oto was built without the NCCL backend, which CUDA training on several processes needs: rebuild on a machine with CUDA and NCCL headers (OTO_C10D_NCCL=1, see `make gpu-check`)".into(),
                ));
            }
            let index = match device {
                Device::Cuda(i) => i,
                _ => 0,
            };
            let int = |v: usize, name: &str| i32::try_from(v).map_err(|_| Error::Config(format!("{name} {v} is too large")));
            let addr =
                std::ffi::CString::new(env.master_addr.as_str()).map_err(|_| Error::Config("MASTER_ADDR contains a NUL byte".into()))?;
            let prefix = std::ffi::CString::new(format!("oto/{}", env.restart)).map_err(|_| Error::Config("store prefix".into()))?;
            let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
            let mut error = std::ptr::null_mut();
            // SAFETY: plain values and C strings that outlive the call.
            let handle = unsafe {
                ffi::oto_c10d_init(
                    addr.as_ptr(),
                    i32::from(env.master_port),
                    int(env.rank, "RANK")?,
                    int(env.world, "WORLD_SIZE")?,
                    i32::from(!env.agent_store),
                    prefix.as_ptr(),
                    timeout_ms,
                    i32::from(nccl),
                    int(index, "the CUDA device index")?,
                    &mut error,
                )
            };
            if handle.is_null() {
                let where_ = format!("rank {} of {} joining {}:{}", env.rank, env.world, env.master_addr, env.master_port);
                return Err(Error::Distributed(format!("{where_}: {}", ffi::message(error))));
            }
            Ok(ProcessGroup { handle, rank: env.rank, world: env.world })
        }
        #[cfg(not(oto_c10d))]
        {
            let _ = (env, device, timeout);
            Err(Error::Config(MISSING.into()))
        }
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of processes.
    pub fn world(&self) -> usize {
        self.world
    }

    /// Overwrites `tensors` on every rank with rank `root`'s.
    pub fn broadcast(&self, tensors: &[&Tensor], root: usize) -> Result<()> {
        #[cfg(oto_c10d)]
        {
            let ptrs = ffi::pointers(tensors);
            let root = i32::try_from(root).map_err(|_| Error::Config(format!("root rank {root} is too large")))?;
            let mut error = std::ptr::null_mut();
            // SAFETY: the pointers are live tch tensors for the duration of the call.
            let rc = unsafe { ffi::oto_c10d_broadcast(self.handle, ptrs.as_ptr(), ptrs.len(), root, &mut error) };
            self.check(rc, error)
        }
        #[cfg(not(oto_c10d))]
        {
            let _ = (tensors, root);
            Err(Error::Distributed(MISSING.into()))
        }
    }

    /// Reduces `tensors` over the ranks in place (in flat buckets of [`BUCKET_BYTES`],
    /// all in flight together) and multiplies the result by `scale` (`1/world`: the mean).
    pub fn all_reduce(&self, tensors: &[&Tensor], op: ReduceOp, scale: f64) -> Result<()> {
        #[cfg(oto_c10d)]
        {
            if tensors.is_empty() {
                return Ok(());
            }
            let ptrs = ffi::pointers(tensors);
            let op = match op {
                ReduceOp::Sum => 0,
                ReduceOp::Max => 1,
            };
            let mut error = std::ptr::null_mut();
            // SAFETY: the pointers are live tch tensors for the duration of the call.
            let rc = unsafe { ffi::oto_c10d_all_reduce(self.handle, ptrs.as_ptr(), ptrs.len(), op, scale, BUCKET_BYTES, &mut error) };
            self.check(rc, error)
        }
        #[cfg(not(oto_c10d))]
        {
            let _ = (tensors, op, scale);
            Err(Error::Distributed(MISSING.into()))
        }
    }

    /// The sum of `values` over the ranks (in f64).
    pub fn sum_f64(&self, values: &[f64]) -> Result<Vec<f64>> {
        let t = Tensor::from_slice(values);
        self.all_reduce(&[&t], ReduceOp::Sum, 1.0)?;
        Vec::<f64>::try_from(&t).map_err(|e| Error::torch("reading an all-reduced value", e))
    }

    /// The sum of `x` over the ranks as a new tensor, differentiable: its backward pass sums
    /// the ranks' gradients (synchronized BatchNorm's statistics go through it). Every rank
    /// must call it, and run the backward pass, in the same order.
    pub fn sum_differentiable(&self, x: &Tensor) -> Result<Tensor> {
        #[cfg(oto_c10d)]
        {
            let mut out = std::ptr::null_mut();
            let mut error = std::ptr::null_mut();
            // SAFETY: `x` is a live tch tensor; on success `out` is a new `at::Tensor*`
            // that the returned tch tensor owns.
            let rc = unsafe { ffi::oto_c10d_all_reduce_autograd(self.handle, x.as_ptr(), &mut out, &mut error) };
            self.check(rc, error)?;
            Ok(unsafe { Tensor::from_ptr(out) })
        }
        #[cfg(not(oto_c10d))]
        {
            let _ = x;
            Err(Error::Distributed(MISSING.into()))
        }
    }

    /// Waits until every rank is here.
    pub fn barrier(&self) -> Result<()> {
        #[cfg(oto_c10d)]
        {
            let mut error = std::ptr::null_mut();
            // SAFETY: the handle is live until drop.
            let rc = unsafe { ffi::oto_c10d_barrier(self.handle, &mut error) };
            self.check(rc, error)
        }
        #[cfg(not(oto_c10d))]
        Err(Error::Distributed(MISSING.into()))
    }

    #[cfg(oto_c10d)]
    fn check(&self, rc: i32, error: *mut std::ffi::c_char) -> Result<()> {
        if rc == 0 {
            return Ok(());
        }
        Err(Error::Distributed(ffi::message(error)))
    }
}

// SAFETY: the handle is only used through c10d's thread-safe Backend API; oto issues
// collectives from one thread at a time (the training loop, or libtorch's autograd during
// its backward pass).
unsafe impl Send for ProcessGroup {}
unsafe impl Sync for ProcessGroup {}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        #[cfg(oto_c10d)]
        // SAFETY: the handle came from oto_c10d_init and is freed exactly once.
        unsafe {
            ffi::oto_c10d_shutdown(self.handle)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Option<DistEnv>> {
        DistEnv::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn reads_the_launcher_environment() {
        assert_eq!(env(&[]).unwrap(), None);
        assert_eq!(env(&[("WORLD_SIZE", "1"), ("RANK", "0")]).unwrap(), None);
        let e = env(&[("WORLD_SIZE", "4"), ("RANK", "3"), ("LOCAL_RANK", "1"), ("MASTER_ADDR", "node0"), ("MASTER_PORT", "29400")])
            .unwrap()
            .unwrap();
        assert_eq!(
            e,
            DistEnv { rank: 3, world: 4, local_rank: 1, master_addr: "node0".into(), master_port: 29400, agent_store: false, restart: 0 }
        );
        // Under torchrun its agent serves the store; a restarted attempt has its own keys.
        let e = env(&[("WORLD_SIZE", "2"), ("RANK", "0"), ("TORCHELASTIC_USE_AGENT_STORE", "True"), ("TORCHELASTIC_RESTART_COUNT", "2")])
            .unwrap()
            .unwrap();
        assert_eq!((e.agent_store, e.restart), (true, 2));
        // torchrun always sets them all; by hand, the local rank and the address default.
        let e = env(&[("WORLD_SIZE", "2"), ("RANK", "1")]).unwrap().unwrap();
        assert_eq!((e.local_rank, e.master_addr.as_str(), e.master_port), (1, "127.0.0.1", 29500));
        for (vars, needle) in [
            (&[("WORLD_SIZE", "2")][..], "RANK is not"),
            (&[("WORLD_SIZE", "two"), ("RANK", "0")][..], "WORLD_SIZE=\"two\""),
            (&[("WORLD_SIZE", "2"), ("RANK", "2")][..], "RANK=2 is not below WORLD_SIZE=2"),
            (&[("WORLD_SIZE", "2"), ("RANK", "-1")][..], "RANK=\"-1\""),
            (&[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_PORT", "70000")][..], "MASTER_PORT=70000"),
            (&[("WORLD_SIZE", "2"), ("RANK", "0"), ("TORCHELASTIC_RESTART_COUNT", "x")][..], "TORCHELASTIC_RESTART_COUNT=\"x\""),
        ] {
            let err = env(vars).unwrap_err().to_string();
            assert!(err.contains(needle), "{vars:?}: {err}");
        }
    }
}
