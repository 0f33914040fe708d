"""The deploy steps of a training, after it registered its model: decide (the branch), deploy or keep as
a candidate, validate and finish. Each step is one Airflow task; each takes the registered version the
``register`` step returned (:meth:`ModelVersionInfo.as_dict`), so MLflow is not asked for it again.
"""

from __future__ import annotations

import logging

from active_learning.backends import Backends
from active_learning.deploy import gate
from active_learning.deploy.deployment import ConfigValidationError, deploy_model, mark_candidate, validate_project
from active_learning.registry import ModelVersionInfo
from active_learning.training.steps import finish

log = logging.getLogger(__name__)
# What a finished training's deploy steps did: ``training_runs.outcome``, which the history, the page and the
# notifications read (None while undecided, and for a training that failed before it).
DEPLOYED, REGISTERED_ONLY, REFUSED = "deployed", "registered only", "refused by the deploy gate"
NOTES_SEPARATOR = "; "


def note_deploy(backends: Backends, run_key: str, what: str, *, outcome: str | None) -> None:
    """What the deploy decision and branch did, and why, for the history (notes appended in order), and the
    outcome so far."""
    earlier = backends.store.trainings.get(run_key).deploy
    backends.store.trainings.update(run_key, deploy=f"{earlier}{NOTES_SEPARATOR}{what}" if earlier else what, outcome=outcome)


def decide(backends: Backends, run_key: str, model: ModelVersionInfo, *, choice: str, tolerance: float = 0.0) -> bool:
    """The branch: deploy or only register, with the reason in the log, the history and MLflow."""
    decision = gate.decide(backends, model, choice=choice, tolerance=tolerance)
    log.info("%s: %s", "deploying" if decision.deploy else "registering only", decision.reason)
    note_deploy(backends, run_key, decision.reason, outcome=REFUSED if decision.refused else None)
    return decision.deploy


def deploy(backends: Backends, run_key: str, model: ModelVersionInfo, *, author: str) -> None:
    result = deploy_model(backends, model.project, model.model_name, author=author, reason=f"training {run_key}", model=model)
    note_deploy(backends, run_key, f"{DEPLOYED} (config revision {result.revision})", outcome=DEPLOYED)


def keep_as_candidate(backends: Backends, run_key: str, model: ModelVersionInfo) -> None:
    mark_candidate(backends, model)
    refused = backends.store.trainings.get(run_key).outcome == REFUSED
    note_deploy(backends, run_key, f"{REGISTERED_ONLY} (alias 'candidate')", outcome=REFUSED if refused else REGISTERED_ONLY)


def validate_and_finish(backends: Backends, run_key: str, project: str) -> None:
    problems = validate_project(backends, project)
    if problems:
        raise ConfigValidationError(project, problems)
    finish(backends, run_key)
