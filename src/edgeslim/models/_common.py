"""Argument checks and channel arithmetic shared by the model families.

Model constructors validate their own arguments (not only ``create_model``) so that a bad value
raises a :class:`ModelError` naming the argument, whichever way the model is built.
"""

from __future__ import annotations

import math

from torch import nn

from edgeslim.errors import ModelError


def check_num_classes(num_classes: object) -> int:
    """``num_classes`` must be an int >= 1 (bools are rejected: ``True`` is not a class count)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    return num_classes


def check_width(width: object, name: str = "width") -> float:
    """A width multiplier must be a finite number > 0."""
    if (
        isinstance(width, bool)
        or not isinstance(width, int | float)
        or not math.isfinite(width)
        or width <= 0
    ):
        raise ModelError(f"{name} must be a finite number > 0, got {width!r}")
    return float(width)


def check_rate(rate: object, name: str) -> float:
    """A dropout-like probability must lie in [0, 1)."""
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate < 1.0:
        raise ModelError(f"{name} must be a number in [0, 1), got {rate!r}")
    return float(rate)


def check_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ModelError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def scale_channels(channels: int, width: float) -> int:
    """``round(channels * width)``, at least 1: the rounding every non-MobileNet family uses."""
    return max(1, round(channels * width))


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round to a multiple of ``divisor`` without losing more than 10% (the MobileNet/EfficientNet rule)."""
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def init_conv_bn(model: nn.Module) -> None:
    """Kaiming (fan_out) convs and unit/zero BatchNorm: the usual init for CNNs trained from scratch."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
