"""Pre-annotations: one prediction per (project, task, model), and which tasks still await annotation.

A task awaits annotation while it has no submitted completion (drafts and cancelled ones don't count):
re-importing an export in which it got one takes it out of the queue. Tasks are named as the user knows
them (the export's id, or Label Studio's task id).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from active_learning.preannotation.strategies import MARGIN
from active_learning.store.base import Repository, find_project
from active_learning.store.models import Completion, Prediction, Project, Task, utcnow


_IN_CHUNK = 500  # ids per IN (...): well under SQLite's and PostgreSQL's limits on bound parameters


@dataclass(frozen=True)
class TaskText:
    row: int  # the source's order: where the next page starts
    task_id: str
    text: str
    title: str | None = None


@dataclass(frozen=True)
class NewPrediction:
    task_id: str
    score: float
    result: list[dict[str, Any]]


def _awaiting_annotation() -> Any:
    submitted = exists().where(Completion.task_id == Task.id, Completion.arrived_at.is_not(None))
    return ~submitted


class Predictions(Repository):
    def unannotated_texts(self, name: str, *, model: str | None = None, after_row: int = 0, limit: int = 1000) -> list[TaskText]:
        """A page of the project's tasks awaiting annotation, in store order after ``after_row``; with
        ``model``, only those it has not pre-annotated yet."""
        with self._session() as session:
            project_id = find_project(session, name).id
            query = (
                select(Task.id, Task.source_id, Task.text, Task.title)
                .where(Task.project_id == project_id, Task.id > after_row, _awaiting_annotation())
                .order_by(Task.id)
                .limit(limit)
            )
            if model is not None:
                query = query.where(~exists().where(
                    Prediction.project_id == project_id, Prediction.task_source_id == Task.source_id,
                    Prediction.model_name == model,
                ))
            return [TaskText(*row) for row in session.execute(query)]

    def unannotated_pages(self, name: str, *, model: str | None = None, page_size: int = 1000) -> Iterator[list[TaskText]]:
        """Every task awaiting annotation (with ``model``, those it has not pre-annotated yet), a page at a
        time, each page read in its own transaction after the last one's rows."""
        after = 0
        while page := self.unannotated_texts(name, model=model, after_row=after, limit=page_size):
            yield page
            after = page[-1].row

    def unannotated_ids(self, name: str) -> list[str]:
        """Every task awaiting annotation, in store order (the order of the exports)."""
        with self._session() as session:
            project_id = find_project(session, name).id
            return list(session.scalars(
                select(Task.source_id).where(Task.project_id == project_id, _awaiting_annotation()).order_by(Task.id)
            ))

    def texts(self, name: str, task_ids: Iterable[str]) -> dict[str, str]:
        """Task -> its text, for those of ``task_ids`` the project has."""
        wanted, found = list(dict.fromkeys(task_ids)), {}
        with self._session() as session:
            project_id = find_project(session, name).id
            for start in range(0, len(wanted), _IN_CHUNK):
                found.update(session.execute(select(Task.source_id, Task.text).where(
                    Task.project_id == project_id, Task.source_id.in_(wanted[start : start + _IN_CHUNK]))).all())
        return found

    def annotated_texts(self, name: str) -> list[str]:
        """The texts of the project's tasks that have a submitted completion."""
        with self._session() as session:
            project_id = find_project(session, name).id
            return list(session.scalars(select(Task.text).where(Task.project_id == project_id, ~_awaiting_annotation())))

    def save(self, name: str, model: str, predictions: Iterable[NewPrediction], *, scorer: str = MARGIN) -> int:
        """Store predictions (their scores by ``scorer``) in one transaction; one already there for (task,
        model) is kept. Returns how many were new."""
        rows = [{"task_source_id": p.task_id, "model_name": model, "score": p.score, "scorer": scorer, "result": p.result}
                for p in predictions]
        if not rows:
            return 0
        with self._session() as session:
            project_id = find_project(session, name).id
            now = utcnow()
            insert = (postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert)(Prediction)
            statement = insert.values([{**row, "project_id": project_id, "created_at": now} for row in rows])
            statement = statement.on_conflict_do_nothing(index_elements=["project_id", "task_source_id", "model_name"])
            return session.execute(statement).rowcount or 0

    def scores(self, name: str, model: str, task_ids: Iterable[str] | None = None) -> dict[str, float]:
        """Task -> the model's confidence, for the tasks it pre-annotated (of ``task_ids``, if given)."""
        with self._session() as session:
            query = self._of_model(session, name, model).with_only_columns(Prediction.task_source_id, Prediction.score)
            if task_ids is not None:
                wanted = set(task_ids)
                return {task: score for task, score in session.execute(query) if task in wanted}
            return dict(session.execute(query).all())

    def scorers(self, name: str, model: str) -> set[str]:
        """The scorers that gave the model's predictions in the project their scores (one, or none yet)."""
        with self._session() as session:
            return set(session.scalars(self._of_model(session, name, model).with_only_columns(Prediction.scorer).distinct()))

    def of_model(self, name: str, model: str, task_ids: Iterable[str] | None = None) -> dict[str, tuple[float, list[dict[str, Any]]]]:
        """Task -> (score, result items) of every prediction the model made in the project (of ``task_ids``, if given)."""
        with self._session() as session:
            query = self._of_model(session, name, model).with_only_columns(
                Prediction.task_source_id, Prediction.score, Prediction.result
            )
            if task_ids is not None:
                query = query.where(Prediction.task_source_id.in_(list(task_ids)))
            return {task: (score, result) for task, score, result in session.execute(query)}

    def unpushed(self, name: str, model: str, *, limit: int = 1000) -> list[NewPrediction]:
        """The model's predictions not yet sent to the project's Label Studio."""
        with self._session() as session:
            query = (
                self._of_model(session, name, model)
                .with_only_columns(Prediction.task_source_id, Prediction.score, Prediction.result)
                .where(Prediction.pushed_at.is_(None))
                .order_by(Prediction.id)
                .limit(limit)
            )
            return [NewPrediction(task, score, result) for task, score, result in session.execute(query)]

    def mark_pushed(self, name: str, model: str, task_ids: Iterable[str]) -> None:
        with self._session() as session:
            project_id = find_project(session, name).id
            session.execute(
                update(Prediction)
                .where(Prediction.project_id == project_id, Prediction.model_name == model,
                       Prediction.task_source_id.in_(list(task_ids)))
                .values(pushed_at=utcnow())
            )

    def counts(self, name: str) -> dict[str, int]:
        """Model -> how many tasks awaiting annotation it pre-annotated."""
        with self._session() as session:
            project_id = find_project(session, name).id
            query = (
                select(Prediction.model_name, func.count())
                .join(Task, and_(Task.project_id == Prediction.project_id, Task.source_id == Prediction.task_source_id))
                .where(Prediction.project_id == project_id, _awaiting_annotation())
                .group_by(Prediction.model_name)
            )
            return dict(session.execute(query).all())

    def announce(self) -> list[str]:
        """Projects whose deployed model changed since its pre-annotation was last announced; each is
        marked announced (compare-and-set on the deployed model: a deploy in between is announced next time)."""
        with self._session() as session:
            changed = session.execute(
                select(Project.id, Project.name, Project.deployed_model).where(
                    Project.deployed_model.is_not(None),
                    (Project.announced_model.is_(None)) | (Project.announced_model != Project.deployed_model),
                ).order_by(Project.name)
            ).all()
            announced = []
            for project_id, name, model in changed:
                done = session.execute(
                    update(Project).where(Project.id == project_id, Project.deployed_model == model).values(announced_model=model)
                ).rowcount
                if done:
                    announced.append(name)
            return announced

    def _of_model(self, session: Session, name: str, model: str) -> Any:
        project_id = find_project(session, name).id
        return select(Prediction).where(Prediction.project_id == project_id, Prediction.model_name == model)
