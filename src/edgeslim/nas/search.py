"""Find the most accurate subnet of a trained supernet under a latency budget on a real runtime.

Latency: the device profile of ``edgeslim profile`` (per-layer tables on ONNX Runtime or OpenVINO,
cached per machine) priced over the largest subnet's layers, a subnet being the widths of the
layers it keeps and the blocks it drops; the predictor is calibrated on subnets exported and timed
end to end alternately with the largest (so the machine's drift cancels), and anchored at the
largest. Accuracy: a subnet's weights are copied out of the supernet, its BatchNorm statistics
re-estimated on training batches and top-1 measured on held-out validation images. Strategies:
``evolution`` (population, mutation, crossover; Real et al./OFA), ``random`` (the baseline any
search must beat) and ``dnas`` (Gumbel-softmax over the genes against the frozen supernet, with the
exact expected latency of this predictor as a penalty: :mod:`edgeslim.nas.dnas`). The best few
are timed end to end; the most accurate one that meets the budget when measured is kept, optionally
fine-tuned by distillation from the supernet's largest net, and saved as an ordinary checkpoint
(the zoo model the space's supernet exports: ``resnet_cifar`` with explicit blocks and a channel
spec, ``mobilenet_v2_blocks`` with explicit blocks). Elastic kernels are priced from the table at
their own kernel size (``LayerShape.with_kernel``), every kernel choice profiled up front.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch

from edgeslim.bench import env_fingerprint
from edgeslim.bench.counting import count_macs, count_params
from edgeslim.bench.latency import threads as torch_threads
from edgeslim.checkpoint import save_checkpoint
from edgeslim.config import Config
from edgeslim.data import BatchLoader, ImageTensors
from edgeslim.engine.executors.pool import ScoringPool, check_pool, scoring_pool
from edgeslim.engine.searches import SearchCandidate, check_store, free_name, record_search
from edgeslim.engine.store import Store
from edgeslim.errors import ConfigError
from edgeslim.nas.dnas import LayerArgs, search_dnas
from edgeslim.nas.space import SearchSpace, SubnetChoice
from edgeslim.nas.supernet import ExportedSubnet, Supernet, check_new_file, extract_subnet, load_supernet
from edgeslim.nas.train import distill_subnet
from edgeslim.search import Budget, LatencyPredictor, LatencyTable, LayerShape, ModelLayout
from edgeslim.search.calibrate import PairedTimer, PairedTiming, export_float, measure_model
from edgeslim.search.compression import adapt_batchnorm, bn_batches, proxy_score
from edgeslim.tasks import DataSource
from edgeslim.train import evaluate

__all__ = [
    "NAS_STRATEGIES",
    "Candidate",
    "NasOptions",
    "NasResult",
    "SubnetPredictor",
    "SubnetScorer",
    "search_subnet",
]

NasStrategy = Literal["evolution", "random", "dnas"]
NAS_STRATEGIES: tuple[str, ...] = ("evolution", "random", "dnas")
CALIBRATION_SEED = 2_000_003


@dataclasses.dataclass(frozen=True)
class NasOptions(Config):
    """How :func:`search_subnet` searches.

    ``max_evals``: subnets scored at most; ``budget_minutes``: wall clock for the search itself
    (profiling and calibration not counted). ``population``/``parents``/``mutation``: the evolution.
    ``finalists``: the best subnets timed end to end. ``calibration_subnets``: random subnets timed
    to calibrate the predictor (plus the largest, the smallest and the space's references).
    ``finetune_minutes``: distil the winner from the largest net for this long (0: no fine-tune).
    ``executor``, ``workers``, ``address``: where subnets are scored (``local`` processes or a ``ray``
    cluster, as sweeps run: :mod:`edgeslim.engine.executors.pool`); any pool size gives the same scores.
    ``db``: also record every scored subnet, the references and the choice in this result store, as
    an experiment named after ``out``'s stem (``edgeslim report NAME --db DB`` draws the search).
    ``dnas_*`` (strategy ``dnas``, :mod:`edgeslim.nas.dnas`): architecture steps at most, Adam's learning
    rate on the logits, the latency penalty's initial weight (adapted), images per step, steps between
    decoding (argmax plus ``dnas_samples`` drawn subnets scored).
    """

    strategy: NasStrategy = "evolution"
    max_evals: int = 200
    budget_minutes: float = 20.0
    population: int = 24
    parents: int = 8
    mutation: float = 0.25
    finalists: int = 3
    calibration_subnets: int = 8
    val_images: int = 1000
    bn_batches: int = 8
    finetune_minutes: float = 0.0
    passes: int = 3
    executor: str = "local"
    workers: int | None = None
    address: str | None = None
    seed: int = 0
    dnas_steps: int = 2000
    dnas_lr: float = 0.05
    dnas_lambda: float = 1.0
    dnas_batch_size: int = 64
    dnas_decode_every: int = 50
    dnas_samples: int = 3
    db: str | None = None

    def validate(self) -> None:
        check_pool(self.executor, self.workers, self.address, "NasOptions")
        if self.strategy not in NAS_STRATEGIES:
            raise ConfigError(
                f"NasOptions.strategy must be one of {', '.join(NAS_STRATEGIES)}, not {self.strategy!r}",
                field="NasOptions.strategy",
            )
        for name, low in (
            ("max_evals", 1),
            ("population", 2),
            ("parents", 1),
            ("finalists", 1),
            ("calibration_subnets", 0),
            ("val_images", 1),
            ("bn_batches", 1),
            ("passes", 1),
            ("seed", 0),
            ("dnas_steps", 1),
            ("dnas_batch_size", 1),
            ("dnas_decode_every", 1),
            ("dnas_samples", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(
                    f"NasOptions.{name} must be an integer >= {low}, got {value!r}",
                    field=f"NasOptions.{name}",
                )
        if not (math.isfinite(self.budget_minutes) and self.budget_minutes > 0):
            raise ConfigError(
                f"NasOptions.budget_minutes must be a positive number, got {self.budget_minutes}",
                field="NasOptions.budget_minutes",
            )
        if not (math.isfinite(self.finetune_minutes) and self.finetune_minutes >= 0):
            raise ConfigError(
                f"NasOptions.finetune_minutes must be >= 0, got {self.finetune_minutes}",
                field="NasOptions.finetune_minutes",
            )
        for name in ("dnas_lr", "dnas_lambda"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(
                    f"NasOptions.{name} must be a positive number, got {value}", field=f"NasOptions.{name}"
                )
        if not 0 < self.mutation <= 1:
            raise ConfigError(
                f"NasOptions.mutation must be in (0, 1], got {self.mutation}", field="NasOptions.mutation"
            )


@dataclasses.dataclass
class Candidate:
    """One scored subnet: proxy top-1, predicted latency, and the measured one for finalists."""

    subnet: SubnetChoice
    top1_proxy: float
    latency_ms_predicted: float
    params: int
    macs: int
    latency_ms: float | None = None
    reference: str | None = None  # the zoo name of a hand-designed net
    latency_spread: float | None = None  # of the measured latency's paired passes

    def to_dict(self) -> dict[str, Any]:
        return {
            "subnet": self.subnet.to_dict(),
            "label": self.subnet.label(),
            "top1_proxy": self.top1_proxy,
            "latency_ms_predicted": self.latency_ms_predicted,
            "latency_ms": self.latency_ms,
            "latency_spread": self.latency_spread,
            "params": self.params,
            "macs": self.macs,
            "reference": self.reference,
        }


@dataclasses.dataclass(frozen=True)
class NasResult:
    """What ``edgeslim nas search --json`` prints."""

    path: Path
    space: str
    subnet: SubnetChoice
    latency_ms: float
    latency_ms_predicted: float
    max_latency_ms: float
    latency_ms_largest: float
    top1: float | None
    top1_proxy: float
    params: int
    macs: int
    size_bytes: int
    candidates_evaluated: int
    strategy: str
    runtime: str
    batch_size: int
    fits: bool
    finetune_steps: int
    minutes: float
    references: list[dict[str, Any]]
    candidates: list[dict[str, Any]]
    calibration: dict[str, Any]
    supernet_training: dict[str, Any]
    experiment: str | None = None  # its name in the result store (``NasOptions.db``)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["path"] = str(self.path)
        d["subnet"] = self.subnet.to_dict()
        d["label"] = self.subnet.label()
        return d


class SubnetPredictor:
    """Latency of any subnet from the largest net's per-layer table (see the module docstring)."""

    def __init__(self, net: Supernet[Any], table: LatencyTable, input_shape: tuple[int, ...]) -> None:
        self.space: SearchSpace[Any] = net.space
        self.num_classes = net.num_classes
        self.layer_plan = net.layer_plan
        largest = extract_subnet(net, net.space.largest())
        self.layers = ModelLayout(largest, input_shape).layers
        self.predictor = LatencyPredictor(table, self.layers)
        self.variants = [self.layers[n].with_kernel(k) for n, ks in net.elastic_kernels().items() for k in ks]

    def shapes(self) -> list[LayerShape]:
        """Every layer shape a subnet may have, up to widths (what the table must hold)."""
        return [*self.layers.values(), *self.variants]

    def layer_args(self, subnet: Any) -> LayerArgs:
        """``subnet``'s (widths, absent layers, replaced full shapes) for ``LatencyPredictor``."""
        plan = self.layer_plan(subnet)
        shapes = {n: self.layers[n].with_kernel(k) for n, k in plan.kernels.items()}
        return plan.widths, plan.absent, shapes

    def features(self, subnet: Any) -> dict[str, float]:
        return self.predictor.features(*self.layer_args(subnet))

    def predict(self, subnet: Any) -> float:
        return self.predictor.predict(*self.layer_args(subnet))


class SubnetScorer:
    """One subnet's proxy accuracy: its weights copied out of the supernet, BN re-estimated on fixed
    training batches, top-1 on the validation images; ``subnet -> (top-1, params, MACs)``.
    Picklable, so a scoring pool's workers each build one."""

    def __init__(self, net: Supernet[Any], batches: list[torch.Tensor], val: ImageTensors) -> None:
        self.net, self.batches, self.val = net, batches, val

    def __call__(self, subnet: Any) -> tuple[float, int, int]:
        return proxy_score(extract_subnet(self.net, subnet), self.batches, self.val)


class _Scorer:
    """Proxy accuracy of subnets, cached by subnet, scored many at a time on a pool."""

    def __init__(
        self,
        net: Supernet[Any],
        predictor: SubnetPredictor,
        train: ImageTensors,
        pool: ScoringPool,
        options: NasOptions,
    ) -> None:
        self.net, self.predictor, self.pool = net, predictor, pool
        self.bn_loader = BatchLoader(train, 128, shuffle=True, seed=options.seed)
        self.seen: dict[Any, Candidate] = {}

    def model(self, subnet: Any, bn_batches: int) -> ExportedSubnet:
        """The subnet with BN re-estimated on ``bn_batches`` batches (for the winner: more than the proxy)."""
        exported = self.net.export(subnet)
        adapt_batchnorm(exported.model, self.bn_loader, bn_batches)
        return exported

    def score_many(self, subnets: list[Any]) -> list[Candidate]:
        todo = list(dict.fromkeys(s for s in subnets if s not in self.seen))
        for subnet, (top1, params, macs) in zip(todo, self.pool.map(todo), strict=True):
            self.seen[subnet] = Candidate(subnet, top1, self.predictor.predict(subnet), params, macs)
        return [self.seen[s] for s in subnets]

    def score(self, subnet: Any, reference: str | None = None) -> Candidate:
        (candidate,) = self.score_many([subnet])
        if reference is not None:
            candidate.reference = reference
        return candidate


def _feasible(
    space: SearchSpace[Any], predictor: SubnetPredictor, target: float, rng: random.Random, tries: int = 2000
) -> Any | None:
    for _ in range(tries):
        subnet = space.sample(rng)
        if predictor.predict(subnet) <= target:
            return subnet
    return None


def _mutate(space: SearchSpace[Any], subnet: Any, rate: float, rng: random.Random) -> Any:
    genes = space.genes(subnet)
    for i, choices in enumerate(space.gene_choices()):
        if rng.random() < rate:
            genes[i] = rng.choice(choices)
    return space.from_genes(genes)


def _crossover(space: SearchSpace[Any], a: Any, b: Any, rng: random.Random) -> Any:
    return space.from_genes(
        [x if rng.random() < 0.5 else y for x, y in zip(space.genes(a), space.genes(b), strict=True)]
    )


def _evolve(
    scorer: _Scorer,
    target: float,
    options: NasOptions,
    deadline: float,
    say: Callable[[str], None],
) -> None:
    """Evolution (or random sampling) until ``max_evals`` subnets are scored or time runs out."""
    space, predictor = scorer.net.space, scorer.predictor
    rng = random.Random(options.seed)

    def budget_left() -> bool:
        return len(scorer.seen) < options.max_evals and time.perf_counter() < deadline

    population: list[Candidate] = [c for c in scorer.seen.values() if c.latency_ms_predicted <= target]
    size = options.population if options.strategy == "evolution" else options.max_evals
    while len(population) < size and budget_left():  # sampled a pool's worth at a time
        batch: list[Any] = []
        room = min(scorer.pool.workers, options.max_evals - len(scorer.seen), size - len(population))
        while len(batch) < room:
            subnet = _feasible(space, predictor, target, rng)
            if subnet is None:
                break
            if subnet not in batch:
                batch.append(subnet)
        if not batch:
            break
        population += [c for c in scorer.score_many(batch) if c not in population]
    generation = 0
    while options.strategy == "evolution" and budget_left():
        generation += 1
        parents = sorted(population, key=lambda c: -c.top1_proxy)[: options.parents]
        wanted = min(options.population // 2, options.max_evals - len(scorer.seen))
        offspring: list[Any] = []
        for _ in range(50 * options.population):
            if len(offspring) >= wanted:
                break
            if rng.random() < 0.5:
                child = _mutate(space, rng.choice(parents).subnet, options.mutation, rng)
            else:
                a, b = rng.sample(parents, 2) if len(parents) > 1 else (parents[0], parents[0])
                child = _mutate(space, _crossover(space, a.subnet, b.subnet, rng), options.mutation / 2, rng)
            if child in scorer.seen or child in offspring or predictor.predict(child) > target:
                continue
            offspring.append(child)
        children = scorer.score_many(offspring)  # the whole generation at once, on the pool
        if not children:
            break
        population = sorted(parents + children, key=lambda c: -c.top1_proxy)[: options.population]
        best = population[0]
        say(
            f"generation {generation}: {len(scorer.seen)} subnets scored, best {best.top1_proxy:.2f}% "
            f"at {best.latency_ms_predicted:.3f} ms predicted ({best.subnet.label()})"
        )


def _measure(net: Supernet[Any], subnet: Any, timer: PairedTimer, work: Path) -> PairedTiming:
    return measure_model(extract_subnet(net, subnet), timer, work)


def _calibrate(
    net: Supernet[Any],
    predictor: SubnetPredictor,
    timer: PairedTimer,
    work: Path,
    options: NasOptions,
) -> dict[str, Any]:
    """Time the largest, the smallest, the references and random subnets; fit and anchor."""
    space = net.space
    rng = random.Random(CALIBRATION_SEED + options.seed)
    subnets = [space.largest(), space.smallest()] + [s for _, s in space.reference_subnets()]
    subnets += [space.sample(rng) for _ in range(options.calibration_subnets)]
    unique = list(dict.fromkeys(subnets))
    samples = []
    measured: dict[Any, float] = {}
    spreads: dict[str, float] = {}
    for subnet in unique:
        timing = _measure(net, subnet, timer, work)
        ms = timing.corrected_ms
        measured[subnet] = ms
        spreads[subnet.label()] = timing.spread
        samples.append((predictor.features(subnet), ms))
    predictor.predictor.fit(samples)
    predictor.predictor.anchor_at(samples[0][1])
    errors = [abs(predictor.predict(s) - ms) / ms for s, ms in measured.items()]
    return {
        "subnets": len(unique),
        "largest_ms": samples[0][1],
        "median_fit_error": sorted(errors)[len(errors) // 2],
        "measured": {s.label(): ms for s, ms in measured.items()},
        "spread": spreads,
        "predictor": predictor.predictor.to_dict(),
    }


def search_subnet(
    supernet: str | os.PathLike[str],
    data: DataSource,
    budget: Budget,
    *,
    out: str | os.PathLike[str],
    options: NasOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> NasResult:
    """Search ``supernet`` for the most accurate subnet within ``budget``; save it to ``out``.

    ``budget.min_speedup`` is relative to the supernet's largest net, timed alongside. A budget below
    the smallest subnet's predicted latency is a ConfigError (nothing searched or written).
    """
    options = options or NasOptions()
    out = Path(out)
    check_new_file(out)
    if options.db is not None:
        check_store(options.db, "NasOptions.db")
    if budget.max_accuracy_drop is not None:
        raise ConfigError(
            "Budget.max_accuracy_drop does not apply to a search over a supernet (its subnets have no "
            "uncompressed baseline); leave it out",
            field="Budget.max_accuracy_drop",
        )
    say = progress or (lambda _m: None)
    began = time.perf_counter()
    net, saved = load_supernet(supernet)
    net.eval()
    with torch_threads(budget.threads), tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        test = data.load("test")
        if test.num_classes != net.num_classes:
            raise ConfigError(
                f"the data has {test.num_classes} classes but the supernet {net.num_classes}",
                field="DataSource.path",
            )
        train = data.load("train")
        val = dataclasses.replace(data, limit=options.val_images).load("val")
        input_shape = tuple(test.input_shape)
        table = LatencyTable(budget.runtime, budget.batch_size, budget.threads)
        predictor = SubnetPredictor(net, table, input_shape)
        filled = table.fill(predictor.shapes())
        table.save()
        say(f"profile {table.profile_id}: {filled} layer widths timed now, {len(table.entries)} cached")
        largest_path = export_float(
            extract_subnet(net, net.space.largest()), work / "largest.onnx", input_shape
        )
        timer = PairedTimer(
            largest_path, budget.runtime, input_shape, budget.batch_size, budget.threads, options.passes
        )
        calibration = _calibrate(net, predictor, timer, work, options)
        largest_ms = calibration["largest_ms"]
        target = budget.target_ms(largest_ms)
        smallest_ms = predictor.predict(net.space.smallest())
        say(
            f"predictor calibrated on {calibration['subnets']} subnets (median fit error "
            f"{calibration['median_fit_error']:.1%}); largest {largest_ms:.3f} ms, smallest {smallest_ms:.3f} ms "
            f"predicted, budget {target:.3f} ms"
        )
        if smallest_ms > target:
            field = "Budget.max_latency_ms" if budget.max_latency_ms is not None else "Budget.min_speedup"
            raise ConfigError(
                f"{field}: the budget {target:.3f} ms is below the smallest subnet of {net.space.name!r} "
                f"({smallest_ms:.3f} ms predicted on {budget.runtime} batch {budget.batch_size}); "
                "raise it or choose a smaller space",
                field=field,
            )
        setup = functools.partial(SubnetScorer, net, bn_batches(train, options.bn_batches, options.seed), val)
        with scoring_pool(options.executor, setup, workers=options.workers, address=options.address) as pool:
            scorer = _Scorer(net, predictor, train, pool, options)
            for name, reference in net.space.reference_subnets():
                scorer.score(reference, reference=name)
            deadline = time.perf_counter() + options.budget_minutes * 60.0
            if options.strategy == "dnas":
                search_dnas(scorer, train, target, options, deadline, say)
            else:
                _evolve(scorer, target, options, deadline, say)
        feasible = sorted(
            (c for c in scorer.seen.values() if c.latency_ms_predicted <= target), key=lambda c: -c.top1_proxy
        )
        if not feasible:
            raise ConfigError(
                f"no subnet within {target:.3f} ms was found in {len(scorer.seen)} tries; raise the budget",
                field="Budget.max_latency_ms",
            )
        chosen: Candidate | None = None
        for candidate in feasible[: max(options.finalists, 1) * 2]:
            timing = _measure(net, candidate.subnet, timer, work)
            candidate.latency_ms, candidate.latency_spread = timing.corrected_ms, timing.spread
            say(
                f"finalist {candidate.subnet.label()}: {candidate.top1_proxy:.2f}% proxy, "
                f"{candidate.latency_ms:.3f} ms measured ({candidate.latency_ms_predicted:.3f} predicted)"
            )
            if candidate.latency_ms <= target and (
                chosen is None or candidate.top1_proxy > chosen.top1_proxy
            ):
                chosen = candidate
            measured_count = sum(c.latency_ms is not None for c in feasible)
            if chosen is not None and measured_count >= options.finalists:
                break
        fits = chosen is not None
        if chosen is None:  # none fits when measured: the fastest measured one, reported as a miss
            chosen = min((c for c in feasible if c.latency_ms is not None), key=lambda c: c.latency_ms or 0.0)
        for ref in (c for c in scorer.seen.values() if c.reference is not None):
            if ref.latency_ms is None:
                ref.latency_ms = calibration["measured"].get(ref.subnet.label())
                ref.latency_spread = calibration["spread"].get(ref.subnet.label())
        exported = scorer.model(chosen.subnet, bn_batches=max(options.bn_batches, 32))
        model = exported.model
        steps = 0
        if options.finetune_minutes > 0:
            teacher = scorer.model(net.space.largest(), bn_batches=max(options.bn_batches, 32)).model
            steps = distill_subnet(
                model, teacher, train, options.finetune_minutes, seed=options.seed, progress=say
            )
        top1 = evaluate(model, BatchLoader(test, 256)).top1
        meta = {
            **exported.meta,
            "nas": {
                "space": net.space.name,
                "subnet": chosen.subnet.to_dict(),
                "supernet": str(supernet),
                "runtime": budget.runtime,
                "batch_size": budget.batch_size,
                "latency_ms": chosen.latency_ms,
                "latency_ms_predicted": chosen.latency_ms_predicted,
                "top1": top1,
            },
        }
        path = save_checkpoint(
            out, model, model_name=exported.model_name, model_kwargs=exported.model_kwargs, meta=meta
        )
    references = [c.to_dict() for c in scorer.seen.values() if c.reference is not None]
    result = NasResult(
        path=path,
        space=net.space.name,
        subnet=chosen.subnet,
        latency_ms=float(chosen.latency_ms or 0.0),
        latency_ms_predicted=chosen.latency_ms_predicted,
        max_latency_ms=target,
        latency_ms_largest=largest_ms,
        top1=top1,
        top1_proxy=chosen.top1_proxy,
        params=count_params(model),
        macs=count_macs(model, input_shape),
        size_bytes=path.stat().st_size,
        candidates_evaluated=len(scorer.seen),
        strategy=options.strategy,
        runtime=budget.runtime,
        batch_size=budget.batch_size,
        fits=fits,
        finetune_steps=steps,
        minutes=(time.perf_counter() - began) / 60.0,
        references=references,
        candidates=[c.to_dict() for c in scorer.seen.values()],
        calibration={k: v for k, v in calibration.items() if k != "predictor"},
        supernet_training=saved.meta,
    )
    if options.db is None:
        return result
    with Store.open(options.db) as store:
        result = dataclasses.replace(result, experiment=free_name(store, out.stem))
        summary = {k: v for k, v in result.to_dict().items() if k != "candidates"}
        record_search(
            store,
            str(result.experiment),
            "nas",
            summary,
            [_stored(c, chosen, top1) for c in scorer.seen.values()],
            env=env_fingerprint(),
        )
    return result


def _stored(candidate: Candidate, chosen: Candidate, top1: float | None) -> SearchCandidate:
    """A scored subnet as the store records it (references under their zoo names)."""
    is_chosen = candidate is chosen
    return SearchCandidate(
        label=candidate.reference or candidate.subnet.label(),
        role="chosen" if is_chosen else ("reference" if candidate.reference else "candidate"),
        top1_proxy=candidate.top1_proxy,
        latency_ms_predicted=candidate.latency_ms_predicted,
        latency_ms=candidate.latency_ms,
        params=candidate.params,
        macs=candidate.macs,
        top1=top1 if is_chosen else None,
        plan={"subnet": candidate.subnet.to_dict(), "label": candidate.subnet.label()},
        latency_spread=candidate.latency_spread,
    )
