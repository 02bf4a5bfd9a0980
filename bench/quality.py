"""The pruning-quality grid (`make bench-quality`): `oto prune` of the digits CNN
(examples/digits.toml, examples/data) over budgets, targets, seeds and methods, with the
compact model's test accuracy, parameters and MACs of every run, summarized in
bench/quality.md (mean, standard error and worst seed per cell) and bench/quality.json
(every run).

    python bench/quality.py --oto target/release/oto                    # the whole grid
    python bench/quality.py --budgets demo --targets s0.8,m0.25 --seeds 0,1,2
    python bench/quality.py --budgets "" --note "..."                  # only rewrite the table

Targets: `sX` group sparsity X (--target-sparsity), `mX` MACs ratio X (--target-macs),
`pX` parameter ratio X (--target-params). Budgets: `demo` (the demo job: 8 epochs =
352 steps at batch 32, SGD lr 0.05 cosine), `30ep` (30 epochs at batch 64, SGD lr 0.05
momentum 0.9, cosine: the budget of OTO's reference run). Runs already in the JSON file
(same budget, target, method, seed and extra options) are not run again unless --fresh,
so the grid can be filled in parts on a busy machine.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGETS = {
    "demo": ["--epochs", "8", "--batch-size", "32", "--lr", "0.05", "--optimizer", "sgd", "--schedule", "cosine"],
    "30ep": ["--epochs", "30", "--batch-size", "64", "--lr", "0.05", "--optimizer", "sgd", "--schedule", "cosine"],
}
ALL_TARGETS = ["s0.5", "s0.7", "s0.8", "s0.9", "m0.5", "m0.25", "m0.1", "p0.17", "p0.05", "p0.02", "p0.011"]
FLAG = {"s": "--target-sparsity", "m": "--target-macs", "p": "--target-params"}


HAND = "<!-- by hand -->"

# The method name of the baseline's runs (bench/quality_oto.py: OTO 3.0.1's HESSO).
BASELINE = "oto-3.0.1"

IMPORTANCE = ["magnitude", "avg_magnitude", "cosine", "taylor1", "taylor2", "obd"]


def job_config(spec, folder):
    """A copy of examples/digits.toml without its quantization (`quantize`, `quantize_block_size`:
    the grid measures the compact float model, and the demo's size budget is below what the
    smallest compact models can reach), with `[hesso.importance]` set from `spec` when given
    ("obd=1,magnitude=0": the criteria weights, which `oto prune` takes from a job file only),
    written into `folder` so that its relative paths still resolve. Unnamed weights keep their
    defaults (0.2, obd 0)."""
    lines = (ROOT / "examples/digits.toml").read_text().splitlines(keepends=True)
    text = "".join(line for line in lines if not line.startswith("quantize"))
    if spec:
        weights = {k: (0.0 if k == "obd" else 0.2) for k in IMPORTANCE}
        for item in spec.split(","):
            name, _, value = item.partition("=")
            if name not in weights:
                sys.exit(f"--importance {spec}: unknown criterion '{name}' (one of {', '.join(IMPORTANCE)})")
            weights[name] = float(value)
        text += "\n[hesso.importance]\n" + "".join(f"{k} = {v}\n" for k, v in weights.items())
    f = tempfile.NamedTemporaryFile("w", dir=folder, prefix=".quality-", suffix=".toml", delete=False)
    f.write(text)
    f.close()
    return Path(f.name)


def run_one(oto, budget, target, method, seed, extra, threads):
    # `importance=SPEC` in extra: the criteria weights through the job file (see job_config).
    specs = [e.partition("=")[2] for e in extra if e.startswith("importance=")]
    extra = [e for e in extra if not e.startswith("importance=")]
    config = job_config(specs[-1] if specs else "", ROOT / "examples")
    try:
        return run_with_config(oto, config, budget, target, method, seed, extra, threads)
    finally:
        config.unlink()


def run_with_config(oto, config, budget, target, method, seed, extra, threads):
    with tempfile.TemporaryDirectory(prefix="oto-quality-") as out:
        cmd = [oto, "prune", "--config", str(config), "--out", out, "--seed", str(seed)]
        cmd += BUDGETS[budget] + [FLAG[target[0]], target[1:], "--threads", str(threads), "--device", "cpu", "-q"]
        if method == "cric":
            cmd.append("--cric")
        cmd += extra
        started = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip()[-2000:], "cmd": cmd}
        r = json.loads((Path(out) / "report.json").read_text())
    return {
        "accuracy": r["quality"]["compact"]["accuracy"],
        "params": r["params"]["after"],
        "params_ratio": r["params"]["after"] / r["params"]["before"],
        "macs": r["macs"]["after"],
        "macs_ratio": r["macs"]["after"] / r["macs"]["before"],
        "group_sparsity": r["group_sparsity"],
        "narrow_groups": len(r.get("narrow_groups", [])),
        "seconds": time.time() - started,
    }


def key(run):
    return (run["budget"], run["target"], run["method"], run["seed"], " ".join(run["extra"]))


def record(path, runs, run, key, label, summary):
    """Prints `run`'s result under `label` (`summary` of it, or the failure) and writes
    `runs` to `path` with `run` in place of an earlier run of the same `key`; returns them."""
    res = run["result"]
    if "error" in res:
        print(f"{label}: FAILED {res['error'][-300:]}", file=sys.stderr)
    else:
        print(f"{label}: {summary(res)}", flush=True)
    runs = [r for r in runs if key(r) != key(run)] + [run]
    path.write_text(json.dumps(runs, indent=1))
    return runs


def stats(values):
    n = len(values)
    mean = sum(values) / n
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else float("nan")
    return mean, se


def table(runs):
    cells = {}
    for r in runs:
        if "error" in r["result"]:
            continue
        cells.setdefault((r["budget"], r["target"], " ".join(r["extra"])), {}).setdefault(r["method"], []).append(r)
    lines = [
        "| budget | target | options | method | seeds | accuracy mean ± s.e. | worst | params ratio | MACs ratio | narrow groups |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    # Sparsities rising, then MACs and parameter ratios falling: from the largest model down.
    def order(target):
        value = float(target[1:])
        return ("smp".index(target[0]), value if target[0] == "s" else -value)

    for (budget, target, extra), methods in sorted(cells.items(), key=lambda c: (c[0][0], order(c[0][1]), c[0][2])):
        for method in sorted(methods):
            rs = sorted(methods[method], key=lambda r: r["seed"])
            acc = [100 * r["result"]["accuracy"] for r in rs]
            mean, se = stats(acc)
            pr = sum(r["result"]["params_ratio"] for r in rs) / len(rs)
            mr = sum(r["result"]["macs_ratio"] for r in rs) / len(rs)
            nar = sum(r["result"]["narrow_groups"] for r in rs)
            se_text = "" if math.isnan(se) else f" ± {se:.2f}"
            seeds = ",".join(str(r["seed"]) for r in rs)
            lines.append(
                f"| {budget} | {target} | {extra or '-'} | {method} | {seeds} | {mean:.2f}%{se_text} | {min(acc):.2f}% | {pr:.3f} | {mr:.3f} | {nar} |"
            )
    return "\n".join(lines)


def baseline_checks(runs):
    """Per cell of the baseline (`bench/quality_oto.py`'s OTO 3.0.1 runs): its mean accuracy and
    parameters ratio against oto's rows budgeted at that ratio (target `pR`, R the baseline's
    mean ratio to three decimals), each marked whether its mean ratio is at most the baseline's
    and its mean accuracy at least the baseline's."""
    rows = {}
    for r in runs:
        if "error" not in r["result"]:
            rows.setdefault((r["budget"], r["target"], r["method"], " ".join(r["extra"])), []).append(r["result"])
    lines = []
    for (budget, target, method, extra), base in sorted(rows.items()):
        if method != BASELINE:
            continue
        ratio = sum(r["params_ratio"] for r in base) / len(base)
        mean, se = stats([100 * r["accuracy"] for r in base])
        budgeted = f"p{ratio:.3f}".rstrip("0")
        ours = []
        for (b, t, m, x), rs in sorted(rows.items()):
            if b == budget and t == budgeted and m != BASELINE:
                r_mean, r_se = stats([100 * r["accuracy"] for r in rs])
                r_ratio = sum(r["params_ratio"] for r in rs) / len(rs)
                met = "at least" if r_ratio <= ratio and r_mean >= mean else "NOT at least"
                ours.append(f"{m}{' ' + x if x else ''} {r_mean:.2f}% ± {r_se:.2f} at {r_ratio:.3f}x ({len(rs)} seeds; {met} OTO's)")
        found = "; ".join(ours) if ours else f"no `{budgeted}` rows"
        lines.append(f"- {BASELINE} {budget} {target}: {mean:.2f}% ± {se:.2f} at {ratio:.3f}x parameters ({len(base)} seeds); oto at `{budgeted}`: {found}")
    return "\n".join(lines)


