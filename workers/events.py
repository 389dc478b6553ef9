"""Event tasks: an event's email, and the periodic purge of old events."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import current_app
from flask_mail import Message

from jobboard.events.emails import EventEmail, event_email
from jobboard.events.feed import purge_old_events
from workers.app import (
    PURGE_EVENTS_TASK,
    QUEUE_MAIL,
    QUEUE_MAINTENANCE,
    SEND_EVENT_EMAIL_TASK,
    task_app,
)
from workers.context import app_context
from workers.mail import SMTP_RETRY, TimedConnection

logger = logging.getLogger(__name__)


def send(email: EventEmail) -> None:
    """Send a text + HTML email through the configured SMTP server (logged instead when
    none is configured, as every email of the worker)."""
    settings = current_app.extensions["mail"]
    if not settings.server:
        logger.info(
            "MAIL_SERVER is not set, so this email is logged instead of sent:\n"
            "To: %s\nSubject: %s\n\n%s",
            email.to,
            email.subject,
            email.body,
        )
        return
    message = Message(
        subject=email.subject, recipients=[email.to], body=email.body, html=email.html
    )
    with TimedConnection(settings, current_app.config["MAIL_TIMEOUT"]) as connection:
        message.send(connection)
    logger.info("email %r sent to %s", email.subject, email.to)


@task_app.task(name=SEND_EVENT_EMAIL_TASK, queue=QUEUE_MAIL, retry=SMTP_RETRY)
def send_event_email(event_id: int) -> bool:
    """Email the recipient of event `event_id`, as its type's template says (deferred with
    the event, in its transaction). Nothing when the event is gone or wants no email."""
    with app_context():
        email = event_email(event_id)
        if email is not None:
            send(email)
        return email is not None


@task_app.periodic(cron="23 * * * *", periodic_id="purge-events")
@task_app.task(name=PURGE_EVENTS_TASK, queue=QUEUE_MAINTENANCE, queueing_lock=PURGE_EVENTS_TASK)
def purge_events(timestamp: int) -> int:
    """Delete events older than EVENT_RETENTION_DAYS as of the tick `timestamp` (their
    deliveries go with them). Safe to re-run."""
    now = datetime.fromtimestamp(timestamp, tz=UTC)
    with app_context():
        deleted = purge_old_events(now)
    if deleted:
        logger.info("purged %d events older than the retention, as of %s", deleted, now.isoformat())
    return deleted
