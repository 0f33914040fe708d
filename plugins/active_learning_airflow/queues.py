"""Which Celery queue a training's ``train`` task goes to.

``ACTIVE_LEARNING_TRAINING_QUEUE``, read when the DAG file is parsed: every Airflow component must see the
same value. Unset, ``train`` goes to Airflow's default queue
like every other task. Set (for example ``gpu``), it goes to that queue only, which only the workers started
with ``airflow celery worker --queues gpu`` read: GPU workers, where a transformer base trains on the GPU
(docs/scale-out.md). The LocalExecutor of the embedded default has no queues and runs it as any task.
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
    """The ``train`` task's arguments that put it on the training queue (none: the default queue)."""
    queue = training_queue()
    return {"queue": queue} if queue else {}
