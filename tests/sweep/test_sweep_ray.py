"""The Ray executor on a real local Ray instance gives the same records as the local executor."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from edgeslim.engine.executors.pool import scoring_pool
from edgeslim.engine.store import Store
from edgeslim.sweep import load_experiment, run_sweep

DETERMINISTIC = (
    "top1",
    "params",
    "nonzero_params",
    "macs",
    "size_bytes",
    "param_reduction_ratio",
    "top1_drop",
)


def _records(db: Path) -> dict[str, tuple[str, dict[str, object], list[str]]]:
    with Store.open(db) as store:
        exp = store.get_experiment("tiny")
        assert exp is not None
        return {
            t.key: (
                t.status,
                {k: t.metrics.get(k) for k in DETERMINISTIC},
                sorted(m for m in t.metrics if m != "warnings"),
            )
            for t in store.trials(exp.id)
        }


@pytest.mark.slow
def test_ray_and_local_give_the_same_records(write_experiment, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("ray", reason="ray is not installed (pip install -c constraints.txt ray)")
    experiment = load_experiment(write_experiment())
    local = run_sweep(experiment, db=tmp_path / "local" / "s.db", progress=False)
    ray = run_sweep(experiment, db=tmp_path / "ray" / "s.db", executor="ray", workers=2, progress=False)
    assert (ray.executor, ray.workers, ray.threads, ray.done, ray.failed) == ("ray", 2, 1, 6, 0)
    assert (local.done, local.failed) == (6, 0)  # start, baseline measure, 2 x (prune, measure)
    local_records = _records(tmp_path / "local" / "s.db")
    assert _records(tmp_path / "ray" / "s.db") == local_records
    assert all(status == "done" for status, _m, _k in local_records.values())


@pytest.mark.slow
def test_ray_actors_score_like_the_other_pools() -> None:
    """The scoring pool of compress / nas search on Ray actors (the other pools:
    ``tests/engine/test_engine_pool.py``)."""
    cloudpickle = pytest.importorskip("ray.cloudpickle")
    sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
    import test_engine_pool
    from test_engine_pool import EXPECTED, ITEMS, SETUP

    # Ray's workers cannot import the test module: ship the toy scorer's class by value
    cloudpickle.register_pickle_by_value(test_engine_pool)
    with scoring_pool("ray", SETUP, workers=2, threads=1) as pool:
        results = pool.map(ITEMS)
    assert [r[0] for r in results] == EXPECTED
    assert os.getpid() not in {r[1] for r in results}
