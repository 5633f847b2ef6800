"""Calibrate and check a latency predictor against end-to-end measurements on the runtime.

:func:`calibration_points` measures the dense model and uniformly pruned variants (really pruned,
exported to ONNX, timed in repeated passes) and pairs each with the predictor's layer sum, the
points :meth:`LatencyPredictor.calibrate` fits its line to. :func:`validate_predictor` compares
predictions with measurements on random per-group plans, which ``edgeslim profile --validate N``
and ``benchmarks/compress.py`` report as the predictor's error.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from edgeslim.export import export
from edgeslim.export.onnx import torchscript_export_to
from edgeslim.export.runners import open_runner
from edgeslim.pruning import prune
from edgeslim.search.layout import ModelLayout, Plan, plan_config
from edgeslim.search.profile import LatencyPredictor, LatencyTable, Sample

__all__ = [
    "CALIBRATION_RANDOM_PLANS",
    "CALIBRATION_RATIOS",
    "PairedTimer",
    "PairedTiming",
    "PredictionCheck",
    "build_predictor",
    "calibration_samples",
    "dense_timer",
    "export_float",
    "measure_model",
    "measure_plan",
    "pruned_copy",
    "random_plan",
    "validate_predictor",
]

#: uniform pruning ratios measured end to end to calibrate the predictor (0: the dense model)
CALIBRATION_RATIOS = (0.0, 0.25, 0.5, 0.7)
#: random per-group plans measured as well (they tell the stages' costs apart)
CALIBRATION_RANDOM_PLANS = 8
CALIBRATION_SEED = 1_000_003  # validation uses seeds 0, 1, ...: never the same plans


@dataclasses.dataclass(frozen=True)
class PairedTiming:
    """An artifact timed alternately with the reference: medians (ms) and their ratio."""

    ms: float  # median of the artifact's pass medians
    reference_ms: float  # median of the reference's pass medians, timed in between
    ratio: float  # median of the per-pass ratios artifact / reference
    spread: float  # (max - min) / median of those ratios
    anchor_ms: float  # the reference's latency when the timer was made

    @property
    def corrected_ms(self) -> float:
        """``ratio`` x ``anchor_ms``: every artifact on one scale, the machine's drift cancelled."""
        return self.ratio * self.anchor_ms


class PairedTimer:
    """Times artifacts in passes alternating with a reference artifact (the dense model).

    A shared or thermally throttled CPU drifts by 10-15% within a minute (measured here: ONNX
    Runtime, resnet20, batch 1, 0.70 -> 0.60 ms over 8 consecutive passes); a ratio to a reference
    timed in between does not. Passes are blocks of calls: interleaving single calls (artifact,
    reference, ...) was tried and is worse, as two ONNX Runtime sessions' spinning thread pools
    then contend (ResNet-56, batch 1, 2 threads, AMD EPYC: ratios spread 65-74% across 3 passes
    against 25-45% for blocks, measured 2026-12-07).
    ``anchor_ms`` is the reference's latency when the timer was made;
    ``PairedTiming.corrected_ms`` puts every artifact on that one scale.
    """

    def __init__(
        self,
        reference: Path,
        runtime: str,
        input_shape: tuple[int, ...],
        batch: int,
        threads: int | None,
        passes: int = 3,
    ) -> None:
        self.runtime, self.input_shape, self.batch, self.threads = runtime, input_shape, batch, threads
        self.passes = passes
        self.reference = open_runner(reference, runtime, threads=threads)
        self.anchor_ms = statistics.median(self._once(self.reference) for _ in range(passes + 2))

    def _once(self, runner: Any) -> float:
        stats = runner.latency(self.input_shape, (self.batch,), warmup=3, runs=20, min_seconds=0.2)
        return float(stats[self.batch].median_ms)

    def measure(self, path: Path, runtime: str | None = None, passes: int | None = None) -> PairedTiming:
        """``path`` alternating with the reference; ``runtime``: run it on another runtime than the
        reference's (e.g. OpenVINO int8 against ONNX Runtime FP32); ``passes``: more (or fewer)
        than the timer's for a measurement that decides more."""
        runner = open_runner(path, runtime or self.runtime, threads=self.threads)
        mine, theirs = [], []
        for _ in range(passes or self.passes):
            mine.append(self._once(runner))
            theirs.append(self._once(self.reference))
        ratios = [a / b for a, b in zip(mine, theirs, strict=True)]
        ratio = statistics.median(ratios)
        return PairedTiming(
            ms=statistics.median(mine),
            reference_ms=statistics.median(theirs),
            ratio=ratio,
            spread=(max(ratios) - min(ratios)) / ratio if ratio > 0 else 0.0,
            anchor_ms=self.anchor_ms,
        )


