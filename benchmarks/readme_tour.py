"""Run the README's tour verbatim in a fresh clone, time every line, and write docs/first-hour.md.

    python benchmarks/readme_tour.py                      # make demo, then every <!-- tour --> block
    python benchmarks/readme_tour.py --skip-demo          # the tour blocks only (make setup instead of make demo)

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
import subprocess
import sys
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "readme-tour")
    parser.add_argument("--skip-demo", action="store_true", help="run make setup instead of make demo")
    parser.add_argument("--no-doc", action="store_true", help="print the table; leave docs/ alone")
    args = parser.parse_args()
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
        header = (
            "# The first hour, timed\n\nWritten by `benchmarks/readme_tour.py`: the README's first screen "
            "and tour, pasted into a fresh clone.\n"
        )
        if not DOC.exists():
            DOC.write_text(header, encoding="utf-8")
        write_section("readme-tour", body, doc=DOC)
    sys.exit(done.returncode)


def _short(text: str, limit: int = 110) -> str:
    text = text.split("  #")[0].strip()
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    main()
