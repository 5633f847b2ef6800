"""The ``edgeslim`` command: a thin typer layer over :mod:`edgeslim.tasks` and the library."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from edgeslim import distillation, pruning, quantization, tasks  # noqa: F401  (their methods register)
from edgeslim.cli import deploy, distill, fetch, nas, search, study, sweep, zoo
from edgeslim.cli.console import (
    OneLineErrors,
    err_console,
    fmt_bytes,
    fmt_int,
    fmt_pct,
    key_value_table,
    method_flags,
    out_console,
    print_json,
    user_errors,
)
from edgeslim.cli.entry import root_app
from edgeslim.cli.options import (
    CheckpointOpt,
    DataOpt,
    DeviceOpt,
    ImageSizeOpt,
    JsonOpt,
    LimitOpt,
    ModelOpt,
    NumClassesOpt,
    PretrainedOpt,
    SeedOpt,
    SplitOpt,
    ThreadsOpt,
    ValFractionOpt,
    WeightsOpt,
    parse_device,
    parse_split,
)
from edgeslim.config import Config
from edgeslim.data import Augment
from edgeslim.errors import ConfigError, EdgeslimError
from edgeslim.export.runners import inspect_artifact
from edgeslim.methods import method_config, method_names, method_spec
from edgeslim.pruning.configs import PruningConfig
from edgeslim.pruning.saving import LAYOUTS
from edgeslim.quantization.configs import QuantizationConfig
from edgeslim.runtimes import RUNTIME_NAMES
from edgeslim.select import LayerSelection
from edgeslim.tasks.recovery import Recovery
from edgeslim.train import TrainConfig
from edgeslim.yaml_schema import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_IMAGE_SIZE, MAX_RUNS

#: The complete command tree (every module imported); the ``edgeslim`` program's root
#: (:mod:`edgeslim.cli.entry`) imports it only when a command other than ``models`` runs.
app = root_app(OneLineErrors)


# -- eval -----------------------------------------------------------------------------------------
EVAL_FLAGS = {
    "evaluate_task.batch_size": "--batch-size",
    "evaluate_artifact_task.batch_size": "--batch-size",
    "open_runner.runtime": "--runtime",
}


@app.command("eval")
def eval_cmd(
    artifact: Annotated[
        Path | None,
        typer.Argument(
            help="An exported artifact (.onnx, .xml, .engine, .pt2, TorchScript) or a packed/pruned file, "
            "run on its runtime (instead of --model/--checkpoint).",
            show_default=False,
        ),
    ] = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    pretrained: PretrainedOpt = False,
    checkpoint: CheckpointOpt = None,
    num_classes: NumClassesOpt = None,
    data: DataOpt = None,
    split: SplitOpt = "test",
    limit: LimitOpt = None,
    val_fraction: ValFractionOpt = 0.1,
    seed: SeedOpt = 0,
    image_size: ImageSizeOpt = None,
    device: DeviceOpt = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, max=MAX_BATCH_SIZE)] = 256,
    runtime: Annotated[
        str | None,
        typer.Option(
            "--runtime", "-r", help="torch | ort | openvino | tensorrt (default: the artifact's best)."
        ),
    ] = None,
    threads: ThreadsOpt = None,
    trust_artifact: TrustArtifactOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Top-1/top-5 accuracy of a model or an exported artifact on a dataset split."""
    with user_errors(EVAL_FLAGS):
        data_source = tasks.DataSource(
            path=data,
            split=parse_split(split),
            limit=limit,
            val_fraction=val_fraction,
            seed=seed,
            image_size=image_size,
        )
        device_name = parse_device(device)
        if artifact is None and checkpoint is not None and (runtime is not None or _is_packed(checkpoint)):
            artifact, checkpoint = checkpoint, None  # packed low-bit files and --runtime go the artifact way
        if artifact is not None:
            if model is not None or weights is not None or checkpoint is not None:
                raise ConfigError("give either an artifact FILE or --model/--weights/--checkpoint, not both")
            m = tasks.evaluate_artifact_task(
                artifact,
                data_source,
                runtime=runtime,
                batch_size=batch_size,
                num_threads=threads,
                progress=not json_out,
                trust_artifact=trust_artifact,
            )
        else:
            if runtime not in (None, "torch"):
                raise ConfigError(
                    f"--runtime {runtime} runs an exported artifact: `edgeslim export` the model, then "
                    "`edgeslim eval FILE --runtime ...`"
                )
            source = tasks.ModelSource(
                name=model,
                weights=weights,
                checkpoint=checkpoint,
                num_classes=num_classes,
                pretrained=pretrained,
            )
            m = tasks.evaluate_task(
                source,
                data_source,
                batch_size=batch_size,
                num_threads=threads,
                progress=not json_out,
                device=device_name,
            )
    if json_out:
        print_json(m.to_dict())
        return
    where = f" ({m.runtime}, {m.precision}{', simulated' if m.simulated else ''})" if artifact else ""
    out_console.print(
        key_value_table(
            f"{m.model}{where} on {split} ({m.num_images:,} images)",
            [
                ("top-1", fmt_pct(m.top1)),
                ("top-5", fmt_pct(m.top5)),
                ("parameters", fmt_int(m.params)),
                ("non-zero parameters", fmt_int(m.nonzero_params)),
                ("MACs / image", fmt_int(m.macs)),
                ("size on disk", fmt_bytes(m.size_bytes)),
            ],
        )
    )


