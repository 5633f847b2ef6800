"""CLI commands: export, and the output of runtime benchmarks (``bench FILE --runtime ...``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeslim import tasks
from edgeslim.cli.console import (
    err_console,
    fmt_bytes,
    key_value_table,
    out_console,
    print_json,
    user_errors,
)
from edgeslim.cli.options import (
    CheckpointOpt,
    DataOpt,
    JsonOpt,
    ModelOpt,
    NumClassesOpt,
    PretrainedOpt,
    SeedOpt,
    ThreadsOpt,
    WeightsOpt,
)
from edgeslim.errors import ConfigError
from edgeslim.export.bench import RuntimeComparison
from edgeslim.yaml_schema import MAX_IMAGE_SIZE, MAX_IMAGES

EXPORT_FORMATS = ("onnx", "openvino", "tensorrt", "torchscript", "pt2", "litert")
EXPORT_FLAGS = {
    "export.format": "--format",
    "export.precision": "--precision",
    "export.out": "--out",
    "export_task.parity_images": "--parity-images",
}


def export_cmd(
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    pretrained: PretrainedOpt = False,
    checkpoint: CheckpointOpt = None,
    num_classes: NumClassesOpt = None,
    format: Annotated[
        str, typer.Option("--format", "-f", help="onnx | openvino | tensorrt | torchscript | pt2 | litert")
    ] = "onnx",
    precision: Annotated[
        str,
        typer.Option(
            "--precision",
            "-p",
            help="fp32 | fp16 (openvino, tensorrt) | int8 (onnx, openvino, tensorrt; a quantized model "
            "or --data to calibrate on).",
        ),
    ] = "fp32",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Artifact path: .onnx, .xml (+ .bin), .engine, .ts, .pt2, .tflite."),
    ] = None,
    data: DataOpt = None,
    parity_images: Annotated[
        int,
        typer.Option(
            "--parity-images", min=1, max=MAX_IMAGES, help="Test images the artifact is checked on."
        ),
    ] = 256,
    image_size: Annotated[
        int | None,
        typer.Option(
            "--image-size",
            min=8,
            max=MAX_IMAGE_SIZE,
            help="Square input size (parity images are resized to it); default: the size the checkpoint "
            "records, else the data's.",
        ),
    ] = None,
    opset: Annotated[int, typer.Option("--opset", min=17, help="ONNX opset.")] = 18,
    seed: SeedOpt = 0,
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export a model to a deployable artifact and check it computes what PyTorch computes."""
    with user_errors(EXPORT_FLAGS):
        if format not in EXPORT_FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, not {format!r}")
        if out is None:
            raise ConfigError("--out is required: the artifact path (e.g. --out model.onnx)")
        source = tasks.ModelSource(
            name=model, weights=weights, checkpoint=checkpoint, num_classes=num_classes, pretrained=pretrained
        )
        outcome = tasks.export_task(
            source,
            format,
            out=out,
            precision=precision,
            data_source=tasks.DataSource(path=data, split="test", limit=parity_images, seed=seed),
            parity_images=parity_images,
            image_size=image_size,
            opset=opset,
            num_threads=threads,
        )
    if json_out:
        print_json(outcome.to_dict())
    else:
        d = outcome.to_dict()
        parity = outcome.result.parity
        rows = [
            ("artifact", f"{d['path']} ({d['format']}, {d['precision']})"),
            ("size on disk", fmt_bytes(d["size_bytes"])),
            ("exporter", d["exporter"]),
            ("checked on", d["runtime"]),
            ("parity", parity.summary() if parity is not None else "not checked"),
            ("time", f"{d['seconds']:.1f} s"),
        ]
        out_console.print(key_value_table(f"export {d['model']}", rows))
        for note in d["notes"]:
            err_console.print(f"[yellow]note:[/] {note}", highlight=False)
    if not outcome.ok:
        err_console.print(
            f"[bold red]error:[/] the artifact failed parity and must not be deployed; it is kept at {out} "
            "for inspection",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


def _ms(stats: object) -> str:
    median = getattr(stats, "median_ms", None)
    p90 = getattr(stats, "p90_ms", None)
    return "-" if median is None else f"{median:.2f} / {p90:.2f}"


def print_comparison(result: RuntimeComparison) -> None:
    """One table across the runtimes measured, then the fastest and the default pick."""
    from rich.table import Table

    batch_sizes = sorted({b for m in result.measurements for b in m.latency})
    table = Table(title=f"{result.artifact}", title_justify="left")
    # short two-line headers: at 80 columns every header is shown whole (none truncated)
    for col in ("runtime", "precision", *[f"b{b} ms\nmedian/p90" for b in batch_sizes]):
        table.add_column(col, justify="left" if col in ("runtime", "precision") else "right")
    if batch_sizes:
        table.add_column(f"b{batch_sizes[-1]}\nimg/s", justify="right")
    table.add_column("peak RSS\n(+increase)", justify="right")
    table.add_column("size", justify="right")
    for m in result.measurements:
        cells = [m.runtime, m.precision + (" (simulated)" if m.simulated else "")]
        cells += [_ms(m.latency.get(b)) for b in batch_sizes]
        if batch_sizes:
            last = m.latency.get(batch_sizes[-1])
            cells.append("-" if last is None else f"{last.throughput_ips:,.0f}")
        peak = f"{fmt_bytes(m.peak_rss_bytes)} ({fmt_bytes(m.extra.get('rss_increase_bytes'))})"
        cells += [peak, fmt_bytes(m.size_bytes)]
        table.add_row(*cells)
    out_console.print(table)
    for b, runtime in sorted(result.fastest.items()):
        err_console.print(f"measured fastest here at batch {b}: [bold]{runtime}[/]", highlight=False)
    for b, runtime in sorted(result.default.items()):
        err_console.print(
            f"default runtime at batch {b} (what eval/bench use without --runtime, chosen by the "
            f"file's precision, not by this table): [bold]{runtime}[/]",
            highlight=False,
            soft_wrap=True,
        )
    for runtime, reason in result.failed.items():
        err_console.print(f"[yellow]{runtime}: not measured[/] ({reason})", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("export")(export_cmd)
