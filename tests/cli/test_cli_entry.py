"""Issue 17: the ``edgeslim`` program answers ``--help``, ``--version`` and ``models`` without importing
torch (lazy root + on-disk zoo catalog), and the lazy root behaves exactly like the full command tree."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from typer._click.core import Context
from typer.testing import CliRunner

from edgeslim import tasks
from edgeslim.cli import entry, zoo
from edgeslim.cli.app import app as full_app
from edgeslim.errors import ConfigError

runner = CliRunner()


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EDGESLIM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_table_matches_the_commands_own_help() -> None:
    group = typer.main.get_command(full_app)
    ctx = Context(group)
    real = {name: group.get_command(ctx, name) for name in group.list_commands(ctx)}  # type: ignore[attr-defined]
    assert sorted(entry.COMMANDS) == sorted(real)
    for name, (_, short) in entry.COMMANDS.items():
        command = real[name]
        assert command is not None
        assert short == command.get_short_help_str(limit=1000), name


def _run_without_torch(args: list[str], cache: Path) -> tuple[str, bool]:
    """Run the real entry point in a fresh interpreter; return its stdout and whether torch got imported."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.argv = ["edgeslim", *{args!r}]
        from edgeslim.cli import entry
        try:
            entry.main()
        except SystemExit:
            pass
        sys.stderr.write("TORCH=" + str("torch" in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={"EDGESLIM_CACHE": str(cache), "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    return done.stdout, done.stderr.endswith("TORCH=True")


def test_help_version_and_models_do_not_import_torch(cache: Path) -> None:
    out, torch_loaded = _run_without_torch(["--help"], cache)
    assert "prune" in out and "study" in out and not torch_loaded
    out, torch_loaded = _run_without_torch(["--version"], cache)
    assert out.startswith("edgeslim ") and not torch_loaded
    # the first `models` builds the catalog (imports the zoo); every later one reads it
    first, torch_loaded = _run_without_torch(["models", "--json"], cache)
    assert torch_loaded
    again, torch_loaded = _run_without_torch(["models", "--json"], cache)
    assert again == first and not torch_loaded
    # a real command still loads the full tree
    out, torch_loaded = _run_without_torch(["bench", "--help"], cache)
    assert "--runtime" in out and torch_loaded


@pytest.mark.parametrize(
    ("pattern", "tiny", "details"),
    [(None, False, False), (None, True, False), ("resnet2*", False, True), ("*tiny", True, True)],
)
def test_catalog_rows_equal_the_library_rows(
    cache: Path, pattern: str | None, tiny: bool, details: bool
) -> None:
    expected = tasks.list_models_task(pattern=pattern, include_tiny=tiny, details=details)
    assert zoo.zoo_rows(pattern=pattern, include_tiny=tiny, details=details) == expected  # miss
    assert zoo.zoo_rows(pattern=pattern, include_tiny=tiny, details=details) == expected  # hit


def test_catalog_hit_computes_nothing_and_details_are_added_once(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, object]] = []
    real = tasks.list_models_task

    def counting(**kwargs: object) -> list[dict[str, object]]:
        calls.append(kwargs)
        return real(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tasks, "list_models_task", counting)
    zoo.zoo_rows()
    zoo.zoo_rows(pattern="resnet*")
    assert len(calls) == 1  # the miss only
    rows = zoo.zoo_rows(pattern="resnet2*", details=True)
    assert [r["name"] for r in rows] == ["resnet20"] and len(calls) == 2
    assert rows[0]["params"] == 269_722 and rows[0]["macs"] == 40_551_040
    zoo.zoo_rows(pattern="resnet2*", details=True)
    assert len(calls) == 2
    # details are kept but shown only when asked for
    assert "params" not in zoo.zoo_rows(pattern="resnet20")[0]


def test_catalog_key_change_damage_and_no_match(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zoo.zoo_rows()
    first = zoo.catalog_path()
    assert first.exists()
    first.write_text("{not json", encoding="utf-8")  # a damaged file is a miss, rewritten whole
    assert zoo.zoo_rows(pattern="resnet20")[0]["name"] == "resnet20"
    assert json.loads(first.read_text(encoding="utf-8"))["rows"]
    monkeypatch.setattr(zoo, "catalog_key", lambda: "another-key")  # e.g. a zoo file was edited
    zoo.zoo_rows()
    assert zoo.catalog_path().name == "models-another-key.json"
    assert sorted(p.name for p in zoo.catalog_path().parent.iterdir()) == ["models-another-key.json"]
    with pytest.raises(ConfigError, match="no model matches 'nope'"):
        zoo.zoo_rows(pattern="nope")


def test_catalog_key_follows_the_zoo_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = zoo.catalog_key()
    monkeypatch.setattr(zoo, "_torch_version", lambda: "0.0.0")
    assert zoo.catalog_key() != before


def test_unwritable_cache_still_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    monkeypatch.setenv("EDGESLIM_CACHE", str(blocker))  # a file where the folder should be
    assert zoo.zoo_rows(pattern="resnet20")[0]["name"] == "resnet20"


def test_lazy_root_runs_commands_and_keeps_one_line_errors(cache: Path) -> None:
    result = runner.invoke(entry.app, ["models", "resnet20", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["models"][0]["name"] == "resnet20"
    result = runner.invoke(entry.app, ["models", "nope"])
    assert result.exit_code == 2 and "no model matches 'nope'" in result.output
    result = runner.invoke(entry.app, ["eval", "--help"])
    assert result.exit_code == 0 and "--split" in result.output
    result = runner.invoke(entry.app, ["--version"])
    assert result.stdout.startswith("edgeslim ")
    result = runner.invoke(entry.app, ["frobnicate"])
    assert result.exit_code == 2 and "No such command 'frobnicate'" in result.output
