"""Automatic, hardware-aware compression to a device budget (``edgeslim compress``).

Given a model, data and a :class:`Budget` (latency on a runtime at a batch size, optionally size and
accuracy drop), :func:`compress`:

1. measures a device profile (:mod:`edgeslim.search.profile`; cached per machine) for the model's
   layers and calibrates a latency predictor on the dense model and uniformly pruned variants,
   all measured end to end on the runtime; with ``int8`` the predictor is scaled by the int8/FP32
   ratio measured on the dense model;
2. says up front when even the smallest plan the limits allow is above the budget (measured
   when the predictor says so);
3. searches per-stage widths (residual streams included unless ``residual="keep"``,
   :mod:`edgeslim.search.layout`) against the predicted latency. The accuracy proxy of a candidate
   is its top-1 on a held-out validation subset after L1 pruning, a short distillation from the
   dense model (``proxy_steps`` SGD steps on cached teacher logits: NetAdapt's short-term
   fine-tune) and re-estimating BatchNorm statistics on a few training batches (the "adaptive BN"
   proxy of EagleEye, Li et al. 2020, alone when ``proxy_steps`` is 0; on ResNet-56 it scored a
   plan that cuts stage 3 hard 23.5 points below a uniform one of the same MACs, 16 steps 7.5
   points, closer to how both fine-tune). Strategies: ``greedy`` (NetAdapt, Yang et al. 2018: each
   iteration, for every knob the smallest cut that takes the predicted latency down by one step;
   keep the most accurate; once within the budget, give channels back while the measured
   latency stays within it), ``evolution`` and ``optuna`` (NSGA-II over the knobs; accuracy up,
   latency down, the budget a constraint). Every evaluated candidate is appended to
   ``trials.jsonl``, so a killed search resumes without re-evaluating;
4. prunes the winner, fine-tunes it for the rest of the time budget with distillation from the
   dense model (:class:`edgeslim.tasks.Recovery`), optionally quantizes it to int8 (static PTQ,
   QDQ ONNX), exports it and measures it for real on the runtime (repeated passes, median);
5. scores uniform-ratio plans (every group losing 0-50% of its channels) with the same proxy, the
   baseline the search must beat, and with ``CompressOptions.db`` records every scored plan in the
   result store (:mod:`edgeslim.engine.searches`), where ``edgeslim report`` draws the search.

Work happens in ``OUT.partial`` and is renamed to ``OUT`` at the end, so ``OUT`` is never half
written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from edgeslim.bench import env_fingerprint
from edgeslim.bench.counting import count_macs, count_params
from edgeslim.bench.latency import DEFAULT_NOISE_THRESHOLD
from edgeslim.bench.latency import threads as torch_threads
from edgeslim.config import Config
from edgeslim.data import BatchLoader, ImageTensors
from edgeslim.distillation.losses import KDLoss
from edgeslim.engine.executors.pool import ScoringPool, check_pool, scoring_pool
from edgeslim.engine.searches import SearchCandidate, check_store, free_name, record_search
from edgeslim.engine.store import Store
from edgeslim.errors import ConfigError, EdgeslimError
from edgeslim.export import export
from edgeslim.quantization import StaticQuant, quantize
from edgeslim.search.calibrate import PairedTimer, build_predictor, export_float, measure_plan, pruned_copy
from edgeslim.search.layout import ModelLayout, plan_config
from edgeslim.search.profile import PROFILE_RUNTIMES, LatencyPredictor
from edgeslim.tasks import DataSource, ModelSource, Recovery, choose_round_to, prune_task, quantize_task
from edgeslim.tasks.common import check_classes, fit_input
from edgeslim.tasks.prune import PruneOutcome
from edgeslim.train import TrainConfig, evaluate
from edgeslim.train.device import autocast

__all__ = [
    "STRATEGIES",
    "Budget",
    "CompressOptions",
    "CompressResult",
    "NoPlanFits",
    "compress",
]

Strategy = Literal["greedy", "evolution", "optuna"]
STRATEGIES: tuple[str, ...] = ("greedy", "evolution", "optuna")


class NoPlanFits(EdgeslimError):
    """No plan meets the budget; ``closest`` is the nearest one (exit 1, not a usage error)."""

    exit_code = 1

    def __init__(self, message: str, closest: dict[str, Any]) -> None:
        super().__init__(message)
        self.closest = closest


@dataclasses.dataclass(frozen=True)
class Budget(Config):
    """What the compressed model must meet on ``runtime`` at ``batch_size``.

    ``max_latency_ms``: absolute latency of one call. ``min_speedup``: at least this many times faster
    than the uncompressed model timed alongside it, which holds on a machine whose speed drifts
    (a shared VM) where an absolute figure measured at another moment does not. Give one or both.
    """

    max_latency_ms: float | None = None
    min_speedup: float | None = None
    runtime: str = "ort"
    batch_size: int = 1
    threads: int | None = None
    max_size_mb: float | None = None
    max_accuracy_drop: float | None = None  # top-1 points below the uncompressed model

    def validate(self) -> None:
        if self.max_latency_ms is None and self.min_speedup is None:
            raise ConfigError(
                "Budget.max_latency_ms: give a latency budget (or Budget.min_speedup, a speed-up over the "
                "uncompressed model)",
                field="Budget.max_latency_ms",
            )
        if self.max_latency_ms is not None and not (
            math.isfinite(self.max_latency_ms) and self.max_latency_ms > 0
        ):
            raise ConfigError(
                f"Budget.max_latency_ms must be a positive number, got {self.max_latency_ms}",
                field="Budget.max_latency_ms",
            )
        if self.min_speedup is not None and not (math.isfinite(self.min_speedup) and self.min_speedup >= 1.0):
            raise ConfigError(
                f"Budget.min_speedup must be a number >= 1 (times faster than the uncompressed model), got "
                f"{self.min_speedup}",
                field="Budget.min_speedup",
            )

        if self.runtime not in PROFILE_RUNTIMES:
            raise ConfigError(
                f"Budget.runtime must be one of {', '.join(PROFILE_RUNTIMES)}, not {self.runtime!r}",
                field="Budget.runtime",
            )
        if self.batch_size < 1:
            raise ConfigError(
                f"Budget.batch_size must be >= 1, got {self.batch_size}", field="Budget.batch_size"
            )
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"Budget.threads must be >= 1, got {self.threads}", field="Budget.threads")
        if self.max_size_mb is not None and not (math.isfinite(self.max_size_mb) and self.max_size_mb > 0):
            raise ConfigError(
                f"Budget.max_size_mb must be a positive number, got {self.max_size_mb}",
                field="Budget.max_size_mb",
            )
        if self.max_accuracy_drop is not None and not (
            math.isfinite(self.max_accuracy_drop) and self.max_accuracy_drop >= 0
        ):
            raise ConfigError(
                f"Budget.max_accuracy_drop must be >= 0 points, got {self.max_accuracy_drop}",
                field="Budget.max_accuracy_drop",
            )

    def target_ms(self, dense_ms: float) -> float:
        """The latency the search aims at, given the uncompressed model's measured latency."""
        targets = [t for t in (self.max_latency_ms,) if t is not None]
        if self.min_speedup is not None:
            targets.append(dense_ms / self.min_speedup)
        return min(targets)


