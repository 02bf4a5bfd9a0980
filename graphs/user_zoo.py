#!/usr/bin/env python3
"""Export the zoo's architectures the way users' files are made: the TorchScript exporter.

Usage:
    python graphs/user_zoo.py --out graphs/user_zoo [--only NAME ...] [--list]

graphs/zoo.py exports every architecture with the dynamo exporter (its defaults, no
cleanup). Users' files also come from `torch.onnx.export(..., dynamo=False)` (the
TorchScript exporter, what Hugging Face Optimum uses), with the exporter's defaults and
no cleanup. This script makes those files, from the same architectures, randomization,
seeds and reference inputs as graphs/zoo.py (imported, not copied), so that every
architecture exists in both forms and oto's analysis can be compared between them.

For every non-bench zoo model NAME, OUT/torchscript/ receives
    NAME.onnx          torch.onnx.export(dynamo=False, opset_version=17), default
                       do_constant_folding, no cleanup; dynamic axes as Optimum writes
                       them: {0: "batch_size"} on every input and output, and
                       {0: "batch_size", 1: "sequence_length"} on token inputs (and on
                       the outputs of token models that keep the sequence axis);
    NAME.op13.onnx     (CNNs: models with image inputs, but for vit_tiny, whose attention
                       the exporter cannot write before opset 14) the same at opset 13;
    NAME.inputs.npz    reference inputs (batch 2), keyed by graph input name (the same
                       arrays as graphs/zoo/NAME.inputs.npz);
    NAME.outputs.npz   PyTorch outputs on them;
    NAME.optimum.onnx  (transformers models) the transformers model itself as Optimum
                       exports it: raw input_ids, attention_mask (and token_type_ids)
                       inputs, masks built inside transformers, sdpa attention; with its
                       own NAME.optimum.inputs.npz / NAME.optimum.outputs.npz;
and OUT/torchscript/index.json describes the files of this run ("reference": the stem
of their .inputs.npz/.outputs.npz) (merged with an existing
one when --only is used).

Every file is checked: onnx.checker, the declared dynamic dims, and onnxruntime (CPU)
outputs vs. PyTorch at batch 2 (the saved inputs) and at batch 3, with zoo.py's
tolerance. Any failure exits non-zero.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zoo  # noqa: E402  (graphs/zoo.py: architectures, randomization, inputs, checks)

import torch  # noqa: E402

EXPORTER = "torchscript"
OPSET = 17
# Extra opset for the CNNs: older files in the wild are opset 13 (Optimum's default for
# many vision models until recently).
IMAGE_OPSETS = (13,)
# Image models that cannot be written at IMAGE_OPSETS, and why.
NO_OLD_OPSETS = {"vit_tiny": "the exporter writes aten::scaled_dot_product_attention from opset 14 on"}
BATCH_DIM = "batch_size"
SEQ_DIM = "sequence_length"
TOKEN_KINDS = ("ids", "mask", "zeros")


class OptimumStyle(torch.nn.Module):
    """A transformers model called the way Optimum exports it: keyword inputs
    (input_ids, attention_mask[, token_type_ids]) as raw [batch, seq] int64 tensors, the
    masks built inside transformers, the model's default attention (sdpa), logits only."""

    def __init__(self, model: torch.nn.Module, names: list[str]):
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *args):
        kw = dict(zip(self.names, args))
        return self.model(**kw, use_cache=False, return_dict=False)[0]


def optimum_variant(zm: zoo.ZooModel, wrapper: torch.nn.Module):
    """For the transformers models: (module, input specs) as Optimum exports them, else None.
    Same parameters as the zoo's wrapper (the same randomized model), sdpa attention."""
    if not isinstance(wrapper, zoo.HFLogits):
        return None
    model = wrapper.model
    model.config._attn_implementation = "sdpa"
    seq = zm.inputs[0].shape
    specs = [zoo.InputSpec("input_ids", seq, "ids", zm.inputs[0].high), zoo.InputSpec("attention_mask", seq, "mask")]
    if "token_type_ids" in model.forward.__code__.co_varnames:
        specs.append(zoo.InputSpec("token_type_ids", seq, "zeros"))
    return OptimumStyle(model, [s.name for s in specs]), specs


def make_inputs(specs: list[zoo.InputSpec], batch: int, seed: int) -> dict[str, np.ndarray]:
    """zoo.make_inputs, plus all-zero token type ids."""
    out = zoo.make_inputs([s for s in specs if s.kind != "zeros"], batch, seed)
    for s in specs:
        if s.kind == "zeros":
            out[s.name] = np.zeros((batch, *s.shape), dtype=np.int64)
    return {s.name: out[s.name] for s in specs}


