"""Which registered versions are the loop's own: the annotation store is the record, not MLflow.

Whoever can reach MLflow can register a version under a project's registered model, tag it with one of
our model names and move the ``deployed`` alias to it. A version counts as the loop's only if a training
of the project in the annotation store registered it (its name, version number and MLflow run), and that
run is in the project's experiment. Nothing a foreign version carries is deployed, warm-started from,
compared against or used to pre-annotate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from active_learning.naming import registered_model_name

if TYPE_CHECKING:
    from active_learning.registry import ModelRegistry, ModelVersionInfo
    from active_learning.store import AnnotationStore
    from active_learning.store.trainings import TrainingView


class ForeignModelError(ValueError):
    """A registered version, or a model name, that no training of this loop registered for the project."""


def our_model(store: AnnotationStore, registry: ModelRegistry, model_name: str) -> ModelVersionInfo | None:
    """The version a training registered under ``model_name``; None when no training of ours did."""
    training = store.trainings.that_registered(model_name)
    if training is None or training.model_version is None:
        return None
    return _checked(registry, training, training.model_version)


def our_version(store: AnnotationStore, registry: ModelRegistry, project: str, version: int) -> ModelVersionInfo:
    """Version ``version`` of ``project``'s registered model, if a training of ours registered it."""
    training = store.trainings.that_registered_version(project, version)
    if training is None:
        raise ForeignModelError(
            f"version {version} of registered model {registered_model_name(project)!r} was not registered by this loop "
            f"(no training of project {project!r} made it): it is not deployed"
        )
    return _checked(registry, training, version)


def _checked(registry: ModelRegistry, training: TrainingView, version: int) -> ModelVersionInfo:
    registered = registered_model_name(training.project)
    info = registry.model_version(registered, version)
    foreign = (
        info.model_name != training.model_name
        or info.run_id != training.mlflow_run_id
        or (experiment := registry.run_experiment(info.run_id)) is None  # the run is gone
        or experiment != registry.existing_experiment_id(training.project)
    )
    if foreign:
        raise ForeignModelError(
            f"version {version} of registered model {registered!r} is not the one training {training.run_key!r} registered "
            f"(its model name or MLflow run differs, or the run is outside the project's experiment): it is not used"
        )
    return info
