//! oto-quant against onnxruntime: the arithmetic bit for bit, the rewrite on single layers
//! within the error bound the scales give, and zoo models wired exactly.

use oto_onnx::builder::{Attr, GraphBuilder};
use oto_onnx::proto::ModelProto;
use oto_onnx::{Dim, Model, Tensor, TensorData};
use oto_quant::calib::Range;
use oto_quant::math::{self, QType, QuantizedWeight};
use oto_quant::rewrite::int_tensor;
use oto_quant::{quantize_model, BitPlan, Bits, QuantizeOptions};
use oto_testkit::{deviation, observed_ranges, run_ort, zoo_inputs, zoo_model};
use std::collections::HashMap;

/// Deterministic values in about [-1, 1] with both signs (a linear congruential sequence).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn f32_tensor(shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::new(shape.to_vec(), TensorData::F32(v)).unwrap()
}

/// A model `y = DequantizeLinear(q, scale, zero_point)` on initializers, at `opset`.
fn dequantize_model(q: &QuantizedWeight, opset: i64) -> ModelProto {
    let mut b = GraphBuilder::new("dq");
    b.opset(opset);
    let mut attrs = vec![("axis", Attr::Int(q.axis as i64))];
    if let Some(bs) = q.block_size {
        attrs.push(("block_size", Attr::Int(bs as i64)));
    }
    b.initializer("scale", f32_tensor(&q.scale_shape, q.scales.clone()));
    let y = b.node_with("DequantizeLinear", &["q", "scale", "zp"], &["y"], &attrs);
    let dims: Vec<Dim> = q.shape.iter().map(|&d| Dim::Known(d as i64)).collect();
    b.output_f32(&y, &dims);
    let mut proto = b.proto();
    let g = proto.graph.as_mut().unwrap();
    g.initializer.push(int_tensor("q", &q.shape, &q.values, q.qtype));
    g.initializer.push(int_tensor("zp", &q.scale_shape, &vec![0; q.scales.len()], q.qtype));
    proto.ir_version = Some(10);
    proto
}

fn bits(v: &[f64]) -> Vec<u32> {
    v.iter().map(|&x| (x as f32).to_bits()).collect()
}

#[test]
fn dequantized_weights_equal_onnxruntime_bit_for_bit() {
    // int8 per output channel: a Conv-like [6, 5, 3] weight, axis 0 and a Gemm-like axis 1.
    for (shape, axis) in [(vec![6usize, 5, 3], 0usize), (vec![7, 9], 1)] {
        let n = shape.iter().product();
        let w = values(n, 1);
        let q = math::quantize_per_axis(&w, &shape, axis, QType::Int8).unwrap();
        let ort = run_ort(&dequantize_model(&q, 13), &[]);
        let ours: Vec<f64> = q.dequantize().into_iter().map(f64::from).collect();
        assert_eq!(bits(&ort[0].1), bits(&ours), "int8 {shape:?} axis {axis}");
        assert!(q.values.iter().any(|&v| v < 0) && q.values.iter().any(|&v| v == 127 || v == -127));
    }
    // int4 blockwise along the input axis, odd sizes: 11 entries in blocks of 4 (the last of 3),
    // an odd element count (packing pads a nibble).
    for (shape, axis, block) in [(vec![3usize, 11, 1], 1usize, 4usize), (vec![11, 5], 0, 4), (vec![5, 3, 3, 3], 1, 2)] {
        let n = shape.iter().product();
        let w = values(n, 2);
        let q = math::quantize_blockwise(&w, &shape, axis, block, QType::Int4).unwrap();
        let ort = run_ort(&dequantize_model(&q, 21), &[]);
        let ours: Vec<f64> = q.dequantize().into_iter().map(f64::from).collect();
        assert_eq!(bits(&ort[0].1), bits(&ours), "int4 {shape:?} axis {axis} block {block}");
        assert!(q.values.contains(&-7) && q.values.contains(&7));
    }
}

