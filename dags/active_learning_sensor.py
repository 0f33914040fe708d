"""
### Active learning: poll projects, launch trainings

A poll runs on its cron (default every 5 minutes, UTC; `ACTIVE_LEARNING_POLL_SCHEDULE` takes a cron
expression) **or** as soon as completions arrive: an event on the asset `active_learning_completions`, which a
Label Studio webhook, `active-learning import` and the Active Learning page emit. Each poll counts,
in one query, the completions each active-learning project gained since its last training, as of the
run's data interval end; projects that live in Label Studio cost one more request per 100 of them
(connection `label_studio_default`), and their counts are live. Each project that gained at least its frequency (50, 100 or 200) gets one run
of `active_learning_training`, whose run id names the crossing: a second poll, or a backfill, that sees
the same crossing is skipped by Airflow instead of training twice.

`apply_mlflow_deploys` applies `deployed` aliases that a person moved in the MLflow model browser to the
projects' labeling configs, validated first (an alias on a version this loop did not register is refused),
and announces every deploy made outside a deploy task (alias
moves, the CLI, the page, rollbacks) in an asset event that runs `active_learning_preannotate`.

Backfill a past range with `airflow backfill create --dag-id active_learning_sensor --from-date ... --to-date ...`.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from active_learning.constants import SENSOR_DAG_ID, TRAINING_DAG_ID
from active_learning_airflow.assets import COMPLETIONS, DEPLOYED_MODELS, announce
from active_learning_airflow.priority import AHEAD_OF_EVERYTHING
from active_learning_airflow.sensors import DueProjectsSensor
from active_learning_airflow.tasks import domain_task
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, task
from airflow.sdk.exceptions import AirflowSkipException

with DAG(
    dag_id=SENSOR_DAG_ID,
    description="Poll active-learning projects and launch one training per threshold crossing",
    doc_md=__doc__,
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(os.environ.get("ACTIVE_LEARNING_POLL_SCHEDULE", "*/5 * * * *"), timezone="UTC"),
        assets=[COMPLETIONS],
    ),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=2,  # a burst of events: Airflow holds asset-triggered runs back while two are active
    tags=["active-learning", "ner"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=20), **AHEAD_OF_EVERYTHING},
):

    @task(outlets=[DEPLOYED_MODELS])
    def apply_mlflow_deploys(outlet_events: Any = None) -> list[str]:
        """Write into the labeling config every `deployed` alias moved by hand in MLflow, then name in an
        asset event every project whose deployed model changed outside a deploy task (an alias move, the
        CLI, the page, a rollback): active_learning_preannotate puts it to work. Skipped (no event) when
        nothing changed. An alias on a version this loop did not register is refused: logged at once, and
        the task fails on it once it has no announcement to lose (a failed task emits no asset event)."""
        from active_learning.deploy.deployment import apply_alias_moves

        with domain_task() as backends:
            moves = apply_alias_moves(backends)
            announced = announce(outlet_events, backends)
            if not announced:
                moves.raise_refused()
        if not announced:
            raise AirflowSkipException("no deployed model changed since the last announcement")
        return announced

    due_projects = DueProjectsSensor(task_id="wait_for_due_projects")

    TriggerDagRunOperator.partial(
        task_id="launch_training",
        trigger_dag_id=TRAINING_DAG_ID,
        logical_date=None,
        skip_when_already_exists=True,
        retries=2,
    ).expand_kwargs(due_projects.output)

    apply_mlflow_deploys()
