"""The annotation store: projects, tasks, completions, training history and labeling-config revisions.

One engine, one part per job, each call its own short transaction:

| part | job |
|---|---|
| ``store.projects`` | projects and their active-learning settings, the deployed model |
| ``store.completions`` | imports of tasks and completions, the training examples they give |
| ``store.trainings`` | the training history |
| ``store.configs`` | the live labeling config and its revisions (compare-and-set) |
| ``store.status`` | every project's status in one statement: the poll, the page and the CLI read it |
| ``store.predictions`` | pre-annotations per task and model, the tasks awaiting annotation |
| ``store.webhooks`` | Label Studio webhook deliveries acted on, each once |
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from active_learning.store.base import EPOCH, UnknownProjectError
from active_learning.store.completions import Completions, ImportResult
from active_learning.store.configs import ConfigConflictError, Configs, ConfigState, RevisionView
from active_learning.store.db import connect, create_schema
from active_learning.store.predictions import NewPrediction, Predictions, TaskText
from active_learning.store.projects import Projects, ProjectSettings, SafeNameTakenError
from active_learning.store.status import LastTraining, ProjectStatus, Statuses
from active_learning.store.trainings import Trainings, TrainingView
from active_learning.store.webhooks import Webhooks


class AnnotationStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        sessions = sessionmaker(engine, expire_on_commit=False)
        self.projects = Projects(engine, sessions)
        self.completions = Completions(engine, sessions)
        self.trainings = Trainings(engine, sessions)
        self.configs = Configs(engine, sessions)
        self.status = Statuses(engine, sessions)
        self.predictions = Predictions(engine, sessions)
        self.webhooks = Webhooks(engine, sessions)


__all__ = [
    "EPOCH",
    "AnnotationStore",
    "ConfigConflictError",
    "ConfigState",
    "ImportResult",
    "NewPrediction",
    "LastTraining",
    "ProjectSettings",
    "ProjectStatus",
    "RevisionView",
    "SafeNameTakenError",
    "TaskText",
    "TrainingView",
    "UnknownProjectError",
    "connect",
    "create_schema",
]