def dynamic_axes(zm: zoo.ZooModel, outputs: dict[str, np.ndarray]) -> dict[str, dict[int, str]]:
    """Optimum's dynamic axes: batch everywhere, sequence on token inputs and on the
    outputs of token models that keep the sequence axis (e.g. GPT-2's [B, T, V] logits)."""
    token = any(s.kind in TOKEN_KINDS for s in zm.inputs)
    axes = {}
    for s in zm.inputs:
        axes[s.name] = {0: BATCH_DIM, 1: SEQ_DIM} if s.kind in TOKEN_KINDS else {0: BATCH_DIM}
    for name in zm.outputs:
        axes[name] = {0: BATCH_DIM, 1: SEQ_DIM} if token and outputs[name].ndim >= 3 else {0: BATCH_DIM}
    return axes


def export_torchscript(zm: zoo.ZooModel, model: torch.nn.Module, inputs: dict[str, np.ndarray],
                       axes: dict[str, dict[int, str]], opset: int, path: str) -> None:
    args = tuple(torch.from_numpy(inputs[s.name]) for s in zm.inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, args, path, dynamo=False, opset_version=opset,
            input_names=[s.name for s in zm.inputs], output_names=zm.outputs,
            dynamic_axes=axes,
        )


def check_file(zm: zoo.ZooModel, path: str, axes: dict[str, dict[int, str]],
               outputs: dict[str, np.ndarray]) -> None:
    """onnx.checker, and the declared dims: the dynamic axes symbolic under their names,
    every other dim the fixed size of the PyTorch output/input."""
    import onnx

    onnx.checker.check_model(path, full_check=True)
    m = onnx.load(path)
    assert [i.name for i in m.graph.input] == [s.name for s in zm.inputs], \
        f"{path}: inputs {[i.name for i in m.graph.input]}"
    assert [o.name for o in m.graph.output] == zm.outputs, \
        f"{path}: outputs {[o.name for o in m.graph.output]}"
    for vi in [*m.graph.input, *m.graph.output]:
        d = zoo._dims(vi)
        for ax, sym in axes[vi.name].items():
            assert d[ax] == sym, f"{path}: {vi.name} dims {d}: axis {ax} is not {sym!r}"
        fixed = [x for ax, x in enumerate(d) if ax not in axes[vi.name]]
        assert all(isinstance(x, int) and x > 0 for x in fixed), f"{path}: {vi.name} dims {d}"
    for vi in m.graph.output:
        want = [x for ax, x in enumerate(outputs[vi.name].shape) if ax not in axes[vi.name]]
        got = [x for ax, x in enumerate(zoo._dims(vi)) if ax not in axes[vi.name]]
        assert got == want, f"{path}: {vi.name} fixed dims {got} != PyTorch {want}"


def export_variant(zm: zoo.ZooModel, model: torch.nn.Module, stem: str, opsets: list[int],
                   out_dir: str, n_params: int) -> list[dict]:
    """Exports `model` (inputs and outputs as `zm` lists them) as OUT/STEM.onnx at opsets[0]
    and STEM.opN.onnx at the others; checks each; writes STEM.inputs/outputs.npz."""
    import onnx

    seed = zoo.model_seed(zm.name)
    inputs = make_inputs(zm.inputs, zoo.BATCH, seed)
    outputs = zoo.torch_run(zm, model, inputs)
    alt = make_inputs(zm.inputs, zoo.ALT_BATCH, seed + 1000)
    alt_outputs = zoo.torch_run(zm, model, alt)
    axes = dynamic_axes(zm, outputs)
    entries = []
    for k, opset in enumerate(opsets):
        fname = f"{stem}.onnx" if k == 0 else f"{stem}.op{opset}.onnx"
        t0 = time.time()
        path = os.path.join(out_dir, fname)
        export_torchscript(zm, model, inputs, axes, opset, path)
        t_export = time.time() - t0
        check_file(zm, path, axes, outputs)
        worst = zoo.compare(f"{fname}[batch {zoo.BATCH}]", outputs, zoo.ort_run(path, inputs))
        worst = max(worst, zoo.compare(f"{fname}[batch {zoo.ALT_BATCH}]", alt_outputs,
                                       zoo.ort_run(path, alt)))
        m = onnx.load(path)
        ops = collections.Counter(n.op_type for n in m.graph.node)
        entries.append({
            "name": zm.name,
            "file": fname,
            "reference": stem,
            "exporter": EXPORTER,
            "opset": opset,
            "description": zm.description,
            "inputs": [zoo._io_entry(vi, zoo._ONNX_DTYPES[vi.type.tensor_type.elem_type])
                       for vi in m.graph.input],
            "outputs": [zoo._io_entry(vi, zoo._ONNX_DTYPES[vi.type.tensor_type.elem_type])
                        for vi in m.graph.output],
            "params": int(n_params),
            "initializers": len(m.graph.initializer),
            "ops": dict(sorted(ops.items())),
        })
        print(f"[{fname}] {time.time() - t0:6.1f}s (export {t_export:.1f}s) "
              f"nodes={sum(ops.values())} inits={len(m.graph.initializer)} "
              f"Constant={ops['Constant']} size={os.path.getsize(path) / 1e6:.2f}MB "
              f"err/tol={worst:.3f}", flush=True)
    zoo._savez_deterministic(os.path.join(out_dir, stem + ".inputs.npz"), inputs, compress=False)
    zoo._savez_deterministic(os.path.join(out_dir, stem + ".outputs.npz"), outputs, compress=False)
    return entries


