"""Model registry and factory: every model builds and trains one step, exact sizes, widths, errors."""

from __future__ import annotations

import dataclasses
import math
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from edgeslim.errors import ModelError
from edgeslim.models import INPUT_SIZE, PadShortcut, create_model, list_models, model_info, model_spec

# the torchvision ImageNet architectures (*.tv_in1k) have their own tests: test_models_torchvision.py
ALL_MODELS = [n for n in list_models() if not n.endswith(".tv_in1k")]
TINY_MODELS = list_models(tiny=True)

# Exact trainable-parameter counts for num_classes=10. Sources of the cross-checks:
#   resnet20..56: the tensors of the pretrained akamaster files (0.27M/0.46M/0.66M/0.85M, the paper's table 6)
#   resnet18/50, vgg11_bn/16_bn, densenet121, googlenet: kuangliu/pytorch-cifar (same layouts, same counts)
#   mobilenet_v2, efficientnet_b0: torchvision's models with a 10-class head (2.24M / 4.02M)
#   alexnet: bearpaw/pytorch-classification CIFAR AlexNet (2.47M)
#   airbench: airbench94 widths 64/256/256 (~1.97M); vgg11/16 = the _bn counts minus BN affine params
#   densenet201, the _narrow DenseNets, small_cnn, the tiny variants: pinned from this implementation
EXPECTED_PARAMS = {
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet_cifar": 269_722,  # default blocks (3, 3, 3): ResNet-20
    "resnet18": 11_173_962,
    "resnet50": 23_520_842,
    "vgg11": 9_225_610,
    "vgg16": 14_719_818,
    "vgg11_bn": 9_231_114,
    "vgg16_bn": 14_728_266,
    "mobilenet_v2": 2_236_682,
    "mobilenet_v2_blocks": 2_236_682,  # default blocks: mobilenet_v2's
    "densenet121": 6_956_298,
    "densenet201": 18_104_330,
    "densenet121_narrow": 119_146,
    "densenet201_narrow": 310_218,
    "googlenet": 6_166_250,
    "efficientnet_b0": 4_020_358,
    "alexnet": 2_472_266,
    "small_cnn": 2_122_186,
    "airbench": 1_972_792,
    "resnet20_tiny": 17_326,
    "resnet18_tiny": 19_902,
    "resnet50_tiny": 34_126,
    "vgg11_tiny": 36_610,
    "vgg11_bn_tiny": 36_954,
    "mobilenet_v2_tiny": 29_722,
    "densenet121_tiny": 7_202,
    "googlenet_tiny": 26_461,
    "efficientnet_b0_tiny": 43_882,
    "alexnet_tiny": 11_246,
    "small_cnn_tiny": 33_890,
    "airbench_tiny": 33_176,
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_every_model_with_a_pinned_size() -> None:
    assert sorted(EXPECTED_PARAMS) == ALL_MODELS


# The heaviest nets take 0.3-0.6 s here when the machine is idle but >5 s on a loaded 2-core box;
# their tiny variants run the same blocks in the fast suite.
HEAVY = {"densenet121", "densenet201", "googlenet", "resnet50", "efficientnet_b0"}


@pytest.mark.parametrize("num_classes", [10, 7])
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in ALL_MODELS]
)
def test_forward_and_backward(name: str, num_classes: int) -> None:
    model = create_model(name, num_classes=num_classes)
    x = torch.randn(2, *INPUT_SIZE)
    out = model(x)
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f"parameters without gradient: {unused[:5]}"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_exact_parameter_count(name: str) -> None:
    assert n_params(create_model(name)) == EXPECTED_PARAMS[name]


def test_classifier_scales_with_num_classes() -> None:
    # resnet20's head is Linear(64, classes): 65 parameters per class
    assert n_params(create_model("resnet20", num_classes=100)) == 269_722 + 90 * 65


