//! Small models written the way exporters write them, for the normalization tests:
//! crates/onnx/tests/normalize.rs checks the rewrites, crates/construct/tests/normalize_ort.rs
//! (which includes this file) checks them against onnxruntime and through construction, and
//! fuzz/tests/smoke.rs (which includes it too) fuzzes them.
#![allow(dead_code)]

use oto_onnx::builder::{batch_dims, known_dims, Attr, GraphBuilder};
use oto_onnx::proto::{ModelProto, StringStringEntryProto};
use oto_onnx::{DType, Dim, Model, Tensor, TensorData};

/// The metadata every case carries (it must survive normalization and construction).
pub const META: (&str, &str) = ("exported_by", "normalize-test");

fn f32s(shape: &[usize], fill: impl Fn(usize) -> f32) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor { shape: shape.to_vec(), data: TensorData::F32((0..n).map(fill).collect()) }
}

/// Deterministic, varied weights: `((i * a + b) % m) / m - 0.5`.
fn wave(a: usize, b: usize, m: usize) -> impl Fn(usize) -> f32 {
    move |i| ((i * a + b) % m) as f32 / m as f32 - 0.5
}

fn constant(b: &mut GraphBuilder, out: &str, t: Tensor) -> String {
    b.node_with("Constant", &[], &[out], &[("value", Attr::Tensor(t))])
}

/// The builder's model with [`META`] in its metadata and a doc string.
fn finish(b: &GraphBuilder) -> Model {
    let mut proto = b.proto();
    proto.doc_string = Some("a normalization test case".into());
    proto.metadata_props.push(StringStringEntryProto { key: Some(META.0.into()), value: Some(META.1.into()) });
    Model::from_proto(proto, "case.onnx", None).unwrap()
}

/// Every case, named.
pub fn all() -> Vec<(&'static str, Model)> {
    vec![
        ("constant_forms", constant_forms()),
        ("weight_layouts", weight_layouts()),
        ("shape_subgraph_9", shape_subgraph(9)),
        ("shape_subgraph_13", shape_subgraph(13)),
        ("identity_bias", identity_bias()),
        ("ir3_inputs", ir3_inputs()),
        ("constant_batchnorm", constant_batchnorm()),
        ("variadic", variadic()),
        ("integer_folds", integer_folds()),
        ("shared_weights", shared_weights()),
        ("tied_transpose", tied_transpose()),
        ("shared_shape_concat", shared_shape_concat()),
        ("known_branches", known_branches()),
        ("onnxruntime_fused_14", onnxruntime_fused(14)),
        ("onnxruntime_fused_17", onnxruntime_fused(17)),
        ("experimental_8", experimental(8)),
        ("experimental_9", experimental(9)),
        ("equal_split_11", equal_split(11)),
        ("equal_split_13", equal_split(13)),
        ("equal_split_18", equal_split(18)),
        ("tf2onnx_attention", tf2onnx_attention()),
        ("einsum_attention", einsum_attention()),
        ("einsum_forms", einsum_forms()),
        ("recurrent_lstm", recurrent_lstm()),
        ("recurrent_gru", recurrent_gru()),
        ("recurrent_bidirectional", recurrent_bidirectional()),
        ("merged_bn_constants", merged_bn_constants()),
        ("onnxruntime_saved_10", onnxruntime_saved(10)),
        ("onnxruntime_saved_13", onnxruntime_saved(13)),
        ("merged_uniform_biases", merged_uniform_biases()),
        ("local_functions", local_functions()),
        ("nested_functions", nested_functions()),
        ("unoptimized_dynamo_convs", unoptimized_dynamo_convs()),
        ("sequence_split_11", sequence_split(11)),
        ("sequence_split_13", sequence_split(13)),
        ("weight_normalized_13", weight_normalized(13)),
        ("weight_normalized_18", weight_normalized(18)),
        ("weight_standardized", weight_standardized()),
        ("l2_normalized", l2_normalized()),
    ]
}

/// `F.normalize` over a layer's channels as PyTorch exports it (SwiftFormer's additive
/// attention, embedding heads): `h / Expand(Clip(ReduceL2(h, -1), eps), Shape(h))`, then a
/// scale per channel and a second layer; the norm also multiplies `h`'s Relu, expanded to
/// its shape as the first operand. Input `x` (`[batch, 6]`), output `y` (`[batch, 3]`).
pub fn l2_normalized() -> Model {
    let mut b = GraphBuilder::new("l2_normalized");
    b.opset(13);
    let x = b.input_f32("x", &batch_dims(&[6]));
    let w1 = b.weight("fc1.weight", &[6, 8], wave(7, 1, 19));
    let b1 = b.weight("fc1.bias", &[8], |i| 0.1 * (i % 3) as f32 - 0.05);
    let h = b.node("MatMul", &[&x, &w1], &[]);
    let h = b.node("Add", &[&h, &b1], &[]);
    let norm = b.node_with("ReduceL2", &[&h], &[], &[("axes", Attr::Ints(vec![-1])), ("keepdims", Attr::Int(1))]);
    let eps = b.weight("eps", &[], |_| 1e-12);
    let norm = b.node("Clip", &[&norm, &eps], &[]);
    let shape = b.node("Shape", &[&h], &[]);
    let wide = b.node("Expand", &[&norm, &shape], &[]);
    let unit = b.node("Div", &[&h, &wide], &[]);
    let relu = b.node("Relu", &[&h], &[]);
    let shape2 = b.node("Shape", &[&relu], &[]);
    let wide2 = b.node("Expand", &[&norm, &shape2], &[]);
    let scaled = b.node("Mul", &[&wide2, &relu], &[]);
    let g = b.weight("scale", &[8], |i| 0.5 + 0.1 * i as f32);
    let unit = b.node("Mul", &[&unit, &g], &[]);
    let h = b.node("Add", &[&unit, &scaled], &[]);
    let w2 = b.weight("fc2.weight", &[8, 3], wave(5, 3, 17));
    let y = b.node("MatMul", &[&h, &w2], &["y"]);
    b.output_f32(&y, &batch_dims(&[3]));
    finish(&b)
}

/// A CNN of an old model zoo file with ONNX's experimental operators (opsets 1 to 9,
/// run by onnxruntime): `ImageScaler` on the image, `Scale` and `ScaledTanh` after the
/// second convolution, `ParametricSoftplus` and two `Crop`s (borders, then a size) after
/// the third, `Affine` on the output. Input `x` (`[batch, 3, 8, 8]`), output `y`
/// (`[batch, 4, 4, 4]`). The first two convolutions' channels stay zero where zeroed
/// (`Relu`, `tanh(0) = 0`); the third's do not (a softplus is not zero at 0), and the
/// fourth's input slices are zeroed with them: 3 prunable groups.
pub fn experimental(opset: i64) -> Model {
    let mut b = GraphBuilder::new("experimental");
    b.opset(opset);
    let x = b.input_f32("x", &batch_dims(&[3, 8, 8]));
    let conv = |b: &mut GraphBuilder, x: &str, name: &str, cin: usize, cout: usize, k: usize| -> String {
        let w = b.weight(&format!("{name}.weight"), &[cout, cin, k, k], wave(7, cout, 11));
        let bias = b.weight(&format!("{name}.bias"), &[cout], wave(3, cin, 7));
        let pad = (k / 2) as i64;
        b.node_with("Conv", &[x, &w, &bias], &[], &[("pads", Attr::Ints(vec![pad; 4]))])
    };
    let scaled = b.node_with("ImageScaler", &[&x], &[], &[("scale", Attr::Float(0.5)), ("bias", Attr::Floats(vec![0.1, -0.2, 0.3]))]);
    let c1 = conv(&mut b, &scaled, "c1", 3, 8, 3);
    let r1 = b.node("Relu", &[&c1], &[]);
    let c2 = conv(&mut b, &r1, "c2", 8, 8, 3);
    let s2 = b.node_with("Scale", &[&c2], &[], &[("scale", Attr::Float(2.0))]);
    let t2 = b.node_with("ScaledTanh", &[&s2], &[], &[("alpha", Attr::Float(1.2)), ("beta", Attr::Float(0.7))]);
    let c3 = conv(&mut b, &t2, "c3", 8, 8, 3);
    let p3 = b.node_with("ParametricSoftplus", &[&c3], &[], &[("alpha", Attr::Float(0.8)), ("beta", Attr::Float(1.1))]);
    let crop = b.node_with("Crop", &[&p3], &[], &[("border", Attr::Ints(vec![1, 1, 1, 1]))]);
    let sized = b.node_with("Crop", &[&crop], &[], &[("border", Attr::Ints(vec![2, 1, 0, 0])), ("scale", Attr::Ints(vec![4, 4]))]);
    let c4 = conv(&mut b, &sized, "c4", 8, 4, 1);
    let y = b.node_with("Affine", &[&c4], &["y"], &[("alpha", Attr::Float(1.5)), ("beta", Attr::Float(0.1))]);
    b.output_f32(&y, &batch_dims(&[4, 4, 4]));
    finish(&b)
}

/// The front of a BERT as onnxruntime's transformer optimizer fuses it: int64 ids and
/// mask cast to int32, `EmbedLayerNormalization` (word, position and segment embeddings,
/// the mask index), one `Attention` (2 heads of 4, packed Q/K/V weights) reading that
/// mask index, a second one reading the raw int32 mask (`[batch, seq]`), and a
/// classifier MatMul. Inputs: `input_ids`, `token_type_ids`, `attention_mask`
/// (`[batch, 5]`, int64).
pub fn onnxruntime_fused_attention(opset: i64) -> Model {
    let mut b = GraphBuilder::new("onnxruntime_fused_attention");
    b.opset(opset);
    b.import_domain("com.microsoft", 1);
    let ms = "com.microsoft";
    let dims = batch_dims(&[5]);
    for name in ["input_ids", "token_type_ids", "attention_mask"] {
        b.input(name, DType::I64, &dims);
    }
    let to_i32 = [("to", Attr::Int(6))];
    let ids = b.node_with("Cast", &["input_ids"], &["ids32"], &to_i32);
    let seg = b.node_with("Cast", &["token_type_ids"], &["seg32"], &to_i32);
    let mask = b.node_with("Cast", &["attention_mask"], &["mask32"], &to_i32);
    let words = b.weight("words", &[20, 8], wave(7, 3, 11));
    let positions = b.weight("positions", &[16, 8], wave(5, 1, 13));
    let segments = b.weight("segments", &[2, 8], wave(3, 2, 7));
    let gamma = b.weight("emb.ln.weight", &[8], |i| 1.0 + i as f32 / 10.0);
    let beta = b.weight("emb.ln.bias", &[8], wave(3, 1, 5));
    b.node_in_domain(
        ms,
        "EmbedLayerNormalization",
        &[&ids, &seg, &words, &positions, &segments, &gamma, &beta, &mask],
        &["emb", "mask_index"],
        &[("epsilon", Attr::Float(1e-12))],
    );
    let mut x = "emb".to_string();
    for (layer, m) in ["mask_index", mask.as_str()].into_iter().enumerate() {
        let w = b.weight(&format!("attn{layer}.qkv.weight"), &[8, 24], wave(7 + layer, 1, 17));
        let bias = b.weight(&format!("attn{layer}.qkv.bias"), &[24], wave(3, 2 + layer, 11));
        let out = format!("attn{layer}");
        b.node_in_domain(ms, "Attention", &[&x, &w, &bias, m], &[&out], &[("num_heads", Attr::Int(2))]);
        x = out;
    }
    let wc = b.weight("head.weight", &[8, 3], wave(5, 1, 9));
    let y = b.node("MatMul", &[&x, &wc], &["y"]);
    b.output_f32(&y, &batch_dims(&[5, 3]));
    finish(&b)
}

/// Inputs of [`onnxruntime_fused_attention`] at batch 3: random ids and segments, the
/// second sequence padded after 3 tokens, the third after 1.
pub fn fused_attention_inputs(seed: u64) -> Vec<(String, Tensor)> {
    let mut rng = oto_onnx::rng::SplitMix64::new(seed);
    let ints = |v: Vec<i64>| Tensor { shape: vec![3, 5], data: TensorData::I64(v) };
    let ids = (0..15).map(|_| rng.below(20) as i64).collect();
    let seg = (0..15).map(|_| rng.below(2) as i64).collect();
    let mask = [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]].concat();
    vec![("input_ids".into(), ints(ids)), ("token_type_ids".into(), ints(seg)), ("attention_mask".into(), ints(mask))]
}

