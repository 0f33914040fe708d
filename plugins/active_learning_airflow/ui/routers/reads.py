"""Reading projects: the list, one project, a config diff, a model comparison. Anyone who may read
the training DAG's runs may read them all; scoring models now (a POST: it loads two models) also needs
deploy rights."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status

from active_learning_airflow.ui.airflow_runs import airflow_run_ids, pending_runs, training_dag_state
from active_learning_airflow.ui.auth import may_deploy, may_read, permissions
from active_learning_airflow.ui.deploy_refusals import refused_request
from active_learning_airflow.ui.domain import domain, known_project
from active_learning_airflow.ui.inputs import MAX_MODEL_NAME, ComparisonBody, ProjectName
from active_learning_airflow.ui.links import links
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep

router = APIRouter(prefix="/api", dependencies=[Depends(may_read)])


@router.get("/projects")
def list_projects(request: Request, user: GetUserDep, session: SessionDep) -> dict[str, Any]:
    """Every project: two store statements, one Airflow query, no MLflow call (and one Label Studio
    request per 100 of its projects, for their live counts)."""
    from active_learning.status import project_statuses
    from active_learning.store.models import utcnow

    started = time.perf_counter()
    now = utcnow()
    rows = [row.as_dict() for row in project_statuses(domain(), now)]
    trainings = [row["last_training"] for row in rows if row["last_training"]]
    in_airflow = airflow_run_ids(session, [training["run_key"] for training in trainings])
    for training in trainings:
        training["airflow_run"] = training["run_key"] in in_airflow
    return {
        "as_of": now.isoformat(),
        "projects": rows,
        "permissions": permissions(user),
        "links": links(request),
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
    }


@router.get("/project")
def read_project(request: Request, project: ProjectName, user: GetUserDep, session: SessionDep) -> dict[str, Any]:
    """One project: settings, validation (against MLflow), history, models, revisions, learning curve."""
    from active_learning.project_page import project_detail
    from active_learning.store.models import utcnow

    backends = domain()
    known_project(backends, project)
    detail = project_detail(backends, project, utcnow())
    keys = [training["run_key"] for training in detail["history"]]
    in_airflow = airflow_run_ids(session, keys)
    for training in detail["history"]:
        training["airflow_run"] = training["run_key"] in in_airflow
    detail["pending_runs"] = pending_runs(session, project, set(keys))
    detail["training_dag"] = training_dag_state(session)
    detail["permissions"] = permissions(user)
    detail["links"] = links(request)
    return detail


@router.get("/project/diff")
def config_diff(
    project: ProjectName,
    revision: Annotated[int, Query(ge=1)],
    against: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """Unified diff of a config revision against another (default: the revision before it)."""
    from active_learning.project_page import revision_diff

    backends = domain()
    known_project(backends, project)
    try:
        return revision_diff(backends.store, project, revision, against)
    except LookupError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None


@router.get("/project/comparison")
def compare_models(
    project: ProjectName, model_name: Annotated[str, Query(min_length=1, max_length=MAX_MODEL_NAME)]
) -> dict[str, Any]:
    """The model against the deployed one: their scores when trained (instant)."""
    from active_learning.deploy.deployment import find_project_model
    from active_learning.project_page import stored_comparison

    backends = domain()
    current = known_project(backends, project)
    history = backends.store.trainings.history(project)
    if not any(training.model_name == model_name for training in history):
        with refused_request():  # not in this project's history: MLflow says whose it is, or that it does not exist
            find_project_model(backends, project, model_name)
    return stored_comparison(history, model_name, current.deployed_model)


@router.post("/project/comparison", dependencies=[Depends(may_deploy)])
def rescore_models(project: ProjectName, body: ComparisonBody) -> dict[str, Any]:
    """The comparison, plus both models scored now on the project's evaluation set, as the deploy gate
    does: it loads both models, so only on a deployer's explicit request, never on a navigation."""
    from active_learning.deploy.gate import compare_with_deployed

    result = compare_models(project, body.model_name)
    with refused_request():
        scored = compare_with_deployed(domain(), project, body.model_name)
    result["rescored"] = scored.as_dict() | {"description": scored.describe()}
    return result
