"""Feature capture by layer name: strict names, pre-ReLU resolution, shared modules, automatic pairs
(the default last-ReLU rule and the DenseNet rule, looked up by model family)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeslim.distillation import (
    LAST_RELU,
    PAIRING_RULES,
    FeatureCapture,
    PairingRule,
    auto_layer_pairs,
    capture_point,
    pairing_rule,
)
from edgeslim.errors import ConfigError
from edgeslim.models import create_model
from edgeslim.models.densenet import DenseNet


def _resnet(name: str = "resnet20_tiny") -> nn.Module:
    torch.manual_seed(0)
    return create_model(name).eval()


def test_a_name_that_matches_nothing_is_an_error_with_suggestions() -> None:
    model = _resnet()
    with pytest.raises(ConfigError, match=r"'layer1.2.relu3' matches no module of the student; did you mean"):
        FeatureCapture(model, ["layer1.2.relu2", "layer1.2.relu3"], role="student")
    with pytest.raises(ConfigError, match="matches no module"):
        FeatureCapture(model, [""])
    with pytest.raises(ConfigError, match="more than once"):
        FeatureCapture(model, ["layer1", "layer1"])
    with pytest.raises(ConfigError, match="no layers"):
        FeatureCapture(model, [])
    # nothing stays hooked after a failed construction
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_output_capture_records_each_named_layer_once_per_pass() -> None:
    model = _resnet()
    x = torch.randn(2, 3, 32, 32)
    with FeatureCapture(model, ["layer1", "layer3.2.bn2", "linear"]) as cap:
        logits = model(x)
        assert cap["layer1"].shape == (2, 4, 32, 32)
        assert cap["layer3.2.bn2"].shape == (2, 16, 8, 8)
        assert torch.equal(cap["linear"], logits)
        assert float(cap["layer1"].detach().min()) >= 0.0  # post-ReLU output
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_pre_relu_capture_takes_the_input_of_the_blocks_last_relu() -> None:
    model = _resnet()
    x = torch.randn(2, 3, 32, 32)
    point = capture_point(model, "layer2", "pre_relu")
    assert (point.hooked, point.kind) == ("layer2.2.relu2", "rectifier_input")
    assert capture_point(model, "layer2.2.bn2", "pre_relu").kind == "output"  # no ReLU inside: taken as is
    with FeatureCapture(model, ["layer2", "layer2.2.relu2", "layer2.2"], mode="pre_relu") as cap:
        out = model.layer2(model.layer1(model.relu(model.bn1(model.conv1(x)))))
        model(x)
        pre = cap["layer2"]
        assert float(pre.detach().min()) < 0.0  # negatives survive: it is before the ReLU
        assert torch.equal(torch.relu(pre), out)
        assert torch.equal(cap["layer2.2.relu2"], pre)
        assert torch.equal(cap["layer2.2"], pre)


def test_pre_relu_capture_checks_that_the_layer_ends_with_that_relu() -> None:
    model = nn.Sequential()
    model.add_module("block", nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 1)))
    with (
        FeatureCapture(model, ["block"], mode="pre_relu"),
        pytest.raises(ConfigError, match=r"does not end with its last ReLU 'block\.1'"),
    ):
        model(torch.randn(1, 3, 6, 6))


def test_a_module_run_twice_per_pass_is_an_error() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
            self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
            self.act = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.conv2(self.act(self.conv1(x))))

    model = Shared()
    with FeatureCapture(model, ["act"]), pytest.raises(ConfigError, match="ran twice in one forward pass"):
        model(torch.randn(1, 3, 6, 6))
    with FeatureCapture(model, ["conv2"]) as cap:
        with pytest.raises(ConfigError, match="did not run in the latest forward pass"):
            cap["conv2"]  # no pass yet
        model(torch.randn(1, 3, 6, 6))
        assert cap["conv2"].shape == (1, 4, 6, 6)


def test_inplace_relu_input_is_cloned_before_it_is_overwritten() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True))
    x = torch.randn(2, 3, 6, 6)
    expected = model[0](x)
    with FeatureCapture(model, ["1"], mode="pre_relu") as cap:
        model(x)
        assert torch.equal(cap["1"], expected)
        assert float(cap["1"].detach().min()) < 0.0


def test_automatic_pairs_match_the_last_relu_of_each_resolution() -> None:
    student = _resnet("resnet20_tiny")
    torch.manual_seed(0)
    teacher = create_model("resnet32", width=0.25)
    pairs = auto_layer_pairs(student, teacher, torch.zeros(2, 3, 32, 32))
    assert pairs == [
        ("layer1.2.relu2", "layer1.4.relu2"),
        ("layer2.2.relu2", "layer2.4.relu2"),
        ("layer3.2.relu2", "layer3.4.relu2"),
    ]
    assert teacher.training and not student.training  # modes restored


def test_automatic_pairs_need_relus_at_a_common_resolution() -> None:
    no_relu = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(10))
    with pytest.raises(ConfigError, match="name the pairs explicitly"):
        auto_layer_pairs(no_relu, _resnet(), torch.zeros(2, 3, 32, 32))


DENSE_CIFAR = [(f"dense{i}.0.bn1", f"dense{i}.0.bn1") for i in range(1, 5)]


def test_densenets_pair_the_first_batchnorm_of_each_dense_block() -> None:
    torch.manual_seed(0)
    student = create_model("densenet121_tiny")
    teacher = create_model("densenet201", width=0.125)  # the study's teacher, thin
    assert pairing_rule(student) is PAIRING_RULES["densenet"]
    assert auto_layer_pairs(student, teacher, torch.zeros(2, 3, 32, 32)) == DENSE_CIFAR
    # the torchvision (ImageNet) layout: its own names, the same place in each block
    tv_student, tv_teacher = create_model("densenet121.tv_in1k"), create_model("densenet201.tv_in1k")
    name = "features.denseblock{}.denselayer1.norm1"
    assert auto_layer_pairs(tv_student, tv_teacher, torch.zeros(1, 3, 64, 64)) == [
        (name.format(i), name.format(i)) for i in range(1, 5)
    ]


def test_the_dense_block_entry_is_the_pre_activation_ab_transfers() -> None:
    """AB's pre-ReLU capture of ``dense2.0.bn1`` is the BatchNorm's output, which is exactly the
    input of the layer's first ReLU (the response whose sign AB transfers)."""
    model = create_model("densenet121_tiny").eval()
    point = capture_point(model, "dense2.0.bn1", "pre_relu")
    assert (point.hooked, point.kind) == ("dense2.0.bn1", "output")
    with FeatureCapture(model, ["dense2.0.bn1", "dense2.0.relu1"], mode="pre_relu") as cap:
        model(torch.randn(2, 3, 32, 32))
        assert cap["dense2.0.bn1"].shape == (2, 8, 16, 16)  # trans1 halves 8 + 2 * 4 channels
        assert torch.equal(cap["dense2.0.bn1"], cap["dense2.0.relu1"])
        assert float(cap["dense2.0.bn1"].detach().min()) < 0.0


