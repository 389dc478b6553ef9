"""What the parties of a job are told, and when. Every notice goes through the queue on the
caller's transaction (`queue_email`), so nobody hears of a change that did not commit and
no request waits for SMTP. The deadline notices are scheduled deferrals that re-check the
job when they run: a stale one (delivered, released, re-awarded) sends nothing.

Mail is plain text, and text that users wrote (a job's name, a display name, a bid's
comment, a delivery note) reaches other people's mailboxes through it. So such text is
marked as written by whom, quoted as a block or in quotes, and defanged (`user_text`):
a mail client that turns addresses into links finds no `scheme://` and no `www.` in it.

One bidder cannot flood an owner's mailbox by bidding and withdrawing in a loop: a job's
owner is mailed about one bid per bidder and job within BID_NOTICE_WINDOW
(`mail_bid_notice`); later bids are not mailed.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, timedelta

from jobboard import queue, ratelimit
from jobboard.dates import end_of_date_everywhere
from jobboard.extensions import db
from jobboard.mailer import OutgoingEmail, queue_email
from jobboard.models import Bid, Job, JobStatus, User, now_utc
from workers.app import DUE_REMINDER_TASK, OVERDUE_NOTICE_TASK, QUEUE_MAIL

logger = logging.getLogger(__name__)

REMINDER_AHEAD = timedelta(days=1)


def defanged(text: str) -> str:
    """`text` with nothing a mail client would turn into a link: `scheme://` becomes
    `scheme[:]//`, `www.` becomes `www[.]`."""
    text = text.replace("://", "[:]//")
    return re.sub(r"(?i)\bwww\.", lambda match: match.group(0)[:-1] + "[.]", text)


def user_text(text: str, written_by: str) -> str:
    """A block of user-written text for a plain-text email: said to be written by
    `written_by`, each line quoted with "> ", defanged."""
    lines = defanged(text).splitlines() or [""]
    quoted = "\n".join(f"> {line}" for line in lines)
    return f"Written by {written_by}, not by jobboard:\n{quoted}\n"


def _name(user: User) -> str:
    """A user's display name (their own words: quoted and defanged), or their number."""
    if user.display_name:
        return f'"{defanged(user.display_name)}"'
    return f"user #{user.id}"


def _job(job: Job) -> str:
    """A job as mail names it: its number, and its name (the owner's words) in quotes."""
    return f'#{job.id} "{defanged(job.name)}"'


def _subject_name(job: Job) -> str:
    """A job's name for a Subject: header, on one line."""
    return f'"{defanged(" ".join(job.name.split()))}"'


def _money(bid: Bid) -> str:
    return f"{bid.fee:.2f} {bid.currency}"


# --- immediate notices -------------------------------------------------------------------


def mail_bid_notice(job_id: int, bidder_id: int, now: datetime | None = None) -> bool:
    """Whether the owner of job `job_id` is mailed about a bid of `bidder_id` now: one
    notice mail per bidder and job within BID_NOTICE_WINDOW, later ones dropped from mail
    (counted on the caller's transaction). Whatever decides which events become mail
    asks this."""
    return ratelimit.try_take(ratelimit.BID_NOTICE_PER_BIDDER_JOB, f"{job_id}|{bidder_id}", now)


def bid_placed(job: Job, bid: Bid) -> None:
    """Tell the owner a bid arrived on their job, unless the bidder's earlier bid on it
    was mailed within the window."""
    owner = db.session.get(User, job.owner_id)
    bidder = db.session.get(User, bid.bidder_id)
    if owner is None or bidder is None or not mail_bid_notice(job.id, bidder.id):
        return
    comment = f"\nTheir comment:\n{user_text(bid.comment, 'the bidder')}" if bid.comment else ""
    queue_email(
        to=owner.email,
        subject=f"New bid on {_subject_name(job)}",
        body=(
            f"{_name(bidder)} (user #{bidder.id}) bid on your job {_job(job)}.\n\n"
            f"Fee: {_money(bid)}\n"
            f"Proposed deadline: {bid.proposed_deadline.isoformat()}\n{comment}\n"
            f"Compare the bids at GET /api/jobs/{job.id}/bids/ and accept one with "
            f"POST /api/jobs/{job.id}/bids/{bid.id}/accept/. The bidder's public profile: "
            f"GET /api/users/{bidder.id}/.\n"
            "Further bids of this bidder on this job within the hour are not emailed; "
            "they are all in the list of bids.\n"
        ),
    )


def bid_accepted(job: Job, bid: Bid) -> None:
    """Tell the winner their bid was accepted."""
    winner = db.session.get(User, bid.bidder_id)
    if winner is None:
        return
    queue_email(
        to=winner.email,
        subject=f"Your bid on {_subject_name(job)} was accepted",
        body=(
            f"Good news: your bid on job {_job(job)} was accepted.\n\n"
            f"Fee: {_money(bid)}\n"
            f"Your deadline: {bid.proposed_deadline.isoformat()}\n\n"
            "You are now the job's assignee. It is listed under GET /api/jobs/assigned/ "
            f"and you can read it at GET /api/jobs/{job.id}/.\n"
        ),
    )


def bid_rejected(job: Job, bidder: User) -> None:
    """Tell a bidder the owner chose another bid."""
    queue_email(
        to=bidder.email,
        subject=f"Your bid on {_subject_name(job)} was not selected",
        body=(
            f"The owner of job {_job(job)} chose another bid, so yours is now "
            "rejected. Thank you for bidding; GET /api/bids/ lists all your bids.\n"
        ),
    )


def delivered(job: Job, assignee: User, note: str | None) -> None:
    """Tell the owner their job was delivered."""
    owner = db.session.get(User, job.owner_id)
    if owner is None:
        return
    note_text = f"\nTheir note:\n{user_text(note, 'the assignee')}" if note else ""
    queue_email(
        to=owner.email,
        subject=f"{_subject_name(job)} was delivered",
        body=(
            f"{_name(assignee)} delivered your job {_job(job)}; it is now "
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
        subject = f"{_subject_name(job)} was taken back by its owner"
        what = f"{_name(by)} took job {_job(job)} back; it is no longer yours."
    else:
        subject = f"{_subject_name(job)} was given back by its assignee"
        what = f"{_name(by)} gave your job {_job(job)} back. It is pending and open for bids again."
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
        subject=f"Reminder: {_subject_name(job)} is due {due_date}",
        body=(
            f"Job {_job(job)} is due on {due_date}, in a day. Deliver it with "
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
        subject=f"{_subject_name(job)} is overdue",
        body=(
            f"Job {_job(job)} was due on {due_date} and {_name(assignee)} has not "
            "delivered it. You can wait, or take it back with "
            f"POST /api/jobs/{job.id}/release/ and choose somebody else.\n"
        ),
    )
