"""Projects that live in a Label Studio server, as a completion source.

The poll costs one request per 100 active Label Studio projects (``GET /api/projects`` with ``ids=`` and
``include=total_annotations_number``), and none when no Label Studio project is active. New completions =
the live count minus the count the last training recorded. Training streams the project's JSON export
through the same reader (bad spans repaired, skipped and counted) and the same selection policy as an
import into our store. Label Studio keeps no arrival times, so its completions are not copied into our
store and not cut at ``as_of``: a training uses what the server has when it reads it (``as_of`` still
names the crossing and the run), and the count it records is the one read *before* the export, so
nothing that arrives meanwhile is ever missed by the next poll. A deploy validates locally first, then
writes our revision and PATCHes Label Studio in one store transaction: a config Label Studio refuses
(400) leaves both as they were.

Pre-annotation reads the tasks awaiting annotation (``total_annotations`` = 0: no submitted, non-cancelled
annotation) from ``GET /api/tasks/``, filtered by Label Studio, and sends the deployed model's predictions
to ``POST /api/projects/{id}/import/predictions``, each prediction once, then PATCHes the project's
``model_version`` (which predictions annotators see).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

from active_learning.selection import training_example
from active_learning.sources.base import TrainingSet
from active_learning.sources.label_studio_client import (
    DEFAULT_CONN_ID,
    LabelStudioClient,
    LabelStudioConnection,
    LabelStudioValidationError,
    connection_from_env,
)
from active_learning.store import AnnotationStore, ConfigState, ProjectStatus, TaskText
from active_learning.store.models import SOURCE_LABEL_STUDIO

log = logging.getLogger(__name__)
PUSH_BATCH = 100


class LabelStudioSource:
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

    def poll(self, as_of: datetime, *, due_only: bool = False) -> list[ProjectStatus]:
        rows = self.counted(self.store.status.of_source(SOURCE_LABEL_STUDIO))
        return [row for row in rows if row.due] if due_only else rows

    def counted(self, rows: list[ProjectStatus]) -> list[ProjectStatus]:
        """``rows`` (Label Studio projects) with the server's live counts, one request per 100 projects;
        a project the server does not know is left out, with a warning."""
        if not rows:
            return []
        counts = self.client.annotation_counts(row.source_project_id for row in rows if row.source_project_id is not None)
        counted = []
        for row in rows:
            if row.source_project_id not in counts:
                log.warning("Label Studio has no project %s (project %r): skipped", row.source_project_id, row.name)
                continue
            live = counts[row.source_project_id]
            counted.append(replace(row, completions=live, since_last_training=max(live - row.last_training_count, 0)))
        return counted

    def training_count(self, project: str) -> int:
        """The live annotation count, recorded with the training that is about to read the export."""
        return int(self.client.project(self._id(project)).get("total_annotations_number") or 0)

    def training_set(self, project: str, as_of: datetime, labels: set[str]) -> TrainingSet:
        """Stream the export and read it as an import would (spans of labels outside ``labels``, the live
        config's, skipped and counted), then choose one completion per task (no ``as_of`` cut)."""
        from active_learning.exports import read_export

        settings = self.store.projects.get(project)
        tasks, summary = read_export(
            self.client.export_tasks(self._id(project)), text_key=settings.text_key, allowed_labels=labels
        )
        export = summary.as_dict()
        log.info("Label Studio project %s export: %s", settings.source_project_id, export)
        examples = (training_example(task.source_id, task.text, task.completions, test=task.test) for task in tasks)
        return TrainingSet([example for example in examples if example is not None], export=export)

    def read_config(self, project: str) -> ConfigState:
        """Label Studio's live config, with our revision number (the compare-and-set runs in our store)."""
        revision = self.store.projects.get(project).config_revision
        return ConfigState(self.client.project(self._id(project))["label_config"], revision)

    def write_config(self, project: str, xml: str, *, expected_revision: int, author: str, reason: str) -> ConfigState:
        project_id = self._id(project)
        return self.store.configs.write(
            project, xml, expected_revision=expected_revision, author=author, reason=reason,
            publish=lambda text: self.client.set_label_config(project_id, text),
        )

    def unannotated_ids(self, project: str) -> list[str]:
        return [task.task_id for task in self._awaiting_annotation(project)]

    def texts(self, project: str, task_ids: Iterable[str]) -> dict[str, str]:
        text_key = self.store.projects.get(project).text_key
        among = [int(task) for task in task_ids]
        return {str(task["id"]): _text(task, text_key) for task in self.client.tasks(self._id(project), among=among)}

    def annotated_texts(self, project: str) -> list[str]:
        text_key = self.store.projects.get(project).text_key
        return [_text(task, text_key) for task in self.client.tasks(self._id(project)) if task.get("total_annotations")]

    def tasks_to_preannotate(self, project: str, model: str, *, page_size: int) -> Iterator[list[TaskText]]:
        """The tasks with no submitted annotation that ``model`` has not pre-annotated, a page at a time."""
        done = self.store.predictions.scores(project, model)
        page: list[TaskText] = []
        for task in self._awaiting_annotation(project):
            if task.task_id not in done:
                page.append(task)
            if len(page) == page_size:
                yield page
                page = []
        if page:
            yield page

    def publish_predictions(self, project: str, model: str) -> int:
        """Send the model's predictions not sent yet, 100 a request, each batch marked sent once Label Studio
        took it; then make the model's predictions the ones annotators see (the project's model_version).

        A prediction is never sent twice. Sending is not retried (:meth:`LabelStudioClient.import_predictions`),
        so a batch whose answer was lost may be in Label Studio though not marked sent here: when Label Studio
        already holds predictions of the model, each batch is first checked against it, and the tasks that
        have one are marked sent instead. A model whose predictions all went earlier (a rollback) sends
        nothing and only becomes the project's model_version again. A task deleted in Label Studio meanwhile
        (Label Studio then refuses its whole batch) has its prediction dropped. Returns how many were sent.
        """
        project_id = self._id(project)
        held = self.client.model_versions(project_id).get(model, 0)
        sent = 0
        while batch := self.store.predictions.unpushed(project, model, limit=PUSH_BATCH):
            ids = {int(p.task_id) for p in batch}
            present = self._already_there(project, project_id, model, ids) if held else set()
            payload = [{"task": int(p.task_id), "result": p.result, "score": p.score, "model_version": model}
                       for p in batch if int(p.task_id) not in present]
            if payload:
                try:
                    self.client.import_predictions(project_id, payload)
                except LabelStudioValidationError:
                    gone = self._deleted(project, project_id, ids)
                    if not gone:
                        raise
                    self.store.predictions.mark_pushed(project, model, [p.task_id for p in batch if int(p.task_id) in gone])
                    continue  # the batch again, without them
                sent += len(payload)
            self.store.predictions.mark_pushed(project, model, [p.task_id for p in batch])
        if sent or held:
            self.client.set_model_version(project_id, model)
        else:  # Label Studio refuses a model_version it holds no prediction of (no task awaited annotation)
            log.info("Label Studio project %s holds no prediction of %s: its model_version is left as it is", project_id, model)
        return sent

    def _already_there(self, project: str, project_id: int, model: str, ids: set[int]) -> set[int]:
        """Those of ``ids`` Label Studio holds a prediction of ``model`` for (sent by an attempt whose answer was lost)."""
        present = {int(task["id"]) for task in self.client.tasks(project_id, among=ids, predicted_by=model)}
        if present:
            log.warning("Label Studio project %s already holds %s's predictions of %d tasks (%s): not sent again",
                        project_id, model, len(present), project)
        return present

    def _deleted(self, project: str, project_id: int, ids: set[int]) -> set[int]:
        """Those of ``ids`` Label Studio no longer has: it refuses (400) a batch that names one."""
        gone = ids - {int(task["id"]) for task in self.client.tasks(project_id, among=ids)}
        if gone:
            log.warning("Label Studio project %s (%s) no longer has tasks %s: their predictions are dropped",
                        project_id, project, sorted(gone))
        return gone

    def _awaiting_annotation(self, project: str) -> Iterator[TaskText]:
        text_key = self.store.projects.get(project).text_key
        for task in self.client.tasks(self._id(project), awaiting_annotation=True):
            yield TaskText(int(task["id"]), str(task["id"]), _text(task, text_key), (task.get("data") or {}).get("title"))

    def _id(self, project: str) -> int:
        settings = self.store.projects.get(project)
        if settings.source != SOURCE_LABEL_STUDIO or settings.source_project_id is None:
            raise ValueError(f"project {project!r} does not live in Label Studio")
        return settings.source_project_id


def _text(task: dict[str, Any], text_key: str) -> str:
    """The text a Label Studio task holds under the labeling config's ``<Text value="$key">``."""
    return str((task.get("data") or {}).get(text_key) or "")
