"""Dry runs: what a plan would run and about how long it would take, running none of it.

``edgeslim sweep EXP --dry-run`` and ``edgeslim run RECIPE --dry-run`` validate the file, plan its
nodes exactly as a real run would (:mod:`edgeslim.engine.plan`), look up which of them the store
already holds, and price the rest from the work each step does (images x epochs x multiply-
accumulates of the model) at a :class:`Throughput` measured by a short probe on this machine
(:func:`probe_throughput`, a few seconds). Nothing is written: no store, no folder, no artifact.

The estimate is coarse on purpose and says so: every step is priced with the MACs of the model its
chain starts from (structured pruning makes the steps after it cheaper, so this is an upper bound
for them), fixed costs (process start, loading, saving) are one ``step_overhead_s`` per step, and
a time-budgeted fine-tune (``budget_minutes``) costs exactly its budget. Measure steps run alone
(``exclusive``), so the wall time is the rest divided over the workers plus the measure steps.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeslim.bench import count_macs
from edgeslim.bench.env import cpu_model
from edgeslim.engine.plan import Node
from edgeslim.engine.steps import (
    DataSpec,
    DistillStep,
    ExportStep,
    MeasureStep,
    PruneStep,
    QuantizeStep,
    StartStep,
    TrainStep,
)
from edgeslim.engine.store import Store
from edgeslim.methods import HandlerTable, method_of
from edgeslim.models import create_model
from edgeslim.train import TrainConfig, build_optimizer

#: QAT trains through fake-quantize nodes: about this much slower per image than float training.
QAT_SLOWDOWN = 1.5
#: Images a measure step's parity check and an export's parity check run (both also in handlers).
PARITY_IMAGES = 256
#: Calibration batches of static quantization are priced at this batch size.
CALIBRATION_BATCH = 128


@dataclasses.dataclass(frozen=True)
class Throughput:
    """How fast this machine trains and runs conv nets, in forward GMACs per second.

    ``train_gmacs_s``: forward MACs of images trained per second (forward + backward + update);
    ``infer_gmacs_s``: forward MACs per second in eval mode; ``step_overhead_s``: what every step
    costs besides (a worker process, loading data and model, saving); ``source``: how it was found.
    """

    train_gmacs_s: float
    infer_gmacs_s: float
    step_overhead_s: float = 5.0
    source: str = "given"

    def __post_init__(self) -> None:
        for name in ("train_gmacs_s", "infer_gmacs_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"Throughput.{name} must be a positive number, got {value!r}")

    def train_s(self, images: float, macs: float) -> float:
        return images * macs / 1e9 / self.train_gmacs_s

    def infer_s(self, images: float, macs: float) -> float:
        return images * macs / 1e9 / self.infer_gmacs_s

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def probe_throughput(
    threads: int | None = None,
    *,
    model: nn.Module | None = None,
    input_shape: tuple[int, int, int] = (3, 32, 32),
    batch: int | None = None,
    steps: int = 3,
) -> Throughput:
    """Time a few training and eval batches with ``threads`` torch threads (the per-worker count a
    run would use): of ResNet-20 (41 MMAC at 32 px, about three seconds on 2 cores) for the
    machine's rate, or of ``model`` itself, whose rate per MAC can be far lower (a deep, narrow
    DenseNet spends its time in per-layer overhead, not in multiply-accumulates). ``batch`` default:
    64, fewer for big models so that a step stays near 4 GMAC."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        name = "resnet20" if model is None else type(model).__name__
        model = create_model("resnet20", num_classes=10) if model is None else model
        macs = count_macs(model, (1, *input_shape))
        batch = batch or max(4, min(64, int(4e9 // max(macs, 1))))
        optimizer = build_optimizer(model, TrainConfig(epochs=1, lr=0.01))
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(batch, *input_shape, generator=generator)
        model.eval()
        with torch.inference_mode():
            classes = int(model(images[:1]).shape[-1])
        labels = torch.randint(0, classes, (batch,), generator=generator)
        loss_fn = nn.CrossEntropyLoss()

        def train_once() -> None:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(images), labels).backward()
            optimizer.step()

        model.train()
        train_once()  # allocation and kernel choice, not timed
        started = time.perf_counter()
        for _ in range(steps):
            train_once()
        train_s = (time.perf_counter() - started) / steps
        model.eval()
        with torch.inference_mode():
            model(images)
            started = time.perf_counter()
            for _ in range(steps):
                model(images)
            infer_s = (time.perf_counter() - started) / steps
    finally:
        torch.set_num_threads(previous)
    gmacs = batch * macs / 1e9
    used = threads if threads is not None else previous
    return Throughput(
        train_gmacs_s=gmacs / train_s,
        infer_gmacs_s=gmacs / infer_s,
        source=f"probe: {name} batch {batch} on {cpu_model()}, {used} thread(s)",
    )


#: How a plan finds one model's rate: ``(model, input shape) -> Throughput`` (a probe of it).
RateOf = Callable[[nn.Module, tuple[int, int, int]], Throughput]


def model_probe(threads: int | None) -> RateOf:
    """Each model's own rate at ``threads`` threads: what dry runs price a plan with."""

    def rate_of(model: nn.Module, input_shape: tuple[int, int, int]) -> Throughput:
        return probe_throughput(threads, model=model, input_shape=input_shape)

    return rate_of


@dataclasses.dataclass(frozen=True)
class DataSize:
    """The images a plan's steps read: training images (after ``train_limit`` and the val holdout)
    and evaluation images (``eval_split`` after ``test_limit``)."""

    train_images: int
    eval_images: int


@dataclasses.dataclass(frozen=True)
class Work:
    """What one step costs: its model's forward MACs per image and the rate it runs at, its
    teacher's (0 MACs: none)."""

    macs: int
    teacher_macs: int
    data: DataSize
    throughput: Throughput
    teacher_throughput: Throughput | None = None

    def teacher(self) -> Work:
        """The teacher's own work (its MACs at its rate), e.g. to price training it."""
        rate = self.teacher_throughput or self.throughput
        return dataclasses.replace(self, macs=self.teacher_macs, throughput=rate, teacher_throughput=None)


@dataclasses.dataclass(frozen=True)
class Cost:
    seconds: float
    basis: str


#: step type -> (step, work) -> Cost. A new step type registers its price here.
COSTS: HandlerTable[Callable[[Any, Work], Cost]] = HandlerTable("step cost")


def _mmac(macs: float) -> str:
    return f"{macs / 1e6:,.1f} MMAC"


def _training(
    train: TrainConfig,
    work: Work,
    *,
    teacher_macs: int = 0,
    teacher_rate: Throughput | None = None,
    slowdown: float = 1.0,
) -> Cost:
    """``train.epochs`` epochs over the training images, with a frozen teacher's forward pass
    (at ``teacher_rate``, default the student's own)."""
    images = train.epochs * work.data.train_images
    seconds = work.throughput.train_s(images, work.macs) * slowdown
    basis = (
        f"{train.epochs} epoch(s) x {work.data.train_images:,} images x {_mmac(work.macs)} "
        f"at {work.throughput.train_gmacs_s:.3g} GMAC/s"
    )
    if teacher_macs:
        seconds += (teacher_rate or work.throughput).infer_s(images, teacher_macs)
        basis += f" + teacher {_mmac(teacher_macs)}"
    return Cost(seconds, basis)


def _recovering(step: PruneStep | QuantizeStep, work: Work, slowdown: float = 1.0) -> Cost:
    """A compression step's fine-tune: its time budget when it has one, else its epochs (with the
    model before compression as teacher when it distills)."""
    assert step.train is not None
    recovery = step.recovery
    if recovery is not None and recovery.budget_minutes is not None:
        return Cost(recovery.budget_minutes * 60.0, f"fine-tune budget {recovery.budget_minutes:g} min")
    distill = recovery is not None and recovery.distill
    return _training(step.train, work, teacher_macs=work.macs if distill else 0, slowdown=slowdown)


def _evaluation(work: Work, times: int = 1) -> float:
    return times * work.throughput.infer_s(work.data.eval_images, work.macs)


@COSTS.register(StartStep)
def _start_cost(step: StartStep, work: Work) -> Cost:
    if step.train is None:
        return Cost(0.0, "build" if step.checkpoint is None else "read checkpoint")
    return _training(step.train, work)


@COSTS.register(TrainStep)
def _train_cost(step: TrainStep, work: Work) -> Cost:
    return _training(step.train, work)


@COSTS.register(DistillStep)
def _distill_cost(step: DistillStep, work: Work) -> Cost:
    cost = _training(step.train, work, teacher_macs=work.teacher_macs, teacher_rate=work.teacher_throughput)
    if step.teacher.train is not None:  # the teacher is trained from scratch first
        teacher = _training(step.teacher.train, work.teacher())
        cost = Cost(cost.seconds + teacher.seconds, f"teacher {teacher.basis}; then {cost.basis}")
    # student before and after, teacher once, on the evaluation images
    evals = _evaluation(work, 2) + _evaluation(work.teacher())
    return Cost(cost.seconds + evals, cost.basis + " + 3 evaluations")


@COSTS.register(PruneStep)
def _prune_cost(step: PruneStep, work: Work) -> Cost:
    if step.train is None:
        return Cost(_evaluation(work), "prune + 1 evaluation")
    cost = _recovering(step, work)
    return Cost(cost.seconds + _evaluation(work), cost.basis + " + 1 evaluation")


@COSTS.register(QuantizeStep)
def _quantize_cost(step: QuantizeStep, work: Work) -> Cost:
    evals = _evaluation(work, 2)  # the float model and the quantized one
    if step.train is not None:  # QAT
        cost = _recovering(step, work, slowdown=QAT_SLOWDOWN)
        return Cost(cost.seconds + evals, cost.basis + f" (x{QAT_SLOWDOWN:g} fake-quant) + 2 evaluations")
    batches = getattr(step.config, "calibration_batches", 0)
    calibration = work.throughput.infer_s(batches * CALIBRATION_BATCH, work.macs)
    basis = f"{method_of(step.config).id}: " + (
        f"{batches} calibration batch(es) + 2 evaluations" if batches else "2 evaluations"
    )
    return Cost(calibration + evals, basis)


@COSTS.register(ExportStep)
def _export_cost(step: ExportStep, work: Work) -> Cost:
    return Cost(
        work.throughput.infer_s(2 * step.parity_images, work.macs),
        f"export + parity on {step.parity_images} images",
    )


@COSTS.register(MeasureStep)
def _measure_cost(step: MeasureStep, work: Work) -> Cost:
    runtimes = max(1, len(step.runtimes))
    per_runtime = work.throughput.infer_s(PARITY_IMAGES, work.macs)
    if step.accuracy:
        per_runtime += _evaluation(work)
    if step.latency:
        calls = step.passes * (step.warmup + step.runs)
        per_runtime += work.throughput.infer_s(calls * sum(step.batch_sizes), work.macs)
    if step.memory == "process":
        per_runtime += work.throughput.step_overhead_s  # a fresh process per memory probe
    parts = ["accuracy"] * step.accuracy + [f"{step.passes}x{step.runs} timed runs"] * step.latency
    return Cost(runtimes * per_runtime, f"{runtimes} runtime(s): " + (", ".join(parts) or "size only"))


@dataclasses.dataclass(frozen=True)
class NodeEstimate:
    """One node of the plan: ``state`` is ``to run``, ``done`` (in the store: skipped) or the store's
    status of a node that did not finish (``failed``, ...), which a run retries when asked to."""

    name: str
    kind: str
    key: str
    state: str
    seconds: float
    basis: str
    trial: str | None = None
    exclusive: bool = False
    took_s: float | None = None  # a done node: what it took when it ran

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class PlanEstimate:
    """The planned nodes with their estimated seconds, and the totals a run would take."""

    nodes: tuple[NodeEstimate, ...]
    workers: int
    threads: int
    throughput: Throughput
    #: Each model's own probed rate (model -> Throughput) when the plan was priced per model.
    rates: dict[str, Throughput] = dataclasses.field(default_factory=dict)

    def pending(self) -> list[NodeEstimate]:
        return [n for n in self.nodes if n.state != "done"]

    @property
    def work_s(self) -> float:
        """Seconds of work still to do, one after another."""
        return sum(n.seconds for n in self.pending())

    @property
    def wall_s(self) -> float:
        """About how long the run would take: shared work spread over the workers, measure steps
        (which run alone) one after another."""
        pending = self.pending()
        alone = sum(n.seconds for n in pending if n.exclusive)
        shared = sum(n.seconds for n in pending if not n.exclusive)
        return shared / max(1, self.workers) + alone

    @property
    def trials(self) -> int:
        return len({n.trial for n in self.nodes if n.trial})

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [n.to_dict() for n in self.nodes],
            "to_run": len(self.pending()),
            "done": len(self.nodes) - len(self.pending()),
            "trials": self.trials,
            "workers": self.workers,
            "threads": self.threads,
            "work_s": self.work_s,
            "wall_s": self.wall_s,
            "throughput": self.throughput.to_dict(),
            "rates": {name: rate.to_dict() for name, rate in self.rates.items()},
        }


def data_size(spec: DataSpec) -> DataSize:
    """Count the images a plan reads (loads the dataset's labels; images are decoded or cached)."""
    source = spec.data_source()
    return DataSize(train_images=len(source.load("train")), eval_images=len(source.load()))


def _input_shape(spec: DataSpec) -> tuple[int, int, int]:
    size = spec.image_size or 32
    return (3, size, size)


def _start_model(step: StartStep, num_classes: int) -> nn.Module:
    """The model a start step builds (architecture only: no published weights read)."""
    if step.checkpoint is not None:
        model, _ = step.source().build()
        return model
    return create_model(str(step.model), num_classes=step.num_classes or num_classes)


def stored_records(db: Path, experiment: str, keys: Iterable[str]) -> dict[str, tuple[str, float | None]]:
    """``key -> (status, seconds it took)`` for the nodes the store at ``db`` already holds for
    ``experiment`` (empty when there is no store: a dry run never creates one)."""
    if not db.is_file():
        return {}
    with Store.open(db) as store:
        found = store.get_experiment(experiment)
        if found is None:
            return {}
        held: dict[str, tuple[str, float | None]] = {}
        for key in keys:
            record = store.trial(key, experiment_id=found.id)
            if record is not None:
                held[key] = (record.status, record.timings.get("step_s"))
        return held


def estimate_plan(
    nodes: list[Node],
    *,
    throughput: Throughput,
    workers: int,
    threads: int,
    stored: dict[str, tuple[str, float | None]] | None = None,
    sizes: Callable[[DataSpec], DataSize] = data_size,
    num_classes: int = 10,
    rate_of: RateOf | None = None,
) -> PlanEstimate:
    """Price every node of ``nodes`` (as :func:`~edgeslim.engine.plan.plan_recipe`/``merge`` made
    them). ``stored``: what the store holds (:func:`stored_records`); done nodes cost nothing.
    ``rate_of``: each distinct model's own rate (a probe of it, seconds each) instead of
    ``throughput`` for all; models whose nodes are all done are not probed."""
    stored = stored or {}
    by_key = {n.key: n for n in nodes}
    data_cache: dict[DataSpec, DataSize] = {}
    macs_of: dict[str, int] = {}
    probed: dict[str, Throughput] = {}
    rates: dict[str, Throughput] = {}

    def start_of(node: Node) -> Node:
        while node.depends_on is not None:
            node = by_key[node.depends_on]
        return node

    def model_of(step: StartStep, spec: DataSpec, needed: bool) -> tuple[int, Throughput]:
        """(forward MACs per image, rate) of the model ``step`` builds at ``spec``'s image size;
        the model is built once for both and not kept (ImageNet-size zoos would fill memory)."""
        cache_key = repr((step.params(), spec.image_size))
        shape = _input_shape(spec)
        probe = rate_of is not None and needed and cache_key not in probed
        if cache_key not in macs_of or probe:
            model = _start_model(step, num_classes)
            macs_of[cache_key] = count_macs(model, shape)
            if probe:
                assert rate_of is not None
                probed[cache_key] = rates[str(step.model or step.checkpoint)] = rate_of(model, shape)
        return macs_of[cache_key], probed.get(cache_key, throughput)

    out: list[NodeEstimate] = []
    for node in nodes:
        if node.data not in data_cache:
            data_cache[node.data] = sizes(node.data)
        first = start_of(node).step
        assert isinstance(first, StartStep)
        teacher = node.step.teacher if isinstance(node.step, DistillStep) else None
        needed = stored.get(node.key, ("to run",))[0] != "done"
        macs, rate = model_of(first, node.data, needed)
        teacher_macs, teacher_rate = (
            model_of(teacher, node.data, needed) if teacher is not None else (0, None)
        )
        work = Work(
            macs=macs,
            teacher_macs=teacher_macs,
            data=data_cache[node.data],
            throughput=rate,
            teacher_throughput=teacher_rate,
        )
        cost = COSTS.get(node.step)(node.step, work)
        status, took = stored.get(node.key, ("to run", None))
        if status in ("queued", "running"):
            status = "to run"  # queued, or left running by a process that stopped: a run picks it up
        out.append(
            NodeEstimate(
                name=node.name,
                kind=node.kind,
                key=node.key,
                state=status,
                seconds=cost.seconds + throughput.step_overhead_s,
                basis=cost.basis,
                trial=node.labels.get("trial"),
                exclusive=isinstance(node.step, MeasureStep) and node.step.exclusive,
                took_s=took,
            )
        )
    return PlanEstimate(tuple(out), workers=workers, threads=threads, throughput=throughput, rates=rates)


__all__ = [
    "COSTS",
    "Cost",
    "DataSize",
    "NodeEstimate",
    "PlanEstimate",
    "RateOf",
    "Throughput",
    "Work",
    "data_size",
    "estimate_plan",
    "model_probe",
    "probe_throughput",
    "stored_records",
]
