"""One training of a project with every step in this process, as the training DAG runs them (for the
CLI and scripts): prepare -> train -> register -> decide -> deploy or keep as candidate -> validate."""

from __future__ import annotations

from typing import Any

from active_learning import naming
from active_learning.backends import Backends
from active_learning.constants import DEPLOY_AUTO, TRIGGERED_BY_HAND
from active_learning.deploy import steps as deploy_steps
from active_learning.registry import ModelVersionInfo
from active_learning.store.models import utcnow
from active_learning.training import steps as training_steps


def train_now(
    backends: Backends, project: str, *, choice: str = DEPLOY_AUTO, tolerance: float = 0.0, author: str = "cli",
    warm_start: bool | None = None,
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
        if backends.store.trainings.exists(run_key):
            training_steps.fail(backends, run_key, error)
        raise
    training = backends.store.trainings.get(run_key)
    return registered | {"metrics": trained["metrics"], "run_key": run_key, "outcome": training.outcome, "deploy": training.deploy}
