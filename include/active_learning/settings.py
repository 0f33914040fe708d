"""Where things live, read from the environment with embedded defaults under one local data folder.

| variable | default |
|---|---|
| ``ACTIVE_LEARNING_HOME`` | ``<repo>/.data`` |
| ``ACTIVE_LEARNING_DB_URL`` | ``sqlite:///$ACTIVE_LEARNING_HOME/annotations.db`` |
| ``MLFLOW_TRACKING_URI`` | ``sqlite:///$ACTIVE_LEARNING_HOME/mlflow.db`` (artifacts in ``mlartifacts/`` beside it) |
| ``ACTIVE_LEARNING_WARM_START`` | ``false``: train from scratch; ``true``: continue from the deployed model |
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGS_DIR = REPO_ROOT / "include" / "configs"


def data_home() -> Path:
    home = Path(os.environ.get("ACTIVE_LEARNING_HOME") or REPO_ROOT / ".data")
    home.mkdir(parents=True, exist_ok=True)
    return home


def annotation_db_url() -> str:
    return os.environ.get("ACTIVE_LEARNING_DB_URL") or f"sqlite:///{data_home() / 'annotations.db'}"


def mlflow_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{data_home() / 'mlflow.db'}"


def local_artifact_root() -> str | None:
    """Artifact root for new experiments when MLflow runs without a server; a server decides its own."""
    if mlflow_tracking_uri().startswith(("http://", "https://", "databricks")):
        return None
    return (data_home() / "mlartifacts").as_uri()


def warm_start() -> bool:
    value = os.environ.get("ACTIVE_LEARNING_WARM_START", "false").strip().lower()
    if value not in {"true", "false", "1", "0", "yes", "no"}:
        raise ValueError(f"ACTIVE_LEARNING_WARM_START must be true or false, not {value!r}")
    return value in {"true", "1", "yes"}
