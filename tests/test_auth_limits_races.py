"""Rate limits under races: requests that arrive together at the edge of a limit, forced
deterministically (a separate connection holds the counter's row lock until both requests
wait on it), and limits shared by two gunicorn worker processes and kept across a
restart."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest

from config import libpq_url
from devtools.processes import Process, free_port
from tests.support.auth import allow_resend_now
from tests.support.database import lock_waiters
from tests.support.limits import from_ip, login
from tests.support.polling import wait_until
from tests.support.procfile import procfile_entries, production_environment
from tests.support.races import blocking_transaction, in_threads, join

WRONG = "not the password at all"


def test_two_failures_racing_for_the_last_slot_get_one_401_and_one_429(
    live_client, make_live_user, fresh_database
):
    user = make_live_user(email="edge.race@example.com")
    ip = "10.20.0.1"
    assert [login(live_client, user.email, WRONG, ip).status_code for _ in range(9)] == [401] * 9

    with blocking_transaction(fresh_database) as blocker:
        blocker.execute(
            "SELECT key FROM rate_limit_hits WHERE key = %s FOR UPDATE",
            (f"login-failures-email-ip:{user.email}|{ip}",),
        )
        results, threads = in_threads(
            lambda: login(live_client, user.email, WRONG, ip),
            lambda: login(live_client, user.email, WRONG, ip),
        )
        wait_until(lambda: lock_waiters(fresh_database) == 2)
        blocker.rollback()
        join(threads)

    assert sorted(r.status_code for r in results) == [401, 429]
    assert login(live_client, user.email, ip=ip).status_code == 429


def test_two_code_requests_racing_for_one_address_send_one_code(
    live_app, live_client, fresh_database
):
    """The cooldown between two codes is a limit like the others: of two requests for one
    address at the same moment, from two clients, one is sent and the other refused."""
    email = "nobody.races@example.com"
    first = live_client.post("/api/resend-otp/", json={"email": email}, **from_ip("10.21.0.1"))
    assert first.status_code == 202
    with live_app.app_context():
        allow_resend_now(email)

    def request_code(ip: str):
        return lambda: live_client.post("/api/resend-otp/", json={"email": email}, **from_ip(ip))

    with blocking_transaction(fresh_database) as blocker:
        blocker.execute(
            "SELECT key FROM rate_limit_hits WHERE key = %s FOR UPDATE",
            (f"verification-code-cooldown:{email}",),
        )
        results, threads = in_threads(request_code("10.21.0.2"), request_code("10.21.0.3"))
        wait_until(lambda: lock_waiters(fresh_database) == 2)
        blocker.rollback()
        join(threads)

    assert sorted(r.status_code for r in results) == [202, 429]


def test_two_guesses_racing_for_the_last_check_of_an_address_get_one_400_and_one_429(
    live_client, fresh_database
):
    """The bound on guessing holds at its edge: of two wrong codes from two clients racing
    for an address's last check, one is checked and the other refused."""
    email = "last.check@example.com"

    def guess(ip: str):
        return lambda: live_client.post(
            "/api/password/reset/",
            json={"email": email, "otp": "000000", "new_password": "a new secret"},
            **from_ip(ip),
        )

    statuses = [guess(f"10.22.{n // 10}.{n % 10}")().status_code for n in range(59)]
    assert statuses == [400] * 59

    with blocking_transaction(fresh_database) as blocker:
        blocker.execute(
            "SELECT key FROM rate_limit_hits WHERE key = %s FOR UPDATE",
            (f"code-check-failures-address:{email}",),
        )
        results, threads = in_threads(guess("10.22.9.1"), guess("10.22.9.2"))
        wait_until(lambda: lock_waiters(fresh_database) == 2)
        blocker.rollback()
        join(threads)

    assert sorted(r.status_code for r in results) == [400, 429]


# --- two gunicorn worker processes, and a restart -------------------------------------------


def post_json(port: int, path: str, body: dict, forwarded_for: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Forwarded-For": forwarded_for},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def start_web(env: dict[str, str], log_path: Path) -> Process:
    # The Procfile's web entry, with each request's serving process in the access log.
    command = (
        procfile_entries()["web"] + " --access-logfile - --access-logformat '%(p)s %(r)s %(s)s'"
    )
    return Process.shell("web", command, env, log_path)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def web_env(fresh_database: str, smtp_server) -> dict[str, str]:
    """The Procfile's environment (production mode), with two web processes behind one
    trusted proxy."""
    env = production_environment(fresh_database, smtp_server.port)
    env.update(DATABASE_URL=fresh_database, WEB_CONCURRENCY="2", TRUSTED_PROXIES="1")
    return env


def test_limits_hold_across_two_web_processes_and_a_restart(web_env, tmp_path):
    """Two web processes (the Procfile's web entry twice, one gunicorn worker each, so
    which process serves a request is not left to the kernel) behind one trusted proxy:
    the failed logins of one client, alternating between them, hit the limit at the 11th;
    another client IP gets its own; after a restart of the web tier the client is still
    refused."""
    release = Process.shell("release", procfile_entries()["release"], web_env, tmp_path / "r.log")
    assert release.wait(timeout=120) == 0
    conninfo = libpq_url(web_env["DATABASE_URL"])
    with psycopg.connect(conninfo) as conn:
        conn.execute(
            "INSERT INTO users (email, password_hash, is_email_verified) VALUES (%s, %s, true)",
            ("two.procs@example.com", "pbkdf2:sha256:1000$salt$" + "0" * 64),
        )
    envs = [{**web_env, "WEB_CONCURRENCY": "1", "PORT": str(free_port())} for _ in range(2)]
    ports = [int(env["PORT"]) for env in envs]
    logs = [tmp_path / f"web{n}.log" for n in range(2)]
    body = {"email": "two.procs@example.com", "password": WRONG}

    def attempts(count: int, client_ip: str) -> list[int]:
        return [post_json(ports[n % 2], "/api/login/", body, client_ip) for n in range(count)]

    webs = [start_web(env, log) for env, log in zip(envs, logs, strict=True)]
    try:
        wait_until(lambda: all(healthy(port) for port in ports), timeout=30)
        statuses = attempts(40, "192.0.2.50")
        # A second attacker IP gets its own 10 tries.
        other = attempts(11, "192.0.2.51")
    finally:
        for web in webs:
            web.stop()

    assert statuses == [401] * 10 + [429] * 30
    assert other == [401] * 10 + [429]
    pids = {
        pid
        for log in logs
        for pid in re.findall(r"^<(\d+)> POST /api/login/", log.read_text(), flags=re.M)
    }
    assert len(pids) == 2, "both web processes served login attempts"

    web = start_web(envs[0], tmp_path / "web-restarted.log")
    try:
        wait_until(lambda: healthy(ports[0]), timeout=30)
        assert post_json(ports[0], "/api/login/", body, "192.0.2.50") == 429
        assert post_json(ports[0], "/api/login/", body, "192.0.2.52") == 401
    finally:
        web.stop()
