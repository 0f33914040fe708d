"""The annotation store: projects, tasks, completions, training history and labeling-config revisions."""

from active_learning.store.db import connect, create_schema
from active_learning.store.repository import AnnotationStore

__all__ = ["AnnotationStore", "connect", "create_schema"]
