//! Position tables laid out at run time before they meet the residual width, as the
//! TorchScript and dynamo exporters write DINOv2, YOLOS and ViT with
//! `interpolate_pos_encoding`: the patch table reshaped to its grid, moved channels
//! first, resized (bicubic) to the image's grid, moved back, flattened and concatenated
//! with the class token's entry; YOLOS's mid-layer tables resized as a batch, one picked
//! per layer by a `Gather`. The width is one prunable group with the tables' channel
//! axes in it, and removing its elements is exact in onnxruntime. A table also read
//! whole elsewhere stays whole: the width then holds its values where removed, and the
//! weights reading the width are zeroed with it. A batch-1 file with its class token
//! concatenated as a constant row (the dynamo exporter) gets the batch and the token
//! is cut with the width.

mod common;
use common::*;
use oto_construct::{construct, zero_producers};
use oto_graph::{analyze, Analysis, AnalyzeOptions, Role};
use oto_onnx::builder::{batch_dims, known_dims, Attr, GraphBuilder};
use oto_onnx::Model;
use oto_testkit::{deviation, run_ort, SplitMix64};

const WIDTH: usize = 8;

/// How the test model is written.
#[derive(Clone, Copy, Debug)]
struct Form {
    /// A static batch of 1 and the class token a constant row of the `Concat`.
    batch_one: bool,
    /// YOLOS's mid-layer tables, added after the block.
    mid: bool,
    /// The laid-out position table is also read whole (a mean of it scales the output).
    read_whole: bool,
}

