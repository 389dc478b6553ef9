"""Bidding rules: who may bid, edit, withdraw and accept, and the locking that keeps them
consistent when people act at the same time.

Who sees a job here and whether it takes bids: `jobboard.jobs.policy`
(`can_see_for_bidding`, `require_open_for_bids`).

Lock order, the same everywhere so that no two of these can deadlock: the job row first
(FOR SHARE to bid, edit or withdraw; FOR UPDATE to accept), then the bid rows.
Accepting holds the job FOR UPDATE, so it waits for bids being placed or edited on that
job, and they wait for it: a bid can never be placed on a job that an accept has just
closed, nor slip in beside the winner as a stray pending bid.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from jobboard import conditional, quotas
from jobboard.bids.sorting import DEFAULT_SORT, sorted_by
from jobboard.errors import Conflict, Forbidden, NotFound
from jobboard.events.outbox import build_event, tell, write_events
from jobboard.extensions import db
from jobboard.jobs import policy, transitions
from jobboard.locking import locked
from jobboard.models import Bid, BidStatus, Job, User, now_utc
from jobboard.reviews.service import public_profiles

LIVE_BID_INDEX = "uq_bids_live_per_bidder"
ONE_ACCEPTED_BID_INDEX = "uq_bids_one_accepted_per_job"

JOB_NOT_FOUND = "Job not found."
BID_NOT_FOUND = "Bid not found."


# --- what readers see ---------------------------------------------------------------------


@dataclass(frozen=True)
class ShownBid:
    """A bid as the API shows it: the bid's own fields (read through to the row) and its
    bidder's public profile."""

    bid: Bid
    bidder_profile: dict[str, Any] | None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bid, name)


def shown(bids: Iterable[Bid]) -> list[ShownBid]:
    """`bids` with their bidders' public profiles, counted for all of them in one query."""
    bids = list(bids)
    profiles = public_profiles({bid.bidder for bid in bids})
    return [ShownBid(bid, profiles.get(bid.bidder_id)) for bid in bids]


def _shown(bid: Bid) -> ShownBid:
    return shown([bid])[0]


# --- reading ------------------------------------------------------------------------------


def job_bids(
    job_id: int,
    viewer: User,
    *,
    statuses: Collection[str] = (),
    currency: str | None = None,
    sort: str = DEFAULT_SORT,
) -> Select[tuple[Bid]]:
    """The bids on a job that `viewer` may read: all of them for the owner, only their own
    for anybody else who can see the job. A page of them is shown with `shown`."""
    job = _visible_job(job_id, viewer)
    query = select(Bid).where(Bid.job_id == job.id).options(selectinload(Bid.bidder))
    if not policy.is_owner(viewer, job):
        query = query.where(Bid.bidder_id == viewer.id)
    if currency:
        query = query.where(Bid.currency == currency)
    return _filtered_and_sorted(query, statuses, sort)


def get_bid(job_id: int, bid_id: int, viewer: User) -> ShownBid:
    """One bid: the job's owner reads any bid on it, a bidder only their own."""
    job = _visible_job(job_id, viewer)
    query = select(Bid).where(Bid.id == bid_id, Bid.job_id == job.id)
    if not policy.is_owner(viewer, job):
        query = query.where(Bid.bidder_id == viewer.id)
    bid = db.session.scalar(query.options(selectinload(Bid.bidder)))
    if bid is None:
        raise NotFound(BID_NOT_FOUND)
    return _shown(bid)


def bids_of(
    bidder: User, *, statuses: Collection[str] = (), sort: str = DEFAULT_SORT
) -> Select[tuple[Bid]]:
    """The bidder's own bids across all jobs. A page of them is shown with `shown`."""
    query = (
        select(Bid)
        .where(Bid.bidder_id == bidder.id)
        .options(selectinload(Bid.bidder), selectinload(Bid.job))
    )
    return _filtered_and_sorted(query, statuses, sort)


def _filtered_and_sorted(
    query: Select[tuple[Bid]], statuses: Collection[str], sort: str
) -> Select[tuple[Bid]]:
    if statuses:
        query = query.where(Bid.status.in_(list(statuses)))
    return sorted_by(query, sort)


def _visible_job(job_id: int, viewer: User, *, share_lock: bool = False) -> Job:
    """The job if `viewer` may see it (`policy.can_see_for_bidding`), else 404; with
    `share_lock`, the row is held FOR SHARE until the transaction ends, which keeps an
    accept (FOR UPDATE) out meanwhile."""
    if share_lock:
        job = locked(Job, job_id, shared=True)
    else:
        job = db.session.get(Job, job_id, populate_existing=True)
    if job is None or not policy.can_see_for_bidding(viewer, job):
        raise NotFound(JOB_NOT_FOUND)
    return job


def public_job(job_id: int, viewer: User) -> Job:
    """The job as those who may bid on it see it (`policy.can_see_for_bidding`), else 404."""
    return _visible_job(job_id, viewer)


# --- bidding --------------------------------------------------------------------------------


