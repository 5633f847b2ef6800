"""Experiment files, trial functions and an in-process executor for sweep tests (a module, so tests
and spawned worker processes can import it)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import yaml

from edgeslim.engine.executors.base import Finished
from edgeslim.engine.jobs import TrialJob, TrialOutput, execute, run_node

#: What sweep tests measure by default: everything but memory, whose fresh-process probe costs a
#: second or two per runtime (tests that check memory ask for it).
FAST_METRICS = ["top1", "params", "macs", "size", "latency"]


def experiment_yaml(data: Path | str, **overrides: object) -> str:
    """A tiny experiment: resnet20_tiny (random weights), L1 at two rates, no fine-tuning, torch
    latency at batch 1.

    One thread per trial: on a busy machine two-thread OpenMP runs can be many times slower.
    """
    doc: dict[str, object] = {
        "name": "tiny",
        "models": [{"name": "resnet20_tiny", "init": "random"}],
        "data": {"path": str(data), "train_limit": 120, "test_limit": 60},
        "layers": {"types": ["conv"]},
        "methods": [{"prune": {"method": "l1", "ratio": [0.25, 0.5]}}],
        "measure": {
            "metrics": FAST_METRICS,
            "runtimes": ["torch"],
            "batch_sizes": [1],
            "latency_runs": 3,
            "warmup": 1,
        },
        "execution": {"workers": 2, "threads": 1},
    }
    doc.update(overrides)
    return yaml.safe_dump(doc, sort_keys=False)


def trivial_trial(job: TrialJob) -> TrialOutput:
    """No work: the record says which trial ran."""
    return TrialOutput(metrics={"top1": 50.0, "trial": job.name})


def exits_on_half(job: TrialJob) -> TrialOutput:
    """The worker process dies (as if killed) on the ratio=0.5 trial; the others are trivial."""
    if "ratio=0.5" in job.name:
        os._exit(9)
    return trivial_trial(job)


class InlineExecutor:
    """Runs each trial in this process at submit time (like Ray, the driver records the outcome)."""

    name = "inline"
    slots = 1
    threads = 1

    def __init__(self, trial_fn=trivial_trial) -> None:  # type: ignore[no-untyped-def]
        self.trial_fn = trial_fn
        self.started = 0
        self.jobs: list[TrialJob] = []
        self._done: list[Finished] = []

    def start(self) -> None:
        self.started += 1

    def submit(self, job: TrialJob) -> None:
        self.jobs.append(job)
        outcome = execute(job, self.trial_fn)
        self._done.append(Finished(job.trial_id, outcome.status, outcome.error, outcome))

    def busy(self) -> int:
        return len(self._done)

    def wait(self, timeout_s: float) -> list[Finished]:
        done, self._done = self._done, []
        if not done:
            time.sleep(min(timeout_s, 0.01))
        return done

    def shutdown(self) -> None:
        pass


def stalls_on_doomed_node(job: TrialJob) -> TrialOutput:
    """The real trial, except on the node started with ``EDGESLIM_TEST_NODE=doomed``, where it hangs
    (until the test kills that node). Leaves ``<trial id>-<node>`` in ``$EDGESLIM_TEST_MARKS``."""
    node = os.environ.get("EDGESLIM_TEST_NODE", "driver")
    (Path(os.environ["EDGESLIM_TEST_MARKS"]) / f"{job.trial_id}-{node}").touch()
    if node == "doomed":
        time.sleep(600)
    return run_node(job)


def upload(folder: Path, url: str) -> None:
    """Every file under ``folder`` to the fsspec folder ``url`` (e.g. ``s3://bucket/prefix``)."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url, skip_instance_cache=True)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        fs.pipe(f"{root}/{path.relative_to(folder).as_posix()}", path.read_bytes())
