"""Label Studio's webhook: served by Airflow's own API server app, against a real annotation store and a real
Airflow DB (the sensor DAG and its completions asset serialized there). A delivery either asks for a poll
(an asset event the sensor DAG is scheduled on) or is refused with a 4xx that says why, changing nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from active_learning.constants import COMPLETIONS_ASSET, SENSOR_DAG_ID
from active_learning.webhooks import MAX_BODY_BYTES, SECRET_HEADER, WebhookRefused, check_secret, read_delivery
from conftest import SAMPLE

AIRFLOW = Path(sys.executable).parent / "airflow"
URL = "/active-learning/api/webhooks/label-studio"
SECRET = "a webhook secret 0123456789"
LS_PROJECT = 7


def delivery(annotation_id: int = 1, *, action: str = "ANNOTATION_CREATED", project: int = LS_PROJECT) -> dict[str, Any]:
    """A delivery as Label Studio 1.23 sends one: the action, the project, the annotation and its task."""
    return {"action": action, "project": {"id": project, "title": "news"},
            "annotation": {"id": annotation_id, "task": 100 + annotation_id, "created_at": "2026-12-07T01:00:00Z",
                           "updated_at": "2026-12-07T01:00:00Z", "result": []},
            "task": {"id": 100 + annotation_id, "data": {"text": "Paris"}}}


# -- what a delivery must be ---------------------------------------------------------------------------


def test_a_delivery_is_known_by_what_it_announced() -> None:
    first = read_delivery(json.dumps(delivery(1)).encode())
    assert (first.action, first.ls_project, first.annotations) == ("ANNOTATION_CREATED", LS_PROJECT, 1)
    assert read_delivery(json.dumps(delivery(1)).encode()).key == first.key
    assert read_delivery(json.dumps(delivery(2)).encode()).key != first.key
    updated = delivery(1, action="ANNOTATION_UPDATED")
    updated["annotation"]["updated_at"] = "2026-12-07T02:00:00Z"
    assert read_delivery(json.dumps(updated).encode()).key != first.key
    many = delivery(1, action="ANNOTATIONS_CREATED")
    many["annotation"] = [delivery(2)["annotation"], delivery(1)["annotation"]]
    assert read_delivery(json.dumps(many).encode()).annotations == 2


@pytest.mark.parametrize(("body", "status", "says"), [
    (b"{not json", 400, "not JSON"),
    (b"\xff\xfe", 400, "not JSON"),
    (b"[1, 2]", 400, "not a JSON object"),
    (json.dumps(delivery(action="TASKS_CREATED")).encode(), 422, "'TASKS_CREATED' is not handled"),
    (json.dumps({"action": "ANNOTATION_CREATED"}).encode(), 422, "names no project"),
    (json.dumps(delivery() | {"project": {"id": "7"}}).encode(), 422, "names no project"),
])
def test_a_delivery_that_announces_no_completions_is_refused_saying_why(body: bytes, status: int, says: str) -> None:
    with pytest.raises(WebhookRefused, match=says) as refused:
        read_delivery(body)
    assert refused.value.status == status


def test_the_secret_must_match_and_be_configured() -> None:
    check_secret(SECRET, SECRET)
    for expected, given, says in ((SECRET, None, "does not carry"), (SECRET, SECRET + "x", "does not carry"),
                                  (SECRET, "", "does not carry"), (None, SECRET, "no webhook secret is configured")):
        with pytest.raises(WebhookRefused, match=says) as refused:
            check_secret(expected, given)
        assert refused.value.status == 401


# -- the endpoint, in Airflow's API server -------------------------------------------------------------


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """Airflow's API server app, with the DAGs (and so the completions asset) serialized in its DB."""
    subprocess.run([AIRFLOW, "db", "migrate"], check=True, capture_output=True)
    subprocess.run([AIRFLOW, "dags", "reserialize"], check=True, capture_output=True)
    from fastapi.testclient import TestClient

    from airflow.api_fastapi.app import create_app

    yield TestClient(create_app("core"))


