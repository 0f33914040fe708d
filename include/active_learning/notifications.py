"""Who hears about a project's trainings, and what they are told: plain domain code, no Airflow.

A training that ends (its model deployed, registered only, or refused by the deploy gate) or fails is
told by e-mail to the deployment's recipients (``ACTIVE_LEARNING_NOTIFY_EMAIL``) and the project's own
(``active-learning notifications``), and to the chat services of an Apprise connection. Airflow's
notifiers send it (``plugins/active_learning_airflow/notifications.py``): in the training DAG's task
callbacks, and for ``active-learning train`` through the entry point :data:`NOTIFIERS` (:func:`deliver`);
with no recipient and no Apprise connection nothing is sent.

| variable | default |
|---|---|
| ``ACTIVE_LEARNING_NOTIFY_EMAIL`` | none: addresses, separated by commas, told about every project's trainings |
| ``ACTIVE_LEARNING_NOTIFY_SMTP_CONN_ID`` | Airflow's ``[email] email_conn_id`` (``smtp_default``): the SMTP server |
| ``ACTIVE_LEARNING_NOTIFY_APPRISE_CONN_ID`` | ``apprise_default``: the chat services; none sent while it does not exist |
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from active_learning.constants import TRIGGERED_BY_ACTIVE_LEARNING
from active_learning.deploy import steps as deploy_steps
from active_learning.settings import hide_passwords
from active_learning.store import AnnotationStore
from active_learning.store.trainings import TrainingView

log = logging.getLogger(__name__)

EMAIL_VARIABLE = "ACTIVE_LEARNING_NOTIFY_EMAIL"
SMTP_CONN_VARIABLE = "ACTIVE_LEARNING_NOTIFY_SMTP_CONN_ID"
APPRISE_CONN_VARIABLE = "ACTIVE_LEARNING_NOTIFY_APPRISE_CONN_ID"
DEFAULT_APPRISE_CONN_ID = "apprise_default"
DEPLOYMENT, PROJECT = "deployment", "project"  # where a recipient comes from
NOTIFIERS = "active_learning.notifiers"  # entry points: a sender(message, recipients) each
FAILED = "failed"
# How each outcome is flagged in chat tools (Apprise's notify types).
LEVELS = {deploy_steps.DEPLOYED: "success", deploy_steps.REGISTERED_ONLY: "info",
          deploy_steps.REFUSED: "warning", FAILED: "failure"}


class InvalidRecipientsError(ValueError):
    """Addresses refused, one line per problem; nothing was saved."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Recipient:
    email: str
    source: str  # DEPLOYMENT or PROJECT


@dataclass(frozen=True)
class Message:
    outcome: str  # deploy_steps.DEPLOYED, REGISTERED_ONLY, REFUSED, or FAILED
    subject: str
    lines: tuple[str, ...]
    link: str | None  # the failed task's log, or the finished run, in Airflow's UI

    @property
    def level(self) -> str:
        return LEVELS[self.outcome]

    @property
    def text(self) -> str:
        return "\n".join([*self.lines, *([f"Airflow: {self.link}"] if self.link else [])])

    @property
    def html(self) -> str:
        paragraphs = [f"<p>{html.escape(line)}</p>" for line in self.lines]
        if self.link:
            paragraphs.append(f'<p><a href="{html.escape(self.link)}">Open in Airflow</a></p>')
        return "".join(paragraphs)


def check_emails(emails: Iterable[str], where: str = "") -> list[str]:
    """Each address once, as the mail system will see it; one line per malformed one, naming ``where``
    it came from (:class:`InvalidRecipientsError`). Plain addresses only: no display names."""
    from email_validator import EmailNotValidError, validate_email

    checked: list[str] = []
    problems = []
    for email in emails:
        try:
            normalized = validate_email(email.strip(), check_deliverability=False).normalized
        except EmailNotValidError as error:
            problems.append(f"{where}{email!r} is not an e-mail address: {error}")
            continue
        if normalized not in checked:
            checked.append(normalized)
    if problems:
        raise InvalidRecipientsError(problems)
    return checked


def deployment_emails() -> list[str]:
    """``ACTIVE_LEARNING_NOTIFY_EMAIL``'s addresses: told about every project's trainings."""
    value = os.environ.get(EMAIL_VARIABLE, "")
    return check_emails([part for part in re.split(r"[,;\s]+", value) if part], where=f"{EMAIL_VARIABLE}: ")


