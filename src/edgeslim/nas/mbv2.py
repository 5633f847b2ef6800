"""The supernet of an :class:`~edgeslim.nas.space.MBV2Space`: elastic depth, expand ratio and kernel.

The largest net of the space: the zoo MobileNetV2's stem and first block (fixed), then per stage
the most blocks it may have, each an inverted residual at the largest expand ratio and kernel, the
1x1 last conv and the classifier. A subnet runs the first ``depth`` blocks of each stage; a block
with expand ratio ``e`` uses the first ``in * e`` hidden channels of the shared 1x1 expand conv,
depthwise conv and 1x1 projection, and a depthwise kernel ``k`` smaller than the largest ``K`` is
Once-for-All's **elastic kernel**: the centre ``k x k`` of the next larger kernel's weights, passed
(per block, shared by its channels) through a learned ``k^2 x k^2`` transformation matrix that
starts as the identity (``MBV2Space.kernel_transform``; without it the plain centre crop). The space
trains from scratch (no pretrained init model); the blocks' hidden channels are trained in order
from the first step, so a narrower block keeps the channels every step trained.

:meth:`MBV2Supernet.export` writes a subnet as the zoo's ``mobilenet_v2_blocks`` (every block's
expand ratio, channels, kernel and stride explicit), whose module names the latency predictor's
layer plan uses.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgeslim.models import create_model
from edgeslim.models.mobilenet import ConvBNReLU, InvertedResidual, mobilenet_init
from edgeslim.nas.space import MBV2Space, MBV2Subnet
from edgeslim.nas.supernet import SUPERNETS, ExportedSubnet, LayerPlan, Supernet, elastic_bn

__all__ = ["ZOO_MODEL", "ElasticInvertedResidual", "MBV2Supernet"]

ZOO_MODEL = "mobilenet_v2_blocks"


def _weight(weight: Tensor, frozen: bool) -> Tensor:
    return weight.detach() if frozen else weight


def _conv(conv: nn.Conv2d, x: Tensor, frozen: bool) -> Tensor:
    """``conv`` as it is (the fixed layers), on frozen weights for the differentiable search."""
    return F.conv2d(
        x, _weight(conv.weight, frozen), None, conv.stride, conv.padding, conv.dilation, conv.groups
    )


def _conv_bn_relu(layer: nn.Module, x: Tensor, frozen: bool) -> Tensor:
    """A zoo ``ConvBNReLU`` (conv, BN, ReLU6) through :func:`elastic_bn`."""
    seq = cast(ConvBNReLU, layer)
    conv, bn = cast(nn.Conv2d, seq[0]), cast(nn.BatchNorm2d, seq[1])
    return F.relu6(elastic_bn(bn, _conv(conv, x, frozen), frozen))


class ElasticInvertedResidual(nn.Module):
    """An inverted residual block at its largest expand ratio and kernel, run at any smaller ones."""

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        stride: int,
        max_expand: int,
        kernels: tuple[int, ...],
        transform: bool,
    ) -> None:
        super().__init__()
        hidden, top = in_planes * max_expand, kernels[-1]
        self.in_planes, self.out_planes, self.stride, self.kernels = in_planes, out_planes, stride, kernels
        self.expand = nn.Conv2d(in_planes, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.depthwise = nn.Conv2d(hidden, hidden, top, stride, top // 2, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.residual = stride == 1 and in_planes == out_planes
        matrices = {f"k{k}": nn.Parameter(torch.eye(k * k)) for k in kernels[:-1]} if transform else {}
        self.transforms = nn.ParameterDict(matrices)

    def hidden(self, expand: int) -> int:
        """Hidden channels at expand ratio ``expand`` (the zoo block's ``round(in * t)``)."""
        return round(self.in_planes * expand)

    def kernel_weight(self, kernel: int, channels: int, frozen: bool = False) -> Tensor:
        """The depthwise weight of the first ``channels`` channels at ``kernel``: from the largest
        kernel down, the centre of the previous size, times that size's transformation (OFA)."""
        weight = _weight(self.depthwise.weight[:channels], frozen)
        for k in sorted((k for k in self.kernels[:-1] if k >= kernel), reverse=True):
            start = (weight.shape[-1] - k) // 2
            weight = weight[:, :, start : start + k, start : start + k]
            if f"k{k}" in self.transforms:
                matrix = _weight(self.transforms[f"k{k}"], frozen)
                weight = F.linear(weight.reshape(channels, k * k), matrix).reshape(channels, 1, k, k)
        return weight

    def forward(
        self,
        x: Tensor,
        expand: int,
        kernel: int,
        *,
        frozen: bool = False,
        hidden_gate: Tensor | None = None,
        dw_weight: Tensor | None = None,
    ) -> Tensor:
        """The block at ``expand`` and ``kernel``. The differentiable search passes ``frozen``
        (batch-statistics BN, no weight gradients), a gate on the hidden channels and the depthwise
        weight (a mixture of kernels, zero-padded to one size)."""
        h = self.hidden(expand)
        out = F.relu6(elastic_bn(self.bn1, F.conv2d(x, _weight(self.expand.weight[:h], frozen)), frozen))
        weight = self.kernel_weight(kernel, h, frozen) if dw_weight is None else dw_weight
        out = F.conv2d(out, weight, None, self.stride, weight.shape[-1] // 2, groups=h)
        out = F.relu6(elastic_bn(self.bn2, out, frozen))
        if hidden_gate is not None:
            out = out * hidden_gate
        out = elastic_bn(self.bn3, F.conv2d(out, _weight(self.project.weight[:, :h], frozen)), frozen)
        return x + out if self.residual else out


@SUPERNETS.register(MBV2Space)
class MBV2Supernet(Supernet[MBV2Subnet]):
    """The largest net of an :class:`MBV2Space` (module docstring)."""

    space: MBV2Space

    def __init__(self, space: MBV2Space, num_classes: int = 10) -> None:
        super().__init__(space, num_classes)
        self.stem = ConvBNReLU(3, space.stem, stride=1)
        self.first = InvertedResidual(space.stem, space.first, 1, 1)
        stages, in_planes = [], space.first
        for (channels, stride), depths in zip(space.stages, space.depth_choices, strict=True):
            blocks = [
                ElasticInvertedResidual(
                    in_planes if i == 0 else channels,
                    channels,
                    stride if i == 0 else 1,
                    space.expand_choices[-1],
                    space.kernel_choices,
                    space.kernel_transform,
                )
                for i in range(depths[-1])
            ]
            stages.append(nn.ModuleList(blocks))
            in_planes = channels
        self.stages = nn.ModuleList(stages)
        self.last = ConvBNReLU(in_planes, space.last_channel, kernel_size=1)
        self.classifier = nn.Linear(space.last_channel, num_classes)
        mobilenet_init(self)  # the zoo MobileNetV2's init: the space trains from scratch

    def undecayed_parameters(self) -> list[nn.Parameter]:
        # the kernel transforms start as the identity: decay would shrink the smaller kernels' weights
        return [
            p for m in self.modules() if isinstance(m, ElasticInvertedResidual) for p in m.transforms.values()
        ]

    def blocks(self, stage: int) -> list[ElasticInvertedResidual]:
        """The blocks of ``stage`` (all of them: the largest net's)."""
        return [cast(ElasticInvertedResidual, b) for b in cast(nn.ModuleList, self.stages[stage])]

    def stem_forward(self, x: Tensor, frozen: bool = False) -> Tensor:
        """Stem conv and the fixed first block (expand 1, kernel 3)."""
        out = _conv_bn_relu(self.stem, x, frozen)
        dw, project, bn = self.first.conv
        y = elastic_bn(
            cast(nn.BatchNorm2d, bn),
            _conv(cast(nn.Conv2d, project), _conv_bn_relu(dw, out, frozen), frozen),
            frozen,
        )
        return out + y if self.first.use_res_connect else y

    def head_forward(self, x: Tensor, frozen: bool = False) -> Tensor:
        """Last 1x1 conv, global average pool, classifier."""
        out = _conv_bn_relu(self.last, x, frozen).mean((2, 3))
        return F.linear(out, _weight(self.classifier.weight, frozen), _weight(self.classifier.bias, frozen))

    def forward(self, x: Tensor) -> Tensor:
        sub = self.active
        out = self.stem_forward(x)
        for s in range(len(self.stages)):
            for i, block in enumerate(self.blocks(s)[: sub.depths[s]]):
                out = block(out, sub.expands[s][i], sub.kernels[s][i])
        return self.head_forward(out)

    def _slot_names(self, stage: int, block: int) -> tuple[str, str, str]:
        """The expand, depthwise and projection convs of a block slot in the largest exported net."""
        prefix = f"features.{2 + self.space.slot(stage, block)}.conv"
        return f"{prefix}.0.0", f"{prefix}.1.0", f"{prefix}.2"

    def layer_plan(self, subnet: MBV2Subnet) -> LayerPlan:
        widths: dict[str, tuple[int, int]] = {}
        absent: list[str] = []
        kernels: dict[str, int] = {}
        for s in range(len(self.stages)):
            for i, block in enumerate(self.blocks(s)):
                expand, depthwise, project = self._slot_names(s, i)
                if i >= subnet.depths[s]:
                    absent += [expand, depthwise, project]
                    continue
                h = block.hidden(subnet.expands[s][i])
                widths[expand], widths[depthwise], widths[project] = (
                    (block.in_planes, h),
                    (h, h),
                    (h, block.out_planes),
                )
                kernels[depthwise] = subnet.kernels[s][i]
        return LayerPlan(widths, absent, kernels)

    def elastic_kernels(self) -> dict[str, tuple[int, ...]]:
        return {
            self._slot_names(s, i)[1]: self.space.kernel_choices
            for s in range(len(self.stages))
            for i in range(len(self.blocks(s)))
        }

    def zoo_blocks(self, subnet: MBV2Subnet) -> list[list[int]]:
        """``subnet`` as ``mobilenet_v2_blocks``' ``blocks``: [expand, channels, kernel, stride] each."""
        blocks = [[1, self.space.first, 3, 1]]
        for s, (channels, stride) in enumerate(self.space.stages):
            for i in range(subnet.depths[s]):
                blocks.append([subnet.expands[s][i], channels, subnet.kernels[s][i], stride if i == 0 else 1])
        return blocks

    @torch.no_grad()
    def export(self, subnet: MBV2Subnet) -> ExportedSubnet:
        self.space.check(subnet)
        kwargs: dict[str, Any] = {
            "blocks": self.zoo_blocks(subnet),
            "stem": self.space.stem,
            "last_channel": self.space.last_channel,
        }
        model = create_model(ZOO_MODEL, self.num_classes, **kwargs)
        state: dict[str, Tensor] = {}

        def copy(prefix: str, module: nn.Module) -> None:
            state.update({f"{prefix}.{k}": v.clone() for k, v in module.state_dict().items()})

        def bn(prefix: str, module: nn.BatchNorm2d, channels: int) -> None:
            state.update(
                {
                    f"{prefix}.{k}": v[:channels].clone() if v.dim() else v.clone()
                    for k, v in module.state_dict().items()
                }
            )

        copy("features.0", self.stem)
        copy("features.1", self.first)
        index = 2
        for s in range(len(self.stages)):
            for i, block in enumerate(self.blocks(s)[: subnet.depths[s]]):
                h = block.hidden(subnet.expands[s][i])
                prefix = f"features.{index}.conv"
                state[f"{prefix}.0.0.weight"] = block.expand.weight[:h].clone()
                bn(f"{prefix}.0.1", block.bn1, h)
                state[f"{prefix}.1.0.weight"] = block.kernel_weight(subnet.kernels[s][i], h).clone()
                bn(f"{prefix}.1.1", block.bn2, h)
                state[f"{prefix}.2.weight"] = block.project.weight[:, :h].clone()
                copy(f"{prefix}.3", block.bn3)
                index += 1
        copy(f"features.{index}", self.last)
        copy("classifier", self.classifier)
        model.load_state_dict(state, strict=True)
        return ExportedSubnet(model.eval(), ZOO_MODEL, kwargs, {})