/// A transformer layer as onnxruntime's transformer optimizer writes it, with its fused
/// `com.microsoft` operators: an FFN `MatMul -> BiasGelu -> MatMul ->
/// SkipLayerNormalization` (bias, beta and the residual sum as a second output), then
/// `FastGelu` (with a bias), `Gelu`, `QuickGelu`, `SkipSimplifiedLayerNormalization`,
/// `SimplifiedLayerNormalization` (default domain, as onnxruntime registers it) and a
/// classifier. Before opset 17 the layer normalization is written without
/// `LayerNormalization`.
pub fn onnxruntime_fused(opset: i64) -> Model {
    let mut b = GraphBuilder::new("onnxruntime_fused");
    b.opset(opset);
    b.import_domain("com.microsoft", 1);
    let ms = "com.microsoft";
    let x = b.input_f32("x", &batch_dims(&[6, 8]));
    let w1 = b.weight("ffn.up.weight", &[8, 16], wave(7, 3, 11));
    let b1 = b.weight("ffn.up.bias", &[16], wave(5, 1, 7));
    let w2 = b.weight("ffn.down.weight", &[16, 8], wave(3, 2, 13));
    let b2 = b.weight("ffn.down.bias", &[8], wave(2, 5, 9));
    let gamma = b.weight("ln.weight", &[8], |i| 1.0 + i as f32 / 10.0);
    let beta = b.weight("ln.bias", &[8], wave(3, 1, 5));
    let h = b.node("MatMul", &[&x, &w1], &[]);
    let h = b.node_in_domain(ms, "BiasGelu", &[&h, &b1], &["gelu"], &[]);
    let d = b.node("MatMul", &[&h, &w2], &[]);
    b.node_in_domain(
        ms,
        "SkipLayerNormalization",
        &[&d, &x, &gamma, &beta, &b2],
        &["ln", "", "", "residual"],
        &[("epsilon", Attr::Float(1e-5))],
    );
    let fb = b.weight("fast.bias", &[8], wave(5, 2, 7));
    let f = b.node_in_domain(ms, "FastGelu", &["ln", &fb], &["fast"], &[]);
    let g = b.node_in_domain(ms, "Gelu", &[&f], &["gelu2"], &[]);
    let q = b.node_in_domain(ms, "QuickGelu", &[&g], &["quick"], &[("alpha", Attr::Float(1.5))]);
    let g2 = b.weight("rms.weight", &[8], |i| 0.5 + i as f32 / 8.0);
    let sb = b.weight("rms.bias", &[8], wave(3, 3, 7));
    b.node_in_domain(ms, "SkipSimplifiedLayerNormalization", &[&q, "residual", &g2, &sb], &["rms"], &[("epsilon", Attr::Float(1e-6))]);
    let g3 = b.weight("rms2.weight", &[8], |i| 1.5 - i as f32 / 16.0);
    let r = b.node_in_domain(
        "",
        "SimplifiedLayerNormalization",
        &["rms", &g3],
        &["rms2"],
        &[("epsilon", Attr::Float(1e-6)), ("axis", Attr::Int(-1))],
    );
    let wc = b.weight("head.weight", &[8, 4], wave(7, 1, 9));
    let logits = b.node("MatMul", &[&r, &wc], &[]);
    // A fused operator with no parameter on a value the file declares no type for (CLIP's
    // QuickGelu between two projections): the file's one float type is its type.
    let y = b.node_in_domain(ms, "QuickGelu", &[&logits], &["y"], &[]);
    b.output_f32(&y, &batch_dims(&[6, 4]));
    finish(&b)
}

/// Every form of `Constant` node, each read by an arithmetic node, and one string
/// constant nobody reads (left as it is).
pub fn constant_forms() -> Model {
    let mut b = GraphBuilder::new("constant_forms");
    b.opset(13);
    let x = b.input_f32("x", &batch_dims(&[4]));
    let cv = constant(&mut b, "c_value", f32s(&[4], wave(3, 1, 7)));
    let cf = b.node_with("Constant", &[], &["c_float"], &[("value_float", Attr::Float(2.5))]);
    let cfs = b.node_with("Constant", &[], &["c_floats"], &[("value_floats", Attr::Floats(vec![0.5, -1.0, 2.0, 0.25]))]);
    let ci = b.node_with("Constant", &[], &["c_int"], &[("value_int", Attr::Int(2))]);
    let cis = b.node_with("Constant", &[], &["c_ints"], &[("value_ints", Attr::Ints(vec![1]))]);
    b.node_with("Constant", &[], &["c_string"], &[("value_string", Attr::Str("unused".into()))]);
    let y = b.node("Add", &[&x, &cv], &[]);
    let y = b.node("Mul", &[&y, &cf], &[]);
    let y = b.node("Sub", &[&y, &cfs], &["y"]);
    let g = b.node_with("Gather", &[&y, &ci], &[], &[("axis", Attr::Int(1))]);
    let u = b.node("Unsqueeze", &[&g, &cis], &["g"]);
    b.output_f32(&y, &batch_dims(&[4]));
    b.output_f32(&u, &batch_dims(&[1]));
    finish(&b)
}

/// Weights reached through data moves: a Transpose of a weight bigger than the small
/// constant limit (300 x 256 > 65536 elements), an Unsqueeze of a per-channel scale,
/// a Cast of an f16 bias, and a Gather of rows of a table.
pub fn weight_layouts() -> Model {
    let mut b = GraphBuilder::new("weight_layouts");
    b.opset(13);
    let x = b.input_f32("x", &batch_dims(&[300]));
    let w = b.weight("fc.weight", &[256, 300], wave(7, 3, 101));
    let wt = b.node_with("Transpose", &[&w], &["fc.weight.t"], &[("perm", Attr::Ints(vec![1, 0]))]);
    let y = b.node("MatMul", &[&x, &wt], &[]);
    let scale = b.weight("scale", &[256], wave(5, 2, 13));
    let axes = b.ints("axes0", &[0]);
    let s2 = b.node("Unsqueeze", &[&scale, &axes], &[]);
    let y = b.node("Mul", &[&y, &s2], &[]);
    let half: Vec<half::f16> = (0..256).map(|i| half::f16::from_f32(wave(3, 1, 17)(i))).collect();
    let bias16 = b.initializer("bias16", Tensor { shape: vec![256], data: TensorData::F16(half) });
    let bias = b.node_with("Cast", &[&bias16], &[], &[("to", Attr::Int(DType::F32.onnx_code() as i64))]);
    let y = b.node("Add", &[&y, &bias], &[]);
    let table = b.weight("table", &[5, 256], wave(11, 4, 23));
    let rows = b.ints("rows", &[3, 1]);
    let picked = b.node_with("Gather", &[&table, &rows], &[], &[("axis", Attr::Int(0))]);
    let shift = b.node_with("ReduceSum", &[&picked], &[], &[("keepdims", Attr::Int(0))]);
    let y = b.node("Add", &[&y, &shift], &["y"]);
    b.output_f32(&y, &batch_dims(&[256]));
    finish(&b)
}

/// A bias and a Reshape target computed from constants by integer and layout
/// subgraphs, in the attribute forms (opset 9: Unsqueeze/Squeeze axes and Slice bounds
/// as attributes) or the input forms (opset 13).
pub fn shape_subgraph(opset: i64) -> Model {
    let mut b = GraphBuilder::new("shape_subgraph");
    b.opset(opset);
    let x = b.input_f32("x", &batch_dims(&[2, 3]));
    let attr_form = opset < 13;
    let unsqueeze = |b: &mut GraphBuilder, v: &str, axes: &[i64]| {
        if attr_form {
            b.node_with("Unsqueeze", &[v], &[], &[("axes", Attr::Ints(axes.to_vec()))])
        } else {
            let a = constant(b, &format!("{v}_axes"), Tensor::from_i64s(axes.to_vec()));
            b.node("Unsqueeze", &[v, &a], &[])
        }
    };
    // Bias: Squeeze(Slice(Unsqueeze(b0)))
    let b0 = constant(&mut b, "b0", f32s(&[8], wave(3, 2, 9)));
    let b1 = unsqueeze(&mut b, &b0, &[0]);
    let b2 = if attr_form {
        b.node_with("Slice", &[&b1], &[], &[("starts", Attr::Ints(vec![1])), ("ends", Attr::Ints(vec![7])), ("axes", Attr::Ints(vec![1]))])
    } else {
        let st = b.ints("st", &[1]);
        let en = b.ints("en", &[7]);
        let ax = b.ints("ax", &[1]);
        b.node("Slice", &[&b1, &st, &en, &ax], &[])
    };
    let bias = if attr_form {
        b.node_with("Squeeze", &[&b2], &[], &[("axes", Attr::Ints(vec![0]))])
    } else {
        let a = b.ints("sq_axes", &[0]);
        b.node("Squeeze", &[&b2, &a], &[])
    };
    // Target: Concat([-1], Unsqueeze(Gather(Shape(w), 1) * 2 / 2)) = [-1, 6]
    let w = b.weight("w", &[2, 6], wave(1, 0, 5));
    let shape = b.node("Shape", &[&w], &[]);
    let one = constant(&mut b, "one", Tensor { shape: vec![], data: TensorData::I64(vec![1]) });
    let six = b.node_with("Gather", &[&shape, &one], &[], &[("axis", Attr::Int(0))]);
    let two = constant(&mut b, "two", Tensor { shape: vec![], data: TensorData::I64(vec![2]) });
    let twelve = b.node("Mul", &[&six, &two], &[]);
    let six = b.node("Div", &[&twelve, &two], &[]);
    let six = unsqueeze(&mut b, &six, &[0]);
    let minus = constant(&mut b, "minus_one", Tensor::from_i64s(vec![-1]));
    let target = b.node_with("Concat", &[&minus, &six], &[], &[("axis", Attr::Int(0))]);
    let y = b.node("Reshape", &[&x, &target], &[]);
    let y = b.node("Add", &[&y, &bias], &[]);
    // A factor filled by ConstantOfShape.
    let dims = constant(&mut b, "dims", Tensor::from_i64s(vec![6]));
    let ones = b.node_with("ConstantOfShape", &[&dims], &[], &[("value", Attr::Tensor(f32s(&[1], |_| 1.5)))]);
    let y = b.node("Mul", &[&y, &ones], &[]);
    b.output_f32(&y, &batch_dims(&[6]));
    finish(&b)
}

/// A 3-layer MLP as the TorchScript exporter writes it after de-duplicating equal
/// values: the second layer's bias is `Identity` of the first's (both start equal).
pub fn identity_bias() -> Model {
    let mut b = GraphBuilder::new("identity_bias");
    b.opset(17);
    let x = b.input_f32("input.1", &batch_dims(&[6]));
    let w1 = b.weight("fc1.weight", &[8, 6], wave(7, 1, 19));
    let b1 = b.weight("fc1.bias", &[8], |i| 0.1 * (i % 3) as f32 - 0.05);
    let w2 = b.weight("fc2.weight", &[8, 8], wave(5, 3, 17));
    let b2 = b.node("Identity", &[&b1], &["fc2.bias"]);
    let w3 = b.weight("fc3.weight", &[3, 8], wave(3, 2, 13));
    let b3 = b.weight("fc3.bias", &[3], |i| 0.2 * i as f32);
    let t = [("transB", Attr::Int(1))];
    let h = b.node_with("Gemm", &[&x, &w1, &b1], &[], &t);
    let h = b.node("Relu", &[&h], &[]);
    let h = b.node_with("Gemm", &[&h, &w2, &b2], &[], &t);
    let h = b.node("Relu", &[&h], &[]);
    let y = b.node_with("Gemm", &[&h, &w3, &b3], &["logits"], &t);
    b.output_f32(&y, &batch_dims(&[3]));
    finish(&b)
}

/// A caffe2-era file: IR 3, opset 8, every initializer also a graph input, two conv
/// branches joined by a `Sum` of three inputs, BatchNorm, Flatten and Gemm.
pub fn ir3_inputs() -> Model {
    let mut b = GraphBuilder::new("ir3_inputs");
    b.opset(8);
    let x = b.input_f32("data", &batch_dims(&[3, 6, 6]));
    let mut branches = Vec::new();
    for k in 0..3usize {
        let w = b.weight(&format!("conv{k}_w"), &[4, 3, 3, 3], wave(7 + k, k, 29));
        let bias = b.weight(&format!("conv{k}_b"), &[4], wave(3, k, 7));
        let pads = [("pads", Attr::Ints(vec![1, 1, 1, 1])), ("kernel_shape", Attr::Ints(vec![3, 3]))];
        let c = b.node_with("Conv", &[&x, &w, &bias], &[], &pads);
        branches.push(b.node("Relu", &[&c], &[]));
    }
    let s = b.node("Sum", &[&branches[0], &branches[1], &branches[2]], &["sum"]);
    let bn: Vec<String> = ["scale", "bias", "mean", "var"]
        .iter()
        .enumerate()
        .map(|(j, p)| b.weight(&format!("bn_{p}"), &[4], move |i| if *p == "var" { 0.5 + 0.25 * i as f32 } else { wave(3, j, 11)(i) }))
        .collect();
    let n = b.node_with("BatchNormalization", &[&s, &bn[0], &bn[1], &bn[2], &bn[3]], &[], &[("epsilon", Attr::Float(1e-5))]);
    let n = b.node("Relu", &[&n], &[]);
    let f = b.node_with("Flatten", &[&n], &[], &[("axis", Attr::Int(1))]);
    let fw = b.weight("fc_w", &[5, 144], wave(13, 5, 37));
    let fb = b.weight("fc_b", &[5], wave(1, 1, 3));
    let y = b.node_with("Gemm", &[&f, &fw, &fb], &["prob"], &[("transB", Attr::Int(1))]);
    b.output_f32(&y, &batch_dims(&[5]));
    for t in b.proto().graph.unwrap().initializer {
        b.input(t.name.as_deref().unwrap(), DType::F32, &known_dims(&t.dims));
    }
    let mut proto: ModelProto = b.proto();
    proto.ir_version = Some(3);
    proto.metadata_props.push(StringStringEntryProto { key: Some(META.0.into()), value: Some(META.1.into()) });
    Model::from_proto(proto, "ir3.onnx", None).unwrap()
}

