"""The sweep report: one self-contained HTML file (inline SVG plots, inline CSS and a little JS; no
network access needed) plus a PNG of each plot beside it.

The page holds the four plots of :mod:`edgeslim.report.plots` (hover a point for its trial), a
sortable table of every trial (click a column header) with failed trials and their errors, and
where the numbers were measured (environment fingerprint, runtime, workers). Accuracy that comes
from a fake-quantized simulation rather than a deployed artifact is marked "simulated" in the
table and the tooltips.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import html
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from edgeslim.engine.records import TrialResult
from edgeslim.engine.searches import SearchRecord
from edgeslim.io import atomic_write, atomic_write_text
from edgeslim.report.plots import PLOTS, Series, pareto_front, plane_latency, rows, search_plane
from edgeslim.report.recommend import Constraints, recommend

_RC: dict[str, Any] = {"svg.fonttype": "none", "svg.hashsalt": "edgeslim", "font.size": 9}


@dataclasses.dataclass(frozen=True)
class ReportFiles:
    html: Path
    pngs: dict[str, Path]
    trials: int
    done: int
    failed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "html": str(self.html),
            "pngs": {k: str(v) for k, v in self.pngs.items()},
            "trials": self.trials,
            "done": self.done,
            "failed": self.failed,
        }


def _svg(fig: Figure, prefix: str) -> str:
    """The figure as inline SVG with every id prefixed, so several plots can share one page."""
    buffer = io.StringIO()
    with matplotlib.rc_context(_RC):  # type: ignore[arg-type]  # typed keys; ours are valid
        fig.savefig(buffer, format="svg", metadata={"Date": None})  # same records, same page
    text = buffer.getvalue()
    text = text[text.index("<svg") :]  # drop the XML prolog and doctype: invalid inside HTML
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)
    ids = set(re.findall(r'\bid="([^"]+)"', text))
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', text)
    text = re.sub(
        r"(url\(#|xlink:href=\"#|href=\"#)([^\")]+)",
        lambda m: f"{m.group(1)}{prefix}-{m.group(2)}" if m.group(2) in ids else m.group(0),
        text,
    )
    text = re.sub(r'<svg ([^>]*?)width="[^"]+" height="[^"]+"', r'<svg \1width="100%"', text, count=1)
    return text


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    with matplotlib.rc_context(_RC):  # type: ignore[arg-type]  # typed keys; ours are valid
        fig.savefig(buffer, format="png", dpi=150)
    return buffer.getvalue()


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "pct":
        return f"{100 * value:.1f}"
    if kind == "mb":
        return f"{value / 1e6:.3f}"
    if kind == "x":
        return f"{value:.2f}x"
    if kind.startswith("f"):
        return f"{value:.{int(kind[1:])}f}"
    return str(value)


#: (header, row key, format, tooltip)
COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("trial", "name", "s", "model/method and grid point"),
    ("model", "model", "s", ""),
    ("method", "method", "s", ""),
    ("rate %", "rate", "pct", "share of filters removed (or sparsity)"),
    ("bits", "bits", "s", "quantization weight bits"),
    ("status", "status", "s", ""),
    (
        "top-1 %",
        "top1",
        "f2",
        "accuracy on the evaluation split; quantized models: of the deployed artifact, or the fake-quantized "
        "simulation in torch (marked 'simulated') where it could not be deployed",
    ),
    ("drop pp", "top1_drop", "f2", "percentage points below the model's baseline"),
    ("params", "params", "int", ""),
    ("param red. %", "param_reduction_ratio", "pct", "share of non-zero parameters removed"),
    ("MACs", "macs", "int", "multiply-accumulates per image"),
    ("MAC red.", "mac_reduction", "x", "baseline MACs / trial MACs"),
    ("size MB", "size_bytes", "mb", "artifact on disk (10^6 bytes)"),
    (
        "latency ms",
        "latency_ms",
        "f3",
        "median of the timing passes' medians, primary runtime, smallest batch size; ~ marks a noisy one",
    ),
    (
        "spread %",
        "latency_spread",
        "pct",
        "how far the latency's timing passes disagree: (max - min) / median of the pass medians; above "
        "the measure step's noise threshold the latency is noisy (~)",
    ),
    ("runtime", "runtime", "s", ""),
    (
        "peak RSS MB",
        "peak_rss_bytes",
        "mb",
        "peak resident memory of a fresh process that loads the artifact on the primary runtime and runs "
        "one batch of the largest batch size (the runtime library included)",
    ),
    ("ft epochs", "finetune_epochs", "s", "fine-tuning epochs"),
    ("time s", "seconds", "f1", "wall time of the trial"),
    ("Pareto", "pareto", "s", "on the accuracy-vs-latency (L) / accuracy-vs-size (S) front"),
    ("error", "error", "s", ""),
)

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1280px;
color:#1b1f24;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#57606a}.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:18px}
figure{margin:0;border:1px solid #d0d7de;border-radius:8px;padding:8px;background:#fff}
figcaption{font-size:12px;color:#57606a;padding:4px 6px}
table{border-collapse:collapse;font-size:12.5px;width:100%}th,td{border-bottom:1px solid #eaeef2;
padding:4px 6px;text-align:right;white-space:nowrap}th{position:sticky;top:0;background:#f6f8fa;cursor:pointer;
user-select:none}th.sorted-asc::after{content:" \\25B2"}th.sorted-desc::after{content:" \\25BC"}
th{white-space:normal;vertical-align:bottom}td.s{white-space:normal;overflow-wrap:anywhere;min-width:8em}
td.s,th.s{text-align:left}.rec{border:2px solid #1a7f37;border-radius:8px;padding:8px 14px;background:#f0fff4}
.rec.none{border-color:#bf8700;background:#fff8c5}
tr.failed td{color:#a40e26}td.err{white-space:normal;max-width:420px;text-align:left}
td.sim{color:#8250df;font-style:italic}td.noisy{color:#9a6700}
.tablewrap{overflow:auto;max-height:70vh;border:1px solid #d0d7de;border-radius:8px}
code{background:#f6f8fa;padding:1px 4px;border-radius:4px}ul{margin:4px 0}
"""