def _is_packed(path: Path) -> bool:
    """A packed low-bit file (``edgeslim quantize``) has no torch model of its own: eval runs it as an artifact."""
    try:
        return path.is_file() and inspect_artifact(path).kind == "packed"
    except EdgeslimError:
        return False


# -- train ----------------------------------------------------------------------------------------
TrustArtifactOpt = Annotated[
    bool,
    typer.Option(
        "--trust-artifact",
        help="Load a TorchScript or .pt2 file: torch.jit.load / torch.export.load can run code the file "
        "contains (checkpoints and packed files load with weights_only=True and need no trust).",
    ),
]

TRAIN_FLAGS = {
    "train_task.resume": "--resume",
    "train.resume": "--resume",
    "train_task.out": "--out",
    **{
        f"TrainConfig.{name}": f"--{name.replace('_', '-')}"
        for name in ("optimizer", "weight_decay", "schedule", "warmup_epochs", "label_smoothing", "seed")
    },
}


@app.command("train")
def train_cmd(
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    pretrained: PretrainedOpt = False,
    checkpoint: CheckpointOpt = None,
    num_classes: NumClassesOpt = None,
    data: DataOpt = None,
    limit: LimitOpt = None,
    val_fraction: ValFractionOpt = 0.1,
    epochs: Annotated[int, typer.Option("--epochs", "-e", min=1, max=MAX_EPOCHS)] = 30,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, max=MAX_BATCH_SIZE)] = 128,
    optimizer: Annotated[str, typer.Option("--optimizer", help="sgd (Nesterov) | adamw")] = "sgd",
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = 0.1,
    weight_decay: Annotated[float, typer.Option("--weight-decay")] = 5e-4,
    schedule: Annotated[str, typer.Option("--schedule", help="cosine | step | constant")] = "cosine",
    warmup_epochs: Annotated[float, typer.Option("--warmup-epochs", min=0.0)] = 0.0,
    label_smoothing: Annotated[float, typer.Option("--label-smoothing", min=0.0, max=0.99)] = 0.0,
    bf16: Annotated[
        bool,
        typer.Option(
            "--bf16/--fp32",
            help="bfloat16 autocast (about 2x faster on CPUs with BF16; fp32 on CPUs without).",
        ),
    ] = True,
    channels_last: Annotated[bool, typer.Option("--channels-last/--no-channels-last")] = True,
    grad_clip: Annotated[
        float | None, typer.Option("--grad-clip", min=0.0, help="Clip the gradient norm.")
    ] = None,
    augment: Annotated[
        bool, typer.Option("--augment/--no-augment", help="Random crop (pad 4) and flip.")
    ] = True,
    image_size: ImageSizeOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Checkpoint written every epoch (default runs/MODEL.pt)."),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint at --out.")] = False,
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train or fine-tune a model with a checkpoint every epoch (resumable)."""
    with user_errors(TRAIN_FLAGS):
        source = tasks.ModelSource(
            name=model,
            weights=weights,
            checkpoint=checkpoint,
            num_classes=num_classes,
            pretrained=pretrained,
        )
        config = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            optimizer=optimizer,  # type: ignore[arg-type]  # validated by TrainConfig
            lr=lr,
            weight_decay=weight_decay,
            schedule=schedule,  # type: ignore[arg-type]
            warmup_epochs=warmup_epochs,
            label_smoothing=label_smoothing,
            bf16=bf16,
            channels_last=channels_last,
            grad_clip=grad_clip,
            seed=seed,
        )
        target = (
            out
            or Path("runs")
            / f"{(model or (checkpoint.stem if checkpoint else 'model')).replace(':', '_')}.pt"
        )
        result = tasks.train_task(
            source,
            tasks.DataSource(
                path=data,
                split="train",
                limit=limit,
                val_fraction=val_fraction,
                seed=seed,
                image_size=image_size,
            ),
            config,
            out=target,
            resume=resume,
            augment=Augment() if augment else Augment.none(),
            num_threads=threads,
            progress=not json_out,
            device=parse_device(device),
        )
    if json_out:
        print_json(result.to_dict())
        return
    last = result.history[-1] if result.history else {}
    err_console.print(
        f"checkpoint: [bold]{target}[/]  "
        + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in last.items())
    )


# -- bench ----------------------------------------------------------------------------------------
BENCH_FLAGS = {
    "bench_task.batch_sizes": "--batch-size",
    "bench_task.runs": "--runs",
    "bench_task.warmup": "--warmup",
    "bench_task.image_size": "--image-size",
    "bench_artifact_task.batch_sizes": "--batch-size",
    "bench_artifact_task.runs": "--runs",
    "bench_artifact_task.warmup": "--warmup",
    "bench_artifact_task.image_size": "--image-size",
    "benchmark_artifact.runtimes": "--runtime",
    "benchmark_artifact.input_size": "--image-size",
    "open_runner.runtime": "--runtime",
}


@app.command("bench")
def bench_cmd(
    artifact: Annotated[
        Path | None,
        typer.Argument(
            help="An artifact to measure (.onnx, .xml, .engine, .pt2, TorchScript, checkpoint, packed file).",
            show_default=False,
        ),
    ] = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    pretrained: PretrainedOpt = False,
    checkpoint: CheckpointOpt = None,
    num_classes: NumClassesOpt = None,
    batch_size: Annotated[
        list[int] | None,
        typer.Option(
            "--batch-size", "-b", min=1, max=MAX_BATCH_SIZE, help="Batch sizes to time (repeatable)."
        ),
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option(
            "--image-size",
            min=8,
            max=MAX_IMAGE_SIZE,
            help="Square input size (default: the size the file records or declares, else 32).",
        ),
    ] = None,
    runs: Annotated[int, typer.Option("--runs", min=1, max=MAX_RUNS)] = 30,
    warmup: Annotated[int, typer.Option("--warmup", min=0, max=MAX_RUNS)] = 5,
    runtime: Annotated[
        str | None,
        typer.Option(
            "--runtime",
            "-r",
            help="torch | ort | openvino | tensorrt | all (one table across the runtimes present; "
            "a model or checkpoint is exported and parity-checked for the others).",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data", "-d", help="Test images for the parity checks of converted copies (default: random)."
        ),
    ] = None,
    channels_last: Annotated[bool, typer.Option("--channels-last/--no-channels-last")] = False,
    threads: ThreadsOpt = None,
    trust_artifact: TrustArtifactOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Measure latency (median/p90), throughput, peak memory and size, on one runtime or all of them."""
    with user_errors(BENCH_FLAGS):
        if runtime is not None and runtime not in (*RUNTIME_NAMES, "all"):
            raise ConfigError(f"--runtime must be one of {', '.join(RUNTIME_NAMES)} or all, not {runtime!r}")
        if artifact is None and runtime in (None, "torch"):
            source = tasks.ModelSource(
                name=model,
                weights=weights,
                checkpoint=checkpoint,
                num_classes=num_classes,
                pretrained=pretrained,
            )
            m = tasks.bench_task(
                source,
                batch_sizes=tuple(batch_size or (1, 32)),
                input_size=(3, image_size, image_size) if image_size else None,
                num_threads=threads,
                warmup=warmup,
                runs=runs,
                channels_last=channels_last,
            )
        else:
            if artifact is not None and (model is not None or weights is not None or checkpoint is not None):
                raise ConfigError("give either an artifact FILE or --model/--weights/--checkpoint, not both")
            comparison = tasks.bench_artifact_task(
                artifact,
                model_source=None
                if artifact is not None
                else tasks.ModelSource(
                    name=model,
                    weights=weights,
                    checkpoint=checkpoint,
                    num_classes=num_classes,
                    pretrained=pretrained,
                ),
                runtimes=(runtime or "default",),
                batch_sizes=tuple(batch_size or (1, 32)),
                image_size=image_size,
                num_threads=threads,
                warmup=warmup,
                runs=runs,
                data_source=tasks.DataSource(path=data, split="test") if data else None,
                trust_artifact=trust_artifact,
            )
            if json_out:
                print_json(comparison.to_dict())
                return
            deploy.print_comparison(comparison)
            return
    if json_out:
        print_json(m.to_dict())
        return
    rows = [
        ("runtime", f"{m.runtime} ({m.precision})"),
        ("parameters", fmt_int(m.params)),
        ("MACs / image", fmt_int(m.macs)),
        ("size on disk", fmt_bytes(m.size_bytes)),
        ("peak RSS", fmt_bytes(m.peak_rss_bytes)),
    ]
    for bs, stats in sorted((m.latency or {}).items()):
        rows.append(
            (
                f"batch {bs}",
                f"median {stats.median_ms:.2f} ms, p90 {stats.p90_ms:.2f} ms, "
                f"{stats.throughput_ips:,.0f} img/s",
            )
        )
    out_console.print(
        key_value_table(f"{m.model} benchmark ({m.env.get('torch_threads', '?')} threads)", rows)
    )


