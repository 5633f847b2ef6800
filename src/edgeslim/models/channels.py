"""Save and rebuild the architecture of a filter-pruned model as plain data (never a pickled module).

A pruned model is its registry name/kwargs, its state_dict and its *channel spec*: for every
shape-bearing module, the attributes pruning can change (conv in/out channels and groups, BN
features, Linear features, PReLU parameters, the option-A shortcut's index map). The spec holds
only str/int/list, so it loads with ``torch.load(weights_only=True)``. To restore: create the
unpruned model by name, :func:`apply_channel_spec`, then ``load_state_dict(strict=True)``.

It lives with the models (not in :mod:`edgeslim.pruning`, which writes specs) because loading a
pruned checkpoint needs it and models never import a technique.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from edgeslim.errors import CheckpointError
from edgeslim.models.resnet_cifar import PadShortcut

__all__ = ["SPEC_FORMAT", "SPEC_VERSION", "apply_channel_spec", "channel_spec"]

SPEC_FORMAT = "edgeslim.channel_spec"
SPEC_VERSION = 1


def channel_spec(model: nn.Module) -> dict[str, Any]:
    """The shape-bearing attributes of every module that pruning can reshape, as plain data."""
    modules: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        entry = _describe(module)
        if entry is not None:
            modules[name] = entry
    return {"format": SPEC_FORMAT, "version": SPEC_VERSION, "modules": modules}


def _describe(module: nn.Module) -> dict[str, Any] | None:
    kind = type(module).__name__
    if isinstance(module, PadShortcut):
        return {"type": kind, "in_planes": module.in_planes, "index_map": module.index_map}
    if isinstance(module, nn.modules.conv._ConvNd):
        return {
            "type": kind,
            "in_channels": module.in_channels,
            "out_channels": module.out_channels,
            "groups": module.groups,
        }
    if isinstance(module, nn.Linear):
        return {"type": kind, "in_features": module.in_features, "out_features": module.out_features}
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return {"type": kind, "num_features": module.num_features}
    if isinstance(module, nn.PReLU):
        return {"type": kind, "num_parameters": module.num_parameters}
    return None


def apply_channel_spec(model: nn.Module, spec: dict[str, Any]) -> nn.Module:
    """Reshape a freshly built (unpruned) ``model`` in place to the spec; returns it.

    Reshaped modules get newly initialized tensors of the new shapes (load the pruned state_dict
    next); modules whose shape already matches are not touched.
    """
    entries = _check_spec(spec)
    modules = dict(model.named_modules())
    for name, entry in entries.items():
        module = modules.get(name)
        if module is None:
            close = difflib.get_close_matches(name, list(modules), n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise CheckpointError(
                f"channel spec names module {name!r}, which this model does not have{hint} "
                "(was the spec saved from another model?)"
            )
        kind = entry.get("type")
        if kind != type(module).__name__:
            raise CheckpointError(
                f"channel spec: {name!r} is a {kind} in the spec but a {type(module).__name__} in the model"
            )
        reshape = _reshaper(module)
        if reshape is None:
            raise CheckpointError(f"channel spec: cannot reshape {name!r} ({kind})")
        try:
            reshape(module, entry)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"channel spec: invalid entry for {name!r} ({exc}): {entry}") from None
    return model


def _check_spec(spec: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        raise CheckpointError(f"not an edgeslim channel spec (expected format {SPEC_FORMAT!r})")
    if spec.get("version") != SPEC_VERSION:
        raise CheckpointError(
            f"channel spec version {spec.get('version')!r}; this edgeslim reads {SPEC_VERSION}"
        )
    modules = spec.get("modules")
    if not isinstance(modules, dict) or not all(
        isinstance(k, str) and isinstance(v, dict) for k, v in modules.items()
    ):
        raise CheckpointError("channel spec: 'modules' must map module names to dicts")
    return modules


def _int(entry: dict[str, Any], key: str, minimum: int = 1) -> int:
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return value


def _reshaper(module: nn.Module) -> Callable[[Any, dict[str, Any]], None] | None:
    if isinstance(module, PadShortcut):
        return _reshape_shortcut
    if isinstance(module, nn.modules.conv._ConvNd):
        return _reshape_conv
    if isinstance(module, nn.Linear):
        return _reshape_linear
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return _reshape_batchnorm
    if isinstance(module, nn.PReLU):
        return _reshape_prelu
    return None


def _new_param(old: torch.Tensor, shape: tuple[int, ...]) -> nn.Parameter:
    return nn.Parameter(
        torch.empty(shape, dtype=old.dtype, device=old.device), requires_grad=old.requires_grad
    )


def _reshape_shortcut(module: PadShortcut, entry: dict[str, Any]) -> None:
    index_map = entry["index_map"]
    if not isinstance(index_map, list):
        raise ValueError("index_map must be a list")
    module.set_index_map(index_map, _int(entry, "in_planes"))


def _reshape_conv(module: nn.modules.conv._ConvNd, entry: dict[str, Any]) -> None:
    in_ch, out_ch, groups = _int(entry, "in_channels"), _int(entry, "out_channels"), _int(entry, "groups")
    if (in_ch, out_ch, groups) == (module.in_channels, module.out_channels, module.groups):
        return
    if in_ch % groups or out_ch % groups:
        raise ValueError(f"channels ({in_ch}, {out_ch}) are not divisible by groups={groups}")
    if module.transposed:
        raise ValueError("transposed convolutions are not supported")
    module.in_channels, module.out_channels, module.groups = in_ch, out_ch, groups
    module.weight = _new_param(module.weight, (out_ch, in_ch // groups, *module.kernel_size))
    if module.bias is not None:
        module.bias = _new_param(module.bias, (out_ch,))
    module.reset_parameters()


def _reshape_linear(module: nn.Linear, entry: dict[str, Any]) -> None:
    in_f, out_f = _int(entry, "in_features"), _int(entry, "out_features")
    if (in_f, out_f) == (module.in_features, module.out_features):
        return
    module.in_features, module.out_features = in_f, out_f
    module.weight = _new_param(module.weight, (out_f, in_f))
    if module.bias is not None:
        module.bias = _new_param(module.bias, (out_f,))
    module.reset_parameters()


def _reshape_batchnorm(module: nn.modules.batchnorm._BatchNorm, entry: dict[str, Any]) -> None:
    n = _int(entry, "num_features")
    if n == module.num_features:
        return
    module.num_features = n
    if module.affine:
        module.weight = _new_param(module.weight, (n,))
        module.bias = _new_param(module.bias, (n,))
    if module.running_mean is not None and module.running_var is not None:
        module.running_mean = torch.zeros(
            n, dtype=module.running_mean.dtype, device=module.running_mean.device
        )
        module.running_var = torch.ones(n, dtype=module.running_var.dtype, device=module.running_var.device)
    module.reset_parameters()


def _reshape_prelu(module: nn.PReLU, entry: dict[str, Any]) -> None:
    n = _int(entry, "num_parameters")
    if n == module.num_parameters:
        return
    module.num_parameters = n
    module.weight = _new_param(module.weight, (n,))
    module.reset_parameters()
