"""The Active Learning page's endpoints, served by Airflow's own API server app (its auth manager,
middlewares and plugin loading), against a real annotation store, MLflow store and Airflow DB."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from active_learning.naming import MAX_PROJECT_NAME
from conftest import REPO, SAMPLE
from test_migrations import postgres_url  # noqa: F401  (a fixture: a fresh PostgreSQL database, or a skip)
from test_webhooks import completion_events, poll_started

AIRFLOW = Path(sys.executable).parent / "airflow"
UI = "/active-learning"
PROJECT = "news desk"  # a name that needs quoting and a safe name with a hash
OTHER = "other-project"
BROKEN = "broken-config"


# -- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Airflow's API server app, with the DAGs serialized in its DB so that "train now" can trigger them."""
    subprocess.run([AIRFLOW, "db", "migrate"], check=True, capture_output=True)
    subprocess.run([AIRFLOW, "dags", "reserialize"], check=True, capture_output=True)
    from fastapi.testclient import TestClient

    from airflow.api_fastapi.app import create_app

    yield TestClient(create_app("core"))


@pytest.fixture(scope="module")
def store_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One store and MLflow store for the module: PROJECT with 90 completions and two trained models
    (registered only), OTHER with the same config and no model, BROKEN naming a model that does not exist."""
    from active_learning.backends import Backends
    from active_learning.exports import read_export
    from active_learning.loop import train_now

    home = tmp_path_factory.mktemp("ui-store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ACTIVE_LEARNING_HOME", str(home))
        for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):  # MLflow writes them; never another test's
            patch.delenv(key, raising=False)
        backends = Backends()
        config = (SAMPLE / "labeling_config.xml").read_text()
        tasks = [t for batch in ("completions_batch1.json", "completions_batch2.json") for t in read_export(SAMPLE / batch)[0]]
        backends.store.projects.create(PROJECT, config, active_learning=True, frequency=50)
        backends.store.completions.import_tasks(PROJECT, tasks)
        train_now(backends, PROJECT, choice="register_only")
        time.sleep(1.1)  # model names carry the training second
        train_now(backends, PROJECT, choice="register_only")
        backends.store.projects.create(OTHER, config)
        backends.store.projects.create(BROKEN, config.replace('"ner_dl"', '"ner_dll"'))
        yield home


@pytest.fixture
def backends(store_home: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from active_learning.backends import Backends

    monkeypatch.setenv("ACTIVE_LEARNING_HOME", str(store_home))
    return Backends()


def token(username: str, role: str) -> dict[str, str]:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    jwt = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role))
    return {"Authorization": f"Bearer {jwt}"}


@pytest.fixture
def admin(client) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return token("admin", "admin")


@pytest.fixture
def viewer(client) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return token("viewer", "viewer")


@pytest.fixture
def user(client) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The simple auth manager's USER role: may trigger DAGs (and so change this page)."""
    return token("alice", "user")


def grant(monkeypatch: pytest.MonkeyPatch, rule: Any) -> None:
    """Let ``rule(method, user, details)`` answer for the auth manager: the simple auth manager only has
    global roles, others (FAB, Keycloak, multi-team) grant per DAG and per team."""
    from airflow.api_fastapi.app import get_auth_manager

    manager = get_auth_manager()
    monkeypatch.setattr(manager, "is_authorized_dag", lambda *, method, user, access_entity=None, details=None:
                        rule(method, user, details))