@dataclasses.dataclass(frozen=True)
class CompressOptions(Config):
    """How :func:`compress` searches and recovers.

    ``budget_minutes``: the whole run (profile, search, fine-tune, measurement); the search gets
    ``search_share`` of what is left after profiling, the fine-tune the rest. ``val_images`` and
    ``bn_batches``: the accuracy proxy's validation images and BN re-estimation batches.
    ``proxy_steps``: distillation steps (batch 128, from the dense model's cached logits) each
    candidate trains before it is scored (0: BN re-estimation alone, the adaptive-BN proxy): a
    short recovery ranks plans closer to how they fine-tune, at about 0.3 s a step for a halved
    ResNet-56 on 2 cores. ``finetune`` off: the winner is pruned and measured without recovery training.
    ``iterations``: greedy steps from the dense latency to the budget. ``round_to``: channel
    multiple (``"auto"``: measured, :func:`edgeslim.tasks.choose_round_to`). ``executor``,
    ``workers``, ``address``: where candidates are scored (:mod:`edgeslim.engine.executors.pool`:
    ``local`` processes or a ``ray`` cluster, as sweeps run; one worker scores in this process);
    a pool of any size gives the same scores. ``residual``: "keep" searches only the widths inside
    blocks and leaves residual streams whole (:class:`~edgeslim.pruning.FilterPruning`), "prune"
    searches the streams too. ``bf16``: the fine-tune trains under bfloat16 autocast with
    channels-last tensors (about 1.6x the images per second on CPUs with AVX-512 BF16, so more
    epochs fit the budget; turn it off on CPUs without it, where it is slower). ``db``: also record
    the search (every scored plan, the uniform-ratio references and the winner) in this result
    store, as an experiment named after ``out`` (``edgeslim report NAME --db DB`` draws it).
    """

    int8: bool = False
    budget_minutes: float = 30.0
    finetune: bool = True
    strategy: Strategy = "greedy"
    search_share: float = 0.3
    iterations: int = 6
    val_images: int = 1000
    bn_batches: int = 8
    proxy_steps: int = 16
    round_to: int | Literal["auto"] = "auto"
    max_layer_ratio: float = 0.9
    residual: Literal["prune", "keep"] = "prune"
    distill: bool = True
    lr: float = 0.01
    bf16: bool = True
    passes: int = 3
    seed: int = 0
    executor: str = "local"
    workers: int | None = None
    address: str | None = None
    db: str | None = None

    def validate(self) -> None:
        check_pool(self.executor, self.workers, self.address, "CompressOptions")
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"CompressOptions.strategy must be one of {', '.join(STRATEGIES)}, not {self.strategy!r}",
                field="CompressOptions.strategy",
            )
        if not (math.isfinite(self.budget_minutes) and self.budget_minutes > 0):
            raise ConfigError(
                f"CompressOptions.budget_minutes must be a positive number, got {self.budget_minutes}",
                field="CompressOptions.budget_minutes",
            )
        if not 0.0 < self.search_share < 1.0:
            raise ConfigError(
                f"CompressOptions.search_share must be in (0, 1), got {self.search_share}",
                field="CompressOptions.search_share",
            )
        if self.proxy_steps < 0:
            raise ConfigError(
                f"CompressOptions.proxy_steps must be >= 0 (0: no training in the proxy), got {self.proxy_steps}",
                field="CompressOptions.proxy_steps",
            )
        for name in ("iterations", "val_images", "bn_batches", "passes"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"CompressOptions.{name} must be >= 1, got {getattr(self, name)}",
                    field=f"CompressOptions.{name}",
                )
        if self.round_to != "auto" and self.round_to < 1:
            raise ConfigError(
                f"CompressOptions.round_to must be >= 1 or 'auto', got {self.round_to}",
                field="CompressOptions.round_to",
            )
        if not 0.0 < self.max_layer_ratio < 1.0:
            raise ConfigError(
                f"CompressOptions.max_layer_ratio must be in (0, 1), got {self.max_layer_ratio}",
                field="CompressOptions.max_layer_ratio",
            )


