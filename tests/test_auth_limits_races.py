"""Rate limits under races: requests that arrive together at the edge of a limit, forced
deterministically (a separate connection holds the counter's row lock until both requests
wait on it), and limits shared by two gunicorn worker processes and kept across a
restart."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest

from config import libpq_url
from tests.conftest import free_port, lock_waiters, wait_until
from tests.helpers_limits import from_ip, login
from tests.test_auth_races import blocking_transaction, in_threads, join
from tests.test_procfile import procfile_entries, run_entry

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


def test_two_code_requests_racing_for_the_last_slot_of_an_address(live_client, fresh_database):
    email = "nobody.races@example.com"
    for n in range(4):
        response = live_client.post(
            "/api/resend-otp/", json={"email": email}, **from_ip(f"10.21.0.{n}")
        )
        assert response.status_code == 202

    with blocking_transaction(fresh_database) as blocker:
        blocker.execute(
            "SELECT key FROM rate_limit_hits WHERE key = %s FOR UPDATE",
            (f"codes-sent-address:{email}",),
        )
        results, threads = in_threads(
            lambda: live_client.post("/api/resend-otp/", json={"email": email}),
            lambda: live_client.post("/api/resend-otp/", json={"email": email}),
        )
        wait_until(lambda: lock_waiters(fresh_database) == 2)
        blocker.rollback()
        join(threads)

    assert sorted(r.status_code for r in results) == [202, 429]


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


def start_web(env: dict[str, str], log: Any) -> subprocess.Popen:
    # The Procfile's web entry, with each request's serving process in the access log.
    command = procfile_entries()["web"] + " --access-logformat '%(p)s %(r)s %(s)s'"
    return run_entry(command, env, stdout=log, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, 15)
    process.wait(timeout=20)


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
    venv_bin = str(Path(sys.executable).parent)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FLASK_", "APP_ENV", "DATABASE_URL", "MAIL_", "SECRET", "JWT"))
    }
    env.update(
        PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",
        APP_ENV="production",
        DATABASE_URL=fresh_database,
        SECRET_KEY=secrets.token_urlsafe(48),
        JWT_SECRET_KEY=secrets.token_urlsafe(48),
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=str(smtp_server.port),
        PORT=str(free_port()),
        WEB_CONCURRENCY="2",
        TRUSTED_PROXIES="1",
    )
    return env


def test_limits_hold_across_two_web_processes_and_a_restart(web_env, tmp_path):
    """Two web processes (the Procfile's web entry twice, one gunicorn worker each, so
    which process serves a request is not left to the kernel) behind one trusted proxy:
    the failed logins of one client, alternating between them, hit the limit at the 11th;
    another client IP gets its own; after a restart of the web tier the client is still
    refused."""
    release = run_entry(procfile_entries()["release"], web_env, stdout=subprocess.DEVNULL)
    assert release.wait(timeout=120) == 0
    conninfo = libpq_url(web_env["DATABASE_URL"])
    with psycopg.connect(conninfo) as conn:
        conn.execute(
            "INSERT INTO users (email, password_hash, is_email_verified) VALUES (%s, %s, true)",
            ("two.procs@example.com", "pbkdf2:sha256:1000$salt$" + "0" * 64),
        )
    envs = [{**web_env, "WEB_CONCURRENCY": "1", "PORT": str(free_port())} for _ in range(2)]
    ports = [int(env["PORT"]) for env in envs]
    log_path = tmp_path / "web.log"
    body = {"email": "two.procs@example.com", "password": WRONG}

    def attempts(count: int, client_ip: str) -> list[int]:
        return [post_json(ports[n % 2], "/api/login/", body, client_ip) for n in range(count)]

    with log_path.open("ab") as log:
        webs = [start_web(env, log) for env in envs]
        try:
            wait_until(lambda: all(healthy(port) for port in ports), timeout=30)
            statuses = attempts(40, "192.0.2.50")
            # A second attacker IP gets its own 10 tries.
            other = attempts(11, "192.0.2.51")
        finally:
            for web in webs:
                stop(web)

        assert statuses == [401] * 10 + [429] * 30
        assert other == [401] * 10 + [429]
        pids = set(re.findall(r"^<(\d+)> POST /api/login/", log_path.read_text(), flags=re.M))
        assert len(pids) == 2, "both web processes served login attempts"

        web = start_web(envs[0], log)
        try:
            wait_until(lambda: healthy(ports[0]), timeout=30)
            assert post_json(ports[0], "/api/login/", body, "192.0.2.50") == 429
            assert post_json(ports[0], "/api/login/", body, "192.0.2.52") == 401
        finally:
            stop(web)
