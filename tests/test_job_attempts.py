"""Every attempt of a job, kept: written by the transitions that change the job (in this
process and by the real worker, a retry, a worker killed mid-attempt), and read through
GET /api/jobs/<id>/attempts/ by the owner, the assignee and admins only."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from jobboard.extensions import db
from jobboard.jobs import service
from jobboard.jobs.processing import Outcome, begin_attempt, run_attempt
from jobboard.models import Job, JobAttempt, JobStatus, User, now_utc
from tests.support.assignments import awarded_job
from tests.support.auth import bearer
from tests.support.jobs import Api, create_job, run_queued_attempt

FAST_RETRIES = {"JOB_RETRY_BASE_SECONDS": "0.2"}


def attempts(client, job_id: int, user) -> list[dict]:
    response = client.get(f"/api/jobs/{job_id}/attempts/", headers=bearer(user))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def rows(job_id: int) -> list[JobAttempt]:
    db.session.expire_all()
    return list(db.session.scalars(service.attempts_of(job_id)))


# --- in this process -----------------------------------------------------------------------


def test_a_completed_attempt_is_recorded_with_its_duration(client, verified_user):
    job = create_job(verified_user, params={"a": 1})
    before = now_utc()

    assert run_queued_attempt(job.id) == Outcome.COMPLETED

    [attempt] = attempts(client, job.id, verified_user)
    assert attempt["attempt"] == 1 and attempt["outcome"] == "completed"
    assert attempt["error"] is None and attempt["duration_ms"] >= 0
    assert before.isoformat() <= attempt["started_at"] <= attempt["finished_at"]
    [row] = rows(job.id)
    assert row.worker and ":" in row.worker  # host:pid
    job = db.session.get(Job, job.id)
    # Due at its queue entry's time (the job's scheduled time here), of the job's kind.
    assert row.kind == "echo" and row.due_at == job.scheduled_time
    assert row.duration_ms == job.result.duration_ms
    assert row.finished_at == job.finished_at


def test_failed_attempts_keep_their_errors_and_a_manual_retry_counts_again(
    client, app, verified_user, monkeypatch
):
    monkeypatch.setitem(app.config, "JOB_RETRY_BASE_SECONDS", 0)
    job = create_job(verified_user, kind="flaky", params={"fail_times": 2}, max_attempts=2)

    assert run_queued_attempt(job.id) == Outcome.RETRY_SCHEDULED
    [first] = attempts(client, job.id, verified_user)
    assert first["outcome"] == "failed" and "planned failure of attempt 1" in first["error"]
    assert run_queued_attempt(job.id) == Outcome.FAILED
    retried = client.post(f"/api/jobs/{job.id}/retry/", headers=bearer(verified_user))
    assert retried.status_code == 202, retried.get_json()
    assert run_queued_attempt(job.id) == Outcome.RETRY_SCHEDULED

    history = attempts(client, job.id, verified_user)
    assert [(a["attempt"], a["outcome"]) for a in history] == [
        (1, "failed"),
        (2, "failed"),
        (1, "failed"),
    ]
    assert "planned failure of attempt 2" in history[1]["error"]
    assert all(a["duration_ms"] is not None and a["finished_at"] for a in history)


def test_a_started_attempt_is_running_until_it_ends(client, verified_user):
    job = create_job(verified_user)
    begun = begin_attempt(job.id, db.session.get(Job, job.id).queue_job_id)
    assert begun.attempt == 1

    [attempt] = attempts(client, job.id, verified_user)
    assert attempt["outcome"] == "running"
    assert attempt["finished_at"] is None and attempt["duration_ms"] is None


def test_an_attempt_whose_worker_died_is_lost_and_the_next_one_recorded(client, verified_user):
    job = create_job(verified_user)
    queue_job_id = run_queued_start(job.id)

    # The stalled-job check re-queues the same entry: the next run finds the job in progress.
    assert run_attempt(job.id, queue_job_id=queue_job_id) == Outcome.COMPLETED

    history = attempts(client, job.id, verified_user)
    assert [(a["attempt"], a["outcome"]) for a in history] == [(1, "lost"), (2, "completed")]
    assert history[0]["error"] == "worker stopped during attempt 1"
    assert history[0]["duration_ms"] >= 0 and history[0]["finished_at"]


def test_a_lost_last_attempt_fails_the_job_and_stays_lost(client, verified_user):
    job = create_job(verified_user, max_attempts=1)
    queue_job_id = run_queued_start(job.id)

    assert run_attempt(job.id, queue_job_id=queue_job_id) == Outcome.FAILED

    [attempt] = attempts(client, job.id, verified_user)
    assert attempt["outcome"] == "lost"
    assert db.session.get(Job, job.id).status == JobStatus.FAILED


def run_queued_start(job_id: int) -> int:
    """Start the job's attempt as a worker does, and leave it running (its worker dies)."""
    queue_job_id = db.session.get(Job, job_id).queue_job_id
    begin_attempt(job_id, queue_job_id)
    return queue_job_id