#[test]
fn quantize_rounding_equals_onnxruntime_including_ties() {
    // x = (k + 0.5) * 0.25 and k * 0.25 for k in -20..20: exact ties of x / scale, and
    // values beyond the int4 and int8 ranges (saturation); per axis on a [2, 80] input.
    let row: Vec<f32> = (-40..40).map(|k| (k as f32 * 0.5 + if k % 2 == 0 { 0.25 } else { 0.0 }) * 0.25).collect();
    let mut x = row.clone();
    x.extend(row.iter().map(|v| v * 300.0));
    let scales = [0.25f32, 0.0625];
    let zps = [3i32, -2];
    for (q, opset) in [(QType::Int8, 13), (QType::Uint8, 13), (QType::Int4, 21)] {
        let zps: Vec<i32> = zps.iter().map(|&z| if q == QType::Uint8 { z + 10 } else { z }).collect();
        let mut b = GraphBuilder::new("qdq");
        b.opset(opset);
        let xi = b.input_f32("x", &[Dim::Known(2), Dim::Known(80)]);
        b.initializer("s", f32_tensor(&[2], scales.to_vec()));
        let y = b.node_with("QuantizeLinear", &[&xi, "s", "z"], &["q"], &[("axis", Attr::Int(0))]);
        let d = b.node_with("DequantizeLinear", &[&y, "s", "z"], &["d"], &[("axis", Attr::Int(0))]);
        b.output_f32(&d, &[Dim::Known(2), Dim::Known(80)]);
        let mut proto = b.proto();
        proto.graph.as_mut().unwrap().initializer.push(int_tensor("z", &[2], &zps, q));
        proto.ir_version = Some(10);
        let ort = run_ort(&proto, &[("x".into(), f32_tensor(&[2, 80], x.clone()))]);
        let ours: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = i / 80;
                f64::from(math::dequantize(math::quantize(v, scales[c], zps[c], q), scales[c], zps[c]))
            })
            .collect();
        assert_eq!(bits(&ort[0].1), bits(&ours), "{q:?}");
    }
}

/// Runs the rewrite with `bits` weights and no activation quantization.
fn weight_only(model: &Model, bits: Bits, block: usize) -> (Model, oto_quant::QuantizeReport) {
    quantize_model(model, &QuantizeOptions { plan: BitPlan::uniform(bits), block_size: block, activations: None }).unwrap()
}

/// `model` with every quantized weight replaced by its dequantized float values (what
/// the QDQ model computes with, exactly).
fn fake_quantized(model: &Model, bits: Bits, block: usize) -> ModelProto {
    let (targets, _) = oto_quant::rewrite::targets(model).unwrap();
    let mut proto = model.proto.clone();
    for t in targets {
        let init = proto.graph.as_mut().unwrap().initializer.iter_mut().find(|i| i.name.as_deref() == Some(&t.weight)).unwrap();
        let w = model.tensor(init).unwrap();
        let w = w.as_f32().unwrap();
        let q = match bits {
            Bits::Int8 => math::quantize_per_axis(w, &t.shape, t.out_axis, QType::Int8).unwrap(),
            _ => math::quantize_blockwise(w, &t.shape, t.in_axis, block, QType::Int4).unwrap(),
        };
        *init = f32_tensor(&t.shape, q.dequantize()).to_proto(&t.weight);
    }
    proto
}

/// Single layers: `|y_q - y| <= sum_k |x_k| |W_q - W|_kj`, and `|W_q - W| <= scale / 2`
/// elementwise, so `|y_q - y|_j <= sum_k |x_k| * s(k, j) / 2` (plus float32 rounding).
/// The check uses the looser `max_k s(k, j) / 2 * sum_k |x_k|` per output channel.
#[test]
fn single_layers_stay_within_the_scale_bound() {
    // Gemm with transB: weight [N=6, K=10]; MatMul: [K=10, N=6]. Input [4, 10].
    let x = values(40, 3);
    let xs: f32 = x.chunks(10).map(|r| r.iter().map(|v| v.abs()).sum::<f32>()).fold(0.0, f32::max);
    for (op, shape, trans_b) in [("Gemm", [6usize, 10], 1i64), ("Gemm", [10, 6], 0), ("MatMul", [10, 6], 0)] {
        for (bits, block) in [(Bits::Int8, 0usize), (Bits::Int4, 4)] {
            let mut b = GraphBuilder::new("layer");
            let xi = b.input_f32("x", &[Dim::Known(4), Dim::Known(10)]);
            b.initializer("w", f32_tensor(&shape, values(60, 4)));
            let attrs = if op == "Gemm" { vec![("transB", Attr::Int(trans_b))] } else { vec![] };
            let y = b.node_with(op, &[&xi, "w"], &["y"], &attrs);
            b.output_f32(&y, &[Dim::Known(4), Dim::Known(6)]);
            let model = b.build().unwrap();
            let (q, report) = weight_only(&model, bits, block.max(2));
            assert_eq!(report.weights.len(), 1);
            let inputs = vec![("x".to_string(), f32_tensor(&[4, 10], x.clone()))];
            let yf = run_ort(&model.proto, &inputs);
            let yq = run_ort(&q.proto, &inputs);
            let w = model.tensor(&model.proto.graph.as_ref().unwrap().initializer[0]).unwrap();
            let w = w.as_f32().unwrap().to_vec();
            let smax = w.iter().fold(0f32, |m, v| m.max(v.abs())) / if bits == Bits::Int8 { 127.0 } else { 7.0 };
            let bound = f64::from(xs * smax / 2.0) + 1e-5;
            let (err, _) = deviation(&yf, &yq);
            assert!(err <= bound, "{op} transB={trans_b} {bits:?}: error {err} above the bound {bound}");
            assert!(err > 0.0, "{op} {bits:?}: quantization changed nothing");
        }
    }
}

