"""What every task of the DAGs shares: the domain's backends, inside the failure policy of a task.

DAG files import this module at parse time; it imports what a task needs only when the task runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from active_learning.backends import Backends


@contextmanager
def domain_task() -> Iterator[Backends]:
    """The domain's Backends for this task (Label Studio's connection from Airflow); an error that no
    retry can fix, raised inside, fails the task at once, and any other error is retried.

    Not for sensors with ``soft_fail``: Airflow turns a failure that skips retries into a skip there.
    """
    from active_learning_airflow.connections import task_backends
    from active_learning_airflow.errors import fail_without_retry

    with fail_without_retry():
        yield task_backends()
