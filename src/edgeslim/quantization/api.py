"""``quantize(model, config, calibration=..., select=...)``: the one entry point for every method.

It looks the config's handler up by type (:data:`QUANTIZE_HANDLERS`; a new method registers one) and
reports, per layer, what was quantized (bits, scales) and
what was skipped and why. The input model is never modified unless ``inplace=True``: a deep copy
is quantized (for ``scope="all_layers"`` the result is a ``torch.fx.GraphModule`` whose submodules
keep their names). All methods except ``HalfPrecision`` and ``DynamicQuant(engine="torch")`` are
*simulated* (fake quantization in float32, ``report.simulated=True``); real int8 execution comes
from exporting the fake-quantized model as QDQ ONNX.

Layer selection: by default every Conv2d and Linear, *including* the final classifier (8-bit
classifiers lose little and int8 runtimes quantize them anyway). A ``LayerSelection`` passed as
``select`` applies as given - its ``include_classifier`` default (False) then keeps the classifier
in float.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from edgeslim.errors import ConfigError
from edgeslim.methods import HandlerTable
from edgeslim.quantization.configs import (
    QAT,
    DynamicQuant,
    HalfPrecision,
    QuantizationConfig,
    QuantSpec,
    StaticQuant,
)
from edgeslim.quantization.dynamic import DYNAMIC_TYPES, quantize_dynamic
from edgeslim.quantization.half import to_half
from edgeslim.quantization.modules import QUANT_LAYERS, FakeQuantize, OutputQuant, fake_quantizers
from edgeslim.quantization.prepare import (
    QATCallback,
    _prepare_qat,
    calibrate,
    convert,
    default_selection,
    prepare,
)
from edgeslim.select import LayerSelection, classifier_name, resolve_type, select_layers
from edgeslim.train import Callback


@dataclasses.dataclass(frozen=True)
class QuantLayer:
    """One candidate layer: quantized or skipped (``reason``), its bits and qparams summary."""

    name: str
    kind: str
    quantized: bool
    reason: str
    weight_bits: int | None
    act_bits: int | None
    per_channel: bool
    symmetric: bool
    scale_min: float | None
    scale_max: float | None
    input_scale: float | None
    input_zero_point: int | None
    num_weights: int
    weight_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class OutputQuantInfo:
    """One activation quantizer of the "all_layers" scope."""

    name: str
    source: str
    op: str
    bits: int
    scale: float
    zero_point: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class QuantReport:
    """What quantization did, read off the quantized model."""

    method: str
    config: dict[str, Any]
    simulated: bool
    layers: tuple[QuantLayer, ...]
    output_quantizers: tuple[OutputQuantInfo, ...] = ()
    fused_bn: tuple[tuple[str, str], ...] = ()
    calibration_batches: int = 0

    @property
    def quantized_layers(self) -> list[str]:
        return [layer.name for layer in self.layers if layer.quantized]

    @property
    def skipped_layers(self) -> dict[str, str]:
        return {layer.name: layer.reason for layer in self.layers if not layer.quantized}

    @property
    def weight_bytes_float(self) -> int:
        """The candidate layers' weights in float32."""
        return sum(4 * layer.num_weights for layer in self.layers)

    @property
    def weight_bytes(self) -> int:
        """The same weights as stored after quantization (packed codes plus scales/zero points)."""
        return sum(layer.weight_bytes for layer in self.layers)

    @property
    def compression(self) -> float:
        return self.weight_bytes_float / self.weight_bytes if self.weight_bytes else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "config": self.config,
            "simulated": self.simulated,
            "calibration_batches": self.calibration_batches,
            "fused_bn": [list(p) for p in self.fused_bn],
            "weight_bytes_float": self.weight_bytes_float,
            "weight_bytes": self.weight_bytes,
            "compression": self.compression,
            "quantized_layers": self.quantized_layers,
            "skipped_layers": self.skipped_layers,
            "layers": [layer.to_dict() for layer in self.layers],
            "output_quantizers": [o.to_dict() for o in self.output_quantizers],
        }


