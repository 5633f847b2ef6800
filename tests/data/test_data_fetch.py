"""edgeslim.fetch against a local HTTP server (127.0.0.1) serving small synthetic files."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import socket
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from edgeslim import fetch
from edgeslim.errors import DownloadError

MakeCifar = Callable[..., dict[str, dict[bytes, Any]]]


class _Server:
    """Files by path; ``truncate[path] = n`` sends a full Content-Length but closes after n bytes."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: dict[str, int] = {}
        self.ranges: list[str | None] = []
        self.base = ""


def _handler(state: _Server) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            body = state.files.get(self.path)
            range_header = self.headers.get("Range")
            state.ranges.append(range_header)
            if body is None:
                self.send_error(404, "Not Found")
                return
            start = 0
            if range_header:
                start = int(range_header.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            payload = body[start:]
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            cut = state.truncate.pop(self.path, None)
            self.wfile.write(payload if cut is None else payload[:cut])
            self.wfile.flush()
            self.close_connection = True

    return Handler


@pytest.fixture
def server() -> Iterator[_Server]:
    state = _Server()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESLIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGESLIM_DATA", raising=False)


def _weights_file() -> bytes:
    buffer = io.BytesIO()
    torch.save({"conv.weight": torch.arange(600, dtype=torch.float32).view(6, 1, 10, 10)}, buffer)
    return buffer.getvalue()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sources_table_is_complete() -> None:
    assert fetch.SOURCES["cifar10"].md5 == "c58f30108f718f92721af3b95e74349a"
    assert fetch.SOURCES["cifar10"].filename == "cifar-10-python.tar.gz"
    for depth, h in ((20, "12fca82f"), (32, "d509ac18"), (44, "014dd654"), (56, "4bfd9763")):
        src = fetch.SOURCES[f"resnet{depth}"]
        assert src.sha256 == h and src.filename == f"resnet{depth}-{h}.th"
        assert "akamaster/pytorch_resnet_cifar10" in src.url
    tv = [s for s in fetch.SOURCES.values() if s.name.endswith(".tv_in1k")]
    assert len(tv) == 9
    for src in tv:
        assert src.url.startswith("https://download.pytorch.org/models/")
        assert src.sha256 and src.filename.endswith(f"-{src.sha256}.pth")
    with pytest.raises(DownloadError, match="known: cifar10"):
        fetch.source("nope")


def test_good_file_downloads_verified_with_progress(
    server: _Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = _weights_file()
    server.files["/w-1.pth"] = body
    dest = tmp_path / "out" / "w-1.pth"
    sha = hashlib.sha256(body).hexdigest()
    assert fetch.download_file(f"{server.base}/w-1.pth", dest, sha256=sha[:8]) == dest
    assert dest.read_bytes() == body
    assert sorted(p.name for p in dest.parent.iterdir()) == ["w-1.pth"]  # no .part left
    assert "100%" in capsys.readouterr().err
    # verified file present: no network used
    assert fetch.download_file("http://127.0.0.1:9/none", dest, sha256=sha) == dest
    md5 = hashlib.md5(body).hexdigest()
    assert fetch.download_file(
        f"{server.base}/w-1.pth", tmp_path / "m.pth", md5=md5, progress=False
    ).is_file()


def test_wrong_hash_deletes_the_download(server: _Server, tmp_path: Path) -> None:
    server.files["/w.pth"] = _weights_file()
    dest = tmp_path / "w.pth"
    with pytest.raises(DownloadError, match=r"checksum mismatch .* run again"):
        fetch.download_file(f"{server.base}/w.pth", dest, sha256="00000000", progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch.download_file(f"{server.base}/w.pth", dest, md5="0" * 32, progress=False)


def test_truncated_download_resumes_with_range(server: _Server, tmp_path: Path) -> None:
    body = _weights_file()
    server.files["/w.pth"] = body
    server.truncate["/w.pth"] = 1000
    dest = tmp_path / "w.pth"
    sha = hashlib.sha256(body).hexdigest()
    with pytest.raises(DownloadError, match=r"stopped after 1,000 .*run again to resume"):
        fetch.download_file(f"{server.base}/w.pth", dest, sha256=sha, progress=False)
    part = tmp_path / "w.pth.part"
    assert part.stat().st_size == 1000 and not dest.exists()
    assert fetch.download_file(f"{server.base}/w.pth", dest, sha256=sha, progress=False) == dest
    assert dest.read_bytes() == body and not part.exists()
    assert server.ranges[-1] == "bytes=1000-"


def test_complete_part_file_is_verified_not_refetched(server: _Server, tmp_path: Path) -> None:
    body = _weights_file()
    server.files["/w.pth"] = body
    (tmp_path / "w.pth.part").write_bytes(body)
    dest = fetch.download_file(
        f"{server.base}/w.pth", tmp_path / "w.pth", sha256=hashlib.sha256(body).hexdigest()
    )
    assert dest.read_bytes() == body  # the server answered 416; the whole .part was verified


def test_404_is_a_one_line_error(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        fetch.download_file(f"{server.base}/missing.pth", tmp_path / "x.pth", sha256="ab", progress=False)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_no_network_names_the_file_to_place(tmp_path: Path) -> None:
    port = _closed_port()
    dest = tmp_path / "cache" / "downloads" / "resnet20-12fca82f.th"
    with pytest.raises(DownloadError) as info:
        fetch.download_file(f"http://127.0.0.1:{port}/resnet20-12fca82f.th", dest, sha256="12fca82f")
    message = str(info.value)
    assert message.startswith("cannot reach 127.0.0.1")
    assert f"put resnet20-12fca82f.th at {dest} or set EDGESLIM_DATA" in message
    assert "\n" not in message


def test_fetch_prefers_a_verified_local_copy(
    server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = _weights_file()
    sha = hashlib.sha256(body).hexdigest()
    monkeypatch.setitem(
        fetch.SOURCES,
        "toy",
        fetch.Source("toy", f"{server.base}/toy-{sha[:8]}.th", "weights", "toy", sha256=sha[:8]),
    )
    data = tmp_path / "data"
    (data / "pretrained").mkdir(parents=True)
    (data / "pretrained" / f"toy-{sha[:8]}.th").write_bytes(body)
    monkeypatch.setenv("EDGESLIM_DATA", str(data))
    assert fetch.fetch("toy") == data / "pretrained" / f"toy-{sha[:8]}.th"
    assert server.ranges == []  # no request made
    # a corrupt local copy is ignored and the file is downloaded into the cache
    (data / "pretrained" / f"toy-{sha[:8]}.th").write_bytes(b"corrupt")
    server.files[f"/toy-{sha[:8]}.th"] = body
    got = fetch.fetch("toy", progress=False)
    assert got == tmp_path / "cache" / "downloads" / f"toy-{sha[:8]}.th" and got.read_bytes() == body


def test_fetch_cifar10_extracts_a_loadable_dataset(
    server: _Server, tmp_path: Path, make_cifar: MakeCifar, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgeslim.data import load_dataset

    src = tmp_path / "src" / "cifar-10-batches-py"
    make_cifar(src, train_sizes=(2, 2, 2, 2, 2), test_size=3, meta=list("abcdefghij"))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    body = buffer.getvalue()
    server.files["/cifar-10-python.tar.gz"] = body
    monkeypatch.setitem(
        fetch.SOURCES,
        "cifar10",
        fetch.Source(
            "cifar10",
            f"{server.base}/cifar-10-python.tar.gz",
            "dataset",
            "t",
            md5=hashlib.md5(body).hexdigest(),
        ),
    )
    root = tmp_path / "data" / "cifar10"
    folder = fetch.fetch_cifar10(root, progress=False)
    assert folder == root / "cifar-10-batches-py"
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py"]
    assert len(load_dataset(root, "test")) == 3
    assert fetch.fetch_cifar10(root) == folder  # complete: nothing fetched again


def test_cli_fetch(server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    from edgeslim.cli import fetch as cli_fetch

    app = typer.Typer()  # the command group alone, as edgeslim.cli.app registers it

    @app.callback()
    def _root() -> None:
        pass

    cli_fetch.register(app)
    body = _weights_file()
    sha = hashlib.sha256(body).hexdigest()
    server.files["/toy.th"] = body
    monkeypatch.setitem(
        fetch.SOURCES, "toy", fetch.Source("toy", f"{server.base}/toy.th", "weights", "toy", sha256=sha)
    )
    runner = CliRunner()
    result = runner.invoke(app, ["fetch", "toy", "--json"])
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "cache" / "downloads" / "toy.th") in result.stdout
    listing = runner.invoke(app, ["fetch", "--list", "--json"])
    assert listing.exit_code == 0
    names = {row["name"] for row in json.loads(listing.stdout)["sources"]}
    assert {"cifar10", "resnet20", "resnet50.tv_in1k"} <= names
    bad = runner.invoke(app, ["fetch", "nothing"])
    assert bad.exit_code == 2 and "nothing to fetch called 'nothing'" in bad.output
    monkeypatch.setitem(
        fetch.SOURCES,
        "gone",
        fetch.Source("gone", f"http://127.0.0.1:{_closed_port()}/gone.th", "weights", "g", sha256="ab"),
    )
    offline = runner.invoke(app, ["fetch", "gone"])
    assert offline.exit_code == 2 and "cannot reach 127.0.0.1" in offline.output
