"""Preparing models: layer swaps, the "all_layers" graph rewrite on every zoo model, state_dicts."""

from __future__ import annotations

import copy
import operator
from collections.abc import Iterator

import pytest
import torch
import torch.fx as fx
from torch import nn

from edgeslim.errors import ConfigError
from edgeslim.models import create_model, list_models
from edgeslim.quantization import (
    FakeQuantize,
    OutputQuant,
    QConfig,
    QuantConv2d,
    QuantLinear,
    QuantSpec,
    StaticQuant,
    fake_quantizers,
    quantize,
)
from edgeslim.quantization.configs import QuantSpec as Spec
from edgeslim.quantization.prepare import prepare
from edgeslim.select import LayerSelection


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models run faster on one thread (no per-op sync), also when the cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_quant_layers_share_parameters_and_keep_state_dict_keys() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1, groups=1)
    q = QuantConv2d.from_float(conv)
    assert q.weight is conv.weight and q.bias is conv.bias
    assert isinstance(q.weight_fake_quant, FakeQuantize) and q.weight_fake_quant.axis == 0
    assert q.weight_fake_quant.scale.shape == (8,) and q.weight_fake_quant.symmetric
    assert q.input_fake_quant is not None and q.input_fake_quant.axis is None
    assert not q.input_fake_quant.symmetric  # asymmetric (uint8-style) activations by default
    assert set(q.state_dict()) == {
        "weight",
        "bias",
        "weight_fake_quant.scale",
        "weight_fake_quant.zero_point",
        "input_fake_quant.scale",
        "input_fake_quant.zero_point",
    }
    back = q.to_float()
    assert type(back) is nn.Conv2d and back.weight is conv.weight
    linear = QuantLinear.from_float(
        nn.Linear(5, 3), QConfig(weight=Spec(bits=4, per_channel=True), activation=None)
    )
    assert linear.input_fake_quant is None and linear.weight_fake_quant.qmin == -8
    assert type(linear.to_float()) is nn.Linear
    with pytest.raises(TypeError):
        QuantConv2d.from_float(q)


def test_weights_and_activations_scope_quantizes_every_layer_including_the_classifier() -> None:
    model = create_model("resnet20_tiny").eval()
    result = quantize(model, StaticQuant(calibration_batches=1), calibration=[X])
    qmodel = result.model
    assert not any(isinstance(m, QuantConv2d) for m in model.modules())  # the input model is untouched
    quant = [m for m in qmodel.modules() if isinstance(m, QuantConv2d | QuantLinear)]
    assert len(quant) == 20 and isinstance(qmodel.linear, QuantLinear)
    assert all(m.input_fake_quant is not None for m in quant)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in qmodel.modules())  # folded first
    report = result.report
    assert report.simulated and len(report.quantized_layers) == 20 and not report.skipped_layers
    assert len(report.fused_bn) == 19 and report.calibration_batches == 1
    layer = report.layers[0]
    assert layer.weight_bits == 8 and layer.act_bits == 8 and layer.per_channel and layer.symmetric
    assert layer.scale_min is not None and 0 < layer.scale_min <= layer.scale_max  # type: ignore[operator]
    assert 3.5 < report.compression < 4.0  # int8 codes plus per-channel scales
    assert report.to_dict()["layers"][0]["name"] == "conv1"


def test_a_layer_selection_can_keep_layers_in_float_with_reasons() -> None:
    model = create_model("resnet20_tiny").eval()
    select = LayerSelection(exclude=("conv1",))  # include_classifier=False by default here
    report = quantize(model, StaticQuant(calibration_batches=1), calibration=[X], select=select).report
    assert report.skipped_layers == {
        "conv1": "not selected by the LayerSelection",
        "linear": "final classifier (LayerSelection.include_classifier=False)",
    }
    assert len(report.quantized_layers) == 18


def _source_node(gm: fx.GraphModule, target: str) -> fx.Node:
    node = next(n for n in gm.graph.nodes if n.op == "call_module" and n.target == target)
    return node.args[0]


