"""The cubic schedule's exact values, and gradual pruning through the real training loop."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from edgeslim.errors import ConfigError
from edgeslim.pruning.configs import GradualPruning
from edgeslim.pruning.schedule import (
    GradualPruningCallback,
    cubic_sparsity,
    gradual_config_for_training,
    is_update_step,
    mask_update_step,
    scheduled_sparsity,
)
from edgeslim.pruning.unstructured import sparsity_report
from edgeslim.select import LayerSelection
from edgeslim.train import Callback, TrainConfig, TrainState, train

ALL = LayerSelection(include_classifier=True)

# -- the schedule ---------------------------------------------------------------------------------------


def test_cubic_values_match_hand_computed_numbers() -> None:
    c = GradualPruning(final_sparsity=0.8, start_step=10, num_steps=100, frequency=10)
    assert cubic_sparsity(0, c) == 0.0
    assert cubic_sparsity(9, c) == 0.0
    assert cubic_sparsity(10, c) == 0.0  # s_i at t0
    # 0.8 + (0 - 0.8) * (1 - 25/100)^3 = 0.8 * (1 - 0.421875)
    assert cubic_sparsity(35, c) == pytest.approx(0.4625, abs=1e-15)
    assert cubic_sparsity(60, c) == pytest.approx(0.7, abs=1e-15)  # 0.8 * (1 - 0.125)
    assert cubic_sparsity(110, c) == 0.8
    assert cubic_sparsity(10_000, c) == 0.8

    c = GradualPruning(final_sparsity=0.9, initial_sparsity=0.1, start_step=0, num_steps=40, frequency=5)
    assert cubic_sparsity(0, c) == 0.1  # exact, not 0.9 + (0.1 - 0.9)
    assert cubic_sparsity(20, c) == pytest.approx(0.8, abs=1e-15)  # 0.9 - 0.8 * 0.125
    assert cubic_sparsity(30, c) == pytest.approx(0.8875, abs=1e-15)  # 0.9 - 0.8 / 64
    assert cubic_sparsity(40, c) == 0.9


def test_cubic_is_monotone_and_within_bounds() -> None:
    c = GradualPruning(final_sparsity=0.95, initial_sparsity=0.05, start_step=7, num_steps=333, frequency=3)
    values = [cubic_sparsity(t, c) for t in range(400)]
    assert all(a <= b for a, b in itertools.pairwise(values))
    assert values[:7] == [0.0] * 7
    assert values[7] == 0.05 and values[340] == 0.95 and values[-1] == 0.95
    assert all(0.05 <= v <= 0.95 for v in values[7:])


def test_update_steps_and_staircase() -> None:
    c = GradualPruning(final_sparsity=0.5, start_step=10, num_steps=100, frequency=30)
    updates = [t for t in range(200) if is_update_step(t, c)]
    assert updates == [10, 40, 70, 100, 110]  # t0 + k * dt, and the end even off the grid
    assert mask_update_step(9, c) is None
    assert mask_update_step(69, c) == 40
    assert mask_update_step(150, c) == 110
    assert scheduled_sparsity(5, c) == 0.0
    assert scheduled_sparsity(69, c) == cubic_sparsity(40, c) == pytest.approx(0.5 * (1 - 0.7**3))
    assert scheduled_sparsity(109, c) == cubic_sparsity(100, c)
    assert scheduled_sparsity(110, c) == 0.5


def test_config_for_training_from_epochs() -> None:
    c = gradual_config_for_training(0.9, steps_per_epoch=50, epochs=8)
    # ramp over the first 3/4 (6 epochs = 300 steps); 10 updates -> every 30 steps
    assert (c.start_step, c.num_steps, c.frequency, c.final_sparsity) == (0, 300, 30, 0.9)
    c = gradual_config_for_training(0.8, 391, 30, start_epoch=2, end_epoch=20, scope="global")
    assert (c.start_step, c.num_steps, c.frequency, c.scope) == (782, 7038, 391, "global")  # once per epoch
    c = gradual_config_for_training(0.5, 10, 4, end_epoch=4, frequency=7)
    assert (c.num_steps, c.frequency) == (40, 7)
    with pytest.raises(ConfigError, match="end_epoch"):
        gradual_config_for_training(0.5, 10, 4, start_epoch=2, end_epoch=1)
    with pytest.raises(ConfigError, match="start_epoch"):
        gradual_config_for_training(0.5, 10, 4, start_epoch=4)
    with pytest.raises(ConfigError, match="frequency"):
        gradual_config_for_training(0.5, 10, 4, frequency=0)
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        gradual_config_for_training(0.5, 0, 4)
    with pytest.raises(ConfigError, match="final_sparsity"):
        gradual_config_for_training(1.0, 10, 4)


# -- the callback in train() ------------------------------------------------------------------------


class Loader:
    def __init__(self, n: int = 32, batch_size: int = 8) -> None:
        g = torch.Generator().manual_seed(5)
        self.x = torch.randn(n, 3, 6, 6, generator=g)
        self.y = torch.randint(0, 4, (n,), generator=g)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, len(self.x), self.batch_size):
            yield self.x[i : i + self.batch_size], self.y[i : i + self.batch_size]


def small_cnn(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 6, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 36, 4),
    )


class Probe(Callback):
    """Records the exact zero count of each selected weight after every optimizer step."""

    def __init__(self) -> None:
        self.zeros: dict[int, dict[str, int]] = {}
        self.zero_at: dict[int, dict[str, torch.Tensor]] = {}

    def on_after_step(self, state: TrainState) -> None:
        report = sparsity_report(state.model, ALL)
        self.zeros[state.step] = {r["name"]: r["zeros"] for r in report.layers}
        self.zero_at[state.step] = {
            name: state.model.get_submodule(name).weight.detach() == 0 for name in self.zeros[state.step]
        }


class Crash(Callback):
    def __init__(self, at: int | None) -> None:
        self.at = at

    def on_epoch_begin(self, state: TrainState) -> None:
        if state.epoch == self.at:
            raise KeyboardInterrupt


# 4 steps per epoch, 5 epochs = 20 steps; updates at steps 2, 6, 10, 14 (end)
GRADUAL = GradualPruning(final_sparsity=0.75, start_step=2, num_steps=12, frequency=4)
TRAIN = TrainConfig(epochs=5, lr=0.05, momentum=0.9, weight_decay=5e-3, schedule="constant")
NUMEL = {"0": 8 * 3 * 9, "3": 6 * 8 * 9, "6": 4 * 6 * 36}


def test_layer_scope_follows_the_schedule_exactly() -> None:
    model = small_cnn()
    callback = GradualPruningCallback(GRADUAL, ALL)
    probe = Probe()
    result = train(model, Loader(), TRAIN, callbacks=[callback, probe], progress=False)
    assert sorted(probe.zeros) == list(range(1, 21))
    for step, zeros in probe.zeros.items():
        target = scheduled_sparsity(step, GRADUAL)
        assert zeros == {n: round(target * k) for n, k in NUMEL.items()}, step
    assert probe.zeros[20] == {n: round(0.75 * k) for n, k in NUMEL.items()}
    assert callback.masks is not None and callback.last_update == 14
    assert callback.target_sparsity == 0.75
    assert callback.masks.layer_sparsity() == {n: round(0.75 * k) / k for n, k in NUMEL.items()}
    assert [h["target_sparsity"] for h in result.history] == [
        scheduled_sparsity(4 * e, GRADUAL) for e in range(1, 6)
    ]
    assert result.history[-1]["sparsity"] == callback.masks.sparsity()
    for step in range(1, 20):  # masks only grow: a pruned weight stays pruned
        for name in NUMEL:
            earlier, later = probe.zero_at[step][name], probe.zero_at[step + 1][name]
            assert torch.all(later[earlier]), (step, name)


def test_global_scope_total_is_exact_at_the_end() -> None:
    model = small_cnn()
    callback = GradualPruningCallback(GRADUAL.replace(scope="global"), ALL)
    probe = Probe()
    train(model, Loader(), TRAIN, callbacks=[callback, probe], progress=False)
    total = sum(NUMEL.values())
    for step, zeros in probe.zeros.items():
        assert sum(zeros.values()) == round(scheduled_sparsity(step, GRADUAL) * total), step
    assert sum(probe.zeros[20].values()) == round(0.75 * total)


def test_pruning_from_step_zero_happens_before_the_first_step() -> None:
    model = small_cnn()
    config = GradualPruning(final_sparsity=0.5, initial_sparsity=0.25, start_step=0, num_steps=8, frequency=8)

    class First(Callback):
        def __init__(self) -> None:
            self.zeros: dict[str, Any] = {}

        def on_before_optimizer_step(self, state: TrainState) -> None:
            if state.step == 0:
                self.zeros = sparsity_report(state.model, ["0"]).total

    first = First()
    train(
        model,
        Loader(),
        TRAIN.replace(epochs=2),
        callbacks=[GradualPruningCallback(config, ["0"]), first],
        progress=False,
    )
    assert first.zeros["zeros"] == round(0.25 * NUMEL["0"])
    assert sparsity_report(model, ["0"]).total["zeros"] == round(0.5 * NUMEL["0"])
    assert sparsity_report(model, ["3"]).total["zeros"] == 0


def test_resume_continues_the_schedule_with_the_same_masks(tmp_path: Path) -> None:
    straight = small_cnn()
    reference = GradualPruningCallback(GRADUAL, ALL)
    train(straight, Loader(), TRAIN, callbacks=[reference, Crash(None)], progress=False)

    path = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):  # crash after epoch 2 (8 steps: updates 2 and 6 done)
        train(
            small_cnn(),
            Loader(),
            TRAIN,
            callbacks=[GradualPruningCallback(GRADUAL, ALL), Crash(2), Probe()],
            checkpoint_path=path,
            progress=False,
        )
    saved = torch.load(path, weights_only=True)["train_state"]["callbacks"][0]
    assert saved["last_update"] == 6

    resumed = small_cnn(seed=4)
    callback = GradualPruningCallback(GRADUAL, ALL)
    probe = Probe()
    train(
        resumed,
        Loader(),
        TRAIN,
        callbacks=[callback, Crash(None), probe],
        checkpoint_path=path,
        resume=True,
        progress=False,
    )
    assert sorted(probe.zeros) == list(range(9, 21))
    assert probe.zeros[20] == {n: round(0.75 * k) for n, k in NUMEL.items()}
    assert reference.masks is not None and callback.masks is not None
    assert all(torch.equal(reference.masks[n], callback.masks[n]) for n in NUMEL)
    sa, sb = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_state_dict_round_trip_and_warning_for_short_runs(tmp_path: Path) -> None:
    callback = GradualPruningCallback(GRADUAL, ALL)
    state = callback.state_dict()
    assert state["masks"] == {} and state["last_update"] == -1
    fresh = GradualPruningCallback(GRADUAL, ALL)
    fresh.load_state_dict(state)
    assert fresh.masks is None and fresh.last_update is None and fresh.sparsity == 0.0

    with pytest.warns(UserWarning, match="only 8 steps"):
        train(small_cnn(), Loader(), TRAIN.replace(epochs=2), callbacks=[callback], progress=False)
    assert callback.last_update == 6

    path = tmp_path / "cb.pt"
    torch.save(callback.state_dict(), path)
    restored = GradualPruningCallback(GRADUAL, ALL)
    restored.load_state_dict(torch.load(path, weights_only=True))
    assert restored.last_update == 6 and restored.masks is not None and callback.masks is not None
    assert restored.target_sparsity == callback.target_sparsity == cubic_sparsity(6, GRADUAL)
    assert all(torch.equal(restored.masks[n], callback.masks[n]) for n in NUMEL)
    with pytest.raises(ConfigError, match="GradualPruning"):
        GradualPruningCallback({"final_sparsity": 0.5}, ALL)  # type: ignore[arg-type]
