"""The local executor: N long-lived worker processes, each running one trial at a time.

Workers are started with ``spawn`` (a clean interpreter: no inherited torch thread pools or SQLite
handles), pinned to ``threads`` torch threads, and write each finished trial straight into the
store, so a record is durable the moment its trial ends even if the driver is killed. On Linux a
worker dies with its driver (``PR_SET_PDEATHSIG``), so a killed sweep leaves no orphans running
trials that a rerun would start again. A worker that dies (out-of-memory killer, segfault,
``os._exit``) or whose trial runs far past its time limit is replaced and its trial recorded as
failed; a job handed to an idle worker that died meanwhile goes to its replacement.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from edgeslim.engine.executors.base import KILL_GRACE_S, Finished, threads_per_worker
from edgeslim.engine.jobs import Outcome, TrialFn, TrialJob, execute, run_node
from edgeslim.errors import ConfigError

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:  # no glibc (e.g. musl): workers still exit when the driver's pipe closes
            pass


def _worker_main(conn: Any, db_path: str, trial_fn: TrialFn, threads: int, parent_pid: int) -> None:
    """Loop: receive a job, run it, write its record, report back. Exits on None or a closed pipe."""
    _die_with_parent()
    if os.getppid() != parent_pid:  # the driver died before the death signal was armed
        return
    # Ctrl-C reaches the whole process group: the driver handles it (stops the workers, leaving
    # their trials unfinished for the next run), so a worker never records it as a trial failure.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    from edgeslim.engine.store import Store

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already set (e.g. by an import): harmless
        torch.set_num_interop_threads(1)
    store = Store.open(db_path)
    try:
        while True:
            try:
                job = conn.recv()
            except (EOFError, OSError):
                return
            if job is None:
                return
            outcome = execute(job, trial_fn)
            outcome.record(store, job.trial_id)
            try:
                conn.send((job.trial_id, outcome.status, outcome.error))
            except (BrokenPipeError, OSError):
                return
    finally:
        store.close()


@dataclasses.dataclass
class _Worker:
    process: BaseProcess
    conn: Any
    job: TrialJob | None = None
    started: float = 0.0


class LocalExecutor:
    """``workers`` processes x ``threads`` torch threads each (default: the usable CPUs divided evenly)."""

    name = "local"

    def __init__(
        self,
        workers: int,
        *,
        db_path: str | os.PathLike[str],
        threads: int | None = None,
        trial_fn: TrialFn = run_node,
        kill_grace_s: float = KILL_GRACE_S,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}", field="workers")
        self.slots = workers
        self.threads = threads_per_worker(workers, threads)
        self.db_path = str(Path(db_path).resolve())
        self.trial_fn = trial_fn
        self.kill_grace_s = kill_grace_s
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._undelivered: list[Finished] = []  # jobs that could not be handed to any worker
        self.replaced = 0

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(
            target=_worker_main,
            args=(child, self.db_path, self.trial_fn, self.threads, os.getpid()),
            name="edgeslim-sweep-worker",
            daemon=True,
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def start(self) -> None:
        self._workers = [self._spawn() for _ in range(self.slots)]

    def busy(self) -> int:
        return sum(w.job is not None for w in self._workers) + len(self._undelivered)

    def submit(self, job: TrialJob) -> None:
        """Hand ``job`` to an idle worker. An idle worker that died since the last :meth:`wait`
        (killed, out of memory) is replaced and the job goes to the new one; if that fails too, the
        job is reported failed by the next :meth:`wait`."""
        index = next((i for i, w in enumerate(self._workers) if w.job is None), None)
        if index is None:
            raise RuntimeError("submit() with no idle worker; check busy() < slots first")
        for attempt in range(2):
            worker = self._workers[index]
            worker.job, worker.started = job, time.monotonic()
            try:
                worker.conn.send(job)
                return
            except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
                worker.job = None
                if attempt == 0:
                    self._workers[index] = self._replace(worker)
        error = "could not hand the trial to a worker process: two fresh workers died at once"
        self._undelivered.append(Finished(job.trial_id, "failed", error, Outcome.failed(error)))

    def wait(self, timeout_s: float) -> list[Finished]:
        """Jobs that ended within ``timeout_s`` (reported by workers, or failed by a dead/killed one)."""
        finished, self._undelivered = self._undelivered, []
        if finished:
            timeout_s = 0.0
        waitables = [w.conn for w in self._workers] + [w.process.sentinel for w in self._workers]
        ready = set(multiprocessing.connection.wait(waitables, timeout=timeout_s)) if waitables else set()
        for i, worker in enumerate(self._workers):
            if worker.conn in ready:
                try:
                    trial_id, status, error = worker.conn.recv()
                except (EOFError, OSError):
                    pass  # the worker died; handled below through its sentinel
                else:
                    finished.append(Finished(trial_id, status, error))
                    worker.job = None
                    continue
            job = worker.job
            if not worker.process.is_alive():
                self._workers[i] = self._replace(worker)
                if job is not None:
                    code = worker.process.exitcode
                    why = " (killed: out of memory?)" if code == -signal.SIGKILL else ""
                    error = f"the worker process running this trial died with exit code {code}{why}"
                    finished.append(Finished(job.trial_id, "failed", error, Outcome.failed(error)))
            elif job is not None and job.timeout_s is not None:
                elapsed = time.monotonic() - worker.started
                if elapsed > job.timeout_s + self.kill_grace_s:
                    worker.process.kill()
                    worker.process.join()
                    self._workers[i] = self._replace(worker)
                    error = (
                        f"ran past the time limit of {job.timeout_s:g} s (limits.trial_timeout_s) and did "
                        f"not stop; its worker was killed after {elapsed:.0f} s"
                    )
                    timings = {"total_s": elapsed}
                    finished.append(
                        Finished(job.trial_id, "failed", error, Outcome.failed(error, timings=timings))
                    )
        return finished

    def _replace(self, worker: _Worker) -> _Worker:
        worker.conn.close()
        worker.process.join(timeout=1)
        if worker.process.is_alive():  # its pipe broke but it still runs: do not leave it behind
            worker.process.kill()
            worker.process.join()
        self.replaced += 1
        return self._spawn()

    def shutdown(self) -> None:
        for worker in self._workers:
            with contextlib.suppress(BrokenPipeError, OSError):
                worker.conn.send(None)
        deadline = time.monotonic() + 5
        for worker in self._workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self._workers = []
