"""The loop against a real Label Studio server (pinned, in its own virtual environment) on loopback.

Nothing is skipped: if Label Studio cannot be installed or started, these tests fail. The server's user
authenticates with a personal access token (a JWT refresh token), as Label Studio 1.23 expects.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from active_learning import cli
from active_learning.backends import Backends
from active_learning.deploy.deployment import rollback
from active_learning.loop import train_now
from active_learning.preannotation.run import preannotate
from active_learning.sources import label_studio_client
from active_learning.sources.label_studio_client import LabelStudioClient, LabelStudioConnection
from devstack.label_studio import LocalLabelStudio, sample_tasks
from active_learning.status import poll, training_run_id
from active_learning.store.models import Prediction, utcnow
from conftest import SAMPLE
from test_dag_runs import task_states, training_runs
from test_preannotation import PROJECT, queued  # noqa: F401  (queued is a fixture)

pytestmark = pytest.mark.label_studio


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLabelStudio]:
    with LocalLabelStudio(tmp_path_factory.mktemp("label-studio")) as running:
        yield running


@pytest.fixture
def client(server: LocalLabelStudio) -> Iterator[LabelStudioClient]:
    client = LabelStudioClient(LabelStudioConnection(server.url, server.token))
    yield client
    client.close()


@pytest.fixture
def connected(server: LocalLabelStudio, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection as Airflow and the CLI read it: AIRFLOW_CONN_LABEL_STUDIO_DEFAULT."""
    monkeypatch.setenv("AIRFLOW_CONN_LABEL_STUDIO_DEFAULT", server.connection_uri())


def ls_project(client: LabelStudioClient, title: str, *batches: str) -> int:
    project_id = int(client.create_project(title, (SAMPLE / "labeling_config.xml").read_text())["id"])
    if batches:
        client.import_tasks(project_id, sample_tasks(*batches))
    return project_id


def connect(project: str, project_id: int) -> None:
    assert cli.main(["connect-label-studio", "--ls-project", str(project_id), "--project", project,
                     "--frequency", "50", "--auto-deploy", "--enable"]) == 0


