#!/usr/bin/env python3
"""PyTorch references for training steps, to check oto's libtorch trainer.

Usage:
    python graphs/train_ref.py --out graphs/zoo [--only NAME ...]

For resnet18, bert_tiny and mlp, the model is rebuilt exactly as graphs/zoo.py builds it
(same builder, seed and randomisation) and made the model the exported graph computes:
the exporter's defaults fuse eval-mode BatchNormalization into the convolution before it,
so resnet18's Conv+BN pairs are fused here too (the executor's BatchNormalization in train
mode is reached by the zoo files that keep it: concat_bn and densenet121, BN after a Concat). Every float initializer
of the file is matched to its PyTorch tensor by value (the exporter names folded weights
itself) and its exact values are loaded into the PyTorch model. Then, from those weights, one optimizer step is
taken in PyTorch on a fixed batch with cross-entropy, once with SGD (momentum, weight
decay) and once with AdamW (mlp: three steps with each of SGD+Nesterov, SGD with
dampening, Adam with L2 decay, AdamW), in train mode with every Dropout disabled (p = 0).
Token ids avoid an Embedding's padding_idx (PyTorch's gradient skips that row; ONNX's
Gather cannot).

Written into the out dir:
    NAME.trainstep.batch.npz         the batch: one array per ONNX graph input, plus `labels`
    NAME.trainstep.OPTIMIZER.npz     updated parameters after the steps, keyed and laid out
                                     like the ONNX initializers
    NAME.trainstep.json              hyper-parameters, step count and the loss of each step
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zoo  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

MODELS = ["resnet18", "bert_tiny", "mlp"]
BATCH = 4
OPTIMIZERS = {
    "sgd": {"kind": "sgd", "lr": 0.1, "momentum": 0.9, "dampening": 0.0, "nesterov": False, "weight_decay": 1e-4},
    "adamw": {"kind": "adamw", "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01},
}
# The MLP checks the other optimizer variants over three steps (so that momentum
# dampening and the moments' bias correction matter).
MLP_OPTIMIZERS = {
    "sgd_nesterov": {"kind": "sgd", "lr": 0.05, "momentum": 0.9, "dampening": 0.0, "nesterov": True, "weight_decay": 1e-3},
    "sgd_dampening": {"kind": "sgd", "lr": 0.05, "momentum": 0.8, "dampening": 0.5, "nesterov": False, "weight_decay": 0.0},
    "adam": {"kind": "adam", "lr": 1e-3, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 1e-2},
    "adamw": {"kind": "adamw", "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.1},
}
STEPS = {"mlp": 3}


def make_optimizer(params, cfg: dict) -> torch.optim.Optimizer:
    # foreach=False: the single-tensor algorithms oto implements.
    if cfg["kind"] == "sgd":
        return torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], dampening=cfg["dampening"],
                               nesterov=cfg["nesterov"], weight_decay=cfg["weight_decay"], foreach=False)
    if cfg["kind"] == "adam":
        return torch.optim.Adam(params, lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"],
                                weight_decay=cfg["weight_decay"], foreach=False)
    return torch.optim.AdamW(params, lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"],
                             weight_decay=cfg["weight_decay"], foreach=False)


def layout_candidates(a: np.ndarray, shape: tuple[int, ...]) -> list[tuple[str, np.ndarray]]:
    """Ways a PyTorch tensor may be stored as an ONNX initializer: as is, transposed
    (Linear weights folded to [in, out] for MatMul) or reshaped (GroupNorm scales)."""
    out = []
    if a.shape == shape:
        out.append(("same", a))
    if a.ndim == 2 and a.T.shape == shape:
        out.append(("transpose", np.ascontiguousarray(a.T)))
    if a.size == int(np.prod(shape)) and a.shape != shape:
        out.append(("reshape", a.reshape(shape)))
    return out


def apply_layout(a: np.ndarray, how: str, shape: tuple[int, ...]) -> np.ndarray:
    return {"same": lambda: a, "transpose": lambda: np.ascontiguousarray(a.T), "reshape": lambda: a.reshape(shape)}[how]()


def undo_layout(a: np.ndarray, how: str, shape: tuple[int, ...]) -> np.ndarray:
    """The PyTorch tensor (of `shape`) stored as the initializer `a` in layout `how`."""
    return {"same": lambda: a, "transpose": lambda: np.ascontiguousarray(a.T), "reshape": lambda: a.reshape(shape)}[how]()


def named_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers()):
        out.setdefault(name, t)
    return out


def find_layouts(model: nn.Module, onnx_values: dict[str, np.ndarray]) -> dict[str, tuple[str, str]]:
    """ONNX initializer name -> (PyTorch tensor name, layout) for every float initializer
    of rank >= 1 whose values are a PyTorch tensor's in one layout. The exporter names
    folded weights itself (a transposed Linear weight is `val_N`, a convolution fused with
    its BatchNormalization keeps the weight's name and gets `NAME_bias`), so the match is
    by value: exact for a stored weight, to float32 rounding for a fused one (the
    exporter's arithmetic is not PyTorch's)."""
    tensors = {k: t.detach().numpy() for k, t in named_tensors(model).items() if t.is_floating_point()}
    layouts = {}
    for name, ref in onnx_values.items():
        if ref.dtype != np.float32 or ref.ndim == 0 or ref.size <= 1:
            continue
        match = [(key, how) for key, a in tensors.items() for how, v in layout_candidates(a, ref.shape)
                 if np.allclose(v, ref, rtol=1e-5, atol=1e-6)]
        assert len(match) == 1, f"ONNX initializer '{name}' {ref.shape} equals {len(match)} PyTorch tensors: {match[:4]}"
        layouts[name] = match[0]
    assert layouts, "no PyTorch tensor maps to an ONNX initializer"
    return layouts


@torch.no_grad()
def load_onnx_values(model: nn.Module, layouts: dict[str, tuple[str, str]], onnx_values: dict[str, np.ndarray]) -> None:
    """Sets every mapped PyTorch tensor to its initializer's exact values, so that both
    start from the same weights (the fused ones differ in the last bits)."""
    tensors = named_tensors(model)
    for name, (key, how) in layouts.items():
        t = tensors[key]
        t.copy_(torch.from_numpy(undo_layout(onnx_values[name], how, tuple(t.shape)).copy()))


def onnx_state(model: nn.Module, layouts: dict[str, tuple[str, str]], onnx_values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Parameters and BatchNorm running stats under their ONNX names and layouts."""
    tensors = named_tensors(model)
    return {name: apply_layout(tensors[key].detach().numpy().copy(), how, onnx_values[name].shape)
            for name, (key, how) in layouts.items()}


def as_exported(model: nn.Module) -> nn.Module:
    """The PyTorch model that computes what the exported graph computes: the exporter's
    optimizer fuses every eval-mode BatchNormalization that follows a convolution into it
    (what users get from torch.onnx.export's defaults), so the reference trains the same
    fused convolutions (torch.fx's Conv+BN fusion)."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model
    from torch.fx.experimental.optimization import fuse

    fused = fuse(model.eval())
    left = [n for n, m in fused.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert not left, f"BatchNorm not fused into a convolution: {left}"
    for p in fused.parameters():  # the fused bias of a bias-free conv comes out frozen
        p.requires_grad_(True)
    return fused


def avoid_padding_ids(zm, model: nn.Module, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Token ids never equal an Embedding's padding_idx: PyTorch gives that row no
    gradient, but ONNX has no notion of it (Gather), so such a batch could not agree."""
    pads = {m.padding_idx for m in model.modules() if isinstance(m, nn.Embedding) and m.padding_idx is not None}
    for s in zm.inputs:
        if s.kind != "ids":
            continue
        ids = batch[s.name].copy()
        while np.isin(ids, list(pads)).any():
            hit = np.isin(ids, list(pads))
            ids[hit] = (ids[hit] + 1) % s.high
        batch[s.name] = ids
    return batch


def build(zm) -> nn.Module:
    torch.manual_seed(zoo.model_seed(zm.name))
    model = zm.build()
    zoo.randomize(model)
    return model


def train_steps(zm, model: nn.Module, batch: dict[str, np.ndarray], labels: np.ndarray, cfg: dict,
                steps: int) -> list[float]:
    """`steps` optimizer steps on the same batch; the loss of each (before its update)."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    opt = make_optimizer(model.parameters(), cfg)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        logits = model(*(torch.from_numpy(batch[s.name]) for s in zm.inputs))
        loss = F.cross_entropy(logits, torch.from_numpy(labels))
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def reference(name: str, out_dir: str) -> None:
    import onnx
    from onnx import numpy_helper

    zm = {m.name: m for m in zoo.MODELS}[name]
    onnx_model = onnx.load(os.path.join(out_dir, name + ".onnx"))
    onnx_values = {i.name: numpy_helper.to_array(i) for i in onnx_model.graph.initializer}
    base = as_exported(build(zm))
    layouts = find_layouts(base, onnx_values)
    load_onnx_values(base, layouts, onnx_values)
    initial = onnx_state(base, layouts, onnx_values)

    seed = zoo.model_seed(name) + 7
    batch = avoid_padding_ids(zm, base, zoo.make_inputs(zm.inputs, BATCH, seed))
    with torch.no_grad():
        classes = base.eval()(*(torch.from_numpy(batch[s.name]) for s in zm.inputs)).shape[-1]
    labels = np.random.RandomState(seed).randint(0, classes, size=BATCH).astype(np.int64)
    zoo._savez_deterministic(os.path.join(out_dir, f"{name}.trainstep.batch.npz"), {**batch, "labels": labels}, compress=False)

    steps = STEPS.get(name, 1)
    meta = {"model": name, "loss": "cross-entropy", "batch": BATCH, "steps": steps, "optimizers": {}}
    for opt_name, cfg in (MLP_OPTIMIZERS if name == "mlp" else OPTIMIZERS).items():
        model = copy.deepcopy(base)
        losses = train_steps(zm, model, batch, labels, cfg, steps)
        state = onnx_state(model, layouts, onnx_values)
        changed = sum(not np.array_equal(state[k], initial[k]) for k in state)
        assert changed > len(state) // 2, f"{name}/{opt_name}: only {changed} of {len(state)} tensors changed"
        zoo._savez_deterministic(os.path.join(out_dir, f"{name}.trainstep.{opt_name}.npz"), state, compress=False)
        meta["optimizers"][opt_name] = {**cfg, "losses": losses}
        print(f"[{name}] {opt_name}: losses {losses}, {len(state)} tensors ({changed} changed)")
    with open(os.path.join(out_dir, f"{name}.trainstep.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "zoo"))
    ap.add_argument("--only", nargs="+", metavar="NAME", choices=MODELS)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    torch.use_deterministic_algorithms(True)
    for name in args.only or MODELS:
        reference(name, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
