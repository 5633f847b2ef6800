"""Issue 17: values that pass validation and then cannot run, half-written output, one-line usage
errors, failed parity shown, untrusted TorchScript/.pt2 refused, plain output off a terminal."""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
import typer
import yaml
from rich.console import Console
from typer.testing import CliRunner

from edgeslim.cli.app import _exit_on_failed_parity, app
from edgeslim.cli.console import fmt_bytes
from edgeslim.engine.progress import SweepProgress
from edgeslim.errors import ConfigError, ExportError
from edgeslim.export.parity import Parity
from edgeslim.export.runners import load_torch_artifact, trusting_artifacts
from edgeslim.recipe.schema import parse_recipe
from edgeslim.sweep.experiment import parse_experiment

runner = CliRunner()


# -- 1. bounds ------------------------------------------------------------------------------------
def _experiment(data: Path, **overrides: object) -> str:
    doc: dict[str, object] = {
        "name": "b",
        "models": [{"name": "resnet20_tiny", "init": "random"}],
        "data": {"path": str(data), "train_limit": 100},
        "methods": [{"prune": {"method": "l1", "ratio": [0.5]}}],
        "measure": {"runtimes": ["torch"], "batch_sizes": [1]},
    }
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        block = doc.setdefault(section, {})
        assert isinstance(block, dict)
        block[field] = value
    return yaml.safe_dump(doc)


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("measure__batch_sizes", [1_000_000_000_000], "measure.batch_sizes[0]"),
        ("execution__workers", 1_000_000, "execution.workers"),
        ("execution__threads", 10**6, "execution.threads"),
        ("limits__trial_timeout_s", 1e308, "limits.trial_timeout_s"),
        ("limits__trial_timeout_s", float("inf"), "limits.trial_timeout_s"),
        ("limits__trial_memory_mb", 1e30, "limits.trial_memory_mb"),
        ("data__train_limit", 10**40, "data.train_limit"),
        ("data__test_limit", 1e40, "data.test_limit"),
        ("measure__latency_runs", 10**9, "measure.latency_runs"),
    ],
)
def test_experiment_bounds(tiny_cifar: Path, key: str, value: object, field: str) -> None:
    text = _experiment(tiny_cifar.parent, **{key: value})
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_experiment(text, check_models=False)


def test_experiment_within_bounds_passes(tiny_cifar: Path) -> None:
    text = _experiment(
        tiny_cifar.parent,
        measure__batch_sizes=[1, 4096],
        execution__workers=64,
        limits__trial_timeout_s=7 * 24 * 3600,
        data__train_limit=10**9,
    )
    parse_experiment(text, check_models=False)


@pytest.mark.parametrize(
    ("step", "field"),
    [
        ("{type: measure, batch_sizes: [1000000000000]}", "batch_sizes"),
        ("{type: measure, runs: 1000000000}", "runs"),
        ("{type: train, train: {epochs: 1, batch_size: 100000000}}", "batch_size"),
    ],
)
def test_recipe_bounds(tiny_cifar: Path, step: str, field: str) -> None:
    text = (
        f"name: r\nmodel: {{name: resnet20_tiny}}\ndata: {{path: {tiny_cifar.parent}}}\nsteps:\n  - {step}\n"
    )
    with pytest.raises(ConfigError, match=field):
        parse_recipe(text)
    with pytest.raises(ConfigError, match="threads"):
        parse_recipe(text.replace("steps:", "threads: 100000000\nsteps:"))


