"""torchvision-compatible ImageNet architectures: exact keys/shapes/counts, heads, weights, techniques."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from edgeslim.errors import CheckpointError, ModelError
from edgeslim.models import create_model, list_models, model_info, model_spec
from edgeslim.models.pretrained import load_pretrained_state
from edgeslim.models.torchvision_nets import CLASSIFIERS, TV_MODELS, convert_torchvision_state

# torchvision's parameter counts (its weights tables; googlenet without the auxiliary heads)
PARAMS = {
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "vgg16": 138_357_544,
    "mobilenet_v2": 3_504_872,
    "densenet121": 7_978_856,
    "densenet201": 20_013_928,
    "googlenet": 6_624_904,
    "efficientnet_b0": 5_288_548,
    "alexnet": 61_100_840,
}
# sha256[:16] of "key:shape" lines (sorted) of torchvision 0.29.1's state_dict (1000 classes,
# googlenet(aux_logits=False)), and the number of entries; computed once with torchvision itself.
TORCHVISION_STATE = {
    "resnet18": ("1dcde4b21afa712c", 122),
    "resnet50": ("ce6ad2593ee187ab", 320),
    "vgg16": ("8d869fc271c12104", 32),
    "mobilenet_v2": ("8e46697c9016e576", 314),
    "densenet121": ("ab49849b3ca214f5", 727),
    "densenet201": ("b4693170ccb57ccf", 1207),
    "googlenet": ("104f4367b66a6247", 344),
    "efficientnet_b0": ("f283c10a15eb79f3", 360),
    "alexnet": ("dd9c4dec53aa7bdf", 16),
}
SMALL = ["resnet18.tv_in1k", "mobilenet_v2.tv_in1k"]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _signature(state: dict[str, torch.Tensor]) -> tuple[str, int]:
    rows = [f"{k}:{tuple(v.shape)}" for k, v in sorted(state.items())]
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16], len(rows)


def test_registered_with_imagenet_input_size() -> None:
    assert [f"{a}.tv_in1k" for a in PARAMS] == TV_MODELS or sorted(TV_MODELS) == sorted(
        f"{a}.tv_in1k" for a in PARAMS
    )
    assert set(list_models("*.tv_in1k")) == set(TV_MODELS)
    for name in TV_MODELS:
        info = model_info(name)
        assert info.input_size == (3, 224, 224) and not info.is_tiny and "torchvision" in info.description
    assert model_info("resnet20").input_size == (3, 32, 32)  # CIFAR models unchanged


@pytest.mark.parametrize("arch", list(PARAMS))
def test_state_dict_and_parameter_count_equal_torchvision(arch: str) -> None:
    model = create_model(f"{arch}.tv_in1k", num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[arch]
    assert _signature(model.state_dict()) == TORCHVISION_STATE[arch]


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2", "googlenet", "efficientnet_b0", "densenet121"])
def test_new_head_keeps_backbone(arch: str) -> None:
    name = f"{arch}.tv_in1k"
    full = create_model(name, num_classes=1000).state_dict()
    model = create_model(name, num_classes=10).eval()
    head = {f"{CLASSIFIERS[name]}.weight", f"{CLASSIFIERS[name]}.bias"}
    load_pretrained_state(model, name, full)
    own = model.state_dict()
    assert set(own) == set(full)
    assert all(torch.equal(own[k], full[k]) for k in own if k not in head)
    linear = model.get_submodule(CLASSIFIERS[name])
    assert isinstance(linear, nn.Linear) and linear.out_features == 10
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert model_spec(model) == {"name": name, "kwargs": {**model_spec(model)["kwargs"], "num_classes": 10}}  # type: ignore[index]


def test_same_classes_load_is_strict_and_old_densenet_keys_convert() -> None:
    name = "densenet121.tv_in1k"
    reference = create_model(name, num_classes=1000).state_dict()
    # torchvision's published file uses the pre-0.4 "norm.1" key form and has no BN counters
    old = {
        k.replace("norm1.", "norm.1.").replace("conv2.", "conv.2."): v
        for k, v in reference.items()
        if not k.endswith("num_batches_tracked")
    }
    assert set(convert_torchvision_state(name, old)) == {
        k for k in reference if not k.endswith("num_batches_tracked")
    }
    model = create_model(name, num_classes=1000)
    load_pretrained_state(model, name, old)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in reference.items())
    broken = dict(reference)
    broken.pop("features.conv0.weight")
    with pytest.raises(CheckpointError, match="missing"):
        load_pretrained_state(create_model(name, num_classes=1000), name, broken)


def test_googlenet_aux_heads_dropped_and_transform_input() -> None:
    name = "googlenet.tv_in1k"
    state = create_model(name, num_classes=1000).state_dict()
    with_aux = {
        **state,
        "aux1.conv.conv.weight": torch.zeros(128, 512, 1, 1),
        "aux2.fc2.bias": torch.zeros(1000),
    }
    model = create_model(name, num_classes=1000, transform_input=True).eval()
    load_pretrained_state(model, name, with_aux)
    x = torch.randn(1, 3, 32, 32)
    plain = create_model(name, num_classes=1000).eval()
    plain.load_state_dict(state)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():  # transform_input: ImageNet-normalized x in, (raw - 0.5) / 0.5 seen inside
        torch.testing.assert_close(model(x), plain((x * std + mean - 0.5) / 0.5), atol=1e-4, rtol=1e-4)


def test_pretrained_needs_a_source_and_no_weights_together(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no published weights"):
        create_model("resnet18", pretrained=True)
    with pytest.raises(ModelError, match="not both"):
        create_model("resnet18.tv_in1k", pretrained=True, weights=tmp_path / "w.pth")


def test_pretrained_fetches_from_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pretrained=True finds a verified copy under $EDGESLIM_DATA/pretrained (no network)."""
    from edgeslim import fetch

    weights = create_model("mobilenet_v2.tv_in1k", num_classes=1000).state_dict()
    (tmp_path / "pretrained").mkdir()
    path = tmp_path / "pretrained" / "mobilenet_v2-test.pth"
    torch.save(weights, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    src = fetch.SOURCES["mobilenet_v2.tv_in1k"]
    monkeypatch.setitem(
        fetch.SOURCES,
        src.name,
        fetch.Source(
            src.name, "http://127.0.0.1:9/mobilenet_v2-test.pth", "weights", "test", sha256=digest[:10]
        ),
    )
    monkeypatch.setenv("EDGESLIM_DATA", str(tmp_path))
    monkeypatch.setenv("EDGESLIM_CACHE", str(tmp_path / "cache"))
    model = create_model("mobilenet_v2.tv_in1k", num_classes=10, pretrained=True)
    assert torch.equal(model.state_dict()["features.0.0.weight"], weights["features.0.0.weight"])
    assert model_spec(model)["kwargs"]["num_classes"] == 10  # type: ignore[index]


@pytest.mark.parametrize("name", SMALL)
def test_filter_pruning(name: str) -> None:
    from edgeslim.pruning.configs import FilterPruning
    from edgeslim.pruning.structured import prune_filters
    from edgeslim.select import LayerSelection, select_layers

    model = create_model(name, num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    before = sum(p.numel() for p in model.parameters())
    layers = select_layers(model, LayerSelection(types=("conv",)))
    prune_filters(model, FilterPruning(ratio=0.5, criterion="l1"), x, layers)
    after = sum(p.numel() for p in model.parameters())
    assert after < 0.6 * before
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.slow  # about 12 s each on one thread (FX prepare + ONNX export of an ImageNet net)
@pytest.mark.parametrize("name", SMALL)
def test_static_int8_and_onnx_export(name: str, tmp_path: Path) -> None:
    from edgeslim.export import check_parity, export_onnx, ort_session
    from edgeslim.quantization import StaticQuant, quantize

    model = create_model(name, num_classes=10).eval()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    result = quantize(model, StaticQuant(calibration_batches=2), calibration=[x[:2], x[2:]])
    with torch.no_grad():
        assert result.model(x).shape == (4, 10)
    export = export_onnx(model, tmp_path / "m.onnx", input_size=(3, 32, 32))
    parity = check_parity(model, ort_session(export.path, threads=1), x, tolerance=1e-3)
    assert parity.ok, parity


@pytest.mark.slow
@pytest.mark.parametrize("name", ["googlenet.tv_in1k", "efficientnet_b0.tv_in1k", "densenet121.tv_in1k"])
def test_filter_pruning_branchy_nets(name: str) -> None:
    from edgeslim.pruning.configs import FilterPruning
    from edgeslim.pruning.structured import prune_filters
    from edgeslim.select import LayerSelection, select_layers

    model = create_model(name, num_classes=10).eval()
    layers = select_layers(model, LayerSelection(types=("conv",)))
    prune_filters(model, FilterPruning(ratio=0.3, criterion="l1"), torch.randn(1, 3, 32, 32), layers)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
