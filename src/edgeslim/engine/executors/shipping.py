"""Trial inputs that travel with the trial, for clusters without a shared file system.

The driver packs what a node reads into a :class:`Parcel`: the parent step's artifact files and the
files its step names (:meth:`edgeslim.engine.steps.Step.files`: weights, checkpoints, teachers) one
blob per file content, and the dataset once per sweep as one tar blob. The blobs go into the
cluster's object store (:class:`Packer` takes the ``put`` function: ``ray.put``), so each is sent
once however many trials read it. On the worker, :func:`run_shipped` writes the files into a
scratch folder, unpacks the dataset into a per-node cache keyed by its content hash (a second
trial on that node reads it from there), runs the job on those local paths, and returns the
:class:`Outcome` with every scratch path turned back into the driver's path plus the node's folder
as a tar blob, which the driver unpacks where the local executor would have written it
(:func:`land`). Keys are computed on the driver from the driver's files, so records and keys are
those of a local run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeslim.data import is_url, resolve_data_path
from edgeslim.engine.jobs import Outcome, TrialFn, TrialJob, execute
from edgeslim.engine.keys import path_fingerprint
from edgeslim.engine.steps import step_from_dict
from edgeslim.errors import ConfigError

#: Where a node keeps unpacked datasets (``$EDGESLIM_SHIP_CACHE``, default under the temp folder).
CACHE_ENV = "EDGESLIM_SHIP_CACHE"

#: The largest dataset sent through the object store (it is packed in the driver's memory first);
#: larger data is read from a URL by each node (``data.path: s3://...``) or placed on every node.
MAX_SHIPPED_DATA_BYTES = 4 * 1024**3


@dataclasses.dataclass(frozen=True)
class ShippedFile:
    """One file a trial reads: its path on the driver, its content hash and its blob's handle."""

    path: str
    sha256: str
    ref: Any


@dataclasses.dataclass(frozen=True)
class Parcel:
    """What travels with one trial. ``data``: the dataset (a tar blob of the folder or file at
    ``data.path``), ``previous``: the node's folder left by an interrupted attempt (resume)."""

    files: tuple[ShippedFile, ...] = ()
    data: ShippedFile | None = None
    previous: Any = None


def _sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def pack_tree(path: Path) -> tuple[bytes, str]:
    """A tar of the folder (or file) at ``path``, named by its base name, and a hash of its files'
    names and contents (not their times: a copy of the same files gets the same hash)."""
    sha = hashlib.sha256()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        members = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for member in members:
            name = path.name if member == path else f"{path.name}/{member.relative_to(path).as_posix()}"
            sha.update(name.encode("utf-8") + b"\0" + _sha256_file(member).encode("ascii"))
            with open(member, "rb") as fh:  # a link is sent as the file it points to
                info = tar.gettarinfo(arcname=name, fileobj=fh)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, fh)
    return buffer.getvalue(), sha.hexdigest()


