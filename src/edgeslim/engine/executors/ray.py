"""The Ray executor: each trial is a Ray task, on a local Ray instance or a cluster (``--address``).

Tasks run the same :func:`edgeslim.engine.jobs.execute` as local workers and return its
:class:`Outcome`; the driver writes it into the store (remote nodes cannot reach the driver's
SQLite file), so the same experiment gives the same records on either executor. Each task reserves
``threads`` CPUs (and any custom ``resources``) and runs with that many torch threads.

With ``ship_files`` (the default on a cluster, ``address`` given) the trial's inputs travel with it
through Ray's object store and what it writes comes back to the driver's artifact folder
(:mod:`edgeslim.engine.executors.shipping`), so the nodes need no shared file system. Without it,
trials read data, weights and artifacts by the driver's paths and write where the driver would.

A task whose worker process or node dies is run again by Ray on any node that fits, up to
``retries`` times (a node lost mid-sweep loses no trial); after that the trial is recorded failed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from edgeslim.engine.executors.base import KILL_GRACE_S, Finished, threads_per_worker
from edgeslim.engine.executors.pool import Setup
from edgeslim.engine.executors.shipping import Packer, Parcel, land, run_shipped
from edgeslim.engine.jobs import Outcome, TrialFn, TrialJob, execute, run_node
from edgeslim.errors import ConfigError

#: How often Ray runs a task again whose worker process or node died.
RAY_RETRIES = 2


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "executor 'ray' needs Ray: pip install -c constraints.txt ray (or use the local executor)",
            field="executor",
        ) from None
    return ray


def connect(address: str | None, num_cpus: int) -> tuple[Any, bool]:
    """Ray, started locally with ``num_cpus`` CPUs or connected to the cluster at ``address``;
    and whether this call started it (then the caller shuts it down)."""
    ray = _import_ray()
    if ray.is_initialized():
        return ray, False
    try:
        ray.init(
            address=address,
            num_cpus=None if address else num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise ConfigError(f"cannot start or reach {where}: {exc}") from None
    return ray, True


def _run(job: TrialJob, trial_fn: TrialFn) -> Outcome:
    return execute(job, trial_fn)


def _fetch(ref: Any) -> bytes:
    import ray

    return bytes(ray.get(ref))


def _run_shipped(job: TrialJob, parcel: Parcel, trial_fn: TrialFn) -> tuple[Outcome, bytes | None]:
    return run_shipped(job, parcel, trial_fn, _fetch)


class RayExecutor:
    """Up to ``workers`` concurrent Ray tasks of ``threads`` CPUs each.

    ``ship_files`` (default: on with ``address``, off on a local instance) sends each trial's inputs
    through the object store and brings its files back, for nodes without the driver's files.
    ``resources``: custom Ray resources each task reserves (e.g. ``{"gpu_box": 1}`` to keep trials
    on the nodes that offer it).
    """

    name = "ray"

    def __init__(
        self,
        workers: int,
        *,
        address: str | None = None,
        threads: int | None = None,
        trial_fn: TrialFn = run_node,
        kill_grace_s: float = KILL_GRACE_S,
        ship_files: bool | None = None,
        resources: dict[str, float] | None = None,
        retries: int = RAY_RETRIES,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}", field="workers")
        if retries < 0:
            raise ConfigError(f"RayExecutor.retries must be >= 0, got {retries}", field="RayExecutor.retries")
        self.slots = workers
        self.threads = threads_per_worker(workers, threads) if address is None else (threads or 1)
        self.address = address
        self.trial_fn = trial_fn
        self.kill_grace_s = kill_grace_s
        self.ship_files = address is not None if ship_files is None else ship_files
        self.resources = dict(resources or {})
        self.retries = retries
        self._ray: Any = None
        self._remote: Any = None
        self._packer: Packer | None = None
        self._owns_runtime = False
        self._pending: dict[Any, tuple[TrialJob, float]] = {}
        self._parcels: dict[Any, Parcel] = {}  # what each shipped task in flight reads

    def start(self) -> None:
        self._ray, self._owns_runtime = connect(self.address, self.slots * self.threads)
        options: dict[str, Any] = {"num_cpus": self.threads, "max_retries": self.retries}
        if self.resources:
            options["resources"] = self.resources
        task = _run_shipped if self.ship_files else _run
        self._remote = self._ray.remote(task).options(**options)
        self._packer = Packer(self._ray.put) if self.ship_files else None

    def busy(self) -> int:
        return len(self._pending)

    def submit(self, job: TrialJob) -> None:
        if self._packer is not None:
            parcel = self._packer.parcel(job)
            ref = self._remote.remote(job, parcel, self.trial_fn)
            self._parcels[ref] = parcel
        else:
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
            self._release(ref)
            try:
                result = ray.get(ref)
            except Exception as exc:  # the task's worker or node died (past its retries), or cancelled
                text = str(exc).strip().splitlines()
                outcome = Outcome.failed(f"ray: {type(exc).__name__}: {text[0] if text else ''}")
            else:
                outcome = land(result[0], result[1], job.workdir) if self.ship_files else result
            finished.append(Finished(job.trial_id, outcome.status, outcome.error, outcome))
        now = time.monotonic()
        for ref, (job, started) in list(self._pending.items()):
            if job.timeout_s is not None and now - started > job.timeout_s + self.kill_grace_s:
                ray.cancel(ref, force=True)
                del self._pending[ref]
                self._release(ref)
                error = (
                    f"ran past the time limit of {job.timeout_s:g} s (limits.trial_timeout_s) and did not "
                    f"stop; its Ray task was cancelled after {now - started:.0f} s"
                )
                finished.append(Finished(job.trial_id, "failed", error, Outcome.failed(error)))
        return finished

    def _release(self, ref: Any) -> None:
        parcel = self._parcels.pop(ref, None)
        if parcel is not None and self._packer is not None:
            self._packer.release(parcel)

    def shutdown(self) -> None:
        if self._ray is None:
            return
        for ref in list(self._pending):
            self._ray.cancel(ref, force=True)
        self._pending.clear()
        self._parcels.clear()
        self._packer = None
        if self._owns_runtime:
            self._ray.shutdown()
        self._ray = None


class _ScoringActor:
    """A Ray actor holding one scorer (:mod:`edgeslim.engine.executors.pool`)."""

    def __init__(self, setup: Setup, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self._scorer = setup()

    def score(self, item: Any) -> Any:
        return self._scorer(item)


class RayPool:
    """``workers`` Ray actors of ``threads`` CPUs each; the setup is put in the object store once
    and every actor builds its scorer from it (on a cluster, nodes need no shared files). An actor
    whose process or node dies is restarted, and its items are scored again, up to ``retries`` times."""

    name = "ray"

    def __init__(
        self,
        setup: Setup,
        workers: int,
        *,
        threads: int | None = None,
        address: str | None = None,
        retries: int = RAY_RETRIES,
    ) -> None:
        self.workers = workers
        self.threads = threads_per_worker(workers, threads) if address is None else (threads or 1)
        self._ray, self._owns_runtime = connect(address, workers * self.threads)
        actor = self._ray.remote(_ScoringActor).options(
            num_cpus=self.threads, max_restarts=retries, max_task_retries=retries
        )
        setup_ref = self._ray.put(setup)
        self._actors = [actor.remote(setup_ref, self.threads) for _ in range(workers)]

    def map(self, items: Sequence[Any]) -> list[Any]:
        from ray.util import ActorPool

        pool = ActorPool(self._actors)
        return list(pool.map(lambda actor, item: actor.score.remote(item), list(items)))

    def close(self) -> None:
        if self._ray is None:
            return
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []
        if self._owns_runtime:
            self._ray.shutdown()
        self._ray = None
