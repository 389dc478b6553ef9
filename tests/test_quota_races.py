"""Quotas under concurrency: two requests of one user at the limit, each on its own
database connection, provably running at the same time (both queued behind a lock on the
user's row held from a third connection). Exactly one may pass."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text
from werkzeug.test import TestResponse

from config import libpq_url
from jobboard import quotas
from jobboard.extensions import db
from jobboard.models import Bid, Job, User, now_utc
from tests.support.auth import bearer
from tests.support.bids import bid_payload, make_live_job
from tests.support.database import lock_waiting_queries
from tests.support.factories import JobFactory, PlanFactory
from tests.support.jobs import payload
from tests.support.polling import wait_until
from tests.support.races import behind_a_row_lock


@pytest.fixture
def database_url(live_app) -> str:
    return live_app.config["DATABASE_URL_FOR_WORKER"]


def put_on_plan(live_app: Flask, user: User, **limits: int) -> dict[str, str]:
    with live_app.app_context():
        plan = PlanFactory(name=f"race-{user.id}", **limits)
        db.session.get(User, user.id).plan_name = plan.name
        db.session.commit()
        return bearer(user)


def race(
    live_app: Flask,
    database_url: str,
    user_id: int,
    calls: list[Callable[[FlaskClient], TestResponse]],
    queued: Callable[[], object] | None = None,
) -> list[TestResponse]:
    lock = "SELECT id FROM users WHERE id = %s FOR UPDATE"
    return behind_a_row_lock(live_app, database_url, lock, user_id, calls, queued)


def count(live_app: Flask, model, **where) -> int:
    with live_app.app_context():
        query = select(func.count()).select_from(model)
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        return db.session.scalar(query)


def create(
    headers: dict[str, str], idempotency_key: str | None = None
) -> Callable[[FlaskClient], TestResponse]:
    if idempotency_key is not None:
        headers = {**headers, "Idempotency-Key": idempotency_key}
    return lambda client: client.post("/api/jobs/", json=payload(), headers=headers)


def test_two_creates_racing_for_the_last_open_job_let_exactly_one_through(
    live_app, live_client, database_url, make_live_user
):
    owner = make_live_user()
    headers = put_on_plan(live_app, owner, max_open_jobs=3)
    for _ in range(2):
        assert live_client.post("/api/jobs/", json=payload(), headers=headers).status_code == 201

    responses = race(live_app, database_url, owner.id, [create(headers), create(headers)])

    assert sorted(r.status_code for r in responses) == [201, 429]
    refused = next(r for r in responses if r.status_code == 429)
    assert "max_open_jobs" in refused.get_json()["message"]
    assert count(live_app, Job, owner_id=owner.id) == 3


def test_two_creates_racing_for_the_last_job_of_the_day_let_exactly_one_through(
    live_app, live_client, database_url, make_live_user
):
    owner = make_live_user()
    headers = put_on_plan(live_app, owner, jobs_per_day=2)
    assert live_client.post("/api/jobs/", json=payload(), headers=headers).status_code == 201

    responses = race(live_app, database_url, owner.id, [create(headers), create(headers)])

    assert sorted(r.status_code for r in responses) == [201, 429]
    refused = next(r for r in responses if r.status_code == 429)
    assert "jobs_per_day" in refused.get_json()["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert count(live_app, Job, owner_id=owner.id) == 2


def test_creates_wait_for_the_owners_lock_in_their_first_statement_and_count_after_it(
    live_app, live_client, database_url, make_live_user
):
    """POST /api/jobs/ takes the owner's row lock in its token lookup, the first statement
    of its transaction, and counts the quotas in the INSERT that follows: a statement that
    waited for the lock would see only its snapshot from before the wait. With and without
    an Idempotency-Key (which adds statements between the two), one of two creates racing
    for the last open job passes."""
    owner = make_live_user()
    headers = put_on_plan(live_app, owner, max_open_jobs=2)
    assert live_client.post("/api/jobs/", json=payload(), headers=headers).status_code == 201
    waiting: list[str] = []

    responses = race(
        live_app,
        database_url,
        owner.id,
        [create(headers), create(headers, idempotency_key="the-last-one")],
        queued=lambda: waiting.extend(lock_waiting_queries(database_url)),
    )

    assert len(waiting) == 2
    for statement in waiting:
        assert "revoked_tokens" in statement and "FOR NO KEY UPDATE OF users" in statement
        assert "FROM jobs" not in statement
    assert sorted(r.status_code for r in responses) == [201, 429]
    assert count(live_app, Job, owner_id=owner.id) == 2
    # The refused job has no queue entry either.
    with live_app.app_context():
        entries = db.session.scalar(
            text("SELECT count(*) FROM procrastinate_jobs WHERE (args->>'owner_id')::int = :id"),
            {"id": owner.id},
        )
    assert entries == 2


def test_a_time_ahead_when_the_create_arrived_is_not_refused_for_the_wait_on_the_lock(
    live_app, database_url, make_live_user
):
    """The owner's row lock is taken before the view runs; the scheduled_time check is
    against the request's arrival, as it was when the lock came after the check."""
    owner = make_live_user()
    with live_app.app_context():
        headers = bearer(owner)

    scheduled = now_utc() + timedelta(seconds=1)

    def create_a_second_ahead(client: FlaskClient) -> TestResponse:
        body = payload(scheduled_time=scheduled.isoformat())
        return client.post("/api/jobs/", json=body, headers=headers)

    # Released once the time has passed while the create waits behind the lock.
    (response,) = race(
        live_app,
        database_url,
        owner.id,
        [create_a_second_ahead],
        queued=lambda: wait_until(lambda: now_utc() > scheduled, timeout=5),
    )

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["scheduled_time"] < now_utc().isoformat()


