"""Where a project's completions and live labeling config come from: our store, or a Label Studio server.

Each project has a *source* (``projects.source``). Both sources answer the same four questions:

- ``poll(as_of)``: the source's active-learning projects with their new completions (:class:`PollRow`);
- ``training_set(project, as_of, labels)``: one example per task, by the completion-selection policy;
- ``read_config(project)`` / ``write_config(...)``: the live labeling config, compare-and-set by revision.

Settings (active learning on/off, frequency, auto-deploy), training history and config revisions stay in
our store for both, keyed by the project's name (and, for Label Studio, its ``source_project_id``).

**Label Studio.** The poll costs one request per 100 active Label Studio projects (``GET /api/projects``
with ``ids=`` and ``include=total_annotations_number``), and none when no Label Studio project is
active. New completions = the live count minus the count the last training recorded. Training streams
the project's JSON export through the same reader (bad spans repaired, skipped and counted) and the same
selection policy as an import into our store. Label Studio keeps no arrival times, so its completions
are not copied into our store and not cut at ``as_of``: a training uses what the server has when it
reads it (``as_of`` still names the crossing and the run), and the count it records is the one read
*before* the export, so nothing that arrives meanwhile is ever missed by the next poll. A deploy
validates locally first, then writes our revision and PATCHes Label Studio in one store transaction: a
config Label Studio refuses (400) leaves both as they were.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from active_learning.selection import TrainingExample, training_example
from active_learning.sources.label_studio_client import (
    DEFAULT_CONN_ID,
    LabelStudioClient,
    LabelStudioConnection,
    LabelStudioError,
    connection_from_env,
)
from active_learning.store.models import SOURCE_LABEL_STUDIO, SOURCE_STORE
from active_learning.store.repository import AnnotationStore, ConfigState, PollRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSet:
    examples: list[TrainingExample]
    export: dict[str, Any] | None = None  # what reading the source's export counted, skipped and repaired


class CompletionSource(Protocol):
    kind: str

    def poll(self, as_of: datetime, *, due_only: bool = False) -> list[PollRow]: ...

    def training_set(self, project: str, as_of: datetime, labels: set[str]) -> TrainingSet: ...

    def read_config(self, project: str) -> ConfigState: ...

    def training_count(self, project: str) -> int | None: ...

    def write_config(self, project: str, xml: str, *, expected_revision: int, author: str, reason: str) -> ConfigState: ...


class StoreSource:
    """Our SQL store: completions imported from exports, counted by arrival time."""

    kind = SOURCE_STORE

    def __init__(self, store: AnnotationStore) -> None:
        self.store = store

    def poll(self, as_of: datetime, *, due_only: bool = False) -> list[PollRow]:
        return self.store.poll(as_of, due_only=due_only)

    def training_set(self, project: str, as_of: datetime, labels: set[str]) -> TrainingSet:
        """The completions as of ``as_of``; ``labels`` are the caller's to apply: the import already read them."""
        return TrainingSet(self.store.training_examples(project, as_of))

    def read_config(self, project: str) -> ConfigState:
        return self.store.read_config(project)

    def training_count(self, project: str) -> int | None:
        """None: our store counts by arrival time, a training need not record a count."""
        return None

    def write_config(self, project: str, xml: str, *, expected_revision: int, author: str, reason: str) -> ConfigState:
        return self.store.write_config(project, xml, expected_revision=expected_revision, author=author, reason=reason)


