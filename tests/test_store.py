"""The annotation store: imports, the poll's counts and cost, training history, config revisions."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event, text

from active_learning import naming
from active_learning.exports import CompletionRecord, Span, TaskRecord
from active_learning.status import poll, training_run_id, training_source
from active_learning.store import AnnotationStore, connect, create_schema
from active_learning.store import ConfigConflictError, SafeNameTakenError, UnknownProjectError
from test_migrations import postgres_url  # noqa: F401  (a fixture: a fresh PostgreSQL database, or a skip)

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
    store.projects.create(name, CONFIG, active_learning=True, frequency=frequency)


def test_reimporting_an_export_adds_nothing_twice(store: AnnotationStore) -> None:
    active_project(store)
    first = store.completions.import_tasks("news", tasks(10), arrived_at=T0)
    again = store.completions.import_tasks("news", tasks(10), arrived_at=T0 + timedelta(hours=1))
    assert (first.new_tasks, first.new_completions) == (10, 10)
    assert (again.new_tasks, again.new_completions, again.known_completions) == (0, 0, 10)
    assert {row.name: row.completions for row in store.status.everything(T0)} == {"news": 10}


def test_drafts_are_stored_but_never_counted(store: AnnotationStore) -> None:
    active_project(store)
    store.completions.import_tasks("news", tasks(5, submitted=False), arrived_at=T0)
    assert {row.name: row.completions for row in store.status.everything(T0)} == {"news": 0}
    assert store.status.poll(T0 + timedelta(days=1))[0].since_last_training == 0
    assert store.completions.training_examples("news", T0 + timedelta(days=1)) == []


def test_a_project_is_due_at_its_frequency_and_not_before(store: AnnotationStore) -> None:
    active_project(store, frequency=50)
    store.completions.import_tasks("news", tasks(49), arrived_at=T0)
    assert poll(store.status, T0) == []
    store.completions.import_tasks("news", tasks(1, start=49), arrived_at=T0 + timedelta(minutes=1))
    assert poll(store.status, T0) == []  # as of T0 the 50th had not arrived
    [due] = poll(store.status, T0 + timedelta(minutes=1))
    assert (due.project, due.new_completions) == ("news", 50)


def test_projects_with_active_learning_off_are_not_polled(store: AnnotationStore) -> None:
    store.projects.create("off", CONFIG, active_learning=False)
    store.completions.import_tasks("off", tasks(60), arrived_at=T0)
    assert store.status.poll(T0) == []


def test_a_jump_past_several_multiples_triggers_once_and_the_next_needs_n_more(store: AnnotationStore) -> None:
    active_project(store, frequency=50)
    store.completions.import_tasks("news", tasks(170), arrived_at=T0)
    [due] = poll(store.status, T0)
    assert due.new_completions == 170
    store.trainings.start("news", run_key=due.run_id, source="active_learning", as_of=T0)
    # Every later poll sees the recorded training: nothing is due until 50 more arrive.
    assert poll(store.status, T0 + timedelta(minutes=5)) == []
    store.completions.import_tasks("news", tasks(49, start=170), arrived_at=T0 + timedelta(minutes=6))
    assert poll(store.status, T0 + timedelta(minutes=10)) == []
    store.completions.import_tasks("news", tasks(1, start=219), arrived_at=T0 + timedelta(minutes=11))
    [next_due] = poll(store.status, T0 + timedelta(minutes=15))
    assert next_due.new_completions == 50 and next_due.run_id != due.run_id


def test_polls_that_see_the_same_crossing_name_the_same_run(store: AnnotationStore) -> None:
    active_project(store)
    store.completions.import_tasks("news", tasks(60), arrived_at=T0)
    first = poll(store.status, T0 + timedelta(minutes=1))
    later = poll(store.status, T0 + timedelta(minutes=30))
    assert [d.run_id for d in first] == [d.run_id for d in later] == [training_run_id("news", None)]


def test_a_failed_training_does_not_count_so_the_crossing_is_not_lost(store: AnnotationStore) -> None:
    active_project(store)
    store.completions.import_tasks("news", tasks(60), arrived_at=T0)
    [due] = poll(store.status, T0)
    store.trainings.start("news", run_key=due.run_id, source="active_learning", as_of=T0)
    store.trainings.update(due.run_id, status="failed", error="MLflow unreachable")
    [again] = poll(store.status, T0 + timedelta(minutes=5))
    assert again.run_id == due.run_id
    assert store.trainings.history("news")[0].error == "MLflow unreachable"


def test_a_backfill_poll_sees_only_what_a_live_poll_saw_then(store: AnnotationStore) -> None:
    active_project(store)
    store.completions.import_tasks("news", tasks(30), arrived_at=T0)
    store.completions.import_tasks("news", tasks(30, start=30), arrived_at=T0 + timedelta(hours=2))
    assert poll(store.status, T0 + timedelta(hours=1)) == []  # 30 had arrived by then
    [live] = poll(store.status, T0 + timedelta(hours=2, minutes=5))
    [backfill] = poll(store.status, T0 + timedelta(hours=2))  # same crossing, same run: Airflow skips the second
    assert backfill.run_id == live.run_id
    store.trainings.start("news", run_key=live.run_id, source="active_learning", as_of=T0 + timedelta(hours=2, minutes=5))
    # Once trained, a replay after the training's as-of time launches nothing more.
    assert poll(store.status, T0 + timedelta(hours=3)) == []


def test_one_poll_is_one_statement_whatever_the_number_of_projects(store: AnnotationStore) -> None:
    def statements_per_poll() -> int:
        seen: list[str] = []
        listener = lambda *args: seen.append(args[2])  # noqa: E731
        event.listen(store.engine, "before_cursor_execute", listener)
        try:
            poll(store.status, T0 + timedelta(days=1))
        finally:
            event.remove(store.engine, "before_cursor_execute", listener)
        return len(seen)

    for i in range(3):
        active_project(store, f"p{i}")
        store.completions.import_tasks(f"p{i}", tasks(60, prefix=f"p{i}-"), arrived_at=T0)
    few = statements_per_poll()
    for i in range(3, 60):
        active_project(store, f"p{i}")
        store.completions.import_tasks(f"p{i}", tasks(5, prefix=f"p{i}-"), arrived_at=T0)
    many = statements_per_poll()
    assert few == many == 1
    assert len(poll(store.status, T0 + timedelta(days=1))) == 3


def test_the_poll_lists_every_active_project_but_the_sensor_gets_only_the_due_ones(store: AnnotationStore) -> None:
    for name, count in (("a", 10), ("b", 50), ("c", 70)):
        active_project(store, name)
        store.completions.import_tasks(name, tasks(count, prefix=f"{name}-"), arrived_at=T0)
    later = T0 + timedelta(hours=1)
    assert [(row.name, row.since_last_training) for row in store.status.poll(later)] == [("a", 10), ("b", 50), ("c", 70)]
    assert [(row.name, row.since_last_training) for row in store.status.poll(later, due_only=True)] == [("b", 50), ("c", 70)]
    assert [due.project for due in poll(store.status, later)] == ["b", "c"]


def test_only_the_sensor_starts_an_active_learning_training() -> None:
    assert training_source({"source": "active_learning"}) == "active_learning"
    assert training_source({}) == training_source({"source": "anything"}) == "manual"


def test_training_examples_follow_the_selection_policy_as_of_a_time(store: AnnotationStore) -> None:
    active_project(store)
    store.completions.import_tasks("news", tasks(3), arrived_at=T0)
    late = TaskRecord("t0", "Ada Lovelace wrote note 0.", None, (
        CompletionRecord("gt", "rev", T0, T0, ground_truth=True, review_status=None, cancelled=False,
                         spans=(Span(0, 3, "PER"),), skipped_spans=0),
    ))
    store.completions.import_tasks("news", [late], arrived_at=T0 + timedelta(hours=1))
    before = {e.task_id: e.spans for e in store.completions.training_examples("news", T0)}
    after = {e.task_id: e.spans for e in store.completions.training_examples("news", T0 + timedelta(hours=1))}
    assert before["t0"] == (Span(0, 12, "PER"),)
    assert after["t0"] == (Span(0, 3, "PER"),)  # the ground-truth completion wins once it arrived
    assert len(after) == 3


def test_config_writes_keep_every_revision_and_refuse_stale_ones(store: AnnotationStore) -> None:
    active_project(store)
    state = store.configs.read("news")
    store.configs.write("news", CONFIG.replace("PER", "ORG"), expected_revision=state.revision, author="a", reason="r1")
    with pytest.raises(ConfigConflictError):
        store.configs.write("news", CONFIG.replace("PER", "LOC"), expected_revision=state.revision, author="b", reason="r2")
    revisions = store.configs.revisions("news")
    assert [(r.revision, r.author) for r in revisions] == [(1, "cli"), (2, "a")]
    assert revisions[0].labeling_config == CONFIG
    assert store.configs.read("news").xml == CONFIG.replace("PER", "ORG")


def test_frequency_outside_the_allowed_list_is_refused(store: AnnotationStore) -> None:
    with pytest.raises(ValueError, match="50, 100, 200"):
        store.projects.create("x", CONFIG, frequency=75)
    active_project(store)
    with pytest.raises(ValueError, match="not 10"):
        store.projects.update_settings("news", frequency=10)


def test_unknown_project_is_a_clear_error(store: AnnotationStore) -> None:
    with pytest.raises(UnknownProjectError, match="no project named 'nope'"):
        store.projects.get("nope")


def test_naive_datetimes_are_refused(store: AnnotationStore) -> None:
    active_project(store)
    with pytest.raises(Exception, match="timezone-aware"):
        store.completions.import_tasks("news", tasks(1), arrived_at=datetime(2026, 1, 1))


def test_test_tags_reach_the_training_examples_and_follow_a_newer_export(store: AnnotationStore) -> None:
    active_project(store)
    records = tasks(4)
    store.completions.import_tasks("news", [TaskRecord(**{**records[0].__dict__, "test": True}), *records[1:]], arrived_at=T0)
    tagged = {e.task_id for e in store.completions.training_examples("news", T0) if e.test}
    assert tagged == {"t0"}
    retagged = [TaskRecord(**{**r.__dict__, "test": r.source_id == "t3"}) for r in records]
    result = store.completions.import_tasks("news", retagged, arrived_at=T0)
    assert (result.new_tasks, result.new_completions) == (0, 0)
    assert {e.task_id for e in store.completions.training_examples("news", T0) if e.test} == {"t3"}


def test_a_settings_change_from_a_stale_revision_changes_nothing_and_a_fresh_one_is_recorded(store: AnnotationStore) -> None:
    active_project(store)
    state = store.configs.read("news")
    store.configs.write("news", state.xml, expected_revision=state.revision, author="someone", reason="edit")
    with pytest.raises(ConfigConflictError):
        store.projects.update_settings("news", frequency=200, expected_revision=state.revision, author="ana", reason="settings")
    assert store.projects.get("news").frequency == 50 and store.configs.read("news").revision == state.revision + 1

    settings = store.projects.update_settings("news", frequency=200, expected_revision=state.revision + 1, author="ana",
                                     reason="settings: retrain every 200")
    assert (settings.frequency, settings.config_revision) == (200, state.revision + 2)
    last = store.configs.revisions("news")[-1]
    assert (last.author, last.reason, last.labeling_config) == ("ana", "settings: retrain every 200", state.xml)


# -- the poll's counters against the history they summarise ------------------------------------------

HOURS = st.integers(0, 6)
STATUSES = st.sampled_from(["running", "success", "failed"])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("import"), HOURS, st.integers(1, 3), st.booleans(), st.integers(-5, 5)),  # arrived at, tasks, submitted, zone
        st.tuples(st.just("train"), HOURS, STATUSES),  # a training as of that hour
        st.tuples(st.just("status"), st.integers(0, 9), STATUSES),  # an earlier training's status changes
    ),
    max_size=20,
)
_names = itertools.count()


@pytest.fixture(scope="module")
def counted_store(tmp_path_factory) -> AnnotationStore:  # type: ignore[no-untyped-def]
    engine = connect(f"sqlite:///{tmp_path_factory.mktemp('counters') / 'store.db'}")
    create_schema(engine)
    return AnnotationStore(engine)


@settings(max_examples=80, deadline=None)
@given(OPERATIONS)
def test_the_poll_counters_agree_with_the_history_at_every_time(counted_store: AnnotationStore, operations) -> None:  # type: ignore[no-untyped-def]
    """Imports (also stamped before a training), trainings and status changes in any order: at any poll
    time, live (the counters) or earlier (a backfill: the index), the poll says what the history says."""
    project = f"p{next(_names)}"
    active_project(counted_store, project)
    arrivals: list[tuple[datetime, int]] = []
    trainings: list[tuple[str, datetime]] = []
    statuses: dict[str, str] = {}
    for operation in operations:
        if operation[0] == "import":
            _, hour, n, submitted, zone = operation
            arrived_at = (T0 + timedelta(hours=hour)).astimezone(timezone(timedelta(hours=zone)))  # any zone: same instant
            counted_store.completions.import_tasks(project, tasks(n, start=len(statuses) * 100 + len(arrivals) * 10,
                                                      submitted=submitted, prefix=f"{project}-"), arrived_at=arrived_at)
            arrivals.append((T0 + timedelta(hours=hour), n if submitted else 0))
        elif operation[0] == "train":
            _, hour, status = operation
            key = f"{project}-run{len(trainings)}"
            counted_store.trainings.start(project, run_key=key, source="manual", as_of=T0 + timedelta(hours=hour))
            counted_store.trainings.update(key, status=status)
            trainings.append((key, T0 + timedelta(hours=hour)))
            statuses[key] = status
        elif trainings:
            _, index, status = operation
            key = trainings[index % len(trainings)][0]
            counted_store.trainings.update(key, status=status)
            statuses[key] = status
    for hour in range(-1, 8):
        as_of = T0 + timedelta(hours=hour)
        last = max((at for key, at in trainings if statuses[key] != "failed" and at <= as_of), default=None)
        expected = sum(n for at, n in arrivals if (last is None or at > last) and at <= as_of)
        [row] = [r for r in counted_store.status.poll(as_of) if r.name == project]
        assert (row.since_last_training, row.last_training_as_of) == (expected, last), f"poll as of hour {hour}"
    counters = "SELECT arrived_count, last_arrived_at, last_training_as_of, arrived_by_last_training FROM projects WHERE name = :name"
    with counted_store.engine.connect() as connection:
        kept = connection.execute(text(counters), {"name": project}).one()
    counted_store.status.recount()
    with counted_store.engine.connect() as connection:
        assert connection.execute(text(counters), {"name": project}).one() == kept


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_trainings_and_imports_at_once_keep_the_counters_exact_and_never_deadlock(backend: str, tmp_path, request) -> None:  # type: ignore[no-untyped-def]
    """12 trainings and 12 imports of one project in parallel threads. On PostgreSQL each training
    inserts its row (a key-share lock on the project) and then locks the project to recount: with FOR
    UPDATE two trainings deadlock on each other's key-share lock; FOR NO KEY UPDATE does not."""
    import threading

    url = f"sqlite:///{tmp_path / 'store.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    engine = connect(url)
    create_schema(engine)
    store = AnnotationStore(engine)
    active_project(store)
    jobs = [job for i in range(12) for job in (
        lambda i=i: store.trainings.start("news", run_key=f"k{i}", source="manual", as_of=T0 + timedelta(hours=i % 4)),
        lambda i=i: store.completions.import_tasks("news", tasks(20, start=i * 100), arrived_at=T0 + timedelta(hours=i % 5)),
    )]
    errors: list[BaseException] = []

    def run(job) -> None:  # type: ignore[no-untyped-def]
        try:
            job()
        except BaseException as error:  # noqa: BLE001 - collected, asserted below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    [row] = store.status.poll(T0 + timedelta(hours=5))
    assert (row.last_training_as_of, row.since_last_training) == (T0 + timedelta(hours=3), 40)  # imports at hour 4
    engine.dispose()


