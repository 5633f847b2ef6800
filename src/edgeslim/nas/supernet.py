"""Weight-sharing supernets (Once-for-All style): the generic part, and the one of a ResNetSpace.

Every space type has a supernet class (:data:`SUPERNETS`, looked up by the space's type; a new space
registers its own): a :class:`Supernet` runs any subnet of its space on slices of shared weights
(:meth:`Supernet.run`), exports a subnet as an ordinary zoo model (:meth:`Supernet.export`), and says
which layers of its largest net a subnet changes (:meth:`Supernet.layer_plan`, what the latency
predictor prices). Training, search and the supernet file go through these alone.

A :class:`ResNetSupernet` is the space's largest net with the module names of the zoo's CIFAR
ResNet (so the pretrained ResNet-56 loads into it as it is). A subnet runs on slices of the shared
weights: the first ``depth`` blocks of each stage, the first ``width`` channels of each residual
stream and the first ``mid`` channels inside each block. :func:`sort_channels` orders every stream and every
block's inner channels by importance (BatchNorm scale, summed over every layer that writes the
stream) once, at initialisation, so small subnets inherit the most useful filters of the
pretrained net. :func:`extract_subnet` copies a subnet's slices into an ordinary zoo model
(``resnet_cifar`` with explicit blocks plus a channel spec) that every other edgeslim command loads.
The MobileNetV2 space's supernet is :mod:`edgeslim.nas.mbv2`.
"""

from __future__ import annotations

import abc
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgeslim.checkpoint import read_file
from edgeslim.errors import CheckpointError, ConfigError
from edgeslim.io import atomic_torch_save
from edgeslim.methods import HandlerTable
from edgeslim.models import create_model, load_weights
from edgeslim.models.channels import SPEC_FORMAT, SPEC_VERSION, apply_channel_spec, channel_spec
from edgeslim.models.resnet_cifar import PadShortcut, gather_shortcut
from edgeslim.nas.space import STAGES, ResNetSpace, S, SearchSpace, Subnet, get_space

__all__ = [
    "SUPERNETS",
    "SUPERNET_FORMAT",
    "SUPERNET_VERSION",
    "ExportedSubnet",
    "LayerPlan",
    "ResNetSupernet",
    "Supernet",
    "SupernetFile",
    "build_supernet",
    "check_init_weights",
    "check_new_file",
    "elastic_bn",
    "extract_subnet",
    "load_supernet",
    "save_supernet",
    "sort_channels",
    "subnet_layer_widths",
]

SUPERNET_FORMAT = "edgeslim.supernet"
# Unchanged by the MobileNetV2 space: a file names its space, which decides the net it rebuilds, so
# every supernet file written before loads as it did.
SUPERNET_VERSION = 1


def _conv(conv: nn.Conv2d, x: Tensor, out_channels: int) -> Tensor:
    weight = conv.weight[:out_channels, : x.shape[1]]
    return F.conv2d(x, weight, None, conv.stride, conv.padding)


def elastic_bn(bn: nn.BatchNorm2d, x: Tensor, frozen: bool = False) -> Tensor:
    """``bn`` on the first ``x.shape[1]`` channels.

    ``frozen`` (the differentiable search): the batch's own statistics, nothing written to the
    running ones, no gradient to the affine parameters; else as ``bn`` itself would (running
    statistics updated in training mode).
    """
    c = x.shape[1]
    if frozen:
        return F.batch_norm(x, None, None, bn.weight[:c].detach(), bn.bias[:c].detach(), True, 0.0, bn.eps)
    assert bn.running_mean is not None and bn.running_var is not None
    return F.batch_norm(
        x,
        bn.running_mean[:c],
        bn.running_var[:c],
        bn.weight[:c],
        bn.bias[:c],
        bn.training,
        0.1 if bn.momentum is None else bn.momentum,
        bn.eps,
    )


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """What a subnet changes in its space's largest net, by the largest net's zoo layer names:
    (in, out) widths of the layers it narrows, the layers it drops (``absent``), and the kernel size
    of elastic depthwise convs (``kernels``). The latency predictor prices a subnet from this alone."""

    widths: dict[str, tuple[int, int]]
    absent: list[str]
    kernels: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ExportedSubnet:
    """A subnet as an ordinary zoo model: the model (weights copied), the zoo name and kwargs that
    rebuild it, and what its checkpoint's meta must hold besides (e.g. a channel spec)."""

    model: nn.Module
    model_name: str
    model_kwargs: dict[str, Any]
    meta: dict[str, Any]


