"""Who is a party to a job: its owner and, once a bid is accepted, its assignee. Parties
read the job; deliver, release and reviews are for parties only; anybody else gets 404."""

from __future__ import annotations

from jobboard.models import Job, User


def is_party(user: User, job: Job) -> bool:
    return job.owner_id == user.id or (job.assignee_id is not None and job.assignee_id == user.id)


def other_party_id(user: User, job: Job) -> int | None:
    """The owner for the assignee, the assignee for the owner."""
    return job.assignee_id if job.owner_id == user.id else job.owner_id
