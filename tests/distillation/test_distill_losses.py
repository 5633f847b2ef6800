"""The losses against hand computations, their zero sets and gradients, and the configs' validation."""

from __future__ import annotations

import math

import pytest
import torch

from edgeslim.config import config_from_dict
from edgeslim.distillation import AB, KD, ABLoss, Connector, Hint, HintLoss, KDLoss, boundary_agreement
from edgeslim.distillation.configs import parse_layer_pairs
from edgeslim.errors import ConfigError


def _softmax(row: list[float]) -> list[float]:
    m = max(row)
    exps = [math.exp(v - m) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def test_kd_loss_equals_hand_computation() -> None:
    s_rows = [[1.0, 2.0, 0.5], [0.3, -1.0, 2.0]]
    t_rows = [[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]]
    targets = [1, 2]
    alpha, temp = 0.3, 2.0
    ce = kl = 0.0
    for s, t, y in zip(s_rows, t_rows, targets, strict=True):
        ce += -math.log(_softmax(s)[y])
        p_t = _softmax([v / temp for v in t])
        p_s = _softmax([v / temp for v in s])
        kl += sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s, strict=True))
    expected = alpha * ce / 2 + (1 - alpha) * temp**2 * kl / 2
    loss = KDLoss(alpha, temp)(torch.tensor(s_rows), torch.tensor(t_rows), torch.tensor(targets))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_kd_loss_extremes() -> None:
    s = torch.tensor([[1.0, -2.0, 0.5]])
    t = torch.tensor([[0.0, 1.0, 2.0]])
    y = torch.tensor([0])
    # alpha = 1: plain cross-entropy; identical logits with alpha = 0: no loss at all
    assert KDLoss(1.0, 3.0)(s, t, y).item() == pytest.approx(torch.nn.functional.cross_entropy(s, y).item())
    assert KDLoss(0.0, 3.0)(t, t, y).item() == pytest.approx(0.0, abs=1e-7)


def test_kd_t_squared_keeps_the_soft_gradient_scale() -> None:
    """With T^2, the soft gradient tends to (s - t - mean(s - t)) / (C * B) as T grows."""
    s = torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.2, 0.1, -0.3, 1.0]], requires_grad=True)
    t = torch.tensor([[0.0, 1.0, 2.0, -1.0], [1.0, 0.0, 0.0, 0.5]])
    y = torch.tensor([0, 1])
    diff = (s - t).detach()
    limit = (diff - diff.mean(dim=1, keepdim=True)) / (4 * 2)
    for temp in (200.0, 1000.0):
        (grad,) = torch.autograd.grad(KDLoss(0.0, temp)(s, t, y), s)
        torch.testing.assert_close(grad, limit, rtol=2e-2, atol=2e-4)


@pytest.mark.parametrize(("alpha", "temp"), [(-0.1, 4.0), (1.5, 4.0), (0.5, 0.0), (0.5, float("nan"))])
def test_kd_loss_rejects_bad_arguments(alpha: float, temp: float) -> None:
    with pytest.raises(ConfigError, match="KDLoss"):
        KDLoss(alpha, temp)


def test_kd_loss_rejects_mismatched_logits() -> None:
    with pytest.raises(ConfigError, match="same classes"):
        KDLoss(0.5, 4.0)(torch.zeros(2, 10), torch.zeros(2, 5), torch.zeros(2, dtype=torch.long))


def test_ab_loss_is_zero_when_the_student_clears_the_boundaries_by_the_margin() -> None:
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(4, 6, 5, 5, generator=g)
    margin = 0.7
    extra = torch.rand(4, 6, 5, 5, generator=g)
    student = torch.where(teacher > 0, margin + extra, -margin - extra).requires_grad_(True)
    loss = ABLoss(margin)(student, teacher)
    assert loss.item() == 0.0
    (grad,) = torch.autograd.grad(loss, student)
    assert torch.count_nonzero(grad).item() == 0
    # exactly on the margin still costs nothing
    on_margin = torch.where(teacher > 0, torch.full_like(teacher, margin), torch.full_like(teacher, -margin))
    assert ABLoss(margin)(on_margin, teacher).item() == 0.0
    # inside the margin it does
    assert ABLoss(margin)(on_margin * 0.5, teacher).item() > 0.0


