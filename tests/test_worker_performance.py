"""The worker: several processes from one `python -m workers`, the async hot path
for non-blocking kinds next to the threaded one, and the queue table's autovacuum settings."""

from __future__ import annotations

from datetime import timedelta

import psycopg
from sqlalchemy import select, text

from config import libpq_url
from jobboard.extensions import db
from jobboard.models import User, now_utc
from tests.support.jobs import Api, parse
from tests.support.polling import wait_until
from workers.processors import get_processor


def test_builtin_kinds_say_whether_they_block():
    # Non-blocking kinds run on the worker's event loop: they must return at once.
    assert {k: get_processor(k).blocking for k in ("echo", "checksum", "flaky")} == {
        "echo": False,
        "checksum": False,
        "flaky": False,
    }
    # Sleeping, mailing (report) and long text stay in threads.
    assert get_processor("sleep").blocking
    assert get_processor("report").blocking
    assert get_processor("wordcount").blocking


def test_worker_processes_run_side_by_side_and_stop_together(
    live_app, live_client, make_live_user, start_worker, fresh_database
):
    make_live_user(email="many@example.com")
    with live_app.app_context():
        owner_id = db.session.scalar(select(User.id).where(User.email == "many@example.com"))
    api = Api(live_app, live_client, owner_id)
    worker = start_worker(WORKER_PROCESSES="2")

    def registered() -> int:
        with psycopg.connect(libpq_url(fresh_database), autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()
        assert row is not None
        return row[0]

    # Two processes, two Procrastinate workers each (jobs; mail + maintenance).
    assert wait_until(lambda: registered() >= 4, timeout=30)

    soon = now_utc() + timedelta(seconds=0.5)
    jobs = [
        api.create(soon, kind=kind, params=params)
        for kind, params in [
            ("echo", {"n": 1}),
            ("checksum", {"text": "abc"}),
            ("wordcount", {"text": "a b a"}),
            ("sleep", {"seconds": 0}),
        ]
    ]
    done = [api.wait_for_status(job["id"], "completed", timeout=30) for job in jobs]
    for job in done:
        assert job["attempts"] == 1
        assert parse(job["started_at"]) >= parse(job["scheduled_time"])  # never early
    assert api.result(done[0]["id"]).get_json()["output"] == {"n": 1}
    assert api.result(done[1]["id"]).get_json()["output"]["hexdigest"].startswith("ba7816bf")
    assert api.result(done[2]["id"]).get_json()["output"]["words"] == 3

    worker.stop()
    assert worker.returncode == 0
    # The child process went with its parent: no worker of this database is left running.
    wait_until(lambda: registered() == 0, timeout=20)


def test_queue_table_keeps_its_statistics_fresh(live_app):
    with live_app.app_context():
        options = db.session.scalar(
            text("SELECT reloptions FROM pg_class WHERE relname = 'procrastinate_jobs'")
        )
    assert any(option.startswith("autovacuum_analyze_scale_factor=") for option in options)
