"""Asserting events: what a change wrote to the outbox (`events`) and which of them were
emailed (the `send_event_email` entries deferred with them, rendered as the worker would)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text

from jobboard.events.emails import event_email
from jobboard.extensions import db
from jobboard.models import Event
from workers.app import QUEUE_MAIL, SEND_EVENT_EMAIL_TASK, task_app


def events(type_name: str | None = None, *, to: Any = None, after: int = 0) -> list[Event]:
    """Events written so far (and visible to this session), oldest first: of `type_name`,
    addressed to `to` (a user or a user id), with an id above `after`."""
    query = select(Event).where(Event.id > after).order_by(Event.id)
    if type_name is not None:
        query = query.where(Event.type == type_name)
    if to is not None:
        query = query.where(Event.user_id == getattr(to, "id", to))
    return list(db.session.scalars(query.execution_options(populate_existing=True)))


def last_event_id() -> int:
    """The id of the newest event so far (0 without any): `after=` for what comes next."""
    return db.session.scalar(select(Event.id).order_by(Event.id.desc()).limit(1)) or 0


def told(type_name: str, *, to: Any, after: int = 0) -> Event:
    """The one `type_name` event to `to` (after `after`); fails unless there is exactly one."""
    found = events(type_name, to=to, after=after)
    everything = [(event.type, event.user_id) for event in events(after=after)]
    assert len(found) == 1, (type_name, getattr(to, "id", to), everything)
    return found[0]


def types_told(after: int = 0) -> list[tuple[str, int]]:
    """(type, recipient id) of every event after `after`, in order."""
    return [(event.type, event.user_id) for event in events(after=after)]


@dataclass(frozen=True)
class QueuedEventEmail:
    event_id: int
    type: str
    to: str
    subject: str
    body: str
    html: str
    queue: str


def queued_event_emails(type_name: str | None = None) -> list[QueuedEventEmail]:
    """The event emails deferred so far, oldest first, rendered as the worker sends them."""
    rows = db.session.execute(
        text("SELECT queue_name, args FROM procrastinate_jobs WHERE task_name = :task ORDER BY id"),
        {"task": SEND_EVENT_EMAIL_TASK},
    )
    emails = []
    for queue_name, args in rows:
        event = db.session.get(Event, args["event_id"])
        email = event_email(args["event_id"])
        assert event is not None and email is not None, args
        assert queue_name == QUEUE_MAIL
        if type_name is None or event.type == type_name:
            emails.append(
                QueuedEventEmail(
                    event.id,
                    event.type,
                    email.to,
                    email.subject,
                    email.body,
                    email.html,
                    queue_name,
                )
            )
    return emails


def send_queued_event_emails(after: int = 0) -> int:
    """Run the `send_event_email` task, as the worker would, for each event email deferred
    for an event above `after`; how many were sent."""
    task_app.perform_import_paths()
    task = task_app.tasks[SEND_EVENT_EMAIL_TASK]
    rows = db.session.execute(
        text(
            "SELECT (args->>'event_id')::bigint FROM procrastinate_jobs "
            "WHERE task_name = :task AND (args->>'event_id')::bigint > :after ORDER BY id"
        ),
        {"task": SEND_EVENT_EMAIL_TASK, "after": after},
    ).scalars()
    return sum(bool(task(event_id=event_id)) for event_id in list(rows))
