"""Recovery fine-tuning after compression: distill from the model before compression, on a time budget.

Every place that fine-tunes a compressed model (``prune --finetune-epochs``, QAT, sweep trials,
recipe prune/quantize steps) trains through :func:`recovery_train` with a :class:`Recovery`:

* ``distill`` (default on): the frozen model *before* compression (or ``teacher``, an edgeslim
  checkpoint) is the teacher; the loss is Hinton KD on logits
  (:class:`edgeslim.distillation.KDLoss`, ``alpha`` on the labels, ``temperature``). With
  ``augment: false`` every epoch feeds the same images, so the teacher's logits are cached per
  image (:class:`edgeslim.distillation.TeacherLogitCache`, keyed by the image's bytes) and the
  teacher runs in the first epoch only; with random augmentation it runs every step. The cost
  (``teacher_seconds``) and whether logits were cached are reported.
* ``budget_minutes``: a short measured warm-up (``warmup_batches`` training steps on a copy of the
  model, teacher included) sizes the number of epochs, and so the LR schedule, to fit the budget on
  this machine (:func:`plan_budget`); a budget too small for one epoch is a :class:`ConfigError`.
* iterative filter pruning (``FilterPruning.iterative_steps > 1``): every stage is its own cosine
  cycle (a warm restart: the LR goes back up after a short warm-up, then decays), which suits
  recovering a pretrained net after each cut; :func:`stage_epochs` splits the epochs.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeslim.config import Config
from edgeslim.data import Augment, BatchLoader, ImageTensors
from edgeslim.distillation import KDCallback, KDLoss, TeacherForward, TeacherLogitCache
from edgeslim.errors import ConfigError
from edgeslim.models import load_model_from_checkpoint
from edgeslim.train import Callback, TrainConfig, TrainState, build_optimizer, train
from edgeslim.train.device import autocast
from edgeslim.train.evaluate import to_channels_last, unpack_batch
from edgeslim.yaml_schema import Checker


@dataclasses.dataclass(frozen=True)
class Recovery(Config):
    """How the fine-tune after compression recovers accuracy (see the module docstring).

    ``teacher``: an edgeslim checkpoint to distill from instead of the model before compression.
    ``augment``: random crop and flip while fine-tuning (off: teacher logits are cached).
    ``budget_minutes``: size the epochs to this wall-clock budget (replaces ``TrainConfig.epochs``).
    """

    distill: bool = True
    temperature: float = 4.0
    alpha: float = 0.1
    teacher: str | None = None
    augment: bool = True
    budget_minutes: float | None = None
    warmup_batches: int = 6

    def validate(self) -> None:
        if not (math.isfinite(self.alpha) and 0.0 <= self.alpha <= 1.0):
            raise ConfigError(
                f"Recovery.alpha (weight of the label cross-entropy) must be in [0, 1], got {self.alpha}",
                field="Recovery.alpha",
            )
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(
                f"Recovery.temperature must be > 0, got {self.temperature}", field="Recovery.temperature"
            )
        if self.budget_minutes is not None and not (
            math.isfinite(self.budget_minutes) and self.budget_minutes > 0
        ):
            raise ConfigError(
                f"Recovery.budget_minutes must be a positive number of minutes, got {self.budget_minutes}",
                field="Recovery.budget_minutes",
            )
        if self.warmup_batches < 2:
            raise ConfigError(
                f"Recovery.warmup_batches must be >= 2 (the first is not timed), got {self.warmup_batches}",
                field="Recovery.warmup_batches",
            )
        if self.teacher is not None and not self.distill:
            raise ConfigError(
                "Recovery.teacher is set but distill is off; remove the teacher or turn distill on",
                field="Recovery.teacher",
            )


#: Recovery's fields, besides TrainConfig's, that a ``finetune``/``train`` YAML block may hold.
RECOVERY_FIELDS = tuple(f.name for f in dataclasses.fields(Recovery))


def split_finetune(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A ``finetune``/``train`` mapping -> (TrainConfig fields, Recovery fields)."""
    train_part = {k: v for k, v in data.items() if k not in RECOVERY_FIELDS}
    recovery_part = {k: v for k, v in data.items() if k in RECOVERY_FIELDS}
    return train_part, recovery_part


