from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from active_learning.exports import CompletionRecord
from active_learning.selection import choose_completion, is_eligible

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def record(source_id="1", *, minutes=0, ground_truth=False, review=None, cancelled=False, draft=False):
    return CompletionRecord(
        source_id=source_id,
        annotator="ann",
        created_at=T0,
        submitted_at=None if draft else T0 + timedelta(minutes=minutes),
        ground_truth=ground_truth,
        review_status=review,
        cancelled=cancelled,
        spans=(),
        skipped_spans=0,
    )


@dataclass
class Row:
    """Stands in for a stored completion row: no source_id needed, times may come back naive."""

    name: str
    submitted_at: datetime | None
    ground_truth: bool = False
    review_status: str | None = None
    cancelled: bool = False


def test_nothing_to_choose_from():
    assert choose_completion([]) is None


@pytest.mark.parametrize(
    "excluded",
    [
        record("9", minutes=9, draft=True),
        record("9", minutes=9, cancelled=True),
        record("9", minutes=9, review="rejected"),
    ],
)
def test_drafts_cancelled_and_rejected_are_never_chosen(excluded):
    assert not is_eligible(excluded)
    assert choose_completion([excluded]) is None
    assert choose_completion([excluded, record("1")]).source_id == "1"


def test_a_rejected_ground_truth_is_still_rejected():
    chosen = choose_completion([record("1", ground_truth=True, review="Rejected"), record("2")])
    assert chosen.source_id == "2"


def test_ground_truth_beats_accepted_beats_latest():
    latest = record("1", minutes=30)
    accepted = record("2", minutes=20, review="accepted")
    ground_truth = record("3", minutes=10, ground_truth=True)
    assert choose_completion([latest, accepted, ground_truth]) is ground_truth
    assert choose_completion([latest, accepted]) is accepted
    assert choose_completion([record("4", minutes=5), latest]) is latest


def test_among_ground_truths_the_accepted_then_the_latest_wins():
    old = record("1", minutes=1, ground_truth=True)
    new = record("2", minutes=2, ground_truth=True)
    reviewed = record("3", minutes=0, ground_truth=True, review="accepted")
    assert choose_completion([new, old]) is new
    assert choose_completion([new, old, reviewed]) is reviewed


def test_ties_go_to_the_highest_id_whatever_the_order():
    first, second, third = record("9"), record("10"), record("abc")
    assert choose_completion([first, second, third]) is second
    assert choose_completion([third, second, first]) is second


def test_rows_without_source_id_tie_break_by_given_order_and_naive_times_count_as_utc():
    a = Row("a", T0.replace(tzinfo=None))
    b = Row("b", T0)
    assert choose_completion([a, b]) is a
    assert choose_completion([b, a]) is b
    later = Row("later", (T0 + timedelta(seconds=1)).replace(tzinfo=None))
    assert choose_completion([b, later]) is later
    assert choose_completion([Row("draft", None), Row("cancelled", T0, cancelled=True)]) is None
