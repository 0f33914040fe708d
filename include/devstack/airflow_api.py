"""Airflow's REST API as the local stack's callers use it: health, the admin user's token, DAGs parsed, runs.

Both ways of running Airflow here (``embedded``, ``cluster``) use Airflow's simple auth manager, which
writes the generated admin password into the Airflow home; the demo, the tests and the benchmarks read
Airflow through this one client instead of each logging in on its own.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack.services import Service, http_json, wait_until

PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"
TRIGGER_RETRY_WAITS_S = (2, 4)  # then the last ask, whose error is the caller's


def airflow_healthy(base_url: str) -> bool:
    """The metadata database, the scheduler and the DAG processor all report healthy."""
    try:
        health = http_json(f"{base_url}/api/v2/monitor/health", timeout=3)
    except OSError:
        return False
    return all(health.get(part, {}).get("status") == "healthy" for part in ("metadatabase", "scheduler", "dag_processor"))


def admin_password(airflow_home: Path) -> str:
    """The admin password the simple auth manager generated under ``airflow_home`` (``AIRFLOW_HOME``)."""
    return json.loads((airflow_home / PASSWORDS_FILE).read_text())["admin"]


def api_time(value: str | None) -> datetime | None:
    """A timestamp of Airflow's REST API (ISO 8601, UTC), or None where the API gives none."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


class AirflowApi:
    """``/api/v2`` of the Airflow at ``base_url`` as its admin user; the token is minted on first use and
    again when the API refuses it (an expired token in a long benchmark)."""

    def __init__(self, base_url: str, airflow_home: Path) -> None:
        self.base_url = base_url
        self.airflow_home = airflow_home
        self._token: str | None = None

    def token(self) -> str:
        if self._token is None:
            body = {"username": "admin", "password": admin_password(self.airflow_home)}
            self._token = http_json(f"{self.base_url}/auth/token", data=body)["access_token"]
        return self._token

    def get(self, path: str, *, timeout: float = 15) -> Any:
        """``GET /api/v2/<path>``."""
        return self._call(path, None, timeout)

    def post(self, path: str, body: Any, *, timeout: float = 15) -> Any:
        """``POST /api/v2/<path>`` with a JSON body."""
        return self._call(path, body, timeout)

    def trigger(self, dag_id: str, conf: dict[str, Any], *, run_id: str | None = None, timeout: float = 15) -> dict[str, Any]:
        """A run of ``dag_id`` now, as the UI's trigger form starts one. The run id is chosen here (or given),
        so asking again after a lost answer or a 5xx (the API server's database busy on a loaded machine)
        cannot start a second run: a 409 says that an earlier ask made it, and that run is returned."""
        run_id = run_id or f"manual__{datetime.now(UTC).isoformat()}"
        for wait in TRIGGER_RETRY_WAITS_S:
            try:
                return self._trigger(dag_id, run_id, conf, timeout)
            except urllib.error.HTTPError as error:
                if error.code < 500:
                    raise
            except OSError:
                pass
            time.sleep(wait)
        return self._trigger(dag_id, run_id, conf, timeout)

    def _trigger(self, dag_id: str, run_id: str, conf: dict[str, Any], timeout: float) -> dict[str, Any]:
        try:
            return self.post(f"dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf}, timeout=timeout)
        except urllib.error.HTTPError as error:
            if error.code != 409:
                raise
        return self.get(f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}", timeout=timeout)

    def _call(self, path: str, body: Any, timeout: float) -> Any:
        try:
            return http_json(f"{self.base_url}/api/v2/{path}", data=body, token=self.token(), timeout=timeout)
        except urllib.error.HTTPError as error:
            if error.code not in (401, 403):
                raise
        self._token = None
        return http_json(f"{self.base_url}/api/v2/{path}", data=body, token=self.token(), timeout=timeout)

    def dag_runs(self, dag_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
        return self.get(f"dags/{dag_id}/dagRuns?limit={limit}")["dag_runs"]

    def every(self, path: str, key: str, *, timeout: float = 60, **params: Any) -> list[dict[str, Any]]:
        """Every item of the paged list ``GET /api/v2/<path>?<params>`` under ``key``: the API returns at
        most ``api.maximum_page_limit`` (100) a page, whatever ``limit`` asks."""
        items: list[dict[str, Any]] = []
        while True:
            query = urllib.parse.urlencode(params | {"limit": 100, "offset": len(items)}, doseq=True)
            page = self.get(f"{path}?{query}", timeout=timeout)
            items.extend(page[key])
            if not page[key] or len(items) >= page["total_entries"]:
                return items

    def task_instances(self, dag_id: str = "~", run_id: str = "~", **filters: Any) -> list[dict[str, Any]]:
        """Task instances of one DAG and run, or ``~`` for all, e.g. ``task_id="train"``, ``pool="..."``."""
        return self.every(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances", "task_instances", **filters)

    def tries(self, ti: dict[str, Any]) -> list[dict[str, Any]]:
        """Every try of the task instance ``ti`` (as listed), the earlier ones from its history."""
        mapped = f"/{ti['map_index']}" if ti["map_index"] >= 0 else ""
        return self.get(f"dags/{ti['dag_id']}/dagRuns/{urllib.parse.quote(ti['dag_run_id'], safe='')}"
                        f"/taskInstances/{ti['task_id']}{mapped}/tries")["task_instances"]

    def wait_for_dags(self, dag_ids: Iterable[str], *, timeout: float = 180, services: Sequence[Service] = ()) -> None:
        """Until the DAG processor has parsed every one of ``dag_ids`` (the API lists them)."""
        wanted = set(dag_ids)

        def parsed() -> bool:
            try:
                listed = {dag["dag_id"] for dag in self.get("dags?limit=100")["dags"]}
            except OSError:
                return False
            return wanted <= listed

        wait_until(parsed, timeout=timeout, services=services,
                   what=f"the DAGs {sorted(wanted)} in Airflow (`airflow dags list-import-errors` says why not)")
