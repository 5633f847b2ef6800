"""Plots of sweep results: pure functions from trial records to matplotlib figures.

Nothing here reads files or touches global pyplot state: each function takes the rows from
:func:`rows` (flattened store records) and returns a new :class:`matplotlib.figure.Figure`, so the
same records always give the same picture, and HTML and PNG come from one figure.

* :func:`accuracy_vs_rate` - top-1 against pruning rate, one line per model and method, starting
  at the model's baseline (rate 0);
* :func:`reduction_vs_rate` - parameter-reduction ratio against pruning rate;
* :func:`accuracy_vs_latency` / :func:`accuracy_vs_size` - every finished trial and baseline, with
  the Pareto front (nothing else is both more accurate and faster / smaller) marked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from matplotlib.figure import Figure

from edgeslim.engine.records import TrialResult

COLORS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
)
MARKERS = {"baseline": "*", "prune": "o", "quantize": "s", "recipe": "D"}
#: Markers for the methods of one plot, in order (the baseline keeps its star).
METHOD_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
METHOD_STYLES = ("-", "--", ":", "-.")


def rows(results: Sequence[TrialResult]) -> list[dict[str, Any]]:
    """One flat row per trial result (:meth:`TrialResult.row`), the input of every plot."""
    return [r.row() for r in results]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower-or-equal x and higher-or-equal y, one strictly.

    x is a cost (latency, size), y a benefit (accuracy). Returned in increasing x.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best_y = float("-inf")
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front


@dataclasses.dataclass(frozen=True)
class Point:
    """One plotted point and the trial it stands for (labels become tooltips in the HTML)."""

    x: float
    y: float
    label: str


@dataclasses.dataclass(frozen=True)
class Series:
    """Points drawn together: one model x method line, or one model's scatter of one family."""

    name: str
    model: str
    family: str
    points: tuple[Point, ...]


def _finished(data: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in data if r["status"] == "done" and r["top1"] is not None]


def _colors(data: Sequence[dict[str, Any]]) -> dict[str, str]:
    models = list(dict.fromkeys(r["model"] for r in data))
    return {m: COLORS[i % len(COLORS)] for i, m in enumerate(models)}


def _method_of(r: dict[str, Any]) -> str:
    """The method a trial row stands for: ``baseline``, ``l1``, ``static`` ... (its family when unnamed)."""
    if r["family"] == "baseline":
        return "baseline"
    return str(r.get("method") or r["family"])


def _short_label(r: dict[str, Any], method: str) -> str:
    """A point's label on the plot: the method and its rate or bits (``l1 50%``, ``static 8b``)."""
    if r["family"] == "baseline":
        return "baseline"
    if r.get("rate") is not None:
        return f"{method} {100 * float(r['rate']):.0f}%"
    if r.get("bits") is not None:
        return f"{method} {r['bits']}b"
    return method


def rate_series(data: Sequence[dict[str, Any]], metric: str) -> list[Series]:
    """Per model and pruning method: (rate, metric) sorted by rate, starting at the baseline (rate 0)."""
    done = _finished(data)
    baselines = {r["model"]: r for r in done if r["kind"] == "baseline"}
    groups: dict[tuple[str, str], list[Point]] = {}
    for r in done:
        if r["family"] != "prune" or r["rate"] is None or r[metric] is None:
            continue
        groups.setdefault((r["model"], r["method"]), []).append(
            Point(float(r["rate"]), float(r[metric]), r["name"])
        )
    series = []
    for (model, method), points in groups.items():
        base = baselines.get(model)
        if base is not None and base[metric] is not None:
            points.append(Point(0.0, float(base[metric]), base["name"]))
        points.sort(key=lambda p: p.x)
        series.append(Series(f"{model} {method}", model, "prune", tuple(points)))
    return series


