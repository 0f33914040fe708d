"""The assets the loop's DAGs share.

``DEPLOYED_MODELS``: a model was deployed into a project's labeling config. Deploy tasks list it in their
``outlets`` and name the projects in the event's ``extra`` (``{"projects": [...]}``, see :func:`announce`);
``active_learning_preannotate`` is scheduled on it, so a deployed model goes to work as soon as it is deployed.

``COMPLETIONS``: a project gained completions (or its threshold changed). ``active_learning_sensor`` is
scheduled on its cron or on it, so a crossing is polled at once; :func:`request_poll` emits it from the API
server (the Label Studio webhook, the page), ``active-learning import`` through the REST API.
"""

from __future__ import annotations

from typing import Any

from active_learning.constants import (
    COMPLETIONS_ASSET,
    COMPLETIONS_ASSET_URI,
    DEPLOYED_MODELS_ASSET,
    DEPLOYED_MODELS_ASSET_URI,
    SENSOR_DAG_ID,
)
from airflow.sdk import Asset

DEPLOYED_MODELS = Asset(name=DEPLOYED_MODELS_ASSET, uri=DEPLOYED_MODELS_ASSET_URI)
COMPLETIONS = Asset(name=COMPLETIONS_ASSET, uri=COMPLETIONS_ASSET_URI)


class PollUnavailable(RuntimeError):
    """Airflow knows no completions asset: the sensor DAG has not been parsed into this database."""


def request_poll(projects: list[str], source: str) -> bool:
    """Ask for a poll now, from the API server (its metadata database session): an event on ``COMPLETIONS``
    naming ``projects`` and who asked (``source``). False, and no event, while an earlier one still waits
    for its poll (Airflow's queue of asset-triggered runs holds the sensor DAG): that poll will see these
    completions too, so a burst of events makes one poll. Airflow itself holds an asset-triggered run back
    while the sensor DAG has ``max_active_runs`` runs."""
    from sqlalchemy import select

    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        asset = session.scalar(select(AssetModel).where(AssetModel.name == COMPLETIONS_ASSET, AssetModel.uri == COMPLETIONS_ASSET_URI))
        if asset is None:
            raise PollUnavailable(f"Airflow knows no asset {COMPLETIONS_ASSET!r}: it has not parsed the DAG {SENSOR_DAG_ID!r}")
        waiting = select(AssetDagRunQueue.asset_id).where(AssetDagRunQueue.asset_id == asset.id,
                                                          AssetDagRunQueue.target_dag_id == SENSOR_DAG_ID)
        if session.scalar(waiting) is not None:
            return False
        asset_manager.register_asset_change(asset=asset, extra={"projects": projects, "source": source}, session=session,
                                            source_is_api=True, api_user_teams=set())
    return True


def announce(outlet_events: Any, backends: Any) -> list[str]:
    """Every project whose deployed model changed since it was last announced (by this task, or by a
    deploy outside Airflow: the CLI, the page, a rollback), named in this task's asset event."""
    projects = backends.store.predictions.announce()
    outlet_events[DEPLOYED_MODELS].extra = {"projects": projects}
    return projects


def announced_projects(triggering_asset_events: Any) -> list[str]:
    """The projects the asset events that triggered a run name."""
    names = {
        project
        for events in (triggering_asset_events or {}).values()
        for event in events
        for project in (event.extra or {}).get("projects", [])
    }
    return sorted(names)
