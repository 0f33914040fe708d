"""Every DAG file imports cleanly, is documented, tagged and retried, and parses without heavy imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DAG_FILES = sorted((REPO / "dags").glob("*.py"))
# Airflow itself imports SQLAlchemy; ML libraries and the domain package must wait for a task to run,
# except the domain's leaf module of names (DAG ids, deploy choices).
HEAVY = ("spacy", "mlflow", "lxml", "pandas")
DOMAIN_AT_PARSE_TIME = {"active_learning", "active_learning.constants"}
# Tasks that deliberately never retry, each with its reason: (dag_id, task_id) -> why. Every other
# task retries at least once (errors that no retry can fix fail it at once, see tasks.domain_task).
NOT_RETRIED: dict[tuple[str, str], str] = {}


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_dag_files_import_without_errors(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {
        "active_learning_sensor", "active_learning_training", "active_learning_deploy", "active_learning_preannotate"
    }


def test_every_dag_is_documented_and_tagged(dagbag) -> None:  # type: ignore[no-untyped-def]
    for dag in dagbag.dags.values():
        assert dag.doc_md and dag.tags, dag.dag_id


def test_params_live_on_the_dag_alone(dagbag) -> None:  # type: ignore[no-untyped-def]
    """params.add_trigger_form: a copy in every task would double the training DAG's parse time."""
    for dag in dagbag.dags.values():
        assert not [task.task_id for task in dag.tasks if task.params], dag.dag_id


def test_every_task_retries_unless_it_is_listed_as_deliberately_not_retried(dagbag) -> None:  # type: ignore[no-untyped-def]
    tasks = {(dag.dag_id, task.task_id): task for dag in dagbag.dags.values() for task in dag.tasks}
    unknown = sorted(set(NOT_RETRIED) - set(tasks))
    assert not unknown, f"NOT_RETRIED names tasks that do not exist: {unknown}"
    never = sorted(key for key, task in tasks.items() if not task.retries and key not in NOT_RETRIED)
    assert not never, f"tasks without retries: {never} (give them retries >= 1, or list them in NOT_RETRIED with a reason)"
    listed_but_retried = sorted(key for key in NOT_RETRIED if tasks[key].retries)
    assert not listed_but_retried, f"NOT_RETRIED lists tasks that do retry: {listed_but_retried}"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_parsing_a_dag_file_imports_nothing_heavy(dag_file: Path) -> None:
    code = f"""
import json, runpy, sys
sys.path[:0] = [{str(REPO / 'plugins')!r}, {str(REPO / 'dags')!r}]
runpy.run_path({str(dag_file)!r})
print(json.dumps(sorted(sys.modules)))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    heavy = sorted(name for name in loaded if name.split(".")[0] in HEAVY)
    assert not heavy, f"{dag_file.name} imports {heavy} at parse time"
    domain = sorted(name for name in loaded if name.split(".")[0] == "active_learning")
    assert set(domain) <= DOMAIN_AT_PARSE_TIME, f"{dag_file.name} imports {domain} at parse time"


def test_the_training_dag_branches_and_validates_after_either_branch(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["active_learning_training"]
    assert dag.task_dict["choose_deploy_path"].downstream_task_ids == {"update_config", "register_only"}
    validate = dag.task_dict["validate_config"]
    assert validate.upstream_task_ids == {"update_config", "register_only", "register"}
    assert validate.trigger_rule == "none_failed_min_one_success"
    assert set(dag.params.keys()) == {"project", "deploy", "gate_tolerance", "training_params", "as_of"}


# Tasks that load spaCy models, each with what it loads: they share the training pool, and no other task
# does (polls, launches and deploys never wait behind a training).
LOADS_MODELS: dict[tuple[str, str], str] = {
    ("active_learning_training", "train"): "trains a pipeline, then loads it to score and log it",
    ("active_learning_training", "choose_deploy_path"): "the deploy gate scores the new and the deployed model",
    ("active_learning_preannotate", "preannotate"): "the deployed model pre-annotates the queue",
}


def test_every_task_that_loads_a_model_is_in_the_training_pool_and_no_other_is(dagbag) -> None:  # type: ignore[no-untyped-def]
    from airflow.task.priority_strategy import validate_and_load_priority_weight_strategy

    from active_learning.constants import TRAINING_POOL
    from active_learning_airflow.priority import FirstInFirstOut

    tasks = {(dag.dag_id, task.task_id): task for dag in dagbag.dags.values() for task in dag.tasks}
    assert set(LOADS_MODELS) <= set(tasks), f"LOADS_MODELS names tasks that do not exist: {sorted(set(LOADS_MODELS) - set(tasks))}"
    assert {key for key, task in tasks.items() if task.pool == TRAINING_POOL} == set(LOADS_MODELS)
    for key in LOADS_MODELS:
        strategy = validate_and_load_priority_weight_strategy(tasks[key].weight_rule)
        assert type(strategy) is FirstInFirstOut, f"{key}: pooled work runs in the order it arrived"


def test_polls_and_deploys_never_wait_behind_a_training(dagbag) -> None:  # type: ignore[no-untyped-def]
    for dag_id in ("active_learning_sensor", "active_learning_deploy"):
        pools = {task.task_id: task.pool for task in dagbag.dags[dag_id].tasks}
        assert set(pools.values()) == {"default_pool"}, f"{dag_id}: {pools}"


def test_the_pooled_tasks_keep_pool_and_order_through_serialization(dagbag) -> None:  # type: ignore[no-untyped-def]
    """What the scheduler gets: this fails if the plugin does not register the weight strategy."""
    from airflow.serialization.serialized_objects import DagSerialization

    from active_learning.constants import TRAINING_POOL
    from active_learning_airflow.priority import FirstInFirstOut

    for (dag_id, task_id) in LOADS_MODELS:
        dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dagbag.dags[dag_id]))
        task = dag.get_task(task_id)
        assert task.pool == TRAINING_POOL
        assert type(task.weight_rule) is FirstInFirstOut


def test_a_training_launched_earlier_trains_first(dagbag, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Task instances created as Airflow creates them, one second apart: the earlier outranks the later,
    and pooled work outranks every weight Airflow's own rules give the loop's tasks."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.serialization.serialized_objects import DagSerialization

    from active_learning_airflow import priority

    dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dagbag.dags["active_learning_training"]))
    now = 1_800_000_000.0
    monkeypatch.setattr(priority.time, "time", lambda: now)
    earlier = TaskInstance(dag.get_task("train"), run_id="due_first", dag_version_id=None)
    now += 1
    later = TaskInstance(dag.get_task("train"), run_id="due_second", dag_version_id=None)
    assert 2**31 - 1 >= earlier.priority_weight > later.priority_weight > len(dag.tasks)


def test_a_poll_outranks_every_training_step_for_a_free_slot(dagbag, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """With every executor slot taken by the runs a poll launched, the next poll's tasks go first."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.serialization.serialized_objects import DagSerialization

    from active_learning_airflow import priority

    def weights(dag_id: str) -> dict[str, int]:
        dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dagbag.dags[dag_id]))
        return {task.task_id: TaskInstance(task, run_id="r", dag_version_id=None).priority_weight for task in dag.tasks}

    monkeypatch.setattr(priority.time, "time", lambda: priority.EPOCH + 1.0)  # the highest pooled weight there is
    poll = weights("active_learning_sensor")
    training = weights("active_learning_training")
    assert min(poll.values()) > max(training.values()), f"poll {poll} vs training {training}"


