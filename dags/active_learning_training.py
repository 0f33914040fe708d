"""
### Active learning: train, register, deploy or not, validate

Launched by `active_learning_sensor` when a project gained enough completions, or by hand with the
form below. Trains a spaCy NER model on one completion per task (as of the run's `as_of`), logs it to
MLflow as `<project>_ner_<YYYYMMDD_HHMMSS>` (UTC training start) and registers it as a version of the
project's registered model `<project>_ner`. Then, per the project's auto-deploy flag (or the `deploy`
override), either **update config** (every label not tied to a pretrained model names the new model;
alias `deployed`) or **register only** (alias `candidate`: deploy it later with `active_learning_deploy`
or by moving the `deployed` alias in the MLflow model browser). **validate config** runs after either
branch and fails with one line per bad model name.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from active_learning_airflow.callbacks import mark_training_failed
from active_learning_airflow.errors import fail_without_retry
from active_learning_airflow.params import DRAFT_07
from airflow.sdk import DAG, Param, TriggerRule, get_current_context, task

with DAG(
    dag_id="active_learning_training",
    description="Train, register and deploy a project's NER model",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["active-learning", "ner", "mlflow"],
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=15),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=5),
        "on_failure_callback": mark_training_failed,
    },
    params={
        "project": Param("", type="string", minLength=1, title="Project", description="Name of the annotation project", **DRAFT_07),
        "deploy": Param(
            "auto",
            enum=["auto", "deploy", "register_only"],
            title="Deploy",
            **DRAFT_07,
            description="auto: the project's auto-deploy flag, then the deploy gate; deploy: update the config "
            "(gate overridden); register_only: only register",
        ),
        "gate_tolerance": Param(
            0.0, type="number", minimum=0, maximum=1, title="Gate tolerance", **DRAFT_07,
            description="auto-deploy only if new F1 >= deployed F1 - tolerance, both scored on the fixed evaluation set",
        ),
        "as_of": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Completions as of",
            **DRAFT_07,
            description="Train on completions that arrived up to this time (UTC); empty: now",
        ),
    },
):

    @task
    def prepare_data() -> dict[str, Any]:
        from active_learning.training import steps as training_pipeline
        from active_learning.status import training_source
        from active_learning_airflow.connections import task_backends

        context = get_current_context()
        params, dag_run = context["params"], context["dag_run"]
        as_of = datetime.fromisoformat(params["as_of"]) if params.get("as_of") else dag_run.run_after
        # The sensor says so in the run's conf; not a form field, so a run started by hand is "manual".
        source = training_source(dag_run.conf or {})
        with fail_without_retry():
            return training_pipeline.prepare_data(
                task_backends(), params["project"], run_key=context["run_id"], source=source, as_of=as_of
            )

    @task(retries=1)
    def train(prepared: dict[str, Any]) -> dict[str, Any]:
        from active_learning.training import steps as training_pipeline
        from active_learning_airflow.connections import task_backends

        return training_pipeline.train(task_backends(), run_key=prepared["run_key"], mlflow_run_id=prepared["mlflow_run_id"])

    @task
    def register(prepared: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
        from active_learning.training import steps as training_pipeline
        from active_learning_airflow.connections import task_backends

        return training_pipeline.register(
            task_backends(), run_key=prepared["run_key"], model_uri=trained["model_uri"], labels=trained["labels"]
        )

    @task.branch
    def choose_deploy_path(registered: dict[str, Any]) -> str:
        """auto: the project's auto-deploy flag and the deploy gate; deploy / register_only: as asked."""
        from active_learning.training import steps as training_pipeline
        from active_learning_airflow.connections import task_backends

        context = get_current_context()
        with fail_without_retry():
            deploy = training_pipeline.decide_deploy(
                task_backends(), context["run_id"], registered["project"], registered["model_name"],
                choice=context["params"]["deploy"], tolerance=float(context["params"]["gate_tolerance"]),
            )
        return "update_config" if deploy else "register_only"

    @task
    def update_config(registered: dict[str, Any]) -> None:
        from active_learning.training import steps as training_pipeline
        from active_learning_airflow.connections import task_backends

        with fail_without_retry():
            training_pipeline.deploy_trained(
                task_backends(), get_current_context()["run_id"], registered["project"], registered["model_name"],
                author="airflow:active_learning_training",
            )

    @task
    def register_only(registered: dict[str, Any]) -> None:
        from active_learning.training import steps as training_pipeline
        from active_learning_airflow.connections import task_backends

        with fail_without_retry():
            training_pipeline.keep_as_candidate(
                task_backends(), get_current_context()["run_id"], registered["project"], registered["model_name"]
            )

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def validate_config(registered: dict[str, Any]) -> None:
        from active_learning.training import steps as training_pipeline
        from active_learning_airflow.connections import task_backends

        with fail_without_retry():
            training_pipeline.validate_and_finish(task_backends(), get_current_context()["run_id"], registered["project"])

    prepared = prepare_data()
    registered = register(prepared, train(prepared))
    choose_deploy_path(registered) >> [update_config(registered), register_only(registered)] >> validate_config(registered)
