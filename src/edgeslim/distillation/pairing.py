"""Automatic student/teacher layer pairs for feature transfer, by a rule per architecture family.

Each rule picks at most one layer per spatial resolution in one model; a student layer and a teacher
layer at the same resolution make a pair. The rule is looked up by the model's zoo family
(:func:`edgeslim.models.model_info` of the name :func:`~edgeslim.models.model_spec` recorded), in
:data:`PAIRING_RULES`; both models must have a rule of the same name (both DenseNets, say), else
both use :data:`LAST_RELU`, the default. A model built without :func:`~edgeslim.models.create_model`
(so without a recorded name) also uses the default.

* :data:`LAST_RELU` (ResNets, VGG, MobileNet, ...): the last ReLU that runs once per pass at each
  resolution - the end of each stage, where AB (Heo et al.) places its connectors.
* the DenseNet rules (families ``densenet`` and ``densenet-tv``, the CIFAR and torchvision
  layouts): the first BatchNorm of each dense block (``dense{i}.0.bn1``;
  ``features.denseblock{i}.denselayer1.norm1``), as in the study that distilled DenseNet-201 into
  DenseNet-121 with AB. That BatchNorm normalizes the block's
  input feature map and feeds the layer's first ReLU, so its output *is* a pre-activation: AB's
  ``pre_relu`` capture takes a BatchNorm's output as it is (see :mod:`.capture`), which equals the
  input of ``relu1``, the response whose sign AB transfers. Hints take the same output.
  A block's last layer, or the transition after it, would instead see the concatenated features
  of the whole block; the block entry is comparable between a 121 and a 201 (same widths in the
  first three blocks; the connector maps the fourth's 512 to 896 channels).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from edgeslim.distillation.capture import rectifier_calls, run_hooked_once
from edgeslim.errors import ConfigError, EdgeslimError
from edgeslim.models import model_info, model_spec

#: Spatial size (H, W) -> the layer a rule picked there.
Candidates = dict[tuple[int, ...], str]


@dataclasses.dataclass(frozen=True)
class PairingRule:
    """Where automatic pairing looks in one family: ``find(model, inputs)`` gives one layer per
    spatial size. Two models are paired by their rules only when the rules share ``name``."""

    name: str
    find: Callable[[nn.Module, torch.Tensor], Candidates]


def _last_relu_per_resolution(model: nn.Module, inputs: torch.Tensor) -> Candidates:
    chosen: Candidates = {}
    for name, shape, calls in rectifier_calls(model, inputs):
        if calls == 1 and len(shape) == 4:
            chosen[shape[2:]] = name  # later calls overwrite: the last one wins
    return chosen


def _first_match_per_resolution(pattern: str) -> Callable[[nn.Module, torch.Tensor], Candidates]:
    """The first module (in call order) whose qualified name fully matches ``pattern``, per spatial
    size of its output; modules that run more than once per pass are skipped."""
    regex = re.compile(pattern)

    def find(model: nn.Module, inputs: torch.Tensor) -> Candidates:
        order: list[str] = []
        shapes: dict[str, tuple[int, ...]] = {}
        calls: dict[str, int] = {}
        handles = []
        for name, module in model.named_modules():
            if name and regex.fullmatch(name):

                def hook(module: nn.Module, args: Any, output: Any, name: str = name) -> None:
                    if name not in calls:
                        order.append(name)
                        shapes[name] = tuple(output.shape) if isinstance(output, torch.Tensor) else ()
                    calls[name] = calls.get(name, 0) + 1

                handles.append(module.register_forward_hook(hook))
        run_hooked_once(model, inputs, handles)
        chosen: Candidates = {}
        for name in order:
            if calls[name] == 1 and len(shapes[name]) == 4:
                chosen.setdefault(shapes[name][2:], name)
        return chosen

    return find


#: The default rule: the last single-use ReLU at each resolution.
LAST_RELU = PairingRule("last ReLU at each resolution", _last_relu_per_resolution)
_DENSE_BLOCK_ENTRY = "first BatchNorm of each dense block"  # one name: the two layouts pair together

#: Zoo family (``edgeslim models``) -> its rule; families not listed use :data:`LAST_RELU`.
PAIRING_RULES: dict[str, PairingRule] = {
    "densenet": PairingRule(_DENSE_BLOCK_ENTRY, _first_match_per_resolution(r"dense\d+\.0\.bn1")),
    "densenet-tv": PairingRule(
        _DENSE_BLOCK_ENTRY, _first_match_per_resolution(r"features\.denseblock\d+\.denselayer1\.norm1")
    ),
}


def model_family(model: nn.Module) -> str | None:
    """The zoo family of a model built by ``create_model`` (or loaded from a checkpoint), else None."""
    spec = model_spec(model)
    if spec is None or not isinstance(spec.get("name"), str):
        return None
    try:
        return model_info(spec["name"]).family
    except EdgeslimError:
        return None


def pairing_rule(model: nn.Module) -> PairingRule:
    """The rule of the model's family (:data:`PAIRING_RULES`), else :data:`LAST_RELU`."""
    family = model_family(model)
    return PAIRING_RULES.get(family, LAST_RELU) if family is not None else LAST_RELU


def auto_layer_pairs(student: nn.Module, teacher: nn.Module, inputs: torch.Tensor) -> list[tuple[str, str]]:
    """Pair one student layer with one teacher layer per spatial resolution both models have.

    The layers come from the models' :class:`PairingRule` (module docstring): for two DenseNets
    the first BatchNorm of each dense block (``dense{1..4}.0.bn1``); otherwise the last ReLU at
    each resolution (for the CIFAR ResNets ``layer{1,2,3}.{last}.relu2``). Both models run once on
    ``inputs`` (eval mode, no gradients; their modes are restored). Resolutions only one model has
    are skipped; pairs come in the student's order (shallow to deep).
    """
    s_rule, t_rule = pairing_rule(student), pairing_rule(teacher)
    if s_rule.name != t_rule.name:
        s_rule = t_rule = LAST_RELU
    s_map = s_rule.find(student, inputs)
    t_map = t_rule.find(teacher, inputs)
    pairs = [(s_map[size], t_map[size]) for size in s_map if size in t_map]
    if not pairs:
        raise ConfigError(
            f"could not match student and teacher layers automatically (rule: {s_rule.name}; no such "
            "layer at a spatial size both models have); name the pairs explicitly, e.g. "
            "layers=('layer3.2.relu2=layer3.8.relu2',)"
        )
    return pairs


__all__ = [
    "LAST_RELU",
    "PAIRING_RULES",
    "PairingRule",
    "auto_layer_pairs",
    "model_family",
    "pairing_rule",
]
