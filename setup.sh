#!/usr/bin/env bash
# One-step set-up on a fresh machine: a virtual environment in .venv with edgeslim and its
# test tools, torch pinned through constraints.txt (no multi-GB CUDA pull on CPU machines).
# Usage: ./setup.sh [extras]   (default extras: dev; CI uses "dev,all")
set -euo pipefail
cd "$(dirname "$0")"
extras="${1:-dev}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[${extras}]"
.venv/bin/edgeslim --version
# Count the zoo's parameters and MACs once (about 10 s) so that `edgeslim models --details` answers
# from its catalog in $EDGESLIM_CACHE at once; it rebuilds itself whenever the zoo's code changes.
.venv/bin/edgeslim models --details --tiny > /dev/null
# The HTML report is tested in headless Chromium (the system browser; playwright drives it, so no
# browser download is needed). Install it when missing and we may use apt; otherwise those tests skip.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
            || echo "warning: could not install chromium; the report's browser test will be skipped" >&2
    else
        echo "note: install chromium (sudo apt-get install chromium) to run the report's browser test" >&2
    fi
fi
