//! Finds the onnxruntime shared library at build time and bakes its path into the crate as
//! `OTO_ORT_BUILD_DYLIB`, the fallback when `ORT_DYLIB_PATH` is not set at run time: the
//! `ORT_DYLIB_PATH` of the build (the Makefile exports the venv's), else the workspace
//! venv's. An installed binary (`make install`) thus finds onnxruntime without any
//! environment.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=ORT_DYLIB_PATH");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let venv = manifest_dir.join("../../.venv");
    let from_env = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from).filter(|p| p.is_file());
    let found = from_env.map(|p| p.canonicalize().unwrap_or(p)).or_else(|| find_venv_onnxruntime(&venv));
    match found {
        Some(lib) => {
            println!("cargo:rerun-if-changed={}", lib.display());
            println!("cargo:rustc-env=OTO_ORT_BUILD_DYLIB={}", lib.display());
        }
        // Rerun once the venv appears (`make setup`).
        None => println!("cargo:rerun-if-changed={}", venv.display()),
    }
}

/// `<venv>/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*`, newest name last.
fn find_venv_onnxruntime(venv: &Path) -> Option<PathBuf> {
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    let mut found: Vec<PathBuf> = lib
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .filter_map(|e| std::fs::read_dir(e.path().join("site-packages/onnxruntime/capi")).ok())
        .flat_map(|dir| dir.flatten().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so")))
        .collect();
    found.sort();
    let path = found.pop()?;
    Some(path.canonicalize().unwrap_or(path))
}
