//! Forwards libtorch's library directory (published by torch-sys) to this package's
//! test and example executables as an rpath, to dependents' build scripts as
//! `DEP_OTO_TORCH_LIBTORCH_LIB`, and to the crate as build-time facts for diagnostics.

use std::path::{Path, PathBuf};

include!("link_args.rs");

fn main() {
    // torch-sys (`links = "tch"`) publishes the directory as `cargo:libtorch_lib=`;
    // it only omits it on Windows, where there is no rpath to set.
    let Some(lib_dir) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        return;
    };
    println!("cargo:libtorch_lib={}", lib_dir.display());
    println!("cargo:rustc-env=OTO_LIBTORCH_LIB_DIR={}", lib_dir.display());
    if lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-env=OTO_LIBTORCH_HAS_CUDA_LIB=1");
    }
    if let Some(version) = libtorch_version(&lib_dir) {
        println!("cargo:rustc-env=OTO_LIBTORCH_VERSION={version}");
    }
    emit_libtorch_link_args(&lib_dir);
}

/// The version of the libtorch whose `lib` directory is `lib_dir`: PyTorch's
/// `torch/version.py`, or the `build-version` file of a standalone libtorch.
fn libtorch_version(lib_dir: &Path) -> Option<String> {
    let root = lib_dir.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let line = text.lines().find(|l| l.starts_with("__version__"))?;
        return Some(line.split(['\'', '"']).nth(1)?.to_string());
    }
    Some(std::fs::read_to_string(root.join("build-version")).ok()?.trim().to_string())
}
