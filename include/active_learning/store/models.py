"""SQLAlchemy 2.x models of the annotation store (SQLite by default, PostgreSQL as well)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Float,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine.interfaces import ExecutionContext
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from active_learning.naming import safe_name
from active_learning.preannotation.strategies import MARGIN

FREQUENCIES = (50, 100, 200)
DEFAULT_FREQUENCY = 50
#: Where a project's tasks, completions and live labeling config are: our store or a Label Studio server.
SOURCE_STORE = "store"
SOURCE_LABEL_STUDIO = "label_studio"
SOURCES = (SOURCE_STORE, SOURCE_LABEL_STUDIO)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, hands back aware UTC: SQLite keeps no zone, and mixed zones would break ordering."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware time")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _safe_name_of_row(context: ExecutionContext) -> str:
    return safe_name(context.get_current_parameters()["name"])


class Base(DeclarativeBase):
    pass


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (
        CheckConstraint(f"frequency IN {FREQUENCIES}", name="ck_projects_frequency"),
        Index("ix_projects_active_learning", "active_learning"),
        UniqueConstraint("source", "source_project_id", name="uq_projects_source_project"),
        # MLflow names, run ids and folders are made of it: two projects sharing it would share models.
        UniqueConstraint("safe_name", name="uq_projects_safe_name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Free-text columns are Text: PostgreSQL enforces a String's length, and a longer value failed the write.
    name: Mapped[str] = mapped_column(Text, unique=True)
    safe_name: Mapped[str] = mapped_column(Text, default=_safe_name_of_row)  # naming.safe_name(name)
    labeling_config: Mapped[str] = mapped_column(Text)
    config_revision: Mapped[int] = mapped_column(Integer, default=1)
    text_key: Mapped[str] = mapped_column(Text, default="text")
    active_learning: Mapped[bool] = mapped_column(default=False)
    frequency: Mapped[int] = mapped_column(Integer, default=DEFAULT_FREQUENCY)
    auto_deploy: Mapped[bool] = mapped_column(default=False)
    deployed_model: Mapped[str | None] = mapped_column(Text)
    # The deployed model whose pre-annotation was last announced (see store.predictions.announce).
    announced_model: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # "store": tasks, completions and the live config are ours. "label_studio": they live in Label Studio
    # project ``source_project_id``; settings, training history and config revisions stay here.
    source: Mapped[str] = mapped_column(String(20), default=SOURCE_STORE, server_default=SOURCE_STORE)
    source_project_id: Mapped[int | None] = mapped_column(Integer)
    # The poll's counters, kept in the same transaction as every import and every training change:
    # submitted completions so far and the latest arrival; the latest training that did not fail and how
    # many completions had arrived by its as_of. New completions are a subtraction, not an index walk.
    arrived_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_arrived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_training_as_of: Mapped[datetime | None] = mapped_column(UTCDateTime)
    arrived_by_last_training: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Training parameters set for this project (training/parameters.py checks them); none: the defaults.
    training_params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Who hears about this project's trainings besides the deployment's defaults; none: the defaults only.
    notifications: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))  # None: SQL NULL

    tasks: Mapped[list[Task]] = relationship(back_populates="project", cascade="all, delete-orphan")


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("project_id", "source_id", name="uq_tasks_source"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    source_id: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    # Tagged "test" in the export: in the project's fixed evaluation set, never trained on.
    test: Mapped[bool] = mapped_column(default=False, server_default=false())

    project: Mapped[Project] = relationship(back_populates="tasks")
    completions: Mapped[list[Completion]] = relationship(back_populates="task", cascade="all, delete-orphan")


class Completion(Base):
    """One annotator's annotation of a task.

    ``arrived_at`` is when a *submitted* completion reached the store (NULL for drafts and cancelled
    ones). The trigger counts by it, so a poll "as of T" sees exactly what the store knew at T, and a
    backfill replays what live polls saw, even for exports imported long after they were annotated.
    """

    __tablename__ = "completions"
    __table_args__ = (
        UniqueConstraint("task_id", "source_id", name="uq_completions_source"),
        # The poll counts a range of this index per project: its cost follows new completions, not history.
        Index("ix_completions_project_arrived", "project_id", "arrived_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    source_id: Mapped[str] = mapped_column(Text)
    annotator: Mapped[str] = mapped_column(Text, default="unknown")
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    arrived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ground_truth: Mapped[bool] = mapped_column(default=False)
    review_status: Mapped[str | None] = mapped_column(String(20))
    cancelled: Mapped[bool] = mapped_column(default=False)
    spans: Mapped[list[list[Any]]] = mapped_column(JSON, default=list)

    task: Mapped[Task] = relationship(back_populates="completions")


class TrainingRun(Base):
    """One training of a project's model: the history shown to people and the trigger's memory."""

    __tablename__ = "training_runs"
    __table_args__ = (Index("ix_training_runs_project_as_of", "project_id", "as_of"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    run_key: Mapped[str] = mapped_column(Text, unique=True)
    source: Mapped[str] = mapped_column(String(20))  # "active_learning" | "manual"
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20), default="running")  # running | success | failed
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completions_used: Mapped[int | None] = mapped_column(Integer)
    dataset_digest: Mapped[str | None] = mapped_column(String(64))
    model_name: Mapped[str | None] = mapped_column(Text, unique=True)
    model_version: Mapped[int | None] = mapped_column(Integer)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    deploy: Mapped[str | None] = mapped_column(Text)  # what the deploy branch did and why
    # deploy/steps.py: deployed | registered only | refused by the deploy gate; NULL until decided
    outcome: Mapped[str | None] = mapped_column(String(32))
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    # Label Studio projects: the server's annotation count when this training read it; the poll counts
    # new completions as the live count minus this (Label Studio keeps no arrival times to count by).
    source_annotations: Mapped[int | None] = mapped_column(Integer)
    # While it trains: step, epoch, losses, best dev F1 so far, times (written at each spaCy evaluation).
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))  # None: SQL NULL
    # Where the training started (training/base_model.py): the base's name, version and files' hash; NULL: from scratch.
    base_model: Mapped[str | None] = mapped_column(Text)


class ConfigRevision(Base):
    """Every labeling config a project ever had; the highest revision is the live one."""

    __tablename__ = "config_revisions"
    __table_args__ = (UniqueConstraint("project_id", "revision", name="uq_config_revisions_revision"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    revision: Mapped[int] = mapped_column(Integer)
    labeling_config: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    author: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)


class Prediction(Base):
    """A model's pre-annotation of one task: its spans as result items and its confidence in [0, 1].

    ``task_source_id`` names the task as the user knows it (the export's id, or Label Studio's task id),
    so predictions of both sources live here; ``pushed_at``: sent to Label Studio.
    """

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("project_id", "task_source_id", "model_name", name="uq_predictions_task_model"),
        # The queue: a project's tasks by the deployed model's confidence, least confident first.
        Index("ix_predictions_project_model_score", "project_id", "model_name", "score"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    task_source_id: Mapped[str] = mapped_column(Text)
    model_name: Mapped[str] = mapped_column(Text)
    score: Mapped[float] = mapped_column(Float)
    # Which scorer gave the score (preannotation/scoring.py): the model's queue.strategy's.
    scorer: Mapped[str] = mapped_column(Text, server_default=MARGIN)
    result: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    pushed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """A Label Studio webhook delivery this loop acted on, by the key of what it announced (its action and
    the annotations' ids and update times): the same delivery twice is acted on once
    (:mod:`active_learning.webhooks`). Kept a day: Label Studio sends each event once and never retries."""

    __tablename__ = "webhook_deliveries"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
