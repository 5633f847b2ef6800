"""Real sweeps on the local executor: failing trials are isolated, reruns resume, SIGKILL loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from edgeslim.sweep import Store, load_experiment, run_sweep


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
    assert (summary.total, summary.done, summary.failed, summary.ran) == (4, 3, 1, 4)
    assert (summary.workers, summary.executor) == (2, "local")
    with Store.open(db) as store:
        exp = store.get_experiment("tiny")
        assert exp is not None
        records = {t.name: t for t in store.trials(exp.id)}
    failed = records["resnet20_tiny/fpgm ratio=0.5"]
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.startswith("TrainingError: the loss is nan")
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
    assert (again.ran, again.skipped, again.done, again.failed) == (0, 3, 3, 1)


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
    assert (summary.done, summary.failed, summary.total) == (5, 0, 5)
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
