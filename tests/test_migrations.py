"""The annotation store's Alembic migrations, on SQLite and PostgreSQL.

PostgreSQL tests create a throwaway database on the server at ``ACTIVE_LEARNING_TEST_POSTGRES_URL``
(default: ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``, a maintenance database used only to
create and drop it) and skip, saying so, when that server is not reachable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import IntegrityError

from active_learning.store import AnnotationStore, connect, create_schema
from active_learning.store.db import (
    BASELINE_REVISION,
    MIGRATIONS_DIR,
    VERSION_TABLE,
    alembic_config,
    current_revision,
    head_revision,
)
from active_learning.store.models import Base

REPO = Path(__file__).resolve().parents[1]
CONFIG = '<View><Labels name="label" toName="text"><Label value="PER"/></Labels><Text name="text" value="$text"/></View>'
POSTGRES_ADMIN_URL = os.environ.get(
    "ACTIVE_LEARNING_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _postgres_admin() -> Engine:
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect():
            pass
    except Exception as error:  # noqa: BLE001 - any failure to connect means: no server for this test
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {make_url(POSTGRES_ADMIN_URL).render_as_string()}: {error}")
    return admin


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    admin = _postgres_admin()
    name = f"al_migrations_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = connect(db_url)
    yield engine
    engine.dispose()


def schema_diffs(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": VERSION_TABLE, "compare_type": True, "compare_server_default": True}
        )
        return compare_metadata(context, Base.metadata)


def test_upgrade_builds_exactly_what_the_models_declare(engine: Engine) -> None:
    create_schema(engine)

    with engine.connect() as connection:
        assert current_revision(connection) == head_revision()
    assert schema_diffs(engine) == []
    inspector = inspect(engine)
    indexes = {table: {i["name"]: i["column_names"] for i in inspector.get_indexes(table)} for table in inspector.get_table_names()}
    assert indexes["completions"]["ix_completions_project_arrived"] == ["project_id", "arrived_at"]
    assert indexes["training_runs"]["ix_training_runs_project_as_of"] == ["project_id", "as_of"]
    assert indexes["projects"]["ix_projects_active_learning"] == ["active_learning"]
    uniques = {
        table: {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}
        for table in ("projects", "tasks", "completions", "training_runs", "config_revisions")
    }
    assert uniques == {
        "projects": {("name",), ("safe_name",), ("source", "source_project_id")},
        "tasks": {("project_id", "source_id")},
        "completions": {("task_id", "source_id")},
        "training_runs": {("run_key",), ("model_name",)},
        "config_revisions": {("project_id", "revision")},
    }
    assert [c["name"] for c in inspector.get_check_constraints("projects")] == ["ck_projects_frequency"]


def test_the_frequency_check_and_the_cascades_hold_in_the_database(engine: Engine) -> None:
    create_schema(engine)
    store = AnnotationStore(engine)
    store.projects.create("news", CONFIG, active_learning=True)

    with pytest.raises(IntegrityError), engine.begin() as connection:  # past the Python-side check
        connection.execute(text("UPDATE projects SET frequency = 75 WHERE name = 'news'"))
    with engine.begin() as connection:  # foreign keys are on again after the migration (SQLite)
        connection.execute(text("DELETE FROM projects WHERE name = 'news'"))
        assert connection.execute(text("SELECT count(*) FROM config_revisions")).scalar() == 0


def test_a_second_upgrade_is_a_no_op(engine: Engine) -> None:
    create_schema(engine)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    create_schema(engine)

    written = [s for s in statements if s.lstrip().split()[0].upper() not in {"SELECT", "PRAGMA", "WITH"}]
    assert written == []
    assert len(statements) <= 4, statements  # the cheap path: is there a version table, and which revision
    with engine.connect() as connection:  # Alembic's own upgrade finds nothing to do either
        command.upgrade(alembic_config(connection), "head")
        connection.commit()
    assert schema_diffs(engine) == []


def test_a_database_from_before_the_migrations_is_stamped_and_kept(engine: Engine) -> None:
    # What create_schema's create_all built before migrations existed: revision 0001's schema, no version table.
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), BASELINE_REVISION)
        connection.exec_driver_sql(f"DROP TABLE {VERSION_TABLE}")
        connection.execute(text(
            "INSERT INTO projects (name, labeling_config, config_revision, text_key, active_learning, frequency, "
            "auto_deploy, created_at) VALUES ('news', :config, 1, 'text', false, 50, false, '2026-01-01 00:00:00')"
        ), {"config": CONFIG})

    create_schema(engine)

    with engine.connect() as connection:
        assert current_revision(connection) == head_revision()
    assert AnnotationStore(engine).projects.names() == ["news"]
    assert schema_diffs(engine) == []


def test_a_database_newer_than_the_code_is_refused_clearly(engine: Engine) -> None:
    create_schema(engine)
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'fromthefuture'"))

    with pytest.raises(RuntimeError, match="revision 'fromthefuture', which this code does not know"):
        create_schema(engine)


_RACE = """
import sys, time
from active_learning.store import AnnotationStore, connect, create_schema
engine = connect(sys.argv[1])
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
create_schema(engine)
print(AnnotationStore(engine).projects.names())
"""


def test_processes_creating_the_schema_at_once_all_succeed(db_url: str) -> None:
    """Every Airflow task calls create_schema: tasks starting together on a fresh store must not fail."""
    start = time.time() + 4  # past every process's imports, so their migrations overlap
    processes = [
        subprocess.Popen([sys.executable, "-c", _RACE, db_url, str(start)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in processes]

    assert [(code, out.strip()) for code, out, _ in results] == [(0, "[]")] * 4, [err[-2000:] for _, _, err in results]
    engine = connect(db_url)
    try:
        with engine.connect() as connection:
            assert current_revision(connection) == head_revision()
            assert connection.execute(text(f"SELECT count(*) FROM {VERSION_TABLE}")).scalar() == 1
        assert schema_diffs(engine) == []
    finally:
        engine.dispose()


def test_the_migrations_have_one_head_starting_at_the_baseline() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    revisions = list(script.walk_revisions())
    assert len(script.get_heads()) == 1
    assert revisions[-1].revision == BASELINE_REVISION and revisions[-1].down_revision is None


def test_the_migrations_ship_with_the_package() -> None:
    """A wheel (non-editable install) carries every file of the migration environment."""
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data["active_learning.store"]
    store_dir = MIGRATIONS_DIR.parent
    files = [
        path.relative_to(store_dir).as_posix()
        for path in MIGRATIONS_DIR.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    assert {"migrations/env.py", "migrations/script.py.mako", "migrations/versions/0001_initial.py"} <= set(files)
    assert [f for f in files if not any(fnmatch(f, p) and f.count("/") == p.count("/") for p in patterns)] == []


def test_store_times_round_trip_after_migration(engine: Engine) -> None:
    """The migration's plain DateTime columns keep what UTCDateTime writes: naive UTC in, aware UTC out."""
    create_schema(engine)
    store = AnnotationStore(engine)
    store.projects.create("news", CONFIG, active_learning=True)
    as_of = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    store.trainings.start("news", run_key="k", source="manual", as_of=as_of)
    assert store.trainings.get("k").as_of == as_of


