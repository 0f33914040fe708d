"""Warm start: training continues from the project's deployed model instead of from random weights."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import spacy

from active_learning import settings
from active_learning.backends import Backends
from active_learning.exports import CompletionRecord, Span, TaskRecord
from active_learning.store.models import utcnow
from active_learning.loop import train_now
from active_learning.training.base_model import files_sha256
from active_learning.training.spacy_ner import start_knowing

CONFIG = """<View>
  <Labels name="label" toName="text">
    <Label value="PROBLEM"/>
    <Label value="DRUG"/>
  </Labels>
  <Text name="text" value="$text"/>
</View>"""
TEXT = "The patient has a fever and a cough, given aspirin."


def task(i: int, *, with_drug: bool) -> TaskRecord:
    spans = (Span(18, 23, "PROBLEM"), Span(30, 35, "PROBLEM")) + ((Span(43, 50, "DRUG"),) if with_drug else ())
    completion = CompletionRecord(f"c{i}", "ana", None, utcnow() - timedelta(days=1), False, None, False, spans, 0)
    return TaskRecord(f"t{i}", TEXT, None, (completion,))


def test_a_warm_start_continues_from_the_deployed_model_and_learns_new_labels(
    backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    backends.store.projects.create("clinic", CONFIG)
    backends.store.completions.import_tasks("clinic", [task(i, with_drug=False) for i in range(30)])
    first = train_now(backends, "clinic", choice="deploy")
    assert first["metrics"]["f1"] > 0.9 and backends.store.projects.get("clinic").deployed_model == first["model_name"]

    backends.store.completions.import_tasks("clinic", [task(i, with_drug=True) for i in range(30, 60)])
    # Two training steps: from random weights nothing is learnt yet; from the deployed model PROBLEM is known.
    monkeypatch.setenv("ACTIVE_LEARNING_SPACY_OVERRIDES", '{"training.max_steps": 2, "training.eval_frequency": 1}')
    scratch = train_now(backends, "clinic", choice="register_only", warm_start=False)
    warm = train_now(backends, "clinic", choice="register_only", warm_start=True)
    assert warm["metrics"]["per_label"]["PROBLEM"]["f1"] > 0.9 > scratch["metrics"]["f1"]

    params = backends.registry.client.get_run(backends.store.trainings.get(warm["run_key"]).mlflow_run_id).data.params
    assert params["warm_start_from"] == first["model_name"]
    assert backends.registry.client.get_run(backends.store.trainings.get(scratch["run_key"]).mlflow_run_id).data.params["warm_start_from"] == "none"

    monkeypatch.setenv("ACTIVE_LEARNING_SPACY_OVERRIDES", '{"training.max_steps": 60, "training.eval_frequency": 20}')
    learnt = train_now(backends, "clinic", choice="register_only", warm_start=True)
    assert set(backends.model(learnt["model_name"]).labels) == {"PROBLEM", "DRUG"}  # a label the deployed model never saw is added and trained
    assert learnt["metrics"]["per_label"]["DRUG"]["f1"] > 0.5


def test_without_a_deployed_model_of_ours_a_warm_start_trains_from_scratch(backends: Backends) -> None:
    backends.store.projects.create("fresh", CONFIG)
    backends.store.completions.import_tasks("fresh", [task(i, with_drug=True) for i in range(20)])
    result = train_now(backends, "fresh", choice="register_only", warm_start=True)
    params = backends.registry.client.get_run(backends.store.trainings.get(result["run_key"]).mlflow_run_id).data.params
    assert params["warm_start_from"] == "none" and result["metrics"]["f1"] > 0.5


def test_the_deployed_model_is_given_the_labels_it_lacks_in_sorted_order_and_left_alone_when_it_knows_them(
    tmp_path: Path, tiny_base: Path
) -> None:
    """Left to spaCy, a resumed NER's new labels come in the order of a set of strings, which each process's
    hash seed changes (tests/test_base_model.py shows it): the warm start adds them first, sorted."""
    start = Path(shutil.copytree(tiny_base, tmp_path / "warm-start"))
    before = files_sha256(start)
    start_knowing(start, {"PERSON", "GPE"})
    assert files_sha256(start) == before  # nothing to add: not rewritten

    known = list(spacy.load(start).get_pipe("ner").move_names)
    start_knowing(start, {"ROUTE", "PERSON", "DOSE", "DRUG"})
    moves = spacy.load(start).get_pipe("ner").move_names
    assert moves[: len(known)] == known  # what it knew, as it was (a warm start drops nothing)
    assert [move[2:] for move in moves[len(known):] if move.startswith("B-")] == ["DOSE", "DRUG", "ROUTE"]


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("false", False), ("", False)])
def test_the_warm_start_setting(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("ACTIVE_LEARNING_WARM_START", value or "false")
    assert settings.warm_start() is expected


def test_a_misspelt_warm_start_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTIVE_LEARNING_WARM_START", "sometimes")
    with pytest.raises(ValueError, match="must be true or false, not 'sometimes'"):
        settings.warm_start()
