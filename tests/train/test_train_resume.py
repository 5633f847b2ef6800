"""Resume gives the same weights as an uninterrupted run; mismatches fail with CheckpointError."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from edgeslim.checkpoint import save_checkpoint
from edgeslim.errors import CheckpointError
from edgeslim.train import Callback, TrainConfig, TrainState, train


class GlobalRNGLoader:
    """Shuffles with the *global* torch RNG and has no set_epoch: resume must restore the RNG."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.x))
        for i in range(0, len(self.x), self.batch_size):
            idx = order[i : i + self.batch_size]
            yield self.x[idx], self.y[idx]


class EpochLoader(GlobalRNGLoader):
    """Shuffles from (epoch) via set_epoch, like a DistributedSampler."""

    epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(100 + self.epoch))
        for i in range(0, len(self.x), self.batch_size):
            idx = order[i : i + self.batch_size]
            yield self.x[idx], self.y[idx]


def data(n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, 3, 6, 6, generator=g), torch.randint(0, 4, (n,), generator=g)


def model_fn(init_seed: int = 0) -> nn.Module:
    torch.manual_seed(init_seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.3),  # consumes the global RNG every step
        nn.Linear(6 * 36, 4),
    )


class Crash(Callback):
    """Simulates a crash at the start of epoch ``at`` (after the previous checkpoint was written)."""

    def __init__(self, at: int | None) -> None:
        self.at = at

    def on_epoch_begin(self, state: TrainState) -> None:
        if state.epoch == self.at:
            raise KeyboardInterrupt


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("loader_cls", [GlobalRNGLoader, EpochLoader])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_crash_and_resume_equals_uninterrupted(
    tmp_path: Path, loader_cls: type[GlobalRNGLoader], optimizer: Any
) -> None:
    x, y = data()
    config = TrainConfig(
        epochs=3,
        lr=0.05,
        optimizer=optimizer,
        schedule="cosine",
        warmup_epochs=1.0,
        label_smoothing=0.1,
    )
    straight = model_fn()
    full = train(straight, loader_cls(x, y, 8), config, callbacks=[Crash(None)], progress=False)

    path = tmp_path / "ckpt.pt"
    interrupted = model_fn()
    with pytest.raises(KeyboardInterrupt):
        train(
            interrupted,
            loader_cls(x, y, 8),
            config,
            callbacks=[Crash(1)],
            checkpoint_path=path,
            progress=False,
        )

    torch.manual_seed(12345)  # a different global RNG state before resuming must not matter
    resumed = model_fn(init_seed=7)  # different init: the checkpoint's weights must win
    result = train(
        resumed,
        loader_cls(x, y, 8),
        config,
        callbacks=[Crash(None)],
        checkpoint_path=path,
        resume=True,
        progress=False,
    )
    assert_same_weights(straight, resumed)
    assert result.global_step == full.global_step == 9
    drop = ("seconds", "images_per_s")
    assert [{k: v for k, v in h.items() if k not in drop} for h in result.history] == [
        {k: v for k, v in h.items() if k not in drop} for h in full.history
    ]


def test_extend_finished_run_with_more_epochs(tmp_path: Path) -> None:
    x, y = data()
    config = TrainConfig(epochs=2, lr=0.05, schedule="constant")
    straight = model_fn()
    train(straight, EpochLoader(x, y, 8), config, progress=False)

    path = tmp_path / "ckpt.pt"
    short = model_fn()
    train(short, EpochLoader(x, y, 8), config.replace(epochs=1), checkpoint_path=path, progress=False)
    resumed = model_fn()
    with pytest.warns(UserWarning, match="epochs 1 -> 2"):
        result = train(
            resumed, EpochLoader(x, y, 8), config, checkpoint_path=path, resume=True, progress=False
        )
    assert_same_weights(straight, resumed)
    assert [h["epoch"] for h in result.history] == [1, 2]


def test_resume_of_finished_run_does_nothing(tmp_path: Path) -> None:
    x, y = data()
    config = TrainConfig(epochs=1, lr=0.05, schedule="constant")
    path = tmp_path / "ckpt.pt"
    first = model_fn()
    train(first, EpochLoader(x, y, 8), config, checkpoint_path=path, progress=False)
    again = model_fn(init_seed=5)
    result = train(again, EpochLoader(x, y, 8), config, checkpoint_path=path, resume=True, progress=False)
    assert_same_weights(first, again)
    assert result.epochs_completed == 1 and result.global_step == 3