/// Conv -> BatchNorm whose parameters are `Constant` nodes, as the TorchScript exporter
/// writes them without constant folding: the scale directly, the bias through
/// `Squeeze` of a `[1, C]` constant, the variance through a `Cast` from f64.
pub fn constant_batchnorm() -> Model {
    let mut b = GraphBuilder::new("constant_batchnorm");
    b.opset(13);
    let x = b.input_f32("x", &batch_dims(&[2, 5, 5]));
    let c = 6usize;
    let w = constant(&mut b, "conv.weight", f32s(&[c, 2, 3, 3], wave(7, 1, 23)));
    let conv = b.node_with("Conv", &[&x, &w], &[], &[("pads", Attr::Ints(vec![1, 1, 1, 1]))]);
    let scale = constant(&mut b, "bn.weight", f32s(&[c], wave(3, 4, 7)));
    let bias2 = constant(&mut b, "bn.bias2d", f32s(&[1, c], wave(5, 1, 11)));
    let sq = constant(&mut b, "sq_axes", Tensor::from_i64s(vec![0]));
    let bias = b.node("Squeeze", &[&bias2, &sq], &["bn.bias"]);
    let mean = constant(&mut b, "bn.running_mean", f32s(&[c], wave(2, 1, 5)));
    let var64 = Tensor { shape: vec![c], data: TensorData::F64((0..c).map(|i| 0.5 + 0.125 * i as f64).collect()) };
    let var64 = constant(&mut b, "bn.var64", var64);
    let var = b.node_with("Cast", &[&var64], &["bn.running_var"], &[("to", Attr::Int(DType::F32.onnx_code() as i64))]);
    let n = b.node("BatchNormalization", &[&conv, &scale, &bias, &mean, &var], &[]);
    let n = b.node("Relu", &[&n], &[]);
    let p = b.node("GlobalAveragePool", &[&n], &[]);
    let f = b.node("Flatten", &[&p], &[]);
    let fw = constant(&mut b, "fc.weight", f32s(&[4, c], wave(5, 2, 13)));
    let fb = b.weight("fc.bias", &[4], wave(1, 0, 4));
    let y = b.node_with("Gemm", &[&f, &fw, &fb], &["y"], &[("transB", Attr::Int(1))]);
    b.output_f32(&y, &batch_dims(&[4]));
    finish(&b)
}

/// Variadic operators: `Sum` of three (with broadcasting) and of one input, `Max` and
/// `Min` of three.
pub fn variadic() -> Model {
    let mut b = GraphBuilder::new("variadic");
    b.opset(13);
    let x = b.input_f32("x", &batch_dims(&[4]));
    let z = b.input_f32("z", &batch_dims(&[4]));
    let c = b.weight("c", &[4], wave(3, 1, 5));
    let s = b.node("Sum", &[&x, &z, &c], &["s"]);
    let one = b.node("Sum", &[&s], &["s1"]);
    let m = b.node("Max", &[&x, &z, &c], &["m"]);
    let n = b.node("Min", &[&one, &m, &x], &["n"]);
    b.output_f32(&n, &batch_dims(&[4]));
    b.output_f32(&s, &batch_dims(&[4]));
    finish(&b)
}

/// Weight sharing the pass must keep: `shared` read directly by two MatMuls, `tied`
/// read by a MatMul and (through a Transpose) by another one.
pub fn shared_weights() -> Model {
    let mut b = GraphBuilder::new("shared_weights");
    b.opset(13);
    let x = b.input_f32("x", &batch_dims(&[4]));
    let shared = b.weight("shared", &[4, 4], wave(3, 1, 7));
    let tied = b.weight("tied", &[4, 4], wave(5, 2, 9));
    let h = b.node("MatMul", &[&x, &shared], &[]);
    let h = b.node("MatMul", &[&h, &shared], &[]);
    let h = b.node("MatMul", &[&h, &tied], &[]);
    let t = b.node_with("Transpose", &[&tied], &["tied.t"], &[("perm", Attr::Ints(vec![1, 0]))]);
    let y = b.node("MatMul", &[&h, &t], &["y"]);
    b.output_f32(&y, &batch_dims(&[4]));
    finish(&b)
}

/// A tie the TorchScript exporter folded away: `emb` ([4, 6], read by a Gemm) and
/// `lm_head` ([6, 4], read as a MatMul weight) holding exactly its transpose, as GPT-2's
/// tied `lm_head` is written; and `near` ([6, 4]), the same transpose but for one value.
pub fn tied_transpose() -> Model {
    let mut b = GraphBuilder::new("tied_transpose");
    b.opset(13);
    let x = b.input_f32("x", &batch_dims(&[4]));
    let fill = wave(7, 3, 11);
    let emb = b.weight("emb", &[4, 6], &fill);
    // lm_head[i][j] = emb[j][i]
    let transposed = move |i: usize| fill((i % 4) * 6 + i / 4);
    let lm_head = b.weight("lm_head", &[6, 4], &transposed);
    let near = b.weight("near", &[6, 4], move |i| if i == 13 { transposed(i) + 0.125 } else { transposed(i) });
    let h = b.node("Gemm", &[&x, &emb], &[]);
    let y1 = b.node("MatMul", &[&h, &lm_head], &[]);
    let y2 = b.node("MatMul", &[&h, &near], &[]);
    let y = b.node("Add", &[&y1, &y2], &["y"]);
    b.output_f32(&y, &batch_dims(&[4]));
    finish(&b)
}

/// Two layers whose outputs are reshaped to `[B, 2, 4]` by one shared target,
/// `Concat(Unsqueeze(Gather(Shape(x), 0)), [2, 4])`, as the dynamo exporter merges equal
/// shape computations of different layers: normalization gives each Reshape its own Concat.
pub fn shared_shape_concat() -> Model {
    let mut b = GraphBuilder::new("shared_shape_concat");
    b.opset(13);
    let x = b.input_f32("x", &batch_dims(&[8]));
    let w1 = b.weight("w1", &[8, 8], wave(3, 1, 7));
    let w2 = b.weight("w2", &[8, 8], wave(5, 2, 9));
    let shape = b.node("Shape", &[&x], &[]);
    let zero = b.ints("zero", &[0]);
    let batch = b.node_with("Gather", &[&shape, &zero], &[], &[("axis", Attr::Int(0))]);
    let rest = b.ints("rest", &[2, 4]);
    let target = b.node_with("Concat", &[&batch, &rest], &["target"], &[("axis", Attr::Int(0))]);
    let h1 = b.node("MatMul", &[&x, &w1], &[]);
    let r1 = b.node("Reshape", &[&h1, &target], &[]);
    let h2 = b.node("MatMul", &[&x, &w2], &[]);
    let r2 = b.node("Reshape", &[&h2, &target], &[]);
    let y = b.node("Mul", &[&r1, &r2], &["y"]);
    b.output_f32(&y, &batch_dims(&[2, 4]));
    finish(&b)
}

/// A branch of one `If`: `op(value, name)` with `name` an initializer of the branch
/// (a weight of the layer that is only read inside it), declared output `out`.
fn branch(name: &str, op: &str, value: &str, weight: Tensor, out: &str) -> oto_onnx::proto::GraphProto {
    let mut b = GraphBuilder::new(name);
    let w = b.initializer(&format!("{name}.weight"), weight);
    b.node(op, &[value, &w], &[out]);
    b.output_f32(out, &batch_dims(&[4, 16]));
    b.proto().graph.unwrap_or_default()
}

/// Two layers with an `If` each on a comparison of sizes that holds by construction (a
/// scripted helper's `if h.size(1) != x.size(1)`, DeBERTa's relative positions): the
/// second condition reads the first branch's output, so its sizes are known only once
/// the first If is replaced by its branch. The else branches add a bias and scale, the
/// weights of the layer living in the branches.
pub fn known_branches() -> Model {
    use oto_onnx::proto::{attribute_proto::AttributeType, AttributeProto};
    let mut b = GraphBuilder::new("known_branches");
    b.opset(13);
    let x = b.input_f32("x", &batch_dims(&[4, 8]));
    let w1 = b.weight("w1", &[8, 16], wave(3, 1, 7));
    let w2 = b.weight("w2", &[16, 8], wave(5, 2, 9));
    let one = b.initializer("one", Tensor { shape: vec![], data: TensorData::I64(vec![1]) });
    let length = |b: &mut GraphBuilder, v: &str| {
        let shape = b.node("Shape", &[v], &[]);
        b.node_with("Gather", &[&shape, &one], &[], &[("axis", Attr::Int(0))])
    };
    let x_len = length(&mut b, &x);
    let h = b.node("MatMul", &[&x, &w1], &[]);
    let differs = |b: &mut GraphBuilder, v: &str| {
        let len = length(b, v);
        let same = b.node("Equal", &[&len, &x_len], &[]);
        b.node("Not", &[&same], &[])
    };
    let c1 = differs(&mut b, &h);
    b.node("If", &[&c1], &["g1"]);
    let r = b.node("Relu", &["g1"], &[]);
    let c2 = differs(&mut b, &r);
    b.node("If", &[&c2], &["g2"]);
    let y = b.node("MatMul", &["g2", &w2], &["y"]);
    b.output_f32(&y, &batch_dims(&[4, 8]));
    let mut model = finish(&b);
    let scalar = |v: f32| Tensor { shape: vec![], data: TensorData::F32(vec![v]) };
    let bodies = [
        (branch("double1", "Mul", &h, scalar(2.0), "t1"), branch("bias1", "Add", &h, f32s(&[16], wave(7, 3, 11)), "e1")),
        (branch("double2", "Mul", &r, scalar(2.0), "t2"), branch("scale2", "Mul", &r, f32s(&[16], wave(2, 5, 13)), "e2")),
    ];
    let graph = model.proto.graph.as_mut().unwrap();
    let ifs = graph.node.iter_mut().filter(|n| n.op_type.as_deref() == Some("If"));
    for (node, (then_branch, else_branch)) in ifs.zip(bodies) {
        for (name, g) in [("then_branch", then_branch), ("else_branch", else_branch)] {
            node.attribute.push(AttributeProto {
                name: Some(name.into()),
                r#type: Some(AttributeType::Graph as i32),
                g: Some(g),
                ..Default::default()
            });
        }
    }
    Model::from_proto(model.proto, "case.onnx", None).unwrap()
}

/// The other folds: Flatten of a weight, Size of a weight, integer Range, Expand, Less,
/// Where and Concat computing the indices of a Gather of activations.
pub fn integer_folds() -> Model {
    let mut b = GraphBuilder::new("integer_folds");
    b.opset(13);
    let x = b.input_f32("x", &batch_dims(&[6]));
    let w2 = b.weight("w2", &[2, 3], wave(5, 1, 7));
    let flat = b.node_with("Flatten", &[&w2], &[], &[("axis", Attr::Int(0))]);
    let y = b.node("Mul", &[&x, &flat], &[]);
    let sized = b.weight("sized", &[2, 2], wave(3, 0, 5));
    let n = b.node("Size", &[&sized], &[]);
    let scalar = |v: i64| Tensor { shape: vec![], data: TensorData::I64(vec![v]) };
    let zero = constant(&mut b, "zero", scalar(0));
    let one = constant(&mut b, "one", scalar(1));
    let r = b.node("Range", &[&zero, &n, &one], &[]);
    let two = constant(&mut b, "two", Tensor::from_i64s(vec![2]));
    let four = b.ints("four", &[4]);
    let e = b.node("Expand", &[&two, &four], &[]);
    let less = b.node("Less", &[&r, &e], &[]);
    let sel = b.node("Where", &[&less, &r, &e], &[]);
    let tail = b.ints("tail", &[5, 4]);
    let idx = b.node_with("Concat", &[&sel, &tail], &["idx"], &[("axis", Attr::Int(0))]);
    let y = b.node_with("Gather", &[&y, &idx], &["y"], &[("axis", Attr::Int(1))]);
    b.output_f32(&y, &batch_dims(&[6]));
    finish(&b)
}

/// Random inputs for every real graph input of `model`, with `batch` = 2 (and `seq` = 3).
pub fn random_inputs(model: &Model, seed: u64) -> Vec<(String, Tensor)> {
    use oto_onnx::shape::infer;
    let graph = oto_onnx::Graph::new(model).unwrap();
    let shapes = infer(&graph).unwrap();
    let bind: std::collections::HashMap<String, i64> = [("batch".to_string(), 2), ("seq".to_string(), 3)].into();
    let mut rng = oto_onnx::rng::SplitMix64::new(seed);
    graph
        .real_inputs()
        .map(|v| {
            let name = v.name.clone().unwrap();
            let shape: Vec<usize> = shapes.bound_shape(&name, &bind).unwrap().iter().map(|&d| d as usize).collect();
            let n: usize = shape.iter().product();
            (name, Tensor { shape, data: TensorData::F32((0..n).map(|_| rng.unit() as f32 * 2.0 - 1.0).collect()) })
        })
        .collect()
}

