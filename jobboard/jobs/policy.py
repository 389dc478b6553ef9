"""Who may see or act on a job: the one place jobs, bids, reviews and the dashboard ask.

- Parties to a job are its owner and, once a bid is accepted, its assignee.
- Reading a job (GET /api/jobs/<id>/, its result): parties and admins (`can_see`).
- Changing it (cancel, retry, edit): its owner or an admin; the assignee sees it but gets
  403 (`require_may_change`; `reschedule` is the owner's only, `is_owner`).
- Delivering: the assignee only (`is_assignee`); releasing and reviewing: parties only.
- A job is open for bids while it is pending or in progress (not cancelled or finished)
  and nobody is assigned (`is_open_for_bids`, and `open_for_bids()` for queries).
- Through the bidding endpoints a job is visible to its owner, to everybody while it is
  open for bids, and, whatever happens to it later, to everyone who ever bid on it
  (`can_see_for_bidding`).
Anybody else gets 404, as if the job did not exist. The prose below is what the API
documentation says, so it says it once.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, exists, select

from jobboard.errors import Conflict, Forbidden
from jobboard.extensions import db
from jobboard.models import OPEN_JOB_STATUSES, Bid, Job, User

JOB_NOT_YOURS = "No such job, or not yours"
NOT_THE_OWNER = "You are the assignee, not the owner"
BIDDING_VISIBILITY = (
    "Visibility: a job is visible to its owner; to every verified user while it is open "
    "for bids (not cancelled or finished, nobody assigned); and, whatever happens to it "
    "later, to everyone who ever bid on it. To anybody else it answers 404"
)


def is_owner(user: User, job: Job) -> bool:
    return job.owner_id == user.id


def is_assignee(user: User, job: Job) -> bool:
    return job.assignee_id is not None and job.assignee_id == user.id


def is_party(user: User, job: Job) -> bool:
    return is_owner(user, job) or is_assignee(user, job)


def other_party_id(user: User, job: Job) -> int | None:
    """The owner for the assignee, the assignee for the owner."""
    return job.assignee_id if is_owner(user, job) else job.owner_id


def can_see(user: User, job: Job) -> bool:
    """May `user` read the job through the jobs endpoints: a party or an admin."""
    return user.is_admin or is_party(user, job)


def require_may_change(user: User, job: Job) -> None:
    """403 for somebody who sees the job (`can_see`) but is neither its owner nor an admin."""
    if not (user.is_admin or is_owner(user, job)):
        raise Forbidden("Only the job's owner can change it.")


def is_open_for_bids(job: Job) -> bool:
    """Open (not finished or cancelled) and nobody assigned."""
    return job.status in OPEN_JOB_STATUSES and job.assignee_id is None


def open_for_bids() -> ColumnElement[bool]:
    """`is_open_for_bids` as a WHERE clause on `jobs`."""
    return and_(
        Job.status.in_([status.value for status in OPEN_JOB_STATUSES]),
        Job.assignee_id.is_(None),
    )


def require_open_for_bids(job: Job) -> None:
    """409 for a job that takes no more bids."""
    if job.assignee_id is not None:
        raise Conflict("This job is already assigned; it takes no more bids.")
    if not is_open_for_bids(job):
        raise Conflict(f"This job is {job.status}; it takes no more bids.")


def can_see_for_bidding(user: User, job: Job) -> bool:
    """May `user` see the job through the bidding endpoints (see the module's docstring)."""
    return is_owner(user, job) or is_open_for_bids(job) or _has_bid_on(job, user)


def _has_bid_on(job: Job, user: User) -> bool:
    return bool(
        db.session.scalar(select(exists().where(Bid.job_id == job.id, Bid.bidder_id == user.id)))
    )


def can_see_any_part(user: User, job: Job) -> bool:
    """May `user` see anything of the job, through the jobs or the bidding endpoints (the
    web app's job page answers 404 otherwise)."""
    return can_see(user, job) or can_see_for_bidding(user, job)
