"""The ``edgeslim`` command: a thin typer layer over :mod:`edgeslim.tasks` and the library."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, cast

import typer

import edgeslim
from edgeslim import distillation, pruning, quantization, tasks  # noqa: F401  (their methods register)
from edgeslim.cli import deploy, distill, fetch, sweep
from edgeslim.cli.console import (
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
from edgeslim.cli.options import (
    CheckpointOpt,
    DataOpt,
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
    parse_split,
)
from edgeslim.config import Config
from edgeslim.data import Augment
from edgeslim.errors import ConfigError, EdgeslimError
from edgeslim.export.runners import inspect_artifact
from edgeslim.methods import method_config, method_names, method_spec
from edgeslim.pruning.configs import PruningConfig
from edgeslim.quantization.configs import QuantizationConfig
from edgeslim.runtimes import RUNTIME_NAMES
from edgeslim.select import LayerSelection
from edgeslim.train import TrainConfig

app = typer.Typer(
    name="edgeslim",
    help="Make CNN image classifiers small and fast for edge devices, and prove it with measurements.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        out_console.print(f"edgeslim {edgeslim.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """edgeslim: prune, quantize, distill and deploy CNNs, measured on real artifacts."""


# -- models ---------------------------------------------------------------------------------------
@app.command("models")
def models_cmd(
    pattern: Annotated[str | None, typer.Argument(help="Glob filter, e.g. 'resnet*'.")] = None,
    tiny: Annotated[bool, typer.Option("--tiny/--no-tiny", help="Include the tiny test variants.")] = False,
    details: Annotated[
        bool, typer.Option("--details", help="Also build each model to count parameters and MACs.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """List the model zoo."""
    with user_errors():
        rows = tasks.list_models_task(pattern=pattern, include_tiny=tiny, details=details)
    if json_out:
        print_json({"models": rows})
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} models", title_justify="left")
    columns = ("name", "family", "input") + (("params", "MACs") if details else ("description",))
    for col in columns:
        table.add_column(
            col, justify="right" if col in ("params", "MACs") else "left", no_wrap=col != "description"
        )
    for r in rows:
        cells = [r["name"], r["family"], "x".join(str(s) for s in r["input_size"])]
        cells += [fmt_int(r["params"]), fmt_int(r["macs"])] if details else [r["description"]]
        table.add_row(*cells)
    out_console.print(table)


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
    checkpoint: CheckpointOpt = None,
    num_classes: NumClassesOpt = None,
    data: DataOpt = None,
    split: SplitOpt = "test",
    limit: LimitOpt = None,
    val_fraction: ValFractionOpt = 0.1,
    seed: SeedOpt = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1)] = 256,
    runtime: Annotated[
        str | None,
        typer.Option(
            "--runtime", "-r", help="torch | ort | openvino | tensorrt (default: the artifact's best)."
        ),
    ] = None,
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Top-1/top-5 accuracy of a model or an exported artifact on a dataset split."""
    with user_errors(EVAL_FLAGS):
        data_source = tasks.DataSource(
            path=data, split=parse_split(split), limit=limit, val_fraction=val_fraction, seed=seed
        )
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
            )
        else:
            if runtime not in (None, "torch"):
                raise ConfigError(
                    f"--runtime {runtime} runs an exported artifact: `edgeslim export` the model, then "
                    "`edgeslim eval FILE --runtime ...`"
                )
            source = tasks.ModelSource(
                name=model, weights=weights, checkpoint=checkpoint, num_classes=num_classes
            )
            m = tasks.evaluate_task(
                source, data_source, batch_size=batch_size, num_threads=threads, progress=not json_out
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
    epochs: Annotated[int, typer.Option("--epochs", "-e", min=1)] = 30,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1)] = 128,
    optimizer: Annotated[str, typer.Option("--optimizer", help="sgd (Nesterov) | adamw")] = "sgd",
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = 0.1,
    weight_decay: Annotated[float, typer.Option("--weight-decay")] = 5e-4,
    schedule: Annotated[str, typer.Option("--schedule", help="cosine | step | constant")] = "cosine",
    warmup_epochs: Annotated[float, typer.Option("--warmup-epochs", min=0.0)] = 0.0,
    label_smoothing: Annotated[float, typer.Option("--label-smoothing", min=0.0, max=0.99)] = 0.0,
    bf16: Annotated[
        bool, typer.Option("--bf16/--fp32", help="bfloat16 autocast (about 2x faster on CPUs with BF16).")
    ] = True,
    channels_last: Annotated[bool, typer.Option("--channels-last/--no-channels-last")] = True,
    grad_clip: Annotated[
        float | None, typer.Option("--grad-clip", min=0.0, help="Clip the gradient norm.")
    ] = None,
    augment: Annotated[
        bool, typer.Option("--augment/--no-augment", help="Random crop (pad 4) and flip.")
    ] = True,
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
            tasks.DataSource(path=data, split="train", limit=limit, val_fraction=val_fraction, seed=seed),
            config,
            out=target,
            resume=resume,
            augment=Augment() if augment else Augment.none(),
            num_threads=threads,
            progress=not json_out,
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
    "bench_artifact_task.batch_sizes": "--batch-size",
    "bench_artifact_task.runs": "--runs",
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
    checkpoint: CheckpointOpt = None,
    num_classes: NumClassesOpt = None,
    batch_size: Annotated[
        list[int] | None, typer.Option("--batch-size", "-b", min=1, help="Batch sizes to time (repeatable).")
    ] = None,
    image_size: Annotated[
        int | None, typer.Option("--image-size", min=8, help="Square input size (default 32, or the file's).")
    ] = None,
    runs: Annotated[int, typer.Option("--runs", min=1)] = 30,
    warmup: Annotated[int, typer.Option("--warmup", min=0)] = 5,
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
    json_out: JsonOpt = False,
) -> None:
    """Measure latency (median/p90), throughput, peak memory and size, on one runtime or all of them."""
    with user_errors(BENCH_FLAGS):
        if runtime is not None and runtime not in (*RUNTIME_NAMES, "all"):
            raise ConfigError(f"--runtime must be one of {', '.join(RUNTIME_NAMES)} or all, not {runtime!r}")
        if artifact is None and runtime in (None, "torch"):
            source = tasks.ModelSource(
                name=model, weights=weights, checkpoint=checkpoint, num_classes=num_classes
            )
            m = tasks.bench_task(
                source,
                batch_sizes=tuple(batch_size or (1, 32)),
                input_size=(3, image_size or 32, image_size or 32),
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
                    name=model, weights=weights, checkpoint=checkpoint, num_classes=num_classes
                ),
                runtimes=(runtime or "default",),
                batch_sizes=tuple(batch_size or (1, 32)),
                image_size=image_size,
                num_threads=threads,
                warmup=warmup,
                runs=runs,
                data_source=tasks.DataSource(path=data, split="test") if data else None,
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
}
PRUNE_FLAGS = {
    **method_flags("prune", PRUNE_OPTIONS),
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
    checkpoint: CheckpointOpt = None,
    num_classes: NumClassesOpt = None,
    method: Annotated[str, typer.Option("--method", help=" | ".join(method_names("prune")))] = "l1",
    ratio: Annotated[
        float,
        typer.Option("--ratio", "-r", help="Sparsity (magnitude, gradual) or share of filters removed."),
    ] = 0.5,
    scope: Annotated[str, typer.Option("--scope", help="layer | global")] = "layer",
    round_to: Annotated[
        int, typer.Option("--round-to", min=1, help="Keep channel counts multiples of this.")
    ] = 1,
    iterative_steps: Annotated[int, typer.Option("--iterative-steps", min=1, help="Prune in N steps.")] = 1,
    layer_types: Annotated[
        list[str] | None, typer.Option("--layer-type", help="Layer types to prune (default conv, linear).")
    ] = None,
    include: Annotated[
        list[str] | None, typer.Option("--include", help="Only layers matching this name or glob.")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Skip layers matching this name or glob.")
    ] = None,
    finetune_epochs: Annotated[int, typer.Option("--finetune-epochs", min=0)] = 0,
    lr: Annotated[float, typer.Option("--lr", help="Fine-tuning peak learning rate.")] = 0.01,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1)] = 128,
    bf16: Annotated[bool, typer.Option("--bf16/--fp32", help="bf16 autocast while fine-tuning.")] = True,
    data: DataOpt = None,
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
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
    with user_errors(PRUNE_FLAGS):
        if layout not in ("dense", "coo", "csr", "csc"):
            raise ConfigError(f"--format must be dense, coo, csr or csc, not {layout!r}")
        params = {"ratio": ratio, "scope": scope, "round_to": round_to, "iterative_steps": iterative_steps}
        config = cast(PruningConfig, cli_method_config("prune", method, params))
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
            tasks.ModelSource(name=model, weights=weights, checkpoint=checkpoint, num_classes=num_classes),
            config,
            out=out,
            select=selection,
            data_source=tasks.DataSource(path=data, split="test", limit=limit, seed=seed) if data else None,
            finetune=finetune,
            layout=layout,  # type: ignore[arg-type]
            num_threads=threads,
            progress=not json_out,
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
    "quantize_task.qat_training": "--epochs",
}