def test_a_job_done_by_a_person_has_no_queue_attempts(client, make_user):
    owner, assignee = make_user(), make_user()
    job, _ = awarded_job(client, owner, assignee, kind="manual", params={})
    delivered = client.post(
        f"/api/jobs/{job['id']}/deliver/", json={"output": {}}, headers=bearer(assignee)
    )
    assert delivered.status_code == 200, delivered.get_json()
    assert attempts(client, job["id"], owner) == []


# --- who may read them ----------------------------------------------------------------------


def test_owner_assignee_and_admins_read_the_attempts_others_get_404(client, make_user):
    owner, assignee, admin, stranger = make_user(), make_user(), make_user(admin=True), make_user()
    job, _ = awarded_job(client, owner, assignee)
    for user in (owner, assignee, admin):
        assert attempts(client, job["id"], user) == []
    path = f"/api/jobs/{job['id']}/attempts/"
    response = client.get(path, headers=bearer(stranger))
    assert response.status_code == 404
    assert response.get_json()["message"] == f"Job {job['id']} not found."
    assert client.get(path).status_code == 401
    unverified = make_user(verified=False)
    assert client.get(path, headers=bearer(unverified)).status_code == 403
    assert client.get("/api/jobs/987654321/attempts/", headers=bearer(owner)).status_code == 404
    too_big = "/api/jobs/99999999999999999999/attempts/"
    assert client.get(too_big, headers=bearer(owner)).status_code == 404
    # Without the trailing slash too, no redirect.
    assert client.get(path.rstrip("/"), headers=bearer(owner)).status_code == 200


def test_the_attempts_are_a_paginated_list_with_an_etag(client, app, verified_user, monkeypatch):
    monkeypatch.setitem(app.config, "JOB_RETRY_BASE_SECONDS", 0)
    job = create_job(verified_user, kind="flaky", params={"fail_times": 2}, max_attempts=3)
    for _ in range(3):
        run_queued_attempt(job.id)
    path = f"/api/jobs/{job.id}/attempts/"
    headers = bearer(verified_user)

    page = client.get(f"{path}?page=2&page_size=2", headers=headers)
    assert page.status_code == 200
    assert [a["outcome"] for a in page.get_json()] == ["completed"]
    assert json.loads(page.headers["X-Pagination"])["total"] == 3
    assert client.get(f"{path}?page=9", headers=headers).get_json() == []
    assert client.get(f"{path}?page_size=101", headers=headers).status_code == 422
    assert client.get(f"{path}?page=0", headers=headers).status_code == 422

    first = client.get(path, headers=headers)
    again = client.get(path, headers={**headers, "If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""


# --- the real worker ------------------------------------------------------------------------


def _api(live_app, live_client, make_live_user) -> Api:
    make_live_user(email="attempts@example.com")
    with live_app.app_context():
        owner_id = db.session.scalar(select(User.id).where(User.email == "attempts@example.com"))
    return Api(live_app, live_client, owner_id)


def _history(api: Api, job_id: int) -> list[dict]:
    response = api.client.get(f"/api/jobs/{job_id}/attempts/", headers=api.headers)
    assert response.status_code == 200
    return response.get_json()


def test_the_worker_records_each_attempt_retries_included(
    live_app, live_client, make_live_user, start_worker
):
    api = _api(live_app, live_client, make_live_user)
    start_worker(**FAST_RETRIES)
    soon = now_utc() + timedelta(seconds=0.2)
    echo = api.create(soon, params={"x": 1})
    flaky = api.create(soon, kind="flaky", params={"fail_times": 1})

    api.wait_for_status(echo["id"], "completed")
    api.wait_for_status(flaky["id"], "completed")

    [done] = _history(api, echo["id"])
    assert done["outcome"] == "completed" and done["duration_ms"] >= 0
    history = _history(api, flaky["id"])
    assert [(a["attempt"], a["outcome"]) for a in history] == [(1, "failed"), (2, "completed")]
    assert "planned failure of attempt 1" in history[0]["error"]
    with live_app.app_context():
        attempt_rows = rows(flaky["id"])
    assert len({row.worker for row in attempt_rows}) == 1 and attempt_rows[0].worker
    # Each attempt was due at its entry's time: the retry's after the backoff, not the
    # job's first scheduled time; lateness (start - due) is small and never negative.
    for row in attempt_rows:
        assert timedelta(0) <= row.started_at - row.due_at < timedelta(seconds=5), row.__dict__
    assert attempt_rows[1].due_at > attempt_rows[0].finished_at


def test_an_attempt_of_a_killed_worker_is_recorded_lost(
    live_app, live_client, make_live_user, start_worker
):
    api = _api(live_app, live_client, make_live_user)
    first = start_worker()
    job = api.create(now_utc() + timedelta(seconds=0.2), kind="sleep", params={"seconds": 2})
    api.wait_for_status(job["id"], "in_progress")
    assert [a["outcome"] for a in _history(api, job["id"])] == ["running"]

    first.kill()  # SIGKILL: the attempt never ends by itself
    start_worker()

    api.wait_for_status(job["id"], "completed", timeout=30)
    history = _history(api, job["id"])
    assert [(a["attempt"], a["outcome"]) for a in history] == [(1, "lost"), (2, "completed")]
    assert history[0]["error"] == "worker stopped during attempt 1"
    with live_app.app_context():
        lost, completed = rows(job["id"])
    assert lost.worker != completed.worker