/// Counts of the operators of the graph onnxruntime runs for `model` (after its
/// optimizations, 2 threads).
fn optimized_ops(model: &Model) -> HashMap<String, usize> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("optimized.onnx");
    let options = oto_ort::SessionOptions { intra_threads: Some(2), optimized_model: Some(path.clone()), ..Default::default() };
    oto_ort::Session::from_bytes(&model.to_bytes().unwrap(), &options).unwrap();
    let optimized = Model::load(&path).unwrap();
    let mut ops = HashMap::new();
    for n in &optimized.proto.graph.as_ref().unwrap().node {
        *ops.entry(n.op_type.clone().unwrap_or_default()).or_insert(0) += 1;
    }
    ops
}

/// demo_cnn and resnet18 from the zoo: weight-only int8 and int4 QDQ models in onnxruntime
/// compute what the float model with the dequantized weights computes (to float32
/// reassociation: 1e-4 of the largest output); with calibrated activations they keep the
/// inputs and outputs, their activations are uint8, and onnxruntime runs every int8
/// convolution as `QLinearConv` (none left float) and every residual `Add` between two of
/// them as `QLinearAdd`.
#[test]
fn zoo_models_are_wired_exactly() {
    // resnet18's last Add feeds the average pool, not a convolution: it stays float.
    for (name, adds) in [("demo_cnn", 0usize), ("resnet18", 7)] {
        let model = zoo_model(name);
        let inputs = zoo_inputs(name);
        for (bits, block) in [(Bits::Int8, 32usize), (Bits::Int4, 32)] {
            let (q, report) = weight_only(&model, bits, block);
            assert!(report.skipped.is_empty(), "{name}: {:?}", report.skipped);
            let expected = run_ort(&fake_quantized(&model, bits, block), &inputs);
            let got = run_ort(&q.proto, &inputs);
            let (err, tol) = deviation(&expected, &got);
            assert!(err <= tol, "{name} {bits:?}: {err} > {tol}");
            let ratio = report.stored_bytes() as f64 / report.float_bytes() as f64;
            eprintln!("{name} {bits:?}: {} weights, stored/float {ratio:.4}, opset {:?}", report.weights.len(), report.opset);
        }
        // Activations with ranges observed on the reference inputs themselves.
        let plan = BitPlan::uniform(Bits::Int8);
        let (targets, _) = oto_quant::rewrite::targets(&model).unwrap();
        let values = oto_quant::rewrite::activation_values(&model, &targets, &plan).unwrap();
        let ranges: HashMap<String, Range> =
            observed_ranges(&model, &values, &inputs).into_iter().map(|(v, (min, max))| (v, Range { min, max })).collect();
        let (q, report) = quantize_model(&model, &QuantizeOptions { plan, block_size: 32, activations: Some(ranges) }).unwrap();
        assert_eq!(report.activations.len(), values.len());
        let out = run_ort(&q.proto, &inputs);
        let float = run_ort(&model.proto, &inputs);
        assert_eq!(out.iter().map(|o| &o.0).collect::<Vec<_>>(), float.iter().map(|o| &o.0).collect::<Vec<_>>());
        let g = q.proto.graph.as_ref().unwrap();
        let names = |v: &[oto_onnx::proto::ValueInfoProto]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
        let f = model.proto.graph.as_ref().unwrap();
        assert_eq!(names(&g.input), names(&f.input));
        assert_eq!(names(&g.output), names(&f.output));
        for n in g.node.iter().filter(|n| n.op_type.as_deref() == Some("QuantizeLinear")) {
            let zp = g.initializer.iter().find(|t| Some(t.name.as_deref().unwrap_or_default()) == n.input.get(2).map(String::as_str));
            assert_eq!(zp.and_then(|t| t.data_type), Some(oto_onnx::DType::U8.onnx_code()), "{name}: {:?}", n.name);
        }
        let convs = f.node.iter().filter(|n| n.op_type.as_deref() == Some("Conv")).count();
        let ops = optimized_ops(&q);
        let count = |op: &str| ops.get(op).copied().unwrap_or(0);
        eprintln!("{name}: {} activations; onnxruntime runs {ops:?}", values.len());
        assert_eq!((count("QLinearConv"), count("Conv")), (convs, 0), "{name}: {ops:?}");
        assert_eq!(count("QLinearAdd"), adds, "{name}: {ops:?}");
    }
}

