"""The Ray executor: each trial is a Ray task, on a local Ray instance or a cluster (``--address``).

Tasks run the same :func:`edgeslim.engine.jobs.execute` as local workers and return its
:class:`Outcome`; the driver writes it into the store (remote nodes cannot reach the driver's
SQLite file), so the same experiment gives the same records on either executor. Trials read the
data, weights and baseline artifacts by path: on a multi-node cluster those paths must be on a
shared file system. Each task reserves ``threads`` CPUs and runs with that many torch threads.
"""

from __future__ import annotations

import time
from typing import Any

from edgeslim.engine.executors.base import KILL_GRACE_S, Finished, threads_per_worker
from edgeslim.engine.jobs import Outcome, TrialFn, TrialJob, execute, run_node
from edgeslim.errors import ConfigError


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "executor 'ray' needs Ray: pip install -c constraints.txt ray (or use the local executor)",
            field="executor",
        ) from None
    return ray


def _run(job: TrialJob, trial_fn: TrialFn) -> Outcome:
    return execute(job, trial_fn)


class RayExecutor:
    """Up to ``workers`` concurrent Ray tasks of ``threads`` CPUs each."""

    name = "ray"

    def __init__(
        self,
        workers: int,
        *,
        address: str | None = None,
        threads: int | None = None,
        trial_fn: TrialFn = run_node,
        kill_grace_s: float = KILL_GRACE_S,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}", field="workers")
        self.slots = workers
        self.threads = threads_per_worker(workers, threads) if address is None else (threads or 1)
        self.address = address
        self.trial_fn = trial_fn
        self.kill_grace_s = kill_grace_s
        self._ray: Any = None
        self._remote: Any = None
        self._owns_runtime = False
        self._pending: dict[Any, tuple[TrialJob, float]] = {}

    def start(self) -> None:
        ray = self._ray = _import_ray()
        if not ray.is_initialized():
            try:
                ray.init(
                    address=self.address,
                    num_cpus=None if self.address else self.slots * self.threads,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"the Ray cluster at {self.address!r}" if self.address else "a local Ray instance"
                raise ConfigError(f"cannot start or reach {where}: {exc}") from None
            self._owns_runtime = True
        self._remote = ray.remote(_run).options(num_cpus=self.threads, max_retries=0)

    def busy(self) -> int:
        return len(self._pending)

    def submit(self, job: TrialJob) -> None:
        ref = self._remote.remote(job, self.trial_fn)
        self._pending[ref] = (job, time.monotonic())

    def wait(self, timeout_s: float) -> list[Finished]:
        ray = self._ray
        if not self._pending:
            time.sleep(timeout_s)
            return []
        ready, _ = ray.wait(list(self._pending), num_returns=len(self._pending), timeout=timeout_s)
        finished: list[Finished] = []
        for ref in ready:
            job, _started = self._pending.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as exc:  # the task's worker crashed or was cancelled
                text = str(exc).strip().splitlines()
                outcome = Outcome.failed(f"ray: {type(exc).__name__}: {text[0] if text else ''}")
            finished.append(Finished(job.trial_id, outcome.status, outcome.error, outcome))
        now = time.monotonic()
        for ref, (job, started) in list(self._pending.items()):
            if job.timeout_s is not None and now - started > job.timeout_s + self.kill_grace_s:
                ray.cancel(ref, force=True)
                del self._pending[ref]
                error = (
                    f"ran past the time limit of {job.timeout_s:g} s (limits.trial_timeout_s) and did not "
                    f"stop; its Ray task was cancelled after {now - started:.0f} s"
                )
                finished.append(Finished(job.trial_id, "failed", error, Outcome.failed(error)))
        return finished

    def shutdown(self) -> None:
        if self._ray is None:
            return
        for ref in list(self._pending):
            self._ray.cancel(ref, force=True)
        self._pending.clear()
        if self._owns_runtime:
            self._ray.shutdown()
        self._ray = None