def test_tiny_variants_are_tiny_and_cover_every_family() -> None:
    families = {model_info(n).family for n in ALL_MODELS}
    tiny_families = {model_info(n).family for n in TINY_MODELS}
    assert families == tiny_families
    for name in ALL_MODELS:
        info = model_info(name)
        assert info.is_tiny == name.endswith("_tiny")
        if info.is_tiny:
            assert 1_000 <= EXPECTED_PARAMS[name] <= 50_000, name
            assert name.removesuffix("_tiny") in ALL_MODELS


def test_model_info_fields() -> None:
    info = model_info("resnet20")
    assert (info.name, info.family, info.input_size, info.is_tiny) == (
        "resnet20",
        "resnet_cifar",
        (3, 32, 32),
        False,
    )
    assert info.default_kwargs == {"width": 1.0}
    assert "option-A" in info.description
    assert model_info("efficientnet_b0").default_kwargs == {"width": 1.0, "drop_rate": 0.2}
    assert model_info("resnet20_tiny").default_kwargs == {"width": 0.25}
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.name = "x"  # type: ignore[misc]
    hash(info)


def test_list_models_filters() -> None:
    assert list_models("resnet*") == [
        "resnet18",
        "resnet18.tv_in1k",
        "resnet18_tiny",
        "resnet20",
        "resnet20_tiny",
        "resnet32",
        "resnet44",
        "resnet50",
        "resnet50.tv_in1k",
        "resnet50_tiny",
        "resnet56",
        "resnet_cifar",
    ]
    assert list_models("vgg*", tiny=True) == ["vgg11_bn_tiny", "vgg11_tiny"]
    assert "vgg16" in list_models(tiny=False)
    assert list_models("nothing*") == []


# -- width ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "module", "attr", "full", "half"),
    [
        ("resnet20", "conv1", "out_channels", 16, 8),
        ("resnet20", "linear", "in_features", 64, 32),
        ("resnet18", "layer4.1.conv2", "out_channels", 512, 256),
        ("resnet50", "linear", "in_features", 2048, 1024),
        ("vgg11", "features.0", "out_channels", 64, 32),
        ("vgg16_bn", "classifier", "in_features", 512, 256),
        ("mobilenet_v2", "features.0.0", "out_channels", 32, 16),
        ("mobilenet_v2", "classifier", "in_features", 1280, 640),
        ("efficientnet_b0", "features.0.0", "out_channels", 32, 16),
        ("efficientnet_b0", "classifier", "in_features", 1280, 640),
        ("densenet121", "dense1.0.conv2", "out_channels", 32, 16),  # the growth rate
        ("densenet121", "conv1", "out_channels", 64, 32),
        ("googlenet", "pre_layers.0", "out_channels", 192, 96),
        ("googlenet", "linear", "in_features", 1024, 512),
        ("alexnet", "classifier", "in_features", 256, 128),
        ("small_cnn", "conv1", "out_channels", 32, 16),
        ("small_cnn", "fc1", "out_features", 512, 256),
        ("airbench", "group1.conv1", "out_channels", 64, 32),
        ("airbench", "head", "in_features", 256, 128),
        ("airbench", "whiten", "out_channels", 24, 24),  # fixed by the 2x2 patch size
    ],
)
def test_width_scales_channels(name: str, module: str, attr: str, full: int, half: int) -> None:
    assert getattr(create_model(name).get_submodule(module), attr) == full
    assert getattr(create_model(name, width=0.5).get_submodule(module), attr) == half


# the big members of each family (resnet18/50, vgg16, densenet201) share the width code of smaller ones
# (the _narrow DenseNets default to width 1/8 already: half of full width is wider than that)
HALF_WIDTH = [
    n
    for n in ALL_MODELS
    if not model_info(n).is_tiny and EXPECTED_PARAMS[n] < 10_000_000 and not n.endswith("_narrow")
]


@pytest.mark.parametrize("name", HALF_WIDTH)
def test_half_width_is_smaller_and_runs(name: str) -> None:
    model = create_model(name, width=0.5)
    assert n_params(model) < EXPECTED_PARAMS[name]
    assert model(torch.randn(2, *INPUT_SIZE)).shape == (2, 10)


