"""Hooks into the training loop, so pruning, distillation and QAT plug in without monkey-patching.

Order of calls (``state.step`` counts optimizer steps completed so far)::

    on_train_begin(state)                      # also on resume; state.epoch = first epoch to run
    for each epoch:
        on_epoch_begin(state)
        for each batch:
            compute_loss(state, x, out, y)     # inside autocast; at most one callback may return a loss
            extra_loss(state, x, out, y)       # every non-None result is added to the loss
            on_before_optimizer_step(state)    # after backward (grads exist); state.step = this step's index
            on_after_step(state)               # after optimizer.step(); state.step already incremented
        on_epoch_end(state, metrics)           # metrics is the history entry; callbacks may add keys
        (checkpoint written here)
    on_train_end(state)                        # only when training finished without an exception
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from edgeslim.train.trainer import TrainConfig


@dataclasses.dataclass
class TrainState:
    """Mutable view of the running training, handed to every callback hook.

    ``epoch`` is the 0-based index of the current epoch, ``step`` the number of optimizer steps
    completed, ``metrics`` the running metrics of the current epoch (loss, top1, images_per_s, lr).
    A callback may set ``should_stop = True`` to end training after the current epoch, or, in
    ``on_epoch_end``, replace ``config`` with one of another ``epochs`` to re-plan the run's length
    (the trainer rebuilds the LR schedule and calls ``on_replan``). ``device``
    is where the model and the batches are (``cuda`` with ``--device``).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    epoch: int
    step: int
    total_steps: int
    steps_per_epoch: int
    batch_idx: int = 0
    lr: float = 0.0
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    should_stop: bool = False
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))


class Callback:
    """Base class with no-op hooks; override the ones you need.

    Callbacks that carry state across epochs (e.g. a gradual pruning schedule) should implement
    ``state_dict``/``load_state_dict`` with plain data (loadable by ``torch.load(weights_only=True)``)
    so that resuming from a checkpoint restores them.
    """

    def on_train_begin(self, state: TrainState) -> None:
        """Called once before the first epoch that runs (also when resuming)."""

    def on_epoch_begin(self, state: TrainState) -> None:
        """Called at the start of each epoch, after the loader's ``set_epoch``."""

    def compute_loss(
        self, state: TrainState, inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor | None:
        """Return a scalar loss to replace cross-entropy (e.g. knowledge distillation), or None."""
        return None

    def extra_loss(
        self, state: TrainState, inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor | None:
        """Return a scalar term added to the loss (e.g. a regulariser), or None."""
        return None

    def on_before_optimizer_step(self, state: TrainState) -> None:
        """Gradients are ready (and not yet clipped); e.g. mask the gradients of pruned weights."""

    def on_after_step(self, state: TrainState) -> None:
        """After ``optimizer.step()``; e.g. re-apply pruning masks or advance a sparsity schedule."""

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        """After training and validation of an epoch, before the checkpoint is written."""

    def on_replan(self, state: TrainState) -> None:
        """After an epoch in which a callback re-planned the run: ``state.config.epochs`` and
        ``state.total_steps`` hold its new length (e.g. resize a schedule that spans the run)."""

    def on_train_end(self, state: TrainState) -> None:
        """After the last epoch, when training finished normally."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (when resuming)."""
