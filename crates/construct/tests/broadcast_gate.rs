//! One channel of a layer multiplied into every channel of another: FocalNet's focal
//! modulation, `ctx_all += ctx_l * gates[:, l:l+1]`, where the gates are the last channels of
//! the projection that also gives the query and the context. Every context channel reads the
//! gate, so the gate stays; the context channels (and the query channels, joined with the
//! modulator) are cut as against any value broadcast along the channels.

mod common;
use common::*;
use oto_graph::{analyze, AnalyzeOptions};
use oto_onnx::builder::{Attr, GraphBuilder};
use oto_onnx::{Dim, Model};

/// `x [B, 4, 6, 6] -> f (1x1: query 6, context 6, gates 3) -> two depthwise 3x3 levels and a
/// global level, each times its gate, summed -> h (1x1, 6) -> query * h -> proj (1x1, 3) ->
/// GlobalAveragePool -> Flatten -> y [B, 3]`.
fn model() -> Model {
    let (c, levels) = (6usize, 2usize);
    let mut b = GraphBuilder::new("focal_modulation");
    b.opset(13);
    let batch = Dim::sym("batch");
    let x = b.input_f32("x", &[batch.clone(), Dim::Known(4), Dim::Known(6), Dim::Known(6)]);
    let mut weight = weights();
    let width = 2 * c + levels + 1;
    let (fw, fb) = (weight(&mut b, "f.weight", &[width, 4, 1, 1]), weight(&mut b, "f.bias", &[width]));
    let f = b.node("Conv", &[&x, &fw, &fb], &[]);
    let sizes = b.ints("split", &[c as i64, c as i64, (levels + 1) as i64]);
    let parts = ["q", "ctx0", "gates"];
    b.node_with("Split", &[&f, &sizes], &parts, &[("axis", Attr::Int(1))]);
    let axis = b.ints("channel_axis", &[1]);
    let gate = |b: &mut GraphBuilder, l: i64| {
        let (start, end) = (b.ints(&format!("gate{l}.start"), &[l]), b.ints(&format!("gate{l}.end"), &[l + 1]));
        b.node("Slice", &["gates", &start, &end, &axis], &[])
    };
    let mut ctx = "ctx0".to_string();
    let mut all: Option<String> = None;
    for l in 0..levels {
        let (dw, db) = (weight(&mut b, &format!("dw{l}.weight"), &[c, 1, 3, 3]), weight(&mut b, &format!("dw{l}.bias"), &[c]));
        let attrs = [("group", Attr::Int(c as i64)), ("pads", Attr::Ints(vec![1, 1, 1, 1]))];
        let h = b.node_with("Conv", &[&ctx, &dw, &db], &[], &attrs);
        ctx = b.node("Relu", &[&h], &[]);
        let g = gate(&mut b, l as i64);
        let gated = b.node("Mul", &[&ctx, &g], &[]);
        all = Some(match all {
            None => gated,
            Some(prev) => b.node("Add", &[&prev, &gated], &[]),
        });
    }
    let pooled = b.node("GlobalAveragePool", &[&ctx], &[]);
    let pooled = b.node("Relu", &[&pooled], &[]);
    let g = gate(&mut b, levels as i64);
    let gated = b.node("Mul", &[&pooled, &g], &[]);
    let all = b.node("Add", &[&all.unwrap_or_default(), &gated], &[]);
    let (hw, hb) = (weight(&mut b, "h.weight", &[c, c, 1, 1]), weight(&mut b, "h.bias", &[c]));
    let modulator = b.node("Conv", &[&all, &hw, &hb], &[]);
    let out = b.node("Mul", &["q", &modulator], &[]);
    let (pw, pb) = (weight(&mut b, "proj.weight", &[3, c, 1, 1]), weight(&mut b, "proj.bias", &[3]));
    let y = b.node("Conv", &[&out, &pw, &pb], &[]);
    let y = b.node("GlobalAveragePool", &[&y], &[]);
    let y = b.node("Flatten", &[&y], &["y"]);
    b.output_f32(&y, &[batch, Dim::Known(3)]);
    b.build().unwrap()
}

#[test]
fn channels_times_a_broadcast_gate_are_cut_and_the_gate_stays() {
    let m = model();
    let analysis = analyze(&m, &AnalyzeOptions::default()).unwrap();
    let inputs = uniform_input("x", &[2, 4, 6, 6], 5);
    // The context channels (f's rows 6..12 with the depthwise levels) and the query channels
    // (f's rows 0..6 with h's outputs, which multiply them).
    let cases: [(&str, &[&[usize]]); 2] = [("dw0.weight", &[&[0], &[1, 4], &[0, 2, 3, 5]]), ("h.weight", &[&[2], &[0, 1, 5]])];
    for (layer, removals) in cases {
        let group = prunable_group_with(&analysis, layer, 0).id.clone();
        for &elements in removals.iter() {
            assert_removal_exact(&m, &analysis, &group, elements, &inputs);
        }
    }
    // The gates (f's rows 12..15): one element each, read by every context channel.
    let gates: Vec<&oto_graph::Group> = analysis
        .groups
        .iter()
        .filter(|g| g.members.iter().any(|m| m.initializer == "f.bias" && m.map.indices(0).iter().all(|&i| i >= 12)))
        .collect();
    assert_eq!(gates.len(), 3, "{}", analysis.table());
    for g in gates {
        assert!(!g.prunable && g.reasons.iter().any(|r| r.contains("one channel broadcast")), "{}", analysis.table());
    }
}
