// Shared by the build scripts of oto-torch and of the root `oto` package (via `include!`).
//
// Cargo applies `rustc-link-arg` only to the executables (binaries, tests, examples,
// benches) of the package whose build script emits it, so every package whose
// executables link libtorch calls `emit_libtorch_link_args` from its own build.rs.

/// Emits the linker arguments that make executables find and fully load libtorch:
/// an rpath to `lib_dir` (so no LD_LIBRARY_PATH is needed) and, when the libtorch
/// build has CUDA, `libtorch_cuda.so` linked with `--no-as-needed`. Nothing in Rust
/// references a symbol of libtorch_cuda, so the default `--as-needed` would drop it
/// and libtorch would then report CUDA as unavailable.
fn emit_libtorch_link_args(lib_dir: &std::path::Path) {
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    if lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
