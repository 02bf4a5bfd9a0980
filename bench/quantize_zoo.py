"""`oto quantize` against onnxruntime's `quantize_static` on two zoo models, the sibling of
bench/quantize.py (the digits CNN):

* resnet18 (graphs/zoo/resnet18.onnx, input 3x64x64, 10 classes, BatchNorm folded into its
  20 convolutions) trained briefly by `oto prune --target-sparsity 0` (plain training: 120
  AdamW steps at batch 32) on the digits data upsampled to 64x64 (bilinear, 3 channels,
  normalized to [-1, 1]): 1,438 training and 359 held-out images. Then, per calibration seed
  (128 training images drawn by the seed, the same for both tools): int8 QDQ by both tools
  (per-channel symmetric int8 weights, int8 activations by MinMax), accuracy in onnxruntime
  on the held-out images; and the ablation of the bit allocation at 0.6x of int8's size
  (int4 in blocks of 128 along the input axis, or int8, per layer): HAWQ-V2 (traces measured
  once per seed), uniform, random and by parameter count (on the same traces, `--traces`).
  Latency in onnxruntime of the float, int8 and mixed models.
* BERT-tiny (graphs/zoo/bert_tiny.onnx, 2 classes per sequence) trained briefly (200 AdamW
  steps) on a synthetic labeled token task so that its class depends on the input (the zoo's
  random weights put every sequence in class 0): label 1 when more than half of the unmasked
  tokens have ids below 500; 2,048 training and 512 held-out sequences of 8-16 tokens. The
  quantizers see no labels (calibration on 128 unlabeled sequences; oto's traces then come
  from distillation); the measure is agreement of the quantized model's arg-max with the
  float model's, per sequence, on the 512 held-out sequences.

    python bench/quantize_zoo.py --oto target/release/oto
    python bench/quantize_zoo.py --oto target/release/oto --tasks bert --seeds 0
    python bench/quantize_zoo.py --tasks resnet18 --ablation-seeds 0   # the ablation on the first seed only
    python bench/quantize_zoo.py --tasks ""          # only rewrite bench/quantize.md from the JSON

Trained models, data and the quantized models are kept in target/bench-quantize/ (delete it
to start afresh): a rerun with the same oto command and binary reuses a quantized model instead of
making it again, so an interrupted run resumes. Results go
to bench/quantize_zoo.json and to bench/quantize.md, after the digits sections.
"""

import argparse
import functools
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from quantize import MARKER, weight_bytes  # noqa: E402

STRATEGIES = ["hawq", "uniform", "random", "params"]
WORK = ROOT / "target/bench-quantize"
RESULTS = ROOT / "bench/quantize_zoo.json"


class Reader(CalibrationDataReader):
    """The calibration sample (a dict of input arrays), 32 samples at a time."""

    def __init__(self, arrays):
        n = len(next(iter(arrays.values())))
        self.batches = iter([{k: v[i : i + 32] for k, v in arrays.items()} for i in range(0, n, 32)])

    def get_next(self):
        return next(self.batches, None)


def run_model(path, arrays, threads=2):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: arrays[i.name] for i in session.get_inputs()})[0].astype(np.float64)


def compare(path, arrays, labels, reference):
    """Accuracy (with labels), agreement of the arg-max with the float model, relative logit error."""
    y = run_model(path, arrays)
    out = {"agreement": float((y.argmax(1) == reference.argmax(1)).mean()),
           "rel_error": float(np.linalg.norm(y - reference) / np.linalg.norm(reference))}
    if labels is not None:
        out["accuracy"] = float((y.argmax(1) == labels).mean())
    return out


