"""One typed, validated config per distillation method (frozen; round-trips to dict/YAML).

The training hyper-parameters (epochs, LR, batch size, bf16, ...) live in
:class:`edgeslim.train.TrainConfig`; these configs only describe what the teacher teaches.
``layers`` entries are ``"student_layer=teacher_layer"`` or one ``"name"`` present in both models;
empty means automatic matching (:func:`edgeslim.distillation.auto_layer_pairs`, by a rule per
architecture family: DenseNets pair the first BatchNorm of each dense block).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from edgeslim.config import Config
from edgeslim.errors import ConfigError
from edgeslim.methods import register_method

#: What the student trains on after a feature-transfer initialization phase.
Finish = Literal["ce", "kd"]


def _check_alpha_temperature(owner: str, alpha: float, temperature: float) -> None:
    if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise ConfigError(
            f"{owner}.alpha (weight of the label cross-entropy) must be in [0, 1], got {alpha}",
            field=f"{owner}.alpha",
        )
    if not (math.isfinite(temperature) and temperature > 0.0):
        raise ConfigError(
            f"{owner}.temperature must be a positive number, got {temperature}", field=f"{owner}.temperature"
        )


def _check_layers(owner: str, layers: tuple[str, ...]) -> None:
    for entry in layers:
        parts = entry.split("=")
        if len(parts) > 2 or not all(p.strip() for p in parts) or any(p != p.strip() for p in parts):
            raise ConfigError(
                f"{owner}.layers: {entry!r} is not 'student_layer=teacher_layer' or one layer name "
                "(e.g. 'layer3.2.relu2=layer3.8.relu2')"
            )
    pairs = parse_layer_pairs(layers)
    for side, names in (("student", [s for s, _ in pairs]), ("teacher", [t for _, t in pairs])):
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"{owner}.layers: {side} layer(s) used twice: {', '.join(dupes)}")


def parse_layer_pairs(layers: tuple[str, ...]) -> list[tuple[str, str]]:
    """``("a=b", "c")`` -> ``[("a", "b"), ("c", "c")]``."""
    pairs = []
    for entry in layers:
        student, _, teacher = entry.partition("=")
        pairs.append((student, teacher or student))
    return pairs


@register_method("distill", "kd", needs_training=True)
@dataclasses.dataclass(frozen=True)
class KD(Config):
    """Hinton distillation: ``alpha * CE(y, s) + (1 - alpha) * T^2 * KL(p_t^T || p_s^T)``.

    ``alpha`` weighs the hard labels (0 = teacher only); ``temperature`` softens both
    distributions. Defaults follow the common CIFAR setting (alpha 0.1, T 4).
    """

    alpha: float = 0.1
    temperature: float = 4.0

    def validate(self) -> None:
        _check_alpha_temperature("KD", self.alpha, self.temperature)


@register_method("distill", "ab", needs_training=True)
@dataclasses.dataclass(frozen=True)
class AB(Config):
    """Activation-boundary transfer (Heo et al., AAAI 2019).

    For ``init_epochs`` epochs the student (and one :class:`~edgeslim.distillation.Connector` per
    layer pair) is trained on the boundary loss alone - no labels - so its neurons switch on and
    off where the teacher's do; then the connectors are dropped and the student trains normally
    for the remaining epochs on cross-entropy (``finish="ce"``, the paper) or on KD with ``alpha``
    and ``temperature`` (``finish="kd"``, the reference code's CIFAR setting). The init epochs are
    part of the training budget (``TrainConfig.epochs``), not added to it.

    The loss of pair ``i`` of ``n`` (shallow to deep) is weighted ``2**(i - n + 1)`` and the sum is
    scaled by ``weight``; the default 0.003 is the reference code's ``/ 1000 * 3``.
    """

    layers: tuple[str, ...] = ()
    margin: float = 1.0
    init_epochs: int = 1
    weight: float = 0.003
    finish: Finish = "ce"
    alpha: float = 0.1
    temperature: float = 4.0

    def validate(self) -> None:
        _check_layers("AB", self.layers)
        if not (math.isfinite(self.margin) and self.margin >= 0.0):
            raise ConfigError(f"AB.margin must be a number >= 0, got {self.margin}")
        if self.init_epochs < 1:
            raise ConfigError(
                f"AB.init_epochs must be at least 1 (the boundary transfer happens there), got {self.init_epochs}"
            )
        if not (math.isfinite(self.weight) and self.weight > 0.0):
            raise ConfigError(f"AB.weight must be a positive number, got {self.weight}")
        _check_alpha_temperature("AB", self.alpha, self.temperature)


@register_method("distill", "hint", needs_training=True)
@dataclasses.dataclass(frozen=True)
class Hint(Config):
    """FitNets hints (Romero et al., ICLR 2015): regress the teacher's hint layer(s).

    A :class:`~edgeslim.distillation.Connector` maps each guided student layer (post-activation
    output) onto the teacher's hint layer, with a mean-squared-error loss times ``weight``. With
    ``init_epochs > 0`` the hint loss alone trains first (FitNets stage 1), then ``finish`` (KD by
    default, FitNets stage 2) for the remaining epochs; with ``init_epochs = 0`` the hint term is
    added to the ``finish`` loss for the whole run. Automatic matching uses the middle pair.
    """

    layers: tuple[str, ...] = ()
    weight: float = 1.0
    init_epochs: int = 1
    finish: Finish = "kd"
    alpha: float = 0.1
    temperature: float = 4.0

    def validate(self) -> None:
        _check_layers("Hint", self.layers)
        if not (math.isfinite(self.weight) and self.weight > 0.0):
            raise ConfigError(f"Hint.weight must be a positive number, got {self.weight}")
        if self.init_epochs < 0:
            raise ConfigError(f"Hint.init_epochs must be >= 0, got {self.init_epochs}")
        _check_alpha_temperature("Hint", self.alpha, self.temperature)


DistillConfig = KD | AB | Hint

#: CLI/recipe method names.
METHODS: dict[str, type[KD] | type[AB] | type[Hint]] = {"kd": KD, "ab": AB, "hint": Hint}


def method_name(config: DistillConfig) -> str:
    return {KD: "kd", AB: "ab", Hint: "hint"}[type(config)]