_JS = """
(function(){
  var labels = JSON.parse(document.getElementById('point-labels').textContent);
  Object.keys(labels).forEach(function(id){
    var group = document.getElementById(id);
    if(!group){return;}
    var marks = group.querySelectorAll('use, path');
    var names = labels[id];
    var uses = group.querySelectorAll('use');
    var targets = uses.length === names.length ? uses : marks;
    for(var i = 0; i < targets.length && i < names.length; i++){
      var t = document.createElementNS('http://www.w3.org/2000/svg', 'title');
      t.textContent = names[i];
      targets[i].appendChild(t);
      targets[i].setAttribute('data-trial', names[i]);
    }
  });
  var table = document.getElementById('trials');
  var heads = table.tHead.rows[0].cells;
  function value(cell){
    var v = cell.getAttribute('data-v');
    if(v === null || v === ''){return null;}
    var n = Number(v);
    return isNaN(n) ? v.toLowerCase() : n;
  }
  function sortBy(col){
    var th = heads[col];
    var asc = !th.classList.contains('sorted-asc');
    for(var i = 0; i < heads.length; i++){heads[i].classList.remove('sorted-asc', 'sorted-desc');}
    th.classList.add(asc ? 'sorted-asc' : 'sorted-desc');
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function(a, b){
      var x = value(a.cells[col]), y = value(b.cells[col]);
      if(x === null && y === null){return 0;}
      if(x === null){return 1;}
      if(y === null){return -1;}
      var r = x < y ? -1 : (x > y ? 1 : 0);
      return asc ? r : -r;
    });
    rows.forEach(function(r){body.appendChild(r);});
  }
  for(var i = 0; i < heads.length; i++){
    (function(col){heads[col].addEventListener('click', function(){sortBy(col);});})(i);
  }
  document.body.setAttribute('data-ready', 'true');
})();
"""


