"""The quantized-model representation: :class:`FakeQuantize`, :class:`OutputQuant`,
:class:`QuantConv2d` and :class:`QuantLinear`.

This is the interface deployment (QDQ ONNX export, packed low-bit storage) builds on; keep it
stable. A quantized model is an ordinary float model in which

* selected ``nn.Conv2d`` / ``nn.Linear`` layers are :class:`QuantConv2d` / :class:`QuantLinear`:
  the same parameters (``weight``, ``bias``) and state_dict keys as the float layer, plus
  ``weight_fake_quant`` (per output channel, axis 0, by default) and ``input_fake_quant``
  (per tensor, or ``None`` when the input is quantized elsewhere, e.g. by an :class:`OutputQuant`);
* with the "all_layers" scope, :class:`OutputQuant` modules (a :class:`FakeQuantize` that also
  records which node it follows) sit after every layer output, residual add, concat and pooling.

Each :class:`FakeQuantize` holds ``scale`` (float32) and ``zero_point`` (int32) - 0-d per tensor,
1-d ``[C]`` per channel - and the integer range ``qmin``/``qmax`` (see
:mod:`edgeslim.quantization.fake_quant` for the conventions). Its forward uses torch's
fake-quantize ops, which export to ONNX as QuantizeLinear/DequantizeLinear.
"""

from __future__ import annotations

from typing import Any, Self

import torch
from torch import Tensor, nn

from edgeslim.quantization.configs import QConfig, QuantSpec
from edgeslim.quantization.fake_quant import (
    check_bits,
    dequantize,
    fake_quantize,
    lsq_fake_quantize,
    qparams,
    quant_range,
    quantize,
)
from edgeslim.quantization.observers import MinMaxObserver, Observer, make_observer


