"""Deadline notices of jobs handed to a person: when they are due, and what they tell.

On award the reminder (a day before the due moment) and the overdue notice (at it) are
deferred for their time; delivery and release cancel them, in the same transaction. When
one runs it re-checks the job under its row lock: a stale one (delivered, released,
re-awarded, already told) tells nothing. What it tells is an event (`job.due_soon` to the
assignee, `job.overdue` to the owner): who hears of it, and by which channels, is the
events catalogue's business (`jobboard.events.catalogue`), not this module's.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from jobboard import queue
from jobboard.dates import end_of_date_everywhere
from jobboard.events.outbox import tell
from jobboard.extensions import db
from jobboard.locking import locked
from jobboard.models import Job, JobStatus, now_utc
from workers.app import DUE_REMINDER_TASK, OVERDUE_NOTICE_TASK, QUEUE_MAIL

logger = logging.getLogger(__name__)

REMINDER_AHEAD = timedelta(days=1)


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
    """The job, locked, if it is still in progress with an assignee and due on `due_date`."""
    job = locked(Job, job_id)
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


def remind_due_soon(job_id: int, due_date: str) -> bool:
    """Tell the assignee of job `job_id` that it is due on `due_date` (`job.due_soon`),
    once, unless the job is no longer due then; commits. Whether it told."""
    job = _still_due(job_id, due_date)
    if job is None or job.reminder_queue_job_id is None:
        db.session.rollback()
        return False
    job.reminder_queue_job_id = None  # told: a re-run of this notice tells nothing
    tell("job.due_soon", job=job, due_date=job.due_date)
    db.session.commit()
    return True


def tell_overdue(job_id: int, due_date: str, now: datetime | None = None) -> bool:
    """Tell the owner of job `job_id` that `due_date` passed undelivered (`job.overdue`),
    once, unless the job was delivered, released, re-awarded, or is not overdue yet;
    commits. Whether it told."""
    job = _still_due(job_id, due_date)
    if (
        job is None
        or job.overdue_queue_job_id is None
        or (now or now_utc()) < due_at(date.fromisoformat(due_date))
    ):
        db.session.rollback()
        return False
    job.overdue_queue_job_id = None  # told: a re-run of this notice tells nothing
    tell("job.overdue", job=job, due_date=job.due_date)
    db.session.commit()
    return True
