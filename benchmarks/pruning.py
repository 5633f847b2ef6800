"""Pruning benchmark: filter pruning (L1, L2, FPGM) at ~1.5x/2x/3x fewer MACs and gradual magnitude
pruning (50-95% sparsity) of the pretrained CIFAR ResNets, each fine-tuned with the same budget and
compared with the unpruned model fine-tuned with that budget.

    python benchmarks/pruning.py [--models resnet56,resnet20] [--epochs 1] [--limit 20000]

Accuracy is measured on the JPEG CIFAR-10 test set after fine-tuning on the JPEG train set; latency
on eager PyTorch and ONNX Runtime FP32 (batch 1 and 32); file sizes of the saved artifacts
(dense, and CSR for unstructured sparsity). Writes its tables into docs/benchmarks.md.
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
from edgeslim.export import export_onnx, ort_latency, ort_session
from edgeslim.models import create_model, load_weights
from edgeslim.pruning import FilterPruning, GradualPruning, PruningConfig, ratio_for_mac_reduction
from edgeslim.select import LayerSelection
from edgeslim.train import TrainConfig

WEIGHTS = {
    "resnet20": "resnet20-12fca82f.th",
    "resnet32": "resnet32-d509ac18.th",
    "resnet44": "resnet44-014dd654.th",
    "resnet56": "resnet56-4bfd9763.th",
}


def run_one(
    name: str,
    config: PruningConfig,
    label: str,
    args: argparse.Namespace,
    workdir: Path,
    select: LayerSelection | None,
) -> tuple[list[object], dict[str, float]]:
    root = data_root()
    source = tasks.ModelSource(name=name, weights=root / "pretrained" / WEIGHTS[name])
    data = tasks.DataSource(path=str(root / "cifar10-jpeg"), split="test", train_limit=args.limit, seed=0)
    finetune = TrainConfig(
        epochs=args.epochs,
        batch_size=128,
        lr=args.lr,
        bf16=True,
        channels_last=True,
        seed=0,
        warmup_epochs=0.0,
    )
    out = workdir / f"{name}-{label}.pt"
    layout = "csr" if isinstance(config, GradualPruning) else "dense"
    t0 = time.perf_counter()
    outcome = tasks.prune_task(
        source,
        config,
        out=out,
        select=select if isinstance(config, FilterPruning) else None,
        data_source=data,
        finetune=finetune,
        layout=layout,
        latency_batch_sizes=(1, 32),
        latency_runs=args.runs,
        num_threads=args.threads,
        progress=False,
    )
    seconds = time.perf_counter() - t0
    model, _ = tasks.ModelSource(checkpoint=out).build()
    onnx = export_onnx(model, workdir / f"{name}-{label}.onnx")
    session = ort_session(onnx.path, threads=args.threads)
    ort = ort_latency(session, (3, 32, 32), (1, 32), runs=args.runs)
    r = outcome.report
    metrics = {
        "top1": float(outcome.top1_after or 0.0),
        "macs": r.mac_reduction,
        "sparsity": r.sparsity,
        "bytes": float(outcome.size_bytes),
        "torch32": outcome.latency_after[32].median_ms,
        "ort32": ort[32].median_ms,
    }
    return [
        name,
        label,
        f"{outcome.top1_after:.2f}",
        f"{r.mac_reduction:.2f}x",
        f"{r.params_after:,}",
        f"{100 * r.sparsity:.1f}%",
        f"{outcome.size_bytes / 1e6:.2f} MB ({layout})",
        f"{outcome.latency_after[1].median_ms:.2f}",
        f"{outcome.latency_after[32].median_ms:.1f}",
        f"{ort[1].median_ms:.2f}",
        f"{ort[32].median_ms:.1f}",
        f"{seconds:.0f}",
    ], metrics


def summarize(name: str, results: list[tuple[str, dict[str, float]]]) -> list[str]:
    """The issue's goals, checked against this run's rows for one model."""
    base = dict(results)["unpruned"]
    lines: list[str] = []
    two_x = [(k, m) for k, m in results if " 2x MACs" in k]
    if two_x:
        best_label, best = max(two_x, key=lambda km: km[1]["top1"])
        gap = base["top1"] - best["top1"]
        lines.append(
            f"{name}: at {best['macs']:.2f}x fewer MACs the best criterion ({best_label.split()[0]}) reaches "
            f"{best['top1']:.2f}% vs {base['top1']:.2f}% unpruned, {gap:+.2f} points behind "
            f"(goal <= 0.5: {'met' if gap <= 0.5 else 'not met'})"
        )
        for runtime, key in (("torch", "torch32"), ("ORT", "ort32")):
            ratios = [(base[key] / m[key]) / m["macs"] for _, m in two_x]
            lines.append(
                f"{name}: batch-32 {runtime} speed-up / MAC reduction at 2x: "
                + ", ".join(f"{r:.2f}" for r in ratios)
                + f" (goal >= 0.8: {'met' if min(ratios) >= 0.8 else 'not met' if max(ratios) < 0.8 else 'partly met'})"
            )
    ninety = dict(results).get("gradual 90%")
    if ninety is not None:
        gap = base["top1"] - ninety["top1"]
        lines.append(
            f"{name}: 90% sparsity {ninety['top1']:.2f}% vs {base['top1']:.2f}%, {gap:+.2f} points "
            f"(goal <= 1: {'met' if gap <= 1.0 else 'not met'}); CSR file {ninety['bytes'] / base['bytes']:.2f}x "
            f"the dense one (goal <= 0.25: {'met' if ninety['bytes'] <= 0.25 * base['bytes'] else 'not met'})"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet56,resnet20")
    parser.add_argument("--epochs", type=int, default=1, help="fine-tune epochs (same budget for every row)")
    parser.add_argument("--limit", type=int, default=20000, help="training images used for fine-tuning")
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--mac-targets", default="1.5,2,3")
    parser.add_argument("--criteria", default="l1,l2,fpgm")
    parser.add_argument("--sparsities", default="0.5,0.7,0.9,0.95")
    parser.add_argument(
        "--section", default="pruning", help="docs/benchmarks.md section to write (keeps other runs' tables)"
    )
    parser.add_argument(
        "--include",
        default="*.conv1",
        help="layers whose output channels filter pruning may remove ('' = every conv; '*.conv1' = inside "
        "residual blocks only, leaving the residual stream whole)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = data_root()
    rows: list[list[object]] = []
    goals: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for name in args.models.split(","):
            model = create_model(name)
            load_weights(model, root / "pretrained" / WEIGHTS[name])
            example = torch.randn(1, 3, 32, 32)
            select = LayerSelection(patterns=(args.include,)) if args.include else None
            plan: list[tuple[str, PruningConfig]] = [("unpruned", FilterPruning(ratio=0.0))]
            for target in (float(t) for t in args.mac_targets.split(",")):
                ratio, _ = ratio_for_mac_reduction(model, target, example_inputs=example, select=select)
                for crit in args.criteria.split(","):
                    plan.append(
                        (f"{crit} {target:g}x MACs (ratio {ratio:.3f})", FilterPruning(ratio, criterion=crit))
                    )  # type: ignore[arg-type]
            for s in (float(x) for x in args.sparsities.split(",")):
                plan.append((f"gradual {100 * s:.0f}%", GradualPruning(final_sparsity=s)))
            results: list[tuple[str, dict[str, float]]] = []
            for label, config in plan:
                row, metrics = run_one(
                    name, config, label.split(" (")[0].replace(" ", "_"), args, workdir, select
                )
                row[1] = label
                print(" | ".join(str(c) for c in row), flush=True)
                rows.append(row)
                results.append((label.split(" (")[0], metrics))
            goals += summarize(name, results)
    env = env_fingerprint()
    headers = [
        "model",
        "pruning",
        "top-1 %",
        "MACs",
        "params",
        "sparsity",
        "file",
        "torch b1 ms",
        "torch b32 ms",
        "ORT b1 ms",
        "ORT b32 ms",
        "time s",
    ]
    body = (
        f"## Pruning: {args.models} (`benchmarks/pruning.py`)\n\n"
        f"Pretrained CIFAR ResNets, each row fine-tuned for {args.epochs} epoch(s) on {args.limit:,} JPEG "
        f"CIFAR-10 training images (SGD lr {args.lr}, cosine, bf16) and evaluated on the 10,000-image JPEG "
        f"test set; `unpruned` had the same fine-tuning. Filter pruning selects `{args.include or 'every conv'}`; "
        f"gradual pruning covers every conv (classifier excluded) and ramps over the first 3/4 of the budget. "
        f"Latency: {args.threads} threads, median of "
        f"{args.runs} runs, {env['cpu_model']}. Command: `python benchmarks/pruning.py --models {args.models} "
        f"--epochs {args.epochs} --limit {args.limit} --mac-targets {args.mac_targets} --criteria {args.criteria} "
        f"--sparsities {args.sparsities} --include '{args.include}' --section {args.section}`.\n\n"
        + markdown_table(headers, rows)
        + "\n\nGoals, checked on this run:\n\n"
        + "\n".join(f"- {line}" for line in goals)
        + "\n"
    )
    print(body)
    print(f"written to {write_section(args.section, body)}")


if __name__ == "__main__":
    main()