def split_yaml_finetune(
    c: Checker, m: dict[str, Any], path: tuple[str | int, ...]
) -> tuple[dict[str, Any], Recovery | None]:
    """A ``finetune``/``train`` YAML mapping (keys already checked) -> (TrainConfig fields, Recovery).

    ``budget_minutes`` replaces ``epochs`` (the budget sizes them; ``epochs`` 1 is kept as a
    placeholder), so giving both is an error; giving neither is one too.
    """
    train_part, rec_part = split_finetune(m)
    if rec_part.get("budget_minutes") is not None:
        if "epochs" in train_part:
            raise c.fail(
                (*path, "budget_minutes"),
                "give epochs or budget_minutes, not both (the budget sizes the epochs)",
            )
        train_part["epochs"] = 1
    elif "epochs" not in train_part:
        raise c.fail(
            path,
            "missing 'epochs' (the training budget; 0 for none), e.g. {epochs: 1, lr: 0.01}, "
            "or 'budget_minutes' (the minutes it may take, e.g. {budget_minutes: 5})",
        )
    if rec_part.get("teacher") is not None:  # a checkpoint file: one the file system can look up
        c.file_path(rec_part["teacher"], (*path, "teacher"))
    recovery: Recovery | None = c.config(Recovery, dict(rec_part), path) if rec_part else None
    return train_part, recovery


def no_teacher_error(where: str) -> ConfigError:
    """Distillation asked for where no uncompressed model exists (training from scratch, ...)."""
    return ConfigError(
        f"{where}: distillation recovers a compressed model from the model before compression, and this "
        "step compresses nothing (no uncompressed model to distill from); remove 'distill', or use a "
        "distill step with an explicit teacher",
        field="Recovery.distill",
    )


# -- the teacher ---------------------------------------------------------------------------------
class TimedTeacher(TeacherForward):
    """The frozen teacher's logits, timed (``seconds``: teacher passes and cache look-ups).

    With a cache, logits are cached per image: a batch runs the teacher only on the images it has
    not seen (the teacher is in eval mode, so a row's logits do not depend on the rest of the
    batch). A shuffled loader that drops its last partial batch still hits on every image it saw.
    """

    def __init__(self, teacher: nn.Module, cache: TeacherLogitCache | None = None) -> None:
        super().__init__(teacher, cache)
        self.seconds = 0.0

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        try:
            if self._last_inputs is inputs and self._last_logits is not None:
                return self._last_logits
            cache = self.cache
            if cache is None or not cache.enabled:
                return super().__call__(inputs)
            keys = cache.keys(inputs)
            rows = [cache._rows.get(k) for k in keys]
            missing = [i for i, r in enumerate(rows) if r is None]
            cache.hits += len(keys) - len(missing)
            cache.misses += len(missing)
            if missing:
                with torch.no_grad():
                    fresh = self.teacher(inputs[missing]).detach()
                cache.put([keys[i] for i in missing], fresh)
                for j, i in enumerate(missing):
                    rows[i] = fresh[j].float().cpu()
            logits = torch.stack([r for r in rows if r is not None]).to(inputs.device)
            self._last_inputs, self._last_logits = inputs, logits
            return logits
        finally:
            self.seconds += time.perf_counter() - start


