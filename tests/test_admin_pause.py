"""Paused queues: no fetch takes a paused queue's entries, the other queues go on, running
jobs finish, and the pause holds across a worker's restart until it is resumed."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import select, text

from config import libpq_url
from jobboard import queue
from jobboard.extensions import db
from jobboard.models import User
from tests.support.auth import bearer
from tests.support.jobs import Api
from tests.support.polling import wait_until
from workers.app import QUEUE_MAIL, QUEUE_MAINTENANCE, SEND_EMAIL_TASK


def fetch(queues: list[str] | None) -> int | None:
    """What a worker asking for `queues` would start now (then put back)."""
    entry = db.session.execute(
        text("SELECT id FROM procrastinate_fetch_job_v2(CAST(:queues AS varchar[]), NULL)"),
        {"queues": queues},
    ).scalar()
    if entry is not None:
        db.session.execute(
            text("UPDATE procrastinate_jobs SET status = 'todo' WHERE id = :id"), {"id": entry}
        )
    return entry


def defer_in(queue_name: str) -> int:
    entry = queue.defer(SEND_EMAIL_TASK, queue=queue_name, message={})
    db.session.commit()
    return entry


def test_the_fetch_passes_over_paused_queues_only(client, admin_user):
    mail, maintenance = defer_in(QUEUE_MAIL), defer_in(QUEUE_MAINTENANCE)
    assert fetch([QUEUE_MAIL]) == mail
    headers = bearer(admin_user)
    assert client.post("/api/admin/queues/mail/pause/", headers=headers).status_code == 200
    assert fetch([QUEUE_MAIL]) is None
    assert fetch([QUEUE_MAIL, QUEUE_MAINTENANCE]) == maintenance
    # A worker of every queue (Procrastinate's CLI default) skips the paused one too.
    assert fetch(None) == maintenance
    assert client.post("/api/admin/queues/maintenance/pause/", headers=headers).status_code == 200
    assert fetch(None) is None
    assert fetch([QUEUE_MAIL, QUEUE_MAINTENANCE]) is None
    assert client.post("/api/admin/queues/mail/resume/", headers=headers).status_code == 200
    assert fetch([QUEUE_MAIL, QUEUE_MAINTENANCE]) == mail


def test_a_paused_jobs_queue_keeps_users_jobs_waiting(client, admin_user, verified_user):
    response = client.post(
        "/api/jobs/", json={"name": "now", "kind": "echo"}, headers=bearer(verified_user)
    )
    assert response.status_code == 201
    entry = db.session.execute(
        text("SELECT id FROM procrastinate_jobs WHERE (args->>'job_id')::int = :id"),
        {"id": response.get_json()["id"]},
    ).scalar()
    client.post("/api/admin/queues/jobs/pause/", headers=bearer(admin_user))
    assert fetch(["jobs"]) is None
    client.post("/api/admin/queues/jobs/resume/", headers=bearer(admin_user))
    assert fetch(["jobs"]) == entry


# --- with the real worker --------------------------------------------------------------


def fetches(database_url: str) -> int:
    """How many fetches the database has run (function statistics, on for this database)."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        row = connection.execute(
            "SELECT calls FROM pg_stat_user_functions WHERE funcname = 'procrastinate_fetch_job_v2'"
        ).fetchone()
    return 0 if row is None else row[0]


def wait_for_fetches(database_url: str, more: int) -> None:
    """Until the workers have asked for work `more` more times: time passed for them."""
    start = fetches(database_url)
    wait_until(lambda: fetches(database_url) >= start + more, timeout=30, interval=0.1)


@pytest.fixture
def counted_fetches(fresh_database: str) -> str:
    with psycopg.connect(libpq_url(fresh_database), autocommit=True) as connection:
        name = connection.info.dbname
        connection.execute(f"ALTER DATABASE \"{name}\" SET track_functions = 'pl'")
    return fresh_database


def test_a_paused_queue_holds_across_a_restart_and_running_jobs_finish(
    live_app, live_client, make_live_user, start_worker, counted_fetches
):
    make_live_user(email="boss@example.com", admin=True)
    make_live_user(email="owner@example.com")
    with live_app.app_context():
        ids = dict(db.session.execute(select(User.email, User.id)).all())
        admin = bearer(ids["boss@example.com"])
    api = Api(live_app, live_client, ids["owner@example.com"])
    worker = start_worker()

    def post_now(**body) -> dict:
        response = live_client.post("/api/jobs/", json=body, headers=api.headers)
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    running = post_now(name="long", kind="sleep", params={"seconds": 1})
    api.wait_for_status(running["id"], "in_progress")
    assert live_client.post("/api/admin/queues/jobs/pause/", headers=admin).status_code == 200
    waiting = post_now(name="waits")
    # The running job finishes; the new one is not started however often workers ask.
    api.wait_for_status(running["id"], "completed")
    wait_for_fetches(counted_fetches, 30)
    assert api.job(waiting["id"])["status"] == "pending"

    worker.stop()
    start_worker()
    wait_for_fetches(counted_fetches, 30)
    assert api.job(waiting["id"])["attempts"] == 0
    assert api.job(waiting["id"])["status"] == "pending"

    assert live_client.post("/api/admin/queues/jobs/resume/", headers=admin).status_code == 200
    assert api.wait_for_status(waiting["id"], "completed")["attempts"] == 1
