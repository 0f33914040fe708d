"""
### Active learning: put the deployed model to work

Runs whenever a model is deployed into a project's labeling config (the asset
`active_learning_deployed_models`: an auto-deploy after training, a manual deploy, a `deployed` alias
moved in MLflow, a rollback), or by hand with the form below. For each project it names, the deployed
model pre-annotates every task still awaiting annotation that it has not pre-annotated yet: one
prediction per task with the spans of the labels the config ties to the model and a confidence score in
[0, 1]. A Label Studio project receives them through its API, and its `model_version` names the model, so
annotators see them and the Data Manager sorts by score. `active-learning next --project P` lists the
least confident tasks first.

Incremental: a run with nothing new reads one page and loads no model; a run killed half-way resumes
where it stopped.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from active_learning.constants import PREANNOTATE_DAG_ID
from active_learning_airflow.assets import DEPLOYED_MODELS, announced_projects
from active_learning_airflow.params import DRAFT_07, add_trigger_form
from active_learning_airflow.pools import IN_TRAINING_POOL
from active_learning_airflow.tasks import domain_task
from airflow.sdk import DAG, Param, task

TRIGGER_FORM = {
    "project": Param(
        None, type=["null", "string"], title="Project", **DRAFT_07,
        description="Pre-annotate this project now; empty: the projects the triggering deploys named",
    ),
}

with DAG(
    dag_id=PREANNOTATE_DAG_ID,
    description="Pre-annotate the tasks awaiting annotation with each project's deployed model",
    doc_md=__doc__,
    schedule=[DEPLOYED_MODELS],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["active-learning", "ner"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30), "retry_exponential_backoff": 2.0},
) as dag:

    @task
    def projects_to_preannotate(params: dict[str, Any], triggering_asset_events: Any = None) -> list[str]:
        named = set(announced_projects(triggering_asset_events))
        return sorted(named | ({params["project"]} if params.get("project") else set()))

    @task(max_active_tis_per_dagrun=1, **IN_TRAINING_POOL)  # one model in memory per run, pooled with trainings
    def preannotate(project: str) -> dict[str, Any]:
        from active_learning.preannotation.run import preannotate as preannotate_project

        with domain_task() as backends:
            return preannotate_project(backends, project).as_dict()

    preannotate.expand(project=projects_to_preannotate())

add_trigger_form(dag, TRIGGER_FORM)
