"""GET /api/dashboard/: counts by status for the caller, queue health for admins."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, select, text

from jobboard import queue
from jobboard.dashboard import service
from jobboard.dashboard.schemas import BidCountsOut, DashboardOut, JobCountsOut
from jobboard.extensions import db
from jobboard.models import BidStatus, JobStatus, User, now_utc
from tests.support.auth import DEFAULT_PASSWORD, bearer
from tests.support.dashboard import zero_bids, zero_jobs
from tests.support.factories import BidFactory, JobFactory

URL = "/api/dashboard/"


# --- who may call it ----------------------------------------------------------------------


def test_without_a_token_is_401_in_the_error_body(client):
    response = client.get(URL)
    assert response.status_code == 401
    body = response.get_json()
    assert body["code"] == 401
    assert body["status"] == "Unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "authorization", ["Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "Bearer", "Bearer a.b.c"]
)
def test_malformed_tokens_are_401(client, authorization):
    response = client.get(URL, headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.get_json()["code"] == 401


def test_unverified_user_is_403(client, user, auth_headers):
    response = client.get(URL, headers=auth_headers(user))
    assert response.status_code == 403
    assert response.get_json()["code"] == 403


def test_token_of_a_deleted_user_is_401(client, make_user, auth_headers):
    gone = make_user()
    headers = auth_headers(gone)
    db.session.delete(gone)
    db.session.commit()
    assert client.get(URL, headers=headers).status_code == 401


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_only_get_is_allowed(client, verified_user, auth_headers, method):
    response = getattr(client, method)(URL, headers=auth_headers(verified_user), json={})
    assert response.status_code == 405
    assert response.is_json


# --- the caller's counts ------------------------------------------------------------------


def test_new_user_gets_every_key_with_zeros_and_no_queue(client, verified_user, auth_headers):
    response = client.get(URL, headers=auth_headers(verified_user))
    assert response.status_code == 200
    assert response.get_json() == {
        "jobs": zero_jobs(),
        "assigned": zero_jobs(),
        "bids": zero_bids(),
    }


def test_counts_are_the_callers_own_by_status(
    client, verified_user, other_user, make_user, auth_headers
):
    third = make_user()
    mine = {
        JobStatus.PENDING: 3,
        JobStatus.IN_PROGRESS: 1,
        JobStatus.COMPLETED: 4,
        JobStatus.FAILED: 2,
    }
    for status, count in mine.items():
        for _ in range(count):
            JobFactory(owner=verified_user, status=status)
    # Somebody else's jobs, in every status, never count as the caller's.
    others_jobs = [JobFactory(owner=other_user, status=status) for status in JobStatus]
    # Jobs assigned to the caller: their bid was accepted.
    for job in others_jobs[:2]:
        BidFactory(job=job, bidder=verified_user, status=BidStatus.ACCEPTED)
    BidFactory(job=others_jobs[2], bidder=verified_user, status=BidStatus.REJECTED)
    BidFactory(job=others_jobs[3], bidder=verified_user, status=BidStatus.WITHDRAWN)
    BidFactory(job=others_jobs[4], bidder=verified_user, status=BidStatus.PENDING)
    BidFactory(job=others_jobs[4], bidder=third, status=BidStatus.PENDING)
    # A bid by somebody else on the caller's job counts for neither.
    BidFactory(
        job=JobFactory(owner=verified_user, status=JobStatus.PENDING),
        bidder=other_user,
        status=BidStatus.PENDING,
    )

    response = client.get(URL, headers=auth_headers(verified_user))

    assert response.status_code == 200
    body = response.get_json()
    assert body["jobs"] == {
        "pending": 4,
        "in_progress": 1,
        "completed": 4,
        "failed": 2,
        "cancelled": 0,
        "total": 11,
    }
    assigned_statuses = [others_jobs[0].status, others_jobs[1].status]
    assert body["assigned"] == {
        **zero_jobs(),
        **{status: assigned_statuses.count(status) for status in assigned_statuses},
        "total": 2,
    }
    assert body["bids"] == {"pending": 1, "accepted": 2, "rejected": 1, "withdrawn": 1}
    assert "queue" not in body


def test_other_users_see_their_own_numbers(client, verified_user, other_user, auth_headers):
    JobFactory(owner=verified_user, status=JobStatus.CANCELLED)
    body = client.get(URL, headers=auth_headers(other_user)).get_json()
    assert body["jobs"] == zero_jobs()


def test_counts_follow_changes(client, verified_user, auth_headers):
    job = JobFactory(owner=verified_user, status=JobStatus.PENDING)
    assert client.get(URL, headers=auth_headers(verified_user)).get_json()["jobs"]["pending"] == 1
    job.status = JobStatus.CANCELLED
    db.session.commit()
    counts = client.get(URL, headers=auth_headers(verified_user)).get_json()["jobs"]
    assert counts["pending"] == 0
    assert counts["cancelled"] == 1
    assert counts["total"] == 1


def test_schemas_list_every_status():
    assert set(JobCountsOut().fields) == {s.value for s in JobStatus} | {"total"}
    assert set(BidCountsOut().fields) == {s.value for s in BidStatus}
    assert set(DashboardOut().fields) == {"jobs", "assigned", "bids", "queue"}


# --- one aggregate query per section, on the indexes ----------------------------------------


@pytest.fixture
def statements(app):
    """SQL statements the session runs while the fixture is active."""
    seen: list[tuple[str, object]] = []
    connection = db.session.connection()

    def record(_conn, _cursor, statement, parameters, _context, _executemany):
        seen.append((statement, parameters))

    event.listen(connection, "before_cursor_execute", record)
    yield seen
    event.remove(connection, "before_cursor_execute", record)


def test_each_section_is_one_group_by_query(verified_user, statements):
    db.session.refresh(verified_user)
    statements.clear()
    service.dashboard_for(verified_user)
    assert len(statements) == 3
    assert all("count(*)" in sql and "GROUP BY" in sql for sql, _ in statements)


@pytest.mark.parametrize(
    ("section", "index"),
    [
        ("jobs", "ix_jobs_owner_status"),
        ("assigned", "ix_jobs_assignee_status"),
        ("bids", "ix_bids_bidder_status"),
    ],
)
def test_count_queries_are_answered_from_their_index(verified_user, statements, section, index):
    db.session.refresh(verified_user)
    statements.clear()
    service.dashboard_for(verified_user)
    query, parameters = dict(zip(["jobs", "assigned", "bids"], statements, strict=True))[section]
    connection = db.session.connection()
    # Tiny test tables favour sequential and bitmap scans; with those and plain index scans
    # off, only an index-only scan is left, which only an index covering both the filter
    # and the grouping can give. (With plain index scans allowed, the planner sometimes
    # picked another index of the owner's: a coin toss on tiny tables, not a finding.)
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    connection.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
    connection.exec_driver_sql("SET LOCAL enable_indexscan = off")
    plan = connection.exec_driver_sql(f"EXPLAIN {query}", parameters).scalars()
    plan_text = "\n".join(plan)
    assert f"Index Only Scan using {index}" in plan_text, plan_text


# --- admins: the queue ------------------------------------------------------------------------


def queue_of(client, user, auth_headers):
    response = client.get(URL, headers=auth_headers(user))
    assert response.status_code == 200
    return response.get_json()["queue"]


def test_admin_gets_an_empty_queue_section_with_every_queue(client, admin_user, auth_headers):
    body = client.get(URL, headers=auth_headers(admin_user)).get_json()
    statuses = dict.fromkeys(["todo", "doing", "succeeded", "failed", "cancelled", "aborted"], 0)
    assert body["queue"] == {
        "queues": {"jobs": statuses, "mail": statuses, "maintenance": statuses},
        "waiting": 0,
        "oldest_waiting_seconds": None,
        "live_workers": 0,
    }
    # The admin's own numbers are there too.
    assert body["jobs"] == zero_jobs()


def test_queue_counts_per_queue_and_status(client, admin_user, auth_headers):
    now = now_utc()
    queue.defer("send_email", queue="mail", to="a@example.com", subject="s", body="b")
    queue.defer("send_email", queue="mail", to="b@example.com", subject="s", body="b")
    cancelled = queue.defer(
        "process_job", queue="jobs", schedule_at=now + timedelta(hours=1), job_id=1
    )
    queue.cancel(cancelled)
    queue.defer("process_job", queue="jobs", schedule_at=now + timedelta(hours=1), job_id=2)
    queue.defer("custom_task", queue="reports", schedule_at=now + timedelta(hours=1))
    db.session.commit()

    health = queue_of(client, admin_user, auth_headers)

    assert health["queues"]["mail"]["todo"] == 2
    assert health["queues"]["jobs"]["todo"] == 1
    assert health["queues"]["jobs"]["cancelled"] == 1
    assert health["queues"]["maintenance"] == dict.fromkeys(health["queues"]["jobs"], 0)
    # A queue nobody declared still shows up.
    assert health["queues"]["reports"]["todo"] == 1
    # Only the two mails are due; the scheduled ones wait for their time.
    assert health["waiting"] == 2


def test_oldest_waiting_counts_from_the_schedule_of_due_entries(client, admin_user, auth_headers):
    # Inside the test's one transaction now() is fixed, so ages are exact offsets from it.
    database_now = db.session.scalar(text("SELECT now()"))
    queue.defer(
        "process_job", queue="jobs", schedule_at=database_now - timedelta(minutes=5), job_id=1
    )
    queue.defer(
        "process_job", queue="jobs", schedule_at=database_now - timedelta(seconds=30), job_id=2
    )
    queue.defer(
        "process_job", queue="jobs", schedule_at=database_now + timedelta(hours=2), job_id=3
    )
    db.session.commit()

    health = queue_of(client, admin_user, auth_headers)

    assert health["waiting"] == 2
    assert health["oldest_waiting_seconds"] == pytest.approx(300, abs=0.01)


def test_unscheduled_entries_wait_from_when_they_were_deferred(client, admin_user, auth_headers):
    queue.defer("send_email", queue="mail", to="a@example.com", subject="s", body="b")
    db.session.commit()
    health = queue_of(client, admin_user, auth_headers)
    assert health["waiting"] == 1
    # Deferred in this very transaction: it has waited no time by the database's clock.
    assert health["oldest_waiting_seconds"] == pytest.approx(0, abs=0.01)


def test_started_and_finished_entries_are_not_waiting(client, admin_user, auth_headers):
    job_id = queue.defer("send_email", queue="mail", to="a@example.com", subject="s", body="b")
    db.session.execute(
        text("UPDATE procrastinate_jobs SET status = 'succeeded' WHERE id = :id"), {"id": job_id}
    )
    db.session.commit()
    health = queue_of(client, admin_user, auth_headers)
    assert health["queues"]["mail"]["succeeded"] == 1
    assert health["waiting"] == 0
    assert health["oldest_waiting_seconds"] is None


def test_live_workers_are_those_with_a_recent_heartbeat(client, admin_user, auth_headers):
    window = service.live_worker_window_seconds()
    db.session.execute(
        text(
            "INSERT INTO procrastinate_workers (last_heartbeat) VALUES "
            "(now()), (now() - make_interval(secs => :fresh)), "
            "(now() - make_interval(secs => :stale))"
        ),
        {"fresh": window / 2, "stale": window * 2},
    )
    db.session.commit()
    assert queue_of(client, admin_user, auth_headers)["live_workers"] == 2


def test_non_admins_never_get_the_queue(client, verified_user, auth_headers):
    queue.defer("send_email", queue="mail", to="a@example.com", subject="s", body="b")
    db.session.commit()
    body = client.get(URL, headers=auth_headers(verified_user)).get_json()
    assert "queue" not in body


def test_unverified_admin_is_still_403(client, make_user, auth_headers):
    admin = make_user(verified=False, admin=True)
    assert client.get(URL, headers=auth_headers(admin)).status_code == 403


# --- nobody becomes admin through the API ------------------------------------------------------


def login(client, email, password=DEFAULT_PASSWORD):
    response = client.post("/api/login/", json={"email": email, "password": password})
    assert response.status_code == 200, response.get_json()
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


def test_patch_me_cannot_grant_admin(client, verified_user):
    headers = login(client, verified_user.email)
    response = client.patch("/api/me/", headers=headers, json={"is_admin": True})
    # Refused as an unknown field or ignored; either way no role is granted.
    assert response.status_code in (200, 422)
    if response.status_code == 422:
        assert "is_admin" in response.get_json()["errors"]["json"]
    db.session.expire_all()
    assert db.session.get(User, verified_user.id).is_admin is False
    assert "queue" not in client.get(URL, headers=headers).get_json()


def test_patch_me_with_other_fields_and_is_admin_grants_nothing(client, verified_user):
    headers = login(client, verified_user.email)
    client.patch("/api/me/", headers=headers, json={"display_name": "Eve", "is_admin": "true"})
    db.session.expire_all()
    assert db.session.get(User, verified_user.id).is_admin is False


def test_register_cannot_grant_admin(client):
    response = client.post(
        "/api/register/",
        json={"email": "climber@example.com", "password": "long enough pw", "is_admin": True},
    )
    assert response.status_code in (201, 422)
    user = db.session.scalars(select(User).where(User.email == "climber@example.com")).first()
    assert user is None or user.is_admin is False


def test_me_does_not_expose_a_writable_admin_flag_in_the_schema(client):
    spec = client.get("/api/openapi.json").get_json()
    patch_body = spec["paths"]["/api/me/"]["patch"]["requestBody"]["content"]["application/json"]
    schema = patch_body["schema"]
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert "is_admin" not in schema.get("properties", {})


# --- admins read any job -------------------------------------------------------------------


def test_admin_reads_any_job(client, admin_user, other_user, verified_user, auth_headers):
    job = JobFactory(owner=other_user, status=JobStatus.COMPLETED)
    response = client.get(f"/api/jobs/{job.id}/", headers=auth_headers(admin_user))
    assert response.status_code == 200
    assert response.get_json()["id"] == job.id
    assert response.get_json()["owner_id"] == other_user.id
    # ... which a plain user cannot: somebody else's job does not exist for them.
    assert (
        client.get(f"/api/jobs/{job.id}/", headers=auth_headers(verified_user)).status_code == 404
    )


def test_admin_gets_404_for_a_job_that_does_not_exist(client, admin_user, auth_headers):
    assert client.get("/api/jobs/987654321/", headers=auth_headers(admin_user)).status_code == 404


# --- documentation -----------------------------------------------------------------------------


def test_openapi_documents_the_dashboard(client):
    spec = client.get("/api/openapi.json").get_json()
    operation = spec["paths"]["/api/dashboard/"]["get"]
    assert operation["summary"]
    assert {"200", "401", "403"} <= set(operation["responses"])
    schemas = spec["components"]["schemas"]
    dashboard = schemas["DashboardOut"]
    assert set(dashboard["properties"]) == {"jobs", "assigned", "bids", "queue"}
    assert set(dashboard["required"]) == {"jobs", "assigned", "bids"}
    assert "admins only" in dashboard["properties"]["queue"]["description"]


# --- the queue section in a real GET (autocommit) ------------------------------------------


def test_queue_section_runs_without_jit_in_autocommit_and_without_warnings(
    live_app, live_client, make_live_user
):
    """A GET runs in autocommit (jobboard/autocommit_reads.py), where PostgreSQL ignores a
    SET LOCAL with a warning. The queue's counts must still run with JIT off, and the
    server must have nothing to warn about: checked on the connection the request uses,
    not inside a test transaction that would hide both."""
    admin = make_live_user(admin=True)
    notices: list[str] = []
    jit_during_counts: list[str] = []

    def listen_for_notices(dbapi_connection, record, _proxy):
        if not record.info.get("notices_heard"):
            record.info["notices_heard"] = True
            dbapi_connection.add_notice_handler(
                lambda diagnostic: notices.append(diagnostic.message_primary)
            )

    def jit_setting(_conn, cursor, statement, _parameters, _context, _executemany):
        if "FROM procrastinate_jobs GROUP BY" in statement:
            row = cursor.connection.execute("SELECT current_setting('jit')").fetchone()
            jit_during_counts.append(row[0])

    with live_app.app_context():
        engine = db.engine
        headers = bearer(admin.id)
    event.listen(engine, "checkout", listen_for_notices)
    event.listen(engine, "after_cursor_execute", jit_setting)
    try:
        response = live_client.get(URL, headers=headers)
    finally:
        event.remove(engine, "checkout", listen_for_notices)
        event.remove(engine, "after_cursor_execute", jit_setting)

    assert response.status_code == 200, response.get_json()
    assert "queue" in response.get_json()
    assert jit_during_counts == ["off"]
    assert notices == []
