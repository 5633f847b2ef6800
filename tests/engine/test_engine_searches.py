"""Searches in the store: recorded as done candidates, read back typed, named without clashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeslim.engine.searches import (
    SearchCandidate,
    check_store,
    free_name,
    load_search,
    record_search,
)
from edgeslim.engine.store import FinishedEntry, Store
from edgeslim.errors import ConfigError

CANDIDATES = [
    SearchCandidate("uniform 0%", "reference", 90.0, 2.0, params=100, macs=1000, plan={"knobs": {"a": 16}}),
    SearchCandidate("uniform 50%", "reference", 70.0, 1.0, params=50, macs=500, plan={"knobs": {"a": 8}}),
    SearchCandidate("12", "candidate", 85.0, 1.4, params=75, macs=750, plan={"knobs": {"a": 12}}),
    SearchCandidate(
        "10", "chosen", 82.0, 1.2, 1.25, 62, 620, top1=88.5, plan={"knobs": {"a": 10}}, latency_spread=0.15
    ),
]


def test_a_search_round_trips_through_the_store(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        name = record_search(store, "c1", "compress", {"max_latency_ms": 1.3}, CANDIDATES, env={"cpu": "x"})
        assert name == "c1"
        exp = store.get_experiment("c1")
        assert exp is not None and exp.kind == "compress"
        search = load_search(store, exp)
        records = store.trials(exp.id)
    assert search.candidates == tuple(CANDIDATES)
    assert search.summary == {"max_latency_ms": 1.3}
    assert search.chosen == CANDIDATES[3]
    assert [r.status for r in records] == ["done"] * 4
    assert [r.kind for r in records] == ["reference", "reference", "candidate", "chosen"]
    assert records[3].env == {"cpu": "x"} and records[3].metrics["latency_ms"] == 1.25
    row = CANDIDATES[0].row()
    assert row["reference"] == "uniform 0%" and CANDIDATES[2].row()["reference"] is None
    # the measured latency's spread is kept: over the 10% threshold the row is noisy
    assert records[3].metrics["latency_spread"] == 0.15 and search.candidates[3].row()["latency_noisy"]
    assert not row["latency_noisy"] and row["latency_spread"] is None


def test_a_second_search_of_the_same_name_gets_a_free_one(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        store.create_experiment("c1", {}, kind="sweep")
        assert free_name(store, "c1") == "c1-2"
        assert record_search(store, "c1", "nas", {}, CANDIDATES[:1]) == "c1-2"
        assert record_search(store, "c1", "nas", {}, CANDIDATES[:2]) == "c1-3"
        sweep = store.get_experiment("c1")
        assert sweep is not None
        with pytest.raises(ConfigError, match="is a sweep, not a search"):
            load_search(store, sweep)
        third = store.get_experiment("c1-3")
        assert third is not None and len(load_search(store, third).candidates) == 2


def test_add_finished_keeps_what_the_experiment_holds(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        exp = store.create_experiment("e", {}, kind="nas")
        first = FinishedEntry("k1", "a", "candidate", {}, {"top1_proxy": 1.0})
        assert store.add_finished(exp.id, [first, FinishedEntry("k2", "b", "candidate", {}, {})]) == 2
        again = FinishedEntry("k1", "changed", "candidate", {}, {"top1_proxy": 2.0})
        assert store.add_finished(exp.id, [again]) == 0
        (k1,) = [t for t in store.trials(exp.id) if t.key == "k1"]
    assert k1.name == "a" and k1.metrics == {"top1_proxy": 1.0} and k1.attempts == 1


def test_bad_kinds_and_roles_are_refused(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        with pytest.raises(ConfigError, match="kind"):
            record_search(store, "x", "sweep", {}, [])  # type: ignore[arg-type]
        bad = SearchCandidate("a", "winner", 1.0, 1.0)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="role"):
            record_search(store, "x", "nas", {}, [bad])
        assert store.experiments() == []  # nothing half-written


def test_check_store_refuses_what_cannot_hold_a_search(tmp_path: Path) -> None:
    check_store(tmp_path / "new.db", "CompressOptions.db")  # missing: made at the end
    assert not (tmp_path / "new.db").exists()
    with pytest.raises(ConfigError) as err:
        check_store(tmp_path, "CompressOptions.db")
    assert err.value.field == "CompressOptions.db" and "not a file" in str(err.value)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite" * 200)
    with pytest.raises(ConfigError, match=r"junk\.db"):
        check_store(junk, "CompressOptions.db")
