//! Links the `oto` binary, tests and examples against libtorch so they run without
//! LD_LIBRARY_PATH and with CUDA (see crates/torch/link_args.rs). oto-torch publishes the
//! libtorch library directory as DEP_OTO_TORCH_LIBTORCH_LIB.

include!("crates/torch/link_args.rs");

fn main() {
    if let Some(lib_dir) = std::env::var_os("DEP_OTO_TORCH_LIBTORCH_LIB") {
        emit_libtorch_link_args(std::path::Path::new(&lib_dir));
    }
}