def test_mobilenet_channels_are_multiples_of_8() -> None:
    model = create_model("mobilenet_v2", width=0.35)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.out_channels % 8 == 0 for c in convs)


def test_option_a_shortcut_with_odd_widths() -> None:
    model = create_model("resnet20", width=0.3)  # 5/10/19 channels: uneven zero padding
    shortcuts = [m for m in model.modules() if isinstance(m, PadShortcut)]
    assert [(s.in_planes, s.planes, s.pad_front, s.pad_back) for s in shortcuts] == [
        (5, 10, 2, 3),
        (10, 19, 4, 5),
    ]
    assert model(torch.randn(2, *INPUT_SIZE)).shape == (2, 10)


def test_resnet_cifar_uses_named_pad_shortcuts() -> None:
    model = create_model("resnet56")
    names = [n for n, m in model.named_modules() if isinstance(m, PadShortcut)]
    assert names == ["layer2.0.shortcut", "layer3.0.shortcut"]
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in model.modules())


def test_activations_are_modules() -> None:
    # quantization/pruning tools see activations only if they are modules, and none may be in-place
    for name in TINY_MODELS:
        acts = [
            m for m in create_model(name).modules() if isinstance(m, nn.ReLU | nn.ReLU6 | nn.SiLU | nn.GELU)
        ]
        assert acts, name
        assert not any(getattr(m, "inplace", False) for m in acts), name


def test_airbench_whitening_init() -> None:
    model = create_model("airbench_tiny")
    images = torch.randn(64, *INPUT_SIZE)
    model.init_whitening(images)  # type: ignore[operator]
    w = model.get_submodule("whiten").weight
    assert torch.equal(w[:12], -w[12:])
    # the filters whiten the patches: projections onto them have unit variance
    patches = torch.nn.functional.unfold(images, 2).transpose(1, 2).reshape(-1, 12)
    proj = patches @ w[:12].reshape(12, 12).T
    var = proj.square().mean(0)
    assert torch.allclose(var, torch.ones(12), atol=0.01)
    with pytest.raises(ModelError, match="init_whitening"):
        model.init_whitening(torch.randn(4, 1, 32, 32))  # type: ignore[operator]


# -- spec ---------------------------------------------------------------------------------------


def test_model_spec_records_how_to_rebuild() -> None:
    model = create_model("resnet20", num_classes=7, width=0.5)
    spec = model_spec(model)
    assert spec == {"name": "resnet20", "kwargs": {"num_classes": 7, "width": 0.5}}
    assert model_spec(create_model("efficientnet_b0_tiny")) == {
        "name": "efficientnet_b0_tiny",
        "kwargs": {"num_classes": 10, "width": 0.125, "drop_rate": 0.2},
    }
    spec["kwargs"]["width"] = 9.0  # a copy: the model's record is unchanged
    fresh = model_spec(model)
    assert fresh is not None and fresh["kwargs"]["width"] == 0.5
    assert model_spec(nn.Linear(2, 2)) is None
    assert n_params(create_model(fresh["name"], **fresh["kwargs"])) == n_params(model)


# -- errors -------------------------------------------------------------------------------------


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(ModelError, match=r"unknown model 'resnet21'.*did you mean.*'resnet20'"):
        create_model("resnet21")
    with pytest.raises(ModelError, match=r"did you mean.*'mobilenet_v2'"):
        model_info("mobilenetv2")
    with pytest.raises(ModelError, match="unknown model"):
        create_model("zzzz")


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10", None])
def test_invalid_num_classes(bad: object) -> None:
    with pytest.raises(ModelError, match="num_classes"):
        create_model("resnet20_tiny", num_classes=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, "0.5", True])
@pytest.mark.parametrize(
    "name", ["resnet20", "vgg11_tiny", "mobilenet_v2_tiny", "densenet121_tiny", "small_cnn"]
)
def test_invalid_width(name: str, bad: object) -> None:
    with pytest.raises(ModelError, match="width"):
        create_model(name, width=bad)


