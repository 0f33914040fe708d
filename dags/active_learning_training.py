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
        "project": Param("", type="string", minLength=1, title="Project", description="Name of the annotation project"),
        "source": Param("manual", enum=["manual", "active_learning"], title="Source", description="What started this training"),
        "deploy": Param(
            "auto",
            enum=["auto", "deploy", "register_only"],
            title="Deploy",
            description="auto: follow the project's auto-deploy flag; deploy: update the config; register_only: only register",
        ),
        "as_of": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Completions as of",
            description="Train on completions that arrived up to this time (UTC); empty: now",
        ),
    },
):

    @task
    def prepare_data() -> dict[str, Any]:
        from active_learning import training_pipeline
        from active_learning.context import Context

        context = get_current_context()
        params = context["params"]
        as_of = datetime.fromisoformat(params["as_of"]) if params.get("as_of") else context["dag_run"].run_after
        with fail_without_retry():
            return training_pipeline.prepare_data(
                Context(), params["project"], run_key=context["run_id"], source=params["source"], as_of=as_of
            )

    @task(retries=1)
    def train(prepared: dict[str, Any]) -> dict[str, Any]:
        from active_learning import training_pipeline
        from active_learning.context import Context

        return training_pipeline.train(Context(), run_key=prepared["run_key"], mlflow_run_id=prepared["mlflow_run_id"])

    @task
    def register(prepared: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
        from active_learning import training_pipeline
        from active_learning.context import Context

        return training_pipeline.register(
            Context(), run_key=prepared["run_key"], model_uri=trained["model_uri"], labels=trained["labels"]
        )

    @task.branch
    def choose_deploy_path(registered: dict[str, Any]) -> str:
        from active_learning.context import Context

        choice = get_current_context()["params"]["deploy"]
        if choice == "auto":
            choice = "deploy" if Context().store.project(registered["project"]).auto_deploy else "register_only"
        return "update_config" if choice == "deploy" else "register_only"

    @task
    def update_config(registered: dict[str, Any]) -> None:
        from active_learning import training_pipeline
        from active_learning.context import Context
        from active_learning.deployment import deploy_model

        ctx, run_id = Context(), get_current_context()["run_id"]
        with fail_without_retry():
            result = deploy_model(
                ctx, registered["project"], registered["model_name"], author="airflow:active_learning_training",
                reason=f"training {run_id}",
            )
        training_pipeline.note_deploy(ctx, run_id, f"deployed (config revision {result.revision})")

    @task
    def register_only(registered: dict[str, Any]) -> None:
        from active_learning import training_pipeline
        from active_learning.context import Context
        from active_learning.deployment import mark_candidate

        ctx = Context()
        mark_candidate(ctx, registered["project"], registered["model_name"])
        training_pipeline.note_deploy(ctx, get_current_context()["run_id"], "registered only (alias 'candidate')")

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def validate_config(registered: dict[str, Any]) -> None:
        from active_learning import training_pipeline
        from active_learning.context import Context
        from active_learning.deployment import ConfigValidationError, validate_project

        ctx = Context()
        problems = validate_project(ctx, registered["project"])
        with fail_without_retry():
            if problems:
                raise ConfigValidationError(registered["project"], problems)
        training_pipeline.finish(ctx, get_current_context()["run_id"])

    prepared = prepare_data()
    registered = register(prepared, train(prepared))
    choose_deploy_path(registered) >> [update_config(registered), register_only(registered)] >> validate_config(registered)
