"""Projects of both sources in one poll; Label Studio's side over real HTTP against the scripted server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from active_learning.backends import Backends
from active_learning.sources.label_studio_client import LabelStudioClient, LabelStudioConnection, LabelStudioError
from active_learning.status import poll, training_run_id
from active_learning.store.models import SOURCE_LABEL_STUDIO
from test_label_studio_client import LEGACY, FakeLabelStudio, fake  # noqa: F401  (fake is a fixture)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def both(backends: Backends, fake: FakeLabelStudio, sample_config: str, sample_tasks):  # type: ignore[no-untyped-def]  # noqa: F811
    """A store project with 90 completions and a Label Studio project (id 41) with 60 annotations."""
    backends.store.projects.create("ours", sample_config, active_learning=True, frequency=50)
    backends.store.completions.import_tasks("ours", sample_tasks, arrived_at=T0)
    backends.store.projects.create("theirs", sample_config, active_learning=True, frequency=50,
                             source=SOURCE_LABEL_STUDIO, source_project_id=41)
    fake.projects = {41: 60}
    backends.connection_lookup = lambda conn_id: LabelStudioConnection(fake.url, LEGACY, conn_id)
    return backends


def test_one_poll_sees_both_sources_with_one_request_for_label_studio(both: Backends, fake: FakeLabelStudio) -> None:  # noqa: F811
    due = {d.project: d for d in poll(both.sources, T0 + timedelta(minutes=1))}

    assert {p: d.new_completions for p, d in due.items()} == {"ours": 90, "theirs": 60}
    assert due["theirs"].run_id == training_run_id("theirs", None)
    assert fake.paths() == ["GET /api/projects/"]
    assert fake.requests[0]["query"]["ids"] == ["41"]


def test_label_studio_new_completions_count_from_the_last_training_s_recorded_count(both: Backends, fake: FakeLabelStudio) -> None:  # noqa: F811
    both.store.trainings.start("theirs", run_key="first", source="active_learning", as_of=T0, source_annotations=60)
    both.store.trainings.update("first", status="success")
    fake.projects = {41: 109}
    [row] = [r for r in both.sources.poll(T0 + timedelta(hours=1)) if r.name == "theirs"]
    assert (row.since_last_training, row.due) == (49, False)

    fake.projects = {41: 110}
    live = [d for d in poll(both.sources, T0 + timedelta(hours=1)) if d.project == "theirs"]
    backfill = [d for d in poll(both.sources, T0 - timedelta(days=1)) if d.project == "theirs"]
    assert [d.run_id for d in live] == [d.run_id for d in backfill] == [training_run_id("theirs", T0)]

    both.store.trainings.start("theirs", run_key="second", source="active_learning", as_of=T0 + timedelta(hours=1),
                              source_annotations=110)
    both.store.trainings.update("second", status="failed")  # a failed training does not count
    assert [d.new_completions for d in poll(both.sources, T0 + timedelta(hours=2)) if d.project == "theirs"] == [50]


def test_no_request_while_no_label_studio_project_is_active(both: Backends, fake: FakeLabelStudio) -> None:  # noqa: F811
    both.store.projects.update_settings("theirs", active_learning=False)
    both.connection_lookup = None  # not even a connection is needed

    assert [d.project for d in poll(both.sources, T0 + timedelta(minutes=1))] == ["ours"]
    assert fake.requests == []


def test_label_studio_down_leaves_store_projects_training_and_says_why(both: Backends, fake: FakeLabelStudio) -> None:  # noqa: F811
    fake.replies[("GET", "/api/projects/")].extend([(503, {"detail": "maintenance"})] * 5)
    sources = both.sources
    sources.label_studio._client = LabelStudioClient(LabelStudioConnection(fake.url, LEGACY), retries=1, sleep=lambda _: None)

    assert [d.project for d in poll(sources, T0 + timedelta(minutes=1))] == ["ours"]
    [error] = sources.errors
    assert isinstance(error, LabelStudioError) and "HTTP 503: maintenance" in str(error)


def test_import_refuses_a_label_studio_project(both: Backends, capsys: pytest.CaptureFixture[str]) -> None:
    from active_learning import cli
    from conftest import SAMPLE

    assert cli.main(["import", str(SAMPLE / "completions_batch1.json"), "--project", "theirs"]) == 1
    assert "lives in Label Studio" in capsys.readouterr().err


def test_connect_reads_the_config_from_label_studio_and_refuses_a_second_connection(
    backends: Backends, fake: FakeLabelStudio, sample_config: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    from active_learning import cli

    monkeypatch.setenv("AIRFLOW_CONN_LABEL_STUDIO_DEFAULT", f"http://:{LEGACY}@{fake.url.removeprefix('http://')}")
    fake.replies[("GET", "/api/projects/8/")].extend([(200, {"id": 8, "title": "News desk", "label_config": sample_config})] * 3)
    fake.replies[("GET", "/api/projects/8/summary/")].extend([(200, {"project": 8, "created_labels": {"label": {"PER": 2}}})] * 2)

    assert cli.main(["connect-label-studio", "--ls-project", "8", "--enable"]) == 0
    settings = backends.store.projects.get("News desk")
    assert (settings.source, settings.source_project_id, settings.active_learning) == (SOURCE_LABEL_STUDIO, 8, True)
    assert backends.store.configs.revisions("News desk")[0].labeling_config == sample_config
    assert cli.main(["connect-label-studio", "--ls-project", "8", "--project", "again"]) == 1
    assert "connected already" in capsys.readouterr().err
    assert cli.main(["config", "--project", "News desk"]) == 0  # read live from Label Studio
    assert capsys.readouterr().out == sample_config


def test_training_on_label_studio_reads_its_export_once_and_reports_what_it_skipped(
    both: Backends, fake: FakeLabelStudio, sample_config: str  # noqa: F811
) -> None:
    import json

    from active_learning.training.steps import prepare_data
    from conftest import SAMPLE

    export = json.loads((SAMPLE / "completions_batch1.json").read_text())
    export[0]["completions"][0]["result"][0]["value"]["labels"] = ["DRUG"]  # not in the config
    fake.replies[("GET", "/api/projects/41/")].extend([(200, {"id": 41, "label_config": sample_config,
                                                                "total_annotations_number": 60})] * 2)
    fake.replies[("GET", "/api/projects/41/export")].append((200, json.dumps(export).encode()))

    prepared = prepare_data(both, "theirs", run_key="ls-1", source="manual", as_of=T0)

    summary = prepared["summary"]
    assert (summary["source"], summary["source_annotations"]) == (SOURCE_LABEL_STUDIO, 60)
    assert summary["export"]["tasks"] == len(export) and summary["export"]["unknown_labels"] == {"DRUG": 1}
    assert prepared["completions_used"] == len(export)
    assert fake.paths() == ["GET /api/projects/41/", "GET /api/projects/41/", "GET /api/projects/41/export"]
