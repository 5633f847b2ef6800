"""Runtime benchmark: every zoo model (32x32; resnet50 and mobilenet_v2 also at 224x224), FP32 and int8,
on each runtime present, batch 1 and 32: latency (median / p90), throughput, memory, file size, parity;
and whether the runtime edgeslim picks by default is within 10% of the fastest one measured.

    python benchmarks/runtimes.py                                     # everything (long)
    python benchmarks/runtimes.py --models resnet20,mobilenet_v2@224 --repeats 10   # a few minutes

Each model is written as a real artifact first (an edgeslim checkpoint for FP32; a packed int8 file
from static PTQ for int8) and measured with ``edgeslim.export.benchmark_artifact``: PyTorch runs
the checkpoint; ONNX Runtime and OpenVINO run a parity-checked export of it (int8: the QDQ graph);
TensorRT runs where CUDA and TensorRT are present. Parity uses 64 real CIFAR-10 test images
(bilinearly resized for 224x224 inputs). A runtime whose parity fails is reported, never timed.
int8 in PyTorch would be fake quantization (float arithmetic), so int8 rows cover the int8 runtimes
only. Weights: pretrained CIFAR ResNet-20/32/44/56 where available, random initialization for the
rest with BatchNorm statistics re-estimated on 512 real images (latency, memory and size do not depend
on the values; parity needs input-dependent logits). Writes its table into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from _common import data_root, markdown_table, write_section
from edgeslim import tasks
from edgeslim.bench import env_fingerprint
from edgeslim.checkpoint import save_checkpoint
from edgeslim.data import BatchLoader
from edgeslim.export import benchmark_artifact
from edgeslim.export.bench import RuntimeComparison
from edgeslim.models import create_model, list_models, load_weights
from edgeslim.quantization import StaticQuant, quantize, save_packed

PRETRAINED = {
    "resnet20": "resnet20-12fca82f.th",
    "resnet32": "resnet32-d509ac18.th",
    "resnet44": "resnet44-014dd654.th",
    "resnet56": "resnet56-4bfd9763.th",
}
LARGE = ("resnet50@224", "mobilenet_v2@224")


def all_models() -> list[str]:
    return list_models(tiny=False) + list(LARGE)


def parse_model(spec: str) -> tuple[str, int]:
    name, _, size = spec.partition("@")
    return name, int(size or 32)


def real_images(root: Path, n: int, size: int) -> torch.Tensor:
    data = tasks.DataSource(path=str(root / "cifar10-exact-subset"), split="test", limit=n).load("test")
    x = next(iter(BatchLoader(data, n)))[0]
    return x if size == 32 else F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def calibration_batches(root: Path, size: int, batches: int) -> list[torch.Tensor]:
    data = tasks.DataSource(path=str(root / "cifar10-exact-subset"), limit=32 * batches).load("train")
    out = []
    for x, _ in BatchLoader(data, 32, shuffle=True, seed=0):
        out.append(
            x if size == 32 else F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        )
        if len(out) == batches:
            break
    return out


def estimate_bn_statistics(model: torch.nn.Module, images: torch.Tensor) -> None:
    """Re-estimate BatchNorm statistics on real images: a randomly initialized zoo model otherwise
    predicts one class for every input (or has near-zero logits), which would make parity trivial."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches seen
    model.train()
    with torch.no_grad():
        for start in range(0, len(images), 64):
            model(images[start : start + 64])
    model.eval()


def mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f}"


def cell_ms(result: RuntimeComparison, runtime: str, b: int) -> str:
    m = result.measurement(runtime)
    if m is None or b not in m.latency:
        return "-"
    s = m.latency[b]
    return f"{s.median_ms:.2f} / {s.p90_ms:.2f}"


