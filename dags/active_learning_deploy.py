"""
### Active learning: deploy a model by hand

Pick a model in the MLflow model browser (registered model `<project>_ner`; each version carries its
model name `<project>_ner_<YYYYMMDD_HHMMSS>` and training time) and enter it below. The project's labeling
config then names it for every label not tied to a pretrained model, the `deployed` alias moves to it,
and the config is validated. The previous config stays as a revision (`active-learning rollback`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from active_learning.constants import DEPLOY_DAG_ID
from active_learning_airflow.assets import DEPLOYED_MODELS, announce
from active_learning_airflow.params import DRAFT_07, add_trigger_form
from active_learning_airflow.tasks import domain_task
from airflow.sdk import DAG, Param, task

TRIGGER_FORM = {
    "project": Param("", type="string", minLength=1, title="Project", **DRAFT_07),
    "model_name": Param(
        "", type="string", pattern=r"^[A-Za-z0-9_.-]+_ner_\d{8}_\d{6}$", title="Model name",
        description="<project>_ner_<YYYYMMDD_HHMMSS>, as shown in the MLflow model browser",
        **DRAFT_07,
    ),
}

with DAG(
    dag_id=DEPLOY_DAG_ID,
    description="Deploy a registered model into a project's labeling config",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["active-learning", "ner", "mlflow"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=15)},
) as dag:

    @task(outlets=[DEPLOYED_MODELS])  # the deployed model goes to work: active_learning_preannotate
    def update_config(params: dict[str, Any], run_id: str, outlet_events: Any = None) -> int:
        from active_learning.deploy.deployment import deploy_model
        from active_learning.project_page import stored_comparison

        project, model_name = params["project"], params["model_name"]
        with domain_task() as backends:
            # Scores each model had when trained, from the history: no model is loaded for a log line.
            deployed = backends.store.projects.get(project).deployed_model
            comparison = stored_comparison(backends.store.trainings.history(project), model_name, deployed)
            print(f"comparison (a manual deploy is not gated): {comparison}")
            result = deploy_model(backends, project, model_name, author=f"airflow:{run_id}", reason="manual deploy")
            announce(outlet_events, backends)
        return result.revision

    @task
    def validate_config(params: dict[str, Any]) -> None:
        from active_learning.deploy.deployment import ConfigValidationError, validate_project

        with domain_task() as backends:
            problems = validate_project(backends, params["project"])
            if problems:
                raise ConfigValidationError(params["project"], problems)

    update_config() >> validate_config()

add_trigger_form(dag, TRIGGER_FORM)
