"""A training's live progress: every spaCy evaluation reaches the MLflow run (one metric step each) and the
training's stored progress while it trains, `history` shows it, and neither MLflow nor the store failing
meanwhile stops the training or loses its model."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from active_learning.backends import Backends
from active_learning.cli import main
from active_learning.registry import ModelRegistry
from active_learning.store.models import utcnow
from active_learning.store.trainings import Trainings
from active_learning.training import spacy_ner, steps
from active_learning.training.progress import describe, estimate

# conftest's ACTIVE_LEARNING_SPACY_OVERRIDES: 60 steps, an evaluation every 20
EVALUATED_STEPS = [0, 20, 40, 60]


def prepared(backends: Backends, sample_tasks, sample_config: str, run_key: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    backends.store.projects.create("news", sample_config)
    backends.store.completions.import_tasks("news", sample_tasks)
    return steps.prepare_data(backends, "news", run_key=run_key, source="manual", as_of=utcnow())


def timed_training(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """When spaCy's training (``train_ner``) started and ended."""
    times: dict[str, float] = {}
    real = spacy_ner.train_ner

    def train_ner(*args: Any, **kwargs: Any) -> Any:
        times["start"] = time.monotonic()
        try:
            return real(*args, **kwargs)
        finally:
            times["end"] = time.monotonic()

    monkeypatch.setattr(spacy_ner, "train_ner", train_ner)
    return times


def history_of(backends: Backends, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in backends.registry.client.get_metric_history(run_id, key))


