"""Read queries behind the Active Learning page in Airflow's UI (no Airflow here).

The projects list is **two statements** whatever the number of projects, and no MLflow call:

1. every project with its settings, its submitted completions (total, and since its last training as a
   poll counts them: the latest training that did not fail, as of ``as_of``), and its latest training
   (any status), through correlated subqueries on the indexes ``(project_id, arrived_at)`` and
   ``(project_id, as_of)``;
2. the model names the training history registered, which stand in for MLflow's registry when the
   list checks each labeling config (the detail page checks against MLflow itself).

A labeling config is parsed once per (project, config revision) and process; the parse is cached.
The detail of one project may ask MLflow (its models), and tolerates MLflow being unreachable.
"""

from __future__ import annotations

import difflib
import functools
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, literal, select, type_coerce
from sqlalchemy.orm import aliased

from active_learning import naming
from active_learning.store.models import FREQUENCIES, Completion, Project, TrainingRun, UTCDateTime
from active_learning.store.repository import EPOCH, TrainingView

if TYPE_CHECKING:
    from active_learning.backends import Backends
    from active_learning.store.repository import AnnotationStore


@dataclass(frozen=True)
class ConfigIssue:
    """One problem of a labeling config, naming the label and the bad model where it is about one."""

    message: str
    label: str | None = None
    model: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class LastTraining:
    run_key: str
    source: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    model_name: str | None
    mlflow_run_id: str | None


@dataclass(frozen=True)
class ProjectRow:
    name: str
    active_learning: bool
    frequency: int
    auto_deploy: bool
    config_revision: int
    completions: int
    since_last_training: int
    deployed_model: str | None
    deployed_trained_at: datetime | None
    last_training: LastTraining | None
    problems: tuple[ConfigIssue, ...]

    @property
    def to_next_training(self) -> int:
        return max(self.frequency - self.since_last_training, 0)

    @property
    def due(self) -> bool:
        return self.active_learning and self.since_last_training >= self.frequency

    def as_dict(self) -> dict[str, Any]:
        last = self.last_training
        return {
            "name": self.name,
            "active_learning": self.active_learning,
            "frequency": self.frequency,
            "auto_deploy": self.auto_deploy,
            "config_revision": self.config_revision,
            "completions": self.completions,
            "since_last_training": self.since_last_training,
            "to_next_training": self.to_next_training,
            "due": self.due,
            "deployed_model": self.deployed_model,
            "deployed_trained_at": _iso(self.deployed_trained_at),
            "last_training": None if last is None else {
                "run_key": last.run_key,
                "source": last.source,
                "status": last.status,
                "started_at": _iso(last.started_at),
                "ended_at": _iso(last.ended_at),
                "model_name": last.model_name,
                "mlflow_run_id": last.mlflow_run_id,
            },
            "valid": not self.problems,
            "problems": [asdict(problem) for problem in self.problems],
        }


# -- the projects list -------------------------------------------------------------------------------


def overview_statement(as_of: datetime) -> Any:
    """Statement 1: one row per project (see the module's docstring)."""
    last_training_as_of = (
        select(func.max(TrainingRun.as_of))
        .where(TrainingRun.project_id == Project.id, TrainingRun.status != "failed", TrainingRun.as_of <= as_of)
        .correlate(Project)
        .scalar_subquery()
    )
    since_last = (
        select(func.count(Completion.id))
        .where(
            Completion.project_id == Project.id,
            Completion.arrived_at > func.coalesce(last_training_as_of, literal(EPOCH, TrainingRun.as_of.type)),
            Completion.arrived_at <= as_of,
        )
        .correlate(Project)
        .scalar_subquery()
    )
    total = (
        select(func.count(Completion.id))
        .where(Completion.project_id == Project.id, Completion.arrived_at.is_not(None))
        .correlate(Project)
        .scalar_subquery()
    )
    latest_id = (
        select(TrainingRun.id)
        .where(TrainingRun.project_id == Project.id)
        .order_by(TrainingRun.started_at.desc(), TrainingRun.id.desc())
        .limit(1)
        .correlate(Project)
        .scalar_subquery()
    )
    last = aliased(TrainingRun, name="last_training")
    return (
        select(
            Project.id,
            Project.name,
            Project.active_learning,
            Project.frequency,
            Project.auto_deploy,
            Project.config_revision,
            Project.labeling_config,
            Project.deployed_model,
            total.label("completions"),
            since_last.label("since_last_training"),
            last.run_key,
            last.source,
            last.status,
            type_coerce(last.started_at, UTCDateTime()).label("started_at"),
            type_coerce(last.ended_at, UTCDateTime()).label("ended_at"),
            last.model_name,
            last.mlflow_run_id,
        )
        .outerjoin(last, last.id == latest_id)
        .order_by(Project.name)
    )


