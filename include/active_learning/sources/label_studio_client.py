"""A small HTTP client of Label Studio's API: what the loop reads and writes there, nothing more.

Plain Python on ``requests`` (already pinned for Airflow and MLflow): importable and testable without
Airflow. Every call has a timeout; 5xx answers and connection errors are retried with exponential
backoff; 401/403 raise :class:`LabelStudioAuthError` naming the connection; a 400 raises
:class:`LabelStudioValidationError` with Label Studio's own message. The token never appears in a log
line, an exception or a ``repr``.

Tokens. A *legacy* token (40 hex digits) is sent as ``Authorization: Token <t>``. A *personal access
token* (a JWT refresh token, the default since Label Studio 1.17) is exchanged at
``POST /api/token/refresh/`` for a short-lived access token sent as ``Authorization: Bearer <a>``, which
is refreshed once when Label Studio answers 401.

Connection. ``label_studio_default`` (an Airflow connection: host = the server's URL, password = the
token) resolves outside Airflow from ``AIRFLOW_CONN_LABEL_STUDIO_DEFAULT`` (URI or JSON form), the same
variable Airflow itself reads, so one setting serves the DAGs, the CLI and the tests.
"""

from __future__ import annotations

import codecs
import ipaddress
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import requests

from active_learning.settings import hide_passwords

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "label_studio_default"
WEBHOOK_SECRET_EXTRA = "webhook_secret"  # the key in the connection's extra
PAGE_SIZE = 100  # Label Studio's largest page of /api/projects
TASK_PAGE_SIZE = 1000  # /api/tasks has no limit by default (TASK_API_PAGE_SIZE_MAX); a lower one is followed
STREAM_CHUNK = 1 << 16
RETRY_STATUSES = frozenset({500, 502, 503, 504})


class LabelStudioError(RuntimeError):
    """Label Studio could not be reached or answered with an error."""


class LabelStudioAuthError(LabelStudioError):
    """The connection's URL or token is wrong (401/403): a configuration error, retrying won't help."""


