"""Options shared by several commands, so every command spells them the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast

import typer

from edgeslim import tasks
from edgeslim.cli.console import JsonOpt as JsonOpt  # re-exported beside the other shared options
from edgeslim.errors import ConfigError
from edgeslim.yaml_schema import MAX_CLASSES, MAX_IMAGE_SIZE, MAX_IMAGES, MAX_THREADS, max_workers

ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Zoo model name (see `edgeslim models`) or package.module:factory."),
]
WeightsOpt = Annotated[
    Path | None,
    typer.Option("--weights", "-w", help="Weights file for --model (state_dict, any common layout)."),
]
PretrainedOpt = Annotated[
    bool,
    typer.Option(
        "--pretrained",
        help="Start from the model's published weights (e.g. resnet50.tv_in1k: torchvision's ImageNet "
        "weights), fetched and verified (`edgeslim fetch`); a new classifier for --num-classes.",
    ),
]
CheckpointOpt = Annotated[
    Path | None,
    typer.Option("--checkpoint", "-c", help="An edgeslim checkpoint (instead of --model/--weights)."),
]
NumClassesOpt = Annotated[
    int | None,
    typer.Option(
        "--num-classes",
        min=1,
        max=MAX_CLASSES,
        help="Classes of the model (default: those of the data, else 10).",
    ),
]
DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        "-d",
        help="CIFAR-10 pickle folder or image-folder tree (default: $EDGESLIM_DATA; "
        "relative paths are also looked up there).",
    ),
]
SplitOpt = Annotated[str, typer.Option("--split", help="train | val | test")]
LimitOpt = Annotated[
    int | None,
    typer.Option("--limit", min=1, max=MAX_IMAGES, help="Use at most N images (stratified per class)."),
]
ValFractionOpt = Annotated[
    float,
    typer.Option(
        "--val-fraction",
        min=0.0,
        max=0.9,
        help="Held-out share of train used as 'val' when the data has no val folder.",
    ),
]
SeedOpt = Annotated[
    int, typer.Option("--seed", help="Seed for splits, subsets, shuffling and initialization.")
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads", "-t", min=1, max=MAX_THREADS, help="CPU threads for PyTorch (default: all cores)."
    ),
]
ImageSizeOpt = Annotated[
    int | None,
    typer.Option(
        "--image-size",
        min=8,
        max=MAX_IMAGE_SIZE,
        help="Resize images to this square size, as batched tensor ops (e.g. 224 for ImageNet-pretrained "
        "models: random-resized crop when training, resize + center crop otherwise). Default: the size "
        "the checkpoint was trained at, else the data's own.",
    ),
]
# where a search scores its candidates (compress, nas search): the sweep's executors
ScoringExecutorOpt = Annotated[
    str,
    typer.Option(
        "--executor",
        help="Where candidates are scored: local (worker processes on this machine) | ray | inline "
        "(this process). Any choice gives the same scores.",
    ),
]
ScoringWorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        "-w",
        min=1,
        max=max_workers(),
        help="Candidates scored in parallel, each worker with its share of the cores (default 1: this "
        "process). Latency is always measured alone.",
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address", help="Ray cluster address, with --executor ray (default: a local Ray instance)."
    ),
]
RecordDbOpt = Annotated[
    Path,
    typer.Option(
        "--db",
        help="Record every scored candidate in this result store (created if missing); "
        "`edgeslim report NAME --db DB` draws the search.",
    ),
]
DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        help="auto | cpu | cuda: where training and evaluation run (auto: a CUDA GPU when present; "
        "AMP on CUDA). Default $EDGESLIM_DEVICE or auto.",
    ),
]


def parse_device(value: str | None) -> str | None:
    """``--device`` checked now (``cuda`` without a GPU is a usage error); None/auto: automatic."""
    if value is None or value == "auto":
        return None
    from edgeslim.train.device import resolve_device

    resolve_device(value)
    return value


def parse_split(value: str) -> tasks.Split:
    if value not in ("train", "val", "test"):
        raise ConfigError(f"--split must be train, val or test, not {value!r}")
    return cast(tasks.Split, value)
