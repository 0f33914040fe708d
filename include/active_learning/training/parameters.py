"""The training parameters a project may set: their names, types, ranges and defaults, their validation,
and the values a training uses.

Precedence, highest first: a single run's values (the training DAG's form), the project's, the
deployment-wide ``ACTIVE_LEARNING_SPACY_OVERRIDES``, then ``include/configs/ner.cfg`` (the split's
default is :func:`active_learning.training.dataset.split_examples`'s). Every parameter is a spaCy config
path but four of ours: the dev split, the refit (:mod:`active_learning.training.refit`), the base model
(:mod:`active_learning.training.base_model`) and the queue's strategy (:mod:`active_learning.preannotation.strategies`).
"""

from __future__ import annotations

import configparser
import difflib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from active_learning.preannotation import strategies
from active_learning.training import base_model
from active_learning.training.spacy_ner import NER_CONFIG_PATH, OVERRIDES_ENV_VAR as DEPLOYMENT_VARIABLE
from active_learning.training.spacy_ner import load_training_overrides

DEFAULT = "default"
DEPLOYMENT = "deployment"
PROJECT = "project"
RUN = "run"
DEV_PERCENT = "dataset.dev_percent"
DEFAULT_DEV_PERCENT = 20
REFIT = "dataset.refit"
DEFAULT_REFIT = False
BASE = "model.base"
STRATEGY = "queue.strategy"
OURS = {DEV_PERCENT: DEFAULT_DEV_PERCENT, REFIT: DEFAULT_REFIT, BASE: base_model.NONE,  # not spaCy's: never given to spaCy
        STRATEGY: strategies.DEFAULT_STRATEGY}


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: type  # int, float, bool or str
    minimum: float
    maximum: float
    description: str
    text_problem: Callable[[str], str | None] | None = None  # a str's form
    choices: tuple[str, ...] = ()  # a str's values, when they are few (the page offers them)

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value``, in one line; None when it is fine."""
        if self.kind is str:
            if not isinstance(value, str):
                return f"{self.name} must be text, not {value!r} ({type(value).__name__})"
            return self.text_problem(value) if self.text_problem else None
        if self.kind is bool:
            return None if isinstance(value, bool) else f"{self.name} must be true or false, not {value!r} ({type(value).__name__})"
        numeric = (int,) if self.kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, numeric):
            wanted = "an integer" if self.kind is int else "a number"
            return f"{self.name} must be {wanted}, not {value!r} ({type(value).__name__})"
        if not self.minimum <= value <= self.maximum:
            return f"{self.name} must be between {_number(self.minimum)} and {_number(self.maximum)}, not {value!r}"
        return None


PARAMETERS: dict[str, Parameter] = {p.name: p for p in (
    Parameter("training.max_epochs", int, 0, 10_000, "passes over the training data at most (0: no limit)"),
    Parameter("training.max_steps", int, 0, 1_000_000, "optimizer steps at most (0: no limit)"),
    Parameter("training.patience", int, 0, 1_000_000, "stop after this many steps without a better dev score (0: never)"),
    Parameter("training.dropout", float, 0, 0.9, "share of activations dropped while training"),
    Parameter("training.optimizer.learn_rate", float, 1e-6, 1, "the Adam optimizer's learning rate"),
    # A fixed number replaces ner.cfg's schedule, which grows batches from 100 to 1000 words.
    Parameter("training.batcher.size", int, 1, 100_000, "words per batch (default: growing from 100 to 1000)"),
    Parameter("training.eval_frequency", int, 1, 1_000_000, "steps between two scorings on the dev set"),
    Parameter(DEV_PERCENT, int, 1, 50,
              "percent of tasks in the dev (evaluation) set when no task is tagged Test; changing it changes that set"),
    Parameter(REFIT, bool, 0, 1, "train once more, on every task but those tagged Test, for as many passes as the "
              "split training's best; deploy that (the gate scores the split-trained twin)"),
    Parameter("system.seed", int, 0, 2**31 - 1, "the random seed of the weights and the batches"),
    Parameter(BASE, str, 0, 0, "where training starts: none (from scratch), a spaCy pipeline package or folder with "
              "an English 'ner', models:/<project>_ner@deployed (a model of this loop) or transformer:<name or folder>",
              base_model.problem),
    Parameter(STRATEGY, str, 0, 0, f"how the queue orders the tasks to annotate: {', '.join(strategies.STRATEGIES)}; the next "
              "model's pre-annotation scores by it", strategies.problem, strategies.STRATEGIES),
)}


class TrainingParameterError(ValueError):
    """Parameters refused, one line per problem; nothing was saved or trained."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def problems(values: Mapping[str, Any]) -> list[str]:
    """One line per bad value: an unknown name (with the closest known one), a wrong type, out of range."""
    found = []
    for name, value in values.items():
        parameter = PARAMETERS.get(name)
        if parameter is None:
            found.append(_unknown(name))
        elif (problem := parameter.problem(value)) is not None:
            found.append(problem)
    return found


