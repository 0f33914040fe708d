"""Engine and schema of the annotation store."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event

from active_learning import settings
from active_learning.store.models import Base


def connect(url: str | None = None) -> Engine:
    url = url or settings.annotation_db_url()
    if url.startswith("sqlite"):
        # Airflow tasks, the CLI and the sensor write at once: wait for the lock instead of failing.
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_schema(engine: Engine) -> None:
    Base.metadata.create_all(engine)
