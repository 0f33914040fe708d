"""Engine and schema of the annotation store.

The schema is owned by Alembic migrations shipped inside the package (``store/migrations``);
:func:`create_schema` upgrades a database to the newest revision. Every process that opens the store
calls it (each Airflow task through :class:`active_learning.backends.Backends`), so it is built to be
cheap and safe to call from many processes at once:

- it first reads the database's revision (one small query) and returns when it is the newest;
- otherwise it migrates under a lock — ``BEGIN IMMEDIATE`` on SQLite (DDL and the version stamp in one
  write transaction), a transaction-scoped advisory lock on PostgreSQL — and re-reads the revision
  inside it, so a process that waited for another one's migration finds nothing left to do.

A database created before the migrations existed (by ``create_all``) is stamped with the first revision,
whose schema it has, and upgraded from there. New revisions: change ``models.py``, then, with
``ACTIVE_LEARNING_DB_URL`` pointing at a database at the newest revision::

    python -c "from alembic import command; from active_learning.store.db import alembic_config; \\
               command.revision(alembic_config(), message='what changed', autogenerate=True)"

and review the file it writes under ``store/migrations/versions/`` (autogenerate misses CHECK changes).
"""

from __future__ import annotations

import functools
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event, inspect, make_url

from active_learning import settings

if TYPE_CHECKING:  # Alembic is imported where it is used: importing the store stays cheap.
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Not Alembic's default "alembic_version": the store may share a database with Airflow's or MLflow's
# metadata (both Alembic-managed), and their version rows must never meet.
VERSION_TABLE = "active_learning_schema_version"
# The revision whose schema ``Base.metadata.create_all`` built before migrations existed.
BASELINE_REVISION = "0001"
# pg_advisory_xact_lock key serialising migrations of the store (any constant unique to this code).
_PG_LOCK_KEY = int.from_bytes(b"al-store", "big")
SQLITE_BUSY_TIMEOUT = 30  # seconds a SQLite connection waits for a lock, unless the URL's ?timeout= says


def connect(url: str | None = None) -> Engine:
    url = url or settings.annotation_db_url()
    if url.startswith("sqlite"):
        # Airflow tasks, the CLI and the sensor write at once: wait for the lock instead of failing
        # (30 s unless the URL says otherwise, e.g. ``sqlite:///store.db?timeout=5``).
        given = make_url(url).query.get("timeout")
        timeout = float(given if isinstance(given, str) else SQLITE_BUSY_TIMEOUT)
        engine = create_engine(url, connect_args={} if given else {"timeout": timeout})
        event.listen(engine, "connect", functools.partial(_sqlite_pragmas, timeout=timeout))
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection, _record, *, timeout: float) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    try:
        _wal(cursor, timeout)
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _wal(cursor, timeout: float) -> None:  # type: ignore[no-untyped-def]
    """Switch the file to WAL once (the mode persists). Switching takes an exclusive lock and SQLite does
    not wait on its busy timeout for it: processes opening a new store at once retry instead of failing,
    for as long as the busy timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() not in {"wal", "memory"}:
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code: no alembic.ini. Without ``connection``, env.py connects to
    ``sqlalchemy.url`` if set, else to ``ACTIVE_LEARNING_DB_URL`` (or its embedded default)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_table", VERSION_TABLE)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _revisions() -> tuple[str, frozenset[str]]:
    """The newest revision shipped with this code, and all of them (read once per process)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    heads = script.get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the store's migrations have {len(heads)} heads ({heads}); merge them")
    return heads[0], frozenset(revision.revision for revision in script.walk_revisions())


def head_revision() -> str:
    return _revisions()[0]


def current_revision(connection: Connection) -> str | None:
    """The revision a database is at; ``None`` for an empty (or pre-migrations) database."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def create_schema(engine: Engine) -> None:
    """Create or upgrade the store's schema to the newest revision; a no-op when it is current."""
    with engine.connect() as connection:
        current = current_revision(connection)
    head, known = _revisions()
    if current == head:
        return
    if current is not None and current not in known:
        # Newer code migrated this database (a rolling deploy, an old worker): refuse, don't guess.
        raise RuntimeError(
            f"the annotation store is at schema revision {current!r}, which this code does not know "
            f"(its newest is {head!r}): run this code's newer version"
        )
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            _upgrade_sqlite(connection)
        else:
            if connection.dialect.name == "postgresql":
                # Held until commit: a second process waits here, then finds the database at head.
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
            _upgrade(connection)
            connection.commit()


def _upgrade_sqlite(connection: Connection) -> None:
    # Batch migrations rebuild a table by copy-and-drop; with foreign keys on, dropping `projects` would
    # cascade-delete every task and completion. The pragma is ignored inside a transaction: set it first.
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        # Takes the write lock now (waiting up to the busy timeout), so the DDL of two processes never
        # interleaves; SQLite's DDL is transactional, so a failed migration leaves nothing behind.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            _upgrade(connection)
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"migration left rows with dangling foreign keys: {broken[:5]}")
        except BaseException:
            connection.rollback()
            raise
        connection.commit()
    finally:
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()


def _upgrade(connection: Connection) -> None:
    """Inside the caller's transaction and lock: stamp a pre-migrations database, then upgrade."""
    from alembic import command

    config = alembic_config(connection)
    tables = set(inspect(connection).get_table_names())
    if VERSION_TABLE not in tables and "projects" in tables:
        command.stamp(config, BASELINE_REVISION)
    command.upgrade(config, "head")
