"""The SQLite store: round trip, WAL, atomic claims across processes, stale trials."""

from __future__ import annotations

import math
import multiprocessing
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edgeslim.engine.store import Store, owner_alive, owner_id, process_owner
from edgeslim.errors import ConfigError


def test_round_trip(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with Store.open(db) as store:
        assert store.journal_mode == "wal"
        exp = store.create_experiment("e", {"a": [1, 2]})
        assert store.create_experiment("e", {"other": 1}).id == exp.id  # get-or-create
        t = store.add_trial(exp.id, "k1", "m/baseline", {"x": 1}, kind="baseline")
        again = store.add_trial(exp.id, "k1", "renamed", {"x": 2}, kind="baseline")
        assert again.id == t.id and again.name == "m/baseline"
        t2 = store.add_trial(exp.id, "k2", "m/l1", {"x": 3}, depends_on="k1")
        assert (t.status, t.attempts, t2.depends_on) == ("queued", 0, "k1")
        assert store.claim_trial(t.id, "me:1") and not store.claim_trial(t.id, "you:2")
        store.finish_trial(
            t.id,
            metrics={"top1": 91.5, "bad": math.nan, "nested": {"inf": math.inf}},
            measurements=[{"runtime": "torch"}],
            timings={"total_s": 1.5},
            env={"hash": "abc"},
            artifact="/a/model.pt",
        )
        assert store.claim_trial(t2.id)
        store.fail_trial(t2.id, "ValueError: boom", timings={"total_s": 0.5}, traceback="tb")
    with Store.open(db) as store:  # reopened: everything was committed
        exp = store.get_experiment("e")
        assert exp is not None and exp.config == {"a": [1, 2]}
        done, failed = store.trials(exp.id)
        assert (done.status, done.owner, done.attempts) == ("done", "me:1", 1)
        assert done.metrics == {"top1": 91.5, "bad": None, "nested": {"inf": None}}
        assert done.measurements == [{"runtime": "torch"}] and done.env == {"hash": "abc"}
        assert done.artifact == "/a/model.pt" and done.timings == {"total_s": 1.5}
        assert done.finished_at is not None and done.started_at is not None
        assert (failed.status, failed.error, failed.traceback) == ("failed", "ValueError: boom", "tb")
        assert store.counts(exp.id) == {"queued": 0, "running": 0, "done": 1, "failed": 1}
        assert [t.name for t in store.trials(exp.id, status="failed")] == ["m/l1"]
        assert store.trial("k2", experiment_id=exp.id) == failed
        assert [e.name for e in store.experiments()] == ["e"]


def test_requeue_stale_only_takes_trials_of_dead_owners(tmp_path: Path) -> None:
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    parent = process_owner(os.getppid())  # a live process other than this one
    with Store.open(tmp_path / "s.db") as store:
        exp = store.create_experiment("e", {})
        ids = {key: store.add_trial(exp.id, key, key, {}).id for key in "abcdefg"}
        store.claim_trial(ids["a"], parent)
        store.claim_trial(ids["b"], f"{host}:{dead.pid}")  # the older host:pid form
        store.claim_trial(ids["c"], process_owner(dead.pid))
        # a pid that now belongs to another process (a restarted container's PID 1): not the claimant
        store.claim_trial(ids["d"], f"{host}:{os.getppid()}:12345.67")
        store.claim_trial(ids["e"], owner_id())  # this very process, but it is not running it
        store.claim_trial(ids["f"], owner_id())  # ... while this one it is running
        store.claim_trial(ids["g"], f"elsewhere-{host}:{os.getppid()}:1.00")
        assert store.requeue_stale(exp.id, in_flight={ids["f"]}) == 5
        statuses = {t.key: t.status for t in store.trials(exp.id)}
        assert statuses == dict(
            a="running", b="queued", c="queued", d="queued", e="queued", f="running", g="queued"
        )
        assert [t.owner for t in store.trials(exp.id, status="queued")] == [None] * 5
    assert owner_id() == process_owner(os.getpid()) and owner_id().startswith(f"{host}:{os.getpid()}:")
    assert owner_alive(parent) and owner_alive(f"{host}:{os.getppid()}")
    assert not owner_alive(f"{host}:{os.getppid()}:12345.67") and not owner_alive(process_owner(dead.pid))
    assert not owner_alive(None) and not owner_alive("garbage")


def test_requeue_and_records_are_guarded_by_status(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        exp = store.create_experiment("e", {})
        t = store.add_trial(exp.id, "k", "k", {})
        assert not store.requeue(t.id)  # queued already
        assert store.claim_trial(t.id, "me:1:1.00")
        # the stale check looked while it ran, the trial finished, then the requeue came
        assert store.finish_trial(t.id, metrics={"top1": 90.0}, artifact="/a/model.pt", env={"hash": "h"})
        assert not store.requeue(t.id, only_if="running", owner="me:1:1.00")
        done = store.trial(t.id)
        assert done is not None and (done.status, done.metrics) == ("done", {"top1": 90.0})
        # an explicit rerun (--retry-failed, a recipe step whose artifact changed) still works ...
        assert store.requeue(t.id)
        # ... and a claim clears what the earlier attempt recorded
        assert store.claim_trial(t.id, "me:1:1.00")
        again = store.trial(t.id)
        assert again is not None and (again.status, again.attempts) == ("running", 2)
        assert (again.metrics, again.artifact, again.env, again.finished_at) == ({}, None, {}, None)
        # requeued as stale while its worker still ran: the late result does not overwrite the queue
        assert store.requeue(t.id, only_if="running")
        assert not store.finish_trial(t.id, metrics={"top1": 1.0})
        assert not store.fail_trial(t.id, "late")
        late = store.trial(t.id)
        assert late is not None and (late.status, late.metrics, late.error) == ("queued", {}, None)
        assert not store.requeue(t.id, only_if="failed")


def _claim_all(db: str, n: int, owner: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store = Store.open(db)
    exp = store.get_experiment("race")
    assert exp is not None
    won = [i for i in range(1, n + 1) if store.claim_trial(i, owner)]
    out.put(won)


def test_concurrent_claims_give_each_trial_to_one_process(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    n = 60
    with Store.open(db) as store:
        exp = store.create_experiment("race", {})
        ids = [store.add_trial(exp.id, f"k{i}", f"t{i}", {}).id for i in range(n)]
    assert ids == list(range(1, n + 1))
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(db, n, f"p{i}", queue)) for i in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    claimed = sorted(i for won in results for i in won)
    assert claimed == ids  # every trial claimed exactly once in total


def test_bad_paths_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        Store.open(tmp_path)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConfigError, match="not a usable SQLite store"):
        Store.open(junk)
