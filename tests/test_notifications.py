"""A training's notifications: a real SMTP server (aiosmtpd) and a chat webhook (Apprise's ``json://``) hear
how real runs of the training DAG (``dag.test()``) ended; a dead SMTP server changes nothing else; with no
recipient and no chat connection nothing is sent; the CLI sets and shows a project's recipients.

Trainings are reused across assertions: each full one costs seconds of CI time, a fresh MLflow store more."""

from __future__ import annotations

import email
import json
import logging
import threading
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller

from active_learning.backends import Backends
from devstack.services import free_port
from test_cli import run
from test_dag_runs import project, task_states  # noqa: F401  (project is a fixture)

FAIL_AT_ONCE = {"training.max_step": 2}  # refused before any data is read: a failed run in about a second
QUICK = {"training.max_steps": 2, "training.eval_frequency": 1}
WORSE = {"training.max_steps": 1, "training.eval_frequency": 1}  # scores below a model trained longer


class Inbox:
    """aiosmtpd's handler: keeps every mail it is given, with its envelope's recipients."""

    def __init__(self) -> None:
        self.mails: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"


def smtp_connection(port: int) -> str:
    return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": port,
                       "extra": {"from_email": "active-learning@example.org", "disable_tls": True, "disable_ssl": True}})


@pytest.fixture
def inbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Inbox]:
    """A real SMTP server on loopback, as Airflow's default SMTP connection."""
    handler, port = Inbox(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(port))
    yield handler
    controller.stop()


@pytest.fixture
def chat(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """A chat tool's webhook: what Apprise posts to the services of connection apprise_default."""
    posts: list[dict[str, Any]] = []

    class Webhook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    path = f"json://127.0.0.1:{server.server_address[1]}/hook"
    monkeypatch.setenv("AIRFLOW_CONN_APPRISE_DEFAULT", json.dumps({"conn_type": "apprise", "extra": {"config": {"path": path}}}))
    yield posts
    server.shutdown()
    server.server_close()


def body(mail: Message) -> str:
    [html] = mail.get_payload()
    return html.get_payload(decode=True).decode()


def warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "active_learning_airflow.notifications" and r.levelno >= logging.WARNING]


def train(dagbag, project: str, deploy: str, training_params: dict[str, Any]):  # type: ignore[no-untyped-def]
    # dag.test() runs in this process: a conf's object param lingers in the DAG's Params, so always give it
    return dagbag.dags["active_learning_training"].test(
        run_conf={"project": project, "deploy": deploy, "training_params": training_params})


def test_ended_trainings_are_mailed_and_posted_and_a_dead_smtp_server_changes_nothing_else(  # type: ignore[no-untyped-def]
    dagbag, backends: Backends, project: str, inbox: Inbox, chat: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture
) -> None:
    """Three trainings of one project (one MLflow store): deployed, refused by the gate, then registered only
    while the SMTP server is down."""
    monkeypatch.setenv("ACTIVE_LEARNING_NOTIFY_EMAIL", "ops@example.org")
    backends.store.projects.set_notify_emails(project, ["owner@example.org", "ops@example.org"])
    first = train(dagbag, project, "auto", {})
    assert first.state == "success", task_states(first)
    deployed = backends.store.trainings.get(first.run_id)
    [(to, mail)] = inbox.mails
    assert to == ["ops@example.org", "owner@example.org"]  # the deployment's, then the project's, each once
    assert mail["Subject"] == f"[active learning] {project}: model {deployed.model_name} deployed"
    assert mail["From"] == "active-learning@example.org"
    text = body(mail)
    assert "gate passed: new" in text and "deployed (config revision" in text
    assert f'/dags/active_learning_training/runs/{quote(first.run_id)}">' in text  # the run in Airflow's UI

    second = train(dagbag, project, "auto", WORSE)
    assert second.state == "success", task_states(second)
    refused = backends.store.trainings.get(second.run_id)
    [_, (_, mail)] = inbox.mails
    assert mail["Subject"] == f"[active learning] {project}: model {refused.model_name} refused by the deploy gate"
    assert f"gate refused: new {refused.model_name} F1" in body(mail) and f"vs deployed {deployed.model_name} F1" in body(mail)

    monkeypatch.setenv("ACTIVE_LEARNING_NOTIFY_SMTP_CONN_ID", "smtp_down")
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DOWN", smtp_connection(free_port()))  # nothing listens there
    third = train(dagbag, project, "register_only", QUICK)
    assert third.state == "success"
    assert task_states(third) == {"prepare_data": "success", "train": "success", "register": "success",
                                  "choose_deploy_path": "success", "update_config": "skipped",
                                  "register_only": "success", "validate_config": "success"}
    registered = backends.store.trainings.get(third.run_id)
    assert (registered.status, registered.error) == ("success", None)
    assert registered.deploy == "register only requested; registered only (alias 'candidate')"
    assert [deployed.outcome, refused.outcome, registered.outcome] == ["deployed", "refused by the deploy gate", "registered only"]
    [warning] = warnings(caplog)
    assert "could not e-mail" in warning.getMessage() and "ConnectionRefusedError" in caplog.text
    assert len(inbox.mails) == 2

    assert [(post["type"], post["title"]) for post in chat] == [  # the chat heard of all three
        ("success", f"[active learning] {project}: model {deployed.model_name} deployed"),
        ("warning", f"[active learning] {project}: model {refused.model_name} refused by the deploy gate"),
        ("info", f"[active learning] {project}: model {registered.model_name} registered only"),
    ]
    assert "gate refused" in chat[1]["message"]


