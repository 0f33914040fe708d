"""The whole loop through Airflow's real scheduler: the README's demo, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from active_learning.constants import DEPLOY_DAG_ID, PREANNOTATE_DAG_ID, SENSOR_DAG_ID, TRAINING_DAG_ID
from devstack.embedded import EmbeddedAirflow
from devstack.services import free_port

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.scheduler
def test_the_sensor_launches_training_which_deploys_through_the_real_scheduler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_base: Path
) -> None:
    """The demo's project starts from a base model: trained, registered, deployed and pre-annotating from it."""
    home = tmp_path / "demo"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for key in [k for k in env if k.startswith("AIRFLOW")]:
        env.pop(key)  # the demo's own Airflow, not the test session's
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "demo.py"), "--home", str(home), "--port", str(free_port()), "--timeout", "600",
         "--base", str(tiny_base)],
        env=env, capture_output=True, text=True, timeout=900,
    )
    log = home / "airflow-standalone.log"
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}\n(see {log})"
    assert "OK: sensor -> training -> MLflow -> deploy -> pre-annotation" in done.stdout
    assert "was told: a poll starts now" in done.stderr  # the crossing's import announced it

    env["ACTIVE_LEARNING_HOME"] = str(home)
    check = subprocess.run(
        [sys.executable, "-m", "active_learning", "history", "--project", "demo-news"], env=env, capture_output=True, text=True
    )
    assert '"source": "active_learning"' in check.stdout and '"status": "success"' in check.stdout
    assert check.stdout.count('"run_key"') == 1  # exactly one training for the one crossing
    assert json.loads(check.stdout)[0]["base_model"].startswith("tiny_base 0.1.0 (sha256 ")  # it started from the base

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

    # A manual deploy through the real scheduler: a second model, registered only, deployed with the
    # deploy DAG; that deploy's asset event runs the pre-annotation, and the queue follows the new model.
    trained = subprocess.run(
        [sys.executable, "-m", "active_learning", "train", "--project", "demo-news", "--no-deploy"],
        env=env, capture_output=True, text=True,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    second = trained.stdout.strip().splitlines()[-1]
    for key in [k for k in os.environ if k.startswith("AIRFLOW")]:
        monkeypatch.delenv(key)  # this Airflow's settings, not the test session's
    airflow = EmbeddedAirflow(home, port=free_port(), poll_schedule="0 0 1 1 *")  # no poll: only the deploy
    airflow.start()
    try:
        airflow.wait_for_dags({DEPLOY_DAG_ID, PREANNOTATE_DAG_ID, SENSOR_DAG_ID})
        deploy = {"project": "demo-news", "model_name": second}
        run_id = airflow.api.trigger(DEPLOY_DAG_ID, deploy)["dag_run_id"]
        assert airflow.api.trigger(DEPLOY_DAG_ID, deploy, run_id=run_id)["dag_run_id"] == run_id  # asked again: the same run
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            entries = json.loads(subprocess.run(
                [sys.executable, "-m", "active_learning", "next", "--project", "demo-news", "--n", "100", "--json"],
                env=env, capture_output=True, text=True,
            ).stdout or "[]")
            runs = airflow.api.dag_runs(PREANNOTATE_DAG_ID)
            if {entry["model"] for entry in entries} == {second} and len(runs) == 2 and all(r["state"] == "success" for r in runs):
                break
            time.sleep(3)
        else:
            raise AssertionError(f"no pre-annotation by {second} after the manual deploy: {entries[:3]}, {runs} (see {airflow.log_path})")
        assert len(entries) == 30 and all(entry["score"] is not None for entry in entries)
        deploys = airflow.api.dag_runs(DEPLOY_DAG_ID)
        assert [run["state"] for run in deploys] == ["success"]

        # An import tells Airflow, and its event on the completions asset starts a poll at once (this Airflow's
        # cron never polls): a poll that finds nothing due, and launches nothing.
        more = tmp_path / "three-more.json"
        tasks = json.loads((REPO / "include" / "sample" / "completions_batch1.json").read_text())[:3]
        for n, task in enumerate(tasks):
            task["id"] = 9000 + n
            for m, completion in enumerate(task["completions"]):
                completion["id"] = 90000 + 10 * n + m
        more.write_text(json.dumps(tasks))
        earlier = {run["dag_run_id"] for run in airflow.api.dag_runs(SENSOR_DAG_ID)}  # the demo's polls
        trainings = len(airflow.api.dag_runs(TRAINING_DAG_ID))
        told = subprocess.run([sys.executable, "-m", "active_learning", "import", str(more), "--project", "demo-news"],
                              env=env | airflow.announce_environment(), capture_output=True, text=True)
        assert told.returncode == 0 and "was told: a poll starts now" in told.stderr, told.stderr[-3000:]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            polls = [run for run in airflow.api.dag_runs(SENSOR_DAG_ID) if run["dag_run_id"] not in earlier]
            if polls and all(run["state"] in ("success", "failed") for run in polls):
                break
            time.sleep(3)
        assert [(run["run_type"], run["state"]) for run in polls] == [("asset_triggered", "success")], polls
        assert len(airflow.api.dag_runs(TRAINING_DAG_ID)) == trainings  # 3 new completions: nothing due
    finally:
        airflow.stop()
