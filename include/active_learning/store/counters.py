"""The poll's counters on each project's row, kept in the same transaction as every import and training.

``arrived_count`` (completions arrived so far), ``last_arrived_at``, ``last_training_as_of`` (the latest
training that did not fail) and ``arrived_by_last_training``: new completions of a live poll are
``arrived_count - arrived_by_last_training``, one row read per project whatever the history.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, func, literal, or_, select, update
from sqlalchemy.orm import Session

from active_learning.store.models import Completion, Project, TrainingRun


def count_arrivals(session: Session, project_id: int, arrived: int, arrived_at: datetime) -> None:
    """After an import: ``arrived`` more completions, all arrived at ``arrived_at`` (one statement: the row
    lock orders it with a training recount, see :func:`count_last_training`)."""
    stamp = literal(arrived_at, Project.last_arrived_at.type)  # stored as the column stores it: naive UTC
    session.execute(
        update(Project)
        .where(Project.id == project_id)
        .values(
            arrived_count=Project.arrived_count + arrived,
            last_arrived_at=case(
                (or_(Project.last_arrived_at.is_(None), Project.last_arrived_at < stamp), stamp),
                else_=Project.last_arrived_at,
            ),
            # An import stamped at or before the last training's as_of (only an explicit arrived_at can be)
            # counts as arrived by it.
            arrived_by_last_training=Project.arrived_by_last_training
            + case((Project.last_training_as_of >= stamp, arrived), else_=0),
        )
    )


def count_last_training(session: Session, project_id: int) -> None:
    """After a training starts or changes status: the latest training that did not fail, and the
    completions arrived by its as_of, counted afresh.

    The project's row is locked first, as an import's counter update locks it: one in flight commits
    before the count (PostgreSQL reads each statement afresh; SQLite has one writer), so none is missed
    or counted twice. FOR NO KEY UPDATE, not FOR UPDATE: the training row just inserted holds a key-share
    lock on the project, and two trainings would deadlock on each other's.
    """
    session.execute(select(Project.id).where(Project.id == project_id).with_for_update(key_share=True))
    last = session.scalar(
        select(func.max(TrainingRun.as_of)).where(TrainingRun.project_id == project_id, TrainingRun.status != "failed")
    )
    arrived = 0 if last is None else session.scalar(
        select(func.count(Completion.id)).where(Completion.project_id == project_id, Completion.arrived_at <= last)
    )
    session.execute(
        update(Project).where(Project.id == project_id).values(last_training_as_of=last, arrived_by_last_training=arrived)
    )


def recount_all(session: Session) -> None:
    """Every project's counters recomputed from its completions and trainings, as the migration that
    added them does: for rows written around the store (a bulk load, a restore from backup)."""
    of_project = Completion.project_id == Project.id
    session.execute(update(Project).values(
        arrived_count=select(func.count(Completion.id)).where(of_project, Completion.arrived_at.is_not(None))
        .scalar_subquery(),
        last_arrived_at=select(func.max(Completion.arrived_at)).where(of_project).scalar_subquery(),
        last_training_as_of=select(func.max(TrainingRun.as_of))
        .where(TrainingRun.project_id == Project.id, TrainingRun.status != "failed").scalar_subquery(),
    ))
    session.execute(update(Project).values(
        arrived_by_last_training=select(func.count(Completion.id))
        .where(of_project, Completion.arrived_at <= Project.last_training_as_of).scalar_subquery(),
    ))
