"""The Procfile's entries work as a platform runs them: a shell at the repository root,
configured by environment variables only, in production mode."""

from __future__ import annotations

import json
import subprocess
import urllib.request

import psycopg

from config import DEV_SECRET_KEY, PROJECT_ROOT, libpq_url
from devtools.processes import Process
from tests.support.polling import wait_until
from tests.support.procfile import procfile_entries


def test_procfile_declares_release_web_and_worker():
    entries = procfile_entries()
    assert entries["release"] == "flask db upgrade"
    assert entries["web"].startswith("gunicorn wsgi:app --bind 0.0.0.0:$PORT")
    assert entries["worker"] == "python -m workers"


def test_release_web_and_worker_run_from_environment_only(production_env, tmp_path):
    entries = procfile_entries()

    for _ in range(2):  # a second release is harmless
        release = Process.shell("release", entries["release"], production_env, tmp_path / "r.log")
        release.wait(timeout=120)
        assert release.returncode == 0

    web = Process.shell("web", entries["web"], production_env, tmp_path / "web.log")
    worker = Process.shell("worker", entries["worker"], production_env, tmp_path / "worker.log")
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

        # One process, three Procrastinate workers: jobs, mail + maintenance, webhooks.
        assert wait_until(lambda: worker_registered() == 3, timeout=30)
    finally:
        for process in (web, worker):
            process.stop()


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
