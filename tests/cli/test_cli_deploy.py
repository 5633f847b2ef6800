"""export / eval FILE / bench FILE: exact arguments to the tasks, outputs, errors, and one real run."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgeslim import tasks
from edgeslim.bench import LatencyStats, Measurement
from edgeslim.cli.app import app
from edgeslim.export import ExportResult, Parity
from edgeslim.export.bench import RuntimeComparison

runner = CliRunner()


def _result(ok: bool = True) -> tasks.ExportOutcome:
    parity = Parity(1e-6 if ok else 2.0, 1.0 if ok else 0.5, 256, 1e-3, inputs="real test images")
    result = ExportResult(
        format="onnx",
        precision="fp32",
        path=Path("m.onnx"),
        files=(Path("m.onnx"),),
        size_bytes=1000,
        runtime="ort",
        parity=parity,
        exporter="dynamo (opset 18)",
        seconds=1.5,
    )
    return tasks.ExportOutcome("resnet20", result, (3, 32, 32), ("a note",))


def test_export_passes_exact_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake(model_source: Any, format: str, **kw: Any) -> tasks.ExportOutcome:
        calls.append((model_source, format, kw))
        return _result()

    monkeypatch.setattr(tasks, "export_task", fake)
    argv = [
        "export",
        "--model",
        "resnet20",
        "--weights",
        "w.th",
        "--format",
        "openvino",
        "--precision",
        "int8",
    ]
    argv += ["--out", "m.xml", "--data", "d", "--parity-images", "64", "--threads", "1", "--json"]
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    model_source, fmt, kw = calls[0]
    assert model_source == tasks.ModelSource(name="resnet20", weights=Path("w.th"))
    assert fmt == "openvino"
    assert kw == {
        "out": Path("m.xml"),
        "precision": "int8",
        "data_source": tasks.DataSource(path="d", split="test", limit=64, seed=0),
        "parity_images": 64,
        "image_size": None,
        "opset": 18,
        "num_threads": 1,
    }
    payload = json.loads(result.stdout)
    assert payload["status"] == "ok" and payload["parity"]["max_abs_diff"] == 1e-6
    assert payload["notes"] == ["a note"] and payload["model"] == "resnet20"


def test_export_failed_parity_exits_1_with_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "export_task", lambda *a, **k: _result(ok=False))
    result = runner.invoke(app, ["export", "--checkpoint", "c.pt", "--out", "m.onnx", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "failed"
    assert "failed parity" in result.stderr


def test_eval_artifact_passes_exact_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake(artifact: Path, data_source: Any, **kw: Any) -> Measurement:
        calls.append((artifact, data_source, kw))
        return Measurement(model="m", runtime="openvino", top1=90.0, top5=99.0, num_images=10)

    monkeypatch.setattr(tasks, "evaluate_artifact_task", fake)
    argv = ["eval", "m.xml", "--data", "d", "--runtime", "openvino", "--batch-size", "32", "--json"]
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    artifact, data_source, kw = calls[0]
    assert artifact == Path("m.xml")
    assert data_source == tasks.DataSource(path="d", split="test", limit=None, val_fraction=0.1, seed=0)
    assert kw == {
        "runtime": "openvino",
        "batch_size": 32,
        "num_threads": None,
        "progress": False,
        "trust_artifact": False,
    }
    assert json.loads(result.stdout)["runtime"] == "openvino"
    # --checkpoint with --runtime is an artifact too
    result = runner.invoke(
        app, ["eval", "--checkpoint", "c.pt", "--runtime", "torch", "--data", "d", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert calls[1][0] == Path("c.pt")


def _comparison() -> RuntimeComparison:
    def stats(ms: float, b: int) -> LatencyStats:
        return LatencyStats.from_times([ms / 1000] * 3, b)

    def m(runtime: str, b1: float, b8: float) -> Measurement:
        return Measurement(
            model="m",
            runtime=runtime,
            latency={1: stats(b1, 1), 8: stats(b8, 8)},
            size_bytes=2048,
            extra={"rss_increase_bytes": 4096},
        )

    return RuntimeComparison(
        artifact="m.onnx",
        info={},
        measurements=(m("ort", 0.5, 3.0), m("openvino", 0.6, 2.0)),
        failed={"tensorrt": "TensorRT is not installed"},
        parity={},
        fastest={1: "ort", 8: "openvino"},
        default={1: "ort", 8: "openvino"},
    )


def test_bench_artifact_passes_exact_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake(artifact: Any, **kw: Any) -> RuntimeComparison:
        calls.append((artifact, kw))
        return _comparison()

    monkeypatch.setattr(tasks, "bench_artifact_task", fake)
    result = runner.invoke(app, ["bench", "m.onnx", "--runtime", "all", "-b", "1", "-b", "8", "--runs", "3"])
    assert result.exit_code == 0, result.output
    artifact, kw = calls[0]
    assert artifact == Path("m.onnx")
    assert kw.pop("trust_artifact") is False
    assert kw == {
        "model_source": None,
        "runtimes": ("all",),
        "batch_sizes": (1, 8),
        "image_size": None,
        "num_threads": None,
        "warmup": 5,
        "runs": 3,
        "data_source": None,
    }
    assert "measured fastest here at batch 8: openvino" in result.stderr
    assert "tensorrt: not measured" in result.stderr
    assert re.search(r"default runtime at batch 1 \([^)]*\): ort", result.stderr), result.stderr
    # a model with a runtime other than torch goes the same way, with a model source
    result = runner.invoke(app, ["bench", "--model", "resnet20", "--runtime", "ort", "--json"])
    assert result.exit_code == 0, result.output
    artifact, kw = calls[1]
    assert artifact is None and kw["model_source"] == tasks.ModelSource(name="resnet20")
    assert kw["runtimes"] == ("ort",)
    assert json.loads(result.stdout)["fastest"] == {"1": "ort", "8": "openvino"}


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["export", "--model", "resnet20", "--format", "tflite", "--out", "m.tflite"], "--format"),
        (["export", "--model", "resnet20"], "--out is required"),
        (["eval", "m.onnx", "--model", "resnet20", "--data", "x"], "not both"),
        (["eval", "--model", "resnet20", "--runtime", "ort", "--data", "x"], "edgeslim export"),
        (["bench", "m.onnx", "--runtime", "tflite"], "--runtime"),
        (["bench", "m.onnx", "--model", "resnet20", "--runtime", "all"], "not both"),
    ],
)
def test_bad_options_are_one_line_errors(argv: list[str], needle: str) -> None:
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    assert needle in result.output
    assert "Traceback" not in result.output


def test_export_then_eval_for_real(tiny_cifar: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "m.onnx"
    argv = ["export", "--model", "resnet20_tiny", "--out", str(out), "--data", str(tiny_cifar)]
    result = runner.invoke(app, [*argv, "--parity-images", "32", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert (
        payload["ok"]
        and payload["parity"]["num_inputs"] == 32
        and payload["parity"]["inputs"] == "real test images"
    )
    assert out.stat().st_size == payload["size_bytes"]
    result = runner.invoke(app, ["eval", str(out), "--data", str(tiny_cifar), "--json"])
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.stdout)
    assert evaluated["num_images"] == 100 and evaluated["runtime"] in ("ort", "openvino")
    assert 0.0 <= evaluated["top1"] <= 100.0
