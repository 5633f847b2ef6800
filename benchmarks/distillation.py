"""Distillation benchmark: ResNet-20 trained from scratch with no teacher, with Hinton KD and with
activation-boundary transfer (AB) from the pretrained ResNet-56, all at one fixed short budget.

    python benchmarks/distillation.py [--epochs 4] [--limit 25000] [--methods none,kd,ab]
    python benchmarks/distillation.py --chain [--threads 1] [--train-limit 20000]

``--chain`` is the second table (section "distillation-chain"): the recipe
examples/recipes/distill_prune_qat.yaml (KD -> 80% gradual pruning -> 8-bit QAT -> ONNX Runtime int8)
run by the recipe runner, against the FP32 teacher run through a small recipe of its own (measure,
export FP32 ONNX, measure); see :func:`chain_main`.

Every row starts from the same initial weights (same seed), sees the same batches (same loader
seed) for the same number of epochs with the same optimizer and LR schedule (SGD Nesterov, cosine,
bf16 autocast, channels_last); AB's label-free initialization epoch(s) count inside that budget.
Accuracy: the JPEG CIFAR-10 test set (10,000 images unless --test-limit). Writes its table into
docs/benchmarks.md (section "distillation"); --no-write only prints it.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from _common import REPO, data_root, markdown_table, write_section
from edgeslim.bench import count_params, env_fingerprint, threads
from edgeslim.data import Augment, BatchLoader, ImageTensors, load_dataset
from edgeslim.distillation import AB, KD, DistillConfig, Hint, distill
from edgeslim.models import create_model, load_weights
from edgeslim.train import TrainConfig, evaluate, seed_everything, train

TEACHER_WEIGHTS = "resnet56-4bfd9763.th"
METHODS = ("none", "kd", "ab", "ab_kd", "hint")


def method_config(method: str, args: argparse.Namespace) -> DistillConfig | None:
    if method == "none":
        return None
    if method == "kd":
        return KD(alpha=args.alpha, temperature=args.temperature)
    if method in ("ab", "ab_kd"):
        return AB(
            init_epochs=args.init_epochs,
            margin=args.margin,
            finish="kd" if method == "ab_kd" else "ce",
            alpha=args.alpha,
            temperature=args.temperature,
        )
    return Hint(init_epochs=args.init_epochs, alpha=args.alpha, temperature=args.temperature)


def label(method: str, args: argparse.Namespace) -> str:
    kd = f"alpha {args.alpha}, T {args.temperature:g}"
    return {
        "none": "no distillation (cross-entropy)",
        "kd": f"Hinton KD ({kd})",
        "ab": f"AB ({args.init_epochs} init epoch, margin {args.margin:g}) then cross-entropy",
        "ab_kd": f"AB ({args.init_epochs} init epoch, margin {args.margin:g}) then KD ({kd})",
        "hint": f"FitNets hint ({args.init_epochs} init epoch) then KD ({kd})",
    }[method]


def run_method(
    method: str,
    teacher: torch.nn.Module,
    train_data: ImageTensors,
    test_data: ImageTensors,
    config: TrainConfig,
    args: argparse.Namespace,
) -> dict[str, Any]:
    seed_everything(args.seed)
    student = create_model("resnet20", num_classes=train_data.num_classes)
    augment = Augment() if args.augment else Augment.none()
    loader = BatchLoader(
        train_data,
        config.batch_size,
        shuffle=True,
        augment=augment,
        drop_last=True,
        seed=args.seed,
        channels_last=config.channels_last,
    )
    distill_config = method_config(method, args)
    start = time.perf_counter()
    extra: dict[str, Any] = {}
    if distill_config is None:
        result = train(student, loader, config, progress=args.progress)
        history = result.history
    else:
        outcome = distill(
            student,
            teacher,
            distill_config,
            loader,
            train_config=config,
            input_size=tuple(train_data.images.shape[1:]),
            cache_teacher_logits=not args.augment,
            progress=args.progress,
        )
        history = outcome.history
        if outcome.init is not None and outcome.init.history:
            last_init = outcome.init.history[-1]
            if "boundary_agreement" in last_init:
                extra["boundary agreement after init"] = f"{last_init['boundary_agreement']:.1f}%"
        if "teacher_agreement" in history[-1]:
            extra["train agreement with teacher"] = f"{history[-1]['teacher_agreement']:.1f}%"
    seconds = time.perf_counter() - start
    student.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    top1 = evaluate(student, BatchLoader(test_data, 500)).top1
    images = sum(len(loader) * config.batch_size for _ in history)
    row = {
        "method": method,
        "label": label(method, args),
        "top1": top1,
        "seconds": seconds,
        "images_per_s": images / seconds,
        "train_top1": history[-1]["train_top1"],
        "extra": extra,
    }
    print(f"{method}: top-1 {top1:.2f}%  {seconds:.0f}s  {extra}", file=sys.stderr, flush=True)
    return row


# -- the chain: KD -> gradual pruning -> QAT -> ONNX Runtime int8, against the FP32 teacher ----------
CHAIN_RECIPE = REPO / "examples" / "recipes" / "distill_prune_qat.yaml"


def chain_recipes(args: argparse.Namespace) -> tuple[Any, Any]:
    """The example chain recipe with this run's overrides, and the teacher's baseline recipe."""
    from edgeslim.recipe import parse_recipe

    raw = yaml.safe_load(CHAIN_RECIPE.read_text())
    raw["threads"] = args.threads
    if args.train_limit is not None:
        raw["data"]["train_limit"] = args.train_limit
    raw["data"]["test_limit"] = args.test_limit
    for step in raw["steps"]:
        epochs = {"distill": args.kd_epochs, "prune": args.prune_epochs, "quantize": args.qat_epochs}.get(
            step["type"]
        )
        if epochs is not None:
            step["train"]["epochs"] = epochs
        if step["type"] == "measure":
            step["runs"] = args.runs
    chain = parse_recipe(
        yaml.safe_dump(raw, sort_keys=False), source=str(CHAIN_RECIPE), base_dir=CHAIN_RECIPE.parent
    )
    teacher_step = next(s for s in raw["steps"] if s["type"] == "distill")["teacher"]
    measure = {"batch_sizes": [1, 32], "runs": args.runs}
    teacher = {
        "name": f"{chain.name}-teacher",
        "description": "the FP32 teacher as deployed: PyTorch eager and an FP32 ONNX file in ONNX Runtime",
        "model": teacher_step,
        "data": raw["data"],
        "threads": args.threads,
        "steps": [
            {"type": "measure", "runtime": "torch", **measure},
            {"type": "export", "format": "onnx", "precision": "fp32"},
            {"type": "measure", "runtime": "ort", **measure},
        ],
    }
    baseline = parse_recipe(
        yaml.safe_dump(teacher, sort_keys=False), source="teacher baseline", base_dir=CHAIN_RECIPE.parent
    )
    return chain, baseline


def interleaved_latency(paths: dict[str, Path], args: argparse.Namespace) -> dict[str, dict[int, float]]:
    """Median latency per artifact and batch size in ONNX Runtime, the artifacts measured in turn
    for ``args.rounds`` rounds (so a busy spell on the shared CPU hits both), median over rounds."""
    from edgeslim.export import open_runner

    runners = {label: open_runner(path, "ort", threads=args.threads) for label, path in paths.items()}
    medians: dict[str, dict[int, list[float]]] = {label: {1: [], 32: []} for label in paths}
    for _ in range(args.rounds):
        for label, runner in runners.items():
            for b, stats in runner.latency((3, 32, 32), (1, 32), warmup=5, runs=args.runs).items():
                medians[label][b].append(stats.median_ms)
    return {label: {b: statistics.median(v) for b, v in per.items()} for label, per in medians.items()}


def gzip_size(path: Path) -> int:
    """Bytes of ``path`` compressed with gzip -9, written beside it (what a download would carry)."""
    target = path.with_name(path.name + ".gz")
    target.write_bytes(gzip.compress(path.read_bytes(), 9))
    return target.stat().st_size


def chain_main(args: argparse.Namespace) -> None:
    """Run the teacher baseline and the chain recipe (resuming finished steps), then the table."""
    from edgeslim.bench import env_fingerprint
    from edgeslim.recipe import run_recipe

    root = data_root()
    os.environ.setdefault("EDGESLIM_DATA", str(root))  # the recipes name files relative to it
    chain, baseline = chain_recipes(args)
    db = Path(args.db)
    shown_db = db.resolve().relative_to(REPO) if db.resolve().is_relative_to(REPO) else db
    teacher_run = run_recipe(baseline, db=db, out_dir=db.parent / baseline.name, progress=args.progress)
    chain_run = run_recipe(chain, db=db, out_dir=db.parent / chain.name, progress=args.progress)
    t_torch, t_export, t_ort = (s.metrics for s in teacher_run.steps)
    kd, pruned, qat, export, final = (s.metrics for s in chain_run.steps)
    teacher_onnx, student_onnx = Path(teacher_run.steps[1].artifact), Path(chain_run.steps[3].artifact)
    latency = interleaved_latency({"teacher": teacher_onnx, "student": student_onnx}, args)
    teacher_file = Path(str(baseline.model.weights))
    t_top1 = t_ort["top1"]

    def ratio(size: int) -> str:
        return f"{t_export['size_bytes'] / size:.1f}x"

    def lat(metrics: dict[str, Any], b: int) -> str:
        value = (metrics.get("latency_ms_by_batch") or {}).get(str(b))
        return "-" if value is None else f"{value:.2f}"

    rows: list[list[object]] = [
        ["teacher resnet56 FP32, PyTorch eager", "checkpoint", f"{t_torch['size_bytes']:,}",
         ratio(t_torch["size_bytes"]), f"{t_torch['top1']:.2f}", "-", lat(t_torch, 1), lat(t_torch, 32)],
        ["teacher resnet56 FP32, ONNX Runtime (reference)", "FP32 .onnx", f"{t_export['size_bytes']:,}", "1.0x",
         f"{t_top1:.2f}", "-", f"{latency['teacher'][1]:.2f}", f"{latency['teacher'][32]:.2f}"],
        ["1. KD student resnet20 (FP32)", "checkpoint", f"{kd['size_bytes']:,}", ratio(kd["size_bytes"]),
         f"{kd['top1']:.2f}", f"{kd['top1'] - t_top1:+.2f}", "-", "-"],
        [f"2. + {100 * pruned['sparsity']:.0f}% gradual magnitude pruning (FP32, PyTorch)", "dense checkpoint",
         f"{pruned['size_bytes']:,}", ratio(pruned["size_bytes"]), f"{pruned['top1']:.2f}",
         f"{pruned['top1'] - t_top1:+.2f}", lat(pruned, 1), lat(pruned, 32)],
        [f"3. + {qat['bits']}-bit QAT (zeros kept), packed file", "packed int8", f"{qat['size_bytes']:,}",
         ratio(qat["size_bytes"]), f"{qat['top1']:.2f}", f"{qat['top1'] - t_top1:+.2f}", "-", "-"],
        ["4. ONNX Runtime int8 (QDQ), the deployed artifact", "int8 .onnx", f"{final['size_bytes']:,}",
         ratio(final["size_bytes"]), f"{final['top1']:.2f}", f"{final['top1'] - t_top1:+.2f}",
         f"{latency['student'][1]:.2f}", f"{latency['student'][32]:.2f}"],
    ]  # fmt: skip
    table = markdown_table(
        [
            "model / stage",
            "file",
            "bytes",
            "smaller than teacher",
            "top-1 %",
            "vs teacher",
            "ms b1",
            "ms b32",
        ],
        rows,
    )
    size_x = t_export["size_bytes"] / final["size_bytes"]
    drop = t_top1 - final["top1"]
    speed = {b: latency["teacher"][b] / latency["student"][b] for b in (1, 32)}
    gz_student, gz_teacher = gzip_size(student_onnx), gzip_size(teacher_onnx)
    steps = {s.name: s for s in chain_run.steps}
    minutes = sum(float(s.seconds or 0.0) for s in (*teacher_run.steps, *chain_run.steps)) / 60
    env = env_fingerprint()
    command = "python benchmarks/distillation.py " + shlex.join(sys.argv[1:])
    recipe_steps = {s.type: s for s in chain.steps}
    kd_train, prune_train, qat_train = (recipe_steps[t].train for t in ("distill", "prune", "quantize"))  # type: ignore[attr-defined]

    def plural(n: int, word: str) -> str:
        return f"{n} {word}" + ("" if n == 1 else "s")

    kd_alpha, kd_t = recipe_steps["distill"].config.alpha, recipe_steps["distill"].config.temperature  # type: ignore[attr-defined]

    def met(ok: bool) -> str:
        return "met" if ok else "not met"

    def seconds(name: str) -> str:
        return f"{steps[name].seconds or 0.0:.0f}"

    check = export.get("parity") or {}
    parity = (
        f"top-1 agreement {100 * check['top1_agreement']:.1f}% with the fake-quantized model on "
        f"{check['num_inputs']} test images"
        if "top1_agreement" in check
        else "not recorded"
    )

    body = (
        "## Distillation chain (`benchmarks/distillation.py --chain`)\n\n"
        f"The recipe `examples/recipes/distill_prune_qat.yaml` run by `edgeslim.recipe.run_recipe` (one store "
        f"record per step in `{shown_db}`): teacher ResNet-56 (pretrained on the original CIFAR-10, frozen) -> "
        "Hinton KD "
        f"into ResNet-20 -> {100 * pruned['sparsity']:.0f}% gradual magnitude pruning while fine-tuning -> "
        f"{qat['bits']}-bit QAT (per-channel weights, all layers, the pruned weights kept at zero) -> int8 QDQ ONNX "
        "in ONNX Runtime. **Short budget**: the student starts from the pretrained ResNet-20 weights "
        f"(`resnet20-12fca82f.th`), not from scratch, and every step trains on {chain.data.train_limit or 50000:,} "
        f"JPEG training images: KD {plural(kd_train.epochs, 'epoch')} (alpha {kd_alpha:g}, T {kd_t:g}, lr "
        f"{kd_train.lr:g}), pruning {plural(prune_train.epochs, 'epoch')} (lr {prune_train.lr:g}, the sparsity ramp "
        f"over the first 3/4), QAT {plural(qat_train.epochs, 'epoch')} (lr {qat_train.lr:g}). "
        f"Top-1 on {final['num_images']:,} JPEG test images (teacher and student alike; the "
        "teacher was trained on the original images, the student fine-tuned on JPEGs, which favours the student). "
        f"Latency: ONNX Runtime, {plural(args.threads, 'thread')}, median of {args.rounds} rounds of {args.runs} "
        "runs with "
        "teacher and student measured in turn (the CPU is shared with other jobs); the PyTorch rows are the recipe's "
        f"own measurements. {env.get('cpu_model')}, torch {env.get('torch_version')}, onnxruntime "
        f"{env.get('packages', {}).get('onnxruntime')}; steps took {minutes:.1f} min in all. Command: `{command}`.\n\n"
        f"{table}\n\n"
        f"Goals of the issue, against the FP32 teacher in ONNX Runtime: **size** {size_x:.1f}x smaller "
        f"({t_export['size_bytes']:,} -> {final['size_bytes']:,} bytes; goal >= 10x: {met(size_x >= 10)}); "
        f"**accuracy** {abs(drop):.2f} points {'below' if drop > 0 else 'above'} the teacher (goal: at most 2 below: "
        f"{met(drop <= 2.0)}); **speed** "
        f"{speed[1]:.1f}x at batch 1 and {speed[32]:.1f}x at batch 32 (goal >= 3x: "
        f"{met(speed[1] >= 3)} at batch 1, {met(speed[32] >= 3)} at batch 32).\n\n"
        f"Sizes: the sparse student is stored densely in both of its files. The packed int8 file "
        f"({qat['size_bytes']:,} bytes) holds one byte per weight; the QDQ ONNX file ({final['size_bytes']:,} bytes) "
        f"stores its {final['onnx_weights']:,} int8 conv/linear weights densely too, {final['onnx_zero_weights']:,} "
        f"of them ({100 * final['onnx_weight_sparsity']:.1f}%) zeros that cost a byte each, plus float biases, "
        f"scales and the graph. ONNX Runtime's CPU convolutions are dense kernels too, so the zeros take as long "
        f"as any weight: the speed-up comes from the smaller network ({kd['macs_teacher'] / kd['macs']:.1f}x fewer "
        f"MACs) and int8 arithmetic, not from sparsity. Where the "
        f"zeros do pay is compression for distribution: gzip -9 of the int8 ONNX is {gz_student:,} bytes "
        f"({t_export['size_bytes'] / gz_student:.1f}x smaller than the FP32 teacher file; gzip of that is "
        f"{gz_teacher:,} bytes), written beside it as `{student_onnx.name}.gz`. The teacher's original weights "
        f"file `{teacher_file.name}` is {teacher_file.stat().st_size:,} bytes.\n\n"
        f"Per step (recipe records): KD {seconds('01-distill')} s (student {kd['top1_before']:.2f}% -> "
        f"{kd['top1']:.2f}%), pruning {seconds('02-prune')} s, QAT {seconds('03-quantize')} s (simulated "
        f"{qat['top1_simulated']:.2f}%, ONNX Runtime {qat['top1']:.2f}%), export {seconds('04-export')} s "
        f"(parity {parity}), measure {seconds('05-measure')} s (its own ONNX Runtime figures: b1 {lat(final, 1)} "
        f"ms, b32 {lat(final, 32)} ms). Rerunning the command reuses the finished steps from the store.\n"
    )
    print(body)
    if args.write:
        print(f"written to {write_section('distillation-chain', body)}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="training epochs of every row (the budget)")
    parser.add_argument("--limit", type=int, default=25000, help="training images (stratified subset)")
    parser.add_argument("--test-limit", type=int, default=None, help="test images (default all 10,000)")
    parser.add_argument("--methods", default="none,kd,ab", help=f"comma list of {', '.join(METHODS)}")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--alpha", type=float, default=0.1, help="KD weight of the label cross-entropy")
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument(
        "--init-epochs", type=int, default=1, help="AB/hint label-free epochs (in the budget)"
    )
    parser.add_argument("--margin", type=float, default=1.0)
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--progress", action="store_true", help="per-epoch lines on stderr")
    parser.add_argument("--write", action=argparse.BooleanOptionalAction, default=True)
    chain = parser.add_argument_group("--chain: the compression chain (recipe) against the FP32 teacher")
    chain.add_argument("--chain", action="store_true", help="run the chain benchmark instead of the KD table")
    chain.add_argument(
        "--train-limit", type=int, default=None, help="training images (default: the recipe's)"
    )
    chain.add_argument("--kd-epochs", type=int, default=None, help="KD epochs (default: the recipe's)")
    chain.add_argument(
        "--prune-epochs", type=int, default=None, help="gradual pruning epochs (default: the recipe's)"
    )
    chain.add_argument("--qat-epochs", type=int, default=None, help="QAT epochs (default: the recipe's)")
    chain.add_argument("--runs", type=int, default=50, help="latency runs per batch size and round")
    chain.add_argument("--rounds", type=int, default=5, help="rounds of teacher/student latency, in turn")
    chain.add_argument(
        "--db",
        default=str(REPO / "runs" / "bench" / "distillation-chain.db"),
        help="store (finished steps are reused)",
    )
    args = parser.parse_args()
    if args.chain:
        chain_main(args)
        return
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")

    root = data_root()
    total_start = time.perf_counter()
    with threads(args.threads):
        train_data = load_dataset(root / "cifar10-jpeg", "train", limit=args.limit, val_fraction=0.0, seed=0)
        test_data = load_dataset(
            root / "cifar10-jpeg", "test", limit=args.test_limit, val_fraction=0.0, seed=0
        )
        teacher = create_model("resnet56", num_classes=train_data.num_classes)
        load_weights(teacher, root / "pretrained" / TEACHER_WEIGHTS)
        teacher.eval()
        t0 = time.perf_counter()
        teacher_top1 = evaluate(teacher, BatchLoader(test_data, 500)).top1
        print(
            f"teacher resnet56: top-1 {teacher_top1:.2f}% ({time.perf_counter() - t0:.0f}s)", file=sys.stderr
        )
        config = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            bf16=args.bf16,
            channels_last=True,
            seed=args.seed,
        )
        rows = [run_method(m, teacher, train_data, test_data, config, args) for m in methods]
        student_params = count_params(create_model("resnet20"))
        teacher_params = count_params(teacher)
    total = time.perf_counter() - total_start

    base = next((r["top1"] for r in rows if r["method"] == "none"), None)
    table_rows: list[list[object]] = [
        ["teacher: resnet56 (pretrained, not trained here)", f"{teacher_top1:.2f}", "-", "-", "-", "-"]
    ]
    for r in rows:
        delta = "-" if base is None or r["method"] == "none" else f"{r['top1'] - base:+.2f}"
        notes = "; ".join(f"{k} {v}" for k, v in r["extra"].items()) or "-"
        table_rows.append(
            [
                f"student resnet20: {r['label']}",
                f"{r['top1']:.2f}",
                delta,
                f"{r['seconds']:.0f}",
                f"{r['images_per_s']:.0f}",
                notes,
            ]
        )
    table = markdown_table(
        ["model / training", "test top-1 %", "vs none", "train s", "img/s", "notes"], table_rows
    )
    env = env_fingerprint()
    command = "python benchmarks/distillation.py " + shlex.join(sys.argv[1:])
    aug = (
        "random crop + flip"
        if args.augment
        else "no augmentation (teacher logits cached after the first epoch)"
    )
    body = (
        "## Distillation (`benchmarks/distillation.py`)\n\n"
        f"Student ResNet-20 ({student_params:,} params) from scratch, teacher ResNet-56 ({teacher_params:,} "
        f"params, pretrained on the original CIFAR-10, frozen). Budget for every row: {args.epochs} epochs on "
        f"{len(train_data):,} JPEG CIFAR-10 training images, batch {args.batch_size}, SGD Nesterov lr {args.lr:g} "
        f"cosine, {'bf16 autocast' if args.bf16 else 'fp32'}, channels_last, {aug}, seed {args.seed} (same "
        f"initial weights and batches in every row); AB's label-free epoch counts inside the budget. "
        f"Top-1 on {len(test_data):,} JPEG test images. Threads: {args.threads}, {env.get('cpu_model')}, "
        f"torch {env.get('torch_version')}; whole run {total / 60:.1f} min. Command: `{command}`.\n\n{table}\n"
    )
    kd = next((r for r in rows if r["method"] == "kd"), None)
    if base is not None and kd is not None:
        gain = kd["top1"] - base
        body += (
            f"\nGoal of the issue: KD at least +0.5 point over no distillation at the same budget: "
            f"{gain:+.2f} points ({'met' if gain >= 0.5 else 'not met'}). The train s column includes the "
            "teacher's forward pass (KD and AB pay it every step unless logits are cached).\n"
        )
    print(body)
    if args.write:
        print(f"written to {write_section('distillation', body)}", file=sys.stderr)


if __name__ == "__main__":
    main()