@app.command("quantize")
def quantize_cmd(
    model: ModelOpt = None,
    weights: WeightsOpt = None,
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
    epochs: Annotated[int, typer.Option("--epochs", min=0, help="QAT epochs.")] = 0,
    lr: Annotated[
        float, typer.Option("--lr", help="QAT peak learning rate (0.005 diverged on pretrained ResNets).")
    ] = 0.0005,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1)] = 128,
    data: DataOpt = None,
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Packed low-bit file (QDQ .onnx beside it).")
    ] = Path("quantized.pt"),
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Quantize a model, write real low-bit artifacts, and compare simulated with deployed accuracy."""
    with user_errors(QUANTIZE_FLAGS):
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
        qat_training = (
            TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
            if method_spec("quantize", method).needs_training and epochs
            else None
        )
        outcome = tasks.quantize_task(
            tasks.ModelSource(name=model, weights=weights, checkpoint=checkpoint, num_classes=num_classes),
            config,
            out=out,
            data_source=tasks.DataSource(path=data, split="test", limit=limit, seed=seed),
            qat_training=qat_training,
            num_threads=threads,
            progress=not json_out,
        )
    if json_out:
        print_json(outcome.to_dict())
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
    out_console.print(key_value_table("quantized", rows))
    for note in outcome.notes:
        err_console.print(f"[yellow]note:[/] {note}")


def _register_command_groups() -> None:
    """Commands that live in their own modules add themselves here."""
    for module in (deploy, distill, fetch, sweep):
        module.register(app)


_register_command_groups()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
