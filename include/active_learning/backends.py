"""The store, the model registry and the pretrained-model list that every step works with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from active_learning.labeling_config import load_pretrained_models
from active_learning.registry import ModelRegistry, ModelVersionInfo
from active_learning.store import AnnotationStore, connect, create_schema

if TYPE_CHECKING:
    from active_learning.sources.label_studio_client import LabelStudioConnection
    from active_learning.sources import CompletionSource, Sources


@dataclass
class Backends:
    db_url: str | None = None
    tracking_uri: str | None = None
    # How Label Studio's connection is found: AIRFLOW_CONN_LABEL_STUDIO_DEFAULT by default; Airflow
    # tasks pass Airflow's own lookup (active_learning_airflow.connections.task_backends).
    connection_lookup: Callable[[str], LabelStudioConnection] | None = None

    @cached_property
    def store(self) -> AnnotationStore:
        engine = connect(self.db_url)
        create_schema(engine)
        return AnnotationStore(engine)

    @cached_property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.tracking_uri)

    @cached_property
    def pretrained(self) -> frozenset[str]:
        return load_pretrained_models()

    @cached_property
    def sources(self) -> Sources:
        from active_learning.sources import Sources

        return Sources(self.store, self.connection_lookup)

    def deployed_version(self, project: str) -> ModelVersionInfo | None:
        """The project's deployed model if it is one of ours (None: nothing deployed, or a pretrained model)."""
        name = self.store.projects.get(project).deployed_model
        return self.model(name) if name else None

    def model(self, model_name: str) -> ModelVersionInfo | None:
        """The version a training of this loop registered as ``model_name``; None if none did, whatever MLflow
        holds under that name (:mod:`active_learning.provenance`)."""
        from active_learning.provenance import our_model

        return our_model(self.store, self.registry, model_name)

    def source(self, project: str) -> CompletionSource:
        """Where ``project``'s completions and live labeling config are (our store or Label Studio)."""
        return self.sources.for_project(project)
