"""The jobs API without a worker: create, read, list, cancel, result, retry; permissions and
bad input on every route."""

from __future__ import annotations

import json
from datetime import UTC, timedelta, timezone

import pytest

from jobboard.extensions import db
from jobboard.models import IdempotencyKey, Job, JobStatus, now_utc
from tests.support.jobs import (
    JOB_FIELDS,
    create_job,
    in_future,
    job_count,
    payload,
    queue_row,
    run_queued_attempt,
)

JOB_ROUTES = [
    ("get", "/api/jobs/{id}/"),
    ("delete", "/api/jobs/{id}/"),
    ("get", "/api/jobs/{id}/result/"),
    ("post", "/api/jobs/{id}/retry/"),
]
ALL_ROUTES = [
    ("get", "/api/jobs/"),
    ("post", "/api/jobs/"),
    ("get", "/api/jobs/assigned/"),
    ("get", "/api/jobs/open/"),
    *JOB_ROUTES,
]


def post_job(client, headers, **overrides):
    return client.post("/api/jobs/", json=payload(**overrides), headers=headers)


# --- create -----------------------------------------------------------------------------


def test_create_job_returns_it_and_queues_its_first_attempt(client, verified_user, auth_headers):
    scheduled = in_future(120).replace(microsecond=0)
    response = post_job(
        client,
        auth_headers(verified_user),
        scheduled_time=scheduled.isoformat(),
        priority=5,
        max_attempts=4,
    )

    assert response.status_code == 201
    job = response.get_json()
    assert set(job) == JOB_FIELDS
    assert job["status"] == "pending"
    assert job["attempts"] == 0
    assert job["max_attempts"] == 4
    assert job["priority"] == 5
    assert job["owner_id"] == verified_user.id
    assert job["assignee_id"] is None
    assert job["params"] == {"greeting": "hello"}
    assert job["scheduled_time"] == scheduled.isoformat()
    assert job["started_at"] is None and job["finished_at"] is None and job["last_error"] is None

    stored = db.session.get(Job, job["id"])
    entry = queue_row(stored.queue_job_id)
    assert entry["task_name"] == "process_job"
    assert entry["queue_name"] == "jobs"
    assert entry["status"] == "todo"
    assert entry["args"] == {
        "job_id": job["id"],
        "owner_id": verified_user.id,
        # The attempts' log lines name the request that queued them.
        "request_id": response.headers["X-Request-ID"],
        "async": True,  # echo runs on the worker's event loop, in no blocking slot
    }
    assert entry["scheduled_at"] == scheduled
    assert entry["lock"] == entry["queueing_lock"] == f"job-{job['id']}"
    assert entry["priority"] == 5


def test_create_job_defaults(client, verified_user, auth_headers):
    body = {"name": "x", "scheduled_time": in_future().isoformat()}
    response = client.post("/api/jobs/", json=body, headers=auth_headers(verified_user))

    assert response.status_code == 201
    job = response.get_json()
    assert (job["kind"], job["params"], job["max_attempts"], job["priority"]) == ("echo", {}, 3, 0)
    assert job["description"] is None


def test_create_job_stores_params_as_the_kind_loads_them(client, verified_user, auth_headers):
    response = post_job(
        client, auth_headers(verified_user), kind="checksum", params={"text": "abc"}
    )

    assert response.status_code == 201
    assert response.get_json()["params"] == {"text": "abc", "algorithm": "sha256"}