def test_bench_image_size_is_bounded() -> None:
    result = runner.invoke(app, ["bench", "--model", "resnet20_tiny", "--image-size", "100000"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "--image-size" in lines[0], result.output


# -- 3. one-line usage errors -------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [["train", "--epochs", "-1"], ["export", "--opset", "5"], ["bench", "-b", "0"], ["train", "--bogus"]],
)
def test_usage_errors_are_one_line(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:") and lines[0].endswith("--help)"), lines[0]


def test_help_and_version_unchanged() -> None:
    assert runner.invoke(app, ["--help"]).exit_code == 0
    assert runner.invoke(app, ["--version"]).exit_code == 0


# -- 2. nothing written on a validation error --------------------------------------------------
def test_recipe_with_wrong_weights_writes_nothing(tmp_path: Path, tiny_cifar: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import torch

    from edgeslim.models import create_model

    weights = tmp_path / "other.pt"  # weights of another model
    torch.save(create_model("resnet20", num_classes=10).state_dict(), weights)
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(
        f"name: bad\nmodel: {{name: resnet20_tiny, weights: {weights}}}\n"
        f"data: {{path: {tiny_cifar.parent}}}\nthreads: 1\nsteps:\n  - {{type: measure, batch_sizes: [1]}}\n"
    )
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["run", str(recipe)])
    assert result.exit_code == 2, result.output
    assert "does not fit" in result.output
    assert not (tmp_path / "runs").exists()


# -- 4. parity of a quantized model --------------------------------------------------------------
def test_deployed_parity_uses_the_int8_rule() -> None:
    from edgeslim.export.parity import default_tolerance

    expected = np.full((4, 10), 27.6, dtype=np.float32)
    tolerance, agreement = default_tolerance("int8", expected)
    # the case: resnet56 static int8 on an AVX2 CPU, 1.63 of ~27.6 with 99.6% agreement
    assert Parity(1.63, 0.996, 256, tolerance, agreement).ok
    assert not Parity(1.63, 0.90, 256, tolerance, agreement).ok


def test_failed_parity_exits_1() -> None:
    bad = Parity(9.0, 0.5, 256, 2.76, 0.95).to_dict()
    with pytest.raises(typer.Exit) as info:
        _exit_on_failed_parity(bad, "q.onnx")
    assert info.value.exit_code == 1
    _exit_on_failed_parity(Parity(1.0, 1.0, 256, 2.76, 0.95).to_dict(), "q.onnx")  # ok: returns


# -- 5. untrusted artifacts ----------------------------------------------------------------------
def _fake_pt2(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"not a program")
    return path


def test_pt2_and_torchscript_need_trust(tmp_path: Path) -> None:
    pt2 = _fake_pt2(tmp_path / "m.pt2")
    with pytest.raises(ConfigError, match="trust_artifact=True") as info:
        load_torch_artifact(pt2)
    assert info.value.field == "trust_artifact"
    with pytest.raises(ConfigError, match="trust"):
        load_torch_artifact(pt2, "torchscript")
    with pytest.raises(ExportError):  # trusted: loading is attempted (and this file is no program)
        load_torch_artifact(pt2, trust_artifact=True)
    with trusting_artifacts(), pytest.raises(ExportError):
        load_torch_artifact(pt2)


def test_non_archive_pt2_is_one_line_without_torch_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "bad.pt2"
    bad.write_text("not a zip")
    with caplog.at_level(logging.DEBUG), pytest.raises(ExportError, match="not an ExportedProgram archive"):
        load_torch_artifact(bad, trust_artifact=True)
    assert not caplog.records
    result = runner.invoke(app, ["eval", str(bad)])
    assert result.exit_code == 2 and "--trust-artifact" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


# -- 7. plain output off a terminal ---------------------------------------------------------------
def test_sizes_are_decimal_mb() -> None:
    assert fmt_bytes(860_000) == "860.00 kB"
    assert fmt_bytes(1_500_000) == "1.50 MB"
    assert fmt_bytes(999) == "999 B"


def test_sweep_progress_logs_every_trial_when_not_a_terminal() -> None:
    buffer = io.StringIO()
    view = SweepProgress("quickstart", slots=2, console=Console(file=buffer, force_terminal=False))
    view.begin(queued=8, done=0, failed=0)
    for i in range(8):
        view.trial_started(i, f"trial-{i}")
        view.trial_finished(i, "done", f"top-1 90.{i}% 0.86 MB")
    view.end()
    lines = buffer.getvalue().splitlines()
    assert sum("trial-" in line for line in lines) == 8  # every row, not the last six
    assert lines[-1].startswith("sweep quickstart: 8 done, 0 failed of 8")
    assert all(line.count("sweep quickstart") <= 1 for line in lines)
    assert "[8/8] trial-7: done" in buffer.getvalue()


def test_live_view_has_a_progress_bar() -> None:
    buffer = io.StringIO()
    view = SweepProgress("q", slots=1, enabled=False)
    view.begin(queued=4, done=1, failed=0)
    view.trial_started(1, "a")
    view.trial_finished(1, "done", "ok")
    Console(file=buffer, width=100).print(view.render())
    assert "2/5 trials" in buffer.getvalue() and "ETA" in buffer.getvalue()
