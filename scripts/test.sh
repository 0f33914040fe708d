#!/usr/bin/env bash
# Set up, then run the test suite (pytest arguments pass through, e.g. -m "not scheduler").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh requirements-dev.txt
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m pytest "$@"
