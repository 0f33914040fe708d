"""The training steps: prepare data -> train -> register. Each step is one Airflow task; the deploy
steps that follow are :mod:`active_learning.deploy.steps`.

Steps hand each other only small JSON-able dicts; data and models travel through the MLflow run, so
each step may run on another worker. Every step can be retried: it finds what an earlier attempt made
(the training row by run key, the MLflow run by run key, the model version by run key) instead of
making it twice, and works in a temporary folder that is removed whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from active_learning import naming, settings
from active_learning.backends import Backends
from active_learning.labeling_config import list_labels
from active_learning.registry import GATE_MODEL_DIR, MODEL_DIR
from active_learning.selection import TrainingExample
from active_learning.training import base_model, parameters
from active_learning.training.dataset import (
    dataset_digest, evaluation_set_origin, has_test_tags, read_docs, split_examples, to_docs, write_docbin,
)
from active_learning.training.base_model import LANGUAGE, BaseModel, BaseModelError, locate, training_config, uses_base
from active_learning.training.refit import RefitPlan, plan_refit
from active_learning.training.spacy_ner import NER_CONFIG_PATH, start_knowing
from active_learning.training.workspace import scratch_folder, workspace

if TYPE_CHECKING:  # pragma: no cover
    from active_learning.training.progress import ProgressReporter
    from active_learning.training.spacy_ner import TrainingOutcome

log = logging.getLogger(__name__)
MIN_EXAMPLES = 2


class NotEnoughDataError(ValueError):
    pass


def prepare_data(
    backends: Backends, project: str, *, run_key: str, source: str, as_of: datetime, training_params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Select one completion per task as of ``as_of``, convert to spaCy docs, split, upload to MLflow.

    ``training_params``: this run's values (training/parameters.py), over the project's; checked before
    any data is read, the base model too (:mod:`active_learning.training.base_model`). Returns the spaCy
    overrides :func:`train` is to use, whether it refits (:mod:`active_learning.training.refit`: asked
    for, and the evaluation set is not tagged) and the base it starts from.
    """
    import spacy

    origin = backends.source(project)  # our store or Label Studio
    count = origin.training_count(project)  # read before the completions: none arriving meanwhile is lost
    training = backends.store.trainings.start(project, run_key=run_key, source=source, as_of=as_of, source_annotations=count)
    # Checked once the training is recorded, so that its history says why a refused run failed.
    used = parameters.effective(backends.store.projects.get(project).training_params, parameters.check(training_params or {}))
    if (unusable := base_model.check(used.base, backends)) is not None:  # before any data is read or uploaded
        raise BaseModelError(unusable)
    labels = list_labels(origin.read_config(project).xml)
    training_set = origin.training_set(project, as_of, {label.value for label in labels})
    examples, unknown = _keep_config_labels(training_set.examples, {label.value for label in labels if not label.assertion})
    if len(examples) < MIN_EXAMPLES:
        raise NotEnoughDataError(f"project {project!r} has {len(examples)} trainable tasks as of {as_of:%Y-%m-%d %H:%M:%S} UTC; at least {MIN_EXAMPLES} are needed")
    train, dev = split_examples(examples, used.dev_percent)
    nlp = spacy.blank("en")
    summary: dict[str, Any] = {"as_of": as_of.isoformat(), "tasks": len(examples), "labels_not_trained": unknown}
    if training_set.export is not None:
        summary |= {"source": origin.kind, "source_annotations": count, "export": training_set.export}
    with workspace(run_key, "prepare") as folder:
        for part, part_examples in (("train", train), ("dev", dev)):
            docs, report = to_docs(nlp, part_examples)
            write_docbin(docs, folder / f"{part}.spacy")
            summary[part] = report.as_dict()
        digest = dataset_digest(examples)
        run_id = backends.registry.start_run(
            project,
            run_key=run_key,
            run_name=naming.model_name(project, training.started_at),
            tags={"source": source, "airflow_run_id": run_key},
        )
        backends.registry.log_dataset(run_id, folder, name=f"{naming.safe_name(project)}-completions", digest=digest, summary=summary)
    backends.registry.log_params(
        run_id,
        {"project": project, "source": source, "as_of": as_of.isoformat(), "completions_used": len(examples),
         "train_docs": len(train), "dev_docs": len(dev), "evaluation_set": evaluation_set_origin(examples, used.dev_percent),
         "dataset_digest": digest} | _logged(used),
    )
    backends.store.trainings.update(run_key, mlflow_run_id=run_id, completions_used=len(examples), dataset_digest=digest)
    log.info("prepared %d tasks (%d train / %d dev) for %s: %s", len(examples), len(train), len(dev), project, summary)
    return {"run_key": run_key, "mlflow_run_id": run_id, "completions_used": len(examples), "summary": summary,
            "spacy_overrides": used.spacy_overrides(), "refit": used.refit and not has_test_tags(examples),
            "base_model": used.base}


