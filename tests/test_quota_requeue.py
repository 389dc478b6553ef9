"""A job going back to the queue counts against the owner's quotas like a new one: retry,
release and run-now (PATCH with `scheduled_time: null`) need a place within
`max_open_jobs` (the owner's other open jobs, pending or in progress, fewer than the
limit), and a retry one within `jobs_per_day` (jobs created and retried since 00:00 UTC).
Each at its edge; the races are in test_quota_races.py."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, text, update

from jobboard.extensions import db
from jobboard.models import Job, JobStatus, Plan, User, now_utc
from jobboard.quotas import seconds_to_next_utc_day
from tests.support.assignments import awarded_job, release
from tests.support.auth import bearer
from tests.support.factories import JobFactory, PlanFactory
from tests.support.jobs import in_future, parse, payload, set_queue_status


def on_plan(user: User, **limits: int) -> Plan:
    plan = PlanFactory(name=f"requeue-{user.id}", **limits)
    db.session.get(User, user.id).plan_name = plan.name
    db.session.commit()
    return plan


def post_job(client, headers, **overrides) -> dict:
    response = client.post("/api/jobs/", json=payload(**overrides), headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def queue_entries(job_id: int) -> int:
    return db.session.scalar(
        text(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'process_job'"
            " AND (args->>'job_id')::bigint = :id"
        ),
        {"id": job_id},
    )


def status_of(job_id: int) -> str:
    db.session.expire_all()
    return db.session.get(Job, job_id).status


def open_jobs(user: User) -> int:
    return db.session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.owner_id == user.id, Job.status.in_([JobStatus.PENDING, JobStatus.IN_PROGRESS]))
    )


def fail_again(job_id: int) -> None:
    """The job's new round of attempts failed: the job failed, its queue entry finished."""
    db.session.execute(update(Job).where(Job.id == job_id).values(status=JobStatus.FAILED))
    set_queue_status(db.session.get(Job, job_id).queue_job_id, "succeeded")


# --- retry --------------------------------------------------------------------------------


def test_retries_at_max_open_jobs_are_429_like_a_create(client, verified_user):
    """The attack: at the limit of open jobs, each retry of a failed job put one more in
    the queue (109 of 100). A retry needs a place as a create does."""
    on_plan(verified_user, max_open_jobs=3)
    headers = bearer(verified_user)
    created = [post_job(client, headers) for _ in range(3)]
    failed = [JobFactory(owner=verified_user, failed=True) for _ in range(2)]

    refused = client.post(f"/api/jobs/{failed[0].id}/retry/", headers=headers)

    assert refused.status_code == 429
    body = refused.get_json()
    assert "max_open_jobs" in body["message"] and "3" in body["message"]
    assert int(refused.headers["Retry-After"]) > 0
    assert status_of(failed[0].id) == JobStatus.FAILED
    assert queue_entries(failed[0].id) == 0
    assert open_jobs(verified_user) == 3
    # One cancel makes room for exactly one retry.
    assert client.delete(f"/api/jobs/{created[0]['id']}/", headers=headers).status_code == 200
    assert client.post(f"/api/jobs/{failed[0].id}/retry/", headers=headers).status_code == 202
    assert client.post(f"/api/jobs/{failed[1].id}/retry/", headers=headers).status_code == 429
    assert open_jobs(verified_user) == 3


def test_retries_count_against_jobs_per_day_and_so_do_creates_after_them(client, verified_user):
    on_plan(verified_user, jobs_per_day=3)
    headers = bearer(verified_user)
    yesterday = now_utc() - timedelta(days=1)
    failed = [JobFactory(owner=verified_user, failed=True, created_at=yesterday) for _ in range(3)]
    post_job(client, headers)
    assert client.post(f"/api/jobs/{failed[0].id}/retry/", headers=headers).status_code == 202
    assert client.post(f"/api/jobs/{failed[1].id}/retry/", headers=headers).status_code == 202

    refused = client.post(f"/api/jobs/{failed[2].id}/retry/", headers=headers)

    assert refused.status_code == 429
    assert "jobs_per_day" in refused.get_json()["message"]
    expected = seconds_to_next_utc_day(now_utc())
    assert abs(int(refused.headers["Retry-After"]) - expected) <= 5
    assert status_of(failed[2].id) == JobStatus.FAILED
    # Today counts 1 create + 2 retries: a create is refused too, and the plan says so.
    create = client.post("/api/jobs/", json=payload(), headers=headers)
    assert create.status_code == 429 and "jobs_per_day" in create.get_json()["message"]
    usage = client.get("/api/me/plan/", headers=headers).get_json()["usage"]
    assert usage["jobs_today"] == 3


