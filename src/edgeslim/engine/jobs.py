"""Jobs: one node of a plan, run by a worker (this process, a local worker process or a Ray task).

A :class:`TrialJob` is plain data (it crosses process and node borders): the node's config (its step,
data and labels), the artifact of the node it depends on, the folder for what it writes, threads and
limits. :func:`run_node` rebuilds the step and runs its handler (:mod:`edgeslim.engine.handlers`);
:func:`execute` wraps any job function with the thread count, time/memory limits, the NaN check,
timings and the environment fingerprint, and never raises: a failure becomes a failed
:class:`Outcome` with its error text, which the runner records.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from edgeslim.bench import Measurement, env_fingerprint, threads
from edgeslim.engine.handlers import StepContext, StepInput, artifact_files, run_step
from edgeslim.engine.keys import sha256_files
from edgeslim.engine.limits import LimitGuard, TrialLimitExceeded
from edgeslim.engine.steps import DataSpec, Step, step_from_dict
from edgeslim.errors import EdgeslimError
from edgeslim.train import seed_everything


@dataclasses.dataclass(frozen=True)
class TrialJob:
    """Everything a worker needs to run one trial (plain data: crosses process and node borders)."""

    trial_id: int
    key: str
    name: str
    kind: str
    config: dict[str, Any]  # Node.config(): {"step", "data", "labels"}
    input: dict[str, Any] | None  # the input record's {"artifact", "kind", "files"} (None: a start step)
    workdir: str
    threads: int = 1
    timeout_s: float | None = None
    memory_mb: float | None = None
    workers: int = 1
    resume: bool = False  # an earlier attempt was interrupted: go on from its files
    progress: bool = False
    exclusive: bool = False  # the runner ran nothing else meanwhile (an exclusive measurement slot)


@dataclasses.dataclass(frozen=True)
class TrialOutput:
    """What a trial function returns; :func:`execute` turns it into an :class:`Outcome`."""

    metrics: dict[str, Any]
    measurements: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    artifact: str | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A finished trial, done or failed, ready to be written to the store."""

    status: Literal["done", "failed"]
    metrics: dict[str, Any]
    measurements: list[dict[str, Any]]
    artifact: str | None
    error: str | None
    traceback: str | None
    timings: dict[str, Any]
    env: dict[str, Any]
    #: The exception a failed job raised (kept in the process that ran it; never stored or pickled
    #: across processes), so an inline run can re-raise it with its type.
    exception: BaseException | None = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def failed(
        cls,
        error: str,
        *,
        timings: dict[str, Any] | None = None,
        tb: str | None = None,
        exception: BaseException | None = None,
    ) -> Outcome:
        return cls("failed", {}, [], None, error, tb, dict(timings or {}), {}, exception)

    def __reduce__(self) -> Any:  # exceptions may not pickle: a worker sends the outcome without it
        fields = [getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "exception"]
        return (type(self), tuple(fields))

    def record(self, store: Any, trial_id: int) -> bool:
        """Write this outcome into ``store`` (an :class:`edgeslim.engine.store.Store`); False if the
        trial was no longer running there (requeued as stale meanwhile), so nothing was written."""
        if self.status == "done":
            return bool(
                store.finish_trial(
                    trial_id,
                    metrics=self.metrics,
                    measurements=self.measurements,
                    timings=self.timings,
                    env=self.env,
                    artifact=self.artifact,
                )
            )
        return bool(
            store.fail_trial(
                trial_id, self.error or "failed", timings=self.timings, env=self.env, traceback=self.traceback
            )
        )


TrialFn = Callable[[TrialJob], TrialOutput]


