"""
### Active learning: train, register, deploy or not, validate

Launched by `active_learning_sensor` when a project gained enough completions, or by hand with the
form below. Trains a spaCy NER model on one completion per task (as of the run's `as_of`), logs it to
MLflow as `<project>_ner_<YYYYMMDD_HHMMSS>` (UTC training start) and registers it as a version of the
project's registered model `<project>_ner`. Then, per the project's auto-deploy flag (or the `deploy`
override), either **update config** (every label not tied to a pretrained model names the new model;
alias `deployed`) or **register only** (alias `candidate`: deploy it later with `active_learning_deploy`
or by moving the `deployed` alias in the MLflow model browser). **validate config** runs after either
branch and fails with one line per bad model name. When the training ends or fails, its recipients hear of it
(e-mail, chat; `active-learning notifications --project P`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from active_learning.constants import DEPLOY_ALWAYS, DEPLOY_AUTO, DEPLOY_CHOICES, DEPLOY_REGISTER_ONLY, TRAINING_DAG_ID
from active_learning_airflow.assets import DEPLOYED_MODELS, announce
from active_learning_airflow.callbacks import mark_training_failed
from active_learning_airflow.notifications import notify_finished
from active_learning_airflow.params import DRAFT_07, add_trigger_form
from active_learning_airflow.pools import IN_TRAINING_POOL
from active_learning_airflow.tasks import domain_task
from airflow.sdk import DAG, Param, TriggerRule, task

if TYPE_CHECKING:
    from airflow.sdk.types import DagRunProtocol

TRIGGER_FORM = {
    "project": Param("", type="string", minLength=1, title="Project", description="Name of the annotation project", **DRAFT_07),
    "deploy": Param(
        DEPLOY_AUTO,
        enum=list(DEPLOY_CHOICES),
        title="Deploy",
        **DRAFT_07,
        description=f"{DEPLOY_AUTO}: the project's auto-deploy flag, then the deploy gate; {DEPLOY_ALWAYS}: update the "
        f"config (gate overridden); {DEPLOY_REGISTER_ONLY}: only register",
    ),
    "gate_tolerance": Param(
        0.0, type="number", minimum=0, maximum=1, title="Gate tolerance", **DRAFT_07,
        description="auto-deploy only if new F1 >= deployed F1 - tolerance, both scored on the fixed evaluation set",
    ),
    "training_params": Param(
        {}, type="object", title="Training parameters", **DRAFT_07,
        description='This run only, over the project\'s: e.g. {"training.max_steps": 2000} or {"model.base": '
        '"en_core_web_sm"}; the names and ranges: `active-learning training-params --project P`',
    ),
    "as_of": Param(
        None,
        type=["null", "string"],
        format="date-time",
        title="Completions as of",
        **DRAFT_07,
        description="Train on completions that arrived up to this time (UTC); empty: now",
    ),
}

with DAG(
    dag_id=TRAINING_DAG_ID,
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
) as dag:

    @task
    def prepare_data(params: dict[str, Any], dag_run: DagRunProtocol, run_id: str) -> dict[str, Any]:
        from active_learning.status import training_source
        from active_learning.training import steps as training_steps

        as_of = datetime.fromisoformat(params["as_of"]) if params.get("as_of") else dag_run.run_after
        # The sensor says so in the run's conf; not a form field, so a run started by hand is "manual".
        source = training_source(dag_run.conf or {})
        with domain_task() as backends:
            return training_steps.prepare_data(backends, params["project"], run_key=run_id, source=source, as_of=as_of,
                                               training_params=params.get("training_params"))

    @task(retries=1, **IN_TRAINING_POOL)  # the slow step: a retry trains again
    def train(prepared: dict[str, Any]) -> dict[str, Any]:
        from active_learning.training import steps as training_steps

        with domain_task() as backends:
            return training_steps.train(backends, run_key=prepared["run_key"], mlflow_run_id=prepared["mlflow_run_id"],
                                        overrides=prepared["spacy_overrides"], refit=prepared.get("refit", False),
                                        base_model=prepared.get("base_model"))

    @task
    def register(prepared: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
        from active_learning.training import steps as training_steps

        with domain_task() as backends:
            return training_steps.register(
                backends, run_key=prepared["run_key"], model_uri=trained["model_uri"], labels=trained["labels"],
                gate_model_uri=trained.get("gate_model_uri"),
            )

    @task.branch(**IN_TRAINING_POOL)  # the gate loads and scores two models
    def choose_deploy_path(registered: dict[str, Any], params: dict[str, Any], run_id: str) -> str:
        """The project's auto-deploy flag and the deploy gate, or the run's deploy choice; returns a task id."""
        from active_learning.deploy import steps as deploy_steps
        from active_learning.registry import ModelVersionInfo

        with domain_task() as backends:
            deploy = deploy_steps.decide(
                backends, run_id, ModelVersionInfo.from_dict(registered),
                choice=params["deploy"], tolerance=float(params["gate_tolerance"]),
            )
        return "update_config" if deploy else "register_only"

    @task(outlets=[DEPLOYED_MODELS])  # the deployed model goes to work: active_learning_preannotate
    def update_config(registered: dict[str, Any], run_id: str, outlet_events: Any = None) -> list[str]:
        from active_learning.deploy import steps as deploy_steps
        from active_learning.registry import ModelVersionInfo

        with domain_task() as backends:
            model = ModelVersionInfo.from_dict(registered)
            deploy_steps.deploy(backends, run_id, model, author=f"airflow:{TRAINING_DAG_ID}")
            return announce(outlet_events, backends)

    @task
    def register_only(registered: dict[str, Any], run_id: str) -> None:
        from active_learning.deploy import steps as deploy_steps
        from active_learning.registry import ModelVersionInfo

        with domain_task() as backends:
            deploy_steps.keep_as_candidate(backends, run_id, ModelVersionInfo.from_dict(registered))

    # The training's last task: its success is the training's end (a failure: mark_training_failed).
    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, on_success_callback=notify_finished)
    def validate_config(registered: dict[str, Any], run_id: str) -> None:
        from active_learning.deploy import steps as deploy_steps

        with domain_task() as backends:
            deploy_steps.validate_and_finish(backends, run_id, registered["project"])

    prepared = prepare_data()
    registered = register(prepared, train(prepared))
    choose_deploy_path(registered) >> [update_config(registered), register_only(registered)] >> validate_config(registered)

add_trigger_form(dag, TRIGGER_FORM)
