"""Tests for active_learning.training.spacy_ner: train a tiny NER model on hand-built Docs and score it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span

from active_learning.training.spacy_ner import (
    NER_CONFIG_PATH,
    LabelScores,
    NerScores,
    TrainingOutcome,
    load_model,
    load_training_overrides,
    score_ner,
    train_ner,
)

PEOPLE = ["Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry"]
CITIES = ["Paris", "Berlin", "Madrid", "Rome", "Vienna"]
TEMPLATES = [  # (words, index of the person, index of the city)
    (["{p}", "lives", "in", "{c}", "."], 0, 3),
    (["Yesterday", "{p}", "flew", "to", "{c}", "."], 1, 4),
    (["In", "{c}", ",", "{p}", "met", "friends", "."], 3, 1),
    (["{p}", "likes", "the", "food", "in", "{c}", "."], 0, 5),
    (["We", "visited", "{c}", "with", "{p}", "today", "."], 4, 2),
]
# 30 steps fit the templated data cleanly (checked: seeds 0-3 all reach F1 1.0 from step 20 on)
TRAIN_OVERRIDES = {"training.max_steps": 30, "training.eval_frequency": 10}
METRIC_KEY = re.compile(r"^[A-Za-z0-9_\-. /]+$")


def make_docs(nlp, n: int = 40) -> list[Doc]:
    docs = []
    for i in range(n):
        words, p_i, c_i = TEMPLATES[i % len(TEMPLATES)]
        person, city = PEOPLE[i % len(PEOPLE)], CITIES[(i // 2) % len(CITIES)]
        words = [w.format(p=person, c=city) for w in words]
        doc = Doc(nlp.vocab, words=words, spaces=[w not in {".", ","} for w in words[1:]] + [False])
        doc.ents = [Span(doc, p_i, p_i + 1, label="PERSON"), Span(doc, c_i, c_i + 1, label="CITY")]
        docs.append(doc)
    return docs


def write_docbin(docs: list[Doc], path: Path) -> Path:
    DocBin(docs=docs, store_user_data=False).to_disk(path)
    return path


@pytest.fixture(scope="module")
def nlp_blank():
    return spacy.blank("en")


@pytest.fixture(scope="module")
def gold_docs(nlp_blank) -> list[Doc]:
    return make_docs(nlp_blank)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, gold_docs) -> TrainingOutcome:
    tmp = tmp_path_factory.mktemp("training")
    train = write_docbin(gold_docs[:32], tmp / "train.spacy")
    dev = write_docbin(gold_docs[32:], tmp / "dev.spacy")
    return train_ner(train, dev, tmp / "model", overrides=TRAIN_OVERRIDES)


def ruler_nlp(patterns: list[dict]):
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns(patterns)
    return nlp


def test_config_path_points_at_the_project_config():
    assert NER_CONFIG_PATH == Path(__file__).resolve().parents[1] / "include" / "configs" / "ner.cfg"
    assert NER_CONFIG_PATH.is_file()


def test_train_ner_writes_loadable_best_model_with_data_labels(trained):
    assert trained.model_dir.name == "model-best"
    assert (trained.model_dir / "meta.json").is_file()
    assert trained.labels == ("CITY", "PERSON")
    assert trained.seconds > 0
    nlp = load_model(trained.model_dir)
    assert "ner" in nlp.pipe_names
    assert set(nlp.get_pipe("ner").labels) == {"CITY", "PERSON"}


def test_train_ner_applies_overrides_and_paths(trained):
    config = spacy.util.load_config(trained.model_dir / "config.cfg")
    assert config["training"]["max_steps"] == TRAIN_OVERRIDES["training.max_steps"]
    assert config["training"]["eval_frequency"] == TRAIN_OVERRIDES["training.eval_frequency"]
    assert config["paths"]["train"].endswith("train.spacy")
    assert config["paths"]["dev"].endswith("dev.spacy")
    # The listening chain trained it; the saved pipelines name ner.cfg's own logger, which any spaCy has.
    own = spacy.util.load_config(NER_CONFIG_PATH)["training"]["logger"]
    for saved in ("model-best", "model-last"):
        assert spacy.util.load_config(trained.model_dir.parent / saved / "config.cfg")["training"]["logger"] == own, saved


def test_a_listener_hears_every_evaluation_beside_spacys_table_and_its_failure_never_stops_training(tmp_path, gold_docs, capsys):
    heard: dict[str, list] = {"started": [], "evaluated": []}

    class Listener:
        def started(self, training):
            heard["started"].append(training["max_steps"])

        def evaluated(self, info):
            heard["evaluated"].append(info["step"])
            if info["step"] == 10:
                raise RuntimeError("a listener's bug")

    train = write_docbin(gold_docs[:32], tmp_path / "train.spacy")
    dev = write_docbin(gold_docs[32:], tmp_path / "dev.spacy")
    outcome = train_ner(train, dev, tmp_path / "model", overrides=TRAIN_OVERRIDES, listener=Listener())
    assert heard == {"started": [30], "evaluated": [0, 10, 20, 30]} and (outcome.model_dir / "meta.json").is_file()
    assert "ENTS_F" in capsys.readouterr().out  # spaCy's own table still prints


def test_trained_model_predicts_training_entities(trained, gold_docs):
    nlp = load_model(trained.model_dir)
    predicted = {(ent.text, ent.label_) for doc in nlp.pipe(d.text for d in gold_docs[:32]) for ent in doc.ents}
    assert {label for _, label in predicted} == {"CITY", "PERSON"}
    assert ("Alice", "PERSON") in predicted and ("Paris", "CITY") in predicted
    scores = score_ner(nlp, gold_docs[:32])
    assert scores.f1 >= 0.9


def test_score_ner_of_trained_model_on_gold_docs(trained, gold_docs):
    scores = score_ner(load_model(trained.model_dir), gold_docs[32:])
    assert isinstance(scores, NerScores)
    for value in (scores.precision, scores.recall, scores.f1):
        assert 0.0 <= value <= 1.0
    assert set(scores.per_label) == {"CITY", "PERSON"}
    assert all(isinstance(s, LabelScores) and 0.0 <= s.f1 <= 1.0 for s in scores.per_label.values())


def test_score_ner_perfect_predictions_give_one(gold_docs):
    patterns = [{"label": "PERSON", "pattern": p} for p in PEOPLE] + [
        {"label": "CITY", "pattern": c} for c in CITIES
    ]
    scores = score_ner(ruler_nlp(patterns), gold_docs)
    assert (scores.precision, scores.recall, scores.f1) == (1.0, 1.0, 1.0)
    assert scores.per_label == {"CITY": LabelScores(1.0, 1.0, 1.0), "PERSON": LabelScores(1.0, 1.0, 1.0)}


def test_score_ner_partial_predictions_and_unused_labels_omitted(gold_docs):
    # Persons found; cities predicted with the wrong label; an ORG pattern that never matches.
    patterns = (
        [{"label": "PERSON", "pattern": p} for p in PEOPLE]
        + [{"label": "ORG", "pattern": "Paris"}]
        + [{"label": "ORG", "pattern": "Nowhere Inc"}]
        + [{"label": "UNUSED", "pattern": "Zzyzx"}]
    )
    scores = score_ner(ruler_nlp(patterns), gold_docs)
    n_paris = sum(1 for d in gold_docs for e in d.ents if e.text == "Paris")
    n = len(gold_docs)
    assert scores.per_label["PERSON"] == LabelScores(1.0, 1.0, 1.0)
    assert scores.per_label["CITY"].recall == 0.0 and scores.per_label["CITY"].f1 == 0.0
    assert scores.per_label["ORG"].precision == 0.0
    assert "UNUSED" not in scores.per_label
    assert scores.precision == pytest.approx(n / (n + n_paris))
    assert scores.recall == pytest.approx(0.5)


def test_score_ner_rejects_empty_input():
    with pytest.raises(ValueError):
        score_ner(spacy.blank("en"), [])


def test_as_metrics_flat_and_sanitised():
    scores = NerScores(
        precision=0.5,
        recall=0.25,
        f1=1 / 3,
        per_label={
            "PER": LabelScores(1.0, 0.5, 2 / 3),
            "creative-work": LabelScores(0.1, 0.2, 0.3),
            "a:b(c)": LabelScores(0.0, 0.0, 0.0),
            "a_b_c_": LabelScores(0.4, 0.4, 0.4),
        },
    )
    metrics = scores.as_metrics()
    assert metrics["precision"] == 0.5 and metrics["recall"] == 0.25 and metrics["f1"] == pytest.approx(1 / 3)
    assert metrics["f1_PER"] == pytest.approx(2 / 3)
    assert metrics["precision_PER"] == 1.0 and metrics["recall_PER"] == 0.5
    assert metrics["f1_creative-work"] == 0.3
    assert all(METRIC_KEY.match(key) for key in metrics), metrics
    # "a:b(c)" and "a_b_c_" both sanitise to "a_b_c_": neither metric may overwrite the other
    assert sorted(v for k, v in metrics.items() if k.startswith("f1_a_b_c_")) == [0.0, 0.4]
    assert len(metrics) == 3 + 3 * 4
    assert all(isinstance(v, float) for v in metrics.values())


def test_metric_keys_of_labels_mlflow_cannot_name_are_valid_and_distinct():
    from mlflow.utils.validation import _validate_metric

    long_a, long_b = "A" * 299 + "a", "A" * 299 + "b"  # alike in their first 299 characters
    labels = ["PER/", "PER_", "a//b", "..", "x:y", long_a, long_b, "OK"]
    scores = NerScores(0.5, 0.5, 0.5, {label: LabelScores(i / 10, i / 10, i / 10) for i, label in enumerate(labels)})
    metrics = scores.as_metrics()
    assert len(metrics) == 3 + 3 * len(labels)  # no two labels share a key
    for key, value in metrics.items():
        _validate_metric(key, value, 0, 0)  # MLflow's own check of a metric, its key's length included
    assert metrics["f1_PER_"] == metrics["recall_PER_"] == 0.1 and metrics["f1_OK"] == 0.7
    # a label's three metrics carry the same name for it
    names = {key.removeprefix(prefix) for key in metrics for prefix in ("f1_", "precision_", "recall_") if key.startswith(prefix)}
    assert len(names) == len(labels)


def test_as_dict_is_json_serialisable():
    scores = NerScores(0.5, 0.5, 0.5, {"CITY": LabelScores(0.25, 0.75, 0.375)})
    assert json.loads(json.dumps(scores.as_dict())) == {
        "precision": 0.5,
        "recall": 0.5,
        "f1": 0.5,
        "per_label": {"CITY": {"precision": 0.25, "recall": 0.75, "f1": 0.375}},
    }


def test_load_training_overrides_from_environment(monkeypatch):
    monkeypatch.setenv("ACTIVE_LEARNING_SPACY_OVERRIDES", '{"training.max_steps": 50, "training.patience": 10}')
    assert load_training_overrides() == {"training.max_steps": 50, "training.patience": 10}
    # an explicit argument wins over the environment
    assert load_training_overrides('{"training.eval_frequency": 5}') == {"training.eval_frequency": 5}
    monkeypatch.setenv("ACTIVE_LEARNING_SPACY_OVERRIDES", "  ")
    assert load_training_overrides() == {}
    monkeypatch.delenv("ACTIVE_LEARNING_SPACY_OVERRIDES")
    assert load_training_overrides() == {}


@pytest.mark.parametrize(
    "raw, message",
    [
        ("{training.max_steps: 50}", "not valid JSON"),
        ('[["training.max_steps", 50]]', "must be a JSON object"),
        ("50", "must be a JSON object"),
        ('{"max_steps": 50}', "dotted config paths"),
    ],
)
def test_load_training_overrides_rejects_bad_values(monkeypatch, raw, message):
    monkeypatch.setenv("ACTIVE_LEARNING_SPACY_OVERRIDES", raw)
    with pytest.raises(ValueError, match=message):
        load_training_overrides()
    with pytest.raises(ValueError, match=message):
        load_training_overrides(raw)


def test_train_ner_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="training data"):
        train_ner(tmp_path / "nope.spacy", tmp_path / "dev.spacy", tmp_path / "out")


def test_train_ner_bad_override_raises_instead_of_exiting(tmp_path, gold_docs):
    data = write_docbin(gold_docs[:4], tmp_path / "d.spacy")
    with pytest.raises(RuntimeError, match="spaCy training failed"):
        train_ner(data, data, tmp_path / "out", overrides={"training.max_steps": "many"})


def test_import_does_not_load_spacy():
    code = "import sys, active_learning.training.spacy_ner; print('spacy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
