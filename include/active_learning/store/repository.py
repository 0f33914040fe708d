"""Reads and writes of the annotation store, each in its own short transaction."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, case, func, insert, literal, or_, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from active_learning.selection import TrainingExample, training_example
from active_learning.exports import CompletionRecord, TaskRecord
from active_learning.store.models import (
    DEFAULT_FREQUENCY,
    FREQUENCIES,
    SOURCE_LABEL_STUDIO,
    SOURCE_STORE,
    SOURCES,
    Completion,
    ConfigRevision,
    Project,
    Task,
    TrainingRun,
    utcnow,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
IMPORT_CHUNK = 5000


class UnknownProjectError(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no project named {name!r}; see `active-learning projects`")


class ConfigConflictError(RuntimeError):
    """The labeling config changed since it was read: re-read and apply the change again."""

    def __init__(self, project: str, read_revision: int) -> None:
        super().__init__(f"the labeling config of {project!r} changed after revision {read_revision} was read")


@dataclass(frozen=True)
class ProjectSettings:
    id: int
    name: str
    active_learning: bool
    frequency: int
    auto_deploy: bool
    text_key: str
    deployed_model: str | None
    config_revision: int
    source: str = SOURCE_STORE
    source_project_id: int | None = None


@dataclass(frozen=True)
class SourcePollState:
    """An active-learning project of an external source, with what its last training recorded."""

    project: str
    source_project_id: int
    frequency: int
    auto_deploy: bool
    last_training_as_of: datetime | None
    last_training_count: int  # the source's annotation count when the last training read it (0: none)


@dataclass(frozen=True)
class PollRow:
    """One active-learning project as a poll sees it."""

    project: str
    frequency: int
    auto_deploy: bool
    last_training_as_of: datetime | None
    new_completions: int

    @property
    def due(self) -> bool:
        return self.new_completions >= self.frequency


@dataclass(frozen=True)
class ImportResult:
    new_tasks: int
    new_completions: int
    known_completions: int


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
    metrics: dict[str, Any] | None
    error: str | None
    source_annotations: int | None = None  # Label Studio projects: the server's count this training read

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()}


class AnnotationStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # -- projects -------------------------------------------------------------------------------

    def create_project(
        self,
        name: str,
        labeling_config: str,
        *,
        active_learning: bool = False,
        frequency: int = DEFAULT_FREQUENCY,
        auto_deploy: bool = False,
        text_key: str = "text",
        author: str = "cli",
        source: str = SOURCE_STORE,
        source_project_id: int | None = None,
    ) -> ProjectSettings:
        _check_frequency(frequency)
        if source not in SOURCES or (source != SOURCE_STORE) != (source_project_id is not None):
            raise ValueError(f"source {source!r} with project id {source_project_id!r}: a project id goes with a source other than {SOURCE_STORE!r}")
        with self._session() as session:
            project = Project(
                name=name,
                labeling_config=labeling_config,
                active_learning=active_learning,
                frequency=frequency,
                auto_deploy=auto_deploy,
                text_key=text_key,
                config_revision=1,
                source=source,
                source_project_id=source_project_id,
            )
            session.add(project)
            session.flush()
            session.add(
                ConfigRevision(
                    project_id=project.id,
                    revision=1,
                    labeling_config=labeling_config,
                    author=author,
                    reason="project created",
                )
            )
            return _settings(project)

    def project(self, name: str) -> ProjectSettings:
        with self._session() as session:
            return _settings(_project(session, name))

    def has_project(self, name: str) -> bool:
        with self._session() as session:
            return session.scalar(select(Project.id).where(Project.name == name)) is not None

    def project_names(self) -> list[str]:
        with self._session() as session:
            return list(session.scalars(select(Project.name).order_by(Project.name)))

    def update_settings(
        self,
        name: str,
        *,
        active_learning: bool | None = None,
        frequency: int | None = None,
        auto_deploy: bool | None = None,
        expected_revision: int | None = None,
        author: str = "",
        reason: str = "settings",
    ) -> ProjectSettings:
        """Change the active-learning settings. With ``expected_revision`` (a form shown at that config
        revision), only if the config is still at it, and the change is recorded as a revision (same
        labeling config; ``author``, ``reason``) in the same transaction: a stale form changes nothing."""
        with self._session() as session:
            project = _project(session, name)
            if expected_revision is not None:
                _next_revision(session, project, project.labeling_config, expected_revision, author, reason)
            if frequency is not None:
                _check_frequency(frequency)
                project.frequency = frequency
            if active_learning is not None:
                project.active_learning = active_learning
            if auto_deploy is not None:
                project.auto_deploy = auto_deploy
            return _settings(project)

    def deployed_models(self) -> dict[str, str | None]:
        """Project name -> the model its config was last deployed with."""
        with self._session() as session:
            return dict(session.execute(select(Project.name, Project.deployed_model)).all())

    def set_deployed_model(self, name: str, model_name: str | None) -> None:
        with self._session() as session:
            _project(session, name).deployed_model = model_name

    # -- completions ----------------------------------------------------------------------------

    def import_tasks(
        self, name: str, tasks: Iterable[TaskRecord], *, arrived_at: datetime | None = None
    ) -> ImportResult:
        """Add tasks and completions not seen before; an export imported twice adds nothing twice.

        One transaction (all or nothing), bulk inserts in chunks: 150,000 tasks take seconds, not minutes.
        """
        arrived_at = arrived_at or utcnow()
        new_tasks = new_completions = known = arrived = 0
        with self._session() as session:
            project_id = _project(session, name).id
            stored = session.execute(select(Task.source_id, Task.id, Task.test).where(Task.project_id == project_id)).all()
            task_ids = {source_id: task_id for source_id, task_id, _ in stored}
            tests = {source_id: test for source_id, _, test in stored}
            seen = set(
                session.execute(select(Completion.task_id, Completion.source_id).where(Completion.project_id == project_id)).all()
            )
            for chunk in _chunks(tasks, IMPORT_CHUNK):
                fresh = [
                    {"project_id": project_id, "source_id": r.source_id, "text": r.text, "title": r.title, "test": r.test}
                    for r in {r.source_id: r for r in chunk if r.source_id not in task_ids}.values()
                ]
                if fresh:
                    task_ids.update(session.execute(insert(Task).returning(Task.source_id, Task.id), fresh).all())
                    new_tasks += len(fresh)
                # A task tagged (or untagged) "test" since an earlier import follows the newer export.
                retagged = {r.source_id: r.test for r in chunk if tests.get(r.source_id, r.test) != r.test}
                if retagged:
                    session.execute(update(Task), [{"id": task_ids[k], "test": v} for k, v in retagged.items()])
                    tests.update(retagged)
                rows = []
                for record in chunk:
                    task_id = task_ids[record.source_id]
                    for completion in record.completions:
                        if (task_id, completion.source_id) in seen:
                            known += 1
                            continue
                        seen.add((task_id, completion.source_id))
                        rows.append(_completion_row(project_id, task_id, completion, arrived_at))
                if rows:
                    session.execute(insert(Completion), rows)
                    new_completions += len(rows)
                    arrived += sum(row["arrived_at"] is not None for row in rows)
            if arrived:
                _count_arrivals(session, project_id, arrived, arrived_at)
        return ImportResult(new_tasks, new_completions, known)

    def training_examples(self, name: str, as_of: datetime) -> list[TrainingExample]:
        """One example per task that had a trainable completion as of ``as_of`` (see selection policy)."""
        with self._session() as session:
            project = _project(session, name)
            rows = session.execute(
                select(Task.source_id, Task.text, Task.test, Completion)
                .join(Completion, Completion.task_id == Task.id)
                .where(Completion.project_id == project.id, Completion.arrived_at <= as_of)
                .order_by(Task.id)
            )
            by_task: dict[str, tuple[str, bool, list[Completion]]] = {}
            for source_id, text, test, completion in rows:
                by_task.setdefault(source_id, (text, test, []))[2].append(completion)
        examples = (
            training_example(source_id, text, completions, test=test) for source_id, (text, test, completions) in by_task.items()
        )
        return [example for example in examples if example is not None]

    # -- the poll -------------------------------------------------------------------------------

    def poll(self, as_of: datetime, *, due_only: bool = False) -> list[PollRow]:
        """Every active-learning project with its completions since its last training, in ONE query.

        The last training is the latest one as of ``as_of`` that did not fail. When ``as_of`` is past the
        project's latest arrival and latest training (every live poll), the project's counters answer:
        new completions = arrivals so far - arrivals by the last training, one row read per project
        whatever the history. An earlier ``as_of`` (a backfill) looks the last training up and counts the
        completions after it in a range of ``ix_completions_project_arrived``. ``due_only`` (what the
        sensor asks): the database keeps only the due projects, so neither the driver nor Python handle a
        row per project.
        """
        last_training = (
            select(func.max(TrainingRun.as_of))
            .where(
                TrainingRun.project_id == Project.id,
                TrainingRun.status != "failed",
                TrainingRun.as_of <= as_of,
            )
            .correlate(Project)
            .scalar_subquery()
        )
        counters_hold = and_(
            or_(Project.last_arrived_at.is_(None), Project.last_arrived_at <= as_of),
            or_(Project.last_training_as_of.is_(None), Project.last_training_as_of <= as_of),
        )
        active = (
            select(
                Project.id, Project.name, Project.frequency, Project.auto_deploy,
                case((counters_hold, Project.last_training_as_of), else_=last_training).label("last_training"),
                case((counters_hold, Project.arrived_count - Project.arrived_by_last_training)).label("counted"),
            )
            .where(Project.active_learning.is_(True), Project.source == SOURCE_STORE)
            .cte("active_projects")
            .prefix_with("MATERIALIZED")
        )
        new_completions = (
            select(func.count(Completion.id))
            .where(
                Completion.project_id == active.c.id,
                Completion.arrived_at > func.coalesce(active.c.last_training, literal(EPOCH, TrainingRun.as_of.type)),
                Completion.arrived_at <= as_of,
            )
            .correlate(active)
            .scalar_subquery()
        )
        polled = (
            select(active.c.name, active.c.frequency, active.c.auto_deploy, active.c.last_training,
                   func.coalesce(active.c.counted, new_completions).label("new_completions"))
            .cte("polled")
            .prefix_with("MATERIALIZED")
        )
        query = select(polled).order_by(polled.c.name)
        if due_only:
            query = query.where(polled.c.new_completions >= polled.c.frequency)
        with self._session() as session:
            if self.engine.dialect.name == "postgresql":
                # At thousands of projects the plan's estimated cost passes jit_above_cost, and compiling
                # it takes longer than running it (measured: 166 -> 80 ms at 10,000 projects).
                session.execute(text("SET LOCAL jit = off"))
            return [
                PollRow(name, frequency, auto_deploy, _aware(last), count)
                for name, frequency, auto_deploy, last, count in session.execute(query)
            ]

    def recount(self) -> None:
        """Every project's poll counters recomputed from its completions and trainings, as the migration
        that added them does: for rows written around the store (a bulk load, a restore from backup)."""
        of_project = Completion.project_id == Project.id
        with self._session() as session:
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

    def source_poll_states(self, source: str = SOURCE_LABEL_STUDIO) -> list[SourcePollState]:
        """Active-learning projects of an external source and their last (not failed) training, ONE query.

        The source's counts are live only, so its last training is the latest one whatever the poll's
        time: a backfill then names the same crossing as a live poll and never trains twice.
        """
        last = (
            select(TrainingRun.as_of, TrainingRun.source_annotations)
            .where(TrainingRun.project_id == Project.id, TrainingRun.status != "failed")
            .order_by(TrainingRun.as_of.desc(), TrainingRun.id.desc())
            .limit(1)
            .correlate(Project)
        )
        query = (
            select(
                Project.name, Project.source_project_id, Project.frequency, Project.auto_deploy,
                last.with_only_columns(TrainingRun.as_of).scalar_subquery(),
                last.with_only_columns(TrainingRun.source_annotations).scalar_subquery(),
            )
            .where(Project.active_learning.is_(True), Project.source == source)
            .order_by(Project.name)
        )
        with self._session() as session:
            return [
                SourcePollState(name, source_id, frequency, auto_deploy, _aware(last_as_of), count or 0)
                for name, source_id, frequency, auto_deploy, last_as_of, count in session.execute(query)
            ]

    def completion_totals(self) -> dict[str, int]:
        """Submitted completions per project over the whole history (for people, not for the poll)."""
        query = (
            select(Project.name, func.count(Completion.id))
            .outerjoin(Completion, and_(Completion.project_id == Project.id, Completion.arrived_at.is_not(None)))
            .group_by(Project.name)
        )
        with self._session() as session:
            return dict(session.execute(query).all())

    # -- training history ------------------------------------------------------------------------

    def start_training(
        self, name: str, *, run_key: str, source: str, as_of: datetime, source_annotations: int | None = None
    ) -> TrainingView:
        """Record a training as running; a retry of the same run key reuses its row.

        ``source_annotations`` (Label Studio projects) is written with the row, never after it: a poll
        that sees the running training must also see the count it started from.
        """
        with self._session() as session:
            project = _project(session, name)
            run = session.scalar(select(TrainingRun).where(TrainingRun.run_key == run_key))
            if run is None:
                run = TrainingRun(project_id=project.id, run_key=run_key, source=source, as_of=as_of)
                session.add(run)
            run.status, run.error, run.ended_at = "running", None, None
            if source_annotations is not None:
                run.source_annotations = source_annotations
            session.flush()
            _count_last_training(session, project.id)
            return _training_view(run, name)

    def update_training(self, run_key: str, **fields: Any) -> TrainingView:
        with self._session() as session:
            run = session.scalars(select(TrainingRun).where(TrainingRun.run_key == run_key)).one()
            for key, value in fields.items():
                setattr(run, key, value)
            if fields.get("status") in {"success", "failed"}:
                run.ended_at = utcnow()
            if "status" in fields or "as_of" in fields:
                session.flush()
                _count_last_training(session, run.project_id)
            project_name = session.scalar(select(Project.name).where(Project.id == run.project_id))
            return _training_view(run, project_name)

    def has_training(self, run_key: str) -> bool:
        with self._session() as session:
            return session.scalar(select(TrainingRun.id).where(TrainingRun.run_key == run_key)) is not None

    def training(self, run_key: str) -> TrainingView:
        with self._session() as session:
            run, project_name = session.execute(
                select(TrainingRun, Project.name)
                .join(Project, Project.id == TrainingRun.project_id)
                .where(TrainingRun.run_key == run_key)
            ).one()
            return _training_view(run, project_name)

    def history(self, name: str) -> list[TrainingView]:
        with self._session() as session:
            project = _project(session, name)
            runs = session.scalars(
                select(TrainingRun).where(TrainingRun.project_id == project.id).order_by(TrainingRun.started_at)
            )
            return [_training_view(run, name) for run in runs]

    # -- labeling config ---------------------------------------------------------------------------

    def read_config(self, name: str) -> ConfigState:
        with self._session() as session:
            project = _project(session, name)
            return ConfigState(project.labeling_config, project.config_revision)

    def write_config(
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
            _next_revision(session, _project(session, name), xml, expected_revision, author, reason)
            if publish is not None:
                session.flush()
                publish(xml)
        return ConfigState(xml, expected_revision + 1)

    def revisions(self, name: str) -> list[RevisionView]:
        with self._session() as session:
            project = _project(session, name)
            rows = session.scalars(
                select(ConfigRevision).where(ConfigRevision.project_id == project.id).order_by(ConfigRevision.revision)
            )
            return [RevisionView(r.revision, r.labeling_config, r.created_at, r.author, r.reason) for r in rows]


def _chunks(items: Iterable[TaskRecord], size: int) -> Iterator[list[TaskRecord]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _completion_row(project_id: int, task_id: int, completion: CompletionRecord, arrived_at: datetime) -> dict[str, Any]:
    submitted = completion.submitted_at is not None and not completion.cancelled
    return {
        "task_id": task_id,
        "project_id": project_id,
        "source_id": completion.source_id,
        "annotator": completion.annotator,
        "created_at": completion.created_at,
        "submitted_at": completion.submitted_at,
        "arrived_at": arrived_at if submitted else None,  # drafts and cancelled ones never count
        "ground_truth": completion.ground_truth,
        "review_status": completion.review_status,
        "cancelled": completion.cancelled,
        "spans": [[s.start, s.end, s.label] for s in completion.spans],
    }


def _count_arrivals(session: Session, project_id: int, arrived: int, arrived_at: datetime) -> None:
    """The poll's counters after an import: ``arrived`` more completions, all arrived at ``arrived_at``
    (one statement: the row lock orders it with a training recount, see ``_count_last_training``)."""
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


def _count_last_training(session: Session, project_id: int) -> None:
    """The poll's counters after a training starts or changes status: the latest training that did not
    fail, and the completions arrived by its as_of, counted afresh.

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


