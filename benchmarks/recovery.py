"""Recovery benchmark: does compression keep accuracy on a CPU time budget?

Every row fine-tunes for the same wall-clock budget (``--budget-minutes``, sized by edgeslim's
measured warm-up) and is evaluated on the JPEG CIFAR-10 test set, ``--seeds`` seeds per row (mean
and spread):

* resnet56, L1 filter pruning at ``--mac-reduction`` (2x) fewer MACs (cubic iterative, 2 steps, channels
  a multiple of the measured ``round_to``, or of a smaller power of 2 when that multiple cannot reach
  the target; residual streams kept whole unless ``--residual prune``; the ratio is found with those
  settings), with and without
  distillation from the unpruned model, against the unpruned model fine-tuned with the same budget;
* resnet20, 90% gradual magnitude sparsity (weights ranked across layers), with and without
  distillation, against the same;
* the realized batch-32 speed-up of the L1 model divided by its MAC reduction on ONNX Runtime and
  OpenVINO (goal >= 0.9), with ``round_to`` chosen by measurement; ``--part plans`` times every
  per-stage width plan at the same MAC cut (no training): how close any plan comes to that goal;
* ``--part scope``: resnet20 magnitude-pruned in one shot per layer vs ranked globally (why the
  gradual row ranks globally).

    python benchmarks/recovery.py [--budget-minutes 30] [--seeds 3] [--limit full|small|N]

``--limit small`` (2,000 train and 1,000 test images) proves the script in minutes; the full run
(30 minutes a run, 3 seeds, 18 runs: about 9 hours) needs a quiet machine. Every finished run is
kept in ``--work`` (default ``runs/recovery-bench``), so a killed run resumes where it stopped; the
latency part (``--part speed``) can be rerun alone on a quiet machine. Writes its section of
docs/benchmarks.md (``recovery`` for the issue's 30 minutes, ``recovery-Mmin`` for other budgets).

``--adapt-minutes A`` starts every row from the pretrained model fine-tuned A minutes on the JPEG
train set: the pretrained weights were trained on the original CIFAR-10 and read 83% on the JPEG
test set, so distilling from them copies their mistakes; a model trained on the data is what a user
compresses (A = the budget reuses the unpruned row of an earlier run).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from _common import data_root, limits, markdown_table, ratio_for, write_section
from edgeslim import tasks
from edgeslim.bench import env_fingerprint
from edgeslim.data import BatchLoader, load_dataset
from edgeslim.models import create_model, load_model_from_checkpoint, load_weights
from edgeslim.pruning import FilterPruning, GradualPruning, MagnitudePruning, PruningConfig, prune
from edgeslim.search.calibrate import PairedTimer, export_float, pruned_copy
from edgeslim.search.compression import adapt_batchnorm
from edgeslim.search.layout import ModelLayout
from edgeslim.train import TrainConfig, evaluate

WEIGHTS = {"resnet20": "resnet20-12fca82f.th", "resnet56": "resnet56-4bfd9763.th"}
GOALS = {"resnet56": 0.5, "resnet20": 1.0}  # points below the same-budget unpruned fine-tune
LR = 0.01  # peak LR of every fine-tune (cosine) unless --recovery-lr


def lr_of(config: PruningConfig, args: argparse.Namespace) -> float:
    """The fine-tune's peak LR: ``--recovery-lr`` for the compressed rows, the default for the unpruned."""
    unpruned = isinstance(config, FilterPruning) and config.ratio == 0
    return LR if unpruned or args.recovery_lr is None else float(args.recovery_lr)


def run_tag(
    name: str,
    config: PruningConfig,
    distill: bool,
    seed: int,
    args: argparse.Namespace,
    minutes: float | None = None,
    start: Path | None = None,
) -> str:
    spec = config.to_dict()
    tag = f"{name}-{type(config).__name__}-{spec.get('ratio', '')}-{distill}-{seed}"
    if spec.get("residual") == "keep":
        tag += "-keep"
    if spec.get("scope") == "global":
        tag += "-global"
    if lr_of(config, args) != LR:
        tag += f"-lr{lr_of(config, args):g}"
    tag += f"-{args.budget_minutes if minutes is None else minutes:g}min-{args.limit}"
    return tag + (f"-from-{start.stem}" if start is not None else "")