def registered_models_statement() -> Any:
    """Statement 2: (project id, model name) of every model the history says was registered."""
    return select(TrainingRun.project_id, TrainingRun.model_name).where(
        TrainingRun.model_name.is_not(None), TrainingRun.model_version.is_not(None)
    )


def project_rows(
    store: AnnotationStore, as_of: datetime, *, pretrained: frozenset[str], name: str | None = None
) -> list[ProjectRow]:
    """Every project (or the one named) as the projects list shows it: two statements, no MLflow."""
    statement = overview_statement(as_of)
    if name is not None:
        statement = statement.where(Project.name == name)
    with store.engine.connect() as connection:
        rows = connection.execute(statement).all()
        models_by_project: dict[int, set[str]] = {}
        for project_id, model_name in connection.execute(registered_models_statement()):
            models_by_project.setdefault(project_id, set()).add(model_name)
    registered = frozenset(model for models in models_by_project.values() for model in models)
    return [_project_row(row, pretrained, registered, frozenset(models_by_project.get(row.id, ()))) for row in rows]


def _project_row(row: Any, pretrained: frozenset[str], registered: frozenset[str], own: frozenset[str]) -> ProjectRow:
    last = None
    if row.run_key is not None:
        last = LastTraining(row.run_key, row.source, row.status, row.started_at, row.ended_at, row.model_name,
                            row.mlflow_run_id)
    return ProjectRow(
        name=row.name,
        active_learning=bool(row.active_learning),
        frequency=row.frequency,
        auto_deploy=bool(row.auto_deploy),
        config_revision=row.config_revision,
        completions=row.completions,
        since_last_training=row.since_last_training,
        deployed_model=row.deployed_model,
        deployed_trained_at=model_trained_at(row.deployed_model),
        last_training=last,
        problems=config_issues(row.id, row.config_revision, row.labeling_config,
                               pretrained=pretrained, registered=registered, project_models=own),
    )


@functools.lru_cache(maxsize=100_000)
def model_trained_at(model_name: str | None) -> datetime | None:
    """A model of ours carries its training time (UTC, to the second) in its name; a pretrained one none."""
    parsed = naming.parse_model_name(model_name) if model_name else None
    return parsed[1] if parsed else None


# -- validation of labeling configs ------------------------------------------------------------------


@dataclass(frozen=True)
class _ParsedConfig:
    structure_ok: bool
    models: frozenset[str]  # every model attribute the config's NER labels name


_PARSED: OrderedDict[tuple[int, int], _ParsedConfig] = OrderedDict()
_PARSED_MAX = 20_000
_LOCK = threading.Lock()


def _parsed(project_id: int, revision: int, xml: str) -> _ParsedConfig:
    key = (project_id, revision)
    with _LOCK:
        if key in _PARSED:
            _PARSED.move_to_end(key)
            return _PARSED[key]
    from active_learning.labeling_config import LabelingConfigError, check_structure, list_labels

    try:
        parsed = _ParsedConfig(not check_structure(xml), frozenset(s.model for s in list_labels(xml) if s.model is not None))
    except LabelingConfigError:
        parsed = _ParsedConfig(False, frozenset())
    with _LOCK:
        _PARSED[key] = parsed
        while len(_PARSED) > _PARSED_MAX:
            _PARSED.popitem(last=False)
    return parsed


def config_issues(
    project_id: int,
    revision: int,
    xml: str,
    *,
    pretrained: frozenset[str],
    registered: frozenset[str],
    project_models: frozenset[str],
) -> tuple[ConfigIssue, ...]:
    """The config's problems, as ``validate-config --project`` reports them (the same function), but
    only computed in full when the cached parse shows there is one: a valid config costs a set lookup."""
    parsed = _parsed(project_id, revision, xml)
    if parsed.structure_ok and parsed.models <= (pretrained | project_models):
        return ()
    from active_learning.labeling_config import validate_config

    problems = validate_config(xml, pretrained=pretrained, registered=registered | project_models,
                               project_models=project_models)
    return tuple(issues_from(problems))


def issues_from(problems: list[Any]) -> list[ConfigIssue]:
    return [ConfigIssue(p.message, p.label, p.model, p.line) for p in problems]


# -- one project ------------------------------------------------------------------------------------

