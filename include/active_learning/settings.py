"""Where things live, read from the environment with embedded defaults under one local data folder.

| variable | default |
|---|---|
| ``ACTIVE_LEARNING_HOME`` | ``<repo>/.data`` |
| ``ACTIVE_LEARNING_DB_URL`` | ``sqlite:///$ACTIVE_LEARNING_HOME/annotations.db`` |
| ``MLFLOW_TRACKING_URI`` | ``sqlite:///$ACTIVE_LEARNING_HOME/mlflow.db`` (artifacts in ``mlartifacts/`` beside it) |
| ``ACTIVE_LEARNING_WARM_START`` | ``false``: train from scratch; ``true``: continue from the deployed model |
| ``ACTIVE_LEARNING_TRAINING_POOL_SLOTS`` | size of the training pool when it is created; default :func:`default_training_pool_slots` |
| ``ACTIVE_LEARNING_AIRFLOW_API_URL`` | none: ``import`` tells no Airflow (the poll finds its completions); else Airflow's base URL |
| ``ACTIVE_LEARNING_AIRFLOW_USERNAME``, ``..._PASSWORD`` | the Airflow user ``import`` announces completions as (``POST /auth/token``) |
| ``ACTIVE_LEARNING_WEBHOOK_URL`` | none: no webhook; else Airflow's base URL as Label Studio reaches it, for ``connect-label-studio`` |
"""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGS_DIR = REPO_ROOT / "include" / "configs"
# A training peaks at 650-800 MB (spaCy, its data, the model's upload to MLflow): a GiB each leaves headroom.
MEMORY_PER_TRAINING = 1 << 30
# A URL's scheme and authority (``user:password@host:port``), up to its path, query or fragment.
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<authority>[^/?#\s]*)(?P<rest>\S*)")
# Query parameters that carry a secret: libpq's password and sslpassword, API tokens and keys, signed URLs' sig.
_SECRET_PARAMETER = re.compile(
    r"(?P<name>[?&;](?:[a-z_]*password|passwd|pwd|[a-z_]*token|api_?key|[a-z_]*secret|sig|signature)=)[^&;#\s'\"]*",
    re.IGNORECASE,
)


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


def airflow_api() -> tuple[str, str, str] | None:
    """Airflow's base URL, user name and password for announcing completions from outside it; None: not set."""
    url = os.environ.get("ACTIVE_LEARNING_AIRFLOW_API_URL", "").strip().rstrip("/")
    if not url:
        return None
    return url, os.environ.get("ACTIVE_LEARNING_AIRFLOW_USERNAME", ""), os.environ.get("ACTIVE_LEARNING_AIRFLOW_PASSWORD", "")


def webhook_base_url() -> str | None:
    """Airflow's base URL as Label Studio reaches it, where ``connect-label-studio`` points the webhook; None: not set."""
    return os.environ.get("ACTIVE_LEARNING_WEBHOOK_URL", "").strip().rstrip("/") or None


def warm_start() -> bool:
    value = os.environ.get("ACTIVE_LEARNING_WARM_START", "false").strip().lower()
    if value not in {"true", "false", "1", "0", "yes", "no"}:
        raise ValueError(f"ACTIVE_LEARNING_WARM_START must be true or false, not {value!r}")
    return value in {"true", "1", "yes"}


def training_pool_slots() -> int:
    """How many tasks that load spaCy models may run at once, for creating the training pool:
    ``ACTIVE_LEARNING_TRAINING_POOL_SLOTS``, else what this machine holds."""
    value = os.environ.get("ACTIVE_LEARNING_TRAINING_POOL_SLOTS", "").strip()
    if not value:
        return default_training_pool_slots(_cores(), _available_memory())
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"ACTIVE_LEARNING_TRAINING_POOL_SLOTS must be a whole number >= 1, not {value!r}")
    return int(value)


def default_training_pool_slots(cores: int, available_memory: int | None) -> int:
    """One training per core, no more than fit in the available memory at ``MEMORY_PER_TRAINING`` each
    (unknown memory: cores only), and at least one: ``max(1, min(cores, available // 1 GiB))``."""
    by_memory = cores if available_memory is None else available_memory // MEMORY_PER_TRAINING
    return max(1, min(cores, by_memory))


def _cores() -> int:
    """The cores this process may run on (a container's or taskset's share, where the OS says)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _available_memory() -> int | None:
    """Memory available to new processes without swapping: Linux's MemAvailable, else the free pages."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def hide_passwords(text: str) -> str:
    """``text`` with the password of every URL in it shown as ``***``, as SQLAlchemy shows a database URL
    (``postgresql://al:***@db/annotations``), and so the value of every secret query parameter
    (``?password=***``, ``&token=***``): for whatever prints, logs or sends a URL or an error about one."""
    return _URL.sub(_hide_password, text)


def _hide_password(url: re.Match[str]) -> str:
    userinfo, _, host = url["authority"].rpartition("@")  # the host follows the last "@"
    user, colon, _ = userinfo.partition(":")
    authority = f"{user}:***@{host}" if colon else url["authority"]
    rest = _SECRET_PARAMETER.sub(r"\g<name>***", url["rest"])
    return f"{url['scheme']}{authority}{rest}"