# -- methods (prune, quantize) --------------------------------------------------------------------
def cli_method_config(family: str, method: str, params: dict[str, Any]) -> Config:
    """The config of ``family/method`` built by the method registry from a command's options.

    A command passes all its method options by parameter name (``ratio``, ``bits``); each method
    takes those it has a field (or alias) for, and an option left at None keeps the method's default.
    """
    taken = set(method_spec(family, method).fields())
    return method_config(family, method, {k: v for k, v in params.items() if k in taken and v is not None})


def _field_default(family: str, method: str, name: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(method_spec(family, method).config_cls)}
    return fields[name].default if name in fields else None


# -- prune ----------------------------------------------------------------------------------------
#: ``prune``'s method options: registry parameter -> flag.
PRUNE_OPTIONS = {
    "ratio": "--ratio",
    "scope": "--scope",
    "round_to": "--round-to",
    "iterative_steps": "--iterative-steps",
    "min_channels": "--min-channels",
    "layer_ratios": "--layer-ratio",
    "residual": "--residual",
    "start_epoch": "--start-epoch",
    "ramp_epochs": "--ramp-epochs",
    "frequency_epochs": "--frequency-epochs",
}
#: ``prune``'s options that only gradual pruning takes (the ramp, in epochs of the fine-tune).
RAMP_OPTIONS = ("start_epoch", "ramp_epochs", "frequency_epochs")
#: Recovery fine-tune options shared by ``prune`` and ``quantize`` (QAT): config field -> flag.
RECOVERY_FLAGS = {
    "Recovery.distill": "--distill",
    "Recovery.teacher": "--teacher",
    "Recovery.temperature": "--kd-temperature",
    "Recovery.alpha": "--kd-alpha",
    "Recovery.budget_minutes": "--budget-minutes",
    "Recovery.augment": "--augment",
}
DistillOpt = Annotated[
    bool | None,
    typer.Option(
        "--distill/--no-distill",
        help="Fine-tune by distilling from the model before compression (default on when fine-tuning).",
    ),
]
TeacherOpt = Annotated[
    Path | None,
    typer.Option("--teacher", help="Distill from this checkpoint instead of the uncompressed model."),
]
KdTemperatureOpt = Annotated[float, typer.Option("--kd-temperature", help="KD softmax temperature.")]
KdAlphaOpt = Annotated[float, typer.Option("--kd-alpha", help="KD weight of the label cross-entropy.")]
BudgetOpt = Annotated[
    float | None,
    typer.Option(
        "--budget-minutes",
        help="Fine-tune for as many epochs as fit M minutes here (a measured warm-up sizes them).",
    ),
]
AugmentOpt = Annotated[
    bool,
    typer.Option(
        "--augment/--no-augment",
        help="Random crop+flip while fine-tuning (--no-augment caches the teacher's logits).",
    ),
]


