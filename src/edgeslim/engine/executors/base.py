"""What every executor offers the sweep driver, and how many workers and threads fit the machine."""

from __future__ import annotations

import dataclasses
from typing import Protocol

from edgeslim.data.folder import _usable_cpus as usable_cpus  # one definition: the image decoder's
from edgeslim.engine.jobs import Outcome, TrialJob

#: How long past its time limit a trial may run before its worker is killed outright (the limit
#: guard inside the trial normally stops it first; this catches one stuck in a native call).
KILL_GRACE_S = 30.0


@dataclasses.dataclass(frozen=True)
class Finished:
    """A job that ended. ``outcome`` is None when the worker already wrote its record to the store."""

    trial_id: int
    status: str
    error: str | None = None
    outcome: Outcome | None = None


class Executor(Protocol):
    """Runs up to ``slots`` jobs at once, each with ``threads`` threads."""

    name: str
    slots: int
    threads: int

    def start(self) -> None: ...

    def submit(self, job: TrialJob) -> None: ...

    def busy(self) -> int: ...

    def wait(self, timeout_s: float) -> list[Finished]: ...

    def shutdown(self) -> None: ...


def default_workers() -> int:
    """Half the usable CPUs (each worker then gets 2 threads), at least 1."""
    return max(1, usable_cpus() // 2)


def threads_per_worker(workers: int, threads: int | None = None) -> int:
    """``threads`` if given, else the CPUs divided evenly so that workers x threads fits the cores."""
    if threads is not None:
        return threads
    return max(1, usable_cpus() // max(1, workers))


__all__ = [
    "KILL_GRACE_S",
    "Executor",
    "Finished",
    "default_workers",
    "threads_per_worker",
    "usable_cpus",
]
