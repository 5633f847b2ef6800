"""Quantization: ``quantize(model, config, calibration=..., select=...)`` with one config per method.

- :class:`StaticQuant`: post-training static quantization (observers: minmax, percentile, mse,
  entropy), int8 or 2-7 bits, per-channel weights, scope "weights_and_activations" or "all_layers";
- :class:`QAT`: quantization-aware training with the normal trainer (:func:`prepare_qat`,
  :class:`QATCallback`, :func:`convert`), optional LSQ learnable scales;
- :class:`DynamicQuant`: Linear/LSTM/GRU weights ahead of time, activations per batch (simulated,
  or torch's real int8 kernels);
- :class:`HalfPrecision`: fp16 / bf16.

The quantized model representation (:class:`FakeQuantize`, :class:`OutputQuant`,
:class:`QuantConv2d`, :class:`QuantLinear`) is what deployment (QDQ ONNX export, packed low-bit
storage) builds on. :func:`fold_bn` / :func:`fuse_conv_bn` fold BatchNorm on their own.
Packed 2/4/8-bit weight files (``packing.py``) are re-exported here by its own ``__all__``; deploying a
quantized model as a real int8 artifact (QDQ ONNX, ONNX Runtime/OpenVINO int8) is
:mod:`edgeslim.export.qdq`, which builds on this package (never the reverse).
"""

from edgeslim.quantization import packing as _packing
from edgeslim.quantization.api import (
    QUANTIZE_HANDLERS,
    OutputQuantInfo,
    QuantLayer,
    QuantReport,
    QuantResult,
    quantize,
)
from edgeslim.quantization.configs import (
    QAT,
    DynamicQuant,
    HalfPrecision,
    QConfig,
    QuantizationConfig,
    QuantScope,
    QuantSpec,
    StaticQuant,
)
from edgeslim.quantization.fake_quant import (
    dequantize,
    fake_quantize,
    lsq_fake_quantize,
    qparams,
    quant_range,
)
from edgeslim.quantization.fake_quant import quantize as quantize_tensor
from edgeslim.quantization.fuse import fold_bn, fuse_conv_bn
from edgeslim.quantization.half import to_half
from edgeslim.quantization.modules import FakeQuantize, OutputQuant, QuantConv2d, QuantLinear, fake_quantizers
from edgeslim.quantization.observers import (
    EntropyObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    Observer,
    PercentileObserver,
    make_observer,
)
from edgeslim.quantization.packing import *  # noqa: F403 - deployment: packed 2/4/8-bit weight files
from edgeslim.quantization.prepare import QATCallback, calibrate, convert, prepare_qat

__all__ = [
    "QAT",
    "QUANTIZE_HANDLERS",
    "DynamicQuant",
    "EntropyObserver",
    "FakeQuantize",
    "HalfPrecision",
    "MSEObserver",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "Observer",
    "OutputQuant",
    "OutputQuantInfo",
    "PercentileObserver",
    "QATCallback",
    "QConfig",
    "QuantConv2d",
    "QuantLayer",
    "QuantLinear",
    "QuantReport",
    "QuantResult",
    "QuantScope",
    "QuantSpec",
    "QuantizationConfig",
    "StaticQuant",
    "calibrate",
    "convert",
    "dequantize",
    "fake_quantize",
    "fake_quantizers",
    "fold_bn",
    "fuse_conv_bn",
    "lsq_fake_quantize",
    "make_observer",
    "prepare_qat",
    "qparams",
    "quant_range",
    "quantize",
    "quantize_tensor",
    "to_half",
    # packed low-bit files (packing.py): its own __all__, kept in sync
    *_packing.__all__,
]
