"""The training loop: one plain function with callback hooks, a per-step LR and resumable checkpoints.

Resume policy (``resume=True``): the checkpoint at ``checkpoint_path`` restores the weights, the
optimizer state, the global step, the RNG states (torch, numpy, python), the history and the
callbacks' ``state_dict``; training continues at the next epoch and gives the same weights as an
uninterrupted run with the same config. The *new* config wins for everything else:

* ``epochs`` may grow (extend a finished run) or shrink (nothing left to do -> returns at once); the
  LR schedule is recomputed for the new total, so extending a cosine run changes the LR curve
  of the remaining epochs (``constant`` and ``step`` schedules extend seamlessly);
* hyper-parameters (lr, momentum, weight decay, ...) take effect from the next step;
* ``optimizer`` and ``decay_norm_and_bias`` must match the checkpoint (the optimizer state would not
  fit), and so must the model (name and state_dict) -> :class:`CheckpointError` otherwise.

Changed fields are reported with :func:`warnings.warn`.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import edgeslim
from edgeslim.checkpoint import (
    extract_state_dict,
    find_unloadable,
    load_state_dict_into,
    read_checkpoint,
    save_checkpoint,
)
from edgeslim.config import Config
from edgeslim.errors import CheckpointError, ConfigError, DataError, TrainingError
from edgeslim.train.callbacks import Callback, TrainState
from edgeslim.train.device import autocast, grad_scaler, model_device, move_modules, resolve_device
from edgeslim.train.evaluate import evaluate, to_channels_last, unpack_batch
from edgeslim.train.progress import BatchProgress
from edgeslim.train.schedules import LRSchedule

# Changing these on resume would make the saved optimizer state meaningless.
_RESUME_MUST_MATCH = ("optimizer", "decay_norm_and_bias")


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """Everything that decides a training run (the data pipeline is configured separately)."""

    epochs: int = 30
    batch_size: int = 128  # informational: the caller builds the loader
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9  # SGD only; AdamW uses betas (0.9, 0.999)
    nesterov: bool = True
    weight_decay: float = 5e-4
    decay_norm_and_bias: bool = True  # False: no weight decay on 1-d params (norm weights, biases)
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: float = 0.0
    step_milestones: tuple[int, ...] = ()
    step_gamma: float = 0.1
    label_smoothing: float = 0.0
    bf16: bool = False
    channels_last: bool = False
    grad_clip: float | None = None
    seed: int = 0

    def validate(self) -> None:
        name = type(self).__name__
        if self.epochs < 1:
            raise ConfigError(f"{name}.epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"{name}.batch_size must be at least 1, got {self.batch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"{name}.lr must be a positive finite number, got {self.lr}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"{name}.momentum must be in [0, 1), got {self.momentum}")
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0.0:
            raise ConfigError(f"{name}.nesterov needs momentum > 0; set nesterov=False or a momentum")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"{name}.weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.warmup_epochs <= self.epochs:
            raise ConfigError(
                f"{name}.warmup_epochs must be between 0 and epochs ({self.epochs}), got {self.warmup_epochs}"
            )
        if self.schedule == "step" and not self.step_milestones:
            raise ConfigError(
                f"{name}.step_milestones: schedule 'step' needs milestone epochs, e.g. [15, 25]"
            )
        if any(m < 1 for m in self.step_milestones) or list(self.step_milestones) != sorted(
            set(self.step_milestones)
        ):
            raise ConfigError(
                f"{name}.step_milestones must be strictly increasing epochs >= 1, got {self.step_milestones}"
            )
        if not 0.0 < self.step_gamma <= 1.0:
            raise ConfigError(f"{name}.step_gamma must be in (0, 1], got {self.step_gamma}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"{name}.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.grad_clip is not None and not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            raise ConfigError(f"{name}.grad_clip must be a positive number or None, got {self.grad_clip}")
        if self.seed < 0:
            raise ConfigError(f"{name}.seed must be >= 0, got {self.seed}")


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a run produced: per-epoch history (all epochs, including those before a resume)."""

    history: list[dict[str, Any]]
    final: dict[str, Any]
    checkpoint_path: Path | None
    epochs_completed: int
    global_step: int
    seconds: float
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "history": [dict(h) for h in self.history],
            "final": dict(self.final),
            "checkpoint_path": str(self.checkpoint_path) if self.checkpoint_path else None,
            "epochs_completed": self.epochs_completed,
            "global_step": self.global_step,
            "seconds": self.seconds,
            "stopped_early": self.stopped_early,
        }