def run(
    name: str,
    config: PruningConfig,
    distill: bool,
    seed: int,
    args: argparse.Namespace,
    work: Path,
    *,
    minutes: float | None = None,
    start: Path | None = None,
) -> dict[str, Any]:
    """One fine-tune of ``minutes`` (default ``--budget-minutes``) from the pretrained weights, or from
    the checkpoint ``start`` (which is then also the teacher: the model before compression)."""
    root = data_root()
    train_limit, test_limit = limits(args.limit)
    minutes = args.budget_minutes if minutes is None else minutes
    tag = run_tag(name, config, distill, seed, args, minutes, start)
    out = work / f"{tag}.pt"
    done = work / f"{tag}.json"
    if done.exists() and out.exists():
        cached: dict[str, Any] = json.loads(done.read_text())
        cached["out"] = out
        cached["reused"] = True
        print(f"[recovery] reuse {tag}: top-1 {cached['top1']:.2f}", flush=True)
        return cached
    began = time.perf_counter()
    outcome = tasks.prune_task(
        tasks.ModelSource(checkpoint=start)
        if start is not None
        else tasks.ModelSource(name=name, weights=root / "pretrained" / WEIGHTS[name]),
        config,
        out=out,
        data_source=tasks.DataSource(
            path=str(root / "cifar10-jpeg"), split="test", limit=test_limit, train_limit=train_limit, seed=0
        ),
        finetune=TrainConfig(
            epochs=1,
            batch_size=128,
            lr=lr_of(config, args),
            bf16=args.bf16,
            channels_last=args.bf16,
            seed=seed,
        ),
        recovery=tasks.Recovery(distill=distill, budget_minutes=minutes),
        latency_batch_sizes=(),
        progress=False,
    )
    d = outcome.to_dict()
    result = {
        "top1": d["top1_after"],
        "top1_before": d["top1_before"],
        "notes": d["notes"],
        "epochs": d["finetune_epochs"],
        "mac_reduction": d["mac_reduction"],
        "recovery": d["recovery"],
        "minutes": (time.perf_counter() - began) / 60,
    }
    done.write_text(json.dumps(result, default=str))
    print(
        f"[recovery] {tag}: top-1 {result['top1']:.2f}, {result['epochs']} epochs, "
        f"{result['minutes']:.1f} min",
        flush=True,
    )
    return {**result, "out": out}


def trained_minutes(results: list[dict[str, Any]]) -> str:
    """The longest fine-tune of the seeds (the trainer's own seconds: the budget it had to fit),
    and the epochs planned from the warm-up where the measured epochs re-planned them."""
    seconds = [r["recovery"]["seconds"] for r in results if r.get("recovery")]
    if not seconds:
        return "-"
    planned = sorted(
        {r["recovery"]["budget"]["epochs"] for r in results if (r["recovery"] or {}).get("budget")}
    )
    ran = sorted({r["epochs"] for r in results})
    note = f" (planned {','.join(map(str, planned))} epochs)" if planned and planned != ran else ""
    return f"{max(seconds) / 60:.1f}{note}"


