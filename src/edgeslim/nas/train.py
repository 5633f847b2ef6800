"""Train a weight-sharing supernet on a time budget: sandwich rule and in-place distillation.

Each step trains the largest subnet on the labels, then the smallest and ``random_subnets`` random
subnets on the largest's soft predictions (in-place distillation, Yu et al. 2019/2020; the schedule
Once-for-All and BigNAS use), and takes one optimizer step on the summed gradients. The budget
sizes the run: the first steps are timed and the step count that fits ``budget_minutes`` gets a
cosine learning-rate schedule. Progress is written to ``OUT.partial`` every ``checkpoint_minutes``
(weights, optimizer, step, data position, random state), so a killed run resumes where it stopped
with the same command; the finished supernet is renamed to ``OUT``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgeslim.bench.latency import threads as torch_threads
from edgeslim.config import Config
from edgeslim.data import Augment, BatchLoader, ImageTensors
from edgeslim.distillation import KDLoss
from edgeslim.errors import ConfigError
from edgeslim.nas.space import SearchSpace, get_space
from edgeslim.nas.supernet import (
    Supernet,
    build_supernet,
    check_init_weights,
    check_new_file,
    load_supernet,
    save_supernet,
)
from edgeslim.tasks import DataSource
from edgeslim.train import TrainConfig, build_optimizer, seed_everything
from edgeslim.train.device import autocast
from edgeslim.train.evaluate import to_channels_last

__all__ = ["SupernetTrainResult", "SupernetTraining", "distill_subnet", "train_supernet"]


@dataclasses.dataclass(frozen=True)
class SupernetTraining(Config):
    """How a supernet is trained (``budget_minutes`` of wall clock on this machine).

    ``bf16``: forward passes under bfloat16 autocast (weights, gradients and optimizer stay fp32), so
    more steps fit the budget on CPUs with AVX-512 BF16; fp32, with a warning, on CPUs without it,
    where emulated bf16 is many times slower (:func:`edgeslim.train.device.cpu_bf16`).
    ``channels_last``: weights and images in NHWC while training (oneDNN's fast layout on CPUs, the
    depthwise convs of the MobileNetV2 spaces most of all); the saved supernet is NCHW either way.
    """

    budget_minutes: float = 120.0
    batch_size: int = 128
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 5e-4
    random_subnets: int = 2
    temperature: float = 1.0
    warmup_steps: int = 4
    checkpoint_minutes: float = 2.0
    threads: int | None = None
    seed: int = 0
    bf16: bool = True
    channels_last: bool = True

    def validate(self) -> None:
        for name in ("budget_minutes", "lr", "checkpoint_minutes", "temperature"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and value > 0)
            ):
                raise ConfigError(
                    f"SupernetTraining.{name} must be a positive number, got {value!r}",
                    field=f"SupernetTraining.{name}",
                )
        if self.budget_minutes > 7 * 24 * 60:
            raise ConfigError(
                f"SupernetTraining.budget_minutes must be at most a week (10080), got {self.budget_minutes}",
                field="SupernetTraining.budget_minutes",
            )
        for name, low in (("batch_size", 1), ("random_subnets", 0), ("warmup_steps", 2), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(
                    f"SupernetTraining.{name} must be an integer >= {low}, got {value!r}",
                    field=f"SupernetTraining.{name}",
                )
        if not (0 <= self.momentum < 1 and 0 <= self.weight_decay < 1):
            raise ConfigError(
                "SupernetTraining.momentum and weight_decay must be in [0, 1)",
                field="SupernetTraining.momentum",
            )


@dataclasses.dataclass(frozen=True)
class SupernetTrainResult:
    path: Path
    space: str
    steps: int
    epochs: float
    minutes: float
    resumed_from_step: int
    seconds_per_step: float
    images_per_second: float

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "path": str(self.path)}


def _partial(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def _settings(
    space: SearchSpace[Any], options: SupernetTraining, data: DataSource, init: str | None
) -> dict[str, Any]:
    """What must match for ``OUT.partial`` to be resumed (not the thread count or checkpoint cadence)."""
    fields = options.to_dict()
    fields.pop("threads", None)
    fields.pop("checkpoint_minutes", None)
    return {
        "space": space.name,
        "options": fields,
        "data": str(data.path),
        "limit": data.train_limit,
        "init": init,
    }


def _batches(loader: BatchLoader, epoch: int, skip: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Batches from ``epoch`` on, the first ``skip`` of that epoch left out (resume)."""
    while True:
        loader.set_epoch(epoch)
        for i, (x, y) in enumerate(loader):
            if i >= skip:
                yield x, y
        skip = 0
        epoch += 1


