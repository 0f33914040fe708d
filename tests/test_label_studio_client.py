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

from active_learning.sources.label_studio_client import (
    LabelStudioAuthError,
    LabelStudioClient,
    LabelStudioConnection,
    LabelStudioError,
    LabelStudioValidationError,
    connection_from_env,
    iter_json_array,
)
from devstack.services import free_port

LEGACY = "0123456789abcdef0123456789abcdef01234567"
PAT = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"


class FakeLabelStudio:
    """Answers each (method, path) from a queue of scripted replies, else a default; records every request."""

    def __init__(self) -> None:
        self.replies: dict[tuple[str, str], deque[tuple[int, Any]]] = defaultdict(deque)
        self.requests: list[dict[str, Any]] = []
        self.projects: dict[int, int] = {}  # id -> total_annotations_number
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
                status, payload = queue.popleft() if queue else fake.default(self.command, split.path, parse_qs(split.query))
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

    def default(self, method: str, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        if (method, path) == ("GET", "/api/projects/"):
            ids = [int(i) for i in query["ids"][0].split(",")]
            assert len(ids) <= 100
            results = [{"id": i, "total_annotations_number": self.projects[i]} for i in ids if i in self.projects]
            return 200, {"count": len(results), "next": None, "results": results}
        if (method, path) == ("POST", "/api/token/refresh/"):
            return 200, {"access": f"access-{len(self.requests)}"}
        return 200, {}

    def paths(self) -> list[str]:
        return [f"{r['method']} {r['path']}" for r in self.requests]


@pytest.fixture
def fake() -> Iterator[FakeLabelStudio]:
    server = FakeLabelStudio()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
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
    assert (as_json.url, as_json.token) == ("http://127.0.0.1:8080", PAT)
    with pytest.raises(LabelStudioAuthError, match="AIRFLOW_CONN_LABEL_STUDIO_DEFAULT"):
        connection_from_env(environ={})
    with pytest.raises(LabelStudioAuthError, match="API token as password") as missing:
        connection_from_env(environ={"AIRFLOW_CONN_LABEL_STUDIO_DEFAULT": "http://ls.example.org"})
    assert LEGACY not in repr(uri) and "token" not in repr(uri)
    assert "label_studio_default" in str(missing.value)
