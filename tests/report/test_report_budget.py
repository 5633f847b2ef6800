"""Issue 17: the report opens with the recommendation for a budget; points are labelled per method."""

from __future__ import annotations

from pathlib import Path

from report_helpers import build_store, records
from typer.testing import CliRunner

from edgeslim.cli.app import app
from edgeslim.report.html import render
from edgeslim.report.recommend import Constraints


def test_recommendation_opens_the_page(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    build_store(db)
    page, figures = render(*records(db), constraints=Constraints(max_accuracy_drop=50.0))
    assert page.index("<h2>Recommendation</h2>") < page.index("<h2>Plots</h2>")
    assert "top-1 drop &le; 50 points" in page
    none_fit = render(*records(db), constraints=Constraints(max_latency_ms=1e-6))[0]
    assert 'class="rec none"' in none_fit and "none of the" in none_fit
    plain = render(*records(db))[0]
    assert "No budget given" in plain
    texts = [t.get_text() for t in figures["accuracy_vs_latency"].axes[0].texts]
    assert "baseline" in texts and any(t.endswith("%") for t in texts)  # labelled points


def test_report_cli_takes_a_budget(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    build_store(db)
    out = tmp_path / "r.html"
    result = CliRunner().invoke(
        app, ["report", "hand", "--db", str(db), "--out", str(out), "--max-latency-ms", "100"]
    )
    assert result.exit_code == 0, result.output
    assert "<h2>Recommendation</h2>" in out.read_text()
    bad = CliRunner().invoke(
        app, ["report", "hand", "--db", str(db), "--out", str(out), "--max-size-mb", "0"]
    )
    assert bad.exit_code == 2 and "--max-size-mb" in bad.output
