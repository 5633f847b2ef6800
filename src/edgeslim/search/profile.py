"""A device profile: measured per-layer latency on the target runtime, and a predictor built on it.

Pruning decisions must be made on what the deployment runtime really spends, not on MACs: a conv
whose width is not a multiple of the CPU's vector block may cost as much as the next multiple, and
small layers are overhead-bound. :class:`LatencyTable` times single layers (a conv with its bias and
ReLU, as ONNX Runtime and OpenVINO fuse BN and activation into it; a Linear) as tiny ONNX graphs on
the runtime, at the batch size and thread count of the deployment, for every channel width on a
grid (``WIDTH_STEPS`` points per channel dimension), less the runtime's per-call cost (a ReLU-only
graph on the same input), which a layer inside a model does not pay. Timings are cached per environment fingerprint,
runtime, batch and threads (``~/.cache/edgeslim/profiles/``, ``$EDGESLIM_CACHE``), so a profile is
measured once per machine.

:class:`LatencyPredictor` predicts a pruned model's end-to-end latency from its layers' widths:
the table's latencies (bilinear between grid widths) summed, then mapped by ``a * sum + b``, a line
fitted to end-to-end measurements of the dense model and a few uniformly pruned variants
(calibration: everything a per-layer table misses, e.g. additions, pooling, layout changes, per-call
overhead). ``benchmarks/compress.py`` reports its median error on random pruned variants.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import tempfile
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeslim.bench import env_fingerprint
from edgeslim.errors import ConfigError
from edgeslim.export.runners import open_runner
from edgeslim.io import atomic_write_text

__all__ = [
    "PROFILE_RUNTIMES",
    "WIDTH_STEPS",
    "LatencyPredictor",
    "LatencyTable",
    "LayerShape",
    "width_grid",
]

#: runtimes a profile can be measured on (CPU runtimes that run ONNX graphs)
PROFILE_RUNTIMES = ("ort", "openvino")
#: grid points per channel dimension: widths C*k/WIDTH_STEPS for k = 1..WIDTH_STEPS
WIDTH_STEPS = 8
_OPSET = 17
_IR_VERSION = 8


@dataclasses.dataclass(frozen=True)
class LayerShape:
    """One conv or Linear as the runtime runs it: kind, widths, kernel, stride and input size."""

    kind: str  # "conv", "depthwise" or "linear"
    in_channels: int
    out_channels: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    height: int = 1
    width: int = 1

    def with_widths(self, in_channels: int, out_channels: int) -> LayerShape:
        if self.kind == "depthwise":
            in_channels = out_channels
        return dataclasses.replace(self, in_channels=in_channels, out_channels=out_channels)

    def with_kernel(self, kernel: int) -> LayerShape:
        """This conv with a square ``kernel`` and the padding that keeps its output size (an elastic
        kernel: a supernet's depthwise conv run at another kernel size)."""
        return dataclasses.replace(self, kernel=(kernel, kernel), padding=(kernel // 2, kernel // 2))

    def key(self) -> str:
        k, s, p = self.kernel, self.stride, self.padding
        return (
            f"{self.kind}:{self.in_channels}>{self.out_channels}:k{k[0]}x{k[1]}:s{s[0]}x{s[1]}"
            f":p{p[0]}x{p[1]}:{self.height}x{self.width}"
        )

    def template(self) -> str:
        """The key without the widths: layers that differ only in width share one grid."""
        k, s, p = self.kernel, self.stride, self.padding
        return f"{self.kind}:k{k[0]}x{k[1]}:s{s[0]}x{s[1]}:p{p[0]}x{p[1]}:{self.height}x{self.width}"

    def macs(self) -> int:
        if self.kind == "linear":
            return self.in_channels * self.out_channels
        oh = (self.height + 2 * self.padding[0] - self.kernel[0]) // self.stride[0] + 1
        ow = (self.width + 2 * self.padding[1] - self.kernel[1]) // self.stride[1] + 1
        fan_in = 1 if self.kind == "depthwise" else self.in_channels
        return oh * ow * self.out_channels * fan_in * self.kernel[0] * self.kernel[1]

    def input_size(self) -> tuple[int, ...]:
        return (self.in_channels,) if self.kind == "linear" else (self.in_channels, self.height, self.width)

    def overhead_key(self) -> str:
        dims = "x".join(str(d) for d in self.input_size())
        return f"relu:{dims}"

    def overhead_graph(self, batch: int) -> onnx.ModelProto:
        """A ReLU on this layer's input: the cost of a call that computes (almost) nothing."""
        x_shape = [batch, *self.input_size()]
        graph = helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])],
            "overhead",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        )
        return _as_model(graph)

    def onnx_graph(self, batch: int) -> onnx.ModelProto:
        """A one-layer ONNX model (random weights) with a fixed batch."""
        rng = np.random.default_rng(0)
        if self.kind == "linear":
            weight = rng.standard_normal((self.out_channels, self.in_channels)).astype(np.float32) * 0.05
            bias = np.zeros(self.out_channels, np.float32)
            nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)]
            x_shape: list[int] = [batch, self.in_channels]
        else:
            groups = self.out_channels if self.kind == "depthwise" else 1
            fan_in = 1 if self.kind == "depthwise" else self.in_channels
            weight = (rng.standard_normal((self.out_channels, fan_in, *self.kernel)) * 0.05).astype(
                np.float32
            )
            bias = np.zeros(self.out_channels, np.float32)
            nodes = [
                helper.make_node(
                    "Conv",
                    ["x", "w", "b"],
                    ["c"],
                    kernel_shape=list(self.kernel),
                    strides=list(self.stride),
                    pads=[self.padding[0], self.padding[1], self.padding[0], self.padding[1]],
                    group=groups,
                ),
                helper.make_node("Relu", ["c"], ["y"]),
            ]
            x_shape = [batch, self.in_channels, self.height, self.width]
        graph = helper.make_graph(
            nodes,
            "layer",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
        )
        return _as_model(graph)


