"""The inline executor: runs one job at a time in this process (``edgeslim run``).

No worker process, so a recipe's training shows its progress bars and a failing step's error reaches
the caller as it was raised (:attr:`Finished.outcome` keeps the exception).
"""

from __future__ import annotations

from edgeslim.engine.executors.base import Finished, usable_cpus
from edgeslim.engine.jobs import Outcome, TrialFn, TrialJob, execute, run_node


class InlineExecutor:
    """One slot; :meth:`wait` runs the submitted job to its end."""

    name = "inline"
    slots = 1

    def __init__(self, *, threads: int | None = None, trial_fn: TrialFn = run_node) -> None:
        self.threads = threads or usable_cpus()
        self.trial_fn = trial_fn
        self._job: TrialJob | None = None

    def start(self) -> None:
        pass

    def submit(self, job: TrialJob) -> None:
        if self._job is not None:
            raise RuntimeError("submit() while a job is waiting to run; check busy() < slots first")
        self._job = job

    def busy(self) -> int:
        return int(self._job is not None)

    def wait(self, timeout_s: float) -> list[Finished]:
        job, self._job = self._job, None
        if job is None:
            return []
        try:
            outcome = execute(job, self.trial_fn, capture_warnings=False)  # the user sees them
        except KeyboardInterrupt as exc:  # recorded as failed by the runner, which then re-raises it
            outcome = Outcome.failed(f"{type(exc).__name__}: {exc}", exception=exc)
        return [Finished(job.trial_id, outcome.status, outcome.error, outcome)]

    def shutdown(self) -> None:
        self._job = None


__all__ = ["InlineExecutor"]
