"""The real DAGs run with ``dag.test()`` against a real Airflow metadata DB (SQLite), MLflow and store."""

from __future__ import annotations

from pathlib import Path

import pytest

from active_learning.backends import Backends
from active_learning.registry import CANDIDATE
from conftest import SAMPLE

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(backends: Backends, sample_tasks, sample_config: str, request):  # type: ignore[no-untyped-def]
    """An active-learning project past its threshold (90 completions, every 50), named after the test."""
    name = request.node.name.replace("test_", "")[:40]
    backends.store.projects.create(name, sample_config, active_learning=True, frequency=50, auto_deploy=True)
    backends.store.completions.import_tasks(name, sample_tasks)
    return name


def training_runs(run_id: str) -> list[tuple[str, str]]:
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.dag_id == "active_learning_training", DagRun.run_id == run_id)
        return [(run.run_id, run.conf["project"]) for run in runs]


def task_states(dag_run) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def announced() -> list[list[str]]:
    """The projects each deployed-models asset event named, oldest first."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    from active_learning.constants import DEPLOYED_MODELS_ASSET

    with create_session() as session:
        events = (
            session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == DEPLOYED_MODELS_ASSET).order_by(AssetEvent.id)
        )
        return [event.extra.get("projects", []) for event in events]


def test_the_sensor_launches_one_training_per_crossing(dagbag, backends: Backends, project: str) -> None:  # type: ignore[no-untyped-def]
    from active_learning.status import training_run_id

    sensor_dag = dagbag.dags["active_learning_sensor"]
    first = sensor_dag.test()
    assert first.state == "success"
    assert task_states(first)["wait_for_due_projects"] == "success"
    expected = training_run_id(project, None)
    assert training_runs(expected) == [(expected, project)]
    second = sensor_dag.test()  # the same crossing seen again: Airflow skips the existing run
    assert second.state == "success"
    assert training_runs(expected) == [(expected, project)]


def test_training_with_auto_deploy_updates_the_config_and_validates(dagbag, backends: Backends, project: str) -> None:  # type: ignore[no-untyped-def]
    run = dagbag.dags["active_learning_training"].test(run_conf={"project": project, "deploy": "auto"})
    states = task_states(run)
    assert run.state == "success", states
    assert states["update_config"] == "success" and states["register_only"] == "skipped"
    assert states["validate_config"] == "success"
    [training] = backends.store.trainings.history(project)
    assert training.status == "success" and training.run_key == run.run_id
    assert f'model="{training.model_name}"' in backends.store.configs.read(project).xml
    assert backends.store.projects.get(project).deployed_model == training.model_name
    assert announced()[-1] == [project]  # the asset event that puts the model to work


def test_training_with_register_only_leaves_the_config_alone(dagbag, backends: Backends, project: str) -> None:  # type: ignore[no-untyped-def]
    config = backends.store.configs.read(project)
    run = dagbag.dags["active_learning_training"].test(run_conf={"project": project, "deploy": "register_only"})
    states = task_states(run)
    assert run.state == "success", states
    assert states["update_config"] == "skipped" and states["register_only"] == "success"
    assert backends.store.configs.read(project) == config
    [model] = backends.registry.project_models(project)
    assert CANDIDATE in model.aliases


def test_an_invalid_config_fails_the_deploy_without_writing_and_the_history_says_why(dagbag, backends: Backends, project: str) -> None:  # type: ignore[no-untyped-def]
    state = backends.store.configs.read(project)
    backends.store.configs.write(project, state.xml.replace('"ner_dl"', '"ner_dl_v9"'), expected_revision=state.revision,
                           author="test", reason="a typo")
    broken = backends.store.configs.read(project)
    run = dagbag.dags["active_learning_training"].test(run_conf={"project": project, "deploy": "auto"})
    states = task_states(run)
    assert run.state == "failed"
    assert states["update_config"] == "failed" and states["validate_config"] == "upstream_failed", states
    assert backends.store.configs.read(project) == broken
    [training] = backends.store.trainings.history(project)
    assert training.status == "failed" and "ner_dl_v9" in training.error and "MISC" in training.error


def test_the_deploy_dag_deploys_a_chosen_model(dagbag, backends: Backends, project: str) -> None:  # type: ignore[no-untyped-def]
    dagbag.dags["active_learning_training"].test(run_conf={"project": project, "deploy": "register_only"})
    [model] = backends.registry.project_models(project)
    run = dagbag.dags["active_learning_deploy"].test(run_conf={"project": project, "model_name": model.model_name})
    assert run.state == "success", task_states(run)
    assert f'model="{model.model_name}"' in backends.store.configs.read(project).xml
    assert backends.store.configs.revisions(project)[-1].reason == "manual deploy"
    assert announced()[-1] == [project]


def test_a_deploy_outside_airflow_is_announced_by_the_next_poll_and_only_once(
    dagbag, backends: Backends, project: str, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    from active_learning.loop import train_now

    train_now(backends, project, choice="deploy")  # as the CLI deploys: no asset event of its own
    events = len(announced())
    sensor_dag = dagbag.dags["active_learning_sensor"]
    # Nothing is due: the sensor would wait out its 30 s for nothing, twice; one poke is the same answer.
    monkeypatch.setattr(sensor_dag.get_task("wait_for_due_projects"), "timeout", 0)
    first = sensor_dag.test()
    assert task_states(first)["apply_mlflow_deploys"] == "success" and announced()[events:] == [[project]]
    again = sensor_dag.test()
    assert task_states(again)["apply_mlflow_deploys"] == "skipped" and len(announced()) == events + 1


def test_the_preannotate_dag_puts_the_deployed_model_to_work(dagbag, backends: Backends, sample_config: str) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from active_learning.exports import read_export
    from active_learning.loop import train_now

    backends.store.projects.create("queued", sample_config)
    backends.store.completions.import_tasks("queued", read_export(SAMPLE / "completions_batch1.json")[0])
    waiting = [replace(task, completions=()) for task in read_export(SAMPLE / "completions_batch2.json")[0]]
    backends.store.completions.import_tasks("queued", waiting)
    model = train_now(backends, "queued", choice="deploy")["model_name"]

    run = dagbag.dags["active_learning_preannotate"].test(run_conf={"project": "queued"})
    assert run.state == "success", task_states(run)
    assert set(backends.store.predictions.scores("queued", model)) == {task.source_id for task in waiting}


def test_a_runs_training_params_go_over_the_projects_and_reach_the_mlflow_run(dagbag, backends: Backends, project: str) -> None:  # type: ignore[no-untyped-def]
    backends.store.projects.set_training_params(project, {"training.max_steps": 5, "system.seed": 7}, author="t", reason="t")
    run = dagbag.dags["active_learning_training"].test(run_conf={
        "project": project, "deploy": "register_only", "training_params": {"training.max_steps": 2, "training.eval_frequency": 1}})
    assert run.state == "success", task_states(run)
    [training] = backends.store.trainings.history(project)
    params = backends.registry.client.get_run(training.mlflow_run_id).data.params
    assert (params["spacy.training.max_steps"], params["spacy.training.eval_frequency"], params["spacy.system.seed"]) == ("2", "1", "7")
    assert '"training.max_steps": "run"' in params["training_params.sources"]


def test_a_run_with_the_refit_deploys_the_refit_and_keeps_its_twin_for_the_gate(dagbag, backends: Backends, project: str) -> None:  # type: ignore[no-untyped-def]
    run = dagbag.dags["active_learning_training"].test(run_conf={
        "project": project, "deploy": "auto", "training_params": {"dataset.refit": True, "training.eval_frequency": 10}})
    assert run.state == "success", task_states(run)
    [training] = backends.store.trainings.history(project)
    version = backends.model(training.model_name)
    assert version.gate_model_uri and version.gate_model_uri != f"models:/{version.registered_name}/{version.version}"
    metrics = backends.registry.client.get_run(training.mlflow_run_id).data.metrics
    assert metrics["refit_steps"] >= metrics["split_best_step"]
    assert training.deploy.startswith("gate passed") and backends.store.projects.get(project).deployed_model == training.model_name


def test_bad_training_params_fail_the_run_at_once(dagbag, backends: Backends, project: str) -> None:  # type: ignore[no-untyped-def]
    run = dagbag.dags["active_learning_training"].test(run_conf={"project": project, "training_params": {"training.max_step": 2}})
    assert run.state == "failed" and task_states(run)["prepare_data"] == "failed"
    [training] = backends.store.trainings.history(project)
    assert training.status == "failed" and "did you mean 'training.max_steps'?" in training.error and training.mlflow_run_id is None


def test_parameters_spacy_refuses_fail_the_training_naming_them_without_a_retry(  # type: ignore[no-untyped-def]
    dagbag, backends: Backends, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACTIVE_LEARNING_SPACY_OVERRIDES", '{"training.max_steps": "many"}')  # ours are checked; the deployment's not
    run = dagbag.dags["active_learning_training"].test(run_conf={"project": project, "deploy": "register_only"})
    [train] = [ti for ti in run.get_task_instances() if ti.task_id == "train"]
    assert run.state == "failed" and train.state == "failed" and train.try_number == 1
    [training] = backends.store.trainings.history(project)
    assert training.status == "failed" and "training.max_steps='many' (Input should be a valid integer)" in training.error


def test_a_run_from_a_base_model_records_where_it_started(dagbag, backends: Backends, project: str, tiny_base: Path) -> None:  # type: ignore[no-untyped-def]
    run = dagbag.dags["active_learning_training"].test(run_conf={
        "project": project, "deploy": "auto", "training_params": {"model.base": str(tiny_base)}})
    assert run.state == "success", task_states(run)
    [training] = backends.store.trainings.history(project)
    assert training.base_model is not None and training.base_model.startswith("tiny_base 0.1.0 (sha256 ")
    version = backends.model(training.model_name)
    assert backends.registry.client.get_model_version(version.registered_name, str(version.version)).tags["base_model"] == training.base_model
    assert backends.store.projects.get(project).deployed_model == training.model_name


def test_a_run_naming_an_unusable_base_fails_at_once_and_never_trains_from_scratch(dagbag, backends: Backends, project: str) -> None:  # type: ignore[no-untyped-def]
    run = dagbag.dags["active_learning_training"].test(run_conf={
        "project": project, "training_params": {"model.base": "en_core_web_nothere"}})
    [prepare] = [ti for ti in run.get_task_instances() if ti.task_id == "prepare_data"]
    assert run.state == "failed" and prepare.state == "failed" and prepare.try_number == 1
    [training] = backends.store.trainings.history(project)
    assert "model.base 'en_core_web_nothere': no such package is installed on this worker" in training.error
    assert training.mlflow_run_id is None and training.model_name is None
