"""Who may do what on the Active Learning page: Airflow's auth manager decides, asked the way Airflow's
own API asks it (with the DAG's team, for auth managers that grant per team), about the DAGs whose runs
the page reads and starts.

| action | needs |
|---|---|
| see the page and read every endpoint | read access to the runs of ``active_learning_training`` |
| change settings, train now | permission to trigger ``active_learning_training`` |
| deploy a model, roll back the config, score models now | permission to trigger ``active_learning_deploy`` |
| switch auto-deploy, train with the gate overridden | both |

No credentials: 401; a bad token or too few rights: 403.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import HTTPException, status

from active_learning.constants import DEPLOY_DAG_ID, TRAINING_DAG_ID
from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.models.dag import DagModel

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

may_read = requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=TRAINING_DAG_ID)
may_train = requires_access_dag("POST", DagAccessEntity.RUN, param_dag_id=TRAINING_DAG_ID)
may_deploy = requires_access_dag("POST", DagAccessEntity.RUN, param_dag_id=DEPLOY_DAG_ID)


def may_trigger(user: BaseUser, dag_id: str) -> bool:
    """The question ``requires_access_dag`` asks, for a decision inside a handler."""
    details = DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id))
    return get_auth_manager().is_authorized_dag(
        method="POST", access_entity=DagAccessEntity.RUN, details=details, user=user
    )


def require_deploy_permission(user: BaseUser, change: str) -> None:
    """A change on a training route that decides whether models go live: the deploy DAG's permission, or 403."""
    if not may_trigger(user, DEPLOY_DAG_ID):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"{change} needs permission to trigger {DEPLOY_DAG_ID!r}")


def permissions(user: BaseUser) -> dict[str, bool]:
    """What the user may change, by the rules above: the page shows only the forms it may send."""
    can_train = may_trigger(user, TRAINING_DAG_ID)
    return {"can_change_settings": can_train, "can_train": can_train, "can_deploy": may_trigger(user, DEPLOY_DAG_ID)}