def _as_model(graph: onnx.GraphProto) -> onnx.ModelProto:
    """``graph`` as a model every supported runtime version loads (opset 17, IR version 8)."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = _IR_VERSION
    return model


def width_grid(channels: int, steps: int = WIDTH_STEPS) -> list[int]:
    """Widths ``channels * k / steps`` (k = 1..steps), rounded, at least 1, without repeats."""
    return sorted({max(1, round(channels * k / steps)) for k in range(1, steps + 1)})


def _cache_root() -> Path:
    return Path(os.environ.get("EDGESLIM_CACHE", Path.home() / ".cache" / "edgeslim")) / "profiles"


class LatencyTable:
    """Measured median latency (ms) of single layers on one runtime, batch size and thread count.

    ``lookup`` interpolates between measured grid widths and measures what the grid lacks;
    ``save`` keeps the table (atomic write) under an id naming the machine and the settings.
    """

    def __init__(
        self,
        runtime: str,
        batch_size: int = 1,
        threads: int | None = None,
        *,
        path: Path | None = None,
        runs: int = 20,
        min_seconds: float = 0.05,
    ) -> None:
        if runtime not in PROFILE_RUNTIMES:
            raise ConfigError(
                f"profile.runtime must be one of {', '.join(PROFILE_RUNTIMES)}, not {runtime!r}",
                field="profile.runtime",
            )
        if batch_size < 1:
            raise ConfigError(
                f"profile.batch_size must be >= 1, got {batch_size}", field="profile.batch_size"
            )
        if threads is not None and threads < 1:
            raise ConfigError(f"profile.threads must be >= 1, got {threads}", field="profile.threads")
        self.runtime = runtime
        self.batch_size = batch_size
        self.threads = threads
        self.runs = runs
        self.min_seconds = min_seconds
        env = env_fingerprint()
        self.cpu_model = str(env["cpu_model"])
        self.env_hash = str(env["hash"])
        self.path = path or _cache_root() / f"{self.profile_id}.json"
        self.entries: dict[str, float] = {}
        self.measured = 0  # layers timed by this object (the rest came from the cache)
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                self.entries = {str(k): float(v) for k, v in data.get("entries", {}).items()}
            except (OSError, ValueError, AttributeError):
                self.entries = {}

    @property
    def profile_id(self) -> str:
        threads = self.threads or "default"
        return f"{self.env_hash}-{self.runtime}-b{self.batch_size}-t{threads}"

    def _time(self, key: str, proto: onnx.ModelProto, input_size: tuple[int, ...]) -> float:
        if key in self.entries:
            return self.entries[key]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "layer.onnx"
            onnx.save(proto, str(path))
            runner = open_runner(path, self.runtime, threads=self.threads)
            stats = runner.latency(
                input_size, (self.batch_size,), warmup=3, runs=self.runs, min_seconds=self.min_seconds
            )
        ms = float(stats[self.batch_size].median_ms)
        self.entries[key] = ms
        self.measured += 1
        return ms

    def measure(self, shape: LayerShape) -> float:
        """Median ms of one call of ``shape`` alone at this batch size (measured now, then kept)."""
        return self._time(shape.key(), shape.onnx_graph(self.batch_size), shape.input_size())

    def overhead(self, shape: LayerShape) -> float:
        """Median ms of a call that only applies ReLU to ``shape``'s input: the runtime's per-call cost
        (input binding, output allocation, dispatch), which a layer inside a model does not pay."""
        return self._time(shape.overhead_key(), shape.overhead_graph(self.batch_size), shape.input_size())

    def cost(self, shape: LayerShape) -> float:
        """What ``shape`` adds inside a model: its time alone less the per-call cost (at least 5% of it)."""
        alone = self.measure(shape)
        return max(alone - self.overhead(shape), 0.05 * alone)

    def fill(self, shapes: Iterable[LayerShape], progress: Callable[[int, int], None] | None = None) -> int:
        """Measure every grid point of every shape's width grid; returns how many were timed now."""
        todo: list[LayerShape] = []
        seen: set[str] = set()
        for shape in shapes:
            for point in grid_points(shape):
                if point.key() not in self.entries and point.key() not in seen:
                    seen.add(point.key())
                    todo.append(point)
        for i, point in enumerate(todo):
            self.cost(point)
            if progress is not None:
                progress(i + 1, len(todo))
        return len(todo)

    def lookup(self, shape: LayerShape, full: LayerShape) -> float:
        """In-model cost (:meth:`cost`) of ``shape``, a pruned version of ``full``: bilinear between
        ``full``'s grid widths."""
        if shape.key() in self.entries:
            return self.cost(shape)
        outs = width_grid(full.out_channels)
        o0, o1, to = _bracket(outs, shape.out_channels)
        if shape.kind == "depthwise":
            low = self.cost(full.with_widths(o0, o0))
            high = self.cost(full.with_widths(o1, o1))
            return low + (high - low) * to
        ins = width_grid(full.in_channels)
        i0, i1, ti = _bracket(ins, shape.in_channels)
        corners = [[self.cost(full.with_widths(i, o)) for o in (o0, o1)] for i in (i0, i1)]
        top = corners[0][0] + (corners[0][1] - corners[0][0]) * to
        bottom = corners[1][0] + (corners[1][1] - corners[1][0]) * to
        return top + (bottom - top) * ti

    def save(self) -> Path:
        payload = {
            "profile_id": self.profile_id,
            "cpu_model": self.cpu_model,
            "runtime": self.runtime,
            "batch_size": self.batch_size,
            "threads": self.threads,
            "entries": dict(sorted(self.entries.items())),
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(payload, indent=1))
        except OSError:
            pass  # a read-only home: the next run measures again
        return self.path


