"""One typed, validated config per quantization method (frozen; round-trips to dict/YAML).

* :class:`StaticQuant`: post-training static quantization (calibrate observers, freeze qparams);
* :class:`QAT`: quantization-aware training (fake quant in the forward, straight-through backward);
* :class:`DynamicQuant`: weights quantized ahead of time, activations per batch at run time;
* :class:`HalfPrecision`: fp16 / bf16 weights and compute (the "16-bit" option).

Defaults follow what runs fastest in ONNX Runtime's QDQ int8 path: weights int8 symmetric per
output channel, activations asymmetric (uint8-style [0, 255], zero point chosen by calibration).
:class:`QuantSpec` / :class:`QConfig` describe one quantizer / one layer's quantizers and are what
``QuantConv2d.from_float(conv, qconfig)`` takes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Self

from edgeslim.config import Config
from edgeslim.errors import ConfigError
from edgeslim.methods import register_method
from edgeslim.quantization.fake_quant import MAX_BITS, MIN_BITS
from edgeslim.quantization.observers import OBSERVERS, ObserverName

QuantScope = Literal["weights_and_activations", "all_layers"]
WeightObserverName = Literal["minmax", "mse"]


def _check_bits(owner: str, field: str, value: int) -> None:
    if not MIN_BITS <= value <= MAX_BITS:
        raise ConfigError(
            f"{owner}.{field} must be from {MIN_BITS} to {MAX_BITS} bits, got {value}",
            field=f"{owner}.{field}",
        )


def _check_percentile(owner: str, value: float) -> None:
    if not 50.0 < value <= 100.0:
        raise ConfigError(
            f"{owner}.percentile must be in (50, 100], e.g. 99.99; got {value}", field=f"{owner}.percentile"
        )


@dataclasses.dataclass(frozen=True)
class QuantSpec(Config):
    """How one tensor is quantized.

    ``per_channel`` applies along the output-channel axis (weights); ``dynamic`` recomputes the
    range from every tensor at run time (dynamic quantization) instead of using frozen qparams;
    ``learnable`` trains the scale with LSQ after the observer initialized it.
    """

    bits: int = 8
    symmetric: bool = True
    per_channel: bool = False
    observer: ObserverName = "minmax"
    percentile: float = 99.99
    averaging_constant: float = 0.01
    learnable: bool = False
    dynamic: bool = False

    def validate(self) -> None:
        _check_bits("QuantSpec", "bits", self.bits)
        _check_percentile("QuantSpec", self.percentile)
        if not 0.0 < self.averaging_constant <= 1.0:
            raise ConfigError(
                f"QuantSpec.averaging_constant must be in (0, 1], got {self.averaging_constant}"
            )
        if self.observer not in OBSERVERS:
            raise ConfigError(
                f"QuantSpec.observer must be one of {', '.join(OBSERVERS)}, got {self.observer!r}"
            )
        if self.per_channel and self.observer == "entropy":
            raise ConfigError(
                "QuantSpec.observer 'entropy' is per tensor only; use 'minmax' or 'mse' per channel"
            )


@dataclasses.dataclass(frozen=True)
class QConfig(Config):
    """The quantizers of one layer: its weight and (optionally) its input activation."""

    weight: QuantSpec = QuantSpec(bits=8, symmetric=True, per_channel=True)
    activation: QuantSpec | None = QuantSpec(bits=8, symmetric=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "version": self.VERSION,
            "weight": self.weight.to_dict(),
            "activation": None if self.activation is None else self.activation.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        if not isinstance(data, dict):
            raise ConfigError(f"QConfig: expected a mapping, got {type(data).__name__}")
        data = dict(data)
        for key in ("weight", "activation"):
            if isinstance(data.get(key), dict):
                data[key] = QuantSpec.from_dict(data[key])
        return super().from_dict(data)


@register_method("quantize", "static")
@dataclasses.dataclass(frozen=True)
class StaticQuant(Config):
    """Post-training static quantization: calibrate observers on ``calibration_batches`` batches,
    then freeze scales and zero points.

    ``bits`` is the weight width; ``act_bits`` the activation width (None: same as ``bits``).
    ``observer`` picks the activation ranges (minmax, percentile, mse, entropy);
    ``weight_observer`` the weight ranges (minmax, or mse - worth it below 8 bits). ``fuse_bn``
    folds BatchNorm into the preceding conv first (as every int8 runtime does). ``scope``:
    "weights_and_activations" quantizes conv/linear weights and their input activations;
    "all_layers" also quantizes every layer's output, including residual additions,
    concatenations, pooling and activations (needs a model that torch.fx can trace).
    """

    bits: int = 8
    act_bits: int | None = None
    per_channel: bool = True
    symmetric: bool = True
    act_symmetric: bool = False
    observer: ObserverName = "minmax"
    weight_observer: WeightObserverName = "minmax"
    percentile: float = 99.99
    calibration_batches: int = 10
    fuse_bn: bool = True
    scope: QuantScope = "weights_and_activations"

    def validate(self) -> None:
        _check_bits("StaticQuant", "bits", self.bits)
        if self.act_bits is not None:
            _check_bits("StaticQuant", "act_bits", self.act_bits)
        _check_percentile("StaticQuant", self.percentile)
        if self.observer == "moving_average":
            raise ConfigError(
                "StaticQuant.observer 'moving_average' is for QAT; use minmax, percentile, mse or entropy"
            )
        if self.calibration_batches < 1:
            raise ConfigError(
                f"StaticQuant.calibration_batches must be >= 1, got {self.calibration_batches}",
                field="StaticQuant.calibration_batches",
            )

    @property
    def activation_bits(self) -> int:
        return self.bits if self.act_bits is None else self.act_bits


@register_method("quantize", "qat", aliases={"bits": "weight_bits"}, needs_training=True)
@dataclasses.dataclass(frozen=True)
class QAT(Config):
    """Quantization-aware training: fake quantization in the forward pass, straight-through
    gradients, trained with the normal trainer.

    ``observer`` tracks activation ranges while training; the default "moving_average" keeps an
    early outlier batch from fixing a too-wide range for the rest of training (weights always
    use their current min/max, or ``weight_observer="mse"``). ``learnable_scale`` trains every
    scale with LSQ (Esser et al. 2020) after the observer initialized it. ``fuse_bn=True`` folds
    BatchNorm into the convs before training, so training updates exactly the weights that get
    quantized; ``False`` keeps BN separate (fake-quantizing the unfused conv) and :func:`convert`
    folds it at the end. ``freeze_bn_epoch`` / ``freeze_observer_epoch`` (0-based epoch from which
    BN running stats / observers are frozen) configure the :class:`QATCallback`.
    """

    weight_bits: int = 8
    act_bits: int = 8
    per_channel: bool = True
    symmetric: bool = True
    act_symmetric: bool = False
    fuse_bn: bool = True
    scope: QuantScope = "weights_and_activations"
    learnable_scale: bool = False
    observer: ObserverName = "moving_average"
    weight_observer: WeightObserverName = "minmax"
    percentile: float = 99.99
    averaging_constant: float = 0.01
    calibration_batches: int = 4
    freeze_bn_epoch: int | None = None
    freeze_observer_epoch: int | None = None

    def validate(self) -> None:
        _check_bits("QAT", "weight_bits", self.weight_bits)
        _check_bits("QAT", "act_bits", self.act_bits)
        _check_percentile("QAT", self.percentile)
        if not 0.0 < self.averaging_constant <= 1.0:
            raise ConfigError(f"QAT.averaging_constant must be in (0, 1], got {self.averaging_constant}")
        if self.calibration_batches < 1:
            raise ConfigError(f"QAT.calibration_batches must be >= 1, got {self.calibration_batches}")
        for field in ("freeze_bn_epoch", "freeze_observer_epoch"):
            value = getattr(self, field)
            if value is not None and value < 0:
                raise ConfigError(f"QAT.{field} must be >= 0 (an epoch index) or None, got {value}")


@register_method("quantize", "dynamic")
@dataclasses.dataclass(frozen=True)
class DynamicQuant(Config):
    """Dynamic quantization: Linear (and LSTM/GRU) weights quantized ahead of time to ``bits``,
    activations quantized per batch at run time (8-bit, asymmetric, per tensor).

    ``engine="simulated"`` (default) fake-quantizes in float, at any ``bits`` from 2 to 8;
    ``engine="torch"`` builds real int8 kernels with ``torch.ao.quantization.quantize_dynamic``
    (``bits=8`` only; CPU only).
    """

    bits: int = 8
    per_channel: bool = True
    engine: Literal["simulated", "torch"] = "simulated"

    def validate(self) -> None:
        _check_bits("DynamicQuant", "bits", self.bits)
        if self.engine == "torch" and self.bits != 8:
            raise ConfigError(
                f"DynamicQuant.bits must be 8 with engine='torch' (got {self.bits}); use 'simulated'"
            )


@register_method("quantize", "half")
@dataclasses.dataclass(frozen=True)
class HalfPrecision(Config):
    """Store weights and compute in 16 bits: "fp16" (IEEE half) or "bf16" (bfloat16)."""

    dtype: Literal["fp16", "bf16"] = "fp16"


QuantizationConfig = StaticQuant | QAT | DynamicQuant | HalfPrecision