def summary(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def realized(pruned: Path, name: str, work: Path, threads: int | None) -> list[list[object]]:
    """Batch-32 latency of the pruned model timed alternately with the unpruned one (7 passes of each,
    medians; the speed-up is the median of the per-pass ratios), on ORT and OpenVINO."""
    dense = create_model(name)
    load_weights(dense, data_root() / "pretrained" / WEIGHTS[name])
    small, _ = load_model_from_checkpoint(pruned)
    shape = (3, 32, 32)
    dense_path = export_float(dense.eval(), work / "unpruned.onnx", shape)
    pruned_path = export_float(small.eval(), work / "pruned.onnx", shape)
    rows: list[list[object]] = []
    for runtime in ("ort", "openvino"):
        timing = PairedTimer(dense_path, runtime, shape, 32, threads, passes=7).measure(pruned_path)
        rows.append([runtime, timing.reference_ms, timing.ms, 1.0 / timing.ratio, f"{timing.spread:.0%}"])
    return rows


#: widths tried per knob by ``--part plans`` (multiples of 8; stage 1's stream stays whole: at 8
#: channels its 32x32 convs run no faster per MAC than at 16, measured, and it carries every block)
PLAN_WIDTHS = {
    "stream2": (16, 24, 32),
    "stream3": (32, 48, 64),
    "inner1": (8, 16),
    "inner2": (8, 16, 24, 32),
    "inner3": (16, 24, 32, 48, 64),
}


def stage_knobs(layout: ModelLayout) -> dict[str, list[str]]:
    """resnet56's knobs by role and stage ("stream2", "inner3", ...): a stream group is rooted at the
    stem or at a stage's first ``conv2`` (the addition's partner), inner groups at a block's ``conv1``;
    a stage's strided first block moves with its others."""
    by_role: dict[str, list[str]] = {}
    for knob in layout.knobs:
        root = knob.groups[0]
        stage = 1 if root == "conv1" else int(root.split(".")[0].removeprefix("layer"))
        role = "stream" if root == "conv1" or root.endswith(".conv2") else "inner"
        by_role.setdefault(f"{role}{stage}", []).append(knob.name)
    return by_role


def plan_macs(layout: ModelLayout, plan: dict[str, int]) -> int:
    widths = layout.widths(plan)
    return sum(
        shape.with_widths(*widths.get(name, (shape.in_channels, shape.out_channels))).macs()
        for name, shape in layout.layers.items()
    )


def every_plan(target: float, threads: int | None, work: Path) -> str:
    """Every resnet56 plan of per-stage widths (streams and inner channels, multiples of 8) within
    [target - 0.05, target + 0.1] x fewer MACs, timed at batch 32 on ORT and OpenVINO alternately with
    the unpruned model: how close to the MAC cut any plan's speed-up comes on this CPU."""
    dense = create_model("resnet56")
    load_weights(dense, data_root() / "pretrained" / WEIGHTS["resnet56"])
    dense.eval()
    layout = ModelLayout(dense, (3, 32, 32), residual="prune")
    knobs = stage_knobs(layout)
    base = plan_macs(layout, layout.dense_plan())
    plans: list[tuple[dict[str, int], float]] = []
    built: list[dict[str, int]] = []  # the layout's plan of each kept entry, pruned below
    for values in itertools.product(*PLAN_WIDTHS.values()):
        keeps = {k: w for role, w in zip(PLAN_WIDTHS, values, strict=True) for k in knobs[role]}
        plan = layout.knob_plan(keeps)
        reduction = base / plan_macs(layout, plan)
        if target - 0.05 <= reduction <= target + 0.1:
            plans.append((dict(zip(PLAN_WIDTHS, values, strict=True)), reduction))
            built.append(plan)
    shape = (3, 32, 32)
    dense_path = export_float(dense, work / "unpruned.onnx", shape)
    files = []
    for i, plan in enumerate(built):
        files.append(export_float(pruned_copy(dense, layout, plan), work / f"p{i}.onnx", shape))
    print(f"[plans] {len(plans)} plans within {target - 0.05:.2f}-{target + 0.1:.2f}x fewer MACs", flush=True)
    ratios: dict[str, list[float]] = {}
    dense_ms: dict[str, float] = {}
    for runtime in ("ort", "openvino"):
        timer = PairedTimer(dense_path, runtime, shape, 32, threads, passes=3)
        dense_ms[runtime] = timer.anchor_ms
        for (widths, reduction), path in zip(plans, files, strict=True):
            timing = timer.measure(path)
            ratios.setdefault(runtime, []).append(1.0 / timing.ratio / reduction)
            print(
                f"[plans] {runtime} {widths} {reduction:.2f}x MACs: ratio {ratios[runtime][-1]:.2f}",
                flush=True,
            )
    order = sorted(range(len(plans)), key=lambda i: -min(ratios["ort"][i], ratios["openvino"][i]))
    # the recovery rows' L1 plan (streams kept, inner widths halved at round_to 8), for reference
    l1_row = {"stream2": 32, "stream3": 64, "inner1": 8, "inner2": 16, "inner3": 32}
    shown = order[:10] + [i for i in order[10:] if plans[i][0] == l1_row]
    rows = [
        [
            "L1 row" if plans[i][0] == l1_row else f"{order.index(i) + 1}",
            plans[i][0]["stream2"],
            plans[i][0]["stream3"],
            plans[i][0]["inner1"],
            plans[i][0]["inner2"],
            plans[i][0]["inner3"],
            plans[i][1],
            ratios["ort"][i],
            ratios["openvino"][i],
        ]
        for i in shown
    ]
    best = {rt: max(v) for rt, v in ratios.items()}
    return (
        f"Every plan of per-stage widths within {target - 0.05:.2f}-{target + 0.1:.2f}x fewer MACs "
        f"({len(plans)}; `--part plans`, batch 32, 3 passes alternating with the unpruned model, "
        f"unpruned {dense_ms['ort']:.1f} ms ORT / {dense_ms['openvino']:.1f} ms OpenVINO). Widths of "
        "stages 1-3 (full: 16/32/64); stage 1's stream whole. Best realized speed-up / MAC reduction: "
        f"ORT {best['ort']:.2f}, OpenVINO {best['openvino']:.2f} (goal 0.9: "
        + ("reachable" if min(best.values()) >= 0.9 else "no plan reaches it on this CPU")
        + "). The ten best, and the L1 row's plan (the recovery rows above):\n\n"
        + markdown_table(
            [
                "rank",
                "stream 2",
                "stream 3",
                "inner 1",
                "inner 2",
                "inner 3",
                "MAC reduction",
                "ratio ORT",
                "ratio OpenVINO",
            ],
            rows,
        )
    )


def layer_vs_global(start: Path | None, sparsities: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9)) -> str:
    """resnet20 magnitude-pruned in one shot, every layer to the sparsity or weights ranked across
    layers, BatchNorm re-estimated on 20 batches of 250 training images, top-1 on the JPEG test set:
    which ranking the gradual row should use (no fine-tune, so minutes, not hours)."""
    if start is not None:
        model, _ = load_model_from_checkpoint(start)
    else:
        model = load_weights(create_model("resnet20"), data_root() / "pretrained" / WEIGHTS["resnet20"])
    jpeg = data_root() / "cifar10-jpeg"
    test = BatchLoader(load_dataset(jpeg, "test"), batch_size=500)
    train = load_dataset(jpeg, "train", limit=5000)
    rows: list[list[object]] = [["-", "unpruned", evaluate(model, test).top1]]
    with torch.no_grad():
        for sparsity in sparsities:
            for scope in ("layer", "global"):
                pruned = copy.deepcopy(model)
                prune(
                    pruned, MagnitudePruning(sparsity, scope=scope), example_inputs=torch.zeros(1, 3, 32, 32)
                )
                adapt_batchnorm(pruned, BatchLoader(train, batch_size=250), 20)
                rows.append([f"{sparsity:.0%}", scope, evaluate(pruned, test).top1])
                print(f"[scope] {rows[-1]}", flush=True)
    return markdown_table(["sparsity", "ranking", "top-1 % (no fine-tune)"], rows)


