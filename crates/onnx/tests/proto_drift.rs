//! Fails when the committed generated code drifts from the vendored `.proto`.

mod common;
use common::codegen;

#[test]
fn committed_proto_code_matches_vendored_proto() {
    let crate_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let generated = codegen::generate(&crate_dir).expect("codegen runs");
    let committed = std::fs::read_to_string(crate_dir.join("src/proto/onnx.rs")).expect("committed file");
    assert!(generated == committed, "src/proto/onnx.rs is out of date with proto/onnx.proto: run `make proto`");
}