class LabelStudioValidationError(LabelStudioError):
    """Label Studio refused a change (400); ``messages`` are its reasons, one per problem."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        super().__init__("; ".join(messages))


@dataclass(frozen=True)
class LabelStudioConnection:
    url: str
    token: str = field(repr=False)
    conn_id: str = DEFAULT_CONN_ID
    webhook_secret: str | None = field(default=None, repr=False)  # the extra's webhook_secret (active_learning.webhooks)

    @property
    def shown_url(self) -> str:
        """The URL for messages and logs: a password in it (a proxy's basic auth) shown as ``***``."""
        return hide_passwords(self.url)


def connection_url(host: str, *, port: int | None = None, scheme: str | None = None) -> str:
    """The server's base URL from an Airflow connection's parts (host may already be a whole URL): https
    unless the connection says http. Plain http to another machine sends the API token in clear: warned."""
    host = host.strip().rstrip("/")
    if "://" not in host:
        host = f"{scheme if scheme in ('http', 'https') else 'https'}://{host}"
    if port and urlsplit(host).port is None:
        parts = urlsplit(host)
        host = parts._replace(netloc=f"{parts.netloc}:{port}").geturl()
    parts = urlsplit(host)
    if parts.scheme == "http" and parts.hostname and not _is_loopback(parts.hostname):
        log.warning("Label Studio at %s is reached over plain http: the API token travels unencrypted; use https",
                    hide_passwords(host))
    return host


def _is_loopback(hostname: str) -> bool:
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:  # a name, not an address
        return hostname == "localhost"


def connection_from_env(conn_id: str = DEFAULT_CONN_ID, environ: Mapping[str, str] | None = None) -> LabelStudioConnection:
    """Read ``AIRFLOW_CONN_<CONN_ID>``: ``http://:TOKEN@host:port`` or ``{"host": URL, "password": TOKEN}``."""
    variable = f"AIRFLOW_CONN_{conn_id.upper()}"
    value = (os.environ if environ is None else environ).get(variable, "").strip()
    if not value:
        raise LabelStudioAuthError(
            f"connection {conn_id!r} is not set: create it in Airflow (host = Label Studio's URL, password = an "
            f"API token) or set {variable}"
        )
    if value.startswith("{"):
        try:
            parts = json.loads(value)
        except ValueError:
            raise LabelStudioAuthError(f"{variable} is not valid JSON") from None
        url = connection_url(str(parts.get("host") or ""), port=parts.get("port"), scheme=parts.get("schema") or parts.get("conn_type"))
        token = str(parts.get("password") or "")
        extra = parts.get("extra") or {}
        extra = json.loads(extra) if isinstance(extra, str) else extra
    else:
        split = urlsplit(value)
        url = connection_url(split.hostname or "", port=split.port, scheme=split.scheme)
        token = unquote(split.password or "")
        extra = dict(parse_qsl(split.query))  # Airflow's URI form carries the extra as query parameters
    if not token or url.endswith("://"):
        raise LabelStudioAuthError(f"connection {conn_id!r} needs Label Studio's URL as host and an API token as password")
    return LabelStudioConnection(url, token, conn_id, webhook_secret=extra.get(WEBHOOK_SECRET_EXTRA) or None)


def is_personal_access_token(token: str) -> bool:
    """A PAT is a JWT (three base64url parts); a legacy token is a plain hex string."""
    return token.count(".") == 2


class LabelStudioClient:
    def __init__(
        self,
        connection: LabelStudioConnection,
        *,
        timeout: tuple[float, float] = (5.0, 60.0),
        export_timeout: tuple[float, float] = (5.0, 900.0),
        retries: int = 4,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.connection = connection
        self.timeout = timeout
        self.export_timeout = export_timeout  # Label Studio builds the whole export before its first byte
        self.retries = retries
        self.backoff = backoff
        self.sleep = sleep
        self.requests_sent = 0  # for measurements: every HTTP request, retries and token refreshes included
        self._session = requests.Session()  # proxies from the environment apply; see _send for .netrc
        self._access: str | None = None

    def __repr__(self) -> str:
        return f"LabelStudioClient({self.connection.shown_url!r}, conn_id={self.connection.conn_id!r})"

    def close(self) -> None:
        self._session.close()

    # -- what the loop uses ------------------------------------------------------------------------

    def annotation_counts(self, project_ids: Iterable[int]) -> dict[int, int]:
        """``total_annotations_number`` (submitted, not cancelled) of each project, 100 projects a request.

        Label Studio computes only that count (``include=``) and only for these projects (``ids=``).
        A project it does not return (deleted, or not visible to the token's user) is left out.
        """
        ids = sorted(set(project_ids))
        counts: dict[int, int] = {}
        for start in range(0, len(ids), PAGE_SIZE):
            chunk = ids[start:start + PAGE_SIZE]
            page = self.request_json("GET", "/api/projects/", params={
                "ids": ",".join(map(str, chunk)), "include": "id,total_annotations_number",
                "page_size": PAGE_SIZE, "page": 1,
            })
            for project in page.get("results", []):
                counts[int(project["id"])] = int(project.get("total_annotations_number") or 0)
        return counts

    def projects(self) -> Iterator[dict[str, Any]]:
        """Every project the token's user sees, page by page (ordered by id, so pages never shift)."""
        page_number = 1
        while True:
            page = self.request_json("GET", "/api/projects/", params={"page": page_number, "page_size": PAGE_SIZE, "ordering": "id"})
            yield from page.get("results", [])
            if not page.get("next"):
                return
            page_number += 1

    def project(self, project_id: int) -> dict[str, Any]:
        return self.request_json("GET", f"/api/projects/{int(project_id)}/")

    def project_summary(self, project_id: int) -> dict[str, Any]:
        """``created_labels``: per control tag, how many annotations' regions hold each label (Label Studio's
        count, kept as annotations are saved and deleted)."""
        return self.request_json("GET", f"/api/projects/{int(project_id)}/summary/")

    def set_label_config(self, project_id: int, xml: str) -> dict[str, Any]:
        """Validate, then ``PATCH label_config``, as Label Studio's own editor does: its refusal raises
        :class:`LabelStudioValidationError` and leaves the project as it was.

        The PATCH alone checks only the XML (1.23 logs, and accepts, a label removed while annotations
        still use it); ``POST /api/projects/{id}/validate/`` checks strictly, against the annotations.
        """
        path = f"/api/projects/{int(project_id)}/"
        self.request_json("POST", f"{path}validate/", json_body={"label_config": xml})  # read-only: safe to retry
        return self.request_json("PATCH", path, json_body={"label_config": xml})

    def export_tasks(self, project_id: int) -> Iterator[Any]:
        """The project's annotated tasks (JSON export), parsed one task at a time off the response stream."""
        response = self.request(
            "GET", f"/api/projects/{int(project_id)}/export", params={"exportType": "JSON", "download_all_tasks": "false"},
            stream=True, timeout=self.export_timeout,
        )
        with response:
            yield from iter_json_array(response.iter_content(STREAM_CHUNK))

    def tasks(
        self, project_id: int, *, awaiting_annotation: bool = False, among: Iterable[int] | None = None,
        predicted_by: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The project's tasks in id order, :data:`TASK_PAGE_SIZE` a request, each with ``total_annotations``
        (submitted, not cancelled: drafts and skips don't count) and ``data``.

        ``awaiting_annotation``: only tasks with no such annotation. ``among``: only these task ids.
        ``predicted_by``: only tasks with a prediction of that ``model_version``, with their ``predictions``.
        Label Studio filters (its Data Manager's ``query``), and each page starts after the last id read,
        not at a page number: a task annotated meanwhile shifts no page, and the last page is the one
        that holds the rest (``total`` counts what is left), never a 404 ("Invalid page") past the end.
        """
        selected = None if among is None else {"all": False, "included": sorted({int(task) for task in among})}
        if selected is not None and not selected["included"]:
            return
        last = 0
        while True:
            filters = [_filter("id", "greater", "Number", last)]
            if awaiting_annotation:
                filters.append(_filter("total_annotations", "equal", "Number", 0))
            if predicted_by is not None:  # "contains" is a substring match (v1 in v10): checked exactly below
                filters.append(_filter("predictions_model_versions", "contains", "List", [predicted_by]))
            query = {"filters": {"conjunction": "and", "items": filters}, "ordering": ["tasks:id"]}
            params = {"project": int(project_id), "page": 1, "page_size": TASK_PAGE_SIZE,
                      "query": json.dumps(query | ({"selectedItems": selected} if selected else {}))}
            if predicted_by is not None:
                params["fields"] = "all"  # each task's predictions, with their model_version
            body = self.request_json("GET", "/api/tasks/", params=params)
            tasks = body.get("tasks", [])
            for task in tasks:
                if predicted_by is None or any(p.get("model_version") == predicted_by for p in task.get("predictions") or ()):
                    yield task
            if not tasks or len(tasks) >= int(body.get("total") or 0):
                return
            last = int(tasks[-1]["id"])

    def model_versions(self, project_id: int) -> dict[str, int]:
        """``model_version`` -> how many predictions of it the project holds (one request)."""
        return {str(version): int(count) for version, count in
                (self.request_json("GET", f"/api/projects/{int(project_id)}/model-versions/") or {}).items()}

    def import_predictions(self, project_id: int, predictions: list[dict[str, Any]]) -> int:
        """``[{task, result, score, model_version}]`` in one request; Label Studio takes all or none (a task
        it does not have refuses the whole list: 400). Not retried here: a request whose answer was lost
        may have created them, and a retry would show annotators each one twice."""
        body = self.request_json("POST", f"/api/projects/{int(project_id)}/import/predictions", json_body=predictions, retry=False)
        return int((body or {}).get("created") or 0)

    def set_model_version(self, project_id: int, model_version: str) -> None:
        """Which model's predictions annotators see as pre-annotations. Label Studio refuses (400) a version
        the project holds no prediction of (nor a live ML backend of that title)."""
        self.request_json("PATCH", f"/api/projects/{int(project_id)}/", json_body={"model_version": model_version})

    def ensure_webhook(self, project_id: int, url: str, headers: dict[str, str], actions: Sequence[str]) -> dict[str, Any]:
        """The project's webhook to ``url``, sending ``actions`` with ``headers``: the one already there,
        brought up to date, or a new one; never a second to the same URL."""
        hooks = self.request_json("GET", "/api/webhooks/", params={"project": int(project_id)}) or []
        settings = {"send_payload": True, "send_for_all_actions": False, "headers": headers, "actions": list(actions),
                    "is_active": True}
        for hook in hooks:
            if hook.get("url") == url and hook.get("project") == int(project_id):
                return self.request_json("PATCH", f"/api/webhooks/{int(hook['id'])}/", json_body=settings)
        return self.request_json("POST", "/api/webhooks/", json_body={"project": int(project_id), "url": url, **settings},
                                 retry=False)  # a lost answer may have created it: the next ensure finds it

    def webhooks(self, project_id: int) -> list[dict[str, Any]]:
        return self.request_json("GET", "/api/webhooks/", params={"project": int(project_id)}) or []

    def delete_webhooks(self, project_id: int, path: str) -> int:
        """Delete the project's webhooks whose URL ends with ``path`` (whatever host they were registered
        with); how many there were."""
        ours = [hook for hook in self.webhooks(project_id)
                if hook.get("project") == int(project_id) and str(hook.get("url", "")).endswith(path)]
        for hook in ours:
            self.request_json("DELETE", f"/api/webhooks/{int(hook['id'])}/")
        return len(ours)

    # -- for set-up scripts and tests --------------------------------------------------------------

    def create_project(self, title: str, label_config: str) -> dict[str, Any]:
        return self.request_json("POST", "/api/projects/", json_body={"title": title, "label_config": label_config}, retry=False)

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> dict[str, Any]:
        return self.request_json("POST", f"/api/projects/{int(project_id)}/import", json_body=tasks, retry=False)

    # -- HTTP --------------------------------------------------------------------------------------

    def request_json(self, method: str, path: str, *, params: Any = None, json_body: Any = None, retry: bool = True) -> Any:
        with self.request(method, path, params=params, json_body=json_body, retry=retry) as response:
            return response.json() if response.content else None

    def request(
        self, method: str, path: str, *, params: Any = None, json_body: Any = None, stream: bool = False, retry: bool = True,
        timeout: tuple[float, float] | None = None,
    ) -> requests.Response:
        """One API call: retried on 5xx and connection errors (``retry``), re-authenticated once on 401 (PAT)."""
        url = self.connection.url + path
        refreshed = False
        attempt = 0
        while True:
            try:
                response = self._send(method, url, params=params, json_body=json_body, stream=stream, timeout=timeout)
            except (requests.ConnectionError, requests.Timeout) as error:
                if not retry or attempt >= self.retries:
                    raise LabelStudioError(
                        f"Label Studio at {self.connection.shown_url} unreachable ({type(error).__name__}) after {attempt + 1} attempts"
                    ) from None
                self._wait(attempt, method, path, type(error).__name__)
                attempt += 1
                continue
            if response.status_code == 401 and self._uses_pat and not refreshed:
                response.close()
                self._access, refreshed = None, True
                continue
            if response.status_code in RETRY_STATUSES and retry and attempt < self.retries:
                response.close()
                self._wait(attempt, method, path, f"HTTP {response.status_code}")
                attempt += 1
                continue
            if response.status_code >= 400:
                with response:
                    raise self._error(method, path, response)
            return response

    @property
    def _uses_pat(self) -> bool:
        return is_personal_access_token(self.connection.token)

    def _send(
        self, method: str, url: str, *, params: Any, json_body: Any, stream: bool, timeout: tuple[float, float] | None
    ) -> requests.Response:
        self.requests_sent += 1
        return self._session.request(
            method, url, params=params, json=json_body, headers={"Accept": "application/json"},
            auth=_Authorization(self._authorization()), timeout=timeout or self.timeout, stream=stream,
        )

    def _authorization(self) -> str:
        if not self._uses_pat:
            return f"Token {self.connection.token}"
        if self._access is None:
            self._access = self._refresh_access_token()
        return f"Bearer {self._access}"

    def _refresh_access_token(self) -> str:
        """Exchange the PAT (a JWT refresh token) for an access token; not retried on 401, which means a bad PAT."""
        url = f"{self.connection.url}/api/token/refresh/"
        for attempt in range(self.retries + 1):
            self.requests_sent += 1
            try:
                response = self._session.post(url, json={"refresh": self.connection.token}, auth=_Authorization(None),
                                              timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as error:
                if attempt >= self.retries:
                    raise LabelStudioError(f"Label Studio at {self.connection.shown_url} unreachable ({type(error).__name__})") from None
                self._wait(attempt, "POST", "/api/token/refresh/", type(error).__name__)
                continue
            with response:
                if response.status_code in RETRY_STATUSES and attempt < self.retries:
                    self._wait(attempt, "POST", "/api/token/refresh/", f"HTTP {response.status_code}")
                    continue
                if response.status_code in (400, 401, 403):
                    raise self._auth_error(response, "refused its personal access token")
                if response.status_code >= 400:
                    raise self._error("POST", "/api/token/refresh/", response)
                return str(response.json()["access"])
        raise AssertionError("unreachable")

    def _wait(self, attempt: int, method: str, path: str, reason: str) -> None:
        delay = self.backoff * 2**attempt
        log.warning("Label Studio %s %s: %s; retry %d/%d in %.1f s", method, path, reason, attempt + 1, self.retries, delay)
        self.sleep(delay)

    def _error(self, method: str, path: str, response: requests.Response) -> LabelStudioError:
        if response.status_code in (401, 403):
            return self._auth_error(response, f"refused {method} {path}")
        if response.status_code == 400:
            return LabelStudioValidationError(self._messages(response))
        detail = "; ".join(self._messages(response))
        return LabelStudioError(f"Label Studio {method} {path}: HTTP {response.status_code}: {detail}"[:2000])

    def _auth_error(self, response: requests.Response, what: str) -> LabelStudioAuthError:
        detail = "; ".join(self._messages(response))
        return LabelStudioAuthError(
            f"Label Studio at {self.connection.shown_url} {what} (HTTP {response.status_code}: {detail}): check connection "
            f"{self.connection.conn_id!r} (host = the server's URL, password = a valid API token of a user who "
            "can see the projects)"
        )

    def _messages(self, response: requests.Response) -> list[str]:
        """Label Studio's reasons, flattened: ``{"validation_errors": {"label_config": ["..."]}}``, ``detail``..."""
        try:
            body = response.json()
        except ValueError:
            body = response.text[:500]
        messages: list[str] = []
        _flatten(body.get("validation_errors") or body.get("detail") or body if isinstance(body, dict) else body, messages)
        # One line per problem, as our own validation prints them.
        return [self._redact(" ".join(message.split())) for message in messages] or [f"HTTP {response.status_code}"]

    def _redact(self, text: str) -> str:
        for secret in (self.connection.token, self._access):
            if secret:
                text = text.replace(secret, "***")
        return text


class _Authorization(requests.auth.AuthBase):
    """Sets (or, with None, leaves out) the Authorization header. Passed as ``auth=``, it also keeps
    requests from putting credentials from a ``.netrc`` file in its place."""

    def __init__(self, value: str | None) -> None:
        self.value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.value is not None:
            request.headers["Authorization"] = self.value
        return request

    def __repr__(self) -> str:
        return "_Authorization(***)"


def _flatten(value: Any, into: list[str], prefix: str = "") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, into, f"{key}: " if key not in ("detail", "non_field_errors") else prefix)
    elif isinstance(value, list):
        for item in value:
            _flatten(item, into, prefix)
    elif value not in (None, ""):
        into.append(f"{prefix}{value}".strip())


def _filter(field: str, operator: str, kind: str, value: Any) -> dict[str, Any]:
    """One item of a Data Manager query's ``filters``."""
    return {"filter": f"filter:tasks:{field}", "operator": operator, "type": kind, "value": value}


def iter_json_array(chunks: Iterable[bytes]) -> Iterator[Any]:
    """Yield the items of a top-level JSON array as its bytes arrive: memory holds one item, not the array.

    ``json.JSONDecoder.raw_decode`` parses each item; an item cut off by a chunk boundary is retried
    once more bytes are in (only the incomplete tail is ever re-parsed), and an item is taken only once
    the ``,`` or ``]`` after it has arrived (``3`` may be the start of ``3.5``).
    """
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    buffer, position, started, finished = "", 0, False, False
    chunk_iterator = iter(chunks)
    exhausted = False
    while True:
        while position < len(buffer) and buffer[position] in " \t\r\n,":
            position += 1
        if position < len(buffer):
            if not started:
                if buffer[position] != "[":
                    raise ValueError("the export is not a JSON array of tasks")
                started, position = True, position + 1
                continue
            if buffer[position] == "]":
                finished = True
                break
            try:
                item, end = decoder.raw_decode(buffer, position)
            except json.JSONDecodeError:
                if exhausted:
                    raise
            else:
                rest = buffer[end:].lstrip()
                if rest[:1] in (",", "]") or (exhausted and not rest):  # else "3" may be the start of "3.5"
                    yield item
                    buffer, position = buffer[end:], 0
                    continue
        if exhausted:
            break
        chunk = next(chunk_iterator, None)
        if chunk is None:
            exhausted = True
            buffer += utf8.decode(b"", final=True)
        else:
            buffer += utf8.decode(chunk)
    if not finished:
        raise ValueError("the export ended before its closing ']'")
