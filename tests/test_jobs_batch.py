"""POST /api/jobs/batch/: up to 100 jobs in one transaction and one statement; all or
nothing; quotas counted for the whole batch; Idempotency-Key; errors keyed by index."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from jobboard.extensions import db
from jobboard.models import IdempotencyKey, Job, User, now_utc
from tests.support.auth import bearer
from tests.support.factories import PlanFactory
from tests.support.jobs import JOB_FIELDS, in_future, job_count, payload, queue_row, queue_rows

BATCH = "/api/jobs/batch/"


def batch(n: int, **overrides) -> dict:
    return {"jobs": [payload(name=f"job {i}", **overrides) for i in range(n)]}


def test_a_batch_creates_every_job_in_order_with_its_queue_entry(
    client, verified_user, auth_headers
):
    body = batch(3)
    body["jobs"][1].update(kind="sleep", params={"seconds": 1}, priority=7)
    body["jobs"][2].update(kind="manual", params={"brief": "by hand"})
    del body["jobs"][0]["scheduled_time"]  # now

    response = client.post(BATCH, json=body, headers=auth_headers(verified_user))

    assert response.status_code == 201, response.get_json()
    jobs = response.get_json()
    assert [job["name"] for job in jobs] == ["job 0", "job 1", "job 2"]
    assert all(set(job) == JOB_FIELDS for job in jobs)
    assert [job["status"] for job in jobs] == ["pending"] * 3
    assert jobs[0]["id"] < jobs[1]["id"] < jobs[2]["id"]
    rows = [db.session.get(Job, job["id"]) for job in jobs]
    first, second = (queue_row(row.queue_job_id) for row in rows[:2])
    assert rows[2].queue_job_id is None  # a manual job waits for a person
    assert first["args"].pop("request_id")  # the request that queued it, for the logs
    # echo runs on the worker's event loop: its entry says so; sleep blocks a thread.
    assert first["args"] == {"job_id": rows[0].id, "owner_id": verified_user.id, "async": True}
    assert "async" not in second["args"]
    assert first["scheduled_at"] is None and first["lock"] == f"job-{rows[0].id}"
    assert first["queueing_lock"] == first["lock"] and first["task_name"] == "process_job"
    assert second["priority"] == 7 and second["scheduled_at"] == rows[1].scheduled_time
    assert len(queue_rows("process_job")) == 2


def test_a_long_kind_in_a_batch_is_marked_long_like_a_single_post(
    client, verified_user, auth_headers
):
    single = client.post(
        "/api/jobs/",
        json=payload(kind="sleep", params={"seconds": 60}),
        headers=auth_headers(verified_user),
    ).get_json()
    body = {"jobs": [payload(kind="sleep", params={"seconds": 60})]}
    batched = client.post(BATCH, json=body, headers=auth_headers(verified_user)).get_json()[0]
    args = [
        queue_row(db.session.get(Job, job["id"]).queue_job_id)["args"] for job in (single, batched)
    ]
    # Each names its own request (for the attempts' log lines); the rest is the same.
    assert args[0]["request_id"] != args[1]["request_id"]
    assert args[0] | {"job_id": 0, "request_id": ""} == args[1] | {"job_id": 0, "request_id": ""}


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"jobs": []}, ["jobs"]),
        ({}, ["jobs"]),
        ({"jobs": "nope"}, ["jobs"]),
        ({"jobs": [1, 2]}, ["jobs", "0"]),
        ({"jobs": [payload()] * 101}, ["jobs"]),
        ({"jobs": [payload(), payload(priority="high")]}, ["jobs", "1", "priority"]),
        ({"jobs": [payload(), payload(name="a\u0000b")]}, ["jobs", "1", "name"]),
        ({"jobs": [payload(kind="nope")]}, ["jobs", "0", "kind"]),
        (
            {"jobs": [payload(), payload(kind="sleep", params={"seconds": -1})]},
            ["jobs", "1", "params"],
        ),
        (
            {"jobs": [payload(), payload(scheduled_time="2020-01-01T00:00:00+00:00")]},
            ["jobs", "1", "scheduled_time"],
        ),
        (
            {"jobs": [payload(scheduled_time="2030-01-01T00:00:00")]},
            ["jobs", "0", "scheduled_time"],
        ),
    ],
)
def test_bad_input_is_a_422_keyed_by_index_and_creates_nothing(
    client, verified_user, auth_headers, body, where
):
    response = client.post(BATCH, json=body, headers=auth_headers(verified_user))

    assert response.status_code == 422, response.get_json()
    errors = response.get_json()["errors"]["json"]
    for key in where:
        assert key in errors, (key, errors)
        errors = errors[key]
    assert job_count() == 0
    assert queue_rows("process_job") == []


def test_params_over_the_plan_are_refused_by_index(client, make_user, auth_headers):
    user = make_user(plan_name=PlanFactory(max_params_bytes=50).name)
    body = {"jobs": [payload(params={}), payload(params={"text": "x" * 100})]}

    response = client.post(BATCH, json=body, headers=auth_headers(user))

    assert response.status_code == 422
    assert "max_params_bytes" in response.get_json()["errors"]["json"]["jobs"]["1"]["params"][0]
    assert job_count() == 0


def test_unverified_and_anonymous_callers_are_refused(client, user, auth_headers):
    assert client.post(BATCH, json=batch(1)).status_code == 401
    assert client.post(BATCH, json=batch(1), headers=auth_headers(user)).status_code == 403
    assert job_count() == 0


@pytest.mark.parametrize("quota", ["max_open_jobs", "jobs_per_day"])
def test_quotas_count_the_whole_batch_at_the_edge(client, make_user, auth_headers, quota):
    limits = {"max_open_jobs": 100, "jobs_per_day": 100, quota: 5}
    user = make_user(plan_name=PlanFactory(**limits).name)
    headers = auth_headers(user)
    assert client.post("/api/jobs/", json=payload(), headers=headers).status_code == 201

    over = client.post(BATCH, json=batch(5), headers=headers)
    assert over.status_code == 429, over.get_json()
    assert quota in over.get_json()["message"] and "batch of 5" in over.get_json()["message"]
    assert over.headers["Retry-After"]
    assert job_count() == 1

    exactly = client.post(BATCH, json=batch(4), headers=headers)
    assert exactly.status_code == 201
    assert job_count() == 5
    assert client.post(BATCH, json=batch(1), headers=headers).status_code == 429


def test_a_repeat_with_the_same_key_returns_the_same_jobs(client, verified_user, auth_headers):
    headers = {**auth_headers(verified_user), "Idempotency-Key": "batch-1"}
    body = batch(3)

    first = client.post(BATCH, json=body, headers=headers)
    again = client.post(BATCH, json=body, headers=headers)

    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert [job["id"] for job in again.get_json()] == [job["id"] for job in first.get_json()]
    assert job_count() == 3
    record = db.session.get(IdempotencyKey, (verified_user.id, "batch-1"))
    assert record.job_ids == [job["id"] for job in first.get_json()]
    assert record.job_id == first.get_json()[0]["id"]

    other = client.post(BATCH, json=batch(2), headers=headers)
    assert other.status_code == 422
    assert "Idempotency-Key" in other.get_json()["errors"]["headers"]
    single = client.post("/api/jobs/", json=payload(), headers=headers)
    assert single.status_code == 422  # a batch's key is not a single job's


def test_a_repeat_after_its_times_passed_still_returns_its_jobs(
    client, verified_user, auth_headers
):
    headers = {**auth_headers(verified_user), "Idempotency-Key": "soon"}
    body = {"jobs": [payload(scheduled_time=in_future(0.5).isoformat())]}
    first = client.post(BATCH, json=body, headers=headers).get_json()
    db.session.execute(
        Job.__table__.update().values(scheduled_time=now_utc())  # the time has passed
    )
    body["jobs"][0]["scheduled_time"] = "2020-01-01T00:00:00+00:00"
    assert client.post(BATCH, json=body, headers=headers).status_code == 422  # other body

    body["jobs"][0]["scheduled_time"] = first[0]["scheduled_time"]
    again = client.post(BATCH, json=body, headers=headers)
    assert again.status_code == 201 and again.get_json()[0]["id"] == first[0]["id"]


def test_other_users_keys_are_their_own(client, verified_user, other_user, auth_headers):
    body = batch(2)
    mine = client.post(
        BATCH, json=body, headers={**auth_headers(verified_user), "Idempotency-Key": "k"}
    )
    theirs = client.post(
        BATCH, json=body, headers={**auth_headers(other_user), "Idempotency-Key": "k"}
    )
    assert mine.status_code == theirs.status_code == 201
    assert not {j["id"] for j in mine.get_json()} & {j["id"] for j in theirs.get_json()}
    assert (
        client.get(
            f"/api/jobs/{mine.get_json()[0]['id']}/", headers=auth_headers(other_user)
        ).status_code
        == 404
    )


def test_racing_identical_keyed_batches_create_one_set(live_app, make_live_user):
    make_live_user(email="batch-racer@example.com")
    with live_app.app_context():
        owner_id = db.session.scalar(select(User.id).where(User.email == "batch-racer@example.com"))
        headers = {**bearer(owner_id), "Idempotency-Key": "double-click"}
    body = batch(20)
    start = threading.Barrier(6)
    answers: list[tuple[int, list[int], bool]] = []

    def post() -> None:
        client = live_app.test_client()
        start.wait()
        response = client.post(BATCH, json=body, headers=headers)
        replayed = response.headers.get("Idempotent-Replayed") == "true"
        answers.append((response.status_code, [j["id"] for j in response.get_json()], replayed))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert {status for status, _, _ in answers} == {201}
    assert len({tuple(ids) for _, ids, _ in answers}) == 1
    assert sorted(replayed for _, _, replayed in answers) == [False] + [True] * 5
    with live_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Job)) == 20
        assert db.session.scalar(select(func.count()).select_from(IdempotencyKey)) == 1
        assert len(queue_rows("process_job")) == 20  # the losers' entries rolled back


def test_racing_batches_at_the_quota_edge_never_pass_it(live_app, make_live_user):
    with live_app.app_context():
        plan = PlanFactory(max_open_jobs=30).name
    make_live_user(email="batch-edge@example.com", plan_name=plan)
    with live_app.app_context():
        owner_id = db.session.scalar(select(User.id).where(User.email == "batch-edge@example.com"))
        headers = bearer(owner_id)
    start = threading.Barrier(4)
    statuses: list[int] = []

    def post() -> None:
        client = live_app.test_client()
        start.wait()
        statuses.append(client.post(BATCH, json=batch(10), headers=headers).status_code)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [201, 201, 201, 429]
    with live_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Job)) == 30
