"""Jobs through the real queue: `python -m workers` processes what the API committed.

Kept few and short (each starts a worker process): timeliness and results, cancellation,
retries, a worker killed mid-job, cancel racing the pickup, the report's email, pruning.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, text

from jobboard.extensions import db
from jobboard.models import Job, JobStatus, User, now_utc
from tests.support.jobs import Api, create_job, parse
from tests.support.polling import wait_until
from tests.support.smtp import body_of

logger = logging.getLogger(__name__)

# Retries in these tests wait 0.2 s, 0.4 s, ... instead of 2 s, 4 s, ...
FAST_RETRIES = {"JOB_RETRY_BASE_SECONDS": "0.2"}


@pytest.fixture
def api(live_app, live_client, make_live_user) -> Api:
    # make_live_user's object comes back detached and expired: look the id up instead.
    make_live_user(email="owner@example.com")
    with live_app.app_context():
        owner_id = db.session.scalar(select(User.id).where(User.email == "owner@example.com"))
    return Api(live_app, live_client, owner_id)


def lateness(job: dict) -> timedelta:
    return parse(job["started_at"]) - parse(job["scheduled_time"])


def test_scheduled_jobs_start_on_time_and_store_their_results(api, start_worker):
    start_worker()
    cancelled = api.create(now_utc() + timedelta(seconds=1.5), name="never runs")
    assert api.cancel(cancelled["id"]).status_code == 200
    # Spread over a second, each counted from its own creation (a loaded CI machine is slow).
    jobs = [
        api.create(now_utc() + timedelta(seconds=0.8 + 0.3 * i), params={"n": i}) for i in range(4)
    ]

    done = [api.wait_for_status(job["id"], "completed") for job in jobs]

    late = [lateness(job) for job in done]
    logger.warning(
        "lateness (start - scheduled_time): %s", [f"{d.total_seconds():.3f}s" for d in late]
    )
    for job, delay in zip(done, late, strict=True):
        assert timedelta(0) <= delay < timedelta(seconds=1), job
        assert job["attempts"] == 1
        result = api.result(job["id"])
        assert result.status_code == 200
        assert result.get_json()["output"] == job["params"]

    # Its time has passed, and the second in which it would have started: it never ran.
    wait_until(lambda: now_utc() > parse(cancelled["scheduled_time"]) + timedelta(seconds=1))
    never = api.job(cancelled["id"])
    assert never["status"] == "cancelled"
    assert never["started_at"] is None and never["attempts"] == 0
    assert api.result(cancelled["id"]).status_code == 409
    # Finished jobs cannot be cancelled any more.
    response = api.cancel(done[0]["id"])
    assert response.status_code == 409
    assert "completed" in response.get_json()["message"]


def test_retries_until_success_or_the_last_attempt(api, start_worker):
    start_worker(**FAST_RETRIES)
    soon = now_utc() + timedelta(seconds=0.3)
    flaky = api.create(soon, kind="flaky", params={"fail_times": 1})
    hopeless = api.create(soon, kind="flaky", params={"fail_times": 10}, max_attempts=2)

    recovered = api.wait_for_status(flaky["id"], "completed")
    assert recovered["attempts"] == 2
    assert "planned failure of attempt 1" in recovered["last_error"]
    assert api.result(flaky["id"]).get_json()["output"] == {"attempts": 2}

    failed = api.wait_for_status(hopeless["id"], "failed")
    assert failed["attempts"] == 2
    assert "planned failure of attempt 2" in failed["last_error"]
    assert "failed" in api.result(hopeless["id"]).get_json()["message"]

    response = api.retry(hopeless["id"])
    assert response.status_code == 202
    assert response.get_json()["status"] == "pending"
    again = wait_until(
        lambda: (
            (job := api.job(hopeless["id"]))["status"] == "failed"
            and parse(job["finished_at"]) > parse(failed["finished_at"])
            and job
        ),
        timeout=15,
    )
    assert again["attempts"] == 2


def test_a_job_whose_worker_is_killed_is_recovered_and_completes(api, start_worker):
    first = start_worker()
    job = api.create(now_utc() + timedelta(seconds=0.2), kind="sleep", params={"seconds": 2})
    api.wait_for_status(job["id"], "in_progress")

    first.kill()
    start_worker()

    # Dead after 3 s without heartbeat, noticed by the check that runs every 5 s.
    recovered = api.wait_for_status(job["id"], "completed", timeout=30)
    assert recovered["attempts"] == 2
    assert recovered["last_error"] == "worker stopped during attempt 1"
    assert api.result(job["id"]).get_json()["output"] == {"slept": 2.0}


def test_cancel_racing_the_pickup_either_cancels_or_runs_never_both(api, start_worker):
    start_worker()
    # Cancels fired from 30 ms before to 60 ms after each job comes due, where the worker's
    # 50 ms poll picks it up: the early ones win, the late ones find it started or done.
    offsets = [timedelta(milliseconds=ms) for ms in range(-30, 61, 6)]
    answers: dict[int, int] = {}

    def cancel_at(job_id: int, at: datetime) -> None:
        client = api.app.test_client()
        wait_until(lambda: now_utc() >= at, timeout=10, interval=0.001)
        answers[job_id] = api.cancel(job_id, client).status_code

    jobs, threads = [], []
    for i, offset in enumerate(offsets):
        job = api.create(now_utc() + timedelta(seconds=1), name=f"race {i}")
        due = parse(job["scheduled_time"])
        thread = threading.Thread(target=cancel_at, args=(job["id"], due + offset))
        thread.start()
        jobs.append(job)
        threads.append(thread)
    for thread in threads:
        thread.join()

    outcomes = {"cancelled": 0, "completed": 0}
    for job in jobs:
        final = api.wait_for_status(job["id"], "cancelled", "completed")
        result = api.result(job["id"])
        if final["status"] == "cancelled":
            assert answers[job["id"]] == 200
            assert final["started_at"] is None and final["attempts"] == 0
            assert result.status_code == 409
        else:
            assert answers[job["id"]] == 409
            assert final["attempts"] == 1
            assert result.status_code == 200
        outcomes[final["status"]] += 1
    logger.warning("cancel vs pickup: %s", outcomes)


def test_report_emails_the_owner(api, start_worker, mailbox):
    start_worker()
    job = api.create(now_utc() + timedelta(seconds=1), kind="report")

    done = api.wait_for_status(job["id"], "completed")
    message = mailbox.wait_for(lambda m: "owner@example.com" in m["To"])

    output = api.result(done["id"]).get_json()["output"]
    assert output["emailed"] == "owner@example.com"
    assert output["counts"]["in_progress"] == 1
    assert "in_progress" in body_of(message)


def test_pruning_deletes_queue_rows_finished_long_ago(live_app, make_live_user, start_worker):
    from jobboard import queue
    from workers.app import QUEUE_MAINTENANCE

    make_live_user(email="pruned@example.com")
    with live_app.app_context():
        owner_id = db.session.scalar(select(User.id).where(User.email == "pruned@example.com"))
        old, recent = (create_job(owner_id, status=JobStatus.COMPLETED) for _ in range(2))
        db.session.execute(
            text(
                "UPDATE procrastinate_events SET at = now() - interval '2 days' WHERE job_id = :id"
            ),
            {"id": old.queue_job_id},
        )
        # What the hourly periodic task does, deferred now instead of at minute 17.
        queue.defer("prune_finished_queue_jobs", queue=QUEUE_MAINTENANCE, timestamp=0)
        db.session.commit()
        old_entry, recent_entry, old_job = old.queue_job_id, recent.queue_job_id, old.id

    start_worker()

    def remaining_entries() -> set[int]:
        with live_app.app_context():
            rows = db.session.execute(text("SELECT id FROM procrastinate_jobs")).scalars()
            return set(rows)

    wait_until(lambda: old_entry not in remaining_entries())
    assert recent_entry in remaining_entries()
    with live_app.app_context():
        assert db.session.get(Job, old_job) is not None  # our rows are not the queue's
