"""Noisy latencies (timing passes that disagree) are marked in results, the report and recommend;
records stored before latencies had passes still load, as one pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from report_helpers import measure_step
from typer.testing import CliRunner

from edgeslim.bench import LatencyStats, Measurement, summarise_passes
from edgeslim.cli.app import app
from edgeslim.engine.records import trial_results
from edgeslim.engine.store import Store
from edgeslim.report.html import render
from edgeslim.report.plots import rows
from edgeslim.report.recommend import Constraints, recommend

runner = CliRunner()

START = {
    "type": "start",
    "name": "start",
    "model": "resnet20_tiny",
    "weights": None,
    "checkpoint": None,
    "num_classes": None,
    "train": None,
    "init": "random",
}
MEASURE = measure_step()


def _pass(ms: float) -> LatencyStats:
    return LatencyStats.from_times([ms / 1000.0] * 5, batch_size=1)


def _old_latency(ms: float) -> dict[str, Any]:
    """A latency record written before passes, spread and noisy existed."""
    stats = _pass(ms).to_dict()
    for field in ("passes", "spread", "noisy"):
        del stats[field]
    return stats


def _build(db: Path) -> None:
    noisy = summarise_passes([_pass(1.0), _pass(1.1), _pass(1.3)], 0.10)  # spread 0.27 > 0.10
    steady = summarise_passes([_pass(2.0), _pass(2.02), _pass(2.04)], 0.10)  # spread 0.02
    with Store.open(db) as store:
        exp = store.create_experiment("e", {"source": "e.yaml"})
        for model, top1, latency in (("a", 92.0, noisy), ("b", 91.0, steady), ("c", 90.0, None)):
            start = store.add_trial(
                exp.id,
                f"s-{model}",
                f"{model}/start",
                {"step": START, "labels": {"model": model}},
                kind="start",
            )
            store.claim_trial(start.id)
            store.finish_trial(start.id, metrics={}, artifact=f"/{model}.pt")
            labels = {"model": model, "trial": f"{model}/baseline"}
            record = store.add_trial(
                exp.id,
                f"m-{model}",
                f"{model}/baseline",
                {"step": MEASURE, "labels": labels},
                kind="measure",
                depends_on=f"s-{model}",
            )
            store.claim_trial(record.id)
            m = Measurement(model=model, runtime="torch", top1=top1, size_bytes=1000)
            if latency is not None:
                m = m.replace(latency={1: latency}, extra={"latency_passes": 3, "noise_threshold": 0.10})
            data = m.to_dict()
            if latency is None:  # c: an old record
                data["latency"] = {"1": _old_latency(3.0)}
            store.finish_trial(record.id, metrics={"top1": top1}, measurements=[data], env={"hash": "h"})


def _results(db: Path) -> dict[str, Any]:
    with Store.open(db) as store:
        exp = store.get_experiment("e")
        assert exp is not None
        return {r.model: r for r in trial_results(store.trials(exp.id))}


def test_rows_carry_spread_and_noisy_and_old_records_load_as_one_pass(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    _build(db)
    results = _results(db)
    a, b, c = (results[k].row() for k in "abc")
    assert results["a"].latency_noisy and not results["b"].latency_noisy and not results["c"].latency_noisy
    assert a["latency_ms"] == 1.1 and a["latency_passes"] == 3 and a["latency_noisy"] is True
    assert abs(a["latency_spread"] - 0.3 / 1.1) < 1e-12 and a["noise_threshold"] == 0.10
    assert b["latency_noisy"] is False and abs(b["latency_spread"] - 0.04 / 2.02) < 1e-12
    assert (c["latency_ms"], c["latency_passes"], c["latency_spread"], c["latency_noisy"]) == (
        3.0,
        1,
        0.0,
        False,
    )
    assert c["noise_threshold"] is None
    dumped = results["a"].to_dict()
    assert dumped["measurements"][0]["latency"]["1"]["noisy"] is True


def test_results_and_recommend_mark_the_noisy_latency(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    _build(db)
    table = runner.invoke(app, ["results", "e", "--db", str(db)])
    assert table.exit_code == 0, table.output
    lines = {line.split()[1]: line for line in table.output.splitlines() if "/baseline" in line}
    assert "1.100 ms ~" in lines["a/baseline"]
    assert "2.020 ms" in lines["b/baseline"] and "~" not in lines["b/baseline"]
    assert "3.000 ms" in lines["c/baseline"] and "~" not in lines["c/baseline"]
    assert "~ noisy latency: its timing passes differed by more than the measure step's noise_threshold" in (
        " ".join(table.output.split())
    )
    rec = runner.invoke(app, ["recommend", "e", "--db", str(db), "--top", "2"])
    assert rec.exit_code == 0, rec.output
    text = " ".join(rec.output.split())
    assert "#1 a/baseline top-1 92.00% 1.100 ms ~" in text
    assert (
        "caution: its latency is noisy: its 3 timing passes' medians differ by 27.3% of their median "
        "(more than the 10% threshold)" in text
    )
    assert text.count("caution: its latency is noisy") == 1  # b is steady
    assert "~ noisy latency" in text


def test_recommend_and_the_report_say_so(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    _build(db)
    results = list(_results(db).values())
    data = rows(results)
    chosen = recommend(data, Constraints(max_latency_ms=5.0))
    reasons = {c.row["name"]: c.reasons for c in chosen.fitting}
    assert any("latency is noisy" in r for r in reasons["a/baseline"])
    assert not any("noisy" in r for r in reasons["b/baseline"] + reasons["c/baseline"])
    page, _figures = render({"name": "e", "config": {"source": "e.yaml"}}, results)
    assert '<td class="noisy" title="noisy: 3 timing passes differ by 27.3% of their median' in page
    assert "1.100 ~</td>" in page
    assert "<b>~</b> after a latency: noisy (1 trial(s))" in page
    assert page.count("spread %") == 2  # the column header and its explanation in the legend
    steady, _ = render({"name": "e", "config": {}}, [r for r in results if not r.latency_noisy])
    assert "after a latency: noisy" not in steady and 'class="noisy"' not in steady
