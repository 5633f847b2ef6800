"""The quantize task end to end on tiny data, and the quantize command's exact arguments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from edgeslim import tasks
from edgeslim.cli.app import app
from edgeslim.models import create_model
from edgeslim.quantization import QAT, DynamicQuant, StaticQuant
from edgeslim.train import TrainConfig

pytest.importorskip("onnxruntime")


def test_static_int8_task_reports_simulated_and_deployed(tiny_cifar: Path, tmp_path: Path) -> None:
    outcome = tasks.quantize_task(
        tasks.ModelSource(name="resnet20_tiny"),
        StaticQuant(bits=8, calibration_batches=2, scope="all_layers"),
        out=tmp_path / "q.pt",
        data_source=tasks.DataSource(path=str(tiny_cifar), split="test", val_fraction=0.0),
        progress=False,
    )
    d = outcome.to_dict()
    assert d["bits"] == 8 and d["executed_bits"] == 8 and d["runtime"] == "ort"
    assert Path(d["packed_path"]).stat().st_size == d["size_bytes"]
    assert Path(d["onnx_path"]).stat().st_size == d["onnx_size_bytes"]
    assert d["size_bytes"] < d["size_bytes_fp32"]
    # the container (torch.save zip records, the entry table) adds a few KiB, never removes bytes
    assert d["size_bytes_ideal"] < d["size_bytes"] < d["size_bytes_ideal"] + 8192
    assert d["parity"]["top1_agreement"] >= 0.95
    # the int8 artifact in ONNX Runtime and the fake-quant model classify (almost) the same images
    assert abs(d["top1_deployed"] - d["top1_simulated"]) <= 3.0


def test_four_bit_file_is_smaller_and_says_executed_at_8(tiny_cifar: Path, tmp_path: Path) -> None:
    data = tasks.DataSource(path=str(tiny_cifar), split="test", val_fraction=0.0)
    model = tasks.ModelSource(name="small_cnn_tiny")
    eight = tasks.quantize_task(
        model,
        StaticQuant(bits=8, calibration_batches=1),
        out=tmp_path / "8.pt",
        data_source=data,
        progress=False,
    )
    four = tasks.quantize_task(
        model,
        StaticQuant(bits=4, act_bits=8, calibration_batches=1),
        out=tmp_path / "4.pt",
        data_source=data,
        progress=False,
    )
    assert four.size_bytes < eight.size_bytes
    assert any("executes them as int8" in n for n in four.notes)


def test_dynamic_torch_engine_packs_the_same_file_as_simulated(tiny_cifar: Path, tmp_path: Path) -> None:
    """engine="torch" through the task (a sweep's ``engine: torch``) once crashed packing torch.ao's
    state dict; the packed file holds the simulated codes either way and deploys on torch's int8."""
    data = tasks.DataSource(path=str(tiny_cifar), split="test", val_fraction=0.0)
    torch.manual_seed(0)
    torch.save(create_model("small_cnn_tiny").state_dict(), tmp_path / "w.pt")
    model = tasks.ModelSource(name="small_cnn_tiny", weights=tmp_path / "w.pt")
    outcomes = [
        tasks.quantize_task(
            model,
            DynamicQuant(bits=8, engine=engine),
            out=tmp_path / f"{engine}.pt",
            data_source=data,
            progress=False,
        ).to_dict()
        for engine in ("simulated", "torch")
    ]
    simulated, real = outcomes
    assert real["size_bytes"] == simulated["size_bytes"] < simulated["size_bytes_fp32"]
    assert real["runtime"] == simulated["runtime"] == "torch"
    assert real["top1_deployed"] == simulated["top1_deployed"]
    assert real["top1_simulated"] == simulated["top1_simulated"]


def test_qat_needs_epochs(tiny_cifar: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "quantize",
            "--model",
            "resnet20_tiny",
            "--method",
            "qat",
            "--data",
            str(tiny_cifar),
            "--out",
            str(tmp_path / "q.pt"),
        ],
    )
    assert result.exit_code == 2
    assert "--epochs (quantize_task.qat_training)" in result.output


def test_quantize_cli_passes_exact_arguments(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[Any, ...]] = []

    class Outcome:
        onnx_path = None

        def to_dict(self) -> dict[str, Any]:
            return {"bits": 4}

    def fake(model_source: Any, config: Any, **kw: Any) -> Outcome:
        calls.append((model_source, config, kw))
        return Outcome()

    monkeypatch.setattr(tasks, "quantize_task", fake)
    out = tmp_path / "q.pt"
    argv = [
        "quantize",
        "--model",
        "resnet20",
        "--method",
        "qat",
        "--bits",
        "4",
        "--act-bits",
        "8",
        "--per-tensor",
        "--no-fuse",
        "--scope",
        "weights_and_activations",
        "--epochs",
        "2",
        "--data",
        "d",
        "--out",
        str(out),
        "--json",
    ]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    model_source, config, kw = calls[0]
    recovery = kw.pop("recovery")  # QAT fine-tunes distilling from the float model by default
    assert recovery.distill is True
    assert model_source == tasks.ModelSource(name="resnet20")
    assert config == QAT(
        weight_bits=4,
        act_bits=8,
        per_channel=False,
        symmetric=True,
        fuse_bn=False,
        scope="weights_and_activations",
    )
    assert kw == {
        "out": out,
        "data_source": tasks.DataSource(path="d", split="test", limit=None, seed=0),
        "qat_training": TrainConfig(epochs=2, batch_size=128, lr=0.0005, seed=0),
        "num_threads": None,
        "progress": False,
        "device": None,
    }
    assert json.loads(result.stdout) == {"bits": 4}


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--method", "float"], "'float' is not one of static, qat, dynamic"),
        (["--bits", "9"], "--bits (StaticQuant.bits) must be from 2 to 8 bits, got 9"),
        (["--method", "qat", "--bits", "1"], "--bits (QAT.weight_bits)"),
        (["--observer", "max"], "--observer (StaticQuant.observer)"),
    ],
)
def test_quantize_cli_errors(argv: list[str], needle: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["quantize", "--model", "resnet20_tiny", "--data", "x", *argv])
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Traceback" not in result.output


def test_dynamic_config_mapping() -> None:
    from edgeslim.cli.app import cli_method_config

    params = {"bits": 8, "act_bits": None, "per_channel": True, "symmetric": True, "scope": "all_layers"}
    assert cli_method_config("quantize", "dynamic", params) == DynamicQuant(bits=8, per_channel=True)
