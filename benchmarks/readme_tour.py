"""Run the README's tour verbatim in a fresh clone, time every line, and write docs/first-hour.md.

    python benchmarks/readme_tour.py                      # make demo, then every <!-- tour --> block
    python benchmarks/readme_tour.py --skip-demo          # the tour blocks only (make setup instead of make demo)
    python benchmarks/readme_tour.py --startup            # only the CLI's start-up times (seconds)

What a new user does: clone the repository (its committed HEAD) into a fresh folder that has
``shared/data`` beside it (a link to the data root), run ``make demo`` from the README's first
screen, then paste the blocks marked ``<!-- tour -->`` top to bottom into one shell. Each command
line runs exactly as written (continuation lines joined); the shell stops at the first failure. The
cache (``$EDGESLIM_CACHE``) starts empty, so decoded datasets and the zoo catalog are built as on a new
machine. Time it on a quiet machine: anything else running inflates every figure.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import REPO, data_root, markdown_table, write_section
from edgeslim.bench.env import cpu_model

DOC = REPO / "docs" / "first-hour.md"
MARKER = "<!-- tour -->"


@dataclass
class Line:
    block: str
    text: str  # verbatim, continuation lines joined


def tour_lines(readme: str) -> list[Line]:
    """The command lines of every bash block that follows a ``<!-- tour -->`` marker."""
    lines = []
    for index, block in enumerate(re.findall(re.escape(MARKER) + r"\s*```bash\n(.*?)```", readme, re.S), 1):
        for text in re.sub(r"\\\n\s*", " ", block).splitlines():
            if text.strip() and not text.lstrip().startswith("#"):
                lines.append(Line(f"tour {index}", text.rstrip()))
    return lines


def shell_script(lines: list[Line], timings: Path) -> str:
    """One bash script: each line verbatim, wrapped in start/end stamps; stop at the first failure."""
    out = ["#!/usr/bin/env bash", f"__timings={str(timings)!r}"]
    for number, line in enumerate(lines):
        out += [
            f"echo {shlex.quote(f'>>> [{number}] {line.text}')} >&2",
            "__start=$EPOCHREALTIME",
            line.text,
            "__rc=$?",
            f'printf "%s\\t%s\\t%s\\t%s\\n" {number} "$__rc" "$__start" "$EPOCHREALTIME" >> "$__timings"',
            '[ "$__rc" -eq 0 ] || exit "$__rc"',
        ]
    return "\n".join(out) + "\n"


#: Commands whose start-up the first hour feels most: help, the zoo, and one that loads everything.
STARTUP = (("--help",), ("--version",), ("models",), ("models", "--details"), ("bench", "--help"))
#: Goals in seconds (issue 17): help and the zoo under 1 s, the zoo with counts under 5 s.
STARTUP_GOALS = {"--help": 1.0, "models": 1.0, "models --details": 5.0}


def startup_times(runs: int = 3) -> str:
    """Each command of :data:`STARTUP` timed as a new process: the first call with an empty cache
    (``$EDGESLIM_CACHE``: the zoo catalog is built), then the median of ``runs`` more."""
    program = str(Path(sys.executable).parent / "edgeslim")
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "EDGESLIM_CACHE": cache}

        def once(args: tuple[str, ...]) -> float:
            began = time.perf_counter()
            subprocess.run([program, *args], env=env, capture_output=True, check=True)
            return time.perf_counter() - began

        for args in STARTUP:
            first = once(args)
            again = statistics.median(once(args) for _ in range(runs))
            goal = STARTUP_GOALS.get(" ".join(args))
            met = "-" if goal is None else ("yes" if again <= goal else "**no**")
            rows.append((f"`edgeslim {' '.join(args)}`", f"{first:.2f}", f"{again:.2f}", goal or "-", met))
    load = os.getloadavg()[0]
    table = markdown_table(
        ("command", "first call, s (empty cache)", f"median of {runs} more, s", "goal, s", "met"), rows
    )
    return (
        f"## Start-up of the CLI\n\n`python benchmarks/readme_tour.py --startup` on {cpu_model()}, "
        f"{time.strftime('%Y-%m-%d')}, load average {load:.2f}. `--help`, `--version` and `models` import "
        "neither torch nor the techniques (cli/entry.py); `models` reads the zoo from a catalog in "
        "`$EDGESLIM_CACHE`, built by the first call (and by `make setup`); other commands load the whole "
        f"CLI.\n\n{table}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "readme-tour")
    parser.add_argument("--skip-demo", action="store_true", help="run make setup instead of make demo")
    parser.add_argument("--no-doc", action="store_true", help="print the table; leave docs/ alone")
    parser.add_argument("--startup", action="store_true", help="only time the CLI's start-up")
    args = parser.parse_args()
    if args.startup:
        body = startup_times()
        print(body)
        if not args.no_doc:
            _ensure_doc()
            write_section("cli-startup", body, doc=DOC)
        return
    data = data_root()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    first = "make setup" if args.skip_demo else "make demo"
    lines = [Line("first screen", first), *tour_lines(readme)]
    if len(lines) < 2:
        raise SystemExit(f"no {MARKER} blocks in README.md")

    work = args.work.resolve()
    if work.exists():
        shutil.rmtree(work)
    (work / "shared").mkdir(parents=True)
    (work / "shared" / "data").symlink_to(data.resolve(), target_is_directory=True)
    clone = work / "edgeslim"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    head = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    timings = work / "timings.tsv"
    script = work / "tour.sh"
    script.write_text(shell_script(lines, timings), encoding="utf-8")

    # a new user's shell: no venv active, no EDGESLIM_DATA (the tour exports it), an empty cache
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGESLIM_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(REPO / ".venv"))
    )
    env["EDGESLIM_CACHE"] = str(work / "cache")
    load = os.getloadavg()[0]
    print(f"tour of {clone} (HEAD {head}), {len(lines)} lines; load average {load:.2f}", file=sys.stderr)
    started = time.perf_counter()
    with (work / "tour.log").open("w", encoding="utf-8") as log:
        done = subprocess.run(["bash", str(script)], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT)
    total = time.perf_counter() - started

    rows, failed = [], None
    stamps = [row.split("\t") for row in timings.read_text().splitlines()] if timings.exists() else []
    for number, rc, begin, end in stamps:
        line = lines[int(number)]
        seconds = float(end) - float(begin)
        rows.append((int(number), line.block, f"`{_short(line.text)}`", f"{seconds:,.1f}", rc))
        if rc != "0":
            failed = line.text
    table = markdown_table(("#", "block", "command", "wall s", "exit"), rows)
    status = (
        "every line ran (exit 0)"
        if done.returncode == 0 and len(stamps) == len(lines)
        else f"stopped at `{_short(failed or '?')}` (exit {done.returncode}); see {work / 'tour.log'}"
    )
    body = (
        f"## The README tour, run verbatim in a fresh clone\n\n"
        f"`python benchmarks/readme_tour.py` on {cpu_model()} ({os.cpu_count()} cores), HEAD `{head}`, "
        f"{time.strftime('%Y-%m-%d')}; load average {load:.2f} when it started; {total / 60:.1f} min in all; "
        f"{status}. Set-up time includes the pip install from the package registry.\n\n{table}\n"
    )
    print(body)
    if not args.no_doc:
        _ensure_doc()
        write_section("readme-tour", body, doc=DOC)
    sys.exit(done.returncode)


def _ensure_doc() -> None:
    if not DOC.exists():
        DOC.write_text(
            "# The first hour, timed\n\nWritten by `benchmarks/readme_tour.py`: the README's first screen "
            "and tour, pasted into a fresh clone.\n",
            encoding="utf-8",
        )


def _short(text: str, limit: int = 110) -> str:
    text = text.split("  #")[0].strip()
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    main()