def smtp_conn_id() -> str | None:
    """The SMTP server's Airflow connection; None: Airflow's own choice, ``[email] email_conn_id``."""
    return os.environ.get(SMTP_CONN_VARIABLE) or None


def apprise_conn_id() -> str:
    return os.environ.get(APPRISE_CONN_VARIABLE) or DEFAULT_APPRISE_CONN_ID


def recipients(store: AnnotationStore, project: str) -> list[Recipient]:
    """Who is e-mailed about ``project``'s trainings: the deployment's recipients, then the project's own
    (a project the store does not know, as when a run names one: the deployment's only)."""
    own = store.projects.get(project).notify_emails if store.projects.exists(project) else ()
    return _merged(deployment_emails(), own)


def set_project_emails(store: AnnotationStore, project: str, emails: Iterable[str]) -> list[Recipient]:
    """Replace the project's own recipients (none: the deployment's only); returns :func:`recipients`."""
    deployment, own = deployment_emails(), check_emails(emails)  # both checked before anything is saved
    store.projects.set_notify_emails(project, own)
    return _merged(deployment, own)


def shown(recipients: list[Recipient]) -> dict[str, Any]:
    """Who is told (each e-mail recipient and where it comes from) and the Airflow connections that send
    (SMTP: None for Airflow's ``[email] email_conn_id``), as ``notifications --json`` and the page show them."""
    return {"recipients": [asdict(r) for r in recipients], "smtp_connection": smtp_conn_id(),
            "apprise_connection": apprise_conn_id()}


def _merged(deployment: list[str], own: Iterable[str]) -> list[Recipient]:
    return [Recipient(email, DEPLOYMENT) for email in deployment] + [
        Recipient(email, PROJECT) for email in own if email not in deployment]


def deliver(message: Message, recipients: list[Recipient]) -> int:
    """Send ``message`` with every installed sender (entry point group :data:`NOTIFIERS`: the Airflow
    plugin's, as a training the DAG runs sends it); how many ran. None installed: nothing is sent, and
    the log says so. A sender that fails is logged: the training's own outcome stands."""
    from importlib.metadata import entry_points

    senders = list(entry_points(group=NOTIFIERS))
    if not senders:
        log.info("no notifier is installed (entry points %s): %r is not sent", NOTIFIERS, message.subject)
    # What a sender prints or logs (Airflow's logging writes to stdout) goes to stderr: a command's stdout
    # is its answer (``active-learning train`` prints the model's name there).
    with contextlib.redirect_stdout(sys.stderr):
        for sender in senders:
            try:
                sender.load()(message, recipients)
            except Exception:
                log.warning("notifier %s could not send %r", sender.value, message.subject, exc_info=True)
    return len(senders)


def finished(training: TrainingView, link: str | None = None) -> Message:
    """A finished training: its model deployed, registered only, or refused by the deploy gate, and why."""
    outcome = training.outcome
    if outcome is None:
        raise ValueError(f"training {training.run_key} has not decided its deploy yet: no outcome to tell")
    f1 = training.metrics.get("f1") if training.metrics else None
    lines = [
        f"Project {training.project}: model {training.model_name} (version {training.model_version}) {outcome}.",
        f"Why: {training.deploy}.",
        f"Trained on {training.completions_used} completions" + (f", dev F1 {f1:.3f}." if f1 is not None else "."),
        _run_line(training),
    ]
    return Message(outcome, _subject(training.project, f"model {training.model_name} {outcome}"), tuple(lines), link)


def failed(project: str, run_key: str, task: str, error: str, link: str | None = None,
           training: TrainingView | None = None) -> Message:
    """A failed training: where and why (the history's reason when it has one), and the failed task's log.
    ``training``: None when the run failed before its training was recorded (e.g. an unknown project)."""
    reason = training.error if training is not None and training.error else hide_passwords(error)
    lines = [f"Project {project}: training failed in task {task}.", f"Error: {reason}",
             _run_line(training) if training is not None else f"Run {run_key}."]
    return Message(FAILED, _subject(project, "training failed"), tuple(lines), link)


def _subject(project: str, what: str) -> str:
    # One line: a project name may hold line breaks, which no mail header takes.
    return " ".join(f"[active learning] {project}: {what}".split())


def _run_line(training: TrainingView) -> str:
    kind = "automatic" if training.source == TRIGGERED_BY_ACTIVE_LEARNING else "manual"
    return f"Run {training.run_key} ({kind} training), started {training.started_at:%Y-%m-%d %H:%M:%S} UTC."
