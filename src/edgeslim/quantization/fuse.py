"""BatchNorm folding: ``fold_bn(conv, bn)`` and ``fuse_conv_bn(model)``.

Every int8 runtime folds an inference-mode BatchNorm into the preceding convolution,

    w' = w * g / sqrt(var + eps)          (per output channel)
    b' = (b - mean) * g / sqrt(var + eps) + beta

so weights must be quantized *after* folding, or the quantization grid the model was calibrated
(or trained) on is not the one that gets deployed. Conv -> BN pairs are found on the torch.fx graph
(a conv whose only user is a BN); models that torch.fx cannot trace fall back to consecutive
children of ``nn.Sequential`` containers. Folded BNs are replaced by ``nn.Identity`` so the
model keeps its class and the other state_dict keys.
"""

from __future__ import annotations

import itertools

import torch
import torch.fx as fx
from torch import nn

from edgeslim.errors import ConfigError
from edgeslim.models.resnet_cifar import PadShortcut
from edgeslim.quantization.modules import FakeQuantize, QuantConv2d, QuantLinear


class QuantTracer(fx.Tracer):
    """torch.fx tracer that keeps edgeslim layers (quantized layers, shortcut modules) as leaves."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, QuantConv2d | QuantLinear | FakeQuantize | PadShortcut):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module, what: str = "quantization") -> fx.GraphModule:
    """Symbolically trace ``model``; a model torch.fx cannot trace is a :class:`ConfigError` naming it."""
    tracer = QuantTracer()
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, ...) for dynamic code
        name = getattr(model, "_edgeslim_spec", {}).get("name") or type(model).__name__
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(
            f"{what} needs a model torch.fx can trace, and {name!r} cannot be traced "
            f"({type(exc).__name__}: {first_line[:200]}); use scope='weights_and_activations'"
        ) from None
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Fold ``bn`` (with its running statistics, i.e. eval mode) into ``conv`` in place; return ``conv``.

    The conv gains a bias if it had none. ``conv(x)`` afterwards equals ``bn.eval()(conv(x))``
    before. Works for grouped and depthwise convs (BN is per output channel either way).
    """
    if bn.num_features != conv.out_channels:
        raise ConfigError(
            f"cannot fold {bn.num_features}-channel BatchNorm into a conv with {conv.out_channels} outputs"
        )
    if bn.running_mean is None or bn.running_var is None:
        raise ConfigError("cannot fold a BatchNorm without running statistics (track_running_stats=False)")
    with torch.no_grad():
        w = conv.weight
        dtype = w.dtype
        var = bn.running_var.to(torch.float64)
        mean = bn.running_mean.to(torch.float64)
        gamma = bn.weight.to(torch.float64) if bn.weight is not None else torch.ones_like(var)
        beta = bn.bias.to(torch.float64) if bn.bias is not None else torch.zeros_like(var)
        factor = gamma / torch.sqrt(var + bn.eps)
        bias = conv.bias.to(torch.float64) if conv.bias is not None else torch.zeros_like(mean)
        new_w = (w.to(torch.float64) * factor.reshape(-1, *([1] * (w.dim() - 1)))).to(dtype)
        new_b = ((bias - mean) * factor + beta).to(dtype)
        conv.weight.copy_(new_w)
        if conv.bias is None:
            conv.bias = nn.Parameter(new_b.to(w.device))
        else:
            conv.bias.copy_(new_b)
    return conv


def _is_conv(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d)


def find_conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv name, bn name) for every Conv2d whose output goes only into a BatchNorm2d.

    Uses torch.fx; if the model cannot be traced, consecutive (Conv2d, BatchNorm2d) children of
    ``nn.Sequential`` containers.
    """
    modules = dict(model.named_modules())
    try:
        gm = trace(model, "BatchNorm folding")
    except ConfigError:
        return _sequential_pairs(model)
    uses: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            uses[str(node.target)] = uses.get(str(node.target), 0) + 1
    pairs = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not _is_conv(modules[str(node.target)]):
            continue
        users = list(node.users)
        if len(users) != 1 or users[0].op != "call_module":
            continue
        bn_name, conv_name = str(users[0].target), str(node.target)
        bn = modules[bn_name]
        if (
            isinstance(bn, nn.BatchNorm2d)
            and users[0].args[0] is node
            and uses[conv_name] == 1
            and uses[bn_name] == 1
            and bn.track_running_stats
        ):
            pairs.append((conv_name, bn_name))
    return pairs


def _sequential_pairs(model: nn.Module) -> list[tuple[str, str]]:
    pairs = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (a_name, a), (b_name, b) in itertools.pairwise(children):
            if _is_conv(a) and isinstance(b, nn.BatchNorm2d) and b.track_running_stats:
                prefix = f"{name}." if name else ""
                pairs.append((prefix + a_name, prefix + b_name))
    return pairs


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a Conv2d into it, in place; return ``model``.

    Folded BNs become ``nn.Identity``; eval-mode outputs are unchanged (up to float rounding).
    """
    fuse_pairs(model, find_conv_bn_pairs(model))
    return model


def fuse_pairs(model: nn.Module, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Fold the given (conv, bn) pairs in place; BN modules are replaced by ``nn.Identity``."""
    for conv_name, bn_name in pairs:
        conv = model.get_submodule(conv_name)
        bn = model.get_submodule(bn_name)
        if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
            raise ConfigError(f"{conv_name!r} -> {bn_name!r} is not a Conv2d -> BatchNorm2d pair")
        if isinstance(conv, QuantConv2d):
            fold_bn_into_quant_conv(conv, bn)
        else:
            fold_bn(conv, bn)
        set_submodule(model, bn_name, nn.Identity())
    return pairs


def fold_bn_into_quant_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold BN into a (trained) QuantConv2d and carry its weight qparams over.

    Per-channel weight quantization commutes with the per-channel BN factor k: the scale becomes
    ``scale * |k|`` (a negative k mirrors an asymmetric grid: ``z' = qmin + qmax - z``), so the
    quantized weights are exactly the trained ones times k. Per-tensor qparams cannot absorb a
    per-channel factor: they are re-observed from the folded weight.
    """
    if not isinstance(conv, QuantConv2d):
        raise ConfigError(f"expected a QuantConv2d, got {type(conv).__name__}")
    if bn.running_var is None:
        raise ConfigError("cannot fold a BatchNorm without running statistics (track_running_stats=False)")
    fq = conv.weight_fake_quant
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(bn.running_var)
    factor = (gamma / torch.sqrt(bn.running_var + bn.eps)).float()
    fold_bn(conv, bn)
    if fq.axis is not None and fq.scale.numel() == factor.numel() and fq.initialized:
        scale = fq.scale.detach() * factor.abs()
        zero_point = fq.zero_point
        if not fq.symmetric:
            zero_point = torch.where(factor < 0, fq.qmin + fq.qmax - zero_point, zero_point)
        fq.set_qparams(scale, zero_point)
    else:
        fq.observer.reset()
        fq.observer(conv.weight.detach())
        fq.update_qparams()


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at the qualified ``name`` (e.g. ``"layer1.0.bn1"``)."""
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, module)