def _pareto_flags(data: Sequence[dict[str, Any]]) -> dict[str, str]:
    done = [r for r in data if r["status"] == "done" and r["top1"] is not None]
    flags: dict[str, str] = {}
    for metric, letter in (("latency_ms", "L"), ("size_bytes", "S")):
        have = [r for r in done if r[metric] is not None]
        for i in pareto_front([(r[metric], r["top1"]) for r in have]):
            flags[have[i]["key"]] = flags.get(have[i]["key"], "") + letter
    return flags


def _noisy_note(row: dict[str, Any]) -> str:
    spread, passes = row.get("latency_spread"), row.get("latency_passes")
    threshold = row.get("noise_threshold")
    limit = f" (threshold {100 * threshold:g}%)" if threshold is not None else ""
    what = (
        f"{passes} timing passes differ by {100 * spread:.1f}% of their median"
        if spread is not None
        else "its timing passes disagree"
    )
    return f"noisy: {what}{limit}; re-measure before relying on it"


def _noisy_legend(data: Sequence[dict[str, Any]], noun: str = "trial(s)") -> str:
    noisy = sum(bool(r.get("latency_noisy")) and r.get("latency_ms") is not None for r in data)
    if not noisy:
        return ""
    return (
        f" <b>~</b> after a latency: noisy ({noisy} {noun}): its timing passes differed by more than the "
        "noise threshold (spread % = (max - min) / median of the pass medians or ratios), so the "
        "machine was busy or unsteady while it was timed; re-measure such a model before relying on it."
    )


def _head(columns: Sequence[tuple[str, str, str, str]]) -> str:
    """A sortable table's header cells, each with its tooltip."""
    return "".join(
        f'<th class="{"s" if f == "s" else ""}" title="{html.escape(tip)}">{html.escape(h)}</th>'
        for h, _k, f, tip in columns
    )


def _table(data: Sequence[dict[str, Any]]) -> str:
    flags = _pareto_flags(data)
    head = _head(COLUMNS)
    body = []
    for r in data:
        problems = "; ".join(f"{rt}: {why}" for rt, why in (r.get("runtime_errors") or {}).items())
        row = {**r, "pareto": flags.get(r["key"], ""), "error": r.get("error") or problems or None}
        cells = []
        for _h, key, kind, _tip in COLUMNS:
            value = row.get(key)
            sort_value = "" if value is None else str(value)
            css = "err" if key == "error" else ("s" if kind == "s" else "")
            text = _fmt(value, kind)
            title = ""
            if key == "top1" and r.get("simulated") and value is not None:
                css, text = "sim", f"{text} simulated"
                title = ' title="fake-quantized simulation in torch: this model could not be deployed"'
            if key == "latency_ms" and r.get("latency_noisy") and value is not None:
                css, text = "noisy", f"{text} ~"
                title = f' title="{html.escape(_noisy_note(r))}"'
            cells.append(
                f'<td class="{css}"{title} data-v="{html.escape(sort_value)}">{html.escape(text)}</td>'
            )
        cls = ' class="failed"' if r["status"] == "failed" else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f'<table id="trials"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _environment(results: Sequence[TrialResult]) -> str:
    envs: dict[str, dict[str, Any]] = {}
    for r in results:
        env = r.env or {}
        if env.get("hash"):
            envs.setdefault(env["hash"], env)
    if not envs:
        return "<p>No finished trial recorded an environment.</p>"
    items = []
    for h, env in envs.items():
        items.append(
            f"<li><code>{html.escape(h)}</code>: {html.escape(str(env.get('cpu_model')))}, "
            f"{env.get('logical_cores')} logical cores, torch {html.escape(str(env.get('torch_version')))} "
            f"with {env.get('worker_threads', env.get('torch_threads'))} thread(s) per trial, "
            f"{env.get('sweep_workers', 1)} trial(s) in parallel</li>"
        )
    note = ""
    if any((e.get("sweep_workers") or 1) > 1 and not e.get("exclusive") for e in envs.values()):
        note = (
            "<p>Trials ran in parallel, so latencies were measured while other trials used the machine: "
            "compare them with that in mind, and confirm a chosen model with <code>edgeslim bench</code>.</p>"
        )
    elif any((e.get("sweep_workers") or 1) > 1 for e in envs.values()):
        note = (
            "<p>Trials trained in parallel, but every measurement ran in an exclusive slot (no other step "
            "of the sweep running), so latencies are comparable.</p>"
        )
    return f"<ul>{''.join(items)}</ul>{note}"