def test_all_layers_quantizes_after_every_residual_add() -> None:
    model = create_model("resnet20_tiny").eval()
    result = quantize(model, StaticQuant(scope="all_layers", calibration_batches=1), calibration=[X])
    gm = result.model
    assert isinstance(gm, fx.GraphModule) and type(gm).__name__ == "ResNetCifar"
    outputs = {n: m for n, m in gm.named_modules() if isinstance(m, OutputQuant)}
    after_add = [n for n in outputs if _source_node(gm, n).target is operator.add]
    assert len(after_add) == 9  # one residual add per BasicBlock: 3 stages x 3 blocks
    assert sorted(o.source for o in result.report.output_quantizers if o.op == "add") == sorted(
        f"layer{s}.{b}.add" for s in (1, 2, 3) for b in range(3)
    )
    ops = [o.op for o in result.report.output_quantizers]
    assert ops.count("input") == 1 and ops.count("act") == 19 and ops.count("pool") == 1
    # conv outputs are quantized only where no activation follows (the conv2 feeding each add)
    assert ops.count("conv") == 9 and ops.count("linear") == 1
    quant = [m for m in gm.modules() if isinstance(m, QuantConv2d | QuantLinear)]
    assert len(quant) == 20 and all(m.input_fake_quant is None for m in quant)
    assert result.report.layers[0].act_bits == 8 and "OutputQuant" in result.report.layers[0].reason
    assert all(fq.initialized and not fq.observe and fq.enabled for fq in fake_quantizers(gm).values())
    assert "output_quant.add.scale" in gm.state_dict() and "conv1.weight" in gm.state_dict()


@pytest.mark.parametrize("name", list_models(tiny=True))
def test_all_layers_prepares_every_tiny_zoo_model(name: str) -> None:
    model = create_model(name).eval()
    weight, act = QuantSpec(per_channel=True), QuantSpec(symmetric=False)
    layers = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    prepared = prepare(copy.deepcopy(model), layers, weight=weight, activation=act, scope="all_layers")
    assert len(prepared.quantized) == len(layers) and prepared.output_quant
    with torch.no_grad():
        out = prepared.model(X)  # observers on, fake quant on: ranges from this batch
    assert out.shape == (2, 10) and bool(torch.isfinite(out).all())


class _SizeArithmetic(nn.Module):
    """Python numbers computed from sizes must not get quantizers (only float tensors do)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        n = out.size(1) + 1
        return out.flatten(1)[:, : n * 2] + out.mean()


def test_all_layers_quantizes_float_tensors_only() -> None:
    for example in (None, X):  # from the data flow, or exactly by running example inputs
        result = quantize(
            _SizeArithmetic(), StaticQuant(scope="all_layers", calibration_batches=1), calibration=[X],
            example_inputs=example,
        )  # fmt: skip
        ops = sorted(o.op for o in result.report.output_quantizers)
        assert ops == ["add", "conv", "input", "pool"]  # not the size arithmetic


class _Dynamic(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return out.relu() if out.mean() > 0 else out


def test_untraceable_model_in_all_layers_scope_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"'_Dynamic' cannot be traced.*weights_and_activations"):
        quantize(_Dynamic(), StaticQuant(scope="all_layers", calibration_batches=1), calibration=[X])
    # the default scope needs no tracing
    result = quantize(_Dynamic(), StaticQuant(calibration_batches=1), calibration=[X])
    assert isinstance(result.model.conv, QuantConv2d)


def test_quantized_state_dict_loads_into_a_freshly_prepared_model() -> None:
    model = create_model("resnet20_tiny").eval()
    config = StaticQuant(scope="all_layers", calibration_batches=1)
    saved = quantize(model, config, calibration=[X]).model
    fresh = quantize(model, config, calibration=[X * 0.1]).model  # different qparams
    fresh.load_state_dict(saved.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(X), saved(X))
    clone = copy.deepcopy(saved)
    with torch.no_grad():
        torch.testing.assert_close(clone(X), saved(X))
