//! `oto check` on small models built here: the random inputs' sizes when an input axis
//! is a sum of symbols (an Optimum with-past attention mask, `past_sequence_length +
//! sequence_length`), the exit code when onnxruntime refuses them for the full model,
//! and the MACs at the sizes the check ran with.

mod common;
use common::*;
use oto_onnx::builder::{Attr, GraphBuilder};
use oto_onnx::proto::{tensor_shape_proto::dimension::Value, type_proto};
use oto_onnx::{DType, Dim, Tensor, TensorData};
use std::path::{Path, PathBuf};

/// Saves the builder's model as `dir/name`, with the dim_params of the inputs rewritten
/// as `texts` gives them ((input, axis, text)): the text as an exporter writes it.
fn save(b: &GraphBuilder, dir: &Path, name: &str, texts: &[(&str, usize, &str)]) -> PathBuf {
    let mut proto = b.proto();
    let graph = proto.graph.as_mut().unwrap();
    for &(input, axis, text) in texts {
        let vi = graph.input.iter_mut().find(|v| v.name.as_deref() == Some(input)).unwrap();
        let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_mut().unwrap().value.as_mut() else { panic!("{input} is not a tensor") };
        t.shape.as_mut().unwrap().dim[axis].value = Some(Value::DimParam(text.into()));
    }
    let path = dir.join(name);
    let model = oto_onnx::Model::from_proto(proto, &path.to_string_lossy(), None).unwrap();
    model.save(&path, &Default::default()).unwrap();
    path
}

fn weight(b: &mut GraphBuilder, name: &str, shape: &[usize]) -> String {
    b.weight(name, shape, |i| ((i * 7919 % 23) as f32 - 11.0) / 10.0)
}

/// A decoder step in miniature: the past and the new tokens are concatenated
/// (`[batch, past + seq, 4]`), go through an MLP (8 prunable hidden units) and are
/// multiplied by the mask `[batch, "past + seq"]` and by the mask's element 5 (a Gather
/// with a constant index, which onnxruntime refuses when the mask is shorter).
fn past_model(dir: &Path) -> PathBuf {
    let (batch, past, seq) = (Dim::sym("batch"), Dim::sym("past"), Dim::sym("seq"));
    let mut b = GraphBuilder::new("past");
    let p = b.input_f32("past_tokens", &[batch.clone(), past.clone(), Dim::Known(4)]);
    let n = b.input_f32("new_tokens", &[batch.clone(), seq.clone(), Dim::Known(4)]);
    let total = past.add(&seq).unwrap();
    let mask = b.input_f32("mask", &[batch.clone(), total.clone()]);
    let cat = b.node_with("Concat", &[&p, &n], &[], &[("axis", Attr::Int(1))]);
    let (w1, w2) = (weight(&mut b, "w1", &[4, 8]), weight(&mut b, "w2", &[8, 4]));
    let h = b.node("MatMul", &[&cat, &w1], &[]);
    let h = b.node("Relu", &[&h], &[]);
    let y = b.node("MatMul", &[&h, &w2], &[]);
    let axes = b.ints("axes", &[2]);
    let m = b.node("Unsqueeze", &[&mask, &axes], &[]);
    let y = b.node("Mul", &[&y, &m], &[]);
    let five = b.initializer("five", Tensor::new(vec![1], TensorData::I64(vec![5])).unwrap());
    let g = b.node_with("Gather", &[&mask, &five], &[], &[("axis", Attr::Int(1))]);
    let g = b.node("Unsqueeze", &[&g, &axes], &[]);
    let out = b.node("Mul", &[&y, &g], &["out"]);
    b.output_f32(&out, &[batch, total, Dim::Known(4)]);
    save(&b, dir, "past.onnx", &[("mask", 1, "past + seq")])
}

