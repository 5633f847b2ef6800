"""The CLI is a thin layer: each command passes exactly the parsed options to one task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgeslim import tasks
from edgeslim.bench import Measurement
from edgeslim.cli.app import app
from edgeslim.errors import CheckpointError

runner = CliRunner()


def _measurement(**kw: Any) -> Measurement:
    base: dict[str, Any] = dict(
        model="resnet20",
        artifact=None,
        runtime="torch",
        precision="fp32",
        simulated=False,
        params=10,
        nonzero_params=10,
        macs=100,
        size_bytes=1234,
        top1=91.5,
        top5=99.5,
        num_images=17,
    )
    base.update(kw)
    return Measurement(**base)


def test_eval_passes_exact_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake(model_source: Any, data_source: Any, **kw: Any) -> Measurement:
        calls.append((model_source, data_source, kw))
        return _measurement()

    monkeypatch.setattr(tasks, "evaluate_task", fake)
    result = runner.invoke(
        app,
        [
            "eval",
            "--model",
            "resnet20",
            "--weights",
            "w.th",
            "--data",
            "somewhere",
            "--split",
            "val",
            "--limit",
            "50",
            "--batch-size",
            "64",
            "--threads",
            "1",
            "--seed",
            "3",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    (model_source, data_source, kw) = calls[0]
    assert model_source == tasks.ModelSource(name="resnet20", weights=Path("w.th"))
    assert data_source == tasks.DataSource(path="somewhere", split="val", limit=50, val_fraction=0.1, seed=3)
    assert kw == {"batch_size": 64, "num_threads": 1, "progress": False, "device": None}  # --device auto
    payload = json.loads(result.stdout)
    assert payload["top1"] == 91.5
    assert {"top1", "top5", "params", "macs", "size_bytes", "num_images"} <= set(payload)


def test_bench_passes_exact_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake(model_source: Any, **kw: Any) -> Measurement:
        calls.append((model_source, kw))
        return _measurement()

    monkeypatch.setattr(tasks, "bench_task", fake)
    result = runner.invoke(
        app,
        ["bench", "--checkpoint", "c.pt", "-b", "1", "-b", "8", "--runs", "3", "--warmup", "1", "--json"],
    )
    assert result.exit_code == 0, result.output
    model_source, kw = calls[0]
    assert model_source == tasks.ModelSource(checkpoint=Path("c.pt"))
    assert kw == {
        "batch_sizes": (1, 8),
        "input_size": None,  # no --image-size: the checkpoint's recorded size, else 32
        "num_threads": None,
        "warmup": 1,
        "runs": 3,
        "channels_last": False,
    }
    assert json.loads(result.stdout)["size_bytes"] == 1234


def test_train_passes_exact_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from edgeslim.data import Augment
    from edgeslim.train import TrainConfig

    calls: list[tuple[Any, ...]] = []

    class FakeResult:
        def __init__(self) -> None:
            self.history: list[dict[str, Any]] = [{"epoch": 1}]

        def to_dict(self) -> dict[str, Any]:
            return {"history": self.history}

    def fake(model_source: Any, data_source: Any, config: Any, **kw: Any) -> FakeResult:
        calls.append((model_source, data_source, config, kw))
        return FakeResult()

    monkeypatch.setattr(tasks, "train_task", fake)
    out = tmp_path / "m.pt"
    result = runner.invoke(
        app,
        [
            "train",
            "--model",
            "resnet20",
            "--data",
            "d",
            "--epochs",
            "2",
            "--lr",
            "0.05",
            "--optimizer",
            "adamw",
            "--fp32",
            "--no-channels-last",
            "--no-augment",
            "--out",
            str(out),
            "--resume",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    model_source, data_source, config, kw = calls[0]
    assert model_source == tasks.ModelSource(name="resnet20")
    assert data_source == tasks.DataSource(path="d", split="train", limit=None, val_fraction=0.1, seed=0)
    assert config == TrainConfig(
        epochs=2,
        batch_size=128,
        optimizer="adamw",
        lr=0.05,
        weight_decay=5e-4,
        schedule="cosine",
        warmup_epochs=0.0,
        label_smoothing=0.0,
        bf16=False,
        channels_last=False,
        grad_clip=None,
        seed=0,
    )
    assert kw == {
        "out": out,
        "resume": True,
        "augment": Augment.none(),
        "num_threads": None,
        "progress": False,
        "device": None,
    }
    assert json.loads(result.stdout) == {"history": [{"epoch": 1}]}


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["eval", "--data", "x"], "no model given"),
        (["eval", "--model", "resnet20", "--checkpoint", "c.pt", "--data", "x"], "not both"),
        (["eval", "--model", "resnet20", "--split", "dev", "--data", "x"], "--split"),
        (["bench", "--model", "resnet20", "--runtime", "tflite"], "--runtime"),
        (["train", "--model", "resnet20", "--optimizer", "rmsprop", "--data", "x"], "optimizer"),
    ],
)
def test_bad_options_are_one_line_errors(argv: list[str], needle: str) -> None:
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    assert needle in result.output
    assert "Traceback" not in result.output


def test_domain_error_becomes_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any, **__: Any) -> Measurement:
        raise CheckpointError("checkpoint 'x' is corrupt")

    monkeypatch.setattr(tasks, "bench_task", boom)
    result = runner.invoke(app, ["bench", "--model", "resnet20"])
    assert result.exit_code == 2
    assert "checkpoint 'x' is corrupt" in result.output
    assert result.output.strip().count("\n") == 0


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip().startswith("edgeslim 0.")
