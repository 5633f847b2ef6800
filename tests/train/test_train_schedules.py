"""LR schedules equal their formulas at given steps; TrainConfig validates and round-trips."""

from __future__ import annotations

import math

import pytest

from edgeslim.errors import ConfigError
from edgeslim.train import LRSchedule, TrainConfig


def test_cosine_without_warmup_follows_formula() -> None:
    s = LRSchedule(kind="cosine", base_lr=0.1, total_steps=100, steps_per_epoch=10)
    for step in (0, 1, 25, 50, 75, 99):
        assert s.lr(step) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * step / 100)), abs=1e-15)
    assert s.lr(0) == pytest.approx(0.1)
    assert s.lr(50) == pytest.approx(0.05)
    assert s.lr(100) == pytest.approx(0.0, abs=1e-15)  # clamped past the end
    assert s.lr(10_000) == pytest.approx(0.0, abs=1e-15)


def test_linear_warmup_then_cosine() -> None:
    s = LRSchedule(kind="cosine", base_lr=0.2, total_steps=50, steps_per_epoch=10, warmup_steps=10)
    assert [s.lr(i) for i in range(10)] == pytest.approx([0.2 * (i + 1) / 10 for i in range(10)])
    assert s.lr(10) == pytest.approx(0.2)  # peak right after warm-up
    assert s.lr(30) == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 20 / 40)))
    assert s.lr(49) == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 39 / 40)))


def test_step_schedule_drops_at_milestone_epochs() -> None:
    s = LRSchedule(kind="step", base_lr=1.0, total_steps=40, steps_per_epoch=4, milestones=(3, 7), gamma=0.1)
    assert s.lr(0) == 1.0
    assert s.lr(11) == 1.0  # last step of epoch index 2
    assert s.lr(12) == pytest.approx(0.1)  # first step of epoch index 3
    assert s.lr(27) == pytest.approx(0.1)
    assert s.lr(28) == pytest.approx(0.01)


def test_step_schedule_with_warmup_multiplies() -> None:
    s = LRSchedule(
        kind="step",
        base_lr=1.0,
        total_steps=40,
        steps_per_epoch=4,
        warmup_steps=4,
        milestones=(1,),
        gamma=0.5,
    )
    assert [s.lr(i) for i in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 0.5, 0.5])


def test_constant_schedule() -> None:
    s = LRSchedule(kind="constant", base_lr=0.03, total_steps=7, steps_per_epoch=7)
    assert {s.lr(i) for i in range(20)} == {0.03}


def test_from_config_converts_epochs_to_steps() -> None:
    cfg = TrainConfig(epochs=5, lr=0.4, warmup_epochs=0.5, schedule="step", step_milestones=(2, 4))
    s = LRSchedule.from_config(cfg, steps_per_epoch=10)
    assert (s.total_steps, s.warmup_steps, s.milestones, s.base_lr) == (50, 5, (2, 4), 0.4)
    assert s.state_dict()["milestones"] == [2, 4]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"epochs": 0}, "epochs"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": 0.0}, "nesterov"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"warmup_epochs": 40.0}, "warmup_epochs"),
        ({"schedule": "step"}, "step_milestones"),
        ({"schedule": "step", "step_milestones": (5, 3)}, "step_milestones"),
        ({"step_gamma": 0.0}, "step_gamma"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"grad_clip": 0.0}, "grad_clip"),
        ({"seed": -1}, "seed"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_config_errors_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**changes)  # type: ignore[arg-type]


def test_config_round_trips_through_yaml() -> None:
    cfg = TrainConfig(
        epochs=3,
        optimizer="adamw",
        lr=1e-3,
        schedule="step",
        step_milestones=(1, 2),
        grad_clip=1.0,
        bf16=True,
    )
    assert TrainConfig.from_yaml(cfg.to_yaml()) == cfg
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
