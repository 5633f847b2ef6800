"""Per-trial time and memory limits, enforced inside the process that runs the trial.

The memory limit is on the *growth* of the process's resident memory since the trial started:
workers are long-lived, so their resident memory also holds what earlier trials left (allocator
caches, loaded libraries), which must not count against the next trial. Memory an earlier trial
freed and this one reuses is not counted either, so the figure is a lower bound of what the trial
needs on its own.

A watchdog thread polls the elapsed time and the process's resident memory; when a limit is
passed it raises :class:`TrialLimitExceeded` in the trial's thread (``PyThreadState_SetAsyncExc``),
which interrupts it at the next Python bytecode. That keeps the worker alive and lets the sweep
record the failure. A trial stuck inside one long native call cannot be interrupted that way;
executors therefore also kill a worker whose trial runs well past its limit (see the local and
Ray executors).
"""

from __future__ import annotations

import ctypes
import threading
import time
from types import TracebackType

import psutil


class TrialLimitExceeded(BaseException):
    """Raised inside a trial past its limit.

    A BaseException, so library code that catches ``Exception`` (e.g. exporter fallbacks) does not
    swallow it.
    """


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None
    )


class LimitGuard:
    """``with LimitGuard(timeout_s, memory_mb) as guard:`` interrupts the block past a limit.

    ``memory_mb`` limits how much the resident memory grows over its value on entry (MB = 10^6
    bytes). ``guard.reason`` says which limit was passed (None while none was).
    """

    def __init__(self, timeout_s: float | None, memory_mb: float | None, *, interval_s: float = 0.05) -> None:
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.interval_s = interval_s
        self.reason: str | None = None
        self.peak_rss_bytes = 0
        self.start_rss_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._target = 0

    def __enter__(self) -> LimitGuard:
        if self.timeout_s is None and self.memory_mb is None:
            return self
        self._target = threading.get_ident()
        self.start_rss_bytes = self.peak_rss_bytes = psutil.Process().memory_info().rss
        self._thread = threading.Thread(target=self._watch, name="edgeslim-trial-limits", daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        proc = psutil.Process()
        start = time.monotonic()
        while not self._stop.wait(self.interval_s):
            rss = proc.memory_info().rss
            self.peak_rss_bytes = max(self.peak_rss_bytes, rss)
            elapsed = time.monotonic() - start
            if self.timeout_s is not None and elapsed > self.timeout_s:
                self.reason = f"ran past the time limit of {self.timeout_s:g} s (limits.trial_timeout_s)"
            elif self.memory_mb is not None and rss - self.start_rss_bytes > self.memory_mb * 1e6:
                self.reason = (
                    f"used {(rss - self.start_rss_bytes) / 1e6:.0f} MB of memory, over the limit of "
                    f"{self.memory_mb:g} MB (limits.trial_memory_mb: growth of the worker process's "
                    "resident memory since the trial started)"
                )
            if self.reason is not None:
                _raise_in(self._target, TrialLimitExceeded)
                return

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        if self.reason is not None:
            _raise_in(self._target, None)  # drop an interrupt that has not been delivered yet