/// Mixed int4/int8 on a transformer: int4 weights are weight-only (their input stays float),
/// so onnxruntime fuses every int4 MatMul into `MatMulNBits`; the int8 ones read quantized
/// inputs and run in integers. The outputs stay within the quantization's error of the
/// float model's.
#[test]
fn int4_matmuls_are_weight_only_and_fuse() {
    let model = zoo_model("bert_tiny");
    let inputs = zoo_inputs("bert_tiny");
    let (targets, _) = oto_quant::rewrite::targets(&model).unwrap();
    let nodes = &model.proto.graph.as_ref().unwrap().node;
    let matmul =
        |t: &oto_quant::rewrite::Target| nodes.iter().any(|n| n.op_type.as_deref() == Some("MatMul") && n.input.get(1) == Some(&t.weight));
    // Every other MatMul weight int4, the rest int8.
    let int4: Vec<String> = targets.iter().filter(|t| matmul(t)).step_by(2).map(|t| t.weight.clone()).collect();
    assert!(int4.len() >= 4, "{} int4 MatMul weights", int4.len());
    let plan = BitPlan { default_bits: Bits::Int8, weights: int4.iter().map(|w| (w.clone(), Bits::Int4)).collect() };
    let values = oto_quant::rewrite::activation_values(&model, &targets, &plan).unwrap();
    let ranges: HashMap<String, Range> =
        observed_ranges(&model, &values, &inputs).into_iter().map(|(v, (min, max))| (v, Range { min, max })).collect();
    let (q, _) = quantize_model(&model, &QuantizeOptions { plan, block_size: 32, activations: Some(ranges) }).unwrap();
    let g = q.proto.graph.as_ref().unwrap();
    for w in &int4 {
        let dequantized = format!("{w}_dequantized");
        for n in g.node.iter().filter(|n| n.input.get(1) == Some(&dequantized)) {
            let x = &n.input[0];
            assert!(!x.ends_with("_dequantized"), "int4 weight {w}: {:?} reads the quantized activation {x}", n.name);
        }
    }
    let ops = optimized_ops(&q);
    let count = |op: &str| ops.get(op).copied().unwrap_or(0);
    eprintln!("bert_tiny mixed: {} int4 MatMul weights; onnxruntime runs {ops:?}", int4.len());
    assert_eq!(count("MatMulNBits"), int4.len(), "{ops:?}");
    let float = run_ort(&model.proto, &inputs);
    let got = run_ort(&q.proto, &inputs);
    for ((name, a), (_, b)) in float.iter().zip(&got) {
        let (num, den) = a.iter().zip(b).fold((0f64, 0f64), |(n, d), (x, y)| (n + (x - y).powi(2), d + x.powi(2)));
        let rel = (num / den.max(f64::MIN_POSITIVE)).sqrt();
        assert!(rel < 0.1, "{name}: relative error {rel}");
    }
}

