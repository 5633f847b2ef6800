"""The result store: one SQLite file holding experiments and their trial records.

Sweeps write here and reports read only from here; recipes (chained pipelines) write their steps
into the same tables. The file uses WAL journaling with a busy timeout, so several processes
(sweep workers, a driver, a report reader) can use it at once; every write is one short
transaction, so a process killed with SIGKILL loses at most the record it had not yet committed.

Public API (everything else is internal)::

    store = Store.open("runs/sweeps.db")                 # creates the file and schema if needed
    exp = store.create_experiment("quickstart", config)  # get-or-create by name ("sweep" | "recipe" kind)
    exp = store.get_experiment("quickstart")             # None if absent; store.experiments() lists all
    t = store.add_trial(exp.id, key, name, config, kind="compress", depends_on=baseline_key)
    store.claim_trial(t.id)                              # queued -> running (False if someone else has it)
    store.finish_trial(t.id, metrics=..., measurements=[...], timings=..., env=..., artifact=...)
    store.fail_trial(t.id, "TrainingError: the loss is nan ...", timings=..., traceback=...)
    store.trials(exp.id, status="done")                  # records, oldest first; store.trial(id|key)
    store.add_finished(exp.id, [FinishedEntry(key, name, "candidate", config, metrics)])  # done as is
    store.requeue_stale(exp.id)                          # running trials whose owner process is gone
    store.requeue(t.id)                                  # an explicit rerun of a done or failed record
    store.close()

A running trial's ``owner`` is ``host:pid:start`` (:func:`owner_id`): the process start time tells
the process that claimed it from a later one that got the same pid (a restarted container's PID 1).
Claiming clears what an earlier attempt recorded; ``finish_trial``/``fail_trial`` only write to a
trial that is still running (one requeued meanwhile as stale keeps its new state).

A trial (or recipe step) is identified inside its experiment by ``key``, a hash of everything that
decides its result, so re-adding the same trial is a no-op and a rerun finds what already finished.
``kind`` is free text ("baseline", "compress", "step", ...); ``depends_on`` names another record's
key whose result this one needs. Statuses: queued, running, done, failed. JSON columns (config,
metrics, measurements, timings, env) come back as Python data in :class:`TrialRecord`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import socket
import sqlite3
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import psutil

from edgeslim.errors import ConfigError

#: 2: one record per engine step (start, prune, quantize, measure ...), keyed by
#: :mod:`edgeslim.engine.keys`, measurements typed. Version 1 stores (per-trial flat metrics, other keys)
#: are refused with a message rather than misread.
SCHEMA_VERSION = 2
OLD_VERSIONS = {
    1: (
        "it was written before the one-engine change (one record per trial with flat metrics, keyed "
        "another way), so this edgeslim can neither resume nor report it. Its artifacts are still "
        "ordinary files; move the store aside (or use another db) and run the sweep or recipe again"
    ),
}
Status = Literal["queued", "running", "done", "failed"]
STATUSES: tuple[Status, ...] = ("queued", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS experiments (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    config TEXT NOT NULL,
    depends_on TEXT,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    metrics TEXT,
    measurements TEXT,
    timings TEXT,
    env TEXT,
    artifact TEXT,
    error TEXT,
    traceback TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    UNIQUE (experiment_id, key)
);
CREATE INDEX IF NOT EXISTS trials_by_status ON trials (experiment_id, status);
"""


