"""NAS benchmark: do searched subnets beat the hand-designed nets at their latency?

1. Train the ``--space`` supernet for ``--train-minutes`` (kept in ``--work``; a killed run resumes
   from ``supernet.pt.partial``): ``resnet_cifar`` from the pretrained ResNet-56, ``mbv2_cifar``
   from scratch.
2. Per runtime (batch ``--batch``): time the hand-designed nets (resnet_cifar: the published
   ResNet-20/32/44 against ResNet-56; mbv2_cifar: MobileNetV2) in alternating passes, then search
   the supernet once per reference with that reference's latency as the budget (``--search-minutes``
   each, optional ``--finetune-minutes`` of distillation from the largest net).
3. The references' accuracy, each trained on the JPEG train set for ``--reference-minutes``
   (default: the supernet's training plus one search, the issue's "same total CPU training
   budget"), in the supernet's precision: fine-tuned from the published weights (resnet_cifar; 0 =
   the published weights as they are, trained on the original CIFAR-10, 81-83% on the JPEG test
   set), or from scratch (mbv2_cifar). Kept in ``--work`` and reused.
4. Table: each reference's measured latency and JPEG-test top-1 beside the searched subnet's, the
   subnet's predicted vs measured latency (goal: within 10%), and whether it dominates (at least as
   accurate, no slower). Writes the ``nas`` section of docs/benchmarks.md (``nas-SPACE`` for
   another space).

    python benchmarks/nas.py [--space resnet_cifar|mbv2_cifar] [--train-minutes 120] [--search-minutes 15]
                             [--runtimes ort,openvino]
                             [--strategies evolution,dnas] [--limit full|small] [--part train|search|all]
                             [--reference-minutes M]

``--limit small`` (2,000 train / 1,000 test images, 2-minute training) proves the script in minutes.
Time it on a quiet machine: latencies measured while anything else runs are noise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from _common import DOC, data_root, limits, markdown_table, write_section
from edgeslim import tasks
from edgeslim.bench import env_fingerprint
from edgeslim.models import create_model, load_weights
from edgeslim.nas.search import NasOptions, search_subnet
from edgeslim.nas.train import SupernetTraining, train_supernet
from edgeslim.pruning import FilterPruning
from edgeslim.report.plots import search_plane
from edgeslim.search import Budget
from edgeslim.search.calibrate import PairedTimer, export_float
from edgeslim.train import TrainConfig

WEIGHTS = {
    "resnet20": "resnet20-12fca82f.th",
    "resnet32": "resnet32-d509ac18.th",
    "resnet44": "resnet44-014dd654.th",
    "resnet56": "resnet56-4bfd9763.th",
}


@dataclasses.dataclass(frozen=True)
class SpaceSetup:
    """How the benchmark runs a space: the supernet's start, the hand-designed nets it must beat,
    the net they are timed against, and how those are trained for the same budget."""

    init: str | None  # the supernet's init weights (a WEIGHTS key), None: a from-scratch space
    anchor: str  # timed alternately with every reference
    references: tuple[str, ...]
    lr: float  # the references' peak LR
    description: str

    @property
    def scratch(self) -> bool:
        """A from-scratch space: its references train from random init too (no published weights)."""
        return self.init is None


SPACES = {
    "resnet_cifar": SpaceSetup(
        "resnet56",
        "resnet56",
        ("resnet20", "resnet32", "resnet44"),
        0.01,
        "(1-9 blocks per stage, widths 8-64) trained {minutes} min from the published ResNet-56",
    ),
    "mbv2_cifar": SpaceSetup(
        None,
        "mobilenet_v2",
        ("mobilenet_v2",),
        0.1,
        "(MobileNetV2 blocks: 2-4 per stage, expand 3/4/6, kernel 3/5/7) trained {minutes} min from scratch",
    ),
}


def reference_model(name: str, setup: SpaceSetup) -> torch.nn.Module:
    """The hand-designed net (published weights where it has them; latency does not depend on them)."""
    model = create_model(name)
    if not setup.scratch:
        load_weights(model, data_root() / "pretrained" / WEIGHTS[name])
    return model.eval()


def reference_latencies(
    setup: SpaceSetup, runtime: str, batch: int, threads: int | None, work: Path
) -> dict[str, float]:
    """Each reference's latency as a ratio to the anchor net timed alternately, times the anchor's."""
    shape = (3, 32, 32)
    anchor = export_float(reference_model(setup.anchor, setup), work / "anchor.onnx", shape)
    timer = PairedTimer(anchor, runtime, shape, batch, threads)
    out = {setup.anchor: timer.anchor_ms}
    for name in setup.references:
        if name != setup.anchor:
            onnx = export_float(reference_model(name, setup), work / f"{name}.onnx", shape)
            out[name] = timer.measure(onnx).corrected_ms
    return out


def reference_top1(
    name: str,
    setup: SpaceSetup,
    data: tasks.DataSource,
    minutes: float,
    work: Path,
    limit: str,
    bf16: bool,
) -> float:
    """JPEG-test top-1 of the hand-designed ``name`` trained ``minutes`` on the JPEG train set
    (labels; the epochs sized to the minutes by edgeslim's budget, in the supernet's precision):
    fine-tuned from its published weights, or from scratch in a from-scratch space; ``minutes`` 0:
    the published weights as they are."""
    cache = work / f"reference-top1-{limit}.json"
    key = name if minutes == 0 else f"{name}-{minutes:g}min" + ("" if bf16 else "-fp32")
    saved: dict[str, float] = json.loads(cache.read_text()) if cache.exists() else {}
    if key in saved:
        return saved[key]
    source = (
        tasks.ModelSource(name=name)
        if setup.scratch
        else tasks.ModelSource(name=name, weights=data_root() / "pretrained" / WEIGHTS[name])
    )
    if minutes == 0:
        top1 = tasks.evaluate_task(source, data, progress=False).top1
    else:
        top1 = tasks.prune_task(  # ratio 0: nothing pruned, only the budget-sized fine-tune
            source,
            FilterPruning(0.0),
            out=work / f"{key}-{limit}.pt",
            data_source=data,
            finetune=TrainConfig(epochs=1, batch_size=128, lr=setup.lr, bf16=bf16, channels_last=bf16),
            recovery=tasks.Recovery(distill=False, budget_minutes=minutes),
            latency_batch_sizes=(),
            progress=False,
            measure_before=False,
        ).top1_after
    saved[key] = float(top1 or 0.0)
    cache.write_text(json.dumps(saved))
    return saved[key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", choices=sorted(SPACES), default="resnet_cifar")
    parser.add_argument("--train-minutes", type=float, default=120.0)
    parser.add_argument("--search-minutes", type=float, default=15.0)
    parser.add_argument("--finetune-minutes", type=float, default=0.0)
    parser.add_argument("--max-evals", type=int, default=300)
    parser.add_argument("--runtimes", default="ort,openvino")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", default="full", help="full | small | N (train images)")
    parser.add_argument("--part", choices=("train", "search", "all"), default="all")
    parser.add_argument(
        "--strategies", default="evolution", help="comma-separated: evolution, random, dnas (one row each)"
    )
    parser.add_argument("--work", type=Path, default=Path("runs/nas-bench"))
    parser.add_argument(
        "--fp32",
        action="store_true",
        help="train the supernet and fine-tune the references in fp32 (default: bf16 autocast)",
    )
    parser.add_argument(
        "--reference-minutes",
        type=float,
        default=None,
        help="fine-tune each hand-designed net this long on the data first (default: train + search "
        "minutes; 0: the published weights as they are)",
    )
    args = parser.parse_args()
    setup = SPACES[args.space]
    if setup.scratch and args.reference_minutes == 0:
        parser.error(
            f"--reference-minutes 0 needs published weights; {args.space}'s references train from scratch"
        )
    torch.set_num_threads(args.threads)
    train_limit, test_limit = limits(args.limit)
    train_minutes = 2.0 if args.limit == "small" and args.train_minutes == 120.0 else args.train_minutes
    ref_minutes = (
        train_minutes + args.search_minutes if args.reference_minutes is None else args.reference_minutes
    )
    root = data_root()
    data = tasks.DataSource(
        path=str(root / "cifar10-jpeg"), split="test", limit=test_limit, train_limit=train_limit
    )
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    space_tag = "" if args.space == "resnet_cifar" else f"-{args.space}"  # resnet_cifar: earlier names
    precision_tag = "-fp32" if args.fp32 else ""
    supernet = work / f"supernet{space_tag}-{train_minutes:g}min-{args.limit}{precision_tag}.pt"
    began = time.perf_counter()
    if not supernet.exists():
        trained = train_supernet(
            args.space,
            data,
            supernet,
            init_weights=None if setup.init is None else root / "pretrained" / WEIGHTS[setup.init],
            options=SupernetTraining(budget_minutes=train_minutes, threads=args.threads, bf16=not args.fp32),
            progress=lambda m: print(f"[nas] {m}", flush=True),
        )
        print(
            f"[nas] supernet: {trained.steps} steps, {trained.epochs:.2f} epochs, {trained.minutes:.1f} min"
        )
    if args.part == "train":
        return
    env = env_fingerprint()
    rows: list[list[object]] = []
    pictures: list[str] = []
    for runtime in args.runtimes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            ref_ms = reference_latencies(setup, runtime, args.batch, args.threads, Path(tmp))
        for name, strategy in [(n, s) for n in setup.references for s in args.strategies.split(",")]:
            tag = "" if strategy == "evolution" else f"-{strategy}"  # evolution keeps its earlier file names
            out = work / (
                f"{runtime}-b{args.batch}-{name}{space_tag}-{args.search_minutes:g}min-{args.limit}{tag}"
                f"{precision_tag}.pt"
            )
            done = out.with_suffix(".json")
            if done.exists():
                result = json.loads(done.read_text())
            else:
                found = search_subnet(
                    supernet,
                    data,
                    Budget(
                        max_latency_ms=ref_ms[name],
                        runtime=runtime,
                        batch_size=args.batch,
                        threads=args.threads,
                    ),
                    out=out,
                    options=NasOptions(
                        strategy=strategy,  # type: ignore[arg-type]  # validated by NasOptions
                        budget_minutes=args.search_minutes,
                        max_evals=args.max_evals,
                        finetune_minutes=args.finetune_minutes,
                    ),
                    progress=lambda m: print(f"[nas] {m}", flush=True),
                )
                result = found.to_dict()
                done.write_text(json.dumps(result, default=str))
            # one picture per runtime and strategy: every subnet scored for the middle reference's budget
            if name == setup.references[len(setup.references) // 2]:
                title = f"{runtime} batch {args.batch}, {strategy}: subnets scored for the {name} budget"
                figure = search_plane(result["candidates"], result["max_latency_ms"], result["label"], title)
                figure.savefig(DOC.parent / f"nas{space_tag}-{runtime}{tag}.svg")
                pictures.append(f"![{runtime} {strategy}](nas{space_tag}-{runtime}{tag}.svg)")
            top1_ref = reference_top1(name, setup, data, ref_minutes, work, args.limit, not args.fp32)
            error = abs(result["latency_ms_predicted"] - result["latency_ms"]) / result["latency_ms"]
            dominates = result["top1"] >= top1_ref and result["latency_ms"] <= ref_ms[name]
            rows.append(
                [
                    runtime,
                    strategy,
                    name,
                    ref_ms[name],
                    top1_ref,
                    result["label"],
                    result["latency_ms"],
                    result["latency_ms_predicted"],
                    f"{error:.1%}",
                    result["top1"],
                    "yes" if dominates else "no",
                    result["candidates_evaluated"],
                ]
            )
    trained_how = (
        "the published (GPU-trained) weights as they are"
        if ref_minutes == 0
        else ("trained from scratch " if setup.scratch else "the published (GPU-trained) weights fine-tuned ")
        + f"{ref_minutes:g} min on the JPEG train set (labels, peak LR {setup.lr:g})"
        + (", the supernet's training plus one search" if args.reference_minutes is None else "")
    )
    body = (
        f"## Architecture search{'' if not space_tag else f': {args.space}'} (`benchmarks/nas.py`)\n\n"
        f"CPU: {env['cpu_model']}, {args.threads} threads, batch {args.batch}. Supernet `{args.space}` "
        + setup.description.format(minutes=f"{train_minutes:g}")
        + f" ({'fp32' if args.fp32 else 'bf16 autocast, as the references'}); "
        f"{args.search_minutes:g} min of search per budget and strategy, fine-tune {args.finetune_minutes:g} min; "
        f"data limit {args.limit}; top-1 on the JPEG CIFAR-10 test set. The hand-designed nets: "
        + trained_how
        + ". Run took "
        f"{(time.perf_counter() - began) / 60:.1f} min.\n"
        f"Command: `python benchmarks/nas.py --space {args.space} --train-minutes {train_minutes:g} --search-minutes "
        f"{args.search_minutes:g} --runtimes {args.runtimes} --strategies {args.strategies} --limit {args.limit}"
        + (f" --reference-minutes {args.reference_minutes:g}" if args.reference_minutes is not None else "")
        + (" --fp32" if args.fp32 else "")
        + "`\n\n"
        + markdown_table(
            [
                "runtime",
                "strategy",
                "reference",
                "ref ms",
                "ref top-1 %",
                "searched subnet",
                "subnet ms",
                "predicted ms",
                "error",
                "subnet top-1 %",
                "dominates",
                "subnets scored",
            ],
            rows,
        )
        + "\n\n"
        + "\n".join(pictures)
    )
    print(body)
    write_section(f"nas{space_tag}", body)


if __name__ == "__main__":
    main()
