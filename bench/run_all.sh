#!/usr/bin/env bash
# Runs every benchmark at full size, one after the other (about 3.5 hours on 2 cores, and model_quality
# and base_model as long again per corpus: 3 seeds of 4 sides, 6 sizes of 2 sides); each writes
# bench/results/<name>.json and its printed report to bench/results/<name>.txt.
# Usage: bench/run_all.sh [name ...]   (default: all; names: dag_parse poll_scaling label_studio_poll
#        training_overhead memory trigger_latency load preannotation strategies model_quality base_model
#        transformer_cost)
set -uo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python=python
export PATH="$(dirname "$python"):$PATH"
mkdir -p bench/results
status=0
for name in "${@:-dag_parse poll_scaling label_studio_poll training_overhead memory trigger_latency load preannotation strategies model_quality base_model transformer_cost}"; do
  for one in $name; do
    echo "=== $one ($(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1-3 /proc/loadavg))"
    "$python" "bench/$one.py" 2>&1 | tee "bench/results/$one.txt" | tail -1
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  done
done
exit $status
