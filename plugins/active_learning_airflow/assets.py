"""The asset the loop's DAGs share: a model was deployed into a project's labeling config.

Deploy tasks list it in their ``outlets`` and name the projects in the event's ``extra``
(``{"projects": [...]}``, see :func:`announce`); ``active_learning_preannotate`` is scheduled
on it, so a deployed model goes to work as soon as it is deployed.
"""

from __future__ import annotations

from typing import Any

from active_learning.constants import DEPLOYED_MODELS_ASSET, DEPLOYED_MODELS_ASSET_URI
from airflow.sdk import Asset

DEPLOYED_MODELS = Asset(name=DEPLOYED_MODELS_ASSET, uri=DEPLOYED_MODELS_ASSET_URI)


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
