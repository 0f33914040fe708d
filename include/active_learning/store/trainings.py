"""The training history: one row per training, from start to success or failure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from active_learning.store.base import Repository, find_project
from active_learning.store.counters import count_last_training
from active_learning.store.models import Project, TrainingRun, utcnow


@dataclass(frozen=True)
class TrainingView:
    run_key: str
    project: str
    source: str
    as_of: datetime
    status: str
    started_at: datetime
    ended_at: datetime | None
    completions_used: int | None
    model_name: str | None
    model_version: int | None
    mlflow_run_id: str | None
    deploy: str | None
    outcome: str | None
    metrics: dict[str, Any] | None
    error: str | None
    source_annotations: int | None = None  # Label Studio projects: the server's count this training read
    progress: dict[str, Any] | None = None  # its last evaluation while training: training/progress.py
    base_model: str | None = None  # where it started (training/base_model.py); None: from scratch

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()}


class Trainings(Repository):
    def start(
        self, name: str, *, run_key: str, source: str, as_of: datetime, source_annotations: int | None = None
    ) -> TrainingView:
        """Record a training as running; a retry of the same run key reuses its row.

        ``source_annotations`` (Label Studio projects) is written with the row, never after it: a poll
        that sees the running training must also see the count it started from.
        """
        with self._session() as session:
            project = find_project(session, name)
            run = session.scalar(select(TrainingRun).where(TrainingRun.run_key == run_key))
            if run is None:
                run = TrainingRun(project_id=project.id, run_key=run_key, source=source, as_of=as_of)
                session.add(run)
            run.status, run.error, run.ended_at, run.progress = "running", None, None, None
            if source_annotations is not None:
                run.source_annotations = source_annotations
            session.flush()
            count_last_training(session, project.id)
            return _view(run, name)

    def update(self, run_key: str, **fields: Any) -> TrainingView:
        with self._session() as session:
            run = session.scalars(select(TrainingRun).where(TrainingRun.run_key == run_key)).one()
            for key, value in fields.items():
                setattr(run, key, value)
            if fields.get("status") in {"success", "failed"}:
                run.ended_at = utcnow()
            if "status" in fields or "as_of" in fields:
                session.flush()
                count_last_training(session, run.project_id)
            project_name = session.scalar(select(Project.name).where(Project.id == run.project_id))
            return _view(run, project_name)

    def record_progress(self, run_key: str, progress: dict[str, Any] | None) -> None:
        """A running training's progress (None: none yet), one statement: written at each evaluation."""
        with self._session() as session:
            session.execute(update(TrainingRun).where(TrainingRun.run_key == run_key).values(progress=progress))

    def exists(self, run_key: str) -> bool:
        with self._session() as session:
            return session.scalar(select(TrainingRun.id).where(TrainingRun.run_key == run_key)) is not None

    def get(self, run_key: str) -> TrainingView:
        with self._session() as session:
            run, project_name = session.execute(
                select(TrainingRun, Project.name)
                .join(Project, Project.id == TrainingRun.project_id)
                .where(TrainingRun.run_key == run_key)
            ).one()
            return _view(run, project_name)

    def that_registered(self, model_name: str) -> TrainingView | None:
        """The training that registered ``model_name`` (names are unique); None: no training did."""
        return self._first(TrainingRun.model_name == model_name)

    def that_registered_version(self, project: str, version: int) -> TrainingView | None:
        """``project``'s training that registered its model's ``version``; None: no training did."""
        return self._first(Project.name == project, TrainingRun.model_version == version)

    def _first(self, *conditions: Any) -> TrainingView | None:
        with self._session() as session:
            row = session.execute(
                select(TrainingRun, Project.name).join(Project, Project.id == TrainingRun.project_id).where(*conditions).limit(1)
            ).first()
            return _view(*row) if row else None

    def history(self, name: str) -> list[TrainingView]:
        with self._session() as session:
            project = find_project(session, name)
            runs = session.scalars(
                select(TrainingRun).where(TrainingRun.project_id == project.id).order_by(TrainingRun.started_at)
            )
            return [_view(run, name) for run in runs]


def _view(run: TrainingRun, project_name: str) -> TrainingView:
    return TrainingView(
        run_key=run.run_key,
        project=project_name,
        source=run.source,
        as_of=run.as_of,
        status=run.status,
        started_at=run.started_at,
        ended_at=run.ended_at,
        completions_used=run.completions_used,
        model_name=run.model_name,
        model_version=run.model_version,
        mlflow_run_id=run.mlflow_run_id,
        deploy=run.deploy,
        outcome=run.outcome,
        metrics=run.metrics,
        error=run.error,
        source_annotations=run.source_annotations,
        progress=run.progress,
        base_model=run.base_model,
    )
