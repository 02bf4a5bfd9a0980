"""Baseline for the Hessian-vector-product benchmark: the same measurement as
crates/hessian/examples/bench_hvp.rs, in PyTorch eager on the zoo model's architecture.

python bench/hvp_torch.py NAME --batch B [--reps N] [--threads T] [--probes K] [--cpu]

The model is the one the exported graph computes (graphs/train_ref.as_exported: resnet18's
Conv+BatchNorm pairs fused, as the exporter fuses them), in eval mode, float32, mean
cross-entropy on a synthetic labelled batch, every parameter trainable. Medians (and minima, `_min`) of:

* `grad`: forward + backward (one gradient step without the optimizer update);
* `hvp_fresh`: forward, the gradient with create_graph, and the backward of g . v (one
  Hessian-vector product on a new batch: double backpropagation);
* `hvp_cached`: one more backward of g . v on the kept graph (retain_graph): the marginal
  cost of a product per Hutchinson sample or power-iteration step on one batch;
* `hvp_functional`: torch.autograd.functional.hvp (PyTorch's library route; it takes a
  vector-Jacobian product of the gradient, i.e. one more backward than double backprop);
* `hvp_fwd_rev`: forward-over-reverse, torch.func.jvp of torch.func.grad (forward-mode AD
  through the forward and the backward pass: no second backward graph);
* with `--probes K` (K > 1), `hvp_batched_per_probe`: K products at once from the kept
  graph (torch.autograd.grad with is_grads_batched, vmap over the probes), per probe.

Prints one JSON line, and `BENCH {json}` lines (name `hvp NAME`, impl `pytorch`) for
bench/report.py.
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "graphs"))
import train_ref  # noqa: E402
import zoo  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("name")
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--probes", type=int, default=1)
ap.add_argument("--cpu", action="store_true", help="time this thread's CPU time (needs --threads 1)")
a = ap.parse_args()
if a.cpu and a.threads != 1:
    sys.exit("--cpu measures this thread's CPU time: it needs --threads 1")
# With one thread PyTorch computes in the calling thread: its CPU time is what the work
# costs, on a loaded machine too (the wall time also counts the other processes).
clock = time.thread_time if a.cpu else time.perf_counter
torch.set_num_threads(a.threads)
torch.manual_seed(0)
zm = {m.name: m for m in zoo.MODELS}[a.name]
model = train_ref.as_exported(train_ref.build(zm)).eval()
params = [p for p in model.parameters() if p.requires_grad]
inputs = []
for s in zm.inputs:
    shape = (a.batch, *s.shape)
    if s.name == "input_ids":
        inputs.append(torch.randint(1, 1000, shape))
    elif s.name == "attention_mask":
        inputs.append(torch.ones(shape, dtype=torch.int64))
    else:
        inputs.append(torch.randn(shape))
with torch.no_grad():
    classes = model(*inputs).shape[-1]
labels = torch.randint(0, classes, (a.batch,))
v = [torch.randn_like(p) for p in params]


def loss_of(ps=None):
    if ps is None:
        return F.cross_entropy(model(*inputs), labels)
    named = dict(zip([n for n, p in model.named_parameters() if p.requires_grad], ps))
    return F.cross_entropy(torch.func.functional_call(model, named, tuple(inputs)), labels)


def dot(g, u):
    return sum((x * y).sum() for x, y in zip(g, u))


times = {"grad": [], "hvp_fresh": [], "hvp_cached": [], "hvp_functional": [], "hvp_fwd_rev": []}
if a.probes > 1:
    times["hvp_batched_per_probe"] = []
    vs = [torch.stack([torch.randn_like(p) for _ in range(a.probes)]) for p in params]
for rep in range(a.reps + 1):
    start = clock()
    g = torch.autograd.grad(loss_of(), params)
    g[0].sum().item()
    t_grad = clock() - start

    start = clock()
    g = torch.autograd.grad(loss_of(), params, create_graph=True)
    hv = torch.autograd.grad(dot(g, v), params, retain_graph=True)
    hv[0].sum().item()
    t_fresh = clock() - start

    start = clock()
    hv = torch.autograd.grad(dot(g, v), params, retain_graph=True)
    hv[0].sum().item()
    t_cached = clock() - start

    if a.probes > 1:
        start = clock()
        # One scalar per probe: sum_p <g_p, v_k,p>, then a batched vector-Jacobian product.
        dots = torch.stack([dot(g, [t[k] for t in vs]) for k in range(a.probes)])
        eye = torch.eye(a.probes)
        hvk = torch.autograd.grad(dots, params, grad_outputs=eye, is_grads_batched=True, retain_graph=True)
        hvk[0].sum().item()
        t_batched = (clock() - start) / a.probes
    del g

    start = clock()
    _, hv = torch.autograd.functional.hvp(lambda *ps: loss_of(list(ps)), tuple(p.detach() for p in params), tuple(v))
    hv[0].sum().item()
    t_functional = clock() - start

    start = clock()
    primals = tuple(p.detach() for p in params)
    _, hv = torch.func.jvp(lambda *ps: torch.func.grad(lambda qs: loss_of(list(qs)))(ps), primals, tuple(v))
    hv[0].sum().item()
    t_fwd_rev = clock() - start

    if rep > 0:
        times["hvp_fwd_rev"].append(t_fwd_rev)
        times["grad"].append(t_grad)
        times["hvp_fresh"].append(t_fresh)
        times["hvp_cached"].append(t_cached)
        times["hvp_functional"].append(t_functional)
        if a.probes > 1:
            times["hvp_batched_per_probe"].append(t_batched)

med = {k: sorted(t)[len(t) // 2] for k, t in times.items()}
# On a shared machine the noise only adds: the fastest repetition is the cleaner number.
fastest = {k + "_min": min(t) for k, t in times.items()}
g, f, c = med["grad"], med["hvp_fresh"], med["hvp_cached"]
out = {"impl": "pytorch", "model": a.name, "batch": a.batch, "threads": a.threads, "clock": "thread cpu" if a.cpu else "wall",
       **{k + "_s": round(t, 5) for k, t in med.items()}, **{k + "_s": round(t, 5) for k, t in fastest.items()},
       "hvp_fresh_over_two_grads": round(f / (2 * g), 3), "hvp_fresh_over_grad": round(f / g, 3),
       "hvp_cached_over_grad": round(c / g, 3), "hvp_functional_over_grad": round(med["hvp_functional"] / g, 3),
       "hvp_fwd_rev_over_grad": round(med["hvp_fwd_rev"] / g, 3)}
out["min_ratios"] = {k: round(fastest[k + "_min"] / fastest["grad_min"], 3) for k in med if k != "grad"}
if a.probes > 1:
    out["hvp_batched_per_probe_over_grad"] = round(med["hvp_batched_per_probe"] / g, 3)
print(json.dumps(out))
for metric, value in [*med.items(), *fastest.items()]:
    line = {"name": "hvp " + a.name, "impl": "pytorch", "metric": metric, "value": value, "unit": "s"}
    print("BENCH " + json.dumps(line))
