"""Task callbacks of the training DAG."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def mark_training_failed(context: Any) -> None:
    """Record in the training history that this run failed, and why (after its last retry), then tell
    whoever is to hear of it (active_learning_airflow.notifications)."""
    from active_learning.training import steps as training_pipeline
    from active_learning_airflow.connections import task_backends
    from active_learning_airflow.notifications import notify_failed

    run_key = context["run_id"]
    reason = f"{context['ti'].task_id}: {context.get('exception') or 'failed'}"
    backends = None
    try:
        backends = task_backends()
        training_pipeline.fail(backends, run_key, reason)
    except Exception:  # the run may have failed before its training row existed, or the store be down
        log.exception("could not mark training %s failed", run_key)
    notify_failed(context, reason, backends)
