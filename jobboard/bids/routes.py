"""Bids endpoints."""

from __future__ import annotations

from functools import partial
from typing import Any

from sqlalchemy import Select

from jobboard import conditional
from jobboard.auth.tokens import VerifiedUserView, caller
from jobboard.bids import service
from jobboard.bids.schemas import (
    BidIn,
    BidOut,
    BidQueryArgs,
    BidUpdateIn,
    JobBidQueryArgs,
    Money,
    MyBidOut,
)
from jobboard.extensions import api
from jobboard.jobs import policy
from jobboard.jobs.schemas import JobOpenOut
from jobboard.models import Bid
from jobboard.view_helpers import (
    RETRY_AFTER,
    Blueprint,
    SelectPage,
    documented_error,
    verified_user_doc,
)

blp = Blueprint(
    "bids",
    __name__,
    url_prefix="/api",
    description=(
        "Offers on other people's jobs, and the owner's choice of one. Every call needs a "
        "verified user (401 without a valid token, 403 unverified). Bid status: pending -> "
        "accepted | rejected | withdrawn. "
        f"{policy.BIDDING_VISIBILITY}, as does a "
        "bid that is not the caller's (or, for the job's owner, not on their job). "
        "Placing a bid emails the job's owner through the queue. "
        "Accepting is one transaction under the job's row lock: the bid becomes accepted, "
        "the job is handed to its bidder (in_progress, assignee_id and due_date set, its "
        "queue entry cancelled: the queue never runs it; only a pending job can be handed "
        "over), every other pending bid rejected; the winner and the "
        "rejected bidders are emailed through the queue only if it commits. Of two accepts "
        "racing on one job, exactly one succeeds. Bids that were pending when a job closed "
        "without an assignee stay pending (a failed job can be retried and take bids "
        "again): they can be withdrawn, not edited or accepted."
    ),
)

# Fees are decimal strings in JSON, whatever marshmallow's Decimal would document.
api.register_field(Money, "string", "decimal")

JOB_NOT_VISIBLE = "No such job, or not one you may see."


class BidsPage(SelectPage):
    """A page of bids, shown with their bidders' public profiles (`service.shown`: one
    query for the whole page)."""

    @property
    def items(self) -> list[service.ShownBid]:
        return service.shown(super().items)


error = partial(documented_error, blp)
authenticated = verified_user_doc(blp)


@blp.route("/jobs/<int:job_id>/public/")
class PublicJob(VerifiedUserView):
    @authenticated
    @blp.etag
    @blp.response(200, JobOpenOut)
    @error(404, JOB_NOT_VISIBLE)
    def get(self, job_id: int):
        """A job's public fields, for whoever may bid on it or has bid on it"""
        return service.public_job(job_id, caller())


@blp.route("/jobs/<int:job_id>/bids/")
class JobBids(VerifiedUserView):
    @authenticated
    @blp.etag
    @blp.arguments(JobBidQueryArgs, location="query")
    @blp.response(200, BidOut(many=True))
    @blp.paginate(BidsPage)
    @error(404, JOB_NOT_VISIBLE)
    @error(422, "Unknown status, currency or sort key, or a bad page.")
    def get(self, args: dict[str, Any], job_id: int) -> Select[tuple[Bid]]:
        """List the bids on a job: all of them for its owner, your own otherwise."""
        return service.job_bids(job_id, caller(), **args)

    @verified_user_doc(blp, "Email address not verified, or it is your own job.")
    @blp.arguments(BidIn)
    @blp.response(201, BidOut)
    @error(404, JOB_NOT_VISIBLE)
    @error(409, "The job is not open for bids, or you already have a pending bid on it.")
    @error(422, "A fee <= 0, not a number or with 3+ decimals; a past deadline; unknown currency.")
    @error(
        429,
        "Over your plan's bids_per_day (GET /api/me/plan/); Retry-After: seconds to the next "
        "UTC day.",
        headers=RETRY_AFTER,
    )
    def post(self, new_bid: dict[str, Any], job_id: int) -> service.ShownBid:
        """Bid on somebody else's job; its owner is emailed."""
        return service.place_bid(job_id, caller(), **new_bid)


@blp.route("/jobs/<int:job_id>/bids/<int:bid_id>/")
class JobBid(VerifiedUserView):
    @authenticated
    @blp.etag
    @blp.response(200, BidOut)
    @error(404, "No such bid that you may see.")
    def get(self, job_id: int, bid_id: int) -> service.ShownBid:
        """Read one bid: any bid on your job, or your own bid."""
        return service.get_bid(job_id, bid_id, caller())

    @authenticated
    @blp.arguments(BidUpdateIn)
    @blp.arguments(conditional.IfMatchHeaders, location="headers")
    @blp.response(200, BidOut)
    @error(404, "No such bid of yours.")
    @error(409, "The bid is not pending, or the job no longer takes bids.")
    @error(412, conditional.STALE)
    @error(422, "Invalid field values, or nothing to change.")
    def patch(
        self, changes: dict[str, Any], headers: dict[str, Any], job_id: int, bid_id: int
    ) -> service.ShownBid:
        """Edit your pending bid."""
        if_match = conditional.IfMatch.of(headers, BidOut)
        return service.edit_bid(job_id, bid_id, caller(), changes, if_match=if_match)

    @authenticated
    @blp.response(200, BidOut)
    @error(404, "No such bid of yours.")
    @error(409, "The bid is not pending.")
    def delete(self, job_id: int, bid_id: int) -> service.ShownBid:
        """Withdraw your pending bid; you may bid on the job again afterwards."""
        return service.withdraw_bid(job_id, bid_id, caller())


@blp.route("/jobs/<int:job_id>/bids/<int:bid_id>/accept/")
class AcceptBid(VerifiedUserView):
    @authenticated
    @blp.response(200, BidOut)
    @error(404, "Not your job, or no such bid on it.")
    @error(409, "The job is already assigned or not open, or the bid is not pending.")
    def post(self, job_id: int, bid_id: int) -> service.ShownBid:
        """Accept a bid on your job: its bidder is assigned, the other bids are rejected."""
        return service.accept_bid(job_id, bid_id, caller())


@blp.route("/bids/")
class MyBids(VerifiedUserView):
    @authenticated
    @blp.etag
    @blp.arguments(BidQueryArgs, location="query")
    @blp.response(200, MyBidOut(many=True))
    @blp.paginate(BidsPage)
    @error(422, "Unknown status or sort key, or a bad page.")
    def get(self, args: dict[str, Any]) -> Select[tuple[Bid]]:
        """List your own bids across all jobs, with their status."""
        return service.bids_of(caller(), **args)
