"""Conditional requests: ETags and If-Match.

Reading: single resources and lists answer with an `ETag` and honour `If-None-Match`
(304) through flask-smorest's `@blp.etag`, which hashes the dumped answer. Changing: a
`PATCH`/`DELETE` with `If-Match` is refused with 412, and nothing changes, when the tag
is not the resource's current one; without `If-Match` it behaves as it always did.
(flask-smorest's own `check_etag` would make `If-Match` mandatory: 428.)

The check must not race the change: `require_current` compares the tag of the row as the
change's own row lock found it, so the row cannot move between the check and the write.
A service calls it right after it has locked the row (and decided the caller may see it),
before it changes anything. Where the service does not call it yet, the route calls
`lock_then_require_current` first: it takes the same locks, in the service's order, in
the request's transaction, which holds them until the service commits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask_smorest.etag import EtagMixin
from marshmallow import EXCLUDE, Schema, fields
from werkzeug.datastructures import ETags
from werkzeug.http import parse_etags

from jobboard.auth.schemas import ProfileOut
from jobboard.bids.schemas import BidOut
from jobboard.bids.service import shown
from jobboard.errors import DomainError
from jobboard.jobs import policy
from jobboard.jobs.schemas import JobOut
from jobboard.locking import locked
from jobboard.models import Bid, Job, User

STALE = (
    "The resource changed since you read it (If-Match does not match its ETag); read it "
    "again and retry."
)


class PreconditionFailed(DomainError):
    status_code = 412


class IfMatchHeaders(Schema):
    class Meta:
        unknown = EXCLUDE

    if_match = fields.String(
        data_key="If-Match",
        load_default=None,
        metadata={
            "description": "The ETag you read (GET). If the resource has changed since, "
            "412 and nothing changes. Without it the change is made whatever the state."
        },
    )


def if_match_of(headers: dict[str, Any]) -> ETags | None:
    """The parsed `If-Match` of headers loaded with `IfMatchHeaders`; None without one."""
    value = headers.get("if_match")
    return None if value is None else parse_etags(value)


def etag_of(resource: Any, schema: type[Schema]) -> str:
    """The ETag a GET of `resource`, dumped with `schema`, answers with."""
    return EtagMixin._generate_etag(schema().dump(resource))


def require_current(resource: Any, schema: type[Schema], if_match: ETags | None) -> None:
    """412 unless `if_match` is absent, `*`, or holds the resource's current ETag. Call it
    under the row lock of the change, before changing anything."""
    if if_match is None or if_match.star_tag:
        return
    if not if_match.contains(etag_of(resource, schema)):
        raise PreconditionFailed(STALE)


def lock_then_require_current(
    if_match: ETags | None,
    schema: type[Schema],
    lock: Callable[[], Any | None],
) -> None:
    """`require_current` on the row that `lock()` returns locked (None: not there or not
    the caller's to see; the service then answers as it would). For routes whose service
    does not check If-Match itself yet: the lock is the service's own, taken first and
    held by the request's transaction until the service commits."""
    if if_match is None:
        return
    resource = lock()
    if resource is not None:
        require_current(resource, schema, if_match)


# --- the routes' checks, until their services call `require_current` themselves ----------


def job_unchanged(user: User, job_id: int, if_match: ETags | None, *, owner_only: bool) -> None:
    """For PATCH (`owner_only`) and DELETE of a job: the job row FOR UPDATE, as
    `transitions.reschedule` and `transitions.cancel_job` lock it."""

    def lock() -> Job | None:
        job = locked(Job, job_id)
        if job is None:
            return None
        allowed = policy.is_owner(user, job) if owner_only else policy.can_see(user, job)
        return job if allowed else None

    lock_then_require_current(if_match, JobOut, lock)


def bid_unchanged(user: User, job_id: int, bid_id: int, if_match: ETags | None) -> None:
    """For PATCH of a bid: the job FOR SHARE then the bidder's own bid FOR UPDATE, the
    order of `bids.service.edit_bid` (and of every bids transition)."""

    def lock() -> Bid | None:
        job = locked(Job, job_id, shared=True)
        if job is None or not policy.can_see_for_bidding(user, job):
            return None
        bid = locked(Bid, bid_id, Bid.job_id == job.id, Bid.bidder_id == user.id)
        return None if bid is None else shown([bid])[0]  # as GET dumps it

    lock_then_require_current(if_match, BidOut, lock)


def profile_unchanged(user: User, if_match: ETags | None) -> None:
    """For PATCH /api/me/: the caller's row FOR UPDATE."""
    lock_then_require_current(if_match, ProfileOut, lambda: locked(User, user.id))