/// `x [B, 3, 8, 8]` -> patches (2x2 conv, 8 channels) -> `[B, 16, 8]`, a class token
/// prepended, plus the position table interpolated from a 2x2 grid to 4x4 (sizes from
/// the input's shape); `h + fc2(relu(fc1(h)))` (12 hidden); optionally plus the second
/// layer's mid table; a head `[8 -> 6]`, ReLU, the mean over the tokens.
fn model(form: Form) -> Model {
    let mut b = GraphBuilder::new("laid_out_tables");
    b.opset(17);
    let x = if form.batch_one { b.input_f32("x", &known_dims(&[1, 3, 8, 8])) } else { b.input_f32("x", &batch_dims(&[3, 8, 8])) };
    let mut weight = weights();
    let w = weight(&mut b, "patch.weight", &[WIDTH, 3, 2, 2]);
    let bias = weight(&mut b, "patch.bias", &[WIDTH]);
    let p = b.node_with("Conv", &[&x, &w, &bias], &[], &[("strides", Attr::Ints(vec![2, 2]))]);
    let flat = b.ints("flat", &[0, 0, -1]);
    let p = b.node("Reshape", &[&p, &flat], &[]);
    let p = b.node_with("Transpose", &[&p], &[], &[("perm", Attr::Ints(vec![0, 2, 1]))]);
    let cls = weight(&mut b, "cls_token", &[1, 1, WIDTH]);
    let cls = if form.batch_one {
        cls
    } else {
        let shape = b.node("Shape", &[&x], &[]);
        let (zero, one) = (b.ints("zero", &[0]), b.ints("ones", &[1, 1]));
        let batch = b.node_with("Gather", &[&shape, &zero], &[], &[("axis", Attr::Int(0))]);
        let to = b.node_with("Concat", &[&batch, &one], &[], &[("axis", Attr::Int(0))]);
        b.node("Expand", &[&cls, &to], &[])
    };
    let tokens = b.node_with("Concat", &[&cls, &p], &["tokens"], &[("axis", Attr::Int(1))]);
    // The image's grid (4x4 here) and the width, read from shapes at run time.
    let xs = b.node("Shape", &[&x], &[]);
    let (hw_from, hw_to) = (b.ints("hw_from", &[2]), b.ints("hw_to", &[4]));
    let hw = b.node("Slice", &[&xs, &hw_from, &hw_to], &[]);
    let two = b.ints("two", &[2]);
    let grid = b.node("Div", &[&hw, &two], &["grid"]);
    let ts = b.node("Shape", &[&tokens], &[]);
    let width_at = b.ints("width_at", &[2]);
    let width = b.node_with("Gather", &[&ts, &width_at], &["width"], &[("axis", Attr::Int(0))]);
    // Interpolated positions: [1, 4, W] -> [1, 2, 2, W] -> [1, W, 2, 2] -> Resize -> [1, W, 4, 4]
    // -> [1, 4, 4, W] -> [1, 16, W], after the class token's entry.
    let patch_pos = weight(&mut b, "patch_pos", &[1, 4, WIDTH]);
    let lead = b.ints("grid_lead", &[1, 2, 2]);
    let to_grid = b.node_with("Concat", &[&lead, &width], &[], &[("axis", Attr::Int(0))]);
    let g = b.node("Reshape", &[&patch_pos, &to_grid], &[]);
    let g = b.node_with("Transpose", &[&g], &[], &[("perm", Attr::Ints(vec![0, 3, 1, 2]))]);
    let gs = b.node("Shape", &[&g], &[]);
    let (nc_from, nc_to) = (b.ints("nc_from", &[0]), b.ints("nc_to", &[2]));
    let nc = b.node("Slice", &[&gs, &nc_from, &nc_to], &[]);
    let sizes = b.node_with("Concat", &[&nc, &grid], &[], &[("axis", Attr::Int(0))]);
    let cubic = [("mode", Attr::Str("cubic".into()))];
    let g = b.node_with("Resize", &[&g, "", "", &sizes], &[], &cubic);
    let g = b.node_with("Transpose", &[&g], &[], &[("perm", Attr::Ints(vec![0, 2, 3, 1]))]);
    let rows = b.ints("rows_lead", &[1, -1]);
    let to_rows = b.node_with("Concat", &[&rows, &width], &[], &[("axis", Attr::Int(0))]);
    let g = b.node("Reshape", &[&g, &to_rows], &[]);
    let class_pos = weight(&mut b, "class_pos", &[1, 1, WIDTH]);
    let pos = b.node_with("Concat", &[&class_pos, &g], &["pos"], &[("axis", Attr::Int(1))]);
    let mut h = b.node("Add", &[&tokens, &pos], &[]);
    let w1 = weight(&mut b, "fc1.weight", &[WIDTH, 12]);
    let b1 = weight(&mut b, "fc1.bias", &[12]);
    let w2 = weight(&mut b, "fc2.weight", &[12, WIDTH]);
    let b2 = weight(&mut b, "fc2.bias", &[WIDTH]);
    let f = b.node("MatMul", &[&h, &w1], &[]);
    let f = b.node("Add", &[&f, &b1], &[]);
    let f = b.node("Relu", &[&f], &[]);
    let f = b.node("MatMul", &[&f, &w2], &[]);
    let f = b.node("Add", &[&f, &b2], &[]);
    h = b.node("Add", &[&h, &f], &[]);
    if form.mid {
        // Two layers' tables, channels first as a batch of grids: [2, W, 2, 2] -> Resize
        // (sizes [2, W] constant, then the grid) -> [2, W, 16] -> [2, 16, W], the class
        // entries [2, 1, W] before them, the second layer's picked.
        let mid = weight(&mut b, "mid_pos", &[2, WIDTH, 2, 2]);
        let lead = b.ints("mid_lead", &[2, WIDTH as i64]);
        let sizes = b.node_with("Concat", &[&lead, &grid], &[], &[("axis", Attr::Int(0))]);
        let m = b.node_with("Resize", &[&mid, "", "", &sizes], &[], &cubic);
        let m = b.node("Reshape", &[&m, &flat], &[]);
        let m = b.node_with("Transpose", &[&m], &[], &[("perm", Attr::Ints(vec![0, 2, 1]))]);
        let mid_cls = weight(&mut b, "mid_class_pos", &[2, 1, WIDTH]);
        let m = b.node_with("Concat", &[&mid_cls, &m], &[], &[("axis", Attr::Int(1))]);
        let layer = b.ints("layer", &[1]);
        let m = b.node_with("Gather", &[&m, &layer], &[], &[("axis", Attr::Int(0))]);
        h = b.node("Add", &[&h, &m], &[]);
    }
    let head = weight(&mut b, "head.weight", &[WIDTH, 6]);
    let y = b.node("MatMul", &[&h, &head], &[]);
    let y = b.node("Relu", &[&y], &[]);
    let y = b.node_with("ReduceMean", &[&y], &[], &[("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(0))]);
    let y = if form.read_whole {
        let all = b.node_with("ReduceMean", &[&pos], &[], &[("keepdims", Attr::Int(0))]);
        b.node("Mul", &[&y, &all], &["y"])
    } else {
        b.node("Identity", &[&y], &["y"])
    };
    let out = if form.batch_one { known_dims(&[1, 6]) } else { batch_dims(&[6]) };
    b.output_f32(&y, &out);
    b.build().unwrap()
}

/// Loads `user` as every command does (normalized), analyzes it, and for three random
/// choices zeroes half of every prunable group, constructs, and compares the compact
/// model with the zeroed one in onnxruntime at a batch of 2.
fn prune_exactly(ctx: &str, user: &Model) -> Analysis {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tables.onnx");
    user.save(&path, &Default::default()).unwrap();
    let (model, summary) = oto_onnx::normalize::load(&path).unwrap();
    let analysis = analyze(&model, &AnalyzeOptions::default()).unwrap();
    let inputs = uniform_input("x", &[2, 3, 8, 8], 3);
    for seed in 0..3u64 {
        let removed = pick(&analysis, &mut SplitMix64::new(seed + 1), 0.5);
        let full = zero_producers(&model, &analysis, &removed).unwrap();
        let (compact, report) = construct(&full, &analysis, &removed).unwrap();
        assert!(report.params_after < report.params_before, "{ctx} seed {seed}: {report:?}");
        assert_eq!(float_elements(&compact), predicted_float_elements(&full, &analysis, &removed), "{ctx} seed {seed}");
        let (err, tol) = deviation(&run_ort(&full.proto, &inputs), &run_ort(&compact.proto, &inputs));
        assert!(err <= tol, "{ctx} seed {seed} ({summary}): max deviation {err:.3e} > {tol:.3e}");
    }
    analysis
}

/// The group whose producers include the patch embedding's output channels.
fn width_group(analysis: &Analysis) -> &oto_graph::Group {
    analysis.groups.iter().find(|g| g.members.iter().any(|m| m.initializer == "patch.weight" && m.axis == 0)).unwrap()
}

#[test]
fn interpolated_position_tables_are_cut_with_the_width() {
    for (mid, batch_one) in [(false, false), (true, false), (true, true)] {
        let form = Form { batch_one, mid, read_whole: false };
        let ctx = format!("{form:?}");
        let analysis = prune_exactly(&ctx, &model(form));
        let g = width_group(&analysis);
        assert!(g.prunable && g.num_elements == WIDTH, "{ctx}:\n{}", analysis.table());
        let mut tables: Vec<(&str, usize, Role)> = g
            .members
            .iter()
            .filter(|m| m.initializer.contains("pos") || m.initializer == "cls_token")
            .map(|m| (m.initializer.as_str(), m.axis, m.role))
            .collect();
        tables.sort_by_key(|t| (t.0, t.1));
        tables.dedup();
        let mut want = vec![("class_pos", 2, Role::Producer), ("cls_token", 2, Role::Producer), ("patch_pos", 2, Role::Producer)];
        if mid {
            want.splice(2..2, [("mid_class_pos", 2, Role::Producer)]);
            want.insert(3, ("mid_pos", 1, Role::Producer));
        }
        assert_eq!(tables, want, "{ctx}: the tables along their channel axes only:\n{}", analysis.table());
        let hidden = analysis.groups.iter().find(|g| g.members.iter().any(|m| m.initializer == "fc1.bias")).unwrap();
        assert!(hidden.prunable, "{ctx}:\n{}", analysis.table());
    }
}

#[test]
fn a_table_read_whole_elsewhere_stays_whole() {
    let form = Form { batch_one: false, mid: false, read_whole: true };
    let analysis = prune_exactly("read whole", &model(form));
    let g = width_group(&analysis);
    assert!(g.prunable, "{}", analysis.table());
    assert!(
        !g.members.iter().any(|m| m.initializer == "patch_pos"),
        "the mean of the whole table reads every channel:\n{}",
        analysis.table()
    );
    for reader in ["fc1.weight", "head.weight"] {
        let m = g.members.iter().find(|m| m.initializer == reader && m.axis == 0);
        assert_eq!(m.map(|m| m.role), Some(Role::Producer), "{reader}:\n{}", analysis.table());
    }
    let hidden = analysis.groups.iter().find(|g| g.members.iter().any(|m| m.initializer == "fc1.bias")).unwrap();
    assert!(hidden.prunable, "{}", analysis.table());
}
