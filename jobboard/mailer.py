"""Queueing outgoing mail. Requests never talk to SMTP: the `send_email` task does."""

from __future__ import annotations

from dataclasses import dataclass

from jobboard import queue
from workers.app import QUEUE_MAIL, SEND_EMAIL_TASK


def queue_email(to: str, subject: str, body: str) -> int:
    """Defer an email on the current transaction; it is sent only if the caller commits."""
    return queue.defer(SEND_EMAIL_TASK, queue=QUEUE_MAIL, to=to, subject=subject, body=body)


@dataclass(frozen=True)
class OutgoingEmail:
    """An email a mail task sends when it runs (codes): built at sending time, so that it
    says what is true then, or None when nothing is to be sent."""

    to: str
    subject: str
    body: str
