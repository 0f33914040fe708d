"""The annotation store: imports, the poll's counts and cost, training history, config revisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event

from active_learning.exports import CompletionRecord, Span, TaskRecord
from active_learning.polling import poll, training_run_id, training_source
from active_learning.store import AnnotationStore, connect, create_schema
from active_learning.store.repository import ConfigConflictError, UnknownProjectError

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
CONFIG = '<View><Labels name="label" toName="text"><Label value="PER"/></Labels><Text name="text" value="$text"/></View>'


def tasks(n: int, *, start: int = 0, submitted: bool = True, prefix: str = "t") -> list[TaskRecord]:
    return [
        TaskRecord(
            source_id=f"{prefix}{i}",
            text=f"Ada Lovelace wrote note {i}.",
            title=None,
            completions=(
                CompletionRecord(
                    source_id=f"c{i}", annotator="ana", created_at=T0, submitted_at=T0 if submitted else None,
                    ground_truth=False, review_status=None, cancelled=False, spans=(Span(0, 12, "PER"),), skipped_spans=0,
                ),
            ),
        )
        for i in range(start, start + n)
    ]


@pytest.fixture
def store(tmp_path) -> AnnotationStore:  # type: ignore[no-untyped-def]
    engine = connect(f"sqlite:///{tmp_path / 'store.db'}")
    create_schema(engine)
    return AnnotationStore(engine)


def active_project(store: AnnotationStore, name: str = "news", frequency: int = 50) -> None:
    store.create_project(name, CONFIG, active_learning=True, frequency=frequency)


def test_reimporting_an_export_adds_nothing_twice(store: AnnotationStore) -> None:
    active_project(store)
    first = store.import_tasks("news", tasks(10), arrived_at=T0)
    again = store.import_tasks("news", tasks(10), arrived_at=T0 + timedelta(hours=1))
    assert (first.new_tasks, first.new_completions) == (10, 10)
    assert (again.new_tasks, again.new_completions, again.known_completions) == (0, 0, 10)
    assert store.completion_totals() == {"news": 10}


def test_drafts_are_stored_but_never_counted(store: AnnotationStore) -> None:
    active_project(store)
    store.import_tasks("news", tasks(5, submitted=False), arrived_at=T0)
    assert store.completion_totals() == {"news": 0}
    assert store.poll(T0 + timedelta(days=1))[0].new_completions == 0
    assert store.training_examples("news", T0 + timedelta(days=1)) == []


def test_a_project_is_due_at_its_frequency_and_not_before(store: AnnotationStore) -> None:
    active_project(store, frequency=50)
    store.import_tasks("news", tasks(49), arrived_at=T0)
    assert poll(store, T0) == []
    store.import_tasks("news", tasks(1, start=49), arrived_at=T0 + timedelta(minutes=1))
    assert poll(store, T0) == []  # as of T0 the 50th had not arrived
    [due] = poll(store, T0 + timedelta(minutes=1))
    assert (due.project, due.new_completions) == ("news", 50)


def test_projects_with_active_learning_off_are_not_polled(store: AnnotationStore) -> None:
    store.create_project("off", CONFIG, active_learning=False)
    store.import_tasks("off", tasks(60), arrived_at=T0)
    assert store.poll(T0) == []


def test_a_jump_past_several_multiples_triggers_once_and_the_next_needs_n_more(store: AnnotationStore) -> None:
    active_project(store, frequency=50)
    store.import_tasks("news", tasks(170), arrived_at=T0)
    [due] = poll(store, T0)
    assert due.new_completions == 170
    store.start_training("news", run_key=due.run_id, source="active_learning", as_of=T0)
    # Every later poll sees the recorded training: nothing is due until 50 more arrive.
    assert poll(store, T0 + timedelta(minutes=5)) == []
    store.import_tasks("news", tasks(49, start=170), arrived_at=T0 + timedelta(minutes=6))
    assert poll(store, T0 + timedelta(minutes=10)) == []
    store.import_tasks("news", tasks(1, start=219), arrived_at=T0 + timedelta(minutes=11))
    [next_due] = poll(store, T0 + timedelta(minutes=15))
    assert next_due.new_completions == 50 and next_due.run_id != due.run_id


def test_polls_that_see_the_same_crossing_name_the_same_run(store: AnnotationStore) -> None:
    active_project(store)
    store.import_tasks("news", tasks(60), arrived_at=T0)
    first = poll(store, T0 + timedelta(minutes=1))
    later = poll(store, T0 + timedelta(minutes=30))
    assert [d.run_id for d in first] == [d.run_id for d in later] == [training_run_id("news", None)]


def test_a_failed_training_does_not_count_so_the_crossing_is_not_lost(store: AnnotationStore) -> None:
    active_project(store)
    store.import_tasks("news", tasks(60), arrived_at=T0)
    [due] = poll(store, T0)
    store.start_training("news", run_key=due.run_id, source="active_learning", as_of=T0)
    store.update_training(due.run_id, status="failed", error="MLflow unreachable")
    [again] = poll(store, T0 + timedelta(minutes=5))
    assert again.run_id == due.run_id
    assert store.history("news")[0].error == "MLflow unreachable"


def test_a_backfill_poll_sees_only_what_a_live_poll_saw_then(store: AnnotationStore) -> None:
    active_project(store)
    store.import_tasks("news", tasks(30), arrived_at=T0)
    store.import_tasks("news", tasks(30, start=30), arrived_at=T0 + timedelta(hours=2))
    assert poll(store, T0 + timedelta(hours=1)) == []  # 30 had arrived by then
    [live] = poll(store, T0 + timedelta(hours=2, minutes=5))
    [backfill] = poll(store, T0 + timedelta(hours=2))  # same crossing, same run: Airflow skips the second
    assert backfill.run_id == live.run_id
    store.start_training("news", run_key=live.run_id, source="active_learning", as_of=T0 + timedelta(hours=2, minutes=5))
    # Once trained, a replay after the training's as-of time launches nothing more.
    assert poll(store, T0 + timedelta(hours=3)) == []


def test_one_poll_is_one_statement_whatever_the_number_of_projects(store: AnnotationStore) -> None:
    def statements_per_poll() -> int:
        seen: list[str] = []
        listener = lambda *args: seen.append(args[2])  # noqa: E731
        event.listen(store.engine, "before_cursor_execute", listener)
        try:
            poll(store, T0 + timedelta(days=1))
        finally:
            event.remove(store.engine, "before_cursor_execute", listener)
        return len(seen)

    for i in range(3):
        active_project(store, f"p{i}")
        store.import_tasks(f"p{i}", tasks(60, prefix=f"p{i}-"), arrived_at=T0)
    few = statements_per_poll()
    for i in range(3, 60):
        active_project(store, f"p{i}")
        store.import_tasks(f"p{i}", tasks(5, prefix=f"p{i}-"), arrived_at=T0)
    many = statements_per_poll()
    assert few == many == 1
    assert len(poll(store, T0 + timedelta(days=1))) == 3


def test_the_poll_lists_every_active_project_but_the_sensor_gets_only_the_due_ones(store: AnnotationStore) -> None:
    for name, count in (("a", 10), ("b", 50), ("c", 70)):
        active_project(store, name)
        store.import_tasks(name, tasks(count, prefix=f"{name}-"), arrived_at=T0)
    later = T0 + timedelta(hours=1)
    assert [(row.project, row.new_completions) for row in store.poll(later)] == [("a", 10), ("b", 50), ("c", 70)]
    assert [(row.project, row.new_completions) for row in store.poll(later, due_only=True)] == [("b", 50), ("c", 70)]
    assert [due.project for due in poll(store, later)] == ["b", "c"]


def test_only_the_sensor_starts_an_active_learning_training() -> None:
    assert training_source({"source": "active_learning"}) == "active_learning"
    assert training_source({}) == training_source({"source": "anything"}) == "manual"


def test_training_examples_follow_the_selection_policy_as_of_a_time(store: AnnotationStore) -> None:
    active_project(store)
    store.import_tasks("news", tasks(3), arrived_at=T0)
    late = TaskRecord("t0", "Ada Lovelace wrote note 0.", None, (
        CompletionRecord("gt", "rev", T0, T0, ground_truth=True, review_status=None, cancelled=False,
                         spans=(Span(0, 3, "PER"),), skipped_spans=0),
    ))
    store.import_tasks("news", [late], arrived_at=T0 + timedelta(hours=1))
    before = {e.task_id: e.spans for e in store.training_examples("news", T0)}
    after = {e.task_id: e.spans for e in store.training_examples("news", T0 + timedelta(hours=1))}
    assert before["t0"] == (Span(0, 12, "PER"),)
    assert after["t0"] == (Span(0, 3, "PER"),)  # the ground-truth completion wins once it arrived
    assert len(after) == 3


def test_config_writes_keep_every_revision_and_refuse_stale_ones(store: AnnotationStore) -> None:
    active_project(store)
    state = store.read_config("news")
    store.write_config("news", CONFIG.replace("PER", "ORG"), expected_revision=state.revision, author="a", reason="r1")
    with pytest.raises(ConfigConflictError):
        store.write_config("news", CONFIG.replace("PER", "LOC"), expected_revision=state.revision, author="b", reason="r2")
    revisions = store.revisions("news")
    assert [(r.revision, r.author) for r in revisions] == [(1, "cli"), (2, "a")]
    assert revisions[0].labeling_config == CONFIG
    assert store.read_config("news").xml == CONFIG.replace("PER", "ORG")


def test_frequency_outside_the_allowed_list_is_refused(store: AnnotationStore) -> None:
    with pytest.raises(ValueError, match="50, 100, 200"):
        store.create_project("x", CONFIG, frequency=75)
    active_project(store)
    with pytest.raises(ValueError, match="not 10"):
        store.update_settings("news", frequency=10)


def test_unknown_project_is_a_clear_error(store: AnnotationStore) -> None:
    with pytest.raises(UnknownProjectError, match="no project named 'nope'"):
        store.project("nope")


def test_naive_datetimes_are_refused(store: AnnotationStore) -> None:
    active_project(store)
    with pytest.raises(Exception, match="timezone-aware"):
        store.import_tasks("news", tasks(1), arrived_at=datetime(2026, 1, 1))


def test_test_tags_reach_the_training_examples_and_follow_a_newer_export(store: AnnotationStore) -> None:
    active_project(store)
    records = tasks(4)
    store.import_tasks("news", [TaskRecord(**{**records[0].__dict__, "test": True}), *records[1:]], arrived_at=T0)
    tagged = {e.task_id for e in store.training_examples("news", T0) if e.test}
    assert tagged == {"t0"}
    retagged = [TaskRecord(**{**r.__dict__, "test": r.source_id == "t3"}) for r in records]
    result = store.import_tasks("news", retagged, arrived_at=T0)
    assert (result.new_tasks, result.new_completions) == (0, 0)
    assert {e.task_id for e in store.training_examples("news", T0) if e.test} == {"t3"}


def test_a_settings_change_from_a_stale_revision_changes_nothing_and_a_fresh_one_is_recorded(store: AnnotationStore) -> None:
    from active_learning.store.repository import ConfigConflictError

    active_project(store)
    state = store.read_config("news")
    store.write_config("news", state.xml, expected_revision=state.revision, author="someone", reason="edit")
    with pytest.raises(ConfigConflictError):
        store.update_settings("news", frequency=200, expected_revision=state.revision, author="ana", reason="settings")
    assert store.project("news").frequency == 50 and store.read_config("news").revision == state.revision + 1

    settings = store.update_settings("news", frequency=200, expected_revision=state.revision + 1, author="ana",
                                     reason="settings: retrain every 200")
    assert (settings.frequency, settings.config_revision) == (200, state.revision + 2)
    last = store.revisions("news")[-1]
    assert (last.author, last.reason, last.labeling_config) == ("ana", "settings: retrain every 200", state.xml)
