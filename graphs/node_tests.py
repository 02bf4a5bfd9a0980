"""Writes the ONNX conformance node tests of the installed `onnx` wheel to a folder.

The wheel carries the node tests as Python (onnx.backend.test.case.node), not as the
data files of an ONNX source checkout; this script writes them in that checkout's
layout, one folder per case:

    OUT/NAME/model.onnx
    OUT/NAME/test_data_set_0/input_J.pb, output_J.pb   (TensorProto, or SequenceProto /
                                                        OptionalProto / MapProto for
                                                        non-tensor values, as onnx does)

plus OUT/index.json listing every case (name, operators, rtol, atol, data sets), which
crates/torch/tests/conformance.rs reads. Nothing is left out: cases whose values oto
cannot read are still written, and the Rust test counts them as unsupported.

    python graphs/node_tests.py --out graphs/node_tests
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnx.backend.test.case.node import collect_testcases


def value_proto(value, vi: onnx.ValueInfoProto) -> bytes:
    """A test value serialized the way onnx's own generate-data does."""
    t = vi.type
    if t.HasField("map_type"):
        return numpy_helper.from_dict(value, vi.name).SerializeToString()
    if t.HasField("sequence_type"):
        return numpy_helper.from_list(value, vi.name).SerializeToString()
    if t.HasField("optional_type"):
        return numpy_helper.from_optional(value, vi.name).SerializeToString()
    if isinstance(value, TensorProto):
        return value.SerializeToString()
    return numpy_helper.from_array(np.asarray(value), vi.name).SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("graphs/node_tests"))
    args = parser.parse_args()

    started = time.perf_counter()
    # Several cases draw random inputs: a fixed seed makes the folder reproducible.
    np.random.seed(0)
    with warnings.catch_warnings():
        # Some reference computations divide by zero on purpose (inf/nan expected outputs).
        warnings.simplefilter("ignore", RuntimeWarning)
        cases = collect_testcases()

    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    index = []
    for case in sorted(cases, key=lambda c: c.name):
        model = case.model
        folder = args.out / case.name
        folder.mkdir()
        (folder / "model.onnx").write_bytes(model.SerializeToString())
        for i, (inputs, outputs) in enumerate(case.data_sets):
            data = folder / f"test_data_set_{i}"
            data.mkdir()
            for j, value in enumerate(inputs):
                (data / f"input_{j}.pb").write_bytes(value_proto(value, model.graph.input[j]))
            for j, value in enumerate(outputs):
                (data / f"output_{j}.pb").write_bytes(value_proto(value, model.graph.output[j]))
        index.append(
            {
                "name": case.name,
                "ops": sorted({n.op_type for n in model.graph.node}),
                "rtol": case.rtol,
                "atol": case.atol,
                "data_sets": len(case.data_sets),
            }
        )
    summary = {"onnx_version": onnx.__version__, "cases": index}
    (args.out / "index.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {len(index)} node test cases of onnx {onnx.__version__} to {args.out} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
