"""The quality grid's second task: BERT-tiny (graphs/zoo/bert_tiny.onnx, a 2-class sequence
classifier) pruned by distillation from a trained teacher, HESSO and CRIC, at MACs budgets.

The teacher is the zoo's BERT-tiny trained briefly on bench/quantize_zoo.py's synthetic token task
(the same data and training command, so both benchmarks share one teacher: 200 AdamW steps; label 1
when more than half of the unmasked tokens have ids below 500; 2,048 training and 512 held-out
sequences of 8-16 tokens). The student is pruned by `oto prune --loss distill` on the training
sequences without their labels. Quality, on the 512 held-out sequences in onnxruntime: agreement =
share where the compact model's argmax equals the teacher's; accuracy on the synthetic labels (the
teacher's own accuracy is in the header); KL = mean KL(teacher || compact); R^2 = 1 - SSE / SS of
the teacher's logits about their mean.

    python bench/quality_bert.py --oto target/release/oto                 # the whole grid
    python bench/quality_bert.py --targets m0.5 --seeds 0 --methods cric
    python bench/quality_bert.py --targets "" --note "..."               # only rewrite the table

Budget: 240 steps at batch 32, AdamW lr 1e-3 (examples/bert_tiny_distill.toml), one libtorch
thread. Results: bench/quality_bert.md and bench/quality_bert.json (every run; runs already there
are kept unless --fresh).
"""

import argparse
import json
import math
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from quality import record, stats, write_md
from quantize_zoo import WORK, bert_data, run_model
from quantize_zoo import train as train_teacher

ROOT = Path(__file__).resolve().parent.parent
BUDGET = ["--steps", "240", "--batch-size", "32", "--optimizer", "adamw", "--lr", "1e-3", "--loss", "distill"]
FLAG = {"s": "--target-sparsity", "m": "--target-macs", "p": "--target-params"}


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def run_one(oto, target, method, seed, data, threads, extra=()):
    teacher_model, train, val, held = data
    with tempfile.TemporaryDirectory(prefix="oto-bert-") as out:
        cmd = [oto, "prune", "--model", str(teacher_model), "--data", str(train), "--val", str(val), "--out", out, "--seed", str(seed)]
        cmd += BUDGET + [FLAG[target[0]], target[1:], "--threads", str(threads), "--device", "cpu", "-q"]
        if method == "cric":
            cmd.append("--cric")
        cmd += list(extra)
        started = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip()[-2000:], "cmd": cmd}
        r = json.loads((Path(out) / "report.json").read_text())
        t_logits = run_model(teacher_model, held)
        s_logits = run_model(Path(out) / "model.onnx", held)
        teacher, student = log_softmax(t_logits), log_softmax(s_logits)
    return {
        "agreement": float((teacher.argmax(1) == student.argmax(1)).mean()),
        "accuracy": float((student.argmax(1) == held["labels"]).mean()),
        "kl": float((np.exp(teacher) * (teacher - student)).sum(1).mean()),
        "r2": float(1 - ((s_logits - t_logits) ** 2).sum() / ((t_logits - t_logits.mean(0)) ** 2).sum()),
        "params_ratio": r["params"]["after"] / r["params"]["before"],
        "macs_ratio": r["macs"]["after"] / r["macs"]["before"],
        "group_sparsity": r["group_sparsity"],
        "seconds": time.time() - started,
    }


def key(run):
    return (run["target"], run["method"], run["seed"], " ".join(run.get("extra", [])))


