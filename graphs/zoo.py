#!/usr/bin/env python3
"""Export the oto model zoo: small, deterministic, randomly initialised ONNX models.

Usage:
    python graphs/zoo.py --out graphs/zoo [--only NAME ...] [--bench] [--list]
    python graphs/zoo.py --digits examples/data

For every model NAME the out dir receives
    NAME.onnx          exactly what torch.onnx.export(model, args, path, dynamo=True,
                       opset_version=18, input_names, output_names, dynamic_shapes) writes
                       with its defaults: its optimizer runs (eval-mode BatchNormalization
                       fused into the convolution before it, Linear weights folded into
                       transposed initializers, constants folded), nothing of ours after;
                       dynamic axes "batch" (axis 0 of every input and output) and
                       "sequence" (axis 1 of token inputs and of token outputs that keep it);
    NAME.inputs.npz    reference inputs (batch 2), keyed by ONNX graph input name;
    NAME.outputs.npz   PyTorch outputs (eval mode, no_grad), keyed by ONNX output name;
    NAME.tokens.npz    (bert_tiny) 512 unlabeled samples, for pruning by distillation;
and the out dir gets an index.json describing all models exported in this run
(merged with an existing index.json when --only is used).

The zoo tests what users hand oto: whatever the exporter writes (Constant nodes, folded
weights, shape arithmetic) is oto's to normalize (crates/onnx/src/normalize.rs), not ours.

Every model is checked after export: onnx.checker (full_check), the input/output names
and declared dynamic axes, and onnxruntime (CPU) outputs vs. PyTorch on the saved
batch-2 inputs and on a fresh batch of size 3 (atol 1e-4 * max(1, max|y|)).
Any failure exits non-zero.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

OPSET = 18
BATCH = 2
ALT_BATCH = 3


# --------------------------------------------------------------------------------------
# digits data
# --------------------------------------------------------------------------------------


def write_digits(out_dir: str) -> None:
    """Write the sklearn 8x8 digits as a fixed, seeded 80/20 split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    perm = np.random.RandomState(0).permutation(len(y))
    n_train = int(round(0.8 * len(y)))
    tr, te = perm[:n_train], perm[n_train:]
    os.makedirs(out_dir, exist_ok=True)
    for name, idx in (("digits_train", tr), ("digits_test", te)):
        path = os.path.join(out_dir, name + ".npz")
        # np.savez_compressed goes through zipfile, whose entries carry the current
        # time; write through our own ZipFile with a fixed date so the bytes are
        # reproducible.
        _savez_deterministic(path, {"x": np.ascontiguousarray(x[idx]), "labels": y[idx]})
        print(f"wrote {path}: x {x[idx].shape} float32, labels {y[idx].shape} int64")


def _savez_deterministic(path: str, arrays: dict[str, np.ndarray], compress: bool = True) -> None:
    import io
    import zipfile

    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=mode) as zf:
        for key in arrays:  # keep the caller's (graph) order
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = mode
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


