//! Operator rules not covered by the zoo: Dropout in both modes, opset-dependent
//! forms, negative-step Slice, asymmetric pads, unsupported operators.

#[path = "../../onnx/tests/common/normalize_cases.rs"]
mod cases;

use oto_onnx::builder::{batch_dims, known_dims, Attr, GraphBuilder};
use oto_onnx::{Dim, Tensor as OnnxTensor};
use oto_torch::exec::{Executor, Mode};
use tch::{Device, Kind, Tensor};

fn run(b: &GraphBuilder, x: &Tensor, mode: Mode) -> Tensor {
    let model = b.clone().build().unwrap();
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    tch::no_grad(|| exec.forward(&[x.shallow_clone()], mode)).unwrap().remove(0)
}

#[test]
fn dropout_is_identity_in_eval_and_drops_in_train() {
    let mut b = GraphBuilder::new("dropout");
    let x = b.input_f32("x", &batch_dims(&[1000]));
    let ratio = b.initializer("ratio", OnnxTensor::new(vec![], oto_onnx::TensorData::F32(vec![0.25])).unwrap());
    let y = b.node("Dropout", &[&x, &ratio], &[]);
    b.output_f32(&y, &batch_dims(&[1000]));
    let x = Tensor::ones([4, 1000], (Kind::Float, Device::Cpu));
    assert!(run(&b, &x, Mode::Eval).equal(&x));
    tch::manual_seed(1);
    let y = run(&b, &x, Mode::Train);
    let kept = y.ne(0.0).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
    assert!((kept - 0.75).abs() < 0.03, "kept {kept}");
    // Survivors are scaled by 1 / (1 - p).
    let survivors = y.masked_select(&y.ne(0.0));
    assert!(survivors.allclose(&Tensor::full([survivors.size()[0]], 1.0 / 0.75, (Kind::Float, Device::Cpu)), 1e-6, 1e-6, false));
}

