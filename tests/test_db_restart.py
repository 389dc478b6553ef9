"""The database going away and coming back (docs/operations.md, "The database away"), for
real: a PRIVATE PostgreSQL (pgserver in a temporary folder, never the shared server of
the other tests) is stopped and started again while clients post jobs through the WSGI
app and a real worker process (`python -m workers`) runs them.

Checked: every answer is 201 or 503 (never a 500), /health is back within 10 s, the
worker process is still alive and takes up new work within 10 s of the database's
return, and every accepted job completes.

And the Procfile's web process while PostgreSQL stalls and then shuts down (`pg_ctl -m
fast stop`): every answer is 200 or 503, each within a few seconds (connect timeout),
never a 500 or a hang, and service resumes when the database is back.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from datetime import timedelta

import psycopg

from config import libpq_url
from devtools.processes import Process
from jobboard.embedded_db import recreate_database
from jobboard.extensions import db
from jobboard.models import Job, JobStatus, now_utc
from tests.support.auth import bearer
from tests.support.factories import UserFactory
from tests.support.polling import wait_until
from tests.support.procfile import procfile_entries, production_environment
from tests.support.worker import WorkerProcess

POSTERS = 3
RECOVERY_LIMIT_SECONDS = 10.0


def test_database_restart_under_load(private_server, private_app, smtp_server, capsys):
    app = private_app
    worker = WorkerProcess(app.config["DATABASE_URL_FOR_WORKER"], smtp_server.port)
    try:
        with app.app_context():
            # On `pro`: the outage piles up pending jobs, and free's max_open_jobs would
            # answer 429 (correctly) before the database came back; this test is about 503.
            user = UserFactory(
                email="restart@example.com",
                plan_name="pro",
                plan_ends_at=now_utc() + timedelta(days=30),
            )
            headers = bearer(user)
        statuses: Counter[int] = Counter()
        accepted: list[int] = []
        lock = threading.Lock()
        posting = threading.Event()
        posting.set()

        def post_jobs(index: int) -> None:
            client = app.test_client()
            while posting.is_set():
                body = {
                    "name": f"restart {index}",
                    "kind": "echo",
                    "params": {"poster": index},
                    "scheduled_time": (now_utc() + timedelta(milliseconds=200)).isoformat(),
                }
                response = client.post("/api/jobs/", json=body, headers=headers)
                with lock:
                    statuses[response.status_code] += 1
                    if response.status_code == 201:
                        accepted.append(response.get_json()["id"])
                    elif response.status_code == 503:
                        assert response.get_json()["code"] == 503
                time.sleep(0.02)  # a steady client, not a busy loop

        posters = [threading.Thread(target=post_jobs, args=(i,)) for i in range(POSTERS)]
        for thread in posters:
            thread.start()
        wait_until(lambda: len(accepted) >= 10, timeout=30)

        private_server.stop()
        client = app.test_client()
        wait_until(lambda: statuses[503] >= POSTERS, timeout=30)
        assert client.get("/health").status_code == 503
        time.sleep(3)  # the outage lasts a while; the worker retries meanwhile
        assert worker.running(), "the worker exited while the database was away"

        private_server.start()
        back_at = time.monotonic()
        wait_until(lambda: client.get("/health").status_code == 200, timeout=RECOVERY_LIMIT_SECONDS)
        health_seconds = time.monotonic() - back_at
        # A job posted now is taken up within the limit of the database's return.
        response = client.post(
            "/api/jobs/",
            json={
                "name": "after",
                "kind": "echo",
                "scheduled_time": (now_utc() + timedelta(milliseconds=100)).isoformat(),
            },
            headers=headers,
        )
        assert response.status_code == 201, response.get_json()
        probe_id = response.get_json()["id"]

        def status_of(job_id: int) -> str:
            return client.get(f"/api/jobs/{job_id}/", headers=headers).get_json()["status"]

        wait_until(
            lambda: status_of(probe_id) == JobStatus.COMPLETED, timeout=RECOVERY_LIMIT_SECONDS
        )
        pickup_seconds = time.monotonic() - back_at
        assert pickup_seconds < RECOVERY_LIMIT_SECONDS

        accepted_before = len(accepted)
        wait_until(lambda: len(accepted) >= accepted_before + 10, timeout=RECOVERY_LIMIT_SECONDS)
        posting.clear()
        for thread in posters:
            thread.join(timeout=30)

        assert set(statuses) <= {201, 503}, statuses
        assert worker.running()

        # No accepted job is lost: each one completes (one cut off mid-run is retried by
        # the stalled-job check).
        def unfinished() -> list[int]:
            with app.app_context():
                rows = db.session.execute(
                    db.select(Job.id, Job.status).where(Job.id.in_(accepted))
                ).all()
                db.session.rollback()
            assert len(rows) == len(accepted)
            return [job_id for job_id, status in rows if status != JobStatus.COMPLETED]

        wait_until(lambda: not unfinished(), timeout=60, interval=0.2)
        with capsys.disabled():
            print(
                f"\n[restart] answers {dict(statuses)}; /health back {health_seconds:.2f} s "
                f"after the restart; a new job completed {pickup_seconds:.2f} s after it; "
                f"{len(accepted)} accepted jobs, 0 lost; worker pid {worker.pid} alive"
            )
    finally:
        worker.stop()


# The answer to a request while the database is away: 503 within the connect timeout
# (3 s) plus the time to answer, never a hang.
OUTAGE_ANSWER_SECONDS = 8.0


def test_web_process_answers_503_while_postgresql_stalls_and_stops(
    private_server, smtp_server, tmp_path, capsys
):
    url = recreate_database(private_server.admin_url, "jobboard_stop")
    env = production_environment(url, smtp_server.port)
    entries = procfile_entries()
    release = Process.shell("release", entries["release"], env, tmp_path / "release.log")
    assert release.wait(timeout=120) == 0
    web = Process.shell("web", entries["web"], env, tmp_path / "web.log")
    answers: list[tuple[str, int, float]] = []
    lock = threading.Lock()
    asking = threading.Event()
    asking.set()

    def ask(method: str, path: str, body: dict | None = None) -> tuple[int, float]:
        sent = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", int(env["PORT"]), timeout=30)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            connection.request(method, path, payload, {"Content-Type": "application/json"})
            response = connection.getresponse()
            document = json.loads(response.read() or b"{}")
            status = response.status
            # /health says what is wrong in its own body; the API answers the error body.
            if status == 503 and document.get("code", 503) != 503:
                status = -503
            if status == 503 and path.startswith("/api/") and not response.getheader("Retry-After"):
                status = -503
        except OSError:  # a hang (client timeout) or a dropped connection
            status = 0
        finally:
            connection.close()
        return status, time.monotonic() - sent

    def client(index: int) -> None:
        login = {"email": f"stop{index}@example.com", "password": "not-the-password"}
        while asking.is_set():
            for method, path, body in (("GET", "/health", None), ("POST", "/api/login/", login)):
                status, seconds = ask(method, path, body)
                with lock:
                    answers.append((path, status, seconds))
            time.sleep(0.05)

    try:
        wait_until(lambda: ask("GET", "/health")[0] == 200, timeout=60)
        clients = [threading.Thread(target=client, args=(i,)) for i in range(3)]
        for thread in clients:
            thread.start()
        wait_until(lambda: len(answers) >= 12, timeout=30)

        # The web's connections die and the postmaster answers no new one: each request
        # has to connect, and waits for the connect timeout.
        with psycopg.connect(libpq_url(private_server.admin_url), autocommit=True) as admin:
            private_server.stall()
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = 'jobboard_stop'"
            )
        stalled_from = len(answers)
        wait_until(lambda: len(answers) >= stalled_from + 6, timeout=60)
        stalled = answers[stalled_from:]
        private_server.resume()
        private_server.stop()  # fast: every connection cut, the socket gone
        stopped_from = len(answers)
        wait_until(lambda: len(answers) >= stopped_from + 6, timeout=30)
        private_server.start()
        back_at = time.monotonic()
        wait_until(lambda: ask("GET", "/health")[0] == 200, timeout=RECOVERY_LIMIT_SECONDS)
        back_seconds = time.monotonic() - back_at
        asking.clear()
        for thread in clients:
            thread.join(timeout=60)
    finally:
        asking.clear()
        if private_server.pgdata.exists():
            try:
                private_server.resume()
            except (OSError, ValueError):
                pass
        web.stop()

    statuses = Counter(status for _, status, _ in answers)
    slowest = max(seconds for _, _, seconds in answers)
    with capsys.disabled():
        print(
            f"\n[stall and fast stop] answers {dict(statuses)}; while stalled "
            f"{Counter(status for _, status, _ in stalled)}, slowest answer {slowest:.2f} s; "
            f"/health back {back_seconds:.2f} s after the restart"
        )
    assert set(statuses) <= {200, 401, 503}, statuses
    assert any(status == 503 for _, status, _ in stalled)
    assert slowest < OUTAGE_ANSWER_SECONDS
