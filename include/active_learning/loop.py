"""One training of a project with every step in this process, as the training DAG runs them (for the
CLI and scripts): prepare -> train -> register -> decide -> deploy or keep as candidate -> validate; with
``notify``, its end or failure told as the DAG's callbacks tell it (:func:`notifications.deliver`)."""

from __future__ import annotations

from typing import Any

from active_learning import naming, notifications
from active_learning.backends import Backends
from active_learning.constants import DEPLOY_AUTO, TRIGGERED_BY_HAND
from active_learning.deploy import steps as deploy_steps
from active_learning.registry import ModelVersionInfo
from active_learning.store.models import utcnow
from active_learning.training import steps as training_steps

NOTIFIED_TASK = "active-learning train"  # where a failed training failed, as a notification names it


def train_now(
    backends: Backends, project: str, *, choice: str = DEPLOY_AUTO, tolerance: float = 0.0, author: str = "cli",
    warm_start: bool | None = None, notify: bool = False,
) -> dict[str, Any]:
    started = utcnow()
    run_key = f"{TRIGGERED_BY_HAND}__{naming.safe_name(project)}__{started:%Y%m%dT%H%M%S.%f}"
    try:
        prepared = training_steps.prepare_data(backends, project, run_key=run_key, source=TRIGGERED_BY_HAND, as_of=started)
        trained = training_steps.train(backends, run_key=run_key, mlflow_run_id=prepared["mlflow_run_id"],
                                       overrides=prepared["spacy_overrides"], warm_start=warm_start, refit=prepared["refit"],
                                       base_model=prepared["base_model"])
        registered = training_steps.register(backends, run_key=run_key, model_uri=trained["model_uri"], labels=trained["labels"],
                                             gate_model_uri=trained["gate_model_uri"])
        model = ModelVersionInfo.from_dict(registered)
        if deploy_steps.decide(backends, run_key, model, choice=choice, tolerance=tolerance):
            deploy_steps.deploy(backends, run_key, model, author=author)
        else:
            deploy_steps.keep_as_candidate(backends, run_key, model)
        deploy_steps.validate_and_finish(backends, run_key, project)
    except BaseException as error:
        recorded = backends.store.trainings.exists(run_key)
        if recorded:
            training_steps.fail(backends, run_key, error)
        if notify and isinstance(error, Exception):
            notifications.deliver(
                notifications.failed(project, run_key, NOTIFIED_TASK, f"{type(error).__name__}: {error}",
                                     training=backends.store.trainings.get(run_key) if recorded else None),
                notifications.recipients(backends.store, project))
        raise
    training = backends.store.trainings.get(run_key)
    if notify:
        notifications.deliver(notifications.finished(training), notifications.recipients(backends.store, project))
    return registered | {"metrics": trained["metrics"], "run_key": run_key, "outcome": training.outcome, "deploy": training.deploy}
