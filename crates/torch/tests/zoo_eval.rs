//! Eval-mode forward of every zoo model equals the PyTorch reference outputs
//! (graphs/zoo/NAME.outputs.npz), of every Optimum export the onnxruntime outputs
//! (graphs/optimum_zoo/NAME/outputs.npz), and of every TorchScript file of the users' zoo
//! (graphs/user_zoo/torchscript) onnxruntime's outputs of the file as written, within
//! |y - ref| <= 1e-4 * max(1, max|ref|).

mod common;

use oto_onnx::Model;
use oto_torch::exec::{Executor, Mode};
use std::collections::HashMap;
use std::path::Path;
use tch::Device;

/// Runs `model` in eval mode on the arrays of `inputs` (named like the graph inputs) and
/// compares every output with the array of the same name in `outputs`; one line per
/// output goes to `report`.
fn forward_matches(name: &str, model: &Model, inputs: &Path, outputs: &Path, report: &mut Vec<String>) {
    forward_matches_reference(name, model, &common::read_npz_map(inputs), &common::read_npz_map(outputs), report);
}

/// [`forward_matches`] on arrays already read: `arrays` by graph input name, `reference`
/// by graph output name.
fn forward_matches_reference(
    name: &str,
    model: &Model,
    arrays: &HashMap<String, oto_onnx::Tensor>,
    reference: &HashMap<String, oto_onnx::Tensor>,
    report: &mut Vec<String>,
) {
    let exec = Executor::new(model, Device::Cpu).unwrap_or_else(|e| panic!("{name}: {e}"));
    let inputs: Vec<_> = exec
        .inputs()
        .map(|i| {
            let a = arrays.get(&i.name).unwrap_or_else(|| panic!("{name}: no input {}", i.name));
            oto_torch::exec::convert::to_tch(a, Device::Cpu).unwrap()
        })
        .collect();
    let ys = tch::no_grad(|| exec.forward(&inputs, Mode::Eval)).unwrap_or_else(|e| panic!("{name}: {e}"));
    for (out_name, y) in exec.output_names().zip(&ys) {
        let r = reference.get(out_name).unwrap_or_else(|| panic!("{name}: no reference for output {out_name}"));
        let r = oto_torch::exec::convert::to_tch(r, Device::Cpu).unwrap();
        assert_eq!(y.size(), r.size(), "{name}: output {out_name} shape");
        let (err, tol) = common::rel_error(y, &r);
        report.push(format!("{name}/{out_name}: max err {err:.3e} (tol {tol:.3e})"));
        assert!(err <= tol, "{name}: output {out_name}: max |y - ref| = {err:.3e} > {tol:.3e}");
    }
}

