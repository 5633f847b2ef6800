"""The :class:`Runner` interface every runtime implements: ``run(x)`` maps a float32 NCHW batch to logits.

Kept apart from ``runners.py`` so that the per-runtime modules (``tensorrt.py``, ``litert.py``) can
subclass it while ``runners.py`` imports them at module top (no import cycle inside the package).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeslim.bench.latency import DEFAULT_NOISE_THRESHOLD, LatencyStats, measure_latency, summarise_passes
from edgeslim.runtimes import Runtime

__all__ = ["RUNTIME_LABELS", "Runner"]

#: how a runner names its runtime in tables and notes
RUNTIME_LABELS: dict[str, str] = {
    Runtime.TORCH: "PyTorch eager",
    Runtime.ORT: "ONNX Runtime",
    Runtime.OPENVINO: "OpenVINO",
    Runtime.TENSORRT: "TensorRT",
    Runtime.LITERT: "LiteRT",
}


class Runner:
    """One artifact loaded on one runtime: ``run(x)`` maps a float32 NCHW batch to logits."""

    runtime = "none"

    def __init__(self, path: Path | None, precision: str) -> None:
        self.path = path
        self.precision = precision

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def timed_call(self, batch_size: int) -> Callable[[np.ndarray], Any]:
        """The fastest way to run one batch of ``batch_size`` (e.g. a static-shape compile)."""
        del batch_size
        return self.run

    def latency(
        self,
        input_size: Sequence[int],
        batch_sizes: Sequence[int] = (1, 32),
        *,
        warmup: int = 5,
        runs: int = 30,
        min_seconds: float = 0.0,
        passes: int = 1,
        noise_threshold: float = DEFAULT_NOISE_THRESHOLD,
    ) -> dict[int, LatencyStats]:
        """Median/p90 latency at each batch size on random inputs of ``input_size`` (C, H, W).

        ``passes`` > 1: every batch size is timed once per pass (a pass goes over all batch sizes,
        each with its warm-up and runs), and each batch size's passes are summarised by
        :func:`~edgeslim.bench.latency.summarise_passes` (median of the pass medians, spread, noisy).
        """
        if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
            raise ValueError(f"need passes >= 1, got {passes!r}")
        calls: dict[int, tuple[Callable[[np.ndarray], Any], np.ndarray]] = {}
        timed: dict[int, list[LatencyStats]] = {b: [] for b in batch_sizes}
        for _ in range(passes):
            for b in batch_sizes:
                if b not in calls:
                    x = np.random.default_rng(0).standard_normal((b, *input_size)).astype(np.float32)
                    calls[b] = (self.timed_call(b), x)
                call, x = calls[b]
                timed[b].append(
                    measure_latency(call, x, warmup=warmup, runs=runs, min_seconds=min_seconds, batch_size=b)
                )
        return {b: summarise_passes(stats, noise_threshold) for b, stats in timed.items()}

    simulated = False
    #: how the runtime executes this artifact, when worth saying (e.g. torch's real int8 kernels)
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        kind = f"{self.precision}, simulated" if self.simulated else self.precision
        return f"{RUNTIME_LABELS.get(self.runtime, self.runtime)} ({kind})"
