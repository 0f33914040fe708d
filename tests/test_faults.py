"""Faults injected for real: a dead MLflow server, a dead or locked database, a training killed with
SIGKILL, concurrent deploys, a config write that fails. Nothing is lost and nothing is half-made."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from active_learning import settings
from active_learning.loop import train_now
from active_learning.training import steps as training_pipeline
from devstack.cluster import mlflow_server
from active_learning.backends import Backends
from active_learning.deploy.deployment import deploy_model, rollback
from active_learning.status import poll
from devstack.services import answers, free_port, wait_until
from active_learning.store.models import utcnow


def sample_project(backends: Backends, sample_tasks, sample_config: str, *, auto_deploy: bool = True) -> str:  # type: ignore[no-untyped-def]
    backends.store.projects.create("news", sample_config, active_learning=True, auto_deploy=auto_deploy)
    backends.store.completions.import_tasks("news", sample_tasks)
    return "news"


@pytest.fixture
def mlflow_server_at(home: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Start (and restart) a real MLflow server on a fixed port; whatever the test does, it is stopped."""
    port = free_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # Airflow's retries stand in for MLflow's here
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    started = []

    def start():  # type: ignore[no-untyped-def]
        server = mlflow_server(f"sqlite:///{home / 'mlflow-server.db'}", home / "artifacts", port, env=dict(os.environ), log_dir=home)
        started.append(server)
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/health"), timeout=180, what="MLflow server", services=[server])
        return server

    yield port, start
    for server in started:
        server.stop()


def test_a_dead_mlflow_server_fails_the_training_visibly_and_a_rerun_recovers(  # type: ignore[no-untyped-def]
    mlflow_server_at, sample_tasks, sample_config: str
) -> None:
    port, start_server = mlflow_server_at
    server = start_server()
    backends = Backends()
    project = sample_project(backends, sample_tasks, sample_config)
    config = backends.store.configs.read(project)
    [due] = poll(backends.store.status, utcnow())
    prepared = training_pipeline.prepare_data(backends, project, run_key=due.run_id, source="active_learning", as_of=due.as_of)
    server.stop()

    with pytest.raises(Exception) as failure:
        training_pipeline.train(backends, run_key=due.run_id, mlflow_run_id=prepared["mlflow_run_id"])
    training_pipeline.fail(backends, due.run_id, failure.value)  # what the task's failure callback does
    [failed] = backends.store.trainings.history(project)
    assert failed.status == "failed" and f"127.0.0.1:{port}" in failed.error
    assert backends.store.configs.read(project) == config
    assert not list((settings.data_home() / "work").glob("*/*")), "a failed attempt left scratch files"
    # The crossing is not lost: the next poll names the same run, so clearing it in Airflow retries it.
    assert [d.run_id for d in poll(backends.store.status, utcnow())] == [due.run_id]

    start_server()
    trained = training_pipeline.train(backends, run_key=due.run_id, mlflow_run_id=prepared["mlflow_run_id"])
    registered = training_pipeline.register(backends, run_key=due.run_id, model_uri=trained["model_uri"], labels=trained["labels"])
    deploy_model(backends, project, registered["model_name"], author="test", reason="rerun")
    training_pipeline.finish(backends, due.run_id)
    assert [v.model_name for v in backends.registry.project_models(project)] == [registered["model_name"]]
    assert [h.status for h in backends.store.trainings.history(project)] == ["success"]


def poke(as_of):  # type: ignore[no-untyped-def]
    from active_learning_airflow.sensors import DueProjectsSensor

    sensor = DueProjectsSensor(task_id="wait_for_due_projects")
    return sensor.poke({"dag_run": SimpleNamespace(run_type="manual", run_after=as_of), "data_interval_end": None})


