"""Sweep orchestration benchmark: per-trial overhead of the executors, and parallel throughput.

    python benchmarks/sweep.py [--trials 40] [--work-trials 8] [--work-s 1.0] [--no-ray]

* Overhead: a sweep of trials that do nothing, one worker; the overhead per trial is the median time
  between consecutive trial completions (claim, hand-off, the trial's bookkeeping - limits, env
  fingerprint - and the store writes), plus the one-off start-up (worker processes, Ray).
* Throughput: trials of fixed single-threaded CPU work (torch matmuls, 1 thread), 1 worker against
  2 workers; the ratio of wall times is the parallel speed-up.
* Ray against local: the same trivial sweep on a local Ray instance.

Writes its table into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from _common import data_root, markdown_table, write_section
from edgeslim.bench import env_fingerprint
from edgeslim.engine.executors import usable_cpus
from edgeslim.engine.jobs import TrialJob, TrialOutput
from edgeslim.engine.store import Store
from edgeslim.sweep import parse_experiment, run_sweep


def trivial_trial(job: TrialJob) -> TrialOutput:
    """No work: what is left is orchestration."""
    return TrialOutput(metrics={"top1": 0.0})


def cpu_trial(job: TrialJob) -> TrialOutput:
    """A fixed amount of single-threaded CPU work (workers inherit the iteration count from the environment)."""
    iterations = int(os.environ["SWEEP_BENCH_ITERS"])
    a = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))
    for _ in range(iterations):
        a = torch.tanh(a @ a)
    return TrialOutput(metrics={"top1": float(a.mean())})


def experiment(name: str, trials: int, *, exclusive: bool = True) -> str:
    """``trials`` trials of 2 steps each (the baseline: start + measure; the others: prune + measure).
    ``exclusive: false`` lets measure steps share the machine: the throughput runs time CPU work, not
    latency, and exclusive measure steps would run one at a time whatever the workers."""
    data = data_root() / "cifar10-exact-subset"
    ratios = ", ".join(f"{(i + 1) / 1000:.3f}" for i in range(trials - 1))
    return f"""name: {name}
models: [{{name: resnet20_tiny, init: random}}]  # trials do trivial work: no weights needed
data: {{path: {data}}}
methods:
  - prune: {{method: l1, ratio: [{ratios}]}}
measure: {{exclusive: {str(exclusive).lower()}}}
"""


def completion_gaps(db: Path, name: str) -> list[float]:
    """Gaps between consecutive trial completions."""
    with Store.open(db) as store:
        exp = store.get_experiment(name)
        assert exp is not None
        trials = store.trials(exp.id)
    ends = sorted(t.finished_at for t in trials if t.finished_at is not None)
    return [b - a for a, b in itertools.pairwise(ends)]


def overhead(
    executor: str, trials: int, work: Path, *, address: str | None = None, tag: str = ""
) -> dict[str, float]:
    name = f"overhead-{executor}{tag}"
    exp = parse_experiment(experiment(name, trials))
    db = work / f"{name}.db"
    t0 = time.perf_counter()
    summary = run_sweep(
        exp,
        db=db,
        executor=executor,
        workers=1,
        threads=1,
        progress=False,
        trial_fn=trivial_trial,
        address=address,
        ship_files=True if address else None,
    )
    wall = time.perf_counter() - t0
    gaps = completion_gaps(db, name)
    if summary.done != summary.total:  # each trial is a few nodes (start, prune, measure)
        raise SystemExit(f"{executor}: {summary.done} of {summary.total} trivial nodes finished")
    return {
        "wall": wall,
        "median_gap": statistics.median(gaps),
        "p90_gap": sorted(gaps)[int(0.9 * len(gaps))],
    }


def cluster_row(trials: int, work: Path) -> list[object]:
    """A 2-node Ray cluster on this machine (a head without CPUs for trials and one worker node), so
    every trial runs on the other node and its inputs and files travel through the object store
    (``ship_files``), as on machines without a shared file system."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        result = overhead("ray", trials, work, address=cluster.address, tag="-cluster")
    finally:
        cluster.shutdown()
    return [
        "ray, 2-node cluster, files shipped, 1 task at a time",
        f"{1000 * result['median_gap']:.1f}",
        f"{1000 * result['p90_gap']:.1f}",
        f"{result['wall']:.1f}",
    ]


