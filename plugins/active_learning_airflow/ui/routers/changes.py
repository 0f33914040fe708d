"""Changing a project: its active-learning settings, its training parameters, its notification recipients,
and "train now". All need
permission to trigger the training DAG, since they decide when it runs and what it trains; what decides that a training's model goes
live (switching auto-deploy, training with the gate overridden) also needs the deploy DAG's."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status

from active_learning.constants import DEPLOY_ALWAYS, TRAINING_DAG_ID, TRIGGERED_BY_HAND
from active_learning_airflow.ui.auth import may_train, require_deploy_permission
from active_learning_airflow.ui.domain import domain, known_project
from active_learning_airflow.ui.inputs import NotificationsBody, ProjectName, SettingsBody, TrainBody, TrainingParamsBody
from active_learning_airflow.ui.links import links
from active_learning_airflow.ui.revisions import reason, refused_as_stale, stale
from airflow.api_fastapi.core_api.security import GetUserDep

router = APIRouter(prefix="/api/project", dependencies=[Depends(may_train)])
log = logging.getLogger(__name__)


@router.post("/settings")
def change_settings(project: ProjectName, body: SettingsBody, user: GetUserDep) -> dict[str, Any]:
    """Switch active learning, its frequency and auto-deploy; recorded as a config revision by the user."""
    from active_learning.store.models import FREQUENCIES

    backends = domain()
    current = known_project(backends, project)
    if body.frequency is not None and body.frequency not in FREQUENCIES:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"frequency must be one of {', '.join(map(str, FREQUENCIES))} new completions, not {body.frequency}",
        )
    wanted = {
        "active_learning": body.active_learning,
        "frequency": body.frequency,
        "auto_deploy": body.auto_deploy,
    }
    changes = {k: v for k, v in wanted.items() if v is not None and v != getattr(current, k)}
    if "auto_deploy" in changes:
        require_deploy_permission(user, "switching auto-deploy")
    config = backends.store.configs.read(project)
    if config.revision != body.config_revision:
        raise stale(project, body.config_revision, config.revision)
    if not changes:
        return {"changed": False, "config_revision": config.revision, "message": "nothing to change"}
    summary = describe_settings({k: changes.get(k, getattr(current, k)) for k in wanted})
    with refused_as_stale(backends, project, body.config_revision):  # the change and its revision: one transaction
        revision = backends.store.projects.update_settings(
            project, **changes, expected_revision=body.config_revision, author=user.get_name(),
            reason=reason(f"settings: {summary}"),
        ).config_revision
    if "active_learning" in changes or "frequency" in changes:  # it may be due now: poll at once
        poll_now(project)
    return {"changed": True, "config_revision": revision, "message": f"{project}: {summary}"}


def poll_now(project: str) -> None:
    """Ask for a poll (an event on the completions asset); where Airflow cannot take it, the next scheduled
    poll sees the change all the same."""
    from active_learning_airflow.assets import PollUnavailable, request_poll

    try:
        request_poll([project], "active learning page")
    except PollUnavailable as error:
        log.warning("no poll asked for after %s's settings changed: %s", project, error)


@router.post("/training-params")
def change_training_params(project: ProjectName, body: TrainingParamsBody, user: GetUserDep) -> dict[str, Any]:
    """Set or unset the project's training parameters, all checked first (nothing saved if one is bad);
    recorded as a config revision by the user, as settings are."""
    from active_learning.training import base_model, parameters

    backends = domain()
    current = known_project(backends, project)
    try:
        wanted = parameters.changed(current.training_params, body.set, body.unset,
                                    base_check=lambda spec: base_model.check(spec, backends))
    except parameters.TrainingParameterError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            {"message": "training parameters refused, nothing saved:", "problems": error.problems}) from None
    config = backends.store.configs.read(project)
    if config.revision != body.config_revision:
        raise stale(project, body.config_revision, config.revision)
    if wanted == current.training_params:
        return {"changed": False, "config_revision": config.revision, "message": "nothing to change"}
    change = parameters.describe(body.set, body.unset)
    with refused_as_stale(backends, project, body.config_revision):
        revision = backends.store.projects.set_training_params(
            project, wanted, expected_revision=body.config_revision, author=user.get_name(), reason=reason(change),
        ).config_revision
    return {"changed": True, "config_revision": revision, "message": f"{project}: {change}",
            "training_params": parameters.effective(wanted).rows()}


@router.post("/notifications")
def change_notifications(project: ProjectName, body: NotificationsBody) -> dict[str, Any]:
    """Replace the project's own e-mail recipients, every address checked first as the CLI checks them
    (nothing saved if one is malformed); the deployment's stay."""
    from active_learning import notifications

    backends = domain()
    known_project(backends, project)
    try:
        recipients = notifications.set_project_emails(backends.store, project, body.emails)
    except notifications.InvalidRecipientsError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            {"message": "recipients refused, nothing saved:", "problems": error.problems}) from None
    told = ", ".join(r.email for r in recipients if r.source == notifications.PROJECT) or "the deployment's recipients only"
    return notifications.shown(recipients) | {"message": f"{project}: e-mailed about trainings: {told}"}


@router.post("/train")
def trigger_training(request: Request, project: ProjectName, user: GetUserDep, body: TrainBody) -> dict[str, Any]:
    """Trigger the training DAG for the project through Airflow, as the user: the run shows in Airflow's UI.
    ``auto`` follows the project's auto-deploy flag (on this page, only a deployer switches it) and the gate."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagNotFound, DagRunAlreadyExists
    from airflow.utils.types import DagRunTriggeredByType

    if body.deploy == DEPLOY_ALWAYS:
        require_deploy_permission(user, "deploying the new model with the gate overridden")
    known_project(domain(), project)
    conf = {"project": project, "source": TRIGGERED_BY_HAND, "deploy": body.deploy}
    try:
        run = trigger_dag(
            TRAINING_DAG_ID, conf=conf, triggered_by=DagRunTriggeredByType.UI,
            triggering_user_name=user.get_name(),
        )
    except DagNotFound as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"Airflow has not loaded the DAG {TRAINING_DAG_ID!r} yet: {error}") from None
    except DagRunAlreadyExists as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    except ValueError as error:  # the DAG's Params refused the conf
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None
    if run is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "Airflow created no run")
    return {"dag_id": TRAINING_DAG_ID, "dag_run_id": run.run_id, "state": str(run.state), "conf": conf,
            "url": f"{links(request)['airflow']}dags/{TRAINING_DAG_ID}/runs/{run.run_id}"}


def describe_settings(values: dict[str, Any]) -> str:
    """The settings in words: the revision's reason and the page's message say what is now in force."""
    if not values["active_learning"]:
        return "active learning off"
    after_training = "deploy right after training" if values["auto_deploy"] else "register only"
    return f"active learning on, every {values['frequency']} new completions, {after_training}"