@dataclasses.dataclass
class QuantResult:
    """The quantized model, its report and (for QAT) the callbacks to pass to the trainer."""

    model: nn.Module
    report: QuantReport
    callbacks: tuple[Callback, ...] = ()
    _context: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def __iter__(self) -> Iterator[Any]:
        """Allow ``model, report = quantize(...)``."""
        return iter((self.model, self.report))

    def remeasure(self) -> QuantReport:
        """Rebuild the report from the model as it is now (e.g. after QAT training and convert)."""
        self.report = _report(self.model, **self._context)
        return self.report


def quantize(
    model: nn.Module,
    config: QuantizationConfig,
    *,
    calibration: Iterable[Any] | None = None,
    example_inputs: torch.Tensor | None = None,
    select: LayerSelection | None = None,
    inplace: bool = False,
) -> QuantResult:
    """Quantize a copy of ``model`` (``model`` itself with ``inplace``) by ``config``.

    * :class:`StaticQuant`: prepare, calibrate on ``calibration`` (an iterable of ``(x, y)``
      batches or tensors; ``calibration_batches`` of them are used), freeze and :func:`convert`;
      the result is ready for evaluation and QDQ export.
    * :class:`QAT`: :func:`prepare_qat` (``calibration`` optional, to initialize ranges); train
      ``result.model`` with ``callbacks=result.callbacks``, then call :func:`convert` and
      :meth:`QuantResult.remeasure`.
    * :class:`DynamicQuant`: Linear/LSTM/GRU weights quantized, activations per batch.
    * :class:`HalfPrecision`: the whole model in fp16/bf16 (``select`` does not apply).

    ``example_inputs`` (optional) are run through the traced graph for ``scope="all_layers"`` to
    tell float tensors from other values exactly (by default that is read off the data flow).
    """
    handler = QUANTIZE_HANDLERS.get(config)
    return handler(
        model, config, calibration=calibration, example_inputs=example_inputs, select=select, inplace=inplace
    )


#: ``fn(model, config, *, calibration, example_inputs, select, inplace) -> QuantResult`` by config type
QUANTIZE_HANDLERS: HandlerTable[Callable[..., QuantResult]] = HandlerTable("quantize")


def _selection(
    model: nn.Module, config: QuantizationConfig, types: tuple[str, ...], select: LayerSelection | None
) -> tuple[LayerSelection, list[str], dict[str, Any]]:
    """The layer selection, the chosen layers and the report context every selecting method starts from."""
    selection = select if select is not None else default_selection(types)
    chosen = list(select_layers(model, selection))
    candidates = _candidates(model, types)
    reasons = _unselected_reasons(model, candidates, chosen, selection)
    context: dict[str, Any] = {
        "method": type(config).__name__,
        "config": config.to_dict(),
        "candidates": candidates,
        "reasons": reasons,
        "simulated": True,
    }
    return selection, chosen, context


@QUANTIZE_HANDLERS.register(HalfPrecision)
def _quantize_half(
    model: nn.Module,
    config: HalfPrecision,
    *,
    calibration: Iterable[Any] | None,
    example_inputs: torch.Tensor | None,
    select: LayerSelection | None,
    inplace: bool,
) -> QuantResult:
    del calibration, example_inputs
    return _half(model, config, select, inplace)


@QUANTIZE_HANDLERS.register(DynamicQuant)
def _quantize_dynamic(
    model: nn.Module,
    config: DynamicQuant,
    *,
    calibration: Iterable[Any] | None,
    example_inputs: torch.Tensor | None,
    select: LayerSelection | None,
    inplace: bool,
) -> QuantResult:
    del calibration, example_inputs
    _, chosen, context = _selection(model, config, DYNAMIC_TYPES, select)
    work = model if inplace else copy.deepcopy(model)
    qmodel, _, skipped = quantize_dynamic(work, config, chosen)
    context.update(simulated=config.engine == "simulated", reasons={**context["reasons"], **skipped})
    return QuantResult(qmodel, _report(qmodel, **context), (), context)


