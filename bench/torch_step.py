"""Baseline for the training-step benchmark: PyTorch eager on the zoo model's architecture.

python bench/torch_step.py NAME --batch B [--steps N] [--threads T] [--device D]; prints one JSON line
(median step seconds, peak RSS), like crates/torch/examples/bench_step.rs, and the same as
`BENCH {json}` lines for bench/report.py (name `step NAME`, impl `pytorch`).
"""
import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "graphs"))
import zoo  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("name")
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--steps", type=int, default=20)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--device", default="cpu")
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
zm = {m.name: m for m in zoo.MODELS}[a.name]
model = zm.build()
zoo.randomize(model)
model.to(a.device).train()
inputs = []
for s in zm.inputs:
    shape = (a.batch, *s.shape)
    if s.name == "input_ids":
        inputs.append(torch.randint(1, 1000, shape))
    elif s.name == "attention_mask":
        inputs.append(torch.ones(shape, dtype=torch.int64))
    else:
        inputs.append(torch.randn(shape))
inputs = [t.to(a.device) for t in inputs]
with torch.no_grad():
    classes = model(*inputs).shape[-1]
labels = torch.randint(0, classes, (a.batch,)).to(a.device)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
times = []
for step in range(a.steps + 3):
    start = time.perf_counter()
    out = model(*inputs)
    loss = F.cross_entropy(out, labels)
    opt.zero_grad()
    loss.backward()
    opt.step()
    loss.item()
    if step >= 3:
        times.append(time.perf_counter() - start)
times.sort()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
median = times[len(times) // 2]
print(json.dumps({"impl": "pytorch", "median_step_s": median, "peak_rss": peak}))
for metric, value, unit in [("median_step", median, "s"), ("peak_rss", peak, "B")]:
    line = {"name": "step " + a.name, "impl": "pytorch", "metric": metric, "value": value, "unit": unit}
    print("BENCH " + json.dumps(line))
