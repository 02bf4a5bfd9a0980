//! Which initializers train: one read only as an operator's setting (the data of an
//! `Expand`, a class token broadcast over the batch) is a constant until the job asks
//! for it to train (a pruning group's producer), and then it gets a gradient.

use oto_onnx::builder::{batch_dims, Attr, GraphBuilder};
use oto_torch::exec::{Executor, Mode};
use tch::{Device, Kind, Tensor};

#[test]
fn an_expanded_token_trains_when_asked() {
    let mut b = GraphBuilder::new("class_token");
    let x = b.input_f32("x", &batch_dims(&[3, 4]));
    let token = b.weight("token", &[1, 1, 4], |i| i as f32 + 1.0);
    let target = b.ints("target", &[2, 1, 1]);
    let tokens = b.node("Expand", &[&token, &target], &[]);
    let joined = b.node_with("Concat", &[&tokens, &x], &[], &[("axis", Attr::Int(1))]);
    let w = b.weight("w", &[4, 2], |i| i as f32 / 8.0);
    let y = b.node("MatMul", &[&joined, &w], &["y"]);
    b.output_f32(&y, &batch_dims(&[4, 2]));
    let model = b.build().unwrap();

    let mut exec = Executor::new(&model, Device::Cpu).unwrap();
    let names = |e: &Executor| e.trainable().map(|p| p.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&exec), ["w"]);
    exec.train_also(&["token", "no_such_initializer"]);
    assert_eq!(names(&exec), ["w", "token"]);

    let x = Tensor::ones([2, 3, 4], (Kind::Float, Device::Cpu));
    let y = exec.forward(&[x], Mode::Train).unwrap().remove(0);
    y.sum(Kind::Float).backward();
    let token = exec.trainable().find(|p| p.name == "token").unwrap();
    let grad = token.tensor.grad();
    assert!(grad.defined(), "no gradient reached the token");
    // d sum(y) / d token[k] = 2 (batch) * sum_j w[k, j].
    let want: Vec<f32> = (0..4).map(|k| 2.0 * (2 * k + 2 * k + 1) as f32 / 8.0).collect();
    assert_eq!(Vec::<f32>::try_from(grad.flatten(0, -1)).unwrap(), want);
}
