"""Bids under concurrency: real requests on their own database connections, committing
for real, lined up to run at the same time (see `tests.support.bids.run_at_once`)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from jobboard.extensions import db
from jobboard.models import Bid, BidStatus, Job
from tests.support.bids import BidsApi, live_headers, make_live_job, run_at_once
from tests.support.events import queued_event_emails


@pytest.fixture
def database_url(live_app) -> str:
    return live_app.config["DATABASE_URL_FOR_WORKER"]


@pytest.fixture
def parties(live_app, make_live_user):
    """A poster with an open job, and two bidders with their headers."""
    poster = make_live_user(display_name="Paula Poster")
    first = make_live_user(display_name="Fay First")
    second = make_live_user(display_name="Sid Second")
    job = make_live_job(live_app, poster)
    headers = {user.id: live_headers(live_app, user) for user in (poster, first, second)}
    return poster, first, second, job, headers


def bids_on(live_app, job_id: int) -> list[Bid]:
    with live_app.app_context():
        bids = list(db.session.scalars(select(Bid).where(Bid.job_id == job_id).order_by(Bid.id)))
        db.session.expunge_all()
        return bids


def assignee_of(live_app, job_id: int) -> int | None:
    with live_app.app_context():
        return db.session.get(Job, job_id).assignee_id


def queued_email_recipients(live_app) -> list[tuple[str, str]]:
    """Queued event emails about accepting (the owner's "New bid on" notices left out)."""
    with live_app.app_context():
        return [
            (email.to, email.subject)
            for email in queued_event_emails()
            if not email.subject.startswith("New bid on")
        ]


def test_two_accepts_of_different_bids_racing_have_exactly_one_winner(
    live_app, live_client, database_url, parties
):
    poster, first, second, job, headers = parties
    api = BidsApi(live_client)
    first_bid = api.place(headers[first.id], job.id, fee="80.00").get_json()
    second_bid = api.place(headers[second.id], job.id, fee="75.00").get_json()

    def accept(bid_id: int):
        return lambda client: BidsApi(client).accept(headers[poster.id], job.id, bid_id)

    statuses = run_at_once(
        live_app, database_url, job.id, [accept(first_bid["id"]), accept(second_bid["id"])]
    )

    assert sorted(statuses) == [200, 409]
    winning_bid = first_bid if statuses[0] == 200 else second_bid
    winner = first if winning_bid is first_bid else second
    loser = second if winner is first else first
    bids = {bid.id: bid for bid in bids_on(live_app, job.id)}
    assert [bid.status for bid in bids.values()].count(BidStatus.ACCEPTED) == 1
    assert bids[winning_bid["id"]].status == BidStatus.ACCEPTED
    assert {bid.status for bid in bids.values()} == {BidStatus.ACCEPTED, BidStatus.REJECTED}
    assert assignee_of(live_app, job.id) == winner.id
    # Only the committed accept queued mail: one win, one rejection.
    recipients = queued_email_recipients(live_app)
    assert len(recipients) == 2
    assert {to for to, _subject in recipients} == {winner.email, loser.email}
    assert [to for to, subject in recipients if "accepted" in subject] == [winner.email]


def test_the_same_accept_sent_twice_at_once_succeeds_once(
    live_app, live_client, database_url, parties
):
    poster, first, _second, job, headers = parties
    bid = BidsApi(live_client).place(headers[first.id], job.id).get_json()

    def accept(client: FlaskClient):
        return BidsApi(client).accept(headers[poster.id], job.id, bid["id"])

    statuses = run_at_once(live_app, database_url, job.id, [accept, accept])

    assert sorted(statuses) == [200, 409]
    assert assignee_of(live_app, job.id) == first.id
    assert len(queued_email_recipients(live_app)) == 1


def test_one_bidder_placing_two_bids_at_once_gets_one_201_and_one_409(
    live_app, database_url, parties
):
    _poster, first, _second, job, headers = parties

    def place(client: FlaskClient):
        return BidsApi(client).place(headers[first.id], job.id)

    statuses = run_at_once(live_app, database_url, job.id, [place, place])

    assert sorted(statuses) == [201, 409]
    bids = bids_on(live_app, job.id)
    assert [(bid.bidder_id, bid.status) for bid in bids] == [(first.id, BidStatus.PENDING)]


def test_a_bid_placed_while_the_owner_accepts_never_stays_pending(
    live_app, live_client, database_url, parties
):
    poster, first, second, job, headers = parties
    first_bid = BidsApi(live_client).place(headers[first.id], job.id).get_json()

    def accept(client: FlaskClient):
        return BidsApi(client).accept(headers[poster.id], job.id, first_bid["id"])

    def late_bid(client: FlaskClient):
        return BidsApi(client).place(headers[second.id], job.id)

    accept_status, bid_status = run_at_once(live_app, database_url, job.id, [accept, late_bid])

    assert accept_status == 200
    # Either the bid got in first and the accept rejected it, or it came too late: the job
    # is assigned, and to somebody who never bid on it an assigned job is not visible.
    assert bid_status in (201, 404)
    statuses = {bid.bidder_id: bid.status for bid in bids_on(live_app, job.id)}
    assert statuses[first.id] == BidStatus.ACCEPTED
    assert statuses.get(second.id, BidStatus.REJECTED) == BidStatus.REJECTED
    assert assignee_of(live_app, job.id) == first.id


def test_a_withdrawal_racing_the_accept_of_that_bid_leaves_one_consistent_outcome(
    live_app, live_client, database_url, parties
):
    poster, first, _second, job, headers = parties
    bid = BidsApi(live_client).place(headers[first.id], job.id).get_json()

    def accept(client: FlaskClient):
        return BidsApi(client).accept(headers[poster.id], job.id, bid["id"])

    def withdraw(client: FlaskClient):
        return BidsApi(client).withdraw(headers[first.id], job.id, bid["id"])

    accept_status, withdraw_status = run_at_once(live_app, database_url, job.id, [accept, withdraw])

    assert sorted([accept_status, withdraw_status]) == [200, 409]
    (stored,) = bids_on(live_app, job.id)
    if accept_status == 200:
        assert stored.status == BidStatus.ACCEPTED
        assert assignee_of(live_app, job.id) == first.id
    else:
        assert stored.status == BidStatus.WITHDRAWN
        assert assignee_of(live_app, job.id) is None
