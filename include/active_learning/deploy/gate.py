"""The deploy gate: with auto-deploy on, a new model replaces the deployed one only if it scores at least
as well on the project's fixed evaluation set.

The evaluation set is the dev split of the new model's training data: the tasks tagged "test" in the
export when the project has any, else tasks assigned by a hash of their id (``dataset.is_dev``), so a
task never moves, and the set only grows as tasks are annotated.
Both models are scored on it now — the deployed model's old score, measured on an older and smaller
set, is never reused — each by a model that never trained on it: a refit version (``training/refit.py``,
trained on the dev part too) by its split-trained twin. A tolerance (F1 points, 0 by default) lets a
slightly worse model through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from active_learning.backends import Backends
from active_learning.constants import DEPLOY_ALWAYS, DEPLOY_AUTO, DEPLOY_REGISTER_ONLY
from active_learning.deploy.deployment import find_project_model
from active_learning.registry import ModelVersionInfo

# The gate's verdicts: the start of its reason, the first of a training's deploy notes (deploy.steps).
PASSED, REFUSED = "gate passed", "gate refused"


@dataclass(frozen=True)
class Comparison:
    candidate: str
    candidate_f1: float
    deployed: str | None
    deployed_f1: float | None
    eval_tasks: int

    def passes(self, tolerance: float) -> bool:
        return self.deployed_f1 is None or self.candidate_f1 >= self.deployed_f1 - tolerance

    def describe(self) -> str:
        against = (
            f"deployed {self.deployed} F1 {self.deployed_f1:.3f}" if self.deployed_f1 is not None
            else "no model of ours deployed"
        )
        return f"new {self.candidate} F1 {self.candidate_f1:.3f} vs {against}, on {self.eval_tasks} evaluation tasks"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class DeployDecision:
    deploy: bool
    reason: str
    comparison: Comparison | None = None  # None: the gate did not run (overridden, register only, auto-deploy off)

    @property
    def refused(self) -> bool:
        """The gate ran and kept the model out."""
        return self.comparison is not None and not self.deploy


def compare_with_deployed(backends: Backends, project: str, model_name: str) -> Comparison:
    """Score ``model_name`` and the project's deployed model (if it is one of ours) on the same tasks."""
    return compare(backends, find_project_model(backends, project, model_name))


def compare(backends: Backends, candidate: ModelVersionInfo) -> Comparison:
    """Score a registered version and its project's deployed model (if it is one of ours) on the same tasks,
    each through the model that never trained on them (:meth:`ModelRegistry.load_model`'s ``scored``)."""
    from active_learning.training.dataset import read_docs
    from active_learning.training.spacy_ner import score_ner
    from active_learning.training.workspace import private_workspace

    model_name = candidate.model_name
    deployed = backends.deployed_version(candidate.project)
    if deployed is not None and deployed.model_name == candidate.model_name:
        deployed = None  # a model is not compared with itself
    # Its own folder: the same model may be rescored twice at once (the gate, the page, `deploy`).
    with private_workspace("gate", model_name, "evaluate") as folder:
        dev_path = backends.registry.download_dataset(candidate.run_id or "", folder) / "dev.spacy"
        candidate_nlp = backends.registry.load_model(candidate, scored=True)
        docs = read_docs(candidate_nlp, dev_path)
        candidate_f1 = score_ner(candidate_nlp, docs).f1
        deployed_f1 = None
        if deployed is not None:
            deployed_nlp = backends.registry.load_model(deployed, scored=True)
            deployed_f1 = score_ner(deployed_nlp, read_docs(deployed_nlp, dev_path)).f1
    return Comparison(model_name, candidate_f1, deployed.model_name if deployed else None, deployed_f1, len(docs))


def decide(
    backends: Backends, model: ModelVersionInfo, *, choice: str = DEPLOY_AUTO, tolerance: float = 0.0
) -> DeployDecision:
    """Whether a freshly trained model goes into the config, and why (for the log, MLflow and the history)."""
    if choice == DEPLOY_ALWAYS:
        return DeployDecision(True, "deploy requested (gate overridden)")
    if choice == DEPLOY_REGISTER_ONLY:
        return DeployDecision(False, "register only requested")
    if not backends.store.projects.get(model.project).auto_deploy:
        return DeployDecision(False, "auto-deploy is off")
    comparison = compare(backends, model)
    passed = comparison.passes(tolerance)
    verdict = PASSED if passed else REFUSED
    reason = f"{verdict}: {comparison.describe()}" + (f", tolerance {tolerance:.3f}" if tolerance else "")
    backends.registry.set_version_tags(model, {"deploy_gate": verdict, "deploy_gate_reason": reason})
    return DeployDecision(passed, reason, comparison)


