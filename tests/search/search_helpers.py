"""A deterministic stand-in runtime for search tests: latency = MACs of the ONNX graph x 1e-5 ms.

With it the latency predictor must reproduce every measurement exactly, so tests assert numbers,
not timing noise (the real runtimes: ``test_search_profile.py`` and the benchmarks).
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import numpy_helper, shape_inference

MS_PER_MAC = 1e-5


def graph_macs(path: Path) -> int:
    """MACs of the Conv and Gemm nodes of an ONNX file (batch 1)."""
    proto = shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in list(proto.graph.value_info) + list(proto.graph.output)
    }
    weights = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    for node in proto.graph.node:  # a QDQ graph: a conv's weight is the output of a DequantizeLinear
        if node.op_type == "DequantizeLinear" and node.input[0] in weights:
            weights[node.output[0]] = weights[node.input[0]]
    macs = 0
    for node in proto.graph.node:
        if node.op_type == "Conv":
            w = weights[node.input[1]]
            out = shapes[node.output[0]]
            macs += out[1] * out[2] * out[3] * int(w[0].size)
        elif node.op_type == "Gemm":
            macs += int(weights[node.input[1]].size)
    return macs