def _lr(options: SupernetTraining, step: int, total: int) -> float:
    """Linear warm-up over the timed steps, then cosine to zero at ``total``."""
    if step < options.warmup_steps:
        return options.lr * (step + 1) / options.warmup_steps
    progress = min(1.0, (step - options.warmup_steps) / max(1, total - options.warmup_steps))
    return options.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def _sandwich_step(
    net: Supernet[Any],
    x: Tensor,
    y: Tensor,
    subnets: list[Any],
    temperature: float,
    bf16: bool = False,
) -> float:
    """Largest on labels, the rest on its soft predictions; gradients summed. Returns the CE loss.

    With ``bf16`` the forward passes run under bfloat16 autocast; losses are taken in fp32."""
    device = x.device
    with autocast(device, bf16):
        logits = net.run(net.space.largest(), x).float()
    loss = F.cross_entropy(logits, y)
    loss.backward()
    teacher = logits.detach()
    soft = KDLoss(alpha=0.0, temperature=temperature)
    for sub in subnets:
        with autocast(device, bf16):
            student = net.run(sub, x).float()
        soft(student, teacher, y).backward()
    return float(loss.detach())


def _build(
    space: SearchSpace[Any], num_classes: int, init_weights: str | os.PathLike[str] | None
) -> Supernet[Any]:
    net = build_supernet(space, num_classes)
    if init_weights is not None:
        net.initialise(init_weights)
    return net


def train_supernet(
    space: str,
    data: DataSource,
    out: str | os.PathLike[str],
    *,
    init_weights: str | os.PathLike[str] | None = None,
    options: SupernetTraining | None = None,
    progress: Callable[[str], None] | None = None,
) -> SupernetTrainResult:
    """Train a supernet of ``space`` for ``options.budget_minutes`` and write it to ``out``.

    ``init_weights``: a weights file of the space's ``init_model`` (e.g. the pretrained ResNet-56);
    without it the supernet starts from random weights (a space without an init model, such as
    ``mbv2_cifar``, always does). An ``OUT.partial`` left by a killed run with the same settings is
    resumed.
    """
    options = options or SupernetTraining()
    the_space = get_space(space)
    check_init_weights(the_space, init_weights)
    out = Path(out)
    check_new_file(out)
    init = None if init_weights is None else str(Path(init_weights).resolve())
    if init is not None and not Path(init).is_file():
        raise ConfigError(f"init weights {str(init_weights)!r} not found", field="nas.init_weights")
    settings = _settings(the_space, options, data, init)
    say = progress or (lambda _m: None)
    with torch_threads(options.threads):
        train = data.load("train")
        _check_input(train)
        partial = _partial(out)
        if partial.exists():
            net, saved = load_supernet(partial, the_space.name)
            state = saved.train_state or {}
            if state.get("settings") != settings:
                raise ConfigError(
                    f"{str(partial)!r} was left by a run with other settings; delete it or repeat that "
                    "run's command to resume it",
                    field="nas.out",
                )
            say(f"resuming {partial} at step {state['step']} of {state['total_steps']}")
        else:
            net, state = _build(the_space, train.num_classes, init_weights), {}
        if net.num_classes != train.num_classes:
            raise ConfigError(
                f"the data has {train.num_classes} classes but the supernet {net.num_classes}",
                field="DataSource.path",
            )
        return _train(net, train, out, options, settings, state, say)


def _check_input(train: ImageTensors) -> None:
    shape = tuple(train.input_shape)
    if shape[:1] != (3,):
        raise ConfigError(f"supernets take RGB images, got input shape {shape}", field="DataSource.path")


