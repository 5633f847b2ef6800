"""Recommendation on a hand-built table: limits, ranking, reasons, and the exit code when none fits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_helpers import add_done, build_store, records
from typer.testing import CliRunner

from edgeslim.cli.app import app
from edgeslim.errors import ConfigError
from edgeslim.report import Constraints, pareto_front, recommend, rows


def _rows(tmp_path: Path) -> list[dict]:  # type: ignore[type-arg]
    db = tmp_path / "s.db"
    build_store(db)
    return rows(records(db)[1])


def test_pareto_front_exact() -> None:
    points = [(2.0, 91.0), (1.6, 90.5), (1.2, 89.0), (1.3, 84.0), (0.9, 90.8), (1.2, 88.0)]
    # (0.9, 90.8) beats everything slower except the 91.0 at 2.0
    assert pareto_front(points) == [4, 0]
    assert pareto_front([(1.0, 1.0), (1.0, 2.0), (2.0, 3.0)]) == [1, 2]
    assert pareto_front([]) == []


def test_limits_filter_and_rank_by_accuracy(tmp_path: Path) -> None:
    data = _rows(tmp_path)
    rec = recommend(data, Constraints(max_latency_ms=2.6, max_size_mb=1.5, max_accuracy_drop=1.5), top=3)
    names = [c.row["name"] for c in rec.fitting]
    # fits: b/l1 0.4 (91.9, 2.5 ms, 1.4 MB, drop 1.1), a/baseline (91.0, 2.0, 1.0), a/static (90.8, 0.9,
    # 0.26, drop 0.2), a/l1 0.2 (90.5, drop 0.5), a/l1 0.4 (89.0, drop 2.0: out)
    assert names == ["b/l1 ratio=0.4", "a/baseline", "a/static bits=8"]
    assert (rec.num_fitting, rec.num_candidates) == (4, 8)
    first, second, third = (list(c.reasons) for c in rec.fitting)
    assert first[:3] == [
        "latency 2.50 ms <= 2.6 ms (torch, batch 1)",
        "size 1.400 MB <= 1.5 MB",
        "accuracy drop 1.10 pp <= 1.5 pp (top-1 91.90%)",
    ]
    assert "most accurate of the 4 fitting trial(s) (of 8 finished)" in first
    assert "Pareto-optimal for accuracy vs latency among fitting trials" in first
    assert any(r.startswith("rank 2: 0.90 pp below #1, 1.25x the speed of #1") for r in second)
    assert "this is the uncompressed baseline: the limits need no compression" in second
    assert "Pareto-optimal for accuracy vs size among fitting trials" in third
    assert rec.near_misses == ()


def test_nothing_fits_reports_the_closest_misses(tmp_path: Path) -> None:
    rec = recommend(_rows(tmp_path), Constraints(max_latency_ms=0.5), top=2)
    assert not rec.found and rec.fitting == ()
    assert [c.row["name"] for c in rec.near_misses] == ["a/static bits=8", "a/l1 ratio=0.4"]
    assert rec.near_misses[0].reasons == ("latency 0.90 ms > 0.5 ms (torch, batch 1)",)


def test_cli_exit_codes_and_json(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    build_store(db)
    runner = CliRunner()
    ok = runner.invoke(app, ["recommend", "hand", "--db", str(db), "--max-size-mb", "0.3", "--json"])
    assert ok.exit_code == 0, ok.output
    payload = json.loads(ok.stdout)
    assert payload["found"] and [r["trial"]["name"] for r in payload["recommendations"]] == [
        "a/static bits=8",
        "a/l1 ratio=0.6",
    ]
    none = runner.invoke(app, ["recommend", "hand", "--db", str(db), "--max-latency-ms", "0.1"])
    assert none.exit_code == 1
    assert "no trial fits" in none.output
    unknown = runner.invoke(app, ["recommend", "nope", "--db", str(db)])
    assert unknown.exit_code == 2 and "no experiment 'nope'" in unknown.output and "hand" in unknown.output
    missing = runner.invoke(app, ["recommend", "hand", "--db", str(tmp_path / "none.db")])
    assert missing.exit_code == 2 and "no result store" in missing.output
    assert not (tmp_path / "none.db").exists()


def test_zero_limits_are_refused_not_divided_by(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    build_store(db)
    runner = CliRunner()
    for flag, field in (("--max-latency-ms", "max_latency_ms"), ("--max-size-mb", "max_size_mb")):
        result = runner.invoke(app, ["recommend", "hand", "--db", str(db), flag, "0"])
        assert result.exit_code == 2, result.output
        # the library names the field; the CLI shows the flag that sets it
        assert f"{flag} (Constraints.{field}) must be a number > 0" in result.output
        assert "Traceback" not in result.output
    negative = runner.invoke(app, ["recommend", "hand", "--db", str(db), "--max-accuracy-drop", "-1"])
    assert negative.exit_code == 2
    assert "--max-accuracy-drop (Constraints.max_accuracy_drop) must be a number >= 0" in negative.output
    with pytest.raises(ConfigError, match=r"Constraints.max_size_mb must be a number > 0"):
        Constraints(max_size_mb=0.0)
    with pytest.raises(ConfigError, match=r"Constraints.max_latency_ms must be a number, got nan"):
        Constraints(max_latency_ms=float("nan"))
    assert recommend(_rows(tmp_path), Constraints(max_accuracy_drop=0.0)).num_fitting == 2  # baselines


def test_reasons_warn_about_simulated_accuracy_and_missing_runtimes(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    build_store(db)
    common = {"model": "a", "runtime": "onnxruntime", "latency_batch_size": 1, "params": 1000}
    add_done(
        db,
        "a/qat bits=4",
        {**common, "family": "quantize", "method": "qat", "top1": 95.0, "top1_drop": -4.0, "simulated": True,
         "latency_ms": 0.8, "size_bytes": 150_000},
    )  # fmt: skip
    add_done(
        db,
        "a/l1 ratio=0.1",
        {**common, "family": "prune", "method": "l1", "rate": 0.1, "top1": 94.0, "top1_drop": -3.0,
         "size_bytes": 900_000, "runtime_errors": {"onnxruntime": "parity FAILED: max |diff| 3.5"}},
    )  # fmt: skip
    rec = recommend(rows(records(db)[1]), Constraints(max_size_mb=1.0), top=2)
    first, second = rec.fitting
    assert (first.row["name"], first.row["simulated"]) == ("a/qat bits=4", True)
    assert first.reasons[-1].startswith("caution: its top-1 is simulated (fake quantization in torch)")
    assert second.row["name"] == "a/l1 ratio=0.1" and not second.row["simulated"]
    assert second.reasons[-1] == "caution: no onnxruntime figures (parity FAILED: max |diff| 3.5)"
    result = CliRunner().invoke(app, ["recommend", "hand", "--db", str(db), "--max-size-mb", "1"])
    assert result.exit_code == 0 and "top-1 95.00% (simulated)" in " ".join(result.output.split())


def test_a_speedup_budget_is_relative_to_each_models_baseline(tmp_path: Path) -> None:
    """``--min-speedup``: a budget that means the same on any machine (model a's baseline runs 2.0 ms,
    b's 4.0 ms; a/static at 0.9 ms is 2.22x, b/l1 0.4 at 2.5 ms 1.60x)."""
    data = _rows(tmp_path)
    rec = recommend(data, Constraints(min_speedup=1.6, max_accuracy_drop=1.5), top=5)
    assert [c.row["name"] for c in rec.fitting] == ["b/l1 ratio=0.4", "a/static bits=8"]
    assert rec.fitting[1].reasons[0] == "2.22x the speed of its baseline >= 1.6x (torch, batch 1)"
    rec = recommend(data, Constraints(min_speedup=5.0), top=2)
    assert not rec.found
    assert [c.row["name"] for c in rec.near_misses] == ["a/static bits=8", "a/l1 ratio=0.4"]
    assert rec.near_misses[0].reasons == ("2.22x the speed of its baseline < 5x (torch, batch 1)",)
    with pytest.raises(ConfigError, match=r"Constraints\.min_speedup must be a number > 0"):
        Constraints(min_speedup=0.0)
    db = tmp_path / "s.db"
    out = CliRunner().invoke(app, ["recommend", "hand", "--db", str(db), "--min-speedup", "2", "--json"])
    assert out.exit_code == 0, out.output
    assert [r["trial"]["name"] for r in json.loads(out.stdout)["recommendations"]] == ["a/static bits=8"]
    bad = CliRunner().invoke(app, ["recommend", "hand", "--db", str(db), "--min-speedup", "-1"])
    assert bad.exit_code == 2 and "--min-speedup" in bad.output