@QUANTIZE_HANDLERS.register(QAT)
def _quantize_qat(
    model: nn.Module,
    config: QAT,
    *,
    calibration: Iterable[Any] | None,
    example_inputs: torch.Tensor | None,
    select: LayerSelection | None,
    inplace: bool,
) -> QuantResult:
    selection, _, context = _selection(model, config, ("conv", "linear"), select)
    prepared = _prepare_qat(model, config, calibration, example_inputs, selection, inplace)
    context.update(
        reasons={**context["reasons"], **prepared.skipped},
        fused=tuple(prepared.fused),
        calibration_batches=prepared.calibration_batches,
    )
    callbacks: tuple[Callback, ...] = (QATCallback.from_config(config),)
    return QuantResult(prepared.model, _report(prepared.model, **context), callbacks, context)


@QUANTIZE_HANDLERS.register(StaticQuant)
def _quantize_static(
    model: nn.Module,
    config: StaticQuant,
    *,
    calibration: Iterable[Any] | None,
    example_inputs: torch.Tensor | None,
    select: LayerSelection | None,
    inplace: bool,
) -> QuantResult:
    _, chosen, context = _selection(model, config, ("conv", "linear"), select)
    reasons = context["reasons"]
    if calibration is None:
        raise ConfigError(
            "StaticQuant needs calibration data: quantize(model, StaticQuant(), calibration=loader) "
            "with an iterable of (inputs, targets) batches"
        )
    work = model if inplace else copy.deepcopy(model)
    weight = QuantSpec(
        bits=config.bits,
        symmetric=config.symmetric,
        per_channel=config.per_channel,
        observer=config.weight_observer,
    )
    activation = QuantSpec(
        bits=config.activation_bits,
        symmetric=config.act_symmetric,
        observer=config.observer,
        percentile=config.percentile,
    )
    prepared = prepare(
        work,
        chosen,
        weight=weight,
        activation=activation,
        scope=config.scope,
        fuse_bn=config.fuse_bn,
        example_inputs=example_inputs,
    )
    used = calibrate(prepared.model, calibration, config.calibration_batches)
    if used < config.calibration_batches:
        warnings.warn(
            f"calibration yielded {used} of StaticQuant.calibration_batches={config.calibration_batches} batches",
            stacklevel=2,
        )
    qmodel = convert(prepared.model, fold_bn=config.fuse_bn)
    context.update(
        reasons={**reasons, **prepared.skipped}, fused=tuple(prepared.fused), calibration_batches=used
    )
    return QuantResult(qmodel, _report(qmodel, **context), (), context)


def _half(
    model: nn.Module, config: HalfPrecision, select: LayerSelection | None, inplace: bool
) -> QuantResult:
    if select is not None:
        raise ConfigError("HalfPrecision converts the whole model; 'select' does not apply to it")
    work = model if inplace else copy.deepcopy(model)
    to_half(work, config.dtype)
    candidates = _candidates(work, ("conv", "linear"))
    context: dict[str, Any] = {
        "method": "HalfPrecision",
        "config": config.to_dict(),
        "candidates": candidates,
        "reasons": {},
        "simulated": False,
        "half": True,
    }
    return QuantResult(work, _report(work, **context), (), context)


def _candidates(model: nn.Module, types: tuple[str, ...]) -> list[tuple[str, str, int]]:
    """(name, class name, number of weights) of every layer of ``types``, before quantization."""
    classes = tuple(resolve_type(t) for t in types)
    return [
        (name, type(m).__name__, _num_weights(m))
        for name, m in model.named_modules()
        if name and isinstance(m, classes)
    ]


def _num_weights(module: nn.Module) -> int:
    return sum(p.numel() for n, p in module.named_parameters(recurse=False) if n.startswith("weight"))


def _unselected_reasons(
    model: nn.Module, candidates: list[tuple[str, str, int]], chosen: list[str], selection: LayerSelection
) -> dict[str, str]:
    head = classifier_name(model)
    reasons = {}
    for name, _, _ in candidates:
        if name in chosen:
            continue
        if name == head and not selection.include_classifier:
            reasons[name] = "final classifier (LayerSelection.include_classifier=False)"
        else:
            reasons[name] = "not selected by the LayerSelection"
    return reasons