def test_the_dense_rule_needs_two_densenets_built_by_name() -> None:
    densenet = create_model("densenet121_tiny")
    # a ResNet partner: both models use the default rule (the last ReLU at each resolution)
    pairs = auto_layer_pairs(_resnet(), densenet, torch.zeros(2, 3, 32, 32))
    assert pairs == [
        ("layer1.2.relu2", "trans1.relu"),
        ("layer2.2.relu2", "trans2.relu"),
        ("layer3.2.relu2", "trans3.relu"),
    ]
    # built without create_model: no family recorded, so the default rule
    assert pairing_rule(DenseNet((2, 2, 2, 2), width=0.125)) is LAST_RELU


def test_a_family_rule_is_one_table_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    stem = PairingRule("the stem", lambda model, inputs: {(32, 32): "conv1"})
    monkeypatch.setitem(PAIRING_RULES, "resnet_cifar", stem)
    assert auto_layer_pairs(_resnet(), _resnet("resnet32"), torch.zeros(2, 3, 32, 32)) == [("conv1", "conv1")]
    nothing = PairingRule("the stem", lambda model, inputs: {})
    monkeypatch.setitem(PAIRING_RULES, "resnet_cifar", nothing)
    with pytest.raises(ConfigError, match=r"rule: the stem; no such layer .* name the pairs explicitly"):
        auto_layer_pairs(_resnet(), _resnet("resnet32"), torch.zeros(2, 3, 32, 32))
