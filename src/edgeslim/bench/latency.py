"""Wall-clock latency of a callable: warm-up, then timed runs with ``time.perf_counter``.

A latency worth comparing is measured in several **passes** (each: warm-up, then timed runs) and
summarised by :func:`summarise_passes`: the median of the pass medians, and how far the passes
disagree (``spread`` = (max - min) / median of the pass medians). A spread above the noise threshold
marks the figure ``noisy``: something else used the machine, or the clock moved, while it was timed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

#: A latency whose passes' medians differ by more than this share of their median is ``noisy``.
DEFAULT_NOISE_THRESHOLD = 0.10


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Per-call latency at one batch size; ``throughput_ips`` = images per second at the median.

    ``passes``: how many timing passes it summarises (1: one pass, as :func:`measure_latency`
    gives); with more, ``median_ms`` is the median of the pass medians, ``spread`` their
    (max - min) / median and ``noisy`` whether that spread passed the threshold (see
    :func:`summarise_passes`). Records written before these fields existed load as one pass.
    """

    batch_size: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    runs: int
    throughput_ips: float
    passes: int = 1
    spread: float = 0.0
    noisy: bool = False

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


def summarise_passes(
    passes: Sequence[LatencyStats], noise_threshold: float = DEFAULT_NOISE_THRESHOLD
) -> LatencyStats:
    """One latency from repeated passes at one batch size.

    ``median_ms`` is the median of the pass medians (``throughput_ips`` follows it); the other
    figures (p90, mean, min, max, std, runs) are those of the median pass (the lower of the two middle
    ones for an even count). ``spread`` = (max - min) / median of the pass medians, and ``noisy`` =
    ``spread > noise_threshold``. One pass gives that pass with spread 0, not noisy.
    """
    if not passes:
        raise ValueError("no latency passes to summarise")
    if isinstance(noise_threshold, bool) or not noise_threshold > 0 or noise_threshold == float("inf"):
        raise ValueError(f"the noise threshold must be a finite number > 0, got {noise_threshold!r}")
    sizes = {p.batch_size for p in passes}
    if len(sizes) != 1:
        raise ValueError(f"latency passes of different batch sizes: {sorted(sizes)}")
    medians = [p.median_ms for p in passes]
    median = statistics.median(medians)
    middle = sorted(passes, key=lambda p: p.median_ms)[(len(passes) - 1) // 2]
    spread = (max(medians) - min(medians)) / median if median > 0 else 0.0
    return dataclasses.replace(
        middle,
        median_ms=median,
        throughput_ips=middle.batch_size / (median / 1000.0) if median > 0 else float("inf"),
        passes=len(passes),
        spread=spread,
        noisy=spread > noise_threshold,
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


def measure_latency_passes(
    fn: Callable[..., Any],
    inputs: Any,
    *,
    passes: int = 3,
    noise_threshold: float = DEFAULT_NOISE_THRESHOLD,
    warmup: int = 5,
    runs: int = 30,
    min_seconds: float = 0.0,
    batch_size: int | None = None,
) -> LatencyStats:
    """:func:`measure_latency` ``passes`` times (each with its warm-up), summarised by
    :func:`summarise_passes`."""
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ValueError(f"need passes >= 1, got {passes!r}")
    return summarise_passes(
        [
            measure_latency(
                fn, inputs, warmup=warmup, runs=runs, min_seconds=min_seconds, batch_size=batch_size
            )
            for _ in range(passes)
        ],
        noise_threshold,
    )


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
