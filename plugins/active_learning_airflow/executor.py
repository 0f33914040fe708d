"""The embedded default's executor: Airflow's LocalExecutor, counting each task it was handed as running
until the task ends.

Airflow 3.3's LocalExecutor never adds a task it was handed to ``running``, the count from which the
scheduler learns how many more tasks an executor takes (``slots_available``). So ``[core] parallelism``
bounds its worker processes but not what the scheduler hands it: with 50 trainings due at once, 25 tasks
waited in its queue, which its workers take first in, first out, and a poll waited 38 s there behind the
trainings' steps whatever its priority weight (bench/load.py, docs/performance.md "Under load").
Counted, the scheduler hands over no more tasks than there are workers, and a freed worker goes to the
scheduled task of highest weight: the sensor's (``priority.AHEAD_OF_EVERYTHING``).

Set as ``AIRFLOW__CORE__EXECUTOR=active_learning_airflow.executor.CountingLocalExecutor`` by
``devstack.embedded``; it is a LocalExecutor in every other way (``airflow standalone`` runs it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.executors.local_executor import LocalExecutor


class CountingLocalExecutor(LocalExecutor):
    def _process_workloads(self, workload_list: Sequence[Any]) -> None:
        super()._process_workloads(workload_list)
        # A task's worker reports only its end, which takes it out of `running` again (change_state). A
        # workload that reports its start too (a callback) would leave `running` then, so it is not counted.
        self.running.update(workload.key for workload in workload_list if workload.running_state is None)
