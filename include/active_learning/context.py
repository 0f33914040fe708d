"""The store, the model registry and the pretrained-model list that every step works with."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from active_learning.labeling_config import load_pretrained_models
from active_learning.registry import ModelRegistry
from active_learning.store import AnnotationStore, connect, create_schema


@dataclass
class Context:
    db_url: str | None = None
    tracking_uri: str | None = None

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
