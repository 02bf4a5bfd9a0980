#!/usr/bin/env python3
"""PyTorch references for Hessian-vector products, to check oto's second-order code.

Usage:
    python graphs/hessian_ref.py --zoo graphs/zoo --out graphs/hessian_ref [--only NAME ...]

For mlp, demo_cnn and bert_tiny the model is rebuilt exactly as graphs/zoo.py builds it
(graphs/train_ref.py's builder: same seed and randomisation, its weights checked equal to
the initializers of graphs/zoo/NAME.onnx). In eval mode (BatchNorm running statistics, no
Dropout) and in float64, on a fixed labelled batch with mean cross-entropy, it computes
the gradient and torch.autograd.functional.hvp along a fixed Gaussian direction v over the
parameters that are ONNX initializers. For the MLP it also builds the full Hessian (one
HVP per basis vector) and writes its exact trace, per-tensor traces and top eigenvalues.

Written into the out dir:
    NAME.batch.npz    the batch: one array per ONNX graph input, plus `labels`
    NAME.npz          `v/INIT`, `grad/INIT`, `hvp/INIT` keyed and laid out like the ONNX
                      initializers, and `loss` (a scalar); for mlp also `trace`,
                      `trace/INIT` and `eigenvalues` (the 4 largest, descending)
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_ref  # noqa: E402
import zoo  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.func import functional_call  # noqa: E402

MODELS = ["mlp", "demo_cnn", "bert_tiny"]
BATCH = 8


def reference(name: str, zoo_dir: str, out_dir: str) -> None:
    import onnx
    from onnx import numpy_helper

    zm = {m.name: m for m in zoo.MODELS}[name]
    onnx_model = onnx.load(os.path.join(zoo_dir, name + ".onnx"))
    onnx_values = {i.name: numpy_helper.to_array(i) for i in onnx_model.graph.initializer}
    # The PyTorch model that computes what the file computes: BatchNorm fused into its
    # convolution where the exporter fused it (train_ref.as_exported), kept where the file
    # keeps it; its tensors set to the file's exact values (matched by value: the exporter
    # names folded weights itself).
    model = train_ref.build(zm)
    if not any(n.op_type == "BatchNormalization" for n in onnx_model.graph.node):
        model = train_ref.as_exported(model)
    model = model.eval()
    layouts = train_ref.find_layouts(model, onnx_values)  # ONNX name -> (PyTorch name, layout)
    train_ref.load_onnx_values(model, layouts, onnx_values)
    params = dict(model.named_parameters())
    keys = [k for k in onnx_values if k in layouts and layouts[k][0] in params]
    assert keys, f"{name}: no parameter is an ONNX initializer"

    seed = zoo.model_seed(name) + 11
    batch = train_ref.avoid_padding_ids(zm, model, zoo.make_inputs(zm.inputs, BATCH, seed))
    inputs = [torch.from_numpy(batch[s.name]) for s in zm.inputs]
    inputs = [t.double() if t.is_floating_point() else t for t in inputs]
    model = model.double()
    with torch.no_grad():
        classes = model(*inputs).shape[-1]
    labels = np.random.RandomState(seed).randint(0, classes, size=BATCH).astype(np.int64)
    zoo._savez_deterministic(os.path.join(out_dir, f"{name}.batch.npz"), {**batch, "labels": labels}, compress=False)
    target = torch.from_numpy(labels)

    rng = np.random.RandomState(seed + 1)
    v_onnx = {k: rng.standard_normal(onnx_values[k].shape) for k in keys}
    torch_names = {k: layouts[k][0] for k in keys}
    shapes = {k: tuple(params[torch_names[k]].shape) for k in keys}
    primal = tuple(params[torch_names[k]].detach().clone() for k in keys)
    v = tuple(torch.from_numpy(train_ref.undo_layout(v_onnx[k], layouts[k][1], shapes[k])) for k in keys)

    def loss_fn(*flat):
        out = functional_call(model, {torch_names[k]: p for k, p in zip(keys, flat)}, tuple(inputs))
        return F.cross_entropy(out, target)

    loss, hv = torch.autograd.functional.hvp(loss_fn, primal, v)
    grads = torch.autograd.grad(loss_fn(*(p.requires_grad_(True) for p in primal)), primal)
    onnx_layout = lambda k, t: train_ref.apply_layout(t.detach().numpy(), layouts[k][1], onnx_values[k].shape)  # noqa: E731
    arrays = {"loss": np.array(float(loss))}
    for k, g, h in zip(keys, grads, hv):
        arrays[f"v/{k}"] = v_onnx[k].astype(np.float32)
        arrays[f"grad/{k}"] = onnx_layout(k, g)
        arrays[f"hvp/{k}"] = onnx_layout(k, h)
    if name == "mlp":
        arrays.update(full_hessian(loss_fn, primal, keys))
    zoo._savez_deterministic(os.path.join(out_dir, f"{name}.npz"), arrays, compress=False)
    print(f"[{name}] loss {float(loss):.6f}, {len(keys)} tensors, |Hv| "
          f"{float(torch.sqrt(sum((h * h).sum() for h in hv))):.6f}")


def full_hessian(loss_fn, primal, keys) -> dict[str, np.ndarray]:
    """The exact Hessian of the MLP's loss (float64): trace, per-tensor traces, top eigenvalues."""
    flat = [p.detach().clone().requires_grad_(True) for p in primal]
    grads = torch.autograd.grad(loss_fn(*flat), flat, create_graph=True)
    g = torch.cat([x.reshape(-1) for x in grads])
    n = g.numel()
    # Rows in batches of basis vectors (vmap over the backward pass): the same values as one
    # backward per row, about 50x faster.
    rows = []
    for start in range(0, n, 256):
        count = min(256, n - start)
        basis = torch.zeros(count, n, dtype=g.dtype)
        basis[torch.arange(count), torch.arange(start, start + count)] = 1.0
        block = torch.autograd.grad(g, flat, grad_outputs=basis, retain_graph=True, is_grads_batched=True)
        rows.append(torch.cat([r.reshape(r.shape[0], -1) for r in block], dim=1))
    h = torch.cat(rows)
    h = 0.5 * (h + h.T)
    eig = torch.linalg.eigvalsh(h)
    out = {"trace": np.array(float(torch.trace(h))), "eigenvalues": eig.flip(0)[:4].numpy()}
    start = 0
    for k, p in zip(keys, primal):
        end = start + p.numel()
        out[f"trace/{k}"] = np.array(float(torch.diagonal(h)[start:end].sum()))
        start = end
    print(f"[mlp] full Hessian {n}x{n}: trace {out['trace']:.6f}, top eigenvalues {out['eigenvalues']}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--zoo", default=os.path.join(here, "zoo"))
    ap.add_argument("--out", default=os.path.join(here, "hessian_ref"))
    ap.add_argument("--only", nargs="+", metavar="NAME", choices=MODELS)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    torch.use_deterministic_algorithms(True)
    for name in args.only or MODELS:
        reference(name, args.zoo, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
