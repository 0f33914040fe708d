"""Label Studio's webhooks: which deliveries announce new completions, checked before anything is done.

Label Studio posts a project's annotation events to the URL ``connect-label-studio`` registers, with the
secret of the ``label_studio_default`` connection (its extra ``webhook_secret``) in the header
:data:`SECRET_HEADER`. What a delivery must be, in the order it is checked, and what it gets otherwise
(nothing is changed by a refused one):

| check | else |
|---|---|
| at most :data:`MAX_BODY_BYTES` | 413 |
| the secret, compared in constant time | 401 |
| a JSON object | 400 |
| one of :data:`ANNOTATION_ACTIONS` | 422 |
| a project id that a project here is connected to | 404 |

An accepted delivery is acted on once: its *key* (the action, the project and each annotation's id and
update time) is recorded, and the same delivery again is answered without acting. Acting is asking for a
poll (an asset event the sensor DAG is scheduled on), never the poll's work: Label Studio waits 1 s for
the answer and never sends an event twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

SECRET_HEADER = "X-Active-Learning-Secret"
WEBHOOK_PATH = "/active-learning/api/webhooks/label-studio"  # on Airflow's API server
ANNOTATION_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED")
MAX_BODY_BYTES = 1 << 20  # a delivery of many annotations stays far below; a larger body is not one


class WebhookRefused(Exception):
    """A delivery that is not acted on: the HTTP status and a reason a person can act on."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Delivery:
    action: str
    ls_project: int  # Label Studio's project id
    annotations: int  # how many the delivery names
    key: str  # what it announced, hashed: the same delivery has the same key


def check_secret(expected: str | None, given: str | None) -> None:
    """The header's secret against the connection's, in constant time; 401 without either."""
    if not expected:
        raise WebhookRefused(401, f"no webhook secret is configured: set 'webhook_secret' in the extra of the "
                                  "Label Studio connection (connect-label-studio registers the webhook with it)")
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise WebhookRefused(401, f"the {SECRET_HEADER} header does not carry the webhook secret")


def read_delivery(body: bytes) -> Delivery:
    """The delivery in ``body`` (Label Studio's webhook payload), or :class:`WebhookRefused` saying why not."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WebhookRefused(400, f"the body is not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise WebhookRefused(400, "the body is not a JSON object")
    action = payload.get("action")
    if action not in ANNOTATION_ACTIONS:
        raise WebhookRefused(422, f"action {action!r} is not handled: only {', '.join(ANNOTATION_ACTIONS)} announce "
                                  "new completions")
    project = payload.get("project")
    project_id = project.get("id") if isinstance(project, dict) else None
    if not isinstance(project_id, int) or isinstance(project_id, bool):
        raise WebhookRefused(422, "the body names no project: Label Studio sends project.id with annotation events")
    annotations = payload.get("annotation")
    annotations = annotations if isinstance(annotations, list) else [annotations]
    stamps = sorted(_stamp(annotation) for annotation in annotations if isinstance(annotation, dict))
    key = hashlib.sha256(json.dumps([action, project_id, stamps]).encode()).hexdigest()
    return Delivery(action, project_id, len(stamps), key)


def _stamp(annotation: dict[str, Any]) -> list[str]:
    return [str(annotation.get("id")), str(annotation.get("updated_at") or annotation.get("created_at"))]


def register(client: Any, ls_project: int, base_url: str | None, secret: str | None) -> str:
    """Point the Label Studio project's webhook at this loop (``client``: a LabelStudioClient), once; a line
    for the user saying what was done, and what to set where nothing could be."""
    from active_learning.sources.label_studio_client import LabelStudioError

    needed = {"ACTIVE_LEARNING_WEBHOOK_URL (Airflow's URL as Label Studio reaches it)": base_url,
              "'webhook_secret' in the Label Studio connection's extra": secret}
    if missing := [what for what, value in needed.items() if not value]:
        return (f"no webhook: polled on the sensor's schedule only (set {' and '.join(missing)} and connect again to "
                "start trainings at once)")
    url = base_url + WEBHOOK_PATH
    try:
        client.ensure_webhook(ls_project, url, {SECRET_HEADER: secret}, ANNOTATION_ACTIONS)
    except LabelStudioError as error:
        return (f"no webhook: Label Studio refused {url} ({error}); polled on the sensor's schedule only. An Airflow on a "
                "private or loopback address needs Label Studio started with USE_DEFAULT_BANNED_SUBNETS=false")
    return f"webhook registered: Label Studio posts annotation events to {url}, and a poll starts at once"


def unregister(client: Any, ls_project: int) -> tuple[bool, str]:
    """Remove this loop's webhook from the Label Studio project: whether nothing of it is left there, and a
    line for the user."""
    from active_learning.sources.label_studio_client import LabelStudioError

    try:
        removed = client.delete_webhooks(ls_project, WEBHOOK_PATH)
    except LabelStudioError as error:
        return False, (f"the webhook could not be removed ({error}): delete it in Label Studio (the project's Settings > "
                       f"Webhooks, the URL ending {WEBHOOK_PATH}); until then its deliveries are refused with 404")
    return True, ("webhook removed: Label Studio no longer posts this project's annotation events" if removed else
                  "no webhook of this loop on the project")
