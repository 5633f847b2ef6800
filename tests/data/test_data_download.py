"""download_cifar10 against a local HTTP server serving a tiny archive in the real layout."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import socket
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from edgeslim.data import datasets, download_cifar10, load_dataset
from edgeslim.errors import DownloadError

MakeCifar = Callable[..., dict[str, dict[bytes, Any]]]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Archives go to $EDGESLIM_CACHE/downloads (edgeslim.fetch); keep them in the test's folder."""
    monkeypatch.setenv("EDGESLIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGESLIM_MIRROR", raising=False)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder it serves) for a server on 127.0.0.1 at an ephemeral port."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def archive(
    tmp_path: Path, server: tuple[str, Path], make_cifar: MakeCifar
) -> tuple[str, str, dict[str, Any]]:
    """(url, md5, batches) of a small cifar-10-python.tar.gz: 3 images per batch, real names."""
    src = tmp_path / "src" / "cifar-10-batches-py"
    batches = make_cifar(src, train_sizes=(3, 3, 3, 3, 3), test_size=3, meta=list("abcdefghij"))
    base, served = server
    path = served / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    return f"{base}/cifar-10-python.tar.gz", hashlib.md5(path.read_bytes()).hexdigest(), batches


def test_download_extracts_and_loads(
    tmp_path: Path, archive: tuple[str, str, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, md5, batches = archive
    root = tmp_path / "data"
    folder = download_cifar10(root, url=url, md5=md5, progress=True)
    assert folder == root / "cifar-10-batches-py"
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py"]  # no temp files left
    assert "cifar-10-python.tar.gz [" in capsys.readouterr().err  # the progress bar
    test = load_dataset(folder, "test")
    assert test.labels.tolist() == batches["test_batch"][b"labels"] and test.classes[0] == "a"
    assert len(load_dataset(root, "train", val_fraction=0.0)) == 15
    # Already complete: no network needed.
    assert download_cifar10(root, url="http://127.0.0.1:9/none", md5=md5) == folder


def test_md5_mismatch_leaves_nothing(tmp_path: Path, archive: tuple[str, str, dict[str, Any]]) -> None:
    url, md5, _ = archive
    root = tmp_path / "data"
    wrong = "0" * 32
    with pytest.raises(DownloadError, match="checksum mismatch") as err:
        download_cifar10(root, url=url, md5=wrong, progress=False)
    assert wrong in str(err.value) and md5 in str(err.value)
    assert not root.exists() or list(root.iterdir()) == []


def test_http_and_network_errors_name_the_url(tmp_path: Path, server: tuple[str, Path]) -> None:
    base, _ = server
    with pytest.raises(DownloadError, match="404") as err:
        download_cifar10(tmp_path / "a", url=f"{base}/missing.tar.gz", progress=False)
    assert f"{base}/missing.tar.gz" in str(err.value)
    with socket.socket() as s:  # a port that was just free: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = f"http://127.0.0.1:{port}/cifar.tar.gz"
    with pytest.raises(DownloadError, match=r"cannot reach 127\.0\.0\.1") as err:
        download_cifar10(tmp_path / "b", url=dead, progress=False)
    assert "put cifar.tar.gz at" in str(err.value)  # the one-line offline error names the file
    assert not (tmp_path / "b").exists()


def test_unsafe_archive_is_refused(tmp_path: Path, server: tuple[str, Path]) -> None:
    base, served = server
    path = served / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"boom"))
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="extract"):
        download_cifar10(root, url=f"{base}/evil.tar.gz", md5=md5, progress=False)
    assert not (tmp_path / "escaped.txt").exists()
    assert list(root.iterdir()) == []


def test_archive_without_the_folder(tmp_path: Path, server: tuple[str, Path]) -> None:
    base, served = server
    path = served / "other.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("something/else.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    with pytest.raises(DownloadError, match="no cifar-10-batches-py"):
        download_cifar10(tmp_path / "d", url=f"{base}/other.tar.gz", md5=md5, progress=False)
    assert list((tmp_path / "d").iterdir()) == []


def test_load_dataset_download_flag(
    tmp_path: Path, archive: tuple[str, str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, md5, batches = archive
    local = functools.partial(download_cifar10, url=url, md5=md5, progress=False)
    monkeypatch.setattr(datasets, "download_cifar10", local)
    target = tmp_path / "new" / "cifar-10-batches-py"
    test = load_dataset(target, "test", download=True)
    assert target.is_dir()
    assert torch.equal(test.labels, torch.tensor(batches["test_batch"][b"labels"]))
