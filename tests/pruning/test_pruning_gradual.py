"""The cubic schedule's exact values, gradual pruning through the real training loop, and the ramp
given in epochs of the fine-tune (the exact steps and sparsities it gives, one-line errors)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from edgeslim import tasks
from edgeslim.errors import ConfigError
from edgeslim.pruning.configs import GradualPruning
from edgeslim.pruning.schedule import (
    GradualPruningCallback,
    cubic_sparsity,
    gradual_config_for_training,
    is_update_step,
    mask_update_step,
    schedule_in_steps,
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


# -- the ramp in epochs of the fine-tune ------------------------------------------------------------
# the keys GradualPruning.to_dict had before the ramp could be given in epochs (store keys hash them)
OLD_KEYS = {
    "type",
    "version",
    "final_sparsity",
    "initial_sparsity",
    "start_step",
    "num_steps",
    "frequency",
    "scope",
}


def test_a_ramp_in_epochs_becomes_exact_steps() -> None:
    # the study: 30 epochs of 391 steps, the ramp over the first 80% (24 epochs)
    c = schedule_in_steps(GradualPruning(0.9, ramp_epochs=24), steps_per_epoch=391, epochs=30)
    assert (c.start_step, c.num_steps, c.frequency) == (0, 24 * 391, 391)  # one update per epoch
    assert (c.start_epoch, c.ramp_epochs, c.frequency_epochs) == (None, None, None)
    c = schedule_in_steps(GradualPruning(0.9, start_epoch=2, ramp_epochs=20, frequency_epochs=0.5), 391, 30)
    assert (c.start_step, c.num_steps, c.frequency) == (782, 22 * 391 - 782, 196)  # round(195.5)
    c = schedule_in_steps(GradualPruning(0.9, start_epoch=2), 391, 30)  # the ramp: 3/4 of what follows
    assert (c.start_step, c.num_steps, c.frequency) == (782, round(0.75 * (30 - 2) * 391), 391)
    c = schedule_in_steps(GradualPruning(0.9, frequency_epochs=0.001), 391, 30)
    assert c.frequency == 1  # at least one step apart
    # nothing given: today's sizing, unchanged
    c = schedule_in_steps(GradualPruning(0.9), 100, 4)
    assert (c.start_step, c.num_steps, c.frequency) == (0, 300, 30)
    assert tasks.prune.gradual_schedule(GradualPruning(0.9), 100, 4) == c


def test_a_configured_ramp_gives_exact_sparsity_at_each_step_and_epoch() -> None:
    """4 steps per epoch, 5 epochs: starting at epoch 0.5 for 3 epochs, updating every epoch, is
    exactly the steps schedule GRADUAL (steps 2 to 14, an update every 4)."""
    given = GradualPruning(final_sparsity=0.75, start_epoch=0.5, ramp_epochs=3, frequency_epochs=1)
    callback = GradualPruningCallback(given, ALL)

    class Zeros(Callback):
        def __init__(self) -> None:
            self.by_step: dict[int, dict[str, int]] = {}

        def on_after_step(self, state: TrainState) -> None:
            self.by_step[state.step] = {
                r["name"]: r["zeros"] for r in sparsity_report(state.model, ALL).layers
            }

    probe = Zeros()
    result = train(small_cnn(), Loader(), TRAIN, callbacks=[callback, probe], progress=False)
    assert callback.config == GRADUAL and callback.given == given
    for step, zeros in probe.by_step.items():
        assert zeros == {n: round(scheduled_sparsity(step, GRADUAL) * k) for n, k in NUMEL.items()}, step
    # at the end of epochs 1..5 (steps 4, 8, ...): the cubic value of the last update (steps 2, 6, 10, 14)
    s = 0.75
    assert [h["target_sparsity"] for h in result.history] == pytest.approx(
        [0.0, s * (1 - (2 / 3) ** 3), s * (1 - (1 / 3) ** 3), s, s], abs=1e-15
    )
    assert callback.state_dict()["config"] == given.to_dict()  # a resume compares what was configured


def test_the_first_80_percent_of_training() -> None:
    """The study's ramp: over the first 4 of 5 epochs, the final sparsity exactly from epoch 4 on."""
    callback = GradualPruningCallback(GradualPruning(0.5, ramp_epochs=4), ALL)
    result = train(small_cnn(), Loader(), TRAIN, callbacks=[callback], progress=False)
    assert (callback.config.start_step, callback.config.num_steps, callback.config.frequency) == (0, 16, 1)
    assert [h["target_sparsity"] for h in result.history] == pytest.approx(
        [0.5 * (1 - 0.75**3), 0.5 * (1 - 0.5**3), 0.5 * (1 - 0.25**3), 0.5, 0.5], abs=1e-15
    )


