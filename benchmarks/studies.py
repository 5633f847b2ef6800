"""Reproduce the reference studies (studies/) at one scale and write their verdicts to docs/studies.md.

    EDGESLIM_DATA=../shared/data python benchmarks/studies.py --scale ci                 # minutes
    EDGESLIM_DATA=../shared/data python benchmarks/studies.py --scale full --only dynamic-int8-small-cnn
    python benchmarks/studies.py --scale full --report-only     # re-judge what runs/studies.db holds

Each study runs through `edgeslim.studies.run_study` (resumable: rerun to go on), then every claim
is checked on the store (`judge_study`), which writes docs/studies/<study>-full/ (runs/studies/ for
the CI scale: claims.md, claims.json, each sweep's HTML report and PNG plots); the claims table,
with the CPU and the time taken, replaces that study's section of docs/studies.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import REPO, data_root, markdown_table, write_section
from edgeslim.bench.env import cpu_model
from edgeslim.studies import SCALES, find_studies, judge_study, run_study

DOC = REPO / "docs" / "studies.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="ci", help=f"{' | '.join(SCALES)} or a study's own scale")
    parser.add_argument("--only", default="", help="comma-separated study names (default: all)")
    parser.add_argument("--db", type=Path, default=REPO / "runs" / "studies.db")
    parser.add_argument("--report-only", action="store_true", help="judge what the store holds; run nothing")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    data_root()  # fail early without data
    wanted = {s for s in args.only.split(",") if s}
    studies = [
        s
        for s in find_studies(REPO / "studies")
        if (not wanted or s.name in wanted) and args.scale in s.scales
    ]
    if wanted - {s.name for s in studies}:
        raise SystemExit(f"unknown studies: {', '.join(sorted(wanted - {s.name for s in studies}))}")
    args.db.parent.mkdir(parents=True, exist_ok=True)
    for study in studies:
        started = time.perf_counter()
        if not args.report_only:
            run_study(study, args.scale, db=args.db, workers=args.workers, threads=args.threads)
        minutes = (time.perf_counter() - started) / 60.0
        # the reported scale's HTML report and plots are published; the CI scale's stay in runs/
        base = REPO / ("docs" if args.scale == "full" else "runs") / "studies"
        out = base / f"{study.name}-{args.scale}"
        report = judge_study(study, args.scale, db=args.db, out=out)
        rows = [
            (c.claim.claim, c.claim.paper or "-", c.verdict.measured, f"**{c.verdict.status}**")
            for c in report.claims
        ]
        pngs = sorted(p for p in report.files if p.suffix == ".png")  # this run's, not stale ones in out
        pictures = "\n".join(
            f"![{p.stem}](studies/{out.name}/{p.name})" for p in pngs if args.scale == "full"
        )
        timing = "" if args.report_only else f", {minutes:.0f} min this run"
        body = (
            f"### {study.title}: {args.scale} scale - **{report.verdict}**\n\n"
            f"{report.note}\n\nCPU: {cpu_model()}{timing}. Files: "
            + ", ".join(f"`studies/{study.folder.name}/{f.name}`" for f in study.scale(args.scale).files)
            + (f"; report: [docs/studies/{out.name}/](studies/{out.name}/)" if args.scale == "full" else "")
            + ".\n\n"
            + markdown_table(("claim", "study", "edgeslim (measured)", "verdict"), rows)
            + ("\n\n" + pictures if pictures else "")
        )
        write_section(f"study {study.name} {args.scale}", body, doc=DOC)
        print(f"{study.name} ({args.scale}): {report.verdict}")
        print(markdown_table(("claim", "measured", "verdict"), [(r[0], r[2], r[3]) for r in rows]))


if __name__ == "__main__":
    main()
