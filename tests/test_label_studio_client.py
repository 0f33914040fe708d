"""The Label Studio client over real HTTP, against a tiny scripted server in a thread (no mocking library)."""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict, deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from active_learning.backends import Backends
from active_learning.sources import label_studio_client
from active_learning.sources.label_studio import LabelStudioSource
from active_learning.sources.label_studio_client import (
    LabelStudioAuthError,
    LabelStudioClient,
    LabelStudioConnection,
    LabelStudioError,
    LabelStudioValidationError,
    connection_from_env,
    connection_url,
    iter_json_array,
)
from active_learning.store import NewPrediction
from active_learning.store.models import SOURCE_LABEL_STUDIO
from devstack.services import free_port

LEGACY = "0123456789abcdef0123456789abcdef01234567"
PROJECT_ID = 7
PAT = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"


class FakeLabelStudio:
    """Answers each (method, path) from a queue of scripted replies, else a default; records every request.

    By default it serves one project's tasks and predictions as Label Studio 1.23 does (checked against the
    real server): ``/api/tasks/`` filtered by a Data Manager ``query`` (``{total, tasks}``, a page number past
    the end is a 404), predictions imported all or none, ``model-versions`` counts, and a ``model_version``
    PATCH refused unless the project holds a prediction of it.
    """

    def __init__(self) -> None:
        self.replies: dict[tuple[str, str], deque[tuple[int, Any]]] = defaultdict(deque)
        self.requests: list[dict[str, Any]] = []
        self.projects: dict[int, int] = {}  # id -> total_annotations_number
        self.tasks: dict[int, dict[str, Any]] = {}  # of PROJECT_ID: id -> {id, data, total_annotations, predictions}
        self.model_version = ""  # PROJECT_ID's
        self.page_size_max: int | None = None  # Label Studio's TASK_API_PAGE_SIZE_MAX
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.requests.append({"method": self.command, "path": split.path, "query": parse_qs(split.query),
                                      "auth": self.headers.get("Authorization"), "body": body})
                queue = fake.replies[(self.command, split.path)]
                status, payload = queue.popleft() if queue else fake.default(self.command, split.path, parse_qs(split.query), body)
                if status == "default":  # as unscripted (a reply further down the queue is scripted)
                    status, payload = fake.default(self.command, split.path, parse_qs(split.query), body)
                if status == "take-and-drop":  # do it, then lose the answer
                    fake.default(self.command, split.path, parse_qs(split.query), body)
                    status = "drop"
                if status == "drop":  # close without answering: a connection error for the client
                    self.close_connection = True
                    return
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def default(self, method: str, path: str, query: dict[str, list[str]], body: Any = None) -> tuple[int, Any]:
        if (method, path) == ("GET", "/api/tasks/"):
            return self.task_page(query)
        if (method, path) == ("POST", f"/api/projects/{PROJECT_ID}/import/predictions"):
            if missing := [p["task"] for p in body if p["task"] not in self.tasks]:
                return 400, {"detail": f"contains invalid \"task\" field: task ID {missing[0]} couldn't be retrieved"}
            for prediction in body:
                self.tasks[prediction["task"]]["predictions"].append(prediction)
            return 201, {"created": len(body)}
        if (method, path) == ("GET", f"/api/projects/{PROJECT_ID}/model-versions/"):
            versions = [p["model_version"] for task in self.tasks.values() for p in task["predictions"]]
            return 200, {version: versions.count(version) for version in set(versions)}
        if (method, path) == ("PATCH", f"/api/projects/{PROJECT_ID}/") and "model_version" in body:
            if not self.model_versions(body["model_version"]):
                return 400, {"validation_errors": {"model_version": ["Model version doesn't exist either as live model or as static predictions."]}}
            self.model_version = body["model_version"]
            return 200, {"id": PROJECT_ID, "model_version": self.model_version}
        if (method, path) == ("GET", "/api/projects/"):
            ids = [int(i) for i in query["ids"][0].split(",")]
            assert len(ids) <= 100
            results = [{"id": i, "total_annotations_number": self.projects[i]} for i in ids if i in self.projects]
            return 200, {"count": len(results), "next": None, "results": results}
        if (method, path) == ("POST", "/api/token/refresh/"):
            return 200, {"access": f"access-{len(self.requests)}"}
        return 200, {}

    def task_page(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        assert query["project"] == [str(PROJECT_ID)]
        prepared = json.loads(query.get("query", ["{}"])[0])
        tasks = sorted(self.tasks.values(), key=lambda task: task["id"])
        selected = prepared.get("selectedItems", {"all": True})
        if not selected["all"]:
            tasks = [task for task in tasks if task["id"] in selected["included"]]
        for item in prepared.get("filters", {}).get("items", []):
            field, value = item["filter"].removeprefix("filter:tasks:"), item["value"]
            tasks = [task for task in tasks if {
                ("id", "greater"): lambda t: t["id"] > value,
                ("total_annotations", "equal"): lambda t: t["total_annotations"] == value,
                ("predictions_model_versions", "contains"):  # a substring match, as Label Studio's
                    lambda t: any(v in p["model_version"] for v in value for p in t["predictions"]),
            }[field, item["operator"]](task)]
        size = min(int(query.get("page_size", ["100"])[0]), self.page_size_max or 10**9)
        start = (int(query.get("page", ["1"])[0]) - 1) * size
        if start and start >= len(tasks):
            return 404, {"detail": "Invalid page."}
        fields = query.get("fields") == ["all"]
        page = [{k: v for k, v in task.items() if fields or k != "predictions"} for task in tasks[start:start + size]]
        return 200, {"total": len(tasks), "total_annotations": 0, "total_predictions": 0, "tasks": page}

    def model_versions(self, version: str) -> list[int]:
        """The tasks holding a prediction of ``version``, once per prediction."""
        return [task["id"] for task in self.tasks.values() for p in task["predictions"] if p["model_version"] == version]

    def paths(self) -> list[str]:
        return [f"{r['method']} {r['path']}" for r in self.requests]


@pytest.fixture
def fake() -> Iterator[FakeLabelStudio]:
    server = FakeLabelStudio()
    thread = threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def client_for(fake: FakeLabelStudio, token: str = LEGACY) -> tuple[LabelStudioClient, list[float]]:
    sleeps: list[float] = []
    client = LabelStudioClient(LabelStudioConnection(fake.url, token), timeout=(2, 2), retries=3, backoff=0.5,
                               sleep=sleeps.append)
    return client, sleeps


def test_counts_of_250_projects_take_three_requests_of_100(fake: FakeLabelStudio) -> None:
    fake.projects = {i: i * 2 for i in range(1, 251)}
    client, _ = client_for(fake)

    counts = client.annotation_counts(range(1, 252))  # 251 does not exist (deleted): left out

    assert counts == fake.projects
    assert client.requests_sent == 3 and fake.paths() == ["GET /api/projects/"] * 3
    assert fake.requests[0]["query"]["include"] == ["id,total_annotations_number"]
    assert fake.requests[0]["auth"] == f"Token {LEGACY}"


def test_5xx_and_dropped_connections_are_retried_with_exponential_backoff(fake: FakeLabelStudio) -> None:
    fake.projects = {7: 3}
    fake.replies[("GET", "/api/projects/")].extend([(503, {"detail": "busy"}), ("drop", None), (502, b"bad gateway")])
    client, sleeps = client_for(fake)

    assert client.annotation_counts([7]) == {7: 3}
    assert sleeps == [0.5, 1.0, 2.0] and client.requests_sent == 4


def test_a_server_that_stays_down_fails_after_the_retries(fake: FakeLabelStudio) -> None:
    fake.replies[("GET", "/api/projects/3/")].extend([(500, {"detail": "boom"})] * 4)
    client, sleeps = client_for(fake)

    with pytest.raises(LabelStudioError, match="HTTP 500: boom"):
        client.project(3)
    assert len(sleeps) == 3 and client.requests_sent == 4


def test_401_is_a_configuration_error_naming_the_connection_and_never_the_token(
    fake: FakeLabelStudio, caplog: pytest.LogCaptureFixture
) -> None:
    fake.replies[("GET", "/api/projects/3/")].append((401, {"detail": f"legacy token authentication has been disabled ({LEGACY})"}))
    fake.replies[("GET", "/api/projects/4/")].extend([(503, {})] * 2 + [(403, {"detail": "You do not have permission"})])
    client, _ = client_for(fake)

    with caplog.at_level(logging.DEBUG), pytest.raises(LabelStudioAuthError) as refused:
        client.project(3)
    assert "'label_studio_default'" in str(refused.value) and "legacy token authentication has been disabled" in str(refused.value)
    with caplog.at_level(logging.DEBUG), pytest.raises(LabelStudioAuthError, match="HTTP 403"):
        client.project(4)
    assert client.requests_sent == 4  # 401 once, 403 after two retried 503s: no retry of a refusal
    for text in (str(refused.value), repr(refused.value), repr(client), repr(client.connection), caplog.text):
        assert LEGACY not in text


def test_a_personal_access_token_is_exchanged_and_refreshed_once_on_401(fake: FakeLabelStudio, caplog: pytest.LogCaptureFixture) -> None:
    fake.projects = {1: 5}
    fake.replies[("GET", "/api/projects/")].append((401, {"detail": "Token is expired"}))
    client, _ = client_for(fake, PAT)

    with caplog.at_level(logging.DEBUG):
        assert client.annotation_counts([1]) == {1: 5}

    assert fake.paths() == ["POST /api/token/refresh/", "GET /api/projects/", "POST /api/token/refresh/", "GET /api/projects/"]
    assert fake.requests[0]["body"] == {"refresh": PAT} and fake.requests[0]["auth"] is None
    assert fake.requests[1]["auth"] == "Bearer access-1" and fake.requests[3]["auth"] == "Bearer access-3"
    assert PAT not in caplog.text


def test_a_refused_personal_access_token_is_a_configuration_error(fake: FakeLabelStudio) -> None:
    fake.replies[("POST", "/api/token/refresh/")].append((401, {"detail": "Token is invalid or expired", "code": "token_not_valid"}))
    client, _ = client_for(fake, PAT)

    with pytest.raises(LabelStudioAuthError, match="refused its personal access token") as refused:
        client.project(1)
    assert PAT not in str(refused.value)


def test_a_400_on_the_config_is_a_validation_error_and_nothing_is_patched(fake: FakeLabelStudio) -> None:
    fake.replies[("POST", "/api/projects/5/validate/")].append(
        (400, {"validation_errors": {"label_config": ["These labels still exist in annotations or drafts:\nPER (3 annotations)"]}})
    )
    client, _ = client_for(fake)

    with pytest.raises(LabelStudioValidationError) as refused:
        client.set_label_config(5, "<View/>")
    assert refused.value.messages == ["label_config: These labels still exist in annotations or drafts: PER (3 annotations)"]
    assert fake.paths() == ["POST /api/projects/5/validate/"]  # no PATCH

    client.set_label_config(5, "<View/>")
    assert fake.paths()[1:] == ["POST /api/projects/5/validate/", "PATCH /api/projects/5/"]
    assert fake.requests[-1]["body"] == {"label_config": "<View/>"}


def test_the_export_is_parsed_as_it_streams(fake: FakeLabelStudio) -> None:
    tasks = [{"id": i, "data": {"text": f"Text é {i} ✓ [x], {{y}}"}, "annotations": []} for i in range(300)]
    fake.replies[("GET", "/api/projects/9/export")].append((200, json.dumps(tasks, indent=1).encode()))
    client, _ = client_for(fake)

    assert list(client.export_tasks(9)) == tasks
    assert fake.requests[0]["query"] == {"exportType": ["JSON"], "download_all_tasks": ["false"]}


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_a_json_array_split_anywhere_reads_the_same(size: int) -> None:
    document = json.dumps([{"a": "ü ✓ \"]\" ,"}, [1, 2], "x", 3.5, {"b": None}]).encode()
    chunks = [document[i:i + size] for i in range(0, len(document), size)]
    assert list(iter_json_array(chunks)) == json.loads(document)
    assert list(iter_json_array([b" [ ] "])) == []
    with pytest.raises(ValueError):
        list(iter_json_array([document[:-1]]))
    with pytest.raises(ValueError):
        list(iter_json_array([b'{"tasks": []}']))


def test_the_connection_reads_airflow_s_uri_and_json_forms() -> None:
    uri = connection_from_env(environ={"AIRFLOW_CONN_LABEL_STUDIO_DEFAULT": f"https://:{LEGACY}@ls.example.org:8443"})
    assert (uri.url, uri.token) == ("https://ls.example.org:8443", LEGACY)
    as_json = connection_from_env(environ={"AIRFLOW_CONN_LABEL_STUDIO_DEFAULT": json.dumps(
        {"conn_type": "http", "host": "http://127.0.0.1", "port": 8080, "password": PAT})})
    assert (as_json.url, as_json.token, as_json.webhook_secret) == ("http://127.0.0.1:8080", PAT, None)
    # The webhook's secret: the extra, as a JSON object, a JSON string or the URI's query
    for value in (json.dumps({"host": "https://ls.example.org", "password": PAT, "extra": {"webhook_secret": "s3"}}),
                  json.dumps({"host": "https://ls.example.org", "password": PAT, "extra": '{"webhook_secret": "s3"}'}),
                  f"https://:{LEGACY}@ls.example.org?webhook_secret=s3"):
        secret = connection_from_env(environ={"AIRFLOW_CONN_LABEL_STUDIO_DEFAULT": value})
        assert secret.webhook_secret == "s3" and "s3" not in repr(secret)
    with pytest.raises(LabelStudioAuthError, match="AIRFLOW_CONN_LABEL_STUDIO_DEFAULT"):
        connection_from_env(environ={})
    with pytest.raises(LabelStudioAuthError, match="API token as password") as missing:
        connection_from_env(environ={"AIRFLOW_CONN_LABEL_STUDIO_DEFAULT": "http://ls.example.org"})
    assert LEGACY not in repr(uri) and "token" not in repr(uri)
    assert "label_studio_default" in str(missing.value)


def test_a_host_without_a_scheme_is_reached_over_https() -> None:
    assert connection_url("ls.example.org", port=8443) == "https://ls.example.org:8443"
    uri = connection_from_env(environ={"AIRFLOW_CONN_LABEL_STUDIO_DEFAULT": f"label-studio://:{LEGACY}@ls.example.org"})
    assert uri.url == "https://ls.example.org"


def test_plain_http_to_another_host_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=label_studio_client.__name__):
        for loopback in ("http://127.0.0.1:8080", "http://localhost", "http://[::1]:8080"):
            assert connection_url(loopback) == loopback
        assert connection_url("ls.example.org", scheme="http") == "http://ls.example.org"
    [warning] = caplog.records
    assert "http://ls.example.org" in warning.getMessage() and "unencrypted" in warning.getMessage()
    assert warning.levelno == logging.WARNING