def load_teacher(recovery: Recovery, before: nn.Module) -> nn.Module | None:
    """The frozen teacher: ``recovery.teacher`` (a checkpoint) or a copy of the model before compression."""
    if not recovery.distill:
        return None
    if recovery.teacher is not None:
        path = Path(recovery.teacher)
        if not path.is_file():
            raise ConfigError(f"Recovery.teacher: no such file {str(path)!r}", field="Recovery.teacher")
        teacher, _ = load_model_from_checkpoint(path)
    else:
        teacher = copy.deepcopy(before)
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def check_teacher(teacher: nn.Module, student: nn.Module, input_size: tuple[int, ...]) -> None:
    """The teacher must predict the student's classes (same logits shape)."""
    x = torch.zeros(1, *input_size)
    was = student.training
    student.eval()
    try:
        with torch.inference_mode():
            t, s = teacher(x), student(x)
    finally:
        student.train(was)
    if tuple(t.shape) != tuple(s.shape):
        raise ConfigError(
            f"Recovery.teacher predicts {t.shape[-1]} classes but the model predicts {s.shape[-1]}; "
            "distill from a teacher trained on the same classes",
            field="Recovery.teacher",
        )


# -- the budget ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BudgetPlan:
    """How a time budget was turned into epochs, from a measured warm-up."""

    budget_minutes: float
    epochs: int
    seconds_per_step: float
    teacher_seconds_per_step: float
    steps_per_epoch: int
    cached: bool
    warmup_seconds: float
    stage_seconds_per_step: tuple[float, ...] = ()  # per pruning step, when the schedule is iterative

    @property
    def epoch_seconds(self) -> float:
        return self.steps_per_epoch * self.seconds_per_step

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "epoch_seconds": self.epoch_seconds}


