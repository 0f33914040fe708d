"""Labeling configs: the live one per project and every revision before it, changed by compare-and-set."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from active_learning.store.base import Repository, find_project
from active_learning.store.models import ConfigRevision, Project


class ConfigConflictError(RuntimeError):
    """The labeling config changed since it was read: re-read and apply the change again."""

    def __init__(self, project: str, read_revision: int) -> None:
        super().__init__(f"the labeling config of {project!r} changed after revision {read_revision} was read")


@dataclass(frozen=True)
class ConfigState:
    xml: str
    revision: int


@dataclass(frozen=True)
class RevisionView:
    revision: int
    labeling_config: str
    created_at: datetime
    author: str
    reason: str


class Configs(Repository):
    def read(self, name: str) -> ConfigState:
        with self._session() as session:
            project = find_project(session, name)
            return ConfigState(project.labeling_config, project.config_revision)

    def write(
        self,
        name: str,
        xml: str,
        *,
        expected_revision: int,
        author: str,
        reason: str,
        publish: Callable[[str], None] | None = None,
    ) -> ConfigState:
        """Make ``xml`` the live config if nobody changed it since ``expected_revision`` was read.

        The compare-and-set on the revision serialises concurrent writers without losing an update;
        every earlier revision stays in ``config_revisions``. ``publish`` (a Label Studio project's
        PATCH) runs after the compare-and-set, inside its transaction: if it raises, nothing is written.
        """
        with self._session() as session:
            next_revision(session, find_project(session, name), xml, expected_revision, author, reason)
            if publish is not None:
                session.flush()
                publish(xml)
        return ConfigState(xml, expected_revision + 1)

    def revisions(self, name: str) -> list[RevisionView]:
        with self._session() as session:
            project = find_project(session, name)
            rows = session.scalars(
                select(ConfigRevision).where(ConfigRevision.project_id == project.id).order_by(ConfigRevision.revision)
            )
            return [RevisionView(r.revision, r.labeling_config, r.created_at, r.author, r.reason) for r in rows]


def next_revision(session: Session, project: Project, xml: str, expected_revision: int, author: str, reason: str) -> None:
    """The compare-and-set: ``xml`` becomes revision ``expected_revision + 1`` unless another writer got there first."""
    changed = session.execute(
        update(Project)
        .where(Project.id == project.id, Project.config_revision == expected_revision)
        .values(labeling_config=xml, config_revision=expected_revision + 1)
    ).rowcount
    if changed != 1:
        raise ConfigConflictError(project.name, expected_revision)
    session.add(ConfigRevision(project_id=project.id, revision=expected_revision + 1, labeling_config=xml, author=author, reason=reason))