# -- pre-annotations: the task list, pushing predictions, the project's model_version ---------------------------


def add_tasks(fake: FakeLabelStudio, ids: range, *, annotated: bool = False) -> None:
    for task in ids:
        fake.tasks[task] = {"id": task, "data": {"text": f"Task {task} in Berlin."}, "total_annotations": int(annotated),
                            "predictions": []}


@pytest.fixture
def source(fake: FakeLabelStudio, backends: Backends, sample_config: str) -> LabelStudioSource:
    """Project "ls" of our store, living in the fake's project; its client sleeps no real time between retries."""
    backends.store.projects.create("ls", sample_config, source=SOURCE_LABEL_STUDIO, source_project_id=PROJECT_ID)
    source = LabelStudioSource(backends.store, lambda conn_id: LabelStudioConnection(fake.url, LEGACY))
    source._client, _ = client_for(fake)
    return source


def predicted(fake: FakeLabelStudio, backends: Backends, ids: range, *models: str) -> None:
    """Tasks ``ids`` awaiting annotation in Label Studio, pre-annotated in our store by each of ``models``."""
    add_tasks(fake, ids)
    for model in models:
        backends.store.predictions.save("ls", model, [NewPrediction(str(task), round(task / 1000, 3), [
            {"id": f"p{task}", "from_name": "label", "to_name": "text", "type": "labels",
             "value": {"start": 8, "end": 14, "text": "Berlin", "labels": ["LOC"]}}]) for task in ids])


