"""The refit: the deployed model learns from every annotation, and the gate still scores only models that
never trained on the evaluation set."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import shared_file

from active_learning.backends import Backends
from active_learning.deploy.gate import compare_with_deployed
from active_learning.loop import train_now
from active_learning.registry import GATE_MODEL_DIR, TAG_GATE_MODEL, ModelVersionInfo, UntrustedModelError
from active_learning.training import parameters
from active_learning.training.refit import plan_refit

# Real abstracts, few enough to train in seconds, hard enough that no model is perfect on tasks it never saw;
# trained long enough to fit the tasks it did see clearly better.
ABSTRACTS = 150
FIT = {"training.max_steps": 150, "training.eval_frequency": 25, "dataset.refit": True}


def test_the_refit_makes_as_many_passes_over_more_data() -> None:
    plan = plan_refit(400, train_words=8_000, dev_words=2_000)
    assert plan.steps == 500 and plan.all_words == 10_000
    assert plan_refit(401, train_words=3, dev_words=1).steps == math.ceil(401 * 4 / 3)
    assert plan_refit(0, train_words=10, dev_words=5).steps == 1  # spaCy reads max_steps 0 as "no limit"
    overrides = plan.overrides({"training.max_steps": 6000, "training.patience": 1600, "system.seed": 3})
    assert overrides == {"training.max_steps": 500, "training.eval_frequency": 500, "training.patience": 0,
                         "training.max_epochs": 0, "system.seed": 3}


def test_the_refit_parameter_is_ours_and_a_boolean() -> None:
    assert parameters.effective().refit is parameters.DEFAULT_REFIT
    used = parameters.effective(project={"dataset.refit": True})
    assert used.refit is True and "dataset.refit" not in used.spacy_overrides()
    assert parameters.problems({"dataset.refit": "yes"}) == ["dataset.refit must be true or false, not 'yes' (str)"]
    assert parameters.problems({"dataset.refit": 1}) == ["dataset.refit must be true or false, not 1 (int)"]


@pytest.fixture(scope="module")
def refitted_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Backends, dict]]:  # type: ignore[type-arg]
    """One refit training for the module (each costs seconds of CI time), in a home of its own."""
    from active_learning.exports import read_export

    tasks, _ = read_export(shared_file("ncbi_disease/tasks.json"))
    home = tmp_path_factory.mktemp("refit")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ACTIVE_LEARNING_HOME", str(home))
        backends = Backends()
        backends.store.projects.create("news", shared_file("ncbi_disease/labeling_config.xml").read_text(), active_learning=True, auto_deploy=True)
        backends.store.completions.import_tasks("news", tasks[:ABSTRACTS])
        backends.store.projects.set_training_params("news", FIT, author="t", reason="t")
        yield home, backends, train_now(backends, "news")
        for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):  # set by MLflow for the module's store
            os.environ.pop(key, None)


@pytest.fixture
def backends(refitted_home: tuple[Path, Backends, dict], monkeypatch: pytest.MonkeyPatch) -> Backends:  # type: ignore[type-arg]
    """The module's home for each test (its store and MLflow store); each test's projects are its own."""
    home, shared, _ = refitted_home
    monkeypatch.setenv("ACTIVE_LEARNING_HOME", str(home))
    return shared


@pytest.fixture
def refitted(refitted_home: tuple[Path, Backends, dict]) -> dict:  # type: ignore[type-arg]
    return refitted_home[2]


def test_a_refit_deploys_the_model_of_every_task_and_keeps_its_twin_for_the_gate(backends: Backends, refitted: dict) -> None:  # type: ignore[type-arg]
    version = backends.model(refitted["model_name"])
    assert version.gate_model_uri and version.gate_model_uri.startswith("models:/")
    run = backends.registry.client.get_run(version.run_id)
    metrics = run.data.metrics
    assert metrics["refit_steps"] >= metrics["split_best_step"] > 0
    assert metrics["training_seconds"] > metrics["refit_seconds"] > 0
    import mlflow

    logged = {model.name for model in mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{version.run_id}'", output_format="list")}
    assert logged == {"model", GATE_MODEL_DIR}
    assert refitted["deploy"].startswith("gate passed")
    assert backends.store.projects.get("news").deployed_model == refitted["model_name"]
    # The reported score is the twin's: the refit model trained on the evaluation set it would be scored on.
    deployed, twin = (_dev_f1(backends, version, scored=flag) for flag in (False, True))
    assert twin == pytest.approx(refitted["metrics"]["f1"])
    assert deployed > twin, "the refit model trained on the dev tasks too"


def test_the_gate_scores_both_models_through_their_twins(backends: Backends, refitted: dict) -> None:  # type: ignore[type-arg]
    """Scored on the evaluation set directly, the deployed refit model (which trained on it) would look
    better than it is and keep out an equal newcomer; the gate compares the models that never saw it."""
    time.sleep(1.1)  # model names carry the training second
    second = train_now(backends, "news", choice="register_only")
    comparison = compare_with_deployed(backends, "news", second["model_name"])
    deployed = backends.model(refitted["model_name"])
    candidate = backends.model(second["model_name"])
    assert comparison.deployed == refitted["model_name"]
    assert comparison.candidate_f1 == pytest.approx(_dev_f1(backends, candidate, scored=True, dataset_of=candidate))
    assert comparison.deployed_f1 == pytest.approx(_dev_f1(backends, deployed, scored=True, dataset_of=candidate))
    assert comparison.deployed_f1 < _dev_f1(backends, deployed, scored=False, dataset_of=candidate)


def test_one_seed_gives_one_model_whichever_process_trains_it(refitted: dict, tmp_path) -> None:  # type: ignore[no-untyped-def,type-arg]
    """The same tasks and seed trained without the refit, in another process with its own store and MLflow
    store, give the refit's split-trained twin: the same scores on every label, to the last digit. (Issue
    27: two bench runs that seemed to disagree were made at different commits.)"""
    import json
    import os
    import subprocess
    import sys

    from active_learning.exports import read_export

    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps(json.loads(shared_file("ncbi_disease/tasks.json").read_text())[:ABSTRACTS]))
    assert len(read_export(tasks)[0]) == ABSTRACTS
    spacy_overrides = {name: value for name, value in FIT.items() if name != "dataset.refit"}  # as the deployment's
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW"))} | {
        "ACTIVE_LEARNING_HOME": str(tmp_path / "home"), "ACTIVE_LEARNING_SPACY_OVERRIDES": json.dumps(spacy_overrides)}

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "active_learning", *args], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stderr

    cli("import", str(tasks), "--project", "news", "--config", str(shared_file("ncbi_disease/labeling_config.xml")))
    alone = json.loads(cli("train", "--project", "news", "--no-deploy", "--no-warm-start").strip().splitlines()[-1])
    assert alone["metrics"] == refitted["metrics"]


def test_a_gate_model_tag_that_is_not_a_logged_model_is_refused(backends: Backends) -> None:
    """Refused before anything is downloaded: a tag anyone with MLflow write may set."""
    version = ModelVersionInfo("news_ner", 1, "news_ner_20261130_120000", "news", "2026-11-30T12:00:00", ("PER",), None, (),
                               gate_model_uri="file:///etc")
    with pytest.raises(UntrustedModelError, match=f"{TAG_GATE_MODEL} tag 'file:///etc' is not an MLflow logged model"):
        backends.registry.load_model(version, scored=True)


def test_a_project_with_a_tagged_test_set_trains_on_every_other_task_already(backends: Backends, sample_tasks, sample_config: str) -> None:  # type: ignore[no-untyped-def]
    from active_learning.training import steps

    tagged = [replace(task, test=True) if i % 4 == 0 else task for i, task in enumerate(sample_tasks)]
    backends.store.projects.create("tagged", sample_config, active_learning=True, auto_deploy=True)
    backends.store.completions.import_tasks("tagged", tagged)
    backends.store.projects.set_training_params("tagged", {"dataset.refit": True}, author="t", reason="t")
    prepared = steps.prepare_data(backends, "tagged", run_key="tagged-run", source="manual", as_of=_now())
    assert prepared["refit"] is False
    params = backends.registry.client.get_run(prepared["mlflow_run_id"]).data.params
    assert (params["evaluation_set"], params["dev_docs"]) == ("tasks tagged Test", str(len(tagged[::4])))


def _dev_f1(backends: Backends, version, *, scored: bool, dataset_of=None) -> float:  # type: ignore[no-untyped-def]
    """F1 on the dev part of ``dataset_of``'s (default: the version's own) training data."""
    import tempfile
    from pathlib import Path

    from active_learning.training.dataset import read_docs
    from active_learning.training.spacy_ner import score_ner

    nlp = backends.registry.load_model(version, scored=scored)
    with tempfile.TemporaryDirectory() as folder:
        dev = backends.registry.download_dataset((dataset_of or version).run_id, Path(folder)) / "dev.spacy"
        return score_ner(nlp, read_docs(nlp, dev)).f1


def _now():  # type: ignore[no-untyped-def]
    from active_learning.store.models import utcnow

    return utcnow()