/// Res2Net's split of a layer's width into scales, as the dynamo exporter writes `chunk`:
/// an equal `Split` (opset 18: `num_outputs`; 13 and 11: as many parts as outputs, no
/// sizes) of a 12-wide MatMul into 3 parts of 4, each part through its own layer, then
/// concatenated. Input `x` (`[batch, 8]`), output `y` (`[batch, 6]`).
pub fn equal_split(opset: i64) -> Model {
    let mut b = GraphBuilder::new(&format!("equal_split_{opset}"));
    b.opset(opset);
    let x = b.input_f32("x", &batch_dims(&[8]));
    let w = b.weight("fc.weight", &[8, 12], wave(3, 1, 7));
    let h = b.node("MatMul", &[&x, &w], &[]);
    let h = b.node("Relu", &[&h], &[]);
    let outs = ["part0", "part1", "part2"];
    let attrs: Vec<(&str, Attr)> =
        if opset >= 18 { vec![("axis", Attr::Int(1)), ("num_outputs", Attr::Int(3))] } else { vec![("axis", Attr::Int(1))] };
    b.node_with("Split", &[&h], &outs, &attrs);
    let mut parts = Vec::new();
    for (k, part) in outs.iter().enumerate() {
        let wk = b.weight(&format!("scale{k}.weight"), &[4, 5], wave(5 + k, 2, 11));
        let p = b.node("MatMul", &[part, &wk], &[]);
        parts.push(b.node("Relu", &[&p], &[]));
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let cat = b.node_with("Concat", &refs, &[], &[("axis", Attr::Int(1))]);
    let w2 = b.weight("head.weight", &[15, 6], wave(7, 3, 13));
    let y = b.node("MatMul", &[&cat, &w2], &["y"]);
    b.output_f32(&y, &batch_dims(&[6]));
    finish(&b)
}

/// Keras' `MultiHeadAttention` as tf2onnx writes it (its einsums lowered to MatMuls): a
/// projection kernel `[E, H, D]` is read through a `Reshape` whose target is computed
/// from the kernel's own `Shape` (`Gather` -> `ReduceProd` -> `Concat`: folded into a
/// `[E, H*D]` initializer); the batched products reshape `[N, H, S, D]` to
/// `[N*H, S, D]` with the first entry a `ReduceProd` of the measured `[N, H]`, and back
/// with `Max` of the two operands' `[N, H]` (broadcast shapes); the output projection
/// flattens `[N, S, H, D]` to `[N*S, H*D]`, its second entry a `ReduceProd` of the
/// measured `[H, D]`. Input `x` (`[batch, 4, 8]`, E = 8, H = 2, D = 4), output `y`
/// (`[batch, 4, 8]`). The heads are one prunable group.
pub fn tf2onnx_attention() -> Model {
    let (s, e, h, d) = (4i64, 8i64, 2i64, 4i64);
    let mut b = GraphBuilder::new("tf2onnx_attention");
    b.opset(13);
    let x = b.input_f32("x", &batch_dims(&[s, e]));
    let rows = b.ints("rows", &[-1, e]);
    let x2 = b.node("Reshape", &[&x, &rows], &[]);
    let minus_one = b.ints("minus_one", &[-1]);
    let (last2, first2) = (b.ints("last2", &[1, 2]), b.ints("first2", &[0, 1]));
    let project = |b: &mut GraphBuilder, name: &str, seed: usize| {
        let kernel = b.weight(&format!("{name}/kernel"), &[e as usize, h as usize, d as usize], wave(seed, 1, 7));
        let shape = b.node("Shape", &[&kernel], &[]);
        let hd = b.node("Gather", &[&shape, &last2], &[]);
        let hd = b.node_with("ReduceProd", &[&hd], &[], &[("keepdims", Attr::Int(1))]);
        let target = b.node_with("Concat", &[&minus_one, &hd], &[], &[("axis", Attr::Int(0))]);
        let w = b.node("Reshape", &[&kernel, &target], &[]);
        let y = b.node("MatMul", &[&x2, &w], &[]);
        let split = b.ints(&format!("{name}/heads"), &[-1, s, h, d]);
        let y = b.node("Reshape", &[&y, &split], &[]);
        b.node_with("Transpose", &[&y], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))])
    };
    let q = project(&mut b, "query", 3);
    let k = project(&mut b, "key", 5);
    let v = project(&mut b, "value", 7);
    // [N, H, S, D] -> [N*H, S, D] (or [N*H, D, S] for the transposed key).
    let batched = |b: &mut GraphBuilder, t: &str, tail: &[i64]| {
        let shape = b.node("Shape", &[t], &[]);
        let nh = b.node("Gather", &[&shape, &first2], &[]);
        let nh_prod = b.node_with("ReduceProd", &[&nh], &[], &[("keepdims", Attr::Int(1))]);
        let tail = b.ints(&format!("{t}/tail"), tail);
        let target = b.node_with("Concat", &[&nh_prod, &tail], &[], &[("axis", Attr::Int(0))]);
        (b.node("Reshape", &[t, &target], &[]), nh)
    };
    let kt = b.node_with("Transpose", &[&k], &[], &[("perm", Attr::Ints(vec![0, 1, 3, 2]))]);
    let (q3, q_nh) = batched(&mut b, &q, &[-1, d]);
    let (k3, k_nh) = batched(&mut b, &kt, &[d, -1]);
    let scores = b.node("MatMul", &[&q3, &k3], &[]);
    let nh = b.node("Max", &[&q_nh, &k_nh], &[]);
    let ss = b.ints("ss", &[s, s]);
    let back = b.node_with("Concat", &[&nh, &ss], &[], &[("axis", Attr::Int(0))]);
    let scores = b.node("Reshape", &[&scores, &back], &[]);
    let probs = b.node_with("Softmax", &[&scores], &[], &[("axis", Attr::Int(-1))]);
    let (p3, p_nh) = batched(&mut b, &probs, &[s, s]);
    let (v3, v_nh) = batched(&mut b, &v, &[s, d]);
    let o = b.node("MatMul", &[&p3, &v3], &[]);
    let nh = b.node("Max", &[&p_nh, &v_nh], &[]);
    let sd = b.ints("sd", &[s, d]);
    let back = b.node_with("Concat", &[&nh, &sd], &[], &[("axis", Attr::Int(0))]);
    let o = b.node("Reshape", &[&o, &back], &[]);
    let o = b.node_with("Transpose", &[&o], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
    // [N, S, H, D] -> [N*S, H*D]: H*D measured.
    let shape = b.node("Shape", &[&o], &[]);
    let (hd_at, ns_at) = (b.ints("hd_at", &[2, 3]), b.ints("ns_at", &[0, 1]));
    let hd = b.node("Gather", &[&shape, &hd_at], &[]);
    let hd = b.node_with("ReduceProd", &[&hd], &[], &[("keepdims", Attr::Int(1))]);
    let ns = b.node("Gather", &[&shape, &ns_at], &[]);
    let ns = b.node_with("ReduceProd", &[&ns], &[], &[("keepdims", Attr::Int(1))]);
    let target = b.node_with("Concat", &[&ns, &hd], &[], &[("axis", Attr::Int(0))]);
    let o = b.node("Reshape", &[&o, &target], &[]);
    let kernel = b.weight("output/kernel", &[h as usize, d as usize, e as usize], wave(11, 2, 13));
    let flat = b.ints("output/flat", &[-1, e]);
    let w = b.node("Reshape", &[&kernel, &flat], &[]);
    let y = b.node("MatMul", &[&o, &w], &[]);
    let out = b.ints("out", &[-1, s, e]);
    let y = b.node("Reshape", &[&y, &out], &["y"]);
    b.output_f32(&y, &batch_dims(&[s, e]));
    finish(&b)
}

/// Keras' `MultiHeadAttention` as tf2onnx writes it at opset 13 and as `torch.einsum`
/// exports: `Einsum` nodes. Projections `abc,cde->abde` (kernels `[E, H, D]`), scores
/// `aecd,abcd->acbe` (key first, Keras' order), `acbe,aecd->abcd` with the values, the
/// output projection `abcd,cde->abe`. Input `x` (`[batch, seq, 8]`, H = 2, D = 4),
/// output `y` (`[batch, seq, 8]`). The heads are one prunable group.
pub fn einsum_attention() -> Model {
    let mut b = GraphBuilder::new("einsum_attention");
    b.opset(13);
    let x = b.input_f32("x", &[Dim::sym("batch"), Dim::sym("seq"), Dim::Known(8)]);
    let eq = |s: &str| [("equation", Attr::Str(s.into()))];
    let mut heads = Vec::new();
    for (k, name) in ["query", "key", "value"].iter().enumerate() {
        let w = b.weight(&format!("{name}/kernel"), &[8, 2, 4], wave(3 + 2 * k, 1, 7));
        heads.push(b.node_with("Einsum", &[&x, &w], &[], &eq("abc,cde->abde")));
    }
    let scores = b.node_with("Einsum", &[&heads[1], &heads[0]], &[], &eq("aecd,abcd->acbe"));
    let probs = b.node_with("Softmax", &[&scores], &[], &[("axis", Attr::Int(-1))]);
    let o = b.node_with("Einsum", &[&probs, &heads[2]], &[], &eq("acbe,aecd->abcd"));
    let wo = b.weight("output/kernel", &[2, 4, 8], wave(11, 2, 13));
    let y = b.node_with("Einsum", &[&o, &wo], &["y"], &eq("abcd,cde->abe"));
    b.output_f32(&y, &[Dim::sym("batch"), Dim::sym("seq"), Dim::Known(8)]);
    finish(&b)
}

/// Other `Einsum` forms: an outer product (`bi,bj->bij`: nothing contracted), a batched
/// matrix-vector product (`bij,bj->bi`: no free label in B), a product whose output
/// order differs (`bij,kj->kbi`), and an implicit output (`bk,kl`: `bl`). Input `x`
/// (`[batch, 3, 5]`), outputs `outer` (`[batch, 3, 3]`), `mv` (`[batch, 3]`), `perm`
/// (`[4, batch, 3]`), `implicit` (`[batch, 6]`).
pub fn einsum_forms() -> Model {
    let mut b = GraphBuilder::new("einsum_forms");
    b.opset(12);
    let x = b.input_f32("x", &batch_dims(&[3, 5]));
    let eq = |s: &str| [("equation", Attr::Str(s.into()))];
    let w = b.weight("w", &[5, 3], wave(2, 1, 5));
    let v = b.node_with("Einsum", &[&x, &w], &[], &eq("bij,jk->bik"));
    let row = b.ints("row0", &[0]);
    let first = b.node_with("Gather", &[&v, &row], &[], &[("axis", Attr::Int(1))]);
    let flat = b.ints("flat", &[-1, 3]);
    let first = b.node("Reshape", &[&first, &flat], &[]);
    let outer = b.node_with("Einsum", &[&first, &first], &["outer"], &eq("bi,bj->bij"));
    let mv = b.node_with("Einsum", &[&v, &first], &["mv"], &eq("bij,bj->bi"));
    let k = b.weight("k", &[4, 5], wave(4, 3, 7));
    let perm = b.node_with("Einsum", &[&x, &k], &["perm"], &eq("bij,kj->kbi"));
    let l = b.weight("l", &[3, 6], wave(6, 1, 9));
    let implicit = b.node_with("Einsum", &[&first, &l], &["implicit"], &eq("bk,kl"));
    // One operand: a permutation, and a sum over a label with the rest permuted.
    let permuted = b.node_with("Einsum", &[&v], &["permuted"], &eq("bij->jbi"));
    let summed = b.node_with("Einsum", &[&v], &["summed"], &eq("bij -> jb"));
    b.output_f32(&outer, &batch_dims(&[3, 3]));
    b.output_f32(&permuted, &[Dim::Known(5), Dim::sym("batch"), Dim::Known(3)]);
    b.output_f32(&summed, &[Dim::Known(3), Dim::sym("batch")]);
    b.output_f32(&mv, &batch_dims(&[3]));
    b.output_f32(&perm, &[Dim::Known(4), Dim::sym("batch"), Dim::Known(3)]);
    b.output_f32(&implicit, &batch_dims(&[6]));
    finish(&b)
}

