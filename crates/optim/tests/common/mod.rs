//! Shared helpers of the oto-optim tests: small MLPs with deterministic weights, and a
//! trainer over demo_cnn and the digits data for the resume tests.
#![allow(dead_code)]

use oto_graph::{analyze, Analysis, AnalyzeOptions};
use oto_onnx::builder::{batch_dims, GraphBuilder};
use oto_onnx::Model;
use oto_optim::{Hesso, HessoConfig};
use oto_torch::data::Dataset;
use oto_torch::exec::Executor;
use oto_torch::loss::Loss;
use oto_torch::optim::OptimizerConfig;
use oto_torch::schedule::Schedule;
use oto_torch::train::{TrainConfig, Trainer};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

/// A deterministic pseudo-random value in [-1, 1) from an index and a seed.
pub fn noise(i: usize, seed: u64) -> f32 {
    let mut z = (i as u64).wrapping_add(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
}

/// `x -> MatMul(w_i) -> Add(b_i) -> Relu` for each hidden width, then a linear output.
/// `fill(layer, name, index)` gives the initial weights.
pub fn mlp(inputs: usize, hidden: &[usize], outputs: usize, fill: &dyn Fn(usize, &str, usize) -> f32) -> Model {
    let mut b = GraphBuilder::new("mlp");
    let mut h = b.input_f32("x", &batch_dims(&[inputs as i64]));
    let mut width = inputs;
    let widths: Vec<usize> = hidden.iter().copied().chain([outputs]).collect();
    for (layer, &next) in widths.iter().enumerate() {
        let w = b.weight(&format!("w{layer}"), &[width, next], |i| fill(layer, "w", i));
        let bias = b.weight(&format!("b{layer}"), &[next], |i| fill(layer, "b", i));
        let m = b.node("MatMul", &[&h, &w], &[]);
        h = b.node("Add", &[&m, &bias], &[]);
        if layer + 1 < widths.len() {
            h = b.node("Relu", &[&h], &[]);
        }
        width = next;
    }
    b.output_f32(&h, &batch_dims(&[outputs as i64]));
    b.build().unwrap()
}

/// The default analysis of `model`.
pub fn analysis_of(model: &Model) -> Analysis {
    analyze(model, &AnalyzeOptions::default()).unwrap()
}

/// `n` samples of `features` deterministic inputs in [-1.5, 1.5).
pub fn inputs(n: usize, features: usize, seed: u64) -> Tensor {
    let v: Vec<f32> = (0..n * features).map(|i| noise(i, seed) * 1.5).collect();
    Tensor::from_slice(&v).reshape([n as i64, features as i64])
}

/// How [`demo_trainer`] trains.
pub struct DemoRun {
    /// `sgd`, `adam` or `adamw`.
    pub optimizer: &'static str,
    /// Base learning rate (cosine to 0).
    pub lr: f64,
    /// Seed of the data order.
    pub seed: u64,
    /// Steps in the job.
    pub steps: u64,
    /// Steps between checkpoints.
    pub checkpoint_every: u64,
}

/// A trainer over demo_cnn and the digits data (batch 32), stepping HESSO with `hesso`.
pub fn demo_trainer(run: &DemoRun, hesso: HessoConfig, checkpoint: Option<PathBuf>) -> Trainer<Hesso> {
    let model = oto_testkit::zoo_model("demo_cnn");
    let analysis = analysis_of(&model);
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    let inputs: Vec<_> = exec.inputs().cloned().collect();
    let data = Dataset::load(&oto_testkit::root().join("examples/data/digits_train.npz"), &inputs).unwrap();
    let optimizer = OptimizerConfig::parse(run.optimizer).unwrap();
    let config = TrainConfig {
        steps: run.steps,
        batch_size: 32,
        optimizer,
        schedule: Schedule::parse("cosine", run.lr, 0, run.steps).unwrap(),
        loss: Loss::CrossEntropy { label_smoothing: 0.0 },
        clip_grad_norm: None,
        seed: run.seed,
        checkpoint,
        checkpoint_every: run.checkpoint_every,
    };
    let hesso = Hesso::from_executor(&exec, &analysis, optimizer, hesso).unwrap();
    Trainer::with_optimizer(exec, None, data, config, hesso).unwrap()
}

/// The bits of every weight, buffer and base-optimizer state tensor of a trainer, by name.
pub fn state_bits(t: &Trainer<Hesso>) -> Vec<(String, Vec<u32>)> {
    let bits = |t: &Tensor| Vec::<f32>::try_from(t.flatten(0, -1).to_kind(Kind::Float)).unwrap().iter().map(|v| v.to_bits()).collect();
    let mut out: Vec<(String, Vec<u32>)> = t.exec.state().into_iter().map(|(n, t)| (n, bits(&t))).collect();
    for (name, s) in t.optimizer.base.names.iter().zip(&t.optimizer.base.state) {
        for (field, tensor) in [("momentum", &s.momentum_buffer), ("exp_avg", &s.exp_avg), ("exp_avg_sq", &s.exp_avg_sq)] {
            if let Some(tensor) = tensor {
                out.push((format!("{name}/{field}"), bits(tensor)));
            }
        }
    }
    out
}