def checks(runs):
    """The quality criteria, computed from the runs (one line each): per set of options, the
    cells where CRIC's mean accuracy is below HESSO's minus HESSO's standard error, and the
    seeds more than 3 points below their cell's mean; then the comparison with the baseline
    ([`baseline_checks`])."""
    cells = {}
    for r in runs:
        if "error" not in r["result"] and r["method"] != BASELINE:
            cells.setdefault((" ".join(r["extra"]), r["budget"], r["target"]), {}).setdefault(r["method"], []).append(100 * r["result"]["accuracy"])
    lines = []
    for options in sorted({c[0] for c in cells}):
        both = [(c, m) for c, m in sorted(cells.items()) if c[0] == options and len(m.get("hesso", [])) > 1 and m.get("cric")]
        if both:
            missed = []
            for (_, budget, target), m in both:
                (mh, sh), (mc, _) = stats(m["hesso"]), stats(m["cric"])
                if mc < mh - sh:
                    missed.append(f"{budget} {target} ({mc:.2f}% vs {mh:.2f}% ± {sh:.2f})")
            lines.append(f"- options `{options or '-'}`: CRIC >= HESSO - 1 s.e. in {len(both) - len(missed)} of {len(both)} cells" + (f"; not in {', '.join(missed)}" if missed else ""))
        low = []
        for (_, budget, target), m in sorted(c for c in cells.items() if c[0][0] == options):
            for method, acc in sorted(m.items()):
                mean = stats(acc)[0]
                if len(acc) > 1 and min(acc) < mean - 3:
                    low.append(f"{budget} {target} {method} ({min(acc):.2f}% vs {mean:.2f}%)")
        lines.append(f"- options `{options or '-'}`: seeds more than 3 points below their cell's mean: " + (", ".join(low) if low else "none"))
    return "\n".join(lines + ([baseline_checks(runs)] if any(r["method"] == BASELINE for r in runs) else []))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--oto", default=str(ROOT / "target/release/oto"))
    p.add_argument("--budgets", default="demo,30ep")
    p.add_argument("--targets", default=",".join(ALL_TARGETS))
    p.add_argument("--methods", default="hesso,cric")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--extra", default="", help="more `oto prune` options for every run, e.g. '--max-group-sparsity 1'")
    p.add_argument(
        "--importance",
        default="",
        help="HESSO's criteria weights for every run, e.g. 'obd=1,magnitude=0,avg_magnitude=0,cosine=0,taylor1=0,taylor2=0' "
        "(through a copy of the job file; recorded in the runs' options as importance=...)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=str(ROOT / "bench/quality.json"))
    p.add_argument("--md", default=str(ROOT / "bench/quality.md"))
    p.add_argument("--note", default="", help="a line for the table's header (machine load, what was left out) [default: the table's present one]")
    p.add_argument("--fresh", action="store_true", help="rerun runs already in the JSON file")
    a = p.parse_args()

    path = Path(a.json)
    runs = json.loads(path.read_text()) if path.exists() else []
    done = {key(r): r for r in runs if "error" not in r["result"]}
    extra = a.extra.split() + ([f"importance={a.importance}"] if a.importance else [])
    for budget in [b for b in a.budgets.split(",") if b]:
        for target in a.targets.split(","):
            for method in a.methods.split(","):
                for seed in [int(s) for s in a.seeds.split(",")]:
                    run = {"budget": budget, "target": target, "method": method, "seed": seed, "extra": extra}
                    if key(run) in done and not a.fresh:
                        continue
                    run["result"] = run_one(a.oto, budget, target, method, seed, extra, a.threads)
                    runs = record(
                        path,
                        runs,
                        run,
                        key,
                        f"{budget} {target} {method} seed {seed} {a.extra}".rstrip(),
                        lambda res: f"acc {100 * res['accuracy']:.2f}% params {res['params_ratio']:.3f} MACs {res['macs_ratio']:.3f} "
                        f"({res['seconds']:.0f} s)",
                    )
                    done[key(run)] = run
    header = (
        "# Pruning-quality grid: digits CNN\n\n"
        "Written by `make bench-quality` (`bench/quality.py`; every run in bench/quality.json). The demo CNN of\n"
        "examples/digits.toml pruned by `oto prune` on examples/data (1,438 training images), test accuracy of\n"
        "the compact model on the 359 held-out images (dense, trained the same way: about 99%). Budgets: `demo` =\n"
        "352 steps at batch 32, `30ep` = 30 epochs at batch 64 (SGD lr 0.05 momentum 0.9, cosine). Targets: `sX`\n"
        "group sparsity X, `mX` MACs ratio X, `pX` parameters ratio X.\n\n"
    )
    note = a.note or previous_note(Path(a.md), header)
    if note:
        header += note + "\n\n"
    write_md(Path(a.md), header + table(runs) + "\n\nComputed from these runs:\n\n" + checks(runs) + "\n")
    print(table(runs))


def previous_note(md, header):
    """The note of the table `md` holds (between the fixed header and the table), so that
    rewriting the table without --note keeps it."""
    old = md.read_text() if md.exists() else ""
    if not old.startswith(header):
        return ""
    return old[len(header) :].split("\n| budget |", 1)[0].strip()


def write_md(md, text):
    """Writes a results file, keeping the sections written by hand after the marker (runs on other
    machines or of other commits)."""
    old = md.read_text() if md.exists() else ""
    kept = "\n" + HAND + old.split(HAND, 1)[1] if HAND in old else ""
    md.write_text(text + kept)


if __name__ == "__main__":
    main()
