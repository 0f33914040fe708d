"""Projects and their active-learning settings: on or off, frequency, auto-deploy, the deployed model, who
hears about their trainings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from active_learning.naming import check_project_name, safe_name
from active_learning.store.base import Repository, find_project
from active_learning.store.configs import next_revision
from active_learning.store.models import DEFAULT_FREQUENCY, FREQUENCIES, SOURCE_STORE, SOURCES, ConfigRevision, Project

NOTIFY_EMAILS = "email"  # the key of a project's own recipients in its notifications


class SafeNameTakenError(ValueError):
    def __init__(self, name: str, safe: str, owner: str) -> None:
        super().__init__(
            f"project name {name!r} has the safe name {safe!r} of project {owner!r} (its MLflow models, run ids "
            "and folders are named by it): choose another name"
        )


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
    training_params: dict[str, Any] = field(default_factory=dict)
    notify_emails: tuple[str, ...] = ()  # told about its trainings besides the deployment's recipients


class Projects(Repository):
    def create(
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
        check_project_name(name)
        check_frequency(frequency)
        if source not in SOURCES or (source != SOURCE_STORE) != (source_project_id is not None):
            raise ValueError(f"source {source!r} with project id {source_project_id!r}: a project id goes with a source other than {SOURCE_STORE!r}")
        with self._session() as session:
            safe = safe_name(name)
            owner = session.scalar(select(Project.name).where(Project.safe_name == safe, Project.name != name))
            if owner is not None:  # uq_projects_safe_name would refuse it too, less clearly
                raise SafeNameTakenError(name, safe, owner)
            project = Project(
                name=name,
                safe_name=safe,
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
                ConfigRevision(project_id=project.id, revision=1, labeling_config=labeling_config, author=author, reason="project created")
            )
            return _settings(project)

    def get(self, name: str) -> ProjectSettings:
        with self._session() as session:
            return _settings(find_project(session, name))

    def exists(self, name: str) -> bool:
        with self._session() as session:
            return session.scalar(select(Project.id).where(Project.name == name)) is not None

    def connected(self, source: str, source_project_id: int) -> ProjectSettings | None:
        """The project connected to ``source``'s project ``source_project_id``, if one is."""
        with self._session() as session:
            project = session.scalar(select(Project).where(Project.source == source, Project.source_project_id == source_project_id))
            return None if project is None else _settings(project)

    def names(self) -> list[str]:
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
            project = find_project(session, name)
            if expected_revision is not None:
                next_revision(session, project, project.labeling_config, expected_revision, author, reason)
            if frequency is not None:
                check_frequency(frequency)
                project.frequency = frequency
            if active_learning is not None:
                project.active_learning = active_learning
            if auto_deploy is not None:
                project.auto_deploy = auto_deploy
            return _settings(project)

    def disconnect(self, name: str) -> ProjectSettings:
        """The project leaves its source: active learning off, the link gone (the source's project may be
        connected again); its history, models and config revisions stay, as a project of this store."""
        with self._session() as session:
            project = find_project(session, name)
            project.source, project.source_project_id, project.active_learning = SOURCE_STORE, None, False
            return _settings(project)

    def set_training_params(
        self, name: str, params: dict[str, Any], *, expected_revision: int | None = None, author: str, reason: str
    ) -> ProjectSettings:
        """Store the project's training parameters (checked by the caller: training/parameters.py). They
        decide what trains, so every change is a config revision (same labeling config; ``author``,
        ``reason``), onto ``expected_revision`` when a form names one, else onto the live one."""
        with self._session() as session:
            project = find_project(session, name)
            revision = project.config_revision if expected_revision is None else expected_revision
            next_revision(session, project, project.labeling_config, revision, author, reason)
            project.training_params = dict(params) or None
            return _settings(project)

    def set_notify_emails(self, name: str, emails: Sequence[str]) -> ProjectSettings:
        """Replace the addresses told about the project's trainings besides the deployment's (checked by the
        caller: notifications.py); none: the deployment's only."""
        with self._session() as session:
            project = find_project(session, name)
            notifications = dict(project.notifications or {}) | {NOTIFY_EMAILS: list(emails)}
            project.notifications = {key: value for key, value in notifications.items() if value} or None
            return _settings(project)

    def deployed_models(self) -> dict[str, str | None]:
        """Project name -> the model its config was last deployed with."""
        with self._session() as session:
            return dict(session.execute(select(Project.name, Project.deployed_model)).all())

    def set_deployed_model(self, name: str, model_name: str | None) -> None:
        with self._session() as session:
            find_project(session, name).deployed_model = model_name


def check_frequency(frequency: int) -> None:
    if frequency not in FREQUENCIES:
        allowed = ", ".join(map(str, FREQUENCIES))
        raise ValueError(f"frequency must be one of {allowed} new completions, not {frequency}")


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
        training_params=dict(project.training_params or {}),
        notify_emails=tuple((project.notifications or {}).get(NOTIFY_EMAILS, ())),
    )
