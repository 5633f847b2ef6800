"""``distill`` through the trainer: what gets gradients, the frozen teacher, the phases, the logit cache."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from edgeslim.distillation import AB, KD, Hint, StudentWithConnectors, distill
from edgeslim.errors import ConfigError
from edgeslim.models import create_model
from edgeslim.train import Callback, TrainConfig, TrainState, evaluate, train

FP32 = TrainConfig(epochs=2, batch_size=16, lr=0.05, bf16=False, channels_last=False)


class TensorLoader:
    """Fixed tensors in fixed-size batches; ``fresh`` draws new random inputs every epoch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, fresh: bool = False) -> None:
        self.x, self.y, self.batch_size, self.fresh = x, y, batch_size, fresh
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.epoch)
        x = torch.randn(self.x.shape, generator=g) if self.fresh else self.x
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), self.batch_size):
            idx = order[i : i + self.batch_size]
            yield x[idx], self.y[idx]


def images(n: int = 48, size: int = 16) -> TensorLoader:
    g = torch.Generator().manual_seed(1)
    return TensorLoader(torch.randn(n, 3, size, size, generator=g), torch.arange(n) % 10, 16)


def pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    student = create_model("resnet20_tiny")
    teacher = create_model("resnet32", width=0.25)
    return student, teacher


class GradProbe(Callback):
    """Records, at the first optimizer step of each phase, which parameters have gradients."""

    def __init__(self, teacher: nn.Module) -> None:
        self.teacher = teacher
        self.phases: list[dict[str, object]] = []

    def on_before_optimizer_step(self, state: TrainState) -> None:
        if state.step != 0:
            return
        self.phases.append(
            {
                "model": type(state.model).__name__,
                "with_grad": {n for n, p in state.model.named_parameters() if p.grad is not None},
                "all": {n for n, _ in state.model.named_parameters()},
                "teacher_grads": [p.grad for p in self.teacher.parameters() if p.grad is not None],
                "teacher_training": self.teacher.training,
                "teacher_requires_grad": any(p.requires_grad for p in self.teacher.parameters()),
            }
        )


@pytest.mark.parametrize(
    "config", [KD(), AB(init_epochs=1), Hint(init_epochs=0, finish="kd")], ids=["kd", "ab", "hint"]
)
def test_gradients_reach_only_the_student_and_connectors(config: KD | AB | Hint) -> None:
    student, teacher = pair()
    teacher.train()  # distill must switch it to eval itself, and switch it back afterwards
    before = copy.deepcopy(teacher.state_dict())
    probe = GradProbe(teacher)
    distill(student, teacher, config, images(), train_config=FP32, callbacks=[probe], progress=False)

    student_params = {n for n, _ in student.named_parameters()}
    for phase in probe.phases:
        assert phase["teacher_grads"] == []
        assert phase["teacher_training"] is False and phase["teacher_requires_grad"] is False
    first = probe.phases[0]
    if isinstance(config, KD):
        assert first["model"] == "ResNetCifar" and first["with_grad"] == student_params
    else:
        assert first["model"] == "StudentWithConnectors"
        with_grad = first["with_grad"]
        assert isinstance(with_grad, set)
        connectors = {n for n in first["all"] if n.startswith("connectors.")}  # type: ignore[union-attr]
        assert len(connectors) == (9 if isinstance(config, AB) else 3)  # conv + BN weight/bias per pair
        assert connectors <= with_grad
        assert "student.conv1.weight" in with_grad
        # the label-free AB phase cannot reach the classifier; the hint run trains it with KD
        assert ("student.linear.weight" in with_grad) == isinstance(config, Hint)
    # the teacher is untouched (weights and BN statistics) and its mode and flags are restored
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert teacher.training and all(p.requires_grad for p in teacher.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_kd_alone_teaches_the_classes_without_labels() -> None:
    """alpha = 0 ignores the targets: a student given wrong labels still learns the teacher's classes."""
    g = torch.Generator().manual_seed(3)
    y = torch.arange(240) % 3
    x = 0.3 * torch.randn(240, 3, 8, 8, generator=g)
    x[torch.arange(240), y] += 1.0

    def cnn() -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 3),
        )

    torch.manual_seed(0)
    teacher = cnn()
    labelled = TensorLoader(x, y, 32)
    train(teacher, labelled, TrainConfig(epochs=4, lr=0.1, bf16=False), progress=False)
    assert evaluate(teacher, labelled).top1 > 95.0

    torch.manual_seed(1)
    student = cnn()
    wrong = TensorLoader(x, torch.zeros_like(y), 32)
    result = distill(
        student,
        teacher,
        KD(alpha=0.0, temperature=2.0),
        wrong,
        train_config=TrainConfig(epochs=4, lr=0.1, bf16=False),
        progress=False,
    )
    assert evaluate(student, labelled).top1 > 95.0
    assert result.main.history[-1]["teacher_agreement"] > 95.0