def latency(files, arrays, runs=20, threads=2):
    """Per (label, path, fold): the median wall time of one run in onnxruntime (default
    optimizations; with fold, the session option session.disable_quant_qdq=1, under which
    onnxruntime constant-folds DequantizeLinear of initializers at load), the runs of all
    files interleaved after 3 warm-up runs each; and the operators of the optimized graph
    (fused integer kernels, float convolutions, DequantizeLinear left to run at run time and
    how many of those read an int4 initializer)."""
    sessions, ops = [], {}
    with tempfile.TemporaryDirectory(prefix="oto-ort-opt-") as tmp:
        for k, (label, path, fold) in enumerate(files):
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.optimized_model_filepath = str(Path(tmp) / f"{k}.onnx")
            if fold:
                options.add_session_config_entry("session.disable_quant_qdq", "1")
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            optimized = onnx.load(options.optimized_model_filepath)
            int4 = {t.name for t in optimized.graph.initializer if t.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4)}
            count = lambda *types: sum(1 for n in optimized.graph.node if n.op_type in types)  # noqa: E731
            ops[label] = {"integer": count("QLinearConv", "QGemm", "QLinearMatMul", "MatMulNBits", "MatMulIntegerToFloat"),
                          "float_conv_gemm": count("Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul"),
                          "dq": count("DequantizeLinear"),
                          "dq_int4": sum(1 for n in optimized.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in int4)}
            sessions.append((label, session, {i.name: arrays[i.name] for i in session.get_inputs()}))
    times = {label: [] for label, _, _ in sessions}
    for _, session, feed in sessions:
        for _ in range(3):
            session.run(None, feed)
    for _ in range(runs):
        for label, session, feed in sessions:
            t = time.perf_counter()
            session.run(None, feed)
            times[label].append(time.perf_counter() - t)
    return {label: {"ms": 1000 * statistics.median(times[label]), **ops[label]} for label, _, _ in sessions}