def export_one(zm: zoo.ZooModel, out_dir: str) -> list[dict]:
    """Exports (and checks) every file of one architecture; returns their index entries:
    NAME.onnx (and NAME.op13.onnx for CNNs) from the zoo's module, and for transformers
    models NAME.optimum.onnx from the transformers model as Optimum calls it."""
    import dataclasses

    torch.manual_seed(zoo.model_seed(zm.name))
    model = zm.build()
    zoo.randomize(model)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    image = all(s.kind == "image" for s in zm.inputs)
    opsets = [OPSET] + (list(IMAGE_OPSETS) if image and zm.name not in NO_OLD_OPSETS else [])
    entries = export_variant(zm, model, zm.name, opsets, out_dir, n_params)
    variant = optimum_variant(zm, model)
    if variant is not None:
        module, specs = variant
        module.eval()
        ozm = dataclasses.replace(zm, inputs=specs)
        entries += export_variant(ozm, module, zm.name + ".optimum", [OPSET], out_dir, n_params)
    return entries


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="output directory (files go to OUT/torchscript/)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="export only these models")
    ap.add_argument("--list", action="store_true", help="list model names and exit")
    args = ap.parse_args(argv)

    models = [zm for zm in zoo.MODELS if not zm.bench]
    if args.list:
        for zm in models:
            print(zm.name)
        return 0
    if not args.out:
        ap.error("--out is required")
    by_name = {zm.name: zm for zm in models}
    if args.only:
        unknown = [n for n in args.only if n not in by_name]
        if unknown:
            ap.error(f"unknown model(s): {unknown}; known: {list(by_name)}")
        todo = [by_name[n] for n in args.only]
    else:
        todo = models

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    torch.use_deterministic_algorithms(True)
    out_dir = os.path.join(args.out, EXPORTER)
    os.makedirs(out_dir, exist_ok=True)
    index_path = os.path.join(out_dir, "index.json")
    index: dict[str, list[dict]] = {}
    if args.only and os.path.exists(index_path):
        with open(index_path) as f:
            for e in json.load(f)["models"]:
                index.setdefault(e["name"], []).append(e)

    t0 = time.time()
    failed = []
    for zm in todo:
        try:
            index[zm.name] = export_one(zm, out_dir)
        except Exception as e:  # report every failure, then exit non-zero
            import traceback

            traceback.print_exc()
            print(f"[{zm.name}] FAILED: {e}", file=sys.stderr, flush=True)
            failed.append(zm.name)
            index.pop(zm.name, None)
            for f in os.listdir(out_dir):  # no half-verified files
                if f.startswith(zm.name + "."):
                    os.remove(os.path.join(out_dir, f))

    with open(index_path, "w") as f:
        json.dump({"exporter": EXPORTER, "batch_dim": BATCH_DIM, "sequence_dim": SEQ_DIM,
                   "models": [e for zm in models for e in index.get(zm.name, [])]}, f, indent=1)
        f.write("\n")
    print(f"total {time.time() - t0:.1f}s, {len(todo) - len(failed)}/{len(todo)} models ok -> {out_dir}")
    if failed:
        print(f"FAILED: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
