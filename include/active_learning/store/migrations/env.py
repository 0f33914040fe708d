"""Alembic environment of the annotation store, run in code by ``active_learning.store.db``.

``create_schema`` hands over its own connection (``config.attributes["connection"]``), already inside the
transaction and lock it migrates under; without one (e.g. ``command.revision(..., autogenerate=True)``),
this connects to ``sqlalchemy.url`` or the store's configured URL. SQLite runs in batch mode, since it
cannot ALTER most things in place.
"""

from __future__ import annotations

from alembic import context

from active_learning.store.db import VERSION_TABLE, connect
from active_learning.store.models import Base

config = context.config


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=config.get_main_option("version_table") or VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("the annotation store's migrations run online only (no --sql)")

connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = connect(config.get_main_option("sqlalchemy.url") or None)
    try:
        with engine.connect() as own_connection:
            _run(own_connection)
            own_connection.commit()
    finally:
        engine.dispose()
