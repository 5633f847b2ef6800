"""Peak memory of deploying one artifact, measured in a fresh process (run as a script, not imported).

    python _memprobe.py PATH RUNTIME BATCH C H W [THREADS]

Imports only the runtime (ONNX Runtime and OpenVINO probes never import torch), records RSS, loads
the artifact, runs one batch and prints one JSON line: ``runtime_rss_bytes`` (after importing the
runtime), ``peak_rss_bytes`` (the process's high-water mark, VmHWM; Linux) and their difference.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

# this script lives beside openvino.py and onnx.py: keep them from shadowing the real packages
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]


def _rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_bytes() -> int:
    """VmHWM: this process's RSS high-water mark (ru_maxrss would carry the parent's over exec)."""
    with open(f"/proc/{os.getpid()}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return _rss_bytes()


def main(argv: list[str]) -> None:
    path, runtime, batch = argv[0], argv[1], int(argv[2])
    shape = (batch, *(int(v) for v in argv[3:6]))
    threads = int(argv[6]) if len(argv) > 6 and argv[6] != "0" else None
    import numpy as np

    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    if runtime == "ort":
        import onnxruntime as ort

        base = _rss_bytes()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        session.run(None, {session.get_inputs()[0].name: x})
    elif runtime == "openvino":
        import openvino as ov

        base = _rss_bytes()
        core = ov.Core()
        model = core.read_model(path)
        dims = list(model.input(0).get_partial_shape())
        dims[0] = batch
        model.reshape({model.input(0): ov.PartialShape(dims)})
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
            "INFERENCE_PRECISION_HINT": "f32",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        core.compile_model(model, "CPU", config).create_infer_request().infer({0: x})
    elif runtime == "torch":
        import torch

        # imported here, after the baseline RSS: this probe measures what loading the runtime costs
        from edgeslim.export.runners import load_torch_artifact

        if threads:
            torch.set_num_threads(threads)
        base = _rss_bytes()
        # as open_runner runs it; the parent process opened (and so trusted) this file before
        model, _ = load_torch_artifact(path, real_int8=True, trust_artifact=True)
        with torch.inference_mode():
            model(torch.from_numpy(x))
    else:
        raise SystemExit(f"unknown runtime {runtime!r}")
    peak = max(_peak_bytes(), _rss_bytes())
    print(
        json.dumps({"runtime_rss_bytes": base, "peak_rss_bytes": peak, "increase_bytes": max(0, peak - base)})
    )


if __name__ == "__main__":
    main(sys.argv[1:])