def place_bid(
    job_id: int,
    bidder: User,
    *,
    proposed_deadline: date,
    fee: Decimal,
    currency: str,
    comment: str | None = None,
) -> ShownBid:
    job = _visible_job(job_id, bidder, share_lock=True)
    if policy.is_owner(bidder, job):
        raise Forbidden("You cannot bid on your own job.")
    policy.require_open_for_bids(job)
    if _pending_bid_of(job, bidder) is not None:
        raise Conflict("You already have a pending bid on this job; edit or withdraw it.")
    quotas.check_new_bid(bidder.id)
    bid = Bid(
        job_id=job.id,
        bidder_id=bidder.id,
        proposed_deadline=proposed_deadline,
        fee=fee,
        currency=currency,
        comment=comment,
        status=BidStatus.PENDING,
    )
    db.session.add(bid)
    _flush_or_conflict(
        {LIVE_BID_INDEX: "You already have a pending bid on this job; edit or withdraw it."}
    )
    tell("bid.placed", job=job, bid=bid)
    db.session.commit()
    return _shown(bid)


def edit_bid(
    job_id: int,
    bid_id: int,
    bidder: User,
    changes: dict[str, Any],
    if_match: conditional.IfMatch | None = None,
) -> ShownBid:
    """Change a pending bid while the job still takes bids; 412 when it changed since the
    caller read it (`if_match`: checked as readers see the bid, under its lock)."""
    job, bid = _own_bid_locked(job_id, bid_id, bidder)
    if if_match is not None:
        if_match.require_current(_shown(bid))
    _require_pending(bid, "edited")
    policy.require_open_for_bids(job)
    for field, value in changes.items():
        setattr(bid, field, value)
    db.session.commit()
    return _shown(bid)


def withdraw_bid(job_id: int, bid_id: int, bidder: User) -> ShownBid:
    """Take back a pending bid; the bidder may bid on the job again later."""
    job, bid = _own_bid_locked(job_id, bid_id, bidder)
    _require_pending(bid, "withdrawn")
    bid.status = BidStatus.WITHDRAWN
    tell("bid.withdrawn", job=job, bid=bid)
    db.session.commit()
    return _shown(bid)


def accept_bid(job_id: int, bid_id: int, owner: User) -> ShownBid:
    """The owner picks a bid: it wins, the job is handed to its bidder (`award`: in
    progress, queue entry cancelled) and every other pending bid is rejected, all in one
    transaction under the job's row lock.
    The winner and the rejected bidders hear of it by events written in the same
    transaction (`bid.accepted`, `bid.rejected`), so nobody hears of an accept that did
    not commit."""
    # The owner in the WHERE clause: nobody else's request ever takes this lock.
    job = locked(Job, job_id, Job.owner_id == owner.id)
    if job is None:
        raise NotFound(JOB_NOT_FOUND)
    bid = locked(Bid, bid_id, Bid.job_id == job.id)
    if bid is None:
        raise NotFound(BID_NOT_FOUND)
    policy.require_open_for_bids(job)
    _require_pending(bid, "accepted")

    bid.status = BidStatus.ACCEPTED
    # In progress, assignee set, queue entry cancelled, deadlines scheduled.
    transitions.award(job, bid)
    _flush_or_conflict({ONE_ACCEPTED_BID_INDEX: "This job already has an accepted bid."})
    rejected_ids = db.session.scalars(
        update(Bid)
        .where(Bid.job_id == job.id, Bid.status == BidStatus.PENDING)
        .values(status=BidStatus.REJECTED, updated_at=now_utc())
        .returning(Bid.id)
        .execution_options(synchronize_session=False)
    ).all()
    rejected = db.session.scalars(
        select(Bid)
        .where(Bid.id.in_(rejected_ids))
        .order_by(Bid.id)
        .execution_options(populate_existing=True)
    ).all()
    db.session.flush()
    write_events(
        [
            build_event("bid.accepted", job=job, bid=bid),
            *(build_event("bid.rejected", job=job, bid=loser) for loser in rejected),
        ]
    )
    db.session.commit()
    return _shown(bid)


# --- rules ----------------------------------------------------------------------------------


def _own_bid_locked(job_id: int, bid_id: int, bidder: User) -> tuple[Job, Bid]:
    """The caller's bid, locked (after its job, see the lock order above); anybody
    else's bid is 404, as if it did not exist."""
    job = _visible_job(job_id, bidder, share_lock=True)
    bid = locked(Bid, bid_id, Bid.job_id == job.id, Bid.bidder_id == bidder.id)
    if bid is None:
        raise NotFound(BID_NOT_FOUND)
    return job, bid


def _require_pending(bid: Bid, action: str) -> None:
    if bid.status != BidStatus.PENDING:
        raise Conflict(f"This bid is {bid.status}; only a pending bid can be {action}.")


def _pending_bid_of(job: Job, bidder: User) -> Bid | None:
    return db.session.scalar(
        select(Bid).where(
            Bid.job_id == job.id, Bid.bidder_id == bidder.id, Bid.status == BidStatus.PENDING
        )
    )


def _flush_or_conflict(messages_by_index: dict[str, str]) -> None:
    """Flush; a unique index that lost a race becomes the 409 the service would have given
    had it seen the other transaction's row."""
    try:
        db.session.flush()
    except IntegrityError as error:
        db.session.rollback()
        constraint = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
        if constraint in messages_by_index:
            raise Conflict(messages_by_index[constraint]) from error
        raise