def check(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as a dict when all are valid; else TrainingParameterError."""
    if not isinstance(values, Mapping):
        raise TrainingParameterError([f"training parameters must be an object of name: value, not {values!r}"])
    if found := problems(values):
        raise TrainingParameterError(found)
    return dict(values)


def changed(current: Mapping[str, Any], assign: Mapping[str, Any], unset: list[str],
            base_check: Callable[[str], str | None] | None = None) -> dict[str, Any]:
    """``current`` with ``assign`` set and ``unset`` removed, all checked before anything is returned.
    ``base_check``: whether a well-formed ``model.base`` can be used here (installed, a pipeline, ours:
    :func:`active_learning.training.base_model.check`)."""
    unknown = [_unknown(name) for name in unset if name not in PARAMETERS]
    found = unknown + problems(assign)
    if not found and base_check is not None and BASE in assign and (problem := base_check(assign[BASE])) is not None:
        found.append(problem)
    if found:
        raise TrainingParameterError(found)
    return {k: v for k, v in current.items() if k not in unset} | dict(assign)


def describe(assign: Mapping[str, Any], unset: list[str]) -> str:
    """The change in words, for its config revision's reason."""
    parts = [f"{name}={value!r}" for name, value in assign.items()] + [f"{name} unset" for name in unset]
    return "training parameters: " + ", ".join(parts)


def parse_assignment(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from the command line; VALUE is read as JSON (``3``, ``0.2``), else kept as text."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise TrainingParameterError([f"expected KEY=VALUE, like training.max_steps=2000, not {text!r}"])
    return name.strip(), _value(raw)


@dataclass(frozen=True)
class Effective:
    """The value of each parameter a training uses, and where it comes from."""

    values: dict[str, Any]
    sources: dict[str, str]
    deployment: dict[str, Any]  # ACTIVE_LEARNING_SPACY_OVERRIDES, documented parameters or not

    def spacy_overrides(self) -> dict[str, Any]:
        """What spaCy is given: the deployment's overrides, then every value that is not ner.cfg's."""
        chosen = {k: v for k, v in self.values.items() if self.sources[k] != DEFAULT and k not in OURS}
        return {k: v for k, v in self.deployment.items() if k not in OURS} | chosen

    @property
    def dev_percent(self) -> int:
        return int(self.values[DEV_PERCENT])

    @property
    def refit(self) -> bool:
        return bool(self.values[REFIT])

    @property
    def base(self) -> str:
        return str(self.values[BASE])

    @property
    def strategy(self) -> str:
        return str(self.values[STRATEGY])

    def rows(self) -> list[dict[str, Any]]:
        return [{"name": name, "value": self.values[name], "source": self.sources[name],
                 "description": PARAMETERS[name].description, "choices": list(PARAMETERS[name].choices)} for name in PARAMETERS]


def effective(project: Mapping[str, Any] | None = None, run: Mapping[str, Any] | None = None) -> Effective:
    """The values a training uses: the run's, else the project's, else the deployment's, else the default."""
    deployment = load_training_overrides()
    layers = ((RUN, run or {}), (PROJECT, project or {}), (DEPLOYMENT, deployment))
    values, sources = {}, {}
    for name in PARAMETERS:
        source, value = next(((s, layer[name]) for s, layer in layers if name in layer), (DEFAULT, default(name)))
        values[name], sources[name] = value, source
    return Effective(values, sources, dict(deployment))


def default(name: str) -> Any:
    """ner.cfg's value (a section, such as the batch size's schedule, as a dict), or the default of one of ours."""
    if name in OURS:
        return OURS[name]
    config = _ner_config()
    section, _, key = name.rpartition(".")
    if config.has_option(section, key):
        return _value(config.get(section, key))
    return {k: _value(v) for k, v in config.items(name)}


@cache
def _ner_config() -> configparser.RawConfigParser:
    # spaCy's config is INI with JSON values; read raw, so that reading it needs no spaCy.
    config = configparser.RawConfigParser(delimiters=("=",))
    config.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    config.read(NER_CONFIG_PATH, encoding="utf-8")
    return config


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, PARAMETERS, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(PARAMETERS)}"
    return f"unknown training parameter {name!r}: {hint}"


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