# --------------------------------------------------------------------------------------
# model definitions
# --------------------------------------------------------------------------------------

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.fc2 = nn.Linear(64, 64)
        self.fc3 = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class DemoCNN(nn.Module):
    """8x8 digits classifier used by the examples."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = self.pool(x)
        x = torch.relu(self.bn3(self.conv3(x)))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


class ConcatBN(nn.Module):
    """Stem conv -> three branches (8, 12, 4 ch) -> Concat -> BN -> ReLU -> conv -> GAP -> FC."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.branch_a = nn.Conv2d(16, 8, 3, padding=1)
        self.branch_b = nn.Conv2d(16, 12, 1)
        self.branch_c = nn.Conv2d(16, 4, 5, padding=2)
        self.bn = nn.BatchNorm2d(24)
        self.conv = nn.Conv2d(24, 32, 3, padding=1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.cat([self.branch_a(x), self.branch_b(x), self.branch_c(x)], dim=1)
        x = torch.relu(self.bn(x))
        x = torch.relu(self.conv(x))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


class GroupedConv(nn.Module):
    """Depthwise-separable block (MobileNet style) plus a general grouped conv (groups=4)."""

    def __init__(self):
        super().__init__()
        self.stem = conv_bn_relu(3, 32)
        self.dw = conv_bn_relu(32, 32, groups=32)  # depthwise: groups == channels
        self.pw = conv_bn_relu(32, 32, k=1)
        self.grouped = conv_bn_relu(32, 32, groups=4)  # general grouped conv
        self.head = nn.Conv2d(32, 48, 1)
        self.fc = nn.Linear(48, 10)

    def forward(self, x):
        x = self.stem(x)
        x = self.pw(self.dw(x))
        x = self.grouped(x)
        x = torch.relu(self.head(x))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


class GroupNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.gn1 = nn.GroupNorm(4, 16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, stride=2)
        self.gn2 = nn.GroupNorm(8, 32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.gn1(self.conv1(x)))
        x = torch.relu(self.gn2(self.conv2(x)))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


class ConvTransposeIN(nn.Module):
    """Image-to-image: Conv-IN-ReLU, ConvTranspose(stride 2)-IN-ReLU, Conv -> 3 channels."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.in1 = nn.InstanceNorm2d(16, affine=True)
        self.up = nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1)
        self.in2 = nn.InstanceNorm2d(8, affine=True)
        self.conv2 = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x):
        x = torch.relu(self.in1(self.conv1(x)))
        x = torch.relu(self.in2(self.up(x)))
        return self.conv2(x)


class SharedConv(nn.Module):
    """One 16->16 conv module applied twice (weight sharing)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.shared = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.shared(x))
        x = torch.relu(self.shared(x))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


class FlattenLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.block1 = conv_bn_relu(3, 8)
        self.block2 = conv_bn_relu(8, 16)
        self.fc1 = nn.Linear(16 * 8 * 8, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = self.block2(self.block1(x))
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        return self.fc2(x)


class HFLogits(nn.Module):
    """Wrapper returning only the logits of a transformers model (prefix "model." is
    stripped from the initializer names after export)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model


class BertLogits(HFLogits):
    """The [batch, seq] int mask is turned into the additive [batch, 1, 1, seq] float mask
    here, which transformers uses as-is (a "prepared 4D mask"): this keeps the ONNX graph
    to Unsqueeze/Cast/Sub/Mul instead of transformers' index-based mask construction."""

    def forward(self, input_ids, attention_mask):
        neg = torch.finfo(torch.float32).min
        ext = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * neg
        # all-zero token types as a [1, seq] constant (broadcast over the batch)
        tt = torch.zeros((1, input_ids.shape[1]), dtype=torch.int64)
        return self.model(input_ids=input_ids, attention_mask=ext, token_type_ids=tt,
                          return_dict=False)[0]


class CausalLMLogits(HFLogits):
    """A causal language model (GPT-2, LLaMA) given a prepared additive [1, 1, seq, seq]
    float causal mask, computed from the sequence length; no padding mask input."""

    def forward(self, input_ids):
        seq = input_ids.shape[1]
        neg = torch.finfo(torch.float32).min
        causal = torch.triu(torch.full((seq, seq), neg, dtype=torch.float32), diagonal=1)
        out = self.model(input_ids=input_ids, attention_mask=causal[None, None],
                         use_cache=False, return_dict=False)
        return out[0]


def _tv(name: str, **kw) -> Callable[[], nn.Module]:
    def build():
        import torchvision

        return getattr(torchvision.models, name)(weights=None, num_classes=10, **kw)

    return build


def _vgg16_bn() -> nn.Module:
    """torchvision vgg16_bn for 64x64 inputs. The stock AdaptiveAvgPool2d((7, 7)) would
    upsample the 2x2 feature map to 7x7, which exports to a Gather/GatherND/Where/Div
    decomposition (and makes classifier.0 a 25088x4096 = 103M-parameter matrix), so the
    pool is AdaptiveAvgPool2d((2, 2)) (-> a 1x1 AveragePool) and classifier.0 is
    Linear(512*2*2, 4096); everything else is torchvision's."""
    import torchvision

    m = torchvision.models.vgg16_bn(weights=None, num_classes=10)
    m.avgpool = nn.AdaptiveAvgPool2d((2, 2))
    m.classifier[0] = nn.Linear(512 * 2 * 2, 4096)
    return m


def _vit_tiny() -> nn.Module:
    from torchvision.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128,
        num_classes=10,
    )