def _rate_figure(
    series: list[Series], colors: dict[str, str], ylabel: str, title: str, percent: bool
) -> Figure:
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    methods = list(dict.fromkeys(s.name.split(" ", 1)[1] for s in series))
    for i, s in enumerate(series):
        style = METHOD_STYLES[methods.index(s.name.split(" ", 1)[1]) % len(METHOD_STYLES)]
        xs = [100 * p.x for p in s.points]
        ys = [100 * p.y if percent else p.y for p in s.points]
        ax.plot(xs, ys, linestyle=style, color=colors[s.model], linewidth=1.6, label=s.name)
        ax.scatter(xs, ys, color=colors[s.model], s=22, zorder=3, gid=f"pts-{i}")
    ax.set_xlabel("pruning rate (% of filters removed, or sparsity)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, loc="left", fontsize=11)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no finished pruning trials", ha="center", va="center", transform=ax.transAxes)
    return fig


def accuracy_vs_rate(data: Sequence[dict[str, Any]]) -> tuple[Figure, list[Series]]:
    series = rate_series(data, "top1")
    return _rate_figure(
        series, _colors(data), "top-1 accuracy (%)", "Accuracy vs pruning rate", False
    ), series


def reduction_vs_rate(data: Sequence[dict[str, Any]]) -> tuple[Figure, list[Series]]:
    series = rate_series(data, "param_reduction_ratio")
    fig = _rate_figure(
        series, _colors(data), "parameter reduction (%)", "Parameter-reduction ratio vs pruning rate", True
    )
    return fig, series


def _tradeoff(
    data: Sequence[dict[str, Any]], metric: str, scale: float, xlabel: str, title: str
) -> tuple[Figure, list[Series]]:
    done = [r for r in _finished(data) if r[metric] is not None]
    # one colour and one marker per method (the baseline: a star), each point labelled on the plot
    groups: dict[tuple[str, str, str], list[Point]] = {}
    tags: dict[str, str] = {}
    for r in done:
        method = _method_of(r)
        groups.setdefault((r["model"], r["family"], method), []).append(
            Point(r[metric] * scale, r["top1"], r["name"])
        )
        tags[r["name"]] = _short_label(r, method)
    methods = list(dict.fromkeys(method for _m, _f, method in groups))
    several_models = len({model for model, _f, _m in groups}) > 1
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    series = []
    for i, ((model, family, method), points) in enumerate(groups.items()):
        s = Series(f"{model} {method}" if several_models else method, model, family, tuple(points))
        series.append(s)
        k = methods.index(method)
        ax.scatter(
            [p.x for p in points],
            [p.y for p in points],
            color=COLORS[k % len(COLORS)],
            marker="*" if family == "baseline" else METHOD_MARKERS[k % len(METHOD_MARKERS)],
            s=90 if family == "baseline" else 34,
            alpha=0.85,
            label=s.name,
            zorder=3,
            gid=f"pts-{i}",
        )
        for p in points:
            ax.annotate(
                tags[p.label], (p.x, p.y), xytext=(4, 3), textcoords="offset points", fontsize=6.5, alpha=0.8
            )
    everything = [p for s in series for p in s.points]
    front = [everything[i] for i in pareto_front([(p.x, p.y) for p in everything])]
    if front:
        xs = [p.x for p in front]
        ys = [p.y for p in front]
        ax.step(xs, ys, where="post", color="black", linewidth=1.0, alpha=0.6, zorder=2)
        ax.scatter(
            xs,
            ys,
            s=140,
            facecolors="none",
            edgecolors="black",
            linewidths=1.4,
            label="Pareto front",
            zorder=4,
            gid=f"pts-{len(series)}",
        )
        series.append(Series("Pareto front", "", "pareto", tuple(front)))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title, loc="left", fontsize=11)
    ax.grid(alpha=0.3)
    if everything:
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, f"no finished trial has {metric}", ha="center", va="center", transform=ax.transAxes)
    return fig, series


def accuracy_vs_latency(data: Sequence[dict[str, Any]]) -> tuple[Figure, list[Series]]:
    runtimes = sorted({str(r["runtime"]) for r in _finished(data) if r["latency_ms"] is not None})
    batch = sorted({str(r["latency_batch_size"]) for r in _finished(data) if r["latency_ms"] is not None})
    label = f"latency (ms, median, batch {'/'.join(batch) or '?'}, {', '.join(runtimes) or 'no runtime'})"
    return _tradeoff(data, "latency_ms", 1.0, label, "Accuracy vs latency (Pareto front circled)")


