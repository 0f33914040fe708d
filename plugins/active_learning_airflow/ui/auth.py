"""Who may do what on the Active Learning page: Airflow's auth manager decides, asked the way Airflow's
own API asks it, about the DAGs whose runs the page reads and starts.

| action | needs |
|---|---|
| see the page and read every endpoint | read access to the runs of ``active_learning_training`` |
| change settings, train now | permission to trigger ``active_learning_training`` |
| deploy a model, roll back the config | permission to trigger ``active_learning_deploy`` |

No credentials: 401; a bad token or too few rights: 403.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from active_learning.constants import DEPLOY_DAG_ID, TRAINING_DAG_ID
from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import requires_access_dag

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

may_read = requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=TRAINING_DAG_ID)
may_train = requires_access_dag("POST", DagAccessEntity.RUN, param_dag_id=TRAINING_DAG_ID)
may_deploy = requires_access_dag("POST", DagAccessEntity.RUN, param_dag_id=DEPLOY_DAG_ID)


def permissions(user: BaseUser) -> dict[str, bool]:
    """What the user may change, by the rules above: the page shows only the forms it may send."""
    manager = get_auth_manager()

    def may_trigger(dag_id: str) -> bool:
        return manager.is_authorized_dag(
            method="POST", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user
        )

    can_train = may_trigger(TRAINING_DAG_ID)
    return {"can_change_settings": can_train, "can_train": can_train, "can_deploy": may_trigger(DEPLOY_DAG_ID)}
