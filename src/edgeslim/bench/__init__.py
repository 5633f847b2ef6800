"""Measurements: counts (params, non-zeros, MACs), size, latency, peak memory, environment.

Every number ends up in a :class:`Measurement`, the one record type the rest of edgeslim reuses.
"""

from edgeslim.bench.counting import count_macs, count_nonzero_params, count_params
from edgeslim.bench.env import env_fingerprint, fingerprint_hash
from edgeslim.bench.latency import (
    DEFAULT_NOISE_THRESHOLD,
    LatencyStats,
    measure_latency,
    measure_latency_passes,
    summarise_passes,
    threads,
)
from edgeslim.bench.measurement import Measurement, benchmark_torch
from edgeslim.bench.memory import MemoryStats, measure_peak_rss
from edgeslim.bench.size import file_size_bytes, state_dict_size_bytes

__all__ = [
    "DEFAULT_NOISE_THRESHOLD",
    "LatencyStats",
    "Measurement",
    "MemoryStats",
    "benchmark_torch",
    "count_macs",
    "count_nonzero_params",
    "count_params",
    "env_fingerprint",
    "file_size_bytes",
    "fingerprint_hash",
    "measure_latency",
    "measure_latency_passes",
    "measure_peak_rss",
    "state_dict_size_bytes",
    "summarise_passes",
    "threads",
]