def _next_revision(session: Session, project: Project, xml: str, expected_revision: int, author: str, reason: str) -> None:
    """The compare-and-set: ``xml`` becomes revision ``expected_revision + 1`` unless another writer got there first."""
    changed = session.execute(
        update(Project)
        .where(Project.id == project.id, Project.config_revision == expected_revision)
        .values(labeling_config=xml, config_revision=expected_revision + 1)
    ).rowcount
    if changed != 1:
        raise ConfigConflictError(project.name, expected_revision)
    session.add(ConfigRevision(project_id=project.id, revision=expected_revision + 1, labeling_config=xml, author=author, reason=reason))


def _project(session: Session, name: str) -> Project:
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        raise UnknownProjectError(name)
    return project


def _settings(project: Project) -> ProjectSettings:
    return ProjectSettings(
        id=project.id,
        name=project.name,
        active_learning=project.active_learning,
        frequency=project.frequency,
        auto_deploy=project.auto_deploy,
        text_key=project.text_key,
        deployed_model=project.deployed_model,
        config_revision=project.config_revision,
        source=project.source,
        source_project_id=project.source_project_id,
    )


def _training_view(run: TrainingRun, project_name: str) -> TrainingView:
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
        metrics=run.metrics,
        error=run.error,
        source_annotations=run.source_annotations,
    )


def _check_frequency(frequency: int) -> None:
    if frequency not in FREQUENCIES:
        allowed = ", ".join(map(str, FREQUENCIES))
        raise ValueError(f"frequency must be one of {allowed} new completions, not {frequency}")


def _aware(value: datetime | str | None) -> datetime | None:
    """Scalar subqueries bypass the column type: SQLite hands back strings, PostgreSQL naive datetimes."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