class LabelStudioSource:
    """Projects that live in Label Studio (see the module's docstring)."""

    kind = SOURCE_LABEL_STUDIO

    def __init__(
        self,
        store: AnnotationStore,
        connection_lookup: Callable[[str], LabelStudioConnection] = connection_from_env,
        conn_id: str = DEFAULT_CONN_ID,
    ) -> None:
        self.store = store
        self._lookup = connection_lookup
        self.conn_id = conn_id
        self._client: LabelStudioClient | None = None

    @property
    def client(self) -> LabelStudioClient:
        """Resolved on first use: a poll with no active Label Studio project needs no connection."""
        if self._client is None:
            self._client = LabelStudioClient(self._lookup(self.conn_id))
        return self._client

    def poll(self, as_of: datetime, *, due_only: bool = False) -> list[PollRow]:
        states = self.store.source_poll_states(SOURCE_LABEL_STUDIO)
        if not states:
            return []
        counts = self.client.annotation_counts(state.source_project_id for state in states)
        rows = []
        for state in states:
            if state.source_project_id not in counts:
                log.warning("Label Studio has no project %s (project %r): skipped", state.source_project_id, state.project)
                continue
            new = max(counts[state.source_project_id] - state.last_training_count, 0)
            rows.append(PollRow(state.project, state.frequency, state.auto_deploy, state.last_training_as_of, new))
        return [row for row in rows if row.due] if due_only else rows

    def training_count(self, project: str) -> int:
        """The live annotation count, recorded with the training that is about to read the export."""
        return int(self.client.project(self._id(project)).get("total_annotations_number") or 0)

    def training_set(self, project: str, as_of: datetime, labels: set[str]) -> TrainingSet:
        """Stream the export and read it as an import would (spans of labels outside ``labels``, the live
        config's, skipped and counted), then choose one completion per task (no ``as_of`` cut)."""
        from active_learning.exports import read_export

        settings = self.store.project(project)
        tasks, summary = read_export(
            self.client.export_tasks(self._id(project)), text_key=settings.text_key, allowed_labels=labels
        )
        export = summary.as_dict()
        log.info("Label Studio project %s export: %s", settings.source_project_id, export)
        examples = (training_example(task.source_id, task.text, task.completions, test=task.test) for task in tasks)
        return TrainingSet([example for example in examples if example is not None], export=export)

    def read_config(self, project: str) -> ConfigState:
        """Label Studio's live config, with our revision number (the compare-and-set runs in our store)."""
        revision = self.store.project(project).config_revision
        return ConfigState(self.client.project(self._id(project))["label_config"], revision)

    def write_config(self, project: str, xml: str, *, expected_revision: int, author: str, reason: str) -> ConfigState:
        project_id = self._id(project)
        return self.store.write_config(
            project, xml, expected_revision=expected_revision, author=author, reason=reason,
            publish=lambda text: self.client.set_label_config(project_id, text),
        )

    def _id(self, project: str) -> int:
        settings = self.store.project(project)
        if settings.source != SOURCE_LABEL_STUDIO or settings.source_project_id is None:
            raise ValueError(f"project {project!r} does not live in Label Studio")
        return settings.source_project_id


class Sources:
    """Every project's source, chosen per project; the poll asks each source once."""

    def __init__(self, store: AnnotationStore, connection_lookup: Callable[[str], LabelStudioConnection] | None = None) -> None:
        self.store = StoreSource(store)
        self.label_studio = LabelStudioSource(store, connection_lookup or connection_from_env)
        self.errors: list[LabelStudioError] = []  # of the last poll

    def for_project(self, project: str) -> CompletionSource:
        return self.label_studio if self.store.store.project(project).source == SOURCE_LABEL_STUDIO else self.store

    def poll(self, as_of: datetime, *, due_only: bool = False) -> list[PollRow]:
        """Every source's rows (``due_only``: only the due ones, what the sensor asks). A source that fails (Label Studio down, a refused token) is logged and left
        in ``errors``: the others' projects still train; the sensor fails visibly when nothing else is due."""
        self.errors = []
        rows = []
        for source in (self.store, self.label_studio):
            try:
                rows.extend(source.poll(as_of, due_only=due_only))
            except LabelStudioError as error:
                log.error("the poll of %s failed: %s", source.kind, error)
                self.errors.append(error)
        return sorted(rows, key=lambda row: row.project)