def test_the_poll_counters_are_filled_from_the_history_on_upgrade(engine: Engine) -> None:
    """A store from before the counters (0003) gets them from its completions and trainings: the same
    values the store keeps as it goes, so the live poll answers the same."""
    from active_learning.exports import CompletionRecord, TaskRecord

    create_schema(engine)
    store = AnnotationStore(engine)
    t0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    for name, trained in (("news", True), ("quiet", False)):
        store.projects.create(name, CONFIG, active_learning=True)
        for hour, n in ((0, 30), (2, 25)):
            store.completions.import_tasks(name, [
                TaskRecord(f"t{hour}-{i}", "Ada wrote.", None, (CompletionRecord(f"c{i}", "ana", t0, t0, False, None, False, (), 0),))
                for i in range(n)
            ], arrived_at=t0.replace(hour=12 + hour))
        if trained:
            store.trainings.start(name, run_key=f"{name}-1", source="manual", as_of=t0.replace(hour=13))
    counters = "SELECT name, arrived_count, last_arrived_at, last_training_as_of, arrived_by_last_training FROM projects ORDER BY name"
    with engine.connect() as connection:
        kept = connection.execute(text(counters)).all()
    assert [(row[0], row[1], row[4]) for row in kept] == [("news", 55, 30), ("quiet", 55, 0)]

    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:  # the downgrade rebuilds `projects`: with foreign keys on, that would cascade-delete the rest
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        command.downgrade(alembic_config(connection), "0003")
        connection.commit()
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
    create_schema(engine)
    with engine.connect() as connection:
        assert connection.execute(text(counters)).all() == kept


def _project_rows_at_0005(engine: Engine, names: list[str]) -> None:
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0005")
        for name in names:
            connection.execute(text(
                "INSERT INTO projects (name, labeling_config, config_revision, text_key, active_learning, frequency, "
                "auto_deploy, created_at) VALUES (:name, :config, 1, 'text', false, 50, false, '2026-01-01 00:00:00')"
            ), {"name": name, "config": CONFIG})


def _downgrade(engine: Engine, revision: str) -> None:
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:  # the downgrade rebuilds `projects`: with foreign keys on, that would cascade-delete the rest
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        command.downgrade(alembic_config(connection), revision)
        connection.commit()
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")