class BatchLoaderLike(Protocol):
    """Any re-iterable of (inputs, targets) with a length; ``set_epoch(epoch)`` is optional."""

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch so that model init, shuffling and dropout repeat."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(
    model: nn.Module, config: TrainConfig, *, undecayed: Sequence[nn.Parameter] = ()
) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW over the trainable parameters; optionally no decay on 1-d params, and
    none on ``undecayed`` (parameters whose neutral value is not zero)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TrainingError("the model has no trainable parameters")
    kept = {id(p) for p in undecayed}
    groups: list[dict[str, Any]]
    if config.decay_norm_and_bias and not kept:
        groups = [{"params": params, "weight_decay": config.weight_decay}]
    else:
        decay = [p for p in params if id(p) not in kept and (config.decay_norm_and_bias or p.dim() > 1)]
        no_decay = [p for p in params if id(p) in kept or not (config.decay_norm_and_bias or p.dim() > 1)]
        groups = [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0
        )
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.999))


def train(
    model: nn.Module,
    train_loader: BatchLoaderLike,
    config: TrainConfig,
    *,
    val_loader: Iterable[Any] | None = None,
    callbacks: Sequence[Callback] = (),
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    model_spec: dict[str, Any] | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> TrainResult:
    """Train ``model`` in place; see the module docstring for the resume policy.

    ``train_loader`` yields (float inputs, int64 targets); if it has ``set_epoch(epoch)`` it is called
    with the 0-based epoch before each epoch, so a resumed run sees the same batches. A checkpoint is
    written atomically after every epoch when ``checkpoint_path`` is given. The global RNGs are seeded
    with ``config.seed`` on entry (build the model before calling). With ``progress`` a rich bar (on a
    terminal) and one summary line per epoch go to stderr; nothing is written to stdout. History
    entries count epochs from 1; ``TrainState.epoch`` and ``set_epoch`` are 0-based. ``device``
    (``auto``: a CUDA GPU when present, see :mod:`edgeslim.train.device`): where the model trains,
    with AMP on CUDA; batches are copied there, and the model (and the modules callbacks hold, e.g.
    a teacher) are back on the CPU when it returns.
    """
    dev = resolve_device(device)
    ckpt_path = Path(checkpoint_path) if checkpoint_path is not None else None
    if resume and ckpt_path is None:
        raise ValueError("resume=True needs a checkpoint_path")
    steps_per_epoch = len(train_loader)
    if steps_per_epoch < 1:
        raise DataError("the training loader is empty (fewer images than one batch?)")
    callbacks = tuple(callbacks)
    spec = dict(model_spec) if model_spec else {"name": "unknown", "kwargs": {}}

    seed_everything(config.seed)
    home = model_device(model)
    if dev != home:
        model.to(dev)
        for cb in callbacks:
            move_modules(cb, dev)
    if config.channels_last:
        to_channels_last(model)
    optimizer = build_optimizer(model, config)
    schedule = LRSchedule.from_config(config, steps_per_epoch)
    state = TrainState(
        model=model,
        optimizer=optimizer,
        config=config,
        epoch=0,
        step=0,
        total_steps=schedule.total_steps,
        steps_per_epoch=steps_per_epoch,
        lr=schedule.lr(0),
        device=dev,
    )
    if resume and ckpt_path is not None:
        _restore(ckpt_path, state, callbacks, spec)

    was_training = model.training
    start = time.perf_counter()
    bar = BatchProgress(progress)
    try:
        with bar:
            for cb in callbacks:
                cb.on_train_begin(state)
            while state.epoch < state.config.epochs and not state.should_stop:
                epoch_start = time.perf_counter()
                entry = _run_epoch(state, train_loader, callbacks, schedule, bar)
                if val_loader is not None:
                    result = evaluate(
                        model, val_loader, bf16=config.bf16, channels_last=config.channels_last, device=dev
                    )
                    entry.update(val_top1=result.top1, val_top5=result.top5, val_loss=result.loss)
                entry["seconds"] = time.perf_counter() - epoch_start
                for cb in callbacks:
                    cb.on_epoch_end(state, entry)
                if state.config.epochs != schedule.total_steps // steps_per_epoch:
                    schedule = _replan(state, callbacks)
                state.history.append(entry)
                if ckpt_path is not None:
                    _save(ckpt_path, state, schedule, callbacks, spec)
                if progress:
                    bar.console.print(_summary(entry, state.config.epochs), highlight=False)
                state.epoch += 1
            for cb in callbacks:
                cb.on_train_end(state)
    finally:
        model.train(was_training)
        if dev != home:
            model.to(home)
            for cb in callbacks:
                move_modules(cb, home)
    return TrainResult(
        history=list(state.history),
        final=dict(state.history[-1]) if state.history else {},
        checkpoint_path=ckpt_path,
        epochs_completed=len(state.history),
        global_step=state.step,
        seconds=time.perf_counter() - start,
        stopped_early=state.should_stop and state.epoch < state.config.epochs,
    )


def _replan(state: TrainState, callbacks: tuple[Callback, ...]) -> LRSchedule:
    """A callback re-planned the run (``state.config`` with another number of epochs, e.g. a time
    budget re-sized from measured epochs): the LR schedule is rebuilt for the new length (it is a
    pure function of the step, so the run goes on from where it is) and every callback hears of it."""
    if state.config.epochs < state.epoch + 1:
        raise TrainingError(
            f"a callback re-planned training to {state.config.epochs} epoch(s) after {state.epoch + 1} ran",
            field="TrainConfig.epochs",
        )
    fresh = LRSchedule.from_config(state.config, state.steps_per_epoch)
    state.total_steps = fresh.total_steps
    for cb in callbacks:
        cb.on_replan(state)
    return fresh


def _run_epoch(
    state: TrainState,
    loader: BatchLoaderLike,
    callbacks: tuple[Callback, ...],
    schedule: LRSchedule,
    bar: BatchProgress,
) -> dict[str, Any]:
    config, model, optimizer = state.config, state.model, state.optimizer
    model.train()
    set_epoch = getattr(loader, "set_epoch", None)
    if callable(set_epoch):
        set_epoch(state.epoch)
    state.metrics = {}
    for cb in callbacks:
        cb.on_epoch_begin(state)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    device = state.device
    scaler = grad_scaler(device)
    bar.new_bar(f"epoch {state.epoch + 1}/{config.epochs}", state.steps_per_epoch)
    loss_sum = 0.0
    correct = seen = 0
    start = time.perf_counter()
    for batch_idx, batch in enumerate(loader):
        inputs, targets = unpack_batch(batch, config.channels_last)
        if device.type != "cpu":
            inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        state.batch_idx = batch_idx
        state.lr = schedule.lr(state.step)
        for group in optimizer.param_groups:
            group["lr"] = state.lr
        with autocast(device, config.bf16):
            outputs = model(inputs)
            loss = _loss(state, callbacks, inputs, outputs, targets)
        loss_value = float(loss.item())
        if not math.isfinite(loss_value):
            raise TrainingError(
                f"the loss is {loss_value} at epoch {state.epoch + 1}, step {state.step} "
                f"(batch {batch_idx}); training diverged: lower the learning rate (TrainConfig.lr, now "
                f"{state.lr:.3g}) or enable gradient clipping (TrainConfig.grad_clip 1.0)",
                field="TrainConfig.lr",
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:  # float16 AMP on a GPU without bfloat16
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        for cb in callbacks:
            cb.on_before_optimizer_step(state)
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        state.step += 1
        for cb in callbacks:
            cb.on_after_step(state)
        n = int(targets.shape[0])
        loss_sum += loss_value * n
        correct += int((outputs.detach().argmax(dim=1) == targets).sum().item())
        seen += n
        elapsed = time.perf_counter() - start
        state.metrics = {
            "loss": loss_sum / seen,
            "top1": 100.0 * correct / seen,
            "images_per_s": seen / elapsed if elapsed > 0 else 0.0,
            "lr": state.lr,
        }
        bar.advance(
            f"loss {state.metrics['loss']:.4f}  acc {state.metrics['top1']:.2f}%  "
            f"{state.metrics['images_per_s']:.0f} img/s"
        )
    if seen == 0:
        raise DataError("the training loader yielded no batches")
    return {
        "epoch": state.epoch + 1,
        "train_loss": loss_sum / seen,
        "train_top1": 100.0 * correct / seen,
        "val_top1": None,
        "lr": state.lr,
        "images_per_s": seen / (time.perf_counter() - start),
        "seconds": 0.0,  # set by the caller, including validation
    }


def _loss(
    state: TrainState,
    callbacks: tuple[Callback, ...],
    inputs: torch.Tensor,
    outputs: torch.Tensor,
    targets: torch.Tensor,
) -> torch.Tensor:
    replaced = [r for cb in callbacks if (r := cb.compute_loss(state, inputs, outputs, targets)) is not None]
    if len(replaced) > 1:
        raise TrainingError(f"{len(replaced)} callbacks replaced the loss; at most one may (compute_loss)")
    if replaced:
        loss = replaced[0].float()
    else:
        loss = F.cross_entropy(outputs.float(), targets, label_smoothing=state.config.label_smoothing)
    for cb in callbacks:
        extra = cb.extra_loss(state, inputs, outputs, targets)
        if extra is not None:
            loss = loss + extra.float()
    if loss.dim() != 0:
        raise TrainingError(f"the loss must be a scalar, got shape {tuple(loss.shape)} (from a callback?)")
    return loss


def _summary(entry: dict[str, Any], epochs: int) -> str:
    text = (
        f"epoch {entry['epoch']}/{epochs}  loss {entry['train_loss']:.4f}  train {entry['train_top1']:.2f}%"
    )
    if entry.get("val_top1") is not None:
        text += f"  val {entry['val_top1']:.2f}%"
    return text + f"  lr {entry['lr']:.3g}  {entry['images_per_s']:.0f} img/s  {entry['seconds']:.1f}s"


# -- checkpointing -------------------------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain python data (``torch.load(weights_only=True)`` can read them)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, py_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "state": [int(v) for v in py_state], "gauss_next": gauss_next},
    }


def _set_rng_state(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    n = rng["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = rng["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


def _save(
    path: Path,
    state: TrainState,
    schedule: LRSchedule,
    callbacks: tuple[Callback, ...],
    spec: dict[str, Any],
) -> None:
    last = state.history[-1] if state.history else {}
    train_state = {
        "epoch": state.epoch + 1,
        "step": state.step,
        "optimizer": state.optimizer.state_dict(),
        "scheduler": schedule.state_dict(),
        "rng": _rng_state(),
        "config": state.config.to_dict(),
        "history": [dict(h) for h in state.history],
        "callbacks": [cb.state_dict() for cb in callbacks],
    }
    meta = {
        "kind": "train",
        "epoch": state.epoch + 1,
        "train_top1": last.get("train_top1"),
        "val_top1": last.get("val_top1"),
        "edgeslim_version": edgeslim.__version__,
        "torch_version": str(torch.__version__),
    }
    channel_spec = (spec.get("meta") or {}).get("channel_spec")
    if channel_spec:
        meta["channel_spec"] = channel_spec  # a filter-pruned model reloads with its own channel counts
    recorded_input = (spec.get("meta") or {}).get("input")
    if recorded_input:
        meta["input"] = recorded_input  # the input size it trained at: eval/export/bench reuse it
    problem = find_unloadable(
        train_state["history"], "history (metrics added by callbacks)"
    ) or find_unloadable(train_state["callbacks"], "callback state_dict()")
    if problem:
        raise TrainingError(f"cannot checkpoint {problem}")
    save_checkpoint(
        path,
        state.model,
        model_name=str(spec.get("name", "unknown")),
        model_kwargs=dict(spec.get("kwargs") or {}),
        meta=meta,
        train_state=train_state,
    )


def _restore(path: Path, state: TrainState, callbacks: tuple[Callback, ...], spec: dict[str, Any]) -> None:
    ckpt = read_checkpoint(path)
    ts = ckpt.get("train_state")
    if not isinstance(ts, dict) or "optimizer" not in ts:
        raise CheckpointError(
            f"{str(path)!r} holds no training state (not written by `edgeslim train`); "
            "train without train.resume",
            field="train.resume",
        )
    saved_name = str(ckpt.get("model", {}).get("name", "unknown"))
    name = str(spec.get("name", "unknown"))
    if "unknown" not in (saved_name, name) and saved_name != name:
        raise CheckpointError(f"{str(path)!r} was trained for model {saved_name!r}, not {name!r}")
    load_state_dict_into(state.model, extract_state_dict(ckpt, str(path)), source=str(path))

    old = dict(ts.get("config") or {})
    new = state.config.to_dict()
    for key in _RESUME_MUST_MATCH:
        if key in old and old[key] != new[key]:
            raise CheckpointError(
                f"{str(path)!r} was trained with {key}={old[key]!r}; resuming with {key}={new[key]!r} "
                "is not possible (start a new run instead)"
            )
    changed = sorted(k for k in new if k in old and old[k] != new[k] and k not in ("type", "version"))
    if changed:
        warnings.warn(
            f"resuming {str(path)!r} with changed config: "
            + ", ".join(f"{k} {old[k]!r} -> {new[k]!r}" for k in changed),
            stacklevel=3,
        )

    optimizer = state.optimizer
    fresh = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    try:
        optimizer.load_state_dict(ts["optimizer"])
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{str(path)!r}: optimizer state does not fit the model ({exc})") from None
    for group, hyper in zip(optimizer.param_groups, fresh, strict=True):
        group.update(hyper)  # the new config's hyper-parameters win

    state.epoch = int(ts["epoch"])
    state.step = int(ts["step"])
    state.history = [dict(h) for h in ts.get("history", [])]
    saved_cbs = list(ts.get("callbacks") or [])
    if len(saved_cbs) == len(callbacks):
        for cb, cb_state in zip(callbacks, saved_cbs, strict=True):
            cb.load_state_dict(cb_state)
    elif callbacks or saved_cbs:
        warnings.warn(
            f"{str(path)!r} saved {len(saved_cbs)} callback state(s) but {len(callbacks)} callbacks were "
            "given; callback states were not restored",
            stacklevel=3,
        )
    _set_rng_state(ts["rng"])