def export_float(model: nn.Module, path: Path, input_shape: tuple[int, ...]) -> Path:
    """``model`` as an FP32 ONNX file with a dynamic batch.

    The TorchScript-based exporter first: it takes 0.3 s where ``torch.export`` takes 9 s for
    ResNet-56, which matters when calibrating and validating on many variants; the search exports
    every variant and its final model the same way, so what was calibrated is what is shipped.
    Falls back to edgeslim's default export (``torch.export``).
    """
    model = model.eval()
    example = torch.zeros(1, *input_shape)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torchscript_export_to(model, (example,), path, opset=17)
    except Exception:  # any exporter failure: the default exporter decides (and explains)
        export(model, "onnx", example, out=path, check=False)
    return path


def pruned_copy(dense: nn.Module, layout: ModelLayout, plan: Plan) -> nn.Module:
    """A copy of ``dense`` L1-pruned to ``plan``."""
    model = copy.deepcopy(dense)
    config = plan_config(layout, plan)
    if config.layer_ratios:
        prune(model, config, example_inputs=torch.zeros(1, *layout.input_shape))
    return model.eval()


def measure_model(model: nn.Module, timer: PairedTimer, work: Path) -> PairedTiming:
    """``model`` exported and timed by ``timer`` (the file is removed after)."""
    path = export_float(model, work / "variant.onnx", timer.input_shape)
    try:
        return timer.measure(path)
    finally:
        for leftover in work.glob("variant.onnx*"):
            leftover.unlink()


def measure_plan(
    dense: nn.Module, layout: ModelLayout, plan: Plan, timer: PairedTimer, work: Path
) -> PairedTiming:
    """``dense`` pruned to ``plan``, exported and timed by ``timer``."""
    return measure_model(pruned_copy(dense, layout, plan), timer, work)


def dense_timer(
    dense: nn.Module,
    input_shape: tuple[int, ...],
    runtime: str,
    batch: int,
    threads: int | None,
    work: Path,
    passes: int = 3,
) -> PairedTimer:
    """A :class:`PairedTimer` whose reference is ``dense`` exported to ``work/dense.onnx``."""
    return PairedTimer(
        export_float(dense, work / "dense.onnx", input_shape), runtime, input_shape, batch, threads, passes
    )


def calibration_samples(
    dense: nn.Module,
    layout: ModelLayout,
    predictor: LatencyPredictor,
    timer: PairedTimer,
    work: Path,
    ratios: tuple[float, ...] = CALIBRATION_RATIOS,
    random_plans: int = CALIBRATION_RANDOM_PLANS,
) -> list[Sample]:
    """(per-stage table latencies, measured ms) of the dense model (first), uniformly pruned
    variants and ``random_plans`` random per-group plans (seeded apart from validation's plans)."""
    rng = random.Random(CALIBRATION_SEED)
    plans = [layout.uniform_plan(r) for r in ratios] + [random_plan(layout, rng) for _ in range(random_plans)]
    samples = []
    began = time.perf_counter()
    for plan in plans:
        timing = measure_plan(dense, layout, plan, timer, work)
        samples.append((predictor.features(layout.widths(plan)), timing.corrected_ms))
    predictor.seconds_per_point = (time.perf_counter() - began) / max(1, len(plans))
    return samples


