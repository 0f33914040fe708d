"""
### Active learning: deploy a model by hand

Pick a model in the MLflow model browser (registered model `<project>_ner`; each version carries its
model name `<project>_ner_<YYYYMMDD_HHMMSS>` and training time) and enter it below. The project's labeling
config then names it for every label not tied to a pretrained model, the `deployed` alias moves to it,
and the config is validated. The previous config stays as a revision (`active-learning rollback`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from active_learning_airflow.errors import fail_without_retry
from active_learning_airflow.params import DRAFT_07
from airflow.sdk import DAG, Param, get_current_context, task

with DAG(
    dag_id="active_learning_deploy",
    description="Deploy a registered model into a project's labeling config",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["active-learning", "ner", "mlflow"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=15)},
    params={
        "project": Param("", type="string", minLength=1, title="Project", **DRAFT_07),
        "model_name": Param(
            "", type="string", pattern=r"^[A-Za-z0-9_.-]+_ner_\d{8}_\d{6}$", title="Model name",
            description="<project>_ner_<YYYYMMDD_HHMMSS>, as shown in the MLflow model browser",
            **DRAFT_07,
        ),
    },
):

    @task
    def update_config() -> int:
        from active_learning_airflow.connections import task_backends
        from active_learning.deploy.deployment import deploy_model

        from active_learning.deploy.gate import compare_with_deployed

        context = get_current_context()
        params = context["params"]
        backends = task_backends()
        with fail_without_retry():
            comparison = compare_with_deployed(backends, params["project"], params["model_name"])
            print(f"comparison (a manual deploy is not gated): {comparison.describe()}")
            result = deploy_model(
                backends, params["project"], params["model_name"],
                author=f"airflow:{context['dag_run'].run_id}", reason="manual deploy",
            )
        return result.revision

    @task
    def validate_config() -> None:
        from active_learning_airflow.connections import task_backends
        from active_learning.deploy.deployment import ConfigValidationError, validate_project

        project = get_current_context()["params"]["project"]
        problems = validate_project(task_backends(), project)
        with fail_without_retry():
            if problems:
                raise ConfigValidationError(project, problems)

    update_config() >> validate_config()
