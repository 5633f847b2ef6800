"""Scoring pools (issue 18): a search's candidates scored on the sweep's executors - inline, local
processes, Ray actors (``tests/sweep/test_sweep_ray.py``: a local Ray instance started and shut down
before ``test_sweep_cluster_ray.py`` would break its cluster connections) - with the same results in
the same order, the setup built once per worker."""

from __future__ import annotations

import functools
import os

import pytest

from edgeslim.engine.executors.pool import InlinePool, ProcessPool, check_pool, open_pool, scoring_pool
from edgeslim.errors import ConfigError


class Affine:
    """A toy scorer with state built once per worker: ``item -> (a * item + b, worker pid, threads)``."""

    def __init__(self, a: int, b: int) -> None:
        import torch

        self.a, self.b = a, b
        self.threads = torch.get_num_threads()

    def __call__(self, item: int) -> tuple[int, int, int]:
        return self.a * item + self.b, os.getpid(), self.threads


SETUP = functools.partial(Affine, 3, 1)
ITEMS = list(range(10))
EXPECTED = [3 * i + 1 for i in ITEMS]


def test_inline_scores_in_this_process() -> None:
    with scoring_pool("inline", SETUP, threads=1) as pool:
        assert isinstance(pool, InlinePool) and pool.workers == 1
        results = pool.map(ITEMS)
    assert [r[0] for r in results] == EXPECTED
    assert {r[1] for r in results} == {os.getpid()}
    # local with one worker is inline: a process of its own would only add the setup's shipping
    pool = open_pool("local", SETUP, workers=1)
    assert isinstance(pool, InlinePool)
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.map([1])


def test_local_workers_build_the_scorer_once_and_keep_the_order() -> None:
    with scoring_pool("local", SETUP, workers=2, threads=1) as pool:
        assert isinstance(pool, ProcessPool) and pool.workers == 2
        first = pool.map(ITEMS)
        second = pool.map(ITEMS[::-1])
    assert [r[0] for r in first] == EXPECTED
    assert [r[0] for r in second] == EXPECTED[::-1]
    pids = {r[1] for r in first + second}
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids  # the same two workers for both maps
    assert {r[2] for r in first} == {1}  # each worker with its threads


@pytest.mark.parametrize(
    ("kind", "workers", "address", "field"),
    [
        ("slurm", None, None, "X.executor"),
        ("local", 0, None, "X.workers"),
        ("local", True, None, "X.workers"),
        ("inline", 2, None, "X.workers"),
        ("local", 2, "ray://h:10001", "X.address"),
    ],
)
def test_bad_pool_settings_name_the_field(
    kind: str, workers: object, address: str | None, field: str
) -> None:
    with pytest.raises(ConfigError) as err:
        check_pool(kind, workers, address, "X")  # type: ignore[arg-type]
    assert err.value.field == field
