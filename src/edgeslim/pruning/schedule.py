"""Gradual magnitude pruning (Zhu & Gupta 2017): the cubic sparsity schedule and its callback.

Step convention: ``step`` is the number of optimizer steps completed (``TrainState.step`` in
``on_after_step``), so the masks set at step ``t`` are the ones in force for the optimizer step with
0-based index ``t``. With ``t0 = start_step``, ``n = num_steps`` and ``dt = frequency``:

* ``t < t0``: no pruning (sparsity 0.0, no masks yet);
* ``t = t0``: the initial sparsity ``s_i`` is applied (as in Zhu & Gupta; with ``t0 = 0`` that is
  before the first optimizer step);
* ``t0 <= t <= t0 + n``: ``s_t = s_f + (s_i - s_f) * (1 - (t - t0) / n) ** 3`` (:func:`cubic_sparsity`);
* ``t >= t0 + n``: the final sparsity ``s_f``, exactly.

The masks are only recomputed at the *update steps* ``t0, t0 + dt, t0 + 2 dt, ...`` and at
``t0 + n`` (even if ``n`` is not a multiple of ``dt``); between them the sparsity in force is that of
the last update (:func:`scheduled_sparsity`). Each update prunes by magnitude to ``s_t`` while
keeping every earlier pruned weight pruned, so masks only grow.

Choosing the steps from epochs: give the ramp in epochs on the config (``start_epoch``,
``ramp_epochs``, ``frequency_epochs``) and :func:`schedule_in_steps` converts it once the run is
known (the callback does so when training begins; ``edgeslim prune`` and the YAML front-ends
before), or use :func:`gradual_config_for_training`. E.g. 30 epochs of 391 steps, pruning from
epoch 0 and reaching the final sparsity after 3/4 of the run (so the last quarter fine-tunes at the
final sparsity while the LR decays): ``start_step = 0``, ``num_steps = round(22.5 * 391)``, one mask
update per epoch.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

from edgeslim.errors import ConfigError
from edgeslim.pruning.configs import EPOCH_FIELDS, GradualPruning, MagnitudePruning, Scope
from edgeslim.pruning.unstructured import Layers, PruningMasks, magnitude_prune, resolve_layers
from edgeslim.select import LayerSelection
from edgeslim.train.callbacks import Callback, TrainState


def cubic_sparsity(step: int, config: GradualPruning) -> float:
    """The cubic schedule's value at ``step`` (continuous in ``step``, not the update staircase)."""
    t0, n = config.start_step, config.num_steps
    if step < t0:
        return 0.0
    if step == t0:
        return config.initial_sparsity
    if step >= t0 + n:
        return config.final_sparsity
    s_i, s_f = config.initial_sparsity, config.final_sparsity
    value = s_f + (s_i - s_f) * (1.0 - (step - t0) / n) ** 3
    return min(max(value, s_i), s_f)


