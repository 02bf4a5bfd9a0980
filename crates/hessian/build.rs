//! Links this package's tests and examples against libtorch (rpath, CUDA library kept):
//! oto-torch publishes the library directory as DEP_OTO_TORCH_LIBTORCH_LIB.

include!("../torch/link_args.rs");

fn main() {
    if let Some(lib_dir) = std::env::var_os("DEP_OTO_TORCH_LIBTORCH_LIB") {
        emit_libtorch_link_args(std::path::Path::new(&lib_dir));
    }
}
