"""Trial inputs that travel with the trial (``ship_files``): a trial reads only local copies of its
data, weights and input artifact, its files land where the local executor would write them, and the
records are those of a run without shipping."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from sweep_helpers import experiment_yaml

from edgeslim.engine.executors.base import Finished
from edgeslim.engine.executors.shipping import (
    CACHE_ENV,
    Packer,
    land,
    materialize,
    pack_tree,
    run_shipped,
    unpack_tree,
)
from edgeslim.engine.jobs import TrialJob, TrialOutput, run_node
from edgeslim.engine.runner import make_executor
from edgeslim.engine.steps import StartStep
from edgeslim.engine.store import Store
from edgeslim.errors import ConfigError
from edgeslim.models import create_model
from edgeslim.sweep import load_experiment, run_sweep

DETERMINISTIC = ("top1", "params", "nonzero_params", "macs", "size_bytes", "artifact_sha256", "top1_drop")


def records(db: Path, root: Path) -> dict[str, tuple[Any, ...]]:
    """Each record by key: status, deterministic metrics, metric names, and where its artifact and
    files are relative to the artifacts folder ``root`` (they must all be there)."""
    with Store.open(db) as store:
        exp = store.get_experiment("tiny")
        assert exp is not None
        out = {}
        for t in store.trials(exp.id):
            artifact = Path(t.artifact or "")
            files = [Path(f) for f in t.metrics.get("files", [])]
            assert artifact.is_file() and all(f.is_file() for f in files), t.name
            out[t.key] = (
                t.name,
                t.status,
                {k: t.metrics.get(k) for k in DETERMINISTIC},
                sorted(m for m in t.metrics if m != "warnings"),
                artifact.relative_to(root).as_posix(),
                [f.relative_to(root).as_posix() for f in files],
            )
        return out


@pytest.fixture
def ship_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A node cache outside pytest's temp tree (what trials may read)."""
    folder = Path(tempfile.mkdtemp(prefix="edgeslim-ship-cache-test-"))
    monkeypatch.setenv(CACHE_ENV, str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


class ShippingExecutor:
    """Ships each job as the Ray executor does (blobs in a dict instead of Ray's object store) and
    runs it in this process, checking that the job it runs names no path of the driver's."""

    name = "shipping"
    slots = 1
    threads = 1

    def __init__(self, driver_root: Path) -> None:
        self.driver_root = str(driver_root)
        self.blobs: dict[int, bytes] = {}
        self.packer = Packer(self._put)
        self.seen: list[TrialJob] = []
        self.weights_read = b""
        self._done: list[Finished] = []

    def _put(self, blob: bytes) -> int:
        self.blobs[len(self.blobs)] = blob
        return len(self.blobs) - 1

    def _trial(self, job: TrialJob) -> TrialOutput:
        data = {k: v for k, v in job.config["data"].items() if k != "source"}  # a label, never read
        text = repr((job.config["step"], data, job.input, job.workdir))
        assert self.driver_root not in text, "the shipped job still names a driver path"
        self.seen.append(job)
        if job.kind == "start":  # the scratch folder goes when the trial ends
            self.weights_read = Path(job.config["step"]["weights"]).read_bytes()
        return run_node(job)

    def start(self) -> None:
        pass

    def submit(self, job: TrialJob) -> None:
        outcome, blob = run_shipped(job, self.packer.parcel(job), self._trial, self.blobs.__getitem__)
        outcome = land(outcome, blob, job.workdir)
        self._done.append(Finished(job.trial_id, outcome.status, outcome.error, outcome))

    def busy(self) -> int:
        return len(self._done)

    def wait(self, timeout_s: float) -> list[Finished]:
        done, self._done = self._done, []
        return done

    def shutdown(self) -> None:
        pass


def test_pack_tree_round_trips_and_hashes_content_not_place(tmp_path: Path) -> None:
    tree = tmp_path / "a" / "data"
    (tree / "sub").mkdir(parents=True)
    (tree / "x.bin").write_bytes(b"x" * 10)
    (tree / "sub" / "y.txt").write_text("y")
    (tree / "link.bin").symlink_to(tree / "x.bin")  # sent as the file it points to
    blob, sha = pack_tree(tree)
    copy = tmp_path / "b" / "data"
    unpack_tree(blob, copy.parent)
    assert (copy / "x.bin").read_bytes() == b"x" * 10 and (copy / "sub" / "y.txt").read_text() == "y"
    assert not (copy / "link.bin").is_symlink() and (copy / "link.bin").read_bytes() == b"x" * 10
    assert pack_tree(copy)[1] == sha  # same names and bytes elsewhere: same hash
    (copy / "sub" / "y.txt").write_text("z")
    assert pack_tree(copy)[1] != sha


@pytest.mark.slow
def test_shipped_trials_read_local_copies_and_give_the_same_records(
    tmp_path: Path, tiny_cifar: Path, tmp_path_factory: pytest.TempPathFactory, ship_cache: Path
) -> None:
    weights = tmp_path / "weights" / "resnet20_tiny.pt"
    weights.parent.mkdir()
    torch.manual_seed(0)
    torch.save(create_model("resnet20_tiny", num_classes=10).state_dict(), weights)
    exp_file = tmp_path / "exp.yaml"
    exp_file.write_text(
        experiment_yaml(tiny_cifar, models=[{"name": "resnet20_tiny", "weights": str(weights)}])
    )
    experiment = load_experiment(exp_file)
    plain = run_sweep(
        experiment, db=tmp_path / "plain" / "s.db", executor="inline", threads=1, progress=False
    )
    shipping = ShippingExecutor(tmp_path_factory.getbasetemp())
    shipped = run_sweep(experiment, db=tmp_path / "shipped" / "s.db", executor=shipping, progress=False)
    assert (plain.done, plain.failed, shipped.done, shipped.failed) == (6, 0, 6, 0)
    expected = records(tmp_path / "plain" / "s.db", tmp_path / "plain" / "tiny")
    assert records(tmp_path / "shipped" / "s.db", tmp_path / "shipped" / "tiny") == expected
    assert shipping.weights_read == weights.read_bytes()
    # the dataset was sent once and unpacked once into the node cache, then read from there
    assert [p.name for p in ship_cache.iterdir()] == [
        Path(shipping.seen[0].config["data"]["path"]).parent.name
    ]
    assert {j.config["data"]["path"] for j in shipping.seen} == {
        str(next(ship_cache.iterdir()) / tiny_cifar.name)
    }
    sizes = sorted(len(b) for b in shipping.blobs.values())
    assert len(shipping.blobs) == 1 + 1 + 3  # the data, the weights, the start and 2 pruned models
    assert sizes[-1] > tiny_cifar.joinpath("data_batch_1").stat().st_size


def test_ship_files_is_a_ray_option(tmp_path: Path, tiny_cifar: Path) -> None:
    exp_file = tmp_path / "exp.yaml"
    exp_file.write_text(experiment_yaml(tiny_cifar, execution={"workers": 1, "ship_files": "yes"}))
    with pytest.raises(ConfigError, match=r"execution\.ship_files.*true or false"):
        load_experiment(exp_file)
    exp_file.write_text(experiment_yaml(tiny_cifar, execution={"workers": 1, "ship_files": True}))
    assert load_experiment(exp_file).ship_files is True
    with pytest.raises(ConfigError, match=r"executor\.ship_files is for the ray executor") as info:
        run_sweep(load_experiment(exp_file), db=tmp_path / "s.db", executor="local", ship_files=True)
    assert info.value.field == "executor.ship_files"


def test_a_files_blob_is_put_once_while_jobs_read_it_and_dropped_after(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    step = StartStep(model="resnet20_tiny", weights=weights).to_dict()
    job = TrialJob(
        1, "k", "n", "start", {"step": step, "data": {}, "labels": {}}, None, str(tmp_path / "out")
    )
    puts: list[bytes] = []
    packer = Packer(lambda blob: puts.append(blob) or len(puts))
    first, second = packer.parcel(job), packer.parcel(job)
    assert puts == [b"weights"] and first.files == second.files and first.data is None
    packer.release(first)
    assert packer.parcel(job).files == first.files and len(puts) == 1  # still read by the second
    packer.release(second)
    packer.release(first)
    packer.parcel(job)
    assert len(puts) == 2  # dropped once nothing read it, sent again when needed


def test_a_resumed_trial_gets_the_files_its_interrupted_attempt_left(tmp_path: Path) -> None:
    workdir = tmp_path / "runs" / "node-abc"
    workdir.mkdir(parents=True)
    (workdir / "00-train-abc.pt").write_bytes(b"epoch 3")
    step = StartStep(model="resnet20_tiny", init="random").to_dict()
    config = {"step": step, "data": {}, "labels": {}}
    blobs: dict[int, bytes] = {}
    packer = Packer(lambda blob: blobs.setdefault(len(blobs), blob) and len(blobs) - 1)
    job = TrialJob(1, "k", "n", "start", config, None, str(workdir), resume=True)
    parcel = packer.parcel(job)
    assert parcel.previous is not None
    assert packer.parcel(dataclasses.replace(job, resume=False)).previous is None
    local, moves = materialize(job, parcel, tmp_path / "scratch", blobs.__getitem__)
    assert (Path(local.workdir) / "00-train-abc.pt").read_bytes() == b"epoch 3"
    assert (local.workdir, job.workdir) in moves


def test_ship_files_is_on_by_default_for_a_cluster_only(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="ray is not installed (pip install -c constraints.txt ray)")
    from edgeslim.engine.executors.ray import RayExecutor

    def ships(**kw: Any) -> bool:
        executor = make_executor("ray", 1, db=tmp_path / "s.db", **kw)
        assert isinstance(executor, RayExecutor)
        return executor.ship_files

    assert ships(address="head:6379") and not ships()
    assert ships(ship_files=True) and not ships(address="head:6379", ship_files=False)


def test_data_too_large_to_ship_is_refused_naming_the_field(tiny_cifar: Path, tmp_path: Path) -> None:
    step = StartStep(model="resnet20_tiny", init="random").to_dict()
    config = {"step": step, "data": {"path": str(tiny_cifar)}, "labels": {}}
    job = TrialJob(1, "k", "n", "start", config, None, str(tmp_path / "out"))
    with pytest.raises(ConfigError, match=r"too much to send with every sweep.*URL") as info:
        Packer(lambda blob: None, max_data_bytes=1000).parcel(job)
    assert info.value.field == "data.path"
