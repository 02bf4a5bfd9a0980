#!/usr/bin/env python3
"""Write hand-made ONNX Model Zoo-era graphs (caffe2 conversions) for oto's legacy tests.

Usage:
    python graphs/legacy_zoo.py --out graphs/legacy_zoo

Files as the old model zoo has them, made with the `onnx` helper API: IR version 3,
opsets 7-9, every initializer also listed as a graph input, a fixed batch (of 1 but for
batch4_cnn and batch2_rows), random
weights from a fixed seed. For every model NAME, OUT receives
    NAME.onnx          the graph;
    NAME.inputs.npz    one random input at the file's batch, keyed by the graph input's name;
    NAME.outputs.npz   onnxruntime's (CPU) outputs on it, keyed by output name.
Models:
    alexnet_lite   Conv, Relu, LRN, MaxPool, a grouped Conv (group=2, C_in/g != C_out/g),
                   Reshape to [1, N], Gemm, Softmax (opset 7);
    resnet_mul_add a ResNet block whose BatchNorms are written as Mul + Add with
                   parameters reached through Unsqueeze, and a Sum residual (opset 8);
    squeeze_head   a classifier with a [N, C, 1, 1] output (1x1 Conv, GlobalAveragePool;
                   caffe2's SqueezeNet head), with InstanceNormalization (opset 9);
    batch_mixed    a Reshape that folds the fixed batch into another axis ([1, 6, 4] ->
                   [2, 12]): its batch cannot be made symbolic (opset 7);
    batch4_cnn     a CNN whose batch is fixed at 4 (input [4, 3, 12, 12], Reshape target
                   [4, 32]) as a file exported for a batch of 4 has it (opset 8);
    batch2_rows    a batch fixed at 2 with a constant of 2 rows added to the outputs (a
                   different bias per sample): its batch cannot be made symbolic (opset 7);
    yolo_lite      tiny YOLOv2's layout: the experimental ImageScaler on the image (scale
                   1/255, a bias per channel), Conv + BatchNormalization + LeakyRelu +
                   MaxPool stages, a 1x1 Conv giving the [N, A, H, W] grid (opset 8).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

SEED = 0


class Builder:
    """Collects nodes and initializers; every initializer is also a graph input (IR 3)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def param(self, name: str, shape: list[int], scale: float = 0.2, offset: float = 0.0) -> str:
        a = (self.rng.standard_normal(shape) * scale + offset).astype(np.float32)
        self.inits.append(numpy_helper.from_array(a, name))
        return name

    def const(self, name: str, a: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(a, name))
        return name

    def node(self, op: str, inputs: list[str], n_out: int = 1, **attrs) -> str | list[str]:
        self.count += 1
        outs = [f"{op.lower()}_{self.count}_{k}" for k in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=f"{op}_{self.count}", **attrs))
        return outs[0] if n_out == 1 else outs

    def model(self, name: str, x: str, xshape: list[int], y: str, yshape: list[int], opset: int) -> onnx.ModelProto:
        inputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, xshape)]
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in self.inits]
        self.nodes[-1].output[0] = "prob"
        outputs = [helper.make_tensor_value_info("prob", TensorProto.FLOAT, yshape)]
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="caffe2-like")
        m.ir_version = 3
        onnx.checker.check_model(m)
        return m


