"""What every part of the store shares: one session per call, each its own short transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from active_learning.store.models import Project

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class UnknownProjectError(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no project named {name!r}; see `active-learning projects`")


class Repository:
    """One part of the annotation store; all parts share one engine and its connection pool."""

    def __init__(self, engine: Engine, sessions: sessionmaker[Session]) -> None:
        self.engine = engine
        self._sessions = sessions

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session


def find_project(session: Session, name: str) -> Project:
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        raise UnknownProjectError(name)
    return project


def aware(value: datetime | str | None) -> datetime | None:
    """Scalar subqueries bypass the column type: SQLite hands back strings, PostgreSQL naive datetimes."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
