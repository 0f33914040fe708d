"""The sensor that polls every active-learning project's completion count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowSkipException

ASSET_TRIGGERED = "asset_triggered"  # DagRunType's value for a run that asset events started


def poll_time(context: Any) -> Any:
    """As of when a poll counts: a scheduled or backfill run at its data interval's end, so a backfill
    replays past polls; a run triggered by hand ("poll now") at the time it was triggered; a run started by
    events on the completions asset at the poke itself: its ``run_after`` is the first of the events it
    consumed, and completions announced after that one must count too."""
    dag_run = context["dag_run"]
    if dag_run.run_type == ASSET_TRIGGERED:
        return datetime.now(UTC)
    if dag_run.run_type == "manual" or context.get("data_interval_end") is None:
        return dag_run.run_after
    return context["data_interval_end"]


class DueProjectsSensor(BaseSensorOperator):
    """Done once a project is due for training; its XCom is the list of training runs to launch.

    One poke is one aggregate query over our store's projects, plus one request per 100 active Label
    Studio projects (none when there are none). Between pokes the sensor is rescheduled and
    holds no worker slot; a poke that finds nothing due before ``timeout`` ends the task as skipped.
    Pokes after the first catch completions committed late with an arrival time before the poll time; a
    poll started by events counts as of its poke and pokes once (it ends at once, so the next event's poll
    is not held back by ``max_active_runs``).

    A class, not ``@task.sensor``: it keeps these settings with the poke, and its ``poke`` runs without a
    DAG run (tests/test_faults.py); the decorator would save no parse time, and its PythonSensor logs a
    deprecation warning each time the DAG file is parsed (Airflow 3.3, standard provider).
    """

    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        mode: str = "reschedule",
        poke_interval: timedelta | float = timedelta(seconds=20),
        timeout: timedelta | float = timedelta(seconds=30),
        soft_fail: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(mode=mode, poke_interval=poke_interval, timeout=timeout, soft_fail=soft_fail, **kwargs)

    def poke(self, context: Any) -> PokeReturnValue:
        from active_learning.status import poll
        from active_learning_airflow.connections import task_backends

        # Not tasks.domain_task(): with soft_fail, Airflow skips a task that fails without retry, and a
        # refused Label Studio token must fail this one.
        as_of = poll_time(context)
        sources = task_backends().sources
        due = poll(sources, as_of)
        for training in due:
            self.log.info(
                "%s is due: %d new completions as of %s -> run %s",
                training.project, training.new_completions, as_of, training.run_id,
            )
        if not due and sources.errors:
            raise sources.errors[0]  # e.g. a refused Label Studio token: a failed task, not a quiet skip
        if not due:
            self.log.info("no project is due as of %s", as_of)
            if context["dag_run"].run_type == ASSET_TRIGGERED:  # counted as of now: a later completion makes its own event
                raise AirflowSkipException(f"no project is due as of {as_of}: a poll started by an event pokes once")
        return PokeReturnValue(is_done=bool(due), xcom_value=[training.trigger_kwargs() for training in due])
