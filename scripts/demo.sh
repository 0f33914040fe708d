#!/usr/bin/env bash
# Set up, then run the whole loop on the embedded default (see scripts/demo.py; --help for options).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh requirements.txt
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python scripts/demo.py "$@"
