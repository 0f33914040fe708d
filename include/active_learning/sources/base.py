"""What every completion source answers (see :mod:`active_learning.sources`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from active_learning.selection import TrainingExample
from active_learning.store import ConfigState, ProjectStatus, TaskText


@dataclass(frozen=True)
class TrainingSet:
    examples: list[TrainingExample]
    export: dict[str, Any] | None = None  # what reading the source's export counted, skipped and repaired


class CompletionSource(Protocol):
    kind: str

    def poll(self, as_of: datetime, *, due_only: bool = False) -> list[ProjectStatus]: ...

    def training_set(self, project: str, as_of: datetime, labels: set[str]) -> TrainingSet: ...

    def read_config(self, project: str) -> ConfigState: ...

    def training_count(self, project: str) -> int | None: ...

    def write_config(self, project: str, xml: str, *, expected_revision: int, author: str, reason: str) -> ConfigState: ...

    def unannotated_ids(self, project: str) -> list[str]: ...

    def texts(self, project: str, task_ids: Iterable[str]) -> dict[str, str]: ...

    def annotated_texts(self, project: str) -> list[str]: ...

    def tasks_to_preannotate(self, project: str, model: str, *, page_size: int) -> Iterator[list[TaskText]]: ...

    def publish_predictions(self, project: str, model: str) -> int: ...