def train(
    backends: Backends, *, run_key: str, mlflow_run_id: str, overrides: dict[str, Any] | None = None, warm_start: bool | None = None,
    progress: bool = True, refit: bool = False, base_model: str | None = None,
) -> dict[str, Any]:
    """Train on the run's dataset, score on its dev part, log the model to the same MLflow run.

    ``overrides``: :func:`prepare_data`'s ``spacy_overrides`` (the run's, the project's and the deployment's
    values, as logged); without them, the project's training parameters. ``warm_start`` (default:
    ``ACTIVE_LEARNING_WARM_START``): continue from the project's deployed model when it is one of ours;
    else, or with no such model, from scratch. ``progress``: each evaluation goes to the MLflow run and
    to the training's stored progress as it trains (:mod:`active_learning.training.progress`); off only to
    measure what that costs (``bench/training_overhead.py``). ``base_model``: :func:`prepare_data`'s
    ``model.base`` (without it, the project's): where a training that does not warm-start starts
    (:mod:`active_learning.training.base_model`); a base that cannot be used fails the training, it never
    falls back to scratch. ``refit``: :func:`prepare_data`'s decision;
    then the model logged as the run's model is the refit, and the split-trained one is logged beside it
    as the one the gate scores (``gate_model_uri``); the scores are the split-trained model's.

    A retry does not repeat what an earlier attempt finished: a model trained but not yet in MLflow (it was
    down) is kept on the worker's disk (:class:`Kept`) and only logged; params are logged once
    (:meth:`ModelRegistry.log_params_once`); a retried training's evaluations continue the run's series.
    """
    project = backends.store.trainings.get(run_key).project
    if overrides is None or base_model is None:
        used = parameters.effective(backends.store.projects.get(project).training_params)
        overrides = used.spacy_overrides() if overrides is None else overrides
        base_model = used.base if base_model is None else base_model
    warm_start = settings.warm_start() if warm_start is None else warm_start
    kept_folder = scratch_folder(run_key, KEPT)
    kept = Kept.read(kept_folder)
    reporter = None
    if kept is None:
        reporter = _reporter(backends, run_key, mlflow_run_id) if progress else None
        kept = _train_and_keep(backends, run_key, project, mlflow_run_id, overrides, warm_start, refit, base_model,
                               reporter, kept_folder)
    else:
        log.info("%s: trained by an earlier attempt, kept in %s until MLflow has it: logging it", run_key, kept_folder)
    gate_model_uri = backends.registry.log_model(mlflow_run_id, kept.load(GATE_MODEL_DIR), name=GATE_MODEL_DIR) if kept.refit else None
    model_uri = backends.registry.log_model(mlflow_run_id, kept.load(MODEL_DIR))
    if reporter is not None:
        reporter.catch_up()  # MLflow took the model: it takes the evaluations it missed
        log.info("training progress: %s", reporter.summary)
    backends.registry.log_metrics(mlflow_run_id, kept.metrics, timestamp_ms=kept.stamp)  # a retry's: the same points
    backends.registry.log_params_once(mlflow_run_id, kept.params)
    backends.store.trainings.update(run_key, metrics=kept.scores, base_model=kept.base_model)
    shutil.rmtree(kept_folder)  # MLflow has it all
    with contextlib.suppress(OSError):
        kept_folder.parent.rmdir()
    log.info("trained %s in %.1f s: %s", run_key, kept.metrics["training_seconds"], kept.scores)
    return {"model_uri": model_uri, "gate_model_uri": gate_model_uri, "labels": list(kept.labels),
            "metrics": kept.scores, "progress": reporter.summary if reporter else None, "base_model": kept.base_model}


