"""Pre-annotation and the annotation queue, on a real store, MLflow store and a trained spaCy model.

The sample project: 40 annotated tasks train the model, 50 more wait for annotation (batch 2 without its
completions); later, re-importing batch 2 with its completions takes those tasks out of the queue.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from active_learning import cli
from active_learning.backends import Backends
from active_learning.exports import read_export
from active_learning.loop import train_now
from active_learning.preannotation.queue import least_confident, next_tasks
from active_learning.preannotation.run import NoDeployedModelError, preannotate
from active_learning.preannotation.scoring import predict
from conftest import SAMPLE, run_at_once, shared_file

PROJECT = "news"
ALAB_DEMO = "formats/annotation_lab/alab_demo.json"


@pytest.fixture
def queued(backends: Backends, sample_config: str) -> Backends:
    """40 annotated tasks, a model trained on them and deployed, 50 tasks awaiting annotation."""
    backends.store.projects.create(PROJECT, sample_config, active_learning=True)
    backends.store.completions.import_tasks(PROJECT, read_export(SAMPLE / "completions_batch1.json")[0])
    waiting = [replace(task, completions=()) for task in read_export(SAMPLE / "completions_batch2.json")[0]]
    backends.store.completions.import_tasks(PROJECT, waiting)
    train_now(backends, PROJECT, choice="deploy")
    return backends


def predictions(backends: Backends) -> dict[str, tuple[float, list[dict[str, Any]]]]:
    model = backends.store.projects.get(PROJECT).deployed_model
    assert model is not None
    return backends.store.predictions.of_model(PROJECT, model)


def test_every_task_awaiting_annotation_gets_one_prediction_and_a_second_run_does_nothing(queued: Backends) -> None:
    model = queued.store.projects.get(PROJECT).deployed_model
    waiting = set(queued.store.predictions.unannotated_ids(PROJECT))
    assert len(waiting) == 50

    first = preannotate(queued, PROJECT)
    made = predictions(queued)

    assert (first.model, first.predicted, first.skipped) == (model, 50, 0)
    assert set(made) == waiting
    assert all(0.0 <= score <= 1.0 for score, _ in made.values())
    items = [item for _, result in made.values() for item in result]
    assert items, "a model trained on the sample finds entities in its other half"
    assert {(item["from_name"], item["to_name"], item["type"]) for item in items} == {("label", "text", "labels")}
    assert {label for item in items for label in item["value"]["labels"]} <= {"PER", "ORG", "LOC"}

    second = preannotate(queued, PROJECT)
    assert (second.predicted, second.skipped) == (0, 0)
    assert predictions(queued) == made


def test_labels_tied_to_a_pretrained_model_get_no_predictions(queued: Backends) -> None:
    config = queued.store.configs.read(PROJECT)
    model = queued.store.projects.get(PROJECT).deployed_model
    tied_to_pretrained = config.xml.replace(f'value="PER" model="{model}"', 'value="PER" model="ner_dl"')
    assert tied_to_pretrained != config.xml
    queued.store.configs.write(PROJECT, tied_to_pretrained, expected_revision=config.revision, author="test", reason="test")

    preannotate(queued, PROJECT)

    labels = {label for _, result in predictions(queued).values() for item in result for label in item["value"]["labels"]}
    assert labels and "PER" not in labels


def test_the_scores_are_deterministic_and_mean_something_without_entities(queued: Backends, tmp_path: Path) -> None:
    import spacy

    info = queued.deployed_version(PROJECT)
    assert info is not None
    nlp = spacy.load(queued.registry.download_model(info, tmp_path))
    texts = ["Angela Merkel met Emmanuel Macron in Berlin.", "the the the", "ok"]
    first, again = list(predict(nlp, texts)), list(predict(nlp, list(reversed(texts))))
    assert first == list(reversed(again))
    assert all(scored is not None and 0.0 < scored.score <= 1.0 for scored in first)
    nlp.max_length = 20  # a text the model refuses (spaCy's E088) is skipped, the others still scored
    skipped = list(predict(nlp, ["A short one.", "x" * 40, "Another."]))
    assert [scored is None for scored in skipped] == [False, True, False]


def test_the_next_model_pre_annotates_by_the_project_s_new_strategy(queued: Backends, tmp_path: Path) -> None:
    import spacy

    from active_learning.training import parameters

    assert preannotate(queued, PROJECT).scorer == "margin"
    queued.store.projects.set_training_params(PROJECT, parameters.changed({}, {"queue.strategy": "mnlp"}, []),
                                              author="test", reason="rank by mnlp")
    train_now(queued, PROJECT, choice="deploy")
    report = preannotate(queued, PROJECT)
    info = queued.deployed_version(PROJECT)
    assert info is not None and (report.model, report.scorer, report.predicted) == (info.model_name, "mnlp", 50)
    assert queued.store.predictions.scorers(PROJECT, info.model_name) == {"mnlp"}
    nlp = spacy.load(queued.registry.download_model(info, tmp_path))
    made = predictions(queued)
    tasks = sorted(made)
    texts = queued.store.predictions.texts(PROJECT, tasks)
    expected = [round(scored.score, 6) for scored in predict(nlp, [texts[task] for task in tasks], scorer="mnlp")]
    assert [made[task][0] for task in tasks] == expected


def test_a_run_that_fails_half_way_resumes_where_it_stopped(queued: Backends, monkeypatch: pytest.MonkeyPatch) -> None:
    save = queued.store.predictions.save
    calls = []

    def failing_third_page(*args: Any, **kwargs: Any) -> int:
        calls.append(1)
        if len(calls) == 3:
            raise ConnectionError("the database went away")
        return save(*args, **kwargs)

    monkeypatch.setattr(queued.store.predictions, "save", failing_third_page)
    with pytest.raises(ConnectionError):
        preannotate(queued, PROJECT, batch_size=10)
    assert len(predictions(queued)) == 20  # two committed pages
    monkeypatch.setattr(queued.store.predictions, "save", save)

    resumed = preannotate(queued, PROJECT, batch_size=10)
    assert resumed.predicted == 30 and len(predictions(queued)) == 50


def test_next_lists_the_least_confident_first_and_annotated_tasks_leave_the_queue(queued: Backends) -> None:
    preannotate(queued, PROJECT)
    scores = {task: score for task, (score, _) in predictions(queued).items()}

    queue = next_tasks(queued, PROJECT, n=100)
    assert [entry.task for entry in queue] == sorted(scores, key=lambda task: (scores[task], int(task)))
    assert [entry.score for entry in queue] == sorted(scores.values())
    assert next_tasks(queued, PROJECT, n=100) == queue  # the same order for the same predictions

    annotated = read_export(SAMPLE / "completions_batch2.json")[0][:10]
    queued.store.completions.import_tasks(PROJECT, annotated)
    after = [entry.task for entry in next_tasks(queued, PROJECT, n=100)]
    assert len(after) == 40 and not {task.source_id for task in annotated} & set(after)


def test_unscored_tasks_follow_the_scored_ones_in_source_order() -> None:
    assert least_confident(["a", "b", "c", "d"], {"c": 0.2, "a": 0.9, "d": 0.2}) == ["c", "d", "a", "b"]


def scored_project(backends: Backends, sample_config: str, scores: dict[str, tuple[str, float]], *, labelled: str = "",
                   scorer: str = "margin") -> str:
    """A project whose deployed model (a name: nothing is loaded) scored ``scores``' texts by ``scorer``."""
    from active_learning import naming
    from active_learning.exports import CompletionRecord, TaskRecord
    from active_learning.store import NewPrediction
    from active_learning.store.models import utcnow

    backends.store.projects.create(PROJECT, sample_config)
    done = CompletionRecord("c", "ana", None, utcnow(), False, None, False, (), 0)
    backends.store.completions.import_tasks(
        PROJECT, [TaskRecord(task, text, None, ()) for task, (text, _) in scores.items()]
        + ([TaskRecord("labelled", labelled, None, (done,))] if labelled else []))
    model = naming.model_name(PROJECT, utcnow())
    backends.store.projects.set_deployed_model(PROJECT, model)
    backends.store.predictions.save(PROJECT, model, [NewPrediction(task, score, []) for task, (_, score) in scores.items()],
                                    scorer=scorer)
    return model


