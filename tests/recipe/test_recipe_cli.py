"""``edgeslim run``: exact arguments to the task, its output, and one-line errors with exit code 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgeslim import recipe as recipes
from edgeslim.cli.app import app
from edgeslim.errors import ConfigError
from edgeslim.recipe import RecipeOutcome, StepOutcome

runner = CliRunner()


def _outcome() -> RecipeOutcome:
    steps = (
        StepOutcome(
            1,
            "01-prune",
            "prune",
            "k1",
            "cached",
            "/r/01.pt",
            {"top1": 80.5, "size_bytes": 1_000_000},
            3.0,
            1,
        ),
        StepOutcome(
            2,
            "02-measure",
            "measure",
            "k2",
            "ran",
            "/r/01.pt",
            {"top1": 80.5, "latency_ms_by_batch": {"1": 0.5, "32": 9.25}, "runtime": "torch"},
            1.0,
            2,
        ),
    )
    return RecipeOutcome("chain", "r.yaml", Path("x.db"), Path("d"), 7, steps, 4.0)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def fake(*args: Any, **kwargs: Any) -> RecipeOutcome:
        seen.append((args, kwargs))
        return _outcome()

    monkeypatch.setattr(recipes, "recipe_task", fake)
    return seen


def test_run_passes_exact_arguments_and_prints_one_json_object(calls: list[Any]) -> None:
    result = runner.invoke(
        app,
        ["run", "r.yaml", "--db", "x.db", "--out-dir", "d", "--threads", "1", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert calls == [
        ((Path("r.yaml"),), {"db": Path("x.db"), "out_dir": Path("d"), "num_threads": 1, "progress": False})
    ]
    data = json.loads(result.stdout)
    assert data == json.loads(json.dumps(_outcome().to_dict()))
    assert (data["ran"], data["cached"], data["artifact"]) == (1, 1, "/r/01.pt")


def test_run_defaults_and_table(calls: list[Any]) -> None:
    result = runner.invoke(app, ["run", "r.yaml"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert calls == [
        ((Path("r.yaml"),), {"db": None, "out_dir": None, "num_threads": None, "progress": True})
    ]
    assert "1 ran, 1 cached" in result.stdout
    assert "80.50%" in result.stdout and "b32: 9.25 ms torch" in result.stdout and "1.000 MB" in result.stdout


def test_run_maps_task_errors_to_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> RecipeOutcome:
        raise ConfigError(
            "r.yaml:5: steps[1].type: step 2 (prune): cannot prune after step 1 (quantize): ..."
        )

    monkeypatch.setattr(recipes, "recipe_task", fail)
    result = runner.invoke(app, ["run", "r.yaml"])
    assert result.exit_code == 2
    assert "error: r.yaml:5: steps[1].type: step 2 (prune): cannot prune after" in result.stderr
    assert "Traceback" not in result.output


def test_run_real_errors_name_the_file_and_field(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "nope.yaml' does not exist" in result.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nmodel: {name: resnet20_tiny}\nsteps:\n"
        "  - {type: quantize, method: static}\n  - {type: prune, method: l1, ratio: 0.5}\n"
    )
    result = runner.invoke(app, ["run", str(bad), "--db", str(tmp_path / "s.db")])
    assert result.exit_code == 2
    assert f"{bad}:5: steps[1].type: step 2 (prune): cannot prune after step 1 (quantize)" in result.stderr
    assert not (tmp_path / "s.db").exists()  # refused before anything was written


def test_run_for_real_prints_the_steps_as_json(
    write_recipe: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_recipe(
        "  - {type: measure, runtime: torch, batch_sizes: [2], runs: 2, warmup: 0, memory: inline}\n"
    )
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["run", str(path), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert Path(data["db"]) == Path("runs") / "sweeps.db" and (tmp_path / "runs" / "sweeps.db").is_file()
    assert (
        Path(data["out_dir"]) == tmp_path.resolve() / "runs" / "recipes" / "tiny"
    )  # absolute: resumable anywhere
    (step,) = data["steps"]
    assert step["status"] == "ran" and step["metrics"]["num_images"] == 100
    assert list(step["metrics"]["latency_ms_by_batch"]) == ["2"]
    assert Path(step["artifact"]).name.startswith("00-start-")  # the zoo model, saved once to be measured
