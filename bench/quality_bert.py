"""The quality grid's second task: BERT-tiny (graphs/zoo/bert_tiny.onnx, a 2-class sequence
classifier with random weights) pruned by distillation from the unpruned model on unlabeled
tokens, HESSO and CRIC, at MACs budgets. The quality is the teacher's agreement: the share of
held-out sequences where the compact model's argmax equals the original model's (both run in
onnxruntime), with the mean KL divergence of its softmax from the teacher's and the fidelity
R^2 = 1 - sum |student - teacher|^2 / sum |teacher - mean teacher|^2 over the held-out logits. The
teacher has random weights and puts all 128 held-out sequences in class 0, so the argmax agreement
only shows a collapse; R^2 measures how much of the teacher's variation across inputs is kept.

    python bench/quality_bert.py --oto target/release/oto                 # the whole grid
    python bench/quality_bert.py --targets m0.5 --seeds 0 --methods cric
    python bench/quality_bert.py --targets "" --note "..."               # only rewrite the table

Data: graphs/zoo/bert_tiny.tokens.npz (512 sequences of 16 tokens), the first 384 for training,
the last 128 held out. Budget: 240 steps at batch 32, AdamW lr 1e-3 (examples/bert_tiny_distill.toml),
one libtorch thread: a few minutes per run on 2 shared cores. Results: bench/quality_bert.md and
bench/quality_bert.json (every run; runs already there are kept unless --fresh).
"""

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from quality import stats

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "graphs/zoo/bert_tiny.onnx"
TOKENS = ROOT / "graphs/zoo/bert_tiny.tokens.npz"
TRAIN = 384
BUDGET = ["--steps", "240", "--batch-size", "32", "--optimizer", "adamw", "--lr", "1e-3", "--loss", "distill"]
FLAG = {"s": "--target-sparsity", "m": "--target-macs", "p": "--target-params"}


def logits(model, inputs):
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: inputs[n] for n in names})[0].astype(np.float64)


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def run_one(oto, target, method, seed, data, threads):
    train, val, held = data
    with tempfile.TemporaryDirectory(prefix="oto-bert-") as out:
        cmd = [oto, "prune", "--model", str(MODEL), "--data", str(train), "--val", str(val), "--out", out, "--seed", str(seed)]
        cmd += BUDGET + [FLAG[target[0]], target[1:], "--threads", str(threads), "--device", "cpu", "-q"]
        if method == "cric":
            cmd.append("--cric")
        started = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip()[-2000:], "cmd": cmd}
        r = json.loads((Path(out) / "report.json").read_text())
        t_logits = logits(MODEL, held)
        s_logits = logits(Path(out) / "model.onnx", held)
        teacher, student = log_softmax(t_logits), log_softmax(s_logits)
    return {
        "agreement": float((teacher.argmax(1) == student.argmax(1)).mean()),
        "kl": float((np.exp(teacher) * (teacher - student)).sum(1).mean()),
        "r2": float(1 - ((s_logits - t_logits) ** 2).sum() / ((t_logits - t_logits.mean(0)) ** 2).sum()),
        "params_ratio": r["params"]["after"] / r["params"]["before"],
        "macs_ratio": r["macs"]["after"] / r["macs"]["before"],
        "group_sparsity": r["group_sparsity"],
        "seconds": time.time() - started,
    }


def key(run):
    return (run["target"], run["method"], run["seed"])


def table(runs):
    cells = {}
    for r in runs:
        if "error" not in r["result"]:
            cells.setdefault(r["target"], {}).setdefault(r["method"], []).append(r)
    lines = [
        "| target | method | seeds | R^2 mean ± s.e. | worst R^2 | agreement mean | KL mean | params ratio | MACs ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for target in sorted(cells, key=lambda t: -float(t[1:])):
        for method in sorted(cells[target]):
            rs = sorted(cells[target][method], key=lambda r: r["seed"])
            r2 = [r["result"]["r2"] for r in rs]
            mean, se = stats(r2)
            se_text = "" if math.isnan(se) else f" ± {se:.3f}"
            avg = lambda f: sum(r["result"][f] for r in rs) / len(rs)  # noqa: E731
            seeds = ",".join(str(r["seed"]) for r in rs)
            lines.append(
                f"| {target} | {method} | {seeds} | {mean:.3f}{se_text} | {min(r2):.3f} | {100 * avg('agreement'):.2f}% | {avg('kl'):.5f} | "
                f"{avg('params_ratio'):.3f} | {avg('macs_ratio'):.3f} |"
            )
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--oto", default=str(ROOT / "target/release/oto"))
    p.add_argument("--targets", default="m0.5,m0.25,m0.1")
    p.add_argument("--methods", default="hesso,cric")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=str(ROOT / "bench/quality_bert.json"))
    p.add_argument("--md", default=str(ROOT / "bench/quality_bert.md"))
    p.add_argument("--note", default="", help="a line for the table's header (machine, commit, what was left out)")
    p.add_argument("--fresh", action="store_true", help="rerun runs already in the JSON file")
    a = p.parse_args()

    path = Path(a.json)
    runs = json.loads(path.read_text()) if path.exists() else []
    done = {key(r) for r in runs if "error" not in r["result"]}
    tokens = dict(np.load(TOKENS))
    with tempfile.TemporaryDirectory(prefix="oto-bert-data-") as d:
        train, val = Path(d, "train.npz"), Path(d, "val.npz")
        held = {k: v[TRAIN:] for k, v in tokens.items()}
        np.savez(train, **{k: v[:TRAIN] for k, v in tokens.items()})
        np.savez(val, **held)
        for target in [t for t in a.targets.split(",") if t]:
            for method in a.methods.split(","):
                for seed in [int(s) for s in a.seeds.split(",")]:
                    run = {"target": target, "method": method, "seed": seed}
                    if key(run) in done and not a.fresh:
                        continue
                    run["result"] = run_one(a.oto, target, method, seed, (train, val, held), a.threads)
                    res = run["result"]
                    if "error" in res:
                        print(f"{target} {method} seed {seed}: FAILED {res['error'][-300:]}", file=sys.stderr)
                    else:
                        print(
                            f"{target} {method} seed {seed}: R^2 {res['r2']:.3f} agreement {100 * res['agreement']:.2f}% KL {res['kl']:.5f} "
                            f"params {res['params_ratio']:.3f} MACs {res['macs_ratio']:.3f} ({res['seconds']:.0f} s)",
                            flush=True,
                        )
                    runs = [r for r in runs if key(r) != key(run)] + [run]
                    done.add(key(run))
                    path.write_text(json.dumps(runs, indent=1))
    header = (
        "# Pruning-quality grid, second task: BERT-tiny by distillation\n\n"
        "Written by `bench/quality_bert.py` (every run in bench/quality_bert.json). graphs/zoo/bert_tiny.onnx\n"
        "(2-class sequence classifier, random weights) pruned by `oto prune --loss distill` on the first 384 of\n"
        "the 512 token sequences of graphs/zoo/bert_tiny.tokens.npz; agreement = share of the 128 held-out\n"
        "sequences where the compact model's argmax equals the original model's (onnxruntime; the random-weight\n"
        "teacher puts all of them in class 0), KL = mean KL(teacher || compact), R^2 = 1 - SSE / SS of the\n"
        "teacher's held-out logits about their mean (the share of its variation across inputs kept). Budget: 240 steps at batch 32, AdamW lr 1e-3, one libtorch thread.\n\n"
    )
    if a.note:
        header += a.note + "\n\n"
    Path(a.md).write_text(header + table(runs) + "\n")
    print(table(runs))


if __name__ == "__main__":
    main()