def cli_recovery(
    epochs: int,
    epochs_flag: str,
    *,
    budget_minutes: float | None,
    distill: bool | None,
    teacher: Path | None,
    temperature: float,
    alpha: float,
    augment: bool,
) -> tuple[int, Recovery | None]:
    """(fine-tune epochs, Recovery) from the recovery flags; epochs 0 and None: no fine-tune."""
    if budget_minutes is not None and epochs > 0:
        raise ConfigError(
            f"give {epochs_flag} or --budget-minutes, not both (the budget sizes the epochs)",
            field="Recovery.budget_minutes",
        )
    if epochs == 0 and budget_minutes is None:
        if distill or teacher is not None:
            raise ConfigError(
                "distillation recovers a compressed model while fine-tuning it, and there is no "
                f"fine-tune: add {epochs_flag} N or --budget-minutes M",
                field="Recovery.distill",
            )
        return 0, None
    recovery = Recovery(
        distill=True if distill is None else distill,
        teacher=str(teacher) if teacher is not None else None,
        temperature=temperature,
        alpha=alpha,
        augment=augment,
        budget_minutes=budget_minutes,
    )
    return (epochs if epochs > 0 else 1), recovery


def _round_to(value: str) -> int | str:
    if value == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise ConfigError(
            f"--round-to must be an integer >= 1 or 'auto', got {value!r}", field="FilterPruning.round_to"
        ) from None


