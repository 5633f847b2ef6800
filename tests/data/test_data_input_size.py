"""Input size end to end: ImageTensors/BatchLoader resizing, DataSource.image_size, checkpoints
recording the size (eval/bench/export reuse it), and --device."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from edgeslim import tasks
from edgeslim.checkpoint import read_checkpoint, recorded_image_size
from edgeslim.data import Augment, BatchLoader, ImageTensors, InputSize
from edgeslim.engine.keys import data_identity
from edgeslim.engine.steps import DataSpec, StartStep
from edgeslim.errors import ConfigError
from edgeslim.train import TrainConfig
from edgeslim.train.device import resolve_device

CUDA = torch.cuda.is_available()


def _data(n: int = 12, size: int = 32) -> ImageTensors:
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8)
    return ImageTensors(images, torch.arange(n) % 3, ["a", "b", "c"], "synthetic")


def test_loader_resizes_batches_and_subsets_keep_the_size() -> None:
    data = _data().with_input_size(InputSize(48))
    assert data.input_shape == (3, 48, 48) and data.image_size == (32, 32)  # stored size unchanged
    assert "-> 48px" in repr(data)
    x, y = next(iter(BatchLoader(data, 5)))
    assert x.shape == (5, 3, 48, 48) and x.dtype == torch.float32 and y.shape == (5,)
    # training (augmenting) draws a random-resized crop, reproducible from (seed, epoch)
    train = BatchLoader(data, 4, shuffle=True, augment=Augment(), seed=3)
    a, _ = next(iter(train))
    train.set_epoch(0)
    b, _ = next(iter(train))
    assert a.shape == (4, 3, 48, 48) and torch.equal(a, b)
    assert data.subset([0, 1]).input_size == InputSize(48)
    assert _data().input_shape == (3, 32, 32)


def test_data_source_image_size(tiny_cifar: Path) -> None:
    source = tasks.DataSource(path=str(tiny_cifar), split="test", limit=20, image_size=40)
    data = source.load()
    assert data.input_size == InputSize(40) and data.input_shape == (3, 40, 40)
    assert tasks.DataSource(path=str(tiny_cifar)).load().input_size is None
    with pytest.raises(ConfigError, match="image_size"):
        tasks.DataSource(path=str(tiny_cifar), image_size=4)


def test_checkpoint_records_the_input_size_and_eval_bench_reuse_it(tiny_cifar: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    data = tasks.DataSource(path=str(tiny_cifar), split="test", limit=40, train_limit=40, image_size=40)
    tasks.train_task(
        tasks.ModelSource(name="resnet20_tiny"),
        data,
        TrainConfig(epochs=1, batch_size=20, lr=0.01),
        out=out,
        validate=False,
        progress=False,
        device="cpu",
    )
    assert read_checkpoint(out)["meta"]["input"]["image_size"] == 40
    assert recorded_image_size(out) == 40
    plain = dataclasses.replace(data, image_size=None)  # no --image-size: the checkpoint's size
    m = tasks.evaluate_task(tasks.ModelSource(checkpoint=out), plain, progress=False, device="cpu")
    assert m.extra["image_size"] == 40
    bench = tasks.bench_task(tasks.ModelSource(checkpoint=out), batch_sizes=(1,), runs=1, warmup=0)
    small = tasks.bench_task(tasks.ModelSource(name="resnet20_tiny"), batch_sizes=(1,), runs=1, warmup=0)
    assert bench.macs is not None and small.macs is not None and bench.macs > small.macs  # 40 px > 32 px
    # pruning keeps the record, so later steps reuse it too
    from edgeslim.pruning import FilterPruning

    pruned = tmp_path / "p.pt"
    tasks.prune_task(
        tasks.ModelSource(checkpoint=out),
        FilterPruning(ratio=0.25),
        out=pruned,
        data_source=plain,
        latency_batch_sizes=(),
        progress=False,
        device="cpu",
    )
    assert recorded_image_size(pruned) == 40


def test_engine_keys_take_image_size_and_pretrained() -> None:
    plain = DataSpec(path=None)
    assert "image_size" not in plain.to_dict()  # stored keys of runs without it stay valid
    sized = dataclasses.replace(plain, image_size=224)
    assert data_identity(sized)["image_size"] == 224 and data_identity(plain) != data_identity(sized)
    assert DataSpec.from_dict(sized.to_dict()) == sized
    assert sized.data_source().image_size == 224
    start = StartStep(model="resnet50.tv_in1k", pretrained=True, num_classes=10)
    assert start.params()["pretrained"] is True
    assert "pretrained" not in StartStep(model="resnet20", init="random").params()
    assert StartStep.from_params("s", start.params()) == dataclasses.replace(start, name="s")
    assert start.source().pretrained
    with pytest.raises(ConfigError, match="pretrained"):
        StartStep(checkpoint=Path("x.pt"), pretrained=True)


def test_device_resolution() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if CUDA else "cpu")
    with pytest.raises(ConfigError, match="device must be one of"):
        resolve_device("tpu")
    if not CUDA:
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.skipif(CUDA, reason="checks the error without a GPU")
def test_cli_device_cuda_without_gpu_is_a_usage_error(tiny_cifar: Path, tmp_path: Path) -> None:
    from edgeslim.cli.app import app

    result = CliRunner().invoke(
        app,
        [
            "train",
            "-m",
            "resnet20_tiny",
            "-d",
            str(tiny_cifar),
            "-e",
            "1",
            "--device",
            "cuda",
            "-o",
            str(tmp_path / "x.pt"),
        ],
    )
    assert result.exit_code == 2 and "no CUDA GPU" in result.output


@pytest.mark.parametrize("command", ["train", "eval", "prune", "quantize", "distill", "export", "bench"])
def test_cli_commands_take_image_size_and_pretrained(command: str) -> None:
    from edgeslim.cli.app import app

    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--image-size" in result.output and "--pretrained" in result.output
    if command not in ("export", "bench"):
        assert "--device" in result.output


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_train_and_evaluate_on_cuda(tiny_cifar: Path, tmp_path: Path) -> None:  # pragma: no cover - GPU only
    data = tasks.DataSource(path=str(tiny_cifar), split="test", limit=40, train_limit=40, image_size=64)
    out = tmp_path / "gpu.pt"
    result = tasks.train_task(
        tasks.ModelSource(name="resnet20_tiny"),
        data,
        TrainConfig(epochs=1, batch_size=20, lr=0.01),
        out=out,
        validate=False,
        progress=False,
        device="cuda",
    )
    assert result.epochs_completed == 1
    m = tasks.evaluate_task(tasks.ModelSource(checkpoint=out), data, progress=False, device="cuda")
    assert m.top1 is not None