def _recommendation(data: Sequence[dict[str, Any]], constraints: Constraints | None) -> str:
    """The section at the top of the page: the trials that fit the budget, or how close the nearest come."""
    if constraints is None or constraints.to_dict() == Constraints().to_dict():
        return (
            '<p class="meta">No budget given: <code>edgeslim report EXP --max-latency-ms 0.5 '
            "--max-size-mb 0.8 --max-accuracy-drop 2</code> puts the trials that fit it here.</p>"
        )
    rec = recommend(data, constraints)
    limits = ", ".join(
        [
            f"{what} &le; {value:g}{unit}"
            for value, what, unit in (
                (constraints.max_latency_ms, "latency", " ms"),
                (constraints.max_size_mb, "size", " MB"),
                (constraints.max_accuracy_drop, "top-1 drop", " points"),
            )
            if value is not None
        ]
        + (
            [f"speed-up over the baseline &ge; {constraints.min_speedup:g}x"]
            if constraints.min_speedup
            else []
        )
    )
    if rec.found:
        items = "".join(
            f"<li><b>{html.escape(str(c.row['name']))}</b>: {html.escape('; '.join(c.reasons))}</li>"
            for c in rec.fitting
        )
        return (
            f'<div class="rec"><h2>Recommendation</h2><p>For {limits}: {rec.num_fitting} of '
            f"{rec.num_candidates} finished trials fit; the best first:</p><ol>{items}</ol></div>"
        )
    items = "".join(
        f"<li><b>{html.escape(str(c.row['name']))}</b> misses: {html.escape('; '.join(c.reasons))}</li>"
        for c in rec.near_misses
    )
    return (
        f'<div class="rec none"><h2>Recommendation</h2><p>For {limits}: none of the '
        f"{rec.num_candidates} finished trials fits. The nearest:</p><ul>{items}</ul></div>"
    )


def render(
    experiment: dict[str, Any],
    results: Sequence[TrialResult],
    *,
    png_stem: str = "report",
    constraints: Constraints | None = None,
) -> tuple[str, dict[str, Figure]]:
    """The HTML page and the figures (for PNG export, named ``<png_stem>.<plot>.png``); with
    ``constraints`` (a latency/size/accuracy budget) the recommendation opens the page."""
    data = rows(results)
    records = data
    simulated = {r["name"] for r in data if r["simulated"]}
    figures: dict[str, Figure] = {}
    labels: dict[str, list[str]] = {}
    sections = []
    for i, (name, (title, build)) in enumerate(PLOTS.items()):
        fig, series = build(data)
        figures[name] = fig
        prefix = f"p{i}"
        for j, s in enumerate(series):
            labels[f"{prefix}-pts-{j}"] = [
                _point_label(p.label, p.x, p.y, name, simulated=p.label in simulated) for p in s.points
            ]
        sections.append(
            f'<figure id="plot-{name}" class="plot">{_svg(fig, prefix)}'
            f"<figcaption>{html.escape(title)} (PNG: <code>{html.escape(png_stem)}.{html.escape(name)}.png"
            "</code>)</figcaption></figure>"
        )
    counts = {s: sum(r["status"] == s for r in records) for s in ("done", "failed", "queued", "running")}
    failed = [r for r in records if r["status"] == "failed"]
    failed_html = (
        "<ul>"
        + "".join(
            f"<li><b>{html.escape(r['name'])}</b>: {html.escape(r.get('error') or '')}</li>" for r in failed
        )
        + "</ul>"
        if failed
        else "<p>None.</p>"
    )
    updated = datetime.datetime.fromtimestamp(experiment.get("updated_at", 0)).strftime("%Y-%m-%d %H:%M")
    source = (experiment.get("config") or {}).get("source", "")
    labels_json = json.dumps(labels).replace("</", "<\\/")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgeslim sweep: {html.escape(experiment["name"])}</title>