@pytest.fixture
def connected(home: Path, backends: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A project connected to Label Studio project 7; the Label Studio connection holds the secret; no poll
    is waiting in Airflow."""
    connection = {"conn_type": "http", "host": "http://label-studio.invalid:8080", "password": "token",
                  "extra": {"webhook_secret": SECRET}}
    monkeypatch.setenv("AIRFLOW_CONN_LABEL_STUDIO_DEFAULT", json.dumps(connection))
    backends.store.projects.create("news", (SAMPLE / "labeling_config.xml").read_text(), active_learning=True,
                                   source="label_studio", source_project_id=LS_PROJECT)
    poll_started()
    return "news"


def _airflow(query: Any) -> Any:
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.execute(query).all()


def completion_events() -> list[dict[str, Any]]:
    from sqlalchemy import select

    from airflow.models.asset import AssetEvent, AssetModel

    rows = _airflow(select(AssetEvent.extra).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                    .where(AssetModel.name == COMPLETIONS_ASSET).order_by(AssetEvent.id))
    return [extra for (extra,) in rows]


def poll_waiting() -> bool:
    from sqlalchemy import select

    from airflow.models.asset import AssetDagRunQueue

    return bool(_airflow(select(AssetDagRunQueue.asset_id).where(AssetDagRunQueue.target_dag_id == SENSOR_DAG_ID)))


def poll_started() -> None:
    """What the scheduler does when it creates the asset-triggered run: the queue entry goes."""
    from sqlalchemy import delete

    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session

    with create_session() as session:
        session.execute(delete(AssetDagRunQueue).where(AssetDagRunQueue.target_dag_id == SENSOR_DAG_ID))


def post(client: Any, body: Any, *, secret: str | None = SECRET, raw: bytes | None = None) -> Any:
    headers = {"Content-Type": "application/json"} | ({SECRET_HEADER: secret} if secret is not None else {})
    return client.post(URL, content=raw if raw is not None else json.dumps(body), headers=headers)


def test_a_delivery_asks_for_one_poll_and_the_same_delivery_again_changes_nothing(client, connected, backends) -> None:  # type: ignore[no-untyped-def]
    before = len(completion_events())
    project_id = backends.store.projects.get(connected).id
    assert backends.store.webhooks.last_received(project_id) is None  # the page says: polled only
    answer = post(client, delivery(1))
    assert answer.status_code == 202, answer.text
    assert backends.store.webhooks.last_received(project_id) is not None  # the page says: on Label Studio's webhook
    assert answer.json() == {"project": connected, "poll": "asked"}
    events = completion_events()[before:]
    assert events == [{"projects": [connected], "source": "label studio webhook"}] and poll_waiting()

    again = post(client, delivery(1))
    assert again.status_code == 200 and "acted on already" in again.json()["poll"]
    assert len(completion_events()) == before + 1

    # Another annotation while the first event's poll has not started: that poll will see it too.
    burst = [post(client, delivery(n)) for n in range(2, 12)]
    assert {(r.status_code, r.json()["poll"]) for r in burst} == {(202, "not asked: an earlier event's poll is still to start")}
    assert len(completion_events()) == before + 1

    poll_started()
    later = post(client, delivery(12))
    assert later.status_code == 202 and later.json()["poll"] == "asked"
    assert len(completion_events()) == before + 2


@pytest.mark.parametrize(("secret", "body", "raw", "status", "says"), [
    (None, delivery(), None, 401, "does not carry the webhook secret"),
    ("wrong", delivery(), None, 401, "does not carry the webhook secret"),
    (SECRET, None, b"{not json", 400, "not JSON"),
    (SECRET, delivery(action="PROJECT_UPDATED"), None, 422, "'PROJECT_UPDATED' is not handled"),
    (SECRET, delivery(project=99), None, 404, "no project here is connected to Label Studio project 99"),
    (SECRET, None, b"{" + b" " * (10 << 20) + b"}", 413, f"at most {MAX_BODY_BYTES:,} bytes"),
])
def test_a_refused_delivery_gets_a_4xx_that_says_why_and_changes_nothing(  # type: ignore[no-untyped-def]
    client, connected, backends, secret: str | None, body: Any, raw: bytes | None, status: int, says: str
) -> None:
    from sqlalchemy import func, select

    from active_learning.store.models import WebhookDelivery

    before = len(completion_events())
    answer = post(client, body, secret=secret, raw=raw)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["detail"]
    assert len(completion_events()) == before and not poll_waiting()
    with backends.store.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(WebhookDelivery)).scalar() == 0


def test_without_a_secret_in_the_connection_every_delivery_is_refused(client, connected, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AIRFLOW_CONN_LABEL_STUDIO_DEFAULT", json.dumps({"conn_type": "http", "host": "http://ls.invalid"}))
    answer = post(client, delivery())
    assert answer.status_code == 401 and "no webhook secret is configured" in answer.json()["detail"]
    assert not poll_waiting()


def test_the_sensor_dag_polls_on_its_cron_or_when_completions_arrive(dagbag) -> None:  # type: ignore[no-untyped-def]
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    dag = dagbag.get_dag(SENSOR_DAG_ID)
    timetable = dag.timetable
    assert isinstance(timetable, AssetOrTimeSchedule) and isinstance(timetable.timetable, CronTriggerTimetable)
    assert timetable.timetable.expression == "*/5 * * * *"
    assert [asset.name for asset in timetable.asset_condition.objects] == [COMPLETIONS_ASSET]


def test_a_poll_started_by_events_counts_as_of_its_poke_and_pokes_once(backends, sample_tasks, sample_config) -> None:  # type: ignore[no-untyped-def]
    """Its run_after is the first event it consumed: completions announced after that one count too, and a
    poll that finds nothing ends at once (the next event's poll is not held back behind it)."""
    from datetime import timedelta
    from types import SimpleNamespace

    from active_learning.store.models import utcnow
    from active_learning_airflow.sensors import DueProjectsSensor
    from airflow.sdk.exceptions import AirflowSkipException

    backends.store.projects.create("news", sample_config, active_learning=True, frequency=50)
    backends.store.completions.import_tasks("news", sample_tasks[:40])
    first_event = utcnow() - timedelta(minutes=1)
    sensor = DueProjectsSensor(task_id="wait_for_due_projects")
    started_by_events = {"dag_run": SimpleNamespace(run_type="asset_triggered", run_after=first_event), "data_interval_end": None}
    with pytest.raises(AirflowSkipException, match="pokes once"):
        sensor.poke(started_by_events)
    backends.store.completions.import_tasks("news", sample_tasks[40:])  # announced after the first event
    done = sensor.poke(started_by_events)
    assert done.is_done and [launch["conf"]["project"] for launch in done.xcom_value] == ["news"]
    by_hand = sensor.poke({"dag_run": SimpleNamespace(run_type="manual", run_after=first_event), "data_interval_end": None})
    assert not by_hand.is_done  # "poll now" counts as of when it was asked


def test_a_delivery_costs_a_constant_few_store_statements(client, connected) -> None:  # type: ignore[no-untyped-def]
    """Answered within Label Studio's 1 s whatever the store holds: the project by its Label Studio id, and
    the delivery's record (old ones dropped, its key looked up, inserted): no scan of completions."""
    from sqlalchemy import event

    from active_learning_airflow.ui.domain import domain

    statements: list[str] = []
    engine = domain().store.engine
    listen = lambda *args: statements.append(args[2])  # noqa: E731  (conn, cursor, statement, ...)
    event.listen(engine, "before_cursor_execute", listen)
    try:
        for n in range(1, 6):
            statements.clear()
            assert post(client, delivery(n)).status_code == 202
            assert len([s for s in statements if s.lstrip().upper().startswith(("SELECT", "INSERT", "DELETE", "UPDATE"))]) <= 4, statements
        statements.clear()
        assert post(client, delivery(1)).status_code == 200
        assert not any("completions" in s for s in statements), statements
    finally:
        event.remove(engine, "before_cursor_execute", listen)