def test_two_bids_racing_for_the_last_bid_of_the_day_let_exactly_one_through(
    live_app, database_url, make_live_user
):
    poster = make_live_user()
    bidder = make_live_user()
    headers = put_on_plan(live_app, bidder, bids_per_day=1)
    jobs = [make_live_job(live_app, poster) for _ in range(2)]

    def place(job_id: int) -> Callable[[FlaskClient], TestResponse]:
        return lambda client: client.post(
            f"/api/jobs/{job_id}/bids/", json=bid_payload(), headers=headers
        )

    responses = race(live_app, database_url, bidder.id, [place(jobs[0].id), place(jobs[1].id)])

    assert sorted(r.status_code for r in responses) == [201, 429]
    assert count(live_app, Bid, bidder_id=bidder.id) == 1


def test_another_users_create_is_not_held_by_a_users_quota_lock(
    live_app, live_client, database_url, make_live_user
):
    owner = make_live_user()
    other = make_live_user()
    with live_app.app_context():
        headers = bearer(other)
    with psycopg.connect(libpq_url(database_url)) as lock_holder:
        lock_holder.execute("SELECT id FROM users WHERE id = %s FOR UPDATE", (owner.id,))
        response = live_client.post("/api/jobs/", json=payload(), headers=headers)
        lock_holder.rollback()
    assert response.status_code == 201


def make_failed_jobs(live_app: Flask, owner: User, count: int) -> list[int]:
    """Failed jobs of `owner`, created yesterday (they do not count as today's)."""
    with live_app.app_context():
        yesterday = now_utc() - timedelta(days=1)
        jobs = [JobFactory(owner=owner.id, failed=True, created_at=yesterday) for _ in range(count)]
        return [job.id for job in jobs]


def retry(headers: dict[str, str], job_id: int) -> Callable[[FlaskClient], TestResponse]:
    return lambda client: client.post(f"/api/jobs/{job_id}/retry/", headers=headers)


def test_two_retries_racing_for_the_last_open_job_let_exactly_one_through(
    live_app, live_client, database_url, make_live_user
):
    owner = make_live_user()
    headers = put_on_plan(live_app, owner, max_open_jobs=2)
    assert live_client.post("/api/jobs/", json=payload(), headers=headers).status_code == 201
    first, second = make_failed_jobs(live_app, owner, 2)

    responses = race(
        live_app, database_url, owner.id, [retry(headers, first), retry(headers, second)]
    )

    assert sorted(r.status_code for r in responses) == [202, 429]
    refused = next(r for r in responses if r.status_code == 429)
    assert "max_open_jobs" in refused.get_json()["message"]
    assert count(live_app, Job, owner_id=owner.id, status="pending") == 2


def test_a_retry_and_a_create_racing_for_the_last_job_of_the_day_let_exactly_one_through(
    live_app, live_client, database_url, make_live_user
):
    owner = make_live_user()
    headers = put_on_plan(live_app, owner, jobs_per_day=2)
    assert live_client.post("/api/jobs/", json=payload(), headers=headers).status_code == 201
    (failed,) = make_failed_jobs(live_app, owner, 1)

    responses = race(live_app, database_url, owner.id, [retry(headers, failed), create(headers)])

    assert sorted(r.status_code for r in responses) in ([201, 429], [202, 429])
    refused = next(r for r in responses if r.status_code == 429)
    assert "jobs_per_day" in refused.get_json()["message"]
    with live_app.app_context():
        assert quotas.usage_of(owner.id).jobs_today == 2