def _bert(hidden: int, layers: int, heads: int, inter: int, vocab: int, max_pos: int) -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=inter, max_position_embeddings=max_pos,
        num_labels=2, attn_implementation="eager",
    )
    m = BertForSequenceClassification(cfg)
    m.config._attn_implementation = "eager"
    return BertLogits(m)


def _gpt2_tiny() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=1000, n_embd=128, n_layer=2, n_head=2, n_positions=64, use_cache=False,
        bos_token_id=999, eos_token_id=999, attn_implementation="eager",
    )
    m = GPT2LMHeadModel(cfg)
    m.config._attn_implementation = "eager"
    return CausalLMLogits(m)


class DistilBertLogits(HFLogits):
    """As BertLogits: the [batch, seq] int mask becomes the additive [batch, 1, 1, seq]
    float mask here, which transformers uses as-is (DistilBERT has no token types)."""

    def forward(self, input_ids, attention_mask):
        neg = torch.finfo(torch.float32).min
        ext = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * neg
        return self.model(input_ids=input_ids, attention_mask=ext, return_dict=False)[0]


def _distilbert_tiny() -> nn.Module:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    cfg = DistilBertConfig(
        vocab_size=1000, dim=128, n_layers=2, n_heads=2, hidden_dim=512, max_position_embeddings=64,
        num_labels=2, attn_implementation="eager",
    )
    m = DistilBertForSequenceClassification(cfg)
    m.config._attn_implementation = "eager"
    return DistilBertLogits(m)


def _llama_tiny() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=1000, hidden_size=128, num_hidden_layers=2, num_attention_heads=8,
        num_key_value_heads=2, intermediate_size=256, max_position_embeddings=64,
        rms_norm_eps=1e-6, tie_word_embeddings=False, use_cache=False,
        bos_token_id=1, eos_token_id=2, attn_implementation="eager",
    )
    m = LlamaForCausalLM(cfg)
    m.config._attn_implementation = "eager"
    # randomize() knows torch's norms only: the RMSNorm scales (ones, which the TorchScript
    # exporter would merge into one initializer) are randomized here, seeded like the rest.
    with torch.no_grad():
        for mod in m.modules():
            if type(mod).__name__.endswith("RMSNorm"):
                mod.weight.uniform_(0.5, 1.5)
    return CausalLMLogits(m)


# --------------------------------------------------------------------------------------
# model registry
# --------------------------------------------------------------------------------------


@dataclass
class InputSpec:
    name: str
    shape: tuple[int, ...]  # without the batch dim
    kind: str = "image"  # image | normal | ids | mask
    high: int = 0  # exclusive upper bound for ids


@dataclass
class ZooModel:
    name: str
    build: Callable[[], nn.Module]
    inputs: list[InputSpec]
    outputs: list[str]
    description: str
    bench: bool = False
    ort_alt_batch: bool = True  # check a second batch size in onnxruntime
    max_seq: int | None = None  # token models: the longest sequence (position table)
    # Further torch.onnx.export arguments, as a user passes them (see demo_cnn).
    export_args: dict = field(default_factory=dict)
    extra_checks: list[Callable] = field(default_factory=list)


