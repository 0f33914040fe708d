"""The training pool: an Airflow pool that bounds the tasks loading spaCy models, and the order they run in.

Tasks in it: a training's ``train`` and ``choose_deploy_path`` (the deploy gate scores the new and the
deployed model) and pre-annotation's ``preannotate``; every other task stays in ``default_pool``, so polls
and deploys never wait behind a training. The same tasks go to the training queue, where one is set
(:mod:`active_learning_airflow.queues`): where a transformer's model trains, it is loaded too. DAG files take :data:`IN_TRAINING_POOL` at parse time; creating
the pool (:func:`ensure_training_pool`) imports Airflow's models, only when run.

Run ``python -m active_learning_airflow.pools`` (``plugins/`` on ``PYTHONPATH``) once Airflow's database
is migrated and before its scheduler runs: a task in a pool that does not exist stays scheduled (the
scheduler logs "Tasks using non-existent pool ... will not be scheduled") until the pool exists. It
creates the pool with ``ACTIVE_LEARNING_TRAINING_POOL_SLOTS`` slots, else as many as this machine holds
(``active_learning.settings.default_training_pool_slots``); a pool that exists keeps its size, so a size
set in the UI (Admin > Pools) or with ``airflow pools set`` survives every later run.
"""

from __future__ import annotations

from active_learning.constants import TRAINING_POOL
from active_learning_airflow.priority import FirstInFirstOut
from active_learning_airflow.queues import on_training_queue

DESCRIPTION = "Active learning: tasks that load spaCy models (training, the deploy gate, pre-annotation)"
# The arguments of every task that loads spaCy models. The strategy by its importable name, which Airflow
# looks up among the plugins' strategies: Airflow 3.3 serializes a strategy object in a mapped task's
# partial kwargs as its repr, which no component can load back.
IN_TRAINING_POOL = {"pool": TRAINING_POOL, "weight_rule": f"{FirstInFirstOut.__module__}.{FirstInFirstOut.__qualname__}",
                    **on_training_queue()}


def ensure_training_pool(slots: int) -> tuple[int, bool]:
    """Create the training pool with ``slots`` if it is missing; returns its size and whether it is new."""
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    with create_session() as session:
        existing = Pool.get_pool(TRAINING_POOL, session=session)
        if existing is not None:
            return existing.slots, False
        Pool.create_or_update_pool(TRAINING_POOL, slots, DESCRIPTION, include_deferred=False, session=session)
    return slots, True


def main() -> int:
    from active_learning.settings import training_pool_slots

    slots, created = ensure_training_pool(training_pool_slots())
    if created:
        print(f"Airflow pool {TRAINING_POOL}: created with {slots} slots")
    else:
        print(f"Airflow pool {TRAINING_POOL}: exists with {slots} slots, left as it is (resize: airflow pools set)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