@pytest.fixture
def trainer(client, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A user who may trigger the training DAG, but not the deploy DAG."""
    grant(monkeypatch, lambda method, user, details: method == "GET" or details.id != "active_learning_deploy")
    return token("trainer", "user")


def models_of(backends, project: str = PROJECT) -> list[str]:  # type: ignore[no-untyped-def]
    return [t.model_name for t in backends.store.trainings.history(project) if t.model_name]


def new_project(backends, name: str, **settings: Any) -> str:  # type: ignore[no-untyped-def]
    backends.store.projects.create(name, (SAMPLE / "labeling_config.xml").read_text(), **settings)
    return name


# -- the plugin ------------------------------------------------------------------------------------------


def test_the_plugin_registers_the_app_and_a_navigation_entry(client, admin) -> None:  # type: ignore[no-untyped-def]
    plugins = client.get("/api/v2/plugins", headers=admin).json()["plugins"]
    [plugin] = [p for p in plugins if p["name"] == "active_learning"]
    assert [app["url_prefix"] for app in plugin["fastapi_apps"]] == [UI]
    [view] = plugin["external_views"]
    assert view["url_route"] == "active-learning" and view["href"] == "active-learning/" and view["destination"] == "nav"
    assert client.get(f"{UI}/static/icon.svg").status_code == 200  # the nav bar's icon needs no login


def test_the_plugin_module_is_cheap_to_import() -> None:
    code = (
        f"import sys; sys.path[:0] = [{str(REPO / 'plugins')!r}]; import active_learning_plugin; "
        "heavy = [m for m in ('fastapi', 'mlflow', 'spacy', 'lxml', 'active_learning', 'active_learning_airflow.ui.app') "
        "if m in sys.modules]; print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


# -- auth ------------------------------------------------------------------------------------------------

READS = [
    ("get", f"{UI}/", {}),
    ("get", f"{UI}/static/app.js", {}),
    ("get", f"{UI}/api/projects", {}),
    ("get", f"{UI}/api/project", {"params": {"project": PROJECT}}),
    ("get", f"{UI}/api/project/diff", {"params": {"project": PROJECT, "revision": 1}}),
    ("get", f"{UI}/api/project/comparison", {"params": {"project": PROJECT, "model_name": "x_ner_20260101_000000"}}),
]
CHANGES = [
    ("post", f"{UI}/api/project/settings", {"params": {"project": PROJECT}, "json": {"config_revision": 1, "frequency": 100}}),
    ("post", f"{UI}/api/project/train", {"params": {"project": PROJECT}, "json": {}}),
    ("post", f"{UI}/api/project/deploy", {"params": {"project": PROJECT}, "json": {"config_revision": 1, "model_name": "x"}}),
    ("post", f"{UI}/api/project/rollback", {"params": {"project": PROJECT}, "json": {"config_revision": 2, "to_revision": 1}}),
    ("post", f"{UI}/api/project/comparison", {"params": {"project": PROJECT}, "json": {"model_name": "x_ner_20260101_000000"}}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), READS + CHANGES)
def test_anonymous_and_bad_tokens_are_refused(client, backends, method: str, path: str, kwargs: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    anonymous = getattr(client, method)(path, **kwargs)
    assert anonymous.status_code == 401
    if "/api/" in path:
        assert anonymous.json() == {"detail": "Not authenticated"}
    forged = {"Authorization": "Bearer not-a-jwt"}
    assert getattr(client, method)(path, headers=forged, **kwargs).status_code == 403


def test_the_page_without_login_says_why_and_links_to_the_login(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get(f"{UI}/")
    assert response.status_code == 401 and response.headers["content-type"].startswith("text/html")
    assert "/auth/login?next=" in response.text


def test_a_user_who_may_not_trigger_dags_can_look_but_not_change(client, backends, viewer) -> None:  # type: ignore[no-untyped-def]
    page = client.get(f"{UI}/", headers=viewer)
    assert page.status_code == 200 and 'src="static/app.js"' in page.text
    assert "frame-ancestors 'self'" in page.headers["content-security-policy"]
    listing = client.get(f"{UI}/api/projects", headers=viewer).json()
    assert listing["permissions"] == {"can_change_settings": False, "can_train": False, "can_deploy": False}
    detail = client.get(f"{UI}/api/project", params={"project": PROJECT}, headers=viewer).json()
    assert detail["permissions"]["can_deploy"] is False
    before = (backends.store.projects.get(PROJECT), backends.store.configs.read(PROJECT))
    revision = before[1].revision
    changes = [
        ("settings", {"config_revision": revision, "frequency": 200}),
        ("train", {}),
        ("deploy", {"config_revision": revision, "model_name": models_of(backends)[0]}),
        ("rollback", {"config_revision": revision, "to_revision": 1}),
        ("notifications", {"emails": ["someone@example.org"]}),
    ]
    for action, body in changes:
        response = client.post(f"{UI}/api/project/{action}", params={"project": PROJECT}, json=body, headers=viewer)
        assert response.status_code == 403, action
    assert (backends.store.projects.get(PROJECT), backends.store.configs.read(PROJECT)) == before


# -- reading ---------------------------------------------------------------------------------------------


def test_the_projects_list(client, backends, admin) -> None:  # type: ignore[no-untyped-def]
    from active_learning.store.models import utcnow

    data = client.get(f"{UI}/api/projects", headers=admin).json()
    rows = {row["name"]: row for row in data["projects"]}
    news = rows[PROJECT]
    assert news["active_learning"] is True and news["frequency"] == 50 and news["completions"] == 90
    assert news["since_last_training"] == 0 and news["to_next_training"] == 50 and news["valid"] is True
    last = news["last_training"]
    assert last["status"] == "success" and last["source"] == "manual" and last["mlflow_run_id"]
    assert last["model_name"] == models_of(backends)[-1]
    assert last["airflow_run"] is False  # trained by the CLI's code path, not by an Airflow run
    [problem] = rows[BROKEN]["problems"]
    assert problem["label"] == "MISC" and problem["model"] == "ner_dll" and "'ner_dl'" in problem["message"]
    assert data["permissions"]["can_deploy"] is True and data["links"]["airflow"] == "/"
    # "since the last training" is what the poll counts
    polled = {row.name: row.since_last_training for row in backends.store.status.poll(utcnow())}
    assert all(rows[name]["since_last_training"] == count for name, count in polled.items())


def test_the_project_page(client, backends, admin) -> None:  # type: ignore[no-untyped-def]
    detail = client.get(f"{UI}/api/project", params={"project": PROJECT}, headers=admin).json()
    first, second = models_of(backends)
    assert [t["model_name"] for t in detail["history"]] == [second, first]  # newest first
    training = detail["history"][0]
    assert training["source"] == "manual" and training["completions_used"] == 90 and training["status"] == "success"
    assert set(training["metrics"]) >= {"precision", "recall", "f1", "per_label"} and training["duration_seconds"] > 0
    assert {"PER", "ORG", "LOC"} <= set(training["metrics"]["per_label"])
    assert [m["model_name"] for m in detail["models"]] == [second, first]
    model = detail["models"][0]
    assert model["trained_at"] and model["metrics"]["f1"] == training["metrics"]["f1"] and "candidate" in model["aliases"]
    assert [row["model_name"] for row in detail["learning_curve"]] == [first, second]
    assert detail["validation"] == {"source": "mlflow", "problems": []}
    assert detail["revisions"][-1]["reason"] == "project created"
    assert detail["training_dag"]["loaded"] is True


def test_the_project_page_shows_a_running_trainings_progress(client, backends, admin) -> None:  # type: ignore[no-untyped-def]
    """Running from prepare_data to its last step: no progress before spaCy's first evaluation, then the
    last one's (here the train step is done and the model not yet registered)."""
    from active_learning.exports import read_export
    from active_learning.store.models import utcnow
    from active_learning.training import steps

    name = new_project(backends, "progress-project")
    backends.store.completions.import_tasks(name, read_export(SAMPLE / "completions_batch1.json")[0])
    prepared = steps.prepare_data(backends, name, run_key="progress-run", source="manual", as_of=utcnow())

    def shown() -> dict[str, Any]:
        [training] = client.get(f"{UI}/api/project", params={"project": name}, headers=admin).json()["history"]
        return training

    assert shown()["status"] == "running" and shown()["progress"] is None
    steps.train(backends, run_key="progress-run", mlflow_run_id=prepared["mlflow_run_id"], overrides=prepared["spacy_overrides"])
    training = shown()
    progress = training["progress"]
    assert training["status"] == "running" and training["airflow_run"] is False  # trained by the CLI's code path
    assert progress["step"] == 60 and progress["evaluations"] == 4 and 0 < progress["best_f1"] <= 1
    assert progress["elapsed_seconds"] > 0 and progress["estimate"]["ends_by"] == "max_steps" and progress["mlflow_behind"] == 0


def test_reading_an_unknown_project_is_404(client, backends, admin) -> None:  # type: ignore[no-untyped-def]
    for path, params in [
        ("project", {}),
        ("project/diff", {"revision": 1}),
        ("project/comparison", {"model_name": "nowhere_ner_20260101_000000"}),
    ]:
        response = client.get(f"{UI}/api/{path}", params={"project": "nowhere", **params}, headers=admin)
        assert response.status_code == 404 and "no project named 'nowhere'" in response.json()["detail"]
    assert client.get(f"{UI}/api/project/diff", params={"project": PROJECT, "revision": 99}, headers=admin).status_code == 404


def test_a_nul_character_is_refused_naming_where_and_names_as_long_as_the_store_takes_are_read(  # type: ignore[no-untyped-def]
    client, backends, admin
) -> None:
    """PostgreSQL can neither store nor compare a NUL (a 500 from its DataError): refused before any handler,
    in a query parameter (400) or anywhere in a body (422), saying where. A project name is as long as the
    store takes, not shorter."""
    refused = client.get(f"{UI}/api/project", params={"project": "news\x00"}, headers=admin)
    assert refused.status_code == 400 and refused.json()["detail"] == "query parameter 'project' contains a NUL character"
    in_diff = client.get(f"{UI}/api/project/diff", params={"project": PROJECT, "revision": "1", "against\x00": "1"}, headers=admin)
    assert in_diff.status_code == 400 and in_diff.json()["detail"] == "query parameter 'against' contains a NUL character"
    name = new_project(backends, "long-" + "n" * (MAX_PROJECT_NAME - 5))
    assert client.get(f"{UI}/api/project", params={"project": name}, headers=admin).status_code == 200
    too_long = client.get(f"{UI}/api/project", params={"project": name + "x"}, headers=admin)
    assert too_long.status_code == 422
    for path, body, where in [
        ("deploy", {"config_revision": 1, "model_name": "m\x00"}, "model_name"),
        ("training-params", {"config_revision": 1, "set": {"model.base": ["a", "b\x00"]}}, "set.model.base.1"),
    ]:
        response = client.post(f"{UI}/api/project/{path}", params={"project": name}, headers=admin, json=body)
        assert response.status_code == 422 and f"{where} contains a NUL character" in str(response.json()["detail"]), response.text
    assert backends.store.projects.get(name).training_params == {} and backends.store.configs.read(name).revision == 1


# -- settings ----------------------------------------------------------------------------------------------


def test_settings_change_through_the_store_and_are_recorded_with_the_user(client, backends, user) -> None:  # type: ignore[no-untyped-def]
    name = new_project(backends, "settings-project")
    poll_started()
    events = len(completion_events())
    response = client.post(f"{UI}/api/project/settings", params={"project": name}, headers=user,
                           json={"config_revision": 1, "active_learning": True, "frequency": 100, "auto_deploy": True})
    assert response.status_code == 200, response.text
    assert completion_events()[events:] == [{"projects": [name], "source": "active learning page"}]  # it may be due: a poll now
    settings = backends.store.projects.get(name)
    assert (settings.active_learning, settings.frequency, settings.auto_deploy) == (True, 100, True)
    revision = backends.store.configs.revisions(name)[-1]
    assert response.json()["config_revision"] == revision.revision == 2
    assert revision.author == "alice" and "every 100 new completions" in revision.reason
    assert revision.labeling_config == backends.store.configs.revisions(name)[0].labeling_config  # the XML did not change
    off = client.post(f"{UI}/api/project/settings", params={"project": name}, headers=user,
                      json={"config_revision": 2, "active_learning": False})
    assert off.status_code == 200 and backends.store.projects.get(name).active_learning is False


def test_settings_refuse_bad_input(client, backends, admin) -> None:  # type: ignore[no-untyped-def]
    name = new_project(backends, "bad-input-project")
    url = f"{UI}/api/project/settings"
    unknown = client.post(url, params={"project": "nowhere"}, headers=admin, json={"config_revision": 1, "frequency": 100})
    assert unknown.status_code == 404
    odd = client.post(url, params={"project": name}, headers=admin, json={"config_revision": 1, "frequency": 75})
    assert odd.status_code == 422 and "50, 100, 200" in odd.json()["detail"]
    extra = client.post(url, params={"project": name}, headers=admin, json={"config_revision": 1, "frequency_": 100})
    assert extra.status_code == 422
    assert backends.store.projects.get(name).frequency == 50 and backends.store.configs.read(name).revision == 1


def test_notification_recipients_are_shown_and_replaced_with_the_clis_checks(  # type: ignore[no-untyped-def]
    client, backends, admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACTIVE_LEARNING_NOTIFY_EMAIL", "ops@example.org")
    name = new_project(backends, "notified-project")
    url = f"{UI}/api/project/notifications"
    shown = client.get(f"{UI}/api/project", params={"project": name}, headers=admin).json()["notifications"]
    assert shown["recipients"] == [{"email": "ops@example.org", "source": "deployment"}]
    assert shown["apprise_connection"] == "apprise_default"

    bad = client.post(url, params={"project": name}, headers=admin, json={"emails": ["owner@example.org", "not an address"]})
    assert bad.status_code == 422 and bad.json()["detail"]["message"] == "recipients refused, nothing saved:"
    [problem] = bad.json()["detail"]["problems"]
    assert "'not an address'" in problem
    assert backends.store.projects.get(name).notify_emails == ()

    saved = client.post(url, params={"project": name}, headers=admin, json={"emails": ["owner@example.org", "ops@example.org"]})
    assert saved.status_code == 200, saved.text
    assert saved.json()["recipients"] == [{"email": "ops@example.org", "source": "deployment"},
                                          {"email": "owner@example.org", "source": "project"}]
    assert backends.store.projects.get(name).notify_emails == ("owner@example.org", "ops@example.org")
    cleared = client.post(url, params={"project": name}, headers=admin, json={"emails": []})
    assert cleared.json()["message"] == f"{name}: e-mailed about trainings: the deployment's recipients only"
    assert backends.store.projects.get(name).notify_emails == ()


def test_a_settings_change_from_a_stale_form_is_refused(client, backends, admin) -> None:  # type: ignore[no-untyped-def]
    name = new_project(backends, "stale-settings-project")
    state = backends.store.configs.read(name)
    backends.store.configs.write(name, state.xml.replace("PER", "PERSON"), expected_revision=1, author="someone", reason="edit")
    response = client.post(f"{UI}/api/project/settings", params={"project": name}, headers=admin,
                           json={"config_revision": 1, "active_learning": True})
    assert response.status_code == 409 and response.json()["detail"]["live_revision"] == 2
    assert backends.store.projects.get(name).active_learning is False


def test_switching_auto_deploy_needs_permission_to_deploy(client, backends, trainer) -> None:  # type: ignore[no-untyped-def]
    name = new_project(backends, "trainer-settings", active_learning=True)
    url = f"{UI}/api/project/settings"
    listing = client.get(f"{UI}/api/projects", headers=trainer).json()
    assert listing["permissions"] == {"can_change_settings": True, "can_train": True, "can_deploy": False}
    on = client.post(url, params={"project": name}, headers=trainer, json={"config_revision": 1, "auto_deploy": True})
    assert on.status_code == 403 and "'active_learning_deploy'" in on.json()["detail"]
    assert backends.store.projects.get(name).auto_deploy is False
    # the rest of the settings, and naming auto-deploy's value unchanged (the page's switch-on question), still work
    same = client.post(url, params={"project": name}, headers=trainer,
                       json={"config_revision": 1, "frequency": 200, "auto_deploy": False})
    assert same.status_code == 200, same.text
    assert backends.store.projects.get(name).frequency == 200


# -- request forgery -----------------------------------------------------------------------------------------


def test_changes_are_accepted_only_as_json_from_this_origin(client, backends, admin) -> None:  # type: ignore[no-untyped-def]
    name = new_project(backends, "forgery-target")
    url, params = f"{UI}/api/project/train", {"project": name}
    # what an HTML form on another site can send without a preflight: form-encoded, text/plain, or no body
    for kwargs in ({"data": {"deploy": "deploy"}}, {"content": "{}", "headers": {"Content-Type": "text/plain"}}, {}):
        response = client.post(url, params=params, **{**kwargs, "headers": admin | kwargs.get("headers", {})})
        assert response.status_code == 415 and "application/json" in response.json()["detail"], kwargs
    # JSON, but sent by another site's page (old browsers say so in Origin, newer ones in Sec-Fetch-Site)
    for foreign in ({"Origin": "https://elsewhere.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site", "Origin": "http://testserver"}):
        response = client.post(url, params=params, headers=admin | foreign, json={"deploy": "register_only"})
        assert response.status_code == 403 and "another site" in response.json()["detail"], foreign
    settings = client.post(f"{UI}/api/project/settings", params=params, headers=admin | {"Sec-Fetch-Site": "cross-site"},
                           json={"config_revision": 1, "active_learning": True})
    assert settings.status_code == 403 and backends.store.projects.get(name).active_learning is False
    assert client.get(f"{UI}/api/project", params=params, headers=admin).json()["pending_runs"] == []
    # the page itself, and API clients that send neither header
    for own in ({"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}, {}):
        response = client.post(url, params=params, headers=admin | own, json={"deploy": "register_only"})
        assert response.status_code == 200, (own, response.text)


# -- train now -----------------------------------------------------------------------------------------------


def dag_run(run_id: str):  # type: ignore[no-untyped-def]
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.run_id == run_id).one()
        session.expunge(run)
        return run


def test_train_now_triggers_the_training_dag_through_airflow_as_the_user(client, backends, user, admin) -> None:  # type: ignore[no-untyped-def]
    response = client.post(f"{UI}/api/project/train", params={"project": OTHER}, headers=user, json={})
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    run = dag_run(run_id)
    assert run.dag_id == "active_learning_training" and run.conf == {"project": OTHER, "source": "manual", "deploy": "auto"}
    assert run.run_type == "manual" and run.triggering_user_name == "alice" and run.triggered_by.value == "ui"
    assert response.json()["url"] == f"/dags/active_learning_training/runs/{run_id}"
    detail = client.get(f"{UI}/api/project", params={"project": OTHER}, headers=admin).json()
    assert [p["run_id"] for p in detail["pending_runs"]] == [run_id]  # queued, no training row yet
    unknown = client.post(f"{UI}/api/project/train", params={"project": "nowhere"}, headers=user, json={})
    assert unknown.status_code == 404
    bad = client.post(f"{UI}/api/project/train", params={"project": OTHER}, headers=user, json={"deploy": "always"})
    assert bad.status_code == 422


def test_training_with_the_gate_overridden_needs_permission_to_deploy(client, backends, trainer) -> None:  # type: ignore[no-untyped-def]
    name = new_project(backends, "trainer-training")
    url, params = f"{UI}/api/project/train", {"project": name}
    forced = client.post(url, params=params, headers=trainer, json={"deploy": "deploy"})
    assert forced.status_code == 403 and "'active_learning_deploy'" in forced.json()["detail"]
    registered = client.post(url, params=params, headers=trainer, json={"deploy": "register_only"})
    assert registered.status_code == 200, registered.text
    assert dag_run(registered.json()["dag_run_id"]).conf["deploy"] == "register_only"
    pending = client.get(f"{UI}/api/project", params=params, headers=trainer).json()["pending_runs"]
    assert [run["run_id"] for run in pending] == [registered.json()["dag_run_id"]]


# -- models, deploy, rollback ----------------------------------------------------------------------------------


def test_the_comparison_with_the_deployed_model(client, backends, admin) -> None:  # type: ignore[no-untyped-def]
    first, second = models_of(backends)
    url = f"{UI}/api/project/comparison"
    stored = client.get(url, params={"project": PROJECT, "model_name": second}, headers=admin).json()
    assert stored["candidate"]["model_name"] == second and stored["candidate"]["completions_used"] == 90
    assert stored["candidate"]["metrics"]["f1"] >= 0
    foreign = client.get(url, params={"project": OTHER, "model_name": second}, headers=admin)
    assert foreign.status_code == 400 and f"belongs to project {PROJECT!r}" in foreign.json()["detail"]
    missing = client.get(url, params={"project": PROJECT, "model_name": "news_ner_20990101_000000"}, headers=admin)
    assert missing.status_code == 400 and "no registered model" in missing.json()["detail"]


def test_rescoring_is_a_post_that_needs_the_deploy_permission_and_scores_like_the_gate(  # type: ignore[no-untyped-def]
    client, backends, admin, viewer, monkeypatch
) -> None:
    from active_learning.deploy import gate

    _, second = models_of(backends)
    url, params = f"{UI}/api/project/comparison", {"project": PROJECT}
    with monkeypatch.context() as patch:  # a navigation (GET) never loads models, whatever its query says
        patch.setattr(gate, "compare_with_deployed", lambda *args: pytest.fail("a GET scored models"))
        stored = client.get(url, params=params | {"model_name": second, "rescore": "true"}, headers=admin)
        assert stored.status_code == 200 and "rescored" not in stored.json()
    assert client.post(url, params=params, json={"model_name": second}, headers=viewer).status_code == 403
    response = client.post(url, params=params, json={"model_name": second}, headers=admin)
    assert response.status_code == 200, response.text
    scored = response.json()["rescored"]
    assert scored["candidate"] == second and scored["eval_tasks"] > 0 and "evaluation tasks" in scored["description"]
    assert response.json()["candidate"]["model_name"] == second  # and the stored comparison, as the GET's


def test_deploy_then_roll_back(client, backends, admin) -> None:  # type: ignore[no-untyped-def]
    first, second = models_of(backends)
    live = backends.store.configs.read(PROJECT).revision
    deploy = client.post(f"{UI}/api/project/deploy", params={"project": PROJECT}, headers=admin,
                         json={"config_revision": live, "model_name": first})
    assert deploy.status_code == 200, deploy.text
    state = backends.store.configs.read(PROJECT)
    assert deploy.json()["config_revision"] == state.revision == live + 1
    assert f'model="{first}"' in state.xml and backends.store.projects.get(PROJECT).deployed_model == first
    revision = backends.store.configs.revisions(PROJECT)[-1]
    assert revision.author == "admin" and revision.reason.startswith("manual deploy")

    stale = client.post(f"{UI}/api/project/deploy", params={"project": PROJECT}, headers=admin,
                        json={"config_revision": live, "model_name": second})
    assert stale.status_code == 409 and backends.store.configs.read(PROJECT) == state
    assert stale.json()["detail"]["live_revision"] == state.revision

    detail = client.get(f"{UI}/api/project", params={"project": PROJECT}, headers=admin).json()
    assert detail["project"]["deployed_model"] == first and detail["project"]["deployed_trained_at"]
    assert [(m["deployed"], m["in_config"]) for m in detail["models"]] == [(False, False), (True, True)]
    diff = client.get(f"{UI}/api/project/diff", params={"project": PROJECT, "revision": state.revision},
                      headers=admin).json()["diff"]
    assert f'+    <Label value="PER" model="{first}" background="#ff6b6b"/>' in diff.splitlines()

    stale_rollback = client.post(f"{UI}/api/project/rollback", params={"project": PROJECT}, headers=admin,
                                 json={"config_revision": live, "to_revision": live})
    assert stale_rollback.status_code == 409 and stale_rollback.json()["detail"]["live_revision"] == state.revision
    nowhere = client.post(f"{UI}/api/project/rollback", params={"project": PROJECT}, headers=admin,
                          json={"config_revision": state.revision, "to_revision": 999})
    assert nowhere.status_code == 400 and "no config revision 999" in nowhere.json()["detail"]
    rollback = client.post(f"{UI}/api/project/rollback", params={"project": PROJECT}, headers=admin,
                           json={"config_revision": state.revision, "to_revision": live})
    assert rollback.status_code == 200, rollback.text
    assert backends.store.configs.read(PROJECT).xml == backends.store.configs.revisions(PROJECT)[live - 1].labeling_config
    assert backends.store.configs.revisions(PROJECT)[-1].author == "admin"


def test_deploy_refuses_a_model_of_another_project_and_unknown_input(client, backends, admin) -> None:  # type: ignore[no-untyped-def]
    first, _ = models_of(backends)
    name = new_project(backends, "deploy-target")
    url = f"{UI}/api/project/deploy"
    foreign = client.post(url, params={"project": name}, headers=admin, json={"config_revision": 1, "model_name": first})
    assert foreign.status_code == 400 and f"belongs to project {PROJECT!r}" in foreign.json()["detail"]
    unknown_model = client.post(url, params={"project": name}, headers=admin,
                                json={"config_revision": 1, "model_name": "deploy-target_ner_20990101_000000"})
    assert unknown_model.status_code == 400
    unknown_project = client.post(url, params={"project": "nowhere"}, headers=admin,
                                  json={"config_revision": 1, "model_name": first})
    assert unknown_project.status_code == 404
    assert backends.store.configs.read(name).revision == 1 and backends.store.projects.get(name).deployed_model is None


def test_the_project_page_still_answers_when_mlflow_is_down(client, backends, admin, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import mlflow

    from active_learning.store.models import utcnow

    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    try:
        detail = client.get(f"{UI}/api/project", params={"project": BROKEN}, headers=admin).json()
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
    assert detail["models"] == [] and "127.0.0.1:9" in detail["models_error"]
    [problem] = detail["validation"]["problems"]  # checked against the training history instead
    assert detail["validation"]["source"] == "store" and problem["model"] == "ner_dll"
    assert detail["revisions"] and detail["project"]["name"] == BROKEN


# -- teams ---------------------------------------------------------------------------------------------------------


def test_the_page_asks_about_each_dag_with_its_team(client, backends, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Airflow 3.1+ auth managers may grant per team: the page's own permission checks name the DAG's team,
    as Airflow's API (and this app's route guards) do; a team-scoped manager, where a DAG of no team is open
    to all, would otherwise show and allow a user outside the DAGs' team what only the team may do."""
    from airflow.models.dag import DagModel

    monkeypatch.setattr(DagModel, "get_team_name", staticmethod(lambda dag_id, **_: "nlp"))
    teams = {"nina": "nlp", "otto": "ops"}
    grant(monkeypatch, lambda method, user, details: method == "GET" or details.team_name in (None, teams[user.get_name()]))
    for name, may in (("nina", True), ("otto", False)):
        listing = client.get(f"{UI}/api/projects", headers=token(name, "user")).json()
        assert set(listing["permissions"].values()) == {may}, name
    otto = client.post(f"{UI}/api/project/settings", params={"project": PROJECT}, headers=token("otto", "user"),
                       json={"config_revision": 1, "frequency": 100})
    assert otto.status_code == 403


# -- speed -------------------------------------------------------------------------------------------------------


def seed_projects(store, count: int, completions: int) -> None:  # type: ignore[no-untyped-def]
    """``count`` projects with ``completions`` each, two trainings (one failed), a deployed model; bulk inserts."""
    from sqlalchemy import insert, select

    from active_learning.store.models import Completion, ConfigRevision, Project, Task, TrainingRun, utcnow

    config = (SAMPLE / "labeling_config.xml").read_text()
    now = utcnow()
    with store.engine.begin() as connection:
        connection.execute(insert(Project), [
            {"name": f"project-{i:04d}", "labeling_config": config, "config_revision": 1, "text_key": "text",
             "active_learning": i % 3 != 0, "frequency": (50, 100, 200)[i % 3], "auto_deploy": i % 2 == 0,
             "deployed_model": f"project-{i:04d}_ner_20261101_000000", "created_at": now}
            for i in range(count)
        ])
        ids = connection.execute(select(Project.id).order_by(Project.id)).scalars().all()
        connection.execute(insert(ConfigRevision), [
            {"project_id": pid, "revision": 1, "labeling_config": config, "created_at": now, "author": "seed",
             "reason": "project created"} for pid in ids
        ])
        task_ids = connection.execute(insert(Task).returning(Task.id, sort_by_parameter_order=True), [
            {"project_id": pid, "source_id": "t1", "text": "text"} for pid in ids
        ]).scalars().all()
        connection.execute(insert(Completion), [
            {"task_id": tid, "project_id": pid, "source_id": f"c{j}", "annotator": "a", "spans": [],
             "arrived_at": now - timedelta(hours=2) + timedelta(seconds=j), "ground_truth": False, "cancelled": False}
            for pid, tid in zip(ids, task_ids, strict=True) for j in range(completions)
        ])
        connection.execute(insert(TrainingRun), [
            {"project_id": pid, "run_key": f"run-{pid}-{k}", "source": "active_learning",
             "as_of": now - timedelta(hours=2) + timedelta(seconds=completions // 2 + k),
             "status": "success" if k == 0 else "failed", "started_at": now - timedelta(hours=1) + timedelta(minutes=k),
             "model_name": f"project-{pid:04d}_ner_2026110{k + 1}_000000" if k == 0 else None,
             "model_version": 1 if k == 0 else None}
            for pid in ids for k in range(2)
        ])
    store.status.recount()  # rows written around the store


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_overview_statements_on_the_embedded_and_the_scale_out_database(backend: str, request, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from active_learning.status import config_issues
    from active_learning.store import AnnotationStore, connect, create_schema
    from active_learning.store.models import utcnow

    url = f"sqlite:///{tmp_path / 'store.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    engine = connect(url)
    try:
        create_schema(engine)
        store = AnnotationStore(engine)
        seed_projects(store, 30, 20)
        now = utcnow()
        rows = store.status.everything(now, check=lambda xml, own, registered: config_issues(
            xml, pretrained=frozenset({"ner_dl"}), registered=registered, project_models=own))
        assert [row.name for row in rows] == [f"project-{i:04d}" for i in range(30)]
        row = rows[5]
        assert (row.completions, row.since_last_training, row.frequency) == (20, 9, 200)  # after the success, not the failure
        assert row.last_training.status == "failed" and row.last_training.started_at.tzinfo is not None
        assert row.deployed_trained_at == datetime(2026, 11, 1, tzinfo=UTC) and row.problems == ()
        polled = {poll.name: poll.since_last_training for poll in store.status.poll(now)}
        assert polled and all(r.since_last_training == polled[r.name] for r in rows if r.active_learning)
    finally:
        engine.dispose()


def test_the_projects_list_answers_fast_with_1000_projects_in_two_statements(
    client, admin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    from sqlalchemy import event

    from active_learning.backends import Backends

    monkeypatch.setenv("ACTIVE_LEARNING_HOME", str(tmp_path))
    seed_projects(Backends().store, 1000, 100)
    url = f"{UI}/api/projects"
    assert len(client.get(url, headers=admin).json()["projects"]) == 1000  # warm: schema check, config parses

    from active_learning_airflow.ui.domain import domain

    statements: list[str] = []
    engine = domain().store.engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            response = client.get(url, headers=admin)
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert len(statements) == 2 * 5, statements
    median = statistics.median(timings)
    print(f"\nGET {url} with 1,000 projects (100,000 completions): median {median * 1000:.0f} ms, "
          f"best {min(timings) * 1000:.0f} ms, server-side {response.json()['elapsed_ms']} ms")
    assert median < 0.3
    rows = response.json()["projects"]
    assert rows[5]["since_last_training"] == 49 and rows[5]["last_training"]["status"] == "failed"


# -- training parameters ----------------------------------------------------------------------------------


def test_training_params_set_on_the_page_reach_the_training(client, backends, user) -> None:  # type: ignore[no-untyped-def]
    """Set through the API as the user (a config revision by them), shown with their sources, used by the
    next training: read back from its MLflow run."""
    from active_learning.exports import read_export
    from active_learning.loop import train_now

    name = new_project(backends, "params-project")
    backends.store.completions.import_tasks(name, read_export(SAMPLE / "completions_batch1.json")[0])
    url = f"{UI}/api/project/training-params"
    response = client.post(url, params={"project": name}, headers=user,
                           json={"config_revision": 1, "set": {"training.max_steps": 4, "training.dropout": 0.3}})
    assert response.status_code == 200, response.text
    assert response.json()["config_revision"] == 2
    revision = backends.store.configs.revisions(name)[-1]
    assert revision.author == "alice" and "training.max_steps=4" in revision.reason and "Active Learning page" in revision.reason
    shown = client.get(f"{UI}/api/project", params={"project": name}, headers=user).json()["training_params"]
    assert {r["name"]: (r["value"], r["source"]) for r in shown}["training.max_steps"] == (4, "project")
    unset = client.post(url, params={"project": name}, headers=user, json={"config_revision": 2, "unset": ["training.dropout"]})
    assert unset.status_code == 200 and backends.store.projects.get(name).training_params == {"training.max_steps": 4}

    registered = train_now(backends, name, choice="register_only")
    params = backends.registry.client.get_run(registered["run_id"]).data.params
    assert params["spacy.training.max_steps"] == "4" and params["training_params.training.dropout"] == "0.1"


def test_bad_training_params_are_refused_with_the_messages_and_nothing_saved(client, backends, admin, viewer) -> None:  # type: ignore[no-untyped-def]
    name = new_project(backends, "bad-params-project")
    url = f"{UI}/api/project/training-params"
    bad = client.post(url, params={"project": name}, headers=admin, json={
        "config_revision": 1, "set": {"training.max_steps": 4, "training.dropuot": 0.2, "training.patience": -1,
                                      "system.seed": "x"}})
    assert bad.status_code == 422 and bad.json()["detail"]["problems"] == [
        "unknown training parameter 'training.dropuot': did you mean 'training.dropout'?",
        "training.patience must be between 0 and 1000000, not -1",
        "system.seed must be an integer, not 'x' (str)",
    ]
    refused = client.post(url, params={"project": name}, headers=viewer, json={"config_revision": 1, "set": {"training.max_steps": 4}})
    assert refused.status_code == 403
    stale = client.post(url, params={"project": name}, headers=admin, json={"config_revision": 9, "set": {"training.max_steps": 4}})
    assert stale.status_code == 409
    assert backends.store.projects.get(name).training_params == {} and backends.store.configs.read(name).revision == 1


def test_a_base_model_is_checked_when_set_and_its_trainings_show_where_they_started(client, backends, admin, tiny_base) -> None:  # type: ignore[no-untyped-def]
    from active_learning.exports import read_export
    from active_learning.loop import train_now

    name = new_project(backends, "base-project")
    backends.store.completions.import_tasks(name, read_export(SAMPLE / "completions_batch1.json")[0])
    url = f"{UI}/api/project/training-params"
    missing = client.post(url, params={"project": name}, headers=admin,
                          json={"config_revision": 1, "set": {"model.base": "en_core_web_nothere"}})
    assert missing.status_code == 422
    (problem,) = missing.json()["detail"]["problems"]
    assert problem.startswith("model.base 'en_core_web_nothere': no such package is installed on this worker")
    assert backends.store.projects.get(name).training_params == {}

    chosen = client.post(url, params={"project": name}, headers=admin, json={"config_revision": 1, "set": {"model.base": str(tiny_base)}})
    assert chosen.status_code == 200, chosen.text
    shown = {r["name"]: (r["value"], r["source"]) for r in chosen.json()["training_params"]}
    assert shown["model.base"] == (str(tiny_base), "project")
    train_now(backends, name, choice="register_only")
    (row,) = client.get(f"{UI}/api/project", params={"project": name}, headers=admin).json()["history"]
    assert row["base_model"].startswith("tiny_base 0.1.0 (sha256 ")
