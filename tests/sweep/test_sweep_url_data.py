"""Data read from a URL (``data.path: s3://...`` or ``http://...``) against a real S3-compatible server
(SeaweedFS, started on 127.0.0.1 by the test): downloaded once per machine into the cache, keyed by
the files' listing, and a sweep over it gives the records of the same sweep over a local copy."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest
from sweep_helpers import experiment_yaml, upload

from edgeslim.data import fetch_url, is_url, load_dataset, url_fingerprint
from edgeslim.engine.keys import path_fingerprint
from edgeslim.errors import ConfigError, DataError
from edgeslim.sweep import load_experiment, run_sweep


def test_a_dataset_at_an_s3_url_is_downloaded_once_and_again_when_it_changes(
    bucket: str, tiny_cifar: Path, tmp_path: Path
) -> None:
    url = f"s3://{bucket}/sets/cifar-10-batches-py"
    assert is_url(url) and not is_url(tiny_cifar) and not is_url(f"file://{tiny_cifar}")
    upload(tiny_cifar, url)
    local = fetch_url(url)
    assert local.name == "cifar-10-batches-py" and local.is_relative_to(tmp_path / "cache")
    assert path_fingerprint(local) == path_fingerprint(tiny_cifar)  # the same bytes
    assert load_dataset(local, "test").labels.tolist() == load_dataset(tiny_cifar, "test").labels.tolist()
    stamp = (local / "test_batch").stat().st_mtime_ns
    assert fetch_url(url) == local and (local / "test_batch").stat().st_mtime_ns == stamp  # from the cache
    before = url_fingerprint(url)
    copy = tmp_path / "changed"
    shutil.copytree(tiny_cifar, copy)
    (copy / "extra.txt").write_text("new")
    upload(copy, url)
    assert url_fingerprint(url) != before
    assert fetch_url(url) != local and (fetch_url(url) / "extra.txt").read_text() == "new"
    with pytest.raises(DataError, match="does not exist") as info:
        fetch_url(f"s3://{bucket}/sets/nothing-here")
    assert info.value.field == "DataSource.path"


def test_an_archive_over_http_is_unpacked(bucket: str, s3: str, tiny_cifar: Path) -> None:
    import fsspec

    blob = io.BytesIO()
    with tarfile.open(fileobj=blob, mode="w:gz") as tar:
        tar.add(tiny_cifar, arcname="cifar-10-batches-py")
    fsspec.filesystem("s3").pipe(f"{bucket}/cifar.tar.gz", blob.getvalue())
    local = fetch_url(f"{s3}/{bucket}/cifar.tar.gz")  # plain http: SeaweedFS serves the object
    assert local.name == "cifar-10-batches-py"
    assert path_fingerprint(local) == path_fingerprint(tiny_cifar)


@pytest.mark.slow
def test_a_sweep_over_s3_data_gives_the_records_of_a_local_copy(
    bucket: str, tiny_cifar: Path, tmp_path: Path
) -> None:
    from test_sweep_shipping import records

    url = f"s3://{bucket}/cifar-10-batches-py"
    upload(tiny_cifar, url)
    remote_file = tmp_path / "remote.yaml"
    remote_file.write_text(experiment_yaml(url))
    local_file = tmp_path / "local.yaml"
    local_file.write_text(experiment_yaml(tiny_cifar))
    remote = load_experiment(remote_file)
    assert remote.data.path == url  # kept as a URL: each node reads it into its own cache
    done = run_sweep(remote, db=tmp_path / "remote" / "s.db", executor="inline", progress=False)
    plain = run_sweep(
        load_experiment(local_file), db=tmp_path / "local" / "s.db", executor="inline", progress=False
    )
    assert (done.done, done.failed, plain.done) == (6, 0, 6)
    got = records(tmp_path / "remote" / "s.db", tmp_path / "remote" / "tiny")
    want = records(tmp_path / "local" / "s.db", tmp_path / "local" / "tiny")
    # keys differ (a URL is fingerprinted by its listing, a folder by its bytes); results do not
    assert sorted(v[:4] for v in got.values()) == sorted(v[:4] for v in want.values())
    missing = tmp_path / "missing.yaml"
    missing.write_text(experiment_yaml(f"s3://{bucket}/nothing"))
    with pytest.raises(ConfigError, match=r"data\.path.*does not exist"):
        load_experiment(missing)


def test_a_recipe_reads_its_data_from_a_url_and_prices_it(
    bucket: str, tiny_cifar: Path, tmp_path: Path
) -> None:
    """``edgeslim run`` (and its dry run) with ``data.path: s3://...``: the recipe keeps the URL, lists
    it before running, and trains and measures on the files read into this machine's cache."""
    from edgeslim.engine.estimate import Throughput
    from edgeslim.recipe import dry_run_recipe, load_recipe, run_recipe

    url = f"s3://{bucket}/cifar-10-batches-py"
    upload(tiny_cifar, url)
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(
        f"name: remote\nmodel: {{name: resnet20_tiny}}\ndata: {{path: '{url}', seed: 0}}\nthreads: 1\nsteps:\n"
        "  - {type: prune, method: l1, ratio: 0.5}\n"
        "  - {type: measure, runtimes: [torch], batch_sizes: [1], runs: 2, warmup: 1, memory: none}\n"
    )
    recipe = load_recipe(recipe_file)
    assert recipe.data.path == url
    rate = Throughput(train_gmacs_s=1.0, infer_gmacs_s=1.0)
    plan = dry_run_recipe(recipe_file, db=tmp_path / "s.db", throughput=rate)
    assert [n.state for n in plan.nodes] == ["to run"] * 3 and not (tmp_path / "s.db").exists()
    outcome = run_recipe(recipe, db=tmp_path / "s.db", progress=False)
    assert outcome.ran == len(outcome.steps) and outcome.final.measurements[0]["top1"] is not None
    missing = tmp_path / "missing.yaml"
    missing.write_text(recipe_file.read_text().replace("cifar-10-batches-py", "nothing"))
    with pytest.raises(DataError, match=r"data\.path"):
        dry_run_recipe(missing, db=tmp_path / "s.db", throughput=rate)