class Supernet(nn.Module, Generic[S], abc.ABC):
    """The largest net of ``space``; :attr:`active` (a subnet) decides what ``forward`` runs."""

    def __init__(self, space: SearchSpace[S], num_classes: int) -> None:
        super().__init__()
        self.space = space
        self.num_classes = num_classes
        self.active: S = space.largest()

    def run(self, subnet: S, x: Tensor) -> Tensor:
        """``forward`` of ``subnet`` (the active subnet is restored after)."""
        previous, self.active = self.active, subnet
        try:
            return cast(Tensor, self(x))
        finally:
            self.active = previous

    def initialise(self, init_weights: str | os.PathLike[str]) -> None:
        """Load pretrained weights of the space's ``init_model`` (whose shape the largest net has)."""
        init_model = check_init_weights(self.space, init_weights)
        assert init_model is not None
        model = create_model(init_model, self.num_classes)
        load_weights(model, init_weights)
        self.load_state_dict(model.state_dict(), strict=True)

    @abc.abstractmethod
    def export(self, subnet: S) -> ExportedSubnet:
        """``subnet`` as an ordinary zoo model with its weights copied out of the supernet."""

    @abc.abstractmethod
    def layer_plan(self, subnet: S) -> LayerPlan:
        """What ``subnet`` changes in the largest net's layers (names of ``export(largest)``)."""

    def elastic_kernels(self) -> dict[str, tuple[int, ...]]:
        """Kernel sizes each elastic depthwise conv may take, by the largest net's layer names."""
        return {}

    def undecayed_parameters(self) -> list[nn.Parameter]:
        """Parameters weight decay must not pull towards zero (e.g. transforms that start as the identity)."""
        return []

    def file_extras(self) -> dict[str, Any]:
        """Plain data a supernet file keeps besides the weights (read back by :meth:`load_extras`)."""
        return {}

    def load_extras(self, saved: dict[str, Any], path: str) -> None:
        """Restore what :meth:`file_extras` wrote (``saved``: the whole file)."""


def check_init_weights(space: SearchSpace[Any], init_weights: object) -> str | None:
    """The space's init model; a one-line error when weights are given for a space without one."""
    if init_weights is not None and space.init_model is None:
        raise ConfigError(
            f"space {space.name!r} trains from scratch (it has no init model); leave out --init-weights",
            field="nas.init_weights",
        )
    return space.init_model


#: the supernet class of each space type (looked up by the space's type; a new space registers one)
SUPERNETS: HandlerTable[Callable[..., Supernet[Any]]] = HandlerTable("supernet")


def build_supernet(space: SearchSpace[Any], num_classes: int = 10) -> Supernet[Any]:
    """A freshly initialised supernet of ``space``."""
    return SUPERNETS.get(space)(space, num_classes)


def sub_index_map(index_map: list[int], in_width: int, out_width: int) -> list[int]:
    """The option-A shortcut of a subnet: the first ``out_width`` outputs, inputs beyond ``in_width`` zero."""
    return [c if 0 <= c < in_width else -1 for c in index_map[:out_width]]