#[test]
fn opset_11_attribute_forms_and_slices() {
    // Opset 11: Unsqueeze/Squeeze/ReduceSum take axes as attributes.
    let mut b = GraphBuilder::new("forms");
    b.opset(11);
    let x = b.input_f32("x", &batch_dims(&[6]));
    let u = b.node_with("Unsqueeze", &[&x], &[], &[("axes", Attr::Ints(vec![1]))]);
    let s = b.node_with("ReduceSum", &[&u], &[], &[("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(0))]);
    let starts = b.ints("starts", &[-1]);
    let ends = b.ints("ends", &[-100]);
    let axes = b.ints("axes", &[1]);
    let steps = b.ints("steps", &[-2]);
    let y = b.node("Slice", &[&s, &starts, &ends, &axes, &steps], &[]);
    let pads = b.ints("pads", &[0, 2, 0, 1]);
    let p = b.node_with("Pad", &[&y, &pads], &[], &[("mode", Attr::Str("constant".into()))]);
    b.output_f32(&p, &[Dim::sym("batch"), Dim::Known(6)]);
    let x = Tensor::arange(12, (Kind::Float, Device::Cpu)).reshape([2, 6]);
    let got = run(&b, &x, Mode::Eval);
    // x[:, ::-2] from the last element = columns 5, 3, 1; then 2 zeros before, 1 after.
    let expected = Tensor::from_slice(&[0.0f32, 0.0, 5.0, 3.0, 1.0, 0.0, 0.0, 0.0, 11.0, 9.0, 7.0, 0.0]).reshape([2, 6]);
    assert!(got.equal(&expected), "{got}");
}

#[test]
fn asymmetric_conv_pads_match_explicit_padding() {
    let mut b = GraphBuilder::new("conv");
    let x = b.input_f32("x", &batch_dims(&[1, 5, 5]));
    let w = b.weight("w", &[2, 1, 3, 3], |i| (i as f32 * 0.37).sin());
    let y = b.node_with("Conv", &[&x, &w], &[], &[("pads", Attr::Ints(vec![0, 1, 2, 0])), ("strides", Attr::Ints(vec![1, 2]))]);
    b.output_f32(&y, &batch_dims(&[2, 5, 2]));
    let x = Tensor::randn([2, 1, 5, 5], (Kind::Float, Device::Cpu));
    let got = run(&b, &x, Mode::Eval);
    let model = b.clone().build().unwrap();
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    let w = exec.parameters()[0].tensor.detach();
    // pads [top 0, left 1, bottom 2, right 0]: torch's pad list is (left, right, top, bottom).
    let expected = x.constant_pad_nd([1, 0, 0, 2]).conv2d(&w, None::<&Tensor>, [1, 2], [0, 0], [1, 1], 1);
    assert_eq!(got.size(), vec![2, 2, 5, 2]);
    assert!(got.allclose(&expected, 1e-6, 1e-6, false));
}

#[test]
fn unsupported_operators_are_refused_naming_the_node() {
    let mut b = GraphBuilder::new("bad");
    let x = b.input_f32("x", &batch_dims(&[4]));
    let y = b.node("NonMaxSuppression", &[&x], &["boxes"]);
    b.output_f32(&y, &batch_dims(&[4]));
    let model = b.build().unwrap();
    let err = Executor::new(&model, Device::Cpu).err().expect("NonMaxSuppression must be refused").to_string();
    assert!(err.contains("NonMaxSuppression") && err.contains("not supported"), "{err}");
}

/// `(outputs, gradients of sum(y * c) for each input)` of a model run in train mode.
fn grads(b: &GraphBuilder, inputs: &[Tensor], c: &Tensor) -> (Tensor, Vec<Tensor>) {
    let model = b.clone().build().unwrap();
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    let inputs: Vec<Tensor> = inputs.iter().map(|t| t.detach().set_requires_grad(true)).collect();
    let y = exec.forward(&inputs, Mode::Train).unwrap().remove(0);
    (&y * c).sum(Kind::Float).backward();
    (y.detach(), inputs.iter().map(Tensor::grad).collect())
}

#[test]
fn gather_nd_gathers_batched_rows_and_its_gradient_accumulates() {
    let mut b = GraphBuilder::new("gathernd");
    let x = b.input_f32("x", &known_dims(&[2, 3, 4]));
    // batch 0 takes rows 2 and 0; batch 1 takes row 2 twice (its gradient adds up).
    let idx = b.initializer("idx", OnnxTensor::new(vec![2, 2, 1], oto_onnx::TensorData::I64(vec![2, 0, 2, -1])).unwrap());
    let y = b.node_with("GatherND", &[&x, &idx], &[], &[("batch_dims", Attr::Int(1))]);
    b.output_f32(&y, &known_dims(&[2, 2, 4]));
    let x = Tensor::randn([2, 3, 4], (Kind::Float, Device::Cpu));
    let c = Tensor::randn([2, 2, 4], (Kind::Float, Device::Cpu));
    let (y, g) = grads(&b, &[x.shallow_clone()], &c);
    let rows = |b: i64, r: &[i64]| x.get(b).index_select(0, &Tensor::from_slice(r));
    assert!(y.equal(&Tensor::stack(&[rows(0, &[2, 0]), rows(1, &[2, 2])], 0)));
    let expected = Tensor::zeros([2, 3, 4], (Kind::Float, Device::Cpu));
    expected.get(0).get(2).copy_(&c.get(0).get(0));
    expected.get(0).get(0).copy_(&c.get(0).get(1));
    expected.get(1).get(2).copy_(&(c.get(1).get(0) + c.get(1).get(1)));
    assert!(g[0].allclose(&expected, 1e-6, 1e-6, false), "{g:?}");
}

#[test]
fn scatter_nd_replaces_or_multiplies_rows_and_its_gradients_flow_to_data_and_updates() {
    for reduction in ["none", "mul"] {
        let mut b = GraphBuilder::new("scatternd");
        let x = b.input_f32("x", &known_dims(&[4, 3]));
        let u = b.input_f32("u", &known_dims(&[2, 3]));
        let idx = b.initializer("idx", OnnxTensor::new(vec![2, 1], oto_onnx::TensorData::I64(vec![3, 1])).unwrap());
        let y = b.node_with("ScatterND", &[&x, &idx, &u], &[], &[("reduction", Attr::Str(reduction.into()))]);
        b.output_f32(&y, &known_dims(&[4, 3]));
        let x = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
        let u = Tensor::randn([2, 3], (Kind::Float, Device::Cpu));
        let c = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
        let (y, g) = grads(&b, &[x.shallow_clone(), u.shallow_clone()], &c);
        let rows = Tensor::from_slice(&[3i64, 1]);
        let (expected, gx, gu) = if reduction == "none" {
            // Scattered rows take the updates; their data gets no gradient.
            let keep = Tensor::from_slice(&[1f32, 0., 1., 0.]).reshape([4, 1]);
            (&x * &keep + Tensor::zeros([4, 3], (Kind::Float, Device::Cpu)).index_add(0, &rows, &u), &c * &keep, c.index_select(0, &rows))
        } else {
            let factor = Tensor::ones([4, 3], (Kind::Float, Device::Cpu)).index_copy(0, &rows, &u);
            (&x * &factor, &c * &factor, (&c * &x).index_select(0, &rows))
        };
        assert!(y.allclose(&expected, 1e-6, 1e-6, false), "{reduction}: {y:?}");
        assert!(g[0].allclose(&gx, 1e-6, 1e-6, false), "{reduction}: data gradient {:?}", g[0]);
        assert!(g[1].allclose(&gu, 1e-6, 1e-6, false), "{reduction}: updates gradient {:?}", g[1]);
    }
}

#[test]
fn gather_nd_out_of_range_index_is_an_error_naming_the_node() {
    let mut b = GraphBuilder::new("gathernd_oob");
    let x = b.input_f32("x", &known_dims(&[3, 4]));
    let idx = b.initializer("idx", OnnxTensor::new(vec![1, 1], oto_onnx::TensorData::I64(vec![3])).unwrap());
    let y = b.node("GatherND", &[&x, &idx], &["y"]);
    b.output_f32(&y, &known_dims(&[1, 4]));
    let exec = Executor::new(&b.build().unwrap(), Device::Cpu).unwrap();
    let err = exec.forward(&[Tensor::zeros([3, 4], (Kind::Float, Device::Cpu))], Mode::Eval).expect_err("index 3 of 3 rows").to_string();
    assert!(err.contains("GatherND") && err.contains("out of range"), "{err}");
}

/// The supported operators are derived from the parser's table and the executor's
/// refusals (no list written by hand to keep in step: the derived list was checked equal
/// to the former hand-written one when it replaced it): sorted, within the parser's table,
/// holding the operators every zoo model needs, and without the ones the executor refuses.
#[test]
fn supported_operators_are_derived() {
    let supported = oto_torch::exec::supported_ops();
    assert!(supported.windows(2).all(|w| w[0] < w[1]), "{supported:?}");
    assert!(supported.iter().all(|op| oto_onnx::op::OPERATORS.contains(op)), "{supported:?}");
    for needed in ["Conv", "Gemm", "MatMul", "BatchNormalization", "LayerNormalization", "Softmax", "Reshape", "Gather", "Add", "Relu"] {
        assert!(supported.contains(&needed), "{needed} missing from {supported:?}");
    }
    for refused in ["Hardmax", "LpPool", "GlobalLpPool", "Celu", "BitShift"] {
        assert!(oto_onnx::op::OPERATORS.contains(&refused) && !supported.contains(&refused), "{refused}");
    }
}

/// tf2onnx writes Keras' LayerNormalization as a BatchNormalization whose mean and
/// variance are computed from the input (ReduceMean over the features): those are the
/// statistics to normalize with in both modes (a training-mode batch norm would use its
/// own batch statistics and refuse a computed running mean), and the gradient flows
/// through them: the result is `layer_norm` of the rows, values and gradients.
#[test]
fn batch_norm_with_computed_statistics_is_the_inference_formula_in_both_modes() {
    let mut b = GraphBuilder::new("bn_stats");
    b.opset(13);
    let x = b.input_f32("x", &known_dims(&[4, 6]));
    // As tf2onnx: the rows become the channels of a [1, rows, features, 1] input.
    let to4 = b.ints("to4", &[1, 4, 6, 1]);
    let x4 = b.node("Reshape", &[&x, &to4], &[]);
    let mean = b.node_with("ReduceMean", &[&x4], &[], &[("axes", Attr::Ints(vec![2, 3])), ("keepdims", Attr::Int(1))]);
    let centred = b.node("Sub", &[&x4, &mean], &[]);
    let squares = b.node("Mul", &[&centred, &centred], &[]);
    let var = b.node_with("ReduceMean", &[&squares], &[], &[("axes", Attr::Ints(vec![2, 3]))]);
    let flat = b.ints("flat", &[4]);
    let (mean, var) = (b.node("Reshape", &[&mean, &flat], &[]), b.node("Reshape", &[&var, &flat], &[]));
    let ones = b.initializer("ones", OnnxTensor::new(vec![4], oto_onnx::TensorData::F32(vec![1.0; 4])).unwrap());
    let zeros = b.initializer("zeros", OnnxTensor::new(vec![4], oto_onnx::TensorData::F32(vec![0.0; 4])).unwrap());
    let y4 = b.node_with("BatchNormalization", &[&x4, &ones, &zeros, &mean, &var], &[], &[("epsilon", Attr::Float(1e-3))]);
    let back = b.ints("back", &[4, 6]);
    let y = b.node("Reshape", &[&y4, &back], &["y"]);
    b.output_f32(&y, &known_dims(&[4, 6]));

    let x = Tensor::randn([4, 6], (Kind::Float, Device::Cpu)) * 3.0 + 1.0;
    let c = Tensor::randn([4, 6], (Kind::Float, Device::Cpu));
    let expected_of = |x: &Tensor| x.layer_norm([6], None::<&Tensor>, None::<&Tensor>, 1e-3, false);
    assert!(run(&b, &x, Mode::Eval).allclose(&expected_of(&x), 1e-5, 1e-5, false));
    let (y, g) = grads(&b, &[x.shallow_clone()], &c);
    assert!(y.allclose(&expected_of(&x), 1e-5, 1e-5, false), "train mode uses the given statistics");
    let xr = x.detach().set_requires_grad(true);
    (expected_of(&xr) * &c).sum(Kind::Float).backward();
    assert!(g[0].allclose(&xr.grad(), 1e-4, 1e-5, false), "{:?} vs {:?}", g[0], xr.grad());
}

/// A bidirectional LSTM and a GRU (batch first) train: every weight input gets a gradient,
/// and the initial state is an input, not a parameter (its gradient flows to the caller).
/// Their values against the ONNX reference are in the conformance suite (test_lstm_*,
/// test_gru_*, test_rnn_*).
#[test]
fn recurrent_layers_differentiate_through_every_weight() {
    for (op, gates, layout, direction) in [("LSTM", 4usize, 0i64, "bidirectional"), ("GRU", 3, 1, "forward")] {
        let dirs = if direction == "bidirectional" { 2 } else { 1 };
        let mut b = GraphBuilder::new(op);
        b.opset(14);
        let x_dims = if layout == 0 { known_dims(&[5, 2, 3]) } else { known_dims(&[2, 5, 3]) };
        let x = b.input_f32("x", &x_dims);
        let w = b.weight("w", &[dirs, gates * 4, 3], |i| ((i * 7) % 11) as f32 / 10.0 - 0.5);
        let r = b.weight("r", &[dirs, gates * 4, 4], |i| ((i * 5) % 13) as f32 / 13.0 - 0.5);
        let bias = b.weight("b", &[dirs, 2 * gates * 4], |i| (i % 3) as f32 / 10.0);
        let attrs = [("hidden_size", Attr::Int(4)), ("direction", Attr::Str(direction.into())), ("layout", Attr::Int(layout))];
        let y = b.node_with(op, &[&x, &w, &r, &bias], &["y"], &attrs);
        let y_dims = if layout == 0 { known_dims(&[5, dirs as i64, 2, 4]) } else { known_dims(&[2, 5, dirs as i64, 4]) };
        b.output_f32(&y, &y_dims);
        let model = b.clone().build().unwrap();
        let exec = Executor::new(&model, Device::Cpu).unwrap();
        let shape: Vec<i64> = if layout == 0 { vec![5, 2, 3] } else { vec![2, 5, 3] };
        let xin = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu));
        let out = exec.forward(&[xin], Mode::Train).unwrap().remove(0);
        let expected: Vec<i64> = if layout == 0 { vec![5, dirs as i64, 2, 4] } else { vec![2, 5, dirs as i64, 4] };
        assert_eq!(out.size(), expected, "{op}");
        out.sum(Kind::Float).backward();
        let names: Vec<&str> = exec.parameters().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names.len(), 3, "{op}: {names:?}");
        for p in exec.parameters() {
            let g = p.tensor.grad();
            assert!(g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{op}: no gradient for {}", p.name);
        }
    }
}

/// tf2onnx writes Keras' `UpSampling2D` as a nearest `Resize` with
/// `tf_half_pixel_for_nn` and `floor`: by a whole factor it picks what asymmetric + floor
/// does, checked against onnxruntime; a fractional factor is refused when the node runs.
/// One Resize (or Upsample) of `x` built by `form`, run by the executor and by
/// onnxruntime: the largest difference, and the executor's gradient of the output's sum
/// with respect to `x` (None when the output has no element).
fn resize_against_onnxruntime(x_dims: &[i64], form: impl Fn(&mut GraphBuilder, &str) -> String) -> (f64, Tensor) {
    let mut b = GraphBuilder::new("resize");
    let x = b.input_f32("x", &known_dims(x_dims));
    let y = form(&mut b, &x);
    // The output's dims as onnxruntime computes them are read from its result; declared unknown here.
    let rank = x_dims.len();
    b.output_f32(&y, &(0..rank).map(|i| Dim::sym(format!("d{i}"))).collect::<Vec<_>>());
    let model = b.clone().build().unwrap();
    let n: i64 = x_dims.iter().product();
    let values: Vec<f32> = (0..n).map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0).collect();
    let input = OnnxTensor::new(x_dims.iter().map(|&d| d as usize).collect(), oto_onnx::TensorData::F32(values.clone())).unwrap();
    let theirs = &oto_testkit::run_ort(&model.proto, &[("x".to_string(), input)])[0].1;
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    let x = Tensor::from_slice(&values).reshape(x_dims).set_requires_grad(true);
    let ours = exec.forward(&[x.shallow_clone()], Mode::Train).unwrap().remove(0);
    ours.sum(Kind::Float).backward();
    let flat: Vec<f64> = Vec::<f32>::try_from(ours.detach().flatten(0, -1)).unwrap().into_iter().map(f64::from).collect();
    assert_eq!(flat.len(), theirs.len(), "output sizes differ: ours {:?}", ours.size());
    let diff = flat.iter().zip(theirs).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    (diff, x.grad())
}

