"""Names of projects' models in MLflow.

A project name is mapped to a *safe name* usable in MLflow registry names, file paths and Airflow run
ids: ASCII letters, digits, ``_``, ``-`` and ``.``, at most 69 of them. The mapping is one-to-one:

* a *plain* name (only those characters, at most 60, not only dots, and not ending in ``-`` and 8
  lowercase hex digits) is its own safe name;
* any other name becomes ``<slug>-<hash>``: transliterated, cut to 60 characters, then the first 8 hex
  digits of the SHA-256 of the exact name.

Every hashed safe name ends in ``-`` and 8 hex digits, which no plain name does, so no name can take a
plain name's safe name. Two hashed ones meet only if both their slugs and their hashes agree, which takes
about 2**32 tries to bring about on purpose (the hash keeps its 8 digits so that existing safe names stay
as they were): the store refuses such a second project (``projects.safe_name`` is unique). Why a longer
hash is not worth it: docs/operations.md, Threat model.

* registered model (one per project): ``<safe>_ner``
* model name (one per training):       ``<safe>_ner_<YYYYMMDD_HHMMSS>`` (training start, UTC)
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import UTC, datetime

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
# Safe characters, at most 60, not only dots, and not in the form every hashed safe name has.
_PLAIN = re.compile(r"(?!\.+\Z)(?!.*-[0-9a-f]{8}\Z)[A-Za-z0-9_.-]{1,60}")
_MAX_SLUG = 60
#: Longer names would not fit the store's unique index on PostgreSQL (at most 4 bytes a character).
MAX_PROJECT_NAME = 500
TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S"
MODEL_NAME_PATTERN = re.compile(r"^(?P<registered>[A-Za-z0-9_.-]+_ner)_(?P<stamp>\d{8}_\d{6})$")


def check_project_name(name: str) -> None:
    """Refuse a name no project may have, saying why (``ValueError``)."""
    if not name.strip():
        raise ValueError("a project name must not be empty or only whitespace")
    if not name.strip("."):
        raise ValueError(f"project name {name!r} is only dots: give it a letter or a digit")
    if "\x00" in name:
        raise ValueError(f"project name {name!r} contains a NUL character")
    if len(name) > MAX_PROJECT_NAME:
        raise ValueError(f"a project name may have at most {MAX_PROJECT_NAME} characters, not {len(name)}")


def safe_name(project: str) -> str:
    if _PLAIN.fullmatch(project):
        return project
    ascii_text = unicodedata.normalize("NFKD", project).encode("ascii", "ignore").decode()
    slug = _UNSAFE.sub("_", ascii_text).strip("_.-")[:_MAX_SLUG] or "project"
    digest = hashlib.sha256(project.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{slug}-{digest}"


def registered_model_name(project: str) -> str:
    return f"{safe_name(project)}_ner"


def model_name(project: str, trained_at: datetime) -> str:
    return f"{registered_model_name(project)}_{trained_at.astimezone(UTC).strftime(TIMESTAMP_FORMAT)}"


def parse_model_name(name: str) -> tuple[str, datetime] | None:
    """``(registered model name, training time)`` of one of our model names, else None."""
    match = MODEL_NAME_PATTERN.fullmatch(name)
    if match is None:
        return None
    stamp = datetime.strptime(match["stamp"], TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    return match["registered"], stamp


def trained_at(model_name: str | None) -> datetime | None:
    """A model of ours carries its training time (UTC, to the second) in its name; a pretrained one none."""
    parsed = parse_model_name(model_name) if model_name else None
    return parsed[1] if parsed else None
