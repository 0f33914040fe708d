"""Every DAG file imports cleanly, is documented, tagged and retried, and parses without heavy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DAG_FILES = sorted((REPO / "dags").glob("*.py"))
# Airflow itself imports SQLAlchemy; the domain package and ML libraries must wait for a task to run.
HEAVY = ("spacy", "mlflow", "lxml", "pandas", "active_learning")


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_dag_files_import_without_errors(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"active_learning_sensor", "active_learning_training", "active_learning_deploy"}


def test_every_dag_is_documented_tagged_and_every_task_retried_or_deliberately_not(dagbag) -> None:  # type: ignore[no-untyped-def]
    for dag in dagbag.dags.values():
        assert dag.doc_md and dag.tags, dag.dag_id
        retried = [task.task_id for task in dag.tasks if task.retries > 0]
        assert retried, f"{dag.dag_id} has no task that retries"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_parsing_a_dag_file_imports_nothing_heavy(dag_file: Path) -> None:
    code = f"""
import json, runpy, sys
sys.path[:0] = [{str(REPO / 'plugins')!r}, {str(REPO / 'dags')!r}]
runpy.run_path({str(dag_file)!r})
print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert not loaded & set(HEAVY), f"{dag_file.name} imports {sorted(loaded & set(HEAVY))} at parse time"


def test_the_training_dag_branches_and_validates_after_either_branch(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["active_learning_training"]
    assert dag.task_dict["choose_deploy_path"].downstream_task_ids == {"update_config", "register_only"}
    validate = dag.task_dict["validate_config"]
    assert validate.upstream_task_ids == {"update_config", "register_only", "register"}
    assert validate.trigger_rule == "none_failed_min_one_success"
    assert set(dag.params.keys()) == {"project", "deploy", "gate_tolerance", "as_of"}
