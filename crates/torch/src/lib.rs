//! libtorch side of oto (through `tch`): device selection and libtorch diagnostics.
//!
//! Executables that link this crate find libtorch through an rpath set by the build
//! scripts (see `link_args.rs`), so no `LD_LIBRARY_PATH` is needed.
#![warn(missing_docs)]

pub use tch;

pub mod checkpoint;
pub mod data;
pub mod dist;
pub mod error;
pub mod exec;
pub mod hessian;
pub mod loss;
pub mod optim;
pub mod schedule;
pub mod train;

/// Errors of the libtorch layer.
#[derive(Debug, thiserror::Error)]
pub enum TorchError {
    /// A `--device` value that is malformed or names a device libtorch cannot use.
    #[error("device '{spec}': {message}")]
    Device {
        /// The device string as given.
        spec: String,
        /// What is wrong and what would work.
        message: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = TorchError> = std::result::Result<T, E>;

/// The libtorch version found at build time (e.g. `2.13.0+cu130`), if known.
pub const LIBTORCH_VERSION: Option<&str> = option_env!("OTO_LIBTORCH_VERSION");
/// The libtorch library directory the executables are linked against (their rpath).
pub const LIBTORCH_LIB_DIR: Option<&str> = option_env!("OTO_LIBTORCH_LIB_DIR");
/// Whether that libtorch has `libtorch_cuda.so`, i.e. is a CUDA build.
pub const LIBTORCH_HAS_CUDA_LIB: bool = option_env!("OTO_LIBTORCH_HAS_CUDA_LIB").is_some();

/// Parses a device: `auto` (CUDA device 0 when available, else CPU), `cpu`, `cuda`
/// (device 0) or `cuda:N`. CUDA devices must exist.
pub fn parse_device(spec: &str) -> Result<tch::Device> {
    let error = |message: String| TorchError::Device { spec: spec.to_string(), message };
    match spec.trim() {
        "auto" => Ok(tch::Device::cuda_if_available()),
        "cpu" => Ok(tch::Device::Cpu),
        "cuda" => cuda_device(0).map_err(error),
        other => {
            let index = other.strip_prefix("cuda:").ok_or_else(|| error("expected auto, cpu, cuda or cuda:N".to_string()))?;
            let index = index.parse::<usize>().map_err(|_| error(format!("'{index}' is not a CUDA device index")))?;
            cuda_device(index).map_err(error)
        }
    }
}

/// CUDA device `index`, if libtorch sees it.
fn cuda_device(index: usize) -> std::result::Result<tch::Device, String> {
    let count = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
    if index < count {
        return Ok(tch::Device::Cuda(index));
    }
    let why = if count > 0 {
        format!("libtorch sees {count} CUDA device(s), numbered from 0")
    } else if !LIBTORCH_HAS_CUDA_LIB {
        "this libtorch is a CPU-only build; set LIBTORCH to a CUDA build and rebuild (see README)".to_string()
    } else if !libtorch_cuda_loaded() {
        "libtorch_cuda is not loaded into this process, so CUDA is unavailable".to_string()
    } else {
        "libtorch sees no CUDA device (no GPU or no working driver)".to_string()
    };
    Err(format!("no CUDA device {index}: {why}"))
}

/// Whether `libtorch_cuda.so` is mapped into this process (Linux; `false` elsewhere).
/// Without it libtorch silently reports that CUDA is unavailable.
pub fn libtorch_cuda_loaded() -> bool {
    std::fs::read_to_string("/proc/self/maps").is_ok_and(|maps| maps.contains("/libtorch_cuda.so"))
}

/// A one-line description of the libtorch in use: version, library directory, whether
/// it is a CUDA build and loaded, and the CUDA devices it sees.
pub fn libtorch_info() -> String {
    let devices = tch::Cuda::device_count();
    format!(
        "libtorch {} ({}); CUDA build: {}, libtorch_cuda loaded: {}, CUDA available: {}, CUDA devices: {devices}",
        LIBTORCH_VERSION.unwrap_or("version unknown"),
        LIBTORCH_LIB_DIR.unwrap_or("library directory unknown"),
        yes_no(LIBTORCH_HAS_CUDA_LIB),
        yes_no(libtorch_cuda_loaded()),
        yes_no(tch::Cuda::is_available()),
    )
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn parses_device_specs() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert_eq!(parse_device("auto").unwrap(), Device::cuda_if_available());
        let gpus = tch::Cuda::device_count() as usize;
        for spec in ["cuda", "cuda:0"] {
            match parse_device(spec) {
                Ok(device) => assert_eq!(device, Device::Cuda(0)),
                Err(e) => assert_eq!(gpus, 0, "{e}"),
            }
        }
        let err = parse_device(&format!("cuda:{gpus}")).unwrap_err().to_string();
        assert!(err.contains(&format!("no CUDA device {gpus}")), "{err}");
        for bad in ["gpu", "cuda:", "cuda:-1", "cuda:x", "CPU"] {
            let err = parse_device(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("device '{bad}'")), "{err}");
        }
    }

    /// The CUDA build of libtorch must be linked for real (not dropped by --as-needed),
    /// or `--device cuda` could never work.
    #[test]
    fn libtorch_cuda_is_loaded_when_present() {
        assert!(LIBTORCH_LIB_DIR.is_some());
        assert_eq!(libtorch_cuda_loaded(), LIBTORCH_HAS_CUDA_LIB, "{}", libtorch_info());
        assert!(libtorch_info().contains(LIBTORCH_VERSION.unwrap_or("unknown")));
    }

    /// Autograd through matmul: the gradient of sum((X W)^2) w.r.t. W is checked against
    /// central finite differences in f64.
    #[test]
    fn matmul_gradient_matches_finite_differences() {
        let x = Tensor::from_slice(&[0.5f64, -1.0, 2.0, 1.5, 0.25, -0.75]).reshape([2, 3]);
        let w0 = [0.1f64, -0.2, 0.3, 0.4, -0.5, 0.6];
        let loss = |w: &Tensor| x.matmul(w).pow_tensor_scalar(2).sum(Kind::Double);

        let w = Tensor::from_slice(&w0).reshape([3, 2]).set_requires_grad(true);
        loss(&w).backward();
        let grad: Vec<f64> = Vec::try_from(w.grad().reshape([-1])).unwrap();

        let eps = 1e-6;
        for (i, &g) in grad.iter().enumerate() {
            let shifted = |delta: f64| {
                let mut v = w0;
                v[i] += delta;
                loss(&Tensor::from_slice(&v).reshape([3, 2])).double_value(&[])
            };
            let numeric = (shifted(eps) - shifted(-eps)) / (2.0 * eps);
            assert!((g - numeric).abs() < 1e-6, "dL/dw[{i}]: autograd {g}, finite differences {numeric}");
        }
        // The closed form 2 X^T X W as well, so a zero gradient cannot pass.
        let expected = (x.tr().matmul(&x.matmul(&Tensor::from_slice(&w0).reshape([3, 2]))) * 2.0).reshape([-1]);
        let expected: Vec<f64> = Vec::try_from(expected).unwrap();
        for (g, e) in grad.iter().zip(&expected) {
            assert!((g - e).abs() < 1e-12, "{g} vs {e}");
        }
        assert!(expected.iter().any(|e| e.abs() > 0.1));
    }
}
