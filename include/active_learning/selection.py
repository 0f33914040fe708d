"""Which completion of a task trains the model: the completion-selection policy.

A task may have several completions (several annotators, review rounds, copies of earlier
completions). At most one of them becomes the task's training example:

1. Drafts (never submitted), cancelled (skipped) completions and completions a reviewer
   rejected are never used. If nothing else is left, the task does not train.
2. Among the rest, a ground-truth completion (Annotation Lab "honeypot", Label Studio
   "ground_truth") wins over any other.
3. Then a completion a reviewer accepted wins over one that was not reviewed.
4. Then the most recently submitted completion wins.
5. A remaining tie goes to the highest completion id (compared as a number when it is one),
   and after that to the completion listed first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from active_learning.exports import Span

ACCEPTED = "accepted"
REJECTED = "rejected"


class CompletionLike(Protocol):
    """What the policy reads: an export's CompletionRecord and a stored completion row both qualify."""

    submitted_at: datetime | None
    ground_truth: bool
    review_status: str | None
    cancelled: bool


C = TypeVar("C", bound=CompletionLike)


def is_eligible(completion: CompletionLike) -> bool:
    """Submitted, not cancelled and not rejected in review."""
    return (
        completion.submitted_at is not None
        and not completion.cancelled
        and _review(completion) != REJECTED
    )


def choose_completion(completions: Sequence[C]) -> C | None:
    """The completion that trains, by the policy above; None when no completion is eligible."""
    eligible = [completion for completion in completions if is_eligible(completion)]
    # max() returns the first of equal maxima, which makes the given order the last tie-break.
    return max(eligible, key=_preference, default=None)


def _preference(completion: CompletionLike) -> tuple[bool, bool, datetime, tuple[int, int, str]]:
    assert completion.submitted_at is not None  # only eligible completions are ranked
    return (
        bool(completion.ground_truth),
        _review(completion) == ACCEPTED,
        _as_utc(completion.submitted_at),
        _id_order(getattr(completion, "source_id", None)),
    )


def _review(completion: CompletionLike) -> str:
    return (completion.review_status or "").strip().lower()


def _as_utc(moment: datetime) -> datetime:
    # Databases without time zones hand back naive times; the store writes them as UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _id_order(source_id: object) -> tuple[int, int, str]:
    text = "" if source_id is None else str(source_id)
    return (1, int(text), "") if text.isascii() and text.isdecimal() else (0, 0, text)


@dataclass(frozen=True)
class TrainingExample:
    """One task's text with the entities of its chosen completion."""

    task_id: str
    text: str
    spans: tuple[Span, ...]
    test: bool = False  # tagged as a test task: always in the evaluation set


def training_example(
    task_id: str, text: str, completions: Sequence[CompletionLike], *, test: bool = False
) -> TrainingExample | None:
    """The task's example from the completion the selection policy chooses; None when none is eligible.

    ``completions`` are stored rows (spans as ``[start, end, label]`` lists) or an export's records (spans
    as :class:`Span`): both trainings, from our store and from a Label Studio export, go through here.
    """
    chosen = choose_completion(completions)
    if chosen is None:
        return None
    spans = tuple(Span(*span) if not isinstance(span, Span) else span for span in chosen.spans)  # type: ignore[attr-defined]
    return TrainingExample(task_id=task_id, text=text, spans=spans, test=test)
