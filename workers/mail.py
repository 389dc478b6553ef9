"""Mail tasks: the only code that talks to SMTP.

Both tasks retry with exponential backoff when the SMTP server cannot be reached or
answers with an error: up to 7 retries, 3 s, 9 s, 27 s, ... 36 min apart, about 55 minutes
in all. Both are safe to re-run. With no MAIL_SERVER configured (development), the message is
written to the log instead, so whoever runs the system sees verification codes in the
worker's output.
"""

from __future__ import annotations

import logging
import smtplib
from typing import Any

import procrastinate
from flask import current_app
from flask_mail import Connection, Message

from jobboard.auth.service import password_reset_email, verification_email
from workers.app import (
    QUEUE_MAIL,
    SEND_EMAIL_TASK,
    SEND_PASSWORD_RESET_CODE_TASK,
    SEND_VERIFICATION_CODE_TASK,
    task_app,
)
from workers.context import app_context

logger = logging.getLogger(__name__)

# Flask-Mail opens smtplib without a timeout: an SMTP server that accepts the connection
# and never answers would hold a worker slot forever.

# Procrastinate waits exponential_wait ** (retries so far + 1) seconds; max_attempts counts
# retries.
SMTP_RETRY = procrastinate.RetryStrategy(
    max_attempts=7,
    exponential_wait=3,
    # smtplib's errors are OSErrors, as are refused connections and timeouts; a bug in our
    # own code is not worth retrying.
    retry_exceptions=[OSError],
)


class TimedConnection(Connection):
    """Flask-Mail's SMTP connection, with a socket timeout."""

    def __init__(self, mail: Any, timeout: float) -> None:
        super().__init__(mail)
        self.timeout = timeout

    def configure_host(self) -> smtplib.SMTP:
        settings = self.mail
        smtp_class = smtplib.SMTP_SSL if settings.use_ssl else smtplib.SMTP
        host = smtp_class(settings.server, settings.port, timeout=self.timeout)
        host.set_debuglevel(int(settings.debug))
        if settings.use_tls:
            host.starttls()
        if settings.username and settings.password:
            host.login(settings.username, settings.password)
        return host


def deliver(to: str, subject: str, body: str) -> None:
    """Send one plain-text email through the configured SMTP server, or log it when no
    server is configured. Raises OSError (smtplib's errors included) when sending fails."""
    settings = current_app.extensions["mail"]
    if not settings.server:
        logger.info(
            "MAIL_SERVER is not set, so this email is logged instead of sent:\n"
            "To: %s\nSubject: %s\n\n%s",
            to,
            subject,
            body,
        )
        return
    message = Message(subject=subject, recipients=[to], body=body)
    timeout = current_app.config["MAIL_TIMEOUT"]
    with TimedConnection(settings, timeout) as connection:
        message.send(connection)
    logger.info("email %r sent to %s", subject, to)


@task_app.task(name=SEND_EMAIL_TASK, queue=QUEUE_MAIL, retry=SMTP_RETRY)
def send_email(to: str, subject: str, body: str) -> None:
    """Send a plain-text email (deferred by `jobboard.mailer.queue_email`)."""
    with app_context():
        deliver(to, subject, body)


@task_app.task(name=SEND_VERIFICATION_CODE_TASK, queue=QUEUE_MAIL, retry=SMTP_RETRY)
def send_verification_code(otp_id: int, sealed_code: str, user_id: int | None = None) -> None:
    """Email the code of OTP `otp_id` to user `user_id`, unless that code is no longer
    wanted (used, or replaced by a newer one); a code that expired while waiting, or that
    the purge deleted meanwhile, is replaced by a fresh one first: never a dead code by
    mail, never nothing while the account waits for one.

    The code travels sealed (Fernet, keyed from SECRET_KEY): the queue's table never holds
    it in plaintext. (Tasks queued before `user_id` existed come without it.)
    """
    with app_context():
        email = verification_email(otp_id, sealed_code, user_id)
        if email is not None:
            deliver(email.to, email.subject, email.body)


@task_app.task(name=SEND_PASSWORD_RESET_CODE_TASK, queue=QUEUE_MAIL, retry=SMTP_RETRY)
def send_password_reset_code(email: str) -> None:
    """Issue a password reset code for the account of `email`, if there is one, and email
    it. Issued at sending time, so it is fresh whatever the queue's delay; each run (a
    retry after an SMTP failure included) replaces the previous reset code."""
    with app_context():
        outgoing = password_reset_email(email)
        if outgoing is not None:
            deliver(outgoing.to, outgoing.subject, outgoing.body)
