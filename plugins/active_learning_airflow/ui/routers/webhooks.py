"""Label Studio's webhook: ``POST /api/webhooks/label-studio``. Not behind Airflow's login (Label Studio has
none): the secret in the header is the credential. The checks and what each refusal answers:
:mod:`active_learning.webhooks`. An accepted delivery asks for a poll and returns, well within Label
Studio's 1 s: one store write and one Airflow write."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from active_learning.webhooks import MAX_BODY_BYTES, SECRET_HEADER, WebhookRefused, check_secret, read_delivery
from active_learning_airflow.assets import PollUnavailable, request_poll
from active_learning_airflow.ui.domain import domain

router = APIRouter(prefix="/api/webhooks")

SOURCE = "label studio webhook"


@router.post("/label-studio", status_code=status.HTTP_202_ACCEPTED)
async def label_studio(request: Request) -> Any:
    """Completions arrived in a connected Label Studio project: a poll, now."""
    body = await _body(request)
    try:
        check_secret(await run_in_threadpool(_secret), request.headers.get(SECRET_HEADER))
        delivery = read_delivery(body)
        return await run_in_threadpool(_act, delivery.key, delivery.ls_project, delivery.action)
    except WebhookRefused as refused:
        raise HTTPException(refused.status, refused.reason) from None


async def _body(request: Request) -> bytes:
    """The body, read no further than :data:`MAX_BODY_BYTES` (a declared length is believed first)."""
    too_large = HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"a webhook body is at most {MAX_BODY_BYTES:,} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    return bytes(body)


def _secret() -> str | None:
    """The ``webhook_secret`` of the Label Studio connection, wherever Airflow keeps it (its secrets
    backends, ``AIRFLOW_CONN_*``, its database); None without the connection or the key."""
    from active_learning.sources.label_studio_client import DEFAULT_CONN_ID, WEBHOOK_SECRET_EXTRA
    from airflow.models.connection import Connection

    try:
        connection = Connection.get_connection_from_secrets(DEFAULT_CONN_ID)
    except Exception:  # Airflow's "not found" types differ across versions: no connection, no secret
        return None
    return connection.extra_dejson.get(WEBHOOK_SECRET_EXTRA)


def _act(key: str, ls_project: int, action: str) -> Any:
    from active_learning.store.models import SOURCE_LABEL_STUDIO

    store = domain().store
    project = store.projects.connected(SOURCE_LABEL_STUDIO, ls_project)
    if project is None:
        raise WebhookRefused(404, f"no project here is connected to Label Studio project {ls_project} "
                                  "(`active-learning connect-label-studio --ls-project ...` connects one)")
    if not store.webhooks.record(key, project.id, action):
        return JSONResponse({"project": project.name, "poll": "not asked: this delivery was acted on already"},
                            status_code=status.HTTP_200_OK)
    try:
        asked = request_poll([project.name], SOURCE)
    except PollUnavailable as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from None
    return {"project": project.name, "poll": "asked" if asked else "not asked: an earlier event's poll is still to start"}
