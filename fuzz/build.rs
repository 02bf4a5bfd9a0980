//! Links the harness against libtorch (rpath, as every package that reaches oto-torch):
//! it never runs libtorch, but the `oto` library it parses job files with links it.
//! oto-torch publishes the library directory as DEP_OTO_TORCH_LIBTORCH_LIB.

include!("../crates/torch/link_args.rs");

fn main() {
    if let Some(lib_dir) = std::env::var_os("DEP_OTO_TORCH_LIBTORCH_LIB") {
        emit_libtorch_link_args(std::path::Path::new(&lib_dir));
    }
}
