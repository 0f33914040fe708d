"""Which Celery queue the tasks that load spaCy models go to: a training's ``train`` and deploy gate, and
pre-annotation (the training pool's tasks, :mod:`active_learning_airflow.pools`).

``ACTIVE_LEARNING_TRAINING_QUEUE``, read when the DAG files are parsed: every Airflow component must see
the same value. Unset, they go to Airflow's default queue like every other task. Set (for example
``gpu``), they go to that queue only, which only the workers started with ``airflow celery worker --queues
gpu`` read: GPU workers, with the transformer extra, where a transformer base trains on the GPU and its
models load (docs/scale-out.md). The LocalExecutor of the embedded default has no queues.
"""

from __future__ import annotations

import os
import re
from typing import Any

TRAINING_QUEUE = "ACTIVE_LEARNING_TRAINING_QUEUE"


def training_queue() -> str | None:
    """The training queue's name; None: Airflow's default queue, which every worker reads."""
    value = os.environ.get(TRAINING_QUEUE, "").strip()
    if value and not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", value):
        raise ValueError(f"{TRAINING_QUEUE} must be a queue name (letters, digits, _ . -), not {value!r}")
    return value or None


def on_training_queue() -> dict[str, Any]:
    """The task arguments that put a task on the training queue (none: the default queue)."""
    queue = training_queue()
    return {"queue": queue} if queue else {}