def non_finite(value: Any, prefix: str = "") -> list[str]:
    """Names of NaN or infinite numbers in ``value``: any real number (Python or NumPy), inside dicts,
    lists, tuples and :class:`Measurement` records at any depth (``a.b[2].c``)."""
    if isinstance(value, Measurement):
        value = value.to_dict()
    if isinstance(value, numbers.Real) and not isinstance(value, bool | int):
        return [] if math.isfinite(float(value)) else [prefix or "(value)"]
    bad: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            bad += non_finite(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            bad += non_finite(v, f"{prefix}[{i}]")
    return bad


def execute(job: TrialJob, fn: TrialFn, *, capture_warnings: bool = True) -> Outcome:
    """Run ``fn(job)`` under the job's threads and limits; every failure becomes a failed Outcome."""
    started = time.time()
    t0 = time.perf_counter()

    def timings(extra: dict[str, float] | None = None) -> dict[str, Any]:
        return {**(extra or {}), "started_at": started, "total_s": time.perf_counter() - t0}

    guard = LimitGuard(job.timeout_s, job.memory_mb)
    try:
        with threads(job.threads) as n_threads:
            try:
                with guard, warnings.catch_warnings(record=capture_warnings) as caught:
                    if capture_warnings:  # kept with the record (a worker's stderr is not the user's)
                        warnings.simplefilter("default")
                    output = fn(job)
            except TrialLimitExceeded:
                return Outcome.failed(guard.reason or "ran past a limit", timings=timings())
            env = {
                **env_fingerprint(),
                "sweep_workers": job.workers,
                "worker_threads": n_threads,
                "exclusive": job.exclusive,
            }
    except TrialLimitExceeded:  # delivered just as the trial ended
        return Outcome.failed(guard.reason or "ran past a limit", timings=timings())
    except EdgeslimError as exc:
        return Outcome.failed(
            f"{type(exc).__name__}: {exc}", timings=timings(), tb=traceback.format_exc(), exception=exc
        )
    except Exception as exc:  # a trial's bug must not stop the sweep (Ctrl-C still does)
        text = str(exc).strip().splitlines()
        return Outcome.failed(
            f"{type(exc).__name__}: {text[0] if text else ''}".strip(),
            timings=timings(),
            tb=traceback.format_exc(),
            exception=exc,
        )
    notes = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught or []))[:10]
    if notes:  # kept with the record instead of cluttering the live view
        output = dataclasses.replace(output, metrics={**output.metrics, "warnings": notes})
    bad = non_finite(output.metrics) + non_finite(output.measurements, "measurements")
    if bad:
        return Outcome.failed(
            f"the trial produced NaN/inf in {', '.join(bad)}", timings=timings(output.timings)
        )
    return Outcome(
        "done",
        output.metrics,
        output.measurements,
        output.artifact,
        None,
        None,
        timings(output.timings),
        env,
    )


# -- the real job ----------------------------------------------------------------------------
def step_context(job: TrialJob) -> tuple[Step, StepContext]:
    """The job's step and what its handler needs (data, input artifact, output prefix)."""
    step = step_from_dict(job.config["step"])
    data = DataSpec.from_dict(job.config["data"])
    given = job.input or {}
    source = StepInput(
        path=Path(given["artifact"]) if given.get("artifact") else None,
        kind=str(given.get("kind") or "checkpoint"),
        files=tuple(Path(f) for f in given.get("files") or ()),
    )
    position = int(job.config.get("labels", {}).get("position", 0))
    ctx = StepContext(
        input=source,
        data=data.data_source(),
        out=Path(job.workdir) / f"{position:02d}-{step.type}-{job.key[:10]}",
        threads=job.threads,
        progress=job.progress,
        resume=job.resume,
        labels=dict(job.config.get("labels") or {}),
        exclusive=job.exclusive,
    )
    return step, ctx


def run_node(job: TrialJob) -> TrialOutput:
    """Run one node: its step's handler on its input. Every job starts from the data's seed, so a
    model trained from scratch and everything random after it repeat on any worker or node."""
    step, ctx = step_context(job)
    seed_everything(int(job.config["data"].get("seed", 0)))
    if step.type != "start" and ctx.input.path is None:
        raise EdgeslimError(f"{job.name!r} has no input artifact to start from")
    Path(job.workdir).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = run_step(step, ctx)
    seconds = time.perf_counter() - t0
    files = result.files or artifact_files(result.artifact)
    metrics = {
        **result.metrics,
        "artifact_kind": result.kind,
        "files": [str(f) for f in files],
        "artifact_sha256": sha256_files(artifact_files(result.artifact)),
    }
    return TrialOutput(
        metrics=metrics,
        measurements=[m.to_dict() for m in result.measurements],
        artifact=str(result.artifact),
        timings={"step_s": seconds},
    )