def policy_rows(
    model: str, precision: str, result: RuntimeComparison, sizes: list[int]
) -> list[dict[str, Any]]:
    """For each batch size: the fastest runtime, edgeslim's default pick and how far the pick is behind."""
    out: list[dict[str, Any]] = []
    for b in sizes:
        medians = {m.runtime: m.latency[b].median_ms for m in result.measurements if b in m.latency}
        if not medians:
            continue
        pick = result.default[b]
        fastest = min(medians, key=lambda r: medians[r])
        ratio = medians[pick] / medians[fastest]
        out.append(dict(model=model, precision=precision, batch=b, fastest=fastest, pick=pick, ratio=ratio))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default="all", help="comma-separated zoo names, NAME@SIZE for other inputs"
    )
    parser.add_argument("--batch", default="1,32", help="batch sizes")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per batch size")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibration-batches", type=int, default=4)
    parser.add_argument(
        "--write", action=argparse.BooleanOptionalAction, default=True, help="docs/benchmarks.md"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = data_root()
    sizes = [int(b) for b in args.batch.split(",")]
    specs = all_models() if args.models == "all" else args.models.split(",")
    precisions = args.precisions.split(",")
    rows: list[list[object]] = []
    policy: list[dict[str, Any]] = []
    not_measured: list[str] = []
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for spec in specs:
            name, size = parse_model(spec)
            label = name if size == 32 else f"{name} @{size}"
            model = create_model(name).eval()
            weights = PRETRAINED.get(name)
            images = real_images(root, 64, size)
            if weights and size == 32:
                load_weights(model, root / "pretrained" / weights)
            else:
                estimate_bn_statistics(model, torch.cat(calibration_batches(root, size, 8)))
            for precision in precisions:
                t0 = time.perf_counter()
                if precision == "fp32":
                    path = save_checkpoint(work / f"{name}-{size}.pt", model, model_name=name)
                    runtimes = ["torch", "ort", "openvino", "tensorrt"]
                else:
                    config = StaticQuant(
                        bits=8, calibration_batches=args.calibration_batches, scope="all_layers"
                    )
                    calib = calibration_batches(root, size, args.calibration_batches)
                    qmodel = quantize(model, config, calibration=calib, example_inputs=images[:2]).model
                    spec_dict = {"name": name, "kwargs": {"num_classes": 10}}
                    meta = {"quantization": config.to_dict()}
                    path = save_packed(
                        work / f"{name}-{size}-int8.pt", qmodel, model_spec=spec_dict, meta=meta
                    ).path
                    runtimes = ["ort", "openvino", "tensorrt"]
                result = benchmark_artifact(
                    path,
                    runtimes,
                    input_size=(3, size, size),
                    batch_sizes=sizes,
                    num_threads=args.threads,
                    warmup=args.warmup,
                    runs=args.repeats,
                    parity_inputs=images,
                    parity_source="real test images",
                )
                for m in result.measurements:
                    parity = result.parity.get(m.runtime)
                    parity_cell = (
                        f"{parity['max_abs_diff']:.2g} / {100 * parity['top1_agreement']:.0f}%"
                        if parity
                        else "reference"
                    )
                    marks = [f"fastest b{b}" for b, r in result.fastest.items() if r == m.runtime]
                    marks += [f"default b{b}" for b, r in result.default.items() if r == m.runtime]
                    row: list[object] = [label, precision, m.runtime]
                    row += [cell_ms(result, m.runtime, b) for b in sizes]
                    last = m.latency[sizes[-1]]
                    row += [
                        f"{last.throughput_ips:,.0f}",
                        mib(m.peak_rss_bytes) + f" ({mib(m.extra.get('rss_increase_bytes'))})",
                        f"{(m.size_bytes or 0) / 1e6:.2f}",
                        parity_cell,
                        ", ".join(marks),
                    ]
                    rows.append(row)
                    print(" | ".join(str(c) for c in row), flush=True)
                for runtime, reason in result.failed.items():
                    text = f"{label} {precision} {runtime}: {reason}"
                    if runtime == "tensorrt" and ("not installed" in reason or "CUDA" in reason):
                        text = f"{runtime}: {reason}"
                    if text not in not_measured:
                        not_measured.append(text)
                    if "parity" in reason:
                        rows.append(
                            [
                                label,
                                precision,
                                runtime,
                                *["-"] * len(sizes),
                                "-",
                                "-",
                                "-",
                                reason[:60],
                                "FAILED",
                            ]
                        )
                policy += policy_rows(label, precision, result, sizes)
                print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    load_after = os.getloadavg()[0]
    met = [p for p in policy if p["ratio"] <= 1.10]
    headers = ["model", "precision", "runtime", *[f"b{b} ms (median / p90)" for b in sizes]]
    headers += [
        f"b{sizes[-1]} img/s",
        "peak RSS MiB (model + run)",
        "file MB",
        "parity max abs diff / top-1",
        "note",
    ]
    env = env_fingerprint()
    misses = [
        f"{p['model']} {p['precision']} b{p['batch']}: picked {p['pick']}, {p['fastest']} was {p['ratio']:.2f}x faster"
        for p in policy
        if p["ratio"] > 1.10
    ]
    command = "python benchmarks/runtimes.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("write",)
    )
    not_measured = [n.replace("|diff|", "abs diff") for n in not_measured]
    body = "\n".join(
        [
            "## Runtimes (`benchmarks/runtimes.py`)",
            "",
            f"Each model as a real artifact on each runtime: PyTorch eager on the checkpoint, ONNX Runtime and "
            f"OpenVINO (CPU) on a parity-checked export (int8: static PTQ per-channel, all layers, QDQ). "
            f"{args.threads} threads, {args.repeats} timed runs after {args.warmup} warm-up, {env.get('cpu_model')}, "
            f"torch {env.get('torch_version')}. Memory: peak RSS of a fresh process that imports only the runtime, "
            f"loads the artifact and runs one batch of {sizes[-1]}; in brackets the part above the runtime's own "
            f"footprint. Parity: 64 real CIFAR-10 test images vs PyTorch "
            f"(int8: vs the fake-quantized model). Command: `{command}` ({time.perf_counter() - started:.0f} s). "
            f"Load average (1 min) on the {os.cpu_count()} cores: {load_before:.1f} at the start, {load_after:.1f} at "
            "the end; with more runnable processes than cores, latencies include waiting for a core.",
            "",
            markdown_table(headers, rows),
            "",
            f"Default runtime policy (`edgeslim.export.default_runtime`): within 10% of the fastest runtime in "
            f"{len(met)} of {len(policy)} (model, precision, batch) cases"
            + (" - goal met." if len(met) == len(policy) else " - goal not met everywhere:"),
            *[f"- {m}" for m in misses],
            "",
            "Not measured: " + ("; ".join(not_measured) if not_measured else "none"),
        ]
    )
    print(body)
    if args.write:
        print(f"wrote {write_section('runtimes', body)}")


if __name__ == "__main__":
    main()