def grid_points(full: LayerShape) -> list[LayerShape]:
    """Every (in, out) width pair of ``full``'s grid (depthwise and stem convs: one dimension)."""
    outs = width_grid(full.out_channels)
    if full.kind == "depthwise":
        return [full.with_widths(o, o) for o in outs]
    ins = width_grid(full.in_channels)
    return [full.with_widths(i, o) for i in ins for o in outs]


def _bracket(grid: Sequence[int], value: int) -> tuple[int, int, float]:
    """Grid neighbours of ``value`` and its position between them (0 at the lower one)."""
    if value <= grid[0]:
        return grid[0], grid[0], 0.0
    if value >= grid[-1]:
        return grid[-1], grid[-1], 0.0
    for lo, hi in itertools.pairwise(grid):
        if lo <= value <= hi:
            return lo, hi, (value - lo) / (hi - lo) if hi > lo else 0.0
    raise AssertionError("unreachable: value lies inside the grid")


def stage_key(shape: LayerShape) -> str:
    """The calibration feature a layer belongs to: its kind at its input resolution."""
    return "linear" if shape.kind == "linear" else f"{shape.kind}@{shape.height}x{shape.width}"


Sample = tuple[dict[str, float], float]  # (table latency per stage key, measured ms)


def _ridge(x: np.ndarray, y: np.ndarray, prior: np.ndarray, ridge: float) -> np.ndarray:
    """Least squares of ``x @ w ~ y`` pulled towards ``prior`` with a strength scaled to ``x``."""
    gram = x.T @ x
    strength = ridge * float(np.trace(gram)) / len(prior)
    return np.asarray(np.linalg.solve(gram + strength * np.eye(len(prior)), x.T @ y + strength * prior))


