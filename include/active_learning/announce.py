"""Telling Airflow from outside it that completions arrived: an event on the completions asset through its
REST API (``POST /api/v2/assets/events``), so the sensor DAG polls now instead of at its next cron tick.

Where Airflow is (``ACTIVE_LEARNING_AIRFLOW_API_URL``) and as whom (a user that may create asset events):
:func:`active_learning.settings.airflow_api`. Not set: nothing is sent. Airflow unreachable or refusing:
nothing is lost, the completions are stored, and the next scheduled poll sees them; the message says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import requests

from active_learning import settings
from active_learning.constants import COMPLETIONS_ASSET, COMPLETIONS_ASSET_URI

TIMEOUT_S = 5  # per request: an import never waits long on an Airflow that does not answer


def announce_completions(projects: Sequence[str], source: str) -> str | None:
    """Emit one event naming ``projects``; a line for the user saying what happened, None when no Airflow
    is configured."""
    api = settings.airflow_api()
    if api is None:
        return None
    url, username, password = api
    shown = settings.hide_passwords(url)
    try:
        with requests.Session() as session:
            token = _json(session.post(f"{url}/auth/token", json={"username": username, "password": password},
                                       timeout=TIMEOUT_S))["access_token"]
            session.headers["Authorization"] = f"Bearer {token}"
            assets = _json(session.get(f"{url}/api/v2/assets", params={"uri_pattern": COMPLETIONS_ASSET_URI},
                                       timeout=TIMEOUT_S))["assets"]
            asset_id = next((a["id"] for a in assets if a["name"] == COMPLETIONS_ASSET), None)
            if asset_id is None:
                raise ValueError(f"it knows no asset {COMPLETIONS_ASSET!r} (has it parsed the sensor DAG?)")
            _json(session.post(f"{url}/api/v2/assets/events",
                               json={"asset_id": asset_id, "extra": {"projects": list(projects), "source": source}},
                               timeout=TIMEOUT_S))
    except (requests.RequestException, ValueError, KeyError, TypeError) as error:
        reason = settings.hide_passwords(str(error))
        return f"Airflow at {shown} was not told ({reason}): the next scheduled poll sees these completions"
    return f"Airflow at {shown} was told: a poll starts now"


def _json(response: requests.Response) -> dict:  # type: ignore[type-arg]
    if response.status_code >= 400:
        raise ValueError(f"{response.request.method} {response.request.path_url} answered {response.status_code}: "
                         f"{response.text[:300]}")
    return response.json()
