"""The handlers' way into the domain: one ``Backends`` per process and settings (its engines pool
their connections), and a project by name or a 404.

Domain code (SQLAlchemy store, MLflow) is imported on a handler's first call, not with the plugin.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, status

if TYPE_CHECKING:
    from active_learning.backends import Backends

_backends_by_settings: dict[tuple[str, str], Backends] = {}
_backends_lock = threading.Lock()


def domain() -> Backends:
    """The store and registry of the current settings, built once per process and reused."""
    from active_learning import settings
    from active_learning.backends import Backends

    key = (settings.annotation_db_url(), settings.mlflow_tracking_uri())
    with _backends_lock:
        backends = _backends_by_settings.get(key)
        if backends is None:
            backends = _backends_by_settings[key] = Backends(*key)
    return backends


def known_project(backends: Backends, name: str) -> Any:
    """The project's stored settings; an unknown name is the client's mistake: 404."""
    from active_learning.store import UnknownProjectError

    try:
        return backends.store.projects.get(name)
    except UnknownProjectError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
