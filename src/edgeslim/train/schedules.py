"""Per-step learning-rate schedules as pure functions of the global step.

The LR depends only on the step number (never on hidden scheduler state), so resuming from a
checkpoint only needs the step count, and tests can check values against the formulas:

* warm-up (``warmup_steps = round(warmup_epochs * steps_per_epoch)``), multiplied into the schedule:
  ``w(s) = (s + 1) / warmup_steps`` for ``s < warmup_steps``, else 1;
* ``cosine``: ``0.5 * (1 + cos(pi * t))`` with
  ``t = clamp((s - warmup_steps) / (total_steps - warmup_steps), 0, 1)``;
* ``step``: ``gamma ** (number of milestones <= s // steps_per_epoch)`` (milestones in epochs, like
  ``MultiStepLR`` stepped once per epoch);
* ``constant``: 1.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from edgeslim.train.trainer import TrainConfig

ScheduleKind = Literal["cosine", "step", "constant"]


@dataclasses.dataclass(frozen=True)
class LRSchedule:
    """Learning rate at each global optimizer step (0-based)."""

    kind: ScheduleKind
    base_lr: float
    total_steps: int
    steps_per_epoch: int
    warmup_steps: int = 0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in ("cosine", "step", "constant"):
            raise ValueError(f"unknown schedule {self.kind!r}; expected cosine, step or constant")
        if self.total_steps < 1 or self.steps_per_epoch < 1:
            raise ValueError("total_steps and steps_per_epoch must be at least 1")
        if self.warmup_steps < 0:
            raise ValueError("warmup_steps must be >= 0")

    @classmethod
    def from_config(cls, config: TrainConfig, steps_per_epoch: int) -> LRSchedule:
        return cls(
            kind=config.schedule,
            base_lr=config.lr,
            total_steps=config.epochs * steps_per_epoch,
            steps_per_epoch=steps_per_epoch,
            warmup_steps=round(config.warmup_epochs * steps_per_epoch),
            milestones=tuple(config.step_milestones),
            gamma=config.step_gamma,
        )

    def warmup_factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return 1.0

    def main_factor(self, step: int) -> float:
        if self.kind == "constant":
            return 1.0
        if self.kind == "step":
            epoch = step // self.steps_per_epoch
            return float(self.gamma ** sum(1 for m in self.milestones if m <= epoch))
        span = max(1, self.total_steps - self.warmup_steps)
        t = min(1.0, max(0.0, (step - self.warmup_steps) / span))
        return 0.5 * (1.0 + math.cos(math.pi * t))

    def factor(self, step: int) -> float:
        """Multiplier of ``base_lr`` at ``step``."""
        return self.warmup_factor(step) * self.main_factor(step)

    def lr(self, step: int) -> float:
        return self.base_lr * self.factor(step)

    def state_dict(self) -> dict[str, Any]:
        """Plain data (for the checkpoint); the schedule itself is rebuilt from the config."""
        data = dataclasses.asdict(self)
        data["milestones"] = list(self.milestones)
        return data
