"""What the parties of a job are told, and when. Every notice goes through the queue on the
caller's transaction (`queue_email`), so nobody hears of a change that did not commit and
no request waits for SMTP. The deadline notices are scheduled deferrals that re-check the
job when they run: a stale one (delivered, released, re-awarded) sends nothing.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from jobboard import queue
from jobboard.dates import end_of_date_everywhere
from jobboard.extensions import db
from jobboard.mailer import OutgoingEmail, queue_email
from jobboard.models import Bid, Job, JobStatus, User, now_utc
from workers.app import DUE_REMINDER_TASK, OVERDUE_NOTICE_TASK, QUEUE_MAIL

logger = logging.getLogger(__name__)

REMINDER_AHEAD = timedelta(days=1)


def _name(user: User) -> str:
    return user.display_name or f"user #{user.id}"


def _money(bid: Bid) -> str:
    return f"{bid.fee:.2f} {bid.currency}"


# --- immediate notices -------------------------------------------------------------------


def bid_placed(job: Job, bid: Bid) -> None:
    """Tell the owner a bid arrived on their job."""
    owner = db.session.get(User, job.owner_id)
    bidder = db.session.get(User, bid.bidder_id)
    if owner is None or bidder is None:
        return
    comment = f"\nTheir comment: {bid.comment}\n" if bid.comment else ""
    queue_email(
        to=owner.email,
        subject=f'New bid on "{job.name}"',
        body=(
            f'{_name(bidder)} bid on your job #{job.id} "{job.name}".\n\n'
            f"Fee: {_money(bid)}\n"
            f"Proposed deadline: {bid.proposed_deadline.isoformat()}\n{comment}\n"
            f"Compare the bids at GET /api/jobs/{job.id}/bids/ and accept one with "
            f"POST /api/jobs/{job.id}/bids/{bid.id}/accept/. The bidder's public profile: "
            f"GET /api/users/{bidder.id}/.\n"
        ),
    )


def delivered(job: Job, assignee: User, note: str | None) -> None:
    """Tell the owner their job was delivered."""
    owner = db.session.get(User, job.owner_id)
    if owner is None:
        return
    note_text = f"\nTheir note: {note}\n" if note else ""
    queue_email(
        to=owner.email,
        subject=f'"{job.name}" was delivered',
        body=(
            f'{_name(assignee)} delivered your job #{job.id} "{job.name}"; it is now '
            f"completed.\n{note_text}\n"
            f"Read the delivery at GET /api/jobs/{job.id}/result/ and review "
            f"{_name(assignee)} with POST /api/jobs/{job.id}/reviews/.\n"
        ),
    )


def released(job: Job, by: User, other_id: int) -> None:
    """Tell the other party that the job was given back (by the assignee) or taken away
    (by the owner)."""
    other = db.session.get(User, other_id)
    if other is None:
        return
    if by.id == job.owner_id:
        subject = f'"{job.name}" was taken back by its owner'
        what = f'{_name(by)} took job #{job.id} "{job.name}" back; it is no longer yours.'
    else:
        subject = f'"{job.name}" was given back by its assignee'
        what = (
            f'{_name(by)} gave your job #{job.id} "{job.name}" back. It is pending and '
            "open for bids again."
        )
    queue_email(to=other.email, subject=subject, body=what + "\n")


# --- deadlines ---------------------------------------------------------------------------


def due_at(due_date: date) -> datetime:
    """The moment a due date has passed everywhere on Earth (`jobboard.dates`), the same
    "past" as a bid's proposed_deadline."""
    return end_of_date_everywhere(due_date)


def schedule_deadline_notices(job: Job) -> None:
    """Defer the reminder to the assignee (a day before the due moment; skipped when that
    has already passed) and the overdue notice to the owner (at the due moment)."""
    if job.due_date is None:
        return
    deadline = due_at(job.due_date)
    args = {"job_id": job.id, "due_date": job.due_date.isoformat()}
    remind_at = deadline - REMINDER_AHEAD
    job.reminder_queue_job_id = (
        queue.defer(DUE_REMINDER_TASK, queue=QUEUE_MAIL, schedule_at=remind_at, **args)
        if remind_at > now_utc()
        else None
    )
    job.overdue_queue_job_id = queue.defer(
        OVERDUE_NOTICE_TASK, queue=QUEUE_MAIL, schedule_at=deadline, **args
    )


def cancel_deadline_notices(job: Job) -> None:
    """Cancel the waiting deadline notices (one already running re-checks the job)."""
    for queue_job_id in (job.reminder_queue_job_id, job.overdue_queue_job_id):
        if queue_job_id is not None:
            queue.cancel(queue_job_id)
    job.reminder_queue_job_id = None
    job.overdue_queue_job_id = None


def _still_due(job_id: int, due_date: str) -> Job | None:
    job = db.session.get(Job, job_id)
    if (
        job is None
        or job.status != JobStatus.IN_PROGRESS
        or job.assignee_id is None
        or job.due_date is None
        or job.due_date.isoformat() != due_date
    ):
        logger.info("job %s is no longer due on %s; no deadline notice", job_id, due_date)
        return None
    return job


def due_reminder_email(job_id: int, due_date: str) -> OutgoingEmail | None:
    """The reminder to the assignee, or None when the job is no longer due then."""
    job = _still_due(job_id, due_date)
    assignee = db.session.get(User, job.assignee_id) if job and job.assignee_id else None
    if job is None or assignee is None:
        return None
    return OutgoingEmail(
        to=assignee.email,
        subject=f'Reminder: "{job.name}" is due {due_date}',
        body=(
            f'Job #{job.id} "{job.name}" is due on {due_date}, in a day. Deliver it with '
            f"POST /api/jobs/{job.id}/deliver/, or give it back with "
            f"POST /api/jobs/{job.id}/release/ if you cannot make it.\n"
        ),
    )


def overdue_email(job_id: int, due_date: str, now: datetime | None = None) -> OutgoingEmail | None:
    """The notice to the owner that the due date passed undelivered, or None when the job
    was delivered, released, re-awarded, or is not overdue yet."""
    job = _still_due(job_id, due_date)
    if job is None or (now or now_utc()) < due_at(date.fromisoformat(due_date)):
        return None
    owner = db.session.get(User, job.owner_id)
    assignee = db.session.get(User, job.assignee_id) if job.assignee_id else None
    if owner is None or assignee is None:
        return None
    return OutgoingEmail(
        to=owner.email,
        subject=f'"{job.name}" is overdue',
        body=(
            f'Job #{job.id} "{job.name}" was due on {due_date} and {_name(assignee)} has not '
            "delivered it. You can wait, or take it back with "
            f"POST /api/jobs/{job.id}/release/ and choose somebody else.\n"
        ),
    )