def test_the_sensor_launches_training_and_the_deploy_writes_label_studio_s_config(
    dagbag, server: LocalLabelStudio, client: LabelStudioClient, connected: None, backends: Backends,  # noqa: F811
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    project_id = ls_project(client, "al-news", "completions_batch1.json", "completions_batch2.json")  # 90 annotations
    connect("ls-news", project_id)
    assert backends.store.projects.get("ls-news").source_project_id == project_id

    sensor = dagbag.dags["active_learning_sensor"].test()
    assert task_states(sensor)["wait_for_due_projects"] == "success", task_states(sensor)
    expected = training_run_id("ls-news", None)
    assert training_runs(expected) == [(expected, "ls-news")]

    run = dagbag.dags["active_learning_training"].test(
        run_conf={"project": "ls-news", "source": "active_learning", "deploy": "auto"}
    )
    states = task_states(run)
    assert run.state == "success", states
    assert states["update_config"] == "success" and states["validate_config"] == "success"
    [training] = backends.store.trainings.history("ls-news")
    assert training.status == "success" and training.completions_used == 90 and training.source_annotations == 90

    live = client.project(project_id)["label_config"]  # read back from Label Studio
    for label in ("PER", "ORG", "LOC"):
        assert f'<Label value="{label}" model="{training.model_name}"' in live, live
    assert '<Label value="MISC" model="ner_dl"' in live  # tied to a pretrained model: untouched
    assert [r.revision for r in backends.store.configs.revisions("ls-news")] == [1, 2]
    assert backends.store.configs.revisions("ls-news")[-1].labeling_config == live

    # The training recorded Label Studio's count: nothing is new until 50 more annotations arrive.
    [row] = backends.sources.poll(utcnow())
    assert (row.name, row.since_last_training, row.due) == ("ls-news", 0, False)
    client.import_tasks(project_id, sample_tasks("completions_batch2.json"))  # 50 more (as new tasks)
    [due] = poll(backends.sources, utcnow())
    assert due.new_completions == 50 and due.run_id == training_run_id("ls-news", training.as_of)
    captured = capfd.readouterr()
    assert "/api/projects/" in caplog.text + captured.out + captured.err  # the client's requests were logged...
    assert server.token not in caplog.text + captured.out + captured.err  # ...never its token


def test_a_config_label_studio_refuses_is_a_validation_error_and_nothing_is_written(
    server: LocalLabelStudio, client: LabelStudioClient, connected: None, backends: Backends
) -> None:
    from active_learning.deploy.deployment import ConfigValidationError, write_config

    project_id = ls_project(client, "al-refused")
    connect("ls-refused", project_id)
    [task] = _one_task(client, project_id)
    # An annotation made through the API (as an annotator's): Label Studio now guards its label.
    client.request_json("POST", f"/api/tasks/{task}/annotations/", retry=False, json_body={"result": [
        {"from_name": "label", "to_name": "text", "type": "labels",
         "value": {"start": 0, "end": 12, "text": "Ada Lovelace", "labels": ["PER"]}}]})
    before = client.project(project_id)["label_config"]
    state = backends.store.configs.read("ls-refused")

    without_per = before.replace('<Label value="PER" background="#ff6b6b"/>', "")
    with pytest.raises(ConfigValidationError, match="Label Studio refused it: .*PER"):
        write_config(backends, "ls-refused", without_per, expected_revision=state.revision, author="test", reason="drop PER")

    assert client.project(project_id)["label_config"] == before
    assert backends.store.configs.read("ls-refused") == state and len(backends.store.configs.revisions("ls-refused")) == 1


def test_connecting_a_project_whose_annotations_hold_a_label_its_config_lacks_is_refused_naming_it(
    server: LocalLabelStudio, client: LabelStudioClient, connected: None, backends: Backends, capsys: pytest.CaptureFixture[str]
) -> None:
    project_id = ls_project(client, "al-misc")
    [task] = _one_task(client, project_id)
    client.request_json("POST", f"/api/tasks/{task}/annotations/", retry=False, json_body={"result": [
        {"from_name": "label", "to_name": "text", "type": "labels",
         "value": {"start": 0, "end": 12, "text": "Ada Lovelace", "labels": ["EVENT"]}}]})  # Label Studio takes it

    code = cli.main(["connect-label-studio", "--ls-project", str(project_id), "--project", "ls-misc"])

    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert "label 'EVENT' of <Labels name='label'> is held by 1 of the project's annotations in Label Studio" in err
    assert not backends.store.projects.exists("ls-misc")


def test_connecting_registers_the_webhook_once_with_the_secret_and_says_when_it_cannot(
    server: LocalLabelStudio, client: LabelStudioClient, backends: Backends, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from active_learning import webhooks

    monkeypatch.setenv("AIRFLOW_CONN_LABEL_STUDIO_DEFAULT", f"{server.connection_uri()}?webhook_secret=s3cr3t-value")
    monkeypatch.setenv("ACTIVE_LEARNING_WEBHOOK_URL", "http://127.0.0.1:8793/")
    project_id = ls_project(client, "al-webhook")
    assert cli.main(["connect-label-studio", "--ls-project", str(project_id), "--project", "ls-webhook"]) == 0
    assert "webhook registered" in capsys.readouterr().out
    [hook] = client.webhooks(project_id)
    assert hook["url"] == "http://127.0.0.1:8793" + webhooks.WEBHOOK_PATH and hook["is_active"] and hook["send_payload"]
    assert hook["headers"] == {webhooks.SECRET_HEADER: "s3cr3t-value"}
    assert sorted(hook["actions"]) == sorted(webhooks.ANNOTATION_ACTIONS)
    # Registering again (a changed secret) updates that webhook: never a second one.
    said = webhooks.register(client, project_id, "http://127.0.0.1:8793", "another-secret")
    assert "webhook registered" in said
    assert [h["headers"] for h in client.webhooks(project_id)] == [{webhooks.SECRET_HEADER: "another-secret"}]
    # Leaving Label Studio removes it (and none other: a webhook of someone else's stays).
    client.request_json("POST", "/api/webhooks/", json_body={"project": project_id, "url": "http://127.0.0.1:8794/theirs"})
    assert cli.main(["disconnect-label-studio", "--project", "ls-webhook"]) == 0
    assert "webhook removed" in capsys.readouterr().out
    assert [h["url"] for h in client.webhooks(project_id)] == ["http://127.0.0.1:8794/theirs"]
    # The project is free again: connected under another name, it has this loop's webhook once more.
    assert cli.main(["connect-label-studio", "--ls-project", str(project_id), "--project", "ls-webhook-again"]) == 0
    assert "webhook registered" in capsys.readouterr().out
    assert sum(h["url"].endswith(webhooks.WEBHOOK_PATH) for h in client.webhooks(project_id)) == 1
    # Without Airflow's URL, or without a secret: none, and the user reads what to set.
    other = ls_project(client, "al-polled")
    monkeypatch.delenv("ACTIVE_LEARNING_WEBHOOK_URL")
    assert cli.main(["connect-label-studio", "--ls-project", str(other), "--project", "ls-polled"]) == 0
    out = capsys.readouterr().out
    assert "no webhook: polled on the sensor's schedule only (set ACTIVE_LEARNING_WEBHOOK_URL" in out
    assert client.webhooks(other) == [] and "s3cr3t" not in out


def _one_task(client: LabelStudioClient, project_id: int) -> list[int]:
    client.import_tasks(project_id, [{"data": {"text": "Ada Lovelace wrote."}}])
    return [task["id"] for task in client.request_json("GET", "/api/tasks/", params={"project": project_id})["tasks"]]


def test_the_deployed_model_pre_annotates_each_task_awaiting_annotation_once_and_a_rollback_brings_its_predictions_back(
    client: LabelStudioClient, connected: None, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    project_id = ls_project(client, "al-preannotate", "completions_batch1.json")  # 40 annotated tasks
    client.import_tasks(project_id, [{"data": task["data"]} for task in sample_tasks("completions_batch2.json")])  # 50 waiting
    connect("ls-pre", project_id)
    train_now(backends, "ls-pre", choice="deploy")
    first = backends.store.projects.get("ls-pre").deployed_model
    monkeypatch.setattr(label_studio_client, "TASK_PAGE_SIZE", 16)  # several pages of tasks

    report = preannotate(backends, "ls-pre")

    assert (report.model, report.predicted, report.published) == (first, 50, 50)
    assert _predictions_read_back(client, project_id) == {first: 50}
    assert client.project(project_id)["model_version"] == first

    # Every answer lost (nothing marked sent here): the next run asks Label Studio and sends nothing again.
    with backends.store.engine.begin() as connection:
        connection.execute(update(Prediction).values(pushed_at=None))
    assert preannotate(backends, "ls-pre").published == 0
    assert _predictions_read_back(client, project_id) == {first: 50}

    train_now(backends, "ls-pre", choice="deploy")
    second = backends.store.projects.get("ls-pre").deployed_model
    assert second != first and preannotate(backends, "ls-pre").published == 50
    assert client.project(project_id)["model_version"] == second

    rollback(backends, "ls-pre", to_revision=2, author="test")  # the first model's config, deployed again
    assert backends.store.projects.get("ls-pre").deployed_model == first
    again = preannotate(backends, "ls-pre")

    assert (again.predicted, again.published) == (0, 0)
    assert client.project(project_id)["model_version"] == first
    assert _predictions_read_back(client, project_id) == {first: 50, second: 50}


def test_an_export_with_predictions_imports_into_label_studio_as_pre_annotated_tasks(
    queued: Backends, client: LabelStudioClient, tmp_path: Path  # noqa: F811
) -> None:
    preannotate(queued, PROJECT)
    model = queued.store.projects.get(PROJECT).deployed_model
    out = tmp_path / "pre-annotated.json"
    assert cli.main(["export-predictions", "--project", PROJECT, "--format", "label-studio", "--out", str(out)]) == 0
    exported = json.loads(out.read_text())
    project_id = ls_project(client, "al-exported")

    client.import_tasks(project_id, exported)

    tasks = _all_tasks(client, project_id)
    assert [task["data"] for task in tasks] == [task["data"] for task in exported]
    for task, sent in zip(tasks, exported, strict=True):
        [prediction] = task["predictions"]
        [expected] = sent["predictions"]
        assert prediction["model_version"] == model and prediction["score"] == pytest.approx(expected["score"])
        assert [item["value"] for item in prediction["result"]] == [item["value"] for item in expected["result"]]
    assert _predictions_read_back(client, project_id) == {model: 50}


def _all_tasks(client: LabelStudioClient, project_id: int) -> list[dict[str, Any]]:
    """Every task with its predictions, read as a user would (one page of Label Studio's task list)."""
    body = client.request_json("GET", "/api/tasks/", params={"project": project_id, "fields": "all", "page_size": 1000})
    assert body["total"] == len(body["tasks"])
    return body["tasks"]


def _predictions_read_back(client: LabelStudioClient, project_id: int) -> dict[str, int]:
    """model_version -> tasks predicted, after checking that each task awaiting annotation has exactly one
    prediction (with a score) of each model, and annotated tasks none."""
    predicted: dict[str, int] = {}
    for task in _all_tasks(client, project_id):
        versions = [prediction["model_version"] for prediction in task["predictions"]]
        assert len(versions) == len(set(versions)), f"task {task['id']} has a prediction twice: {versions}"
        assert all(0.0 <= prediction["score"] <= 1.0 for prediction in task["predictions"])
        if task["total_annotations"]:
            assert versions == []
        for version in versions:
            predicted[version] = predicted.get(version, 0) + 1
    return predicted
