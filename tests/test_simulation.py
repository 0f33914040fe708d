"""``active-learning simulate`` on the sample project: batch 2's 50 tasks are the pool, batch 1's 40 the eval set,
with the tests' tiny training (60 steps, conftest). The uncertainty run is made once per module and read by
several tests; a spy on ``predict`` records the scores the choice was made on.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from active_learning.cli import main
from active_learning.preannotation import simulation
from active_learning.preannotation.batch import Candidate, choose_batch
from active_learning.preannotation.scoring import predict
from conftest import SAMPLE

CONFIG = str(SAMPLE / "labeling_config.xml")
POOL, EVAL = str(SAMPLE / "completions_batch2.json"), str(SAMPLE / "completions_batch1.json")
SEED_SIZE, BATCH, ROUNDS = 6, 4, 2


def simulate_args(*extra: str, strategy: str = "uncertainty", rounds: int = ROUNDS) -> list[str]:
    return ["simulate", "--tasks", POOL, "--config", CONFIG, "--eval-tasks", EVAL, "--strategy", strategy,
            "--seed-size", str(SEED_SIZE), "--batch", str(BATCH), "--rounds", str(rounds), "--seed", "3", *extra]


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def without_seconds(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in round_.items() if k != "seconds"} for round_ in result["rounds"]]


@dataclass
class UncertaintyRun:
    result: dict[str, Any]
    home: Path
    scores: list[dict[str, float]]  # per pre-annotation: text -> predict's score


@pytest.fixture(scope="module")
def uncertainty_run(tmp_path_factory: pytest.TempPathFactory) -> UncertaintyRun:
    home = tmp_path_factory.mktemp("simulation")
    scores: list[dict[str, float]] = []

    def spy(nlp: Any, texts: list[str], **kwargs: Any) -> Any:
        results = list(predict(nlp, texts, **kwargs))
        scores.append({text: result.score for text, result in zip(texts, results, strict=True) if result is not None})
        return iter(results)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ACTIVE_LEARNING_HOME", str(home))
        patch.setattr(simulation, "predict", spy)
        code, out, err = run(simulate_args())
    assert code == 0, err[-3000:]
    return UncertaintyRun(json.loads(out), home, scores)


def mlflow_run(home: Path) -> Any:
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.get_experiment_by_name(simulation.EXPERIMENT)
    assert experiment is not None
    (found,) = client.search_runs([experiment.experiment_id])
    return client, found


def test_the_json_has_one_entry_per_round_and_annotations_grow_by_the_batch(uncertainty_run: UncertaintyRun) -> None:
    result = uncertainty_run.result
    assert set(result) == {"strategy", "spread", "base", "rounds"} and result["strategy"] == "uncertainty" and result["base"] == "none"
    assert result["spread"] is True
    assert [r["annotations"] for r in result["rounds"]] == [SEED_SIZE + BATCH * n for n in range(ROUNDS + 1)]
    for round_ in result["rounds"]:
        assert set(round_) == {"annotations", "tokens", "entities", "precision", "recall", "f1", "seconds"}
        assert all(0.0 <= round_[key] <= 1.0 for key in ("precision", "recall", "f1")) and round_["seconds"] > 0
    assert result["rounds"][-1]["f1"] > 0, "a model trained on the sample finds its entities"


def test_each_round_counts_the_tokens_and_entities_of_the_tasks_revealed_so_far(uncertainty_run: UncertaintyRun) -> None:
    import spacy

    client, found = mlflow_run(uncertainty_run.home)
    revealed = json.loads(Path(client.download_artifacts(found.info.run_id, "simulation.json")).read_text())["revealed"]
    examples = {example.task_id: example for example in simulation.load_examples(Path(POOL), Path(CONFIG).read_text())}
    tokenizer, so_far = spacy.blank("en").tokenizer, []
    for round_, picked in zip(uncertainty_run.result["rounds"], revealed, strict=True):
        so_far += [examples[task] for task in picked]
        assert round_["tokens"] == sum(len(tokenizer(example.text)) for example in so_far)
        assert round_["entities"] == sum(len(example.spans) for example in so_far) > 0


def test_uncertainty_reveals_the_batch_chosen_from_predict_s_scores(uncertainty_run: UncertaintyRun) -> None:
    """The batch is choose_batch's (tests/test_batch.py) over the waiting tasks' scores, with the labelled texts."""
    client, found = mlflow_run(uncertainty_run.home)
    revealed = json.loads(Path(client.download_artifacts(found.info.run_id, "simulation.json")).read_text())["revealed"]
    text_of = {example.task_id: example.text for example in simulation.load_examples(Path(POOL), Path(CONFIG).read_text())}
    assert len(uncertainty_run.scores) == ROUNDS  # every round after round 0 pre-annotates the waiting tasks once
    labelled = set(revealed[0])
    for picked, scores in zip(revealed[1:], uncertainty_run.scores, strict=True):
        assert set(scores) == {text_of[task] for task in text_of if task not in labelled}  # the rest of the pool
        assert len(picked) == BATCH
        waiting = [Candidate(task, text_of[task], scores[text_of[task]]) for task in text_of if task not in labelled]
        assert picked == choose_batch(waiting, BATCH, labelled=[text_of[task] for task in labelled])
        labelled |= set(picked)


def test_the_curve_is_logged_to_mlflow_at_step_annotations(uncertainty_run: UncertaintyRun) -> None:
    client, found = mlflow_run(uncertainty_run.home)
    params = found.data.params
    assert (params["strategy"], params["seed_size"], params["batch"], params["rounds"], params["seed"]) == ("uncertainty", "6", "4", "2", "3")
    assert (params["tasks"], params["eval_tasks"], params["config"]) == ("completions_batch2.json", "completions_batch1.json", "labeling_config.xml")
    assert found.info.status == "FINISHED"
    history = client.get_metric_history(found.info.run_id, "f1")
    rounds = uncertainty_run.result["rounds"]
    assert [(m.step, m.value) for m in history] == [(r["annotations"], r["f1"]) for r in rounds]


def test_the_same_seed_gives_the_same_curve(uncertainty_run: UncertaintyRun, home: Path) -> None:
    code, out, err = run(simulate_args())
    assert code == 0, err[-3000:]
    assert without_seconds(json.loads(out)) == without_seconds(uncertainty_run.result)


def test_random_starts_from_the_same_seed_tasks(uncertainty_run: UncertaintyRun, home: Path) -> None:
    code, out, err = run(simulate_args(strategy="random", rounds=1))
    assert code == 0, err[-3000:]
    rounds = json.loads(out)["rounds"]
    assert [r["annotations"] for r in rounds] == [SEED_SIZE, SEED_SIZE + BATCH]
    assert without_seconds({"rounds": rounds[:1]}) == without_seconds(uncertainty_run.result)[:1]


def test_mnlp_reveals_the_tasks_with_the_lowest_length_normalised_probability(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, dict[str, float]]] = []

    def spy(nlp: Any, texts: list[str], **kwargs: Any) -> Any:
        results = list(predict(nlp, texts, **kwargs))
        asked.append((kwargs["scorer"], {text: result.score for text, result in zip(texts, results, strict=True) if result}))
        return iter(results)

    monkeypatch.setattr(simulation, "predict", spy)
    code, out, err = run(simulate_args("--no-spread", strategy="mnlp", rounds=1))
    assert code == 0, err[-3000:]
    [(scorer, scores)] = asked
    client, found = mlflow_run(home)
    revealed = json.loads(Path(client.download_artifacts(found.info.run_id, "simulation.json")).read_text())["revealed"]
    text_of = {example.task_id: example.text for example in simulation.load_examples(Path(POOL), Path(CONFIG).read_text())}
    picked = {text_of[task] for task in revealed[1]}
    assert scorer == "mnlp" and json.loads(out)["strategy"] == "mnlp" and len(picked) == BATCH
    assert max(scores[text] for text in picked) <= min(score for text, score in scores.items() if text not in picked)


@pytest.fixture
def no_completions(tmp_path: Path) -> str:
    tasks = json.loads(Path(EVAL).read_text())
    path = tmp_path / "unlabelled.json"
    path.write_text(json.dumps([{**task, "completions": []} for task in tasks]))
    return str(path)


@pytest.mark.parametrize(("change", "message"), [
    ({"--seed-size": "51"}, "--seed-size 51 is larger than the pool (50 labelled tasks"),
    ({"--rounds": "12"}, "= 54 tasks, more than the pool's 50"),
    ({"--strategy": "sequential"}, "--strategy must be one of margin, mnlp, entity, dropout, random, uncertainty, not 'sequential'"),
    ({"--seed-size": "0"}, "--seed-size must be at least 2, not 0"),
    ({"--batch": "-1"}, "--batch must be at least 1, not -1"),
    ({"--eval-tasks": "NO_COMPLETIONS"}, "has no task with a submitted completion to score on"),
])
def test_wrong_usage_exits_2_with_one_line_and_trains_nothing(change: dict[str, str], message: str, no_completions: str, home: Path) -> None:
    argv = simulate_args()
    for flag, value in change.items():
        argv[argv.index(flag) + 1] = no_completions if value == "NO_COMPLETIONS" else value
    code, out, err = run(argv)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not (home / "mlflow.db").exists()
