"""The whole loop through Airflow's real scheduler: the README's demo, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.services import free_port

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.scheduler
def test_the_sensor_launches_training_which_deploys_through_the_real_scheduler(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for key in [k for k in env if k.startswith("AIRFLOW")]:
        env.pop(key)  # the demo's own Airflow, not the test session's
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "demo.py"), "--home", str(home), "--port", str(free_port()), "--timeout", "600"],
        env=env, capture_output=True, text=True, timeout=900,
    )
    log = home / "airflow-standalone.log"
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}\n(see {log})"
    assert "OK: sensor -> training -> MLflow -> deploy -> pre-annotation" in done.stdout

    env["ACTIVE_LEARNING_HOME"] = str(home)
    check = subprocess.run(
        [sys.executable, "-m", "active_learning", "history", "--project", "demo-news"], env=env, capture_output=True, text=True
    )
    assert '"source": "active_learning"' in check.stdout and '"status": "success"' in check.stdout
    assert check.stdout.count('"run_key"') == 1  # exactly one training for the one crossing

    # The deploy's asset event ran the pre-annotation: each of the 30 tasks awaiting annotation has one
    # prediction from the deployed model, and the queue lists them least confident first.
    queue = subprocess.run(
        [sys.executable, "-m", "active_learning", "next", "--project", "demo-news", "--n", "100", "--json"],
        env=env, capture_output=True, text=True,
    )
    entries = json.loads(queue.stdout)
    deployed = json.loads(check.stdout)[-1]["model_name"]
    assert len(entries) == 30 and {entry["model"] for entry in entries} == {deployed}
    assert [entry["score"] for entry in entries] == sorted(entry["score"] for entry in entries)
