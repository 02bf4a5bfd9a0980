//! Hessian-vector products through the executor (`oto_torch::hessian::Curvature`) against
//! PyTorch's `torch.autograd.functional.hvp` in float64 (graphs/hessian_ref.py, same
//! weights, batch and direction) and against central finite differences of the gradient,
//! on the MLP, the demo CNN and BERT-tiny of the zoo, in eval mode with cross-entropy.

mod common;

use oto_torch::data::Batch;
use oto_torch::exec::convert::to_tch;
use oto_torch::exec::Executor;
use oto_torch::hessian::Curvature;
use oto_torch::loss::Loss;
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

const CE: Loss = Loss::CrossEntropy { label_smoothing: 0.0 };

struct Case {
    exec: Executor,
    batch: Batch,
    reference: HashMap<String, oto_onnx::Tensor>,
    /// The direction, one tensor per trainable parameter (zero where PyTorch has no parameter).
    v: Vec<Tensor>,
}

fn case(name: &str) -> Case {
    let dir = oto_testkit::root().join("graphs/hessian_ref");
    let path = dir.join(format!("{name}.npz"));
    assert!(path.exists(), "{} missing: run `make graphs` (graphs/hessian_ref.py)", path.display());
    let reference = common::read_npz_map(&path);
    let data = common::read_npz_map(&dir.join(format!("{name}.batch.npz")));
    let exec = Executor::new(&oto_testkit::zoo_model(name), Device::Cpu).unwrap();
    let inputs = exec.inputs().map(|i| to_tch(&data[&i.name], Device::Cpu).unwrap()).collect();
    let batch = Batch { inputs, labels: Some(to_tch(&data["labels"], Device::Cpu).unwrap()) };
    let v: Vec<Tensor> = exec
        .trainable()
        .map(|p| match reference.get(&format!("v/{}", p.name)) {
            Some(t) => to_tch(t, Device::Cpu).unwrap().to_kind(p.tensor.kind()),
            None => p.tensor.zeros_like(),
        })
        .collect();
    let covered = exec.trainable().filter(|p| reference.contains_key(&format!("v/{}", p.name))).count();
    assert!(covered * 4 >= exec.trainable().count() * 3, "{name}: only {covered} parameters have a reference direction");
    Case { exec, batch, reference, v }
}

/// `||a - b|| / ||b||` over all tensors, in f64.
fn relative_l2(a: &[Tensor], b: &[Tensor]) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x.to_kind(Kind::Double), y.to_kind(Kind::Double));
        num += (&x - &y).square().sum(Kind::Double).double_value(&[]);
        den += y.square().sum(Kind::Double).double_value(&[]);
    }
    (num / den).sqrt()
}

/// Loss, gradient and H v equal PyTorch's within the project's tolerance
/// (|y - r| <= 1e-4 max(1, max|r|) per tensor); every parameter PyTorch has is compared.
fn matches_pytorch(name: &str) {
    let c = case(name);
    let curvature = Curvature::new(&c.exec, None, &c.batch, CE).unwrap();
    let ref_loss = c.reference["loss"].to_f64_vec()[0];
    assert!((curvature.loss() - ref_loss).abs() <= 1e-5 * ref_loss.abs().max(1.0), "{name}: loss {} vs {ref_loss}", curvature.loss());
    let grad = curvature.gradient();
    let hv = curvature.hvp(&c.v).unwrap();
    let mut compared = 0;
    for (k, p) in c.exec.trainable().enumerate() {
        for (what, ours) in [("grad", &grad[k]), ("hvp", &hv[k])] {
            let Some(r) = c.reference.get(&format!("{what}/{}", p.name)) else { continue };
            let r = to_tch(r, Device::Cpu).unwrap();
            let (err, tol) = common::rel_error(ours, &r);
            assert!(err <= tol, "{name}: {what} of '{}': max |error| {err:.3e} > {tol:.3e}", p.name);
            compared += 1;
        }
    }
    assert!(compared >= 2 * c.reference.keys().filter(|k| k.starts_with("v/")).count(), "{name}: {compared} tensors compared");
    // A second product along 2v from the same graph is 2 H v (the graph is kept).
    let twice = curvature.hvp(&c.v.iter().map(|t| t * 2.0).collect::<Vec<_>>()).unwrap();
    let doubled: Vec<Tensor> = hv.iter().map(|t| t * 2.0).collect();
    assert!(relative_l2(&twice, &doubled) < 1e-6, "{name}: H(2v) != 2 Hv");
}

