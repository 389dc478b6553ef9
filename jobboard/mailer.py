"""Queueing outgoing mail. Requests never talk to SMTP: the `send_email` task does."""

from __future__ import annotations

from jobboard import queue
from workers.app import QUEUE_MAIL, SEND_EMAIL_TASK


def queue_email(to: str, subject: str, body: str) -> int:
    """Defer an email on the current transaction; it is sent only if the caller commits."""
    return queue.defer(SEND_EMAIL_TASK, queue=QUEUE_MAIL, to=to, subject=subject, body=body)
