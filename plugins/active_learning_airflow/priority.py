"""The training pool's order: first in, first out (:class:`FirstInFirstOut`).

Apart from :mod:`active_learning_airflow.pools` because every Airflow component loads it through the
plugin, which must stay cheap to import: it needs nothing but Airflow's strategy base class.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from airflow.task.priority_strategy import PriorityWeightStrategy

if TYPE_CHECKING:
    from airflow.models.taskinstance import TaskInstance

# Weights count down from the largest the priority_weight column holds, one per second since EPOCH.
WEIGHT_CEILING = 2**31 - 1
EPOCH = 1767225600  # 2026-01-01T00:00:00Z: the weights stay positive until 2094
# The sensor's tasks: a freed executor slot goes to a poll before any training's step, pooled or not, so a
# poll starts on time while every slot holds the work it launched (Airflow's default `downstream` rule
# would give the poll 2 and a training's `prepare_data` 7).
AHEAD_OF_EVERYTHING = {"priority_weight": WEIGHT_CEILING, "weight_rule": "absolute"}


class FirstInFirstOut(PriorityWeightStrategy):
    """Pooled work in the order it arrived.

    The scheduler queues scheduled task instances by priority weight (highest first), then their run's
    logical date, then map index (``SchedulerJobRunner._executable_task_instances_to_queued``, Airflow
    3.3). The sensor launches trainings without a logical date, as every triggered run has none, so
    among equal weights their order would be the database's. This weight falls by one per second of the
    task instance's creation: with its run, when the sensor launched it (when the project became due),
    or when a mapped task expands (pre-annotation). Earlier work outranks later work; work created in the
    same second is in no set order. A cleared task instance is weighed again, behind what waits.
    """

    def get_weight(self, ti: TaskInstance) -> int:
        return WEIGHT_CEILING - int(time.time() - EPOCH)