/// The model computing in float64: float32 initializers, graph inputs and outputs, value
/// infos and `Cast`s to float32 become float64.
fn float64_model(model: &oto_onnx::Model) -> oto_onnx::Model {
    const FLOAT: i32 = 1;
    const DOUBLE: i32 = 11;
    let mut proto = model.proto.clone();
    let graph = proto.graph.as_mut().unwrap();
    for init in graph.initializer.iter_mut() {
        if init.data_type == Some(FLOAT) {
            let t = model.tensor(init).unwrap();
            let wide = oto_onnx::Tensor::new(t.shape.clone(), oto_onnx::tensor::TensorData::F64(t.to_f64_vec())).unwrap();
            *init = wide.to_proto(init.name.as_deref().unwrap_or_default());
        }
    }
    for vi in graph.input.iter_mut().chain(graph.output.iter_mut()).chain(graph.value_info.iter_mut()) {
        if let Some(oto_onnx::proto::type_proto::Value::TensorType(t)) = vi.r#type.as_mut().and_then(|t| t.value.as_mut()) {
            if t.elem_type == Some(FLOAT) {
                t.elem_type = Some(DOUBLE);
            }
        }
    }
    for node in graph.node.iter_mut().filter(|n| n.op_type.as_deref() == Some("Cast")) {
        for a in node.attribute.iter_mut().filter(|a| a.name.as_deref() == Some("to") && a.i == Some(FLOAT as i64)) {
            a.i = Some(DOUBLE as i64);
        }
    }
    oto_onnx::Model::from_proto(proto, &model.path().to_string_lossy(), model.base_dir().map(|p| p.to_path_buf())).unwrap()
}

/// H v equals (g(w + eps v) - g(w - eps v)) / (2 eps), v of unit norm, with the model in
/// float64 (in float32 the quotient's rounding, ~1e-7 |g| / eps, and the ReLU/MaxPool kinks a
/// step of eps >= 3e-4 already crosses on the demo CNN leave no eps that tests anything).
/// With eps = 1e-6 rounding is ~1e-10 |g| / |H v| and truncation ~eps^2; no kink is
/// crossed on these batches.
fn matches_finite_differences(name: &str) {
    let c = case(name);
    let exec = Executor::new(&float64_model(&oto_testkit::zoo_model(name)), Device::Cpu).unwrap();
    assert!(exec.trainable().all(|p| p.tensor.kind() == Kind::Double));
    let wide = |t: &Tensor| if t.is_floating_point() { t.to_kind(Kind::Double) } else { t.shallow_clone() };
    let batch = Batch { inputs: c.batch.inputs.iter().map(wide).collect(), labels: c.batch.labels.as_ref().map(Tensor::shallow_clone) };
    let v: Vec<Tensor> = c.v.iter().map(|t| t.to_kind(Kind::Double)).collect();
    let norm = v.iter().map(|t| t.square().sum(Kind::Double).double_value(&[])).sum::<f64>().sqrt();
    let v: Vec<Tensor> = v.iter().map(|t| t / norm).collect();
    let hv = Curvature::new(&exec, None, &batch, CE).unwrap().hvp(&v).unwrap();
    let eps = 1e-6;
    let shift = |sign: f64| {
        tch::no_grad(|| {
            for (p, d) in exec.trainable().zip(&v) {
                let _ = p.tensor.shallow_clone().g_add_(&(d * (sign * eps)));
            }
        });
    };
    shift(1.0);
    let plus = Curvature::new(&exec, None, &batch, CE).unwrap().gradient();
    shift(-2.0);
    let minus = Curvature::new(&exec, None, &batch, CE).unwrap().gradient();
    shift(1.0);
    let fd: Vec<Tensor> = plus.iter().zip(&minus).map(|(a, b)| (a - b) / (2.0 * eps)).collect();
    let err = relative_l2(&fd, &hv);
    println!("{name}: |FD - Hv| / |Hv| = {err:.3e} (float64, eps {eps:e})");
    assert!(err < 1e-6, "{name}: finite differences of the gradient differ from H v by {err:.3e} (relative)");
}

#[test]
fn mlp_hvp_matches_pytorch() {
    matches_pytorch("mlp");
}

#[test]
fn demo_cnn_hvp_matches_pytorch() {
    matches_pytorch("demo_cnn");
}

#[test]
fn bert_tiny_hvp_matches_pytorch() {
    matches_pytorch("bert_tiny");
}

#[test]
fn mlp_hvp_matches_finite_differences() {
    matches_finite_differences("mlp");
}

#[test]
fn demo_cnn_hvp_matches_finite_differences() {
    matches_finite_differences("demo_cnn");
}

#[test]
fn bert_tiny_hvp_matches_finite_differences() {
    matches_finite_differences("bert_tiny");
}

/// Every operator of these zoo models has a double backward in libtorch: the per-node
/// probe (`Executor::double_backward_gap`, the diagnosis of a failed product) finds no gap.
#[test]
fn zoo_operators_have_second_derivatives() {
    for name in ["mlp", "demo_cnn", "bert_tiny", "gpt2_tiny", "vit_tiny", "groupnorm", "convtranspose_in", "concat_bn", "grouped_conv"] {
        let exec = Executor::new(&oto_testkit::zoo_model(name), Device::Cpu).unwrap();
        let inputs: Vec<Tensor> = oto_testkit::zoo_inputs(name).iter().map(|(_, t)| to_tch(t, Device::Cpu).unwrap()).collect();
        let gap = exec.double_backward_gap(&inputs, oto_torch::exec::Mode::Eval).unwrap();
        assert!(gap.is_none(), "{name}: {}", gap.map(|e| e.to_string()).unwrap_or_default());
    }
}