PRUNE_FLAGS = {
    **method_flags("prune", PRUNE_OPTIONS),
    **RECOVERY_FLAGS,
    "prune_task.finetune": "--finetune-epochs",
    "prune_task.data_source": "--data",
    "TrainConfig.epochs": "--finetune-epochs",
    "LayerSelection.types": "--layer-type",
    "LayerSelection.patterns": "--include",
    "LayerSelection.exclude": "--exclude",
}


@app.command("prune")
def prune_cmd(
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    pretrained: PretrainedOpt = False,
    checkpoint: CheckpointOpt = None,
    num_classes: NumClassesOpt = None,
    method: Annotated[str, typer.Option("--method", help=" | ".join(method_names("prune")))] = "l1",
    ratio: Annotated[
        float,
        typer.Option("--ratio", "-r", help="Sparsity (magnitude, gradual) or share of filters removed."),
    ] = 0.5,
    scope: Annotated[str, typer.Option("--scope", help="layer | global")] = "layer",
    round_to: Annotated[
        str,
        typer.Option(
            "--round-to",
            help="Keep channel counts multiples of this; auto: the multiple ORT runs fastest here.",
        ),
    ] = "1",
    iterative_steps: Annotated[
        int,
        typer.Option("--iterative-steps", min=1, help="Prune in N steps (cubic), recovering between them."),
    ] = 1,
    min_channels: Annotated[
        int | None, typer.Option("--min-channels", min=1, help="Channels every layer keeps at least.")
    ] = None,
    layer_ratios: Annotated[
        list[str] | None,
        typer.Option(
            "--layer-ratio",
            metavar="GLOB=RATIO",
            help="Filter pruning: this ratio instead of --ratio for channel groups whose first layer "
            "matches GLOB (repeatable; the last match wins), e.g. 'layer1.*.conv1=0.4'.",
        ),
    ] = None,
    residual: Annotated[
        str | None,
        typer.Option(
            "--residual",
            help="Filter pruning: keep | prune the residual streams (channels an addition sums); "
            "keep cuts only channels inside blocks and loses far less accuracy (default prune).",
        ),
    ] = None,
    start_epoch: Annotated[
        float | None,
        typer.Option(
            "--start-epoch",
            help="Gradual: the fine-tune epoch where the sparsity ramp starts (default 0; may be fractional).",
        ),
    ] = None,
    ramp_epochs: Annotated[
        float | None,
        typer.Option(
            "--ramp-epochs",
            help="Gradual: the ramp's length in epochs; it must end by the end of the fine-tune "
            "(default: 3/4 of the epochs after --start-epoch).",
        ),
    ] = None,
    frequency_epochs: Annotated[
        float | None,
        typer.Option(
            "--frequency-epochs",
            help="Gradual: epochs between mask updates, e.g. 0.5 (default: 1, or less for 10 updates).",
        ),
    ] = None,
    layer_types: Annotated[
        list[str] | None, typer.Option("--layer-type", help="Layer types to prune (default conv, linear).")
    ] = None,
    include: Annotated[
        list[str] | None, typer.Option("--include", help="Only layers matching this name or glob.")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Skip layers matching this name or glob.")
    ] = None,
    finetune_epochs: Annotated[int, typer.Option("--finetune-epochs", min=0, max=MAX_EPOCHS)] = 0,
    budget_minutes: BudgetOpt = None,
    distill: DistillOpt = None,
    teacher: TeacherOpt = None,
    kd_temperature: KdTemperatureOpt = 4.0,
    kd_alpha: KdAlphaOpt = 0.1,
    augment: AugmentOpt = True,
    lr: Annotated[float, typer.Option("--lr", help="Fine-tuning peak learning rate.")] = 0.01,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, max=MAX_BATCH_SIZE)] = 128,
    bf16: Annotated[
        bool,
        typer.Option("--bf16/--fp32", help="bf16 autocast while fine-tuning (fp32 on CPUs without BF16)."),
    ] = True,
    data: DataOpt = None,
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
    image_size: ImageSizeOpt = None,
    device: DeviceOpt = "auto",
    layout: Annotated[
        str, typer.Option("--format", help="dense | coo | csr | csc (sparse layouts for unstructured)")
    ] = "dense",
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the pruned model.")] = Path(
        "pruned.pt"
    ),
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Prune a model (unstructured, gradual or filter pruning), optionally fine-tune, and measure it."""
    with user_errors(
        {**method_flags("prune", PRUNE_OPTIONS), **PRUNE_FLAGS}
    ):  # methods added since import too
        if layout not in LAYOUTS:
            raise ConfigError(f"--format must be dense, coo, csr or csc, not {layout!r}")
        params = {
            "ratio": ratio,
            "scope": scope,
            "round_to": _round_to(round_to),
            "iterative_steps": iterative_steps,
            "min_channels": min_channels,
            "layer_ratios": tuple(layer_ratios) if layer_ratios else None,
            "residual": residual,
            "start_epoch": start_epoch,
            "ramp_epochs": ramp_epochs,
            "frequency_epochs": frequency_epochs,
        }
        for name in ("layer_ratios", "residual"):
            if params[name] and name not in method_spec("prune", method).fields():
                raise ConfigError(
                    f"{PRUNE_OPTIONS[name]} is a filter-pruning option; method {method!r} has none "
                    "(use l1, l2, fpgm or random)"
                )
        for name in RAMP_OPTIONS:
            if params[name] is not None and name not in method_spec("prune", method).fields():
                raise ConfigError(
                    f"{PRUNE_OPTIONS[name]} sets the gradual-pruning ramp; method {method!r} has none "
                    "(use --method gradual)"
                )
        config = cast(PruningConfig, cli_method_config("prune", method, params))
        finetune_epochs, recovery = cli_recovery(
            finetune_epochs,
            "--finetune-epochs",
            budget_minutes=budget_minutes,
            distill=distill,
            teacher=teacher,
            temperature=kd_temperature,
            alpha=kd_alpha,
            augment=augment,
        )
        selection = LayerSelection(
            types=tuple(layer_types) if layer_types else ("conv", "linear"),
            patterns=tuple(include or ()),
            exclude=tuple(exclude or ()),
        )
        finetune = (
            TrainConfig(
                epochs=finetune_epochs, batch_size=batch_size, lr=lr, bf16=bf16, channels_last=bf16, seed=seed
            )
            if finetune_epochs > 0
            else None
        )
        outcome = tasks.prune_task(
            tasks.ModelSource(
                name=model,
                weights=weights,
                checkpoint=checkpoint,
                num_classes=num_classes,
                pretrained=pretrained,
            ),
            config,
            out=out,
            select=selection,
            data_source=tasks.DataSource(
                path=data, split="test", limit=limit, seed=seed, image_size=image_size
            )
            if data
            else None,
            finetune=finetune,
            recovery=recovery,
            layout=layout,
            num_threads=threads,
            progress=not json_out,
            device=parse_device(device),
        )
    if json_out:
        print_json(outcome.to_dict())
        return
    d = outcome.to_dict()
    rows = [
        ("method", f"{d['method']} ({method}, ratio {ratio})"),
        ("parameters", f"{fmt_int(d['params_before'])} -> {fmt_int(d['params_after'])}"),
        (
            "non-zero parameters",
            f"{fmt_int(d['nonzero_params_before'])} -> {fmt_int(d['nonzero_params_after'])}",
        ),
        ("parameter reduction", f"{100 * d['param_reduction_ratio']:.1f}%"),
        (
            "MACs / image",
            f"{fmt_int(d['macs_before'])} -> {fmt_int(d['macs_after'])} ({d['mac_reduction']:.2f}x fewer)",
        ),
        ("sparsity (selected layers)", f"{100 * d['sparsity']:.1f}%"),
        (
            "file",
            f"{out} ({outcome.layout}) {fmt_bytes(d['size_bytes'])}"
            + ("" if outcome.layout == "dense" else f"; dense would be {fmt_bytes(d['dense_size_bytes'])}"),
        ),
    ]
    if d["top1_before"] is not None:
        rows.append(("top-1", f"{fmt_pct(d['top1_before'])} -> {fmt_pct(d['top1_after'])}"))
    for b in outcome.latency_before:
        lb, la = outcome.latency_before[b], outcome.latency_after[b]
        rows.append((f"latency batch {b} (torch)", f"{lb.median_ms:.2f} -> {la.median_ms:.2f} ms median"))
    for b, speedup in d["realized_speedup"].items():
        rows.append(
            (f"speed-up batch {b} (torch)", f"{speedup:.2f}x for {d['mac_reduction']:.2f}x fewer MACs")
        )
    rec = d.get("recovery")
    if rec:
        how = f"distilled from {rec['teacher']}" if rec["distill"] else "cross-entropy"
        cost = (
            f"; teacher {rec['teacher_seconds']:.1f} s, logits "
            + ("cached" if rec["teacher_logits_cached"] else "not cached (random augmentation)")
            if rec["distill"]
            else ""
        )
        budget = f" (chosen for {rec['budget']['budget_minutes']:g} min)" if rec.get("budget") else ""
        rows.append(("fine-tune", f"{rec['epochs']} epoch(s){budget}, {how}, {rec['seconds']:.1f} s{cost}"))
    out_console.print(key_value_table(f"pruned {d['method']}", rows))
    for note in outcome.notes:
        err_console.print(f"[yellow]note:[/] {note}")


# -- quantize -------------------------------------------------------------------------------------
#: ``quantize``'s method options: registry parameter -> flag.
QUANTIZE_OPTIONS = {
    "bits": "--bits",
    "act_bits": "--act-bits",
    "per_channel": "--per-channel",
    "symmetric": "--symmetric",
    "fuse_bn": "--fuse",
    "scope": "--scope",
    "observer": "--observer",
    "calibration_batches": "--calibration-batches",
}
QUANTIZE_FLAGS = {
    **method_flags("quantize", QUANTIZE_OPTIONS),
    **RECOVERY_FLAGS,
    "quantize_task.qat_training": "--epochs",
}


@app.command("quantize")
def quantize_cmd(
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    pretrained: PretrainedOpt = False,
    checkpoint: CheckpointOpt = None,
    num_classes: NumClassesOpt = None,
    method: Annotated[str, typer.Option("--method", help=" | ".join(method_names("quantize")))] = "static",
    bits: Annotated[int, typer.Option("--bits", help="Weight bits (2-8).")] = 8,
    act_bits: Annotated[
        int | None, typer.Option("--act-bits", help="Activation bits (default: --bits).")
    ] = None,
    per_channel: Annotated[bool, typer.Option("--per-channel/--per-tensor")] = True,
    symmetric: Annotated[bool, typer.Option("--symmetric/--asymmetric", help="Weight quantization.")] = True,
    fuse: Annotated[bool, typer.Option("--fuse/--no-fuse", help="Fold BatchNorm into convs.")] = True,
    scope: Annotated[
        str, typer.Option("--scope", help="all_layers | weights_and_activations")
    ] = "all_layers",
    observer: Annotated[
        str | None,
        typer.Option(
            "--observer", help="minmax | percentile | mse | entropy (default: the method's, static: minmax)"
        ),
    ] = None,
    calibration_batches: Annotated[
        int | None, typer.Option("--calibration-batches", min=1, help="(default: the method's, static: 10)")
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=0, max=MAX_EPOCHS, help="QAT epochs.")] = 0,
    budget_minutes: BudgetOpt = None,
    distill: DistillOpt = None,
    teacher: TeacherOpt = None,
    kd_temperature: KdTemperatureOpt = 4.0,
    kd_alpha: KdAlphaOpt = 0.1,
    augment: AugmentOpt = True,
    lr: Annotated[
        float, typer.Option("--lr", help="QAT peak learning rate (0.005 diverged on pretrained ResNets).")
    ] = 0.0005,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, max=MAX_BATCH_SIZE)] = 128,
    data: DataOpt = None,
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
    image_size: ImageSizeOpt = None,
    device: DeviceOpt = "auto",
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Packed low-bit file (QDQ .onnx beside it).")
    ] = Path("quantized.pt"),
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Quantize a model, write real low-bit artifacts, and compare simulated with deployed accuracy."""
    with user_errors({**method_flags("quantize", QUANTIZE_OPTIONS), **QUANTIZE_FLAGS}):
        if act_bits is None and _field_default("quantize", method, "act_bits") is not None:
            act_bits = bits  # --act-bits defaults to --bits where the method has no "same as bits"
        params = {
            "bits": bits,
            "act_bits": act_bits,
            "per_channel": per_channel,
            "symmetric": symmetric,
            "fuse_bn": fuse,
            "scope": scope,
            "observer": observer,
            "calibration_batches": calibration_batches,
        }
        config = cast(QuantizationConfig, cli_method_config("quantize", method, params))
        epochs, recovery = cli_recovery(
            epochs,
            "--epochs",
            budget_minutes=budget_minutes,
            distill=distill,
            teacher=teacher,
            temperature=kd_temperature,
            alpha=kd_alpha,
            augment=augment,
        )
        if recovery is not None and not method_spec("quantize", method).trains:
            raise ConfigError(
                f"--method {method} does not train, so there is no fine-tune to distill into or budget; "
                "use --method qat",
                field="Recovery.distill",
            )
        qat_training = (
            TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
            if method_spec("quantize", method).needs_training and epochs
            else None
        )
        outcome = tasks.quantize_task(
            tasks.ModelSource(
                name=model,
                weights=weights,
                checkpoint=checkpoint,
                num_classes=num_classes,
                pretrained=pretrained,
            ),
            config,
            out=out,
            data_source=tasks.DataSource(
                path=data, split="test", limit=limit, seed=seed, image_size=image_size
            ),
            qat_training=qat_training,
            recovery=recovery,
            num_threads=threads,
            progress=not json_out,
            device=parse_device(device),
        )
    if json_out:
        print_json(outcome.to_dict())
        _exit_on_failed_parity(outcome.to_dict().get("parity"), outcome.onnx_path)
        return
    d = outcome.to_dict()
    rows = [
        ("method", f"{d['method']} ({d['bits']}-bit weights, {d['act_bits'] or 'float'} activations)"),
        (
            "packed file",
            f"{d['packed_path']}: {fmt_bytes(d['size_bytes'])} (FP32 {fmt_bytes(d['size_bytes_fp32'])})",
        ),
        ("deployed artifact", f"{d['onnx_path'] or '-'} {fmt_bytes(d['onnx_size_bytes'])}"),
        ("top-1 FP32", fmt_pct(d["top1_fp32"])),
        ("top-1 simulated (fake quant, torch)", fmt_pct(d["top1_simulated"])),
        (f"top-1 deployed ({d['runtime']}, {d['executed_bits']}-bit)", fmt_pct(d["top1_deployed"])),
    ]
    parity = d.get("parity")
    if parity:
        rows.append(("parity (deployed vs simulated)", _parity_line(parity)))
    out_console.print(key_value_table("quantized", rows))
    for note in outcome.notes:
        err_console.print(f"[yellow]note:[/] {note}")
    _exit_on_failed_parity(parity, d.get("onnx_path"))


def _parity_line(p: dict[str, Any]) -> str:
    return (
        f"{'ok' if p.get('ok') else 'FAILED'}: max |diff| {p['max_abs_diff']:.3g} (tolerance "
        f"{p['tolerance']:.3g}), top-1 agreement {100 * p['top1_agreement']:.1f}% "
        f"(min {100 * p.get('min_agreement', 0.99):.0f}%) on {p['num_inputs']} images"
    )


def _exit_on_failed_parity(parity: dict[str, Any] | None, artifact: object) -> None:
    """A deployed artifact that does not reproduce its simulated model is an error (exit 1), never
    a success with ``parity.ok: false`` only in the JSON."""
    if parity and not parity.get("ok", True):
        err_console.print(
            f"[bold red]error:[/] the deployed int8 artifact failed parity ({_parity_line(parity)}); "
            f"it is kept at {artifact} for inspection",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


def _register_command_groups() -> None:
    """Commands that live in their own modules add themselves here."""
    for module in (zoo, deploy, distill, fetch, nas, search, study, sweep):
        module.register(app)


_register_command_groups()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