def mask_update_step(step: int, config: GradualPruning) -> int | None:
    """The last update step at or before ``step`` (None before ``start_step``)."""
    t0, n, dt = config.start_step, config.num_steps, config.frequency
    if step < t0:
        return None
    if step >= t0 + n:
        return t0 + n
    return t0 + ((step - t0) // dt) * dt


def is_update_step(step: int, config: GradualPruning) -> bool:
    """Whether the masks are recomputed at ``step``."""
    return mask_update_step(step, config) == step


def scheduled_sparsity(step: int, config: GradualPruning) -> float:
    """The target sparsity in force at ``step``: the cubic value at the last update step."""
    last = mask_update_step(step, config)
    return 0.0 if last is None else cubic_sparsity(last, config)


def gradual_config_for_training(
    final_sparsity: float,
    steps_per_epoch: int,
    epochs: int,
    *,
    initial_sparsity: float = 0.0,
    start_epoch: float = 0.0,
    end_epoch: float | None = None,
    frequency: int | None = None,
    scope: Scope = "layer",
) -> GradualPruning:
    """A :class:`GradualPruning` whose ramp runs from ``start_epoch`` to ``end_epoch`` of a training run.

    ``end_epoch`` defaults to 3/4 of the way from ``start_epoch`` to ``epochs``, leaving the rest of the
    run to recover accuracy at the final sparsity. ``frequency`` (steps between mask updates)
    defaults to one epoch, or less when that would give fewer than 10 updates on the ramp.
    """
    if steps_per_epoch < 1:
        raise ConfigError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    if epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}")
    if not 0.0 <= start_epoch < epochs:
        raise ConfigError(f"start_epoch must be in [0, epochs={epochs}), got {start_epoch}")
    if end_epoch is None:
        end_epoch = start_epoch + 0.75 * (epochs - start_epoch)
    if not start_epoch < end_epoch <= epochs:
        raise ConfigError(
            f"end_epoch must be in (start_epoch={start_epoch}, epochs={epochs}], got {end_epoch}"
        )
    start_step = round(start_epoch * steps_per_epoch)
    num_steps = round(end_epoch * steps_per_epoch) - start_step
    if num_steps < 1:
        raise ConfigError(
            f"the pruning ramp from epoch {start_epoch} to {end_epoch} is shorter than one step; "
            "widen it or use more steps per epoch"
        )
    if frequency is None:
        frequency = max(1, min(steps_per_epoch, num_steps // 10))
    elif not 1 <= frequency <= num_steps:
        raise ConfigError(f"frequency must be in [1, num_steps={num_steps}], got {frequency}")
    return GradualPruning(
        final_sparsity=final_sparsity,
        initial_sparsity=initial_sparsity,
        start_step=start_step,
        num_steps=num_steps,
        frequency=frequency,
        scope=scope,
    )


#: GradualPruning's defaults: a step field equal to its default counts as not given.
_STEP_DEFAULTS = {f.name: f.default for f in dataclasses.fields(GradualPruning)}


def schedule_in_steps(config: GradualPruning, steps_per_epoch: int, epochs: int) -> GradualPruning:
    """The schedule in optimizer steps for a run of ``epochs`` x ``steps_per_epoch`` steps.

    A step field the user set (differs from its default) is kept as given. An epoch field is
    converted to the nearest step (the ramp from ``round(start_epoch * spe)`` to ``round((start_epoch
    + ramp_epochs) * spe)``; updates ``round(frequency_epochs * spe)`` steps apart, at least 1 and at
    most the ramp), after :meth:`GradualPruning.check_fits`. Left unset: start at step 0, ramp over
    the first 3/4 of the steps after the start (the last quarter recovers at the final sparsity while
    the LR decays), one update per epoch, or more often so that the ramp has at least 10 of them.
    """
    config.check_fits(epochs)
    total = max(1, steps_per_epoch * epochs)

    def given(name: str) -> bool:
        return bool(getattr(config, name) != _STEP_DEFAULTS[name])

    first = config.start_epoch if config.start_epoch is not None else 0.0
    if config.start_epoch is not None:
        start = round(config.start_epoch * steps_per_epoch)
    else:
        start = config.start_step if given("start_step") else 0
    if config.ramp_epochs is not None:
        num = round((first + config.ramp_epochs) * steps_per_epoch) - start
        if num < 1:
            raise ConfigError(
                f"GradualPruning.ramp_epochs ({config.ramp_epochs:g}) is shorter than one optimizer step "
                f"of this run ({steps_per_epoch} per epoch); lengthen the ramp",
                field="GradualPruning.ramp_epochs",
            )
    else:
        num = config.num_steps if given("num_steps") else max(1, round(0.75 * max(1, total - start)))
    if config.frequency_epochs is not None:
        frequency = min(num, max(1, round(config.frequency_epochs * steps_per_epoch)))
    elif given("frequency"):
        frequency = config.frequency
    else:
        frequency = min(num, max(1, min(steps_per_epoch, num // 10)))
    return config.replace(start_step=start, num_steps=num, frequency=frequency, **dict.fromkeys(EPOCH_FIELDS))


class GradualPruningCallback(Callback):
    """Prunes during training on the cubic schedule and keeps the pruned weights at zero.

    At every update step (see the module docstring) the masks grow to the scheduled sparsity by
    magnitude; after every optimizer step they are re-applied, and before it the gradients of pruned
    weights are zeroed. The epoch metrics get ``sparsity`` (the pruned share of the selected
    weights) and ``target_sparsity``. The masks and the last update step are in ``state_dict``, so a
    resumed run continues the same schedule with the same masks. A ramp given in epochs is converted
    to steps when training begins (:func:`schedule_in_steps` with the run's steps per epoch and
    epochs); ``config`` is then the schedule in steps, ``given`` the config as passed.
    """

    def __init__(self, config: GradualPruning, layers: Layers = None) -> None:
        if not isinstance(config, GradualPruning):
            raise ConfigError(
                f"GradualPruningCallback: config must be a GradualPruning, got {type(config).__name__}"
            )
        self.given = config  # as configured (the ramp may be in epochs)
        self.config = config  # in optimizer steps from on_train_begin on
        # names are resolved against the training model in on_train_begin (modules may be rebuilt)
        self._layers: Layers
        if layers is None or isinstance(layers, LayerSelection | str):
            self._layers = layers
        else:
            self._layers = list(layers)
        self._names: list[str] | None = None
        self.masks: PruningMasks | None = None
        self.last_update: int | None = None
        self.sized_from: GradualPruning | None = None  # see follow_run

    def follow_run(self, given: GradualPruning) -> None:
        """The step schedule was sized from the run (``schedule_in_steps(given, ...)``): size it again
        from ``given`` when the run is re-planned to another length (a time budget re-sized from the
        measured epochs), so the ramp keeps its share of the run and ends before it does."""
        self.sized_from = given

    @property
    def target_sparsity(self) -> float:
        """The scheduled sparsity of the last mask update (0.0 before pruning starts)."""
        return 0.0 if self.last_update is None else cubic_sparsity(self.last_update, self.config)

    @property
    def sparsity(self) -> float:
        """The pruned share of the selected weights, from the masks."""
        return 0.0 if self.masks is None else self.masks.sparsity()

    def _update(self, state: TrainState) -> None:
        due = mask_update_step(state.step, self.config)
        if due is None or (self.last_update is not None and due <= self.last_update):
            return
        if self._names is None:
            self._names = self._resolve(state)
        target = cubic_sparsity(due, self.config)
        self.masks = magnitude_prune(
            state.model,
            MagnitudePruning(sparsity=target, scope=self.config.scope),
            self._names,
            masks=self.masks,
            apply=False,
        )
        self.last_update = due

    def _resolve(self, state: TrainState) -> list[str]:
        return list(resolve_layers(state.model, self._layers))

    def on_train_begin(self, state: TrainState) -> None:
        if self.given.in_epochs:
            self.config = schedule_in_steps(self.given, state.steps_per_epoch, state.config.epochs)
        self._names = self._resolve(state)
        end = self.config.start_step + self.config.num_steps
        if state.total_steps < end:
            warnings.warn(
                f"gradual pruning reaches final_sparsity={self.config.final_sparsity} at step {end}, but "
                f"training has only {state.total_steps} steps: shorten num_steps or train longer",
                stacklevel=2,
            )
        self._update(state)
        if self.masks is not None:
            self.masks.apply(state.model)

    def on_replan(self, state: TrainState) -> None:
        given = self.sized_from if self.sized_from is not None else self.given
        if not given.in_epochs and self.sized_from is None:
            return  # a ramp given in steps stays as given
        try:
            self.config = schedule_in_steps(given, state.steps_per_epoch, state.config.epochs)
        except ConfigError as exc:  # a ramp given in epochs that the shorter run cannot hold
            warnings.warn(
                f"gradual pruning keeps its schedule after the run was re-planned: {exc}", stacklevel=2
            )

    def on_before_optimizer_step(self, state: TrainState) -> None:
        if self.masks is not None:
            self.masks.mask_grads(state.model)

    def on_after_step(self, state: TrainState) -> None:
        self._update(state)
        if self.masks is not None:
            self.masks.apply(state.model)

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        metrics["sparsity"] = self.sparsity
        metrics["target_sparsity"] = self.target_sparsity

    def state_dict(self) -> dict[str, Any]:
        return {
            "masks": self.masks.state_dict() if self.masks is not None else {},
            "last_update": -1 if self.last_update is None else self.last_update,
            "config": self.given.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        masks = state.get("masks")
        self.masks = PruningMasks.from_state_dict(masks) if masks else None
        last = int(state.get("last_update", -1))
        self.last_update = None if last < 0 else last
        saved = state.get("config")
        if isinstance(saved, dict) and saved != self.given.to_dict():
            warnings.warn(
                "resuming gradual pruning with a changed schedule: the saved masks are kept and the new "
                "schedule applies from the next update step",
                stacklevel=2,
            )


__all__ = [
    "GradualPruningCallback",
    "cubic_sparsity",
    "gradual_config_for_training",
    "is_update_step",
    "mask_update_step",
    "schedule_in_steps",
    "scheduled_sparsity",
]
