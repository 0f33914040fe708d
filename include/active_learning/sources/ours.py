"""Our SQL store as a completion source: completions imported from exports, counted by arrival time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from active_learning.sources.base import TrainingSet
from active_learning.store import AnnotationStore, ConfigState, ProjectStatus, TaskText
from active_learning.store.models import SOURCE_STORE


class StoreSource:
    kind = SOURCE_STORE

    def __init__(self, store: AnnotationStore) -> None:
        self.store = store

    def poll(self, as_of: datetime, *, due_only: bool = False) -> list[ProjectStatus]:
        return self.store.status.poll(as_of, due_only=due_only)

    def training_set(self, project: str, as_of: datetime, labels: set[str]) -> TrainingSet:
        """The completions as of ``as_of``; ``labels`` are the caller's to apply: the import already read them."""
        return TrainingSet(self.store.completions.training_examples(project, as_of))

    def read_config(self, project: str) -> ConfigState:
        return self.store.configs.read(project)

    def training_count(self, project: str) -> int | None:
        """None: our store counts by arrival time, a training need not record a count."""
        return None

    def write_config(self, project: str, xml: str, *, expected_revision: int, author: str, reason: str) -> ConfigState:
        return self.store.configs.write(project, xml, expected_revision=expected_revision, author=author, reason=reason)

    def unannotated_ids(self, project: str) -> list[str]:
        return self.store.predictions.unannotated_ids(project)

    def texts(self, project: str, task_ids: Iterable[str]) -> dict[str, str]:
        return self.store.predictions.texts(project, task_ids)

    def annotated_texts(self, project: str) -> list[str]:
        return self.store.predictions.annotated_texts(project)

    def tasks_to_preannotate(self, project: str, model: str, *, page_size: int) -> Iterator[list[TaskText]]:
        return self.store.predictions.unannotated_pages(project, model=model, page_size=page_size)

    def publish_predictions(self, project: str, model: str) -> int:
        """Nothing to send: annotators take our pre-annotations from ``export-predictions``."""
        return 0
