"""A task file with pre-annotations, for Annotation Lab or Label Studio to import.

Every task awaiting annotation, with its data and, where the deployed model pre-annotated it, that
prediction: ``predictions: [{model_version, score, result}]``, the result items in the schema both tools'
exports use. Label Studio imports such a file as pre-annotated tasks; Annotation Lab's export format adds
``completions: []`` and names the prediction's author and time as its exports do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from active_learning.preannotation.run import NoDeployedModelError
from active_learning.store.models import SOURCE_STORE, utcnow

if TYPE_CHECKING:
    from active_learning.backends import Backends

ANNOTATION_LAB, LABEL_STUDIO = "annotation-lab", "label-studio"
FORMATS = (ANNOTATION_LAB, LABEL_STUDIO)


def export_predictions(backends: Backends, project: str, out: Path, *, export_format: str) -> int:
    """Write the task file; returns how many tasks it holds."""
    if export_format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {export_format!r}")
    settings = backends.store.projects.get(project)
    if settings.source != SOURCE_STORE:
        raise ValueError(f"project {project!r} lives in Label Studio: its pre-annotations are sent there by `preannotate`")
    model = settings.deployed_model
    if model is None:
        raise NoDeployedModelError(project)
    predictions = backends.store.predictions.of_model(project, model)
    tasks = list(_tasks(backends, project, settings.text_key, model, predictions, export_format))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(json.dumps(tasks, ensure_ascii=False, indent=1), encoding="utf-8")
    partial.replace(out)  # never a half-written file under the name asked for
    return len(tasks)


def _tasks(
    backends: Backends, project: str, text_key: str, model: str,
    predictions: dict[str, tuple[float, list[dict[str, Any]]]], export_format: str,
) -> Iterator[dict[str, Any]]:
    created = utcnow().isoformat(timespec="seconds").replace("+00:00", "Z")
    for page in backends.store.predictions.unannotated_pages(project):
        for task in page:
            data = {text_key: task.text} | ({"title": task.title} if task.title else {})
            predicted = predictions.get(task.task_id)
            entries = [] if predicted is None else [{"model_version": model, "score": predicted[0], "result": predicted[1]}]
            if export_format == ANNOTATION_LAB:
                for entry in entries:
                    entry |= {"created_username": model, "created_ago": created}
                yield {"id": _task_id(task.task_id), "data": data, "completions": [], "predictions": entries}
            else:
                yield {"data": data, "predictions": entries}


def _task_id(task_id: str) -> int | str:
    return int(task_id) if task_id.isdigit() else task_id
