"""Label Studio's connection as Airflow knows it, for tasks (imported inside them, never at DAG parse time).

``BaseHook.get_connection`` reads the secrets backend, ``AIRFLOW_CONN_LABEL_STUDIO_DEFAULT`` and the
metadata DB, in Airflow's order; the host is Label Studio's URL (or host name, with port and schema), the
password its API token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from active_learning.backends import Backends
    from active_learning.sources.label_studio_client import LabelStudioConnection


def label_studio_connection(conn_id: str) -> LabelStudioConnection:
    from active_learning.sources.label_studio_client import (
        WEBHOOK_SECRET_EXTRA,
        LabelStudioAuthError,
        LabelStudioConnection,
        connection_url,
    )
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as error:  # Airflow raises its own "not found" types across versions
        raise LabelStudioAuthError(
            f"Airflow has no connection {conn_id!r} ({type(error).__name__}): create it with host = Label Studio's "
            "URL and password = an API token"
        ) from None
    if not conn.host or not conn.password:
        raise LabelStudioAuthError(f"Airflow connection {conn_id!r} needs Label Studio's URL as host and an API token as password")
    return LabelStudioConnection(connection_url(conn.host, port=conn.port, scheme=conn.schema or conn.conn_type), conn.password, conn_id,
                                 webhook_secret=conn.extra_dejson.get(WEBHOOK_SECRET_EXTRA) or None)


def task_backends() -> Backends:
    """The domain's Backends for an Airflow task: Label Studio's connection comes from Airflow."""
    from active_learning.backends import Backends

    return Backends(connection_lookup=label_studio_connection)