def test_scheduled_time_keeps_its_instant_whatever_the_offset(client, verified_user, auth_headers):
    local = in_future().astimezone(UTC).replace(microsecond=0)
    given = local.astimezone(timezone(timedelta(hours=5, minutes=30)))
    response = post_job(client, auth_headers(verified_user), scheduled_time=given.isoformat())

    assert response.status_code == 201
    assert response.get_json()["scheduled_time"] == local.isoformat()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": None}, "name"),
        ({"name": 42}, "name"),
        ({"description": 42}, "description"),
        ({"description": "x" * 10_001}, "description"),
        ({"scheduled_time": "2030-01-01T10:00:00"}, "scheduled_time"),
        ({"scheduled_time": "tomorrow"}, "scheduled_time"),
        ({"scheduled_time": 1893456000}, "scheduled_time"),
        ({"scheduled_time": "2020-01-01T10:00:00+00:00"}, "scheduled_time"),
        ({"kind": "teleport"}, "kind"),
        ({"kind": 3}, "kind"),
        ({"params": [1, 2]}, "params"),
        ({"params": "text"}, "params"),
        ({"kind": "sleep", "params": {}}, "params"),
        ({"kind": "sleep", "params": {"seconds": 301}}, "params"),
        ({"kind": "sleep", "params": {"seconds": -1}}, "params"),
        ({"kind": "sleep", "params": {"seconds": "soon"}}, "params"),
        ({"kind": "wordcount", "params": {"text": 5}}, "params"),
        ({"kind": "checksum", "params": {"text": "a", "algorithm": "crc32"}}, "params"),
        ({"kind": "flaky", "params": {"fail_times": 11}}, "params"),
        ({"kind": "flaky", "params": {"fail_times": "2"}}, "params"),
        ({"kind": "report", "params": {"to": "someone@example.com"}}, "params"),
        ({"priority": 101}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 11}, "max_attempts"),
        ({"max_attempts": "3"}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
    ],
)
def test_create_job_refuses_bad_input_with_422(
    client, verified_user, auth_headers, overrides, field
):
    response = post_job(client, auth_headers(verified_user), **overrides)

    assert response.status_code == 422, response.get_json()
    body = response.get_json()
    assert body["code"] == 422
    assert field in body["errors"]["json"]
    assert job_count() == 0


def test_create_job_requires_a_name_only(client, verified_user, auth_headers):
    response = client.post("/api/jobs/", json={}, headers=auth_headers(verified_user))

    assert response.status_code == 422
    # scheduled_time is optional (omitted = now).
    assert set(response.get_json()["errors"]["json"]) == {"name"}


def test_params_errors_name_the_param(client, verified_user, auth_headers):
    response = post_job(
        client, auth_headers(verified_user), kind="sleep", params={"seconds": 301, "x": 1}
    )

    errors = response.get_json()["errors"]["json"]["params"]
    assert set(errors) == {"seconds", "x"}


