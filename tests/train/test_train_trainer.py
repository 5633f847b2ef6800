"""The training loop on tiny models and in-memory data: learning, hooks, divergence, checkpoints."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from edgeslim.checkpoint import read_checkpoint
from edgeslim.errors import TrainingError
from edgeslim.train import Callback, LRSchedule, TrainConfig, TrainState, evaluate, train


class TensorLoader:
    """Minimal loader: fixed tensors, reshuffled per epoch from (seed, epoch) via set_epoch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = True) -> None:
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.epoch = 0
        self.epochs_seen: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.epochs_seen.append(epoch)

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        order = (
            torch.randperm(n, generator=torch.Generator().manual_seed(self.epoch)) if self.shuffle else None
        )
        for i in range(0, n, self.batch_size):
            idx = order[i : i + self.batch_size] if order is not None else slice(i, i + self.batch_size)
            yield self.x[idx], self.y[idx]


def color_data(n: int = 192, classes: int = 3, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Class c = channel c is brighter: linearly separable images."""
    g = torch.Generator().manual_seed(1)
    y = torch.arange(n) % classes
    x = 0.3 * torch.randn(n, 3, size, size, generator=g)
    x[torch.arange(n), y] += 1.0
    return x, y


def tiny_cnn(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, classes),
    )


def cfg(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = {"epochs": 2, "lr": 0.1, "schedule": "constant", "weight_decay": 0.0}
    base.update(kw)
    return TrainConfig(**base)


def test_learns_separable_data() -> None:
    x, y = color_data()
    model = tiny_cnn()
    loader = TensorLoader(x, y, 32)
    result = train(
        model, loader, cfg(epochs=4, schedule="cosine"), val_loader=TensorLoader(x, y, 64), progress=False
    )
    assert result.history[-1]["train_top1"] > 90.0
    assert result.final["val_top1"] > 90.0
    assert evaluate(model, TensorLoader(x, y, 64)).top1 == pytest.approx(result.final["val_top1"])
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert loader.epochs_seen == [0, 1, 2, 3]
    assert result.global_step == 4 * 6 and result.epochs_completed == 4
    assert all(h["images_per_s"] > 0 and h["seconds"] > 0 for h in result.history)
    json.dumps(result.to_dict())  # JSON-ready for the CLI


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def on_train_begin(self, state: TrainState) -> None:
        self.calls.append(("train_begin", state.epoch, state.step, state.total_steps))

    def on_epoch_begin(self, state: TrainState) -> None:
        self.calls.append(("epoch_begin", state.epoch, state.step))

    def compute_loss(self, state: TrainState, inputs: Any, outputs: Any, targets: Any) -> None:
        self.calls.append(("compute_loss", state.epoch, state.step))

    def extra_loss(self, state: TrainState, inputs: Any, outputs: Any, targets: Any) -> None:
        self.calls.append(("extra_loss", state.epoch, state.step))

    def on_before_optimizer_step(self, state: TrainState) -> None:
        assert all(p.grad is not None for p in state.model.parameters())
        self.calls.append(("before_step", state.epoch, state.step, state.lr))

    def on_after_step(self, state: TrainState) -> None:
        self.calls.append(("after_step", state.epoch, state.step))

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        metrics["custom"] = 1.5  # callbacks may add to the history entry
        self.calls.append(("epoch_end", state.epoch, state.step, metrics["epoch"]))

    def on_train_end(self, state: TrainState) -> None:
        self.calls.append(("train_end", state.epoch, state.step))


def test_callbacks_called_in_order_with_step_counts() -> None:
    x, y = color_data(n=12)
    rec = Recorder()
    config = cfg(epochs=2, schedule="cosine", warmup_epochs=1.0)
    result = train(tiny_cnn(), TensorLoader(x, y, 4), config, callbacks=[rec], progress=False)
    schedule = LRSchedule.from_config(config, steps_per_epoch=3)
    expected: list[tuple[Any, ...]] = [("train_begin", 0, 0, 6)]
    step = 0
    for epoch in range(2):
        expected.append(("epoch_begin", epoch, step))
        for _ in range(3):
            expected += [
                ("compute_loss", epoch, step),
                ("extra_loss", epoch, step),
                ("before_step", epoch, step, schedule.lr(step)),
                ("after_step", epoch, step + 1),
            ]
            step += 1
        expected.append(("epoch_end", epoch, step, epoch + 1))
    expected.append(("train_end", 2, 6))
    assert rec.calls == expected
    assert [h["custom"] for h in result.history] == [1.5, 1.5]


class L2OnLastLayer(Callback):
    """extra_loss = 0.5 * ||W||^2 of the classifier, whose gradient is exactly W."""

    def extra_loss(self, state: TrainState, inputs: Any, outputs: Any, targets: Any) -> torch.Tensor:
        w = state.model[-1].weight  # type: ignore[index]
        return 0.5 * (w**2).sum()


class GradGrabber(Callback):
    def __init__(self) -> None:
        self.grads: list[torch.Tensor] = []
        self.weights: list[torch.Tensor] = []

    def on_before_optimizer_step(self, state: TrainState) -> None:
        layer = state.model[-1]  # type: ignore[index]
        self.grads.append(layer.weight.grad.clone())
        self.weights.append(layer.weight.detach().clone())


def test_extra_loss_changes_gradients_exactly() -> None:
    x, y = color_data(n=8)
    grads = []
    for extra in ([], [L2OnLastLayer()]):
        grab = GradGrabber()
        train(tiny_cnn(), TensorLoader(x, y, 8), cfg(epochs=1), callbacks=[*extra, grab], progress=False)
        grads.append(grab)
    plain, with_l2 = grads
    torch.testing.assert_close(with_l2.grads[0] - plain.grads[0], with_l2.weights[0])


def test_compute_loss_replaces_cross_entropy() -> None:
    class ZeroLoss(Callback):
        def compute_loss(
            self, state: TrainState, inputs: Any, outputs: torch.Tensor, targets: Any
        ) -> torch.Tensor:
            return outputs.sum() * 0.0

    x, y = color_data(n=8)
    model = tiny_cnn()
    before = [p.detach().clone() for p in model.parameters()]
    train(model, TensorLoader(x, y, 4), cfg(epochs=1), callbacks=[ZeroLoss()], progress=False)
    for a, b in zip(before, model.parameters(), strict=True):
        assert torch.equal(a, b)

    with pytest.raises(TrainingError, match="at most one"):
        train(
            tiny_cnn(),
            TensorLoader(x, y, 4),
            cfg(epochs=1),
            callbacks=[ZeroLoss(), ZeroLoss()],
            progress=False,
        )


def test_huge_lr_diverges_with_hint() -> None:
    x, y = color_data(n=64)
    with pytest.raises(
        TrainingError,
        match=r"epoch \d+, step \d+.*lower the learning rate \(TrainConfig\.lr.*TrainConfig\.grad_clip",
    ) as exc:
        train(tiny_cnn(), TensorLoader(x, y, 8), cfg(epochs=3, lr=1e30), progress=False)
    assert exc.value.field == "TrainConfig.lr"


def test_nan_from_callback_raises_at_first_step() -> None:
    class NaNLoss(Callback):
        def extra_loss(self, state: TrainState, inputs: Any, outputs: Any, targets: Any) -> torch.Tensor:
            return torch.tensor(float("nan"))

    x, y = color_data(n=8)
    with pytest.raises(TrainingError, match="loss is nan at epoch 1, step 0"):
        train(tiny_cnn(), TensorLoader(x, y, 4), cfg(), callbacks=[NaNLoss()], progress=False)


def test_checkpoint_every_epoch_atomic_and_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "run" / "model.pt"
    seen: list[int] = []

    class Check(Callback):
        def on_epoch_begin(self, state: TrainState) -> None:
            if state.epoch > 0:
                seen.append(read_checkpoint(path)["train_state"]["epoch"])

    x, y = color_data(n=16)
    model = tiny_cnn()
    spec = {"name": "tiny", "kwargs": {"classes": 3}}
    result = train(
        model,
        TensorLoader(x, y, 8),
        cfg(epochs=3),
        callbacks=[Check()],
        checkpoint_path=path,
        model_spec=spec,
        progress=False,
    )
    assert seen == [1, 2]
    assert result.checkpoint_path == path
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]  # no .tmp left behind
    raw = torch.load(path, weights_only=True)
    assert raw["model"] == {"name": "tiny", "kwargs": {"classes": 3}}
    ts = raw["train_state"]
    assert (ts["epoch"], ts["step"]) == (3, 6)
    assert ts["config"] == cfg(epochs=3).to_dict()
    assert len(ts["history"]) == 3 and raw["meta"]["epoch"] == 3
    for k, v in model.state_dict().items():
        assert torch.equal(raw["state_dict"][k], v)


def test_no_checkpoint_path_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    x, y = color_data(n=8)
    result = train(tiny_cnn(), TensorLoader(x, y, 8), cfg(epochs=1), progress=False)
    assert result.checkpoint_path is None and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("bf16", "channels_last"), [(True, False), (False, True), (True, True)])
def test_bf16_and_channels_last_paths(bf16: bool, channels_last: bool) -> None:
    x, y = color_data(n=64)
    model = tiny_cnn()
    result = train(
        model,
        TensorLoader(x, y, 16),
        cfg(epochs=2, bf16=bf16, channels_last=channels_last),
        val_loader=TensorLoader(x, y, 64),
        progress=False,
    )
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    assert result.final["val_top1"] is not None
    assert next(model.parameters()).dtype == torch.float32  # autocast keeps fp32 master weights
    conv_w = model[0].weight  # type: ignore[index]
    assert conv_w.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_grad_clip_bounds_the_update() -> None:
    x, y = color_data(n=8)
    model = tiny_cnn()
    before = [p.detach().clone() for p in model.parameters()]
    config = cfg(epochs=1, lr=1.0, momentum=0.0, nesterov=False, grad_clip=1e-3)
    train(model, TensorLoader(x, y, 8), config, progress=False)
    delta = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before, strict=True)])
    assert 0 < delta.norm().item() <= 1e-3 * (1 + 1e-5)


def test_no_decay_on_norm_and_bias_groups() -> None:
    from edgeslim.train import build_optimizer

    model = tiny_cnn()
    opt = build_optimizer(model, cfg(weight_decay=0.1, decay_norm_and_bias=False))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() > 1 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert isinstance(build_optimizer(model, cfg(optimizer="adamw", lr=1e-3)), torch.optim.AdamW)
    # parameters named undecayed join the no-decay group, whatever their shape
    weight = next(p for p in model.parameters() if p.dim() > 1)
    for decays_bias in (True, False):
        opt = build_optimizer(
            model, cfg(weight_decay=0.1, decay_norm_and_bias=decays_bias), undecayed=[weight]
        )
        decay, no_decay = opt.param_groups
        assert any(p is weight for p in no_decay["params"]) and not any(p is weight for p in decay["params"])
        assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
        assert all(p.dim() > 1 for p in decay["params"]) or decays_bias


def test_should_stop_ends_after_the_epoch_and_mode_is_restored() -> None:
    class StopAfterFirst(Callback):
        def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
            state.should_stop = True

    x, y = color_data(n=8)
    model = tiny_cnn().eval()
    result = train(model, TensorLoader(x, y, 8), cfg(epochs=5), callbacks=[StopAfterFirst()], progress=False)
    assert result.epochs_completed == 1 and result.stopped_early
    assert not model.training


def test_progress_never_writes_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = color_data(n=8)
    train(tiny_cnn(), TensorLoader(x, y, 4), cfg(epochs=1), val_loader=TensorLoader(x, y, 8), progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "epoch 1/1" in captured.err


@pytest.mark.parametrize("new_total", [5, 2, 1])
def test_a_callback_re_plans_the_run_and_the_lr_schedule_follows(new_total: int) -> None:
    class Replan(Callback):
        def __init__(self) -> None:
            self.heard: list[tuple[int, int]] = []
            self.lrs: list[float] = []

        def on_after_step(self, state: TrainState) -> None:
            self.lrs.append(state.lr)

        def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
            if state.epoch == 0:
                state.config = state.config.replace(epochs=new_total)

        def on_replan(self, state: TrainState) -> None:
            self.heard.append((state.config.epochs, state.total_steps))

    x, y = color_data(n=16)
    replan = Replan()
    result = train(
        tiny_cnn(),
        TensorLoader(x, y, 8),
        cfg(epochs=3, schedule="cosine"),
        callbacks=[replan],
        progress=False,
    )
    assert result.epochs_completed == new_total and not result.stopped_early
    assert replan.heard == [(new_total, 2 * new_total)]
    # epoch 1 ran on the 3-epoch cosine, the rest on the new length's: a pure function of the step
    planned, replanned = LRSchedule("cosine", 0.1, 6, 2), LRSchedule("cosine", 0.1, 2 * new_total, 2)
    expected = [planned.lr(s) for s in range(2)] + [replanned.lr(s) for s in range(2, 2 * new_total)]
    assert replan.lrs == pytest.approx(expected)


def test_re_planning_below_the_epochs_already_run_is_refused() -> None:
    class Shrink(Callback):
        def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
            if state.epoch == 1:
                state.config = state.config.replace(epochs=1)

    x, y = color_data(n=8)
    with pytest.raises(TrainingError, match="re-planned training to 1 epoch"):
        train(tiny_cnn(), TensorLoader(x, y, 8), cfg(epochs=3), callbacks=[Shrink()], progress=False)
