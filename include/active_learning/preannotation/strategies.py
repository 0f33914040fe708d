"""The queue's strategies by name: the project's training parameter ``queue.strategy``, ``next --strategy``
and ``simulate --strategy``. A plain module (no spaCy), so that parameters can be checked anywhere.

| strategy | the queue's order |
|---|---|
| ``margin``, ``mnlp``, ``entity``, ``dropout`` | a diverse batch of the tasks that scorer finds least sure (:mod:`~active_learning.preannotation.scoring` defines the scores, :mod:`~active_learning.preannotation.batch` the batch) |
| ``random`` | shuffled, the same order for the same project and seed |
| ``sequential`` | the source's order (the order of the exports, or Label Studio's task ids) |

A scorer's strategy takes effect with the next model a project trains: that model's pre-annotation scores
the tasks by it (random and sequential ones are scored by ``margin``, for the page). ``uncertainty``, the
name of the one scorer before there were four, stays accepted: the scorer the deployed model's
pre-annotation used.
"""

from __future__ import annotations

MARGIN, MNLP, ENTITY, DROPOUT = "margin", "mnlp", "entity", "dropout"
SCORER_NAMES = (MARGIN, MNLP, ENTITY, DROPOUT)
RANDOM, SEQUENTIAL = "random", "sequential"
STRATEGIES = (*SCORER_NAMES, RANDOM, SEQUENTIAL)
UNCERTAINTY = "uncertainty"  # the deployed model's scorer (the old name of the only one)
DEFAULT_STRATEGY = MARGIN


def scorer_for(strategy: str) -> str:
    """The scorer a model trained with ``strategy`` pre-annotates by."""
    return strategy if strategy in SCORER_NAMES else MARGIN


def problem(value: str) -> str | None:
    """What is wrong with a ``queue.strategy`` value, in one line; None when it is fine."""
    return None if value in STRATEGIES else f"queue.strategy must be one of {', '.join(STRATEGIES)}, not {value!r}"