def test_next_drops_near_copies_of_each_other_and_of_labelled_tasks(backends: Backends, sample_config: str) -> None:
    scored_project(backends, sample_config, {
        "tweet": ("Big storm over Lisbon tonight http://t.co/x", 0.10),
        "retweet": ("RT @news: big storm over Lisbon tonight!", 0.11),
        "copy-of-labelled": ("Acme hires Jane Doe", 0.12),
        "other": ("Paris votes on Sunday", 0.50),
        "sure": ("Berlin is in Germany", 0.90),
    }, labelled="acme HIRES jane doe")

    picked = [entry.task for entry in next_tasks(backends, PROJECT, n=2)]
    assert picked == ["tweet", "other"]  # least sure first; the retweet and the labelled task's copy wait
    assert [entry.task for entry in next_tasks(backends, PROJECT, n=5)] == ["tweet", "retweet", "copy-of-labelled", "other", "sure"]


def test_next_ranks_by_the_scorer_of_the_deployed_model_s_scores(backends: Backends, sample_config: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from active_learning.preannotation.queue import QueueStrategyError
    from active_learning.training import parameters

    model = scored_project(backends, sample_config, {"a": ("Alpha", 0.2), "b": ("Beta", 0.1)}, scorer="mnlp")
    assert {(entry.strategy, entry.model) for entry in next_tasks(backends, PROJECT, n=2)} == {("mnlp", model)}
    assert [entry.task for entry in next_tasks(backends, PROJECT, n=2, strategy="uncertainty")] == ["b", "a"]
    with pytest.raises(QueueStrategyError, match=f"{model} scored 'news'.s tasks by mnlp, not entity: set the training parameter"):
        next_tasks(backends, PROJECT, strategy="entity")
    # The project's strategy changes: the deployed model's scores still rank until the next model.
    changed = parameters.changed({}, {"queue.strategy": "dropout"}, [])
    backends.store.projects.set_training_params(PROJECT, changed, author="test", reason="test")
    assert {entry.strategy for entry in next_tasks(backends, PROJECT, n=2)} == {"mnlp"}
    assert [entry.strategy for entry in next_tasks(backends, PROJECT, n=1, strategy="sequential")] == ["sequential"]

    assert cli.main(["next", "--project", PROJECT, "--strategy", "margin"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {model} scored 'news''s tasks by mnlp, not margin: set the training parameter "
                   "queue.strategy=margin and the next model's pre-annotation scores by it"]
    with pytest.raises(SystemExit) as unknown:
        cli.main(["next", "--project", PROJECT, "--strategy", "nonsense"])
    assert unknown.value.code == 2 and "invalid choice: 'nonsense'" in capsys.readouterr().err


def test_without_a_deployed_model_next_and_preannotate_say_so(backends: Backends, sample_config: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    backends.store.projects.create(PROJECT, sample_config)
    backends.store.completions.import_tasks(PROJECT, read_export(SAMPLE / "completions_batch1.json")[0])
    with pytest.raises(NoDeployedModelError):
        preannotate(backends, PROJECT)
    assert cli.main(["next", "--project", PROJECT]) == 1
    assert cli.main(["preannotate", "--project", PROJECT]) == 1
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and all("has no deployed model of ours" in line for line in errors)
    assert cli.main(["next", "--project", PROJECT, "--strategy", "sequential", "--n", "3", "--json"]) == 0
    assert cli.main(["next", "--project", PROJECT, "--strategy", "random", "--n", "3", "--json"]) == 0


def test_random_and_sequential_orders(queued: Backends) -> None:
    waiting = queued.store.predictions.unannotated_ids(PROJECT)
    assert [e.task for e in next_tasks(queued, PROJECT, n=5, strategy="sequential")] == waiting[:5]
    shuffled = [e.task for e in next_tasks(queued, PROJECT, n=50, strategy="random")]
    assert sorted(shuffled) == sorted(waiting) and shuffled != waiting
    assert shuffled == [e.task for e in next_tasks(queued, PROJECT, n=50, strategy="random")]
    assert shuffled != [e.task for e in next_tasks(queued, PROJECT, n=50, strategy="random", seed=1)]


def test_export_predictions_in_both_formats(queued: Backends, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preannotate(queued, PROJECT)
    model = queued.store.projects.get(PROJECT).deployed_model
    for fmt in ("label-studio", "annotation-lab"):
        out = tmp_path / f"{fmt}.json"
        assert cli.main(["export-predictions", "--project", PROJECT, "--format", fmt, "--out", str(out)]) == 0
        tasks = json.loads(out.read_text())
        assert len(tasks) == 50 and all(task["data"]["text"] for task in tasks)
        for task in tasks:
            [prediction] = task["predictions"]
            assert prediction["model_version"] == model and 0 <= prediction["score"] <= 1
            for item in prediction["result"]:
                start, end = item["value"]["start"], item["value"]["end"]
                assert task["data"]["text"][start:end] == item["value"]["text"]
    alab = json.loads((tmp_path / "annotation-lab.json").read_text())
    assert all(task["completions"] == [] and isinstance(task["id"], int) for task in alab)
    theirs = json.loads(shared_file(ALAB_DEMO).read_text())
    their_item = next(item for task in theirs for c in task["completions"] for item in c["result"] if item["type"] == "labels")
    ours = next(item for task in alab for p in task["predictions"] for item in p["result"])
    assert set(ours) == set(their_item) and set(ours["value"]) <= set(their_item["value"])


def test_the_project_page_shows_the_queue(queued: Backends) -> None:
    from active_learning.project_page import project_detail
    from active_learning.store.models import utcnow

    preannotate(queued, PROJECT)
    model = queued.store.projects.get(PROJECT).deployed_model
    queue = project_detail(queued, PROJECT, utcnow())["queue"]

    assert (queue["awaiting"], queue["predicted"], queue["deployed_model"], queue["strategy"]) == (50, {model: 50}, model, "margin")
    made, texts = predictions(queued), {task.source_id: task.text for task in read_export(SAMPLE / "completions_batch2.json")[0]}
    shown = queue["next"]
    assert [entry["task"] for entry in shown] == [entry.task for entry in next_tasks(queued, PROJECT, n=10)]
    assert len(shown) == 10 and [entry["score"] for entry in shown] == sorted(made[entry["task"]][0] for entry in shown)
    assert {(entry["strategy"], entry["model"]) for entry in shown} == {("margin", model)}
    for entry in shown:
        text = texts[entry["task"]]
        assert entry["text"] == (text if len(text) <= 160 else text[:160] + "…")
        within = sorted((item["value"]["start"], item["value"]["end"], item["value"]["labels"][0]) for item in made[entry["task"]][1]
                        if item["value"]["end"] <= 160)
        assert [(span["start"], span["end"], span["label"]) for span in entry["spans"]] == within
    assert any(entry["spans"] for entry in shown), "the model marks entities in the texts it shows"


def test_every_deploy_and_a_rollback_are_announced_and_the_restored_model_s_predictions_are_current(
    queued: Backends,
) -> None:
    import time

    from active_learning.deploy.deployment import rollback

    first = queued.store.projects.get(PROJECT).deployed_model
    assert queued.store.predictions.announce() == [PROJECT]  # the fixture's auto-deploy
    assert queued.store.predictions.announce() == []  # announced once
    preannotate(queued, PROJECT)
    first_scores = {task: score for task, (score, _) in predictions(queued).items()}

    time.sleep(1.1)  # model names carry the training second
    second = train_now(queued, PROJECT, choice="deploy")["model_name"]
    assert queued.store.predictions.announce() == [PROJECT]
    preannotate(queued, PROJECT)
    assert [entry.model for entry in next_tasks(queued, PROJECT, n=100)] == [second] * 50

    rollback(queued, PROJECT, to_revision=queued.store.configs.revisions(PROJECT)[-2].revision, author="test")
    assert queued.store.projects.get(PROJECT).deployed_model == first
    assert queued.store.predictions.announce() == [PROJECT]
    assert preannotate(queued, PROJECT).predicted == 0  # its predictions are kept: nothing to redo
    restored = next_tasks(queued, PROJECT, n=100)
    assert {entry.model for entry in restored} == {first}
    assert {entry.task: entry.score for entry in restored} == first_scores


def test_two_runs_of_one_model_at_once_each_have_their_own_folder(home: Path) -> None:
    import threading
    from types import SimpleNamespace

    from active_learning.registry import ModelVersionInfo

    model = ModelVersionInfo(registered_name="news_ner", version=1, model_name="news_ner_20261130_120000", project=PROJECT,
                             trained_at="", labels=("PER",), run_id="run", aliases=())
    config = (SAMPLE / "labeling_config.xml").read_text().replace('value="PER"', f'value="PER" model="{model.model_name}"')
    both_inside = threading.Barrier(2, timeout=30)
    folders = []

    def download_model(info, folder):  # type: ignore[no-untyped-def]
        folders.append(folder)
        both_inside.wait()  # each run holds its folder while the other one works
        raise LookupError("stop here: the folders are what this test is about")

    source = SimpleNamespace(read_config=lambda project: SimpleNamespace(xml=config),
                             tasks_to_preannotate=lambda project, model, page_size: iter([["a task"]]))
    backends = SimpleNamespace(deployed_version=lambda project: model, source=lambda project: source,
                               registry=SimpleNamespace(download_model=download_model, scorer=lambda info: "margin"))
    stopped = []

    def run() -> None:
        with pytest.raises(LookupError, match="stop here"):
            preannotate(backends, PROJECT)  # type: ignore[arg-type]
        stopped.append(True)

    run_at_once(run)
    assert stopped == [True, True] and len(set(folders)) == 2