def write_part(section: str, title: str, began: float, what: str, flags: str, table: str) -> None:
    """Print and write the section of a part that trains nothing (``--part scope|plans``)."""
    body = (
        f"## {title} (`benchmarks/recovery.py --part {section.removeprefix('recovery-')}`)\n\n"
        f"CPU: {env_fingerprint()['cpu_model']}, {torch.get_num_threads()} threads; "
        f"{(time.perf_counter() - began) / 60:.1f} min. {what}Command: `python benchmarks/recovery.py "
        f"--part {section.removeprefix('recovery-')}{flags}`\n\n{table}"
    )
    print(body)
    write_section(section, body)


def scope_part(args: argparse.Namespace) -> None:
    # the adapted model the training rows start from, found by the tag its run was stored under
    tag = run_tag("resnet20", FilterPruning(0.0), False, 0, args, minutes=args.adapt_minutes)
    start = args.work / f"{tag}.pt"
    if args.adapt_minutes > 0 and not start.exists():
        raise SystemExit(f"--part scope --adapt-minutes needs the adapted resnet20 first: {start} is missing")
    began = time.perf_counter()
    table = layer_vs_global(start if args.adapt_minutes > 0 else None)
    origin = (
        f"fine-tuned {args.adapt_minutes:g} min on the JPEG train set (the recovery rows' start)"
        if args.adapt_minutes > 0
        else "with the published weights"
    )
    write_part(
        "recovery-scope",
        "Unstructured pruning ranked per layer or globally: resnet20",
        began,
        f"One-shot magnitude pruning of resnet20 {origin}, BatchNorm re-estimated on 20 batches of 250 "
        "training images, no fine-tune; top-1 on the 10,000-image JPEG test set. ",
        (f" --adapt-minutes {args.adapt_minutes:g}" if args.adapt_minutes > 0 else "")
        + (f" --threads {args.threads}" if args.threads else ""),
        table,
    )


