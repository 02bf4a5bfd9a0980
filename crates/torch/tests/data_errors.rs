//! Every mismatch between a data file and the model is an error naming the array,
//! the expected and the actual; op failures on user input name the node.

mod common;

use oto_onnx::npz::{write_npz, NpzCompression};
use oto_onnx::{Tensor as OnnxTensor, TensorData};
use oto_torch::data::Dataset;
use oto_torch::exec::{Executor, Mode};
use tch::{Device, Kind, Tensor};

fn f32s(shape: Vec<usize>) -> OnnxTensor {
    let n = shape.iter().product();
    OnnxTensor::new(shape, TensorData::F32(vec![0.5; n])).unwrap()
}

fn i64s(shape: Vec<usize>, v: i64) -> OnnxTensor {
    let n = shape.iter().product();
    OnnxTensor::new(shape, TensorData::I64(vec![v; n])).unwrap()
}

fn load_err(arrays: &[(&str, &OnnxTensor)], check_classes: Option<i64>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.npz");
    write_npz(&path, arrays, NpzCompression::Stored).unwrap();
    let exec = Executor::new(&oto_testkit::zoo_model("demo_cnn"), Device::Cpu).unwrap();
    let inputs: Vec<_> = exec.inputs().cloned().collect();
    let result = Dataset::load(&path, &inputs).and_then(|d| match check_classes {
        Some(c) => d.check_class_labels(c),
        None => Ok(()),
    });
    let message = result.expect_err("expected an error").to_string();
    assert!(message.contains("data.npz"), "{message}");
    message
}

#[test]
fn data_mismatches_name_the_array_expected_and_actual() {
    let labels = i64s(vec![4], 1);
    let m = load_err(&[("images", &f32s(vec![4, 1, 8, 8])), ("labels", &labels)], None);
    assert!(m.contains("'x'") && m.contains("images"), "{m}");
    let m = load_err(&[("x", &i64s(vec![4, 1, 8, 8], 0)), ("labels", &labels)], None);
    assert!(m.contains("'x'") && m.contains("float32") && m.contains("int64"), "{m}");
    let m = load_err(&[("x", &f32s(vec![4, 1, 9, 8])), ("labels", &labels)], None);
    assert!(m.contains("'x'") && m.contains("[?, 1, 8, 8]") && m.contains("[4, 1, 9, 8]"), "{m}");
    let m = load_err(&[("x", &f32s(vec![4, 8, 8])), ("labels", &labels)], None);
    assert!(m.contains("[4, 8, 8]"), "{m}");
    let m = load_err(&[("x", &f32s(vec![4, 1, 8, 8])), ("labels", &i64s(vec![3], 1))], None);
    assert!(m.contains("'labels'") && m.contains("3 samples") && m.contains("4"), "{m}");
    let m = load_err(&[("x", &f32s(vec![4, 1, 8, 8])), ("labels", &i64s(vec![4], 10))], Some(10));
    assert!(m.contains("'labels'") && m.contains("0..10") && m.contains("10"), "{m}");
}

