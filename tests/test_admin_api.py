"""The operations API's reading side and pauses: who may call it, the queues' health, every
user's jobs with the operator's filters, failures grouped, live workers, the audit log."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import text

from jobboard.extensions import db
from jobboard.models import AdminAction, JobStatus, now_utc
from tests.support.auth import bearer
from tests.support.factories import JobFactory
from tests.support.jobs import create_job, in_future

READS = [
    "/api/admin/queues/",
    "/api/admin/jobs/",
    "/api/admin/jobs/1/",
    "/api/admin/failures/",
    "/api/admin/workers/",
    "/api/admin/audit/",
]
CHANGES = [
    ("/api/admin/queues/jobs/pause/", {}),
    ("/api/admin/queues/jobs/resume/", {}),
    ("/api/admin/jobs/actions/", {"action": "retry", "ids": [1]}),
]


# --- who may call it ----------------------------------------------------------------------


@pytest.mark.parametrize("url", READS)
def test_reads_need_a_token_then_an_admin(client, verified_user, url):
    assert client.get(url).status_code == 401
    refused = client.get(url, headers=bearer(verified_user))
    assert refused.status_code == 403
    assert refused.get_json()["message"] == "Only admins may use the operations API."


@pytest.mark.parametrize(("url", "body"), CHANGES)
def test_changes_need_a_token_then_an_admin_and_change_nothing(client, verified_user, url, body):
    assert client.post(url, json=body).status_code == 401
    assert client.post(url, json=body, headers=bearer(verified_user)).status_code == 403
    assert db.session.query(AdminAction).count() == 0
    assert db.session.execute(text("SELECT count(*) FROM queue_pauses")).scalar() == 0


def test_a_non_admin_gets_403_before_a_bad_body_is_read(client, verified_user):
    response = client.post(
        "/api/admin/jobs/actions/", json={"nonsense": 1}, headers=bearer(verified_user)
    )
    assert response.status_code == 403


def test_the_api_is_in_the_openapi_document(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    for path in (
        "/api/admin/queues/",
        "/api/admin/queues/{name}/pause/",
        "/api/admin/queues/{name}/resume/",
        "/api/admin/jobs/",
        "/api/admin/jobs/{job_id}/",
        "/api/admin/jobs/actions/",
        "/api/admin/failures/",
        "/api/admin/workers/",
        "/api/admin/audit/",
    ):
        assert path in paths, path


# --- queues -------------------------------------------------------------------------------


def queue_named(client, admin, name: str) -> dict:
    response = client.get("/api/admin/queues/", headers=bearer(admin))
    assert response.status_code == 200
    return next(queue for queue in response.get_json() if queue["name"] == name)


def test_queues_count_waiting_scheduled_running_and_failed(client, admin_user, verified_user):
    due = [create_job(verified_user, scheduled_time=in_future(3600)) for _ in range(3)]
    # Two are due now (their entries' time moved to the past), one runs, one waits later.
    db.session.execute(
        text(
            "UPDATE procrastinate_jobs SET scheduled_at = now() - interval '90 seconds'"
            " WHERE id = ANY(:ids)"
        ),
        {"ids": [job.queue_job_id for job in due[:2]]},
    )
    create_job(verified_user, status=JobStatus.IN_PROGRESS)
    JobFactory(owner=verified_user, failed=True, last_error="boom")
    db.session.commit()

    jobs = queue_named(client, admin_user, "jobs")
    assert jobs["waiting"] == 2
    assert jobs["scheduled"] == 1
    assert jobs["running"] == 1
    assert jobs["failed"] == 1
    assert 85 <= jobs["oldest_waiting_seconds"] <= 3600
    assert jobs["paused"] is False
    assert len(jobs["finished_per_minute"]) == 60
    names = [
        queue["name"]
        for queue in client.get("/api/admin/queues/", headers=bearer(admin_user)).get_json()
    ]
    assert names == ["jobs", "mail", "maintenance", "webhooks"]


def test_queues_show_the_last_hours_throughput_and_percentiles(client, admin_user):
    # Ten entries of the mail queue, each deferred, started 2 s after its time and finished
    # 3 s later, in the last 10 minutes; and one finished two hours ago (outside the hour).
    now = now_utc()
    for index in range(11):
        finished = now - timedelta(minutes=index) if index < 10 else now - timedelta(hours=2)
        started = finished - timedelta(seconds=3)
        due = started - timedelta(seconds=2)
        entry = db.session.execute(
            text(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, status, scheduled_at)"
                " VALUES ('mail', 'send_email', 'succeeded', :due) RETURNING id"
            ),
            {"due": due},
        ).scalar()
        db.session.execute(
            text(
                "INSERT INTO procrastinate_events (job_id, type, at) VALUES"
                " (:id, 'started', :started), (:id, 'succeeded', :finished)"
            ),
            {"id": entry, "started": started, "finished": finished},
        )
    db.session.commit()

    mail = queue_named(client, admin_user, "mail")
    assert mail["finished_last_hour"] == 10
    assert sum(mail["finished_per_minute"][-11:]) == 10
    assert mail["lateness_p50"] == pytest.approx(2, abs=0.01)
    assert mail["lateness_p99"] == pytest.approx(2, abs=0.01)
    assert mail["duration_p50"] == pytest.approx(3, abs=0.01)
    jobs = queue_named(client, admin_user, "jobs")
    assert jobs["finished_last_hour"] == 0
    assert jobs["duration_p50"] is None


def test_an_unchanged_queues_answer_is_a_304(client, admin_user):
    first = client.get("/api/admin/queues/", headers=bearer(admin_user))
    again = client.get(
        "/api/admin/queues/", headers={**bearer(admin_user), "If-None-Match": first.headers["ETag"]}
    )
    assert again.status_code == 304
    assert again.data == b""


def test_pause_and_resume_are_shown_and_audited(client, admin_user):
    paused = client.post("/api/admin/queues/mail/pause/", headers=bearer(admin_user))
    assert paused.status_code == 200
    assert paused.get_json()["paused"] is True
    assert queue_named(client, admin_user, "mail")["paused"] is True
    # Pausing again changes nothing.
    assert (
        client.post("/api/admin/queues/mail/pause/", headers=bearer(admin_user)).status_code == 200
    )
    names = [
        queue["name"]
        for queue in client.get("/api/admin/queues/", headers=bearer(admin_user)).get_json()
    ]
    assert names == ["jobs", "mail", "maintenance", "webhooks"]  # paused ones in their place
    resumed = client.post("/api/admin/queues/mail/resume/", headers=bearer(admin_user))
    assert resumed.get_json()["paused"] is False
    audit = client.get("/api/admin/audit/", headers=bearer(admin_user)).get_json()
    assert [(entry["action"], entry["target"]) for entry in audit] == [
        ("resume", {"queue": "mail"}),
        ("pause", {"queue": "mail"}),
        ("pause", {"queue": "mail"}),
    ]
    assert audit[0]["admin_email"] == admin_user.email


@pytest.mark.parametrize("name", ["nope", "jobs2", "x" * 300, "Jobs"])
def test_pausing_an_unknown_queue_is_404(client, admin_user, name):
    response = client.post(f"/api/admin/queues/{name}/pause/", headers=bearer(admin_user))
    assert response.status_code == 404
    assert "No queue named" in response.get_json()["message"]
    assert (
        client.post(f"/api/admin/queues/{name}/resume/", headers=bearer(admin_user)).status_code
        == 404
    )
    assert db.session.query(AdminAction).count() == 0


# --- every user's jobs ----------------------------------------------------------------


def test_jobs_of_every_user_with_their_owner(client, admin_user, make_user):
    alice = make_user(email="Alice@Example.com")
    bob = make_user(email="bob@example.com")
    JobFactory(owner=alice, name="alice's")
    JobFactory(owner=bob, failed=True, name="bob's", last_error="Timeout: 30 s\ntraceback")
    response = client.get("/api/admin/jobs/", headers=bearer(admin_user))
    assert response.status_code == 200
    assert {(job["name"], job["owner_email"]) for job in response.get_json()} == {
        ("alice's", "Alice@Example.com"),
        ("bob's", "bob@example.com"),
    }
    by_owner = client.get("/api/admin/jobs/?owner=alice@example.COM", headers=bearer(admin_user))
    assert [job["name"] for job in by_owner.get_json()] == ["alice's"]
    by_error = client.get("/api/admin/jobs/?error=timeout", headers=bearer(admin_user))
    assert [job["name"] for job in by_error.get_json()] == ["bob's"]
    both = client.get(
        "/api/admin/jobs/?status=failed&status=pending&sort=name", headers=bearer(admin_user)
    )
    assert [job["name"] for job in both.get_json()] == ["alice's", "bob's"]
    nobody = client.get("/api/admin/jobs/?owner=carol@example.com", headers=bearer(admin_user))
    assert nobody.get_json() == []


@pytest.mark.parametrize(
    "query", ["status=lost", "sort=owner", "owner=not-an-email", "kind=nope", "error="]
)
def test_bad_job_filters_are_422(client, admin_user, query):
    response = client.get(f"/api/admin/jobs/?{query}", headers=bearer(admin_user))
    assert response.status_code == 422
    assert response.get_json()["code"] == 422


def test_a_job_in_detail_with_its_result_and_attempts(client, admin_user, verified_user):
    job = JobFactory(owner=verified_user, failed=True, last_error="boom")
    response = client.get(f"/api/admin/jobs/{job.id}/", headers=bearer(admin_user))
    assert response.status_code == 200
    body = response.get_json()
    assert body["job"]["id"] == job.id
    assert body["job"]["owner_email"] == verified_user.email
    assert body["result"] is None
    assert isinstance(body["attempts"], list)
    assert client.get("/api/admin/jobs/999999999/", headers=bearer(admin_user)).status_code == 404
    assert client.get(f"/api/admin/jobs/{2**40}/", headers=bearer(admin_user)).status_code == 404


# --- failures, workers ------------------------------------------------------------------


def test_failures_grouped_by_kind_and_first_line(client, admin_user, make_user):
    owner = make_user()
    for _ in range(3):
        JobFactory(owner=owner, failed=True, kind="echo", last_error="KeyError: 'x'\n  at line 1")
    JobFactory(owner=owner, failed=True, kind="echo", last_error="KeyError: 'x'\n  at line 9")
    JobFactory(owner=owner, failed=True, kind="sleep", last_error="KeyError: 'x'")
    JobFactory(owner=owner, failed=True, kind="echo", last_error=None)
    JobFactory(owner=owner, completed=True, kind="echo", last_error="KeyError: 'x'")
    response = client.get("/api/admin/failures/", headers=bearer(admin_user))
    assert response.status_code == 200
    groups = [(g["kind"], g["error"], g["count"]) for g in response.get_json()]
    assert groups == [("echo", "KeyError: 'x'", 4), ("echo", "", 1), ("sleep", "KeyError: 'x'", 1)]
    assert response.get_json()[0]["first_seen"] is not None


def test_live_workers_with_their_start_and_running_entries(client, admin_user, verified_user):
    live = db.session.execute(text("SELECT procrastinate_register_worker_v1()")).scalar()
    dead = db.session.execute(text("SELECT procrastinate_register_worker_v1()")).scalar()
    db.session.execute(
        text(
            "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour'"
            " WHERE id = :id"
        ),
        {"id": dead},
    )
    job = create_job(verified_user, status=JobStatus.IN_PROGRESS)
    db.session.execute(
        text("UPDATE procrastinate_jobs SET worker_id = :worker WHERE id = :id"),
        {"worker": live, "id": job.queue_job_id},
    )
    db.session.commit()
    workers = client.get("/api/admin/workers/", headers=bearer(admin_user)).get_json()
    assert [worker["id"] for worker in workers] == [live]
    assert workers[0]["started_at"] is not None
    assert [(r["queue"], r["task"], r["job_id"]) for r in workers[0]["running"]] == [
        ("jobs", "process_job", job.id)
    ]


@pytest.mark.parametrize("path", ["/admin/", "/admin"])
def test_the_console_page_is_served_with_its_policy_and_no_inline_script(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    page = response.get_data(as_text=True)
    assert '<script type="module" src="/static/admin/console.js"></script>' in page
    assert page.count("<script") == 1
    for asset in ("/static/admin/console.js", "/static/admin/session.js"):
        script = client.get(asset)
        assert script.status_code == 200
        assert "javascript" in script.mimetype
        script.close()


def test_the_jobs_total_is_exact_up_to_its_cap(client, admin_user, verified_user, monkeypatch):
    from jobboard.view_helpers import CappedCountPage

    monkeypatch.setattr(CappedCountPage, "COUNT_CAP", 3)
    for _ in range(5):
        JobFactory(owner=verified_user)

    def total(query: str) -> int:
        response = client.get(f"/api/admin/jobs/?{query}", headers=bearer(admin_user))
        assert response.status_code == 200
        return json.loads(response.headers["X-Pagination"])["total"]

    assert total("page_size=2") == 4  # more than 3
    assert total("page_size=2&status=failed") == 0
    JobFactory(owner=verified_user, failed=True)
    assert total("status=failed") == 1
    page = client.get("/api/admin/jobs/?page_size=2&page=3", headers=bearer(admin_user))
    assert len(page.get_json()) == 2  # the pages go on past the cap