def table(runs):
    cells = {}
    for r in runs:
        if "error" not in r["result"]:
            cells.setdefault((r["target"], " ".join(r.get("extra", []))), {}).setdefault(r["method"], []).append(r)
    lines = [
        "| target | options | method | seeds | agreement mean ± s.e. | worst agreement | accuracy mean | R^2 mean | KL mean | params ratio | MACs ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in sorted(cells, key=lambda c: (-float(c[0][1:]), c[1])):
        target, extra = cell
        for method in sorted(cells[cell]):
            rs = sorted(cells[cell][method], key=lambda r: r["seed"])
            agreement = [100 * r["result"]["agreement"] for r in rs]
            mean, se = stats(agreement)
            se_text = "" if math.isnan(se) else f" ± {se:.2f}"
            avg = lambda f: sum(r["result"][f] for r in rs) / len(rs)  # noqa: E731
            seeds = ",".join(str(r["seed"]) for r in rs)
            lines.append(
                f"| {target} | {extra or '-'} | {method} | {seeds} | {mean:.2f}%{se_text} | {min(agreement):.2f}% | {100 * avg('accuracy'):.2f}% | {avg('r2'):.3f} | {avg('kl'):.5f} | "
                f"{avg('params_ratio'):.3f} | {avg('macs_ratio'):.3f} |"
            )
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--oto", default=str(ROOT / "target/release/oto"))
    p.add_argument("--targets", default="m0.5,m0.25,m0.1")
    p.add_argument("--methods", default="hesso,cric")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--extra", default="", help="more `oto prune` options for every run, e.g. '--lr-after-pruning continue'")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=str(ROOT / "bench/quality_bert.json"))
    p.add_argument("--md", default=str(ROOT / "bench/quality_bert.md"))
    p.add_argument("--note", default="", help="a line for the table's header (machine, commit, what was left out)")
    p.add_argument("--fresh", action="store_true", help="rerun runs already in the JSON file")
    a = p.parse_args()

    path = Path(a.json)
    runs = json.loads(path.read_text()) if path.exists() else []
    done = {key(r) for r in runs if "error" not in r["result"]}
    WORK.mkdir(parents=True, exist_ok=True)
    train, val = bert_data()
    teacher_model = train_teacher(a, "bert_tiny", ROOT / "graphs/zoo/bert_tiny.onnx", train, val,
                                  ["--steps", "200", "--batch-size", "32", "--optimizer", "adamw", "--lr", "1e-3", "--loss", "cross-entropy"])
    held = dict(np.load(val))
    teacher_accuracy = float((run_model(teacher_model, held).argmax(1) == held["labels"]).mean())
    for target in [t for t in a.targets.split(",") if t]:
        for method in a.methods.split(","):
            for seed in [int(s) for s in a.seeds.split(",")]:
                run = {"target": target, "method": method, "seed": seed, "extra": a.extra.split()}
                if key(run) in done and not a.fresh:
                    continue
                run["result"] = run_one(a.oto, target, method, seed, (teacher_model, train, val, held), a.threads, a.extra.split())
                runs = record(
                    path,
                    runs,
                    run,
                    key,
                    f"{target} {method} seed {seed}",
                    lambda res: f"agreement {100 * res['agreement']:.2f}% accuracy {100 * res['accuracy']:.2f}% R^2 {res['r2']:.3f} "
                    f"KL {res['kl']:.5f} params {res['params_ratio']:.3f} MACs {res['macs_ratio']:.3f} ({res['seconds']:.0f} s)",
                )
                done.add(key(run))
    header = (
        "# Pruning-quality grid, second task: BERT-tiny by distillation from a trained teacher\n\n"
        "Written by `bench/quality_bert.py` (every run in bench/quality_bert.json; its docstring has the details).\n"
        "graphs/zoo/bert_tiny.onnx trained on bench/quantize_zoo.py's synthetic token task is the teacher\n"
        f"({100 * teacher_accuracy:.2f}% of the 512 held-out sequences in their class); the student is pruned by\n"
        "`oto prune --loss distill` on the 2,048 training sequences without labels. Agreement: share of the held-out\n"
        "sequences where the compact model's argmax equals the teacher's (onnxruntime); accuracy: on the synthetic\n"
        "labels; R^2 = 1 - SSE / SS of the teacher's held-out logits about their mean; KL = mean KL(teacher || compact).\n"
        "Budget: 240 steps at batch 32, AdamW lr 1e-3, one libtorch thread.\n\n"
    )
    if a.note:
        header += a.note + "\n\n"
    write_md(Path(a.md), header + table(runs) + "\n")
    print(table(runs))


if __name__ == "__main__":
    main()