def _train(
    net: Supernet[Any],
    train: ImageTensors,
    out: Path,
    options: SupernetTraining,
    settings: dict[str, Any],
    state: dict[str, Any],
    say: Callable[[str], None],
) -> SupernetTrainResult:
    seed_everything(options.seed + int(state.get("step", 0)))
    rng = random.Random(options.seed)
    if "rng" in state:
        rng.setstate(_as_rng_state(state["rng"]))
    loader = BatchLoader(
        train, options.batch_size, shuffle=True, augment=Augment(), drop_last=True, seed=options.seed
    )
    per_epoch = max(1, len(train) // options.batch_size)
    optimizer = build_optimizer(
        net,
        TrainConfig(
            lr=options.lr,
            momentum=options.momentum,
            weight_decay=options.weight_decay,
            decay_norm_and_bias=False,
        ),
        undecayed=net.undecayed_parameters(),
    )
    if "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    step = int(state.get("step", 0))
    resumed_from = step
    total = int(state.get("total_steps", 0))  # 0: not sized yet (sized after the warm-up steps)
    elapsed_before = float(state.get("elapsed_s", 0.0))
    budget_s = options.budget_minutes * 60.0
    began = time.perf_counter()
    last_save = last_note = began
    step_times: list[float] = []
    net.train()
    layout = torch.channels_last if options.channels_last else torch.contiguous_format
    if options.channels_last:
        to_channels_last(net)
    batches = _batches(loader, step // per_epoch, step % per_epoch)

    def save(final: bool) -> None:
        elapsed = elapsed_before + time.perf_counter() - began
        meta = {"settings": settings, "steps": step, "epochs": step / per_epoch, "minutes": elapsed / 60.0}
        if final:
            net.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
            save_supernet(out, net, meta=meta)
            _partial(out).unlink(missing_ok=True)
            return
        train_state = {
            "settings": settings,
            "step": step,
            "total_steps": total,
            "elapsed_s": elapsed,
            "optimizer": optimizer.state_dict(),
            "rng": _plain_rng_state(rng.getstate()),
        }
        save_supernet(_partial(out), net, meta=meta, train_state=train_state)

    while total == 0 or step < total:
        t0 = time.perf_counter()
        x, y = next(batches)
        x = x.contiguous(memory_format=layout)
        for group in optimizer.param_groups:
            group["lr"] = _lr(options, step, max(total, options.warmup_steps + 1))
        subnets = [net.space.smallest()] + [net.space.sample(rng) for _ in range(options.random_subnets)]
        optimizer.zero_grad(set_to_none=True)
        loss = _sandwich_step(net, x, y, subnets, options.temperature, options.bf16)
        if not math.isfinite(loss):
            raise ConfigError(
                f"the supernet's loss became {loss} at step {step}; lower --lr", field="SupernetTraining.lr"
            )
        optimizer.step()
        step += 1
        step_times.append(time.perf_counter() - t0)
        now = time.perf_counter()
        if total == 0 and step >= options.warmup_steps:
            timed = sorted(step_times[1:] or step_times)  # the first step (set-up) is not timed
            per_step = timed[len(timed) // 2]
            remaining = budget_s - (elapsed_before + now - began)
            total = max(step + 1, step + int(remaining / per_step))
            say(
                f"budget {options.budget_minutes:g} min: {total} steps of {per_step:.2f} s "
                f"({total / per_epoch:.1f} epochs of {per_epoch} batches)"
            )
        if elapsed_before + now - began > budget_s * 1.05:
            say(f"budget used up at step {step} of {total}: stopping")
            break
        if now - last_note > 30:
            say(f"step {step}/{total or '?'} (epoch {step / per_epoch:.2f}), loss {loss:.3f}")
            last_note = now
        if now - last_save > options.checkpoint_minutes * 60:
            save(final=False)
            last_save = now
    save(final=True)
    minutes = (elapsed_before + time.perf_counter() - began) / 60.0
    timed = step_times[1:] or step_times
    per_step = sum(timed) / max(1, len(timed))
    return SupernetTrainResult(
        path=out,
        space=net.space.name,
        steps=step,
        epochs=step / per_epoch,
        minutes=minutes,
        resumed_from_step=resumed_from,
        seconds_per_step=per_step,
        images_per_second=options.batch_size / per_step if per_step > 0 else 0.0,
    )


def _plain_rng_state(state: tuple[Any, ...]) -> list[Any]:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _as_rng_state(saved: Any) -> tuple[Any, ...]:
    version, internal, gauss = saved
    return (version, tuple(internal), gauss)


def distill_subnet(
    student: nn.Module,
    teacher: nn.Module,
    train: ImageTensors,
    minutes: float,
    *,
    lr: float = 0.01,
    batch_size: int = 128,
    temperature: float = 1.0,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Fine-tune ``student`` on ``teacher``'s soft predictions for ``minutes`` (cosine LR by time).

    The searched subnet's optional last step: the supernet's largest net teaches it. Returns the
    number of steps taken.
    """
    say = progress or (lambda _m: None)
    loader = BatchLoader(train, batch_size, shuffle=True, augment=Augment(), drop_last=True, seed=seed)
    optimizer = build_optimizer(student, TrainConfig(lr=lr))
    soft = KDLoss(alpha=0.0, temperature=temperature)
    teacher.eval()
    student.train()
    budget_s = minutes * 60.0
    began = last_note = time.perf_counter()
    step = 0
    for x, y in _batches(loader, 0, 0):
        elapsed = time.perf_counter() - began
        if elapsed >= budget_s:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * elapsed / budget_s))
        with torch.no_grad():
            target = teacher(x)
        optimizer.zero_grad(set_to_none=True)
        loss = soft(student(x), target, y)
        loss.backward()
        optimizer.step()
        step += 1
        if time.perf_counter() - last_note > 30:
            say(f"fine-tune step {step}, {elapsed / 60:.1f} of {minutes:g} min, loss {float(loss):.3f}")
            last_note = time.perf_counter()
    student.eval()
    return step