/// Old files (opset 7 to 9, IR 3) need the opset raised to 13: their Unsqueeze (axes
/// attribute), Softmax (flatten-to-2-D axis) and Dropout (ratio attribute) are converted,
/// and the QDQ model in onnxruntime computes what the original file with dequantized
/// weights computes at its own opset.
#[test]
fn legacy_models_are_raised_keeping_their_meaning() {
    for name in ["resnet_mul_add", "alexnet_lite", "squeeze_head", "batch_mixed"] {
        let model = oto_testkit::legacy_model(name);
        let inputs = oto_onnx::npz::read_npz(oto_testkit::legacy_path(&format!("{name}.inputs.npz"))).unwrap();
        let (q, report) = weight_only(&model, Bits::Int8, 32);
        assert_eq!(report.opset.1, 13, "{name}");
        assert!(report.opset.0 < 13, "{name}");
        let expected = run_ort(&fake_quantized(&model, Bits::Int8, 32), &inputs);
        let got = run_ort(&q.proto, &inputs);
        let (err, tol) = deviation(&expected, &got);
        assert!(err <= tol, "{name}: {err} > {tol}");
    }
}

/// A node whose definition changed and that oto does not convert is refused by name:
/// GroupNormalization's scale and bias went from per group to per channel at opset 21.
#[test]
fn an_unconvertible_node_is_named() {
    let mut b = GraphBuilder::new("gn");
    b.opset(18);
    let x = b.input_f32("x", &[Dim::Known(1), Dim::Known(4), Dim::Known(3), Dim::Known(3)]);
    b.initializer("w", f32_tensor(&[4, 4, 1, 1], values(16, 5)));
    b.initializer("s", f32_tensor(&[2], vec![1.0, 2.0]));
    b.initializer("bias", f32_tensor(&[2], vec![0.0, 1.0]));
    let c = b.node("Conv", &[&x, "w"], &["c"]);
    let y = b.node_with("GroupNormalization", &[&c, "s", "bias"], &["y"], &[("num_groups", Attr::Int(2))]);
    b.output_f32(&y, &[Dim::Known(1), Dim::Known(4), Dim::Known(3), Dim::Known(3)]);
    let model = b.build().unwrap();
    // int8 needs opset 13 only: fine.
    assert_eq!(weight_only(&model, Bits::Int8, 32).1.opset, (18, 18));
    let e = quantize_model(&model, &QuantizeOptions { plan: BitPlan::uniform(Bits::Int4), block_size: 2, activations: None }).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("GroupNormalization") && text.contains("from 18 to 21"), "{text}");
}

/// Opset 11 to 21 (int4): Split's `split` attribute becomes input 1, a Split without
/// sizes gets `num_outputs` (18), ReduceMean's and Squeeze's `axes` attributes become
/// inputs; onnxruntime computes on the raised QDQ model what the original file with the
/// dequantized weights computes.
#[test]
fn split_reduce_and_squeeze_are_converted() {
    let mut b = GraphBuilder::new("convert");
    b.opset(11);
    let x = b.input_f32("x", &[Dim::Known(3), Dim::Known(6)]);
    b.initializer("w", f32_tensor(&[6, 8], values(48, 6)));
    let h = b.node("MatMul", &[&x, "w"], &["h"]);
    b.node_with("Split", &[&h], &["a", "b"], &[("axis", Attr::Int(1)), ("split", Attr::Ints(vec![3, 5]))]);
    b.node_with("Split", &[&h], &["c", "d"], &[("axis", Attr::Int(1))]);
    b.node_with("ReduceMean", &["b"], &["m"], &[("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(1))]);
    b.node_with("Unsqueeze", &["m"], &["u"], &[("axes", Attr::Ints(vec![0]))]);
    b.node_with("Squeeze", &["u"], &["s"], &[("axes", Attr::Ints(vec![0]))]);
    let y = b.node("Add", &["a", "s"], &["y"]);
    let z = b.node("Sub", &["c", "d"], &["z"]);
    b.output_f32(&y, &[Dim::Known(3), Dim::Known(3)]);
    b.output_f32(&z, &[Dim::Known(3), Dim::Known(4)]);
    let model = b.build().unwrap();
    let (q, report) = weight_only(&model, Bits::Int4, 2);
    assert_eq!(report.opset, (11, 21));
    let g = q.proto.graph.as_ref().unwrap();
    assert!(g.node.iter().all(|n| !n.attribute.iter().any(|a| matches!(a.name.as_deref(), Some("axes" | "split")))));
    let inputs = vec![("x".to_string(), f32_tensor(&[3, 6], values(18, 7)))];
    let expected = run_ort(&fake_quantized(&model, Bits::Int4, 2), &inputs);
    let got = run_ort(&q.proto, &inputs);
    let (err, tol) = deviation(&expected, &got);
    assert!(err <= tol, "{err} > {tol}");
}
