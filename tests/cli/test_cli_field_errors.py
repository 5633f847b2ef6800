"""Library errors name config fields / parameters (``exc.field``); the CLI shows them as its flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from edgeslim import tasks
from edgeslim.cli.app import app
from edgeslim.cli.console import cli_message, method_flags
from edgeslim.errors import ConfigError, DataError, EdgeslimError
from edgeslim.export import export
from edgeslim.methods import method_config
from edgeslim.pruning.configs import FilterPruning
from edgeslim.quantization.configs import StaticQuant

runner = CliRunner()


# -- the translation -------------------------------------------------------------------------------
def test_cli_message_shows_the_flag_beside_the_field() -> None:
    exc = ConfigError("FilterPruning.ratio must be in [0, 1), got 1.5", field="FilterPruning.ratio")
    assert cli_message(exc, {"FilterPruning.ratio": "--ratio"}) == (
        "--ratio (FilterPruning.ratio) must be in [0, 1), got 1.5"
    )
    # a command without that flag shows the library's words
    assert cli_message(exc, {}) == "FilterPruning.ratio must be in [0, 1), got 1.5"
    # a field the message does not spell out is put in front
    assert cli_message(ConfigError("too few", field="a.b"), {"a.b": "--b"}) == "--b: too few"
    # every mapped field named in the text is translated, not only exc.field; whole names only
    exc = ConfigError("give ModelSource.checkpoint or ModelSource.name, not ModelSource.names")
    assert cli_message(exc) == (
        "give --checkpoint (ModelSource.checkpoint) or --model (ModelSource.name), not ModelSource.names"
    )


def test_method_flags_follow_the_registry_aliases() -> None:
    flags = method_flags("prune", {"ratio": "--ratio"})
    assert flags["prune.method"] == "--method"
    assert flags["FilterPruning.ratio"] == flags["MagnitudePruning.sparsity"] == "--ratio"
    assert flags["GradualPruning.final_sparsity"] == "--ratio"


def test_field_survives_pickling() -> None:
    import pickle

    exc = pickle.loads(pickle.dumps(ConfigError("x.y bad", field="x.y")))
    assert isinstance(exc, EdgeslimError) and exc.field == "x.y" and str(exc) == "x.y bad"


# -- the library names fields ----------------------------------------------------------------------
def test_library_errors_name_fields_not_flags(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^FilterPruning\.ratio must be in \[0, 1\)") as exc:
        FilterPruning(ratio=1.5)
    assert exc.value.field == "FilterPruning.ratio"
    with pytest.raises(ConfigError, match=r"MagnitudePruning\.sparsity") as exc:
        method_config("prune", "magnitude", {"ratio": 1.5})
    assert exc.value.field == "MagnitudePruning.sparsity"
    with pytest.raises(ConfigError, match=r"'l3' is not one of") as exc:
        method_config("prune", "l3", {})
    assert exc.value.field == "prune.method"
    with pytest.raises(ConfigError, match=r"StaticQuant\.bits") as exc:
        StaticQuant(bits=9)
    assert exc.value.field == "StaticQuant.bits"
    with pytest.raises(ConfigError, match=r"^export\.format must be one of") as exc:
        export(nn.Conv2d(3, 4, 3), "tflite", torch.zeros(1, 3, 8, 8), out=tmp_path / "m.tflite")
    assert exc.value.field == "export.format"
    with pytest.raises(
        ConfigError, match=r"^bench_task\.batch_sizes must all be integers from 1 to 4096, got \[1, 0\]$"
    ) as exc:
        tasks.bench_task(tasks.ModelSource(name="resnet20_tiny"), batch_sizes=(1, 0))
    assert exc.value.field == "bench_task.batch_sizes"
    with pytest.raises(ConfigError, match=r"ModelSource\.name") as exc:
        tasks.ModelSource()
    assert exc.value.field == "ModelSource.name"


def test_library_errors_never_speak_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGESLIM_DATA", raising=False)
    errors: list[EdgeslimError] = []
    for call in (
        lambda: tasks.bench_task(tasks.ModelSource(name="resnet20_tiny"), runs=0),
        lambda: tasks.evaluate_task(
            tasks.ModelSource(name="resnet20_tiny"), tasks.DataSource(), batch_size=0
        ),
        lambda: tasks.DataSource().load(),
        lambda: tasks.ModelSource(name="resnet20_tiny", checkpoint=tmp_path / "c.pt"),
    ):
        with pytest.raises(EdgeslimError) as exc:
            call()
        errors.append(exc.value)
    for error in errors:
        assert "--" not in str(error), str(error)
        assert error.field is not None and error.field in str(error)


# -- the CLI shows flags ---------------------------------------------------------------------------
def _never(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the task must not run")


def _invoke(argv: list[str]) -> str:
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())  # rich may wrap the line


def test_prune_cli_names_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "prune_task", _never)
    out = _invoke(["prune", "--model", "resnet20_tiny", "--ratio", "1.5"])
    assert "--ratio (FilterPruning.ratio) must be in [0, 1), got 1.5" in out
    out = _invoke(["prune", "--model", "resnet20_tiny", "--method", "gradual", "--ratio", "1"])
    assert "--ratio (GradualPruning.final_sparsity)" in out
    out = _invoke(["prune", "--model", "resnet20_tiny", "--method", "fpgn"])
    assert "--method" in out and "'fpgn' is not one of" in out and "did you mean 'fpgm'" in out


def test_prune_cli_translates_task_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _invoke(["prune", "--model", "resnet20_tiny", "--method", "gradual"])
    assert "--finetune-epochs (prune_task.finetune)" in out


def test_quantize_cli_names_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "quantize_task", _never)
    out = _invoke(["quantize", "--model", "resnet20_tiny", "--bits", "1"])
    assert "--bits (StaticQuant.bits) must be from 2 to 8 bits, got 1" in out
    out = _invoke(["quantize", "--model", "resnet20_tiny", "--method", "qat", "--act-bits", "9"])
    assert "--act-bits (QAT.act_bits)" in out


def test_export_cli_names_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGESLIM_DATA", raising=False)
    argv = ["export", "--model", "resnet20_tiny", "--format", "onnx", "--precision", "fp16"]
    out = _invoke([*argv, "--out", str(tmp_path / "m.onnx")])
    assert "--precision (export.precision) 'fp16' is not available for onnx" in out
    out = _invoke(["export", "--model", "resnet20_tiny", "--out", str(tmp_path / "m.xml")])
    assert "--out (export.out) for onnx must end in .onnx" in out


def test_bench_cli_names_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    real = tasks.bench_task

    def zero_batch(source: tasks.ModelSource, **kw: Any) -> Any:
        return real(source, **{**kw, "batch_sizes": (0,)})

    monkeypatch.setattr(tasks, "bench_task", zero_batch)
    out = _invoke(["bench", "--model", "resnet20_tiny"])
    assert "--batch-size (bench_task.batch_sizes) must all be integers from 1 to 4096, got [0]" in out


def test_data_error_names_the_data_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGESLIM_DATA", raising=False)
    out = _invoke(["eval", "--model", "resnet20_tiny"])
    assert "--data (DataSource.path)" in out
    assert isinstance(DataError("x"), EdgeslimError)
