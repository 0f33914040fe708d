"""The main job on the embedded default, end to end, through Airflow's real scheduler.

1. creates the annotation store and MLflow store under ``--home`` (default ``.data/demo``),
2. imports the sample project's first 40 completions (threshold: 50) with active learning and
   auto-deploy on, and 30 tasks nobody has annotated yet,
3. starts Airflow (``airflow standalone``: scheduler, DAG processor, triggerer, API server;
   LocalExecutor on SQLite) with a poll every minute,
4. imports 50 more completions, so the project crosses its threshold; the import tells Airflow (an event
   on the completions asset), so the poll starts at once instead of at the next minute,
5. waits for the sensor to launch the training, the model to be registered and deployed, and the
   config to be validated,
6. waits for the deploy's asset event to run the pre-annotation: the deployed model pre-annotates the 30
   tasks, and the queue lists the least confident first; then prints what happened and how to open the
   Airflow and MLflow UIs.

Exit status 0 when the config names the new model, every task awaiting annotation has its prediction
from it, and every Airflow run succeeded.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from active_learning.constants import DEPLOY_DAG_ID, PREANNOTATE_DAG_ID, SENSOR_DAG_ID, TRAINING_DAG_ID
from active_learning.settings import REPO_ROOT, hide_passwords
from devstack.airflow_api import PASSWORDS_FILE
from devstack.embedded import EmbeddedAirflow, airflow_environment

SAMPLE = REPO_ROOT / "include" / "sample"
SHARED_WNUT = REPO_ROOT.parent / "shared" / "data" / "wnut17"
PROJECT = "demo-news"
DEMO_MARKER = ".active-learning-demo"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=REPO_ROOT / ".data" / "demo", help="all state goes here (reset)")
    parser.add_argument("--port", type=int, default=8080, help="Airflow API server and UI port")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the deploy")
    parser.add_argument("--keep-running", action="store_true", help="leave Airflow running for the UI")
    parser.add_argument("--base", default=None, help="the project's base model (training parameter model.base): a spaCy "
                        "pipeline package or folder its trainings start from; default: from scratch")
    args = parser.parse_args()

    home = args.home.resolve()
    _reset(home)
    os.environ.update(airflow_environment(home, port=args.port, poll_schedule="* * * * *"))
    from active_learning import cli  # reads the environment set just above

    step("1. annotation store and MLflow store")
    _cli(cli, "init")
    step(f"2. project {PROJECT!r}: 40 completions, active learning on (every 50), auto-deploy on; 30 tasks to annotate")
    _cli(cli, "import", str(SAMPLE / "completions_batch1.json"), "--project", PROJECT,
         "--config", str(SAMPLE / "labeling_config.xml"), "--enable", "--frequency", "50", "--auto-deploy")
    _cli(cli, "import", str(SAMPLE / "tasks_to_annotate.json"), "--project", PROJECT)
    if args.base:
        _cli(cli, "training-params", "--project", PROJECT, "--set", f"model.base={args.base}")
    if SHARED_WNUT.is_dir():
        _cli(cli, "import", str(SHARED_WNUT / "tasks.json"), "--project", "wnut17",
             "--config", str(SHARED_WNUT / "labeling_config.xml"))
    _cli(cli, "projects")

    airflow = EmbeddedAirflow(home, port=args.port, poll_schedule="* * * * *")
    step(f"3. starting Airflow at {airflow.url} (log: {airflow.log_path})")
    started = time.monotonic()
    airflow.start()
    try:
        airflow.wait_for_dags({SENSOR_DAG_ID, TRAINING_DAG_ID, DEPLOY_DAG_ID, PREANNOTATE_DAG_ID})
        os.environ.update(airflow.announce_environment())  # from now on an import tells Airflow: a poll starts at once
        step("4. annotators submit 50 more completions: the project crosses its threshold, and the import tells Airflow")
        _cli(cli, "import", str(SAMPLE / "completions_batch2.json"), "--project", PROJECT)
        _cli(cli, "projects")
        step("5. waiting for the sensor to launch training, and for the deploy")
        training = _wait_for_training(args.timeout)
        if training["status"] == "success":
            step("6. waiting for the deploy's asset event to pre-annotate the tasks awaiting annotation")
            _wait_for_preannotation(airflow, args.timeout)
            _cli(cli, "next", "--project", PROJECT, "--n", "5")
        ok = _report(airflow, training, time.monotonic() - started)
    finally:
        if args.keep_running and airflow.process:
            print(f"\nAirflow keeps running (pid {airflow.process.pid}); stop it with: kill -TERM -{airflow.process.pid}")
        else:
            airflow.stop()
    return 0 if ok else 1


def step(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def _reset(home: Path) -> None:
    if home.exists():
        if not (home / DEMO_MARKER).exists():
            sys.exit(f"{home} exists and was not made by this demo: choose another --home")
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / DEMO_MARKER).touch()


def _cli(cli, *argv: str) -> None:  # type: ignore[no-untyped-def]
    print(f"$ active-learning {' '.join(argv)}", flush=True)
    if cli.main(list(argv)) != 0:
        sys.exit(f"active-learning {argv[0]} failed")


def _wait_for_training(timeout: float) -> dict:
    from active_learning.backends import Backends

    store = Backends().store
    deadline = time.monotonic() + timeout
    last_status = None
    while time.monotonic() < deadline:
        history = store.trainings.history(PROJECT)
        if history:
            run = history[-1]
            if run.status != last_status:
                print(f"  training {run.run_key}: {run.status}", flush=True)
                last_status = run.status
            if run.status in {"success", "failed"}:
                return run.as_dict()
        time.sleep(3)
    raise TimeoutError(f"no finished training after {timeout:.0f} s")


def _wait_for_preannotation(airflow: EmbeddedAirflow, timeout: float) -> None:
    from active_learning.backends import Backends

    store = Backends().store
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = airflow.api.dag_runs(PREANNOTATE_DAG_ID)
        if any(run["state"] in {"success", "failed"} for run in runs):
            model = store.projects.get(PROJECT).deployed_model
            waiting = store.predictions.unannotated_ids(PROJECT)
            done = len(store.predictions.scores(PROJECT, model, waiting)) if model else 0
            print(f"  {PREANNOTATE_DAG_ID}: {', '.join(run['state'] for run in runs)}; {done} of {len(waiting)} tasks "
                  f"awaiting annotation pre-annotated by {model}", flush=True)
            return
        time.sleep(3)
    raise TimeoutError(f"the tasks awaiting annotation were not pre-annotated after {timeout:.0f} s")


def _report(airflow: EmbeddedAirflow, training: dict, seconds: float) -> bool:
    from active_learning.backends import Backends

    backends = Backends()
    step("result")
    print(json.dumps({k: training[k] for k in ("run_key", "status", "completions_used", "model_name", "model_version", "deploy", "error")}, indent=2))
    if training["metrics"]:
        print(f"dev scores: precision {training['metrics']['precision']:.3f}, recall {training['metrics']['recall']:.3f}, f1 {training['metrics']['f1']:.3f}")
    revisions = backends.store.configs.revisions(PROJECT)
    print(f"\nlabeling config, revision {revisions[0].revision} -> {revisions[-1].revision} ({revisions[-1].reason}):")
    sys.stdout.writelines(difflib.unified_diff(
        revisions[0].labeling_config.splitlines(keepends=True), revisions[-1].labeling_config.splitlines(keepends=True),
        "revision 1", f"revision {revisions[-1].revision}",
    ))
    runs = {dag: airflow.api.dag_runs(dag) for dag in (SENSOR_DAG_ID, TRAINING_DAG_ID, PREANNOTATE_DAG_ID)}
    print("\nAirflow runs:")
    for dag, dag_runs in runs.items():
        for run in dag_runs:
            print(f"  {dag:26} {run['dag_run_id']:70} {run['state']}")
    deployed = backends.store.projects.get(PROJECT).deployed_model
    waiting = backends.store.predictions.unannotated_ids(PROJECT)
    ok = (
        training["status"] == "success"
        and deployed == training["model_name"]
        and f'model="{deployed}"' in backends.store.configs.read(PROJECT).xml
        and any(run["state"] == "success" for run in runs[TRAINING_DAG_ID])
        and any(run["state"] == "success" for run in runs[PREANNOTATE_DAG_ID])
        and len(backends.store.predictions.scores(PROJECT, deployed, waiting)) == len(waiting) > 0
    )
    print(f"\n{'OK' if ok else 'FAILED'}: sensor -> training -> MLflow -> deploy -> pre-annotation in {seconds:.0f} s (from Airflow start)")
    print(f"""
Airflow UI:  {airflow.url}  (user admin, password in {airflow.api.airflow_home / PASSWORDS_FILE})
             start it again with: scripts/airflow.sh standalone
MLflow UI:   {sys.executable.rsplit('/', 1)[0]}/mlflow ui --backend-store-uri {hide_passwords(backends.registry.tracking_uri)} --port 5000
             then open http://localhost:5000/#/models and search for "{PROJECT}"
CLI:         ACTIVE_LEARNING_HOME={airflow.home} active-learning projects""")
    return ok


if __name__ == "__main__":
    raise SystemExit(main())