/// A graph's Resize node written by a test case, from the input's name.
type ResizeForm = dyn Fn(&mut GraphBuilder, &str) -> String;

fn floats(b: &mut GraphBuilder, name: &str, v: &[f32]) -> String {
    b.initializer(name, OnnxTensor::new(vec![v.len()], oto_onnx::TensorData::F32(v.to_vec())).unwrap())
}

fn strs(attrs: &[(&'static str, &str)]) -> Vec<(&'static str, Attr)> {
    attrs.iter().map(|&(k, v)| (k, Attr::Str(v.into()))).collect()
}

/// The Resize forms libtorch's kernels do not compute (old exporters' Upsample, TF's
/// coordinate modes, downsampling, other ranks, axes, aspect policies, antialiasing,
/// crop-and-resize) run the specification's separable sampling: each is compared with
/// onnxruntime, exactly for nearest, and its gradient reaches every input position that
/// is read.
#[test]
fn resize_forms_match_onnxruntime() {
    // PyTorch's opset-9 export of F.interpolate(scale_factor=3, mode="nearest"): Upsample,
    // whose nearest position is floor(y / 3) (onnx's reference repeats each position).
    let (d, _) = resize_against_onnxruntime(&[1, 2, 3, 4], |b, x| {
        b.opset(9);
        let s = floats(b, "scales", &[1.0, 1.0, 3.0, 3.0]);
        b.node_with("Upsample", &[x, &s], &[], &[("mode", Attr::Str("nearest".into()))])
    });
    assert_eq!(d, 0.0, "Upsample nearest x3");
    let nearest = |coordinate: &'static str, rounding: &'static str, scale: f32| {
        move |b: &mut GraphBuilder, x: &str| {
            b.opset(13);
            let s = floats(b, "scales", &[1.0, 1.0, scale, scale]);
            let attrs = strs(&[("mode", "nearest"), ("coordinate_transformation_mode", coordinate), ("nearest_mode", rounding)]);
            b.node_with("Resize", &[x, "", &s], &[], &attrs)
        }
    };
    for (coordinate, rounding, scale) in [
        ("tf_half_pixel_for_nn", "floor", 2.0),
        ("tf_half_pixel_for_nn", "floor", 1.5),
        ("half_pixel", "round_prefer_floor", 0.6),
        ("half_pixel", "round_prefer_ceil", 2.5),
        // By whole lengths: with scales, onnx's reference maps align_corners by the
        // unrounded length `in * scale`, onnxruntime by the rounded one (the executor
        // follows the reference, as the conformance cases check).
        ("align_corners", "round_prefer_floor", 2.0),
        ("asymmetric", "ceil", 0.5),
        ("pytorch_half_pixel", "floor", 3.0),
    ] {
        let (d, grad) = resize_against_onnxruntime(&[2, 3, 5, 7], nearest(coordinate, rounding, scale));
        assert_eq!(d, 0.0, "nearest {coordinate} {rounding} x{scale}");
        // Each output position adds 1 to the gradient of the one position it reads.
        assert!(grad.ge(0.0).all().int64_value(&[]) == 1, "nearest {coordinate} x{scale}");
    }
    let sized = |mode: &'static str, coordinate: &'static str, sizes: &'static [i64], extra: Vec<(&'static str, Attr)>| {
        move |b: &mut GraphBuilder, x: &str| {
            b.opset(19);
            let sizes = b.ints("sizes", sizes);
            let mut attrs = strs(&[("mode", mode), ("coordinate_transformation_mode", coordinate)]);
            attrs.extend(extra.iter().cloned());
            b.node_with("Resize", &[x, "", "", &sizes], &[], &attrs)
        }
    };
    let cases: Vec<(&str, Vec<i64>, Box<ResizeForm>)> = vec![
        // TF1's resize_bilinear without half-pixel centers.
        ("linear asymmetric", vec![1, 2, 5, 6], Box::new(sized("linear", "asymmetric", &[1, 2, 9, 4], vec![]))),
        ("linear half_pixel_symmetric", vec![1, 2, 5, 6], Box::new(sized("linear", "half_pixel_symmetric", &[1, 2, 8, 4], vec![]))),
        (
            "linear antialias downsampling",
            vec![1, 2, 9, 12],
            Box::new(sized("linear", "half_pixel", &[1, 2, 4, 5], vec![("antialias", Attr::Int(1))])),
        ),
        (
            "cubic a -0.5 excluding outside",
            vec![1, 1, 6, 5],
            Box::new(sized(
                "cubic",
                "half_pixel",
                &[1, 1, 9, 8],
                vec![("cubic_coeff_a", Attr::Float(-0.5)), ("exclude_outside", Attr::Int(1))],
            )),
        ),
        // A 1-D signal and a volume.
        ("linear 3-D", vec![2, 3, 10], Box::new(sized("linear", "half_pixel", &[2, 3, 25], vec![]))),
        ("nearest 5-D", vec![1, 2, 3, 4, 5], Box::new(sized("nearest", "asymmetric", &[1, 2, 6, 8, 10], vec![]))),
        (
            "axes, not_larger",
            vec![1, 2, 4, 8],
            Box::new(|b: &mut GraphBuilder, x: &str| {
                b.opset(19);
                let sizes = b.ints("sizes", &[6, 6]);
                let mut attrs = strs(&[("mode", "linear"), ("keep_aspect_ratio_policy", "not_larger")]);
                attrs.push(("axes", Attr::Ints(vec![2, 3])));
                b.node_with("Resize", &[x, "", "", &sizes], &[], &attrs)
            }),
        ),
        (
            "tf_crop_and_resize",
            vec![1, 1, 6, 6],
            Box::new(|b: &mut GraphBuilder, x: &str| {
                b.opset(13);
                let roi = floats(b, "roi", &[0.0, 0.0, -0.2, 0.3, 1.0, 1.0, 0.7, 1.1]);
                let sizes = b.ints("sizes", &[1, 1, 4, 5]);
                let mut attrs = strs(&[("mode", "linear"), ("coordinate_transformation_mode", "tf_crop_and_resize")]);
                attrs.push(("extrapolation_value", Attr::Float(10.0)));
                b.node_with("Resize", &[x, &roi, "", &sizes], &[], &attrs)
            }),
        ),
    ];
    for (name, dims, form) in cases {
        let (d, grad) = resize_against_onnxruntime(&dims, form);
        assert!(d < 1e-5, "{name}: max |ours - onnxruntime| = {d}");
        assert!(grad.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{name}: no gradient");
    }
}

/// tf2onnx's merged constants (one tensor of ones as a BatchNorm's scale and variance):
/// after normalization the scale and bias are trainable parameters (HESSO prunes with
/// them as producers) and the statistics are buffers of their own.
#[test]
fn merged_batchnorm_constants_train_as_parameters() {
    let (model, _) = oto_onnx::normalize::normalize(cases::merged_bn_constants(), &Default::default()).unwrap();
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    let names: Vec<&str> = exec.parameters().iter().filter(|p| !p.frozen).map(|p| p.name.as_str()).collect();
    for want in ["bn/ReadVariableOp:0", "bn/FusedBatchNormV3/ReadVariableOp:0"] {
        assert!(names.contains(&want), "{want} is not trainable: {names:?}");
    }
}

/// A one-element float initializer is trained where a layer learns it (PReLU's single
/// slope, a one-output layer's bias), not where the file writes a literal (the TorchScript
/// exporter's `[1.0]` numerator of `1 / sqrt(d)`); the parameter count agrees.
#[test]
fn one_element_literals_are_constants_and_layer_weights_parameters() {
    let mut b = GraphBuilder::new("literals");
    let x = b.input_f32("x", &batch_dims(&[4]));
    let w = b.weight("fc1.weight", &[4, 3], |i| i as f32 / 10.0 - 0.5);
    let one = b.initializer("one", OnnxTensor::new(vec![1], oto_onnx::TensorData::F32(vec![1.0])).unwrap());
    let slope = b.initializer("act.weight", OnnxTensor::new(vec![1], oto_onnx::TensorData::F32(vec![0.25])).unwrap());
    let w2 = b.weight("fc2.weight", &[3, 1], |i| i as f32 / 5.0 - 0.2);
    let b2 = b.initializer("fc2.bias", OnnxTensor::new(vec![1], oto_onnx::TensorData::F32(vec![0.1])).unwrap());
    let h = b.node("MatMul", &[&x, &w], &[]);
    let scaled = b.node("Div", &[&h, &one], &[]);
    let a = b.node("PRelu", &[&scaled, &slope], &[]);
    let y = b.node("Gemm", &[&a, &w2, &b2], &["y"]);
    b.output_f32(&y, &batch_dims(&[1]));
    let model = b.build().unwrap();
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    let names: Vec<&str> = exec.parameters().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["fc1.weight", "act.weight", "fc2.weight", "fc2.bias"]);
    let count = oto_onnx::cost::parameter_count(&oto_onnx::Graph::new(&model).unwrap());
    assert_eq!(count.parameters, 12 + 1 + 3 + 1);
}

/// A fixed-batch file's Resize given full sizes (the dynamo exporter's
/// `F.interpolate(size=...)` at a batch of 1): normalization lets the batch vary by giving
/// the Resize the axes it changes, and the executor runs that form at any batch, as
/// onnxruntime does (it refused a Resize with axes, so `oto prune` stopped on such files).
#[test]
fn normalized_fixed_batch_resize_runs_at_any_batch() {
    let (model, summary) = oto_onnx::normalize::normalize(cases::resize_full_sizes(), &Default::default()).unwrap();
    assert_eq!((summary.batch_symbolic, summary.resize_axes), (true, 1), "{summary}");
    let values: Vec<f32> = (0..3 * 3 * 36).map(|i| ((i * 37) % 23) as f32 / 23.0 - 0.5).collect();
    let input = OnnxTensor::new(vec![3, 3, 6, 6], oto_onnx::TensorData::F32(values.clone())).unwrap();
    let theirs = &oto_testkit::run_ort(&model.proto, &[("x".to_string(), input)])[0].1;
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    let ours = tch::no_grad(|| exec.forward(&[Tensor::from_slice(&values).reshape([3, 3, 6, 6])], Mode::Eval)).unwrap().remove(0);
    assert_eq!(ours.size(), vec![3, 4, 12, 12]);
    let ours: Vec<f64> = Vec::<f32>::try_from(ours.flatten(0, -1)).unwrap().into_iter().map(f64::from).collect();
    let diff = ours.iter().zip(theirs).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(diff < 1e-5, "max |ours - onnxruntime| = {diff}");
}