def test_epoch_fields_keep_the_stored_keys_of_runs_that_do_not_set_them() -> None:
    assert set(GradualPruning(0.8).to_dict()) == OLD_KEYS
    assert set(GradualPruning(0.8, start_step=5, num_steps=50, frequency=5).to_dict()) == OLD_KEYS
    config = GradualPruning(0.8, start_epoch=1, ramp_epochs=24, frequency_epochs=0.5)
    data = config.to_dict()
    assert set(data) == OLD_KEYS | {"start_epoch", "ramp_epochs", "frequency_epochs"}
    assert (data["start_epoch"], data["ramp_epochs"]) == (1.0, 24.0)  # an int and YAML's float: one key
    assert GradualPruning.from_dict(data) == config and GradualPruning.from_yaml(config.to_yaml()) == config
    assert GradualPruning.from_dict({"final_sparsity": 0.8}).ramp_epochs is None


@pytest.mark.parametrize(
    ("kwargs", "field", "needle"),
    [
        ({"start_epoch": -1.0}, "start_epoch", "must be a number of epochs >= 0, got -1.0"),
        ({"ramp_epochs": 0.0}, "ramp_epochs", "must be a positive number of epochs, got 0.0"),
        ({"ramp_epochs": float("nan")}, "ramp_epochs", "must be a positive number of epochs, got nan"),
        ({"frequency_epochs": float("inf")}, "frequency_epochs", "must be a positive number of epochs"),
        ({"ramp_epochs": 2.0, "frequency_epochs": 3.0}, "frequency_epochs", "at most ramp_epochs (2"),
        ({"ramp_epochs": 2.0, "num_steps": 500}, "ramp_epochs", "in epochs (start_epoch, ramp_epochs"),
        ({"start_epoch": 1.0, "frequency": 10}, "start_epoch", "not both (frequency is set too)"),
    ],
)
def test_bad_ramps_are_refused_naming_the_field(kwargs: dict[str, float], field: str, needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        GradualPruning(0.8, **kwargs)  # type: ignore[arg-type]
    assert exc.value.field == f"GradualPruning.{field}"
    assert str(exc.value).startswith(f"GradualPruning.{field}") and needle in str(exc.value)
    assert "\n" not in str(exc.value)


def test_a_ramp_the_fine_tune_cannot_hold_is_refused() -> None:
    for config, field, needle in (
        (GradualPruning(0.8, ramp_epochs=24), "ramp_epochs", "the ramp ends at epoch 24, after the 20-epoch"),
        (GradualPruning(0.8, start_epoch=5, ramp_epochs=16), "ramp_epochs", "ends at epoch 21"),
        (
            GradualPruning(0.8, start_epoch=20),
            "start_epoch",
            "before the end of the 20-epoch fine-tune, got 20",
        ),
        (GradualPruning(0.8, frequency_epochs=16), "frequency_epochs", "at most the ramp's 15 epoch(s)"),
    ):
        with pytest.raises(ConfigError) as exc:
            config.check_fits(20)
        assert exc.value.field == f"GradualPruning.{field}" and needle in str(exc.value), str(exc.value)
        with pytest.raises(ConfigError):
            schedule_in_steps(config, 10, 20)
    GradualPruning(0.8, start_epoch=0.1, ramp_epochs=19.9).check_fits(20)  # ends exactly at the end
    GradualPruning(0.8, start_step=10**6).check_fits(1)  # a ramp in steps only warns (as before)
    with pytest.raises(ConfigError, match=r"ramp_epochs \(0.01\) is shorter than one optimizer step") as exc:
        schedule_in_steps(GradualPruning(0.8, ramp_epochs=0.01), 10, 20)
    assert exc.value.field == "GradualPruning.ramp_epochs"


def test_prune_task_prunes_on_the_configured_ramp(tiny_cifar: Path, tmp_path: Path) -> None:
    """Nothing pruned during epoch 1, the final sparsity from the middle of epoch 2; the report gives
    the schedule that ran, in steps of the real loader."""
    outcome = tasks.prune_task(
        tasks.ModelSource(name="resnet20_tiny"),
        GradualPruning(0.6, start_epoch=1, ramp_epochs=0.5, frequency_epochs=0.25),
        out=tmp_path / "g.pt",
        data_source=tasks.DataSource(path=str(tiny_cifar), split="test", val_fraction=0.0),
        finetune=TrainConfig(epochs=2, batch_size=32, lr=0.05, bf16=False, channels_last=False),
        recovery=tasks.Recovery(distill=False),
        latency_batch_sizes=(1,),
        latency_runs=2,
        measure_before=False,
        progress=False,
    )
    d = outcome.to_dict()
    assert d["sparsity"] == pytest.approx(0.6, abs=1e-3)
    # the schedule that ran, in steps (320 images / 32 = 10 steps per epoch)
    assert {k: d["config"][k] for k in ("start_step", "num_steps", "frequency")} == {
        "start_step": 10,
        "num_steps": 5,
        "frequency": 2,  # round(2.5) rounds to even
    }
    with pytest.raises(ConfigError, match="the ramp ends at epoch 3, after the 2-epoch fine-tune") as exc:
        tasks.prune_task(
            tasks.ModelSource(name="resnet20_tiny"),
            GradualPruning(0.6, start_epoch=1, ramp_epochs=2),
            out=tmp_path / "x.pt",
            data_source=tasks.DataSource(path=str(tiny_cifar), split="test"),
            finetune=TrainConfig(epochs=2),
        )
    assert exc.value.field == "GradualPruning.ramp_epochs" and not (tmp_path / "x.pt").exists()
