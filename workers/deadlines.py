"""Deadline notices of jobs handed to a person, deferred on award for their time and
cancelled on delivery or release. Each re-checks the job and tells (an event, which brings
the email) at most once: safe to re-run, and a stale one tells nothing."""

from __future__ import annotations

from jobboard.notices import remind_due_soon, tell_overdue
from workers.app import DUE_REMINDER_TASK, OVERDUE_NOTICE_TASK, QUEUE_MAIL, task_app
from workers.context import app_context
from workers.mail import SMTP_RETRY


@task_app.task(name=DUE_REMINDER_TASK, queue=QUEUE_MAIL, retry=SMTP_RETRY)
def send_due_reminder(job_id: int, due_date: str) -> bool:
    """Remind the assignee of job `job_id` that it is due on `due_date`, in a day."""
    with app_context():
        return remind_due_soon(job_id, due_date)


@task_app.task(name=OVERDUE_NOTICE_TASK, queue=QUEUE_MAIL, retry=SMTP_RETRY)
def send_overdue_notice(job_id: int, due_date: str) -> bool:
    """Tell the owner of job `job_id` that `due_date` passed without a delivery."""
    with app_context():
        return tell_overdue(job_id, due_date)
