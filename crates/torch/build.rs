//! Forwards libtorch's library directory (published by torch-sys) to this package's
//! test and example executables as an rpath, to dependents' build scripts as
//! `DEP_OTO_TORCH_LIBTORCH_LIB`, and to the crate as build-time facts for diagnostics;
//! compiles the c10d shim (csrc/c10d_shim.cpp, data-parallel training) when the Gloo
//! headers are there.

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
    build_c10d_shim(&lib_dir);
}

/// Compiles the c10d shim against libtorch's own headers (the ones tch is built against)
/// and sets `cfg(oto_c10d)` (and `cfg(oto_c10d_nccl)` with NCCL). Without the Gloo headers
/// (Debian's `libgloo-dev`, or `GLOO_INCLUDE_DIR`), or with `OTO_C10D=0`, the crate builds
/// without the distributed path and says what to install when it is asked for.
fn build_c10d_shim(lib_dir: &Path) {
    println!("cargo:rustc-check-cfg=cfg(oto_c10d)");
    println!("cargo:rustc-check-cfg=cfg(oto_c10d_nccl)");
    for var in ["OTO_C10D", "GLOO_INCLUDE_DIR", "LIBTORCH_INCLUDE", "LIBTORCH_CXX11_ABI", "OTO_C10D_NCCL", "CUDA_HOME", "OTO_CUDA_INCLUDE"]
    {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=csrc/c10d_shim.cpp");
    // OTO_C10D=0: build without the distributed path even where it could be built.
    if std::env::var("OTO_C10D").is_ok_and(|v| v == "0") {
        return;
    }
    let gloo = std::env::var_os("GLOO_INCLUDE_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/usr/include", "/usr/local/include"].map(PathBuf::from))
        .find(|dir| dir.join("gloo/config.h").exists());
    let Some(gloo) = gloo else {
        println!("cargo:warning=Gloo headers not found (install libgloo-dev, or set GLOO_INCLUDE_DIR): oto is built without data-parallel training");
        return;
    };
    // torch-sys's layout: `<root>/lib` and `<root>/include` (PyTorch's torch/ and a
    // standalone libtorch alike), unless LIBTORCH_INCLUDE names the root of the headers.
    let Some(root) = std::env::var_os("LIBTORCH_INCLUDE").map(PathBuf::from).or_else(|| lib_dir.parent().map(Path::to_path_buf)) else {
        return;
    };
    let include = root.join("include");
    // PyTorch wheels and libtorch archives use the C++11 ABI since 2.7 (torch-sys's default too).
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("csrc/c10d_shim.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include(&gloo)
        .flag("-std=c++20")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .define("USE_C10D_GLOO", None)
        .warnings(false);
    if let Some(dirs) = nccl_includes(lib_dir) {
        for dir in dirs {
            build.include(dir);
        }
        build.define("USE_C10D_NCCL", None).define("USE_CUDA", None).define("OTO_C10D_NCCL", None);
        println!("cargo:rustc-cfg=oto_c10d_nccl");
        // ProcessGroupNCCL lives in libtorch_cuda, the CUDA device functions in libc10_cuda.
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
    build.compile("oto_c10d");
    println!("cargo:rustc-cfg=oto_c10d");
}

/// The CUDA and NCCL header directories when the NCCL backend is to be built:
/// `OTO_C10D_NCCL=1` asks for it (a build error if the headers are missing), `0` refuses
/// it, and by default it is built when libtorch is a CUDA build, this machine has an
/// NVIDIA driver and the headers are found: `OTO_CUDA_INCLUDE` (colon-separated), a CUDA
/// toolkit (CUDA_HOME, /usr/local/cuda), the nvidia-* wheels beside torch. Every such
/// directory is used (the wheels split the headers: runtime, crt, cccl, nccl).
fn nccl_includes(lib_dir: &Path) -> Option<Vec<PathBuf>> {
    let wanted = std::env::var("OTO_C10D_NCCL").ok();
    let auto = lib_dir.join("libtorch_cuda.so").exists() && Path::new("/dev/nvidiactl").exists();
    match wanted.as_deref() {
        Some("0") => return None,
        Some("1") => {}
        _ if !auto => return None,
        _ => {}
    }
    let nvidia = lib_dir.parent().and_then(Path::parent).map(|site| site.join("nvidia"));
    let mut candidates: Vec<PathBuf> =
        std::env::var_os("OTO_CUDA_INCLUDE").map(|v| std::env::split_paths(&v).collect()).unwrap_or_default();
    candidates.extend(std::env::var_os("CUDA_HOME").map(|h| PathBuf::from(h).join("include")));
    candidates.push(PathBuf::from("/usr/local/cuda/include"));
    if let Some(nvidia) = &nvidia {
        if let Ok(entries) = std::fs::read_dir(nvidia) {
            candidates.extend(entries.flatten().map(|e| e.path().join("include")));
        }
    }
    candidates.retain(|d| d.is_dir());
    let found = |header: &str| candidates.iter().any(|d| d.join(header).exists());
    match (found("cuda_runtime.h"), found("crt/host_config.h"), found("nccl.h")) {
        (true, true, true) => Some(candidates),
        _ if wanted.as_deref() == Some("1") => panic!("OTO_C10D_NCCL=1 but the CUDA headers (cuda_runtime.h, crt/host_config.h) or nccl.h are not found: set CUDA_HOME to a CUDA toolkit or OTO_CUDA_INCLUDE"),
        _ => {
            println!("cargo:warning=CUDA or NCCL headers not found (CUDA_HOME, OTO_CUDA_INCLUDE): oto is built without the NCCL backend");
            None
        }
    }
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
