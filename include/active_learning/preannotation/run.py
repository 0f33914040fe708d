"""Pre-annotate a project's tasks with its deployed model: incremental, in committed batches.

Tasks that await annotation and have no prediction from the deployed model yet are read a page at a time
from the project's source, run through the model (:func:`active_learning.preannotation.scoring.predict`,
``nlp.pipe`` batches, by the scorer of the ``queue.strategy`` the model was trained with; the model loaded
once per run and only if there is something to do), and each page's predictions are committed before the
next is read: a run killed half-way resumes where it stopped, and a second run with nothing new reads one
page and loads no model. A Label Studio project then receives the new predictions through its API
(:meth:`CompletionSource.publish_predictions`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from active_learning.preannotation.results import result_items, targets_of
from active_learning.preannotation.scoring import predict
from active_learning.store import NewPrediction
from active_learning.training.workspace import private_workspace

if TYPE_CHECKING:
    from active_learning.backends import Backends

log = logging.getLogger(__name__)
BATCH_SIZE = 256


class NoDeployedModelError(LookupError):
    def __init__(self, project: str) -> None:
        super().__init__(f"project {project!r} has no deployed model of ours: deploy one first (`active-learning deploy`)")


@dataclass
class PreannotationReport:
    project: str
    model: str
    scorer: str  # the model's queue.strategy's (preannotation/strategies.py)
    predicted: int = 0
    skipped: int = 0  # texts the model could not process
    published: int = 0  # sent to the project's Label Studio
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def preannotate(backends: Backends, project: str, *, batch_size: int = BATCH_SIZE) -> PreannotationReport:
    started = time.perf_counter()
    model = backends.deployed_version(project)
    if model is None:
        raise NoDeployedModelError(project)
    source = backends.source(project)
    targets = targets_of(source.read_config(project).xml, model.model_name)
    report = PreannotationReport(project, model.model_name, backends.registry.scorer(model))
    nlp = None
    # Its own folder: a project may be pre-annotated twice at once (the deploy's asset event, the CLI).
    with private_workspace("preannotate", model.model_name, "model") as folder:
        for page in source.tasks_to_preannotate(project, model.model_name, page_size=batch_size):
            if nlp is None:
                import spacy

                nlp = spacy.load(backends.registry.download_model(model, folder))  # loads weights, runs no code
            predictions = []
            scored_page = predict(nlp, [task.text for task in page], batch_size=batch_size, scorer=report.scorer)
            for task, scored in zip(page, scored_page, strict=True):
                if scored is None:
                    report.skipped += 1
                    continue
                items = result_items(task.task_id, task.text, scored.spans, targets)
                predictions.append(NewPrediction(task.task_id, round(scored.score, 6), items))
            report.predicted += backends.store.predictions.save(project, model.model_name, predictions, scorer=report.scorer)
            log.info("%s: %d tasks pre-annotated by %s so far", project, report.predicted, model.model_name)
    report.published = source.publish_predictions(project, model.model_name)
    report.seconds = round(time.perf_counter() - started, 3)
    log.info("pre-annotation of %s: %s", project, report.as_dict())
    return report