<style>{_CSS}</style></head>
<body>
<h1>Sweep <code>{html.escape(experiment["name"])}</code></h1>
<p class="meta">{len(records)} trials: {counts["done"]} done, {counts["failed"]} failed,
{counts["queued"] + counts["running"]} not run yet. Experiment file <code>{html.escape(str(source))}</code>,
last updated {updated}. Accuracy is top-1 on the evaluation split. A quantized model's accuracy is that
of its deployed artifact (int8 on ONNX Runtime, or torch's dynamic int8 kernels); where it could not be
deployed, the fake-quantized simulation in torch is shown instead and marked <i>simulated</i>
({len(simulated)} trial(s) here). Sizes are the artifact files on disk (MB = 10<sup>6</sup> bytes); peak
memory is that of a fresh process loading the artifact on the primary runtime and running one batch.</p>
{_recommendation(data, constraints)}
<h2>Plots</h2>
<div class="grid">{"".join(sections)}</div>
<h2>All trials</h2>
<p class="meta">Click a column header to sort. Pareto: L = on the accuracy-vs-latency front, S = on the
accuracy-vs-size front.{_noisy_legend(data)}</p>
<div class="tablewrap">{_table(data)}</div>
<h2>Failed trials</h2>
{failed_html}
<h2>Where this was measured</h2>
{_environment(results)}
<script type="application/json" id="point-labels">{labels_json}</script>
<script>{_JS}</script>
</body></html>
"""
    return page, figures


def _point_label(name: str, x: float, y: float, plot: str, *, simulated: bool = False) -> str:
    acc = f"{y:.2f}% (simulated)" if simulated else f"{y:.2f}%"
    if plot == "accuracy_vs_latency":
        return f"{name}: {acc} at {x:.3f} ms"
    if plot == "accuracy_vs_size":
        return f"{name}: {acc} at {x:.3f} MB"
    if plot == "reduction_vs_rate":
        return f"{name}: {y:.1f}% fewer parameters at rate {x:.0f}%"
    return f"{name}: {acc} at rate {x:.0f}%"


def _write_bytes(fh: Any, *, data: bytes) -> None:
    fh.write(data)


def write_report(
    experiment: dict[str, Any],
    results: Sequence[TrialResult],
    out: str | Path,
    *,
    constraints: Constraints | None = None,
) -> ReportFiles:
    """Write ``out`` (HTML) and ``<out stem>.<plot>.png`` beside it; return their paths. With
    ``constraints`` the page opens with the trials that fit that budget."""
    target = _report_path(out)
    page, figures = render(experiment, results, png_stem=target.stem, constraints=constraints)
    pngs = _write_page(target, page, figures)
    return ReportFiles(
        html=target,
        pngs=pngs,
        trials=len(results),
        done=sum(r.status == "done" for r in results),
        failed=sum(r.status == "failed" for r in results),
    )


#: (header, row key, format, tooltip) of a search's candidate table
SEARCH_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("candidate", "label", "s", "per-stage kept channels (compress) or depths/widths (nas)"),
    ("role", "role", "s", "candidate, reference (the baseline it is compared with) or chosen"),
    ("proxy top-1 %", "top1_proxy", "f2", "top-1 on held-out images with BatchNorm re-estimated"),
    ("predicted ms", "latency_ms_predicted", "f3", "the latency predictor (device profile, calibrated)"),
    ("measured ms", "latency_ms", "f3", "timed end to end on the runtime (finalists, references, chosen)"),
    (
        "spread %",
        "latency_spread",
        "pct",
        "of the measured latency's passes, alternating with the uncompressed net: over 10% is noisy (~)",
    ),
    ("top-1 %", "top1", "f2", "after fine-tuning, on the test split (the chosen one)"),
    ("params", "params", "int", ""),
    ("MACs", "macs", "int", "multiply-accumulates per image"),
    ("front", "front", "s", "on the proxy-accuracy-vs-latency front"),
)

#: summary fields shown above a search's plot: (label, key, format)
_SEARCH_SUMMARY: tuple[tuple[str, str, str], ...] = (
    ("strategy", "strategy", "s"),
    ("runtime", "runtime", "s"),
    ("batch size", "batch_size", "s"),
    ("latency budget (ms)", "max_latency_ms", "f3"),
    ("measured latency (ms)", "latency_ms", "f3"),
    ("predicted latency (ms)", "latency_ms_predicted", "f3"),
    ("uncompressed / largest net (ms)", "latency_ms_dense", "f3"),
    ("uncompressed / largest net (ms)", "latency_ms_largest", "f3"),
    ("speed-up", "speedup", "x"),
    ("top-1 (%)", "top1", "f2"),
    ("top-1 before (%)", "top1_baseline", "f2"),
    ("size (MB)", "size_bytes", "mb"),
    ("params", "params", "int"),
    ("MACs", "macs", "int"),
    ("candidates scored", "trials", "int"),
    ("candidates scored", "candidates_evaluated", "int"),
    ("minutes", "budget_minutes_used", "f1"),
    ("minutes", "minutes", "f1"),
)


def _fits_text(fits: Any) -> str:
    if isinstance(fits, dict):
        return ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in fits.items()) or "-"
    return "-" if fits is None else ("yes" if fits else "NO")


def _fact(label: str, value: str) -> str:
    return f"<tr><th class='s'>{html.escape(label)}</th><td class='s'>{html.escape(value)}</td></tr>"


def _sort_value(value: Any) -> str:
    return "" if value is None else str(value)


def _search_comparison(data: Sequence[dict[str, Any]]) -> str:
    """The chosen candidate against the best reference no slower than it (same proxy, same clock)."""
    chosen = next((r for r in data if r["role"] == "chosen" and r.get("top1_proxy") is not None), None)
    references = [r for r in data if r["role"] == "reference" and r.get("top1_proxy") is not None]
    if chosen is None or not references:
        return ""
    at = plane_latency(chosen)
    within = [r for r in references if plane_latency(r) <= at]
    if not within:
        fastest = min(references, key=plane_latency)
        return (
            f"<p>Every reference is slower than the chosen candidate ({at:.3f} ms); the fastest, "
            f"<b>{html.escape(fastest['label'])}</b>, takes {plane_latency(fastest):.3f} ms.</p>"
        )
    best = max(within, key=lambda r: r["top1_proxy"])
    gain = chosen["top1_proxy"] - best["top1_proxy"]
    return (
        f"<p>At its latency ({at:.3f} ms) the chosen candidate scores {chosen['top1_proxy']:.2f}% on the "
        f"proxy; the best reference no slower, <b>{html.escape(best['label'])}</b> ({plane_latency(best):.3f} ms), "
        f"scores {best['top1_proxy']:.2f}%: <b>{gain:+.2f} points</b> (before any fine-tuning).</p>"
    )


def render_search(search: SearchRecord, *, png_stem: str = "report") -> tuple[str, dict[str, Figure]]:
    """The HTML page of a recorded search (``edgeslim compress`` / ``nas search``) and its plot."""
    exp = search.experiment
    summary = search.summary
    data = [c.row() for c in search.candidates]
    scored = [r for r in data if r.get("top1_proxy") is not None]
    front = {scored[i]["label"] for i in pareto_front([(plane_latency(r), r["top1_proxy"]) for r in scored])}
    what = "Compression search" if exp.kind == "compress" else "Architecture search"
    chosen = search.chosen
    budget = summary.get("max_latency_ms")
    fig = search_plane(
        data,
        float(budget if budget is not None else max((plane_latency(r) for r in data), default=1.0)),
        chosen=chosen.label if chosen is not None else None,
        title=f"{what}: every scored candidate",
        reference_label="uniform-ratio plan" if exp.kind == "compress" else "hand-designed",
        noun="plan" if exp.kind == "compress" else "subnet",
    )
    shown: set[str] = set()
    facts = []
    for label, key, kind in _SEARCH_SUMMARY:
        if summary.get(key) is None or label in shown:
            continue
        shown.add(label)
        facts.append(_fact(label, _fmt(summary[key], kind)))
    facts.append(_fact("fits the budget", _fits_text(summary.get("fits"))))
    if chosen is not None:
        facts.insert(0, _fact("chosen", chosen.label))
    head = _head(SEARCH_COLUMNS)
    body = []
    for r in data:
        row = {**r, "front": "yes" if r["label"] in front and r.get("top1_proxy") is not None else ""}
        cells = "".join(
            f'<td class="{"s" if kind == "s" else ""}" data-v="{html.escape(_sort_value(row.get(key)))}">'
            f"{html.escape(_fmt(row.get(key), kind))}"
            + (" ~" if key == "latency_ms" and row.get("latency_noisy") and row.get(key) is not None else "")
            + "</td>"
            for _h, key, kind, _t in SEARCH_COLUMNS
        )
        body.append(f"<tr>{cells}</tr>")
    notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in summary.get("notes") or [])
    updated = datetime.datetime.fromtimestamp(exp.updated_at).strftime("%Y-%m-%d %H:%M")
    baselines = (
        "uniform-ratio plans of the same model, scored the same way"
        if exp.kind == "compress"
        else "the hand-designed nets of the space"
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgeslim {exp.kind}: {html.escape(exp.name)}</title>
<style>{_CSS}</style></head>
<body>
<h1>{what} <code>{html.escape(exp.name)}</code></h1>
<p class="meta">{len(data)} candidates recorded {updated}. The proxy is top-1 on held-out training images
with BatchNorm re-estimated, before fine-tuning; latencies are predicted from the device profile, and
measured end to end (alternating with the uncompressed net) for the finalists, the references and the
chosen one. References (stars) are the baselines: {baselines}.</p>
<h2>Result</h2>
<table class="facts">{"".join(facts)}</table>
{_search_comparison(data)}
{f"<ul>{notes}</ul>" if notes else ""}
<h2>Accuracy against latency</h2>
<figure id="plot-search" class="plot">{_svg(fig, "p0")}<figcaption>every scored candidate (PNG:
<code>{html.escape(png_stem)}.search.png</code>)</figcaption></figure>
<h2>All candidates</h2>
<p class="meta">Click a column header to sort.{_noisy_legend(data, "candidate(s)")}</p>
<div class="tablewrap"><table id="trials"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>
<script type="application/json" id="point-labels">{{}}</script>
<script>{_JS}</script>
</body></html>
"""
    return page, {"search": fig}


def _report_path(out: str | Path) -> Path:
    target = Path(out)
    if target.suffix.lower() not in (".html", ".htm"):
        target = target.with_suffix(".html") if target.suffix else target.with_name(target.name + ".html")
    return target


def _write_page(target: Path, page: str, figures: dict[str, Figure]) -> dict[str, Path]:
    pngs: dict[str, Path] = {}
    for name, fig in figures.items():
        png = target.with_name(f"{target.stem}.{name}.png")
        atomic_write(png, functools.partial(_write_bytes, data=_png(fig)))
        pngs[name] = png
    atomic_write_text(target, page)
    return pngs


def write_search_report(search: SearchRecord, out: str | Path) -> ReportFiles:
    """Write a recorded search's page to ``out`` (HTML) and ``<out stem>.search.png`` beside it."""
    target = _report_path(out)
    page, figures = render_search(search, png_stem=target.stem)
    pngs = _write_page(target, page, figures)
    return ReportFiles(
        html=target, pngs=pngs, trials=len(search.candidates), done=len(search.candidates), failed=0
    )


__all__ = [
    "COLUMNS",
    "SEARCH_COLUMNS",
    "ReportFiles",
    "Series",
    "render",
    "render_search",
    "write_report",
    "write_search_report",
]
