"""A project's status, read in one statement for any number of projects: what the sensor's poll, the
Active Learning page and ``active-learning projects`` all read (see :mod:`active_learning.status`).

**Since the last training** counts the submitted completions that arrived after the project's last
training (the latest one, as of the poll's time, that did not fail) and up to the poll's time. When the
poll's time is past the project's latest arrival and latest training (every live poll), the project's
counters answer (:mod:`active_learning.store.counters`): one row read per project whatever the history.
An earlier time (a backfill) looks the last training up and counts the completions after it in a range
of ``ix_completions_project_arrived``. Projects of another source (Label Studio) keep no completions
here: their counts come from the source, against the count their last training recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, func, literal, or_, select, text, type_coerce
from sqlalchemy.orm import aliased

from active_learning.naming import trained_at
from active_learning.store.base import EPOCH, Repository, aware
from active_learning.store.counters import recount_all
from active_learning.store.models import SOURCE_STORE, Completion, Project, TrainingRun, UTCDateTime

if TYPE_CHECKING:
    from active_learning.labeling_config import ConfigProblem


@dataclass(frozen=True)
class LastTraining:
    """A project's latest training, whatever its status."""

    run_key: str
    source: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    model_name: str | None
    mlflow_run_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class ProjectStatus:
    """One project as the poll, the page and the CLI see it. Counts are None where the source was not asked."""

    name: str
    source: str
    source_project_id: int | None
    active_learning: bool
    frequency: int
    auto_deploy: bool
    config_revision: int
    deployed_model: str | None
    completions: int | None  # submitted completions in all
    since_last_training: int | None  # arrived after the last training that did not fail, as of the poll
    last_training_as_of: datetime | None  # that training's as_of: it names the next crossing's run
    last_training_count: int = 0  # another source's count that training read (0: none)
    last_training: LastTraining | None = None  # the latest training, any status (read for people only)
    problems: tuple[ConfigProblem, ...] = ()  # the labeling config's (checked for people only)

    @property
    def due(self) -> bool:
        """The one definition: active learning on, and at least ``frequency`` new completions."""
        return self.active_learning and self.since_last_training is not None and self.since_last_training >= self.frequency

    @property
    def to_next_training(self) -> int | None:
        return None if self.since_last_training is None else max(self.frequency - self.since_last_training, 0)

    @property
    def deployed_trained_at(self) -> datetime | None:
        return trained_at(self.deployed_model)

    def as_dict(self) -> dict[str, Any]:
        trained_at = self.deployed_trained_at
        return {
            "name": self.name,
            "source": self.source,
            "source_project_id": self.source_project_id,
            "active_learning": self.active_learning,
            "frequency": self.frequency,
            "auto_deploy": self.auto_deploy,
            "config_revision": self.config_revision,
            "completions": self.completions,
            "since_last_training": self.since_last_training,
            "to_next_training": self.to_next_training,
            "due": self.due,
            "deployed_model": self.deployed_model,
            "deployed_trained_at": trained_at.isoformat() if trained_at else None,
            "last_training": self.last_training.as_dict() if self.last_training else None,
            "valid": not self.problems,
            "problems": [asdict(problem) for problem in self.problems],
        }


#: ``check(labeling config, this project's registered models, every registered model)``
ConfigCheck = Callable[[str, frozenset[str], frozenset[str]], tuple["ConfigProblem", ...]]


class Statuses(Repository):
    def poll(self, as_of: datetime, *, due_only: bool = False) -> list[ProjectStatus]:
        """Our store's active-learning projects as of ``as_of``, in ONE statement (``due_only``: the
        database keeps only the due ones, so neither the driver nor Python handle a row per project)."""
        return self._read(as_of, source=SOURCE_STORE, active_only=True, due_only=due_only)

    def of_source(self, source: str) -> list[ProjectStatus]:
        """Another source's active-learning projects with the count their last (not failed) training
        recorded, ONE statement. The source's counts are live only, so its last training is the latest
        one whatever the poll's time: a backfill then names the same crossing as a live poll."""
        return self._read(None, source=source, active_only=True)

    def everything(self, as_of: datetime, *, name: str | None = None, check: ConfigCheck | None = None) -> list[ProjectStatus]:
        """Every project (or the one named) with its latest training and its config check: two statements
        whatever the number of projects (the second lists the models the history registered, for ``check``)."""
        rows = self._execute(_statement(as_of, name=name, with_last_training=True))
        if check is None:
            return [_status(row, with_last_training=True) for row in rows]
        registered_models = select(TrainingRun.project_id, TrainingRun.model_name).where(
            TrainingRun.model_name.is_not(None), TrainingRun.model_version.is_not(None)
        )
        with self.engine.connect() as connection:
            own: dict[int, set[str]] = {}
            for project_id, model in connection.execute(registered_models):
                own.setdefault(project_id, set()).add(model)
        registered = frozenset(model for names in own.values() for model in names)
        return [
            replace(
                _status(row, with_last_training=True),
                problems=check(row.labeling_config, frozenset(own.get(row.id, ())), registered),
            )
            for row in rows
        ]

    def recount(self) -> None:
        """The poll's counters recomputed from the completions and trainings (after rows were written
        around the store: a bulk load, a restore from backup)."""
        with self._session() as session:
            recount_all(session)

    def _read(self, as_of: datetime | None, **how: Any) -> list[ProjectStatus]:
        return [_status(row, with_last_training=False) for row in self._execute(_statement(as_of, **how))]

    def _execute(self, statement: Any) -> list[Any]:
        with self._session() as session:
            if self.engine.dialect.name == "postgresql":
                # At thousands of projects the plan's estimated cost passes jit_above_cost, and compiling
                # it takes longer than running it (measured: 166 -> 80 ms at 10,000 projects).
                session.execute(text("SET LOCAL jit = off"))
            return list(session.execute(statement))