def unpack_tree(blob: bytes, dest: Path) -> None:
    """Unpack a :func:`pack_tree` blob into ``dest`` (links and paths leaving ``dest`` refused)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
        tar.extractall(dest, filter="data")


def job_files(job: TrialJob) -> list[Path]:
    """The files a job reads by path besides the data: its input artifact's files, then its step's."""
    given = job.input or {}
    paths = [Path(given["artifact"])] if given.get("artifact") else []
    paths += [Path(f) for f in given.get("files") or ()]
    paths += list(step_from_dict(job.config["step"]).files().values())
    return list(dict.fromkeys(paths))


def job_data(job: TrialJob) -> Path | None:
    """The dataset a job reads, where it is on this machine (None: not here; the worker finds or
    fetches it itself, as without shipping)."""
    path = job.config.get("data", {}).get("path")
    if not path or is_url(path):  # a URL: each node reads it into its own cache
        return None
    with contextlib.suppress(Exception):
        found = resolve_data_path(path)
        if found.exists():
            return found.resolve()
    return None


class Packer:
    """Driver side: builds each job's :class:`Parcel`, putting every distinct content once.

    A file's blob is dropped (:meth:`release`) once no job in flight reads it, so the object store
    does not fill up with every checkpoint of a long sweep; the dataset's stays for the sweep.
    """

    def __init__(self, put: Callable[[bytes], Any], *, max_data_bytes: int = MAX_SHIPPED_DATA_BYTES) -> None:
        self.put = put
        self.max_data_bytes = max_data_bytes
        self._hashes: dict[tuple[str, int, int], str] = {}  # (path, mtime_ns, size) -> sha256
        self._refs: dict[str, Any] = {}  # sha256 -> handle
        self._readers: dict[str, int] = {}  # sha256 of a file -> jobs in flight that read it
        self._trees: dict[tuple[str, str], ShippedFile] = {}  # (path, fingerprint) -> tar blob
        self.sent_bytes = 0

    def _put(self, sha: str, read: Callable[[], bytes]) -> Any:
        if sha not in self._refs:
            blob = read()
            self.sent_bytes += len(blob)
            self._refs[sha] = self.put(blob)
        return self._refs[sha]

    def file(self, path: Path) -> ShippedFile | None:
        """``path`` shipped (None if it is not a file here: the trial then fails as it would locally)."""
        if not path.is_file():
            return None
        st = path.stat()
        stat_key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
        if stat_key not in self._hashes:
            self._hashes[stat_key] = _sha256_file(path)
        sha = self._hashes[stat_key]
        self._readers[sha] = self._readers.get(sha, 0) + 1
        return ShippedFile(str(path), sha, self._put(sha, path.read_bytes))

    def release(self, parcel: Parcel) -> None:
        """The job of ``parcel`` ended: drop the blobs of files no other job in flight reads."""
        for shipped in parcel.files:
            left = self._readers.get(shipped.sha256, 0) - 1
            if left <= 0:
                self._readers.pop(shipped.sha256, None)
                self._refs.pop(shipped.sha256, None)
            else:
                self._readers[shipped.sha256] = left

    def tree(self, path: Path) -> ShippedFile:
        """The folder (or file) at ``path`` as one tar blob, packed once per content."""
        ident = (str(path), path_fingerprint(path))
        if ident not in self._trees:
            files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
            size = sum(f.stat().st_size for f in files)
            if size > self.max_data_bytes:
                raise ConfigError(
                    f"data.path {str(path)!r} holds {size / 1e9:.1f} GB, too much to send with every sweep "
                    f"(at most {self.max_data_bytes / 1e9:.1f} GB): give data.path as a URL (s3://...) that each "
                    "node reads into its own cache, or place the data on every node and use --no-ship-files",
                    field="data.path",
                )
            blob, sha = pack_tree(path)
            self._trees[ident] = ShippedFile(str(path), sha, self._put(sha, lambda: blob))
        return self._trees[ident]

    def parcel(self, job: TrialJob) -> Parcel:
        files = tuple(f for f in (self.file(p) for p in job_files(job)) if f is not None)
        data_path = job_data(job)
        previous = None
        workdir = Path(job.workdir)
        if job.resume and workdir.is_dir() and any(workdir.iterdir()):  # go on from its files there
            previous = self.put(pack_tree(workdir)[0])
        return Parcel(files, None if data_path is None else self.tree(data_path), previous)


def cache_root() -> Path:
    """This node's cache of unpacked datasets."""
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env).expanduser() if env else Path(tempfile.gettempdir()) / "edgeslim-ship-cache"


def _cached_tree(shipped: ShippedFile, fetch: Callable[[Any], bytes]) -> Path:
    """The shipped tree unpacked under the node's cache (once per content, safe against a second
    task unpacking the same tree at the same time)."""
    root = cache_root()
    final = root / shipped.sha256[:32]
    target = final / Path(shipped.path).name
    if not target.exists():
        root.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=root))
        try:
            unpack_tree(fetch(shipped.ref), partial)
            try:
                partial.rename(final)
            except OSError:  # another task on this node got there first
                if not target.exists():
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return target


def _set_field(config: dict[str, Any], name: str, value: str) -> None:
    """Set ``config[a][b]`` for a :meth:`Step.files` name ``a.b`` (``config[a]`` for ``a``)."""
    *owners, field = name.split(".")
    target = config
    for owner in owners:
        target = target[owner]
    target[field] = value


def _relocate(value: Any, moves: list[tuple[str, str]]) -> Any:
    """``value`` with every scratch path prefix in its strings (at any depth) turned back into the
    driver's path."""
    if isinstance(value, str):
        for local, driver in moves:
            value = value.replace(local, driver)
        return value
    if isinstance(value, dict):
        return {k: _relocate(v, moves) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_relocate(v, moves) for v in value)
    return value