def test_each_evaluation_reaches_mlflow_and_the_stored_progress_while_it_trains_and_history_shows_it(  # type: ignore[no-untyped-def]
    backends: Backends, sample_tasks, sample_config: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    run = prepared(backends, sample_tasks, sample_config, "live")
    training = timed_training(monkeypatch)
    stored: list[tuple[float, dict[str, Any]]] = []
    record = Trainings.record_progress
    monkeypatch.setattr(Trainings, "record_progress", lambda self, key, progress: (
        stored.append((time.monotonic(), progress)), record(self, key, progress))[-1])

    trained = steps.train(backends, run_key="live", mlflow_run_id=run["mlflow_run_id"], overrides=run["spacy_overrides"])

    dev_f1 = history_of(backends, run["mlflow_run_id"], "dev_f1")
    assert [step for step, _ in dev_f1] == EVALUATED_STEPS and dev_f1[-1][1] > 0
    assert [step for step, _ in history_of(backends, run["mlflow_run_id"], "loss_ner")] == EVALUATED_STEPS
    assert {"dev_f1_PER", "dev_f1_ORG", "dev_f1_LOC", "loss_tok2vec", "epoch"} <= set(
        backends.registry.client.get_run(run["mlflow_run_id"]).data.metrics)
    # Stored as spaCy went, not at the end: a record of a later step before spaCy's training returned.
    during = [progress["step"] for at, progress in stored if progress and training["start"] < at < training["end"]]
    assert during and max(during) > 0, stored
    progress = backends.store.trainings.get("live").progress
    assert progress["step"] == 60 and progress["evaluations"] == 4 and progress["best_f1"] == max(f1 for _, f1 in dev_f1) > 0
    assert progress["limits"] == {"max_steps": 60, "max_epochs": 100, "patience": 1600, "eval_frequency": 20}
    assert progress["estimate"] == {"end_step": 60, "ends_by": "max_steps", "remaining_seconds": 0.0}
    assert progress["elapsed_seconds"] > 0 and progress["mlflow_behind"] == 0 and set(progress["losses"]) == {"tok2vec", "ner"}
    assert trained["progress"]["evaluations"] == 4 and trained["progress"]["mlflow_behind"] == 0
    experiment = backends.registry.client.get_run(run["mlflow_run_id"]).info.experiment_id
    assert len(backends.registry.client.search_runs([experiment])) == 1  # the training's own run, no other

    # Still running (register is next): `history` prints it in its JSON and, for people, on stderr.
    assert main(["history", "--project", "news"]) == 0
    out, err = capsys.readouterr()
    [shown] = json.loads(out)
    assert shown["status"] == "running" and shown["progress"] == progress
    assert f"live: training, step 60, epoch {progress['epoch']}, best dev F1 {progress['best_f1']:.3f} (step" in err
    assert "ends by step 60 (max_steps)" in err


def test_mlflow_and_the_store_failing_while_it_trains_stop_nothing_and_mlflow_gets_it_all_after(  # type: ignore[no-untyped-def]
    backends: Backends, sample_tasks, sample_config: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both down for the whole of spaCy's training; back for the model: the model is logged and
    registered, and every evaluation reaches MLflow and the store late."""
    run = prepared(backends, sample_tasks, sample_config, "outage")
    training = timed_training(monkeypatch)
    outage = lambda: "start" in training and "end" not in training  # noqa: E731
    refused: list[str] = []

    def down(what: str, real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if outage():
                refused.append(what)
                raise ConnectionError(f"{what} unreachable")
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(ModelRegistry, "log_metrics", down("mlflow", ModelRegistry.log_metrics))
    monkeypatch.setattr(Trainings, "record_progress", down("store", Trainings.record_progress))

    trained = steps.train(backends, run_key="outage", mlflow_run_id=run["mlflow_run_id"], overrides=run["spacy_overrides"])
    assert {"mlflow", "store"} <= set(refused)
    registered = steps.register(backends, run_key="outage", model_uri=trained["model_uri"], labels=trained["labels"])
    assert [m.model_name for m in backends.registry.project_models("news")] == [registered["model_name"]]
    assert [step for step, _ in history_of(backends, run["mlflow_run_id"], "dev_f1")] == EVALUATED_STEPS
    progress = backends.store.trainings.get("outage").progress
    assert progress["step"] == 60 and progress["mlflow_behind"] == 0


def test_mlflow_refusing_the_evaluations_to_the_end_is_the_gap_the_progress_names(  # type: ignore[no-untyped-def]
    backends: Backends, sample_tasks, sample_config: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = prepared(backends, sample_tasks, sample_config, "gap")
    real = ModelRegistry.log_metrics

    def log_metrics(self: ModelRegistry, run_id: str, metrics: Any, *, step: int = 0, timestamp_ms: int | None = None) -> None:
        if "dev_f1" in metrics:
            raise ConnectionError("MLflow refuses the evaluations")
        real(self, run_id, metrics, step=step, timestamp_ms=timestamp_ms)

    monkeypatch.setattr(ModelRegistry, "log_metrics", log_metrics)
    trained = steps.train(backends, run_key="gap", mlflow_run_id=run["mlflow_run_id"], overrides=run["spacy_overrides"])
    assert trained["progress"]["mlflow_behind"] == 4 and trained["metrics"]["f1"] > 0
    progress = backends.store.trainings.get("gap").progress
    assert progress["step"] == 60 and progress["mlflow_behind"] == 4
    assert "f1" in backends.registry.client.get_run(run["mlflow_run_id"]).data.metrics  # the model's scores are there
    assert "4 evaluation(s) not in MLflow yet" in describe(progress)


def test_the_estimate_follows_spacys_stopping_rules() -> None:
    limits = {"max_steps": 6000, "max_epochs": 100, "patience": 1600, "eval_frequency": 200}
    assert estimate(0, 0, 0, 0.0, limits) == {"end_step": 1600, "ends_by": "patience", "remaining_seconds": None}
    # 400 steps in 2 epochs and 80 s: patience ends it at 1,800 unless the dev score improves again
    assert estimate(400, 2, 200, 80.0, limits) == {"end_step": 1800, "ends_by": "patience", "remaining_seconds": 280.0}
    assert estimate(400, 20, 400, 80.0, limits)["ends_by"] == "max_epochs"  # 20 steps an epoch: 2,000 steps
    assert estimate(5000, 2, 4800, 100.0, limits)["end_step"] == 6000
    assert estimate(10, 1, 10, 1.0, {"max_steps": 0, "max_epochs": 0, "patience": 0, "eval_frequency": 10}) is None


def test_a_phase_noted_after_the_training_is_stored_even_when_the_store_first_refuses_it() -> None:
    from active_learning.training.progress import ProgressReporter

    saved: list[dict[str, Any]] = []
    refusing = {"then": True}

    def save(record: dict[str, Any]) -> None:
        if "refit" in record and refusing["then"]:
            refusing["then"] = False
            raise ConnectionError("store down")
        saved.append(record)

    with ProgressReporter(save, lambda *metrics: None, retry_seconds=0.01) as reporter:
        reporter.evaluated({"step": 20, "epoch": 1, "score": 0.5, "other_scores": {"ents_f": 0.5}, "losses": {"ner": 1.0}})
    assert saved and "refit" not in saved[-1]
    reporter.then(refit={"steps": 25})  # the store refuses it
    assert "refit" not in saved[-1]
    reporter.catch_up()  # the model is logged: what is still unstored goes now
    assert saved[-1]["refit"] == {"steps": 25} and saved[-1]["step"] == 20
    stored = len(saved)
    reporter.catch_up()
    assert len(saved) == stored  # nothing new: not stored again
