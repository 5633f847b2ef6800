"""Sweeps on a real two-node Ray cluster whose worker nodes cannot see the driver's files.

The worker nodes run in their own mount namespace with an empty tmpfs over pytest's temp tree,
where the data, the store and the artifacts live (:mod:`ray_cluster`), and trials may only run on
them (a custom resource the head lacks). Without ``ship_files`` every trial fails there; with it
the records are those of a local run and the files land in the driver's artifact folder. A node
killed mid-trial loses nothing: its trial runs again on another node and is recorded once.

The file is named to run before test_sweep_ray.py: a driver process that has run (and shut down) a
local Ray instance and then connects to a cluster gets OwnerDiedError for the objects it puts
(seen with Ray 2.60; a known limitation, see docs/sweeps.md), so these tests need a fresh driver.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray_cluster import LocalCluster, unshare_works
from sweep_helpers import experiment_yaml, stalls_on_doomed_node, upload
from test_sweep_shipping import records

from edgeslim.engine.executors.ray import RayExecutor
from edgeslim.engine.runner import RunSummary
from edgeslim.engine.store import Store, TrialRecord
from edgeslim.sweep import load_experiment, run_sweep

pytestmark = pytest.mark.slow

TRIALS = {"edgeslim_trials": 1.0}  # what each trial reserves: only worker nodes offer it


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, Path]]:
    """A head (no CPUs, no trial resource) whose worker nodes see none of pytest's temp tree; and a
    folder outside it that nodes and the test share for marks."""
    pytest.importorskip("ray", reason="ray is not installed (pip install -c constraints.txt ray)")
    if not unshare_works():
        pytest.skip(
            "needs `unshare -m` and tmpfs mounts (root, or a user namespace) to hide files from a node"
        )
    shared = Path(tempfile.mkdtemp(prefix="edgeslim-cluster-test-"))
    cluster = LocalCluster([tmp_path_factory.getbasetemp()])
    try:
        cluster.start_head()
        yield cluster, shared
    finally:
        cluster.shutdown()
        shutil.rmtree(shared, ignore_errors=True)


def stored(db: Path) -> list[TrialRecord]:
    with Store.open(db) as store:
        exp = store.get_experiment("tiny")
        assert exp is not None
        return store.trials(exp.id)


def node_env(shared: Path, name: str) -> dict[str, str]:
    tests = str(Path(__file__).parent)  # sweep_helpers, for trial functions pickled by reference
    scratch = shared / f"tmp-{name}"  # trial scratch folders (a killed node leaves its own behind)
    scratch.mkdir(exist_ok=True)
    return {
        "TMPDIR": str(scratch),
        "PYTHONPATH": tests,
        "EDGESLIM_TEST_NODE": name,
        "EDGESLIM_TEST_MARKS": str(shared / "marks"),
        "EDGESLIM_SHIP_CACHE": str(shared / f"cache-{name}"),  # a node's own cache, as on its own disk
        "OMP_NUM_THREADS": "1",
    }


def test_worker_nodes_without_the_drivers_files_give_the_local_records(
    cluster: tuple[LocalCluster, Path],
    write_experiment,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    ray_cluster, shared = cluster
    ray_cluster.add_node("a", "127.0.0.2", {**TRIALS, "edgeslim_trials": 2.0}, 2, node_env(shared, "a"))
    experiment = load_experiment(write_experiment())
    try:
        blind = run_sweep(
            experiment,
            db=tmp_path / "blind" / "s.db",
            executor=RayExecutor(2, address=ray_cluster.address, ship_files=False, resources=TRIALS),
            progress=False,
        )
        t0 = time.perf_counter()
        shipped = run_sweep(
            experiment,
            db=tmp_path / "shipped" / "s.db",
            executor=RayExecutor(2, address=ray_cluster.address, resources=TRIALS),  # ships: a cluster
            progress=False,
        )
        shipped_s = time.perf_counter() - t0
    except Exception:
        print(ray_cluster.logs())
        raise
    finally:
        ray_cluster.kill_node("a")
    # the node really cannot see the data: reading it by the driver's path fails
    assert (blind.done, blind.failed) == (0, 6), ray_cluster.logs()
    start = next(t for t in stored(tmp_path / "blind" / "s.db") if t.kind == "start")
    assert start.error and "DownloadError" in start.error  # not there: it tried to fetch CIFAR-10
    assert (shipped.done, shipped.failed) == (6, 0), shipped.failures
    local = run_sweep(experiment, db=tmp_path / "local" / "s.db", executor="inline", progress=False)
    assert (local.done, local.failed) == (6, 0)
    expected = records(tmp_path / "local" / "s.db", tmp_path / "local" / "tiny")
    assert records(tmp_path / "shipped" / "s.db", tmp_path / "shipped" / "tiny") == expected
    assert (shared / "cache-a").is_dir()  # the node unpacked the data into its own cache
    print(f"shipped sweep on the 2-node cluster: {shipped_s:.1f} s")


def test_a_node_killed_mid_trial_loses_nothing(
    cluster: tuple[LocalCluster, Path],
    write_experiment,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    ray_cluster, shared = cluster
    marks = shared / "marks"
    marks.mkdir(exist_ok=True)
    for old in marks.iterdir():
        old.unlink()
    ray_cluster.add_node("doomed", "127.0.0.3", TRIALS, 1, node_env(shared, "doomed"))
    experiment = load_experiment(write_experiment())
    db = tmp_path / "s.db"
    result: list[RunSummary | BaseException] = []

    def sweep() -> None:
        try:
            executor = RayExecutor(
                2, address=ray_cluster.address, resources=TRIALS, trial_fn=stalls_on_doomed_node
            )
            result.append(run_sweep(experiment, db=db, executor=executor, progress=False))
        except BaseException as exc:
            result.append(exc)

    driver = threading.Thread(target=sweep, daemon=True)
    driver.start()
    try:
        deadline = time.monotonic() + 120
        while not any(m.name.endswith("-doomed") for m in marks.iterdir()):  # its trial started there
            assert time.monotonic() < deadline and driver.is_alive(), (result, ray_cluster.logs())
            time.sleep(0.2)
        ray_cluster.kill_node("doomed")
        ray_cluster.add_node("b", "127.0.0.4", {**TRIALS, "edgeslim_trials": 2.0}, 2, node_env(shared, "b"))
        driver.join(timeout=240)
        assert not driver.is_alive(), ray_cluster.logs()
    finally:
        if "b" in ray_cluster.nodes:
            ray_cluster.kill_node("b")
    summary = result[0]
    assert isinstance(summary, RunSummary), summary
    assert (summary.total, summary.done, summary.failed) == (6, 6, 0), summary.failures
    trials = stored(db)
    assert len(trials) == len({t.key for t in trials}) == 6  # nothing duplicated
    assert all(t.status == "done" and t.attempts == 1 for t in trials)  # recorded once each
    assert all(Path(t.artifact or "").is_file() for t in trials)
    killed = {m.name.split("-")[0] for m in marks.iterdir() if m.name.endswith("-doomed")}
    rerun = {m.name.split("-")[0] for m in marks.iterdir() if m.name.endswith("-b")}
    assert killed and killed <= rerun  # what ran on the killed node ran again on the other one
    assert rerun == {str(t.id) for t in trials}


def test_worker_nodes_read_url_data_into_their_own_cache(
    cluster: tuple[LocalCluster, Path], bucket: str, s3: str, tiny_cifar: Path, tmp_path: Path
) -> None:
    ray_cluster, shared = cluster
    url = f"s3://{bucket}/cifar-10-batches-py"
    upload(tiny_cifar, url)
    env = {
        **node_env(shared, "c"),
        "FSSPEC_S3_ENDPOINT_URL": s3,  # how a user points every node at an S3-compatible server
        "AWS_ACCESS_KEY_ID": "any",
        "AWS_SECRET_ACCESS_KEY": "any",
        "EDGESLIM_CACHE": str(shared / "edgeslim-cache-c"),
    }
    ray_cluster.add_node("c", "127.0.0.5", {**TRIALS, "edgeslim_trials": 2.0}, 2, env)
    exp_file = tmp_path / "exp.yaml"
    exp_file.write_text(experiment_yaml(url))
    try:
        summary = run_sweep(
            load_experiment(exp_file),
            db=tmp_path / "s.db",
            executor=RayExecutor(2, address=ray_cluster.address, resources=TRIALS),
            progress=False,
        )
    finally:
        ray_cluster.kill_node("c")
    assert (summary.done, summary.failed) == (6, 0), summary.failures
    assert len(list((shared / "edgeslim-cache-c" / "urls").iterdir())) == 1  # downloaded once there
    assert not (shared / "cache-c").exists()  # nothing shipped: the node read the data from the URL
    assert not (tmp_path / "cache" / "urls").exists()  # the driver only listed it (for the keys)
    assert all(Path(t.artifact or "").is_file() for t in stored(tmp_path / "s.db"))
