"""Latency statistics, thread control, peak RSS and the environment fingerprint."""

from __future__ import annotations

import json
import time

import pytest
import torch

from edgeslim.bench import (
    LatencyStats,
    env_fingerprint,
    fingerprint_hash,
    measure_latency,
    measure_peak_rss,
    threads,
)


def test_latency_stats_from_known_times() -> None:
    stats = LatencyStats.from_times([0.001 * t for t in range(1, 11)], batch_size=4)  # 1..10 ms
    assert stats.median_ms == pytest.approx(5.5)
    assert stats.p90_ms == pytest.approx(9.1)
    assert stats.mean_ms == pytest.approx(5.5)
    assert (stats.min_ms, stats.max_ms, stats.runs) == (pytest.approx(1.0), pytest.approx(10.0), 10)
    assert stats.throughput_ips == pytest.approx(4 / 0.0055)
    assert LatencyStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats


def test_measure_latency_ordering_and_counts() -> None:
    calls: list[int] = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        time.sleep(0.001)
        return x + 1

    stats = measure_latency(fn, torch.zeros(8, 3), warmup=2, runs=5)
    assert len(calls) == 7 and stats.runs == 5 and stats.batch_size == 8
    assert stats.min_ms <= stats.median_ms <= stats.p90_ms <= stats.max_ms
    assert stats.min_ms >= 1.0
    assert stats.throughput_ips == pytest.approx(8 / (stats.median_ms / 1000))


def test_min_seconds_adds_runs_and_tuple_inputs_are_unpacked() -> None:
    stats = measure_latency(
        lambda a, b: time.sleep(0.002), (torch.zeros(2, 1), 5), warmup=0, runs=1, min_seconds=0.02
    )
    assert stats.runs >= 5 and stats.batch_size == 2
    with pytest.raises(ValueError, match="batch size"):
        measure_latency(lambda: None, (), runs=1)


def test_threads_sets_and_restores() -> None:
    before = torch.get_num_threads()
    with threads(1) as n:
        assert n == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with threads(None) as n:
        assert n == before
    with pytest.raises(ValueError), threads(0):
        pass


def test_peak_rss_sees_a_200mb_tensor() -> None:
    def allocate() -> None:
        t = torch.ones(50_000_000)  # 200 MB, pages touched
        del t

    stats = measure_peak_rss(allocate)
    assert stats.increase_bytes >= 150 * 1024**2
    assert stats.peak_rss_bytes == stats.baseline_rss_bytes + stats.increase_bytes


def test_env_fingerprint_is_plain_and_stable() -> None:
    env = env_fingerprint()
    json.dumps(env)
    for key in ("cpu_model", "logical_cores", "torch_threads", "torch_version", "python_version", "platform"):
        assert env[key]
    assert set(env["packages"]) >= {"onnxruntime", "openvino", "tensorrt"}
    assert env["torch_version"] == torch.__version__
    assert len(env["hash"]) == 12 and env["hash"] == fingerprint_hash(env)
    assert env_fingerprint()["hash"] == env["hash"]
    with threads(1):
        other = env_fingerprint()
    assert other["torch_threads"] == 1
    if env["torch_threads"] != 1:
        assert other["hash"] != env["hash"]