def test_the_scheduler_still_queues_by_weight_then_logical_date() -> None:
    """FirstInFirstOut relies on this order (Airflow 3.3): re-check it when Airflow changes."""
    import inspect

    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    source = inspect.getsource(SchedulerJobRunner._executable_task_instances_to_queued)
    assert ".order_by(-TI.priority_weight, DR.logical_date, TI.map_index)" in source


@pytest.mark.parametrize(("value", "queue"), [("", None), ("gpu", "gpu"), (" gpu ", "gpu")])
def test_the_training_queue_is_the_setting_or_the_default(monkeypatch: pytest.MonkeyPatch, value: str, queue: str | None) -> None:
    from active_learning_airflow.queues import on_training_queue

    monkeypatch.setenv("ACTIVE_LEARNING_TRAINING_QUEUE", value)
    assert on_training_queue() == ({"queue": queue} if queue else {})


def test_a_training_queue_that_is_no_queue_name_fails_the_dag_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from active_learning_airflow.queues import training_queue

    monkeypatch.setenv("ACTIVE_LEARNING_TRAINING_QUEUE", "gpu; rm -rf")
    with pytest.raises(ValueError, match="must be a queue name"):
        training_queue()


def test_with_a_training_queue_the_tasks_that_load_models_and_only_they_go_to_it() -> None:
    code = f"""
import json, sys
sys.path[:0] = [{str(REPO / 'plugins')!r}, {str(REPO / 'dags')!r}]
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(REPO / 'dags')!r})
assert not bag.import_errors, bag.import_errors
print(json.dumps({{f"{{d.dag_id}}.{{t.task_id}}": [t.queue, t.pool] for d in bag.dags.values() for t in d.tasks}}))
"""
    env = dict(os.environ, ACTIVE_LEARNING_TRAINING_QUEUE="gpu")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    tasks = json.loads(done.stdout.strip().splitlines()[-1])
    on_gpu = sorted(task for task, (queue, _) in tasks.items() if queue == "gpu")
    assert on_gpu == ["active_learning_preannotate.preannotate", "active_learning_training.choose_deploy_path",
                      "active_learning_training.train"]
    assert all((queue == "gpu") == (pool == "active_learning_training") for queue, pool in tasks.values())
