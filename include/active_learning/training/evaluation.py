"""Scoring a model on the completions of an export (e.g. a held-out dev set)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from active_learning.backends import Backends
from active_learning.exports import read_export
from active_learning.selection import training_example
from active_learning.training.dataset import to_docs


def evaluate_export(backends: Backends, model_name: str, tasks_path: Path, *, scored: bool = False) -> dict[str, Any]:
    """``scored``: the model the gate scores for it (a refit's split-trained twin), else the model itself."""
    info = backends.model(model_name)
    if info is None:
        raise LookupError(f"no model named {model_name!r} was registered by a training of this loop")
    nlp = backends.registry.load_model(info, scored=scored)
    return score_export(nlp, tasks_path, labels=backends.registry.labels(info)) | {"model": model_name, "gate_model": scored and info.gate_model_uri is not None}


def score_export(nlp: Any, tasks_path: Path, *, labels: tuple[str, ...]) -> dict[str, Any]:
    """Precision, recall and F1 of ``nlp`` on the export's chosen completions (spans of ``labels``)."""
    from active_learning.training.spacy_ner import score_ner

    tasks, summary = read_export(tasks_path, allowed_labels=labels)
    chosen = (training_example(task.source_id, task.text, task.completions) for task in tasks)
    docs, report = to_docs(nlp, [example for example in chosen if example is not None])
    scores = score_ner(nlp, docs)
    return scores.as_dict() | {"tasks": len(docs), "export": summary.as_dict(), "conversion": report.as_dict()}