def test_a_dead_database_fails_the_poll_and_the_next_poll_picks_the_crossing_up(  # type: ignore[no-untyped-def]
    home: Path, monkeypatch: pytest.MonkeyPatch, sample_tasks, sample_config: str
) -> None:
    sample_project(Backends(), sample_tasks, sample_config)
    monkeypatch.setenv("ACTIVE_LEARNING_DB_URL", f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone")
    with pytest.raises(Exception, match="127.0.0.1"):
        poke(utcnow())  # the task fails (and Airflow retries it): no XCom, so nothing is launched
    monkeypatch.delenv("ACTIVE_LEARNING_DB_URL")
    result = poke(utcnow())
    assert result.is_done and [kw["conf"]["project"] for kw in result.xcom_value] == ["news"]


def test_a_locked_database_fails_the_poll_instead_of_guessing(  # type: ignore[no-untyped-def]
    home: Path, monkeypatch: pytest.MonkeyPatch, sample_tasks, sample_config: str
) -> None:
    backends = Backends()
    sample_project(backends, sample_tasks, sample_config)
    backends.store.engine.dispose()
    db = home / "annotations.db"
    monkeypatch.setenv("ACTIVE_LEARNING_DB_URL", f"sqlite:///{db}?timeout=1")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")  # a process that takes the whole file, readers included
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(Exception, match="locked"):
            poke(utcnow())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # an import holding the write lock: WAL lets the poll read on
    try:
        assert poke(utcnow()).is_done
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_training_killed_mid_way_is_retried_to_completion_without_duplicates_or_leftovers(  # type: ignore[no-untyped-def]
    backends: Backends, home: Path, sample_tasks, sample_config: str
) -> None:
    project = sample_project(backends, sample_tasks, sample_config, auto_deploy=False)
    [due] = poll(backends.store.status, utcnow())
    prepared = training_pipeline.prepare_data(backends, project, run_key=due.run_id, source="active_learning", as_of=due.as_of)
    code = (
        "from active_learning.backends import Backends; from active_learning.training import steps as training_pipeline; "
        f"training_pipeline.train(Backends(), run_key={due.run_id!r}, mlflow_run_id={prepared['mlflow_run_id']!r}, "
        "overrides={'training.max_steps': 100000, 'training.patience': 100000})"
    )
    attempt = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ), stderr=subprocess.DEVNULL)
    output = settings.data_home() / "work" / due.run_id / "train" / "output"
    history = lambda: backends.registry.client.get_metric_history(prepared["mlflow_run_id"], "epoch")  # noqa: E731
    wait_until(lambda: output.exists() and history(), timeout=120, what="training under way, its evaluations in MLflow")
    attempt.send_signal(signal.SIGKILL)
    attempt.wait()
    assert output.exists()  # killed mid-way: nothing could clean up
    killed_steps = [metric.step for metric in history()]

    trained = training_pipeline.train(backends, run_key=due.run_id, mlflow_run_id=prepared["mlflow_run_id"])
    retried_steps = [metric.step for metric in history()][len(killed_steps):]
    assert retried_steps and min(retried_steps) > max(killed_steps)  # the retry's series continues, not beside the first
    for _ in range(2):  # a register retried after it succeeded
        training_pipeline.register(backends, run_key=due.run_id, model_uri=trained["model_uri"], labels=trained["labels"])
    assert len(backends.registry.project_models(project)) == 1
    assert not (settings.data_home() / "work").exists() or not any((settings.data_home() / "work").iterdir())


