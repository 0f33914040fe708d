"""Airflow's side of a project's trainings, read from Airflow's own DB session: which recorded
trainings ran as DAG runs (the page links those), which runs are still to record, and the DAG's state."""

from __future__ import annotations

from typing import Any

from active_learning.constants import TRAINING_DAG_ID

_IN_CHUNK = 500  # run keys per IN (...) list: far below every database's limit on bound parameters


def airflow_run_ids(session: Any, run_keys: list[str]) -> set[str]:
    """Which training run keys are runs of the training DAG (trainings started by the CLI are not)."""
    from sqlalchemy import select

    from airflow.models import DagRun

    found: set[str] = set()
    for start in range(0, len(run_keys), _IN_CHUNK):
        chunk = run_keys[start : start + _IN_CHUNK]
        found.update(session.scalars(
            select(DagRun.run_id).where(DagRun.dag_id == TRAINING_DAG_ID, DagRun.run_id.in_(chunk))
        ))
    return found


def pending_runs(session: Any, project: str, recorded: set[str]) -> list[dict[str, Any]]:
    """Training DAG runs for ``project`` that are queued or running but wrote no history row yet."""
    from sqlalchemy import select

    from airflow.models import DagRun

    rows = session.execute(
        select(DagRun.run_id, DagRun.state, DagRun.queued_at, DagRun.start_date, DagRun.conf)
        .where(DagRun.dag_id == TRAINING_DAG_ID, DagRun.state.in_(["queued", "running"]))
        .order_by(DagRun.id.desc())
        .limit(200)
    ).all()
    return [
        {"run_id": run_id, "state": str(state), "queued_at": queued_at, "started_at": start_date}
        for run_id, state, queued_at, start_date, conf in rows
        if (conf or {}).get("project") == project and run_id not in recorded
    ]


def training_dag_state(session: Any) -> dict[str, Any]:
    """Whether Airflow has loaded the training DAG and whether it is paused: the page warns that
"train now" fails, or waits, otherwise."""
    from sqlalchemy import select

    from airflow.models import DagModel

    paused = session.scalar(select(DagModel.is_paused).where(DagModel.dag_id == TRAINING_DAG_ID))
    return {"dag_id": TRAINING_DAG_ID, "loaded": paused is not None, "paused": bool(paused)}