/// A two-direction LSTM as the TorchScript exporter writes `nn.LSTM(bidirectional=True)`:
/// its zero initial states computed at run time (`ConstantOfShape([2, batch, H])`, sliced),
/// the output `[seq, 2, batch, H]` flattened to `[seq, batch, 2H]` for a linear layer (the
/// target computed from the shape, `2 * H` a product of two measured sizes, as the dynamo
/// exporter writes it).
/// Input `x` (`[seq, batch, 6]`), output `y` (`[seq, batch, 5]`).
/// The hidden units (H = 4) are one prunable group, the input features another.
pub fn recurrent_lstm() -> Model {
    let mut b = GraphBuilder::new("recurrent_lstm");
    b.opset(14);
    let x = b.input_f32("x", &[Dim::sym("seq"), Dim::sym("batch"), Dim::Known(6)]);
    let w0 = b.weight("proj.weight", &[6, 6], wave(2, 1, 7));
    let x = b.node("MatMul", &[&x, &w0], &[]);
    let x = b.node("Relu", &[&x], &[]);
    let shape = b.node("Shape", &[&x], &[]);
    let at1 = b.ints("at1", &[1]);
    let batch = b.node("Gather", &[&shape, &at1], &[]);
    let (two, four) = (b.ints("two", &[2]), b.ints("four", &[4]));
    let state_shape = b.node_with("Concat", &[&two, &batch, &four], &[], &[("axis", Attr::Int(0))]);
    let zeros = b.node("ConstantOfShape", &[&state_shape], &[]);
    let (s0, s1, s2, a0) = (b.ints("s0", &[0]), b.ints("s1", &[2]), b.ints("s2", &[2]), b.ints("a0", &[0]));
    let h0 = b.node("Slice", &[&zeros, &s0, &s1, &a0], &[]);
    let c0 = b.node("Slice", &[&zeros, &s0, &s2, &a0], &[]);
    let w = b.weight("lstm.w", &[2, 16, 6], wave(3, 2, 11));
    let r = b.weight("lstm.r", &[2, 16, 4], wave(5, 1, 9));
    let bias = b.weight("lstm.b", &[2, 32], wave(7, 3, 5));
    let attrs = [("hidden_size", Attr::Int(4)), ("direction", Attr::Str("bidirectional".into()))];
    let y = b.node_with("LSTM", &[&x, &w, &r, &bias, "", &h0, &c0], &[], &attrs);
    let y = b.node_with("Transpose", &[&y], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
    // [seq, batch, 2 * H] computed from the shape, as the dynamo exporter writes it.
    let dims = b.node("Shape", &[&y], &[]);
    let bounds = [("b0", 0), ("b1", 1), ("b2", 2), ("b3", 3), ("b4", 4)].map(|(n, v)| b.ints(n, &[v]));
    let piece = |b: &mut GraphBuilder, k: usize| b.node("Slice", &[&dims, &bounds[k], &bounds[k + 1]], &[]);
    let (seq, batch, dirs, units) = (piece(&mut b, 0), piece(&mut b, 1), piece(&mut b, 2), piece(&mut b, 3));
    let width = b.node("Mul", &[&dirs, &units], &[]);
    let flat = b.node_with("Concat", &[&seq, &batch, &width], &[], &[("axis", Attr::Int(0))]);
    let y = b.node("Reshape", &[&y, &flat], &[]);
    let w2 = b.weight("head.weight", &[8, 5], wave(11, 2, 13));
    let y = b.node("MatMul", &[&y, &w2], &["y"]);
    b.output_f32(&y, &[Dim::sym("seq"), Dim::sym("batch"), Dim::Known(5)]);
    finish(&b)
}

/// A GRU (`linear_before_reset`, sequence first as onnxruntime requires) whose last state
/// feeds a linear layer, its zero initial state an `Expand` of a zero constant, and an RNN
/// after it whose initial state is not zero (a constant 0.5: its units stay). Input `x`
/// (`[seq, batch, 3]`), output `y` (`[batch, 2]`).
pub fn recurrent_gru() -> Model {
    let mut b = GraphBuilder::new("recurrent_gru");
    b.opset(14);
    let x = b.input_f32("x", &[Dim::sym("seq"), Dim::sym("batch"), Dim::Known(3)]);
    let shape = b.node("Shape", &[&x], &[]);
    let at1 = b.ints("at1", &[1]);
    let batch = b.node("Gather", &[&shape, &at1], &[]);
    let (one, five) = (b.ints("one", &[1]), b.ints("five", &[5]));
    let state_shape = b.node_with("Concat", &[&one, &batch, &five], &[], &[("axis", Attr::Int(0))]);
    let zero = b.initializer("zero", Tensor::new(vec![1], TensorData::F32(vec![0.0])).unwrap());
    let h0 = b.node("Expand", &[&zero, &state_shape], &[]);
    let w = b.weight("gru.w", &[1, 15, 3], wave(3, 2, 11));
    let r = b.weight("gru.r", &[1, 15, 5], wave(5, 1, 9));
    let bias = b.weight("gru.b", &[1, 30], wave(7, 3, 5));
    let attrs = [("hidden_size", Attr::Int(5)), ("linear_before_reset", Attr::Int(1))];
    b.node_with("GRU", &[&x, &w, &r, &bias, "", &h0], &["gru_y", "gru_h"], &attrs);
    let last = b.ints("last", &[-1, 5]);
    let h = b.node("Reshape", &["gru_h", &last], &[]);
    let w2 = b.weight("mid.weight", &[5, 3], wave(9, 2, 7));
    let h = b.node("MatMul", &[&h, &w2], &[]);
    let seq = b.ints("seq1", &[1, -1, 3]);
    let h = b.node("Reshape", &[&h, &seq], &[]);
    let rw = b.weight("rnn.w", &[1, 4, 3], wave(4, 1, 5));
    let rr = b.weight("rnn.r", &[1, 4, 4], wave(6, 2, 7));
    let half = b.initializer("half", Tensor::new(vec![1], TensorData::F32(vec![0.5])).unwrap());
    let four = b.ints("four_units", &[4]);
    let rnn_state = b.node_with("Concat", &[&one, &batch, &four], &[], &[("axis", Attr::Int(0))]);
    let h1 = b.node("Expand", &[&half, &rnn_state], &[]);
    let rnn_attrs = [("hidden_size", Attr::Int(4))];
    b.node_with("RNN", &[&h, &rw, &rr, "", "", &h1], &["rnn_y"], &rnn_attrs);
    let flat = b.ints("flat4", &[-1, 4]);
    let y = b.node("Reshape", &["rnn_y", &flat], &[]);
    let w3 = b.weight("head.weight", &[4, 2], wave(8, 3, 9));
    let y = b.node("MatMul", &[&y, &w3], &["y"]);
    b.output_f32(&y, &batch_dims(&[2]));
    finish(&b)
}

/// Keras's `Bidirectional(GRU)` as tf2onnx writes it: one bidirectional `GRU` whose
/// initial state is the two directions' zero states, each `Expand(0, [batch, H])`
/// unsqueezed and concatenated. Input `x` (`[seq, batch, 3]`), output `y` (`[batch, 2]`).
pub fn recurrent_bidirectional() -> Model {
    let mut b = GraphBuilder::new("recurrent_bidirectional");
    b.opset(13);
    let x = b.input_f32("x", &[Dim::sym("seq"), Dim::sym("batch"), Dim::Known(3)]);
    let shape = b.node("Shape", &[&x], &[]);
    let at1 = b.ints("at1", &[1]);
    let batch = b.node("Gather", &[&shape, &at1], &[]);
    let units = b.ints("units", &[5]);
    let state_shape = b.node_with("Concat", &[&batch, &units], &[], &[("axis", Attr::Int(0))]);
    let zero = b.initializer("zero", Tensor::new(vec![], TensorData::F32(vec![0.0])).unwrap());
    let state = b.node("Expand", &[&zero, &state_shape], &[]);
    let axes0 = b.ints("axes0", &[0]);
    let forward = b.node("Unsqueeze", &[&state, &axes0], &[]);
    let backward = b.node("Unsqueeze", &[&state, &axes0], &[]);
    let h0 = b.node_with("Concat", &[&forward, &backward], &[], &[("axis", Attr::Int(0))]);
    let w = b.weight("gru.w", &[2, 15, 3], wave(3, 2, 11));
    let r = b.weight("gru.r", &[2, 15, 5], wave(5, 1, 9));
    let bias = b.weight("gru.b", &[2, 30], wave(7, 3, 5));
    let attrs = [("hidden_size", Attr::Int(5)), ("linear_before_reset", Attr::Int(1)), ("direction", Attr::Str("bidirectional".into()))];
    b.node_with("GRU", &[&x, &w, &r, &bias, "", &h0], &["gru_y", "gru_h"], &attrs);
    // The last states of both directions side by side: [2, batch, 5] -> [batch, 2, 5] -> [batch, 10].
    let moved = b.node_with("Transpose", &["gru_h"], &[], &[("perm", Attr::Ints(vec![1, 0, 2]))]);
    let flat = b.ints("flat10", &[-1, 10]);
    let h = b.node("Reshape", &[&moved, &flat], &[]);
    let w2 = b.weight("head.weight", &[10, 2], wave(9, 2, 7));
    let y = b.node("MatMul", &[&h, &w2], &["y"]);
    b.output_f32(&y, &batch_dims(&[2]));
    finish(&b)
}

/// A freshly initialized Keras BatchNormalization as tf2onnx writes it: equal constants
/// merged, so one tensor of ones is the scale and the running variance and one of zeros
/// the bias and the running mean. Input `x` (`[batch, 3, 4, 4]`), output `y`
/// (`[batch, 5, 4, 4]`).
pub fn merged_bn_constants() -> Model {
    let mut b = GraphBuilder::new("merged_bn_constants");
    b.opset(13);
    let x = b.input_f32("x", &batch_dims(&[3, 4, 4]));
    let w = b.weight("conv.weight", &[6, 3, 3, 3], wave(2, 1, 7));
    let pads = [("pads", Attr::Ints(vec![1, 1, 1, 1]))];
    let h = b.node_with("Conv", &[&x, &w], &[], &pads);
    let ones = b.initializer("bn/ReadVariableOp:0", Tensor::new(vec![6], TensorData::F32(vec![1.0; 6])).unwrap());
    let zeros = b.initializer("bn/FusedBatchNormV3/ReadVariableOp:0", Tensor::new(vec![6], TensorData::F32(vec![0.0; 6])).unwrap());
    let h = b.node_with("BatchNormalization", &[&h, &ones, &zeros, &zeros, &ones], &[], &[("epsilon", Attr::Float(1e-3))]);
    let h = b.node("Relu", &[&h], &[]);
    let w2 = b.weight("head.weight", &[5, 6, 1, 1], wave(3, 2, 5));
    let y = b.node("Conv", &[&h, &w2], &["y"]);
    b.output_f32(&y, &batch_dims(&[5, 4, 4]));
    finish(&b)
}

/// A CNN and MLP as onnxruntime saves them optimized (`ORT_ENABLE_EXTENDED`): `FusedConv`
/// with `Relu`, with a residual `Z` and `LeakyRelu`, with `Clip` (an attribute before opset
/// 11, inputs after) and, without a bias, with `HardSigmoid`; `FusedGemm` with `Tanh` and
/// with `LeakyRelu`; `FusedMatMul` with `alpha` and `transB`, and with `transBatchA` and
/// `transA` on an operand whose rank the file does not declare (onnxruntime saves no
/// `value_info`). Input `x` (`[batch, 3, 6, 6]`); outputs `scores` (`[batch, 3, 3]`) and
/// `moved_back` (`[batch, 5, 4]`).
pub fn onnxruntime_saved(opset: i64) -> Model {
    let mut b = GraphBuilder::new(&format!("onnxruntime_saved_{opset}"));
    b.opset(opset);
    b.import_domain("com.microsoft", 1);
    let ms = "com.microsoft";
    let x = b.input_f32("x", &batch_dims(&[3, 6, 6]));
    let act = |name: &str| ("activation", Attr::Str(name.into()));
    let pads = || ("pads", Attr::Ints(vec![1, 1, 1, 1]));
    let w1 = b.weight("c1.weight", &[8, 3, 3, 3], wave(5, 1, 11));
    let b1 = b.weight("c1.bias", &[8], wave(3, 2, 7));
    let c1 = b.node_in_domain(ms, "FusedConv", &[&x, &w1, &b1], &["c1"], &[pads(), act("Relu")]);
    let w2 = b.weight("c2.weight", &[8, 8, 3, 3], wave(7, 3, 13));
    let b2 = b.weight("c2.bias", &[8], wave(2, 1, 5));
    let leaky = ("activation_params", Attr::Floats(vec![0.1]));
    let c2 = b.node_in_domain(ms, "FusedConv", &[&c1, &w2, &b2, &c1], &["c2"], &[pads(), act("LeakyRelu"), leaky]);
    let w3 = b.weight("c3.weight", &[6, 8, 1, 1], wave(3, 1, 7));
    let b3 = b.weight("c3.bias", &[6], wave(5, 3, 9));
    let clip = ("activation_params", Attr::Floats(vec![0.0, 0.3]));
    let c3 = b.node_in_domain(ms, "FusedConv", &[&c2, &w3, &b3], &["c3"], &[act("Clip"), clip]);
    let w4 = b.weight("c4.weight", &[6, 6, 1, 1], wave(5, 2, 11));
    let hard = ("activation_params", Attr::Floats(vec![0.3, 0.4]));
    let c4 = b.node_in_domain(ms, "FusedConv", &[&c3, &w4], &["c4"], &[act("HardSigmoid"), hard]);
    let pooled = b.node("GlobalAveragePool", &[&c4], &[]);
    let flat = b.node("Flatten", &[&pooled], &[]);
    let f1w = b.weight("fc1.weight", &[10, 6], wave(7, 2, 9));
    let f1b = b.weight("fc1.bias", &[10], wave(3, 1, 5));
    let f1 = b.node_in_domain(ms, "FusedGemm", &[&flat, &f1w, &f1b], &["fc1"], &[("transB", Attr::Int(1)), act("Tanh")]);
    let f2w = b.weight("fc2.weight", &[10, 12], wave(5, 4, 13));
    let f2b = b.weight("fc2.bias", &[12], wave(2, 3, 7));
    let f2 = b.node_in_domain(ms, "FusedGemm", &[&f1, &f2w, &f2b], &["fc2"], &[act("LeakyRelu"), ("activation_alpha", Attr::Float(0.2))]);
    let target = b.ints("rows", &[0, 3, 4]);
    let rows = b.node("Reshape", &[&f2, &target], &[]);
    let scores =
        b.node_in_domain(ms, "FusedMatMul", &[&rows, &rows], &["scores"], &[("transB", Attr::Int(1)), ("alpha", Attr::Float(0.5))]);
    let wb = b.weight("mix.weight", &[3, 4, 5], wave(3, 2, 11));
    let moved = b.node_in_domain(ms, "FusedMatMul", &[&rows, &wb], &["moved"], &[("transBatchA", Attr::Int(1))]);
    let wt = b.weight("back.weight", &[1, 3, 4], wave(7, 1, 9));
    let back =
        b.node_in_domain(ms, "FusedMatMul", &[&moved, &wt], &["moved_back"], &[("transA", Attr::Int(1)), ("transBatchA", Attr::Int(1))]);
    b.output_f32(&scores, &batch_dims(&[3, 3]));
    b.output_f32(&back, &batch_dims(&[5, 4]));
    finish(&b)
}

/// A three-layer MLP whose two hidden biases are one tensor of zeros, as exporters and
/// onnxruntime merge equal constants of a fresh model, and whose output bias is a
/// non-uniform tensor also added to the second hidden layer (weight tying, kept). Input
/// `x` (`[batch, 8]`), output `y` (`[batch, 16]`).
pub fn merged_uniform_biases() -> Model {
    let mut b = GraphBuilder::new("merged_uniform_biases");
    b.opset(13);
    let x = b.input_f32("x", &batch_dims(&[8]));
    let zeros = b.initializer("fc1.bias", Tensor::new(vec![16], TensorData::F32(vec![0.0; 16])).unwrap());
    let tied = b.weight("tied.bias", &[16], wave(3, 1, 7));
    let w1 = b.weight("fc1.weight", &[8, 16], wave(5, 1, 11));
    let h = b.node("MatMul", &[&x, &w1], &[]);
    let h = b.node("Add", &[&h, &zeros], &[]);
    let h = b.node("Relu", &[&h], &[]);
    let w2 = b.weight("fc2.weight", &[16, 16], wave(7, 2, 13));
    let h = b.node("MatMul", &[&h, &w2], &[]);
    let h = b.node("Add", &[&h, &zeros], &[]);
    let h = b.node("Add", &[&h, &tied], &[]);
    let h = b.node("Relu", &[&h], &[]);
    let w3 = b.weight("fc3.weight", &[16, 16], wave(3, 2, 7));
    let h = b.node("MatMul", &[&h, &w3], &[]);
    let y = b.node("Add", &[&h, &tied], &["y"]);
    b.output_f32(&y, &batch_dims(&[16]));
    finish(&b)
}

/// An MLP as the dynamo exporter writes it from a model left in training mode (`train`):
/// a `Dropout` whose `training_mode` is a true constant after the first layer, and the
/// inlined random mask `x * (Cast(RandomUniformLike(x) < 0.75) / 0.75)` after the second;
/// without `train`, the same MLP with no dropout (what the model computes in inference).
/// Input `x` (`[batch, 8]`), output `y` (`[batch, 4]`).
pub fn training_mode_dropouts(train: bool) -> Model {
    let mut b = GraphBuilder::new("training_mode_dropouts");
    b.opset(18);
    let x = b.input_f32("x", &batch_dims(&[8]));
    let w1 = b.weight("fc1.weight", &[8, 16], wave(5, 1, 11));
    let h = b.node("MatMul", &[&x, &w1], &[]);
    let mut h = b.node("Relu", &[&h], &[]);
    if train {
        let ratio = b.initializer("ratio", Tensor::new(vec![], TensorData::F32(vec![0.1])).unwrap());
        let on = b.initializer("training", Tensor::new(vec![], TensorData::Bool(vec![true])).unwrap());
        h = b.node("Dropout", &[&h, &ratio, &on], &[]);
    }
    let w2 = b.weight("fc2.weight", &[16, 12], wave(7, 2, 13));
    let h2 = b.node("MatMul", &[&h, &w2], &[]);
    let mut h2 = b.node("Relu", &[&h2], &[]);
    if train {
        let keep = b.initializer("keep", Tensor::new(vec![], TensorData::F32(vec![0.75])).unwrap());
        let r = b.node_with("RandomUniformLike", &[&h2], &["rands"], &[("high", Attr::Float(1.0)), ("low", Attr::Float(0.0))]);
        let kept = b.node("Less", &[&r, &keep], &[]);
        let mask = b.node_with("Cast", &[&kept], &[], &[("to", Attr::Int(1))]);
        let scaled = b.node("Div", &[&mask, &keep], &[]);
        h2 = b.node("Mul", &[&h2, &scaled], &[]);
    }
    let w3 = b.weight("fc3.weight", &[12, 4], wave(3, 2, 7));
    let y = b.node("MatMul", &[&h2, &w3], &["y"]);
    b.output_f32(&y, &batch_dims(&[4]));
    finish(&b)
}

/// The dynamo exporter's `as_strided` of a contiguous view after an average pool
/// (torchvision's ConvNeXt and Swin heads): `Gather(Reshape(pooled, [-1]), indices)` with
/// constant indices `0..8` shaped `[1, 8, 1, 1]`, in a file exported for a batch of 1
/// without dynamic axes. Input `x` (`[1, 3, 6, 6]`), output `y` (`[1, 5]`).
pub fn flattened_view_gather() -> Model {
    let mut b = GraphBuilder::new("flattened_view_gather");
    b.opset(18);
    let x = b.input_f32("x", &known_dims(&[1, 3, 6, 6]));
    let w = b.weight("conv.weight", &[8, 3, 3, 3], wave(5, 2, 11));
    let bias = b.weight("conv.bias", &[8], wave(3, 1, 7));
    let h = b.node_with("Conv", &[&x, &w, &bias], &[], &[("pads", Attr::Ints(vec![1, 1, 1, 1]))]);
    let h = b.node("Relu", &[&h], &[]);
    let axes = b.ints("axes", &[-1, -2]);
    let pooled = b.node_with("ReduceMean", &[&h, &axes], &[], &[("keepdims", Attr::Int(1))]);
    let flat_shape = b.ints("flat", &[-1]);
    let flat = b.node("Reshape", &[&pooled, &flat_shape], &[]);
    let idx = b.initializer("as_strided_indices", Tensor::new(vec![1, 8, 1, 1], TensorData::I64((0..8).collect())).unwrap());
    let view = b.node_with("Gather", &[&flat, &idx], &["as_strided"], &[("axis", Attr::Int(0))]);
    let target = b.ints("view_shape", &[1, 8]);
    let v = b.node_with("Reshape", &[&view, &target], &[], &[("allowzero", Attr::Int(1))]);
    let wf = b.weight("fc.weight", &[5, 8], wave(7, 3, 13));
    let y = b.node_with("Gemm", &[&v, &wf], &["y"], &[("transB", Attr::Int(1))]);
    b.output_f32(&y, &known_dims(&[1, 5]));
    finish(&b)
}

/// `F.interpolate(x, size=(12, 12))` as the dynamo exporter writes it in a file exported
/// for a batch of 1 without dynamic axes: a `Resize` whose sizes `[1, 8, 12, 12]` hold the
/// batch and the channel count. Input `x` (`[1, 3, 6, 6]`), output `y` (`[1, 4, 12, 12]`).
pub fn resize_full_sizes() -> Model {
    let mut b = GraphBuilder::new("resize_full_sizes");
    b.opset(18);
    let x = b.input_f32("x", &known_dims(&[1, 3, 6, 6]));
    let w = b.weight("conv.weight", &[8, 3, 3, 3], wave(5, 2, 11));
    let bias = b.weight("conv.bias", &[8], wave(3, 1, 7));
    let h = b.node_with("Conv", &[&x, &w, &bias], &[], &[("pads", Attr::Ints(vec![1, 1, 1, 1]))]);
    let h = b.node("Relu", &[&h], &[]);
    let sizes = b.ints("sizes", &[1, 8, 12, 12]);
    let up = b.node_with("Resize", &[&h, "", "", &sizes], &[], &[("mode", Attr::Str("linear".into()))]);
    let wh = b.weight("head.weight", &[4, 8, 1, 1], wave(7, 3, 13));
    let y = b.node("Conv", &[&up, &wh], &["y"]);
    b.output_f32(&y, &known_dims(&[1, 4, 12, 12]));
    finish(&b)
}

/// Swin V2's normalized attention as the dynamo exporter writes it for a batch of 1: rows
/// of a value whose first axis is the batch folded with the channels (`[8 * N, 36]`),
/// divided by their norms broadcast back by an `Expand` to the constant shape `[8, 36]`.
/// Input `x` (`[1, 3, 6, 6]`), output `y` (`[1, 8, 6, 6]`).
pub fn expand_folded_batch() -> Model {
    let mut b = GraphBuilder::new("expand_folded_batch");
    b.opset(18);
    let x = b.input_f32("x", &known_dims(&[1, 3, 6, 6]));
    let w = b.weight("conv.weight", &[8, 3, 3, 3], wave(5, 2, 11));
    let bias = b.weight("conv.bias", &[8], wave(3, 1, 7));
    let h = b.node_with("Conv", &[&x, &w, &bias], &[], &[("pads", Attr::Ints(vec![1, 1, 1, 1]))]);
    let rows_shape = b.ints("rows_shape", &[8, 36]);
    let rows = b.node("Reshape", &[&h, &rows_shape], &[]);
    let axes = b.ints("axes", &[1]);
    let norm = b.node_with("ReduceL2", &[&rows, &axes], &[], &[("keepdims", Attr::Int(1))]);
    let target = b.ints("expand_shape", &[8, 36]);
    let spread = b.node("Expand", &[&norm, &target], &[]);
    let unit = b.node("Div", &[&rows, &spread], &[]);
    let back = b.ints("back_shape", &[1, 8, 6, 6]);
    let y = b.node("Reshape", &[&unit, &back], &["y"]);
    b.output_f32(&y, &known_dims(&[1, 8, 6, 6]));
    finish(&b)
}

/// Sequence-first attention (`torch.nn.MultiheadAttention`, as torchvision's ViT uses it)
/// exported by dynamo for a batch of 1 without dynamic axes: the batch is axis 1 of
/// `[S, N, E]`, and the views hold it as an axis of its own (`[5, 1, 3, 8]`), as the outer
/// factor of the heads (`[5, 2, 4]`: `[S, N * H, D]`), as the inner factor of the
/// positions (`[5, 8]`: `[S * N, E]`) and of the rows split back (`[5, 1, 6]`). Input `x`
/// (`[1, 5, 8]`), output `y` (`[1, 5, 6]`).
pub fn sequence_first_attention() -> Model {
    let mut b = GraphBuilder::new("sequence_first_attention");
    b.opset(18);
    let x = b.input_f32("x", &known_dims(&[1, 5, 8]));
    let perm = || ("perm", Attr::Ints(vec![1, 0, 2]));
    let xs = b.node_with("Transpose", &[&x], &[], &[perm()]);
    let w_in = b.weight("in_proj.weight", &[8, 24], wave(5, 2, 11));
    let qkv = b.node("MatMul", &[&xs, &w_in], &[]);
    let packed = b.ints("packed", &[5, 1, 3, 8]);
    let r1 = b.node_with("Reshape", &[&qkv, &packed], &[], &[("allowzero", Attr::Int(1))]);
    let zero = b.initializer("zero", Tensor::new(vec![], TensorData::I64(vec![0])).unwrap());
    let q = b.node_with("Gather", &[&r1, &zero], &[], &[("axis", Attr::Int(2))]);
    let per_head = b.ints("per_head", &[5, 2, 4]);
    let heads = b.node_with("Reshape", &[&q, &per_head], &[], &[("allowzero", Attr::Int(1))]);
    let t = b.node_with("Transpose", &[&heads], &[], &[perm()]);
    let sm = b.node_with("Softmax", &[&t], &[], &[("axis", Attr::Int(-1))]);
    let back = b.node_with("Transpose", &[&sm], &[], &[perm()]);
    let rows = b.ints("rows", &[5, 8]);
    let merged = b.node_with("Reshape", &[&back, &rows], &[], &[("allowzero", Attr::Int(1))]);
    let w_out = b.weight("out_proj.weight", &[8, 6], wave(7, 3, 13));
    let out = b.node("MatMul", &[&merged, &w_out], &[]);
    let split_back = b.ints("split_back", &[5, 1, 6]);
    let r = b.node_with("Reshape", &[&out, &split_back], &[], &[("allowzero", Attr::Int(1))]);
    let y = b.node_with("Transpose", &[&r], &["y"], &[perm()]);
    b.output_f32(&y, &known_dims(&[1, 5, 6]));
    finish(&b)
}

/// The forms of [`opset23_attention`].
#[derive(Debug, Clone, Copy)]
pub enum Attention23 {
    /// 4-D operands, 4 heads each; per-head `RMSNormalization` of the queries and keys
    /// (Qwen3); `RotaryEmbedding` of half of each head (`rotary_embedding_dim`) at
    /// `position_ids`; a boolean mask with a row that sees no key.
    HeadsFirst,
    /// 3-D operands (`q_num_heads` 4, `kv_num_heads` 2: grouped-query attention);
    /// `RotaryEmbedding` of 3-D input (`num_heads`), interleaved, with gathered caches;
    /// causal, `softcap`, an explicit `scale` and an additive float mask.
    Packed,
    /// 4-D operands, 2 key/value heads for 4 query heads, a past of 5 positions computed
    /// from the input (the `present` outputs are graph outputs); causal over past and
    /// present with a boolean mask.
    WithPast,
}

/// A self-attention layer as the torch exporter writes it at opset 23: `x` (`[batch, 5,
/// 16]`) projected to queries (4 heads of 4) and keys and values (4 or 2 heads), the
/// queries and keys through `RotaryEmbedding`, then `Attention` (see [`Attention23`]) and an
/// output projection to `y` (`[batch, 5, 6]`).
pub fn opset23_attention(form: Attention23) -> Model {
    let mut b = GraphBuilder::new(&format!("opset23_attention_{form:?}"));
    b.opset(23);
    let x = b.input_f32("x", &batch_dims(&[5, 16]));
    let kv_heads: i64 = if matches!(form, Attention23::HeadsFirst) { 4 } else { 2 };
    let kv_width = kv_heads as usize * 4;
    let wq = b.weight("q.weight", &[16, 16], wave(7, 1, 17));
    let wk = b.weight("k.weight", &[16, kv_width], wave(5, 2, 13));
    let wv = b.weight("v.weight", &[16, kv_width], wave(3, 4, 11));
    let (q, k, v) = (b.node("MatMul", &[&x, &wq], &[]), b.node("MatMul", &[&x, &wk], &[]), b.node("MatMul", &[&x, &wv], &[]));
    // Rotary caches of 8 positions, 2 frequencies: cos/sin of position * frequency.
    let angle = |i: usize, f: fn(f32) -> f32| f((i / 2) as f32 * [1.0, 0.1][i % 2]);
    let cos = b.initializer("rope.cos", f32s(&[8, 2], |i| angle(i, f32::cos)));
    let sin = b.initializer("rope.sin", f32s(&[8, 2], |i| angle(i, f32::sin)));
    // `position_ids` (`[batch, 5]`): 0..5 in every row.
    {
        let (zero, one, five) = (
            b.initializer("zero", Tensor::new(vec![], TensorData::I64(vec![0])).unwrap()),
            b.initializer("one", Tensor::new(vec![], TensorData::I64(vec![1])).unwrap()),
            b.initializer("five", Tensor::new(vec![], TensorData::I64(vec![5])).unwrap()),
        );
        let r = b.node("Range", &[&zero, &five, &one], &[]);
        let axes = b.ints("axes0", &[0]);
        let row = b.node("Unsqueeze", &[&r, &axes], &[]);
        let bs = b.node_with("Shape", &[&x], &[], &[("start", Attr::Int(0)), ("end", Attr::Int(2))]);
        b.node("Expand", &[&row, &bs], &["position_ids"]);
    }
    let heads_first = |b: &mut GraphBuilder, t: &str, heads: i64| {
        let split = b.ints(&format!("{t}_heads"), &[0, 0, heads, 4]);
        let r = b.node("Reshape", &[t, &split], &[]);
        b.node_with("Transpose", &[&r], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))])
    };
    let mut attrs: Vec<(&str, Attr)> = Vec::new();
    let (q, k, v, mask, past) = match form {
        Attention23::HeadsFirst | Attention23::WithPast => {
            let (mut q, mut k, v) = (heads_first(&mut b, &q, 4), heads_first(&mut b, &k, kv_heads), heads_first(&mut b, &v, kv_heads));
            if matches!(form, Attention23::HeadsFirst) {
                // Qwen3's per-head norms of the queries and keys, over each head's positions.
                let qn = b.weight("q_norm.weight", &[4], |i| 1.0 + i as f32 / 4.0);
                let kn = b.weight("k_norm.weight", &[4], |i| 1.0 - i as f32 / 8.0);
                q = b.node_with("RMSNormalization", &[&q, &qn], &[], &[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(1e-6))]);
                k = b.node_with("RMSNormalization", &[&k, &kn], &[], &[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(1e-6))]);
            }
            // Half of each head turns: the caches' first frequency.
            let (z, one, axis) = (b.ints("first_z", &[0]), b.ints("first_one", &[1]), b.ints("first_axis", &[-1]));
            let (c, s) = (b.node("Slice", &[&cos, &z, &one, &axis], &[]), b.node("Slice", &[&sin, &z, &one, &axis], &[]));
            let rope = |b: &mut GraphBuilder, t: &str| {
                b.node_with("RotaryEmbedding", &[t, &c, &s, "position_ids"], &[], &[("rotary_embedding_dim", Attr::Int(2))])
            };
            let (q, k) = (rope(&mut b, &q), rope(&mut b, &k));
            if matches!(form, Attention23::HeadsFirst) {
                // Row 2 sees no key: its output is zeros.
                let seen = Tensor::new(vec![5, 5], TensorData::Bool((0..25).map(|i| i / 5 != 2 && (i * 7) % 3 != 0).collect())).unwrap();
                let mask = b.initializer("mask", seen);
                (q, k, v, mask, None)
            } else {
                let wp = b.weight("past.weight", &[16, 2 * kv_width], wave(3, 1, 7));
                let p = b.node("MatMul", &[&x, &wp], &[]);
                let (pk, pv) = (format!("{p}_k"), format!("{p}_v"));
                let sizes = b.ints("past_split", &[kv_width as i64, kv_width as i64]);
                b.node_with("Split", &[&p, &sizes], &[&pk, &pv], &[("axis", Attr::Int(-1))]);
                let (pk, pv) = (heads_first(&mut b, &pk, kv_heads), heads_first(&mut b, &pv, kv_heads));
                let seen = Tensor::new(vec![5, 10], TensorData::Bool((0..50).map(|i| (i * 5) % 7 != 0).collect())).unwrap();
                let mask = b.initializer("mask", seen);
                attrs.push(("is_causal", Attr::Int(1)));
                (q, k, v, mask, Some((pk, pv)))
            }
        }
        Attention23::Packed => {
            let gather = |b: &mut GraphBuilder, c: &str| b.node_with("Gather", &[c, "position_ids"], &[], &[("axis", Attr::Int(0))]);
            let (c3, s3) = (gather(&mut b, &cos), gather(&mut b, &sin));
            let rope = |b: &mut GraphBuilder, t: &str, heads: i64| {
                b.node_with("RotaryEmbedding", &[t, &c3, &s3], &[], &[("num_heads", Attr::Int(heads)), ("interleaved", Attr::Int(1))])
            };
            let (q, k) = (rope(&mut b, &q, 4), rope(&mut b, &k, kv_heads));
            let bias = b.weight("mask", &[5, 5], wave(3, 1, 5));
            attrs.extend([
                ("q_num_heads", Attr::Int(4)),
                ("kv_num_heads", Attr::Int(kv_heads)),
                ("is_causal", Attr::Int(1)),
                ("softcap", Attr::Float(5.0)),
                ("scale", Attr::Float(0.3)),
            ]);
            (q, k, v, bias, None)
        }
    };
    let packed = matches!(form, Attention23::Packed);
    let mut inputs = vec![q.as_str(), k.as_str(), v.as_str(), mask.as_str()];
    let mut outputs = vec!["attended"];
    if let Some((pk, pv)) = &past {
        inputs.extend([pk.as_str(), pv.as_str()]);
        outputs.extend(["present_key", "present_value"]);
    }
    let a = b.node_with("Attention", &inputs, &outputs, &attrs);
    let merged = if packed {
        a
    } else {
        let t = b.node_with("Transpose", &[&a], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
        let rows = b.ints("rows", &[0, 0, 16]);
        b.node("Reshape", &[&t, &rows], &[])
    };
    let wo = b.weight("o.weight", &[16, 6], wave(5, 3, 9));
    let y = b.node("MatMul", &[&merged, &wo], &["y"]);
    b.output_f32(&y, &batch_dims(&[5, 6]));
    if past.is_some() {
        b.output_f32("present_key", &batch_dims(&[2, 10, 4]));
        b.output_f32("present_value", &batch_dims(&[2, 10, 4]));
    }
    finish(&b)
}