@dataclasses.dataclass
class Trial:
    """One evaluated candidate plan (per-knob kept channels)."""

    knobs: dict[str, int]
    predicted_ms: float
    proxy_top1: float | None
    params: int
    macs: int
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class CompressResult:
    """What :func:`compress` made and measured; ``to_dict`` is the ``--json`` object."""

    artifact: Path
    checkpoint: Path
    runtime: str
    batch_size: int
    latency_ms: float
    latency_spread: float
    latency_ms_predicted: float
    latency_ms_dense: float
    speedup: float  # dense / this model, timed alternately
    top1: float | None
    top1_baseline: float | None
    size_bytes: int
    macs: int
    params: int
    macs_dense: int
    params_dense: int
    plan: dict[str, Any]
    trials: int
    budget_minutes_used: float
    fits: dict[str, bool]
    strategy: str
    predictor: dict[str, Any]
    notes: list[str]
    max_latency_ms: float = 0.0  # the budget the search aimed at (ms)
    latency_noisy: bool = False  # latency_spread above the noise threshold: time it again on a quiet machine
    references: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # uniform-ratio plans
    experiment: str | None = None  # its name in the result store (``CompressOptions.db``)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["artifact"] = str(self.artifact)
        data["checkpoint"] = str(self.checkpoint)
        return data


class _Clock:
    def __init__(self, minutes: float) -> None:
        self.start = time.perf_counter()
        self.minutes = minutes

    def used(self) -> float:
        return (time.perf_counter() - self.start) / 60.0

    def left(self) -> float:
        return self.minutes - self.used()


def _timed(progress: Callable[[str], None] | None, clock: _Clock) -> Callable[[str], None] | None:
    """``progress`` with the minutes used in front of every line."""
    if progress is None:
        return None
    report = progress

    def say(message: str) -> None:
        report(f"[{clock.used():4.1f} min] {message}")

    return say


def _say(progress: Callable[[str], None] | None, message: str) -> None:
    if progress is not None:
        progress(message)


# ---------------------------------------------------------------------------------------------
# the accuracy proxy