@dataclasses.dataclass
class LatencyPredictor:
    """End-to-end latency from per-layer widths (ms).

    ``predict = sum_k w_k * S_k + b``, where ``S_k`` sums the table latencies of the layers of one
    kind at one resolution (:func:`stage_key`). :meth:`fit` first fits one line (``a * sum + b``)
    to the measured samples, then per-stage weights ``w_k`` by ridge regression pulled towards
    ``a`` (a stage whose isolated timings over- or under-state its in-graph cost gets its own
    scale; with few samples the weights stay near the line). ``layers`` are the dense model's
    layers by name; ``predict`` takes the (in, out) widths of the layers that shrank. ``points``
    are the (layer sum, measured ms) pairs of the calibration samples.
    """

    table: LatencyTable
    layers: dict[str, LayerShape]
    a: float = 1.0
    b: float = 0.0
    weights: dict[str, float] = dataclasses.field(default_factory=dict)
    anchor: float = 1.0
    points: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    seconds_per_point: float = 0.0  # time to prune, export and measure one calibration variant

    def layer_latency(
        self,
        name: str,
        widths: Mapping[str, tuple[int, int]] | None = None,
        shapes: Mapping[str, LayerShape] | None = None,
    ) -> float:
        """Table latency of layer ``name`` at its ``widths``; ``shapes[name]``, when given, is the
        layer's full shape instead of the dense model's (an elastic depthwise conv at another kernel)."""
        full = shapes[name] if shapes and name in shapes else self.layers[name]
        shape = full.with_widths(*widths[name]) if widths and name in widths else full
        return self.table.lookup(shape, full)

    def features(
        self,
        widths: Mapping[str, tuple[int, int]] | None = None,
        absent: Collection[str] = (),
        shapes: Mapping[str, LayerShape] | None = None,
    ) -> dict[str, float]:
        """Table latency per stage key; ``absent`` layers (blocks a depth search removed) cost 0;
        ``shapes`` replaces some layers' full shapes (see :meth:`layer_latency`)."""
        sums: dict[str, float] = {}
        for name, full in self.layers.items():
            key = stage_key(full)
            if name in absent:
                sums.setdefault(key, 0.0)
                continue
            sums[key] = sums.get(key, 0.0) + self.layer_latency(name, widths, shapes)
        return sums

    def layer_sum(
        self,
        widths: Mapping[str, tuple[int, int]] | None = None,
        absent: Collection[str] = (),
        shapes: Mapping[str, LayerShape] | None = None,
    ) -> float:
        return sum(self.features(widths, absent, shapes).values())

    def raw(
        self,
        widths: Mapping[str, tuple[int, int]] | None = None,
        absent: Collection[str] = (),
        shapes: Mapping[str, LayerShape] | None = None,
    ) -> float:
        features = self.features(widths, absent, shapes)
        return sum(self.weights.get(k, self.a) * v for k, v in features.items()) + self.b

    def predict(
        self,
        widths: Mapping[str, tuple[int, int]] | None = None,
        absent: Collection[str] = (),
        shapes: Mapping[str, LayerShape] | None = None,
    ) -> float:
        """``anchor`` x the fitted model: exact for the dense model, relative changes from the fit."""
        return self.anchor * self.raw(widths, absent, shapes)

    def anchor_at(self, dense_ms: float) -> None:
        """Scale predictions so the dense model (no widths changed) predicts ``dense_ms``.

        A search cuts latency by 10-50% from the dense model; what it needs right is the ratio of a
        plan to the dense model, and a fit's residual at the dense point would otherwise shift every
        prediction by that much (measured here: a 3% cut predicted as 16%).
        """
        self.anchor = 1.0
        self.anchor = dense_ms / self.raw() if self.raw() > 0 else 1.0

    def calibrate(self, points: Sequence[tuple[float, float]]) -> None:
        """Fit ``a``, ``b`` (least squares) to (layer sum, measured ms) pairs; one pair: a ratio."""
        if not points:
            raise ConfigError("calibrating a latency predictor needs at least one measurement")
        self.points = list(points)
        self.weights = {}
        xs = np.array([p[0] for p in points])
        ys = np.array([p[1] for p in points])
        if len(points) == 1 or float(np.ptp(xs)) < 1e-9:
            self.a, self.b = float(ys.mean() / xs.mean()), 0.0
            return
        a, b = np.polyfit(xs, ys, 1)
        if b < 0:  # a call costs at least nothing: a negative intercept predicts small models at ~0 ms
            a, b = float((xs * ys).sum() / (xs * xs).sum()), 0.0  # the line through the origin
        if a <= 0 or not (math.isfinite(a) and math.isfinite(b)):  # nonsense fit: keep the ratio
            self.a, self.b = float(ys.mean() / xs.mean()), 0.0
        else:
            self.a, self.b = float(a), float(b)

    def fit(self, samples: Sequence[Sample], ridge: float = 0.05) -> None:
        """The line, then per-stage weights by ridge regression towards it (see the class doc)."""
        self.calibrate([(sum(f.values()), ms) for f, ms in samples])
        keys = sorted({k for f, _ in samples for k in f})
        if len(samples) < 3 or not keys:
            return
        x = np.array([[f.get(k, 0.0) for k in keys] + [1.0] for f, _ in samples])
        y = np.array([ms for _, ms in samples])
        solution = _ridge(x, y, np.array([self.a] * len(keys) + [self.b]), ridge)
        if solution[-1] < 0:  # no negative fixed cost (see calibrate): refit without the intercept
            solution = np.append(_ridge(x[:, :-1], y, np.array([self.a] * len(keys)), ridge), 0.0)
        if not np.all(np.isfinite(solution)) or np.any(solution[:-1] <= 0):
            return  # a stage with a negative cost is an overfit: keep the line
        self.weights = {k: float(w) for k, w in zip(keys, solution[:-1], strict=True)}
        self.b = float(solution[-1])

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile_id": self.table.profile_id,
            "runtime": self.table.runtime,
            "batch_size": self.table.batch_size,
            "threads": self.table.threads,
            "a": self.a,
            "b": self.b,
            "weights": dict(self.weights),
            "anchor": self.anchor,
            "points": [list(p) for p in self.points],
        }
