"""What the API's requests carry, checked before a handler runs: a bad value is a 422 from FastAPI.

Every change names the config revision its form was rendered from (``config_revision``): the domain
writes it only onto that revision (see :mod:`active_learning_airflow.ui.revisions`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from active_learning.constants import DEPLOY_AUTO, DEPLOY_CHOICES

ProjectName = Annotated[str, Query(min_length=1, max_length=200, description="the project's name")]
DeployChoice = Literal[DEPLOY_CHOICES]  # type: ignore[valid-type]  # the same values as the DAG's param


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is refused, not ignored


class SettingsBody(_Body):
    config_revision: int = Field(ge=1, description="the config revision the form was rendered from")
    active_learning: bool | None = None
    frequency: int | None = Field(default=None, description="50, 100 or 200 new completions")
    auto_deploy: bool | None = None


class TrainingParamsBody(_Body):
    config_revision: int = Field(ge=1)
    set: dict[str, Any] = Field(default_factory=dict, description="parameter name -> value, for the project")
    unset: list[str] = Field(default_factory=list, description="parameters back to the deployment's or default value")


class DeployBody(_Body):
    config_revision: int = Field(ge=1)
    model_name: str = Field(min_length=1, max_length=200)


class ComparisonBody(_Body):
    model_name: str = Field(min_length=1, max_length=200)


class RollbackBody(_Body):
    config_revision: int = Field(ge=1)
    to_revision: int = Field(ge=1)


class TrainBody(_Body):
    deploy: DeployChoice = DEPLOY_AUTO