class FakeQuantize(nn.Module):
    """Observe a tensor's range and/or quantize-dequantize it.

    ``forward(x)``: if ``observe``, record ``x`` in the observer (and, when ``enabled``, refresh
    ``scale``/``zero_point`` from it); then, if ``enabled``, return the fake-quantized ``x``, else
    ``x`` itself. Calibration runs with ``observe=True, enabled=False``; :meth:`freeze` computes
    the qparams once and stops observing. With ``learnable=True`` the scale is an ``nn.Parameter``
    trained by LSQ: the observer only initializes it (first batch), then observing stops.
    With ``dynamic=True`` the range is taken from every input afresh (dynamic quantization) and
    nothing is stored. Observers update in train and eval mode alike (and under
    ``torch.inference_mode``): stop them with ``observe=False`` (:meth:`freeze`, :class:`QATCallback`).
    """

    scale: Tensor
    zero_point: Tensor

    def __init__(
        self,
        bits: int = 8,
        symmetric: bool = False,
        axis: int | None = None,
        observer: Observer | None = None,
        *,
        learnable: bool = False,
        dynamic: bool = False,
        channels: int | None = None,
    ) -> None:
        super().__init__()
        self.bits = check_bits(bits)
        self.symmetric = bool(symmetric)
        self.axis = axis
        self.qmin, self.qmax = quant_range(bits, symmetric)
        shape: tuple[int, ...] = () if axis is None else (channels or 0,)
        self.register_buffer("scale", torch.ones(shape, dtype=torch.float32))
        zp = 0 if symmetric else self.qmin
        self.register_buffer("zero_point", torch.full(shape, zp, dtype=torch.int32))
        self.observer = observer if observer is not None else MinMaxObserver(bits, symmetric, axis)
        self.observe = True
        self.enabled = True
        self.dynamic = dynamic
        self.learnable = False
        self.initialized = False  # scale/zero_point hold real values (computed or loaded)
        if learnable:
            self.set_learnable(True)

    @classmethod
    def from_spec(cls, spec: QuantSpec, *, axis: int | None = None, channels: int | None = None) -> Self:
        """Build from a :class:`QuantSpec`; ``axis`` only applies when ``spec.per_channel``."""
        axis = axis if spec.per_channel else None
        observer = make_observer(
            spec.observer,
            spec.bits,
            spec.symmetric,
            axis,
            percentile=spec.percentile,
            averaging_constant=spec.averaging_constant,
        )
        return cls(
            spec.bits,
            spec.symmetric,
            axis,
            observer,
            learnable=spec.learnable,
            dynamic=spec.dynamic,
            channels=channels if axis is not None else None,
        )

    # -- forward -----------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        if self.dynamic:
            if not self.enabled:
                return x
            scale, zero_point = self._qparams_of(x)
            return fake_quantize(x, scale, zero_point, self.qmin, self.qmax, self.axis)
        if self.observe:
            self.observer(x.detach())
            if self.enabled:
                self.update_qparams()
                if self.learnable:
                    self.observe = False  # LSQ: the observer only initializes the scale
        if not self.enabled:
            return x
        if self.learnable:
            if torch.is_grad_enabled():
                return lsq_fake_quantize(x, self.scale, self.zero_point, self.qmin, self.qmax, self.axis)
            scale = self.scale.detach().abs().clamp(min=torch.finfo(torch.float32).eps)  # as LSQ uses it
            return fake_quantize(x, scale, self.zero_point, self.qmin, self.qmax, self.axis)
        return fake_quantize(x, self.scale, self.zero_point, self.qmin, self.qmax, self.axis)

    def _qparams_of(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(scale, zero_point) a ``dynamic`` quantizer uses for ``x`` (packing.py relies on this name)."""
        if self.axis is None:
            lo, hi = x.detach().min(), x.detach().max()
        else:
            flat = x.detach().transpose(0, self.axis % x.dim()).reshape(x.shape[self.axis], -1)
            lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
        scale, zero_point, _, _ = qparams(lo, hi, self.bits, self.symmetric)
        return scale, zero_point

    # -- qparams -----------------------------------------------------------------------------
    def update_qparams(self) -> None:
        """Set scale/zero_point from the observer (no-op before it has seen data)."""
        if not self.observer.has_data:
            return
        scale, zero_point, _, _ = self.observer.calculate_qparams()
        self.set_qparams(scale, zero_point)

    def set_qparams(self, scale: Tensor, zero_point: Tensor) -> None:
        """Overwrite the qparams (shapes may change from the placeholder ones)."""
        scale = scale.detach().to(torch.float32).reshape(self.scale.shape if self.axis is None else (-1,))
        zero_point = zero_point.detach().to(torch.int32).reshape(scale.shape)
        with torch.no_grad():
            if self.learnable:
                if self.scale.shape == scale.shape:
                    self.scale.copy_(scale)
                else:
                    self.scale = nn.Parameter(scale.clone())
            else:
                self.scale = scale.clone().to(self.scale.device)
        self.zero_point = zero_point.clone().to(self.zero_point.device)
        self.initialized = True

    def freeze(self) -> None:
        """Compute the final qparams from everything observed, stop observing, enable quantization."""
        if self.observe and not self.dynamic:
            self.update_qparams()
        self.observe = False
        self.enabled = True

    def set_learnable(self, learnable: bool) -> None:
        """Make ``scale`` an ``nn.Parameter`` (LSQ) or a buffer again; its state_dict key stays ``scale``."""
        if learnable == self.learnable:
            return
        value = self.scale.detach().clone()
        if learnable:
            del self._buffers["scale"]
            self.scale = nn.Parameter(value)
        else:
            del self._parameters["scale"]
            self.register_buffer("scale", value.abs().clamp(min=torch.finfo(torch.float32).eps))
        self.learnable = learnable

    # -- integer view (for deployment) -------------------------------------------------------
    def quantize(self, x: Tensor) -> Tensor:
        """Integer codes of ``x`` (int32 tensor with values in [qmin, qmax])."""
        return quantize(x, self.scale.detach(), self.zero_point, self.qmin, self.qmax, self.axis)

    def dequantize(self, q: Tensor) -> Tensor:
        return dequantize(q, self.scale.detach(), self.zero_point, self.axis)

    @property
    def storage_dtype(self) -> torch.dtype:
        """The integer type whose range contains [qmin, qmax]: int8 (symmetric) or uint8."""
        return torch.int8 if self.qmin < 0 else torch.uint8

    # -- state_dict --------------------------------------------------------------------------
    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # per-channel qparams start as placeholders of unknown length: take the saved shapes
        scale, zero_point = state_dict.get(prefix + "scale"), state_dict.get(prefix + "zero_point")
        if isinstance(scale, Tensor) and isinstance(zero_point, Tensor):
            if scale.shape != self.scale.shape or zero_point.shape != self.zero_point.shape:
                self.set_qparams(scale, zero_point)
            self.initialized = True
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        parts = [
            f"bits={self.bits}",
            f"symmetric={self.symmetric}",
            f"axis={self.axis}",
            f"qmin={self.qmin}",
            f"qmax={self.qmax}",
            f"observe={self.observe}",
            f"enabled={self.enabled}",
        ]
        if self.learnable:
            parts.append("learnable=True")
        if self.dynamic:
            parts.append("dynamic=True")
        return ", ".join(parts)


class OutputQuant(FakeQuantize):
    """A :class:`FakeQuantize` inserted after a graph node ("all_layers" scope).

    ``source`` names what it quantizes (e.g. ``"layer1.0.add"``, ``"layer1.0.relu2"``, ``"input"``)
    and ``op`` the kind of node: input, conv, linear, bn, act, pool, add, mul or cat.
    """

    def __init__(
        self,
        bits: int = 8,
        symmetric: bool = False,
        observer: Observer | None = None,
        *,
        source: str = "",
        op: str = "",
        learnable: bool = False,
    ) -> None:
        super().__init__(bits, symmetric, None, observer, learnable=learnable)
        self.source = source
        self.op = op

    @classmethod
    def for_node(cls, spec: QuantSpec, *, source: str, op: str) -> OutputQuant:
        observer = make_observer(
            spec.observer,
            spec.bits,
            spec.symmetric,
            None,
            percentile=spec.percentile,
            averaging_constant=spec.averaging_constant,
        )
        return cls(spec.bits, spec.symmetric, observer, source=source, op=op, learnable=spec.learnable)

    def extra_repr(self) -> str:
        return f"source={self.source!r}, op={self.op!r}, " + super().extra_repr()


def _make_quantizers(
    module: nn.Module, qconfig: QConfig, channels: int
) -> tuple[FakeQuantize, FakeQuantize | None]:
    weight_fq = FakeQuantize.from_spec(qconfig.weight, axis=0, channels=channels)
    input_fq = FakeQuantize.from_spec(qconfig.activation) if qconfig.activation is not None else None
    weight_fq.train(module.training)
    if input_fq is not None:
        input_fq.train(module.training)
    return weight_fq, input_fq


class _QuantWeightMixin:
    """Shared helpers of the quantized layers (weight codes for packing/export)."""

    weight: Tensor
    weight_fake_quant: FakeQuantize
    input_fake_quant: FakeQuantize | None

    def quantized_weight(self) -> Tensor:
        """Integer weight codes (int32 tensor in [qmin, qmax]) under the current qparams."""
        return self.weight_fake_quant.quantize(self.weight.detach())

    def fake_quantized_weight(self) -> Tensor:
        """The weight the forward pass uses: quantize-dequantize of ``weight``."""
        fq = self.weight_fake_quant
        return fake_quantize(self.weight.detach(), fq.scale, fq.zero_point, fq.qmin, fq.qmax, fq.axis)


class QuantConv2d(_QuantWeightMixin, nn.Conv2d):
    """``nn.Conv2d`` whose weight (and input) pass through fake quantization.

    Same constructor as ``nn.Conv2d`` plus ``qconfig``; use :meth:`from_float` to convert a layer
    (the parameters are shared, not copied).
    """

    def __init__(self, *args: Any, qconfig: QConfig | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.qconfig = qconfig if qconfig is not None else QConfig()
        self.weight_fake_quant, self.input_fake_quant = _make_quantizers(
            self, self.qconfig, self.out_channels
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.input_fake_quant is not None:
            x = self.input_fake_quant(x)
        return self._conv_forward(x, self.weight_fake_quant(self.weight), self.bias)

    @classmethod
    def from_float(cls, module: nn.Conv2d, qconfig: QConfig | None = None) -> QuantConv2d:
        if type(module) is not nn.Conv2d:
            raise TypeError(f"QuantConv2d.from_float expects an nn.Conv2d, got {type(module).__name__}")
        q = cls(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=module.groups,
            bias=module.bias is not None,
            padding_mode=module.padding_mode,
            device=module.weight.device,
            dtype=module.weight.dtype,
            qconfig=qconfig,
        )
        q.weight = module.weight
        q.bias = module.bias
        q.train(module.training)
        return q

    def to_float(self) -> nn.Conv2d:
        """An ``nn.Conv2d`` sharing this layer's parameters (after :func:`convert`, the weights are
        already on the quantization grid)."""
        conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,  # type: ignore[arg-type]
            stride=self.stride,  # type: ignore[arg-type]
            padding=self.padding,  # type: ignore[arg-type]
            dilation=self.dilation,  # type: ignore[arg-type]
            groups=self.groups,
            bias=self.bias is not None,
            padding_mode=self.padding_mode,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        conv.weight = self.weight
        conv.bias = self.bias
        conv.train(self.training)
        return conv


class QuantLinear(_QuantWeightMixin, nn.Linear):
    """``nn.Linear`` whose weight (and input) pass through fake quantization."""

    def __init__(self, *args: Any, qconfig: QConfig | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.qconfig = qconfig if qconfig is not None else QConfig()
        self.weight_fake_quant, self.input_fake_quant = _make_quantizers(
            self, self.qconfig, self.out_features
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.input_fake_quant is not None:
            x = self.input_fake_quant(x)
        return nn.functional.linear(x, self.weight_fake_quant(self.weight), self.bias)

    @classmethod
    def from_float(cls, module: nn.Linear, qconfig: QConfig | None = None) -> QuantLinear:
        if type(module) is not nn.Linear:
            raise TypeError(f"QuantLinear.from_float expects an nn.Linear, got {type(module).__name__}")
        q = cls(
            module.in_features,
            module.out_features,
            bias=module.bias is not None,
            device=module.weight.device,
            dtype=module.weight.dtype,
            qconfig=qconfig,
        )
        q.weight = module.weight
        q.bias = module.bias
        q.train(module.training)
        return q

    def to_float(self) -> nn.Linear:
        linear = nn.Linear(
            self.in_features,
            self.out_features,
            bias=self.bias is not None,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        linear.weight = self.weight
        linear.bias = self.bias
        linear.train(self.training)
        return linear


QUANT_LAYERS: tuple[type[nn.Module], ...] = (QuantConv2d, QuantLinear)


def fake_quantizers(model: nn.Module) -> dict[str, FakeQuantize]:
    """Every :class:`FakeQuantize` in ``model`` by qualified name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, FakeQuantize)}
