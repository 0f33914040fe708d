"""A project's status, one answer in one place: what the sensor's poll, the Active Learning page and
``active-learning projects`` all read.

The store reads every project's settings, completion counts, deployed model and last training in one
statement (:class:`active_learning.store.status.Statuses`); Label Studio projects get their live counts
from the server, one request per 100 of them (:meth:`active_learning.sources.Sources.live_counts`). A
project is *due* (:attr:`ProjectStatus.due`) when active learning is on and the completions that arrived
since its last training reach its frequency.

**The run id of a crossing.** A jump past several multiples is one crossing, trained once. The run id is
made of the project and its last training's as-of time only, so every poll that sees the same last
training (two polls at once, or a poll beside a backfill) names the same run, and Airflow refuses the
second. Once that training is recorded the next crossing needs N further completions.

**The config check** (for people: the page and the CLI) parses each labeling config once per process
(cached by its text: the same text parses the same in any project and database), and checks its model names against the models the history registered;
``validate-config --project`` and the detail page check against MLflow itself.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from active_learning import naming
from active_learning.constants import DEPLOY_AUTO, TRIGGERED_BY_ACTIVE_LEARNING, TRIGGERED_BY_HAND
from active_learning.store import ProjectStatus

if TYPE_CHECKING:
    from active_learning.backends import Backends
    from active_learning.labeling_config import ConfigProblem


class Pollable(Protocol):
    """Every source (:class:`active_learning.sources.Sources`), or our store's part (``store.status``)."""

    def poll(self, as_of: datetime, *, due_only: bool = False) -> list[ProjectStatus]: ...


@dataclass(frozen=True)
class DueTraining:
    project: str
    run_id: str
    as_of: datetime
    new_completions: int

    def trigger_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of one mapped TriggerDagRunOperator."""
        return {
            "trigger_run_id": self.run_id,
            "conf": {
                "project": self.project,
                "source": TRIGGERED_BY_ACTIVE_LEARNING,
                "as_of": self.as_of.isoformat(),
                "deploy": DEPLOY_AUTO,
            },
        }


def training_source(conf: dict[str, Any]) -> str:
    """What started a training run, from its conf: only the sensor says active_learning."""
    return TRIGGERED_BY_ACTIVE_LEARNING if conf.get("source") == TRIGGERED_BY_ACTIVE_LEARNING else TRIGGERED_BY_HAND


def training_run_id(project: str, last_training_as_of: datetime | None) -> str:
    after = last_training_as_of.strftime("%Y%m%dT%H%M%S.%f") if last_training_as_of else "start"
    return f"active_learning__{naming.safe_name(project)}__after_{after}"


def due_trainings(statuses: list[ProjectStatus], as_of: datetime) -> list[DueTraining]:
    return [
        DueTraining(row.name, training_run_id(row.name, row.last_training_as_of), as_of, row.since_last_training or 0)
        for row in statuses
        if row.due
    ]


def poll(sources: Pollable, as_of: datetime) -> list[DueTraining]:
    """What is due, with its run id: one statement over our store's active-learning projects (only the due
    ones come back) and one request per 100 active Label Studio projects."""
    return due_trainings(sources.poll(as_of, due_only=True), as_of)


def project_statuses(backends: Backends, as_of: datetime, *, name: str | None = None) -> list[ProjectStatus]:
    """Every project (or the one named) for people: settings, counts (Label Studio's live), deployed
    model, last training and config check. Two store statements, and one Label Studio request per 100 of
    its projects; a Label Studio that does not answer leaves its projects' counts empty."""
    pretrained = backends.pretrained

    def check(xml: str, own: frozenset[str], registered: frozenset[str]) -> tuple[ConfigProblem, ...]:
        return config_issues(xml, pretrained=pretrained, registered=registered, project_models=own)

    rows = backends.store.status.everything(as_of, name=name, check=check)
    return backends.sources.with_live_counts(rows)


# -- the config check ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ParsedConfig:
    structure_ok: bool
    models: frozenset[str]  # every model attribute the config's NER labels name


_PARSED: OrderedDict[str, _ParsedConfig] = OrderedDict()
_PARSED_MAX = 20_000
_LOCK = threading.Lock()


def named_models(xml: str) -> frozenset[str]:
    """Every model the config's NER labels name."""
    return _parsed(xml).models


def _parsed(xml: str) -> _ParsedConfig:
    with _LOCK:
        if xml in _PARSED:
            _PARSED.move_to_end(xml)
            return _PARSED[xml]
    from active_learning.labeling_config import LabelingConfigError, check_structure, list_labels

    try:
        parsed = _ParsedConfig(not check_structure(xml), frozenset(s.model for s in list_labels(xml) if s.model is not None))
    except LabelingConfigError:
        parsed = _ParsedConfig(False, frozenset())
    with _LOCK:
        _PARSED[xml] = parsed
        while len(_PARSED) > _PARSED_MAX:
            _PARSED.popitem(last=False)
    return parsed


def config_issues(
    xml: str,
    *,
    pretrained: frozenset[str],
    registered: frozenset[str],
    project_models: frozenset[str],
) -> tuple[ConfigProblem, ...]:
    """The config's problems, as ``validate-config --project`` reports them (the same function), but
    only computed in full when the cached parse shows there is one: a valid config costs a set lookup."""
    parsed = _parsed(xml)
    if parsed.structure_ok and parsed.models <= (pretrained | project_models):
        return ()
    from active_learning.labeling_config import validate_config

    problems = validate_config(xml, pretrained=pretrained, registered=registered | project_models,
                               project_models=project_models)
    return tuple(problems)
