"""What the Active Learning page shows of one project beyond its status (no Airflow here): its models
(asked of MLflow, which may be unreachable: the rest still shows), config check against MLflow, training
history, config revisions and their diffs, the learning curve, and a stored comparison of two models.
The projects list is :func:`active_learning.status.project_statuses`.
"""

from __future__ import annotations

import difflib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from active_learning import naming
from active_learning.status import named_models, project_statuses
from active_learning.store import AnnotationStore, TrainingView
from active_learning.store.models import FREQUENCIES

if TYPE_CHECKING:
    from active_learning.backends import Backends

MLFLOW_TIMEOUT = 15.0
_MLFLOW_CALLS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="overview-mlflow")


def project_detail(backends: Backends, name: str, as_of: datetime) -> dict[str, Any]:
    """Everything the project page shows. Raises UnknownProjectError for an unknown project."""
    from active_learning import notifications
    from active_learning.deploy.deployment import config_problems
    from active_learning.preannotation.queue import queue_summary
    from active_learning.training import parameters
    from active_learning.training.learning_curve import curve_rows

    store = backends.store
    settings = store.projects.get(name)
    config = store.configs.read(name)
    history = store.trainings.history(name)
    revisions = store.configs.revisions(name)
    [row] = project_statuses(backends, as_of, name=name)

    in_config = named_models(config.xml)
    models: list[dict[str, Any]] = []
    models_error = None
    validation_source = "mlflow"
    try:
        # An MLflow server that is down makes its client retry for minutes: the page does not wait that long.
        versions, problems = _MLFLOW_CALLS.submit(
            lambda: (backends.registry.project_models(name), config_problems(backends, name, config.xml))
        ).result(timeout=MLFLOW_TIMEOUT)
        by_model = {t.model_name: t for t in history if t.model_name}
        for info in reversed(versions):
            training = by_model.get(info.model_name)
            models.append({
                "model_name": info.model_name,
                "version": info.version,
                "trained_at": info.trained_at,
                "labels": list(info.labels),  # the tag's: the first that fit, when labels_count says more
                "labels_count": info.labels_count or len(info.labels),
                "aliases": list(info.aliases),
                "deployed": info.model_name == settings.deployed_model,  # the store's record of the last deploy
                "in_config": info.model_name in in_config,  # named by the live labeling config
                "mlflow_run_id": info.run_id,
                "registered_name": info.registered_name,
                "completions_used": training.completions_used if training else None,
                "metrics": training.metrics if training else None,
                "source": training.source if training else None,
            })
        issues = list(problems)
    except Exception as error:  # MLflow down or misconfigured: the rest of the page still helps
        reason = f"no answer within {MLFLOW_TIMEOUT:.0f} s" if isinstance(error, TimeoutError) else str(error)
        models_error = f"{type(error).__name__}: {reason}"[:500]
        issues = list(row.problems)
        validation_source = "store"

    live = revisions[-1].revision if revisions else config.revision
    return {
        "project": row.as_dict() | {"frequencies": list(FREQUENCIES)},
        "validation": {"source": validation_source, "problems": [asdict(i) for i in issues]},
        "history": [training_dict(t) for t in reversed(history)],
        "models": models,
        "models_error": models_error,
        "revisions": [
            {"revision": r.revision, "created_at": _iso(r.created_at), "author": r.author, "reason": r.reason,
             "live": r.revision == live}
            for r in reversed(revisions)
        ],
        "learning_curve": curve_rows(history),
        "training_params": parameters.effective(settings.training_params).rows(),
        "queue": queue_summary(backends, name),
        "notifications": notifications.shown(notifications.recipients(store, name)),
        "webhook_last_received_at": _iso(store.webhooks.last_received(settings.id)),
    }


def training_dict(training: TrainingView) -> dict[str, Any]:
    data = training.as_dict()
    ended = training.ended_at
    data["duration_seconds"] = (ended - training.started_at).total_seconds() if ended else None
    return data


def stored_comparison(history: list[TrainingView], candidate: str, deployed: str | None) -> dict[str, Any]:
    """Candidate vs deployed model from the scores each had on its own dev set when trained (no MLflow).

    ``gate.compare_with_deployed`` scores both on the same, current evaluation set instead: slower
    (loads both models), and what the deploy gate uses.
    """
    by_model = {t.model_name: t for t in history if t.model_name}

    def side(model: str | None) -> dict[str, Any] | None:
        if model is None:
            return None
        training = by_model.get(model)
        return {
            "model_name": model,
            "trained_at": _iso(naming.trained_at(model)),
            "ours": training is not None,
            "completions_used": training.completions_used if training else None,
            "metrics": training.metrics if training else None,
        }

    return {"candidate": side(candidate), "deployed": side(deployed)}


def revision_diff(store: AnnotationStore, name: str, revision: int, against: int | None = None) -> dict[str, Any]:
    """Unified diff from revision ``against`` (default: the one before) to ``revision``."""
    revisions = {r.revision: r for r in store.configs.revisions(name)}
    if revision not in revisions:
        raise LookupError(f"project {name!r} has no config revision {revision}")
    base = against if against is not None else max((r for r in revisions if r < revision), default=None)
    if base is not None and base not in revisions:
        raise LookupError(f"project {name!r} has no config revision {base}")
    old = revisions[base].labeling_config if base is not None else ""
    new = revisions[revision].labeling_config
    diff = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True),
        fromfile=f"revision {base}" if base is not None else "(none)", tofile=f"revision {revision}",
    )
    return {"revision": revision, "against": base, "diff": "".join(diff)}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
