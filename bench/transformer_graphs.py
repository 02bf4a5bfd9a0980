#!/usr/bin/env python3
"""Transformer graphs for the analysis benchmarks of real exports (issue 12).

Usage (in the Optimum overlay venv, .venv-optimum):
    python bench/transformer_graphs.py --out DIR [--only bert_base_optimum llama7b_torchscript]

Writes, with random weights and nothing of ours done to the exporters' output:
    DIR/bert_base_optimum/model.onnx
        BertForSequenceClassification with the standard BERT-base config (12 layers,
        hidden 768, 12 heads, FFN 3072, vocabulary 30522; 110M parameters), exported by
        Optimum (`optimum.exporters.onnx.main_export`, what `optimum-cli export onnx`
        runs) with its defaults.
    DIR/llama7b_torchscript/model.onnx + weights.bin
        A LLaMA-7B-shaped TorchScript export (32 layers, hidden 4096, 32 heads of 128,
        SwiGLU FFN 11008, vocabulary 32000), shapes only: the same LlamaForCausalLM
        exported by Optimum (the TorchScript exporter) at a narrow width whose sizes
        occur nowhere else in the graph (head dim 22, hidden 704, FFN 517, vocabulary 1001), then every
        initializer and integer constant holding those sizes rescaled to the 7B ones and
        every initializer moved to a sparse external file (27 GB of zeros that take no
        disk and are never read by the analysis). The graph is exactly what the exporter
        writes for the 7B model but for the constant values it folded from the sizes.

Not part of `make graphs`: `make bench` runs it (graphs/bench/transformers/).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "graphs"))
import optimum_zoo  # noqa: E402  (the tiny tokenizer Optimum's export wants beside the model)

# narrow size -> 7B size; each narrow size occurs in the export only where it stands for
# that dimension (checked: no other initializer or integer constant holds it).
LLAMA_SCALE = {22: 128, 11: 64, 704: 4096, 517: 11008, 1001: 32000}
LLAMA_LAYERS = 32
LLAMA_HEADS = 32


def _export(model, task: str, kind: str, target: str) -> str:
    from optimum.exporters.onnx import main_export

    shutil.rmtree(target, ignore_errors=True)
    with tempfile.TemporaryDirectory() as saved:
        model.save_pretrained(saved)
        optimum_zoo._save_tokenizer(saved, kind)
        main_export(saved, target, task=task, library_name="transformers", do_validation=False)
    return os.path.join(target, "model.onnx")


def bert_base_optimum(out: str) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(num_labels=2)).eval()
    path = _export(model, "text-classification", "bert", os.path.join(out, "bert_base_optimum"))
    print(f"[bert_base_optimum] {path}: {os.path.getsize(path) / 1e6:.0f} MB", flush=True)


def _rescaled(values: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda v: LLAMA_SCALE.get(int(v), int(v)), otypes=[values.dtype])(values)


def llama7b_torchscript(out: str) -> None:
    import onnx
    from onnx import numpy_helper
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=1001, hidden_size=704, intermediate_size=517,
                      num_hidden_layers=LLAMA_LAYERS, num_attention_heads=LLAMA_HEADS,
                      num_key_value_heads=LLAMA_HEADS, max_position_embeddings=2048,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = LlamaForCausalLM(cfg).eval()
    target = os.path.join(out, "llama7b_torchscript")
    with tempfile.TemporaryDirectory() as tmp:
        narrow = onnx.load(_export(model, "text-generation", "gpt", os.path.join(tmp, "narrow")))
    g = narrow.graph
    sizes = set(LLAMA_SCALE)
    # Integer constants holding a narrow size: rescaled (shape lists, head dims, splits).
    rescaled = 0
    for n in g.node:
        if n.op_type != "Constant":
            continue
        for a in n.attribute:
            if a.name == "value" and a.t.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
                v = numpy_helper.to_array(a.t)
                if sizes.intersection(int(x) for x in v.flatten()):
                    a.t.CopyFrom(numpy_helper.from_array(_rescaled(v), a.t.name))
                    rescaled += 1
            elif a.name == "value" and any(int(d) in sizes for d in a.t.dims):
                # A small table folded from the sizes (the rotary inverse frequencies
                # [1, head_dim / 2, 1]): same role, the 7B size, values of no concern here.
                dims = [LLAMA_SCALE.get(int(d), int(d)) for d in a.t.dims]
                if int(np.prod(dims)) > 65536:
                    raise SystemExit(f"float constant {n.output[0]} {list(a.t.dims)}: too large to rescale")
                v = numpy_helper.to_array(a.t)
                a.t.CopyFrom(numpy_helper.from_array(np.resize(v, dims).astype(v.dtype), a.t.name))
                rescaled += 1
    os.makedirs(target, exist_ok=True)
    offset = 0
    for t in g.initializer:
        dims = [LLAMA_SCALE.get(int(d), int(d)) for d in t.dims]
        if t.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
            v = numpy_helper.to_array(t)
            if sizes.intersection(int(x) for x in v.flatten()):
                t.CopyFrom(numpy_helper.from_array(_rescaled(v), t.name))
                rescaled += 1
            continue
        if t.data_type != onnx.TensorProto.FLOAT:
            raise SystemExit(f"initializer {t.name}: unexpected type {t.data_type}")
        length = int(np.prod(dims)) * 4
        t.ClearField("raw_data")
        t.ClearField("float_data")
        del t.dims[:]
        t.dims.extend(dims)
        t.data_location = onnx.TensorProto.EXTERNAL
        del t.external_data[:]
        for k, v in (("location", "weights.bin"), ("offset", str(offset)), ("length", str(length))):
            e = t.external_data.add()
            e.key, e.value = k, v
        offset += length
    # Declared shapes of intermediate values would still hold the narrow sizes.
    del g.value_info[:]
    for vi in [*g.input, *g.output]:
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_value"):
                d.dim_value = LLAMA_SCALE.get(d.dim_value, d.dim_value)
    with open(os.path.join(target, "weights.bin"), "wb") as f:
        f.truncate(offset)  # sparse: no disk, never read
    onnx.save(narrow, os.path.join(target, "model.onnx"))
    params = offset // 4
    print(f"[llama7b_torchscript] {target}/model.onnx: {len(g.node)} nodes, {params / 1e9:.2f}B parameters "
          f"(sparse weights.bin), {rescaled} integer constants rescaled", flush=True)


GRAPHS = {"bert_base_optimum": bert_base_optimum, "llama7b_torchscript": llama7b_torchscript}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="+", choices=sorted(GRAPHS))
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for name in args.only or list(GRAPHS):
        t0 = time.time()
        GRAPHS[name](args.out)
        print(f"[{name}] {time.time() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