MLFLOW_TIMEOUT = 15.0
_MLFLOW_CALLS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="overview-mlflow")


def project_detail(backends: Backends, name: str, as_of: datetime) -> dict[str, Any]:
    """Everything the project page shows. Raises UnknownProjectError for an unknown project."""
    from active_learning.deploy.deployment import config_problems
    from active_learning.training.learning_curve import curve_rows

    store = backends.store
    settings = store.project(name)
    config = store.read_config(name)
    history = store.history(name)
    revisions = store.revisions(name)
    [row] = project_rows(store, as_of, pretrained=backends.pretrained, name=name)

    in_config = _parsed(settings.id, config.revision, config.xml).models
    models: list[dict[str, Any]] = []
    models_error = None
    validation_source = "mlflow"
    try:
        # An MLflow server that is down makes its client retry for minutes: the page does not wait that long.
        versions, problems = _MLFLOW_CALLS.submit(
            lambda: (backends.registry.project_models(name), config_problems(backends, name, config.xml))
        ).result(timeout=MLFLOW_TIMEOUT)
        by_model = {t.model_name: t for t in history if t.model_name}
        for info in reversed(versions):
            training = by_model.get(info.model_name)
            models.append({
                "model_name": info.model_name,
                "version": info.version,
                "trained_at": info.trained_at,
                "labels": list(info.labels),
                "aliases": list(info.aliases),
                "deployed": info.model_name == settings.deployed_model,  # the store's record of the last deploy
                "in_config": info.model_name in in_config,  # named by the live labeling config
                "mlflow_run_id": info.run_id,
                "registered_name": info.registered_name,
                "completions_used": training.completions_used if training else None,
                "metrics": training.metrics if training else None,
                "source": training.source if training else None,
            })
        issues = issues_from(problems)
    except Exception as error:  # MLflow down or misconfigured: the rest of the page still helps
        reason = f"no answer within {MLFLOW_TIMEOUT:.0f} s" if isinstance(error, TimeoutError) else str(error)
        models_error = f"{type(error).__name__}: {reason}"[:500]
        issues = list(row.problems)
        validation_source = "store"

    live = revisions[-1].revision if revisions else config.revision
    return {
        "project": row.as_dict() | {"frequencies": list(FREQUENCIES)},
        "validation": {"source": validation_source, "problems": [asdict(i) for i in issues]},
        "history": [training_dict(t) for t in reversed(history)],
        "models": models,
        "models_error": models_error,
        "revisions": [
            {"revision": r.revision, "created_at": _iso(r.created_at), "author": r.author, "reason": r.reason,
             "live": r.revision == live}
            for r in reversed(revisions)
        ],
        "learning_curve": curve_rows(history),
    }


def training_dict(training: TrainingView) -> dict[str, Any]:
    data = training.as_dict()
    ended = training.ended_at
    data["duration_seconds"] = (ended - training.started_at).total_seconds() if ended else None
    return data


def stored_comparison(history: list[TrainingView], candidate: str, deployed: str | None) -> dict[str, Any]:
    """Candidate vs deployed model from the scores each had on its own dev set when trained (no MLflow).

    ``gate.compare_with_deployed`` scores both on the same, current evaluation set instead: slower
    (loads both models), and what the deploy gate uses.
    """
    by_model = {t.model_name: t for t in history if t.model_name}

    def side(model: str | None) -> dict[str, Any] | None:
        if model is None:
            return None
        training = by_model.get(model)
        return {
            "model_name": model,
            "trained_at": _iso(model_trained_at(model)),
            "ours": training is not None,
            "completions_used": training.completions_used if training else None,
            "metrics": training.metrics if training else None,
        }

    return {"candidate": side(candidate), "deployed": side(deployed)}


def revision_diff(store: AnnotationStore, name: str, revision: int, against: int | None = None) -> dict[str, Any]:
    """Unified diff from revision ``against`` (default: the one before) to ``revision``."""
    revisions = {r.revision: r for r in store.revisions(name)}
    if revision not in revisions:
        raise LookupError(f"project {name!r} has no config revision {revision}")
    base = against if against is not None else max((r for r in revisions if r < revision), default=None)
    if base is not None and base not in revisions:
        raise LookupError(f"project {name!r} has no config revision {base}")
    old = revisions[base].labeling_config if base is not None else ""
    new = revisions[revision].labeling_config
    diff = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True),
        fromfile=f"revision {base}" if base is not None else "(none)", tofile=f"revision {revision}",
    )
    return {"revision": revision, "against": base, "diff": "".join(diff)}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
