#!/usr/bin/env bash
# Any `airflow` command with the loop's settings: state under $ACTIVE_LEARNING_HOME (default .data/demo),
# DAGs and plugins from this repository. Example: scripts/airflow.sh standalone
# Commands that start a scheduler (standalone, scheduler) first migrate Airflow's database and create the
# training pool if it is missing, as the demo and compose's airflow-init do: a task in a missing pool
# never runs.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" - "$@" <<'PY'
import os, sys
from pathlib import Path
from devstack.embedded import airflow_environment, prepare_airflow
home = Path(os.environ.get("ACTIVE_LEARNING_HOME", ".data/demo")).resolve()
env = airflow_environment(home, port=int(os.environ.get("AIRFLOW_PORT", "8080")),
                          poll_schedule=os.environ.get("ACTIVE_LEARNING_POLL_SCHEDULE", "*/5 * * * *"))
if sys.argv[1:2] in (["standalone"], ["scheduler"]):
    prepare_airflow(env)
os.execvpe("airflow", ["airflow", *sys.argv[1:]], env)
PY
