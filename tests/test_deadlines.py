"""Deadline notices: the tasks the queue runs at their time, run here in the test process;
each re-checks the job and tells by an event (`job.due_soon`, `job.overdue`) at most once,
whose email reaches the real SMTP server."""

from __future__ import annotations

from datetime import date, timedelta

from jobboard.extensions import db
from jobboard.models import Job
from jobboard.notices import due_at, tell_overdue
from tests.support.assignments import awarded_job, deliver, release
from tests.support.auth import bearer
from tests.support.events import events, last_event_id, send_queued_event_emails, told
from tests.support.smtp import body_of
from workers.app import task_app


def run_task(name: str, **args):
    task_app.perform_import_paths()
    return task_app.tasks[name](**args)


def test_the_reminder_reaches_the_assignee_while_the_job_is_due(client, make_user, mailbox):
    paula, bob = make_user(), make_user(display_name="Bob")
    deadline = date.today() + timedelta(days=3)
    job, _bid = awarded_job(client, paula, bob, deadline=deadline, name="Translate")

    before = last_event_id()
    sent = run_task("send_due_reminder", job_id=job["id"], due_date=deadline.isoformat())

    assert sent is True
    reminder = told("job.due_soon", to=bob, after=before)
    assert reminder.data["due_date"] == deadline.isoformat()
    assert reminder.data["job"]["id"] == job["id"]
    # Told once: the entry run again tells nothing.
    assert run_task("send_due_reminder", job_id=job["id"], due_date=deadline.isoformat()) is False
    assert send_queued_event_emails(after=before) == 1
    message = mailbox.wait_for(lambda m: bob.email in m["To"])
    assert message["Subject"] == f'Reminder: "Translate" is due {deadline.isoformat()}'
    assert f"/api/jobs/{job['id']}/deliver/" in body_of(message)


def test_no_reminder_after_delivery_release_or_for_another_due_date(client, make_user, mailbox):
    paula, bob = make_user(), make_user()
    deadline = date.today() + timedelta(days=3)
    delivered, _ = awarded_job(client, paula, bob, deadline=deadline)
    deliver(client, bob, delivered["id"])
    released, _ = awarded_job(client, paula, bob, deadline=deadline)
    release(client, bob, released["id"])
    moved, _ = awarded_job(client, paula, bob, deadline=deadline)

    for job_id, due in (
        (delivered["id"], deadline),
        (released["id"], deadline),
        (moved["id"], deadline + timedelta(days=1)),  # a stale entry of an earlier award
        (987654, deadline),
    ):
        assert run_task("send_due_reminder", job_id=job_id, due_date=due.isoformat()) is False
        assert run_task("send_overdue_notice", job_id=job_id, due_date=due.isoformat()) is False
    assert events("job.due_soon") == events("job.overdue") == []


def test_the_overdue_notice_reaches_the_owner_only_once_the_date_has_passed(
    client, make_user, mailbox
):
    paula, bob = make_user(), make_user(display_name="Bob")
    deadline = date.today() + timedelta(days=2)
    job, _ = awarded_job(client, paula, bob, deadline=deadline, name="Proofread")

    # Not yet overdue: nothing, even if the entry ran early.
    assert run_task("send_overdue_notice", job_id=job["id"], due_date=deadline.isoformat()) is False
    assert events("job.overdue") == []

    # The date passed without a delivery.
    passed = date.today() - timedelta(days=2)
    stored = db.session.get(Job, job["id"])
    stored.due_date = passed
    db.session.commit()
    before = last_event_id()
    sent = run_task("send_overdue_notice", job_id=job["id"], due_date=passed.isoformat())

    assert sent is True
    assert told("job.overdue", to=paula, after=before).data["due_date"] == passed.isoformat()
    assert tell_overdue(job["id"], passed.isoformat(), now=due_at(passed)) is False  # once
    assert send_queued_event_emails(after=before) == 1
    message = mailbox.wait_for(lambda m: paula.email in m["To"])
    assert message["Subject"] == '"Proofread" is overdue'
    assert f"user #{bob.id}) has not delivered" in body_of(message)
    assert f"/api/jobs/{job['id']}/release/" in body_of(message)
    assert client.get(f"/api/jobs/{job['id']}/", headers=bearer(paula)).get_json()["due_date"] == (
        passed.isoformat()
    )
