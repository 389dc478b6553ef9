"""Jobs done by people under concurrency: real requests on their own connections, and the
real worker, lined up behind a row lock so that they provably meet."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from config import libpq_url
from jobboard.extensions import db
from jobboard.models import Bid, BidStatus, Job, JobResult, JobStatus, now_utc
from tests.support.bids import BidsApi, bid_payload, live_headers, make_live_job, run_at_once
from tests.support.database import lock_waiters
from tests.support.events import queued_event_emails
from tests.support.polling import wait_until


@pytest.fixture
def database_url(live_app) -> str:
    return live_app.config["DATABASE_URL_FOR_WORKER"]


@pytest.fixture
def parties(live_app, make_live_user):
    owner = make_live_user(display_name="Paula")
    assignee = make_live_user(display_name="Bob")
    headers = {
        "owner": live_headers(live_app, owner),
        "assignee": live_headers(live_app, assignee),
    }
    return owner, assignee, headers


def award(live_app, client: FlaskClient, headers, job_id: int) -> int:
    api = BidsApi(client)
    bid = api.place(headers["assignee"], job_id).get_json()
    assert api.accept(headers["owner"], job_id, bid["id"]).status_code == 200
    return bid["id"]


def job_row(live_app, job_id: int) -> Job:
    with live_app.app_context():
        job = db.session.get(Job, job_id)
        db.session.expunge(job)
        return job


def results_of(live_app, job_id: int) -> int:
    with live_app.app_context():
        return db.session.scalar(
            select(func.count()).select_from(JobResult).where(JobResult.job_id == job_id)
        )


def emails_queued(live_app, type_name: str) -> int:
    with live_app.app_context():
        return len(queued_event_emails(type_name))


def deliver_call(headers, job_id: int, text_value: str):
    def call(client: FlaskClient):
        return client.post(
            f"/api/jobs/{job_id}/deliver/",
            json={"output": {"text": text_value}},
            headers=headers["assignee"],
        )

    return call


def test_two_deliveries_racing_one_wins(live_app, live_client, database_url, parties):
    owner, _assignee, headers = parties
    job = make_live_job(live_app, owner, kind="manual")
    award(live_app, live_client, headers, job.id)

    statuses = run_at_once(
        live_app,
        database_url,
        job.id,
        [deliver_call(headers, job.id, "first"), deliver_call(headers, job.id, "second")],
    )

    assert sorted(statuses) == [200, 409]
    winner = "first" if statuses[0] == 200 else "second"
    assert job_row(live_app, job.id).status == JobStatus.COMPLETED
    assert results_of(live_app, job.id) == 1
    with live_app.app_context():
        assert db.session.get(JobResult, job.id).output == {"text": winner}
    assert emails_queued(live_app, "job.completed") == 1


def test_release_racing_delivery_leaves_one_clean_outcome(
    live_app, live_client, database_url, parties
):
    owner, _assignee, headers = parties
    job = make_live_job(live_app, owner)
    bid_id = award(live_app, live_client, headers, job.id)

    def release(client: FlaskClient):
        return client.post(f"/api/jobs/{job.id}/release/", headers=headers["owner"])

    deliver_status, release_status = run_at_once(
        live_app, database_url, job.id, [deliver_call(headers, job.id, "work"), release]
    )

    stored = job_row(live_app, job.id)
    with live_app.app_context():
        bid_status = db.session.get(Bid, bid_id).status
    if deliver_status == 200:
        # Delivered first: the owner's release came too late.
        assert release_status == 409
        assert (stored.status, stored.assignee_id is not None) == (JobStatus.COMPLETED, True)
        assert bid_status == BidStatus.ACCEPTED
        assert results_of(live_app, job.id) == 1
    else:
        # Released first: Bob is no longer the assignee, his delivery is 404.
        assert (deliver_status, release_status) == (404, 200)
        assert (stored.status, stored.assignee_id) == (JobStatus.PENDING, None)
        assert bid_status == BidStatus.WITHDRAWN
        assert results_of(live_app, job.id) == 0
        assert stored.queue_job_id is not None


def test_two_reviews_by_one_party_racing_one_wins(live_app, live_client, database_url, parties):
    owner, _assignee, headers = parties
    job = make_live_job(live_app, owner, kind="manual")
    award(live_app, live_client, headers, job.id)
    assert deliver_call(headers, job.id, "x")(live_client).status_code == 200

    def review(client: FlaskClient):
        return client.post(
            f"/api/jobs/{job.id}/reviews/", json={"rating": 5}, headers=headers["owner"]
        )

    assert sorted(run_at_once(live_app, database_url, job.id, [review, review])) == [201, 409]


# --- racing the real worker -----------------------------------------------------------------


def entry_status(database_url: str, entry_id: int) -> str:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        return conn.execute(
            "SELECT status::text FROM procrastinate_jobs WHERE id = %s", (entry_id,)
        ).fetchone()[0]


def race_with_pickup(live_app, database_url: str, job_id: int, entry_id: int, call, call_first):
    """Hold the job's row lock while the worker takes the due entry (and waits for the
    lock in its conditional start) and `call` runs in a thread (waiting too), in the order
    given; then let go. PostgreSQL grants the row to the waiters in their order."""
    answer: list = []

    def run() -> None:
        answer.append(call(live_app.test_client()).status_code)

    thread = threading.Thread(target=run, daemon=True)
    with psycopg.connect(libpq_url(database_url)) as holder:
        holder.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
        if call_first:
            thread.start()
            wait_until(lambda: lock_waiters(database_url) >= 1)
        wait_until(lambda: entry_status(database_url, entry_id) == "doing", timeout=30)
        if not call_first:
            wait_until(lambda: lock_waiters(database_url) >= 1)
            thread.start()
        wait_until(lambda: lock_waiters(database_url) >= 2)
        holder.rollback()
    thread.join(timeout=30)
    return answer[0]


def post_due_soon(live_client, headers) -> dict:
    body = {
        "name": "due soon",
        "kind": "echo",
        "params": {"n": 1},
        "scheduled_time": (now_utc() + timedelta(seconds=1.5)).isoformat(),
    }
    response = live_client.post("/api/jobs/", json=body, headers=headers["owner"])
    assert response.status_code == 201
    return response.get_json()


def settled(live_app, job_id: int, statuses) -> Job:
    return wait_until(
        lambda: (job := job_row(live_app, job_id)).status in statuses and job, timeout=20
    )


@pytest.mark.parametrize("patch_first", [True, False], ids=["patch-first", "worker-first"])
def test_reschedule_racing_the_worker_pickup(
    live_app, live_client, database_url, parties, start_worker, patch_first
):
    _owner, _assignee, headers = parties
    start_worker()
    job = post_due_soon(live_client, headers)
    old_entry = job_row(live_app, job["id"]).queue_job_id
    new_time = now_utc() + timedelta(hours=1)

    def move(client: FlaskClient):
        return client.patch(
            f"/api/jobs/{job['id']}/",
            json={"scheduled_time": new_time.isoformat()},
            headers=headers["owner"],
        )

    status = race_with_pickup(live_app, database_url, job["id"], old_entry, move, patch_first)

    if patch_first:
        assert status == 200
        # The worker's entry was superseded: the job never ran at the old time.
        wait_until(lambda: entry_status(database_url, old_entry) == "succeeded")
        stored = job_row(live_app, job["id"])
        assert (stored.status, stored.attempts) == (JobStatus.PENDING, 0)
        assert stored.scheduled_time == new_time
        assert entry_status(database_url, stored.queue_job_id) == "todo"
        assert results_of(live_app, job["id"]) == 0
    else:
        assert status == 409
        stored = settled(live_app, job["id"], {JobStatus.COMPLETED})
        assert stored.attempts == 1  # ran once, at its time
        assert results_of(live_app, job["id"]) == 1


@pytest.mark.parametrize("accept_first", [True, False], ids=["accept-first", "worker-first"])
def test_accept_racing_the_worker_pickup(
    live_app, live_client, database_url, parties, start_worker, accept_first
):
    _owner, assignee, headers = parties
    start_worker()
    job = post_due_soon(live_client, headers)
    old_entry = job_row(live_app, job["id"]).queue_job_id
    bid = BidsApi(live_client).place(headers["assignee"], job["id"], **bid_payload()).get_json()

    def accept(client: FlaskClient):
        return BidsApi(client).accept(headers["owner"], job["id"], bid["id"])

    status = race_with_pickup(live_app, database_url, job["id"], old_entry, accept, accept_first)

    if accept_first:
        assert status == 200
        wait_until(lambda: entry_status(database_url, old_entry) == "succeeded")
        stored = job_row(live_app, job["id"])
        # Handed to Bob; the queue never ran it.
        assert (stored.status, stored.assignee_id, stored.attempts) == (
            JobStatus.IN_PROGRESS,
            assignee.id,
            0,
        )
        assert results_of(live_app, job["id"]) == 0
    else:
        assert status == 409
        stored = settled(live_app, job["id"], {JobStatus.COMPLETED})
        assert stored.assignee_id is None
        with live_app.app_context():
            assert db.session.get(Bid, bid["id"]).status == BidStatus.PENDING
