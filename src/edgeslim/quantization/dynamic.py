"""Dynamic quantization: weights quantized ahead of time, activations per batch at run time.

Suits layers dominated by weight traffic (big Linear layers, LSTM/GRU) where calibrating
activation ranges is not worth it. Two engines:

* ``simulated``: Linear layers become :class:`QuantLinear` with a per-channel symmetric weight
  quantizer and a ``dynamic=True`` 8-bit asymmetric input quantizer (range from each batch);
  LSTM/GRU weights are rounded onto the grid in place (their activations stay float). Any ``bits``.
* ``torch``: ``torch.ao.quantization.quantize_dynamic`` - real int8 kernels (fbgemm/x86), 8 bits.
  The API is deprecated but works in this torch; its deprecation warning is silenced here.

A packed file stores the ``simulated`` model (its integer codes); :func:`to_torch_dynamic` turns that
model into the ``torch`` one with the same int8 weight codes, so ``edgeslim bench``/``eval`` time real
int8 kernels on an 8-bit dynamic artifact (the simulated model is ~24x slower than FP32).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import torch
from torch import nn

from edgeslim.errors import ConfigError
from edgeslim.quantization.configs import DynamicQuant, QConfig, QuantSpec
from edgeslim.quantization.fake_quant import fake_quantize, qparams
from edgeslim.quantization.fuse import set_submodule
from edgeslim.quantization.modules import QuantLinear
from edgeslim.quantization.packing import quantized_weights

#: how a run on torch's int8 kernels is labelled (measurement notes, `edgeslim bench`/`eval`)
REAL_INT8_NOTE = "real int8 kernels (torch dynamic quantization)"

RECURRENT_TYPES: tuple[type[nn.Module], ...] = (nn.LSTM, nn.GRU)
DYNAMIC_TYPES: tuple[str, ...] = ("linear", "LSTM", "GRU")


def dynamic_qconfig(config: DynamicQuant) -> QConfig:
    return QConfig(
        weight=QuantSpec(bits=config.bits, symmetric=True, per_channel=config.per_channel),
        activation=QuantSpec(bits=8, symmetric=False, dynamic=True),
    )


def quantize_dynamic(
    model: nn.Module, config: DynamicQuant, layers: list[str]
) -> tuple[nn.Module, list[str], dict[str, str]]:
    """Quantize the named layers of ``model`` in place; returns (model, quantized, skipped-with-reason)."""
    if config.engine == "torch":
        return _torch_dynamic(model, config, layers)
    qconfig = dynamic_qconfig(config)
    quantized: list[str] = []
    skipped: dict[str, str] = {}
    for name in layers:
        module = model.get_submodule(name)
        if type(module) is nn.Linear:
            q = QuantLinear.from_float(module, qconfig)
            q.weight_fake_quant.observer(q.weight.detach())
            q.weight_fake_quant.freeze()  # weights are constant: fix their qparams now
            with torch.no_grad():
                q.weight.copy_(q.fake_quantized_weight())
            set_submodule(model, name, q)
            quantized.append(name)
        elif isinstance(module, RECURRENT_TYPES):
            round_recurrent_weights(module, config.bits, config.per_channel)
            quantized.append(name)
        else:
            skipped[name] = f"dynamic quantization covers Linear, LSTM and GRU, not {type(module).__name__}"
    return model, quantized, skipped


def runs_real_int8(config: object) -> bool:
    """Whether a model quantized by ``config`` has a real int8 form on torch (dynamic, 8 bits)."""
    return isinstance(config, DynamicQuant) and config.bits == 8


def to_torch_dynamic(model: nn.Module, config: DynamicQuant) -> nn.Module:
    """The simulated dynamic model ``model`` (as ``engine="simulated"`` built it) on torch's int8 kernels.

    Every :class:`QuantLinear` becomes a ``torch.ao`` dynamic int8 Linear holding the same integer
    weight codes and scales (set exactly, not re-observed); LSTM/GRU layers (rounded in place) are
    quantized by torch per tensor. Activations are quantized per batch by torch's kernels, so outputs
    match the simulated model closely, not bitwise. Modifies ``model`` in place; 8 bits only.
    """
    if not runs_real_int8(config):
        raise ConfigError(f"DynamicQuant.bits must be 8 for torch's int8 kernels (got {config.bits})")
    codes = {q.quantizer.removesuffix(".weight_fake_quant"): q for q in quantized_weights(model)}
    layers: list[str] = []
    for name, module in list(model.named_modules()):
        if isinstance(module, QuantLinear):
            set_submodule(model, name, module.to_float())
            layers.append(name)
        elif isinstance(module, RECURRENT_TYPES):
            layers.append(name)
    torch_config = dataclasses.replace(config, engine="torch")
    model, _, _ = _torch_dynamic(model, torch_config, layers)
    for name, q in codes.items():
        qlinear: Any = model.get_submodule(name)  # a torch.ao dynamic quantized Linear
        p = q.params
        if not hasattr(qlinear, "set_weight_bias") or p.qmin < -128 or p.qmax > 127:
            continue  # torch's own per-layer weight quantization stays
        codes_i8 = q.codes.to(torch.float32)
        if p.axis is None:
            s, z = float(p.scale.reshape(-1)[0]), int(p.zero_point.reshape(-1)[0])
            qweight = torch.quantize_per_tensor((codes_i8 - z) * s, s, z, torch.qint8)
        else:
            scale, zp = p.scale.double(), p.zero_point.long()
            real = (codes_i8 - p.broadcast(zp, codes_i8)) * p.broadcast(scale, codes_i8).float()
            qweight = torch.quantize_per_channel(real, scale, zp, p.axis, torch.qint8)
        qlinear.set_weight_bias(qweight, qlinear.bias())
    return model.eval()


def round_recurrent_weights(module: nn.Module, bits: int, per_channel: bool) -> None:
    """Put every ``weight_*`` matrix of an LSTM/GRU on its symmetric grid (per row if per_channel)."""
    with torch.no_grad():
        for pname, param in module.named_parameters():
            if not pname.startswith("weight") or param.dim() != 2:
                continue
            w = param.detach().float()
            if per_channel:
                lo, hi = w.min(dim=1).values, w.max(dim=1).values
                scale, zp, qmin, qmax = qparams(lo, hi, bits, True)
                param.copy_(fake_quantize(w, scale, zp, qmin, qmax, axis=0))
            else:
                scale, zp, qmin, qmax = qparams(w.min(), w.max(), bits, True)
                param.copy_(fake_quantize(w, scale, zp, qmin, qmax))


def _torch_dynamic(
    model: nn.Module, config: DynamicQuant, layers: list[str]
) -> tuple[nn.Module, list[str], dict[str, str]]:
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*torch\.ao\.quantization is deprecated", category=DeprecationWarning
        )
        warnings.filterwarnings(
            "ignore", message=r".*quantized tensor creation functions", category=UserWarning
        )
        import torch.ao.quantization as tq

        spec = {}
        quantized: list[str] = []
        skipped: dict[str, str] = {}
        for name in layers:
            module = model.get_submodule(name)
            if type(module) is nn.Linear:
                spec[name] = (
                    tq.per_channel_dynamic_qconfig if config.per_channel else tq.default_dynamic_qconfig
                )
            elif isinstance(module, RECURRENT_TYPES):
                spec[name] = tq.default_dynamic_qconfig  # per-tensor: torch has no per-channel LSTM kernels
            else:
                skipped[name] = (
                    f"dynamic quantization covers Linear, LSTM and GRU, not {type(module).__name__}"
                )
                continue
            quantized.append(name)
        model.eval()
        tq.quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)
    return model, quantized, skipped
