"""The Active Learning page in Airflow's UI: a FastAPI app served by Airflow's API server.

Importing this package is cheap (no FastAPI, no Airflow API server code, no domain code): every
Airflow component loads plugins, but only the API server serves the page, so the FastAPI app in
:mod:`active_learning_airflow.ui.app` is built on its first request.
"""

from __future__ import annotations

import threading
from typing import Any

URL_PREFIX = "/active-learning"
NAV_ROUTE = "active-learning"


class LazyASGIApp:
    """An ASGI app that imports and builds the real one on first use, once per process."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    @property
    def app(self) -> Any:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from active_learning_airflow.ui.app import create_app

                    self._app = create_app()
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def __repr__(self) -> str:
        return "active_learning_airflow.ui.app:create_app()"


app = LazyASGIApp()
