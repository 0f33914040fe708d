"""Scoring a model on the completions of an export (e.g. a held-out dev set)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from active_learning.context import Context
from active_learning.dataset import TrainingExample, to_docs
from active_learning.deployment import DeployError
from active_learning.exports import read_export
from active_learning.selection import choose_completion


def evaluate_export(ctx: Context, model_name: str, tasks_path: Path) -> dict[str, Any]:
    info = ctx.registry.find_model(model_name)
    if info is None:
        raise DeployError(f"no registered model named {model_name!r}")
    return score_export(ctx.registry.load_model(info), tasks_path, labels=info.labels) | {"model": model_name}


def score_export(nlp: Any, tasks_path: Path, *, labels: tuple[str, ...]) -> dict[str, Any]:
    """Precision, recall and F1 of ``nlp`` on the export's chosen completions (spans of ``labels``)."""
    from active_learning.training import score_ner

    tasks, summary = read_export(tasks_path, allowed_labels=labels)
    examples = []
    for task in tasks:
        chosen = choose_completion(task.completions)
        if chosen is not None:
            examples.append(TrainingExample(task_id=task.source_id, text=task.text, spans=chosen.spans))
    docs, report = to_docs(nlp, examples)
    scores = score_ner(nlp, docs)
    return scores.as_dict() | {"tasks": len(docs), "export": summary.as_dict(), "conversion": report.as_dict()}