#[test]
fn every_zoo_model_matches_pytorch_in_eval_mode() {
    let names = oto_testkit::zoo_names();
    assert!(names.len() >= 16, "expected the whole zoo, found {names:?}");
    let mut report = Vec::new();
    for name in &names {
        let zoo = oto_testkit::zoo_dir();
        let (inputs, outputs) = (zoo.join(format!("{name}.inputs.npz")), zoo.join(format!("{name}.outputs.npz")));
        forward_matches(name, &oto_testkit::zoo_model(name), &inputs, &outputs, &mut report);
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn every_optimum_export_matches_onnxruntime_in_eval_mode() {
    let names = oto_testkit::optimum_zoo_names();
    assert!(names.len() >= 5, "expected the whole Optimum zoo, found {names:?}");
    let mut report = Vec::new();
    for name in &names {
        let dir = oto_testkit::optimum_zoo_dir().join(name);
        // As `oto eval` reads it: normalized.
        let model = oto_onnx::normalize::load(dir.join("model.onnx")).unwrap_or_else(|e| panic!("{name}: {e}")).0;
        forward_matches(name, &model, &dir.join("inputs.npz"), &dir.join("outputs.npz"), &mut report);
    }
    eprintln!("{}", report.join("\n"));
}

/// The Optimum zoo's merged decoders run their first pass, the branch without the cache
/// inputs (`Executor::first_pass`, `oto_onnx::branches::specialize`): it computes what
/// onnxruntime computes on the file with `use_cache_branch` false (inputs_first.npz), and
/// takes only that branch's inputs. `Executor::new` refuses the merged model, naming the
/// input that chooses the branch, rather than run one branch whatever that input says.
#[test]
fn merged_decoders_run_their_first_pass() {
    for name in oto_testkit::optimum_merged_names() {
        let dir = oto_testkit::optimum_zoo_dir().join(&name);
        let model = oto_onnx::normalize::load(dir.join("model.onnx")).unwrap_or_else(|e| panic!("{name}: {e}")).0;
        let refused = Executor::new(&model, Device::Cpu).err().unwrap_or_else(|| panic!("{name}: compiled with its branches")).to_string();
        assert!(refused.contains("'use_cache_branch'"), "{name}: {refused}");
        let exec = Executor::first_pass(&model, Device::Cpu).unwrap_or_else(|e| panic!("{name}: {e}"));
        let inputs: Vec<&str> = exec.inputs().map(|i| i.name.as_str()).collect();
        assert!(inputs.iter().all(|i| !i.starts_with("past_key_values.") && *i != "use_cache_branch"), "{name}: {inputs:?}");
        let first = oto_onnx::branches::specialize(&model).unwrap().unwrap_or_else(|| panic!("{name}: no branches"));
        let mut report = Vec::new();
        forward_matches(&name, &first, &dir.join("inputs_first.npz"), &dir.join("outputs_first.npz"), &mut report);
        eprintln!("{}", report.join("\n"));
    }
}

/// Every TorchScript file of the users' zoo (graphs/user_zoo.py: every zoo architecture
/// at opset 17, the CNNs also at 13, the transformers also called as Optimum calls them),
/// normalized as `oto eval` reads it, computes what onnxruntime computes on the file as
/// written, on its reference inputs (batch 2).
#[test]
fn every_torchscript_file_matches_onnxruntime_in_eval_mode() {
    let index = oto_testkit::user_zoo_index("torchscript");
    let files = index["models"].as_array().expect("index.json lists models");
    let zoo = oto_testkit::zoo_names();
    let dir = oto_testkit::user_zoo_dir().join("torchscript");
    let mut report = Vec::new();
    for entry in files {
        let file = entry["file"].as_str().expect("a file");
        let stem = entry["reference"].as_str().expect("a reference stem");
        let path = dir.join(file);
        let original = oto_onnx::Model::load(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        let model = oto_onnx::normalize::load(&path).unwrap_or_else(|e| panic!("{file}: {e}")).0;
        let inputs = oto_onnx::npz::read_npz(dir.join(format!("{stem}.inputs.npz"))).unwrap_or_else(|e| panic!("{file}: {e}"));
        // onnxruntime's outputs, in the shapes of the PyTorch outputs the file was checked on.
        let pytorch = common::read_npz_map(&dir.join(format!("{stem}.outputs.npz")));
        let reference: HashMap<String, oto_onnx::Tensor> = oto_testkit::run_ort(&original.proto, &inputs)
            .into_iter()
            .map(|(n, v)| {
                let shape = pytorch.get(&n).unwrap_or_else(|| panic!("{file}: no PyTorch output {n}")).shape.clone();
                assert_eq!(shape.iter().product::<usize>(), v.len(), "{file}: onnxruntime output {n} vs PyTorch {shape:?}");
                (n, oto_onnx::Tensor { shape, data: oto_onnx::TensorData::F32(v.iter().map(|&x| x as f32).collect()) })
            })
            .collect();
        forward_matches_reference(file, &model, &inputs.into_iter().collect(), &reference, &mut report);
    }
    // Every non-bench zoo architecture has its TorchScript file(s).
    let names: std::collections::HashSet<&str> = files.iter().filter_map(|e| e["name"].as_str()).collect();
    let missing: Vec<&String> = zoo.iter().filter(|z| !names.contains(z.as_str())).collect();
    assert!(missing.is_empty(), "zoo architectures without a TorchScript file: {missing:?}");
    eprintln!("{}", report.join("\n"));
}

/// Model zoo-era files (graphs/legacy_zoo.py: LRN, grouped conv, Mul+Add BatchNorm,
/// InstanceNormalization, [N, C, 1, 1] output, ImageScaler), normalized as commands load them: the
/// executor computes onnxruntime's outputs of the original file at batch 1, and
/// onnxruntime's outputs of the normalized file at batch 3.
#[test]
fn legacy_files_match_onnxruntime() {
    for name in ["alexnet_lite", "resnet_mul_add", "squeeze_head", "yolo_lite"] {
        let model = oto_testkit::legacy_model(name);
        let exec = Executor::new(&model, Device::Cpu).unwrap_or_else(|e| panic!("{name}: {e}"));
        let one = oto_testkit::legacy_inputs(name);
        let three = oto_testkit::batched(&one, 3, 3);
        let ort3: Vec<(String, oto_onnx::Tensor)> = oto_testkit::run_ort(&model.proto, &three)
            .into_iter()
            .map(|(n, v)| {
                (n, oto_onnx::Tensor { shape: vec![v.len()], data: oto_onnx::TensorData::F32(v.iter().map(|&x| x as f32).collect()) })
            })
            .collect();
        for (inputs, reference) in [(one, oto_testkit::legacy_outputs(name)), (three, ort3)] {
            let xs: Vec<tch::Tensor> = inputs.iter().map(|(_, t)| oto_torch::exec::convert::to_tch(t, Device::Cpu).unwrap()).collect();
            let ys = tch::no_grad(|| exec.forward(&xs, Mode::Eval)).unwrap_or_else(|e| panic!("{name}: {e}"));
            for (y, (out, r)) in ys.iter().zip(&reference) {
                let r = oto_torch::exec::convert::to_tch(r, Device::Cpu).unwrap();
                assert_eq!(y.numel(), r.numel(), "{name}: {out}: shape {:?}", y.size());
                let r = r.reshape(y.size());
                let (err, tol) = common::rel_error(y, &r);
                assert!(err <= tol, "{name}: {out} at batch {}: max |y - ref| = {err:.3e} > {tol:.3e}", y.size()[0]);
            }
        }
    }
}
