"""BatchNorm folding: exact per conv, on whole zoo models, and into trained quantized convs."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from edgeslim.models import create_model
from edgeslim.quantization import QConfig, QuantConv2d, QuantSpec, fold_bn, fuse_conv_bn
from edgeslim.quantization.fuse import find_conv_bn_pairs, fold_bn_into_quant_conv


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models run faster on one thread (no per-op sync), also when the cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _random_bn(bn: nn.BatchNorm2d, g: torch.Generator) -> nn.BatchNorm2d:
    """Non-trivial eval statistics (fresh BNs are the identity, which would test nothing)."""
    c = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=g))  # type: ignore[union-attr]
        bn.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.1)  # type: ignore[union-attr]
        if bn.affine:
            bn.weight.copy_(torch.randn(c, generator=g))  # negative gammas too
            bn.bias.copy_(torch.randn(c, generator=g))
    return bn.eval()


def _randomize_bns(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            _random_bn(m, g)
    return model.eval()


CONVS = [
    dict(in_channels=3, out_channels=8, kernel_size=3, padding=1, bias=True),
    dict(in_channels=3, out_channels=8, kernel_size=3, padding=1, bias=False),
    dict(in_channels=8, out_channels=16, kernel_size=3, stride=2, groups=4, bias=False),
    dict(
        in_channels=8, out_channels=8, kernel_size=3, padding=2, dilation=2, groups=8, bias=True
    ),  # depthwise
    dict(in_channels=6, out_channels=12, kernel_size=1, bias=True),
]


@pytest.mark.parametrize("kwargs", CONVS)
@pytest.mark.parametrize("affine", [True, False])
def test_fold_bn_equals_conv_then_bn(kwargs: dict[str, int], affine: bool) -> None:
    g = torch.Generator().manual_seed(len(str(kwargs)))
    conv = nn.Conv2d(**kwargs)  # type: ignore[arg-type]
    bn = _random_bn(nn.BatchNorm2d(conv.out_channels, affine=affine, eps=1e-3), g)
    x = torch.randn(2, conv.in_channels, 9, 9, generator=g)
    with torch.no_grad():
        expected = bn(conv(x))
        folded = fold_bn(copy.deepcopy(conv), bn)
        assert folded.bias is not None
        torch.testing.assert_close(folded(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["resnet20_tiny", "mobilenet_v2_tiny"])
def test_fuse_conv_bn_preserves_outputs_and_removes_every_bn(name: str) -> None:
    model = _randomize_bns(create_model(name))
    bns = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert len(find_conv_bn_pairs(model)) == bns > 0  # every BN in these models follows a conv
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        fused = fuse_conv_bn(model)
        assert fused is model and type(fused).__name__ == type(model).__name__
        assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
        torch.testing.assert_close(fused(x), expected, atol=1e-5, rtol=1e-5)


class _Untraceable(nn.Module):
    """Data-dependent control flow (torch.fx cannot trace it) around a Sequential conv-BN."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Conv2d(4, 2, 1)
        self.head_bn = nn.BatchNorm2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(x)
        if out.sum() > 0:
            out = out * 2
        return self.head_bn(self.head(out))


def test_untraceable_models_fall_back_to_sequential_pairs() -> None:
    model = _randomize_bns(_Untraceable())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)
        fuse_conv_bn(model)
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)
    assert isinstance(model.features[1], nn.Identity)
    assert isinstance(model.head_bn, nn.BatchNorm2d)  # order unknown outside a Sequential: left alone


@pytest.mark.parametrize("symmetric", [True, False])
def test_folding_into_a_quantized_conv_keeps_the_quantized_weights_exact(symmetric: bool) -> None:
    g = torch.Generator().manual_seed(5)
    qconfig = QConfig(weight=QuantSpec(bits=4, symmetric=symmetric, per_channel=True), activation=None)
    conv = QuantConv2d.from_float(nn.Conv2d(3, 6, 3, bias=False), qconfig)
    conv.weight_fake_quant(conv.weight)  # observe and set qparams (per channel)
    bn = _random_bn(nn.BatchNorm2d(6), g)
    x = torch.randn(2, 3, 7, 7, generator=g)
    with torch.no_grad():
        expected = bn(conv(x))
        conv.weight_fake_quant.observe = False
        fold_bn_into_quant_conv(conv, bn)
        torch.testing.assert_close(conv(x), expected, atol=1e-4, rtol=1e-4)
