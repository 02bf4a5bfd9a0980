//! Construction edge cases: nothing removed, one group at a time (shared shape
//! constants read partly by unpruned layers), zero detection keeping one element,
//! errors naming the group, and the onnx package's full checker.

mod common;
use common::*;
use oto_construct::{construct, zero_elements, ConstructError};
use oto_graph::{analyze, AnalyzeOptions, Role};
use oto_testkit::{deviation, run_ort, zoo_inputs, zoo_model, SplitMix64};
use std::collections::BTreeMap;

/// Nothing zero: no element is found, and construction changes neither the outputs
/// (bit for bit) nor the parameter count.
#[test]
fn nothing_zero_is_identity() {
    for name in ["mlp", "demo_cnn", "concat_bn", "grouped_conv", "groupnorm", "bert_tiny", "gpt2_tiny", "vit_tiny", "mobilenet_v2"] {
        let model = zoo_model(name);
        let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
        let found = zero_elements(&analysis, &model).unwrap();
        assert!(found.is_empty(), "{name}: zero elements in the exported model: {found:?}");
        let (compact, report) = construct(&model, &analysis, &found).unwrap();
        assert_eq!(report.params_before, report.params_after, "{name}");
        assert_eq!(report.macs_before, report.macs_after, "{name}");
        assert!(report.groups.is_empty());
        assert_eq!(float_elements(&compact), float_elements(&model), "{name}");
        let inputs = zoo_inputs(name);
        assert_eq!(run_ort(&model.proto, &inputs), run_ort(&compact.proto, &inputs), "{name}");
    }
}

/// One group at a time, most elements removed: the layers that are not pruned keep
/// reading the original shape constants while the pruned one gets its own copy.
#[test]
fn one_group_at_a_time() {
    for name in ["bert_tiny", "gpt2_tiny", "vit_tiny", "grouped_conv", "groupnorm", "mobilenet_v2"] {
        let model = zoo_model(name);
        let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
        let inputs = zoo_inputs(name);
        let prunable: Vec<_> = analysis.prunable_groups().filter(|g| g.num_elements > 1).collect();
        let stride = prunable.len().div_ceil(8).max(1);
        for g in prunable.into_iter().step_by(stride) {
            let removed: BTreeMap<String, Vec<usize>> = [(g.id.clone(), (1..g.num_elements).collect())].into();
            let full = oto_construct::zero_producers(&model, &analysis, &removed).unwrap();
            let (compact, report) = construct(&full, &analysis, &removed).unwrap();
            assert_eq!(report.groups[0].kept, 1);
            assert_eq!(float_elements(&compact), predicted_float_elements(&full, &analysis, &removed), "{name} {}", g.id);
            let (err, tol) = deviation(&run_ort(&full.proto, &inputs), &run_ort(&compact.proto, &inputs));
            assert!(err <= tol, "{name} group {}: max deviation {err:.3e} > {tol:.3e}", g.id);
        }
    }
}

/// A group whose producers are all zero keeps one element.
#[test]
fn zero_elements_keeps_one() {
    let model = zoo_model("demo_cnn");
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let g = analysis.prunable_groups().find(|g| g.num_elements > 1).unwrap();
    let all: BTreeMap<String, Vec<usize>> = [(g.id.clone(), (0..g.num_elements).collect())].into();
    let full = oto_construct::zero_producers(&model, &analysis, &all).unwrap();
    let found = zero_elements(&analysis, &full).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[&g.id], (0..g.num_elements - 1).collect::<Vec<_>>());
    // With one producer restored (a BatchNorm bias, say), no element is zero any more.
    let producers: Vec<_> = g.members.iter().filter(|m| m.role == Role::Producer).collect();
    assert!(producers.len() > 1, "{}: {:?}", g.id, g.members);
    let restored = producers[producers.len() - 1].initializer.as_str();
    let mut proto = full.proto.clone();
    let original = model.proto.graph.as_ref().unwrap().initializer.iter().find(|t| t.name.as_deref() == Some(restored)).unwrap();
    for t in proto.graph.as_mut().unwrap().initializer.iter_mut() {
        if t.name.as_deref() == Some(restored) {
            *t = original.clone();
        }
    }
    let partly = oto_onnx::Model::from_proto(proto, "partly", None).unwrap();
    let found = zero_elements(&analysis, &partly).unwrap();
    assert!(!found.contains_key(&g.id), "restored '{restored}', still found {found:?}");
}

/// Every error names the group.
#[test]
fn errors_name_the_group() {
    let model = zoo_model("bert_tiny");
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let g = analysis.prunable_groups().find(|g| g.num_elements > 1).unwrap();
    let run = |id: &str, elems: Vec<usize>| {
        let removed: BTreeMap<String, Vec<usize>> = [(id.to_string(), elems)].into();
        construct(&model, &analysis, &removed).unwrap_err()
    };
    let e = run("no.such.group:0", vec![0]);
    assert!(matches!(e, ConstructError::UnknownGroup(_)) && e.to_string().contains("no.such.group:0"), "{e}");
    let e = run(&g.id, vec![g.num_elements]);
    assert!(matches!(e, ConstructError::ElementOutOfRange { .. }) && e.to_string().contains(&g.id), "{e}");
    let e = run(&g.id, (0..g.num_elements).collect());
    assert!(matches!(e, ConstructError::RemovesAll { .. }) && e.to_string().contains(&g.id), "{e}");
    let u = analysis.groups.iter().find(|g| !g.prunable).expect("bert_tiny has an unprunable group");
    let e = run(&u.id, vec![0]);
    assert!(matches!(e, ConstructError::Unprunable { .. }) && e.to_string().contains(&u.id), "{e}");
}

/// The onnx package's full checker (with strict shape inference) accepts compact models.
#[test]
fn onnx_full_check() {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if !python.exists() {
        eprintln!("skipped: {} missing", python.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in
        ["mlp", "demo_cnn", "grouped_conv", "groupnorm", "concat_bn", "bert_tiny", "gpt2_tiny", "vit_tiny", "llama_tiny", "mobilenet_v2"]
    {
        let model = zoo_model(name);
        let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
        let removed = pick(&analysis, &mut SplitMix64::new(3), 0.5);
        let full = oto_construct::zero_producers(&model, &analysis, &removed).unwrap();
        let (compact, _) = construct(&full, &analysis, &removed).unwrap();
        let path = dir.path().join(format!("{name}.onnx"));
        compact.save(&path, &Default::default()).unwrap();
        let out = std::process::Command::new(&python)
            .arg("-c")
            .arg("import sys, onnx; onnx.checker.check_model(sys.argv[1], full_check=True)")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