@torch.no_grad()
def adapt_batchnorm(model: nn.Module, loader: Iterable[Any], batches: int) -> None:
    """Re-estimate BatchNorm running statistics on ``batches`` training batches (cumulative average);
    ``loader``: a :class:`BatchLoader` or a list of image batches."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        for i, batch in enumerate(loader):
            if i >= batches:
                break
            x = batch[0] if isinstance(batch, tuple | list) else batch
            model(x)
    finally:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum
        model.eval()


def bn_batches(train: ImageTensors, batches: int, seed: int) -> list[torch.Tensor]:
    """The training batches every candidate re-estimates BatchNorm on: the same ones for all of
    them (fairer than each seeing other images, and what lets a pool score in any order)."""
    loader = BatchLoader(train, 128, shuffle=True, seed=seed)
    return [x for _, (x, _y) in zip(range(batches), loader, strict=False)]


def proxy_score(model: nn.Module, batches: list[torch.Tensor], val: ImageTensors) -> tuple[float, int, int]:
    """The adaptive-BN proxy of one candidate: BN re-estimated on ``batches``, then (top-1 on
    ``val``, parameters, MACs). Shared by the compression and the architecture search."""
    adapt_batchnorm(model, batches, len(batches))
    top1 = evaluate(model, BatchLoader(val, 256)).top1
    return top1, count_params(model), count_macs(model, tuple(val.input_shape))


@dataclasses.dataclass(frozen=True)
class ProxyTraining:
    """The short recovery inside the accuracy proxy: ``steps`` SGD steps (Nesterov momentum 0.9,
    ``lr``) distilling the dense model's logits (temperature 4, no labels) into the candidate, on
    the shared proxy batches flipped at random, under bfloat16 autocast when ``bf16``."""

    steps: int
    lr: float = 0.01
    bf16: bool = True
    temperature: float = 4.0


class _TeacherLogits:
    """The dense model's logits for the proxy batches and their mirror images, computed once: every
    candidate trains on the same images, so the teacher never runs again."""

    def __init__(self, dense: nn.Module, batches: list[torch.Tensor]) -> None:
        dense = dense.eval()
        with torch.no_grad():
            self.plain = [dense(x) for x in batches]
            self.mirrored = [dense(x.flip(3)) for x in batches]


def distill_briefly(
    model: nn.Module,
    batches: list[torch.Tensor],
    teacher: _TeacherLogits,
    training: ProxyTraining,
    seed: int = 0,
) -> None:
    """``training.steps`` distillation steps on ``batches`` (cycled), each image mirrored with
    probability 1/2 from a fixed seed, so every candidate sees the same sequence."""
    generator = torch.Generator().manual_seed(seed)
    loss_fn = KDLoss(alpha=0.0, temperature=training.temperature)
    optimizer = torch.optim.SGD(model.parameters(), lr=training.lr, momentum=0.9, nesterov=True)
    device = torch.device("cpu")
    model.train()
    for step in range(training.steps):
        i = step % len(batches)
        x = batches[i]
        flip = torch.rand(x.shape[0], generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        target = torch.where(flip[:, None], teacher.mirrored[i], teacher.plain[i])
        with autocast(device, training.bf16):
            logits = model(x)
        loss = loss_fn(logits.float(), target, target.argmax(1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()


class PlanScorer:
    """Prunes the dense model to a plan, re-estimates BN (after a short distillation when
    ``training`` asks for one), and scores it on validation images: one candidate,
    ``knobs -> (top-1, params, MACs, seconds)``. Picklable, so a scoring pool's workers each build
    one (:mod:`edgeslim.engine.executors.pool`)."""

    def __init__(
        self,
        dense: nn.Module,
        layout: ModelLayout,
        batches: list[torch.Tensor],
        val: ImageTensors,
        training: ProxyTraining | None = None,
        bn_count: int | None = None,
    ) -> None:
        self.dense = dense
        self.layout = layout
        self.batches = batches
        self.bn_count = bn_count or len(batches)
        self.val = val
        self.training = training if training is not None and training.steps > 0 else None
        self.teacher = _TeacherLogits(dense, batches) if self.training is not None else None

    def __call__(self, knobs: Mapping[str, int]) -> tuple[float, int, int, float]:
        began = time.perf_counter()
        model = pruned_copy(self.dense, self.layout, self.layout.knob_plan(knobs))
        if self.training is not None and self.teacher is not None:
            adapt_batchnorm(model, self.batches, self.bn_count)  # a sane start for the BN layers
            distill_briefly(model, self.batches, self.teacher, self.training)
        top1, params, macs = proxy_score(model, self.batches[: self.bn_count], self.val)
        return top1, params, macs, time.perf_counter() - began


# ---------------------------------------------------------------------------------------------
# search strategies


class _Search:
    """Shared state: the predictor, the scoring pool, the trial log (resume) and the clock."""

    def __init__(
        self,
        layout: ModelLayout,
        predictor: LatencyPredictor,
        pool: ScoringPool,
        target_ms: float,
        scale: float,
        max_params: int | None,
        log: Path,
        deadline: float,
        progress: Callable[[str], None] | None,
        measure: Callable[[Mapping[str, int]], float] | None = None,
    ) -> None:
        self.layout = layout
        self.measure = measure  # knobs -> latency measured on the runtime (drift-corrected)
        self.local: tuple[float, float] | None = None  # (model's prediction, measurement) of one plan
        self.predictor = predictor
        self.pool = pool
        self.target = target_ms
        self.scale = scale  # int8 / fp32 measured on the dense model (1 for fp32)
        self.max_params = max_params
        self.log = log
        self.deadline = deadline
        self.progress = progress
        self.trials: dict[str, Trial] = {}
        if log.is_file():
            for line in log.read_text().splitlines():
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    t = Trial(**json.loads(line))
                    self.trials[self._key(t.knobs)] = t
        self.resumed = len(self.trials)

    @staticmethod
    def _key(knobs: Mapping[str, int]) -> str:
        return json.dumps(dict(sorted(knobs.items())))

    def _model(self, knobs: Mapping[str, int]) -> float:
        plan = self.layout.knob_plan(knobs)
        return self.scale * self.predictor.predict(self.layout.widths(plan))

    def predict(self, knobs: Mapping[str, int]) -> float:
        """The predictor's latency, re-anchored at the last plan measured for real (if any)."""
        model = self._model(knobs)
        if self.local is None:
            return model
        predicted, measured = self.local
        return model * measured / predicted

    def measure_and_anchor(self, knobs: Mapping[str, int]) -> float | None:
        """Measure ``knobs`` on the runtime and anchor later predictions at it (None: cannot measure)."""
        if self.measure is None:
            return None
        measured = self.scale * self.measure(knobs)
        self.local = (self._model(knobs), measured)
        return measured

    def out_of_time(self) -> bool:
        return time.perf_counter() > self.deadline

    def evaluate(self, knobs: Mapping[str, int]) -> Trial:
        return self.evaluate_many([knobs])[0]

    def evaluate_many(self, many: Sequence[Mapping[str, int]]) -> list[Trial]:
        """Score the candidates not scored before, all at once on the pool; log each one."""
        keys = [self._key(knobs) for knobs in many]
        todo: dict[str, dict[str, int]] = {}
        for key, knobs in zip(keys, many, strict=True):
            if key not in self.trials:
                todo.setdefault(key, dict(knobs))
        if todo:
            scores = self.pool.map(list(todo.values()))
            with self.log.open("a") as f:
                for (key, knobs), (top1, params, macs, seconds) in zip(todo.items(), scores, strict=True):
                    trial = Trial(knobs, self.predict(knobs), top1, params, macs, seconds)
                    self.trials[key] = trial
                    f.write(json.dumps(trial.to_dict()) + "\n")
        return [self.trials[key] for key in keys]

    def fits(self, trial: Trial) -> bool:
        return trial.predicted_ms <= self.target and (
            self.max_params is None or trial.params <= self.max_params
        )

    def dense_knobs(self) -> dict[str, int]:
        return {k.name: k.size for k in self.layout.knobs}

    def floor_knobs(self) -> dict[str, int]:
        return {k.name: self.layout.knob_choices(k)[-1] for k in self.layout.knobs}

    def best(self) -> Trial | None:
        fitting = [t for t in self.trials.values() if self.fits(t) and t.proxy_top1 is not None]
        return max(fitting, key=lambda t: (t.proxy_top1 or 0.0, -t.predicted_ms), default=None)


