#!/usr/bin/env bash
# Creates .venv (Python 3.11) with the pinned requirements and this package; skips what is already done.
# Usage: scripts/setup.sh [requirements file]   (default: requirements.txt; tests use requirements-dev.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
requirements="${1:-requirements.txt}"
python="${PYTHON:-python3.11}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
stamp=".venv/.installed-$(cat "$requirements" requirements*.txt pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  echo "installing $requirements into .venv (first time: about 2 minutes)"
  .venv/bin/python -m pip install --quiet -r "$requirements"
  .venv/bin/python -m pip install --quiet --no-deps -e .
  touch "$stamp"
fi
