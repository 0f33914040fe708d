"""The deploy gate: a worse model never silently replaces a better deployed one."""

from __future__ import annotations

import time

import pytest
from conftest import run_at_once

from active_learning import naming
from active_learning.backends import Backends
from active_learning.deploy.gate import compare_with_deployed
from active_learning.registry import CANDIDATE
from active_learning.loop import train_now

BAD_TRAINING = '{"training.max_steps": 1, "training.eval_frequency": 1}'


@pytest.fixture
def deployed(backends: Backends, sample_tasks, sample_config: str) -> str:  # type: ignore[no-untyped-def]
    backends.store.projects.create("news", sample_config, active_learning=True, auto_deploy=True)
    backends.store.completions.import_tasks("news", sample_tasks)
    first = train_now(backends, "news")
    assert first["deploy"].startswith("gate passed: new") and "no model of ours deployed" in first["deploy"]
    assert first["outcome"] == "deployed"
    assert backends.store.projects.get("news").deployed_model == first["model_name"]
    time.sleep(1.1)  # model names carry the training second
    return first["model_name"]


def test_a_worse_model_is_registered_but_not_deployed(backends: Backends, deployed: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ACTIVE_LEARNING_SPACY_OVERRIDES", BAD_TRAINING)
    worse = train_now(backends, "news")
    assert worse["deploy"].startswith("gate refused: new")
    assert worse["outcome"] == backends.store.trainings.get(worse["run_key"]).outcome == "refused by the deploy gate"
    assert f"deployed {deployed} F1" in worse["deploy"]
    assert backends.store.projects.get("news").deployed_model == deployed
    assert f'model="{worse["model_name"]}"' not in backends.store.configs.read("news").xml
    version = backends.model(worse["model_name"])
    tags = backends.registry.client.get_model_version(version.registered_name, str(version.version)).tags
    assert tags["deploy_gate"] == "gate refused" and deployed in tags["deploy_gate_reason"]
    [latest] = [v for v in backends.registry.project_models("news") if v.model_name == worse["model_name"]]
    assert CANDIDATE in latest.aliases


def test_both_models_are_rescored_on_the_same_evaluation_set(backends: Backends, deployed: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ACTIVE_LEARNING_SPACY_OVERRIDES", BAD_TRAINING)
    worse = train_now(backends, "news", choice="register_only")
    comparison = compare_with_deployed(backends, "news", worse["model_name"])
    assert comparison.deployed == deployed
    assert comparison.eval_tasks > 0
    assert comparison.deployed_f1 > comparison.candidate_f1
    assert comparison.candidate_f1 == pytest.approx(worse["metrics"]["f1"])


def test_a_tolerance_or_an_explicit_deploy_lets_it_through(backends: Backends, deployed: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ACTIVE_LEARNING_SPACY_OVERRIDES", BAD_TRAINING)
    tolerated = train_now(backends, "news", tolerance=1.0)
    assert tolerated["deploy"].startswith("gate passed") and "tolerance 1.000" in tolerated["deploy"]
    assert backends.store.projects.get("news").deployed_model == tolerated["model_name"]
    time.sleep(1.1)
    forced = train_now(backends, "news", choice="deploy")
    assert forced["deploy"].startswith("deploy requested (gate overridden)") and forced["outcome"] == "deployed"
    assert backends.store.projects.get("news").deployed_model == forced["model_name"]
    assert naming.parse_model_name(forced["model_name"]) is not None


def test_each_training_logs_the_learning_curve_over_the_projects_models(backends: Backends, deployed: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import csv

    second = train_now(backends, "news", choice="register_only")
    run_id = backends.store.trainings.get(second["run_key"]).mlflow_run_id
    folder = backends.registry.client.download_artifacts(run_id, "learning_curve", str(tmp_path))
    rows = list(csv.DictReader(open(f"{folder}/learning_curve.csv")))
    assert [row["model_name"] for row in rows] == [deployed, second["model_name"]]
    assert {"completions", "f1", "f1_PER", "f1_ORG", "f1_LOC"} <= rows[0].keys()
    assert (tmp_path / "learning_curve" / "learning_curve.png").stat().st_size > 5000


def test_two_rescores_of_one_model_at_once_each_have_their_own_folder(home) -> None:  # type: ignore[no-untyped-def]
    import threading
    from types import SimpleNamespace

    from active_learning.deploy.gate import compare
    from active_learning.registry import ModelVersionInfo

    both_inside = threading.Barrier(2, timeout=30)
    folders = []

    def download_dataset(run_id, folder):  # type: ignore[no-untyped-def]
        folders.append(folder)
        both_inside.wait()  # each rescore holds its folder while the other one works
        assert folder.is_dir()
        raise LookupError("stop here: the folders are what this test is about")

    backends = SimpleNamespace(deployed_version=lambda project: None, registry=SimpleNamespace(download_dataset=download_dataset))
    model = ModelVersionInfo(registered_name="news_ner", version=1, model_name="news_ner_20261130_120000", project="news",
                             trained_at="", labels=("PER",), run_id="run", aliases=())
    results = []

    def rescore() -> None:
        try:
            compare(backends, model)  # type: ignore[arg-type]
        except LookupError as error:
            results.append(error)

    run_at_once(rescore)
    assert len(results) == 2 and len(set(folders)) == 2