def materialize(
    job: TrialJob, parcel: Parcel, scratch: Path, fetch: Callable[[Any], bytes]
) -> tuple[TrialJob, list[tuple[str, str]]]:
    """The job with its paths pointing into ``scratch`` (and the node's data cache), and the
    (local, driver) path pairs to turn them back."""
    moves: list[tuple[str, str]] = []
    local: dict[str, str] = {}
    folders: dict[str, Path] = {}
    for shipped in parcel.files:  # files of one driver folder stay together (an IR's .xml + .bin)
        driver = Path(shipped.path)
        parent = str(driver.parent)
        if parent not in folders:
            folders[parent] = scratch / "in" / f"{len(folders):03d}"
            folders[parent].mkdir(parents=True)
            moves.append((str(folders[parent]), parent))
        target = folders[parent] / driver.name
        target.write_bytes(fetch(shipped.ref))
        local[shipped.path] = str(target)
    config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in job.config.items()}
    step = step_from_dict(job.config["step"])
    config["step"] = _deep_copy(job.config["step"])
    for name, path in step.files().items():
        if str(path) in local:
            _set_field(config["step"], name, local[str(path)])
    if parcel.data is not None:
        data = _cached_tree(parcel.data, fetch)
        config["data"] = {**job.config["data"], "path": str(data)}
        moves.append((str(data), parcel.data.path))
    given = job.input
    if given is not None:
        artifact = given.get("artifact")
        given = {
            **given,
            "artifact": local.get(str(Path(artifact)), artifact) if artifact else None,
            "files": [local.get(str(Path(f)), f) for f in given.get("files") or ()],
        }
    workdir = scratch / "out" / Path(job.workdir).name
    workdir.mkdir(parents=True)
    if parcel.previous is not None:
        unpack_tree(fetch(parcel.previous), workdir.parent)
    moves.append((str(workdir), job.workdir))
    moves.sort(key=lambda m: len(m[0]), reverse=True)  # the longest prefix first
    return dataclasses.replace(job, config=config, input=given, workdir=str(workdir)), moves


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def run_shipped(
    job: TrialJob, parcel: Parcel, trial_fn: TrialFn, fetch: Callable[[Any], bytes]
) -> tuple[Outcome, bytes | None]:
    """Worker side: run ``job`` on local copies of its inputs; return its outcome (paths as on the
    driver) and the node's folder as a tar blob (None if it wrote nothing)."""
    t0 = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="edgeslim-trial-"))
    try:
        try:
            local_job, moves = materialize(job, parcel, scratch, fetch)
        except Exception as exc:  # a lost blob, a full disk: the trial fails, the sweep goes on
            text = str(exc).strip().splitlines()
            error = f"could not unpack the trial's inputs on this node: {type(exc).__name__}: {text[0] if text else ''}"
            return Outcome.failed(error), None
        unpack_s = time.perf_counter() - t0
        outcome = execute(local_job, trial_fn)
        workdir = Path(local_job.workdir)
        blob = pack_tree(workdir)[0] if workdir.is_dir() and any(workdir.iterdir()) else None
        relocated = Outcome(
            outcome.status,
            _relocate(outcome.metrics, moves),
            _relocate(outcome.measurements, moves),
            _relocate(outcome.artifact, moves),
            _relocate(outcome.error, moves),
            _relocate(outcome.traceback, moves),
            {**outcome.timings, "ship_unpack_s": unpack_s},
            outcome.env,
        )
        return relocated, blob
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def land(outcome: Outcome, blob: bytes | None, workdir: str) -> Outcome:
    """Driver side: put the node's folder where the local executor would have written it."""
    if blob is None:
        return outcome
    try:
        unpack_tree(blob, Path(workdir).parent)
    except (OSError, tarfile.TarError) as exc:
        return Outcome.failed(
            f"could not write the trial's files into {workdir}: {exc}", timings=outcome.timings
        )
    return outcome


__all__ = [
    "CACHE_ENV",
    "MAX_SHIPPED_DATA_BYTES",
    "Packer",
    "Parcel",
    "ShippedFile",
    "cache_root",
    "job_data",
    "job_files",
    "land",
    "materialize",
    "pack_tree",
    "run_shipped",
    "unpack_tree",
]