/// A model calling functions of its own, as the TorchScript exporter writes
/// `export_modules_as_functions`: `Block(x, w1, b1, w2)` of domain `my.modules` is
/// `LeakyRelu(x @ w1 + b1, alpha) @ w2`, its `alpha` a reference to the call's attribute
/// (default 0.1 in the function). Two calls (one with `alpha` 0.2, one taking the default),
/// then a classifier. Input `x` (`[batch, 8]`), output `y` (`[batch, 3]`); 4 prunable
/// groups (each block's hidden and output widths).
pub fn local_functions() -> Model {
    use oto_onnx::proto::attribute_proto::AttributeType;
    use oto_onnx::proto::{AttributeProto, FunctionProto, OperatorSetIdProto};
    let mut body = GraphBuilder::new("Block");
    let h = body.node("MatMul", &["x", "w1"], &["h"]);
    let hb = body.node("Add", &[&h, "b1"], &["hb"]);
    body.node("LeakyRelu", &[&hb], &["a"]);
    body.node("MatMul", &["a", "w2"], &["out"]);
    let mut nodes = body.proto().graph.unwrap().node;
    nodes[2].attribute.push(AttributeProto {
        name: Some("alpha".into()),
        ref_attr_name: Some("alpha".into()),
        r#type: Some(AttributeType::Float as i32),
        ..Default::default()
    });
    let block = FunctionProto {
        name: Some("Block".into()),
        domain: Some("my.modules".into()),
        input: ["x", "w1", "b1", "w2"].map(String::from).to_vec(),
        output: vec!["out".into()],
        attribute_proto: vec![AttributeProto {
            name: Some("alpha".into()),
            f: Some(0.1),
            r#type: Some(AttributeType::Float as i32),
            ..Default::default()
        }],
        node: nodes,
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        ..Default::default()
    };
    let mut b = GraphBuilder::new("local_functions");
    b.opset(17);
    b.import_domain("my.modules", 1);
    let x = b.input_f32("x", &batch_dims(&[8]));
    let mut h = x;
    for (k, alpha) in [Some(0.2f32), None].into_iter().enumerate() {
        let w1 = b.weight(&format!("block{k}.fc1.weight"), &[8, 12], wave(5 + k, 1, 11));
        let b1 = b.weight(&format!("block{k}.fc1.bias"), &[12], wave(3, 2 + k, 7));
        let w2 = b.weight(&format!("block{k}.fc2.weight"), &[12, 8], wave(7, 3, 13));
        let attrs: Vec<(&str, Attr)> = alpha.map(|a| ("alpha", Attr::Float(a))).into_iter().collect();
        h = b.node_in_domain("my.modules", "Block", &[&h, &w1, &b1, &w2], &[], &attrs);
    }
    let wc = b.weight("head.weight", &[8, 3], wave(5, 1, 9));
    let y = b.node("MatMul", &[&h, &wc], &["y"]);
    b.output_f32(&y, &batch_dims(&[3]));
    let mut m = finish(&b);
    m.proto.functions.push(block);
    Model::from_proto(m.proto, "case.onnx", None).unwrap()
}

