"""Scoring pools: many independent evaluations of one expensive state, on the sweep's executors.

The searches of ``edgeslim compress`` and ``edgeslim nas search`` score hundreds of candidates
(a pruning plan or a subnet: build it from the dense model or supernet, re-estimate BatchNorm,
evaluate on held-out images). Each score needs the same large state (the model and the data), so a
pool's workers build a *scorer* once from a picklable ``setup`` and then score the items sent to
them; :meth:`ScoringPool.map` returns the results in the items' order. Three kinds, named as the
sweep's executors are:

- ``inline``: this process (and what ``local`` with one worker is);
- ``local``: worker processes on this machine (``spawn``: clean interpreters, no inherited thread
  pools), each with ``threads`` torch threads, dying with their driver;
- ``ray``: Ray actors on a local instance or a cluster (``address``); the setup travels once
  through the object store, so nodes need no shared file system (:mod:`.ray`).

A scorer must be a pure function of its item (the searches re-estimate BatchNorm on the same
batches for every candidate), so a pool of any size gives the scores one process would.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from edgeslim.bench.latency import threads as torch_threads
from edgeslim.engine.executors.base import threads_per_worker
from edgeslim.engine.executors.local import _die_with_parent
from edgeslim.errors import ConfigError

#: The kinds of pool, as the sweep's executors are named.
POOLS = ("inline", "local", "ray")

#: Builds a worker's scorer (called once per worker): ``setup() -> (item -> result)``.
Setup = Callable[[], Callable[[Any], Any]]


class ScoringPool(Protocol):
    """Scores items with ``workers`` copies of one scorer; results in the items' order."""

    name: str
    workers: int
    threads: int

    def map(self, items: Sequence[Any]) -> list[Any]: ...

    def close(self) -> None: ...


class InlinePool:
    """The scorer in this process, with ``threads`` torch threads while it scores."""

    name = "inline"
    workers = 1

    def __init__(self, setup: Setup, *, threads: int | None = None) -> None:
        self.threads = threads or torch.get_num_threads()
        self._scorer = setup()

    def map(self, items: Sequence[Any]) -> list[Any]:
        with torch_threads(self.threads):
            return [self._scorer(item) for item in items]

    def close(self) -> None:
        self._scorer = _closed


def _closed(item: Any) -> Any:
    raise RuntimeError("the scoring pool is closed")


#: The scorer of a ``local`` pool's worker process (built by :func:`_start_worker`).
_WORKER_SCORER: Callable[[Any], Any] | None = None


def _start_worker(setup: Setup, threads: int) -> None:
    global _WORKER_SCORER
    _die_with_parent()
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    _WORKER_SCORER = setup()


def _score_in_worker(item: Any) -> Any:
    assert _WORKER_SCORER is not None, "worker not started"
    return _WORKER_SCORER(item)


class ProcessPool:
    """``workers`` spawned processes, each building the scorer once; ``setup`` is pickled to each."""

    name = "local"

    def __init__(self, setup: Setup, workers: int, *, threads: int | None = None) -> None:
        self.workers = workers
        self.threads = threads_per_worker(workers, threads)
        self._executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(setup, self.threads),
        )

    def map(self, items: Sequence[Any]) -> list[Any]:
        try:
            return list(self._executor.map(_score_in_worker, items))
        except concurrent.futures.process.BrokenProcessPool as exc:
            raise RuntimeError(f"a scoring worker died ({exc}); rerun to resume the search") from None

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def check_pool(kind: str, workers: int | None, address: str | None, field: str) -> None:
    """``kind`` one of :data:`POOLS`, ``workers`` at least 1, ``address`` only for ray; ``field``:
    the config the values came from (``CompressOptions``, ``NasOptions``), for the error."""
    if kind not in POOLS:
        raise ConfigError(
            f"{field}.executor must be one of {', '.join(POOLS)}, not {kind!r}", field=f"{field}.executor"
        )
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(
            f"{field}.workers must be an integer of at least 1, got {workers!r}", field=f"{field}.workers"
        )
    if kind == "inline" and workers not in (None, 1):
        raise ConfigError(
            f"{field}.workers: the inline executor has one worker, got {workers}", field=f"{field}.workers"
        )
    if address is not None and kind != "ray":
        raise ConfigError(f"{field}.address is for the ray executor", field=f"{field}.address")


def open_pool(
    kind: str,
    setup: Setup,
    *,
    workers: int | None = None,
    threads: int | None = None,
    address: str | None = None,
) -> ScoringPool:
    """A pool of ``kind`` (:data:`POOLS`). ``workers`` default: one (``local`` with one worker runs
    inline: a process of its own would only add the cost of shipping the setup)."""
    check_pool(kind, workers, address, "pool")
    n = workers or 1
    if kind == "ray":  # ray is an optional extra: imported only when asked for
        from edgeslim.engine.executors.ray import RayPool

        return RayPool(setup, n, threads=threads, address=address)
    if kind == "local" and n > 1:
        return ProcessPool(setup, n, threads=threads)
    return InlinePool(setup, threads=threads)


@contextlib.contextmanager
def scoring_pool(
    kind: str,
    setup: Setup,
    *,
    workers: int | None = None,
    threads: int | None = None,
    address: str | None = None,
) -> Any:
    """:func:`open_pool` as a context manager: the workers stop when the block ends."""
    pool = open_pool(kind, setup, workers=workers, threads=threads, address=address)
    try:
        yield pool
    finally:
        pool.close()


__all__ = [
    "POOLS",
    "InlinePool",
    "ProcessPool",
    "ScoringPool",
    "Setup",
    "check_pool",
    "open_pool",
    "scoring_pool",
]