def _report(
    model: nn.Module,
    *,
    method: str,
    config: dict[str, Any],
    candidates: list[tuple[str, str, int]],
    reasons: dict[str, str],
    simulated: bool,
    fused: tuple[tuple[str, str], ...] = (),
    calibration_batches: int = 0,
    half: bool = False,
) -> QuantReport:
    layers = [
        _layer_info(model, name, kind, numel, reasons.get(name), half, config)
        for name, kind, numel in candidates
    ]
    outputs = tuple(
        OutputQuantInfo(
            name=name,
            source=fq.source,
            op=fq.op,
            bits=fq.bits,
            scale=float(fq.scale.detach().reshape(-1)[0]),
            zero_point=int(fq.zero_point.reshape(-1)[0]),
        )
        for name, fq in fake_quantizers(model).items()
        if isinstance(fq, OutputQuant)
    )
    return QuantReport(
        method=method,
        config=config,
        simulated=simulated,
        layers=tuple(layers),
        output_quantizers=outputs,
        fused_bn=fused,
        calibration_batches=calibration_batches,
    )


def _layer_info(
    model: nn.Module, name: str, kind: str, numel: int, reason: str | None, half: bool, config: dict[str, Any]
) -> QuantLayer:
    try:
        module: nn.Module | None = model.get_submodule(name)
    except AttributeError:
        module = None
    base: dict[str, Any] = {"name": name, "kind": kind, "num_weights": numel}
    no_qparams: dict[str, Any] = {
        "scale_min": None,
        "scale_max": None,
        "input_scale": None,
        "input_zero_point": None,
    }
    if half:
        return QuantLayer(
            **base, **no_qparams, quantized=True, reason="16-bit float", weight_bits=16, act_bits=16,
            per_channel=False, symmetric=False, weight_bytes=2 * numel,
        )  # fmt: skip
    if reason is not None or module is None:
        return QuantLayer(
            **base, **no_qparams, quantized=False, reason=reason or "not found in the quantized model",
            weight_bits=None, act_bits=None, per_channel=False, symmetric=False, weight_bytes=4 * numel,
        )  # fmt: skip
    if isinstance(module, QUANT_LAYERS):
        wfq: FakeQuantize = module.weight_fake_quant  # type: ignore[assignment]
        ifq: FakeQuantize | None = module.input_fake_quant  # type: ignore[assignment]
        scales = wfq.scale.detach().reshape(-1)
        channels = scales.numel() if wfq.axis is not None else 1
        static_input = ifq is not None and not ifq.dynamic
        act_bits, note = (ifq.bits, "") if ifq is not None else (None, "input not quantized")
        if ifq is not None and ifq.dynamic:
            note = "input quantized per batch (dynamic)"
        elif ifq is None and config.get("scope") == "all_layers":
            act_bits = config.get("act_bits") or config.get("bits")
            note = "input quantized by the OutputQuant before it (all_layers)"
        return QuantLayer(
            **base,
            quantized=True,
            reason=note,
            weight_bits=wfq.bits,
            act_bits=act_bits,
            per_channel=wfq.axis is not None,
            symmetric=wfq.symmetric,
            scale_min=float(scales.min()) if scales.numel() else None,
            scale_max=float(scales.max()) if scales.numel() else None,
            input_scale=float(ifq.scale.detach()) if ifq is not None and static_input else None,
            input_zero_point=int(ifq.zero_point) if ifq is not None and static_input else None,
            # packed codes plus a float32 scale and an 8-bit zero point per channel
            weight_bytes=math.ceil(numel * wfq.bits / 8) + 5 * channels,
        )
    # dynamic quantization without a QuantLinear: simulated LSTM/GRU or torch's int8 modules
    bits = int(config.get("bits", 8))
    simulated = config.get("engine") == "simulated"
    return QuantLayer(
        **base,
        **no_qparams,
        quantized=True,
        reason="weights on the grid, activations in float" if simulated else "torch int8 dynamic kernels",
        weight_bits=bits,
        act_bits=None if simulated else 8,
        per_channel=bool(config.get("per_channel", False)) and kind == "Linear",
        symmetric=True,
        weight_bytes=math.ceil(numel * bits / 8),
    )