def test_ab_loss_equals_hand_computation() -> None:
    teacher = torch.tensor([[1.0, -1.0, 0.0, 2.0], [1.0, 1.0, 1.0, 1.0]]).view(2, 4, 1, 1)
    student = torch.tensor([[0.5, 0.2, -2.0, 3.0], [-3.0, -3.0, -3.0, -3.0]]).view(2, 4, 1, 1)
    # image 1: (1-0.5)^2 [on, below mu] + (1+0.2)^2 [off, above -mu] + 0 [t=0 is off, s<-mu] + 0 = 1.69
    # image 2: four active neurons at -3: (1+3)^2 * 4 = 64; the batch mean is 32.845
    assert ABLoss(1.0)(student, teacher).item() == pytest.approx(32.845, rel=1e-6)
    assert boundary_agreement(student, teacher) == pytest.approx(3 / 8)  # signs match at 3 of 8


def test_ab_loss_gradient_pushes_across_the_boundary() -> None:
    teacher = torch.tensor([1.0, -1.0]).view(1, 2, 1, 1)
    student = torch.zeros(1, 2, 1, 1, requires_grad=True)
    (grad,) = torch.autograd.grad(ABLoss(1.0)(student, teacher), student)
    # d/ds (1 - s)^2 = -2 at s=0 (raise the active neuron); d/ds (1 + s)^2 = +2 (lower the inactive one)
    assert grad.flatten().tolist() == [-2.0, 2.0]


def test_ab_loss_rejects_bad_margin_and_shapes() -> None:
    with pytest.raises(ConfigError, match="margin"):
        ABLoss(-1.0)
    with pytest.raises(ConfigError, match="differ in shape"):
        ABLoss(1.0)(torch.zeros(1, 2, 3, 3), torch.zeros(1, 3, 3, 3))


def test_hint_loss_is_the_elementwise_mean_squared_error() -> None:
    s = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    t = torch.tensor([[0.0, 2.0], [1.0, 4.0]])
    assert HintLoss()(s, t).item() == pytest.approx((1 + 0 + 4 + 0) / 4)
    with pytest.raises(ConfigError, match="differ in shape"):
        HintLoss()(s, t[:1])


def test_connector_maps_channels_and_starts_like_the_reference() -> None:
    conn = Connector(8, 16)
    assert sum(p.numel() for p in conn.parameters()) == 8 * 16 + 2 * 16
    assert conn(torch.randn(3, 8, 5, 5)).shape == (3, 16, 5, 5)
    assert torch.equal(conn[1].weight, torch.ones(16)) and torch.equal(conn[1].bias, torch.zeros(16))
    assert conn[0].bias is None
    with pytest.raises(ConfigError, match="student_channels"):
        Connector(0, 4)


def test_configs_round_trip_and_validate() -> None:
    for cfg in (
        KD(alpha=0.5, temperature=2.0),
        AB(layers=("layer1=layer1", "a.b"), margin=0.5, init_epochs=2, finish="kd"),
        Hint(layers=("x=y",), init_epochs=0, finish="ce"),
    ):
        assert config_from_dict(cfg.to_dict()) == cfg
        assert type(cfg).from_yaml(cfg.to_yaml()) == cfg
    assert parse_layer_pairs(("a=b", "c")) == [("a", "b"), ("c", "c")]
    bad = [
        (lambda: KD(alpha=2.0), "KD.alpha"),
        (lambda: KD(temperature=-1.0), "KD.temperature"),
        (lambda: AB(init_epochs=0), "AB.init_epochs"),
        (lambda: AB(margin=-0.5), "AB.margin"),
        (lambda: AB(layers=("a=b=c",)), "AB.layers"),
        (lambda: AB(layers=("=b",)), "AB.layers"),
        (lambda: AB(layers=("a=b", "a=c")), "student layer"),
        (lambda: Hint(weight=0.0), "Hint.weight"),
        (lambda: Hint(finish="mse"), "Hint.finish"),  # type: ignore[arg-type]
    ]
    for build, match in bad:
        with pytest.raises(ConfigError, match=match):
            build()