def _img(c: int, h: int, w: int | None = None) -> list[InputSpec]:
    return [InputSpec("x", (c, h, w or h))]


def _check_shared_conv(model) -> None:
    uses = collections.Counter()
    inits = {i.name for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in inits:
            uses[n.input[1]] += 1
    shared = [k for k, v in uses.items() if v >= 2]
    assert shared, f"shared_conv: no Conv weight initializer used by two Conv nodes: {dict(uses)}"


MODELS: list[ZooModel] = [
    ZooModel("mlp", MLP, [InputSpec("x", (32,), "normal")], ["logits"],
             "MLP 32-64-64-10 with ReLU"),
    ZooModel("demo_cnn", DemoCNN, _img(1, 8), ["logits"],
             "8x8 digits CNN: 3x(Conv-BN-ReLU) with MaxPool, GAP, Linear(64,10)",
             # The demo and the training tests train this CNN from random weights, which
             # needs its BatchNorms (fused into the convs it does not learn the digits:
             # 8% accuracy); a user who exports a model to train it keeps them the way
             # torch.onnx.export offers, optimize=False (no graph optimization at all).
             export_args={"optimize": False}),
    ZooModel("resnet18", _tv("resnet18"), _img(3, 64), ["logits"],
             "torchvision resnet18, 10 classes, 64x64 input"),
    ZooModel("resnet50", _tv("resnet50"), _img(3, 64), ["logits"],
             "torchvision resnet50 (bottleneck), 10 classes, 64x64 input"),
    ZooModel("vgg16_bn", _vgg16_bn, _img(3, 64), ["logits"],
             "torchvision vgg16_bn, 10 classes, 64x64 input; avgpool -> AdaptiveAvgPool2d((2,2)) "
             "and classifier.0 -> Linear(2048,4096) (stock 7x7 pool would upsample 2x2->7x7)"),
    ZooModel("mobilenet_v2", _tv("mobilenet_v2"), _img(3, 64), ["logits"],
             "torchvision mobilenet_v2 (depthwise convs, ReLU6, residuals), 10 classes, 64x64"),
    ZooModel("densenet121", _tv("densenet121"), _img(3, 64), ["logits"],
             "torchvision densenet121 (dense concat blocks, BN before conv), 10 classes, 64x64"),
    ZooModel("shufflenet_v2", _tv("shufflenet_v2_x0_5"), _img(3, 64), ["logits"],
             "torchvision shufflenet_v2_x0_5 (channel split, Concat, channel shuffle by "
             "Reshape-Transpose-Reshape), 10 classes, 64x64"),
    ZooModel("squeezenet1_1", _tv("squeezenet1_1"), _img(3, 64), ["logits"],
             "torchvision squeezenet1_1 (fire modules: squeeze 1x1, expand 1x1 | 3x3 Concat; conv "
             "classifier, ceil-mode MaxPool), 10 classes, 64x64"),
    ZooModel("mobilenet_v3_small", _tv("mobilenet_v3_small"), _img(3, 64), ["logits"],
             "torchvision mobilenet_v3_small (SE blocks: pool-FC-ReLU-FC-HardSigmoid-Mul, "
             "Hardswish, depthwise convs), 10 classes, 64x64"),
    ZooModel("regnet_x_400mf", _tv("regnet_x_400mf"), _img(3, 64), ["logits"],
             "torchvision regnet_x_400mf (grouped 3x3 convs of group width 16, residuals), "
             "10 classes, 64x64"),
    ZooModel("bert_tiny", lambda: _bert(128, 2, 2, 512, 1000, 64),
             [InputSpec("input_ids", (16,), "ids", 1000), InputSpec("attention_mask", (16,), "mask")],
             ["logits"], "BertForSequenceClassification h128 L2 A2 ff512 vocab1000 seq16, eager attention; "
             "Linear weights stored [in,out] for MatMul", max_seq=64),
    ZooModel("gpt2_tiny", _gpt2_tiny, [InputSpec("input_ids", (16,), "ids", 1000)], ["logits"],
             "GPT2LMHeadModel n_embd128 L2 H2 vocab1000 seq16, eager causal attention; Conv1D "
             "[in,out] weights via Gemm, lm_head tied to wte (Gather + Transpose->MatMul)", max_seq=64),
    ZooModel("distilbert_tiny", _distilbert_tiny,
             [InputSpec("input_ids", (16,), "ids", 1000), InputSpec("attention_mask", (16,), "mask")],
             ["logits"], "DistilBertForSequenceClassification dim128 L2 H2 ff512 vocab1000 seq16, eager attention", max_seq=64),
    ZooModel("llama_tiny", _llama_tiny, [InputSpec("input_ids", (16,), "ids", 1000)], ["logits"],
             "LlamaForCausalLM h128 L2, 8 query heads sharing 2 KV heads (GQA, head dim 16), ff256 "
             "(SwiGLU), RMSNorm, rotary embeddings (the dynamo export folds its [16, 16] cos/sin "
             "tables into constants), vocab1000 seq16, eager causal attention, untied lm_head", max_seq=64),
    ZooModel("vit_tiny", _vit_tiny, _img(3, 32), ["logits"],
             "torchvision VisionTransformer 32x32 patch8 L2 H2 d64 mlp128, 10 classes; "
             "nn.MultiheadAttention decomposed to MatMul/Softmax"),
    ZooModel("concat_bn", ConcatBN, _img(3, 16), ["logits"],
             "stem conv -> 3 conv branches (8,12,4 ch) -> Concat -> BN-ReLU -> conv -> GAP -> FC"),
    ZooModel("grouped_conv", GroupedConv, _img(3, 16), ["logits"],
             "depthwise conv (groups=32)+BN and grouped conv 32->32 groups=4 +BN"),
    ZooModel("groupnorm", GroupNormNet, _img(3, 16), ["logits"],
             "convs with GroupNorm(4 groups,16 ch) and GroupNorm(8 groups,32 ch); GroupNorm exports "
             "as Reshape-InstanceNormalization-Reshape then Mul/Add with [C,1,1] weight/bias"),
    ZooModel("convtranspose_in", ConvTransposeIN, _img(3, 16), ["y"],
             "image-to-image: Conv-InstanceNorm-ReLU, ConvTranspose(s2)-InstanceNorm-ReLU, Conv->3ch"),
    ZooModel("shared_conv", SharedConv, _img(3, 16), ["logits"],
             "one 16->16 Conv module applied twice (shared weight initializer)",
             extra_checks=[_check_shared_conv]),
    ZooModel("flatten_linear", FlattenLinear, _img(3, 8), ["logits"],
             "2x(Conv-BN-ReLU) on 8x8, Flatten (no pooling) -> Linear(1024,32)-ReLU-Linear(32,10)"),
    ZooModel("bert_base", lambda: _bert(768, 12, 12, 3072, 30522, 512),
             [InputSpec("input_ids", (128,), "ids", 30522), InputSpec("attention_mask", (128,), "mask")],
             ["logits"], "BertForSequenceClassification BERT-base config (110M params), seq 128, eager attention",
             bench=True, ort_alt_batch=False, max_seq=512),
]


# --------------------------------------------------------------------------------------
# randomisation of norm parameters / biases
# --------------------------------------------------------------------------------------

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.InstanceNorm1d,
          nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm)


