"""The sweep commands are thin: exact arguments to one task each, JSON on stdout, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgeslim.bench import Measurement
from edgeslim.cli.app import app
from edgeslim.engine.runner import DEFAULT_DB
from edgeslim.engine.store import Store
from edgeslim.sweep import SweepSummary
from edgeslim.sweep import api as sweep_api

runner = CliRunner()


def _summary(**kw: Any) -> SweepSummary:
    base: dict[str, Any] = dict(
        experiment="e",
        db="x.db",
        executor="local",
        workers=2,
        threads=1,
        total=5,
        done=5,
        failed=0,
        skipped=1,
        ran=4,
        wall_s=3.5,
        artifacts="runs/e",
    )
    base.update(kw)
    return SweepSummary(**base)


def test_sweep_passes_exact_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, dict[str, Any]]] = []

    def fake(path: Path, **kw: Any) -> SweepSummary:
        calls.append((path, kw))
        return _summary()

    monkeypatch.setattr(sweep_api, "sweep_task", fake)
    args = ["sweep", "exp.yaml", "--workers", "3", "--threads", "2", "--executor", "ray", "--address", "h:1"]
    result = runner.invoke(app, [*args, "--db", "s.db", "--retry-failed", "--no-ship-files", "--json"])
    assert result.exit_code == 0, result.output
    assert calls == [
        (
            Path("exp.yaml"),
            {
                "db": Path("s.db"),
                "executor": "ray",
                "workers": 3,
                "threads": 2,
                "address": "h:1",
                "ship_files": False,
                "retry_failed": True,
                "progress": False,
            },
        )
    ]
    assert json.loads(result.stdout) == _summary().to_dict()
    calls.clear()
    assert runner.invoke(app, ["sweep", "exp.yaml"]).exit_code == 0
    assert calls[0][1] == {
        "db": DEFAULT_DB,
        "executor": "local",
        "workers": None,
        "threads": None,
        "address": None,
        "ship_files": None,
        "retry_failed": False,
        "progress": True,
    }


def test_sweep_exits_1_when_a_trial_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep_api, "sweep_task", lambda *a, **k: _summary(done=4, failed=1))
    result = runner.invoke(app, ["sweep", "exp.yaml"])
    assert result.exit_code == 1
    assert "5 (4 done, 1 failed)" in result.output


def test_report_and_recommend_pass_exact_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class Files:
        def to_dict(self) -> dict[str, Any]:
            return {"html": "r.html"}

    class Rec:
        found = True

        def to_dict(self) -> dict[str, Any]:
            return {"found": True}

    monkeypatch.setattr(sweep_api, "report_task", lambda exp, **kw: seen.update(report=(exp, kw)) or Files())
    monkeypatch.setattr(sweep_api, "recommend_task", lambda exp, **kw: seen.update(rec=(exp, kw)) or Rec())
    assert runner.invoke(app, ["report", "e", "--out", "o.html", "--db", "s.db", "--json"]).exit_code == 0
    assert seen["report"] == (
        "e",
        {
            "db": Path("s.db"),
            "out": Path("o.html"),
            "max_latency_ms": None,
            "max_size_mb": None,
            "max_accuracy_drop": None,
            "min_speedup": None,
        },
    )
    result = runner.invoke(
        app,
        [
            "recommend",
            "e",
            "--max-latency-ms",
            "2",
            "--max-size-mb",
            "1.5",
            "--max-accuracy-drop",
            "1",
            "--min-speedup",
            "1.5",
            "--top",
            "5",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert seen["rec"] == (
        "e",
        {
            "db": DEFAULT_DB,
            "max_latency_ms": 2.0,
            "max_size_mb": 1.5,
            "max_accuracy_drop": 1.0,
            "min_speedup": 1.5,
            "top": 5,
        },
    )


def test_results_json_has_every_record(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    measure = {
        "type": "measure",
        "name": "m",
        "runtimes": ["torch"],
        "batch_sizes": [1],
        "runs": 1,
        "warmup": 0,
        "accuracy": True,
        "latency": True,
        "memory": "none",
    }
    start = {
        "type": "start",
        "name": "m/start",
        "model": "resnet20_tiny",
        "weights": None,
        "checkpoint": None,
        "num_classes": None,
        "train": None,
        "init": "random",
    }
    with Store.open(db) as store:
        exp = store.create_experiment("e", {"source": "e.yaml"})
        first = store.add_trial(
            exp.id, "k0", "m/start", {"step": start, "labels": {"model": "m"}}, kind="start"
        )
        store.claim_trial(first.id)
        store.finish_trial(first.id, metrics={}, artifact="/x.pt")
        labels = {"model": "m", "trial": "m/baseline"}
        done = store.add_trial(
            exp.id, "k1", "m/baseline", {"step": measure, "labels": labels}, kind="measure", depends_on="k0"
        )
        store.claim_trial(done.id)
        taken = Measurement(model="m", top1=90.0, runtime="torch")
        store.finish_trial(
            done.id,
            metrics={"top1": 90.0},
            measurements=[taken.to_dict()],
            env={"hash": "h"},
            timings={"total_s": 2.0},
        )
        labels = {"model": "m", "trial": "m/l1 ratio=0.5"}
        store.add_trial(
            exp.id,
            "k2",
            "m/l1 ratio=0.5",
            {"step": measure, "labels": labels},
            kind="measure",
            depends_on="k0",
        )
    yaml_file = tmp_path / "e.yaml"
    yaml_file.write_text("name: e\n")
    for ref in ("e", str(yaml_file)):  # by name or by its experiment file
        result = runner.invoke(app, ["results", ref, "--db", str(db), "--json"])
        assert result.exit_code == 0, result.output
        payload = json.loads(result.stdout)
        assert payload["experiment"]["name"] == "e"
        assert [(t["name"], t["status"]) for t in payload["trials"]] == [
            ("m/baseline", "done"),
            ("m/l1 ratio=0.5", "queued"),
        ]
        trial = payload["trials"][0]  # a typed result: the measured chain
        assert trial["top1"] == 90.0 and trial["steps"] == ["start", "measure"]
        assert trial["measurements"][0]["runtime"] == "torch"
        assert [r["key"] for r in payload["records"]] == ["k0", "k1", "k2"]  # and every raw record
        assert payload["records"][1]["env"] == {"hash": "h"} and payload["records"][1]["timings"] == {
            "total_s": 2.0
        }
    table = runner.invoke(app, ["results", "e", "--db", str(db)])
    assert table.exit_code == 0 and "m/baseline" in table.output