def test_existing_projects_get_their_safe_names_on_upgrade(engine: Engine) -> None:
    """0006 fills projects.safe_name: unchanged for names that were safe or hashed, new only for names
    in the hashed form or of dots; and it goes down and up again."""
    from active_learning.naming import safe_name

    names = ["news", "a b", "a_b-c8687a08", "news-20261101", ".."]
    _project_rows_at_0005(engine, names)

    create_schema(engine)

    safe_names = "SELECT name, safe_name FROM projects"
    with engine.connect() as connection:
        stored = dict(connection.execute(text(safe_names)).all())
    assert stored == {name: safe_name(name) for name in names}
    assert (stored["news"], stored["a b"]) == ("news", "a_b-c8687a08") and len(set(stored.values())) == len(names)
    assert schema_diffs(engine) == []
    _downgrade(engine, "0005")
    assert "safe_name" not in {column["name"] for column in inspect(engine).get_columns("projects")}
    create_schema(engine)
    with engine.connect() as connection:
        assert dict(connection.execute(text(safe_names)).all()) == stored


def test_an_upgrade_finding_two_projects_with_one_safe_name_stops_and_names_them(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from active_learning import naming

    _project_rows_at_0005(engine, ["a b", "a  b"])
    monkeypatch.setattr(naming, "safe_name", lambda name: "a_b-c8687a08")  # as a hash collision would

    with pytest.raises(RuntimeError, match="projects 'a b' and 'a  b' have one safe name, 'a_b-c8687a08': rename one"):
        create_schema(engine)

    with engine.connect() as connection:
        assert current_revision(connection) == "0005"  # nothing half-done
    assert "safe_name" not in {column["name"] for column in inspect(engine).get_columns("projects")}


def test_training_params_are_stored_per_project_and_go_down_and_up_again(engine: Engine) -> None:
    """0007 adds projects.training_params (NULL for existing projects: the defaults); the downgrade drops it."""
    _project_rows_at_0005(engine, ["news"])
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0006")

    create_schema(engine)

    store = AnnotationStore(engine)
    assert store.projects.get("news").training_params == {}
    store.projects.set_training_params("news", {"training.max_steps": 5, "training.dropout": 0.2}, author="ann", reason="r")
    assert store.projects.get("news").training_params == {"training.max_steps": 5, "training.dropout": 0.2}
    assert schema_diffs(engine) == []
    _downgrade(engine, "0006")
    assert "training_params" not in {column["name"] for column in inspect(engine).get_columns("projects")}
    create_schema(engine)
    assert store.projects.get("news").training_params == {}


def test_existing_trainings_get_their_outcome_from_their_deploy_notes_on_upgrade(engine: Engine) -> None:
    """0010 adds training_runs.outcome and fills it from the notes the deploy steps wrote: the branch's note
    last, a refused gate first; a decision whose branch never ran, or no notes, stays NULL."""
    notes = {
        "deployed": "gate passed: new m2 F1 0.800 vs deployed m1 F1 0.700; deployed (config revision 3)",
        "forced": "deploy requested (gate overridden); deployed (config revision 4)",
        "refused": "gate refused: new m3 F1 0.500 vs deployed m2 F1 0.800; registered only (alias 'candidate')",
        "kept": "auto-deploy is off; registered only (alias 'candidate')",
        "undecided": "gate passed: new m5 F1 0.900 vs deployed m2 F1 0.800",  # the deploy task failed after it
        "failed": None,
    }
    _project_rows_at_0005(engine, ["news"])
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0009")
        for run_key, note in notes.items():
            connection.execute(text(
                "INSERT INTO training_runs (project_id, run_key, source, as_of, status, started_at, deploy) "
                "VALUES ((SELECT id FROM projects WHERE name = 'news'), :key, 'manual', '2026-01-01 00:00:00', 'success', "
                "'2026-01-01 00:00:00', :note)"), {"key": run_key, "note": note})

    create_schema(engine)

    store = AnnotationStore(engine)
    assert {run: store.trainings.get(run).outcome for run in notes} == {
        "deployed": "deployed", "forced": "deployed", "refused": "refused by the deploy gate",
        "kept": "registered only", "undecided": None, "failed": None}
    assert schema_diffs(engine) == []
    _downgrade(engine, "0009")
    assert "outcome" not in {column["name"] for column in inspect(engine).get_columns("training_runs")}
    create_schema(engine)
    assert store.trainings.get("deployed").outcome == "deployed"


def test_existing_predictions_are_margin_s_on_upgrade(engine: Engine) -> None:
    """0011 adds predictions.scorer: every prediction before it was scored by margin, the only scorer then."""
    _project_rows_at_0005(engine, ["news"])
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0010")
        connection.execute(text(
            "INSERT INTO predictions (project_id, task_source_id, model_name, score, result, created_at) VALUES "
            "((SELECT id FROM projects WHERE name = 'news'), 't1', 'news_ner_20260101_000000', 0.5, '[]', '2026-01-01 00:00:00')"))

    create_schema(engine)

    store = AnnotationStore(engine)
    assert store.predictions.scorers("news", "news_ner_20260101_000000") == {"margin"}
    assert schema_diffs(engine) == []
    _downgrade(engine, "0010")
    assert "scorer" not in {column["name"] for column in inspect(engine).get_columns("predictions")}
    create_schema(engine)
    assert store.predictions.scorers("news", "news_ner_20260101_000000") == {"margin"}