def _statement(
    as_of: datetime | None, *, source: str | None = None, active_only: bool = False, due_only: bool = False,
    name: str | None = None, with_last_training: bool = False,
) -> Any:
    """Settings, counts and (``with_last_training``, for people) the latest training and the labeling config."""
    ours = Project.source == SOURCE_STORE
    if as_of is None:  # another source's live counts: the latest training, whenever
        last_as_of: Any = Project.last_training_as_of
        counted: Any = literal(0)
    else:
        last_training = (
            select(func.max(TrainingRun.as_of))
            .where(TrainingRun.project_id == Project.id, TrainingRun.status != "failed", TrainingRun.as_of <= as_of)
            .correlate(Project)
            .scalar_subquery()
        )
        counters_hold = and_(
            or_(Project.last_arrived_at.is_(None), Project.last_arrived_at <= as_of),
            or_(Project.last_training_as_of.is_(None), Project.last_training_as_of <= as_of),
        )
        last_as_of = case((or_(counters_hold, ~ours), Project.last_training_as_of), else_=last_training)
        counted = case((counters_hold, Project.arrived_count - Project.arrived_by_last_training))
    filters = []
    if source is not None:
        filters.append(Project.source == source)
    if active_only:
        filters.append(Project.active_learning.is_(True))
    if name is not None:
        filters.append(Project.name == name)
    last_count = (
        select(TrainingRun.source_annotations)
        .where(TrainingRun.project_id == Project.id, TrainingRun.status != "failed")
        .order_by(TrainingRun.as_of.desc(), TrainingRun.id.desc())
        .limit(1)
        .correlate(Project)
        .scalar_subquery()
    )
    project = (
        select(
            Project.id, Project.name, Project.source, Project.source_project_id, Project.active_learning,
            Project.frequency, Project.auto_deploy, Project.config_revision, Project.deployed_model,
            Project.arrived_count, last_as_of.label("last_training"), counted.label("counted"),
            (literal(None) if source == SOURCE_STORE else case((ours, literal(None)), else_=last_count)).label("last_count"),
            *([Project.labeling_config] if with_last_training else []),
        )
        .where(*filters)
        .cte("projects_read")
        .prefix_with("MATERIALIZED")
    )
    if as_of is None:
        since: Any = literal(None)
    else:
        new_completions = (
            select(func.count(Completion.id))
            .where(
                Completion.project_id == project.c.id,
                Completion.arrived_at > func.coalesce(project.c.last_training, literal(EPOCH, TrainingRun.as_of.type)),
                Completion.arrived_at <= as_of,
            )
            .correlate(project)
            .scalar_subquery()
        )
        since = case((project.c.source == SOURCE_STORE, func.coalesce(project.c.counted, new_completions)))
    counted_cte = (
        select(*project.c, since.label("since_last_training")).cte("projects_counted").prefix_with("MATERIALIZED")
    )
    columns: list[Any] = list(counted_cte.c)
    query = select(*columns).order_by(counted_cte.c.name)
    if with_last_training:
        latest_id = (
            select(TrainingRun.id)
            .where(TrainingRun.project_id == counted_cte.c.id)
            .order_by(TrainingRun.started_at.desc(), TrainingRun.id.desc())
            .limit(1)
            .correlate(counted_cte)
            .scalar_subquery()
        )
        last = aliased(TrainingRun, name="last_training_run")
        query = query.add_columns(
            last.run_key, last.source.label("training_source"), last.status,
            type_coerce(last.started_at, UTCDateTime()).label("started_at"),
            type_coerce(last.ended_at, UTCDateTime()).label("ended_at"),
            last.model_name, last.mlflow_run_id,
        ).outerjoin(last, last.id == latest_id)
    if due_only:
        query = query.where(counted_cte.c.since_last_training >= counted_cte.c.frequency)
    return query


def _status(row: Any, with_last_training: bool) -> ProjectStatus:
    ours = row.source == SOURCE_STORE
    last = None
    if with_last_training and row.run_key is not None:
        last = LastTraining(row.run_key, row.training_source, row.status, row.started_at, row.ended_at, row.model_name,
                            row.mlflow_run_id)
    return ProjectStatus(
        name=row.name,
        source=row.source,
        source_project_id=row.source_project_id,
        active_learning=bool(row.active_learning),
        frequency=row.frequency,
        auto_deploy=bool(row.auto_deploy),
        config_revision=row.config_revision,
        deployed_model=row.deployed_model,
        completions=row.arrived_count if ours else None,
        since_last_training=row.since_last_training if ours else None,
        last_training_as_of=aware(row.last_training),
        last_training_count=row.last_count or 0,
        last_training=last,
    )
