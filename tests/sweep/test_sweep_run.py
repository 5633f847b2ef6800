"""Real sweeps on the local executor: failing trials are isolated, reruns resume, SIGKILL loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from sweep_helpers import InlineExecutor, exits_on_half, trivial_trial

from edgeslim.engine.executors import Finished, LocalExecutor
from edgeslim.engine.jobs import TrialJob
from edgeslim.engine.runner import register
from edgeslim.engine.store import Store, TrialRecord, owner_id, process_owner
from edgeslim.sweep import expand, load_experiment, run_sweep


def test_a_failing_trial_is_recorded_while_the_others_finish(write_experiment, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_experiment(
        methods=[
            {"prune": {"method": "l1", "ratio": [0.25, 0.5]}},
            # a learning rate this large overflows the weights: the loss becomes NaN and training stops
            {
                "prune": {
                    "method": "fpgm",
                    "ratio": 0.5,
                    "finetune": {"epochs": 1, "lr": 1.0e30, "batch_size": 40},
                }
            },
        ],
    )
    db = tmp_path / "runs" / "s.db"
    summary = run_sweep(load_experiment(path), db=db, progress=False)
    # nodes: the start, the baseline's measure, and a prune + measure per grid point; the failed prune's
    # measure is recorded as failed without running
    assert (summary.total, summary.done, summary.failed, summary.ran) == (8, 6, 2, 7)
    assert (summary.workers, summary.executor) == (2, "local")
    with Store.open(db) as store:
        exp = store.get_experiment("tiny")
        assert exp is not None
        records = {t.name: t for t in store.trials(exp.id)}
    failed = records["resnet20_tiny/fpgm ratio=0.5 [prune]"]
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.startswith("TrainingError: the loss is nan")
    skipped = records["resnet20_tiny/fpgm ratio=0.5"]
    assert skipped.status == "failed" and "the step before it" in str(skipped.error)
    for name in ("resnet20_tiny/baseline", "resnet20_tiny/l1 ratio=0.25", "resnet20_tiny/l1 ratio=0.5"):
        record = records[name]
        assert record.status == "done" and record.attempts == 1
        assert record.env["hash"] and record.env["sweep_workers"] == 2 and record.env["worker_threads"] == 1
        assert Path(record.artifact or "").is_file()
        assert record.timings["total_s"] > 0 and 0 <= record.metrics["top1"] <= 100
    assert Path(records["resnet20_tiny/l1 ratio=0.5"].artifact or "").parent.parent == (
        tmp_path / "runs" / "tiny"
    )
    # a rerun finds everything finished (the failure is kept; --retry-failed would redo it)
    again = run_sweep(load_experiment(path), db=db, progress=False)
    assert (again.ran, again.skipped, again.done, again.failed) == (0, 6, 6, 2)


def test_sigkilled_sweep_resumes_without_losing_finished_trials(write_experiment, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_experiment(
        methods=[{"prune": {"method": "l1", "ratio": [0.2, 0.3, 0.4, 0.5]}}],
        finetune={"epochs": 1, "lr": 0.01, "batch_size": 20},
        execution={"workers": 1, "threads": 1},
    )
    db = tmp_path / "s.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeslim.cli.app", "sweep", str(path), "--db", str(db), "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    done_before: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(done_before) < 2:
            time.sleep(0.2)
            if db.exists():
                with Store.open(db) as store:
                    exp = store.get_experiment("tiny")
                    if exp is not None:
                        done_before = {t.key: t.finished_at or 0 for t in store.trials(exp.id, status="done")}
        assert len(done_before) >= 2, "the sweep finished no trial in time"
        workers = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    _gone, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, f"workers outlived the killed sweep: {alive}"
    with Store.open(db) as store:
        exp = store.get_experiment("tiny")
        assert exp is not None
        before = store.trials(exp.id)
    assert sum(t.status == "done" for t in before) >= len(done_before)
    assert any(t.status in ("queued", "running") for t in before), "the kill came too late to test resuming"

    summary = run_sweep(load_experiment(path), db=db, progress=False)
    assert (summary.done, summary.failed, summary.total) == (10, 0, 10)
    assert summary.skipped >= len(done_before)
    with Store.open(db) as store:
        after = {t.key: t for t in store.trials(exp.id)}
    for key, finished_at in done_before.items():  # finished trials were neither lost nor redone
        assert (
            after[key].status == "done" and after[key].finished_at == finished_at and after[key].attempts == 1
        )
    interrupted = [t for t in before if t.status == "running"]
    for t in interrupted:
        assert after[t.key].attempts == 2


def _records_by_name(db: Path) -> dict[str, TrialRecord]:
    with Store.open(db) as store:
        exp = store.get_experiment("tiny")
        assert exp is not None
        return {t.name: t for t in store.trials(exp.id)}


@pytest.mark.timeout(60)
def test_a_trial_this_process_left_running_is_taken_over_not_waited_for(
    write_experiment: Callable[..., Path], tmp_path: Path
) -> None:
    """A resumed sweep used to wait forever on a baseline its own owner id held (same pid again)."""
    experiment = load_experiment(write_experiment())
    db = tmp_path / "s.db"
    with Store.open(db) as store:
        exp_id = register(store, "tiny", "sweep", {}, expand(experiment), strict=True)
        start = store.trials(exp_id, kind="start")[0]
        assert store.claim_trial(start.id, owner_id())
    executor = InlineExecutor()
    summary = run_sweep(experiment, db=db, executor=executor, progress=False, poll_s=0.01)
    assert (summary.total, summary.done, summary.failed, summary.ran) == (6, 6, 0, 6)
    assert executor.jobs[0].name == "resnet20_tiny/start"
    assert sorted(j.name for j in executor.jobs) == [
        "resnet20_tiny/baseline",
        "resnet20_tiny/l1 ratio=0.25",
        "resnet20_tiny/l1 ratio=0.25 [prune]",
        "resnet20_tiny/l1 ratio=0.5",
        "resnet20_tiny/l1 ratio=0.5 [prune]",
        "resnet20_tiny/start",
    ]
    records = _records_by_name(db)
    assert records["resnet20_tiny/start"].attempts == 2
    assert records["resnet20_tiny/l1 ratio=0.5"].metrics["trial"] == "resnet20_tiny/l1 ratio=0.5"


@pytest.mark.timeout(60)
def test_a_sweep_takes_over_a_baseline_whose_sweep_dies_while_it_waits(
    write_experiment: Callable[..., Path], tmp_path: Path
) -> None:
    experiment = load_experiment(write_experiment())
    db = tmp_path / "s.db"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.0)"])
    try:
        with Store.open(db) as store:
            exp_id = register(store, "tiny", "sweep", {}, expand(experiment), strict=True)
            start = store.trials(exp_id, kind="start")[0]
            assert store.claim_trial(start.id, process_owner(other.pid))  # another live sweep has it
        executor = InlineExecutor()
        t0 = time.monotonic()
        summary = run_sweep(experiment, db=db, executor=executor, progress=False, poll_s=0.02)
        waited = time.monotonic() - t0
        # it waited while the other process lived (it is not reaped: a zombie counts as dead)
        assert other.poll() is not None and waited >= 0.5
    finally:
        if other.poll() is None:
            other.kill()
        other.wait()
    assert (summary.total, summary.done, summary.failed) == (6, 6, 0)
    assert executor.jobs[0].name == "resnet20_tiny/start"
    assert _records_by_name(db)["resnet20_tiny/start"].attempts == 2


def test_a_worker_killed_mid_trial_is_recorded_and_the_sweep_goes_on(
    write_experiment: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_experiment(
        methods=[{"prune": {"method": "l1", "ratio": [0.25, 0.5, 0.75]}}],
        execution={"workers": 1, "threads": 1},
    )
    db = tmp_path / "s.db"
    summary = run_sweep(load_experiment(path), db=db, progress=False, trial_fn=exits_on_half)
    assert (summary.total, summary.done, summary.failed, summary.ran) == (8, 6, 2, 7)
    records = _records_by_name(db)
    crashed = records["resnet20_tiny/l1 ratio=0.5 [prune]"]
    assert (crashed.status, crashed.error) == (
        "failed",
        "the worker process running this trial died with exit code 9",
    )
    after = records["resnet20_tiny/l1 ratio=0.75"]  # ran on the replacement worker
    assert after.status == "done" and after.metrics["trial"] == "resnet20_tiny/l1 ratio=0.75"


def test_submit_to_an_idle_worker_that_died_goes_to_a_fresh_worker(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with Store.open(db) as store:
        exp = store.create_experiment("e", {})
        trial = store.add_trial(exp.id, "k", "m/baseline", {}, kind="baseline")
        assert store.claim_trial(trial.id)
    executor = LocalExecutor(1, db_path=db, threads=1, trial_fn=trivial_trial)
    executor.start()
    try:
        idle = executor._workers[0].process
        idle.kill()  # killed while idle (out-of-memory killer, an operator)
        idle.join()
        job = TrialJob(trial.id, "k", "m/baseline", "baseline", {}, None, str(tmp_path / "w"))
        executor.submit(job)  # raised BrokenPipeError
        finished: list[Finished] = []
        deadline = time.monotonic() + 60
        while not finished and time.monotonic() < deadline:
            finished = executor.wait(0.2)
    finally:
        executor.shutdown()
    assert [(f.trial_id, f.status) for f in finished] == [(trial.id, "done")]
    assert executor.replaced == 1
    with Store.open(db) as store:
        record = store.trial(trial.id)
    assert record is not None and record.status == "done" and record.metrics["trial"] == "m/baseline"


def test_executors_count_cpus_with_the_data_loaders_helper() -> None:
    from edgeslim.data.folder import _usable_cpus
    from edgeslim.engine.executors import base

    assert base.usable_cpus is _usable_cpus  # one definition (affinity mask aware)
    assert base.threads_per_worker(1) == _usable_cpus() and base.threads_per_worker(2, 3) == 3
