"""The annotation queue: which tasks to annotate next.

| strategy | order |
|---|---|
| ``uncertainty`` (default) | least confident first, by the deployed model's scores; tasks it has not pre-annotated yet follow, in the source's order |
| ``random`` | shuffled, the same order for the same project and seed |
| ``sequential`` | the source's order (the order of the exports, or Label Studio's task ids) |
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from active_learning import naming
from active_learning.preannotation.run import NoDeployedModelError
from active_learning.store.models import SOURCE_STORE

if TYPE_CHECKING:
    from active_learning.backends import Backends

UNCERTAINTY, RANDOM, SEQUENTIAL = "uncertainty", "random", "sequential"
STRATEGIES = (UNCERTAINTY, RANDOM, SEQUENTIAL)


@dataclass(frozen=True)
class QueueEntry:
    task: str  # the task's id as the user knows it
    score: float | None  # the model's confidence, None where it has not pre-annotated the task
    model: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def next_tasks(backends: Backends, project: str, *, n: int = 50, strategy: str = UNCERTAINTY, seed: int = 0) -> list[QueueEntry]:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    waiting = backends.source(project).unannotated_ids(project)
    if strategy == SEQUENTIAL:
        return [QueueEntry(task, None, None) for task in waiting[:n]]
    if strategy == RANDOM:
        random.Random(f"{project}\0{seed}").shuffle(waiting)
        return [QueueEntry(task, None, None) for task in waiting[:n]]
    model = backends.store.projects.get(project).deployed_model
    if model is None or naming.parse_model_name(model) is None:  # nothing deployed, or a pretrained model
        raise NoDeployedModelError(project)
    return least_confident(waiting, backends.store.predictions.scores(project, model, waiting), model)[:n]


def queue_summary(backends: Backends, project: str, *, n: int = 10) -> dict[str, Any]:
    """What the page shows of a project's queue: tasks awaiting annotation, how many each model
    pre-annotated, and the deployed model's least confident ones. Our store only: a Label Studio
    project's queue is in Label Studio (its Data Manager sorts by the prediction score)."""
    settings = backends.store.projects.get(project)
    model = settings.deployed_model
    if settings.source != SOURCE_STORE:
        return {"awaiting": None, "predicted": {}, "deployed_model": model, "least_confident": []}
    waiting = backends.store.predictions.unannotated_ids(project)
    scores = backends.store.predictions.scores(project, model, waiting) if model else {}
    ranked = least_confident(waiting, scores, model or "") if scores else []
    return {
        "awaiting": len(waiting),
        "predicted": backends.store.predictions.counts(project),
        "deployed_model": model,
        "least_confident": [entry.as_dict() for entry in ranked[:n] if entry.score is not None],
    }


def least_confident(waiting: list[str], scores: dict[str, float], model: str) -> list[QueueEntry]:
    """Scored tasks by score (ties in the source's order), then the unscored ones in the source's order."""
    position = {task: index for index, task in enumerate(waiting)}
    scored = sorted((task for task in waiting if task in scores), key=lambda task: (scores[task], position[task]))
    return [QueueEntry(task, scores[task], model) for task in scored] + [
        QueueEntry(task, None, None) for task in waiting if task not in scores
    ]
