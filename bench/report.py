"""Writes the benchmark results table (bench/results.md) from the output of `make bench`.

python bench/report.py LOG [--out bench/results.md] [--note TEXT]

LOG is the captured output of the whole run. Every benchmark prints its results as lines
`BENCH {"name": ..., "impl": ..., "metric": ..., "value": ..., "unit": ...}`; the Makefile
adds `BENCH_LOADAVG a b c` lines at the start and the end. The targets live here, in ROWS.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from importlib import metadata

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def read_log(path):
    results, loadavg = {}, []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if line.startswith("BENCH_LOADAVG "):
                loadavg.append(line.split(None, 1)[1])
            elif line.startswith("BENCH {"):
                try:
                    r = json.loads(line[len("BENCH "):])
                    results[(r["name"], r["impl"], r["metric"])] = float(r["value"])
                except (ValueError, KeyError) as e:
                    sys.exit(f"{path}:{number}: malformed BENCH line ({e}): {line}")
    return results, loadavg


def seconds(v):
    if v >= 1:
        return f"{v:.2f} s"
    if v >= 1e-3:
        return f"{v * 1e3:.3g} ms"
    return f"{v * 1e6:.3g} µs"


def megabytes(v):
    return f"{v / 1e6:.0f} MB"


def times(v):
    return f"{v:.2f}x"


def ratio_at_most(limit):
    return ("ratio", f"ratio <= {limit:.2f}", lambda x: x <= limit)


def ratio_below(limit):
    return ("ratio", f"ratio < {limit:g}", lambda x: x < limit)


def value_at_most(limit, text):
    return ("value", f"<= {text}", lambda x: x <= limit)


def value_below(limit, text):
    return ("value", f"< {text}", lambda x: x < limit)


def rss_over_file(name, rss_metric):
    return lambda r: r[(name, "oto", rss_metric)] / r[(name, "oto", "file_size")]


def row(bench, what, oto, fmt, baseline=None, target=None):
    """A table row. `oto` and `baseline` are keys (name, impl, metric) of the results, or
    functions of the results (derived values); a target applies to the ratio oto/baseline
    or to oto's value."""
    return (bench, what, oto, baseline, fmt, target)


def rows(results):
    load = "load bert_base"
    onnx_seconds, onnx_rss = (load, "onnx.load", "seconds"), (load, "onnx.load", "peak_rss")
    out = [
        row(load, "load + graph index, weights mapped not read", (load, "oto", "seconds"), seconds,
            onnx_seconds, ratio_below(1)),
        row(load, "load + graph index + read every weight byte", (load, "oto", "seconds_all_weights"), seconds,
            onnx_seconds, ratio_below(1)),
        row(load, "peak RSS, weights mapped not read", (load, "oto", "peak_rss"), megabytes, onnx_rss),
        row(load, "peak RSS, every weight byte read", (load, "oto", "peak_rss_all_weights"), megabytes, onnx_rss),
        row(load, "peak RSS over the model file size, every weight byte read",
            rss_over_file(load, "peak_rss_all_weights"), times),
    ]
    analysis_targets = {
        "llama7b-shaped": value_below(5, "5 s"),
        "resnet50": value_below(1, "1 s"),
        "bert_base": value_below(1, "1 s"),
    }
    for name in sorted({n for (n, _, _) in results if n.startswith("analyze ")}):
        target = analysis_targets.get(name[len("analyze "):])
        if (name, "oto", "seconds") in results:
            out.append(row(name, "pruning-group analysis, mean of 5", (name, "oto", "seconds"), seconds, target=target))
    file_targets = {
        "bert_base_optimum": value_below(1, "1 s"),
        "llama7b_torchscript": value_below(5, "5 s"),
    }
    for name in sorted({n for (n, _, m) in results if n.startswith("analyze ") and m == "seconds_from_file"}):
        target = file_targets.get(name[len("analyze "):])
        out.append(row(name, "as `oto analyze` reads an exporter's file: load + normalization + analysis, mean of 5",
                       (name, "oto", "seconds_from_file"), seconds, target=target))
    for model in ("bert_base", "resnet50"):
        name, ort = f"construct {model}", f"ort latency {model}"
        big = model == "bert_base"
        out += [
            row(name, "construction at 50% of every prunable group", (name, "oto", "seconds"), seconds,
                target=value_at_most(2, "2 s") if big else None),
            row(name, "process peak RSS over the model file size", rss_over_file(name, "peak_rss"), times,
                target=value_at_most(2.5, "2.5x") if big else None),
        ]
        macs = results.get((ort, "compact", "macs_ratio"))
        batch = results.get((ort, "compact", "batch"))
        what = "onnxruntime latency, compact vs full (2 threads"
        what += f", batch {batch:.0f}" if batch is not None else ""
        what += f"; MACs ratio {macs:.3f})" if macs is not None else ")"
        out.append(row(ort, what, (ort, "compact", "median_latency"), seconds, (ort, "full", "median_latency")))
    for model in ("resnet18", "bert_tiny"):
        name = f"step {model}"
        out += [
            row(name, "training step (fwd+bwd+SGD momentum), median, vs PyTorch eager", (name, "oto", "median_step"),
                seconds, (name, "pytorch", "median_step"), ratio_at_most(1.10)),
            row(name, "process peak RSS, vs PyTorch eager", (name, "oto", "peak_rss"), megabytes,
                (name, "pytorch", "peak_rss")),
        ]
    for model in ("resnet18", "bert_tiny"):
        name = f"hvp {model}"
        out += [
            row(name, "Hessian-vector product on a new batch (fwd, bwd with graph, product), vs one gradient (fwd+bwd)",
                (name, "oto", "hvp_fresh"), seconds, (name, "oto", "grad"), ratio_at_most(2.5)),
            row(name, "one more Hessian-vector product from the kept graph, vs one gradient",
                (name, "oto", "hvp_cached"), seconds, (name, "oto", "grad")),
            row(name, "PyTorch eager (bench/hvp_torch.py): product on a new batch, vs one gradient",
                (name, "pytorch", "hvp_fresh"), seconds, (name, "pytorch", "grad")),
            row(name, "PyTorch eager: product from the kept graph, vs one gradient",
                (name, "pytorch", "hvp_cached"), seconds, (name, "pytorch", "grad")),
            row(name, "Hutchinson sample over 2 batches, each batch's graph shared by a pass of directions, "
                "vs one product at a time", (name, "oto", "hutch_shared_per_sample"), seconds,
                (name, "oto", "hutch_single_per_sample"), ratio_below(1)),
        ]
    for model in ("resnet18", "bert_tiny"):
        name = f"hesso {model}"
        out += [
            row(name, "training step, mean over a whole HESSO schedule, vs plain SGD", (name, "hesso", "mean_step"),
                seconds, (name, "plain", "mean_step"), ratio_at_most(1.10)),
            row(name, "training step, mean over the schedule with each phase's median for its steps "
                "(robust to bursts of a shared machine), vs plain SGD", (name, "hesso", "phase_weighted_median_step"),
                seconds, (name, "plain", "phase_weighted_median_step"), ratio_at_most(1.10)),
            row(name, "training step, median over the schedule, vs plain SGD", (name, "hesso", "median_step"),
                seconds, (name, "plain", "median_step")),
            row(name, "training step, mean of the period starts (scoring), vs plain SGD",
                (name, "hesso", "mean_period_start_step"), seconds, (name, "plain", "mean_period_start_step")),
        ]
    return out