def test_a_failed_training_is_mailed_with_its_error_and_the_failed_tasks_log(  # type: ignore[no-untyped-def]
    dagbag, backends: Backends, project: str, inbox: Inbox, chat: list[dict[str, Any]], capsys
) -> None:
    assert run(capsys, "notifications", "--project", project, "--email", "owner@example.org")[0] == 0
    failed = train(dagbag, project, "register_only", FAIL_AT_ONCE)
    assert failed.state == "failed" and task_states(failed)["prepare_data"] == "failed"
    [(to, mail)] = inbox.mails
    assert to == ["owner@example.org"]
    assert mail["Subject"] == f"[active learning] {project}: training failed"
    text = body(mail)
    assert "failed in task prepare_data" in text and "did you mean &#x27;training.max_steps&#x27;?" in text
    assert '/tasks/prepare_data?try_number=1">' in text  # the failed task's log in Airflow's UI
    [post] = chat
    assert post["type"] == "failure" and "did you mean 'training.max_steps'?" in post["message"]
    assert "/tasks/prepare_data?try_number=1" in post["message"]


def test_active_learning_train_is_told_as_the_dag_s_trainings_are(  # type: ignore[no-untyped-def]
    backends: Backends, project: str, inbox: Inbox, chat: list[dict[str, Any]], capsys
) -> None:
    """The CLI's trainings, ended and failed, reach the same recipients and chat with the same messages, sent
    by the Airflow plugin's sender (its entry point ``active_learning.notifiers``) outside any task."""
    assert run(capsys, "notifications", "--project", project, "--email", "owner@example.org")[0] == 0
    code, out, _ = run(capsys, "train", "--project", project, "--no-deploy")
    assert code == 0
    [training] = backends.store.trainings.history(project)
    assert out.strip() == training.model_name
    [(to, mail)] = inbox.mails
    assert to == ["owner@example.org"]
    assert mail["Subject"] == f"[active learning] {project}: model {training.model_name} registered only"
    assert "register only requested; registered only" in body(mail) and f"Run {training.run_key} (manual training)" in body(mail)

    backends.store.projects.create("empty", backends.store.configs.read(project).xml)
    assert run(capsys, "notifications", "--project", "empty", "--email", "owner@example.org")[0] == 0
    code, _, err = run(capsys, "train", "--project", "empty")
    assert code == 1 and "project 'empty' has 0 trainable tasks" in err
    [_, (to, mail)] = inbox.mails
    assert to == ["owner@example.org"] and mail["Subject"] == "[active learning] empty: training failed"
    assert "failed in task active-learning train" in body(mail) and "has 0 trainable tasks as of" in body(mail)
    assert [(post["type"], post["title"]) for post in chat] == [
        ("info", f"[active learning] {project}: model {training.model_name} registered only"),
        ("failure", "[active learning] empty: training failed")]