@torch.no_grad()
def randomize(model: nn.Module) -> None:
    """Non-trivial norm affine params / running stats and non-zero biases (seeded by caller)."""
    norm_params = set()
    for mod in model.modules():
        if isinstance(mod, _NORMS):
            w = getattr(mod, "weight", None)
            b = getattr(mod, "bias", None)
            if isinstance(w, torch.Tensor):
                w.uniform_(0.5, 1.5)
                norm_params.add(id(w))
            if isinstance(b, torch.Tensor):
                b.normal_(0.0, 0.1)
                norm_params.add(id(b))
            if getattr(mod, "running_mean", None) is not None:
                mod.running_mean.normal_(0.0, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    for name, p in model.named_parameters():
        if id(p) in norm_params:
            continue
        if name.endswith("bias") and bool((p == 0).all()):
            p.normal_(0.0, 0.1)


# --------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------


def make_inputs(spec: list[InputSpec], batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(seed)
    out = {}
    for s in spec:
        shape = (batch, *s.shape)
        if s.kind in ("image", "normal"):
            out[s.name] = rng.standard_normal(shape).astype(np.float32)
        elif s.kind == "ids":
            out[s.name] = rng.randint(0, s.high, size=shape).astype(np.int64)
        elif s.kind == "mask":
            m = np.ones(shape, dtype=np.int64)
            # padding at the end of row 1 (and of every other odd row)
            seq = shape[1]
            for r in range(1, batch, 2):
                m[r, seq - max(1, seq // 4) - (r // 2) % 3:] = 0
            out[s.name] = m
        else:
            raise ValueError(s.kind)
    return out


# --------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------


# Axis names of the dynamic dimensions: every input and output has the batch on axis 0;
# token inputs (and the outputs of token models that keep it, e.g. GPT-2's [B, T, V]
# logits) have the sequence on axis 1.
BATCH_DIM = "batch"
SEQ_DIM = "sequence"
TOKEN_KINDS = ("ids", "mask")


def is_token_model(zm: ZooModel) -> bool:
    return any(s.kind in TOKEN_KINDS for s in zm.inputs)


def dynamic_shapes(zm: ZooModel, max_seq: int | None = None) -> tuple[dict, ...]:
    """torch.export dims as a user declares them: the batch of every input, and the
    sequence of token inputs (bounded by the model's position table, as export asks)."""
    batch = torch.export.Dim(BATCH_DIM, min=1, max=1024)
    seq = torch.export.Dim(SEQ_DIM, min=1, max=max_seq or 1024)
    return tuple({0: batch, 1: seq} if s.kind in TOKEN_KINDS else {0: batch} for s in zm.inputs)


def export_onnx(zm: ZooModel, model: nn.Module, inputs: dict[str, np.ndarray], path: str):
    """torch.onnx.export(dynamo=True) with its defaults (its optimizer included: eval-mode
    BatchNormalization is fused into the convolution before it, Linear weights that
    MatMul reads transposed are folded into new initializers): only the inputs, their
    names, the dynamic axes and the opset are ours. No cleanup: the file is what users get."""
    import onnx

    args = tuple(torch.from_numpy(inputs[s.name]) for s in zm.inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, args, path, dynamo=True, opset_version=OPSET,
            input_names=[s.name for s in zm.inputs], output_names=zm.outputs,
            dynamic_shapes=dynamic_shapes(zm, zm.max_seq), external_data=False, verbose=False,
            **zm.export_args,
        )
    return onnx.load(path)


# --------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------


def _dims(vi) -> list:
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in vi.type.tensor_type.shape.dim]


def check_structure(zm: ZooModel, model, model_path: str) -> None:
    """What a raw export must satisfy: onnx.checker, the input/output names we passed,
    the symbolic axes we declared (every other dim fixed), and the model's own checks."""
    import onnx

    onnx.checker.check_model(model_path, full_check=True)
    assert [i.name for i in model.graph.input] == [s.name for s in zm.inputs], \
        f"{zm.name}: inputs {[i.name for i in model.graph.input]}"
    assert [o.name for o in model.graph.output] == zm.outputs, \
        f"{zm.name}: outputs {[o.name for o in model.graph.output]}"
    token = is_token_model(zm)
    for vi in [*model.graph.input, *model.graph.output]:
        d = _dims(vi)
        assert d and d[0] == BATCH_DIM, f"{zm.name}: {vi.name} first dim {d!r} is not symbolic {BATCH_DIM!r}"
        rest = d[2:] if token and len(d) >= 2 and d[1] == SEQ_DIM else d[1:]
        assert all(isinstance(x, int) and x > 0 for x in rest), f"{zm.name}: {vi.name} dims {d}"
    for chk in zm.extra_checks:
        chk(model)


def ort_run(model_path: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, inputs)))


@torch.no_grad()
def torch_run(zm: ZooModel, model: nn.Module, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = model(*(torch.from_numpy(inputs[s.name]) for s in zm.inputs))
    if isinstance(out, torch.Tensor):
        out = (out,)
    assert len(out) == len(zm.outputs)
    res = {n: t.detach().numpy().copy() for n, t in zip(zm.outputs, out)}
    for n, a in res.items():
        assert np.isfinite(a).all(), f"{zm.name}: non-finite PyTorch output {n}"
    return res


def compare(tag: str, ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> float:
    worst = 0.0
    for k, r in ref.items():
        g = got[k]
        assert g.shape == r.shape, f"{tag}: output {k} shape {g.shape} != {r.shape}"
        tol = 1e-4 * max(1.0, float(np.abs(r).max()))
        err = float(np.abs(g.astype(np.float64) - r.astype(np.float64)).max())
        assert err <= tol, f"{tag}: output {k} max abs err {err:.3g} > tol {tol:.3g}"
        worst = max(worst, err / tol)
    return worst


# --------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------


def _io_entry(vi, arr_dtype: str) -> dict:
    return {"name": vi.name, "dtype": arr_dtype, "shape": _dims(vi)}


_ONNX_DTYPES = {1: "float32", 7: "int64", 6: "int32", 9: "bool", 10: "float16", 11: "float64"}


def model_seed(name: str) -> int:
    """Per-model seed, stable across runs and independent of the model order."""
    import zlib

    return zlib.crc32(name.encode()) % (2**31)


# Models that also get a larger unlabeled input set, NAME.tokens.npz (samples).
UNLABELED_SAMPLES = {"bert_tiny": 512}


def exported_params(zm: ZooModel, model: nn.Module) -> int:
    """Parameters of the PyTorch model the exported graph computes: the exporter fuses
    eval-mode BatchNormalization into the convolution before it (torch.fx's Conv+BN
    fusion does the same), so those BatchNorms' weight and bias are not parameters of
    the file, and a bias-free convolution gains a bias."""
    import copy

    bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if not bn or zm.export_args.get("optimize", True) is False:
        return sum(p.numel() for p in model.parameters())
    from torch.fx.experimental.optimization import fuse

    return sum(p.numel() for p in fuse(copy.deepcopy(model).eval()).parameters())


def export_one(zm: ZooModel, out_dir: str, seed: int) -> dict:
    import onnx

    t0 = time.time()
    torch.manual_seed(seed)
    model = zm.build()
    randomize(model)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())  # shared params counted once
    n_exported = exported_params(zm, model)

    inputs = make_inputs(zm.inputs, BATCH, seed)
    outputs = torch_run(zm, model, inputs)

    path = os.path.join(out_dir, zm.name + ".onnx")
    onnx_model = export_onnx(zm, model, inputs, path)
    t_export = time.time() - t0
    check_structure(zm, onnx_model, path)

    worst = compare(f"{zm.name}[batch {BATCH}]", outputs, ort_run(path, inputs))
    if zm.ort_alt_batch:
        alt = make_inputs(zm.inputs, ALT_BATCH, seed + 1000)
        worst = max(worst, compare(f"{zm.name}[batch {ALT_BATCH}]", torch_run(zm, model, alt),
                                   ort_run(path, alt)))

    _savez_deterministic(os.path.join(out_dir, zm.name + ".inputs.npz"), inputs, compress=False)
    _savez_deterministic(os.path.join(out_dir, zm.name + ".outputs.npz"), outputs, compress=False)
    if zm.name in UNLABELED_SAMPLES:
        # Unlabeled inputs for pruning by distillation (examples/bert_tiny_distill.toml).
        tokens = make_inputs(zm.inputs, UNLABELED_SAMPLES[zm.name], seed + 7)
        _savez_deterministic(os.path.join(out_dir, zm.name + ".tokens.npz"), tokens, compress=False)

    ops = collections.Counter(n.op_type for n in onnx_model.graph.node)
    entry = {
        "name": zm.name,
        "description": zm.description,
        "inputs": [_io_entry(vi, _ONNX_DTYPES[vi.type.tensor_type.elem_type]) for vi in onnx_model.graph.input],
        "outputs": [_io_entry(vi, _ONNX_DTYPES[vi.type.tensor_type.elem_type]) for vi in onnx_model.graph.output],
        "params": int(n_params),
        "exported_params": int(n_exported),
        "initializers": len(onnx_model.graph.initializer),
        "opset": max(o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx")),
        "ops": dict(sorted(ops.items())),
    }
    dt = time.time() - t0
    print(f"[{zm.name}] {dt:6.1f}s (export {t_export:.1f}s) params={n_params} "
          f"nodes={sum(ops.values())} inits={len(onnx_model.graph.initializer)} "
          f"size={os.path.getsize(path) / 1e6:.2f}MB err/tol={worst:.3f}", flush=True)
    return entry


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="output directory for the models")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="export only these models")
    ap.add_argument("--bench", action="store_true", help="export the big benchmark models instead")
    ap.add_argument("--digits", metavar="DIR", help="write digits_train.npz / digits_test.npz into DIR")
    ap.add_argument("--list", action="store_true", help="list model names and exit")
    args = ap.parse_args(argv)

    if args.list:
        for zm in MODELS:
            print(zm.name + ("  (--bench)" if zm.bench else ""))
        return 0
    if args.digits:
        write_digits(args.digits)
    if not args.out:
        if args.digits:
            return 0
        ap.error("--out is required")

    by_name = {zm.name: zm for zm in MODELS}
    if args.only:
        unknown = [n for n in args.only if n not in by_name]
        if unknown:
            ap.error(f"unknown model(s): {unknown}; known: {list(by_name)}")
        todo = [by_name[n] for n in args.only]
    else:
        todo = [zm for zm in MODELS if zm.bench == args.bench]

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out, exist_ok=True)
    index_path = os.path.join(args.out, "index.json")
    index = {}
    if args.only and os.path.exists(index_path):
        with open(index_path) as f:
            index = {e["name"]: e for e in json.load(f)["models"]}

    t0 = time.time()
    failed = []
    for zm in todo:
        seed = model_seed(zm.name)
        try:
            index[zm.name] = export_one(zm, args.out, seed)
        except Exception as e:  # report every failure, then exit non-zero
            import traceback

            traceback.print_exc()
            print(f"[{zm.name}] FAILED: {e}", file=sys.stderr, flush=True)
            failed.append(zm.name)
            index.pop(zm.name, None)
            for ext in (".onnx", ".inputs.npz", ".outputs.npz", ".tokens.npz"):  # no half-verified files
                p = os.path.join(args.out, zm.name + ext)
                if os.path.exists(p):
                    os.remove(p)

    order = [m.name for m in MODELS]
    with open(index_path, "w") as f:
        json.dump({"opset": OPSET, "batch_dim": "batch",
                   "models": [index[n] for n in order if n in index]}, f, indent=1)
        f.write("\n")
    print(f"total {time.time() - t0:.1f}s, {len(todo) - len(failed)}/{len(todo)} models ok -> {args.out}")
    if failed:
        print(f"FAILED: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
