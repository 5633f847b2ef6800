"""A rich live view of a sweep on stderr: a progress bar with trials done/total and an ETA, counts
(queued, running, done, failed), running trials and the latest results. When stderr is not a
terminal (a log file, CI) it prints one plain line per finished trial instead, so no row is lost."""

from __future__ import annotations

import collections
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{(seconds % 3600) // 60:02.0f}m"


class SweepProgress:
    """Tracks trial states and renders them; ``enabled=False`` keeps the bookkeeping silent."""

    def __init__(
        self, name: str, *, slots: int, enabled: bool = True, console: Console | None = None
    ) -> None:
        self.name = name
        self.slots = slots
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.counts = {"queued": 0, "running": 0, "done": 0, "failed": 0}
        self.skipped = 0
        self.running: dict[int, tuple[str, float]] = {}
        self.recent: collections.deque[tuple[str, str, str]] = collections.deque(maxlen=6)
        self.durations: list[float] = []
        self.started = time.monotonic()
        self._live: Live | None = None

    # -- bookkeeping ------------------------------------------------------------------------------
    def begin(self, *, queued: int, done: int, failed: int) -> None:
        self.counts.update(queued=queued, done=done, failed=failed)
        self.skipped = done
        if not self.enabled:
            return
        if self.console.is_terminal:
            self._live = Live(self.render(), console=self.console, refresh_per_second=4, transient=False)
            self._live.start()
        else:  # a log: one plain line per trial (a live view would keep only its last frame)
            extra = f", {self.skipped} done before" if self.skipped else ""
            self._line(f"sweep {self.name}: {queued} trial(s) to run{extra}")

    def total(self) -> int:
        """Trials of this run: queued, running and finished (including those done before)."""
        return sum(self.counts.values())

    def finished(self) -> int:
        return self.counts["done"] + self.counts["failed"]

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def _log(self, name: str, status: str, summary: str) -> None:
        if self.enabled and self._live is None:
            eta = f"  ETA {_duration(self.eta_s())}" if self.counts["queued"] + self.counts["running"] else ""
            self._line(f"[{self.finished()}/{self.total()}] {name}: {status} {summary}{eta}".rstrip())

    def trials_queued(self, n: int) -> None:
        """Trials added to the queue during the run (taken over from a sweep that died)."""
        self.counts["queued"] += n

    def trial_started(self, trial_id: int, name: str) -> None:
        self.running[trial_id] = (name, time.monotonic())
        self.counts["queued"] -= 1
        self.counts["running"] += 1

    def trial_finished(self, trial_id: int, status: str, summary: str) -> None:
        name, started = self.running.pop(trial_id, ("?", time.monotonic()))
        self.durations.append(time.monotonic() - started)
        self.counts["running"] -= 1
        self.counts[status] = self.counts.get(status, 0) + 1
        self.recent.append((name, status, summary))
        self._log(name, status, summary)

    def trial_skipped(self, name: str, status: str, summary: str) -> None:
        """A queued trial that ends without running (e.g. its baseline failed)."""
        self.counts["queued"] -= 1
        self.counts[status] += 1
        self.recent.append((name, status, summary))
        self._log(name, status, summary)

    def eta_s(self) -> float | None:
        """Remaining trials x mean duration so far / parallel slots."""
        if not self.durations:
            return None
        remaining = self.counts["queued"] + self.counts["running"] / 2
        return remaining * (sum(self.durations) / len(self.durations)) / max(1, self.slots)

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self.render())

    def end(self) -> None:
        if self._live is not None:
            self._live.update(self.render())
            self._live.stop()
            self._live = None
        elif self.enabled:
            c = self.counts
            self._line(
                f"sweep {self.name}: {c['done']} done, {c['failed']} failed of {self.total()} in "
                f"{_duration(time.monotonic() - self.started)}"
            )

    # -- rendering --------------------------------------------------------------------------------
    def render(self) -> Any:
        c = self.counts
        total = self.total()
        bar = ProgressBar(total=max(1, total), completed=self.finished(), width=30)
        header = Text.assemble(
            (f"sweep {self.name}  ", "bold"),
            (f"queued {c['queued']}  ", "cyan"),
            (f"running {c['running']}  ", "yellow"),
            (f"done {c['done']}  ", "green"),
            (f"failed {c['failed']}  ", "red" if c["failed"] else "dim"),
            (f"elapsed {_duration(time.monotonic() - self.started)}  ETA {_duration(self.eta_s())}", "dim"),
        )
        line = Table.grid(padding=(0, 1))
        line.add_row(
            bar, Text(f"{self.finished()}/{total} trials  ETA {_duration(self.eta_s())}", style="bold")
        )
        parts: list[Any] = [header, line]
        if self.skipped:
            parts.append(Text(f"{self.skipped} trial(s) already done in the store were skipped", style="dim"))
        now = time.monotonic()
        if self.running or self.recent:
            table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
            table.add_column("trial")
            table.add_column("status")
            table.add_column("result / time", overflow="fold")
            for name, started in self.running.values():
                table.add_row(name, Text("running", style="yellow"), _duration(now - started))
            for name, status, summary in reversed(self.recent):
                style = "green" if status == "done" else "red"
                table.add_row(name, Text(status, style=style), summary)
            parts.append(table)
        return Group(*parts)
