"""Executors run trial jobs: ``local`` (worker processes on this machine) and ``ray`` (a cluster)."""

from edgeslim.engine.executors.base import Executor, Finished, default_workers, usable_cpus
from edgeslim.engine.executors.local import LocalExecutor

__all__ = ["Executor", "Finished", "LocalExecutor", "default_workers", "usable_cpus"]