def value_of(results, key):
    if key is None:
        return None
    try:
        return key(results) if callable(key) else results[key]
    except (KeyError, ZeroDivisionError):
        return None


def table(results):
    lines = [
        "| Benchmark | What | oto | Baseline | Ratio | Target | Met |",
        "|---|---|---:|---:|---:|---|:-:|",
    ]
    failed = []
    for bench, what, oto_key, base_key, fmt, target in rows(results):
        oto, base = value_of(results, oto_key), value_of(results, base_key)
        ratio = oto / base if oto is not None and base else None
        baseline = "" if base_key is None else ("not run" if base is None else f"{fmt(base)} ({base_key[1]})")
        text, met = "", ""
        if target is not None:
            on, text, check = target
            checked = ratio if on == "ratio" else oto
            met = "" if checked is None else ("yes" if check(checked) else "**no**")
        if met == "**no**":
            failed.append(f"{bench}: {what}")
        shown = "not run" if oto is None else fmt(oto)
        cells = [bench, what, shown, baseline, "" if ratio is None else f"{ratio:.3f}", text, met]
        lines.append("| " + " | ".join(cells) + " |")
    return lines, failed


def command(*args):
    try:
        return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def machine(log, loadavg, note):
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    memory = ""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
            memory = f"{kb / 1024**2:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    commit = command("git", "rev-parse", "--short=12", "HEAD")
    if command("git", "status", "--porcelain", "--untracked-files=no"):
        commit += " with uncommitted changes"
    versions = []
    for package in ("torch", "onnx", "onnxruntime"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pass
    finished = datetime.datetime.fromtimestamp(os.path.getmtime(log), datetime.timezone.utc)
    lines = [
        f"- Date: {finished.strftime('%Y-%m-%d %H:%M UTC')} (end of the run)",
        f"- Commit: {commit or 'unknown'}",
        f"- CPU: {cpu or platform.processor() or 'unknown'}, {os.cpu_count()} logical cores;"
        f" memory {memory or 'unknown'}",
        f"- System: {platform.platform()}; Python {platform.python_version()}; {', '.join(versions)}",
    ]
    if loadavg:
        lines.append(f"- Load average (1/5/15 min) at the start: {loadavg[0]}; at the end: {loadavg[-1]}")
    if note:
        lines.append(f"- Note: {note}")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results.md"))
    ap.add_argument("--note", default="", help="a line about the run (e.g. that the machine was shared)")
    a = ap.parse_args()
    results, loadavg = read_log(a.log)
    if not results:
        sys.exit(f"{a.log}: no BENCH lines")
    body, failed = table(results)
    text = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`bench/report.py` from the captured output of the run); rerun it",
        "rather than editing this file. Ratio: oto over the baseline (lower is better); times are",
        "wall-clock medians or means as stated; RSS is the peak resident memory of the benchmark process.",
        "",
        *machine(a.log, loadavg, a.note),
        "",
        *body,
        "",
    ]
    if failed:
        text += ["Targets missed: " + "; ".join(failed) + ".", ""]
    with open(a.out, "w", encoding="utf-8") as f:
        f.write("\n".join(text))
    print(f"wrote {a.out} ({len(body) - 2} rows{', targets missed: ' + str(len(failed)) if failed else ''})")


if __name__ == "__main__":
    main()
