"""Deploying a model into a project's labeling config, validating it, and rolling it back.

The same functions serve the training DAG's *update config* branch, the manual deploy DAG, the sensor
that applies ``deployed`` alias moves made in the MLflow UI, and the CLI.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass

from active_learning.backends import Backends
from active_learning.sources.label_studio_client import LabelStudioValidationError
from active_learning.labeling_config import ConfigProblem, assign_model, list_labels, validate_config
from active_learning.naming import registered_model_name
from active_learning.provenance import ForeignModelError, our_version
from active_learning.registry import CANDIDATE, DEPLOYED, ModelVersionInfo
from active_learning.store import ConfigConflictError

log = logging.getLogger(__name__)
WRITE_ATTEMPTS = 5


class DeployError(RuntimeError):
    """A deploy that cannot happen; nothing was written."""


class ConfigValidationError(DeployError):
    def __init__(self, project: str, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"the labeling config of project {project!r} is invalid:\n{lines}")


@dataclass(frozen=True)
class DeployResult:
    project: str
    model_name: str
    version: int
    revision: int
    changed: bool


def find_project_model(backends: Backends, project: str, model_name: str) -> ModelVersionInfo:
    """The version a training of ``project`` registered as ``model_name``; a name no training of ours
    registered is refused, whatever MLflow holds under it (:mod:`active_learning.provenance`)."""
    info = backends.model(model_name)
    if info is None:
        known = sorted(v.model_name for v in backends.registry.project_models(project))
        close = difflib.get_close_matches(model_name, known, n=3, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else f"project {project!r} has {len(known)} registered models"
        raise DeployError(f"no registered model named {model_name!r} ({hint})")
    if info.registered_name != registered_model_name(project):
        raise DeployError(f"model {model_name!r} belongs to project {info.project!r}, not to {project!r}")
    return info


def config_problems(backends: Backends, project: str, xml: str, *, also_known: tuple[str, ...] = ()) -> list[ConfigProblem]:
    project_models = {v.model_name for v in backends.registry.project_models(project)} | set(also_known)
    registered = backends.registry.model_names() | project_models
    return validate_config(xml, pretrained=backends.pretrained, registered=registered, project_models=project_models)


def deploy_model(
    backends: Backends, project: str, model_name: str, *, author: str, reason: str, expected_revision: int | None = None,
    model: ModelVersionInfo | None = None,
) -> DeployResult:
    """Name ``model_name`` in every untied label it was trained on, then move the ``deployed`` alias.

    The new config is validated before it is written, and written only if nobody changed the config
    meanwhile (else re-read and re-applied): an invalid or half-made config never goes live. With
    ``expected_revision`` (a person's decision, taken on that revision) a change meanwhile is not
    re-applied but refused: :class:`ConfigConflictError`. ``model``: the version, when the caller has it
    (a training's ``register`` step): MLflow is then not asked for it again.
    """
    info = model if model is not None else find_project_model(backends, project, model_name)
    source = backends.source(project)
    for _ in range(WRITE_ATTEMPTS):
        current = source.read_config(project)
        _check_revision(project, current.revision, expected_revision)
        updated = assign_model(current.xml, model_name=model_name, trained_labels=backends.registry.labels(info), pretrained=backends.pretrained)
        problems = config_problems(backends, project, updated, also_known=(model_name,))
        if problems:
            raise ConfigValidationError(project, problems)
        if updated == current.xml:
            revision, changed = current.revision, False
            break
        try:
            revision = write_config(backends, project, updated, expected_revision=current.revision, author=author, reason=reason)
            changed = True
            break
        except ConfigConflictError:
            if expected_revision is not None:
                raise
            log.info("labeling config of %s changed meanwhile; applying the deploy again", project)
    else:
        raise DeployError(f"the labeling config of {project!r} kept changing; {WRITE_ATTEMPTS} attempts failed")
    backends.registry.set_alias(info.registered_name, DEPLOYED, info.version)
    backends.store.projects.set_deployed_model(project, model_name)
    return DeployResult(project, model_name, info.version, revision, changed)


def mark_candidate(backends: Backends, model: ModelVersionInfo) -> None:
    """Register-only branch: the model waits, under the ``candidate`` alias, for a person to deploy it."""
    backends.registry.set_alias(model.registered_name, CANDIDATE, model.version)


def write_config(backends: Backends, project: str, xml: str, *, expected_revision: int, author: str, reason: str) -> int:
    """Write a validated config to the project's source; Label Studio's refusal (400) is a validation error
    like ours, and then nothing is written anywhere."""
    try:
        return backends.source(project).write_config(
            project, xml, expected_revision=expected_revision, author=author, reason=reason
        ).revision
    except LabelStudioValidationError as error:
        raise ConfigValidationError(project, [ConfigProblem(f"Label Studio refused it: {m}") for m in error.messages]) from None


def validate_project(backends: Backends, project: str) -> list[ConfigProblem]:
    return config_problems(backends, project, backends.source(project).read_config(project).xml)


def rollback(backends: Backends, project: str, *, to_revision: int | None, author: str, expected_revision: int | None = None) -> int:
    """Make an earlier revision live again, as a new revision (history is never rewritten); with
    ``expected_revision``, only if the config is still at that revision."""
    revisions = backends.store.configs.revisions(project)
    current = revisions[-1]
    _check_revision(project, current.revision, expected_revision)
    if to_revision is None:
        if len(revisions) < 2:
            raise DeployError(f"project {project!r} has only one config revision: nothing to roll back to")
        to_revision = revisions[-2].revision
    target = next((r for r in revisions if r.revision == to_revision), None)
    if target is None:
        raise DeployError(f"project {project!r} has no config revision {to_revision} (it has 1 to {current.revision})")
    problems = config_problems(backends, project, target.labeling_config)
    if problems:
        raise ConfigValidationError(project, problems)
    revision = write_config(
        backends, project, target.labeling_config, expected_revision=current.revision, author=author,
        reason=f"rollback to revision {to_revision}",
    )
    _deployed_follows_config(backends, project, target.labeling_config)
    return revision


def _check_revision(project: str, live: int, expected: int | None) -> None:
    if expected is not None and live != expected:
        raise ConfigConflictError(project, expected)


def _deployed_follows_config(backends: Backends, project: str, xml: str) -> None:
    """The deployed model (store and MLflow alias) becomes the one of ours the live config names, if any.

    Else a rolled-back model would stay ``deployed``: the gate would compare against it, a warm start
    would continue from it, and the sensor would re-apply the alias and undo the rollback.
    """
    registered = registered_model_name(project)
    named = {label.model for label in list_labels(xml) if label.model}
    ours = [info for info in map(backends.model, sorted(named)) if info and info.registered_name == registered]
    if ours:
        info = max(ours, key=lambda found: found.version)
        backends.registry.set_alias(registered, DEPLOYED, info.version)
        backends.store.projects.set_deployed_model(project, info.model_name)
    else:
        backends.registry.delete_alias(registered, DEPLOYED)
        backends.store.projects.set_deployed_model(project, None)


@dataclass(frozen=True)
class AliasMoves:
    applied: list[DeployResult]
    refused: list[str]  # one line per alias on a version this loop did not register

    def raise_refused(self) -> None:
        if self.refused:
            lines = "\n".join(f"  - {line}" for line in self.refused)
            raise ForeignAliasError(f"{len(self.refused)} '{DEPLOYED}' alias move(s) refused:\n{lines}")


class ForeignAliasError(DeployError):
    """``deployed`` aliases on versions this loop did not register (:mod:`active_learning.provenance`)."""


def apply_alias_moves(backends: Backends) -> AliasMoves:
    """Apply ``deployed`` aliases that a person moved in the MLflow UI to the projects' configs; an alias on
    a version this loop did not register is refused, and the other projects' moves still applied."""
    deployed = backends.registry.deployed_versions()
    moves = AliasMoves([], [])
    for project, current_model in backends.store.projects.deployed_models().items():
        version = deployed.get(registered_model_name(project))
        if version is None:
            continue
        try:
            info = our_version(backends.store, backends.registry, project, version)
        except ForeignModelError as error:
            moves.refused.append(f"project {project!r}: {error}; move the alias back to a version of ours")
            log.error("'%s' alias not applied: %s", DEPLOYED, moves.refused[-1])
            continue
        if info.model_name != current_model:
            reason = f"alias '{DEPLOYED}' moved to version {version}"
            moves.applied.append(deploy_model(backends, project, info.model_name, author="mlflow", reason=reason, model=info))
    return moves