class _ElasticBlock(nn.Module):
    """The zoo's ``BasicBlockA`` (same names), run at any inner and output width up to its own."""

    def __init__(self, in_planes: int, mid: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, mid, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pads = stride != 1 or in_planes != planes
        self.shortcut: nn.Module = PadShortcut(in_planes, planes, stride) if self.pads else nn.Identity()
        self._indices: dict[tuple[int, int], Tensor] = {}

    def forward(self, x: Tensor, mid: int, width: int) -> Tensor:
        out = F.relu(elastic_bn(self.bn1, _conv(self.conv1, x, mid)))
        out = elastic_bn(self.bn2, _conv(self.conv2, out, width))
        return F.relu(out + self._shortcut(x, width))

    def _shortcut(self, x: Tensor, width: int) -> Tensor:
        if not self.pads:
            return x  # within a stage: the stream keeps its width
        shortcut = self.shortcut
        assert isinstance(shortcut, PadShortcut)
        key = (int(x.shape[1]), width)
        if key not in self._indices:
            index_map = sub_index_map(shortcut.index_map, key[0], width)
            self._indices[key] = torch.tensor([c if c >= 0 else key[0] for c in index_map], device=x.device)
        return gather_shortcut(x, shortcut.stride, self._indices[key])

    def forget_indices(self) -> None:
        self._indices.clear()


@SUPERNETS.register(ResNetSpace)
class ResNetSupernet(Supernet[Subnet]):
    """The largest net of a :class:`ResNetSpace`, with the zoo CIFAR ResNet's module names."""

    conv1: nn.Conv2d
    bn1: nn.BatchNorm2d
    linear: nn.Linear
    space: ResNetSpace

    def __init__(self, space: ResNetSpace, num_classes: int = 10) -> None:
        super().__init__(space, num_classes)
        widths, mids = space.max_widths, space.max_mids
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages = []
        for s in range(STAGES):
            in_planes = widths[max(0, s - 1)]
            stride = 1 if s == 0 else 2
            blocks = [
                _ElasticBlock(in_planes if i == 0 else widths[s], mids[s], widths[s], stride if i == 0 else 1)
                for i in range(space.max_depth)
            ]
            stages.append(nn.ModuleList(blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(widths[-1], num_classes)

    @property
    def stages(self) -> list[list[_ElasticBlock]]:
        """The blocks of each stage (all of them: the largest net's)."""
        return [[cast(_ElasticBlock, b) for b in stage] for stage in (self.layer1, self.layer2, self.layer3)]

    def forward(self, x: Tensor) -> Tensor:
        sub = self.active
        out = F.relu(elastic_bn(self.bn1, _conv(self.conv1, x, sub.widths[0])))
        for s, stage in enumerate(self.stages):
            for block in stage[: sub.depths[s]]:
                out = block(out, sub.mids[s], sub.widths[s])
        out = out.mean((2, 3))
        return F.linear(out, self.linear.weight[:, : sub.widths[-1]], self.linear.bias)

    def initialise(self, init_weights: str | os.PathLike[str]) -> None:
        """The pretrained ResNet, then its channels sorted by importance (:func:`sort_channels`)."""
        super().initialise(init_weights)
        sort_channels(self)

    def export(self, subnet: Subnet) -> ExportedSubnet:
        model = _extract_resnet(self, subnet)
        blocks = {"blocks": list(subnet.depths)}
        return ExportedSubnet(model, "resnet_cifar", blocks, {"channel_spec": channel_spec(model)})

    def layer_plan(self, subnet: Subnet) -> LayerPlan:
        return LayerPlan(*subnet_layer_widths(subnet, self.num_classes, self.space.max_depth))

    def file_extras(self) -> dict[str, Any]:
        return {
            "shortcuts": {
                f"layer{s + 1}.0": stage[0].shortcut.index_map
                for s, stage in enumerate(self.stages)
                if isinstance(stage[0].shortcut, PadShortcut)
            }
        }

    def load_extras(self, saved: dict[str, Any], path: str) -> None:
        for name, index_map in dict(saved.get("shortcuts") or {}).items():
            block = dict(self.named_modules()).get(name)
            if not isinstance(block, _ElasticBlock) or not isinstance(block.shortcut, PadShortcut):
                raise CheckpointError(f"{path!r}: shortcut {name!r} is not one of this space's")
            block.shortcut.set_index_map(list(index_map))


# -- importance order ------------------------------------------------------------------------------


def _permute_out(conv: nn.Conv2d, bn: nn.BatchNorm2d, order: Tensor) -> None:
    conv.weight.data = conv.weight.data[order].clone()
    for tensor in (bn.weight, bn.bias):
        tensor.data = tensor.data[order].clone()
    assert bn.running_mean is not None and bn.running_var is not None
    bn.running_mean.copy_(bn.running_mean[order].clone())
    bn.running_var.copy_(bn.running_var[order].clone())


def _permute_in(weight: Tensor, order: Tensor) -> None:
    weight.data = weight.data[:, order].clone()


@torch.no_grad()
def sort_channels(net: ResNetSupernet) -> None:
    """Order each residual stream and each block's inner channels by importance (descending).

    A stream channel's importance is the sum of ``|gamma|`` of every BatchNorm that writes it (the
    stem for the first stream, each block's second BN); an inner channel's is its ``|gamma|``. The
    function is exact: the largest subnet computes the same outputs before and after.
    """
    stages = net.stages
    orders = []
    for s in range(STAGES):
        score = torch.zeros(stages[s][0].bn2.num_features)
        if s == 0:
            score += net.bn1.weight.abs()
        for block in stages[s]:
            score += block.bn2.weight.abs()
        orders.append(torch.argsort(score, descending=True, stable=True))
    # streams: writers (out side), readers (in side), shortcut maps between stages
    _permute_out(net.conv1, net.bn1, orders[0])
    for s in range(STAGES):
        for i, block in enumerate(stages[s]):
            mid_order = torch.argsort(block.bn1.weight.abs(), descending=True, stable=True)
            _permute_out(block.conv1, block.bn1, mid_order)
            _permute_in(block.conv2.weight, mid_order)
            _permute_out(block.conv2, block.bn2, orders[s])
            source = orders[s - 1] if (i == 0 and s > 0) else orders[s]
            _permute_in(block.conv1.weight, source)
            if i == 0 and s > 0:
                shortcut = block.shortcut
                assert isinstance(shortcut, PadShortcut)
                inverse = torch.argsort(orders[s - 1]).tolist()
                old = shortcut.index_map
                shortcut.set_index_map([inverse[old[j]] if old[j] >= 0 else -1 for j in orders[s].tolist()])
                block.forget_indices()
    _permute_in(net.linear.weight, orders[-1])


# -- subnets as zoo models -------------------------------------------------------------------------


def _stream_in(subnet: Subnet, s: int, i: int) -> int:
    return subnet.widths[s - 1] if (i == 0 and s > 0) else subnet.widths[s]


def subnet_layer_widths(
    subnet: Subnet, num_classes: int, max_depth: int
) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Per-layer (in, out) widths of ``subnet``'s convs/Linear by zoo name, and the layers it drops.

    The names are those of the largest net (``layerS.I.convK``), so a latency predictor built on the
    largest net prices any subnet without building it.
    """
    w = subnet.widths
    widths: dict[str, tuple[int, int]] = {"conv1": (3, w[0]), "linear": (w[-1], num_classes)}
    absent: list[str] = []
    for s in range(STAGES):
        for i in range(max_depth):
            prefix = f"layer{s + 1}.{i}"
            if i >= subnet.depths[s]:
                absent += [f"{prefix}.conv1", f"{prefix}.conv2"]
                continue
            widths[f"{prefix}.conv1"] = (_stream_in(subnet, s, i), subnet.mids[s])
            widths[f"{prefix}.conv2"] = (subnet.mids[s], w[s])
    return widths, absent


def _spec_and_state(net: ResNetSupernet, subnet: Subnet) -> tuple[dict[str, Any], dict[str, Tensor]]:
    modules: dict[str, dict[str, Any]] = {}
    state: dict[str, Tensor] = {}
    full = net.state_dict()

    def conv(name: str, in_ch: int, out_ch: int) -> None:
        modules[name] = {"type": "Conv2d", "in_channels": in_ch, "out_channels": out_ch, "groups": 1}
        state[f"{name}.weight"] = full[f"{name}.weight"][:out_ch, :in_ch].clone()

    def bn(name: str, n: int) -> None:
        modules[name] = {"type": "BatchNorm2d", "num_features": n}
        for key in ("weight", "bias", "running_mean", "running_var"):
            state[f"{name}.{key}"] = full[f"{name}.{key}"][:n].clone()
        state[f"{name}.num_batches_tracked"] = full[f"{name}.num_batches_tracked"].clone()

    w = subnet.widths
    conv("conv1", 3, w[0])
    bn("bn1", w[0])
    for s, stage in enumerate(net.stages):
        for i in range(subnet.depths[s]):
            prefix = f"layer{s + 1}.{i}"
            conv(f"{prefix}.conv1", _stream_in(subnet, s, i), subnet.mids[s])
            bn(f"{prefix}.bn1", subnet.mids[s])
            conv(f"{prefix}.conv2", subnet.mids[s], w[s])
            bn(f"{prefix}.bn2", w[s])
            block = stage[i]
            if i == 0 and s > 0:
                shortcut = block.shortcut
                assert isinstance(shortcut, PadShortcut)
                modules[f"{prefix}.shortcut"] = {
                    "type": "PadShortcut",
                    "in_planes": w[s - 1],
                    "index_map": sub_index_map(shortcut.index_map, w[s - 1], w[s]),
                }
    modules["linear"] = {"type": "Linear", "in_features": w[-1], "out_features": net.num_classes}
    state["linear.weight"] = full["linear.weight"][:, : w[-1]].clone()
    state["linear.bias"] = full["linear.bias"].clone()
    return {"format": SPEC_FORMAT, "version": SPEC_VERSION, "modules": modules}, state


def extract_subnet(net: Supernet[Any], subnet: Any) -> nn.Module:
    """``subnet`` as an ordinary zoo model, weights copied (:meth:`Supernet.export`'s model)."""
    return net.export(subnet).model


def _extract_resnet(net: ResNetSupernet, subnet: Subnet) -> nn.Module:
    """``resnet_cifar`` with explicit blocks and a channel spec.

    Every stage's first block in the zoo model has an option-A shortcut when it changes resolution;
    the first stage's first block has an identity shortcut in both, so shapes always line up.
    """
    net.space.check(subnet)
    spec, state = _spec_and_state(net, subnet)
    model = create_model("resnet_cifar", net.num_classes, blocks=list(subnet.depths))
    apply_channel_spec(model, spec)
    model.load_state_dict(state, strict=True)
    return model.eval()


# -- files ------------------------------------------------------------------------------------------


def check_new_file(out: Path) -> None:
    """``out`` must not exist and its folder must (checked before any work, so nothing is half-written)."""
    if out.exists():
        raise ConfigError(f"{str(out)!r} exists; choose a new --out (nothing was written)", field="nas.out")
    if not out.parent.is_dir():
        raise ConfigError(f"the folder of {str(out)!r} does not exist", field="nas.out")


class SupernetFile:
    """What a supernet file holds besides the weights: its space, training state and notes."""

    def __init__(
        self, space: SearchSpace[Any], meta: dict[str, Any], train_state: dict[str, Any] | None
    ) -> None:
        self.space, self.meta, self.train_state = space, meta, train_state


def save_supernet(
    path: str | os.PathLike[str],
    net: Supernet[Any],
    *,
    meta: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Write the supernet atomically (plain tensors and lists: loads with ``weights_only=True``)."""
    payload: dict[str, Any] = {
        "format": SUPERNET_FORMAT,
        "version": SUPERNET_VERSION,
        "space": net.space.name,
        "space_config": net.space.to_dict(),
        "num_classes": net.num_classes,
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        **net.file_extras(),
        "meta": dict(meta or {}),
    }
    if train_state is not None:
        payload["train_state"] = train_state
    return atomic_torch_save(payload, path)


def load_supernet(
    path: str | os.PathLike[str], space: str | None = None
) -> tuple[Supernet[Any], SupernetFile]:
    """Rebuild a supernet file; ``space``, when given, must be the file's (a one-line error otherwise)."""
    obj = read_file(path)
    if not isinstance(obj, dict) or obj.get("format") != SUPERNET_FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is not an edgeslim supernet (make one with `edgeslim nas train`)"
        )
    if obj.get("version") != SUPERNET_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has supernet version {obj.get('version')!r}; this edgeslim reads {SUPERNET_VERSION}"
        )
    the_space = get_space(str(obj.get("space")))
    if space is not None and space != the_space.name:
        raise ConfigError(
            f"{str(path)!r} is a supernet of space {the_space.name!r}, not {space!r}", field="nas.space"
        )
    if obj.get("space_config") != the_space.to_dict():
        raise CheckpointError(
            f"{str(path)!r} was trained on another definition of space {the_space.name!r}; retrain it"
        )
    num_classes = obj.get("num_classes")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise CheckpointError(f"{str(path)!r}: num_classes {num_classes!r} is not a class count")
    net = build_supernet(the_space, num_classes)
    net.load_extras(obj, str(path))
    try:
        net.load_state_dict(obj.get("state_dict") or {}, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:2] or [str(exc)]
        raise CheckpointError(
            f"{str(path)!r} does not fit space {the_space.name!r}: {first[0].strip()}"
        ) from None
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    train_state = obj.get("train_state") if isinstance(obj.get("train_state"), dict) else None
    return net, SupernetFile(the_space, dict(meta or {}), train_state)
