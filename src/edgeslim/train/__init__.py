"""Training and evaluation: ``train(model, loader, TrainConfig(...))`` and ``evaluate(model, loader)``."""

from edgeslim.train.callbacks import Callback, TrainState
from edgeslim.train.evaluate import EvalResult, evaluate
from edgeslim.train.schedules import LRSchedule
from edgeslim.train.trainer import TrainConfig, TrainResult, build_optimizer, seed_everything, train

__all__ = [
    "Callback",
    "EvalResult",
    "LRSchedule",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "build_optimizer",
    "evaluate",
    "seed_everything",
    "train",
]
