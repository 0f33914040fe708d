"""Deploying: a model into a project's labeling config, or an earlier config back. Both need
permission to trigger the deploy DAG: they change which models the labeling config names, as it does."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from active_learning_airflow.ui.auth import may_deploy
from active_learning_airflow.ui.deploy_refusals import refused_config
from active_learning_airflow.ui.domain import domain, known_project
from active_learning_airflow.ui.inputs import DeployBody, ProjectName, RollbackBody
from active_learning_airflow.ui.revisions import reason, refused_as_stale
from airflow.api_fastapi.core_api.security import GetUserDep

router = APIRouter(prefix="/api/project", dependencies=[Depends(may_deploy)])


@router.post("/deploy")
def manual_deploy(project: ProjectName, body: DeployBody, user: GetUserDep) -> dict[str, Any]:
    """Deploy a registered model of the project into its labeling config (not gated, like the CLI)."""
    from active_learning.deploy.deployment import deploy_model

    backends = domain()
    known_project(backends, project)
    with refused_config(), refused_as_stale(backends, project, body.config_revision):
        result = deploy_model(backends, project, body.model_name, author=user.get_name(),
                              reason=reason("manual deploy"), expected_revision=body.config_revision)
    return {"model_name": result.model_name, "version": result.version, "config_revision": result.revision,
            "changed": result.changed,
            "message": f"{project}: {result.model_name} (version {result.version}) deployed, "
                       f"config revision {result.revision}"}


@router.post("/rollback")
def roll_back_config(project: ProjectName, body: RollbackBody, user: GetUserDep) -> dict[str, Any]:
    """Make an earlier config revision live again, as a new revision (validated first)."""
    from active_learning.deploy.deployment import rollback

    backends = domain()
    known_project(backends, project)
    with refused_config(), refused_as_stale(backends, project, body.config_revision):
        revision = rollback(backends, project, to_revision=body.to_revision, author=user.get_name(),
                            expected_revision=body.config_revision)
    return {"config_revision": revision,
            "message": f"{project}: revision {body.to_revision} is live again, as revision {revision}"}