def queries(fake: FakeLabelStudio) -> list[dict[str, Any]]:
    return [json.loads(r["query"]["query"][0]) for r in fake.requests if r["path"] == "/api/tasks/"]


def test_tasks_awaiting_annotation_are_read_a_page_after_the_last_id(fake: FakeLabelStudio, monkeypatch: pytest.MonkeyPatch) -> None:
    add_tasks(fake, range(1, 2001))
    add_tasks(fake, range(2001, 2301), annotated=True)
    add_tasks(fake, range(2301, 2501))
    client, _ = client_for(fake)

    waiting = [task["id"] for task in client.tasks(PROJECT_ID, awaiting_annotation=True)]

    assert waiting == [*range(1, 2001), *range(2301, 2501)]
    # 2,200 tasks: pages of 1,000 after id 0, 1000, 2000 (Label Studio's `total` says the third is the last).
    assert [q["filters"]["items"][0]["value"] for q in queries(fake)] == [0, 1000, 2000]
    assert all({"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0}
               in q["filters"]["items"] for q in queries(fake))
    assert {r["query"]["page"][0] for r in fake.requests} == {"1"}  # never a page number past the end (404)

    fake.requests.clear()
    monkeypatch.setattr(label_studio_client, "TASK_PAGE_SIZE", 1100)
    assert len(list(client.tasks(PROJECT_ID, awaiting_annotation=True))) == 2200
    assert len(fake.requests) == 2  # an exact last page: no request for an empty one

    fake.requests.clear()
    fake.page_size_max = 300  # a server with TASK_API_PAGE_SIZE_MAX set gives smaller pages: followed
    assert len(list(client.tasks(PROJECT_ID))) == 2500 and len(fake.requests) == 9


def test_a_task_list_that_fails_on_5xx_is_retried(fake: FakeLabelStudio) -> None:
    add_tasks(fake, range(1, 4))
    fake.replies[("GET", "/api/tasks/")].extend([(502, b"bad gateway"), ("drop", None)])
    client, sleeps = client_for(fake)

    assert [task["id"] for task in client.tasks(PROJECT_ID)] == [1, 2, 3]
    assert sleeps == [0.5, 1.0]


def test_predictions_go_100_a_request_with_model_version_and_score_then_the_model_version_is_set(
    fake: FakeLabelStudio, backends: Backends, source: LabelStudioSource
) -> None:
    predicted(fake, backends, range(1, 251), "news-1")

    assert source.publish_predictions("ls", "news-1") == 250

    pushes = [r["body"] for r in fake.requests if r["method"] == "POST"]
    assert [len(body) for body in pushes] == [100, 100, 50]
    assert pushes[0][0] == {"task": 1, "score": 0.001, "model_version": "news-1", "result": [
        {"id": "p1", "from_name": "label", "to_name": "text", "type": "labels",
         "value": {"start": 8, "end": 14, "text": "Berlin", "labels": ["LOC"]}}]}
    assert fake.paths() == ["GET /api/projects/7/model-versions/", *["POST /api/projects/7/import/predictions"] * 3,
                            "PATCH /api/projects/7/"]
    assert fake.requests[-1]["body"] == {"model_version": "news-1"} and fake.model_version == "news-1"
    assert sorted(fake.model_versions("news-1")) == list(range(1, 251))
    assert backends.store.predictions.unpushed("ls", "news-1") == []


def test_a_batch_whose_answer_was_lost_is_never_sent_twice(
    fake: FakeLabelStudio, backends: Backends, source: LabelStudioSource, caplog: pytest.LogCaptureFixture
) -> None:
    predicted(fake, backends, range(1, 301), "news-1")
    fake.replies[("POST", f"/api/projects/{PROJECT_ID}/import/predictions")].extend([("default", None), ("take-and-drop", None)])

    with pytest.raises(LabelStudioError, match="unreachable"):
        source.publish_predictions("ls", "news-1")
    assert len(fake.model_versions("news-1")) == 200  # Label Studio took the second batch...
    assert len(backends.store.predictions.unpushed("ls", "news-1")) == 200  # ...but its answer never came
    assert len([r for r in fake.requests if r["method"] == "POST"]) == 2  # and it was not retried blindly

    fake.requests.clear()
    assert source.publish_predictions("ls", "news-1") == 100  # the next attempt: only the third batch

    assert sorted(fake.model_versions("news-1")) == list(range(1, 301))  # one prediction per task
    checked = queries(fake)
    assert [sorted(q["selectedItems"]["included"]) for q in checked] == [list(range(101, 201)), list(range(201, 301))]
    assert all({"filter": "filter:tasks:predictions_model_versions", "operator": "contains", "type": "List",
                "value": ["news-1"]} in q["filters"]["items"] for q in checked)
    assert "already holds news-1's predictions of 100 tasks" in caplog.text
    assert backends.store.predictions.unpushed("ls", "news-1") == [] and fake.model_version == "news-1"


def test_a_model_whose_name_contains_another_s_is_told_apart(fake: FakeLabelStudio, backends: Backends, source: LabelStudioSource) -> None:
    predicted(fake, backends, range(1, 11), "news-10", "news-1")
    source.publish_predictions("ls", "news-10")

    assert source.publish_predictions("ls", "news-1") == 10  # "news-1" is in "news-10": checked exactly
    assert sorted(fake.model_versions("news-1")) == sorted(fake.model_versions("news-10")) == list(range(1, 11))


def test_a_rollback_sends_nothing_and_makes_the_restored_model_s_predictions_current(
    fake: FakeLabelStudio, backends: Backends, source: LabelStudioSource
) -> None:
    predicted(fake, backends, range(1, 151), "news-1", "news-2")
    source.publish_predictions("ls", "news-1")
    source.publish_predictions("ls", "news-2")
    assert fake.model_version == "news-2"
    fake.requests.clear()

    assert source.publish_predictions("ls", "news-1") == 0

    assert fake.paths() == ["GET /api/projects/7/model-versions/", "PATCH /api/projects/7/"]
    assert fake.model_version == "news-1" and len(fake.model_versions("news-1")) == 150


def test_with_no_prediction_anywhere_the_model_version_is_left_alone(fake: FakeLabelStudio, source: LabelStudioSource) -> None:
    add_tasks(fake, range(1, 4), annotated=True)

    assert source.publish_predictions("ls", "news-1") == 0  # every task annotated: nothing was predicted

    assert fake.paths() == ["GET /api/projects/7/model-versions/"]  # Label Studio would refuse the PATCH (400)


def test_predictions_of_tasks_deleted_in_label_studio_are_dropped_and_the_rest_sent(
    fake: FakeLabelStudio, backends: Backends, source: LabelStudioSource
) -> None:
    predicted(fake, backends, range(1, 21), "news-1")
    del fake.tasks[5], fake.tasks[17]

    assert source.publish_predictions("ls", "news-1") == 18

    assert sorted(fake.model_versions("news-1")) == [t for t in range(1, 21) if t not in (5, 17)]
    assert backends.store.predictions.unpushed("ls", "news-1") == []


def test_a_refused_token_pushes_nothing_and_marks_nothing(fake: FakeLabelStudio, backends: Backends, source: LabelStudioSource) -> None:
    predicted(fake, backends, range(1, 11), "news-1")
    fake.replies[("POST", f"/api/projects/{PROJECT_ID}/import/predictions")].append((401, {"detail": "Invalid token."}))

    with pytest.raises(LabelStudioAuthError, match="'label_studio_default'"):
        source.publish_predictions("ls", "news-1")

    assert fake.model_versions("news-1") == [] and len(backends.store.predictions.unpushed("ls", "news-1")) == 10
    assert len([r for r in fake.requests if r["method"] == "POST"]) == 1  # a configuration error: not retried


def test_the_tasks_to_pre_annotate_skip_annotated_and_already_predicted_ones(
    fake: FakeLabelStudio, backends: Backends, source: LabelStudioSource
) -> None:
    predicted(fake, backends, range(1, 3), "news-1")
    add_tasks(fake, range(3, 8))
    add_tasks(fake, range(8, 10), annotated=True)
    fake.tasks[3]["data"]["title"] = "third"

    pages = list(source.tasks_to_preannotate("ls", "news-1", page_size=2))

    assert [[task.task_id for task in page] for page in pages] == [["3", "4"], ["5", "6"], ["7"]]
    assert (pages[0][0].text, pages[0][0].title, pages[0][1].title) == ("Task 3 in Berlin.", "third", None)
    assert source.unannotated_ids("ls") == [str(task) for task in range(1, 8)]