/// Two convolutions without bias as the dynamo exporter writes them with `optimize=False`:
/// each bias is `Expand(CastLike(0, x), Shape(w)[0:1])`, a zero computed at run time, and
/// each activation goes through a `CastLike` to the input's type; the classifier's bias is
/// a zero weight.
/// Input `x` (`[batch, 3, 6, 6]`), output `y` (`[batch, 4]`); 2 prunable groups (the first
/// convolution's channels and the second's).
pub fn unoptimized_dynamo_convs() -> Model {
    let mut b = GraphBuilder::new("unoptimized_dynamo_convs");
    b.opset(18);
    let x = b.input_f32("x", &batch_dims(&[3, 6, 6]));
    let mut h = x.clone();
    for (k, (cin, cout)) in [(3usize, 6usize), (6, 5)].into_iter().enumerate() {
        let w = b.weight(&format!("conv{k}.weight"), &[cout, cin, 3, 3], wave(5 + k, 1, 11));
        let zero = constant(&mut b, &format!("zero{k}"), Tensor { shape: vec![], data: TensorData::F32(vec![0.0]) });
        let typed = b.node("CastLike", &[&zero, &h], &[]);
        let out = b.node_with("Shape", &[&w], &[], &[("start", Attr::Int(0)), ("end", Attr::Int(1))]);
        let bias = b.node("Expand", &[&typed, &out], &[]);
        let c = b.node_with("Conv", &[&h, &w, &bias], &[], &[("pads", Attr::Ints(vec![1, 1, 1, 1]))]);
        let r = b.node("Relu", &[&c], &[]);
        // The exporter's type promotion: a CastLike of the activation itself.
        h = b.node("CastLike", &[&r, &x], &[]);
    }
    let pooled = b.node("GlobalAveragePool", &[&h], &[]);
    let flat = b.node("Flatten", &[&pooled], &[]);
    let wc = b.weight("fc.weight", &[4, 5], wave(3, 1, 7));
    // A zero bias the file holds as a weight (a fresh model's): the model's, kept.
    let bc = b.weight("fc.bias", &[4], |_| 0.0);
    let y = b.node_with("Gemm", &[&flat, &wc, &bc], &["y"], &[("transB", Attr::Int(1))]);
    b.output_f32(&y, &batch_dims(&[4]));
    finish(&b)
}

/// `torch.split` as the dynamo exporter writes it without its optimizer: a 12-wide MatMul
/// through `SplitToSequence` (one size, 4, repeated) and a `SequenceAt` per part (the
/// last by index -1, the first read twice, once as -3), each part through a layer of
/// its own, summed. Input `x` (`[batch, 8]`), output `y` (`[batch, 6]`); 3 prunable groups
/// (the parts).
pub fn sequence_split(opset: i64) -> Model {
    let mut b = GraphBuilder::new(&format!("sequence_split_{opset}"));
    b.opset(opset);
    let x = b.input_f32("x", &batch_dims(&[8]));
    let w = b.weight("fc.weight", &[8, 12], wave(3, 1, 7));
    let h = b.node("MatMul", &[&x, &w], &[]);
    let size = b.initializer("size", Tensor::new(vec![], TensorData::I64(vec![4])).unwrap());
    let seq = b.node_with("SplitToSequence", &[&h, &size], &["parts"], &[("axis", Attr::Int(1))]);
    let mut terms = Vec::new();
    for (k, index) in [0i64, 1, -1, -3].into_iter().enumerate() {
        let i = b.initializer(&format!("index{k}"), Tensor::new(vec![], TensorData::I64(vec![index])).unwrap());
        let part = b.node("SequenceAt", &[&seq, &i], &[]);
        let wk = b.weight(&format!("part{k}.weight"), &[4, 6], wave(5 + k, 2, 11));
        terms.push(b.node("MatMul", &[&part, &wk], &[]));
    }
    let last = terms.len() - 1;
    let mut y = terms[0].clone();
    for (k, t) in terms.iter().enumerate().skip(1) {
        let out: &[&str] = if k == last { &["y"] } else { &[] };
        y = b.node("Add", &[&y, t], out);
    }
    b.output_f32(&y, &batch_dims(&[6]));
    finish(&b)
}

/// Swin V2's query/key/value bias as the dynamo exporter writes it without its optimizer:
/// `Concat(q_bias, Expand(CastLike(0, x), [4]), v_bias)`, the key's part a constant zero,
/// added to a 12-wide projection. Input `x` (`[batch, 8]`), output `y` (`[batch, 12]`).
pub fn constant_zero_part() -> Model {
    let mut b = GraphBuilder::new("constant_zero_part");
    b.opset(18);
    let x = b.input_f32("x", &batch_dims(&[8]));
    let w = b.weight("qkv.weight", &[8, 12], wave(3, 1, 7));
    let (q, v) = (b.weight("q_bias", &[4], wave(5, 1, 9)), b.weight("v_bias", &[4], wave(7, 2, 9)));
    let zero = constant(&mut b, "zero", Tensor { shape: vec![], data: TensorData::F32(vec![0.0]) });
    let typed = b.node("CastLike", &[&zero, &x], &[]);
    let four = b.ints("four", &[4]);
    let k = b.node("Expand", &[&typed, &four], &[]);
    let bias = b.node_with("Concat", &[&q, &k, &v], &[], &[("axis", Attr::Int(0))]);
    let h = b.node("MatMul", &[&x, &w], &[]);
    let y = b.node("Add", &[&h, &bias], &["y"]);
    b.output_f32(&y, &batch_dims(&[12]));
    finish(&b)
}

