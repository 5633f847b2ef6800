"""``distill(student, teacher, config, data)``: knowledge distillation through the trainer's hooks.

Everything runs inside :func:`edgeslim.train.train`; distillation only adds callbacks:

* the teacher is frozen for the whole call - eval mode (BatchNorm statistics fixed, dropout off),
  ``requires_grad=False`` on every parameter, forward passes under ``torch.no_grad()`` - and its
  mode and flags are restored afterwards. It runs inside the trainer's autocast, so ``bf16`` in the
  :class:`TrainConfig` applies to it too;
* KD replaces the cross-entropy through ``Callback.compute_loss``;
* AB and FitNets hints capture activations with forward hooks (:class:`FeatureCapture`) and train
  one :class:`Connector` per layer pair. The trainer optimizes ``model.parameters()``, so during
  those phases the trainer gets a small wrapper module holding the student and the connectors
  (its forward is the student's); the connectors are discarded when the phase ends.

Optionally, teacher logits are cached across epochs (``cache_teacher_logits``). That is only
correct when every epoch feeds the same images (no random augmentation), so the cache is keyed by
the exact bytes of each input image: a changed image is a miss, never a wrong hit. An epoch after
the first without a single hit means augmentation is on; the cache then turns itself off (with a
warning) rather than hashing every batch for nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from edgeslim.distillation.capture import CaptureMode, FeatureCapture
from edgeslim.distillation.configs import AB, KD, DistillConfig, Hint, method_name, parse_layer_pairs
from edgeslim.distillation.losses import ABLoss, Connector, HintLoss, KDLoss, boundary_agreement
from edgeslim.distillation.pairing import auto_layer_pairs
from edgeslim.errors import ConfigError, DataError
from edgeslim.train import Callback, TrainConfig, TrainResult, TrainState, train
from edgeslim.train.evaluate import to_channels_last, unpack_batch
from edgeslim.train.progress import stderr_console
from edgeslim.train.trainer import BatchLoaderLike


# -- the teacher ---------------------------------------------------------------------------------
class TeacherLogitCache:
    """Teacher logits keyed by a digest of each input image's bytes (see the module docstring)."""

    def __init__(self) -> None:
        self._rows: dict[bytes, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0
        self.enabled = True

    @staticmethod
    def keys(inputs: torch.Tensor) -> list[bytes]:
        flat = inputs.detach().to("cpu").contiguous().reshape(inputs.shape[0], -1).numpy()
        return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat]

    def get(self, keys: Sequence[bytes]) -> torch.Tensor | None:
        rows = [self._rows.get(k) for k in keys]
        if any(r is None for r in rows):
            self.misses += len(keys)
            return None
        self.hits += len(keys)
        return torch.stack([r for r in rows if r is not None])

    def put(self, keys: Sequence[bytes], logits: torch.Tensor) -> None:
        for key, row in zip(keys, logits.detach().float().cpu(), strict=True):
            self._rows[key] = row.clone()

    def disable(self) -> None:
        self.enabled = False
        self._rows = {}

    def stats(self) -> dict[str, int]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "entries": len(self._rows),
            "enabled": int(self.enabled),
        }


class TeacherForward:
    """Runs the frozen teacher at most once per training step, under ``torch.no_grad()``.

    Several callbacks of one step (KD and a hint loss) share the pass; a teacher
    :class:`FeatureCapture` records its activations during it. With a ``cache`` (only when nothing
    captures teacher activations) logits come from the cache when every image of the batch hits.
    """

    def __init__(self, teacher: nn.Module, cache: TeacherLogitCache | None = None) -> None:
        self.teacher = teacher
        self.cache = cache
        self._last_inputs: torch.Tensor | None = None
        self._last_logits: torch.Tensor | None = None

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        if self._last_inputs is inputs and self._last_logits is not None:
            return self._last_logits
        keys = None
        logits = None
        if self.cache is not None and self.cache.enabled:
            keys = self.cache.keys(inputs)
            logits = self.cache.get(keys)
        if logits is None:
            with torch.no_grad():
                out = self.teacher(inputs)
            if not isinstance(out, torch.Tensor) or out.dim() != 2:
                raise DataError(f"the teacher must return (batch, classes) logits, got {type(out).__name__}")
            logits = out.detach()
            if keys is not None and self.cache is not None:
                self.cache.put(keys, logits)
        self._last_inputs, self._last_logits = inputs, logits
        return logits