def test_create_job_with_a_body_that_is_not_json(client, verified_user, auth_headers):
    response = client.post(
        "/api/jobs/",
        data="not json",
        headers={**auth_headers(verified_user), "Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422)
    assert response.is_json


# --- idempotency ------------------------------------------------------------------------------


def test_repeated_post_with_an_idempotency_key_returns_the_first_job(
    client, verified_user, auth_headers
):
    headers = {**auth_headers(verified_user), "Idempotency-Key": "order-17"}
    body = payload()

    first = client.post("/api/jobs/", json=body, headers=headers)
    again = client.post("/api/jobs/", json=body, headers=headers)

    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    assert job_count() == 1
    assert (
        db.session.get(IdempotencyKey, (verified_user.id, "order-17")).job_id
        == (first.get_json()["id"])
    )


def test_idempotency_key_with_another_body_is_422(client, verified_user, auth_headers):
    headers = {**auth_headers(verified_user), "Idempotency-Key": "k1"}
    assert client.post("/api/jobs/", json=payload(), headers=headers).status_code == 201

    response = client.post("/api/jobs/", json=payload(name="other"), headers=headers)

    assert response.status_code == 422
    assert "Idempotency-Key" in response.get_json()["errors"]["headers"]
    assert job_count() == 1


def test_idempotency_keys_are_per_user(client, verified_user, other_user, auth_headers):
    body = payload()
    mine = client.post(
        "/api/jobs/", json=body, headers={**auth_headers(verified_user), "Idempotency-Key": "k"}
    )
    theirs = client.post(
        "/api/jobs/", json=body, headers={**auth_headers(other_user), "Idempotency-Key": "k"}
    )

    assert mine.status_code == theirs.status_code == 201
    assert mine.get_json()["id"] != theirs.get_json()["id"]


def test_same_request_with_other_key_order_and_offset_is_a_replay(
    client, verified_user, auth_headers
):
    headers = {**auth_headers(verified_user), "Idempotency-Key": "k"}
    when = in_future().replace(microsecond=0)
    body = payload(scheduled_time=when.isoformat())
    shifted = dict(reversed(list(body.items())))
    shifted["scheduled_time"] = when.astimezone(timezone(timedelta(hours=-7))).isoformat()

    first = client.post("/api/jobs/", json=body, headers=headers)
    again = client.post(
        "/api/jobs/", data=json.dumps(shifted), headers=headers, content_type="application/json"
    )

    assert again.get_json()["id"] == first.get_json()["id"]


def test_replay_after_the_scheduled_time_passed_still_returns_the_job(
    client, verified_user, auth_headers
):
    from tests.support.polling import wait_until

    headers = {**auth_headers(verified_user), "Idempotency-Key": "soon"}
    when = now_utc() + timedelta(seconds=1)
    body = payload(scheduled_time=when.isoformat())
    first = client.post("/api/jobs/", json=body, headers=headers)
    wait_until(lambda: now_utc() > when, timeout=5)

    again = client.post("/api/jobs/", json=body, headers=headers)

    assert again.status_code == 201
    assert again.get_json()["id"] == first.get_json()["id"]


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_bad_idempotency_key_is_422(client, verified_user, auth_headers, key):
    headers = {**auth_headers(verified_user), "Idempotency-Key": key}
    response = client.post("/api/jobs/", json=payload(), headers=headers)

    assert response.status_code == 422
    assert "Idempotency-Key" in response.get_json()["errors"]["headers"]


# --- get, and who may see what -----------------------------------------------------------------


def test_owner_assignee_and_admin_see_the_job(
    client, verified_user, other_user, admin_user, make_user, auth_headers
):
    assignee = make_user()
    job = create_job(verified_user, assignee_id=assignee.id)

    for viewer in (verified_user, assignee, admin_user):
        response = client.get(f"/api/jobs/{job.id}/", headers=auth_headers(viewer))
        assert response.status_code == 200
        assert response.get_json()["id"] == job.id
    response = client.get(f"/api/jobs/{job.id}/", headers=auth_headers(other_user))
    assert response.status_code == 404


@pytest.mark.parametrize(("method", "route"), JOB_ROUTES)
def test_other_users_jobs_are_404_on_every_route(
    client, verified_user, other_user, auth_headers, method, route
):
    job = create_job(verified_user, status=JobStatus.FAILED)

    response = getattr(client, method)(route.format(id=job.id), headers=auth_headers(other_user))

    assert response.status_code == 404
    assert response.get_json()["code"] == 404
    assert db.session.get(Job, job.id).status == JobStatus.FAILED


@pytest.mark.parametrize(("method", "route"), JOB_ROUTES)
def test_missing_jobs_are_404_on_every_route(client, verified_user, auth_headers, method, route):
    response = getattr(client, method)(
        route.format(id=999_999), headers=auth_headers(verified_user)
    )
    assert response.status_code == 404


@pytest.mark.parametrize(("method", "route"), ALL_ROUTES)
def test_unverified_users_get_403_on_every_route(client, user, auth_headers, method, route):
    response = getattr(client, method)(route.format(id=1), headers=auth_headers(user), json={})
    assert response.status_code == 403


@pytest.mark.parametrize(("method", "route"), ALL_ROUTES)
def test_anonymous_requests_get_401_on_every_route(client, method, route):
    response = getattr(client, method)(route.format(id=1), json={})
    assert response.status_code == 401
    assert response.get_json()["code"] == 401


@pytest.mark.parametrize(
    ("method", "route"), [("delete", JOB_ROUTES[1][1]), ("post", JOB_ROUTES[3][1])]
)
def test_the_assignee_may_not_cancel_or_retry(
    client, verified_user, make_user, auth_headers, method, route
):
    assignee = make_user()
    job = create_job(verified_user, assignee_id=assignee.id, status=JobStatus.FAILED)

    response = getattr(client, method)(route.format(id=job.id), headers=auth_headers(assignee))

    assert response.status_code == 403


# --- cancel ----------------------------------------------------------------------------------


def test_cancel_a_pending_job_cancels_its_queue_entry(client, verified_user, auth_headers):
    job = create_job(verified_user)

    response = client.delete(f"/api/jobs/{job.id}/", headers=auth_headers(verified_user))

    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "cancelled"
    assert body["finished_at"] is not None
    assert queue_row(job.queue_job_id)["status"] == "cancelled"


def test_admin_may_cancel_anybodys_pending_job(client, verified_user, admin_user, auth_headers):
    job = create_job(verified_user)
    response = client.delete(f"/api/jobs/{job.id}/", headers=auth_headers(admin_user))
    assert response.status_code == 200


@pytest.mark.parametrize(
    "status", [JobStatus.IN_PROGRESS, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED]
)
def test_cancel_is_409_once_started_or_finished(client, verified_user, auth_headers, status):
    job = create_job(verified_user, status=status)

    response = client.delete(f"/api/jobs/{job.id}/", headers=auth_headers(verified_user))

    assert response.status_code == 409
    assert status.value in response.get_json()["message"]
    assert db.session.get(Job, job.id).status == status


def test_cancel_after_the_job_completed_is_409(client, verified_user, auth_headers):
    job = create_job(verified_user)
    run_queued_attempt(job.id)

    response = client.delete(f"/api/jobs/{job.id}/", headers=auth_headers(verified_user))

    assert response.status_code == 409
    assert "completed" in response.get_json()["message"]


# --- result ----------------------------------------------------------------------------------


def test_result_of_a_completed_job(client, verified_user, auth_headers):
    job = create_job(verified_user, kind="wordcount", params={"text": "a b a"})
    run_queued_attempt(job.id)

    response = client.get(f"/api/jobs/{job.id}/result/", headers=auth_headers(verified_user))

    assert response.status_code == 200
    result = response.get_json()
    assert set(result) == {
        "job_id",
        "output",
        "error_message",
        "completed_at",
        "duration_ms",
        "note",
    }
    assert result["note"] is None  # only a person's delivery carries a note
    assert result["job_id"] == job.id
    assert result["output"]["words"] == 3
    assert result["error_message"] is None
    assert result["duration_ms"] >= 0
    assert result["completed_at"].endswith("+00:00")


@pytest.mark.parametrize(
    "status", [JobStatus.PENDING, JobStatus.IN_PROGRESS, JobStatus.CANCELLED, JobStatus.FAILED]
)
def test_result_is_409_naming_the_status(client, verified_user, auth_headers, status):
    job = create_job(verified_user, status=status)

    response = client.get(f"/api/jobs/{job.id}/result/", headers=auth_headers(verified_user))

    assert response.status_code == 409
    assert f"is {status.value}" in response.get_json()["message"]


def test_result_of_a_failed_job_says_why(client, verified_user, auth_headers):
    job = create_job(verified_user, kind="flaky", params={"fail_times": 5}, max_attempts=1)
    run_queued_attempt(job.id)

    response = client.get(f"/api/jobs/{job.id}/result/", headers=auth_headers(verified_user))

    assert response.status_code == 409
    assert "failed" in response.get_json()["message"]
    assert "FlakyFailure" in response.get_json()["message"]


# --- retry -----------------------------------------------------------------------------------


def test_retry_a_failed_job_queues_it_now(client, verified_user, auth_headers):
    job = create_job(verified_user, kind="flaky", params={"fail_times": 5}, max_attempts=1)
    assert run_queued_attempt(job.id) == "failed"
    old_queue_job_id = db.session.get(Job, job.id).queue_job_id

    response = client.post(f"/api/jobs/{job.id}/retry/", headers=auth_headers(verified_user))

    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "pending"
    assert body["attempts"] == 0
    assert body["finished_at"] is None
    assert "FlakyFailure" in body["last_error"]
    stored = db.session.get(Job, job.id)
    assert stored.result is None
    assert stored.queue_job_id != old_queue_job_id
    entry = queue_row(stored.queue_job_id)
    assert entry["status"] == "todo"
    assert entry["scheduled_at"] is None  # as soon as a worker is free


@pytest.mark.parametrize(
    "status",
    [JobStatus.PENDING, JobStatus.IN_PROGRESS, JobStatus.COMPLETED, JobStatus.CANCELLED],
)
def test_retry_is_409_unless_failed(client, verified_user, auth_headers, status):
    job = create_job(verified_user, status=status)

    response = client.post(f"/api/jobs/{job.id}/retry/", headers=auth_headers(verified_user))

    assert response.status_code == 409
    assert status.value in response.get_json()["message"]


# --- OpenAPI ----------------------------------------------------------------------------------


def test_openapi_documents_the_jobs_routes(client):
    spec = client.get("/api/openapi.json").get_json()
    paths = spec["paths"]
    for path in (
        "/api/jobs/",
        "/api/jobs/assigned/",
        "/api/jobs/open/",
        "/api/jobs/{job_id}/",
        "/api/jobs/{job_id}/result/",
        "/api/jobs/{job_id}/retry/",
    ):
        assert path in paths
    post = paths["/api/jobs/"]["post"]
    assert post["summary"] == "Create a job, queued for its scheduled time"
    assert {"201", "401", "403", "422"} <= set(post["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in post["parameters"])
    assert post["security"] == [{"bearerAuth": []}]