/// A function calling another (`Outer(x, w) = Relu(Inner(x, w))`, `Inner(x, w) = x @ w`,
/// both of domain `my.modules`), called once. Input `x` (`[batch, 4]`), output `y`
/// (`[batch, 2]`).
pub fn nested_functions() -> Model {
    use oto_onnx::proto::{FunctionProto, OperatorSetIdProto};
    let body = |name: &str, f: &dyn Fn(&mut GraphBuilder)| {
        let mut b = GraphBuilder::new(name);
        f(&mut b);
        FunctionProto {
            name: Some(name.into()),
            domain: Some("my.modules".into()),
            input: vec!["x".into(), "w".into()],
            output: vec!["out".into()],
            node: b.proto().graph.unwrap().node,
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
            ..Default::default()
        }
    };
    let inner = body("Inner", &|b| {
        b.node("MatMul", &["x", "w"], &["out"]);
    });
    let mut outer = body("Outer", &|b| {
        let h = b.node_in_domain("my.modules", "Inner", &["x", "w"], &["h"], &[]);
        b.node("Relu", &[&h], &["out"]);
    });
    outer.opset_import.push(OperatorSetIdProto { domain: Some("my.modules".into()), version: Some(1) });
    let mut b = GraphBuilder::new("nested_functions");
    b.opset(17);
    b.import_domain("my.modules", 1);
    let x = b.input_f32("x", &batch_dims(&[4]));
    let w = b.weight("fc1.weight", &[4, 6], wave(5, 1, 11));
    let h = b.node_in_domain("my.modules", "Outer", &[&x, &w], &[], &[]);
    let wc = b.weight("head.weight", &[6, 2], wave(3, 2, 7));
    let y = b.node("MatMul", &[&h, &wc], &["y"]);
    b.output_f32(&y, &batch_dims(&[2]));
    let mut m = finish(&b);
    m.proto.functions.extend([outer, inner]);
    Model::from_proto(m.proto, "case.onnx", None).unwrap()
}

/// `ReduceL2` of `v` over `axes`, kept: in an attribute before opset 18, as input 1 from it.
fn l2_norm(b: &mut GraphBuilder, opset: i64, v: &str, axes: &[i64], name: &str) -> String {
    if opset >= 18 {
        let axes = b.ints(&format!("{name}.axes"), axes);
        b.node_with("ReduceL2", &[v, &axes], &[], &[("keepdims", Attr::Int(1))])
    } else {
        b.node_with("ReduceL2", &[v], &[], &[("axes", Attr::Ints(axes.to_vec())), ("keepdims", Attr::Int(1))])
    }
}

/// Weight normalization as the exporters write `weight_norm` (`w = g * v / ||v||`):
/// `conv0` as HiFi-GAN's (`dim=0`: one norm per output channel, `g` `[6, 1, 1]`),
/// `conv1` as wav2vec2's positional convolution (`dim=2`: one norm per kernel tap over
/// every channel, `g` `[1, 1, 3]`, two groups, residual), then a plain 1x1 convolution
/// `head`. The classifier's `g` is also added to its output, so its computation stays
/// (folding it would untie `fc.g`). Input `x` (`[batch, 4, 10]`), output `y`
/// (`[batch, 4]`); 1 prunable group (the residual width, in whole groups of `conv1`;
/// `head`'s channels reach the classifier, whose weight is computed).
pub fn weight_normalized(opset: i64) -> Model {
    let mut b = GraphBuilder::new("weight_normalized");
    b.opset(opset);
    let x = b.input_f32("x", &batch_dims(&[4, 10]));
    let v0 = b.weight("conv0.v", &[6, 4, 3], wave(7, 2, 13));
    let g0 = b.weight("conv0.g", &[6, 1, 1], |i| 0.5 + 0.25 * i as f32);
    let n0 = l2_norm(&mut b, opset, &v0, &[1, 2], "conv0");
    let s0 = b.node("Div", &[&g0, &n0], &[]);
    let w0 = b.node("Mul", &[&v0, &s0], &[]);
    let b0 = b.weight("conv0.bias", &[6], wave(3, 1, 7));
    let h = b.node_with("Conv", &[&x, &w0, &b0], &[], &[("pads", Attr::Ints(vec![1, 1]))]);
    let h = b.node("Relu", &[&h], &[]);
    let v1 = b.weight("conv1.v", &[6, 3, 3], wave(5, 4, 11));
    let g1 = b.weight("conv1.g", &[1, 1, 3], |i| 1.0 + 0.5 * i as f32);
    let n1 = l2_norm(&mut b, opset, &v1, &[0, 1], "conv1");
    let d1 = b.node("Div", &[&v1, &n1], &[]);
    let w1 = b.node("Mul", &[&d1, &g1], &[]);
    let b1 = b.weight("conv1.bias", &[6], wave(2, 3, 5));
    let c1 = b.node_with("Conv", &[&h, &w1, &b1], &[], &[("pads", Attr::Ints(vec![1, 1])), ("group", Attr::Int(2))]);
    let h = b.node("Add", &[&h, &c1], &[]);
    let w3 = b.weight("head.weight", &[6, 6, 1], wave(4, 1, 9));
    let h = b.node("Conv", &[&h, &w3], &[]);
    let pooled = b.node("GlobalAveragePool", &[&h], &[]);
    let pooled = b.node("Flatten", &[&pooled], &[]);
    let v2 = b.weight("fc.v", &[4, 6], wave(3, 2, 7));
    let g2 = b.weight("fc.g", &[4, 1], |i| 0.75 + 0.25 * i as f32);
    let n2 = l2_norm(&mut b, opset, &v2, &[1], "fc");
    let d2 = b.node("Div", &[&v2, &n2], &[]);
    let w2 = b.node("Mul", &[&d2, &g2], &[]);
    let logits = b.node_with("Gemm", &[&pooled, &w2], &[], &[("transB", Attr::Int(1))]);
    let shift = b.node_with("Flatten", &[&g2], &[], &[("axis", Attr::Int(0))]);
    let y = b.node("Add", &[&logits, &shift], &["y"]);
    b.output_f32(&y, &batch_dims(&[4]));
    finish(&b)
}

/// Weight standardization as BiT's convolutions are exported: each weight reshaped to
/// `[1, out, in * k * k]`, normalized per output channel (`conv0`: a training-mode
/// `BatchNormalization` whose running statistics nothing reads, as the TorchScript
/// exporter writes `F.batch_norm(..., training=True)`; `conv1`: an
/// `InstanceNormalization`), reshaped back. Input `x` (`[batch, 3, 6, 6]`), output `y`
/// (`[batch, 5, 6, 6]`); 1 prunable group (`conv0`'s channels).
pub fn weight_standardized() -> Model {
    let mut b = GraphBuilder::new("weight_standardized");
    b.opset(15);
    let x = b.input_f32("x", &batch_dims(&[3, 6, 6]));
    let mut h = x.clone();
    for (k, (cin, cout, size)) in [(3usize, 4usize, 3usize), (4, 5, 1)].into_iter().enumerate() {
        let name = format!("conv{k}");
        let raw = b.weight(&format!("{name}.weight"), &[cout, cin, size, size], wave(5 + 2 * k, 3, 13));
        let rows = b.ints(&format!("{name}.rows"), &[1, cout as i64, -1]);
        let r = b.node("Reshape", &[&raw, &rows], &[]);
        let (ones, zeros) = (b.weight(&format!("{name}.ones"), &[cout], |_| 1.0), b.weight(&format!("{name}.zeros"), &[cout], |_| 0.0));
        let n = if k == 0 {
            let outs = [format!("{name}.standardized"), format!("{name}.running_mean"), format!("{name}.running_var")];
            let outs: Vec<&str> = outs.iter().map(String::as_str).collect();
            let eps = ("epsilon", Attr::Float(1e-8));
            b.node_with("BatchNormalization", &[&r, &ones, &zeros, &zeros, &ones], &outs, &[eps, ("training_mode", Attr::Int(1))])
        } else {
            b.node_with("InstanceNormalization", &[&r, &ones, &zeros], &[], &[("epsilon", Attr::Float(1e-8))])
        };
        let back = b.ints(&format!("{name}.back"), &[cout as i64, cin as i64, size as i64, size as i64]);
        let w = b.node("Reshape", &[&n, &back], &[]);
        let pad = (size / 2) as i64;
        h = b.node_with("Conv", &[&h, &w], &[], &[("pads", Attr::Ints(vec![pad; 4]))]);
        if k == 0 {
            h = b.node("Relu", &[&h], &[]);
        }
    }
    let y = b.node("Identity", &[&h], &["y"]);
    b.output_f32(&y, &batch_dims(&[5, 6, 6]));
    finish(&b)
}

/// A decoder's cross-attention with the cache, as Optimum's `decoder_with_past_model.onnx`
/// writes it (Whisper, BART, Marian): the encoder's keys and values are graph inputs
/// (`encoder_key`, `encoder_value`: `[batch, 2, seq, 4]`), the keys transposed and scaled,
/// the values read as they are by the product with the probabilities; the keys' shape is
/// read too (its element count divides the output, so a shape read of fewer heads would
/// show). `folded`: as older exports and TrOCR write it, the batch and the heads merged
/// (`[batch * 2, seq, 4]`, the count computed from the input's batch) before the products,
/// and split again after; the folded keys' length is read too (dividing the queries). Input `x` (`[batch, 3, 8]`), output `y` (`[batch, 3, 8]`). The
/// heads are one prunable group.
pub fn cross_attention_with_past(folded: bool) -> Model {
    let mut b = GraphBuilder::new("cross_attention_with_past");
    b.opset(13);
    let x = b.input_f32("x", &batch_dims(&[3, 8]));
    let past = [Dim::sym("batch"), Dim::Known(2), Dim::sym("seq"), Dim::Known(4)];
    let key = b.input_f32("encoder_key", &past);
    let value = b.input_f32("encoder_value", &past);
    let wq = b.weight("q.weight", &[8, 8], wave(3, 1, 7));
    let bq = b.weight("q.bias", &[8], wave(5, 2, 9));
    let q = b.node("MatMul", &[&x, &wq], &[]);
    let q = b.node("Add", &[&q, &bq], &[]);
    let heads = b.ints("heads", &[-1, 3, 2, 4]);
    let q = b.node("Reshape", &[&q, &heads], &[]);
    let mut q = b.node_with("Transpose", &[&q], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
    let (mut key, mut value) = (key, value);
    // `[batch * heads, -1, 4]`, the batch read from `x`.
    let shape_x = b.node("Shape", &[&x], &[]);
    let first = b.ints("first", &[0]);
    let batch = b.node("Gather", &[&shape_x, &first], &[]);
    let (head_count, minus_one, four, three) =
        (b.ints("head_count", &[2]), b.ints("minus_one", &[-1]), b.ints("four", &[4]), b.ints("three", &[3]));
    if folded {
        let merged = b.node("Mul", &[&batch, &head_count], &[]);
        let fold = b.node_with("Concat", &[&merged, &minus_one, &four], &[], &[("axis", Attr::Int(0))]);
        q = b.node("Reshape", &[&q, &fold], &[]);
        key = b.node("Reshape", &[&key, &fold], &[]);
        value = b.node("Reshape", &[&value, &fold], &[]);
        // The folded keys' length read back (BART's mask), beside the product.
        let length_at = b.ints("length_at", &[1]);
        let folded_shape = b.node("Shape", &[&key], &[]);
        let length = b.node("Gather", &[&folded_shape, &length_at], &[]);
        let length = b.node_with("Cast", &[&length], &[], &[("to", Attr::Int(1))]);
        q = b.node("Div", &[&q, &length], &[]);
    }
    let perm = if folded { vec![0, 2, 1] } else { vec![0, 1, 3, 2] };
    let kt = b.node_with("Transpose", &[&key], &[], &[("perm", Attr::Ints(perm))]);
    let scale = b.initializer("scale", Tensor { shape: vec![], data: TensorData::F32(vec![0.5]) });
    let kt = b.node("Mul", &[&kt, &scale], &[]);
    let scores = b.node("MatMul", &[&q, &kt], &[]);
    let probs = b.node_with("Softmax", &[&scores], &[], &[("axis", Attr::Int(-1))]);
    let mut o = b.node("MatMul", &[&probs, &value], &[]);
    if folded {
        let heads_again = b.ints("heads_again", &[2]);
        let unfold = b.node_with("Concat", &[&batch, &heads_again, &three, &four], &[], &[("axis", Attr::Int(0))]);
        o = b.node("Reshape", &[&o, &unfold], &[]);
    }
    let o = b.node_with("Transpose", &[&o], &[], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
    let flat = b.ints("flat", &[-1, 3, 8]);
    let o = b.node("Reshape", &[&o, &flat], &[]);
    let wo = b.weight("o.weight", &[8, 8], wave(7, 3, 11));
    let bo = b.weight("o.bias", &[8], wave(2, 1, 5));
    let y = b.node("MatMul", &[&o, &wo], &[]);
    let y = b.node("Add", &[&y, &bo], &[]);
    let shape = b.node("Shape", &["encoder_key"], &[]);
    let count = b.node_with("ReduceProd", &[&shape], &[], &[("keepdims", Attr::Int(0))]);
    let count = b.node_with("Cast", &[&count], &[], &[("to", Attr::Int(1))]);
    let y = b.node("Div", &[&y, &count], &["y"]);
    b.output_f32(&y, &batch_dims(&[3, 8]));
    finish(&b)
}
