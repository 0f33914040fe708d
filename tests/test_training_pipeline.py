"""The training steps on their own: what prepare_data selects, converts and uploads; retries reuse."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from active_learning.backends import Backends
from active_learning.exports import CompletionRecord, Span, TaskRecord
from active_learning.store.models import utcnow
from active_learning.training.steps import NotEnoughDataError, prepare_data, register, train

CONFIG = """<View>
  <Labels name="label" toName="text">
    <Label value="PROBLEM"/>
    <Label value="Absent" assertion="true"/>
  </Labels>
  <Text name="text" value="$text"/>
</View>"""


def task(i: int) -> TaskRecord:
    text = "The patient has no fever and a cough."
    spans = (Span(19, 24, "PROBLEM"), Span(19, 24, "Absent"), Span(31, 36, "PROBLEM"))
    completion = CompletionRecord(f"c{i}", "ana", None, utcnow() - timedelta(days=1), False, None, False, spans, 0)
    return TaskRecord(f"t{i}", text, None, (completion,))


def test_assertion_labels_do_not_train_and_a_retry_reuses_the_run_and_version(backends: Backends, tmp_path: Path) -> None:
    backends.store.projects.create("clinic", CONFIG)
    backends.store.completions.import_tasks("clinic", [task(i) for i in range(12)])
    as_of = utcnow()
    prepared = prepare_data(backends, "clinic", run_key="k1", source="manual", as_of=as_of)
    assert prepared["summary"]["labels_not_trained"] == {"Absent": 12}
    assert prepared["completions_used"] == 12
    assert prepared["summary"]["train"]["skipped"] == {} and prepared["summary"]["dev"]["skipped"] == {}
    summary = json.loads(Path(backends.registry.client.download_artifacts(prepared["mlflow_run_id"], "dataset/summary.json", str(tmp_path))).read_text())
    assert summary["tasks"] == 12

    again = prepare_data(backends, "clinic", run_key="k1", source="manual", as_of=as_of)  # a retried task
    assert again["mlflow_run_id"] == prepared["mlflow_run_id"]
    trained = train(backends, run_key="k1", mlflow_run_id=prepared["mlflow_run_id"])
    assert trained["labels"] == ["PROBLEM"]
    first = register(backends, run_key="k1", model_uri=trained["model_uri"], labels=trained["labels"])
    second = register(backends, run_key="k1", model_uri=trained["model_uri"], labels=trained["labels"])
    assert first == second and len(backends.registry.project_models("clinic")) == 1
    assert len(backends.store.trainings.history("clinic")) == 1


def test_too_little_data_is_a_clear_error(backends: Backends) -> None:
    backends.store.projects.create("tiny", CONFIG)
    backends.store.completions.import_tasks("tiny", [task(0)])
    with pytest.raises(NotEnoughDataError, match="'tiny' has 1 trainable tasks .* at least 2 are needed"):
        prepare_data(backends, "tiny", run_key="k2", source="manual", as_of=utcnow())


def test_labels_mlflow_cannot_name_train_and_log_their_metrics(backends: Backends) -> None:
    slash, long = "PER/", "L" * 300  # a metric key "f1_PER/" is a path to MLflow; "f1_LLL..." exceeds 250 characters
    config = f'<View><Labels name="label" toName="text"><Label value="{slash}"/><Label value="{long}"/></Labels>' \
             '<Text name="text" value="$text"/></View>'
    text = "Alice lives in Paris."
    spans = (Span(0, 5, slash), Span(15, 20, long))
    tasks = [TaskRecord(f"t{i}", text, None, (CompletionRecord(f"c{i}", "ana", None, utcnow() - timedelta(days=1), False, None,
                                                               False, spans, 0),)) for i in range(12)]
    backends.store.projects.create("odd-labels", config)
    backends.store.completions.import_tasks("odd-labels", tasks)
    prepared = prepare_data(backends, "odd-labels", run_key="k3", source="manual", as_of=utcnow())
    trained = train(backends, run_key="k3", mlflow_run_id=prepared["mlflow_run_id"],
                    overrides={"training.max_steps": 2, "training.eval_frequency": 1})
    assert sorted(trained["labels"]) == sorted([slash, long])
    logged = backends.registry.client.get_run(prepared["mlflow_run_id"]).data.metrics
    per_label = sorted(key for key in logged if key.startswith("f1_"))
    assert len(per_label) == 2 and all(len(key) <= 250 for key in logged)
    assert per_label[0].startswith("f1_LLL") and per_label[1].startswith("f1_PER_")


def test_a_long_label_list_is_capped_in_the_version_tag_and_read_whole_from_the_run(backends: Backends) -> None:
    """MLflow's UI shows the version's labels tag: it holds what fits LABELS_TAG_LIMIT and the count; a
    deploy, which must point every trained label at the model, reads all of them from the run's artifact."""
    from active_learning.deploy.deployment import deploy_model
    from active_learning.labeling_config import list_labels
    from active_learning.registry import LABELS_TAG_LIMIT, ModelVersionInfo

    labels = [f"CATEGORY_{i:02d}_{'x' * 40}" for i in range(60)]  # about 3,300 characters as a JSON list
    config = ('<View><Labels name="label" toName="text">' + "".join(f'<Label value="{label}"/>' for label in labels)
              + '</Labels><Text name="text" value="$text"/></View>')
    tasks = [TaskRecord(f"t{i}", "Alice lives in Paris.", None, (CompletionRecord(
        f"c{i}", "ana", None, utcnow() - timedelta(days=1), False, None, False, (Span(0, 5, labels[i % 60]),), 0),))
        for i in range(120)]
    backends.store.projects.create("many-labels", config)
    backends.store.completions.import_tasks("many-labels", tasks)
    prepared = prepare_data(backends, "many-labels", run_key="k4", source="manual", as_of=utcnow())
    trained = train(backends, run_key="k4", mlflow_run_id=prepared["mlflow_run_id"],
                    overrides={"training.max_steps": 2, "training.eval_frequency": 1})
    registered = ModelVersionInfo.from_dict(register(backends, run_key="k4", model_uri=trained["model_uri"], labels=trained["labels"]))

    known = sorted(trained["labels"])  # those of the training half: most of the 60
    tags = backends.registry.client.get_model_version(registered.registered_name, str(registered.version)).tags
    assert len(known) > 50 and len(tags["labels"]) <= LABELS_TAG_LIMIT and tags["labels_count"] == str(len(known))
    assert 0 < len(registered.labels) < len(known) and list(registered.labels) == known[: len(registered.labels)]
    assert backends.registry.labels(registered) == tuple(known)
    deploy_model(backends, "many-labels", registered.model_name, author="test", reason="all labels")
    deployed = list_labels(backends.store.configs.read("many-labels").xml)
    assert sorted(label.value for label in deployed if label.model == registered.model_name) == known


def test_a_retry_logs_each_param_once_and_a_changed_value_goes_to_a_tag(backends: Backends) -> None:
    run_id = backends.registry.client.create_run(backends.registry.client.create_experiment("retries")).info.run_id
    backends.registry.log_params(run_id, {"spacy.training.max_steps": 100, "warm_start_from": "none"})

    backends.registry.log_params_once(run_id, {"spacy.training.max_steps": 100, "warm_start_from": "news_ner_20261206_120000",
                                               "base_model": "none"})

    run = backends.registry.client.get_run(run_id).data
    assert run.params == {"spacy.training.max_steps": "100", "warm_start_from": "none", "base_model": "none"}
    assert run.tags["retry.warm_start_from"] == "news_ner_20261206_120000"
