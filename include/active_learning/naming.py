"""Names of projects' models in MLflow.

A project name is mapped to a *safe name* usable in MLflow registry names, file paths and Airflow run
ids: ASCII letters, digits, ``_``, ``-`` and ``.``. A name that is already safe is kept as is; any
other name is transliterated, cut to 60 characters and given a short hash of the original, so that two
different project names never share a safe name.

* registered model (one per project): ``<safe>_ner``
* model name (one per training):       ``<safe>_ner_<YYYYMMDD_HHMMSS>`` (training start, UTC)
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import UTC, datetime

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_MAX_SLUG = 60
TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S"
MODEL_NAME_PATTERN = re.compile(r"^(?P<registered>[A-Za-z0-9_.-]+_ner)_(?P<stamp>\d{8}_\d{6})$")


def safe_name(project: str) -> str:
    if not project or not project.strip():
        raise ValueError("a project name must not be empty")
    if _UNSAFE.search(project) is None and len(project) <= _MAX_SLUG:
        return project
    ascii_text = unicodedata.normalize("NFKD", project).encode("ascii", "ignore").decode()
    slug = _UNSAFE.sub("_", ascii_text).strip("_.-")[:_MAX_SLUG] or "project"
    digest = hashlib.sha256(project.encode()).hexdigest()[:8]
    return f"{slug}-{digest}"


def registered_model_name(project: str) -> str:
    return f"{safe_name(project)}_ner"


def model_name(project: str, trained_at: datetime) -> str:
    return f"{registered_model_name(project)}_{trained_at.astimezone(UTC).strftime(TIMESTAMP_FORMAT)}"


def parse_model_name(name: str) -> tuple[str, datetime] | None:
    """``(registered model name, training time)`` of one of our model names, else None."""
    match = MODEL_NAME_PATTERN.match(name)
    if match is None:
        return None
    stamp = datetime.strptime(match["stamp"], TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    return match["registered"], stamp


def trained_at(model_name: str | None) -> datetime | None:
    """A model of ours carries its training time (UTC, to the second) in its name; a pretrained one none."""
    parsed = parse_model_name(model_name) if model_name else None
    return parsed[1] if parsed else None