def _time_steps(
    model: nn.Module, loader: BatchLoader, config: TrainConfig, teacher: nn.Module | None, n: int
) -> tuple[float, float]:
    """Median seconds of one training step of ``model`` (on a copy) and of the teacher's pass."""
    work = copy.deepcopy(model)
    if config.channels_last:
        to_channels_last(work)
    work.train()
    optimizer = build_optimizer(work, config)
    step_times: list[float] = []
    teacher_times: list[float] = []
    batches = iter(loader)
    for i in range(n):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        inputs, targets = unpack_batch(batch, config.channels_last)
        t0 = time.perf_counter()
        with autocast(torch.device("cpu"), config.bf16):
            if teacher is not None:
                with torch.no_grad():
                    teacher(inputs)
            t1 = time.perf_counter()
            out = work(inputs)
            loss = nn.functional.cross_entropy(out.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        t2 = time.perf_counter()
        if i > 0:
            step_times.append(t2 - t1)
            teacher_times.append(t1 - t0)
    del work, optimizer
    return sorted(step_times)[len(step_times) // 2], sorted(teacher_times)[len(teacher_times) // 2]


def plan_budget(
    model: nn.Module,
    loader: BatchLoader,
    config: TrainConfig,
    *,
    budget_minutes: float,
    teacher: nn.Module | None,
    cached: bool,
    warmup_batches: int = 6,
    extra_seconds: float = 0.0,
    earlier_stages: Sequence[nn.Module] = (),
) -> BudgetPlan:
    """Time ``warmup_batches`` training steps (on a copy) and fit the most epochs into the budget.

    The first step is not timed (allocation, kernel selection). The teacher's pass is timed apart:
    with ``cached`` logits it is paid in the first epoch only. ``extra_seconds`` are reserved (work
    outside the training loop). ``earlier_stages`` are the models that train before ``model`` in an
    iterative schedule (wider, so slower per step): each is timed too and the epochs are split over
    the stages by :func:`stage_epochs`. Raises :class:`ConfigError` when not even one epoch per stage
    fits.
    """
    start = time.perf_counter()
    steps = len(loader)
    if steps == 0:  # fewer images than one (full) batch: nothing to time, nothing to train
        raise ConfigError(
            f"the fine-tune has fewer training images than one batch of {config.batch_size}; give more "
            "images or a smaller batch size",
            field="TrainConfig.batch_size",
        )
    n = max(2, min(warmup_batches, steps + 1))
    timed = [_time_steps(m, loader, config, teacher, n) for m in (*earlier_stages, model)]
    student = [s for s, _ in timed]
    teacher_s = sorted(t for _, t in timed)[len(timed) // 2]
    per_step = [s + (0.0 if cached else teacher_s) for s in student]
    budget_s = budget_minutes * 60.0 - extra_seconds - (teacher_s * steps if cached else 0.0)
    stages = len(timed)

    def cost(total: int) -> float:
        return sum(e * steps * t for e, t in zip(stage_epochs(total, stages), per_step, strict=True))

    epochs = 0
    if cost(stages) <= budget_s:
        epochs = stages
        # the first stages take a fixed share, so the cost grows with the total: step up to the limit
        while cost(epochs + 1) <= budget_s:
            epochs += 1
    if epochs < 1:
        need = (cost(stages) + extra_seconds + (teacher_s * steps if cached else 0.0)) / 60.0
        what = (
            "one fine-tune epoch" if stages == 1 else f"one fine-tune epoch in each of {stages} pruning steps"
        )
        raise ConfigError(
            f"Recovery.budget_minutes {budget_minutes:g} is too small for {what}: that takes about "
            f"{need * 60:.0f} s of {steps}-step epochs on this machine (measured over {n - 1} steps); "
            f"give at least {math.ceil(need * 10) / 10:g} minutes, or train on fewer images",
            field="Recovery.budget_minutes",
        )
    return BudgetPlan(
        budget_minutes=budget_minutes,
        epochs=epochs,
        seconds_per_step=per_step[-1],
        teacher_seconds_per_step=teacher_s,
        steps_per_epoch=steps,
        cached=cached,
        warmup_seconds=time.perf_counter() - start,
        stage_seconds_per_step=tuple(per_step),
    )


class BudgetReplan(Callback):
    """Keeps a budgeted fine-tune inside its deadline: after every epoch the epochs still to run are
    re-sized from the measured time of the recent epochs (the warm-up's few steps mis-plan by 5-10% on
    a VM whose speed drifts: a 30-minute budget ran 33 minutes). The LR schedule (and a gradual
    pruning ramp sized from the run) follow the new length; the run ends early when no further epoch
    fits. A change of one epoch in 40 moves the cosine LR by under 2% of its peak.

    ``deadline``: ``time.perf_counter()`` value by which training must end. ``teacher`` and
    ``cached``: the teacher's time in an epoch that fills the logit cache is not paid again.
    """

    RECENT = 5  # epochs whose mean time predicts the next ones (the VM's speed drifts)

    def __init__(self, deadline: float, teacher: TimedTeacher | None = None, *, cached: bool = False) -> None:
        self.deadline = deadline
        self.teacher = teacher
        self.cached = cached
        self.epoch_seconds: list[float] = []
        self._teacher_began = 0.0
        self.replans: list[tuple[int, int]] = []  # (epochs done, new total) when the total changed

    def on_epoch_begin(self, state: TrainState) -> None:
        self._teacher_began = self.teacher.seconds if self.teacher is not None else 0.0

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        spent = float(metrics["seconds"])  # the trainer's time of this epoch
        if self.cached and self.teacher is not None:  # later epochs read the cached logits
            spent -= self.teacher.seconds - self._teacher_began
        self.epoch_seconds.append(max(spent, 1e-6))
        recent = self.epoch_seconds[-self.RECENT :]
        per_epoch = sum(recent) / len(recent)
        done = state.epoch + 1
        total = done + max(0, math.floor((self.deadline - time.perf_counter()) / per_epoch))
        if total != state.config.epochs:
            self.replans.append((done, total))
            state.config = state.config.replace(
                epochs=total, warmup_epochs=min(state.config.warmup_epochs, float(total))
            )


def stage_epochs(total: int, stages: int) -> list[int]:
    """Split ``total`` fine-tune epochs over ``stages`` prune-recover stages: the intermediate stages
    share about half, at least one each, and the last (at the final ratio) gets the rest."""
    if stages < 1:
        raise ConfigError(f"stages must be >= 1, got {stages}")
    if total < stages:
        raise ConfigError(
            f"iterative pruning in {stages} steps needs at least {stages} fine-tune epochs (one per step), "
            f"got {total}",
            field="TrainConfig.epochs",
        )
    if stages == 1:
        return [total]
    each = max(1, (total // 2) // (stages - 1))
    first = [each] * (stages - 1)
    return [*first, total - sum(first)]


def restart_config(config: TrainConfig, epochs: int) -> TrainConfig:
    """One stage's cycle: ``epochs`` of cosine from the peak LR after a short warm-up (warm restart)."""
    warmup = config.warmup_epochs if config.warmup_epochs > 0 else min(0.1, float(epochs))
    return config.replace(epochs=epochs, warmup_epochs=min(warmup, float(epochs)), schedule="cosine")


# -- the training --------------------------------------------------------------------------------
@dataclasses.dataclass
class RecoveryRun:
    """What the recovery fine-tunes of one compression did (summed over stages)."""

    distill: bool
    cached: bool
    epochs: int = 0
    seconds: float = 0.0
    teacher_seconds: float = 0.0
    stages: int = 0
    budget: BudgetPlan | None = None
    teacher: str = "none"
    cache: dict[str, int] | None = None
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    replans: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # (epochs done, new total)

    def to_dict(self) -> dict[str, Any]:
        return {
            "distill": self.distill,
            "teacher": self.teacher,
            "teacher_logits_cached": self.cached,
            "epochs": self.epochs,
            "stages": self.stages,
            "seconds": self.seconds,
            "teacher_seconds": self.teacher_seconds,
            "teacher_cache": self.cache,
            "budget": self.budget.to_dict() if self.budget is not None else None,
            "replans": [list(r) for r in self.replans],
        }


class Recoverer:
    """Runs the recovery fine-tunes of one compression: the same teacher (and logit cache) for every
    stage; :meth:`plan` sizes the epochs from a budget first."""

    def __init__(
        self,
        recovery: Recovery,
        train_data: ImageTensors,
        config: TrainConfig,
        *,
        teacher: nn.Module | None,
        progress: bool = True,
        device: str | None = None,
    ) -> None:
        self.recovery = recovery
        self.device = device
        self.train_data = train_data
        self.config = config
        self.progress = progress
        self.teacher_model = teacher
        self.augment = Augment() if recovery.augment else Augment.none()
        cached = teacher is not None and self.augment.is_identity
        self.cache = TeacherLogitCache() if cached else None
        self.teacher = TimedTeacher(teacher, self.cache) if teacher is not None else None
        if teacher is not None and config.channels_last:
            to_channels_last(teacher)
        source = "none"
        if teacher is not None:
            source = recovery.teacher if recovery.teacher is not None else "the model before compression"
        self.run = RecoveryRun(distill=teacher is not None, cached=cached, teacher=source)
        self.deadline: float | None = None  # perf_counter() by which a budgeted fine-tune ends

    def loader(self, config: TrainConfig) -> BatchLoader:
        return BatchLoader(
            self.train_data,
            config.batch_size,
            shuffle=True,
            augment=self.augment,
            drop_last=True,
            seed=config.seed,
            channels_last=config.channels_last,
        )

    def plan(self, model: nn.Module, earlier_stages: Sequence[nn.Module] = ()) -> TrainConfig:
        """With a budget: the config with epochs (and so the LR schedule) sized to fit it
        (``earlier_stages``: the wider models an iterative schedule trains first)."""
        minutes = self.recovery.budget_minutes
        if minutes is None:
            return self.config
        plan = plan_budget(
            model,
            self.loader(self.config),
            self.config,
            budget_minutes=minutes,
            teacher=self.teacher_model,
            cached=self.run.cached,
            warmup_batches=self.recovery.warmup_batches,
            earlier_stages=earlier_stages,
        )
        self.run.budget = plan
        self.config = self.config.replace(
            epochs=plan.epochs, warmup_epochs=min(self.config.warmup_epochs, float(plan.epochs))
        )
        return self.config

    def train(self, model: nn.Module, config: TrainConfig, callbacks: Sequence[Callback] = ()) -> None:
        """One fine-tune of ``model`` in place (KD from the teacher when distilling). With a budget,
        the deadline starts with the first stage, and the last stage re-plans its epochs to it
        (:class:`BudgetReplan`); earlier stages of an iterative schedule keep their planned epochs."""
        cbs: list[Callback] = []
        if self.teacher is not None:
            cbs.append(KDCallback(self.teacher, KDLoss(self.recovery.alpha, self.recovery.temperature)))
        cbs.extend(callbacks)
        budget = self.run.budget
        replan = None
        if budget is not None:
            if self.deadline is None:
                self.deadline = time.perf_counter() + budget.budget_minutes * 60.0
            if self.run.stages == max(1, len(budget.stage_seconds_per_step)) - 1:
                replan = BudgetReplan(self.deadline, self.teacher, cached=self.run.cached)
                cbs.append(replan)  # last: it sees the epoch after every other callback
        model.train()
        result = train(
            model, self.loader(config), config, callbacks=cbs, progress=self.progress, device=self.device
        )
        model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        offset = self.run.epochs
        self.run.history += [
            dict(h, epoch=int(h["epoch"]) + offset, stage=self.run.stages) for h in result.history
        ]
        self.run.epochs += result.epochs_completed
        self.run.seconds += result.seconds
        self.run.stages += 1
        if replan is not None:
            self.run.replans = [(offset + done, offset + total) for done, total in replan.replans]
        if self.teacher is not None:
            self.run.teacher_seconds = self.teacher.seconds
        if self.cache is not None:
            self.run.cache = self.cache.stats()

    def finish(self) -> RecoveryRun:
        if self.teacher_model is not None:
            self.teacher_model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        return self.run


#: Points by which a distilled model must beat its teacher before edgeslim calls the teacher poor.
TEACHER_MARGIN = 0.5


def teacher_note(
    recovery: Recovery | None, top1_before: float | None, top1_after: float | None
) -> str | None:
    """A warning when the distilled model beat its teacher (the model before compression) by at least
    ``TEACHER_MARGIN`` points on the same test images: that teacher is not accurate on this data and
    distilling copies its mistakes (a student a few tenths above its teacher is common and fine).

    Measured: resnet56 pretrained on the original CIFAR-10 reads 83% on the JPEG copy; pruned 2x and
    fine-tuned 15 minutes on the JPEG train set, it reached 84.07% distilled and 87.99% on labels.
    """
    if recovery is None or not recovery.distill or recovery.teacher is not None:
        return None
    if top1_before is None or top1_after is None or top1_after < top1_before + TEACHER_MARGIN:
        return None
    return (
        f"the distilled model ({top1_after:.2f}%) beat its teacher, the model before compression "
        f"({top1_before:.2f}% on the same images): that teacher is not accurate on this data and "
        "distillation copies its mistakes; fine-tune the model on this data before compressing it "
        "(or distill from one that is: --teacher), or recover on labels only (--no-distill)"
    )


__all__ = [
    "RECOVERY_FIELDS",
    "BudgetPlan",
    "BudgetReplan",
    "Recoverer",
    "Recovery",
    "RecoveryRun",
    "TimedTeacher",
    "check_teacher",
    "load_teacher",
    "no_teacher_error",
    "plan_budget",
    "restart_config",
    "split_finetune",
    "split_yaml_finetune",
    "stage_epochs",
    "teacher_note",
]
