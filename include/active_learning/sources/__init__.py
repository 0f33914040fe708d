"""Where a project's completions and live labeling config come from: our store, or a Label Studio server.

Each project has a *source* (``projects.source``). Both sources answer the same questions
(:class:`CompletionSource`): their active-learning projects' status with new completions, one training
example per task by the completion-selection policy, and the live labeling config (compare-and-set by
revision). Settings, training history and config revisions stay in our store for both, keyed by the
project's name (and, for Label Studio, its ``source_project_id``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from active_learning.sources.base import CompletionSource, TrainingSet
from active_learning.sources.label_studio import LabelStudioSource
from active_learning.sources.label_studio_client import LabelStudioConnection, LabelStudioError, connection_from_env
from active_learning.sources.ours import StoreSource
from active_learning.store import AnnotationStore, ProjectStatus
from active_learning.store.models import SOURCE_LABEL_STUDIO

log = logging.getLogger(__name__)

__all__ = ["CompletionSource", "LabelStudioSource", "Sources", "StoreSource", "TrainingSet"]


class Sources:
    """Every project's source, chosen per project; the poll asks each source once."""

    def __init__(self, store: AnnotationStore, connection_lookup: Callable[[str], LabelStudioConnection] | None = None) -> None:
        self.store = StoreSource(store)
        self.label_studio = LabelStudioSource(store, connection_lookup or connection_from_env)
        self.errors: list[LabelStudioError] = []  # of the last poll

    def for_project(self, project: str) -> CompletionSource:
        return self.label_studio if self.store.store.projects.get(project).source == SOURCE_LABEL_STUDIO else self.store

    def poll(self, as_of: datetime, *, due_only: bool = False) -> list[ProjectStatus]:
        """Every source's active-learning projects (``due_only``: only the due ones, what the sensor asks).
        A source that fails (Label Studio down, a refused token) is logged and left in ``errors``: the
        others' projects still train; the sensor fails visibly when nothing else is due."""
        self.errors = []
        rows = []
        for source in (self.store, self.label_studio):
            try:
                rows.extend(source.poll(as_of, due_only=due_only))
            except LabelStudioError as error:
                log.error("the poll of %s failed: %s", source.kind, error)
                self.errors.append(error)
        return sorted(rows, key=lambda row: row.name)

    def with_live_counts(self, rows: list[ProjectStatus]) -> list[ProjectStatus]:
        """``rows`` with Label Studio's live counts for its projects (for people: a Label Studio that does not
        answer is logged and left in ``errors``, and its projects' counts stay empty)."""
        self.errors = []
        theirs = [row for row in rows if row.source == SOURCE_LABEL_STUDIO]
        if not theirs:
            return rows
        try:
            counted = {row.name: row for row in self.label_studio.counted(theirs)}
        except LabelStudioError as error:
            log.warning("Label Studio's counts could not be read: %s", error)
            self.errors.append(error)
            return rows
        return [counted.get(row.name, row) for row in rows]