@functools.cache
def binary_hash(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def oto_quantize(args, model, calib, out, extra, val=None):
    """Runs `oto quantize`, unless `out` and its JSON are there from an earlier run with the
    same command and the same oto binary (recorded beside them): an interrupted benchmark resumes."""
    cmd = [args.oto, "--quiet", "quantize", str(model), "--data", str(calib), "--out", str(out), "--json", str(out.with_suffix(".json"))]
    if val is not None:
        cmd += ["--val", str(val)]
    cmd += extra
    done = out.with_suffix(".cmd")
    # The command and the binary's SHA-256: another build of oto quantizes again.
    key = " ".join(cmd[1:]) + f" # oto {binary_hash(args.oto)}"
    if not (out.exists() and done.exists() and done.read_text() == key):
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        done.write_text(key)
    return json.loads(out.with_suffix(".json").read_text())


def ort_quantize(model, arrays, out, op_types=None, activation_type=QuantType.QInt8):
    """quantize_static: every operator it quantizes by default, or only `op_types`."""
    quantize_static(str(model), str(out), Reader(arrays), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=activation_type, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                    op_types_to_quantize=op_types)


def int8_ratio(summary):
    w = summary["report"]["weights"]
    return sum(x["stored_bytes"] for x in w) / sum(x["float_bytes"] for x in w)


def resnet18_data():
    import torch
    import torch.nn.functional as F

    train, test = WORK / "r18_train.npz", WORK / "r18_test.npz"
    if not test.exists():
        for src, dst in [("digits_train", train), ("digits_test", test)]:
            d = np.load(ROOT / f"examples/data/{src}.npz")
            x = F.interpolate(torch.from_numpy(d["x"]), size=(64, 64), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
            np.savez(dst, x=((x - 0.5) / 0.5).numpy().astype(np.float32), labels=d["labels"])
    return train, test


def bert_data():
    train, test = WORK / "bert_train.npz", WORK / "bert_test.npz"
    if not test.exists():
        rng = np.random.default_rng(0)
        for n, dst in [(2048, train), (512, test)]:
            ids = rng.integers(0, 1000, size=(n, 16))
            lengths = rng.integers(8, 17, size=n)
            mask = (np.arange(16)[None, :] < lengths[:, None]).astype(np.int64)
            ids = ids * mask
            labels = (2 * ((ids < 500) & (mask == 1)).sum(1) > lengths).astype(np.int64)
            np.savez(dst, input_ids=ids.astype(np.int64), attention_mask=mask, labels=labels)
    return train, test


def train(args, name, model, data, val, extra):
    out = WORK / name
    if not (out / "model.onnx").exists():
        subprocess.run([args.oto, "--quiet", "prune", "--model", str(model), "--data", str(data), "--val", str(val), "--target-sparsity", "0",
                        "--out", str(out), "--seed", "0", "--device", "cpu"] + extra, check=True, stdout=subprocess.DEVNULL)
    return out / "model.onnx"


def task(args, name, seeds, work, save, previous, commit):
    """One model: int8 oto vs ort per seed, then (resnet18) the allocation ablation;
    `save(result)` after every measurement, so that an interrupted run keeps what it measured.
    The ablation rows of `previous` (the JSON's earlier result) for seeds this run does not
    ablate are kept when they were measured on the same trained model: the same SHA-256, or,
    for a result recorded without one, the same int8 results on every seed both runs measured."""
    if name == "resnet18":
        train_path, test_path = resnet18_data()
        model = train(args, "resnet18", ROOT / "graphs/zoo/resnet18.onnx", train_path, test_path,
                      ["--steps", "120", "--batch-size", "32", "--optimizer", "adamw", "--lr", "1e-3"])
    else:
        train_path, test_path = bert_data()
        model = train(args, "bert_tiny", ROOT / "graphs/zoo/bert_tiny.onnx", train_path, test_path,
                      ["--steps", "200", "--batch-size", "32", "--optimizer", "adamw", "--lr", "1e-3", "--loss", "cross-entropy"])
    tr, te = dict(np.load(train_path)), dict(np.load(test_path))
    inputs = [i.name for i in onnx.load(str(model)).graph.input]
    labels = te["labels"] if name == "resnet18" else None
    reference = run_model(model, te)
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    result = {"model": name, "model_sha256": sha, "float": {"accuracy": float((reference.argmax(1) == te["labels"]).mean()),
                                                            "class_1_share": float((reference.argmax(1) == 1).mean()),
                                                            "bytes": weight_bytes(model)}, "seeds": [], "ablation": []}
    val = test_path if name == "resnet18" else None
    ablation_seeds = seeds if args.ablation_seeds is None else [int(s) for s in args.ablation_seeds.split(",") if s]
    previous = previous or {}
    same_model = previous.get("model_sha256") in (sha, None) and previous.get("float") == result["float"]
    # Earlier ablation rows (each with the commit that measured it) for the seeds not ablated now.
    kept = [{**a, "commit": a.get("commit", previous.get("commit", "?"))}
            for a in previous.get("ablation", []) if same_model and a["seed"] not in ablation_seeds]
    result["ablation"] = list(kept)
    for seed in seeds:
        pick = np.random.default_rng(seed).choice(len(tr["labels"]), size=args.samples, replace=False)
        calib_arrays = {k: tr[k][pick] for k in inputs}
        calib = work / f"{name}_calib{seed}.npz"
        # resnet18's calibration keeps its labels (cross-entropy traces); BERT's has none (distillation).
        np.savez(calib, **calib_arrays, **({"labels": tr["labels"][pick]} if name == "resnet18" else {}))
        ours, theirs = work / f"{name}_oto{seed}.onnx", work / f"{name}_ort{seed}.onnx"
        summary = oto_quantize(args, model, calib, ours, [], val)
        ort_quantize(model, calib_arrays, theirs)
        row = {"seed": seed, "oto": compare(ours, te, labels, reference), "ort": compare(theirs, te, labels, reference),
               "oto_bytes": weight_bytes(ours), "ort_bytes": weight_bytes(theirs), "r8": int8_ratio(summary)}
        if name == "resnet18":
            # The held-out images are few (one image is 0.28 points): the agreement with the
            # float model is also measured on the training images the seed did not calibrate on.
            rest = {k: np.delete(tr[k], pick, axis=0) for k in inputs}
            rest_reference = run_model(model, rest)
            for tool, path in (("oto", ours), ("ort", theirs)):
                row[tool]["agreement_rest"] = compare(path, rest, None, rest_reference)["agreement"]
            row["rest_images"] = len(rest_reference)
        if name != "resnet18":
            # The same weights as oto (MatMul/Gemm; by default quantize_static also stores the
            # embedding tables of Gather in int8, a smaller file): the same-size comparison.
            same = work / f"{name}_ortmm{seed}.onnx"
            ort_quantize(model, calib_arrays, same, ["MatMul", "Gemm"])
            row["ort_mm"], row["ort_mm_bytes"] = compare(same, te, labels, reference), weight_bytes(same)
        result["seeds"].append(row)
        before = [p for p in previous.get("seeds", []) if p["seed"] == seed]
        if kept and previous.get("model_sha256") is None and before and before[0]["oto"] != row["oto"]:
            # Recorded without a hash and not reproduced: another model; drop its ablation rows.
            print(f"{name}: seed {seed}'s int8 results differ from the JSON's; its ablation rows are dropped", file=sys.stderr)
            result["ablation"] = [a for a in result["ablation"] if a not in kept]
            kept = []
        save(result)
        print(json.dumps(row), file=sys.stderr)
        if name != "resnet18" or args.fraction <= 0 or seed not in ablation_seeds:
            continue
        budget = f"{args.fraction * row['r8']:.6f}"
        traces = None
        for strategy in STRATEGIES:
            path = work / f"{name}_{strategy}{seed}.onnx"
            extra = ["--size-budget", budget, "--block-size", "128", "--allocation", strategy, "--seed", str(seed),
                     "--hessian-batches", "1", "--batch-size", "16"]
            if traces is not None:
                extra += ["--traces", str(traces)]
            m = oto_quantize(args, model, calib, path, extra)["allocation"]
            traces = traces or path.with_suffix(".json")
            result["ablation"].append({"seed": seed, "strategy": strategy, "commit": commit, **compare(path, te, labels, reference), "ratio": m["ratio"],
                                       "budget": m["budget_ratio"], "omega": m["omega"],
                                       "int8_layers": sum(1 for l in m["layers"] if l["bits"] == 8),
                                       "int8_params": sum(l["params"] for l in m["layers"] if l["bits"] == 8) / sum(l["params"] for l in m["layers"]),
                                       "layers": len(m["layers"]), "hutchinson": m["hutchinson_samples"]})
            save(result)
            print(json.dumps(result["ablation"][-1]), file=sys.stderr)
    if name != "resnet18" and seeds:
        # int4 weights (blocks of 32), with oto's int8 activations and weight-only: what onnxruntime fuses.
        seed = seeds[0]
        calib = work / f"{name}_calib{seed}.npz"
        int4 = [(label, work / f"{name}_int4{suffix}{seed}.onnx", extra) for label, suffix, extra in
                [("oto int4 (blocks of 32), int8 activations", "", []), ("oto int4 (blocks of 32), weight-only", "w", ["--activations", "none"])]]
        for _, path, extra in int4:
            oto_quantize(args, model, calib, path, ["--bits", "4", "--block-size", "32"] + extra)
        batch = {k: te[k][:64] for k in inputs}
        files = [("float", model, False), ("oto int8", work / f"{name}_oto{seed}.onnx", False),
                 ("ort int8", work / f"{name}_ort{seed}.onnx", False)] + [(label, path, False) for label, path, _ in int4]
        result["latency"] = latency(files, batch)
        result["latency_batch"] = 64
    if name == "resnet18" and seeds and args.keep_latency and previous.get("latency"):
        result["latency"], result["latency_batch"] = previous["latency"], previous.get("latency_batch", 8)
    elif name == "resnet18" and seeds:
        seed = seeds[0]
        batch = {k: te[k][:8] for k in inputs}
        # quantize_static with uint8 activations (onnxruntime's kernels on x86 are uint8 x int8), for its speed.
        u8 = work / f"{name}_ortu8{seed}.onnx"
        ort_quantize(model, {k: tr[k][np.random.default_rng(seed).choice(len(tr["labels"]), size=args.samples, replace=False)] for k in inputs},
                     u8, activation_type=QuantType.QUInt8)
        files = [("float", model, False), ("oto int8", work / f"{name}_oto{seed}.onnx", False),
                 ("ort int8", work / f"{name}_ort{seed}.onnx", False), ("ort int8, uint8 activations", u8, False),
                 ("oto int8, DQ folded at load", work / f"{name}_oto{seed}.onnx", True)]
        if args.fraction > 0 and seed in ablation_seeds:
            files += [("oto mixed 4/8 (hawq)", work / f"{name}_hawq{seed}.onnx", False),
                      ("oto mixed 4/8, DQ folded at load", work / f"{name}_hawq{seed}.onnx", True)]
        result["latency"] = latency(files, batch)
        result["latency_batch"] = 8
    return result


def seed_list(seeds):
    """`seed 2`, `seeds 0, 1`."""
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(str(s) for s in seeds)


def render(results):
    lines = [MARKER, "", "## resnet18 and BERT-tiny (bench/quantize_zoo.py)", ""]
    doc = (__doc__ or "").split("\n\n    python")[0].strip()
    lines += [doc, ""]
    for name in ("resnet18", "bert"):
        r = results.get(name)
        if not r:
            continue
        f = r["float"]
        lines += [f"### {name}", "", f"Commit {r.get('commit', '?')}: `{r.get('command', 'python bench/quantize_zoo.py')}`. {r.get('note', '')}", ""]
        if name == "resnet18":
            rest = r["seeds"][0].get("rest_images") if r["seeds"] else None
            lines += [f"Float model: accuracy {100 * f['accuracy']:.2f}% on the held-out images, {f['bytes']} bytes of initializers. Agreement: "
                      "of the arg-max with the float model's on the held-out images"
                      + (f"; on the rest: on the {rest} training images the seed did not calibrate on." if rest else "."), "",
                      "| seed | oto accuracy | ort accuracy | oto agreement | ort agreement | "
                      + ("oto agreement on the rest | ort agreement on the rest | " if rest else "")
                      + "oto rel. logit error | ort rel. logit error | oto bytes | ort bytes |",
                      "|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if rest else "")]
        else:
            lines += [f"Float model: {100 * f['accuracy']:.2f}% of held-out sequences in their synthetic class, {100 * f['class_1_share']:.1f}% "
                      f"predicted class 1; {f['bytes']} bytes of initializers. \"ort\": quantize_static's defaults (it also stores the "
                      "Gather embedding tables in int8, hence fewer bytes, and quantizes every activation it can); \"ort MatMul/Gemm\": "
                      "op_types_to_quantize MatMul and Gemm, the weights oto quantizes (the same size).", "",
                      "| seed | oto agreement | ort agreement | ort MatMul/Gemm agreement | oto rel. logit error | ort rel. logit error | "
                      "ort MatMul/Gemm rel. logit error | oto bytes | ort bytes | ort MatMul/Gemm bytes |",
                      "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        tools = ("oto", "ort") if name == "resnet18" else ("oto", "ort", "ort_mm")
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        rows = [(str(s["seed"]), [s]) for s in r["seeds"]] + ([("mean", r["seeds"])] if r["seeds"] else [])
        for label, group in rows:
            cols = ["accuracy"] if name == "resnet18" else []
            cells = [f"{100 * mean([s[t][c] for s in group]):.2f}%" for c in cols for t in tools]
            cells += [f"{100 * mean([s[t]['agreement'] for s in group]):.2f}%" for t in tools]
            if all("agreement_rest" in s[t] for s in group for t in tools) and name == "resnet18":
                cells += [f"{100 * mean([s[t]['agreement_rest'] for s in group]):.2f}%" for t in tools]
            cells += [f"{mean([s[t]['rel_error'] for s in group]):.3e}" for t in tools]
            cells += [f"{mean([s[t + '_bytes'] for s in group]):.0f}" for t in tools]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        if r.get("ablation"):
            a0 = r["ablation"][0]
            lines += ["", f"Allocation at 0.6x of int8's size (R budget {a0['budget']:.4f} of the float32 weight bytes; int4 in blocks of 128 "
                      "along the input axis or int8 per output channel, per layer; int8 activations); Omega = sum (Tr(H)/n) ||Q(W)-W||^2 on "
                      "the traces of the seed's hawq run (cross-entropy on its first 16 calibration images), which the other rules read "
                      "with --traces."]
            commits = sorted({a.get("commit", r.get("commit", "?")) for a in r["ablation"]})
            if len(commits) > 1:
                lines[-1] += (" Measured at several commits on the same trained model (by SHA-256 or by its int8 results): " + "; ".join(
                    f"{seed_list(sorted({a['seed'] for a in r['ablation'] if a.get('commit', r.get('commit')) == c}))} at {c}" for c in commits) + ".")
            lines += ["", "| allocation | seed | R achieved | Omega | int8 layers | int8 share of weights | accuracy | agreement | rel. logit error |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for a in sorted(r["ablation"], key=lambda a: (a["seed"], STRATEGIES.index(a["strategy"]))):
                lines.append(f"| {a['strategy']} | {a['seed']} | {a['ratio']:.4f} | {a['omega']:.3e} | {a['int8_layers']}/{a['layers']} | "
                             f"{100 * a['int8_params']:.1f}% | {100 * a['accuracy']:.2f}% | {100 * a['agreement']:.2f}% | {a['rel_error']:.3e} |")
            for st in STRATEGIES:
                rows = [a for a in r["ablation"] if a["strategy"] == st]
                if rows:
                    lines.append(f"| **{st} mean** | | | {mean([a['omega'] for a in rows]):.3e} | | | **{100 * mean([a['accuracy'] for a in rows]):.2f}%** "
                                 f"(min {100 * min(a['accuracy'] for a in rows):.2f}%) | {100 * mean([a['agreement'] for a in rows]):.2f}% | "
                                 f"{mean([a['rel_error'] for a in rows]):.3e} |")
        if r.get("latency"):
            lines += ["", f"onnxruntime {ort.__version__} on seed {r['seeds'][0]['seed']}'s files: latency of a batch of {r.get('latency_batch', 8)} (2 threads, "
                      "default optimizations, median of 20 interleaved runs) and the optimized graph's operators: fused integer kernels "
                      "(QLinearConv, QGemm, MatMulNBits...), float Conv/Gemm/MatMul, and the DequantizeLinear nodes left in the graph "
                      "(run at every inference), of which int4. \"DQ folded at load\": the session option "
                      "session.disable_quant_qdq=1, under which onnxruntime constant-folds the weights' DequantizeLinear when it loads the "
                      "model.", "",
                      "| model | latency | integer kernels | float Conv/Gemm/MatMul | DequantizeLinear at run time | of them int4 |",
                      "|---|---:|---:|---:|---:|---:|"]
            for k, v in r["latency"].items():
                lines.append(f"| {k} | {v['ms']:.1f} ms | {v['integer']} | {v['float_conv_gemm']} | {v['dq']} | {v['dq_int4']} |")
            lines += ["", "onnxruntime fuses a weight's DequantizeLinear only inside a node group its QDQ selectors match: "
                      "DQ(input) and DQ(weight) -> Conv -> [Relu] -> Q into QLinearConv (8-bit only: there is no int4 "
                      "convolution kernel), DQ, DQ -> Add -> Q into QLinearAdd, DQ(input), DQ(weight) -> Gemm into QGemm (with "
                      "an int32 bias), and DQ(int4 weight, blocked along axis 0) -> MatMul with a float input into MatMulNBits. "
                      "Every other weight DequantizeLinear stays in the optimized graph and runs at every inference (its constant "
                      "folding skips DequantizeLinear unless session.disable_quant_qdq=1), int4 ones included: the weights are "
                      "dequantized at run time, which is why a QDQ file can run slower than the float one. On x86 its integer "
                      "kernels take uint8 activations and int8 weights: it rewrites an int8 activation Q -> DQ pair to uint8 only "
                      "where the QuantizeLinear has one reader, so with int8 activations the convolutions reading a value that "
                      "two nodes read (a residual block's input: its first Conv and its Add or downsampling Conv) stay float. "
                      "oto (since a0fb6b6) quantizes the inputs of Conv/Gemm/MatMul and the outputs of int8 Convs (after a Relu "
                      "that is their only reader), lets the Adds of two quantized values and the MaxPools read them dequantized "
                      "where their output is quantized, and stores activations as uint8 (the same 256 levels as affine int8, "
                      "zero point + 128): every int8 Conv and every residual Add between two of them fuses (bench/quantize.md, "
                      "QDQ placement)."]
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--oto", default=str(ROOT / "target/debug/oto"))
    parser.add_argument("--tasks", default="resnet18,bert")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--ablation-seeds", default=None, help="the seeds of the resnet18 allocation ablation [default: --seeds]")
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--fraction", type=float, default=0.6, help="the ablation's budget, a fraction of int8's size (0: no ablation)")
    parser.add_argument("--keep-latency", action="store_true", help="keep resnet18's latency table from the JSON (measure it on an idle machine)")
    parser.add_argument("--md", type=Path, default=ROOT / "bench/quantize.md")
    parser.add_argument("--note", default="", help="a line on the run's conditions, shown with its results")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    seeds = [int(s) for s in args.seeds.split(",") if s]
    work = WORK / "runs"
    work.mkdir(exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    def save(result):
        # Re-read: another task may have written its results meanwhile.
        results.update(json.loads(RESULTS.read_text()) if RESULTS.exists() else {})
        argv = [a for i, a in enumerate(sys.argv) if a != "--note" and (i == 0 or sys.argv[i - 1] != "--note") and not a.startswith("--note=")]
        results[result["model"]] = {**result, "commit": commit, "command": " ".join(["python"] + argv), "note": args.note}
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")

    for name in [t for t in args.tasks.split(",") if t]:
        save(task(args, name, seeds, work, save, results.get(name), commit))
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    text = args.md.read_text() if args.md.exists() else ""
    head = text.split(MARKER)[0].rstrip("\n")
    args.md.write_text(head + "\n\n" + render(results))
    print(render(results))


if __name__ == "__main__":
    main()
