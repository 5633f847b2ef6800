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