def random_plan(layout: ModelLayout, rng: random.Random, max_ratio: float = 0.75) -> Plan:
    """Every group keeps a random share of its channels (one knob at a time keeps groups alike)."""
    plan = layout.dense_plan()
    for group, size in layout.sizes.items():
        keep = size - int(size * rng.uniform(0.0, max_ratio))
        r = layout.round_to
        keep = max(layout.min_keep[group], round(keep / r) * r)
        plan[group] = min(size, keep)
    return plan


@dataclasses.dataclass(frozen=True)
class PredictionCheck:
    """Predicted vs measured latency of random pruned variants."""

    predicted_ms: list[float]
    measured_ms: list[float]
    spreads: list[float]

    @property
    def errors(self) -> list[float]:
        return [abs(p - m) / m for p, m in zip(self.predicted_ms, self.measured_ms, strict=True)]

    @property
    def median_error(self) -> float:
        return statistics.median(self.errors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "variants": len(self.measured_ms),
            "median_error": self.median_error,
            "max_error": max(self.errors),
            "predicted_ms": self.predicted_ms,
            "measured_ms": self.measured_ms,
            "spreads": self.spreads,
        }


def validate_predictor(
    dense: nn.Module,
    layout: ModelLayout,
    predictor: LatencyPredictor,
    timer: PairedTimer,
    work: Path,
    *,
    variants: int = 20,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> PredictionCheck:
    """Predict and measure ``variants`` random per-group pruned versions of ``dense`` (measured as
    ratios to the dense model timed alongside, on the timer's scale)."""
    rng = random.Random(seed)
    predicted, measured, spreads = [], [], []
    for i in range(variants):
        plan = random_plan(layout, rng)
        predicted.append(predictor.predict(layout.widths(plan)))
        timing = measure_plan(dense, layout, plan, timer, work)
        measured.append(timing.corrected_ms)
        spreads.append(timing.spread)
        if progress is not None:
            progress(i + 1, variants)
    return PredictionCheck(predicted, measured, spreads)


def build_predictor(
    dense: nn.Module,
    input_shape: tuple[int, ...],
    runtime: str,
    batch: int,
    threads: int | None,
    work: Path,
    *,
    round_to: int = 1,
    max_layer_ratio: float = 0.9,
    passes: int = 3,
    progress: Callable[[str], None] | None = None,
    residual: Literal["prune", "keep"] = "prune",
) -> tuple[ModelLayout, LatencyPredictor, int, PairedTimer]:
    """Trace ``dense``, time its layers' width grids (cached) and calibrate a predictor on it.

    Returns the layout, the calibrated predictor, how many layer timings were measured now and the
    timer whose reference (the dense model) the calibration was measured against.
    """
    layout = ModelLayout(
        dense, input_shape, round_to=round_to, max_layer_ratio=max_layer_ratio, residual=residual
    )
    table = LatencyTable(runtime, batch, threads)
    if progress is not None:
        progress(f"profile {table.profile_id}: {len(table.entries)} layer timings cached")

    def tick(i: int, n: int) -> None:
        if progress is not None and (i % 50 == 0 or i == n):
            progress(f"profile: {i}/{n} layer widths timed")

    timed = table.fill(layout.layers.values(), progress=tick)
    table.save()
    predictor = LatencyPredictor(table, layout.layers)
    timer = dense_timer(dense, input_shape, runtime, batch, threads, work, passes)
    samples = calibration_samples(dense, layout, predictor, timer, work)
    predictor.fit(samples)
    predictor.anchor_at(samples[0][1])  # the dense model, measured first
    if progress is not None:
        progress(
            f"predictor: {predictor.a:.3f} x layers + {predictor.b:.3f} ms "
            f"(dense measured {predictor.points[0][1]:.3f} ms)"
        )
    return layout, predictor, timed, timer