def test_the_same_job_retried_twice_in_a_day_counts_twice(client, verified_user):
    on_plan(verified_user, jobs_per_day=2)
    headers = bearer(verified_user)
    job = JobFactory(owner=verified_user, failed=True, created_at=now_utc() - timedelta(days=1))
    assert client.post(f"/api/jobs/{job.id}/retry/", headers=headers).status_code == 202
    fail_again(job.id)  # its new round failed as well
    assert client.post(f"/api/jobs/{job.id}/retry/", headers=headers).status_code == 202
    fail_again(job.id)

    refused = client.post(f"/api/jobs/{job.id}/retry/", headers=headers)

    assert refused.status_code == 429 and "jobs_per_day" in refused.get_json()["message"]


# --- release --------------------------------------------------------------------------------


def test_a_release_needs_a_place_within_the_owners_max_open_jobs(client, verified_user, other_user):
    """Releasing puts an in-progress job back in the queue; an owner whose open jobs are
    over the limit (their plan changed since) cannot get it queued again."""
    job, _bid = awarded_job(client, verified_user, other_user)
    others = [post_job(client, bearer(verified_user)) for _ in range(2)]
    on_plan(verified_user, max_open_jobs=2)  # 3 open now: over the new limit

    for who in (other_user, verified_user):  # the assignee gives it back, the owner takes it
        refused = release(client, who, job["id"])
        assert refused.status_code == 429, refused.get_json()
        assert "max_open_jobs" in refused.get_json()["message"]
    db.session.expire_all()
    row = db.session.get(Job, job["id"])
    assert (row.status, row.assignee_id) == (JobStatus.IN_PROGRESS, other_user.id)

    # At the edge: one other open job and a limit of 2 leave this one its place.
    client.delete(f"/api/jobs/{others[0]['id']}/", headers=bearer(verified_user))
    released = release(client, other_user, job["id"])
    assert released.status_code == 200, released.get_json()
    assert released.get_json()["status"] == JobStatus.PENDING
    assert open_jobs(verified_user) == 2


# --- run now ------------------------------------------------------------------------------


def test_run_now_needs_a_place_within_max_open_jobs(client, verified_user):
    headers = bearer(verified_user)
    later = in_future(3600)
    jobs = [post_job(client, headers, scheduled_time=later.isoformat()) for _ in range(3)]
    on_plan(verified_user, max_open_jobs=2)  # 3 open: over the new limit
    target = jobs[0]["id"]
    entry = db.session.get(Job, target).queue_job_id

    refused = client.patch(f"/api/jobs/{target}/", json={"scheduled_time": None}, headers=headers)

    assert refused.status_code == 429
    assert "max_open_jobs" in refused.get_json()["message"]
    db.session.expire_all()
    row = db.session.get(Job, target)
    assert row.scheduled_time == parse(jobs[0]["scheduled_time"])
    assert row.queue_job_id == entry
    # Edits that do not bring the job forward to now are not held to the quota.
    renamed = client.patch(f"/api/jobs/{target}/", json={"name": "renamed"}, headers=headers)
    assert renamed.status_code == 200
    moved = client.patch(
        f"/api/jobs/{target}/",
        json={"scheduled_time": in_future(7200).isoformat()},
        headers=headers,
    )
    assert moved.status_code == 200
    # At the edge: with one other open job and a limit of 2, run-now passes.
    client.delete(f"/api/jobs/{jobs[1]['id']}/", headers=headers)
    now = client.patch(f"/api/jobs/{target}/", json={"scheduled_time": None}, headers=headers)
    assert now.status_code == 200, now.get_json()
    assert now.get_json()["scheduled_time"] <= now_utc().isoformat()
