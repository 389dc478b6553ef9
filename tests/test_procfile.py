"""The Procfile's entries work as a platform runs them: a shell at the repository root,
configured by environment variables only, in production mode."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import urllib.request
from pathlib import Path

import psycopg
import pytest

from config import DEV_SECRET_KEY, PROJECT_ROOT, libpq_url
from tests.conftest import free_port, wait_until


def procfile_entries() -> dict[str, str]:
    entries = {}
    for line in (PROJECT_ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            entries[name.strip()] = command.strip()
    return entries


@pytest.fixture
def production_env(fresh_database: str, smtp_server) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FLASK_", "APP_ENV", "DATABASE_URL", "MAIL_", "SECRET", "JWT"))
    }
    env.update(
        PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",
        APP_ENV="production",
        DATABASE_URL=fresh_database.replace("postgresql://", "postgres://", 1),
        SECRET_KEY=secrets.token_urlsafe(48),
        JWT_SECRET_KEY=secrets.token_urlsafe(48),
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=str(smtp_server.port),
        PORT=str(free_port()),
        WEB_CONCURRENCY="1",
    )
    return env


def run_entry(command: str, env: dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        ["bash", "-c", command], cwd=PROJECT_ROOT, env=env, start_new_session=True, **kwargs
    )


def test_procfile_declares_release_web_and_worker():
    entries = procfile_entries()
    assert entries["release"] == "flask db upgrade"
    assert entries["web"].startswith("gunicorn wsgi:app --bind 0.0.0.0:$PORT")
    assert entries["worker"] == "python -m workers"


def test_release_web_and_worker_run_from_environment_only(production_env):
    entries = procfile_entries()

    for _ in range(2):  # a second release is harmless
        release = run_entry(entries["release"], production_env, stdout=subprocess.PIPE)
        release.communicate(timeout=120)
        assert release.returncode == 0

    web = run_entry(entries["web"], production_env, stderr=subprocess.DEVNULL)
    worker = run_entry(entries["worker"], production_env, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{production_env['PORT']}/health"

        def healthy():
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return json.load(response)
            except OSError:
                return None

        assert wait_until(healthy, timeout=30) == {"status": "ok", "database": "ok"}

        conninfo = libpq_url(production_env["DATABASE_URL"])

        def worker_registered():
            with psycopg.connect(conninfo) as conn:
                return conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()[0]

        # One process, two Procrastinate workers: jobs, and mail + maintenance.
        assert wait_until(lambda: worker_registered() == 2, timeout=30)
    finally:
        for process in (web, worker):
            os.killpg(process.pid, 15)
            process.wait(timeout=20)


def test_production_refuses_to_start_with_default_secrets(production_env):
    env = {**production_env, "SECRET_KEY": DEV_SECRET_KEY}
    result = subprocess.run(
        ["bash", "-c", procfile_entries()["release"]],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Refusing to start in production" in result.stderr
