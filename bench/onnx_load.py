"""Baseline for the load benchmark: onnx.load on the same file, in a fresh process.

Prints one JSON line with wall seconds and peak RSS (ru_maxrss), like bench_load.rs, and
the same as `BENCH {json}` lines for bench/report.py (name `load STEM`, impl `onnx.load`).
"""
import json
import os
import resource
import sys
import time

import onnx

path = sys.argv[1]
start = time.perf_counter()
model = onnx.load(path)
secs = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": secs, "peak_rss": peak, "nodes": len(model.graph.node)}))
name = "load " + os.path.splitext(os.path.basename(path))[0]
for metric, value, unit in [("seconds", secs, "s"), ("peak_rss", peak, "B")]:
    line = {"name": name, "impl": "onnx.load", "metric": metric, "value": value, "unit": unit}
    print("BENCH " + json.dumps(line))
