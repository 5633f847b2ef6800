"""Quantization benchmark: static int8 PTQ variants, QAT at 8/4/2 bits in both scopes, and dynamic int8
on the linear-heavy small CNN, each reported with simulated (fake-quant) and deployed accuracy, file
sizes and measured latency of the deployed artifact.

    python benchmarks/quantization.py [--models resnet20] [--qat-epochs 1] [--threads 2]

Data: the pixel-exact CIFAR-10 subset (calibration and QAT on its train split, accuracy on its 1,017
test images). Latency: ONNX Runtime FP32 vs int8 QDQ, OpenVINO int8, batch 1 and 32. Writes its table
into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from _common import data_root, markdown_table, write_section
from edgeslim import tasks
from edgeslim.bench import env_fingerprint
from edgeslim.data import BatchLoader, ImageTensors
from edgeslim.export import export_onnx, openvino_latency, ort_latency, ort_session, run_deployed
from edgeslim.quantization import (
    QAT,
    DynamicQuant,
    QuantizationConfig,
    StaticQuant,
)
from edgeslim.train import TrainConfig

WEIGHTS = {"resnet20": "resnet20-12fca82f.th", "resnet56": "resnet56-4bfd9763.th"}


def latencies(onnx: Path | None, threads: int, runs: int) -> tuple[str, str]:
    if onnx is None:
        return "-", "-"
    ort = ort_latency(ort_session(onnx, threads=threads), (3, 32, 32), (1, 32), runs=runs)
    try:
        ov = openvino_latency(onnx, (3, 32, 32), (1, 32), threads=threads, runs=runs)
        ov_cell = f"{ov[1].median_ms:.2f} / {ov[32].median_ms:.1f}"
    except Exception as exc:  # OpenVINO is optional
        ov_cell = f"n/a ({type(exc).__name__})"
    return f"{ort[1].median_ms:.2f} / {ort[32].median_ms:.1f}", ov_cell


def deployed_top1(runner: object, data: ImageTensors | None) -> str:
    """Accuracy of a deployed artifact (ORT session or OpenVINO model) on the JPEG test set."""
    if data is None:
        return "-"
    correct = 0
    for x, y in BatchLoader(data, 256):
        correct += int((torch.from_numpy(run_deployed(runner, x.numpy())).argmax(1) == y).sum())
    return f"{100.0 * correct / len(data):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet20")
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--qat-bits", default="8,4,2")
    parser.add_argument(
        "--qat-lr", type=float, default=0.0005, help="0.005 made QAT of the pretrained nets diverge"
    )
    parser.add_argument(
        "--jpeg-test",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also evaluate every deployed artifact on the 10,000-image JPEG test set",
    )
    parser.add_argument(
        "--small-cnn-epochs",
        type=int,
        default=2,
        help="train small_cnn this long on the JPEG train set before dynamic quantization (0: untrained)",
    )
    parser.add_argument(
        "--variants",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="all PTQ variants (per-tensor/per-channel x fuse on/off, both scopes); --no-variants: per-channel, "
        "fused, all_layers only",
    )
    parser.add_argument("--scopes", default="all_layers,weights_and_activations", help="QAT scopes")
    parser.add_argument("--section", default="quantization", help="docs/benchmarks.md section to write")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = data_root()
    data = tasks.DataSource(path=str(root / "cifar10-exact-subset"), split="test", seed=0)
    jpeg = (
        tasks.DataSource(path=str(root / "cifar10-jpeg"), split="test", seed=0).load("test")
        if args.jpeg_test
        else None
    )
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.models.split(","):
            source = tasks.ModelSource(name=name, weights=root / "pretrained" / WEIGHTS[name])
            model, _ = source.build()
            fp32 = export_onnx(model, work / f"{name}-fp32.onnx")
            ort_fp32 = ort_latency(
                ort_session(fp32.path, threads=args.threads), (3, 32, 32), (1, 32), runs=args.runs
            )
            ov_fp32 = openvino_latency(fp32.path, (3, 32, 32), (1, 32), threads=args.threads, runs=args.runs)
            fp32_jpeg = deployed_top1(ort_session(fp32.path, threads=args.threads), jpeg)
            plan: list[tuple[str, QuantizationConfig, TrainConfig | None]] = []
            variants = (
                [(False, True), (False, False), (True, True), (True, False)]
                if args.variants
                else [(True, True)]
            )
            for per_channel, fuse in variants:
                granularity = "per-channel" if per_channel else "per-tensor"
                label = f"PTQ int8 {granularity}, fuse {'on' if fuse else 'off'}, all_layers"
                plan.append(
                    (
                        label,
                        StaticQuant(bits=8, per_channel=per_channel, fuse_bn=fuse, scope="all_layers"),
                        None,
                    )
                )
            if args.variants:
                plan.append(
                    (
                        "PTQ int8, weights_and_activations",
                        StaticQuant(bits=8, scope="weights_and_activations"),
                        None,
                    )
                )
            for bits in (int(b) for b in args.qat_bits.split(",") if b):
                for scope in args.scopes.split(","):
                    qat_cfg = QAT(weight_bits=bits, act_bits=8, scope=scope)  # type: ignore[arg-type]
                    train = TrainConfig(epochs=args.qat_epochs, batch_size=128, lr=args.qat_lr, seed=0)
                    plan.append((f"QAT w{bits}/a8 {scope}", qat_cfg, train))
            first = True
            for label, config, train_cfg in plan:
                t0 = time.perf_counter()
                o = tasks.quantize_task(
                    source,
                    config,
                    out=work / f"{name}.pt",
                    data_source=data,
                    qat_training=train_cfg,
                    num_threads=args.threads,
                    progress=False,
                )
                ort_cell, ov_cell = latencies(o.onnx_path, args.threads, args.runs)
                if first:
                    rows.append(
                        [
                            name,
                            "FP32",
                            f"{o.top1_fp32:.2f}",
                            "-",
                            "-",
                            fp32_jpeg,
                            f"{o.size_bytes_fp32 / 1e6:.2f}",
                            "-",
                            f"{fp32.size_bytes / 1e6:.2f}",
                            f"{ort_fp32[1].median_ms:.2f} / {ort_fp32[32].median_ms:.1f}",
                            f"{ov_fp32[1].median_ms:.2f} / {ov_fp32[32].median_ms:.1f} (FP32)",
                            "-",
                        ]
                    )
                    first = False
                rows.append(
                    [
                        name,
                        label,
                        f"{o.top1_fp32:.2f}",
                        f"{o.top1_simulated:.2f}",
                        f"{o.top1_deployed:.2f}",
                        deployed_top1(ort_session(o.onnx_path, threads=args.threads), jpeg)
                        if o.onnx_path
                        else "-",
                        f"{o.size_bytes / 1e6:.3f}",
                        f"{100.0 * (o.size_bytes / o.size_bytes_ideal - 1):+.1f}%",
                        f"{(o.onnx_size_bytes or 0) / 1e6:.2f}",
                        ort_cell,
                        ov_cell,
                        f"{time.perf_counter() - t0:.0f}",
                    ]
                )
                print(" | ".join(str(c) for c in rows[-1]), flush=True)
        # dynamic int8 on the linear-heavy small CNN, trained briefly on the JPEG train set first
        small = tasks.ModelSource(name="small_cnn")
        small_label = "small_cnn (untrained)"
        if args.small_cnn_epochs > 0:
            trained = Path(tmp) / "small_cnn-trained.pt"
            tasks.train_task(
                small,
                tasks.DataSource(path=str(root / "cifar10-jpeg"), split="train", seed=0),
                TrainConfig(epochs=args.small_cnn_epochs, batch_size=128, lr=0.05, seed=0),
                out=trained,
                validate=False,
                num_threads=args.threads,
                progress=False,
            )
            small = tasks.ModelSource(checkpoint=trained)
            small_label = f"small_cnn ({args.small_cnn_epochs} epochs on JPEG train)"
        o = tasks.quantize_task(
            small,
            DynamicQuant(bits=8),
            out=Path(tmp) / "small.pt",
            data_source=data,
            num_threads=args.threads,
            progress=False,
        )
        rows.append(
            [
                small_label,
                "dynamic int8",
                f"{o.top1_fp32:.2f}",
                f"{o.top1_simulated:.2f}",
                f"{o.top1_deployed:.2f} (torch int8)",
                "-",
                f"{o.size_bytes / 1e6:.3f}",
                f"{100.0 * (o.size_bytes / o.size_bytes_ideal - 1):+.1f}%",
                f"FP32 {o.size_bytes_fp32 / 1e6:.2f}",
                "-",
                "-",
                "-",
            ]
        )
    env = env_fingerprint()
    headers = [
        "model",
        "quantization",
        "top-1 FP32",
        "top-1 simulated",
        "top-1 deployed (ORT int8)",
        "deployed, JPEG test set",
        "packed file MB",
        "file vs ideal",
        "ONNX MB",
        "ORT ms b1 / b32",
        "OpenVINO ms b1 / b32",
        "time s",
    ]
    body = (
        f"## Quantization: {args.models} (`benchmarks/quantization.py`)\n\n"
        f"Pretrained CIFAR ResNets on the pixel-exact CIFAR-10 subset (1,017 test images; calibration and "
        f"{args.qat_epochs}-epoch QAT, SGD lr {args.qat_lr}, on its train split). "
        "Weights symmetric (per-channel unless stated), activations asymmetric uint8. "
        "Deployed = the QDQ ONNX artifact in "
        "ONNX Runtime; below 8 bits the runtimes execute int8 (the packed file holds the low-bit codes). "
        "'deployed, JPEG test set' runs the same artifact on the 10,000 JPEG test images (the pretrained nets "
        "lose ~9 points on JPEG, see the data README). 'file vs ideal': packed file against bits x params / 8 "
        "plus scales, zero points and the other tensors as stored. "
        f"Latency: median, {args.threads} threads, {env['cpu_model']}. Command: `python "
        f"benchmarks/quantization.py --models {args.models} --qat-epochs {args.qat_epochs} "
        f"--qat-bits {args.qat_bits} --scopes {args.scopes} --small-cnn-epochs {args.small_cnn_epochs} "
        f"--threads {args.threads} --runs {args.runs}{'' if args.variants else ' --no-variants'} "
        f"--section {args.section}`.\n\n" + markdown_table(headers, rows) + "\n"
    )
    print(body)
    print(f"written to {write_section(args.section, body)}")


if __name__ == "__main__":
    main()