def _greedy(search: _Search, iterations: int) -> Trial | None:
    """NetAdapt over knobs: each step cuts the latency by about one iteration's share.

    Every step's choice is measured on the runtime and later predictions are anchored at it, so the
    search ends on a measured latency within the budget; choosing among candidates on predictions
    alone favours the ones whose saving is over-predicted (a first run ended at 0.88 of the dense
    latency for a predicted 0.77).
    """
    knobs = search.dense_knobs()
    current = search.predict(knobs)
    step = max((current - search.target) / iterations, 1e-6)
    for iteration in range(10 * iterations):
        if current <= search.target:
            trial_now = search.evaluate(knobs)
            if search.max_params is None or trial_now.params <= search.max_params:
                return _grow_back(search, trial_now)
        goal = max(search.target, current - step)
        candidates: list[dict[str, int]] = []
        for knob in search.layout.knobs:
            smaller = [k for k in search.layout.knob_choices(knob) if k < knobs[knob.name]]
            if not smaller:
                continue
            chosen = smaller[-1]
            for k in smaller:  # largest first: the smallest cut that reaches the goal
                if search.predict({**knobs, knob.name: k}) <= goal:
                    chosen = k
                    break
            candidates.append({**knobs, knob.name: chosen})
        if not candidates:
            break
        if search.out_of_time():  # no time to score: take the biggest predicted saving
            knobs = min(candidates, key=search.predict)
        else:
            scored = search.evaluate_many(candidates)
            reaching = [t for t in scored if search.predict(t.knobs) <= goal + 1e-9] or scored
            best = max(reaching, key=lambda t: (t.proxy_top1 or 0.0, -search.predict(t.knobs)))
            knobs = best.knobs
        predicted = search.predict(knobs)
        measured = search.measure_and_anchor(knobs)
        current = measured if measured is not None else predicted
        _say(
            search.progress,
            f"greedy step {iteration + 1}: predicted {predicted:.3f} ms"
            + (f", measured {measured:.3f} ms" if measured is not None else "")
            + f" (target {search.target:.3f})",
        )
    return None


def _grow_back(search: _Search, trial: Trial) -> Trial:
    """Spend what the last cut left of the budget: give channels back, one knob one step at a time
    (the most accurate of the candidates predicted within the budget), while the measured latency
    stays within it. A cut overshoots by up to one step (a first run ended at 0.70 of the dense
    latency for a budget of 0.75), and those milliseconds are accuracy given away."""
    while not search.out_of_time():
        grown: list[dict[str, int]] = []
        for knob in search.layout.knobs:
            larger = [k for k in search.layout.knob_choices(knob) if k > trial.knobs[knob.name]]
            candidate = {**trial.knobs, knob.name: larger[-1]} if larger else None
            if candidate is not None and search.predict(candidate) <= search.target:
                grown.append(candidate)
        scored = [
            t
            for t in search.evaluate_many(grown)
            if search.max_params is None or t.params <= search.max_params
        ]
        if not scored:
            break
        best = max(scored, key=lambda t: (t.proxy_top1 or 0.0, -search.predict(t.knobs)))
        predicted = search.predict(best.knobs)
        measured = search.measure_and_anchor(best.knobs)
        _say(
            search.progress,
            f"greedy grow-back: predicted {predicted:.3f} ms"
            + (f", measured {measured:.3f} ms" if measured is not None else "")
            + f" (target {search.target:.3f})",
        )
        if measured is not None and measured > search.target:
            break  # over the budget: keep the last plan measured within it
        trial = best
    return trial


