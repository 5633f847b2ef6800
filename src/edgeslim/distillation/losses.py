"""Distillation losses as plain modules with explicit arguments (no hidden state, no globals).

* :class:`KDLoss` - Hinton et al. (2015), "Distilling the Knowledge in a Neural Network":
  ``L = alpha * CE(y, s) + (1 - alpha) * T^2 * KL(softmax(t / T) || softmax(s / T))``.
* :class:`ABLoss` - Heo et al. (AAAI 2019), "Knowledge Transfer via Distillation of Activation
  Boundaries Formed by Hidden Neurons": the hinge-squared boundary loss on pre-ReLU activations.
* :class:`HintLoss` - Romero et al. (ICLR 2015), "FitNets": regress the teacher's hint layer.
* :class:`Connector` - the 1x1 conv + BN that maps student channels onto teacher channels (AB's
  ``r``, FitNets' regressor); trained with the student and thrown away afterwards.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edgeslim.errors import ConfigError


def _check_finite(owner: str, field: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{owner}.{field} must be a finite number, got {value!r}")
    return float(value)


class KDLoss(nn.Module):
    """Hinton knowledge distillation on logits.

    ``forward(student_logits, teacher_logits, targets)`` returns, averaged over the batch,
    ``alpha * CE(targets, s) + (1 - alpha) * T**2 * KL(softmax(t/T) || softmax(s/T))``.

    Why ``T**2``: the gradient of the softened term with respect to the student's logits is
    ``(softmax(s/T) - softmax(t/T)) / T``, and for large ``T`` it shrinks as ``1/T**2`` (Hinton et
    al., section 2.1). Multiplying by ``T**2`` keeps the soft term's gradient on the same scale for
    every temperature, so ``alpha`` means the same share of hard versus soft signal whatever ``T``
    is, and ``T = 1`` reduces to the plain KL. The KL is the exact per-example KL divergence
    (``sum_c p_t (log p_t - log p_s)``), averaged over the batch ("batchmean"), not over classes.
    """

    def __init__(self, alpha: float, temperature: float) -> None:
        super().__init__()
        alpha = _check_finite("KDLoss", "alpha", alpha)
        temperature = _check_finite("KDLoss", "temperature", temperature)
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(
                f"KDLoss.alpha (weight of the label cross-entropy) must be in [0, 1], got {alpha}"
            )
        if temperature <= 0.0:
            raise ConfigError(f"KDLoss.temperature must be > 0, got {temperature}")
        self.alpha = alpha
        self.temperature = temperature

    def forward(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
            raise ConfigError(
                f"KDLoss: student logits {tuple(student_logits.shape)} and teacher logits "
                f"{tuple(teacher_logits.shape)} must both be (batch, classes) with the same classes"
            )
        s = student_logits.float()
        t = teacher_logits.detach().float()
        temp = self.temperature
        soft = F.kl_div(
            F.log_softmax(s / temp, dim=1),
            F.log_softmax(t / temp, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        loss = (1.0 - self.alpha) * temp * temp * soft
        if self.alpha > 0.0:
            loss = loss + self.alpha * F.cross_entropy(s, targets)
        return loss

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, temperature={self.temperature}"


class ABLoss(nn.Module):
    """Activation-boundary loss for one layer pair (Heo et al., AAAI 2019, eq. 5).

    With ``s = r(S(I))`` the connector's output and ``t = T(I)`` the teacher's pre-ReLU response,
    ``rho(t) = 1[t > 0]`` and ``sigma = ReLU``::

        L = || rho(t) * sigma(mu - s) + (1 - rho(t)) * sigma(mu + s) ||^2

    A neuron the teacher activates must reach ``s >= mu``; one it keeps off must reach
    ``s <= -mu``; clearing the boundary by the margin costs nothing. The two terms never overlap,
    so the squared norm is the sum of squared hinge terms. ``forward`` returns the squared norm per
    image averaged over the batch (the reference code's ``sum / batch_size``).
    """

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        margin = _check_finite("ABLoss", "margin", margin)
        if margin < 0.0:
            raise ConfigError(f"ABLoss.margin must be >= 0, got {margin}")
        self.margin = margin

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if student.shape != teacher.shape:
            raise ConfigError(
                f"ABLoss: the connector output {tuple(student.shape)} and the teacher activation "
                f"{tuple(teacher.shape)} differ in shape"
            )
        s = student.float()
        active = teacher.detach() > 0
        hinge = torch.where(active, F.relu(self.margin - s), F.relu(self.margin + s))
        return hinge.pow(2).flatten(1).sum(dim=1).mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


def boundary_agreement(student: torch.Tensor, teacher: torch.Tensor) -> float:
    """Share of neurons whose on/off state (sign) the student reproduces: AB's progress measure."""
    return float(((student.detach() > 0) == (teacher.detach() > 0)).float().mean().item())


class HintLoss(nn.Module):
    """FitNets hint loss: mean squared error between the regressed student layer and the hint.

    The mean is over every element (not a sum), so the scale does not grow with the layer size.
    """

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if student.shape != teacher.shape:
            raise ConfigError(
                f"HintLoss: the regressor output {tuple(student.shape)} and the teacher hint "
                f"{tuple(teacher.shape)} differ in shape"
            )
        return F.mse_loss(student.float(), teacher.detach().float())


class Connector(nn.Sequential):
    """``r``: 1x1 conv (no bias) + BatchNorm from ``student_channels`` to ``teacher_channels``.

    Initialised as in the AB reference code: conv weights ~ N(0, 2 / out_channels), BN weight 1,
    bias 0. One per matched layer pair; its parameters are trained with the student and discarded.
    """

    def __init__(self, student_channels: int, teacher_channels: int) -> None:
        for name, value in (("student_channels", student_channels), ("teacher_channels", teacher_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"Connector.{name} must be a positive integer, got {value!r}")
        conv = nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=False)
        bn = nn.BatchNorm2d(teacher_channels)
        nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / teacher_channels))
        nn.init.ones_(bn.weight)
        nn.init.zeros_(bn.bias)
        super().__init__(conv, bn)
        self.student_channels = student_channels
        self.teacher_channels = teacher_channels
