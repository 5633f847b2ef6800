"""Linear (affine) quantization numerics: ranges, qparams, quantize/dequantize and fake quantization.

    x_q   = clip(round(x / s) + z, q_min, q_max)        (round half to even, like torch and ONNX)
    x_hat = (x_q - z) * s

Integer ranges (``quant_range``):

* **asymmetric** (activations by default): unsigned ``[0, 2^b - 1]``, ``z`` in that range, and the
  observed range is widened to include 0 so that zero (ReLU outputs, padding) is exact;
* **symmetric** (weights by default): ``z = 0``, integer container ``[-2^(b-1), 2^(b-1) - 1]`` (the
  int8 range ONNX QuantizeLinear/DequantizeLinear requires, so 8-bit models export as plain QDQ), but
  the scale uses the *restricted* range ``s = max|x| / (2^(b-1) - 1)``: ``+max|x|`` and ``-max|x|``
  both land on the grid, the quantizer is symmetric over the calibrated range, and values within
  it only use ``[-(2^(b-1)-1), 2^(b-1)-1]`` ([-127, 127] at 8 bits; ternary {-1, 0, 1} at 2 bits).
  The extra negative code is only reached by values below the calibrated range.

Per-tensor quantization uses 0-d ``scale``/``zero_point`` tensors, per-channel uses 1-d ones along
``axis``. :func:`fake_quantize` calls ``torch.fake_quantize_per_{tensor,channel}_affine``: their
backward is the straight-through estimator (gradient 1 inside the range, 0 where clipped) and they
export to ONNX as QuantizeLinear/DequantizeLinear. :func:`lsq_fake_quantize` also trains the scale
(LSQ, Esser et al. 2020).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from edgeslim.errors import ConfigError

MIN_BITS, MAX_BITS = 2, 8
#: Smallest scale: keeps an all-zero tensor (min == max == 0) from dividing by zero.
EPS = float(torch.finfo(torch.float32).eps)


def check_bits(bits: int, field: str = "bits") -> int:
    """Bits must be an integer in [2, 8]: the fake-quant kernels hold codes in int8/uint8."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ConfigError(f"{field} must be an integer from {MIN_BITS} to {MAX_BITS}, got {bits!r}")
    return bits


def quant_range(bits: int, symmetric: bool) -> tuple[int, int]:
    """(q_min, q_max): ``[-2^(b-1), 2^(b-1)-1]`` when symmetric, else ``[0, 2^b - 1]``."""
    check_bits(bits)
    if symmetric:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def qparams(
    min_val: Tensor | float, max_val: Tensor | float, bits: int, symmetric: bool
) -> tuple[Tensor, Tensor, int, int]:
    """(scale float32, zero_point int32, q_min, q_max) for the range [min_val, max_val].

    Scalars give 0-d tensors (per-tensor), 1-d tensors give per-channel qparams. The range is
    widened to contain 0. Symmetric: ``s = max(|min|, |max|) / (2^(b-1) - 1)``, ``z = 0``;
    asymmetric: ``s = (max - min) / (2^b - 1)``, ``z = q_min - round(min / s)``.
    """
    qmin, qmax = quant_range(bits, symmetric)
    lo = torch.as_tensor(min_val, dtype=torch.float32).detach().clamp(max=0.0)
    hi = torch.as_tensor(max_val, dtype=torch.float32).detach().clamp(min=0.0)
    if symmetric:
        amax = torch.maximum(-lo, hi)
        scale = (amax / float(2 ** (bits - 1) - 1)).clamp(min=EPS)
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
    else:
        scale = ((hi - lo) / float(qmax - qmin)).clamp(min=EPS)
        zero_point = (qmin - torch.round(lo / scale)).clamp(qmin, qmax).to(torch.int32)
    return scale, zero_point, qmin, qmax


def _shape_for(param: Tensor, x: Tensor, axis: int | None) -> Tensor:
    """Broadcast a per-channel parameter along ``axis`` of ``x``; per-tensor values stay as they are."""
    if axis is None or param.dim() == 0:
        return param
    shape = [1] * x.dim()
    shape[axis % x.dim()] = -1
    return param.reshape(shape)


def quantize(
    x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int, axis: int | None = None
) -> Tensor:
    """Integer codes ``clip(round(x / s) + z, q_min, q_max)`` as int32 (int8 and uint8 both fit)."""
    s = _shape_for(scale.to(torch.float32), x, axis)
    z = _shape_for(zero_point.to(torch.float32), x, axis)
    return torch.clamp(torch.round(x.to(torch.float32) / s) + z, qmin, qmax).to(torch.int32)


def dequantize(q: Tensor, scale: Tensor, zero_point: Tensor, axis: int | None = None) -> Tensor:
    """Real values ``(x_q - z) * s`` as float32."""
    s = _shape_for(scale.to(torch.float32), q, axis)
    z = _shape_for(zero_point.to(torch.float32), q, axis)
    return (q.to(torch.float32) - z) * s


def fake_quantize(
    x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int, axis: int | None = None
) -> Tensor:
    """Quantize-dequantize with torch's fused kernels (STE backward, ONNX QDQ export).

    Non-float32 inputs (bf16 autocast) are computed in float32 and cast back.
    """
    dtype = x.dtype
    xf = x if dtype == torch.float32 else x.float()
    scale = scale.detach().to(torch.float32)
    zero_point = zero_point.detach().to(torch.int32)
    if axis is None:
        out = torch.fake_quantize_per_tensor_affine(xf, scale.reshape(()), zero_point.reshape(()), qmin, qmax)
    else:
        out = torch.fake_quantize_per_channel_affine(xf, scale, zero_point, axis % x.dim(), qmin, qmax)
    return out if dtype == torch.float32 else out.to(dtype)


def lsq_grad_scale(x: Tensor, qmax: int, axis: int | None = None) -> float:
    """LSQ's gradient scale ``1 / sqrt(N * Q_P)``: N elements per scale, Q_P the largest positive code.

    Without it the scale's gradient, summed over all elements, is orders of magnitude larger than the
    weights' and the step size oscillates.
    """
    n = x.numel() if axis is None else x.numel() // max(1, x.shape[axis])
    return 1.0 / math.sqrt(max(1, n) * max(1, qmax))


def lsq_fake_quantize(
    x: Tensor,
    scale: Tensor,
    zero_point: Tensor,
    qmin: int,
    qmax: int,
    axis: int | None = None,
    grad_scale: float | None = None,
) -> Tensor:
    """Fake quantization whose scale is learnable (LSQ, Esser et al. 2020).

    Same forward as :func:`fake_quantize`. Backward: STE for ``x`` (1 inside the range, 0 outside);
    for the scale ``round(x/s) - x/s`` inside the range and ``q_min - z`` / ``q_max - z`` where
    clipped, times ``grad_scale`` (default :func:`lsq_grad_scale`). The zero point stays fixed.
    """
    if grad_scale is None:
        grad_scale = lsq_grad_scale(x, qmax, axis)
    dtype = x.dtype
    xf = x.float()
    s = scale.float().abs().clamp(min=EPS)
    # gradient scaling without changing the value: forward s, backward grad * grad_scale
    s = (s - s * grad_scale).detach() + s * grad_scale
    s = _shape_for(s, xf, axis)
    z = _shape_for(zero_point.detach().to(torch.float32), xf, axis)
    v = xf / s + z
    v_rounded = (torch.round(v) - v).detach() + v  # straight-through round
    out = (torch.clamp(v_rounded, qmin, qmax) - z) * s
    return out.to(dtype)