def _evolution(search: _Search, seed: int, population: int = 12) -> Trial | None:
    """Mutate the best fitting plans (aging-free, tournament of the fittest), until time runs out."""
    rng = random.Random(seed)
    layout = search.layout
    choices = {k.name: layout.knob_choices(k) for k in layout.knobs}
    greedy = _greedy(search, 3)
    pool = [t for t in search.trials.values() if search.fits(t)] or ([greedy] if greedy else [])
    generation = 0
    while not search.out_of_time() and pool and generation < 50:
        generation += 1
        parents = sorted(pool, key=lambda t: -(t.proxy_top1 or 0.0))[:population]
        children: list[dict[str, int]] = []
        for parent in parents[: max(2, population // 3)]:
            child = dict(parent.knobs)
            for name in rng.sample(sorted(child), k=min(2, len(child))):
                options = choices[name]
                i = options.index(child[name]) if child[name] in options else 0
                child[name] = options[max(0, min(len(options) - 1, i + rng.choice((-2, -1, 1, 2))))]
            if search.predict(child) <= search.target and search._key(child) not in search.trials:
                children.append(child)
        pool += [trial for trial in search.evaluate_many(children) if search.fits(trial)]
    return search.best()


def _optuna(search: _Search, seed: int) -> Trial | None:
    """NSGA-II (optuna) over the knobs: maximize proxy top-1, minimize predicted latency."""
    try:
        import optuna  # optional dependency: pip install 'edgeslim[search]'
    except ImportError as exc:
        raise ConfigError(
            "strategy optuna needs optuna: pip install 'edgeslim[search]' (or use strategy greedy)",
            field="CompressOptions.strategy",
        ) from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    layout = search.layout
    choices = {k.name: layout.knob_choices(k) for k in layout.knobs}

    sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for trial in search.trials.values():  # resume: what was scored already seeds the population
        if all(trial.knobs.get(n) in c for n, c in choices.items()):
            study.add_trial(
                optuna.trial.create_trial(
                    params=dict(trial.knobs),
                    distributions={
                        n: optuna.distributions.CategoricalDistribution(c) for n, c in choices.items()
                    },
                    values=[trial.proxy_top1 or 0.0, trial.predicted_ms],
                    constraints={"latency": trial.predicted_ms - search.target},
                )
            )

    batch = max(4, search.pool.workers)  # one ask per worker at a time, scored together
    while not search.out_of_time():
        asked = [study.ask() for _ in range(batch)]
        knobs = [{n: t.suggest_categorical(n, c) for n, c in choices.items()} for t in asked]
        predicted = [search.predict(k) for k in knobs]
        # far outside the budget: not worth scoring
        worth = [k for k, p in zip(knobs, predicted, strict=True) if p <= search.target * 1.5]
        scored = {search._key(t.knobs): t for t in search.evaluate_many(worth)}
        for question, k, p in zip(asked, knobs, predicted, strict=True):
            question.set_constraint("latency", p - search.target)  # feasible at <= 0
            top1 = scored[search._key(k)].proxy_top1 if search._key(k) in scored else 0.0
            study.tell(question, [top1 or 0.0, p])
    return search.best()


# ---------------------------------------------------------------------------------------------
# the whole run


def _check_out(out: Path) -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(
            f"compress.out: {str(out)!r} exists and is not an empty folder; choose a new --out",
            field="compress.out",
        )
    return out.with_name(out.name + ".partial")


def _int8_scale(
    dense: nn.Module, layout: ModelLayout, train: ImageTensors, timer: PairedTimer, work: Path
) -> float:
    """Measured int8 / FP32 latency of the dense model on the runtime (static PTQ, QDQ ONNX), timed
    alternately with the FP32 dense model."""
    result = quantize(dense, StaticQuant(), calibration=BatchLoader(train, 64, shuffle=True))
    q = work / "dense-int8.onnx"
    export(result.model.eval(), "onnx", torch.zeros(1, *layout.input_shape), out=q, check=False)
    return timer.measure(q).ratio


#: uniform-ratio plans scored beside every search: the baseline its front is compared with
UNIFORM_REFERENCES: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def _score_references(search: _Search, max_layer_ratio: float) -> dict[str, Trial]:
    """Score the uniform-ratio plans (every group losing the same share) like any candidate."""
    wanted: dict[str, dict[str, int]] = {}
    for ratio in UNIFORM_REFERENCES:
        if ratio <= max_layer_ratio:
            plan = search.layout.uniform_plan(ratio)
            wanted[f"uniform {ratio:.0%}"] = {k.name: plan[k.groups[0]] for k in search.layout.knobs}
    return dict(zip(wanted, search.evaluate_many(list(wanted.values())), strict=True))


def _store_candidates(
    search: _Search, references: Mapping[str, Trial], winner: Trial, result: CompressResult
) -> list[SearchCandidate]:
    """Every scored plan as the store records it; the winner with what it measured after fine-tuning."""
    label_of = {search._key(t.knobs): label for label, t in references.items()}
    order = [k.name for k in search.layout.knobs]
    chosen_key = search._key(winner.knobs)
    rows = []
    for key, trial in search.trials.items():
        chosen = key == chosen_key
        rows.append(
            SearchCandidate(
                label=label_of.get(key) or "/".join(str(trial.knobs.get(n, "-")) for n in order),
                role="chosen" if chosen else ("reference" if key in label_of else "candidate"),
                top1_proxy=trial.proxy_top1,
                latency_ms_predicted=trial.predicted_ms,
                latency_ms=result.latency_ms if chosen else None,
                params=trial.params,
                macs=trial.macs,
                top1=result.top1 if chosen else None,
                plan={"knobs": dict(trial.knobs)},
                latency_spread=result.latency_spread if chosen else None,
            )
        )
    return rows


def _closest(search: _Search, knobs: Mapping[str, int]) -> dict[str, Any]:
    plan = search.layout.knob_plan(knobs)
    return {
        "plan": {"knobs": dict(knobs), "ratios": search.layout.ratios(plan)},
        "latency_ms_predicted": search.predict(knobs),
        "max_latency_ms": search.target,
    }


def compress(
    model: ModelSource,
    data: DataSource,
    budget: Budget,
    *,
    out: Path,
    options: CompressOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> CompressResult:
    """Find, fine-tune and measure the most accurate pruned (optionally int8) model within ``budget``.

    Raises :class:`NoPlanFits` (with the closest plan) when no plan the limits allow meets the budget,
    before searching when even the smallest plan is predicted above it.
    """
    options = options or CompressOptions()
    out = Path(out)
    work = _check_out(out)
    if options.db is not None:
        check_store(options.db, "CompressOptions.db")
    clock = _Clock(options.budget_minutes)
    progress = _timed(progress, clock)
    work.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    with torch_threads(budget.threads):
        test = data.load("test")
        train = data.load("train")
        val_source = dataclasses.replace(data, limit=options.val_images)
        val = val_source.load("val")
        dense, spec = model.build(default_num_classes=test.num_classes)
        test, train, val = (fit_input(d, spec) for d in (test, train, val))
        input_shape = tuple(test.input_shape)
        check_classes(dense, test, input_shape)
        began = time.perf_counter()
        top1_dense = evaluate(dense, BatchLoader(test, 256)).top1
        eval_seconds = time.perf_counter() - began
        macs_dense, params_dense = count_macs(dense, input_shape), count_params(dense)
        _say(progress, f"baseline top-1 {top1_dense:.2f}% ({macs_dense / 1e6:.1f} MMAC)")

        round_to = options.round_to
        if round_to == "auto":
            choice = choose_round_to(budget.runtime)
            round_to = choice.round_to
            notes.append(f"round_to {round_to} (measured on {budget.runtime})")
        layout, predictor, timed, timer = build_predictor(
            dense,
            input_shape,
            budget.runtime,
            budget.batch_size,
            budget.threads,
            work,
            round_to=round_to,
            max_layer_ratio=options.max_layer_ratio,
            passes=options.passes,
            progress=progress,
            residual=options.residual,
        )
        if not layout.knobs:
            raise ConfigError(
                f"compress.model: {spec.get('name')} has no prunable channel groups"
                + (
                    " outside its residual streams: use --residual prune"
                    if options.residual == "keep"
                    else ""
                ),
                field="compress.model",
            )
        table = predictor.table
        point_seconds = predictor.seconds_per_point
        dense_ms = predictor.points[0][1]
        target_ms = budget.target_ms(dense_ms)
        scale = 1.0
        if options.int8:
            scale = _int8_scale(dense, layout, train, timer, work)
            notes.append(
                f"int8 latency predicted as FP32 x {scale:.3f} (int8/FP32 measured on the dense model)"
            )
        notes.append(
            f"profile {table.profile_id}: {timed} layer timings measured now, {len(table.entries)} in the table; "
            f"predictor {predictor.a:.3f} x layers + {predictor.b:.3f} ms"
        )
        _say(progress, f"dense {dense_ms:.3f} ms measured on {budget.runtime} (batch {budget.batch_size})")

        bytes_per_param = 1 if options.int8 else 4
        max_params = (
            int(budget.max_size_mb * 1e6 / bytes_per_param) if budget.max_size_mb is not None else None
        )
        # every candidate is scored on the same BN batches, by a pool of workers (or this process)
        setup = functools.partial(
            PlanScorer,
            dense,
            layout,
            bn_batches(train, max(options.bn_batches, options.proxy_steps), options.seed),
            val,
            ProxyTraining(options.proxy_steps, lr=options.lr, bf16=options.bf16),
            bn_count=options.bn_batches,
        )
        with scoring_pool(options.executor, setup, workers=options.workers, address=options.address) as pool:
            search_minutes = max(0.05, clock.left() * options.search_share)
            search = _Search(
                layout,
                predictor,
                pool,
                target_ms,
                scale,
                max_params,
                work / "trials.jsonl",
                time.perf_counter() + 60 * search_minutes,
                progress,
                measure=lambda knobs: (
                    measure_plan(dense, layout, layout.knob_plan(knobs), timer, work).corrected_ms
                ),
            )
            if search.resumed:
                _say(progress, f"resume: {search.resumed} scored candidates read from {search.log}")
            floor = search.floor_knobs()
            floor_ms = search.predict(floor)
            if floor_ms > target_ms:
                # a predictor calibrated on a noisy machine can misjudge the floor (a run predicted
                # 0.78 of the dense latency for a floor below a plan measured at 0.70): measure it
                measured = search.measure_and_anchor(floor)
                floor_ms = measured if measured is not None else floor_ms
                _say(progress, f"floor plan predicted above the budget, measured {floor_ms:.3f} ms")
            if floor_ms > target_ms:
                shutil.rmtree(work, ignore_errors=True)
                raise NoPlanFits(
                    f"the budget {target_ms:.3f} ms is below this profile's floor: even the smallest plan "
                    f"(every group at {1 - options.max_layer_ratio:.0%} of its channels) takes "
                    f"{floor_ms:.3f} ms on {budget.runtime} batch {budget.batch_size} "
                    f"(dense {dense_ms:.3f} ms); raise --max-latency-ms (or lower --min-speedup), use --int8 "
                    "or a smaller model",
                    _closest(search, floor),
                )
            _say(
                progress, f"search ({options.strategy}, {search_minutes:.1f} min, {len(layout.knobs)} knobs)"
            )
            if options.strategy == "greedy":
                winner = _greedy(search, options.iterations)
            elif options.strategy == "evolution":
                winner = _evolution(search, options.seed)
            else:
                winner = _optuna(search, options.seed)
            if winner is None:
                shutil.rmtree(work, ignore_errors=True)
                raise NoPlanFits(
                    f"no plan found within {target_ms:.3f} ms"
                    + (f" and {budget.max_size_mb:g} MB" if budget.max_size_mb is not None else ""),
                    _closest(search, floor),
                )
            references = _score_references(search, options.max_layer_ratio)
        plan = layout.knob_plan(winner.knobs)
        config = plan_config(layout, plan)

        # fine-tune the winner for the rest of the budget, distilling from the dense model
        checkpoint = work / "model.pt"
        # what follows the fine-tune: evaluation, export and measurement (as timed above), int8 more
        reserve_s = 2 * eval_seconds + 1.5 * point_seconds
        if options.int8:
            reserve_s += 3 * eval_seconds + 2 * point_seconds
        finetune_minutes = clock.left() - reserve_s / 60
        finetune = TrainConfig(
            epochs=1,
            lr=options.lr,
            seed=options.seed,
            warmup_epochs=0.0,
            bf16=options.bf16,
            channels_last=options.bf16,
        )
        _say(progress, f"fine-tune the winner for {max(0.0, finetune_minutes):.1f} min")

        def finish(recovery: Recovery | None, source: DataSource = data) -> PruneOutcome:
            return prune_task(
                model,
                config,
                out=checkpoint,
                data_source=source,
                finetune=finetune if recovery is not None else None,
                recovery=recovery,
                latency_batch_sizes=(),
                progress=False,
                measure_before=False,
            )

        outcome = None
        if not options.finetune:
            notes.append("not fine-tuned (finetune off)")
        elif finetune_minutes > 0.1:
            # a budget shorter than one epoch fine-tunes on a share of the training images instead
            images = len(train)
            for share in (1.0, 0.5, 0.25, 0.125):
                source = data if share == 1.0 else dataclasses.replace(data, train_limit=int(images * share))
                try:
                    outcome = finish(
                        Recovery(distill=options.distill, budget_minutes=clock.left() - reserve_s / 60),
                        source,
                    )
                    if share < 1.0:
                        notes.append(
                            f"fine-tuned on {int(images * share)} of {images} training images (one epoch fits)"
                        )
                    break
                except ConfigError as exc:
                    if exc.field not in ("Recovery.budget_minutes", "TrainConfig.batch_size"):
                        raise
                    if share == 0.125 or exc.field == "TrainConfig.batch_size":
                        notes.append(f"not fine-tuned: {exc}")
                        break
        else:
            notes.append("not fine-tuned: no time was left in the budget")
        if outcome is None:
            outcome = finish(None)
        top1 = outcome.top1_after
        final_model, _ = ModelSource(checkpoint=checkpoint).build()
        if options.int8:
            q = quantize_task(
                ModelSource(checkpoint=checkpoint),
                StaticQuant(),
                out=work / "model-int8.pt",
                data_source=data,
                progress=False,
            )
            if q.onnx_path is None:
                raise EdgeslimError("static quantization wrote no QDQ ONNX file")
            artifact = work / "model-int8.onnx"
            shutil.move(str(q.onnx_path), artifact)
            top1 = q.top1_deployed if q.top1_deployed is not None else q.top1_simulated
        else:
            artifact = export_float(final_model, work / "model.onnx", input_shape)
        # alternating with the dense model: a side-by-side speed-up, in 3x the passes of a search
        # step since the budget's verdict rests on it (3 passes strayed 15% on a busy VM)
        timing = timer.measure(artifact, passes=3 * options.passes)
        latency_ms, spread = timing.ms, timing.spread
        params, macs = count_params(final_model), count_macs(final_model, input_shape)
        size = artifact.stat().st_size
        fits: dict[str, bool] = {}
        if budget.max_latency_ms is not None:
            fits["latency"] = latency_ms <= budget.max_latency_ms
        if budget.min_speedup is not None:
            fits["speedup"] = 1.0 / timing.ratio >= budget.min_speedup
        if budget.max_size_mb is not None:
            fits["size"] = size <= budget.max_size_mb * 1e6
        if budget.max_accuracy_drop is not None and top1 is not None:
            fits["accuracy"] = top1_dense - top1 <= budget.max_accuracy_drop
        noisy = spread > DEFAULT_NOISE_THRESHOLD
        if noisy:
            notes.append(
                f"noisy: the speed-up over the dense model spread {spread:.0%} across "
                f"{3 * options.passes} passes"
            )
        result = CompressResult(
            artifact=out / artifact.name,
            checkpoint=out / checkpoint.name,
            runtime=budget.runtime,
            batch_size=budget.batch_size,
            latency_ms=latency_ms,
            latency_spread=spread,
            latency_noisy=noisy,
            latency_ms_predicted=search.predict(winner.knobs),
            latency_ms_dense=timing.reference_ms,
            speedup=1.0 / timing.ratio,
            top1=top1,
            top1_baseline=top1_dense,
            size_bytes=size,
            macs=macs,
            params=params,
            macs_dense=macs_dense,
            params_dense=params_dense,
            plan={
                "knobs": dict(winner.knobs),
                "widths": {g: k for g, k in sorted(plan.items())},
                "layer_ratios": list(config.layer_ratios),
                "residual": options.residual,
                "bits": 8 if options.int8 else 32,
            },
            trials=len(search.trials),
            budget_minutes_used=clock.used(),
            fits=fits,
            strategy=options.strategy,
            predictor=predictor.to_dict(),
            notes=notes + list(outcome.notes),
            max_latency_ms=target_ms,
            references=[
                {
                    "label": label,
                    "top1_proxy": t.proxy_top1,
                    "latency_ms_predicted": t.predicted_ms,
                    "params": t.params,
                    "macs": t.macs,
                }
                for label, t in references.items()
            ],
        )
        if options.db is not None:
            with Store.open(options.db) as store:
                result.experiment = free_name(store, out.name)
                record_search(
                    store,
                    result.experiment,
                    "compress",
                    {**result.to_dict(), "model": spec.get("name")},
                    _store_candidates(search, references, winner, result),
                    env=env_fingerprint(),
                )
        (work / "result.json").write_text(json.dumps(result.to_dict(), indent=1, default=str))
        for leftover in [*work.glob("*.onnx.data"), work / "dense.onnx", work / "dense-int8.onnx"]:
            leftover.unlink(missing_ok=True)
    if out.exists():
        out.rmdir()
    os.replace(work, out)
    return result
