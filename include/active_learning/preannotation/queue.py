"""The annotation queue: which tasks to annotate next, by the project's ``queue.strategy``
(:mod:`active_learning.preannotation.strategies`) or the one asked for.

A scorer's strategy orders by the deployed model's pre-annotation scores: the next ``n`` are
:func:`~active_learning.preannotation.batch.choose_batch`'s batch of the least sure (near-copies of each
other and of labelled tasks out, spread over the doubtful ones), listed least sure first; the tasks the
model has not pre-annotated yet follow, in the source's order. The project's own strategy ranks by the
scorer the deployed model's pre-annotation used (a new strategy takes effect with the next model); one
asked for by name must be that scorer. ``random`` and ``sequential`` need no model.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from active_learning import naming
from active_learning.preannotation.batch import PREFILTER, Candidate, choose_batch
from active_learning.preannotation.run import NoDeployedModelError
from active_learning.preannotation.strategies import MARGIN, RANDOM, SEQUENTIAL, STRATEGIES, UNCERTAINTY
from active_learning.store.models import SOURCE_STORE

if TYPE_CHECKING:
    from active_learning.backends import Backends
    from active_learning.sources.base import CompletionSource

PAGE_ROWS = 10  # tasks the page lists
LINE = 160  # characters of a task's text the page shows
CANDIDATES = 2 * PREFILTER  # x n least sure tasks read for a batch: room for the near-copies choose_batch drops


class QueueStrategyError(ValueError):
    """A strategy the queue cannot order by (unknown, or not the scorer of the deployed model's scores)."""


@dataclass(frozen=True)
class QueueEntry:
    task: str  # the task's id as the user knows it
    score: float | None  # the scorer's confidence, None where the model has not pre-annotated the task
    model: str | None
    strategy: str  # what put it here: a scorer's name, random or sequential
    text: str | None = None  # the page's: the start of the task's text
    spans: tuple[dict[str, Any], ...] = ()  # the page's: the model's predicted {start, end, label} in that text

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def project_strategy(backends: Backends, project: str) -> str:
    from active_learning.training import parameters

    return parameters.effective(backends.store.projects.get(project).training_params).strategy


def next_tasks(backends: Backends, project: str, *, n: int = 50, strategy: str | None = None, seed: int = 0) -> list[QueueEntry]:
    """The ``n`` tasks to annotate next by ``strategy`` (None: the project's)."""
    chosen = strategy or project_strategy(backends, project)
    if chosen not in (*STRATEGIES, UNCERTAINTY):
        raise QueueStrategyError(f"strategy must be one of {', '.join(STRATEGIES)}, not {chosen!r}")
    source = backends.source(project)
    asked = None if strategy in (None, UNCERTAINTY) else chosen
    return _ordered(backends, project, source, source.unannotated_ids(project), chosen, asked, n=n, seed=seed)[0]


def _ordered(backends: Backends, project: str, source: CompletionSource, waiting: list[str], chosen: str, asked: str | None,
             *, n: int, seed: int) -> tuple[list[QueueEntry], dict[str, str]]:
    """The next ``n`` of ``waiting`` by ``chosen``, and the texts read to choose them (a scorer's batch)."""
    if chosen == SEQUENTIAL:
        return [QueueEntry(task, None, None, SEQUENTIAL) for task in waiting[:n]], {}
    if chosen == RANDOM:
        random.Random(f"{project}\0{seed}").shuffle(waiting)
        return [QueueEntry(task, None, None, RANDOM) for task in waiting[:n]], {}
    model = backends.store.projects.get(project).deployed_model
    if model is None or naming.parse_model_name(model) is None:  # nothing deployed, or a pretrained model
        raise NoDeployedModelError(project)
    scorer = _scorer(backends, project, model, asked)
    return _batch(source, project, waiting, backends.store.predictions.scores(project, model, waiting), model, scorer, n)


def _scorer(backends: Backends, project: str, model: str, asked: str | None) -> str:
    """The scorer of the model's scores; ``asked`` (a scorer's name) must be it."""
    used = backends.store.predictions.scorers(project, model)  # one, or none before its pre-annotation
    if asked is None:
        return min(used, default=MARGIN)
    if used and asked not in used:
        raise QueueStrategyError(
            f"{model} scored {project!r}'s tasks by {', '.join(sorted(used))}, not {asked}: set the training parameter "
            f"queue.strategy={asked} and the next model's pre-annotation scores by it")
    return asked


def _batch(source: CompletionSource, project: str, waiting: list[str], scores: dict[str, float], model: str, scorer: str,
           n: int) -> tuple[list[QueueEntry], dict[str, str]]:
    ranked = least_confident(waiting, scores)
    doubtful = ranked[: min(len(scores), CANDIDATES * n)]
    texts = source.texts(project, doubtful) if doubtful else {}
    candidates = [Candidate(task, texts.get(task, ""), scores[task]) for task in doubtful]
    picked = choose_batch(candidates, n, labelled=source.annotated_texts(project)) if candidates else []
    unscored = [task for task in waiting if task not in scores][: n - len(picked)]
    entries = [QueueEntry(task, scores[task], model, scorer) for task in picked] + [QueueEntry(task, None, None, scorer) for task in unscored]
    return entries, texts


def least_confident(waiting: list[str], scores: dict[str, float]) -> list[str]:
    """Scored tasks by score (ties in the source's order), then the unscored ones in the source's order."""
    position = {task: index for index, task in enumerate(waiting)}
    scored = sorted((task for task in waiting if task in scores), key=lambda task: (scores[task], position[task]))
    return scored + [task for task in waiting if task not in scores]


def queue_summary(backends: Backends, project: str, *, n: int = PAGE_ROWS) -> dict[str, Any]:
    """What the page shows of a project's queue: tasks awaiting annotation, how many each model
    pre-annotated, and the next ``n`` by the project's strategy, each with the start of its text and the
    deployed model's spans in it. Our store only: a Label Studio project's queue is in Label Studio (its
    Data Manager sorts by the prediction score)."""
    settings = backends.store.projects.get(project)
    strategy = project_strategy(backends, project)
    summary: dict[str, Any] = {"strategy": strategy, "deployed_model": settings.deployed_model}
    if settings.source != SOURCE_STORE:
        return summary | {"awaiting": None, "predicted": {}, "next": [], "note": None}
    predictions = backends.store.predictions
    waiting = predictions.unannotated_ids(project)
    summary |= {"awaiting": len(waiting), "predicted": predictions.counts(project), "note": None}
    try:
        entries, texts = _ordered(backends, project, backends.source(project), waiting, strategy, None, n=n, seed=0)
    except NoDeployedModelError as error:
        return summary | {"next": [], "note": str(error)}
    ids = [entry.task for entry in entries]
    if unread := [task for task in ids if task not in texts]:  # unscored tasks, or a random or sequential order
        texts = texts | predictions.texts(project, unread)
    predicted = predictions.of_model(project, settings.deployed_model, ids) if settings.deployed_model else {}
    return summary | {"next": [
        QueueEntry(entry.task, entry.score, entry.model, entry.strategy, _line(texts.get(entry.task, "")),
                   _spans_within(predicted.get(entry.task, (None, []))[1], LINE)).as_dict()
        for entry in entries
    ]}


def _line(text: str) -> str:
    return text[:LINE] + ("…" if len(text) > LINE else "")


def _spans_within(items: list[dict[str, Any]], end: int) -> tuple[dict[str, Any], ...]:
    """The predicted spans (result items) that lie within the first ``end`` characters, in text order."""
    spans = [{"start": value["start"], "end": value["end"], "label": value["labels"][0]}
             for value in (item.get("value") or {} for item in items)
             if value.get("labels") and 0 <= value.get("start", -1) < value.get("end", -1) <= end]
    return tuple(sorted(spans, key=lambda span: (span["start"], span["end"])))