def test_mlflow_down_when_the_model_is_logged_the_retry_logs_the_kept_model_without_training_again(  # type: ignore[no-untyped-def]
    mlflow_server_at, sample_tasks, sample_config: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from active_learning.registry import ModelVersionInfo
    from active_learning.training.workspace import scratch_folder

    _, start_server = mlflow_server_at
    server = start_server()
    backends = Backends()
    project = sample_project(backends, sample_tasks, sample_config, auto_deploy=False)
    [due] = poll(backends.store.status, utcnow())
    prepared = training_pipeline.prepare_data(backends, project, run_key=due.run_id, source="active_learning", as_of=due.as_of)
    keep = training_pipeline.Kept.keep

    def keep_then_mlflow_dies(*args, **kwargs):  # type: ignore[no-untyped-def]
        kept = keep(*args, **kwargs)
        server.stop()  # the real server goes away between the training and the logging of its model
        return kept

    monkeypatch.setattr(training_pipeline.Kept, "keep", staticmethod(keep_then_mlflow_dies))
    with pytest.raises(Exception, match="127.0.0.1"):
        training_pipeline.train(backends, run_key=due.run_id, mlflow_run_id=prepared["mlflow_run_id"])
    kept = scratch_folder(due.run_id, training_pipeline.KEPT)
    assert (kept / "kept.json").is_file() and (kept / "model" / "meta.json").is_file()

    start_server()

    def trained_again(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the retry trained again")

    monkeypatch.setattr("active_learning.training.spacy_ner.train_ner", trained_again)
    trained = training_pipeline.train(backends, run_key=due.run_id, mlflow_run_id=prepared["mlflow_run_id"])
    assert not kept.exists()
    registered = ModelVersionInfo.from_dict(training_pipeline.register(
        backends, run_key=due.run_id, model_uri=trained["model_uri"], labels=trained["labels"]))
    assert "ner" in backends.registry.load_model(registered).pipe_names
    run = backends.registry.client.get_run(prepared["mlflow_run_id"]).data
    assert run.params["warm_start_from"] == "none" and run.metrics["f1"] == trained["metrics"]["f1"]
    assert [m.value for m in backends.registry.client.get_metric_history(prepared["mlflow_run_id"], "f1")] == [trained["metrics"]["f1"]]


def test_concurrent_polls_name_the_same_run(backends: Backends, sample_tasks, sample_config: str) -> None:  # type: ignore[no-untyped-def]
    sample_project(backends, sample_tasks, sample_config)
    as_of = utcnow()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: [d.run_id for d in poll(Backends().store.status, as_of)], range(8)))
    assert len({tuple(r) for r in results}) == 1 and len(results[0]) == 1


def _deploy_in_another_process(home: str, model: str, start: float) -> int:
    os.environ["ACTIVE_LEARNING_HOME"] = home
    time.sleep(max(0.0, start - time.time()))  # both processes write at the same moment
    return deploy_model(Backends(), "news", model, author=f"proc-{model[-6:]}", reason=f"deploy {model}").revision


def test_two_deploys_at_once_are_serialised_with_no_lost_update(  # type: ignore[no-untyped-def]
    backends: Backends, home: Path, sample_tasks, sample_config: str
) -> None:
    project = sample_project(backends, sample_tasks, sample_config, auto_deploy=False)
    first = train_now(backends, project)["model_name"]
    time.sleep(1.1)
    second = train_now(backends, project)["model_name"]
    start = time.time() + 3
    with multiprocessing.get_context("spawn").Pool(2) as processes:
        revisions = processes.starmap(_deploy_in_another_process, [(str(home), first, start), (str(home), second, start)])
    assert sorted(revisions) == [2, 3]
    history = backends.store.configs.revisions(project)
    reasons = [r.reason for r in history]
    assert reasons.count(f"deploy {first}") == 1 and reasons.count(f"deploy {second}") == 1
    last = history[-1].reason.removeprefix("deploy ")
    assert f'model="{last}"' in backends.store.configs.read(project).xml


def test_a_config_write_that_fails_half_way_leaves_the_previous_config_live(  # type: ignore[no-untyped-def]
    backends: Backends, home: Path, sample_tasks, sample_config: str
) -> None:
    project = sample_project(backends, sample_tasks, sample_config, auto_deploy=False)
    model = train_now(backends, project)["model_name"]
    before = backends.store.configs.read(project)
    db = sqlite3.connect(home / "annotations.db")
    # The project row is updated first; the revision insert then fails, as a full disk would fail it.
    db.execute("CREATE TRIGGER disk_full BEFORE INSERT ON config_revisions BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    db.commit()
    with pytest.raises(Exception, match="disk full"):
        deploy_model(backends, project, model, author="test", reason="doomed")
    assert backends.store.configs.read(project) == before
    db.execute("DROP TRIGGER disk_full")
    db.commit()
    db.close()
    deploy_model(backends, project, model, author="test", reason="deploy")
    assert rollback(backends, project, to_revision=1, author="test") == 3
    assert backends.store.configs.read(project).xml == sample_config