def test_with_no_recipient_and_no_chat_connection_nothing_is_sent_and_nothing_fails(  # type: ignore[no-untyped-def]
    dagbag, backends: Backends, project: str, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    failed = train(dagbag, project, "register_only", FAIL_AT_ONCE)
    assert failed.state == "failed"
    [training] = backends.store.trainings.history(project)
    assert training.status == "failed" and "did you mean 'training.max_steps'?" in training.error
    assert inbox.mails == []
    assert warnings(caplog) == []


def test_the_cli_sets_shows_and_clears_a_projects_recipients_checking_every_address_first(  # type: ignore[no-untyped-def]
    home, backends: Backends, sample_config: str, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    backends.store.projects.create("news", sample_config)
    code, out, _ = run(capsys, "notifications", "--project", "news")
    assert code == 0 and "no e-mail recipients: nothing is e-mailed" in out

    monkeypatch.setenv("ACTIVE_LEARNING_NOTIFY_EMAIL", "ops@example.org, Lead@Example.ORG")
    code, _, err = run(capsys, "notifications", "--project", "news", "--email", "a@example.org", "bad", "x@y", "Ann <a@example.org>")
    assert code == 1 and err.count("error: ") == 3  # one line per malformed address
    assert "'bad' is not an e-mail address: An email address must have an @-sign." in err
    assert backends.store.projects.get("news").notify_emails == ()  # nothing saved

    code, out, _ = run(capsys, "notifications", "--project", "news", "--email", "a@example.org", "--email", "ops@example.org")
    assert code == 0
    assert [line.split() for line in out.splitlines()[1:4]] == [
        ["ops@example.org", "deployment"], ["Lead@example.org", "deployment"], ["a@example.org", "project"]]
    code, out, _ = run(capsys, "notifications", "--project", "news", "--json")
    assert json.loads(out)["recipients"] == [{"email": "ops@example.org", "source": "deployment"},
                                             {"email": "Lead@example.org", "source": "deployment"},
                                             {"email": "a@example.org", "source": "project"}]

    monkeypatch.setenv("ACTIVE_LEARNING_NOTIFY_EMAIL", "ops@example")  # a bad deployment setting: said, nothing saved
    code, _, err = run(capsys, "notifications", "--project", "news", "--clear")
    assert code == 1 and err.startswith("error: ACTIVE_LEARNING_NOTIFY_EMAIL: 'ops@example' is not an e-mail address")
    assert backends.store.projects.get("news").notify_emails == ("a@example.org", "ops@example.org")

    monkeypatch.delenv("ACTIVE_LEARNING_NOTIFY_EMAIL")
    code, out, _ = run(capsys, "notifications", "--project", "news", "--clear")
    assert code == 0 and "no e-mail recipients" in out and backends.store.projects.get("news").notify_emails == ()
    code, _, err = run(capsys, "notifications", "--project", "nope")
    assert code == 1 and "no project named 'nope'" in err


def test_a_chat_service_that_refuses_the_post_is_a_warning_not_a_success(  # type: ignore[no-untyped-def]
    chat: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from active_learning import notifications
    from active_learning_airflow.notifications import _send

    message = notifications.Message(notifications.FAILED, "[active learning] news: training failed", ("boom",), None)
    with caplog.at_level(logging.INFO, logger="active_learning_airflow.notifications"):
        _send({}, message, [])
        assert [post["title"] for post in chat] == [message.subject] and not warnings(caplog)
        assert "posted '[active learning] news: training failed'" in caplog.text
        caplog.clear()
        dead = f"json://127.0.0.1:{free_port()}/hook"  # nothing listens there: Apprise logs it and returns False
        monkeypatch.setenv("AIRFLOW_CONN_APPRISE_DEFAULT", json.dumps({"conn_type": "apprise", "extra": {"config": {"path": dead}}}))
        _send({}, message, [])
    [warning] = warnings(caplog)
    assert warning.getMessage() == "could not post '[active learning] news: training failed' to every service of connection apprise_default"
    assert "posted" not in caplog.text
