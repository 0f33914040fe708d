"""Would active learning pay off here? The loop replayed on tasks that are labelled already.

The pool's completions play the annotator. Round 0 trains on ``seed_size`` tasks drawn at random; each of
the ``rounds`` after it pre-annotates the rest of the pool with the newest model (:func:`predict`, as the
live loop does), reveals the ``batch`` tasks the strategy picks and trains again:

* ``margin``, ``mnlp``, ``entity``, ``dropout``: a diverse batch of the least confident by that scorer
  (:mod:`active_learning.preannotation.scoring`), near-duplicates dropped (:func:`choose_batch`; with
  ``spread`` off, the least confident distinct texts); ``uncertainty``, the name of the only scorer before
  there were four, is ``margin``;
* ``random``: the next tasks of one seeded shuffle of the pool.

Cost is counted as annotators pay it: each round reports the tasks revealed so far (``annotations``), their
tokens (spaCy's English tokenizer, as training reads them) and the entities their completions hold.

For one seed both strategies start from the same seed tasks, so their curves differ only by what they
chose. Every round's model is scored on the eval export by :func:`score_ner` (spaCy's scorer, exact spans,
the completion each task's selection policy chooses), and the curve goes to MLflow: experiment
:data:`EXPERIMENT` (apart from the projects' ``active-learning/<project>``), one run per simulation,
metrics at step = annotations, the tasks each round revealed in ``simulation.json``.

**Training** is the live loop's (:func:`split_examples` into train and dev, :func:`to_docs`, :func:`train_ner`
with ``include/configs/ner.cfg``): every round trains from scratch and stops early on its own dev part, as
a live training does, so a later round with more data trains longer. :data:`SIMULATION_OVERRIDES` makes it
faster the same way for every round and strategy: an evaluation every 100 steps, stopping after 400 steps
without a better one (the live loop: every 200, after 1,600). ``ACTIVE_LEARNING_SPACY_OVERRIDES`` applies on
top, as in the live loop.

**The base** (``base``, as the training parameter ``model.base``: :mod:`active_learning.training.base_model`)
is where every round's training starts: none (from scratch), or a pretrained pipeline's NER, so a team sees
on its own labelled data what a base buys before it switches one on.

**The seed** draws the seed tasks and the random order and is spaCy's (``system.seed`` and ``training.seed``):
on the CPU the same arguments give the same curve.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from active_learning.exports import read_export
from active_learning.labeling_config import list_labels, text_key
from active_learning.preannotation.batch import Candidate, choose_batch
from active_learning.preannotation.scoring import predict
from active_learning.preannotation.strategies import MARGIN, RANDOM, SCORER_NAMES, UNCERTAINTY
from active_learning.selection import TrainingExample, training_example
from active_learning.settings import local_artifact_root
from active_learning.training import base_model
from active_learning.training.base_model import BaseModel, BaseModelError
from active_learning.training.dataset import split_examples, to_docs, write_docbin
from active_learning.training.spacy_ner import NER_CONFIG_PATH, load_model, load_training_overrides, score_ner, train_ner
from active_learning.training.steps import MIN_EXAMPLES
from active_learning.training.workspace import private_workspace

if TYPE_CHECKING:
    from spacy.language import Language

    from active_learning.backends import Backends
    from active_learning.registry import ModelRegistry

EXPERIMENT = "active-learning-simulations"
STRATEGIES = (*SCORER_NAMES, RANDOM, UNCERTAINTY)
SCORER_OF = {**{name: name for name in SCORER_NAMES}, UNCERTAINTY: MARGIN}  # the strategies that rank by a scorer
#: Each round stops early on its dev part, as the live loop does, sooner: 400 steps without a better evaluation.
SIMULATION_OVERRIDES: dict[str, object] = {"training.patience": 400, "training.eval_frequency": 100}
METRICS = ("f1", "precision", "recall", "seconds", "tokens", "entities")


class SimulationError(ValueError):
    """Arguments or data a simulation cannot run with (the CLI's usage errors)."""


@dataclass(frozen=True)
class SimulationSettings:
    strategy: str
    seed_size: int
    batch: int
    rounds: int
    seed: int = 0
    base: str = base_model.NONE
    spread: bool = True  # a scorer's batch spread over the doubtful texts (k-means), not their top N

    def check(self) -> None:
        if self.strategy not in STRATEGIES:
            raise SimulationError(f"--strategy must be one of {', '.join(STRATEGIES)}, not {self.strategy!r}")
        for flag, value, least, why in (("--seed-size", self.seed_size, MIN_EXAMPLES, " (training needs a train and a dev task)"),
                                        ("--batch", self.batch, 1, ""), ("--rounds", self.rounds, 0, "")):
            if value < least:
                raise SimulationError(f"{flag} must be at least {least}, not {value}{why}")

    @property
    def annotations(self) -> int:
        """Tasks revealed by the last round."""
        return self.seed_size + self.batch * self.rounds


@dataclass(frozen=True)
class Simulation:
    """What a simulation runs on, read and checked: the pool, the tasks to score on, where they came from."""

    settings: SimulationSettings
    pool: list[TrainingExample]
    evaluation: list[TrainingExample]
    files: dict[str, str]  # tasks, eval_tasks, config -> file name, for MLflow
    base: BaseModel | None = None  # where every round's training starts; None: from scratch


@dataclass(frozen=True)
class RoundResult:
    annotations: int  # tasks revealed so far
    tokens: int  # their tokens
    entities: int  # the entities of their chosen completions
    precision: float
    recall: float
    f1: float
    seconds: float  # the round's wall time: pre-annotation and choice, training, scoring
    revealed: tuple[str, ...]  # task ids this round added (round 0: the seed tasks)

    def as_dict(self) -> dict[str, Any]:
        return {"annotations": self.annotations, "tokens": self.tokens, "entities": self.entities,
                "precision": self.precision, "recall": self.recall, "f1": self.f1, "seconds": self.seconds}


def load_simulation(tasks: Path, config: Path, eval_tasks: Path, settings: SimulationSettings,
                    backends: Backends | None = None, scratch: Path | None = None) -> Simulation:
    """Read and check everything before anything trains; bad arguments raise :class:`SimulationError`.
    ``settings.base`` is located here (a registered model, through ``backends``, downloaded under ``scratch``)."""
    settings.check()
    try:
        base = base_model.locate(settings.base, scratch, backends) if base_model.uses_base(settings.base) else None
    except BaseModelError as error:
        raise SimulationError(str(error)) from None
    xml = config.read_text(encoding="utf-8")
    pool, evaluation = load_examples(tasks, xml), load_examples(eval_tasks, xml)
    if not evaluation:
        raise SimulationError(f"--eval-tasks {eval_tasks} has no task with a submitted completion to score on")
    if settings.seed_size > len(pool):
        raise SimulationError(f"--seed-size {settings.seed_size} is larger than the pool ({len(pool)} labelled tasks in {tasks})")
    if settings.annotations > len(pool):
        raise SimulationError(f"--seed-size {settings.seed_size} + --batch {settings.batch} x --rounds {settings.rounds} = "
                              f"{settings.annotations} tasks, more than the pool's {len(pool)} ({tasks})")
    return Simulation(settings, pool, evaluation, {"tasks": tasks.name, "eval_tasks": eval_tasks.name, "config": config.name}, base)


def load_examples(path: Path, xml: str) -> list[TrainingExample]:
    """The export's tasks with the completion the selection policy chooses, spans of the config's NER labels."""
    labels = {label.value for label in list_labels(xml) if not label.assertion}
    tasks, _ = read_export(path, text_key=text_key(xml), allowed_labels=labels)
    chosen = (training_example(task.source_id, task.text, task.completions) for task in tasks)
    return [example for example in chosen if example is not None]


def training_overrides(seed: int) -> dict[str, object]:
    return SIMULATION_OVERRIDES | load_training_overrides() | {"system.seed": seed, "training.seed": seed}


def run_simulation(registry: ModelRegistry, simulation: Simulation) -> dict[str, Any]:
    """Simulate, logging each round to MLflow as it ends; returns ``{"strategy", "rounds": [...]}``."""
    settings = simulation.settings
    overrides = training_overrides(settings.seed)
    run_id = _start_run(registry, simulation, overrides)
    rounds: list[RoundResult] = []
    try:
        for result in simulate(simulation, overrides):
            rounds.append(result)
            _log_round(registry, run_id, result)
    except BaseException:
        registry.finish_run(run_id, "FAILED")
        raise
    summary = {"strategy": settings.strategy, "spread": settings.spread, "base": simulation.base.describe() if simulation.base else base_model.NONE,
               "rounds": [result.as_dict() for result in rounds]}
    registry.client.log_dict(run_id, {**summary, "revealed": [list(result.revealed) for result in rounds]}, "simulation.json")
    registry.finish_run(run_id)
    return summary


def simulate(simulation: Simulation, overrides: dict[str, object]) -> Iterator[RoundResult]:
    """One :class:`RoundResult` per round, round 0 (the seed tasks) first."""
    import spacy

    settings, pool = simulation.settings, simulation.pool
    blank = spacy.blank("en")
    evaluation, _ = to_docs(blank, simulation.evaluation)
    tokens = {example.task_id: len(blank.make_doc(example.text)) for example in pool}
    order = list(pool)
    random.Random(settings.seed).shuffle(order)
    labelled = order[: settings.seed_size]
    revealed, nlp = labelled, None
    with private_workspace("simulation", settings.strategy, "rounds") as folder:
        config = NER_CONFIG_PATH
        if simulation.base is not None:  # the labels the pool's completions use, as the live loop's data
            labels = {span.label for example in pool for span in example.spans}
            config = base_model.training_config(simulation.base, labels, NER_CONFIG_PATH, folder / "base-start")
        for round_number in range(settings.rounds + 1):
            started = time.perf_counter()
            if nlp is not None:
                revealed = next_batch(settings, pool, order, {example.task_id for example in labelled}, nlp)
                labelled = labelled + revealed
            nlp = _train(blank, labelled, folder / f"round-{round_number}", overrides, config)
            scores = score_ner(nlp, evaluation)
            yield RoundResult(len(labelled), sum(tokens[example.task_id] for example in labelled),
                              sum(len(example.spans) for example in labelled), scores.precision, scores.recall, scores.f1,
                              round(time.perf_counter() - started, 3), tuple(example.task_id for example in revealed))


def next_batch(
    settings: SimulationSettings, pool: Sequence[TrainingExample], order: Sequence[TrainingExample], labelled: set[str], nlp: Language
) -> list[TrainingExample]:
    """The tasks the strategy reveals next; a scorer's strategy pre-annotates every waiting task first, as the live loop."""
    if settings.strategy == RANDOM:
        return [example for example in order if example.task_id not in labelled][: settings.batch]
    waiting = [example for example in pool if example.task_id not in labelled]  # in the pool's order
    scored = predict(nlp, [example.text for example in waiting], scorer=SCORER_OF[settings.strategy])
    candidates = [Candidate(example.task_id, example.text, result.score if result is not None else 1.0)  # unscored: last
                  for example, result in zip(waiting, scored, strict=True)]
    known = [example.text for example in pool if example.task_id in labelled]
    chosen = choose_batch(candidates, settings.batch, labelled=known, spread=settings.spread)
    by_id = {example.task_id: example for example in waiting}
    return [by_id[task] for task in chosen]


def _train(blank: Language, examples: list[TrainingExample], folder: Path, overrides: dict[str, object],
           config: Path) -> Language:
    """The live loop's training on ``examples`` (split into train and dev as it splits them), with ``config``
    (ner.cfg, or one that starts from a base); the model, in memory."""
    corpora = [write_docbin(to_docs(blank, part)[0], folder / f"{name}.spacy")
               for name, part in zip(("train", "dev"), split_examples(examples), strict=True)]
    with contextlib.redirect_stdout(sys.stderr):  # spaCy's progress table; stdout is for the result
        outcome = train_ner(*corpora, folder / "output", overrides=overrides, config_path=config)
    nlp = load_model(outcome.model_dir)
    shutil.rmtree(folder)  # a round's model lives on in memory only
    return nlp


def _start_run(registry: ModelRegistry, simulation: Simulation, overrides: dict[str, object]) -> str:
    settings = simulation.settings
    experiment = registry.client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else registry.client.create_experiment(
        EXPERIMENT, artifact_location=local_artifact_root())
    run = registry.client.create_run(
        experiment_id, run_name=f"{settings.strategy} seed {settings.seed} on {simulation.files['tasks']} {datetime.now():%Y-%m-%d %H:%M:%S}"
    )
    registry.log_params(run.info.run_id, {
        "strategy": settings.strategy, "spread": settings.spread, "seed_size": settings.seed_size, "batch": settings.batch,
        "rounds": settings.rounds,
        "seed": settings.seed, "pool": len(simulation.pool), "eval_size": len(simulation.evaluation), **simulation.files,
        **(simulation.base.params() if simulation.base else {"base_model": base_model.NONE}),
        **{f"spacy.{key}": value for key, value in overrides.items()},
    })
    return run.info.run_id


def _log_round(registry: ModelRegistry, run_id: str, result: RoundResult) -> None:
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    values = result.as_dict()
    registry.client.log_batch(run_id, metrics=[Metric(name, float(values[name]), stamp, result.annotations) for name in METRICS])