@dataclasses.dataclass(frozen=True)
class ExperimentRecord:
    """One experiment (a sweep or a recipe run) and the configuration it was created from."""

    id: int
    name: str
    kind: str
    config: dict[str, Any]
    created_at: float
    updated_at: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """One trial or step: its config, status and, once finished, what it measured or why it failed."""

    id: int
    experiment_id: int
    key: str
    name: str
    kind: str
    config: dict[str, Any]
    depends_on: str | None
    status: Status
    attempts: int
    owner: str | None
    metrics: dict[str, Any]
    measurements: list[dict[str, Any]]
    timings: dict[str, Any]
    env: dict[str, Any]
    artifact: str | None
    error: str | None
    traceback: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class FinishedEntry:
    """A finished result to record as it is (:meth:`Store.add_finished`): no runner, no claim."""

    key: str
    name: str
    kind: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    env: dict[str, Any] = dataclasses.field(default_factory=dict)
    artifact: str | None = None


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (2 decimals, as the kernel reports it); None if there is none.

    "" when the process exists but cannot be inspected (then it counts as alive).
    """
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:  # exited, not yet reaped by its parent
            return None
        return f"{proc.create_time():.2f}"
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return ""


def process_owner(pid: int) -> str:
    """The owner id of process ``pid`` on this host (``host:pid:start``; see :func:`owner_id`)."""
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or '0'}"


def owner_id() -> str:
    """``host:pid:start`` of this process: who holds a running trial.

    The start time makes the id unique over time: a later process that gets the same pid (PID 1
    again after a container restart) has another id, so it never passes for the claimant.
    """
    return process_owner(os.getpid())


def owner_alive(owner: str | None) -> bool:
    """Whether the process ``owner`` names still runs on this host.

    ``host:pid:start`` is alive when ``pid`` runs and started at ``start`` (a reused pid does not
    count); an older ``host:pid`` only needs the pid. Another host's owner is never "alive": a
    driver cannot see remote processes (and SQLite in WAL mode is single-host anyway).
    """
    parts = str(owner or "").split(":")
    start: str | None = None
    if len(parts) >= 3 and parts[-2].isdigit() and _is_number(parts[-1]):
        host, pid, start = ":".join(parts[:-2]), int(parts[-2]), parts[-1]
    elif len(parts) >= 2 and parts[-1].isdigit():
        host, pid = ":".join(parts[:-1]), int(parts[-1])
    else:
        return False
    if host != socket.gethostname():
        return False
    actual = _start_time(pid)
    if actual is None:
        return False
    return start is None or actual in ("", start)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _dumps(value: Any) -> str:
    """JSON with NaN/inf written as null, so every stored document is valid JSON."""
    return json.dumps(_finite(value), sort_keys=True, default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _loads(text: str | None, default: Any) -> Any:
    return default if text is None else json.loads(text)


class Store:
    """A connection to one store file; open one per process (connections are not shared)."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], *, timeout_s: float = 60.0) -> Store:
        """Open (creating if needed) the store at ``path`` in WAL mode."""
        target = Path(path).expanduser()
        if target.is_dir():
            raise ConfigError(
                f"db {str(target)!r} is a directory; give a file path such as runs/sweeps.db", field="db"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(str(target), timeout=timeout_s, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across process crashes
            db.execute("PRAGMA foreign_keys=ON")
            db.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
            store = cls(target, db)
            with store._write():
                # statement by statement: executescript() would commit outside this transaction
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
                row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is None:
                    db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) in OLD_VERSIONS:
                    raise ConfigError(
                        f"{target}: store version {row[0]}: {OLD_VERSIONS[int(row[0])]}", field="db"
                    )
                elif int(row[0]) != SCHEMA_VERSION:
                    raise ConfigError(
                        f"{target}: store schema version {row[0]}; this edgeslim reads version {SCHEMA_VERSION}"
                    )
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"db {str(target)!r} is not a usable SQLite store ({exc})", field="db"
            ) from None
        return store

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: takes the write lock up front, so check-then-update is atomic."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @property
    def journal_mode(self) -> str:
        return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])

    # -- experiments --------------------------------------------------------------------------
    def create_experiment(
        self, name: str, config: dict[str, Any], *, kind: str = "sweep"
    ) -> ExperimentRecord:
        """Return the experiment called ``name``, creating it with ``config`` if it does not exist."""
        now = time.time()
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO experiments (name, kind, config, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (name, kind, _dumps(config), now, now),
            )
        found = self.get_experiment(name)
        if found is None:  # pragma: no cover - the insert above guarantees it
            raise RuntimeError(f"experiment {name!r} vanished")
        return found

    def update_experiment(self, experiment_id: int, config: dict[str, Any]) -> None:
        """Replace the stored configuration (e.g. after a grid was extended)."""
        with self._write() as db:
            db.execute(
                "UPDATE experiments SET config=?, updated_at=? WHERE id=?",
                (_dumps(config), time.time(), experiment_id),
            )

    def get_experiment(self, name: str) -> ExperimentRecord | None:
        row = self._db.execute("SELECT * FROM experiments WHERE name=?", (name,)).fetchone()
        return None if row is None else self._experiment(row)

    def experiments(self) -> list[ExperimentRecord]:
        return [self._experiment(r) for r in self._db.execute("SELECT * FROM experiments ORDER BY id")]

    def _experiment(self, row: tuple[Any, ...]) -> ExperimentRecord:
        id_, name, kind, config, created, updated = row
        return ExperimentRecord(id_, name, kind, json.loads(config), created, updated)

    # -- trials -------------------------------------------------------------------------------
    def add_trial(
        self,
        experiment_id: int,
        key: str,
        name: str,
        config: dict[str, Any],
        *,
        kind: str = "compress",
        depends_on: str | None = None,
    ) -> TrialRecord:
        """Add a queued trial unless one with ``key`` exists; return the stored record either way."""
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO trials (experiment_id, key, name, kind, config, depends_on, status, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?)",
                (experiment_id, key, name, kind, _dumps(config), depends_on, time.time()),
            )
        found = self.trial(key, experiment_id=experiment_id)
        if found is None:  # pragma: no cover
            raise RuntimeError(f"trial {key!r} vanished")
        return found

    def add_finished(self, experiment_id: int, entries: Sequence[FinishedEntry]) -> int:
        """Record results made outside the runner (a search's scored candidates) as done, in one
        transaction; entries whose key the experiment already holds are left alone. Returns how many
        were added."""
        now = time.time()
        with self._write() as db:
            cursor = db.executemany(
                "INSERT OR IGNORE INTO trials (experiment_id, key, name, kind, config, status, attempts, "
                "metrics, measurements, timings, env, artifact, created_at, started_at, finished_at) "
                "VALUES (?, ?, ?, ?, ?, 'done', 1, ?, '[]', '{}', ?, ?, ?, ?, ?)",
                [
                    (
                        experiment_id,
                        e.key,
                        e.name,
                        e.kind,
                        _dumps(e.config),
                        _dumps(e.metrics),
                        _dumps(e.env),
                        e.artifact,
                        now,
                        now,
                        now,
                    )
                    for e in entries
                ],
            )
            return cursor.rowcount

    def claim_trial(self, trial_id: int, owner: str | None = None) -> bool:
        """Mark a queued trial running for ``owner`` (default: :func:`owner_id`); False if it is not
        queued (taken or finished). What an earlier attempt recorded is cleared."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE trials SET status='running', owner=?, attempts=attempts+1, started_at=?, "
                "finished_at=NULL, metrics=NULL, measurements=NULL, timings=NULL, env=NULL, artifact=NULL, "
                "error=NULL, traceback=NULL WHERE id=? AND status='queued'",
                (owner or owner_id(), time.time(), trial_id),
            )
            return cursor.rowcount == 1

    def finish_trial(
        self,
        trial_id: int,
        *,
        metrics: dict[str, Any],
        measurements: list[dict[str, Any]] | None = None,
        timings: dict[str, Any] | None = None,
        env: dict[str, Any] | None = None,
        artifact: str | None = None,
    ) -> bool:
        """Record a running trial as done with what it measured; False (nothing written) if it is no
        longer running (e.g. requeued as stale meanwhile: it will run again)."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE trials SET status='done', metrics=?, measurements=?, timings=?, env=?, artifact=?, "
                "error=NULL, traceback=NULL, finished_at=? WHERE id=? AND status='running'",
                (
                    _dumps(metrics),
                    _dumps(measurements or []),
                    _dumps(timings or {}),
                    _dumps(env or {}),
                    artifact,
                    time.time(),
                    trial_id,
                ),
            )
            return cursor.rowcount == 1

    def fail_trial(
        self,
        trial_id: int,
        error: str,
        *,
        timings: dict[str, Any] | None = None,
        env: dict[str, Any] | None = None,
        traceback: str | None = None,
    ) -> bool:
        """Record a running trial as failed with its error text; the sweep goes on. False (nothing
        written) if it is no longer running."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE trials SET status='failed', error=?, traceback=?, timings=?, env=?, finished_at=? "
                "WHERE id=? AND status='running'",
                (error, traceback, _dumps(timings or {}), _dumps(env or {}), time.time(), trial_id),
            )
            return cursor.rowcount == 1

    def requeue(self, trial_id: int, *, only_if: Status | None = None, owner: str | None = None) -> bool:
        """Put a trial back in the queue; True if it was (what it recorded is cleared when it is claimed).

        ``only_if``/``owner`` make it a compare-and-set: the trial is requeued only while it still
        has that status / that owner, so one that finished (or was taken) since the caller looked
        is left alone. Without them any done, failed or running trial is requeued: an explicit
        request such as ``--retry-failed`` or a recipe step whose artifact changed.
        """
        query = "UPDATE trials SET status='queued', owner=NULL, error=NULL, traceback=NULL WHERE id=?"
        args: list[Any] = [trial_id]
        if only_if is not None:
            query, args = query + " AND status=?", [*args, only_if]
        else:
            query += " AND status!='queued'"
        if owner is not None:
            query, args = query + " AND owner=?", [*args, owner]
        with self._write() as db:
            return db.execute(query, args).rowcount == 1

    def requeue_stale(self, experiment_id: int, *, in_flight: Collection[int] = ()) -> int:
        """Requeue running trials whose owner is gone; return how many.

        Gone: the owner process no longer runs (or its pid now belongs to a later process, see
        :func:`owner_alive`), it ran on another host, or it is this very process (:func:`owner_id`)
        and the trial is not in ``in_flight``, the ids the caller is running right now: a trial
        this process claimed but no longer runs (an earlier sweep in this process was interrupted)
        would otherwise wait forever. So run one sweep of an experiment at a time per process.
        A trial owned by another live process (another sweep on the same store) is left alone.
        Each requeue is a compare-and-set on status and owner, so a trial that finishes meanwhile
        keeps its result.
        """
        me = owner_id()
        requeued = 0
        for trial_id, owner in self._db.execute(
            "SELECT id, owner FROM trials WHERE experiment_id=? AND status='running'", (experiment_id,)
        ).fetchall():
            if trial_id in in_flight:
                continue
            if owner != me and owner_alive(owner):
                continue
            if owner is None:
                requeued += self.requeue(trial_id, only_if="running")
            else:
                requeued += self.requeue(trial_id, only_if="running", owner=owner)
        return requeued

    def trial(self, id_or_key: int | str, *, experiment_id: int | None = None) -> TrialRecord | None:
        """One record by id, or by key within ``experiment_id``."""
        if isinstance(id_or_key, int):
            row = self._db.execute("SELECT * FROM trials WHERE id=?", (id_or_key,)).fetchone()
        else:
            if experiment_id is None:
                raise ValueError("looking a trial up by key needs experiment_id")
            row = self._db.execute(
                "SELECT * FROM trials WHERE experiment_id=? AND key=?", (experiment_id, id_or_key)
            ).fetchone()
        return None if row is None else self._trial(row)

    def trials(
        self, experiment_id: int, *, status: Status | None = None, kind: str | None = None
    ) -> list[TrialRecord]:
        """Records of an experiment in insertion order, optionally of one status and/or kind."""
        query, args = "SELECT * FROM trials WHERE experiment_id=?", [str(experiment_id)]
        if status is not None:
            query, args = query + " AND status=?", [*args, status]
        if kind is not None:
            query, args = query + " AND kind=?", [*args, kind]
        return [self._trial(r) for r in self._db.execute(query + " ORDER BY id", args)]

    def counts(self, experiment_id: int) -> dict[str, int]:
        """How many records of each status."""
        counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for status, n in self._db.execute(
            "SELECT status, COUNT(*) FROM trials WHERE experiment_id=? GROUP BY status", (experiment_id,)
        ):
            counts[status] = n
        return counts

    def _trial(self, row: tuple[Any, ...]) -> TrialRecord:
        (
            id_,
            exp_id,
            key,
            name,
            kind,
            config,
            depends_on,
            status,
            attempts,
            owner,
            metrics,
            measurements,
            timings,
            env,
            artifact,
            error,
            traceback,
            created,
            started,
            finished,
        ) = row
        return TrialRecord(
            id=id_,
            experiment_id=exp_id,
            key=key,
            name=name,
            kind=kind,
            config=json.loads(config),
            depends_on=depends_on,
            status=status,
            attempts=attempts,
            owner=owner,
            metrics=_loads(metrics, {}),
            measurements=_loads(measurements, []),
            timings=_loads(timings, {}),
            env=_loads(env, {}),
            artifact=artifact,
            error=error,
            traceback=traceback,
            created_at=created,
            started_at=started,
            finished_at=finished,
        )
