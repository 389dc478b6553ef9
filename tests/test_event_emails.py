"""An event's email: rendered from the event alone (text and HTML templates), sent by the
mail task deferred with the event, to the real SMTP server of the tests. Text that users
wrote is marked as theirs and never becomes a link."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import text

from jobboard.events.catalogue import TYPES
from jobboard.events.emails import ZERO_WIDTH_SPACE, event_email, unlinked
from jobboard.events.outbox import EventRow, write_events
from jobboard.extensions import db
from tests.support.auth import QueuedJob, run_job
from tests.support.factories import UserFactory
from tests.support.smtp import body_of

EVIL = 'Visit https://evil.example/login or <a href="https://evil.example">here</a> now.'


def queued_event_emails() -> list[QueuedJob]:
    rows = db.session.execute(
        text(
            "SELECT id, task_name, args, status, attempts FROM procrastinate_jobs"
            " WHERE task_name = 'send_event_email' ORDER BY id"
        )
    )
    return [QueuedJob(*row) for row in rows]


@pytest.mark.parametrize("spec", [spec for spec in TYPES if spec.email], ids=lambda s: s.name)
def test_every_email_renders_from_its_example(app, spec):
    user = UserFactory(display_name="Ada")
    data = {**spec.example, "by": "assignee"} if spec.name == "job.completed" else spec.example
    (event_id,) = write_events([EventRow(spec.name, user.id, data, emailed=True)])
    email = event_email(event_id)
    assert email is not None and email.to == user.email
    assert email.subject and "\n" not in email.subject
    assert "Hello Ada" in email.body and "<html" in email.html
    assert "{{" not in email.body + email.html


def test_user_written_text_is_marked_and_never_a_link(app):
    owner = UserFactory(display_name="Olga")
    example = next(spec for spec in TYPES if spec.name == "bid.placed").example
    data = {
        "job": {**example["job"], "name": "Fix www.evil.example"},
        "bid": {
            **example["bid"],
            "comment": EVIL,
            "bidder": {**example["bid"]["bidder"], "display_name": "admin@evil.example"},
        },
    }
    (event_id,) = write_events([EventRow("bid.placed", owner.id, data, emailed=True)])
    email = event_email(event_id)
    assert email is not None
    for part in (email.subject, email.body, email.html):
        assert "evil.example" not in part  # broken by zero-width spaces
        assert "https://" not in part.replace("https:" + ZERO_WIDTH_SPACE, "")
    assert "<a " not in email.html and "&lt;a href=" in email.html
    assert "written by the bidder" in email.html and 'class="user-text"' in email.html
    assert "Their comment, written by the bidder:\n> Visit https:" in email.body
    assert unlinked("a.b@c:d/e") == "a.\u200bb@\u200bc:\u200bd/\u200be"


def test_the_mail_task_sends_text_and_html_and_skips_what_wants_no_email(app, mailbox):
    user = UserFactory(display_name="Ada")
    example = next(spec for spec in TYPES if spec.name == "job.completed").example
    write_events(
        [
            EventRow("job.completed", user.id, {**example, "by": "assignee"}, emailed=True),
            EventRow("job.failed", user.id, {"job": example["job"]}),
        ]
    )
    (queued,) = queued_event_emails()
    assert run_job(queued) is True
    message = mailbox.wait_for(lambda m: user.email in m["To"])
    assert (
        message["Subject"]
        == '"Resize the product photos" was delivered'.replace(".", "." + ZERO_WIDTH_SPACE)
        or "delivered" in message["Subject"]
    )
    kinds = {part.get_content_type() for part in message.walk()}
    assert {"text/plain", "text/html"} <= kinds
    assert "GET /api/jobs/42/result/" in body_of(message)
    # An event that wants no email (or is gone) sends nothing.
    failed = db.session.execute(
        text("SELECT id FROM events WHERE type = 'job.failed'")
    ).scalar_one()
    assert event_email(failed) is None
    assert event_email(2**62) is None
    assert re.search(r"evt_[0-9a-f]{32}", body_of(message))
