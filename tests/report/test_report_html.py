"""The HTML report: self-contained, PNGs beside it, and checked in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from report_helpers import TRIALS, add_done, build_store, records
from typer.testing import CliRunner

from edgeslim.cli.app import app
from edgeslim.report import rows
from edgeslim.report.html import render
from edgeslim.report.plots import accuracy_vs_latency, accuracy_vs_rate, reduction_vs_rate

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def _chromium() -> str | None:
    found = next((p for p in CHROMIUM_PATHS if Path(p).exists()), None)
    return found or shutil.which("chromium") or shutil.which("chromium-browser")


def test_plots_are_functions_of_the_records(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    build_store(db)
    data = rows(records(db)[1])
    _fig, series = accuracy_vs_rate(data)
    by_name = {s.name: [(p.x, p.y) for p in s.points] for s in series}
    assert by_name == {
        "a l1": [(0.0, 91.0), (0.2, 90.5), (0.4, 89.0), (0.6, 84.0)],
        "b l1": [(0.0, 93.0), (0.2, 92.6), (0.4, 91.9)],
    }
    _fig, reduction = reduction_vs_rate(data)
    assert [round(p.y, 3) for p in reduction[0].points] == [0.0, 0.3, 0.55, 0.75]
    _fig, scatter = accuracy_vs_latency(data)
    front = next(s for s in scatter if s.name == "Pareto front")
    assert [p.label for p in front.points] == [
        "a/static bits=8",
        "a/baseline",
        "b/l1 ratio=0.4",
        "b/l1 ratio=0.2",
        "b/baseline",
    ]
    assert sum(len(s.points) for s in scatter if s.family != "pareto") == len(TRIALS)
    assert render(*records(db))[0] == render(*records(db))[0]  # same records, same page


def test_report_files_are_self_contained(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    build_store(db)
    out = tmp_path / "out" / "rep.html"
    result = CliRunner().invoke(app, ["report", "hand", "--db", str(db), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    files = json.loads(result.stdout)
    assert files["html"] == str(out) and (files["trials"], files["done"], files["failed"]) == (10, 8, 1)
    for name in ("accuracy_vs_rate", "reduction_vs_rate", "accuracy_vs_latency", "accuracy_vs_size"):
        png = out.parent / f"rep.{name}.png"
        assert files["pngs"][name] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = out.read_text()
    assert page.count("<svg") == 4 and "<img" not in page
    for remote in ('src="', 'href="http', "url(http", "<link", "@import", "<metadata"):
        assert remote not in page
    assert "TrainingError: the loss is nan at epoch 1" in page


def test_report_in_headless_chromium(tmp_path: Path) -> None:
    browser_path = _chromium()
    required = os.environ.get("EDGESLIM_REQUIRE_BROWSER") == "1"  # CI sets it: no silent skip there
    if browser_path is None:
        if required:
            pytest.fail(
                "EDGESLIM_REQUIRE_BROWSER=1 but no chromium is installed (apt-get install -y chromium)"
            )
        pytest.skip("no chromium installed (CI: apt-get install -y chromium)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    db = tmp_path / "s.db"
    build_store(db)
    out = tmp_path / "report.html"
    assert CliRunner().invoke(app, ["report", "hand", "--db", str(db), "--out", str(out)]).exit_code == 0
    messages: list[str] = []
    requests: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.on(
                "console",
                lambda m: messages.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None,
            )
            page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(out.as_uri())
            page.wait_for_selector("body[data-ready=true]", timeout=10_000)
            plots = page.eval_on_selector_all(
                "figure.plot svg",
                "els => els.map(e => { const b = e.getBoundingClientRect();"
                " return [b.width, b.height, e.querySelectorAll('use > title').length]; })",
            )
            titles = page.eval_on_selector_all(
                "figure.plot svg use > title", "els => els.map(e => e.textContent)"
            )
            before = page.eval_on_selector_all(
                "#trials tbody tr td:first-child", "els => els.map(e => e.textContent)"
            )
            page.click("#trials th:nth-child(7)")  # top-1 %
            after = page.eval_on_selector_all(
                "#trials tbody tr td:nth-child(7)", "els => els.map(e => e.textContent)"
            )
        finally:
            browser.close()
    assert messages == []
    assert [u for u in requests if not u.startswith("file://")] == []  # works offline
    assert len(plots) == 4
    for width, height, marks in plots:
        assert width > 300 and height > 150 and marks > 0
    # every point got its tooltip. Rate plots: 7 pruning points incl. baselines; scatter plots: 8
    # trials + the circled Pareto points (5 for latency, 6 for size)
    assert [int(m) for _w, _h, m in plots] == [7, 7, 13, 14]
    assert "a/static bits=8: 90.80% at 0.900 ms" in titles
    assert before[0] == "a/baseline"
    numbers = [float(v) for v in after if v != "-"]
    assert numbers == sorted(numbers) and after[-2:] == ["-", "-"]


def test_simulated_accuracy_and_runtime_failures_are_labelled(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    build_store(db)
    common = {"model": "a", "runtime": "onnxruntime", "latency_batch_size": 1, "top1_drop": -1.0}
    add_done(
        db,
        "a/qat bits=4",
        {**common, "family": "quantize", "method": "qat", "bits": 4, "top1": 95.0, "simulated": True,
         "latency_ms": 0.8, "size_bytes": 150_000},
    )  # fmt: skip
    add_done(
        db,
        "a/l1 ratio=0.1",
        {**common, "family": "prune", "method": "l1", "rate": 0.1, "top1": 94.0, "size_bytes": 900_000,
         "runtime_errors": {"onnxruntime": "parity FAILED: max |diff| 3.5"}},
    )  # fmt: skip
    page, _figures = render(*records(db))
    sim_cell = (
        '<td class="sim" title="fake-quantized simulation in torch: this model could not be deployed" '
        'data-v="95.0">95.00 simulated</td>'
    )
    assert page.count(sim_cell) == 1 and page.count('class="sim"') == 1
    found = re.search(r'<script type="application/json" id="point-labels">(.*?)</script>', page)
    assert found is not None
    labels = [label for group in json.loads(found.group(1)).values() for label in group]
    assert "a/qat bits=4: 95.00% (simulated) at 0.800 ms" in labels
    assert "a/qat bits=4: 95.00% (simulated) at 0.150 MB" in labels
    assert "a/static bits=8: 90.80% at 0.900 ms" in labels  # deployed int8: no label
    assert '<td class="err" data-v="onnxruntime: parity FAILED: max |diff| 3.5">' in page
    text = " ".join(page.split())
    assert "int8 models are measured on their deployed runtime" not in text
    assert "marked <i>simulated</i> (1 trial(s) here)" in text
    assert "process resident memory during inference" not in text
    assert "peak resident memory of a fresh process that loads the artifact" in text