/// Arrays of another float (integer) type than the model input's are converted to it:
/// rounded to nearest, integers only when every value fits.
#[test]
fn arrays_of_another_float_or_integer_type_are_converted_to_the_inputs() {
    use oto_onnx::DType;
    use oto_torch::data::converted_to;
    let doubles = OnnxTensor::new(vec![4], TensorData::F64(vec![0.1, -2.5, 1e-8, 70000.0])).unwrap();
    let floats = converted_to(doubles.clone(), DType::F32).unwrap();
    assert_eq!(floats.data, TensorData::F32(vec![0.1f32, -2.5, 1e-8, 70000.0]));
    let halves = converted_to(floats, DType::F16).unwrap();
    let expected: Vec<half::f16> = [0.1f32, -2.5, 1e-8, 70000.0].iter().map(|&x| half::f16::from_f32(x)).collect();
    assert_eq!(halves.data, TensorData::F16(expected.clone()));
    assert!(expected[3].is_infinite() && expected[2] == half::f16::ZERO, "70000 overflows float16, 1e-8 rounds to 0");
    let ids = OnnxTensor::new(vec![2, 2], TensorData::I32(vec![101, 7, 0, 102])).unwrap();
    let wide = converted_to(ids, DType::I64).unwrap();
    assert_eq!((wide.shape.clone(), wide.data.clone()), (vec![2, 2], TensorData::I64(vec![101, 7, 0, 102])));
    let narrow = converted_to(wide, DType::I32).unwrap();
    assert_eq!(narrow.data, TensorData::I32(vec![101, 7, 0, 102]));
    let big = OnnxTensor::new(vec![2], TensorData::I64(vec![1, 1 << 40])).unwrap();
    let e = converted_to(big, DType::I32).unwrap_err();
    assert!(e.contains("int32") && e.contains("int64") && e.contains("1099511627776") && e.contains("element 1"), "{e}");
    let e = converted_to(doubles, DType::I64).unwrap_err();
    assert!(e.contains("expected element type int64, got float64"), "{e}");
    // Through the data file: float64 images for the float32 demo CNN load.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.npz");
    let images = OnnxTensor::new(vec![4, 1, 8, 8], TensorData::F64(vec![0.25; 256])).unwrap();
    write_npz(&path, &[("x", &images), ("labels", &i64s(vec![4], 1))], NpzCompression::Stored).unwrap();
    let exec = Executor::new(&oto_testkit::zoo_model("demo_cnn"), Device::Cpu).unwrap();
    let inputs: Vec<_> = exec.inputs().cloned().collect();
    let data = Dataset::load(&path, &inputs).unwrap();
    assert_eq!(data.len, 4);
}

#[test]
fn op_failures_name_the_node_and_do_not_panic() {
    let model = oto_testkit::zoo_model("mlp");
    let exec = Executor::new(&model, Device::Cpu).unwrap();
    // The declared shape check catches a wrong feature count first...
    let e = exec.forward(&[Tensor::zeros([2, 31], (Kind::Float, Device::Cpu))], Mode::Eval).unwrap_err().to_string();
    assert!(e.contains("'x'") && e.contains("[2, 31]"), "{e}");
    // ...and an operator failing on its inputs is reported with the node and op:
    // declare the feature axis symbolic, so the bad batch reaches the first Gemm.
    let mut proto = model.proto.clone();
    let graph = proto.graph.as_mut().unwrap();
    let Some(oto_onnx::proto::type_proto::Value::TensorType(t)) = graph.input[0].r#type.as_mut().unwrap().value.as_mut() else { panic!() };
    t.shape.as_mut().unwrap().dim[1].value = Some(oto_onnx::proto::tensor_shape_proto::dimension::Value::DimParam("features".into()));
    let relaxed = oto_onnx::Model::from_proto(proto, "mlp-relaxed.onnx", None).unwrap();
    let exec = Executor::new(&relaxed, Device::Cpu).unwrap();
    let e = exec.forward(&[Tensor::zeros([2, 31], (Kind::Float, Device::Cpu))], Mode::Eval).unwrap_err().to_string();
    assert!(e.contains("mlp-relaxed.onnx") && e.contains("(Gemm) failed"), "{e}");
    assert!(!e.contains("Exception raised from"), "the C++ backtrace should be cut: {e}");
}

/// Labels that do not fit the output (one class per sample for a per-token output) fail
/// with the loss and the output's shape named, without libtorch's C++ backtrace.
#[test]
fn loss_failures_carry_no_backtrace() {
    use oto_torch::loss::Loss;
    let output = Tensor::zeros([4, 5, 8], (Kind::Float, Device::Cpu));
    let labels = Tensor::zeros([4], (Kind::Int64, Device::Cpu));
    let e = Loss::CrossEntropy { label_smoothing: 0.0 }.compute(&output, Some(&labels), None).unwrap_err().to_string();
    assert!(e.contains("cross-entropy") && e.contains("[4, 5, 8]"), "{e}");
    assert!(!e.contains("Exception raised from") && !e.contains("frame #"), "the C++ backtrace should be cut: {e}");
}