# -- callbacks -----------------------------------------------------------------------------------
class KDCallback(Callback):
    """Replaces the cross-entropy with :class:`KDLoss` on the student's and the teacher's logits.

    Adds ``teacher_agreement`` (percent of training images where the student's top-1 equals the
    teacher's) to each epoch's metrics, and switches a useless logit cache off (module docstring).
    """

    def __init__(self, teacher: TeacherForward, loss: KDLoss) -> None:
        self.teacher = teacher
        self.loss = loss
        self._agree = 0
        self._seen = 0
        self._hits_at_epoch_start = 0

    def on_epoch_begin(self, state: TrainState) -> None:
        self._agree = self._seen = 0
        cache = self.teacher.cache
        self._hits_at_epoch_start = cache.hits if cache is not None else 0

    def compute_loss(
        self, state: TrainState, inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        teacher_logits = self.teacher(inputs)
        with torch.no_grad():
            self._agree += int((outputs.argmax(dim=1) == teacher_logits.argmax(dim=1)).sum().item())
            self._seen += int(targets.shape[0])
        return self.loss(outputs, teacher_logits, targets)

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        if self._seen:
            metrics["teacher_agreement"] = 100.0 * self._agree / self._seen
        cache = self.teacher.cache
        if cache is not None and cache.enabled:
            metrics["teacher_cache_hits"] = cache.hits - self._hits_at_epoch_start
            if state.epoch >= 1 and cache.hits == self._hits_at_epoch_start:
                warnings.warn(
                    "the teacher-logit cache had no hit in a whole epoch: the inputs change every "
                    "epoch (random augmentation?); caching is off for the rest of the run",
                    stacklevel=2,
                )
                cache.disable()


class FeatureTransferCallback(Callback):
    """The AB or hint loss over matched layer pairs, through trainable connectors.

    ``replace=True`` returns it from ``compute_loss`` (an initialization phase without labels);
    otherwise it is added through ``extra_loss``. Pair ``i`` is weighted ``layer_weights[i]`` and
    the total is multiplied by ``weight``. Epoch metrics: ``<name>_loss`` (mean, weighted) and, for
    AB, ``boundary_agreement`` (percent of neurons whose on/off state matches the teacher's).
    """

    def __init__(
        self,
        teacher: TeacherForward,
        student_capture: FeatureCapture,
        teacher_capture: FeatureCapture,
        pairs: Sequence[tuple[str, str]],
        connectors: nn.ModuleList,
        loss: nn.Module,
        *,
        layer_weights: Sequence[float],
        weight: float,
        replace: bool,
        name: str,
    ) -> None:
        if not (len(pairs) == len(connectors) == len(layer_weights)):
            raise ValueError("pairs, connectors and layer_weights must have the same length")
        self.teacher = teacher
        self.student_capture = student_capture
        self.teacher_capture = teacher_capture
        self.pairs = list(pairs)
        self.connectors = connectors
        self.loss = loss
        self.layer_weights = [float(w) for w in layer_weights]
        self.weight = float(weight)
        self.replace = replace
        self.name = name
        self._loss_sum = 0.0
        self._agreement_sum = 0.0
        self._batches = 0

    def on_epoch_begin(self, state: TrainState) -> None:
        self._loss_sum = self._agreement_sum = 0.0
        self._batches = 0

    def feature_loss(self, inputs: torch.Tensor) -> torch.Tensor:
        self.teacher(inputs)  # fills the teacher capture
        terms = []
        agreement = 0.0
        for (s_name, t_name), connector, w in zip(
            self.pairs, self.connectors, self.layer_weights, strict=True
        ):
            mapped = connector(self.student_capture[s_name])
            target = self.teacher_capture[t_name]
            terms.append(w * self.loss(mapped, target))
            if isinstance(self.loss, ABLoss):
                agreement += boundary_agreement(mapped, target)
        loss = torch.stack(terms).sum() * self.weight
        self._loss_sum += float(loss.detach().item())
        self._agreement_sum += agreement / len(self.pairs)
        self._batches += 1
        self.student_capture.clear()
        self.teacher_capture.clear()
        return loss

    def compute_loss(
        self, state: TrainState, inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor | None:
        return self.feature_loss(inputs) if self.replace else None

    def extra_loss(
        self, state: TrainState, inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor | None:
        return None if self.replace else self.feature_loss(inputs)

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        if self._batches:
            metrics[f"{self.name}_loss"] = self._loss_sum / self._batches
            if isinstance(self.loss, ABLoss):
                metrics["boundary_agreement"] = 100.0 * self._agreement_sum / self._batches


class StudentWithConnectors(nn.Module):
    """What the trainer optimizes during feature transfer: the student plus the connectors.

    ``forward`` is the student's, so accuracy and checkpoints of the phase describe the student.
    """

    def __init__(self, student: nn.Module, connectors: nn.ModuleList) -> None:
        super().__init__()
        self.student = student
        self.connectors = connectors

    def forward(self, x: torch.Tensor) -> Any:
        return self.student(x)


# -- results -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DistillResult:
    """What :func:`distill` did: the phases' training results and the layer pairs used."""

    method: str
    config: dict[str, Any]
    main: TrainResult
    init: TrainResult | None = None
    layer_pairs: tuple[tuple[str, str], ...] = ()
    connector_params: int = 0
    teacher_cache: dict[str, int] | None = None
    seconds: float = 0.0

    @property
    def epochs(self) -> int:
        return (self.init.epochs_completed if self.init else 0) + self.main.epochs_completed

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every epoch of both phases; ``phase`` is "init" or "main", ``epoch`` counts across both."""
        rows = [dict(h, phase="init") for h in (self.init.history if self.init else [])]
        offset = len(rows)
        rows += [dict(h, phase="main", epoch=int(h["epoch"]) + offset) for h in self.main.history]
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "config": dict(self.config),
            "epochs": self.epochs,
            "init_epochs": self.init.epochs_completed if self.init else 0,
            "layer_pairs": [list(p) for p in self.layer_pairs],
            "connector_params": self.connector_params,
            "teacher_cache": dict(self.teacher_cache) if self.teacher_cache else None,
            "history": self.history,
            "seconds": self.seconds,
        }


# -- the entry point -----------------------------------------------------------------------------
def distill(
    student: nn.Module,
    teacher: nn.Module,
    config: DistillConfig,
    data: BatchLoaderLike,
    *,
    train_config: TrainConfig | None = None,
    val_loader: Iterable[Any] | None = None,
    input_size: tuple[int, ...] | None = None,
    cache_teacher_logits: bool = False,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    device: str | torch.device | None = None,
) -> DistillResult:
    """Train ``student`` in place from a frozen ``teacher`` on the batches of ``data``.

    ``config`` is :class:`KD`, :class:`AB` or :class:`Hint`; ``train_config`` the optimizer, LR
    schedule, ``epochs`` (the whole budget, initialization phases included), bf16 and seed
    (default ``TrainConfig()``). ``input_size`` (C, H, W) is read from the first batch when not
    given (feature methods probe the layer shapes with it). ``cache_teacher_logits`` reuses teacher
    logits across epochs; turn it on only without random augmentation (module docstring).
    ``callbacks`` run after the distillation callbacks in every phase (e.g. gradual pruning while
    distilling); during feature-transfer phases ``state.model`` is the student-plus-connectors wrapper.
    ``device`` (``auto``, ``cpu``, ``cuda``): where both models run while training (AMP on CUDA);
    they are back on the CPU afterwards.
    """
    if not isinstance(config, KD | AB | Hint):
        raise ConfigError(f"config must be KD, AB or Hint, got {type(config).__name__}")
    train_config = train_config if train_config is not None else TrainConfig()
    if not isinstance(train_config, TrainConfig):
        raise ConfigError(f"train_config must be a TrainConfig, got {type(train_config).__name__}")
    init_epochs = 0 if isinstance(config, KD) else config.init_epochs
    if init_epochs >= train_config.epochs:
        raise ConfigError(
            f"{type(config).__name__}.init_epochs ({init_epochs}) must be less than the training epochs "
            f"({train_config.epochs}): the initialization phase is part of the budget; raise "
            "TrainConfig.epochs or lower init_epochs",
            field=f"{type(config).__name__}.init_epochs",
        )
    if student is teacher or {id(p) for p in student.parameters()} & {id(p) for p in teacher.parameters()}:
        raise ConfigError("the student and the teacher share parameters; pass two separate models")

    start = time.perf_counter()
    restore = _freeze(teacher)
    try:
        if train_config.channels_last:
            to_channels_last(teacher)
        cache = TeacherLogitCache() if cache_teacher_logits else None
        if isinstance(config, KD):
            main = train(
                student,
                data,
                train_config,
                val_loader=val_loader,
                callbacks=[
                    KDCallback(TeacherForward(teacher, cache), KDLoss(config.alpha, config.temperature)),
                    *callbacks,
                ],
                progress=progress,
                device=device,
            )
            return DistillResult(
                method="kd",
                config=config.to_dict(),
                main=main,
                teacher_cache=cache.stats() if cache is not None else None,
                seconds=time.perf_counter() - start,
            )
        return _feature_transfer(
            student,
            teacher,
            config,
            data,
            train_config,
            val_loader=val_loader,
            input_size=input_size,
            cache=cache,
            extra=tuple(callbacks),
            progress=progress,
            start=start,
            device=device,
        )
    finally:
        restore()


def _feature_transfer(
    student: nn.Module,
    teacher: nn.Module,
    config: AB | Hint,
    data: BatchLoaderLike,
    train_config: TrainConfig,
    *,
    val_loader: Iterable[Any] | None,
    input_size: tuple[int, ...] | None,
    cache: TeacherLogitCache | None,
    extra: tuple[Callback, ...],
    progress: bool,
    start: float,
    device: str | torch.device | None = None,
) -> DistillResult:
    is_ab = isinstance(config, AB)
    example = torch.zeros(2, *(input_size or _first_input_size(data)))
    pairs = resolve_layer_pairs(config, student, teacher, example)
    mode: CaptureMode = "pre_relu" if is_ab else "output"
    s_cap = FeatureCapture(student, [s for s, _ in pairs], mode=mode, role="student")
    try:
        t_cap = FeatureCapture(teacher, [t for _, t in pairs], mode=mode, role="teacher", detach=True)
    except BaseException:
        s_cap.remove()
        raise
    try:
        connectors = build_connectors(student, teacher, s_cap, t_cap, pairs, example)
        wrapper = StudentWithConnectors(student, connectors)
        n = len(pairs)
        layer_weights = [2.0 ** (i - n + 1) for i in range(n)] if is_ab else [1.0] * n
        feature_cb = FeatureTransferCallback(
            TeacherForward(teacher),
            s_cap,
            t_cap,
            pairs,
            connectors,
            ABLoss(config.margin) if isinstance(config, AB) else HintLoss(),
            layer_weights=layer_weights,
            weight=config.weight,
            replace=config.init_epochs > 0,
            name="ab" if is_ab else "hint",
        )
        finish: list[Callback] = []
        kd_cache = None
        if config.finish == "kd":
            if config.init_epochs > 0:
                kd_cache = cache
                kd_teacher = TeacherForward(teacher, kd_cache)
            else:  # hints stay active: share their teacher pass (its activations are needed, no cache)
                kd_teacher = feature_cb.teacher
            finish.append(KDCallback(kd_teacher, KDLoss(config.alpha, config.temperature)))
        connector_params = sum(p.numel() for p in connectors.parameters())
        console = stderr_console() if progress else None
        name = "AB" if is_ab else "Hint"
        if config.init_epochs == 0:
            if console:
                console.print(
                    f"{name}: hint loss on {n} layer pair(s) added to {config.finish} for the whole run"
                )
            main = train(
                wrapper,
                data,
                train_config,
                val_loader=val_loader,
                callbacks=[*finish, feature_cb, *extra],
                progress=progress,
                device=device,
            )
            init = None
        else:
            k = config.init_epochs
            init_cfg, main_cfg = _init_config(train_config, k), _main_config(train_config, k)
            if console:
                what = "boundary transfer" if is_ab else "hint regression"
                console.print(
                    f"{name} initialization: {k} epoch(s) of {what} on {n} layer pair(s), no labels; "
                    f"then {train_config.epochs - k} epoch(s) of {config.finish}"
                )
            init = train(
                wrapper, data, init_cfg, callbacks=[feature_cb, *extra], progress=progress, device=device
            )
            s_cap.remove()
            t_cap.remove()
            main = train(
                student,
                data,
                main_cfg,
                val_loader=val_loader,
                callbacks=[*finish, *extra],
                progress=progress,
                device=device,
            )
    finally:
        s_cap.remove()
        t_cap.remove()
    return DistillResult(
        method=method_name(config),
        config=config.to_dict(),
        main=main,
        init=init,
        layer_pairs=tuple(pairs),
        connector_params=connector_params,
        teacher_cache=kd_cache.stats() if kd_cache is not None else None,
        seconds=time.perf_counter() - start,
    )


# -- helpers -------------------------------------------------------------------------------------
def _freeze(teacher: nn.Module) -> Any:
    """Eval mode and no gradients for the teacher; returns a function that restores both."""
    was_training = teacher.training
    flags = [(p, p.requires_grad) for p in teacher.parameters()]
    teacher.eval()
    teacher.requires_grad_(False)

    def restore() -> None:
        teacher.train(was_training)
        for p, flag in flags:
            p.requires_grad_(flag)

    return restore


def _first_input_size(data: Iterable[Any]) -> tuple[int, ...]:
    for batch in data:
        inputs, _ = unpack_batch(batch)
        return tuple(inputs.shape[1:])
    raise DataError("the training loader yielded no batches")


def resolve_layer_pairs(
    config: AB | Hint, student: nn.Module, teacher: nn.Module, example: torch.Tensor
) -> list[tuple[str, str]]:
    """The configured ``student=teacher`` pairs, else automatic ones (AB: all, Hint: the middle)."""
    if config.layers:
        return parse_layer_pairs(config.layers)
    pairs = auto_layer_pairs(student, teacher, example)
    return pairs if isinstance(config, AB) else [pairs[len(pairs) // 2]]


def build_connectors(
    student: nn.Module,
    teacher: nn.Module,
    student_capture: FeatureCapture,
    teacher_capture: FeatureCapture,
    pairs: Sequence[tuple[str, str]],
    example: torch.Tensor,
) -> nn.ModuleList:
    """One :class:`Connector` per pair, sized by a probe pass (which also validates the captures)."""
    shapes: dict[str, dict[str, tuple[int, ...]]] = {"student": {}, "teacher": {}}
    for role, model, capture in (
        ("student", student, student_capture),
        ("teacher", teacher, teacher_capture),
    ):
        was_training = model.training
        try:
            model.eval()
            with torch.no_grad():
                model(example)
            for name in capture:
                shapes[role][name] = tuple(capture[name].shape)
        finally:
            model.train(was_training)
            capture.clear()
    connectors = nn.ModuleList()
    for s_name, t_name in pairs:
        s_shape, t_shape = shapes["student"][s_name], shapes["teacher"][t_name]
        if len(s_shape) != 4 or len(t_shape) != 4:
            raise ConfigError(
                f"layer pair {s_name}={t_name}: feature transfer needs 4-d feature maps, got student "
                f"{s_shape} and teacher {t_shape}"
            )
        if s_shape[2:] != t_shape[2:]:
            raise ConfigError(
                f"layer pair {s_name}={t_name}: spatial sizes differ (student {s_shape[2]}x{s_shape[3]}, "
                f"teacher {t_shape[2]}x{t_shape[3]}); pair layers at the same resolution"
            )
        connectors.append(Connector(s_shape[1], t_shape[1]))
    return connectors


def _init_config(config: TrainConfig, epochs: int) -> TrainConfig:
    """The initialization phase: ``epochs`` at the configured peak LR, constant (as the AB code)."""
    return config.replace(
        epochs=epochs,
        schedule="constant",
        warmup_epochs=min(config.warmup_epochs, float(epochs)),
        step_milestones=(),
    )


def _main_config(config: TrainConfig, init_epochs: int) -> TrainConfig:
    """The rest of the budget; step milestones (in epochs of the whole run) shift by the init phase."""
    if any(m <= init_epochs for m in config.step_milestones):
        raise ConfigError(
            f"step_milestones {list(config.step_milestones)} must all come after the {init_epochs} "
            "initialization epoch(s) (milestones count epochs of the whole run)"
        )
    remaining = config.epochs - init_epochs
    return config.replace(
        epochs=remaining,
        warmup_epochs=min(config.warmup_epochs, float(remaining)),
        step_milestones=tuple(m - init_epochs for m in config.step_milestones),
    )
