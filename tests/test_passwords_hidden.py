"""No password of a database URL or tracking URI reaches the CLI's output, its errors or the page's links."""

from __future__ import annotations

from pathlib import Path

import pytest

from active_learning.cli import main

SECRET = "s3cr%40t"
TRACKING_URI = f"http://alice:{SECRET}@127.0.0.1:9"  # port 9: nothing answers there


@pytest.mark.parametrize(("shown", "hidden"), [
    ("postgresql+psycopg://al:pw@db:5432/annotations", "postgresql+psycopg://al:***@db:5432/annotations"),
    (f"API request to {TRACKING_URI}/api/2.0/x failed", "API request to http://alice:***@127.0.0.1:9/api/2.0/x failed"),
    ("https://:token@ls.example.org, then http://bob:p@w@h/", "https://:***@ls.example.org, then http://bob:***@h/"),
    ("sqlite:////data/annotations.db", "sqlite:////data/annotations.db"),
    ("http://bob@mlflow:5000 no password", "http://bob@mlflow:5000 no password"),
    ("postgresql+psycopg://al@db/annotations?password=pw&sslmode=require",
     "postgresql+psycopg://al@db/annotations?password=***&sslmode=require"),
    ("https://ls.example.org/api/projects?token=abc123#top, http://h/x?a=1&access_token=t2&SSLPASSWORD=k 'ok'",
     "https://ls.example.org/api/projects?token=***#top, http://h/x?a=1&access_token=***&SSLPASSWORD=*** 'ok'"),
    ("https://store.example.org/m.tar?sv=2024&sig=AbC%2B%3D&api_key=k;client_secret=s",
     "https://store.example.org/m.tar?sv=2024&sig=***&api_key=***;client_secret=***"),
    ("http://h/search?q=password=x&keyword=pw", "http://h/search?q=password=x&keyword=pw"),  # not a parameter's name
])
def test_every_url_in_a_text_shows_its_password_as_stars(shown: str, hidden: str) -> None:
    from active_learning.settings import hide_passwords

    assert hide_passwords(shown) == hidden


def test_init_prints_the_urls_without_their_password(home: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", TRACKING_URI)
    monkeypatch.setattr(mlflow.MlflowClient, "search_experiments", lambda self, **kwargs: [])
    assert main(["init"]) == 0
    out = capsys.readouterr().out
    assert "MLflow tracking:  http://alice:***@127.0.0.1:9" in out and SECRET not in out


@pytest.mark.filterwarnings("ignore:Query string argument")  # SQLite ignores the parameter: only what is printed counts
def test_init_prints_a_database_url_without_the_password_in_its_query(home: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ACTIVE_LEARNING_DB_URL", f"sqlite:///{home / 'annotations.db'}?password={SECRET}&timeout=30")
    assert main(["init"]) == 0
    out = capsys.readouterr().out
    assert "annotations.db?password=***&timeout=30" in out and SECRET not in out


def test_an_mlflow_error_is_one_line_without_the_password(home: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", TRACKING_URI)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    assert main(["init"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: MLflow: API request to http://alice:***@127.0.0.1:9/") and err.count("\n") == 1
    assert SECRET not in err


def test_the_page_links_to_mlflow_without_the_password(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from starlette.requests import Request

    from active_learning_airflow.ui.links import links

    request = Request({"type": "http", "root_path": "/active-learning", "headers": []})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", TRACKING_URI)
    assert links(request)["mlflow"] == "http://alice:***@127.0.0.1:9"
    monkeypatch.setenv("ACTIVE_LEARNING_MLFLOW_UI_URL", f"https://alice:{SECRET}@mlflow.example.org/")
    assert links(request)["mlflow"] == "https://alice:***@mlflow.example.org"


def test_a_failed_training_s_reason_keeps_no_password(backends, sample_config: str) -> None:  # type: ignore[no-untyped-def]
    from active_learning.store.models import utcnow
    from active_learning.training.steps import fail

    backends.store.projects.create("news", sample_config)
    backends.store.trainings.start("news", run_key="k1", source="manual", as_of=utcnow())
    fail(backends, "k1", f"API request to {TRACKING_URI}/api/2.0/mlflow/runs/create failed")
    [training] = backends.store.trainings.history("news")
    assert training.error == "API request to http://alice:***@127.0.0.1:9/api/2.0/mlflow/runs/create failed"