/// The mask's axis `past + seq` gets the sum of the sizes of `past` and `seq` (4 + 4 by
/// default, or as --dim gives them), so the model runs; with `past` given at 1 the mask
/// is 5 long at the default `seq`, too short for the Gather's index 5, and `oto check`
/// takes `seq` at 16 (the next size it tries) and says so; given at 1 as well, the sizes
/// make onnxruntime refuse the full model: the input's fault (exit code 2).
#[test]
fn an_axis_that_is_a_sum_gets_the_sum_of_its_symbols() {
    let dir = tempfile::tempdir().unwrap();
    let model = past_model(dir.path());
    for extra in [&[][..], &["--dim", "past=3", "--dim", "seq=5"][..], &["--batch", "1", "--dim", "seq=2"][..]] {
        let mut args = vec!["check", s(&model), "--trials", "1"];
        args.extend_from_slice(extra);
        let out = oto(&args);
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {}\n{}", text(&out.stdout), text(&out.stderr));
        assert!(text(&out.stdout).contains("passed: 1 trials"), "{}", text(&out.stdout));
    }
    let out = oto(&["check", s(&model), "--trials", "2", "--dim", "past=1"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("trial 1 ('seq' at 16: onnxruntime refused the full model at 4; --dim sets them): "), "{stdout}");
    // The second trial starts at the size that ran.
    assert!(stdout.contains("\ntrial 2: ") && stdout.contains("passed: 2 trials"), "{stdout}");
    let out = oto(&["check", s(&model), "--trials", "1", "--dim", "past=1", "--dim", "seq=1"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}\n{err}", text(&out.stdout));
    assert!(err.contains("onnxruntime on the zeroed full model"), "{err}");
    // --dim takes the plain symbols, not the sum.
    let out = oto(&["check", s(&model), "--trials", "1", "--dim", "past + seq=8"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("'past + seq' is not a symbolic axis of the model's inputs (they have: batch, past, seq)"), "{err}");
}

/// An input `[batch, n]` read as rows of 3 (`Reshape` to `[-1, 3]`): no size `oto check`
/// tries for `n` (4, then 16 to 1024) fits a batch of 2, so onnxruntime refuses the full
/// model (exit code 2) and the hint names the symbol and the sizes tried; `--dim n=3` runs.
#[test]
fn sizes_no_try_fits_are_named_in_the_hint() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = GraphBuilder::new("rows_of_three");
    let x = b.input_f32("x", &[Dim::sym("batch"), Dim::sym("n")]);
    let rows = b.ints("rows", &[-1, 3]);
    let r = b.node("Reshape", &[&x, &rows], &[]);
    let (w1, w2) = (weight(&mut b, "w1", &[3, 8]), weight(&mut b, "w2", &[8, 4]));
    let h = b.node("MatMul", &[&r, &w1], &[]);
    let h = b.node("Relu", &[&h], &[]);
    let y = b.node("MatMul", &[&h, &w2], &["y"]);
    b.output_f32(&y, &[Dim::sym("rows"), Dim::Known(4)]);
    let model = save(&b, dir.path(), "rows.onnx", &[]);
    let out = oto(&["check", s(&model), "--trials", "1"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}\n{err}", text(&out.stdout));
    assert!(err.contains("the symbolic axes 'n' of 'x' the size 4 (and then 16, 32, 64, 224, 256, 1024)"), "{err}");
    assert!(err.contains("give them with --dim n=SIZE:"), "{err}");
    let out = oto(&["check", s(&model), "--trials", "1", "--dim", "n=3"]);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out.stdout), text(&out.stderr));
}

/// A speech encoder's spectrogram `[batch, feature_size, frames]` (symbolic bins and
/// frames, as Hugging Face exports Whisper's) whose position table fixes the frames at 6:
/// without a preprocessor_config.json no size fits (exit code 2); with Whisper's beside
/// the model, `feature_size` and `nb_max_frames` size the bins and frames, and it runs.
#[test]
fn a_spectrogram_is_sized_by_the_feature_extractor_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = GraphBuilder::new("speech");
    let x = b.input_f32("input_features", &[Dim::sym("batch_size"), Dim::sym("feature_size"), Dim::sym("encoder_sequence_length")]);
    let frames_last = b.node_with("Transpose", &[&x], &[], &[("perm", Attr::Ints(vec![0, 2, 1]))]);
    let (w1, w2) = (weight(&mut b, "w1", &[5, 8]), weight(&mut b, "w2", &[8, 4]));
    let h = b.node("MatMul", &[&frames_last, &w1], &[]);
    let h = b.node("Relu", &[&h], &[]);
    let y = b.node("MatMul", &[&h, &w2], &[]);
    let positions = weight(&mut b, "positions", &[6, 4]);
    let y = b.node("Add", &[&y, &positions], &["last_hidden_state"]);
    b.output_f32(&y, &[Dim::sym("batch_size"), Dim::Known(6), Dim::Known(4)]);
    let model = save(&b, dir.path(), "encoder_model.onnx", &[]);
    let out = oto(&["check", s(&model), "--trials", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let config = r#"{"feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 5, "nb_max_frames": 6, "chunk_length": 30}"#;
    std::fs::write(dir.path().join("preprocessor_config.json"), config).unwrap();
    let out = oto(&["check", s(&model), "--trials", "2"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("passed: 2 trials") && !stdout.contains(" at 16"), "{stdout}");
}

/// A decoder step with its cache declared for one new token per call, as optimum 1.x wrote
/// GPT-2's: the present is the past and the new tokens (projected) concatenated (a graph output), and
/// the mask is declared `past + 1` long, so only `seq` = 1 fits. `oto check` runs it with one
/// new token and says so; a `seq` given with --dim is kept, and refused by onnxruntime.
#[test]
fn a_decoder_declared_for_one_new_token_runs_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let (batch, past, seq) = (Dim::sym("batch"), Dim::sym("past"), Dim::sym("seq"));
    let mut b = GraphBuilder::new("one_token");
    let p = b.input_f32("past_tokens", &[batch.clone(), past.clone(), Dim::Known(4)]);
    let n = b.input_f32("new_tokens", &[batch.clone(), seq.clone(), Dim::Known(4)]);
    let plus_one = past.add(&Dim::Known(1)).unwrap();
    let mask = b.input_f32("mask", &[batch.clone(), plus_one]);
    let w0 = weight(&mut b, "w0", &[4, 4]);
    let n = b.node("MatMul", &[&n, &w0], &[]);
    let present = b.node_with("Concat", &[&p, &n], &["present"], &[("axis", Attr::Int(1))]);
    let (w1, w2) = (weight(&mut b, "w1", &[4, 8]), weight(&mut b, "w2", &[8, 4]));
    let h = b.node("MatMul", &[&present, &w1], &[]);
    let h = b.node("Relu", &[&h], &[]);
    let y = b.node("MatMul", &[&h, &w2], &[]);
    let axes = b.ints("axes", &[2]);
    let m = b.node("Unsqueeze", &[&mask, &axes], &[]);
    let out = b.node("Mul", &[&y, &m], &["out"]);
    let total = past.add(&seq).unwrap();
    b.output_f32(&present, &[batch.clone(), total.clone(), Dim::Known(4)]);
    b.output_f32(&out, &[batch, total, Dim::Known(4)]);
    let model = save(&b, dir.path(), "one_token.onnx", &[]);
    let out = oto(&["check", s(&model), "--trials", "2"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("trial 1 (one new token: the file's declared input shapes fit a step of one token)"), "{stdout}");
    assert!(stdout.contains("passed: 2 trials"), "{stdout}");
    let out = oto(&["check", s(&model), "--trials", "1", "--dim", "seq=3"]);
    assert_eq!(out.status.code(), Some(2), "{}\n{}", text(&out.stdout), text(&out.stderr));
}

/// Two convolutions over `[batch, 3, height, width]`: the printed MACs count them at
/// the height and width of the random inputs (--dim, else 4), per sample:
/// 8*3*3*3 + 4*8 per pixel before, half of it once 4 of the 8 channels are removed.
#[test]
fn check_counts_macs_at_the_sizes_it_ran_with() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = GraphBuilder::new("conv");
    let x = b.input_f32("x", &[Dim::sym("batch"), Dim::Known(3), Dim::sym("height"), Dim::sym("width")]);
    let w1 = weight(&mut b, "w1", &[8, 3, 3, 3]);
    let w2 = weight(&mut b, "w2", &[4, 8, 1, 1]);
    let h = b.node_with("Conv", &[&x, &w1], &[], &[("pads", Attr::Ints(vec![1, 1, 1, 1]))]);
    let h = b.node("Relu", &[&h], &[]);
    let y = b.node("Conv", &[&h, &w2], &["y"]);
    b.output(&y, DType::F32, &[Dim::sym("batch"), Dim::Known(4), Dim::sym("height"), Dim::sym("width")]);
    let model = save(&b, dir.path(), "conv.onnx", &[]);
    let per_pixel = 8 * 3 * 3 * 3 + 4 * 8;
    for (args, pixels) in [(&["--dim", "height=6", "--dim", "width=5"][..], 30), (&[][..], 16)] {
        let mut all = vec!["check", s(&model), "--trials", "1"];
        all.extend_from_slice(args);
        let out = oto(&all);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stdout}\n{}", text(&out.stderr));
        let want = format!("MACs {} -> {} (50.0%)", per_pixel * pixels, per_pixel * pixels / 2);
        assert!(stdout.contains(&want), "{args:?}: '{want}' not in: {stdout}");
    }
}

/// A half-precision model (exported after `.half()`): `oto check` generates float16
/// inputs (it refused them before) and the compact model computes the same outputs.
#[test]
fn check_runs_a_float16_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = GraphBuilder::new("conv16");
    let batch = Dim::sym("batch");
    let x = b.input("x", DType::F16, &[batch.clone(), Dim::Known(3), Dim::Known(6), Dim::Known(6)]);
    let half_weight = |b: &mut GraphBuilder, name: &str, shape: &[usize]| {
        let n = shape.iter().product();
        let v = (0..n).map(|i| half::f16::from_f32(((i * 7919 % 23) as f32 - 11.0) / 10.0)).collect();
        b.initializer(name, Tensor::new(shape.to_vec(), TensorData::F16(v)).unwrap())
    };
    let w1 = half_weight(&mut b, "w1", &[8, 3, 3, 3]);
    let w2 = half_weight(&mut b, "w2", &[4, 8, 1, 1]);
    let h = b.node_with("Conv", &[&x, &w1], &[], &[("pads", Attr::Ints(vec![1, 1, 1, 1]))]);
    let h = b.node("Relu", &[&h], &[]);
    let y = b.node("Conv", &[&h, &w2], &["y"]);
    b.output(&y, DType::F16, &[batch, Dim::Known(4), Dim::Known(6), Dim::Known(6)]);
    let model = save(&b, dir.path(), "conv16.onnx", &[]);
    let out = oto(&["check", s(&model), "--trials", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("passed: 2 trials"), "{}", text(&out.stdout));
}

/// A symbolic channel axis read by the first Conv through the steps Hugging Face
/// exports put before it (a Cast to the weights' type, a per-channel normalization, the
/// border padding of EfficientNet's): the channels come from the Conv weight (they were
/// 4, which onnxruntime refused).
#[test]
fn channels_read_through_a_cast_a_normalization_and_a_pad_come_from_the_conv() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = GraphBuilder::new("cast_conv");
    b.opset(13);
    let x = b.input_f32("pixel_values", &[Dim::sym("batch"), Dim::sym("num_channels"), Dim::Known(6), Dim::Known(6)]);
    let cast = b.node_with("Cast", &[&x], &[], &[("to", Attr::Int(1))]);
    let mean = b.weight("mean", &[3, 1, 1], |i| i as f32 / 10.0);
    let centred = b.node("Sub", &[&cast, &mean], &[]);
    let w1 = weight(&mut b, "w1", &[8, 3, 3, 3]);
    let w2 = weight(&mut b, "w2", &[4, 8, 1, 1]);
    let pads = b.ints("pads", &[0, 0, 1, 1, 0, 0, 1, 1]);
    let padded = b.node("Pad", &[&centred, &pads], &[]);
    let h = b.node("Conv", &[&padded, &w1], &[]);
    let h = b.node("Relu", &[&h], &[]);
    let y = b.node("Conv", &[&h, &w2], &["y"]);
    b.output(&y, DType::F32, &[Dim::sym("batch"), Dim::Known(4), Dim::Known(6), Dim::Known(6)]);
    let model = save(&b, dir.path(), "cast_conv.onnx", &[]);
    let out = oto(&["check", s(&model), "--trials", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("passed: 1 trials"), "{}", text(&out.stdout));
}

/// A model whose outputs are all zero on any input (a zero-initialized output layer, as
/// torchvision's ViT head) passes, but `oto check` says the comparison showed nothing.
#[test]
fn check_says_when_every_output_is_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = GraphBuilder::new("zero_head");
    let x = b.input_f32("x", &[Dim::sym("batch"), Dim::Known(4)]);
    let w1 = weight(&mut b, "fc1.weight", &[8, 4]);
    let w2 = b.weight("head.weight", &[3, 8], |_| 0.0);
    let t = [("transB", Attr::Int(1))];
    let h = b.node_with("Gemm", &[&x, &w1], &[], &t);
    let h = b.node("Relu", &[&h], &[]);
    let y = b.node_with("Gemm", &[&h, &w2], &["y"], &t);
    b.output_f32(&y, &[Dim::sym("batch"), Dim::Known(3)]);
    let path = save(&b, dir.path(), "zero_head.onnx", &[]);
    let out = oto(&["check", s(&path)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("passed, but shows nothing: every output was 0"), "{stdout}");
}