def accuracy_vs_size(data: Sequence[dict[str, Any]]) -> tuple[Figure, list[Series]]:
    return _tradeoff(data, "size_bytes", 1e-6, "size on disk (MB)", "Accuracy vs size (Pareto front circled)")


#: name -> (title, builder); the report draws them in this order.
PLOTS: dict[str, tuple[str, Callable[[Sequence[dict[str, Any]]], tuple[Figure, list[Series]]]]] = {
    "accuracy_vs_rate": ("Accuracy vs pruning rate", accuracy_vs_rate),
    "reduction_vs_rate": ("Parameter-reduction ratio vs pruning rate", reduction_vs_rate),
    "accuracy_vs_latency": ("Accuracy vs latency", accuracy_vs_latency),
    "accuracy_vs_size": ("Accuracy vs size", accuracy_vs_size),
}


def plane_latency(c: dict[str, Any]) -> float:
    """A search candidate's latency on the plane: measured where it was timed, else predicted."""
    return float(c["latency_ms"] if c.get("latency_ms") is not None else c["latency_ms_predicted"])


def search_plane(
    candidates: Sequence[dict[str, Any]],
    budget_ms: float,
    chosen: str | None = None,
    title: str = "",
    reference_label: str = "hand-designed",
    noun: str = "subnet",
) -> Figure:
    """Every scored subnet of an architecture search: proxy top-1 against latency.

    ``candidates`` are ``Candidate.to_dict()`` rows (``label``, ``top1_proxy``,
    ``latency_ms_predicted``, ``latency_ms`` when measured, ``reference``: the name of a baseline, drawn
    as a star: a hand-designed net, or a uniform-ratio plan of a compression search, ``reference_label``).
    ``noun`` names the searched points in the legend (subnet, plan). Measured latency where there is
    one (filled marker), else predicted (hollow); references are
    stars with their names, the front of the plane a step line, the budget a dashed line and the
    chosen subnet circled.
    """
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    candidates = [c for c in candidates if c.get("top1_proxy") is not None]  # unscored: nothing to draw

    searched = [c for c in candidates if not c.get("reference")]
    measured = [c for c in searched if c.get("latency_ms") is not None]
    predicted = [c for c in searched if c.get("latency_ms") is None]
    ax.scatter(
        [plane_latency(c) for c in predicted],
        [c["top1_proxy"] for c in predicted],
        s=22,
        facecolors="none",
        edgecolors=COLORS[0],
        alpha=0.7,
        label=f"{noun} (predicted latency)",
        zorder=3,
    )
    ax.scatter(
        [plane_latency(c) for c in measured],
        [c["top1_proxy"] for c in measured],
        s=30,
        color=COLORS[0],
        label=f"{noun} (measured latency)",
        zorder=3,
    )
    references = [c for c in candidates if c.get("reference")]
    ax.scatter(
        [plane_latency(c) for c in references],
        [c["top1_proxy"] for c in references],
        s=110,
        marker="*",
        color=COLORS[1],
        label=reference_label,
        zorder=4,
    )
    for c in references:
        ax.annotate(
            c["reference"],
            (plane_latency(c), c["top1_proxy"]),
            xytext=(4, 3),
            textcoords="offset points",
            fontsize=7,
        )
    front = [candidates[i] for i in pareto_front([(plane_latency(c), c["top1_proxy"]) for c in candidates])]
    if front:
        ax.step(
            [plane_latency(c) for c in front],
            [c["top1_proxy"] for c in front],
            where="post",
            color="black",
            alpha=0.5,
        )
    ax.axvline(budget_ms, color=COLORS[2], linestyle="--", linewidth=1.0, label=f"budget {budget_ms:.3f} ms")
    for c in candidates:
        if c["label"] == chosen and not c.get("reference"):
            ax.scatter(
                [plane_latency(c)],
                [c["top1_proxy"]],
                s=160,
                facecolors="none",
                edgecolors="black",
                linewidths=1.5,
            )
            ax.annotate(
                f"chosen: {c['label']}",
                (plane_latency(c), c["top1_proxy"]),
                xytext=(6, -10),
                textcoords="offset points",
                fontsize=7,
            )
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("top-1 on held-out images (%, BN re-estimated)")
    ax.set_title(title or "Architecture search: every scored subnet", loc="left", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig
