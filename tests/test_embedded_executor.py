"""The embedded default's executor: parallelism bounds what the scheduler hands it, so a poll's task is
not queued behind every training step (Airflow 3.3's LocalExecutor counts none of what it was handed)."""

from __future__ import annotations

import ctypes
import multiprocessing
from multiprocessing import SimpleQueue
from types import SimpleNamespace

from airflow.executors.local_executor import LocalExecutor

from active_learning_airflow.executor import CountingLocalExecutor


def handed_two_of_two(executor_class: type[LocalExecutor]) -> LocalExecutor:
    """An executor with 2 workers, handed 2 tasks by Airflow's own bookkeeping (no worker started)."""
    executor = executor_class(parallelism=2)
    executor._check_workers = lambda: None  # type: ignore[method-assign]  # no worker processes: only the count
    executor.activity_queue = SimpleQueue()
    executor._unread_messages = multiprocessing.Value(ctypes.c_uint)
    tasks = [SimpleNamespace(key=key, running_state=None) for key in ("poll", "train")]
    executor.queued_tasks = {task.key: task for task in tasks}
    executor._process_workloads(tasks)
    return executor


def test_a_task_handed_over_holds_a_slot_until_it_ends() -> None:
    executor = handed_two_of_two(CountingLocalExecutor)
    assert executor.slots_available == 0, "the scheduler hands over no more until a task ends"
    executor.change_state("poll", "success")
    assert executor.slots_available == 1


def test_airflows_own_local_executor_still_counts_nothing_it_was_handed() -> None:
    """The reason for CountingLocalExecutor: when Airflow counts them itself, this fails and it can go."""
    assert handed_two_of_two(LocalExecutor).slots_available == 2


def test_the_embedded_default_runs_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """By its import path, as Airflow loads a custom executor (the real-scheduler tests run it)."""
    from airflow.sdk.module_loading import import_string

    from devstack.embedded import airflow_environment

    assert import_string(airflow_environment(tmp_path)["AIRFLOW__CORE__EXECUTOR"]) is CountingLocalExecutor
