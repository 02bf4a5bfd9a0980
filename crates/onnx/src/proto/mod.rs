//! prost message types generated from the vendored `proto/onnx.proto` (IR version 14).
//!
//! Regenerate with `make proto` (`cargo run -p oto-onnx --example regen_proto`);
//! the `proto_drift` test fails when this code and the `.proto` disagree.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

include!("onnx.rs");
