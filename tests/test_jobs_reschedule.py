"""Run now (no scheduled_time) and PATCH /api/jobs/<id>/: editing a pending, unassigned job
and moving its queue entry, without a worker (the race with a real worker is in
test_assignments_races.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobboard.extensions import db
from jobboard.jobs.processing import Outcome, run_attempt
from jobboard.models import Job, JobStatus, now_utc
from tests.support.assignments import awarded_job, post_job
from tests.support.auth import bearer
from tests.support.jobs import create_job, in_future, payload, queue_rows, set_queue_status


def patch(client, user, job_id, body):
    return client.patch(f"/api/jobs/{job_id}/", json=body, headers=bearer(user))


def stored(job_id: int) -> Job:
    db.session.expire_all()
    return db.session.get(Job, job_id)


def test_a_job_without_scheduled_time_runs_now(client, verified_user):
    before = now_utc()
    body = payload()
    del body["scheduled_time"]

    response = client.post("/api/jobs/", json=body, headers=bearer(verified_user))

    assert response.status_code == 201, response.get_json()
    job = response.get_json()
    (entry,) = queue_rows("process_job", job["id"])
    assert entry["status"] == "todo"
    assert entry["scheduled_at"] is None  # a free worker takes it at once
    assert before <= stored(job["id"]).scheduled_time <= now_utc()


def test_null_scheduled_time_also_means_now(client, verified_user):
    job = post_job(client, verified_user, scheduled_time=None)
    assert queue_rows("process_job", job["id"])[0]["scheduled_at"] is None


def test_the_owner_reschedules_and_the_queue_entry_moves(client, verified_user):
    job = post_job(client, verified_user)
    (old,) = queue_rows("process_job", job["id"])
    new_time = in_future(7200)

    response = patch(
        client, verified_user, job["id"], {"scheduled_time": new_time.isoformat(), "priority": 7}
    )

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["priority"] == 7
    entries = queue_rows("process_job", job["id"])
    assert [e["status"] for e in entries] == ["cancelled", "todo"]
    assert entries[0]["id"] == old["id"]
    assert entries[1]["scheduled_at"] == new_time
    assert entries[1]["priority"] == 7
    assert stored(job["id"]).queue_job_id == entries[1]["id"]
    assert stored(job["id"]).scheduled_time == new_time


def test_rescheduling_to_null_runs_it_now(client, verified_user):
    job = post_job(client, verified_user)
    response = patch(client, verified_user, job["id"], {"scheduled_time": None})
    assert response.status_code == 200
    assert queue_rows("process_job", job["id"])[-1]["scheduled_at"] is None
    assert stored(job["id"]).scheduled_time <= now_utc()


def test_editing_other_fields_leaves_the_queue_entry_alone(client, verified_user):
    job = post_job(client, verified_user)
    response = patch(
        client,
        verified_user,
        job["id"],
        {"name": "renamed", "description": None, "params": {"x": 1}, "max_attempts": 5},
    )
    assert response.status_code == 200
    body = response.get_json()
    assert (body["name"], body["description"], body["params"], body["max_attempts"]) == (
        "renamed",
        None,
        {"x": 1},
        5,
    )
    assert [e["status"] for e in queue_rows("process_job", job["id"])] == ["todo"]


def test_params_are_checked_against_the_jobs_kind(client, verified_user):
    job = post_job(client, verified_user, kind="sleep", params={"seconds": 1})
    bad = patch(client, verified_user, job["id"], {"params": {"seconds": 301, "x": 1}})
    assert bad.status_code == 422
    assert set(bad.get_json()["errors"]["json"]["params"]) == {"seconds", "x"}
    good = patch(client, verified_user, job["id"], {"params": {"seconds": 2}})
    assert good.status_code == 200
    assert good.get_json()["params"] == {"seconds": 2.0}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"scheduled_time": "2020-01-01T00:00:00+00:00"},
        {"scheduled_time": "2030-01-01T00:00:00"},  # naive
        {"scheduled_time": "tomorrow"},
        {"name": ""},
        {"name": "x" * 201},
        {"name": "nul\u0000"},
        {"name": 5},
        {"priority": 101},
        {"priority": "1"},
        {"max_attempts": 0},
        {"max_attempts": 11},
        {"params": []},
        {"params": {"a": "nul\u0000"}},
        {"kind": "sleep"},
        {"status": "completed"},
    ],
)
def test_bad_edits_are_422_and_change_nothing(client, verified_user, body):
    job = post_job(client, verified_user)
    response = patch(client, verified_user, job["id"], body)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["code"] == 422
    assert [e["status"] for e in queue_rows("process_job", job["id"])] == ["todo"]
    assert stored(job["id"]).name == job["name"]


def test_max_attempts_cannot_drop_to_the_attempts_made(client, verified_user):
    job = create_job(verified_user, attempts=2)
    assert patch(client, verified_user, job.id, {"max_attempts": 2}).status_code == 422
    assert patch(client, verified_user, job.id, {"max_attempts": 3}).status_code == 200


@pytest.mark.parametrize(
    "status", [JobStatus.IN_PROGRESS, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED]
)
def test_a_job_that_is_not_pending_cannot_be_edited(client, verified_user, status):
    job = create_job(verified_user, status=status)
    response = patch(client, verified_user, job.id, {"name": "late"})
    assert response.status_code == 409
    assert status.value in response.get_json()["message"]


def test_an_assigned_job_cannot_be_edited(client, verified_user, make_user):
    bob = make_user()
    job, _bid = awarded_job(client, verified_user, bob)
    response = patch(client, verified_user, job["id"], {"name": "changed"})
    assert response.status_code == 409
    assert "assigned" in response.get_json()["message"]
    # Released: pending and unassigned again, editable.
    client.post(f"/api/jobs/{job['id']}/release/", headers=bearer(bob))
    assert patch(client, verified_user, job["id"], {"name": "changed"}).status_code == 200


def test_only_the_owner_may_edit(client, verified_user, make_user, admin_user):
    job = post_job(client, verified_user)
    for someone in (make_user(), admin_user):
        assert patch(client, someone, job["id"], {"name": "mine"}).status_code == 404
    for job_id in (987654, 2**31, 10**30):
        assert patch(client, verified_user, job_id, {"name": "x"}).status_code == 404
    unverified = make_user(verified=False)
    assert patch(client, unverified, job["id"], {"name": "x"}).status_code == 403
    assert client.patch(f"/api/jobs/{job['id']}/", json={"name": "x"}).status_code == 401


def test_a_manual_job_moves_in_time_without_a_queue_entry(client, verified_user):
    job = post_job(client, verified_user, kind="manual")
    response = patch(client, verified_user, job["id"], {"scheduled_time": in_future().isoformat()})
    assert response.status_code == 200
    assert queue_rows("process_job", job["id"]) == []


def test_an_entry_the_worker_took_before_the_move_does_not_run(client, verified_user):
    """The worker fetched the old entry (doing) and waits for the row lock the PATCH holds:
    after the PATCH commits, its attempt finds another entry owns the job."""
    job = post_job(
        client, verified_user, scheduled_time=(now_utc() + timedelta(seconds=1)).isoformat()
    )
    old_entry = stored(job["id"]).queue_job_id
    set_queue_status(old_entry, "doing")

    assert (
        patch(
            client, verified_user, job["id"], {"scheduled_time": in_future().isoformat()}
        ).status_code
        == 200
    )

    assert run_attempt(job["id"], queue_job_id=old_entry) == Outcome.SUPERSEDED
    after = stored(job["id"])
    assert (after.status, after.attempts) == (JobStatus.PENDING, 0)
    assert [e["status"] for e in queue_rows("process_job", job["id"])] == ["doing", "todo"]
