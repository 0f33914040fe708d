"""Where the page's links point: Airflow's UI (the server that serves this page) and MLflow's UI."""

from __future__ import annotations

import os

from fastapi import Request

from active_learning_airflow.ui import URL_PREFIX


def links(request: Request) -> dict[str, str]:
    """Airflow's UI is this app's mount point without the plugin's prefix: right under a base_url sub-path too.
    Every viewer of the page gets these, so a password in the MLflow URL is shown as ``***``."""
    from active_learning import settings

    root = request.scope.get("root_path", "")
    airflow_base = root[: -len(URL_PREFIX)] if root.endswith(URL_PREFIX) else root
    mlflow = settings.hide_passwords(mlflow_ui_url(settings.mlflow_tracking_uri()))
    return {"airflow": f"{airflow_base}/", "mlflow": mlflow}


def mlflow_ui_url(tracking_uri: str) -> str:
    """``ACTIVE_LEARNING_MLFLOW_UI_URL``, else an HTTP tracking URI (a server serves its UI), else the
    ``mlflow ui`` of the README on port 5000."""
    explicit = os.environ.get("ACTIVE_LEARNING_MLFLOW_UI_URL")
    if explicit:
        return explicit.rstrip("/")
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return "http://localhost:5000"