def test_resume_with_new_lr_uses_it_and_warns(tmp_path: Path) -> None:
    x, y = data()
    path = tmp_path / "ckpt.pt"
    config = TrainConfig(epochs=2, lr=0.05, schedule="constant")
    with pytest.raises(KeyboardInterrupt):
        train(
            model_fn(),
            EpochLoader(x, y, 8),
            config,
            callbacks=[Crash(1)],
            checkpoint_path=path,
            progress=False,
        )

    lrs: list[float] = []

    class LR(Callback):
        def on_before_optimizer_step(self, state: TrainState) -> None:
            lrs.append(state.optimizer.param_groups[0]["lr"])

    with pytest.warns(UserWarning, match=r"lr 0\.05 -> 0\.01"):
        train(
            model_fn(),
            EpochLoader(x, y, 8),
            config.replace(lr=0.01),
            callbacks=[LR()],
            checkpoint_path=path,
            resume=True,
            progress=False,
        )
    assert lrs == [0.01] * 3


def test_callback_state_is_restored(tmp_path: Path) -> None:
    class Counter(Callback):
        def __init__(self) -> None:
            self.steps = 0

        def on_after_step(self, state: TrainState) -> None:
            self.steps += 1

        def state_dict(self) -> dict[str, Any]:
            return {"steps": self.steps}

        def load_state_dict(self, state: dict[str, Any]) -> None:
            self.steps = state["steps"]

    x, y = data()
    path = tmp_path / "ckpt.pt"
    config = TrainConfig(epochs=2, lr=0.05)
    with pytest.raises(KeyboardInterrupt):
        train(
            model_fn(),
            EpochLoader(x, y, 8),
            config,
            callbacks=[Counter(), Crash(1)],
            checkpoint_path=path,
            progress=False,
        )
    counter = Counter()
    train(
        model_fn(),
        EpochLoader(x, y, 8),
        config,
        callbacks=[counter, Crash(None)],
        checkpoint_path=path,
        resume=True,
        progress=False,
    )
    assert counter.steps == 6


def test_unpicklable_callback_state_fails_at_save(tmp_path: Path) -> None:
    from edgeslim.errors import TrainingError

    class Bad(Callback):
        def state_dict(self) -> dict[str, Any]:
            return {"obj": object()}

    x, y = data()
    with pytest.raises(TrainingError, match="not plain data"):
        train(
            model_fn(),
            EpochLoader(x, y, 8),
            TrainConfig(epochs=1),
            callbacks=[Bad()],
            checkpoint_path=tmp_path / "c.pt",
            progress=False,
        )


@pytest.fixture
def trained_ckpt(tmp_path: Path) -> Path:
    x, y = data()
    path = tmp_path / "ckpt.pt"
    train(
        model_fn(),
        EpochLoader(x, y, 8),
        TrainConfig(epochs=1),
        checkpoint_path=path,
        model_spec={"name": "net", "kwargs": {}},
        progress=False,
    )
    return path


def test_mismatched_model_raises(trained_ckpt: Path) -> None:
    x, y = data()
    other = nn.Sequential(nn.Flatten(), nn.Linear(3 * 36, 4))
    with pytest.raises(CheckpointError, match="does not fit the model"):
        train(
            other,
            EpochLoader(x, y, 8),
            TrainConfig(epochs=2),
            checkpoint_path=trained_ckpt,
            resume=True,
            progress=False,
        )


def test_other_model_name_raises(trained_ckpt: Path) -> None:
    x, y = data()
    with pytest.raises(CheckpointError, match="trained for model 'net'"):
        train(
            model_fn(),
            EpochLoader(x, y, 8),
            TrainConfig(epochs=2),
            checkpoint_path=trained_ckpt,
            resume=True,
            model_spec={"name": "other", "kwargs": {}},
            progress=False,
        )


def test_other_optimizer_raises(trained_ckpt: Path) -> None:
    x, y = data()
    with pytest.raises(CheckpointError, match="optimizer='sgd'"):
        train(
            model_fn(),
            EpochLoader(x, y, 8),
            TrainConfig(epochs=2, optimizer="adamw"),
            checkpoint_path=trained_ckpt,
            resume=True,
            progress=False,
        )


def test_checkpoint_without_train_state_raises(tmp_path: Path) -> None:
    x, y = data()
    path = tmp_path / "plain.pt"
    save_checkpoint(path, model_fn(), model_name="net")
    with pytest.raises(CheckpointError, match="no training state"):
        train(
            model_fn(),
            EpochLoader(x, y, 8),
            TrainConfig(epochs=1),
            checkpoint_path=path,
            resume=True,
            progress=False,
        )
    with pytest.raises(CheckpointError, match="does not exist"):
        train(
            model_fn(),
            EpochLoader(x, y, 8),
            TrainConfig(epochs=1),
            checkpoint_path=tmp_path / "nope.pt",
            resume=True,
            progress=False,
        )
    with pytest.raises(ValueError, match="checkpoint_path"):
        train(model_fn(), EpochLoader(x, y, 8), TrainConfig(epochs=1), resume=True, progress=False)


def test_same_config_resume_does_not_warn(trained_ckpt: Path) -> None:
    x, y = data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(
            model_fn(),
            EpochLoader(x, y, 8),
            TrainConfig(epochs=1),
            checkpoint_path=trained_ckpt,
            resume=True,
            model_spec={"name": "net", "kwargs": {}},
            progress=False,
        )
