"""The page of a recorded search (``edgeslim report`` on a compress or nas experiment)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeslim.cli.app import app
from edgeslim.engine.searches import SearchCandidate, load_search, record_search
from edgeslim.engine.store import Store
from edgeslim.errors import ConfigError
from edgeslim.report import render_search
from edgeslim.sweep import api as sweep_api

CANDIDATES = [
    SearchCandidate("uniform 0%", "reference", 90.0, 2.0, params=100, macs=1000),
    SearchCandidate("uniform 50%", "reference", 70.0, 1.0, params=50, macs=500),
    SearchCandidate("12/24", "candidate", 85.0, 1.4, params=75, macs=750),
    SearchCandidate("14/20", "candidate", 80.0, 1.5, params=80, macs=800),  # dominated by 12/24
    SearchCandidate("10/20", "chosen", 82.0, 1.2, 1.25, 62, 620, top1=88.5, latency_spread=0.125),
]
SUMMARY = {
    "strategy": "greedy",
    "runtime": "ort",
    "batch_size": 1,
    "max_latency_ms": 1.3,
    "latency_ms": 1.25,
    "top1": 88.5,
    "top1_baseline": 91.0,
    "fits": {"latency": True, "size": False},
    "notes": ["round_to 4 (measured on ort)"],
}


def _db(tmp_path: Path, kind: str = "compress") -> Path:
    db = tmp_path / "s.db"
    with Store.open(db) as store:
        record_search(store, "c1", kind, SUMMARY, CANDIDATES)  # type: ignore[arg-type]
    return db


def _cells(page: str) -> list[list[str]]:
    body = page[page.index('<table id="trials">') :]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body)[1:]]


def test_the_page_compares_the_chosen_plan_with_the_uniform_ones(tmp_path: Path) -> None:
    with Store.open(_db(tmp_path)) as store:
        exp = store.get_experiment("c1")
        assert exp is not None
        page, figures = render_search(load_search(store, exp), png_stem="c1")
    assert list(figures) == ["search"]
    assert "<h1>Compression search <code>c1</code></h1>" in page
    assert page.count("<svg") == 1 and "uniform-ratio plan" in page
    # the best reference no slower than the chosen one (1.25 ms measured) is uniform 50% at 70.00%
    assert "<b>uniform 50%</b> (1.000 ms)" in page and "<b>+12.00 points</b>" in page
    rows = {r[0]: r for r in _cells(page)}
    assert list(rows) == ["uniform 0%", "uniform 50%", "12/24", "14/20", "10/20"]
    front = {label for label, r in rows.items() if r[-1] == "yes"}
    assert front == {"uniform 0%", "uniform 50%", "12/24", "10/20"}
    # the chosen one's passes spread 12.5%: over the 10% threshold, its latency is marked noisy
    assert rows["10/20"][1:7] == ["chosen", "82.00", "1.200", "1.250 ~", "12.5", "88.50"]
    assert rows["12/24"][4:6] == ["-", "-"] and "noisy (1 candidate(s))" in page
    assert "latency yes, size NO" in page and "round_to 4 (measured on ort)" in page


def test_report_task_writes_a_search_page_and_refuses_budgets(tmp_path: Path) -> None:
    db = _db(tmp_path, "nas")
    files = sweep_api.report_task("c1", db=db, out=tmp_path / "r")
    assert files.html == tmp_path / "r.html" and files.trials == 5
    assert files.pngs["search"].read_bytes()[:4] == b"\x89PNG"
    assert "<h1>Architecture search" in files.html.read_text()
    with pytest.raises(ConfigError) as err:
        sweep_api.report_task("c1", db=db, out=tmp_path / "x.html", max_latency_ms=1.0)
    assert err.value.field == "report.constraints" and not (tmp_path / "x.html").exists()
    with pytest.raises(ConfigError, match="chose its model already"):
        sweep_api.recommend_task("c1", db=db, max_latency_ms=1.0)


def test_cli_report_draws_a_search(tmp_path: Path) -> None:
    db = _db(tmp_path)
    result = CliRunner().invoke(app, ["report", "c1", "--db", str(db), "--out", str(tmp_path / "c1.html")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c1.html").is_file() and (tmp_path / "c1.search.png").is_file()
    result = CliRunner().invoke(app, ["recommend", "c1", "--db", str(db), "--max-latency-ms", "1"])
    assert result.exit_code == 2 and "chose its model already" in result.output
    result = CliRunner().invoke(app, ["results", "c1", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "c1 (compress search): 5 candidates" in result.output
    assert "10/20" in result.output and "1.250 ms" in result.output and "88.50%" in result.output
    data = sweep_api.results_task("c1", db=db)
    assert [c["role"] for c in data["candidates"]] == ["reference"] * 2 + ["candidate"] * 2 + ["chosen"]