def test_unknown_kwarg_is_named() -> None:
    with pytest.raises(ModelError, match=r"unknown argument\(s\) 'widht'.*accepts: num_classes, width"):
        create_model("resnet20", widht=0.5)
    with pytest.raises(ModelError, match="'drop_rate'"):
        create_model("resnet18_tiny", drop_rate=0.1)


def test_invalid_drop_rate() -> None:
    with pytest.raises(ModelError, match="drop_rate"):
        create_model("efficientnet_b0_tiny", drop_rate=1.0)
    with pytest.raises(ModelError, match="drop_rate"):
        create_model("small_cnn_tiny", drop_rate=-0.1)


def test_invalid_name_type() -> None:
    with pytest.raises(ModelError, match="model name"):
        create_model("")
    with pytest.raises(ModelError, match="model name"):
        create_model(None)  # type: ignore[arg-type]


# -- user models (package.module:factory) --------------------------------------------------------

USER_MODULE = """
import torch
from torch import nn


def build(num_classes=10, hidden=4):
    '''A two-layer user net.'''
    layers = [nn.Flatten(), nn.Linear(3 * 32 * 32, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)]
    return nn.Sequential(*layers)


def not_a_model(num_classes=10):
    return "nope"


def needs_x(num_classes, x):
    return nn.Linear(1, num_classes)


NOT_CALLABLE = 3
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    pkg = tmp_path / "edgeslim_test_userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(textwrap.dedent(USER_MODULE))
    (pkg / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "edgeslim_test_userpkg"
    for mod in [m for m in sys.modules if m.startswith("edgeslim_test_userpkg")]:
        del sys.modules[mod]


def test_user_model_builds(user_module: str) -> None:
    name = f"{user_module}.nets:build"
    model = create_model(name, num_classes=3, hidden=5)
    assert model(torch.randn(2, *INPUT_SIZE)).shape == (2, 3)
    assert model_spec(model) == {"name": name, "kwargs": {"num_classes": 3, "hidden": 5}}
    info = model_info(name)
    assert (info.family, info.description, info.default_kwargs) == (
        "user",
        "A two-layer user net.",
        {"hidden": 4},
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("edgeslim_no_such_module_xyz:build", "cannot import module 'edgeslim_no_such_module_xyz'"),
        ("{pkg}.broken:build", "cannot import.*boom at import"),
        ("{pkg}.nets:missing", "has no attribute 'missing'"),
        ("{pkg}.nets:NOT_CALLABLE", "not callable"),
        ("{pkg}.nets:not_a_model", "returned str, not an nn.Module"),
        ("{pkg}.nets:needs_x", "the factory failed.*TypeError"),
        (":build", "must look like 'package.module:factory'"),
        ("{pkg}.nets:", "must look like"),
    ],
)
def test_user_model_failures(user_module: str, target: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        create_model(target.format(pkg=user_module))


def test_user_model_bad_kwarg(user_module: str) -> None:
    with pytest.raises(ModelError, match="unexpected keyword argument 'depth'"):
        create_model(f"{user_module}.nets:build", depth=3)


def test_resnet_cifar_with_explicit_blocks_is_the_depth_it_names() -> None:
    """Blocks per stage replace depth: (9, 9, 9) is ResNet-56 key for key (NAS exports these)."""
    r56 = create_model("resnet56")
    custom = create_model("resnet_cifar", blocks=[9, 9, 9])
    assert list(custom.state_dict()) == list(r56.state_dict())
    mixed = create_model("resnet_cifar", blocks=(1, 2, 3))
    assert [len(getattr(mixed, f"layer{s}")) for s in (1, 2, 3)] == [1, 2, 3]
    with pytest.raises(ModelError, match="blocks must be an integer >= 1, got 0"):
        create_model("resnet_cifar", blocks=[0, 1, 1])
    with pytest.raises(ModelError, match="blocks must be three blocks-per-stage counts"):
        create_model("resnet_cifar", blocks=[1, 1])
