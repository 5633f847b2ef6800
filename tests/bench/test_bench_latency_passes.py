"""Repeated latency passes: the median of the pass medians, their spread, and the noisy flag."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from edgeslim.bench import (
    DEFAULT_NOISE_THRESHOLD,
    LatencyStats,
    Measurement,
    measure_latency_passes,
    summarise_passes,
)
from edgeslim.export.base import Runner


def _pass(median: float, batch_size: int = 1, runs: int = 5) -> LatencyStats:
    """One pass whose other figures are told apart from the median (p90 = median + 0.5, ...)."""
    return LatencyStats(
        batch_size=batch_size,
        median_ms=median,
        p90_ms=median + 0.5,
        mean_ms=median + 0.1,
        min_ms=median - 0.2,
        max_ms=median + 0.7,
        std_ms=median / 10,
        runs=runs,
        throughput_ips=batch_size / (median / 1000.0),
    )


def test_three_passes_give_the_median_of_medians_and_its_spread() -> None:
    passes = [_pass(1.3, 4), _pass(1.0, 4), _pass(1.1, 4)]  # in the order they ran
    stats = summarise_passes(passes, 0.10)
    assert stats.median_ms == pytest.approx(1.1)
    assert stats.spread == pytest.approx(0.3 / 1.1) == pytest.approx(0.27272727)
    assert stats.passes == 3 and stats.noisy is True
    assert summarise_passes(passes, 0.5).noisy is False
    # every other figure is the median pass's
    assert (stats.p90_ms, stats.mean_ms, stats.min_ms, stats.max_ms, stats.runs) == (
        pytest.approx(1.6),
        pytest.approx(1.2),
        pytest.approx(0.9),
        pytest.approx(1.8),
        5,
    )
    assert stats.batch_size == 4 and stats.throughput_ips == pytest.approx(4 / 0.0011)


def test_an_even_count_takes_the_mean_of_the_middle_two_and_the_lower_pass() -> None:
    stats = summarise_passes([_pass(1.2), _pass(1.0)])
    assert stats.median_ms == pytest.approx(1.1) and stats.spread == pytest.approx(0.2 / 1.1)
    assert stats.p90_ms == pytest.approx(1.5)  # the lower middle pass (1.0)
    assert stats.noisy is True  # 0.18 > the default 0.10
    assert DEFAULT_NOISE_THRESHOLD == 0.10


def test_a_spread_equal_to_the_threshold_is_not_noisy() -> None:
    passes = [_pass(1.0), _pass(2.0), _pass(3.0)]  # spread (3 - 1) / 2 = 1.0 exactly
    assert summarise_passes(passes, 1.0).spread == 1.0
    assert summarise_passes(passes, 1.0).noisy is False
    assert summarise_passes(passes, 0.99).noisy is True


def test_one_pass_is_that_pass_with_no_spread() -> None:
    only = LatencyStats.from_times([0.001, 0.002, 0.003], batch_size=2)
    stats = summarise_passes([only])
    assert stats == only
    assert (stats.passes, stats.spread, stats.noisy) == (1, 0.0, False)


@pytest.mark.parametrize(
    ("passes", "threshold", "words"),
    [
        ([], 0.1, "no latency passes"),
        ([_pass(1.0, 1), _pass(1.0, 2)], 0.1, "different batch sizes"),
        ([_pass(1.0)], 0.0, "noise threshold must be a finite number > 0"),
        ([_pass(1.0)], float("inf"), "noise threshold must be a finite number > 0"),
        ([_pass(1.0)], float("nan"), "noise threshold must be a finite number > 0"),
    ],
)
def test_bad_inputs_are_refused(passes: list[LatencyStats], threshold: float, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        summarise_passes(passes, threshold)


def test_summaries_round_trip_and_old_records_load_as_one_pass() -> None:
    stats = summarise_passes([_pass(1.0), _pass(1.1), _pass(1.3)])
    assert LatencyStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats
    assert stats.to_dict()["noisy"] is True and stats.to_dict()["passes"] == 3
    old = {k: v for k, v in _pass(2.0).to_dict().items() if k not in ("passes", "spread", "noisy")}
    loaded = LatencyStats.from_dict(old)
    assert (loaded.passes, loaded.spread, loaded.noisy, loaded.median_ms) == (1, 0.0, False, 2.0)
    # inside a Measurement, as the store keeps it
    m = Measurement(model="m", latency={1: stats})
    assert Measurement.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    record = m.to_dict()
    record["latency"] = {"1": old}
    assert Measurement.from_dict(record).latency[1].noisy is False


def test_measure_latency_passes_warms_up_and_times_every_pass() -> None:
    calls: list[int] = []
    stats = measure_latency_passes(lambda x: calls.append(1), np.zeros((3, 2)), passes=3, warmup=1, runs=2)
    assert len(calls) == 3 * (1 + 2)
    assert (stats.passes, stats.runs, stats.batch_size) == (3, 2, 3)
    with pytest.raises(ValueError, match="passes >= 1"):
        measure_latency_passes(lambda x: None, np.zeros((1, 1)), passes=0)


class _Recording(Runner):
    """A runner that records which batch sizes it ran and which calls it built."""

    runtime = "torch"

    def __init__(self) -> None:
        super().__init__(None, "fp32")
        self.ran: list[int] = []
        self.built: list[int] = []

    def run(self, x: np.ndarray) -> np.ndarray:
        self.ran.append(int(x.shape[0]))
        return x

    def timed_call(self, batch_size: int) -> Callable[[np.ndarray], Any]:
        self.built.append(batch_size)
        return self.run


def test_runner_latency_runs_each_pass_over_every_batch_size() -> None:
    runner = _Recording()
    out = runner.latency((1, 2, 2), (1, 4), warmup=1, runs=2, passes=3, noise_threshold=0.5)
    assert runner.built == [1, 4]  # one call per batch size, reused across passes
    assert runner.ran == [1, 1, 1, 4, 4, 4] * 3  # pass by pass: warm-up + runs per batch size
    assert sorted(out) == [1, 4] and all(s.passes == 3 and s.runs == 2 for s in out.values())
    one = _Recording().latency((1, 2, 2), (2,), warmup=0, runs=1)
    assert one[2].passes == 1 and one[2].spread == 0.0 and not one[2].noisy
