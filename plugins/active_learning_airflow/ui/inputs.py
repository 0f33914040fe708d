"""What the API's requests carry, checked before a handler runs: a bad value is a 422 from FastAPI, a NUL
character anywhere a 400 or 422 that names where (PostgreSQL can neither store nor compare one).

Every change names the config revision its form was rendered from (``config_revision``): the domain
writes it only onto that revision (see :mod:`active_learning_airflow.ui.revisions`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from active_learning.constants import DEPLOY_AUTO, DEPLOY_CHOICES
from active_learning.naming import MAX_PROJECT_NAME

ProjectName = Annotated[str, Query(min_length=1, max_length=MAX_PROJECT_NAME, description="the project's name")]
MAX_MODEL_NAME = 200  # ours have at most 88 characters; a pretrained model's name is the config's
ModelName = Field(min_length=1, max_length=MAX_MODEL_NAME, description="a model's name, as the labeling config names it")
DeployChoice = Literal[DEPLOY_CHOICES]  # type: ignore[valid-type]  # the same values as the DAG's param


def no_nul_in_query(request: Request) -> None:
    """Every route: a query parameter with a NUL character is a 400 that names it, before any handler runs."""
    for name, value in request.query_params.multi_items():
        if "\x00" in name or "\x00" in value:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"query parameter {name.replace(chr(0), '')!r} contains a NUL character")


def _nul_at(value: Any, where: str) -> str | None:
    """Where in a request body (``set.model.base``) a string holds a NUL character; None: nowhere."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if found := (f"{where}.{key}" if "\x00" in str(key) else _nul_at(item, f"{where}.{key}")):
            return found.lstrip(".")
    return None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is refused, not ignored

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if where := _nul_at(data, ""):
            raise ValueError(f"{where.replace(chr(0), '')} contains a NUL character")
        return data


class SettingsBody(_Body):
    config_revision: int = Field(ge=1, description="the config revision the form was rendered from")
    active_learning: bool | None = None
    frequency: int | None = Field(default=None, description="50, 100 or 200 new completions")
    auto_deploy: bool | None = None


class TrainingParamsBody(_Body):
    config_revision: int = Field(ge=1)
    set: dict[str, Any] = Field(default_factory=dict, description="parameter name -> value, for the project")
    unset: list[str] = Field(default_factory=list, description="parameters back to the deployment's or default value")


class NotificationsBody(_Body):
    emails: list[str] = Field(max_length=100, description="the project's own recipients (none: the deployment's only)")


class DeployBody(_Body):
    config_revision: int = Field(ge=1)
    model_name: str = ModelName


class ComparisonBody(_Body):
    model_name: str = ModelName


class RollbackBody(_Body):
    config_revision: int = Field(ge=1)
    to_revision: int = Field(ge=1)


class TrainBody(_Body):
    deploy: DeployChoice = DEPLOY_AUTO
