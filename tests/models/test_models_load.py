"""Weight loading: pretrained CIFAR ResNets, edgeslim checkpoint round trips, and clear failures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from edgeslim.checkpoint import read_state_dict, save_checkpoint
from edgeslim.errors import CheckpointError
from edgeslim.models import (
    INPUT_SIZE,
    create_model,
    list_models,
    load_model_from_checkpoint,
    load_weights,
    model_spec,
)

TINY_MODELS = list_models(tiny=True)


def pretrained(root: Path, name: str) -> Path:
    files = sorted((root / "pretrained").glob(f"{name}-*.th"))
    if not files:
        pytest.skip(f"no pretrained {name} in {root}")
    return files[0]


def reference_resnet_cifar(state: dict[str, Tensor], depth: int, x: Tensor) -> Tensor:
    """The option-A CIFAR ResNet written out functionally from the data README, to check the module."""

    def bn(t: Tensor, prefix: str) -> Tensor:
        return F.batch_norm(
            t,
            state[f"{prefix}.running_mean"],
            state[f"{prefix}.running_var"],
            state[f"{prefix}.weight"],
            state[f"{prefix}.bias"],
            training=False,
            eps=1e-5,
        )

    out = F.relu(bn(F.conv2d(x, state["conv1.weight"], padding=1), "bn1"))
    for stage in (1, 2, 3):
        for i in range((depth - 2) // 6):
            p = f"layer{stage}.{i}"
            stride = 2 if stage > 1 and i == 0 else 1
            y = F.relu(bn(F.conv2d(out, state[f"{p}.conv1.weight"], stride=stride, padding=1), f"{p}.bn1"))
            y = bn(F.conv2d(y, state[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
            if stride == 2:
                planes = y.shape[1]
                out = F.pad(out[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))
            out = F.relu(y + out)
    return F.linear(out.mean(dim=(2, 3)), state["linear.weight"], state["linear.bias"])


@pytest.mark.slow
@pytest.mark.parametrize(("name", "depth"), [("resnet20", 20), ("resnet56", 56)])
def test_pretrained_resnet_loads_strictly_and_round_trips(
    shared_data: Path, tmp_path: Path, name: str, depth: int
) -> None:
    path = pretrained(shared_data, name)
    state = read_state_dict(path)  # module. prefix stripped; the files have no num_batches_tracked
    x = torch.randn(4, *INPUT_SIZE)
    with torch.no_grad():
        expected = reference_resnet_cifar(state, depth, x)
        model = create_model(name, weights=path).eval()
        logits = model(x)
        torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)

        ckpt = save_checkpoint(
            tmp_path / "model.pt",
            model,
            model_name=name,
            model_kwargs={"num_classes": 10},
            meta={"source": "test"},
        )
        rebuilt, meta = load_model_from_checkpoint(ckpt)
        assert meta == {"source": "test"}
        assert not rebuilt.training
        assert torch.equal(rebuilt(x), logits)
        assert model_spec(rebuilt) == {"name": name, "kwargs": {"num_classes": 10, "width": 1.0}}


@pytest.mark.slow
def test_pretrained_into_wrong_depth_lists_keys(shared_data: Path) -> None:
    with pytest.raises(CheckpointError, match="unexpected keys") as info:
        create_model("resnet20", weights=pretrained(shared_data, "resnet32"))
    assert "num_classes" not in str(info.value)


@pytest.mark.slow
def test_pretrained_into_other_num_classes(shared_data: Path) -> None:
    with pytest.raises(CheckpointError, match=r"num_classes=10 but the model has num_classes=100"):
        create_model("resnet56", num_classes=100, weights=pretrained(shared_data, "resnet56"))


@pytest.mark.parametrize("name", TINY_MODELS)
def test_checkpoint_round_trip(tmp_path: Path, name: str) -> None:
    model = create_model(name, num_classes=7)
    model.train()
    model(torch.randn(4, *INPUT_SIZE))  # move BN running stats away from their init
    model.eval()
    spec = model_spec(model)
    assert spec is not None
    path = save_checkpoint(tmp_path / "ckpt.pt", model, model_name=spec["name"], model_kwargs=spec["kwargs"])
    rebuilt, meta = load_model_from_checkpoint(path)
    assert meta == {}
    x = torch.randn(2, *INPUT_SIZE)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


@pytest.mark.parametrize("name", TINY_MODELS)
def test_wrong_num_classes_names_num_classes(tmp_path: Path, name: str) -> None:
    # every family's classifier (linear, fc2, classifier, head) must give the num_classes hint
    path = tmp_path / "w.pt"
    torch.save(create_model(name, num_classes=7).state_dict(), path)
    with pytest.raises(CheckpointError, match="num_classes=7 but the model has num_classes=10"):
        load_weights(create_model(name, num_classes=10), path)


def test_load_weights_accepts_common_layouts(tmp_path: Path) -> None:
    src = create_model("resnet20_tiny")
    state = src.state_dict()
    x = torch.randn(2, *INPUT_SIZE)
    layouts = {
        "bare": state,
        "nested": {"state_dict": state, "epoch": 3},
        "model_key": {"model": state},
        "dataparallel": {f"module.{k}": v for k, v in state.items()},
        "no_bn_counters": {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
    }
    src.eval()
    for label, obj in layouts.items():
        path = tmp_path / f"{label}.pt"
        torch.save(obj, path)
        dst = load_weights(create_model("resnet20_tiny"), path).eval()
        with torch.no_grad():
            assert torch.equal(dst(x), src(x)), label


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        create_model("resnet20_tiny", weights=tmp_path / "nope.pt")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage"])
def test_corrupt_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_weights(create_model("resnet20_tiny"), path)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model_from_checkpoint(path)


def test_truncated_checkpoint(tmp_path: Path) -> None:
    model = create_model("resnet20_tiny")
    path = save_checkpoint(tmp_path / "ckpt.pt", model, model_name="resnet20_tiny")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model_from_checkpoint(path)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_weights(model, path)


def test_plain_weights_are_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save(create_model("resnet20_tiny").state_dict(), path)
    with pytest.raises(CheckpointError, match="not an edgeslim checkpoint"):
        load_model_from_checkpoint(path)


def test_checkpoint_with_unknown_model(tmp_path: Path) -> None:
    model = create_model("resnet20_tiny")
    path = save_checkpoint(tmp_path / "ckpt.pt", model, model_name="resnet21_tiny")
    with pytest.raises(CheckpointError, match=r"cannot rebuild its model 'resnet21_tiny'.*did you mean"):
        load_model_from_checkpoint(path)
    path = save_checkpoint(tmp_path / "ckpt.pt", model, model_name="resnet20_tiny", model_kwargs={"widht": 1})
    with pytest.raises(CheckpointError, match="'widht'"):
        load_model_from_checkpoint(path)


def test_checkpoint_with_bad_spec(tmp_path: Path) -> None:
    model = create_model("resnet20_tiny")
    path = save_checkpoint(tmp_path / "ckpt.pt", model, model_name="resnet20_tiny")
    obj = torch.load(path, weights_only=True)
    obj["model"] = {"kwargs": {}}
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="no valid model spec"):
        load_model_from_checkpoint(path)


def test_checkpoint_that_does_not_fit_its_spec(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "ckpt.pt", create_model("resnet20_tiny"), model_name="vgg11_tiny")
    with pytest.raises(CheckpointError, match="missing keys"):
        load_model_from_checkpoint(path)