def test_ab_initialization_aligns_the_activation_boundaries() -> None:
    student, teacher = pair()
    config = AB(init_epochs=4, weight=0.01)
    result = distill(student, teacher, config, images(), train_config=FP32.replace(epochs=5), progress=False)
    init = result.init
    assert init is not None and init.epochs_completed == 4 and result.main.epochs_completed == 1
    agreement = [h["boundary_agreement"] for h in init.history]
    losses = [h["ab_loss"] for h in init.history]
    assert agreement[-1] > agreement[0] + 10.0
    assert losses[-1] < 0.5 * losses[0]
    assert [h["phase"] for h in result.history] == ["init"] * 4 + ["main"]
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4, 5]
    assert result.layer_pairs == (
        ("layer1.2.relu2", "layer1.4.relu2"),
        ("layer2.2.relu2", "layer2.4.relu2"),
        ("layer3.2.relu2", "layer3.4.relu2"),
    )
    assert result.connector_params == (4 * 4 + 8) + (8 * 8 + 16) + (16 * 16 + 32)
    # the connectors are gone: nothing is left hooked on either model
    for model in (student, teacher):
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_cached_teacher_logits_train_exactly_like_fresh_ones() -> None:
    results = []
    for cache in (False, True):
        student, teacher = pair()
        r = distill(
            student,
            teacher,
            KD(),
            images(),
            train_config=FP32.replace(epochs=3),
            cache_teacher_logits=cache,
            progress=False,
        )
        results.append((student.state_dict(), r))
    (fresh, _), (cached, r) = results
    assert all(torch.equal(fresh[k], cached[k]) for k in fresh)
    assert r.teacher_cache == {"hits": 2 * 48, "misses": 48, "entries": 48, "enabled": 1}
    assert [h["teacher_cache_hits"] for h in r.main.history] == [0, 48, 48]


def test_the_cache_turns_itself_off_when_inputs_change_every_epoch() -> None:
    student, teacher = pair()
    loader = images()
    loader.fresh = True
    with pytest.warns(UserWarning, match="no hit in a whole epoch"):
        r = distill(
            student, teacher, KD(), loader, train_config=FP32, cache_teacher_logits=True, progress=False
        )
    assert r.teacher_cache is not None and r.teacher_cache["enabled"] == 0 and r.teacher_cache["hits"] == 0


def test_hint_without_init_phase_adds_the_hint_to_kd_for_the_whole_run() -> None:
    student, teacher = pair()
    r = distill(student, teacher, Hint(init_epochs=0), images(), train_config=FP32, progress=False)
    assert r.init is None and r.layer_pairs == (("layer2.2.relu2", "layer2.4.relu2"),)
    for h in r.main.history:
        assert h["hint_loss"] > 0.0 and "teacher_agreement" in h and "boundary_agreement" not in h


def test_explicit_layers_and_extra_callbacks_in_every_phase() -> None:
    class Seen(Callback):
        def __init__(self) -> None:
            self.models: list[str] = []

        def on_train_begin(self, state: TrainState) -> None:
            self.models.append(type(state.model).__name__)

    student, teacher = pair()
    seen = Seen()
    r = distill(
        student,
        teacher,
        AB(layers=("layer3=layer3.4.relu2", "layer2.2.relu2=layer2")),
        images(),
        train_config=FP32,
        callbacks=[seen],
        progress=False,
    )
    assert seen.models == [StudentWithConnectors.__name__, "ResNetCifar"]
    assert r.layer_pairs == (("layer3", "layer3.4.relu2"), ("layer2.2.relu2", "layer2"))


def test_bad_setups_fail_before_training() -> None:
    student, teacher = pair()
    loader = images()
    with pytest.raises(ConfigError, match=r"init_epochs \(2\) must be less than the training epochs \(2\)"):
        distill(student, teacher, AB(init_epochs=2), loader, train_config=FP32, progress=False)
    with pytest.raises(ConfigError, match="share parameters"):
        distill(student, student, KD(), loader, train_config=FP32, progress=False)
    with pytest.raises(ConfigError, match="must all come after"):
        distill(
            student,
            teacher,
            AB(),
            loader,
            train_config=FP32.replace(epochs=4, schedule="step", step_milestones=(1, 3)),
            progress=False,
        )
    with pytest.raises(ConfigError, match="matches no module of the teacher"):
        distill(student, teacher, AB(layers=("layer3=layer3.9",)), loader, train_config=FP32, progress=False)
    with pytest.raises(ConfigError, match="spatial sizes differ"):
        distill(student, teacher, Hint(layers=("layer2=layer3",)), loader, train_config=FP32, progress=False)
    with pytest.raises(ConfigError, match="KD, AB or Hint"):
        distill(student, teacher, FP32, loader, progress=False)  # type: ignore[arg-type]
    for model in (student, teacher):
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(p.requires_grad for p in teacher.parameters())