def throughput(workers: int, trials: int, iterations: int, work: Path) -> float:
    name = f"throughput-{workers}"
    os.environ["SWEEP_BENCH_ITERS"] = str(iterations)
    exp = parse_experiment(experiment(name, trials, exclusive=False))
    db = work / f"{name}.db"
    run_sweep(exp, db=db, workers=workers, threads=1, progress=False, trial_fn=cpu_trial)
    with Store.open(db) as store:
        e = store.get_experiment(name)
        assert e is not None
        records = store.trials(e.id)
    # from the moment the first trial's work began (its worker is up: spawn and imports excluded,
    # they cost both runs the same ~3 s), to the last record written
    start = min(float(t.timings.get("started_at", t.started_at or 0)) for t in records)
    end = max(t.finished_at or 0 for t in records)
    return end - start


def calibrate(work_s: float) -> int:
    torch.set_num_threads(1)
    a = torch.randn(256, 256)
    t0 = time.perf_counter()
    for _ in range(200):
        a = torch.tanh(a @ a)
    per = (time.perf_counter() - t0) / 200
    return max(1, int(work_s / per))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--work-trials", type=int, default=8)
    parser.add_argument("--work-s", type=float, default=1.0)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    env = env_fingerprint()
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        local = overhead("local", args.trials, work)
        rows.append(
            [
                "local, 1 worker",
                f"{1000 * local['median_gap']:.1f}",
                f"{1000 * local['p90_gap']:.1f}",
                f"{local['wall']:.1f}",
            ]
        )
        if not args.no_ray:
            try:
                ray = overhead("ray", args.trials, work)
                rows.append(
                    [
                        "ray (local instance), 1 task at a time",
                        f"{1000 * ray['median_gap']:.1f}",
                        f"{1000 * ray['p90_gap']:.1f}",
                        f"{ray['wall']:.1f}",
                    ]
                )
            except SystemExit as exc:
                rows.append(["ray", f"n/a ({exc})", "-", "-"])
            rows.append(cluster_row(args.trials, work))
        iterations = calibrate(args.work_s)
        one = throughput(1, args.work_trials, iterations, work)
        two = throughput(2, args.work_trials, iterations, work)
    load = os.getloadavg()
    overhead_table = markdown_table(
        [
            "executor",
            "overhead per trial, median ms",
            "p90 ms",
            f"wall for {args.trials} trials incl. start-up, s",
        ],
        rows,
    )
    speed = markdown_table(
        [
            "workers x threads",
            f"wall for {args.work_trials} trials ({2 * args.work_trials} steps of ~{args.work_s:g} s), s",
            "throughput trials/s",
            "speed-up",
        ],
        [
            ["1 x 1", f"{one:.1f}", f"{args.work_trials / one:.2f}", "1.00"],
            ["2 x 1", f"{two:.1f}", f"{args.work_trials / two:.2f}", f"{one / two:.2f}"],
        ],
    )
    command = "python benchmarks/sweep.py " + " ".join(
        f"--{k.replace('_', '-')} {v:g}" for k, v in vars(args).items() if k != "no_ray"
    )
    body = f"""## Sweep orchestration (`benchmarks/sweep.py`)

{env["cpu_model"]}, {usable_cpus()} usable CPUs, torch {env["torch_version"]}; load average at the end
{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min). Command: `{command}`.

Orchestration overhead: trials that do no work, one worker; per trial = median gap between consecutive
completions (claim in SQLite, hand-off to the worker, limits and environment fingerprint, record
written). Goal: median <= 500 ms for the local executor.

{overhead_table}

Parallel throughput on single-threaded CPU-bound trials, measure steps not exclusive (goal: 2 workers
>= 1.7x one worker on 2 cores):

{speed}
"""
    print(body)
    write_section("sweep", body)


if __name__ == "__main__":
    main()
