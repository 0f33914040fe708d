"""One answer in one place: the page's projects list, ``projects --json`` and the sensor's poll give the
same numbers, for projects of our store and of a (scripted) Label Studio server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from active_learning import cli
from active_learning.backends import Backends
from active_learning.status import poll, project_statuses
from active_learning.store.models import SOURCE_LABEL_STUDIO, utcnow
from test_label_studio_client import LEGACY, FakeLabelStudio, fake  # noqa: F401  (fake is a fixture)
from test_ui_api import UI, admin, client  # noqa: F401  (fixtures: Airflow's API server app, an admin token)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
COUNTED = ("completions", "since_last_training", "to_next_training", "due")


@pytest.fixture
def projects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeLabelStudio, sample_config: str,  # noqa: F811
             sample_tasks: list[Any]) -> Backends:
    """Our store: 'ours' (90 completions, due at 50), 'quiet' (30 of 100, trained once on 10, off);
    Label Studio: 'theirs' (60 annotations, due at 50), 'theirs-trained' (70, trained on 40: 30 of 50)."""
    monkeypatch.setenv("ACTIVE_LEARNING_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_CONN_LABEL_STUDIO_DEFAULT", f"http://:{LEGACY}@{fake.url.removeprefix('http://')}")
    for key in ("ACTIVE_LEARNING_DB_URL", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(key, raising=False)
    backends = Backends()
    store = backends.store
    store.projects.create("ours", sample_config, active_learning=True, frequency=50)
    store.completions.import_tasks("ours", sample_tasks, arrived_at=T0)
    store.projects.create("quiet", sample_config, frequency=100)
    store.completions.import_tasks("quiet", sample_tasks[:10], arrived_at=T0)
    store.trainings.start("quiet", run_key="quiet-1", source="manual", as_of=T0)
    store.trainings.update("quiet-1", status="success")
    store.completions.import_tasks("quiet", sample_tasks[10:40], arrived_at=T0 + timedelta(minutes=1))
    store.projects.create("theirs", sample_config, active_learning=True, frequency=50,
                          source=SOURCE_LABEL_STUDIO, source_project_id=41)
    store.projects.create("theirs-trained", sample_config, active_learning=True, frequency=50,
                          source=SOURCE_LABEL_STUDIO, source_project_id=42)
    store.trainings.start("theirs-trained", run_key="theirs-1", source="active_learning", as_of=T0, source_annotations=40)
    store.trainings.update("theirs-1", status="success")
    fake.projects = {41: 60, 42: 70}
    return backends


def counted(rows: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {row["name"]: tuple(row[key] for key in COUNTED) for row in rows}


def test_the_page_the_cli_and_the_poll_agree_on_both_sources(
    projects: Backends, client, admin, capsys: pytest.CaptureFixture[str]  # type: ignore[no-untyped-def]  # noqa: F811
) -> None:
    expected = {
        "ours": (90, 90, 0, True),
        "quiet": (40, 30, 70, False),  # active learning off: never due
        "theirs": (60, 60, 0, True),
        "theirs-trained": (70, 30, 20, False),
    }
    page = client.get(f"{UI}/api/projects", headers=admin)
    assert page.status_code == 200, page.text
    assert counted(page.json()["projects"]) == expected

    capsys.readouterr()  # the API server's access log
    assert cli.main(["projects", "--json"]) == 0
    assert counted(json.loads(capsys.readouterr().out)) == expected

    assert counted([row.as_dict() for row in project_statuses(projects, utcnow())]) == expected
    due = {training.project: training.new_completions for training in poll(projects.sources, utcnow())}
    assert due == {name: since for name, (_, since, _, is_due) in expected.items() if is_due}


def test_a_label_studio_that_does_not_answer_leaves_its_counts_empty_on_the_page(
    projects: Backends, fake: FakeLabelStudio, client, admin  # type: ignore[no-untyped-def]  # noqa: F811
) -> None:
    fake.replies[("GET", "/api/projects/")].extend([(401, {"detail": "Invalid token."})] * 3)
    page = client.get(f"{UI}/api/projects", headers=admin)
    assert page.status_code == 200, page.text
    rows = counted(page.json()["projects"])
    assert rows["theirs"] == (None, None, None, False) and rows["ours"] == (90, 90, 0, True)
