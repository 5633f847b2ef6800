"""Peak resident memory (RSS) of the process while a callable runs, e.g. one inference."""

from __future__ import annotations

import dataclasses
import gc
import sys
import threading
from collections.abc import Callable
from typing import Any

import psutil


@dataclasses.dataclass(frozen=True)
class MemoryStats:
    """RSS before the call, the peak during it, and the increase (what the call itself needed)."""

    baseline_rss_bytes: int
    peak_rss_bytes: int
    increase_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _ru_maxrss_bytes() -> int | None:
    """The kernel's lifetime RSS high-water mark (Linux reports KiB, macOS bytes); None elsewhere."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    value = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return value if sys.platform == "darwin" else value * 1024


def measure_peak_rss(fn: Callable[[], Any], *, interval_s: float = 0.001) -> MemoryStats:
    """Sample RSS in a background thread every ``interval_s`` while ``fn()`` runs.

    Short spikes between samples are caught by ``ru_maxrss``: if the process's lifetime high-water
    mark rose during the call, the new mark was reached during it.
    """
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    proc = psutil.Process()
    gc.collect()
    baseline = proc.memory_info().rss
    max_before = _ru_maxrss_bytes()
    sampled = [baseline]  # written only by the sampler thread until it is joined
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            sampled[0] = max(sampled[0], proc.memory_info().rss)
            stop.wait(interval_s)

    sampler = threading.Thread(target=sample, name="edgeslim-rss-sampler", daemon=True)
    sampler.start()
    try:
        fn()
        after = proc.memory_info().rss
    finally:
        stop.set()
        sampler.join()
    peak = max(sampled[0], after)
    max_after = _ru_maxrss_bytes()
    if max_before is not None and max_after is not None and max_after > max_before:
        peak = max(peak, max_after)
    return MemoryStats(
        baseline_rss_bytes=baseline, peak_rss_bytes=peak, increase_bytes=max(0, peak - baseline)
    )