KEPT = "trained"  # the step folder of a trained model kept until MLflow has it


@dataclass(frozen=True)
class Kept:
    """A trained model on the worker's disk (``<folder>/model``, and the split-trained twin ``gate_model``
    after a refit) with what :func:`train` logs and returns: a retry after MLflow failed to take it logs it
    instead of training again. Written whole or not at all (``kept.json`` last, the folder renamed in)."""

    folder: Path
    labels: tuple[str, ...]
    metrics: dict[str, float]  # for MLflow
    scores: dict[str, Any]  # for the history
    params: dict[str, Any]
    base_model: str | None
    refit: bool
    stamp: int  # when it was trained (ms): its metrics' timestamp in MLflow

    @classmethod
    def read(cls, folder: Path) -> Kept | None:
        if not (folder / "kept.json").is_file():
            shutil.rmtree(folder, ignore_errors=True)  # half-made: train again
            return None
        data = json.loads((folder / "kept.json").read_text(encoding="utf-8"))
        return cls(folder, tuple(data.pop("labels")), **data)

    def load(self, name: str) -> Any:
        from active_learning.training.spacy_ner import load_model

        return load_model(self.folder / name)

    @classmethod
    def keep(cls, folder: Path, models: dict[str, Path], **fields: Any) -> Kept:
        partial = folder.with_name(f"{folder.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for name, model_dir in models.items():
            shutil.move(model_dir, partial / name)
        (partial / "kept.json").write_text(json.dumps(fields | {"labels": list(fields["labels"])}), encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        partial.replace(folder)
        return cls(folder, **fields)


def _reporter(backends: Backends, run_key: str, mlflow_run_id: str) -> ProgressReporter:
    """Each evaluation to the stored progress and to MLflow; a retried training's evaluations continue the
    run's series after an earlier attempt's last step, never beside it."""
    from active_learning.training.progress import STEP_METRIC, ProgressReporter

    offset = backends.registry.next_step(mlflow_run_id, STEP_METRIC)
    if offset:
        log.info("an earlier attempt logged evaluations up to step %d: this one's continue from there", offset - 1)
    backends.store.trainings.record_progress(run_key, None)  # not an earlier attempt's
    return ProgressReporter(
        lambda record: backends.store.trainings.record_progress(run_key, record),
        lambda step, stamp, metrics: backends.registry.log_metrics(mlflow_run_id, metrics, step=offset + step, timestamp_ms=stamp),
    )


def _train_and_keep(backends: Backends, run_key: str, project: str, mlflow_run_id: str, overrides: dict[str, Any],
                    warm_start: bool, refit: bool, base_model: str | None, reporter: ProgressReporter | None, kept: Path) -> Kept:
    from active_learning.training.spacy_ner import load_model, score_ner, train_ner

    with workspace(run_key, "train") as folder:
        dataset = backends.registry.download_dataset(mlflow_run_id, folder)
        base = _deployed_model(backends, project, folder, dataset) if warm_start else None
        pretrained = _base_model(backends, base_model, dataset, folder) if base is None and uses_base(base_model) else None
        start = Start(config=pretrained[1] if pretrained else NER_CONFIG_PATH, pipeline=base[1] if base else None)
        # spaCy's progress table goes to stderr (the task's log): stdout is for results.
        with reporter or contextlib.nullcontext(), contextlib.redirect_stdout(sys.stderr):
            outcome = train_ner(dataset / "train.spacy", dataset / "dev.spacy", folder / "output", overrides=overrides,
                                config_path=start.config, start_from=start.pipeline, listener=reporter)
        nlp = load_model(outcome.model_dir)
        dev_docs = read_docs(nlp, dataset / "dev.spacy")
        scores = score_ner(nlp, dev_docs)
        metrics = scores.as_metrics() | {"training_seconds": outcome.seconds, "split_best_step": outcome.best_step}
        models = {MODEL_DIR: outcome.model_dir}
        if refit:
            refit_outcome, plan = _refit(dataset, folder, nlp, dev_docs, outcome, overrides, start, reporter)
            metrics |= {"training_seconds": outcome.seconds + refit_outcome.seconds, "refit_seconds": refit_outcome.seconds,
                        "refit_steps": plan.steps}
            models = {MODEL_DIR: refit_outcome.model_dir, GATE_MODEL_DIR: outcome.model_dir}
            outcome = refit_outcome  # the deployed model's labels
        started_from = pretrained[0].params() if pretrained else {"base_model": "none"}
        params = ({"warm_start_from": base[0] if base else "none"} | started_from
                  | {f"spacy.{k}": v for k, v in overrides.items()})
        return Kept.keep(kept, models, labels=outcome.labels, metrics=metrics, scores=scores.as_dict(), params=params,
                         base_model=pretrained[0].describe() if pretrained else None, refit=refit, stamp=int(time.time() * 1000))


def _refit(dataset: Path, folder: Path, split_nlp: Any, dev_docs: list[Any], split: TrainingOutcome, overrides: dict[str, Any],
           start: Start, reporter: ProgressReporter | None) -> tuple[TrainingOutcome, RefitPlan]:
    """The refit's outcome (:mod:`active_learning.training.refit`) and its plan; ``dev_docs``: the dev part,
    as the split model read it to score it."""
    from active_learning.training.spacy_ner import train_ner

    train_docs = read_docs(split_nlp, dataset / "train.spacy")
    plan = plan_refit(split.best_step, sum(map(len, train_docs)), sum(map(len, dev_docs)))
    if reporter is not None:
        reporter.then(refit=plan.as_dict())
    log.info("refit: %d steps on train + dev (%d words; the split training's best was step %d on %d words)",
             plan.steps, plan.all_words, plan.split_best_step, plan.train_words)
    every_task = write_docbin(train_docs + dev_docs, folder / "refit-data" / "all.spacy")
    with contextlib.redirect_stdout(sys.stderr):
        outcome = train_ner(every_task, dataset / "dev.spacy", folder / "refit", overrides=plan.overrides(overrides),
                            config_path=start.config, start_from=start.pipeline, keep_last=True)
    return outcome, plan


class Start(NamedTuple):
    """Where a training starts: its config (ner.cfg, or one made for a base) and a pipeline it resumes (a warm start's)."""

    config: Path
    pipeline: Path | None


def _base_model(backends: Backends, spec: str, dataset: Path, folder: Path) -> tuple[BaseModel, Path]:
    """The base ``spec`` names (checked again: the worker that trains may differ from where it was set),
    and the training config that starts from it, for the labels of the run's data."""
    base = locate(spec, folder / "base", backends)
    labels = _data_labels(dataset)
    log.info("starting from base model %s (labels kept or added: %s)", base.describe(), sorted(labels))
    return base, training_config(base, labels, NER_CONFIG_PATH, folder / "base-start")


def _deployed_model(backends: Backends, project: str, folder: Path, dataset: Path) -> tuple[str, Path] | None:
    """The project's deployed model (name, spaCy folder), if it is one of ours, to warm-start from: knowing
    the labels of the run's data (a label the config gained since is added, :func:`start_knowing`)."""
    info = backends.deployed_version(project)
    if info is None:
        log.info("warm start: %s has no deployed model of ours; training from scratch", project)
        return None
    log.info("warm start: continuing from %s", info.model_name)
    start = backends.registry.download_model(info, folder / "warm-start")
    start_knowing(start, _data_labels(dataset))
    return info.model_name, start


def _data_labels(dataset: Path) -> set[str]:
    """The labels of the entities in the run's train and dev data."""
    import spacy

    blank = spacy.blank(LANGUAGE)
    return {span.label_ for part in ("train", "dev") for doc in read_docs(blank, dataset / f"{part}.spacy") for span in doc.ents}


def register(backends: Backends, *, run_key: str, model_uri: str, labels: list[str], gate_model_uri: str | None = None) -> dict[str, Any]:
    """Register the model as a version of the project's registered model; returns that version
    (:meth:`ModelVersionInfo.as_dict`), which the deploy steps take from here. ``gate_model_uri``: a
    refit's split-trained twin, the model the gate scores for this version."""
    training = backends.store.trainings.get(run_key)
    if training.model_name is not None and training.model_version is not None:  # a retry after success
        registered = naming.registered_model_name(training.project)
        return backends.registry.model_version(registered, training.model_version).as_dict()
    info = backends.registry.register(
        training.project,
        model_uri=model_uri,
        run_id=training.mlflow_run_id or "",
        run_key=run_key,
        trained_at=training.started_at,
        labels=tuple(labels),
        description=_describe(training.project, training.started_at, training.completions_used, training.metrics),
        gate_model_uri=gate_model_uri,
        base_model=training.base_model,
    )
    backends.store.trainings.update(run_key, model_name=info.model_name, model_version=info.version)
    log_learning_curve(backends, run_key, training.project, training.mlflow_run_id or "")
    backends.registry.finish_run(training.mlflow_run_id or "")
    return info.as_dict()


def log_learning_curve(backends: Backends, run_key: str, project: str, mlflow_run_id: str) -> None:
    """F1 against completions over the project's models, as a plot and a CSV in the new model's run."""
    from active_learning.training.learning_curve import ARTIFACT_DIR, curve_rows, write_curve

    rows = curve_rows(backends.store.trainings.history(project))
    if not rows:
        return
    with workspace(run_key, "learning-curve") as folder:
        write_curve(rows, folder, project)
        backends.registry.client.log_artifacts(mlflow_run_id, str(folder), ARTIFACT_DIR)


def finish(backends: Backends, run_key: str) -> None:
    backends.store.trainings.update(run_key, status="success")


def fail(backends: Backends, run_key: str, error: BaseException | str) -> None:
    """Mark a training failed with its reason, so the history says why and the poll retries the crossing.
    The history is shown to every viewer of the page: a URL in the reason keeps no password."""
    backends.store.trainings.update(run_key, status="failed", error=settings.hide_passwords(str(error))[:4000])


def _logged(used: parameters.Effective) -> dict[str, Any]:
    """Every training parameter's value as an MLflow param, and where the values not by default come from."""
    values = {f"training_params.{name}": json.dumps(value) if isinstance(value, dict) else value
              for name, value in used.values.items()}
    chosen = {name: source for name, source in used.sources.items() if source != parameters.DEFAULT}
    return values | {"training_params.sources": json.dumps(chosen, sort_keys=True)}


def _keep_config_labels(examples: list[TrainingExample], config_labels: set[str]) -> tuple[list[TrainingExample], dict[str, int]]:
    """Drop spans whose label the config no longer has; count them by label."""
    unknown: dict[str, int] = {}
    kept = []
    for example in examples:
        spans = tuple(span for span in example.spans if span.label in config_labels)
        for span in example.spans:
            if span.label not in config_labels:
                unknown[span.label] = unknown.get(span.label, 0) + 1
        kept.append(replace(example, spans=spans) if len(spans) != len(example.spans) else example)
    return kept, unknown


def _describe(project: str, trained_at: datetime, completions: int | None, metrics: dict[str, Any] | None) -> str:
    f1 = f", dev F1 {metrics['f1']:.3f}" if metrics else ""
    return f"{naming.model_name(project, trained_at)}: project {project!r}, trained {trained_at:%Y-%m-%d %H:%M:%S} UTC on {completions} completions{f1}."
