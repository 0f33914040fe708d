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
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGS_DIR = REPO_ROOT / "include" / "configs"
# A URL's scheme and authority (``user:password@host:port``), up to its path, query or fragment.
_URL_AUTHORITY = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<authority>[^/?#\s]*)")


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


def hide_passwords(text: str) -> str:
    """``text`` with the password of every URL in it shown as ``***``, as SQLAlchemy shows a database URL
    (``postgresql://al:***@db/annotations``): for whatever prints, logs or sends a URL or an error about one."""
    return _URL_AUTHORITY.sub(_hide_password, text)


def _hide_password(url: re.Match[str]) -> str:
    userinfo, _, host = url["authority"].rpartition("@")  # the host follows the last "@"
    user, colon, _ = userinfo.partition(":")
    return f"{url['scheme']}{user}:***@{host}" if colon else url[0]
