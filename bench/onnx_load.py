"""Baseline for the load benchmark: onnx.load on the same file, in a fresh process.

Prints one JSON line with wall seconds and peak RSS (ru_maxrss), like bench_load.rs.
"""
import json
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