def plans_part(args: argparse.Namespace) -> None:
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        table = every_plan(args.mac_reduction, args.threads, Path(tmp))
    write_part(
        "recovery-plans",
        f"Realized speed-up of every {args.mac_reduction:g}x plan: resnet56",
        began,
        "",
        f" --mac-reduction {args.mac_reduction:g}" + (f" --threads {args.threads}" if args.threads else ""),
        table,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-minutes", type=float, default=30.0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--ce-seeds",
        type=int,
        default=None,
        help="seeds of the labels-only (CE) rows, the comparison that measures distillation's gain "
        "(default: --seeds; fewer spends the CPU on the key rows: unpruned and distilled)",
    )
    parser.add_argument("--limit", default="full", help="full | small | N (train images)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--models", default="resnet56,resnet20", help="rows: resnet56 (L1), resnet20 (gradual)"
    )
    parser.add_argument(
        "--work", type=Path, default=Path("runs/recovery-bench"), help="finished runs (resume)"
    )
    parser.add_argument(
        "--part",
        choices=("all", "train", "speed", "plans", "scope"),
        default="all",
        help="train: the fine-tune rows only; speed: only the latency of finished runs (quiet machine); "
        "plans: time every per-stage width plan at --mac-reduction (no training; section recovery-plans); "
        "scope: resnet20 one-shot magnitude pruning per layer vs ranked globally (section recovery-scope)",
    )
    parser.add_argument(
        "--bf16", action="store_true", help="bf16 autocast (slow on CPUs without native bf16)"
    )
    parser.add_argument("--mac-reduction", type=float, default=2.0, help="the L1 row's MAC target")
    parser.add_argument(
        "--adapt-minutes",
        type=float,
        default=0.0,
        help="start every row from the pretrained model fine-tuned this long on the JPEG train set "
        "(labels only; what a user compresses: a model trained on their data; it is then the teacher). "
        "0: from the pretrained weights, trained on the original CIFAR-10",
    )
    parser.add_argument(
        "--losses", default="ce,kd", help="ce (labels only), kd (distilled from the unpruned model), or both"
    )
    parser.add_argument(
        "--residual",
        choices=("keep", "prune"),
        default="keep",
        help="the L1 row's FilterPruning.residual: keep the residual streams whole (default) or prune them",
    )
    parser.add_argument(
        "--l1-ratio",
        type=float,
        default=None,
        help="the L1 row's filter ratio as given (e.g. to reuse an earlier run's rows); default: "
        "found for --mac-reduction with the row's own settings (round_to, limits)",
    )
    parser.add_argument(
        "--recovery-lr",
        type=float,
        default=None,
        help=f"peak LR of the compressed rows' recovery (default {LR}, as the unpruned rows)",
    )
    parser.add_argument(
        "--section-suffix",
        default="",
        help="appended to the docs section's name: keeps another CPU's figures beside the earlier ones",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.part in ("scope", "plans"):
        (scope_part if args.part == "scope" else plans_part)(args)
        return
    env = env_fingerprint()
    start = time.perf_counter()
    root = data_root()
    r56 = create_model("resnet56")
    load_weights(r56, root / "pretrained" / WEIGHTS["resnet56"])
    # round_to measured once (cached per CPU), so the ratio is found with the multiple it is pruned at
    settings = FilterPruning(
        0.0, iterative_steps=2, round_to=tasks.choose_round_to("ort").round_to, residual=args.residual
    )
    if args.l1_ratio is None:
        l1, rounding = ratio_for(r56, args.mac_reduction, settings)
    else:
        l1, rounding = settings.replace(ratio=args.l1_ratio), f"round_to {settings.round_to} (measured)"
    ratio = l1.ratio
    rows: list[list[object]] = []
    finished: list[dict[str, Any]] = []
    pruned_file: Path | None = None
    mac_reduction = 0.0
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    lr_note = f", recovery LR {args.recovery_lr:g}" if args.recovery_lr is not None else ""
    rows_to_run: list[tuple[str, PruningConfig, str]] = [
        (
            "resnet56",
            l1,
            f"L1 {ratio:.3f}, 2 cubic steps, {rounding}, residual streams "
            + ("kept" if args.residual == "keep" else "pruned")
            + lr_note,
        ),
        # ranked globally: 90% of every layer leaves the 3-channel stem ~3 weights a filter; one-shot at
        # 80% and 20 BN batches, the adapted resnet20 read 66.2% global vs 54.4% per layer (2,000 images)
        ("resnet20", GradualPruning(0.9, scope="global"), "gradual 90% sparsity, ranked globally" + lr_note),
    ]
    starts: list[str] = []
    for name, config, label in [r for r in rows_to_run if r[0] in args.models.split(",")]:
        if args.part == "speed" and name != "resnet56":
            continue
        origin = None
        if args.adapt_minutes > 0:  # the user's model: fine-tuned on this data first (seed 0, labels)
            adapted = run(name, FilterPruning(0.0), False, 0, args, work, minutes=args.adapt_minutes)
            origin = adapted["out"]
            before = adapted.get("top1_before")  # rows stored before 2026-12-07 lack it
            starts.append(f"{name} {adapted['top1']:.2f}%" + (f" (from {before:.2f}%)" if before else ""))
        if args.part == "speed":
            first = args.losses.split(",")[0] == "kd"
            tags = [run_tag(name, config, first, s, args, start=origin) for s in range(args.seeds)]
            missing = [t for t in tags if not (work / f"{t}.json").exists()]
            if missing:
                raise SystemExit(f"--part speed needs the finished runs first; missing {missing[0]}")
        unpruned = [
            run(name, FilterPruning(0.0), False, s, args, work, start=origin) for s in range(args.seeds)
        ]
        finished += unpruned
        base = [r["top1"] for r in unpruned]
        rows.append(
            [
                name,
                "unpruned, same budget",
                "-",
                "1.00",
                summary(base),
                "-",
                ",".join(map(str, sorted({r["epochs"] for r in unpruned}))),
                trained_minutes(unpruned),
            ]
        )
        for distill in [loss == "kd" for loss in args.losses.split(",")]:
            seeds = args.seeds if distill or args.ce_seeds is None else args.ce_seeds
            results = [run(name, config, distill, s, args, work, start=origin) for s in range(seeds)]
            finished += results
            top1 = [r["top1"] for r in results]
            gap = statistics.mean(base) - statistics.mean(top1)
            verdict = "met" if gap <= GOALS[name] else f"missed by {gap - GOALS[name]:.2f}"
            epochs = sorted({r["epochs"] for r in results})
            rows.append(
                [
                    name,
                    label,
                    "KD" if distill else "CE",
                    f"{statistics.mean(r['mac_reduction'] for r in results):.2f}",
                    summary(top1),
                    f"{gap:.2f} (goal {GOALS[name]}: {verdict})",
                    ",".join(map(str, epochs)),
                    trained_minutes(results),
                ]
            )
            if name == "resnet56" and pruned_file is None:  # CE and KD rows share the architecture
                pruned_file, mac_reduction = results[0]["out"], results[0]["mac_reduction"]
    if args.part == "train":
        pruned_file = None
    with tempfile.TemporaryDirectory() as tmp:
        speed = realized(pruned_file, "resnet56", Path(tmp), args.threads) if pruned_file is not None else []
    speed_rows = [[r, a, b, s, spread, mac_reduction, s / mac_reduction] for r, a, b, s, spread in speed]  # type: ignore[operator]
    body = (
        f"## Recovery on a CPU budget: {args.budget_minutes:g} minutes"
        + ("" if "resnet56" in args.models.split(",") else f", {args.models}")
        + (f", recovery LR {args.recovery_lr:g}" if args.recovery_lr is not None else "")
        + (f", {args.section_suffix}" if args.section_suffix else "")
        + " (`benchmarks/recovery.py`)\n\n"
        f"CPU: {env['cpu_model']}, {torch.get_num_threads()} threads. Budget {args.budget_minutes:g} min of "
        f"fine-tuning per row, {args.seeds} seed(s) (mean ± stdev"
        + (f"; labels-only rows {args.ce_seeds}" if args.ce_seeds is not None else "")
        + f"), data limit {args.limit}. Every row "
        + (
            f"starts from the pretrained model fine-tuned {args.adapt_minutes:g} min on the JPEG train set "
            f"(top-1: {'; '.join(starts)}), which is also the teacher; "
            if starts
            else "starts from the pretrained weights (trained on the original CIFAR-10; the teacher); "
        )
        + f"run took {(time.perf_counter() - start) / 60:.1f} min"
        + (
            f" ({sum(bool(r.get('reused')) for r in finished)} of {len(finished)} rows reused from "
            f"`{work}`, trained earlier: {sum(r['minutes'] for r in finished):.0f} min of wall time in all)"
            if any(r.get("reused") for r in finished)
            else ""
        )
        + ".\n"
        f"Command: `python benchmarks/recovery.py --budget-minutes {args.budget_minutes:g} "
        f"--seeds {args.seeds} --limit {args.limit} --models {args.models}"
        + (f" --threads {args.threads}" if args.threads else "")
        + (" --bf16" if args.bf16 else "")
        + f" --residual {args.residual}"
        + (f" --losses {args.losses}" if args.losses != "ce,kd" else "")
        + (f" --ce-seeds {args.ce_seeds}" if args.ce_seeds is not None else "")
        + (f" --adapt-minutes {args.adapt_minutes:g}" if args.adapt_minutes > 0 else "")
        + (f" --recovery-lr {args.recovery_lr:g}" if args.recovery_lr is not None else "")
        + (f" --section-suffix {args.section_suffix}" if args.section_suffix else "")
        + (
            f" --l1-ratio {args.l1_ratio!r}"
            if args.l1_ratio is not None
            else f" --mac-reduction {args.mac_reduction:g}"
        )
        + "`\n\n"
        + markdown_table(
            [
                "model",
                "compression",
                "loss",
                "MAC reduction",
                "top-1 %",
                "points below unpruned",
                "epochs (budget)",
                "fine-tune min (most)",
            ],
            rows,
        )
        + (
            "\n\nRealized batch-32 speed-up of the L1 resnet56, timed in 7 passes alternating with the "
            "unpruned model (spread: of the per-pass ratios; goal: speed-up / MAC reduction >= 0.9):\n\n"
            + markdown_table(
                ["runtime", "unpruned ms", "pruned ms", "speed-up", "spread", "MAC reduction", "ratio"],
                speed_rows,
            )
            if speed_rows
            else ""
        )
    )
    print(body)
    # the 30-minute budget at the default LR has the main section; other budgets and LRs their own
    # the resnet56 rows (the L1 row and its speed-up) name the section; runs without them get their own
    section = "recovery" if args.budget_minutes == 30 else f"recovery-{args.budget_minutes:g}min"
    section += f"-lr{args.recovery_lr:g}" if args.recovery_lr is not None else ""
    section += "" if "resnet56" in args.models.split(",") else "-" + args.models.replace(",", "-")
    section += f"-{args.section_suffix}" if args.section_suffix else ""
    write_section(section, body)


if __name__ == "__main__":
    main()