def alexnet_lite(rng: np.random.Generator) -> tuple[onnx.ModelProto, list[int]]:
    b = Builder(rng)
    x = "data_0"
    h = b.node("Conv", [x, b.param("conv1_w_0", [16, 3, 5, 5]), b.param("conv1_b_0", [16])], kernel_shape=[5, 5], strides=[2, 2], pads=[2, 2, 2, 2])
    h = b.node("Relu", [h])
    h = b.node("LRN", [h], size=5, alpha=1e-4, beta=0.75, bias=1.0)
    h = b.node("MaxPool", [h], kernel_shape=[3, 3], strides=[2, 2])
    # Grouped: 16 -> 24 channels in 2 groups (8 in, 12 out per group).
    h = b.node("Conv", [h, b.param("conv2_w_0", [24, 8, 3, 3]), b.param("conv2_b_0", [24])], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=2)
    h = b.node("Relu", [h])
    h = b.node("Conv", [h, b.param("conv3_w_0", [16, 24, 3, 3]), b.param("conv3_b_0", [16])], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    h = b.node("Relu", [h])
    h = b.node("MaxPool", [h], kernel_shape=[3, 3], strides=[2, 2])
    # [1, 16, 3, 3] -> [1, 144], as caffe2's exports fix the batch.
    h = b.node("Reshape", [h, b.const("OC2_DUMMY_1", np.array([1, 144], dtype=np.int64))])
    h = b.node("Gemm", [h, b.param("fc6_w_0", [32, 144], 0.1), b.param("fc6_b_0", [32])], transB=1)
    h = b.node("Relu", [h])
    h = b.node("Dropout", [h], ratio=0.5)
    h = b.node("Gemm", [h, b.param("fc8_w_0", [10, 32]), b.param("fc8_b_0", [10])], transB=1)
    h = b.node("Softmax", [h])
    return b.model("alexnet_lite", x, [1, 3, 32, 32], "prob", [1, 10], 7), [1, 3, 32, 32]


def bn_mul_add(b: Builder, h: str, c: int, tag: str) -> str:
    """BatchNorm as caffe2 conversions write it: x * s + t, s and t Unsqueeze'd [C] -> [C, 1, 1]."""
    s = b.param(f"{tag}_s", [c], 0.2, 1.0)
    t = b.param(f"{tag}_b", [c], 0.1)
    s3 = b.node("Unsqueeze", [s], axes=[1, 2])
    t3 = b.node("Unsqueeze", [t], axes=[1, 2])
    return b.node("Add", [b.node("Mul", [h, s3]), t3])


def resnet_mul_add(rng: np.random.Generator) -> tuple[onnx.ModelProto, list[int]]:
    b = Builder(rng)
    x = "gpu_0/data_0"
    h = b.node("Conv", [x, b.param("conv1_w", [8, 3, 3, 3])], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    h = bn_mul_add(b, h, 8, "bn1")
    stem = b.node("Relu", [h])
    h = b.node("Conv", [stem, b.param("res2_a_w", [12, 8, 3, 3])], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    h = bn_mul_add(b, h, 12, "res2_a_bn")
    h = b.node("Relu", [h])
    h = b.node("Conv", [h, b.param("res2_b_w", [8, 12, 3, 3])], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    h = bn_mul_add(b, h, 8, "res2_b_bn")
    h = b.node("Sum", [h, stem])
    h = b.node("Relu", [h])
    h = b.node("GlobalAveragePool", [h])
    h = b.node("Reshape", [h, b.const("flat_shape", np.array([1, 8], dtype=np.int64))])
    h = b.node("Gemm", [h, b.param("pred_w", [5, 8]), b.param("pred_b", [5])], transB=1)
    return b.model("resnet_mul_add", x, [1, 3, 16, 16], "prob", [1, 5], 8), [1, 3, 16, 16]


def squeeze_head(rng: np.random.Generator) -> tuple[onnx.ModelProto, list[int]]:
    b = Builder(rng)
    x = "data_0"
    h = b.node("Conv", [x, b.param("conv1_w_0", [12, 3, 3, 3]), b.param("conv1_b_0", [12])], kernel_shape=[3, 3], strides=[2, 2])
    h = b.node("InstanceNormalization", [h, b.param("in1_s", [12], 0.2, 1.0), b.param("in1_b", [12], 0.1)], epsilon=1e-5)
    h = b.node("Relu", [h])
    h = b.node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = b.node("Conv", [h, b.param("fire2_w_0", [16, 12, 1, 1]), b.param("fire2_b_0", [16])], kernel_shape=[1, 1])
    h = b.node("Relu", [h])
    h = b.node("Conv", [h, b.param("conv10_w_0", [7, 16, 1, 1]), b.param("conv10_b_0", [7])], kernel_shape=[1, 1])
    h = b.node("Relu", [h])
    h = b.node("GlobalAveragePool", [h])
    return b.model("squeeze_head", x, [1, 3, 17, 17], "prob", [1, 7, 1, 1], 9), [1, 3, 17, 17]


def batch_mixed(rng: np.random.Generator) -> tuple[onnx.ModelProto, list[int]]:
    b = Builder(rng)
    x = "data_0"
    h = b.node("Reshape", [x, b.const("mix_shape", np.array([2, 12], dtype=np.int64))])
    h = b.node("Gemm", [h, b.param("fc_w", [5, 12]), b.param("fc_b", [5])], transB=1)
    return b.model("batch_mixed", x, [1, 6, 4], "prob", [2, 5], 7), [1, 6, 4]


def batch4_cnn(rng: np.random.Generator) -> tuple[onnx.ModelProto, list[int]]:
    b = Builder(rng)
    x = "data_0"
    h = b.node("Conv", [x, b.param("conv1_w_0", [8, 3, 3, 3]), b.param("conv1_b_0", [8])], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    h = b.node("Relu", [h])
    h = b.node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = b.node("Conv", [h, b.param("conv2_w_0", [8, 8, 3, 3]), b.param("conv2_b_0", [8])], kernel_shape=[3, 3], strides=[2, 2])
    h = b.node("Relu", [h])
    # [4, 8, 2, 2] -> [4, 32]: the file's batch of 4 in the Reshape target.
    h = b.node("Reshape", [h, b.const("flat_shape", np.array([4, 32], dtype=np.int64))])
    h = b.node("Gemm", [h, b.param("fc1_w_0", [16, 32], 0.1), b.param("fc1_b_0", [16])], transB=1)
    h = b.node("Relu", [h])
    h = b.node("Gemm", [h, b.param("fc2_w_0", [10, 16]), b.param("fc2_b_0", [10])], transB=1)
    h = b.node("Softmax", [h])
    return b.model("batch4_cnn", x, [4, 3, 12, 12], "prob", [4, 10], 8), [4, 3, 12, 12]


def batch2_rows(rng: np.random.Generator) -> tuple[onnx.ModelProto, list[int]]:
    b = Builder(rng)
    x = "data_0"
    h = b.node("Gemm", [x, b.param("fc_w", [5, 6]), b.param("fc_b", [5])], transB=1)
    h = b.node("Add", [h, b.param("row_bias", [2, 5])])
    return b.model("batch2_rows", x, [2, 6], "prob", [2, 5], 7), [2, 6]


def yolo_lite(rng: np.random.Generator) -> tuple[onnx.ModelProto, list[int]]:
    b = Builder(rng)
    x = "image"
    h = b.node("ImageScaler", [x], scale=1.0 / 255.0, bias=[0.1, -0.05, 0.2])
    width = 3
    for k, (c, pool) in enumerate([(8, True), (16, True), (16, False)], start=1):
        h = b.node("Conv", [h, b.param(f"convolution{k}_W", [c, width, 3, 3], 0.3)], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        h = b.node("BatchNormalization", [h, b.param(f"BatchNormalization{k}_scale", [c], 0.2, 1.0),
                                          b.param(f"BatchNormalization{k}_B", [c], 0.1), b.param(f"BatchNormalization{k}_mean", [c], 0.1),
                                          b.param(f"BatchNormalization{k}_variance", [c], 0.1, 1.0)], epsilon=1e-5)
        h = b.node("LeakyRelu", [h], alpha=0.1)
        if pool:
            h = b.node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
        width = c
    h = b.node("Conv", [h, b.param("convolution_out_W", [10, width, 1, 1]), b.param("convolution_out_B", [10])], kernel_shape=[1, 1])
    return b.model("yolo_lite", x, [1, 3, 32, 32], "prob", [1, 10, 8, 8], 8), [1, 3, 32, 32]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for k, make in enumerate([alexnet_lite, resnet_mul_add, squeeze_head, batch_mixed, batch4_cnn, batch2_rows, yolo_lite]):
        rng = np.random.default_rng(SEED + k)
        model, xshape = make(rng)
        name = model.graph.name
        onnx.save(model, args.out / f"{name}.onnx")
        x = rng.standard_normal(xshape).astype(np.float32)
        sess = ort.InferenceSession(str(args.out / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        xname = model.graph.input[0].name
        ys = sess.run(None, {xname: x})
        np.savez(args.out / f"{name}.inputs.npz", **{xname: x})
        np.savez(args.out / f"{name}.outputs.npz", **{o.name: y for o, y in zip(sess.get_outputs(), ys)})
        print(f"{name}: opset {model.opset_import[0].version}, IR {model.ir_version}, output {ys[0].shape}")


if __name__ == "__main__":
    main()
