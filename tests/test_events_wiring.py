"""No event without its change, no change without its event.

Each change that the events table names runs three times on a database that commits for
real. First with a failure injected after the events are written: a deferred constraint
trigger on `events` that raises at COMMIT; nothing of the change survives. Then with the
same failure on the change's own table; no event survives (nor the email it would bring).
Then without a failure: the change and exactly its events commit together.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from sqlalchemy.exc import DBAPIError

from jobboard.bids import service as bids
from jobboard.extensions import db
from jobboard.jobs import processing, transitions
from jobboard.models import BidStatus, JobStatus, Plan, User
from jobboard.notices import remind_due_soon
from jobboard.plans.service import process_subscriptions
from jobboard.reviews.service import create_review
from tests.support.events import types_told
from tests.support.factories import BidFactory, JobFactory, UserFactory

INJECTED = "injected failure at commit"
# What a change may touch; all of it must be as it was after a failed commit.
WATCHED = ("jobs", "job_results", "bids", "reviews", "users", "events", "procrastinate_jobs")


@contextlib.contextmanager
def failing_at_commit(table: str) -> Iterator[None]:
    """Every transaction that writes `table` fails at its COMMIT, after all its statements
    ran (a deferred constraint trigger), for as long as the block lasts."""
    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE OR REPLACE FUNCTION test_fail_at_commit() RETURNS trigger"
            f" LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{INJECTED}'; END $$"
        )
        connection.exec_driver_sql(
            f"CREATE CONSTRAINT TRIGGER test_fail_at_commit AFTER INSERT OR UPDATE OR DELETE"
            f" ON {table} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
            " EXECUTE FUNCTION test_fail_at_commit()"
        )
    try:
        yield
    finally:
        with db.engine.begin() as connection:
            connection.exec_driver_sql(f"DROP TRIGGER test_fail_at_commit ON {table}")


def snapshot() -> dict[str, list[Any]]:
    with db.engine.connect() as connection:
        return {
            table: sorted(
                map(tuple, connection.exec_driver_sql(f"SELECT * FROM {table}").all()), key=repr
            )
            for table in WATCHED
        }


@dataclass
class Change:
    run: Callable[[], Any]
    table: str  # where the change itself is written
    told: list[tuple[str, int]]  # (type, recipient) of its events, in order


def check_wiring(change: Change) -> None:
    before = snapshot()
    for table in ("events", change.table):
        with failing_at_commit(table), pytest.raises((DBAPIError, psycopg.Error), match=INJECTED):
            change.run()
        db.session.rollback()
        assert snapshot() == before, f"a failure at commit on {table} left something behind"
    change.run()
    db.session.rollback()
    assert types_told() == change.told
    assert snapshot() != before


def user(user_id: int) -> User:
    return db.session.get(User, user_id, populate_existing=True)


@pytest.fixture
def parties(live_app) -> Iterator[tuple[int, int, int]]:
    with live_app.app_context():
        owner, doer, rival = (UserFactory(display_name=name) for name in ("Olga", "Ada", "Rita"))
        yield owner.id, doer.id, rival.id
        db.session.remove()


def test_cancelling_a_job(parties):
    owner, *_ = parties
    job = JobFactory(owner=owner).id
    check_wiring(
        Change(lambda: transitions.cancel_job(user(owner), job), "jobs", [("job.cancelled", owner)])
    )


def test_placing_a_bid(parties):
    owner, doer, _ = parties
    job = JobFactory(owner=owner, kind="manual").id

    def place() -> None:
        bids.place_bid(
            job,
            user(doer),
            proposed_deadline=date.today() + timedelta(days=3),
            fee=Decimal("50.00"),
            currency="USD",
        )

    check_wiring(Change(place, "bids", [("bid.placed", owner)]))


def test_withdrawing_a_bid(parties):
    owner, doer, _ = parties
    bid = BidFactory(job=JobFactory(owner=owner, kind="manual"), bidder=doer)
    job_id, bid_id = bid.job_id, bid.id
    check_wiring(
        Change(
            lambda: bids.withdraw_bid(job_id, bid_id, user(doer)),
            "bids",
            [("bid.withdrawn", owner)],
        )
    )


def test_accepting_a_bid_tells_the_winner_and_every_other_bidder(parties):
    owner, doer, rival = parties
    job = JobFactory(owner=owner, kind="manual")
    winner = BidFactory(job=job, bidder=doer).id
    BidFactory(job=job, bidder=rival)
    job_id = job.id
    check_wiring(
        Change(
            lambda: bids.accept_bid(job_id, winner, user(owner)),
            "bids",
            [("bid.accepted", doer), ("bid.rejected", rival)],
        )
    )


def assigned_job(owner: int, doer: int, **fields: Any) -> int:
    job = JobFactory(owner=owner, kind="manual", status=JobStatus.IN_PROGRESS, **fields)
    BidFactory(job=job, bidder=doer, status=BidStatus.ACCEPTED)
    return job.id


def test_delivering_a_job(parties):
    owner, doer, _ = parties
    job = assigned_job(owner, doer)
    check_wiring(
        Change(
            lambda: transitions.deliver(user(doer), job, {"text": "done"}, "Here it is."),
            "jobs",
            [("job.completed", owner)],
        )
    )


def test_giving_a_job_back_withdraws_the_bid_too(parties):
    owner, doer, _ = parties
    job = assigned_job(owner, doer)
    check_wiring(
        Change(
            lambda: transitions.release(user(doer), job),
            "jobs",
            [("job.released", owner), ("bid.withdrawn", owner)],
        )
    )


def test_reviewing(parties):
    owner, doer, _ = parties
    job = JobFactory(owner=owner, kind="manual", status=JobStatus.COMPLETED, assignee_id=doer).id
    check_wiring(
        Change(
            lambda: create_review(user(owner), job, 5, "Careful work."),
            "reviews",
            [("review.received", doer)],
        )
    )


def test_a_subscription_ending(parties):
    owner, *_ = parties
    subscriber = user(owner)
    subscriber.plan_name = db.session.get(Plan, "pro").name
    subscriber.plan_ends_at = datetime.now(UTC) - timedelta(minutes=1)
    db.session.commit()
    check_wiring(
        Change(lambda: process_subscriptions(datetime.now(UTC)), "users", [("plan.ended", owner)])
    )


def test_a_deadline_reminder(parties):
    owner, doer, _ = parties
    due = date.today() + timedelta(days=1)
    job = assigned_job(owner, doer, due_date=due, reminder_queue_job_id=1)
    check_wiring(
        Change(lambda: remind_due_soon(job, due.isoformat()), "jobs", [("job.due_soon", doer)])
    )


def running_job(owner: int, **fields: Any) -> int:
    return JobFactory(owner=owner, status=JobStatus.IN_PROGRESS, attempts=1, **fields).id


def test_a_processor_completing_a_job(parties):
    owner, *_ = parties
    job = running_job(owner)

    def complete() -> None:
        assert transitions.complete(job, 1, {"n": 1}, 5)
        db.session.commit()

    check_wiring(Change(complete, "job_results", [("job.completed", owner)]))


@pytest.mark.parametrize(
    ("max_attempts", "told"), [(1, "job.failed"), (3, "job.retrying")], ids=["last", "retry"]
)
def test_a_failed_attempt(parties, max_attempts, told):
    owner, *_ = parties
    job = running_job(owner, max_attempts=max_attempts)
    check_wiring(
        Change(
            lambda: processing.store_failure(job, 1, "ValueError: bad", 5), "jobs", [(told, owner)]
        )
    )


def test_the_workers_completion_on_its_own_connection(parties, live_app):
    """`complete_async`: the worker's autocommit connection, the completion pipelined with
    its event in one transaction."""
    owner, *_ = parties
    job = running_job(owner)

    async def complete() -> None:
        url = live_app.config["DATABASE_URL_FOR_WORKER"]
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
            assert await transitions.complete_async(connection, job, 1, {"n": 2}, 7)

    check_wiring(Change(lambda: asyncio.run(complete()), "jobs", [("job.completed", owner)]))
