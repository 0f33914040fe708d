"""The scale-out path for real: CeleryExecutor on Redis and PostgreSQL, an MLflow server, the store on PostgreSQL.

Needs PostgreSQL on 127.0.0.1:5432 (user postgres) and Redis on 127.0.0.1:6379; .ci/run starts them.
Run it alone with ``scripts/test.sh -m scaleout``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.cluster import ClusterSettings, LocalCluster, scratch_databases, scratch_redis
from devstack.services import free_port
from conftest import SAMPLE

REDIS_DB = 11
pytestmark = pytest.mark.scaleout


@pytest.fixture
def databases():  # type: ignore[no-untyped-def]
    psycopg = pytest.importorskip("psycopg")
    try:
        with scratch_databases() as urls:
            yield urls
    except psycopg.OperationalError as error:
        pytest.skip(f"PostgreSQL is not reachable on 127.0.0.1:5432 ({error}); .ci/run starts it")


@pytest.fixture
def redis_url():  # type: ignore[no-untyped-def]
    redis = pytest.importorskip("redis")
    try:
        with scratch_redis(REDIS_DB) as url:
            yield url
    except redis.ConnectionError as error:
        pytest.skip(f"Redis is not reachable on 127.0.0.1:6379 ({error}); .ci/run starts it")


def test_the_loop_runs_on_celery_with_postgresql_and_an_mlflow_server(tmp_path: Path, databases, redis_url) -> None:  # type: ignore[no-untyped-def]
    settings = ClusterSettings(
        home=tmp_path / "cluster",
        airflow_db_url=databases["airflow"],
        annotation_db_url=databases["annotations"],
        mlflow_backend_url=databases["mlflow"],
        broker_url=redis_url,
        airflow_port=free_port(),
        mlflow_port=free_port(),
        training_queue="gpu",  # train goes to a worker of its own, as on GPU workers
    )
    cluster = LocalCluster(settings)
    started = time.monotonic()
    try:
        cluster.start()
        env = cluster.env

        def cli(*argv: str) -> str:
            done = subprocess.run([sys.executable, "-m", "active_learning", *argv], env=env, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr[-3000:]
            return done.stdout

        cli("init")
        cli("import", str(SAMPLE / "completions_batch1.json"), "--project", "scale",
            "--config", str(SAMPLE / "labeling_config.xml"), "--enable", "--auto-deploy")
        cli("import", str(SAMPLE / "completions_batch2.json"), "--project", "scale")

        runs: list[dict] = []
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            runs = cluster.api.get("dags/active_learning_training/dagRuns")["dag_runs"]
            if runs and runs[0]["state"] in {"success", "failed"}:
                break
            time.sleep(5)
        assert len(runs) == 1, runs
        [run] = runs
        assert run["dag_run_id"] == "active_learning__scale__after_start" and run["state"] == "success", run

        instances = cluster.api.get(f"dags/active_learning_training/dagRuns/{run['dag_run_id']}/taskInstances")["task_instances"]
        ran = [ti for ti in instances if ti["state"] == "success"]
        assert {ti["task_id"] for ti in ran} >= {"prepare_data", "train", "register", "update_config", "validate_config"}
        logs = {queue: (settings.home / "logs" / f"{name}.log").read_text()
                for queue, name in (("default", "celery-worker"), ("gpu", "celery-worker-gpu"))}
        for ti in ran:  # the tasks that load models on the training queue's worker alone, every other on the default worker
            queue = "gpu" if ti["task_id"] in {"train", "choose_deploy_path"} else "default"
            assert ti["queue"] == queue and ti["id"] in logs[queue], f"{ti['task_id']} did not run from queue {queue}: {ti['queue']}"
            assert ti["id"] not in logs["default" if queue == "gpu" else "gpu"], f"{ti['task_id']} ran on both workers"

        from mlflow import MlflowClient

        registry = MlflowClient(settings.mlflow_url, registry_uri=settings.mlflow_url)  # not an earlier test's
        [version] = registry.search_model_versions("name = 'scale_ner'")
        model_name = version.tags["model_name"]
        assert version.source.startswith("models:/")
        config = cli("config", "--project", "scale")
        assert config.count(f'model="{model_name}"') == 3
        history = json.loads(cli("history", "--project", "scale"))
        assert [(h["status"], h["model_name"]) for h in history] == [("success", model_name)]
    finally:
        cluster.stop()
        print(f"scale-out loop: {time.monotonic() - started:.0f} s wall time")