def test_two_projects_never_share_a_safe_name(store: AnnotationStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import IntegrityError

    store.projects.create("a b", CONFIG)
    store.projects.create("a_b-c8687a08", CONFIG)  # the safe name "a b" has: no longer its own
    with store.engine.connect() as connection:
        stored = dict(connection.execute(text("SELECT name, safe_name FROM projects")).all())
    assert stored == {"a b": "a_b-c8687a08", "a_b-c8687a08": naming.safe_name("a_b-c8687a08")}

    monkeypatch.setattr("active_learning.store.projects.safe_name", lambda name: "a_b-c8687a08")  # as a hash collision would
    with pytest.raises(SafeNameTakenError, match="project name 'a  b' has the safe name 'a_b-c8687a08' of project 'a b'"):
        store.projects.create("a  b", CONFIG)
    assert store.projects.names() == ["a b", "a_b-c8687a08"]
    with pytest.raises(IntegrityError), store.engine.begin() as connection:  # the database holds it too
        connection.execute(text("UPDATE projects SET safe_name = 'a_b-c8687a08' WHERE name = 'a_b-c8687a08'"))


@pytest.mark.parametrize("name", ["", " ", ".", ".."])
def test_the_store_refuses_names_no_project_may_have(store: AnnotationStore, name: str) -> None:
    with pytest.raises(ValueError, match="empty|only dots"):
        store.projects.create(name, CONFIG)
    assert store.projects.names() == []


def store_on(backend: str, tmp_path, request) -> AnnotationStore:  # type: ignore[no-untyped-def]
    engine = connect(f"sqlite:///{tmp_path / 'store.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url"))
    request.addfinalizer(engine.dispose)
    create_schema(engine)
    return AnnotationStore(engine)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_export_with_nul_characters_imports_them_replaced_and_counted(backend: str, tmp_path, request) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL cannot store NUL in text: it failed the whole import with a DataError."""
    from active_learning.exports import read_export

    store = store_on(backend, tmp_path, request)
    active_project(store)
    span = {"start": 0, "end": 13, "text": "Ada\x00 Lovelace", "labels": ["PER"]}
    export = [{
        "id": "t\x001", "data": {"text": "Ada\x00 Lovelace wrote.", "title": "no\x00te"},
        "completions": [{"id": "c\x001", "created_username": "an\x00a", "created_at": "2026-11-01T12:00:00Z",
                         "result": [{"type": "labels", "from_name": "label", "to_name": "text", "value": span}]}],
    }]
    records, summary = read_export(export, allowed_labels={"PER"})
    assert summary.as_dict()["repaired"] == {"NUL characters replaced": 5}  # text, title, both ids, annotator

    result = store.completions.import_tasks("news", records, arrived_at=T0)

    assert (result.new_tasks, result.new_completions) == (1, 1)
    [example] = store.completions.training_examples("news", T0)
    assert (example.task_id, example.text) == ("t\ufffd1", "Ada\ufffd Lovelace wrote.")
    assert example.spans == (Span(0, 13, "PER"),)  # one for one: the offsets still hold
    with store.engine.connect() as connection:
        stored = connection.execute(text(
            "SELECT t.source_id, t.text, t.title, c.source_id, c.annotator FROM tasks t JOIN completions c ON c.task_id = t.id"
        )).one()
    assert not any("\x00" in value for value in stored)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_long_project_name_goes_through_a_training_with_a_long_deploy_note(backend: str, tmp_path, request) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL enforced String(200): a 300-character name, or the gate's note naming two models, failed."""
    from active_learning.deploy.gate import Comparison

    store = store_on(backend, tmp_path, request)
    name = ("Redaktion Nachrichten und Meinung " * 10)[:300]
    store.projects.create(name, CONFIG, active_learning=True, author="a reviewer with a long name " * 10)
    store.completions.import_tasks(name, tasks(50), arrived_at=T0)
    [due] = poll(store.status, T0)
    store.trainings.start(name, run_key=due.run_id, source="active_learning", as_of=T0)
    deployed, new = (naming.model_name(name, T0 - timedelta(days=days)) for days in (1, 0))
    note = f"gate passed: {Comparison(new, 0.812, deployed, 0.79, 40).describe()}, tolerance 0.010; deployed (config revision 2)"
    assert len(name) == 300 and len(note) > 200

    store.trainings.update(due.run_id, model_name=new, model_version=2, deploy=note, status="success")
    store.projects.set_deployed_model(name, new)

    [training] = store.trainings.history(name)
    assert (training.project, training.model_name, training.deploy, training.status) == (name, new, note, "success")
    assert store.projects.get(name).deployed_model == new
    assert poll(store.status, T0 + timedelta(hours=1)) == []  # trained: nothing due
    widest = "\N{GRINNING FACE}" * naming.MAX_PROJECT_NAME  # 4 bytes each: still within the unique index's limit
    assert store.projects.create(widest, CONFIG).name == widest
