"""A training's notifications, sent with Airflow's own providers: the SMTP provider's ``SmtpNotifier`` to the
e-mail recipients, the Apprise provider's hook to the chat services of an Apprise connection.
What they say and who gets them: ``active_learning.notifications``.

Task callbacks of the training DAG call these, in the task's own process (a Celery worker, or
LocalExecutor's), where the domain's settings and Airflow's connections are; Airflow 3 would run
DAG-level callbacks in the DAG processor instead. The domain and the notifiers are imported only when a
callback runs: DAG files import this module at parse time. A notifier that fails is logged and changes
nothing else: the task has its state already (success) or gets it next (failed), whatever it does.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from active_learning.backends import Backends
    from active_learning.notifications import Message, Recipient

log = logging.getLogger(__name__)


def notify_finished(context: Any) -> None:
    """``validate_config``'s success callback: the training is over (its model deployed, registered only,
    or refused by the deploy gate); tell whoever is to hear of it."""
    try:
        from active_learning import notifications
        from active_learning_airflow.connections import task_backends

        backends = task_backends()
        training = backends.store.trainings.get(context["run_id"])
        # The run's page: the task's log URL, Airflow's own, up to the task.
        message = notifications.finished(training, link=context["ti"].log_url.rpartition("/tasks/")[0])
        _send(context, message, notifications.recipients(backends.store, training.project))
    except Exception:
        log.warning("could not notify that training %s finished", context["run_id"], exc_info=True)


def notify_failed(context: Any, reason: str, backends: Backends | None = None) -> None:
    """After a task of the training failed for good (the failure callback recorded it): tell whoever is to
    hear of it why, with a link to the failed task's log. ``backends``: the callback's, when it could make them."""
    run_key, ti = context["run_id"], context["ti"]
    try:
        from active_learning import notifications
        from active_learning_airflow.connections import task_backends

        backends = backends or task_backends()
        # None: the run failed before its training was recorded (an unknown project, a source unreachable).
        training = backends.store.trainings.get(run_key) if backends.store.trainings.exists(run_key) else None
        project = training.project if training else context["params"]["project"]
        message = notifications.failed(project, run_key, ti.task_id, reason, link=ti.log_url, training=training)
        _send(context, message, notifications.recipients(backends.store, project))
    except Exception:
        log.warning("could not notify that training %s failed", run_key, exc_info=True)


def send(message: Message, recipients: list[Recipient]) -> None:
    """Outside a task (``active-learning train``): the same sending, with the connections Airflow finds
    without a task's context (``AIRFLOW_CONN_*`` variables, a secrets backend). The entry point
    ``active_learning.notifiers`` names it, for the domain."""
    _send({}, message, recipients)


def _send(context: Any, message: Message, recipients: list[Recipient]) -> None:
    """E-mail ``recipients`` (none: no e-mail), and post to the Apprise connection's services (none while it
    does not exist). Each notifier on its own: one that fails is logged, and the other still sends."""
    from active_learning import notifications

    # notify(), not the notifier's __call__: that renders its fields as Jinja templates, and the message
    # holds project names and error texts, which could break or steer the rendering. Apprise's hook does
    # not render.
    if recipients:
        try:
            from airflow.providers.smtp.notifications.smtp import SmtpNotifier

            SmtpNotifier(to=[recipient.email for recipient in recipients], subject=message.subject,
                         html_content=message.html, smtp_conn_id=notifications.smtp_conn_id()).notify(context)
            log.info("e-mailed %r to %d recipients", message.subject, len(recipients))
        except Exception:
            log.warning("could not e-mail %r to %d recipients", message.subject, len(recipients), exc_info=True)
    conn_id = notifications.apprise_conn_id()
    connection = _connection(conn_id)
    if connection is not None:
        try:
            posted = _post(connection, message)
        except Exception:
            log.warning("could not post %r through connection %s", message.subject, conn_id, exc_info=True)
        else:
            if posted:
                log.info("posted %r to the services of connection %s", message.subject, conn_id)
            else:  # Apprise logged which service failed, just above
                log.warning("could not post %r to every service of connection %s", message.subject, conn_id)


def _post(connection: Any, message: Message) -> bool:
    """Post through the Apprise provider's hook to the connection's services; whether every one took it.
    (The provider's AppriseNotifier drops that answer: Apprise logs a failing service and does not raise.)"""
    import apprise
    from airflow.providers.apprise.hooks.apprise import AppriseHook

    services = apprise.Apprise()
    AppriseHook(apprise_conn_id=connection.conn_id).set_config_from_conn(conn=connection, apprise_obj=services)
    return bool(services.notify(body=message.text, title=message.subject, notify_type=message.level))


def _connection(conn_id: str) -> Any:
    """The Airflow connection, or None while it does not exist (looked up once: in a task, a call to the API server)."""
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception:  # Airflow raises its own "not found" types across versions
        return None
