"""Missing data and weights fall back to edgeslim.fetch (``make demo`` without ../shared/data), served
by a local HTTP server through $EDGESLIM_MIRROR; offline, one line names the file to place."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from edgeslim import fetch
from edgeslim.data import find_or_fetch_data, load_dataset
from edgeslim.errors import DownloadError

MakeCifar = Callable[..., dict[str, dict[bytes, Any]]]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder served on 127.0.0.1 and set as $EDGESLIM_MIRROR; cache and data dirs isolated."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(served))
    )
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    monkeypatch.setenv("EDGESLIM_MIRROR", f"http://127.0.0.1:{httpd.server_address[1]}/")
    monkeypatch.setenv("EDGESLIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGESLIM_DATA", raising=False)
    monkeypatch.delenv("EDGESLIM_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)
    try:
        yield served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _serve_cifar(
    served: Path, tmp_path: Path, make_cifar: MakeCifar, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src" / "cifar-10-batches-py"
    make_cifar(src, train_sizes=(2, 2, 2, 2, 2), test_size=3, meta=list("abcdefghij"))
    archive = served / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    real = fetch.SOURCES["cifar10"]  # same file name, test-only hash
    monkeypatch.setitem(
        fetch.SOURCES,
        "cifar10",
        fetch.Source("cifar10", real.url, "dataset", "t", md5=hashlib.md5(archive.read_bytes()).hexdigest()),
    )


def _serve_resnet20(served: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    from edgeslim.models import create_model

    buffer = io.BytesIO()
    torch.save(create_model("resnet20").state_dict(), buffer)
    body = buffer.getvalue()
    real = fetch.SOURCES["resnet20"]
    (served / real.filename).write_bytes(body)
    monkeypatch.setitem(
        fetch.SOURCES,
        "resnet20",
        fetch.Source("resnet20", real.url, "weights", "t", sha256=hashlib.sha256(body).hexdigest()[:8]),
    )
    return body


def test_missing_cifar_folder_is_fetched_in_its_place(
    mirror: Path,
    tmp_path: Path,
    make_cifar: MakeCifar,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _serve_cifar(mirror, tmp_path, make_cifar, monkeypatch)
    folder = find_or_fetch_data("cifar10-exact-subset", progress=False)
    assert folder == tmp_path / "cache" / "data" / "cifar10" / "cifar-10-batches-py"
    assert "using CIFAR-10" in capsys.readouterr().err
    assert len(load_dataset(folder, "test")) == 3
    # other names are not guessed at; an existing path is returned as it is
    assert not find_or_fetch_data("my-data").exists()
    assert find_or_fetch_data(str(folder)) == folder


def test_offline_is_one_line_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESLIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGESLIM_OFFLINE", "1")
    monkeypatch.delenv("EDGESLIM_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DownloadError) as err:
        find_or_fetch_data("cifar10", progress=False)
    message = str(err.value)
    assert "cannot reach www.cs.toronto.edu" in message and "put cifar-10-python.tar.gz at" in message
    assert "\n" not in message
    with pytest.raises(DownloadError, match=r"put resnet20-12fca82f\.th at"):
        fetch.fetch_named_weights("pretrained/resnet20-12fca82f.th", progress=False)
    assert fetch.fetch_named_weights("pretrained/unknown.th") is None


def test_quickstart_without_shared_data_fetches_what_it_needs(
    mirror: Path, tmp_path: Path, make_cifar: MakeCifar, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `make demo` parses on a machine with no ../shared/data: data and weights come from the
    (mirrored) sources, verified."""
    from edgeslim.sweep.experiment import load_experiment

    _serve_cifar(mirror, tmp_path, make_cifar, monkeypatch)
    body = _serve_resnet20(mirror, monkeypatch)
    experiment = load_experiment(EXAMPLES / "quickstart.yaml", check_models=False)
    assert Path(str(experiment.data.path)) == tmp_path / "cache" / "data" / "cifar10" / "cifar-10-batches-py"
    weights = Path(str(experiment.models[0].weights))
    assert weights.name == "resnet20-12fca82f.th" and weights.read_bytes() == body
    assert experiment.models[0].weights_source == "pretrained/resnet20-12fca82f.th"  # keys use it as written


def test_recipe_weights_fall_back_to_fetch(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgeslim.recipe.schema import parse_recipe

    body = _serve_resnet20(mirror, monkeypatch)
    text = "name: r\nmodel: {name: resnet20, weights: pretrained/resnet20-12fca82f.th}\nsteps: [{type: measure}]\n"
    recipe = parse_recipe(text, base_dir=tmp_path)
    assert recipe.start.weights is not None and recipe.start.weights.read_bytes() == body


@pytest.mark.parametrize("name", ["imagenet-pretrained-study.yaml", "imagenet-pretrained-study-small.yaml"])
def test_imagenet_pretrained_examples_parse(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The studies are valid experiments: pretrained torchvision models and data.image_size (models
    not built: their weights cannot be fetched offline)."""
    from edgeslim.sweep.experiment import load_experiment
    from edgeslim.sweep.grid import recipes

    for folder in ("cifar10", "cifar10-exact-subset"):
        (tmp_path / folder).mkdir()
    monkeypatch.setenv("EDGESLIM_DATA", str(tmp_path))
    experiment = load_experiment(EXAMPLES / name, check_models=False)
    assert len(experiment.models) == 7 and all(m.pretrained for m in experiment.models)
    assert {m.name for m in experiment.models} >= {"resnet50.tv_in1k", "googlenet.tv_in1k", "alexnet.tv_in1k"}
    assert experiment.data.image_size == (224 if name == "imagenet-pretrained-study.yaml" else 64)
    plans = recipes(experiment)
    assert len(plans) == 7 * (1 + 8)  # a baseline and 8 ratios per model
    start = plans[0][0].start
    assert start.pretrained and start.params()["pretrained"] is True
    assert plans[0][0].data.data_source().image_size == experiment.data.image_size
