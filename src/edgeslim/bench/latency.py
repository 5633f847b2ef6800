"""Wall-clock latency of a callable: warm-up, then timed runs with ``time.perf_counter``."""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Per-call latency at one batch size; ``throughput_ips`` = images per second at the median."""

    batch_size: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    runs: int
    throughput_ips: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyStats:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_times(cls, times_s: list[float], batch_size: int) -> LatencyStats:
        """Summarise per-call durations in seconds (p90 interpolates linearly, like numpy)."""
        if not times_s:
            raise ValueError("no timings to summarise")
        ms = [t * 1000.0 for t in times_s]
        median = statistics.median(ms)
        return cls(
            batch_size=batch_size,
            median_ms=median,
            p90_ms=float(np.percentile(ms, 90)),
            mean_ms=statistics.fmean(ms),
            min_ms=min(ms),
            max_ms=max(ms),
            std_ms=statistics.pstdev(ms),
            runs=len(ms),
            throughput_ips=batch_size / (median / 1000.0) if median > 0 else float("inf"),
        )


def infer_batch_size(inputs: Any) -> int:
    """Leading dimension of the first array-like in ``inputs`` (tensor, ndarray, tuple, dict)."""
    if isinstance(inputs, dict):
        inputs = next(iter(inputs.values()), None)
    elif isinstance(inputs, tuple | list):
        inputs = inputs[0] if inputs else None
    shape = getattr(inputs, "shape", None)
    if shape is None or len(shape) == 0:
        raise ValueError("cannot infer the batch size from the inputs; pass batch_size=")
    return int(shape[0])


def measure_latency(
    fn: Callable[..., Any],
    inputs: Any,
    *,
    warmup: int = 5,
    runs: int = 30,
    min_seconds: float = 0.0,
    batch_size: int | None = None,
) -> LatencyStats:
    """Time ``fn(*inputs)`` for a tuple/list, else ``fn(inputs)``.

    At least ``runs`` timed calls, and more until ``min_seconds`` of timed calls have passed (stable
    medians for very fast models). The caller decides threads and ``inference_mode``.
    """
    if warmup < 0 or runs < 1 or min_seconds < 0:
        raise ValueError("need warmup >= 0, runs >= 1 and min_seconds >= 0")
    bs = batch_size if batch_size is not None else infer_batch_size(inputs)
    args = tuple(inputs) if isinstance(inputs, tuple | list) else (inputs,)
    for _ in range(warmup):
        fn(*args)
    times: list[float] = []
    total = 0.0
    while len(times) < runs or total < min_seconds:
        start = time.perf_counter()
        fn(*args)
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        total += elapsed
    return LatencyStats.from_times(times, bs)


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[int]:
    """Run a block with ``torch.set_num_threads(n)`` and restore the previous count; None: unchanged."""
    previous = torch.get_num_threads()
    if n is not None and n < 1:
        raise ValueError(f"thread count must be at least 1, got {n}")
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
