"""The Procfile's web entry (gunicorn, production mode) on a live database, for tests that
attack the real web process over HTTP. It runs behind one trusted proxy
(`TRUSTED_PROXIES=1`), so each request picks its client IP with `X-Forwarded-For`, as a
crowd of clients behind Heroku's router would; the worker that sends its mail shares its
secrets (the codes travel sealed with SECRET_KEY)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config import PROJECT_ROOT
from devtools.processes import Process
from tests.support.polling import wait_until
from tests.support.procfile import procfile_entries, production_environment

DEFAULT_CLIENT_IP = "198.51.100.7"


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def message(self) -> str:
        return self.body.get("message", "") if isinstance(self.body, dict) else ""


def live_environment(database_url: str, smtp_port: int) -> dict[str, str]:
    """The Procfile's production environment on `database_url`, behind one proxy."""
    env = production_environment(database_url, smtp_port)
    env.update(DATABASE_URL=database_url, TRUSTED_PROXIES="1")
    return env


def worker_environment(web_env: dict[str, str]) -> dict[str, str]:
    """Overrides for `WorkerProcess` so the worker runs in production mode with the web's
    secrets (it unseals the codes the web sealed)."""
    return {
        name: web_env[name]
        for name in ("APP_ENV", "SECRET_KEY", "JWT_SECRET_KEY", "DATABASE_URL", "MAIL_PORT")
    }


class LiveWeb:
    """`gunicorn wsgi:app` as the Procfile starts it, answering once /health does."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.port = int(env["PORT"])
        self.process = Process.shell("web", procfile_entries()["web"], env, log_path)
        wait_until(self._healthy, timeout=30)

    def _healthy(self) -> bool:
        self.process.check_running()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                return True
        except OSError:
            return False

    def call(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        *,
        ip: str = DEFAULT_CLIENT_IP,
        token: str | None = None,
    ) -> Answer:
        headers = {"X-Forwarded-For": ip}
        data = None
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return _answer(response.status, response.read(), dict(response.headers))
        except urllib.error.HTTPError as error:
            return _answer(error.code, error.read(), dict(error.headers))

    def post(self, path: str, json_body: Any = None, **kwargs: Any) -> Answer:
        return self.call("POST", path, json_body, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Answer:
        return self.call("GET", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Answer:
        return self.call("DELETE", path, **kwargs)

    def flask(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """`flask ARGS...` as an operator runs it on the same deployment (its environment)."""
        return subprocess.run(
            [sys.executable, "-m", "flask", *args],
            input=stdin,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=PROJECT_ROOT,
        )

    def stop(self) -> None:
        self.process.stop()


def _answer(status: int, raw: bytes, headers: dict[str, str]) -> Answer:
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode(errors="replace")
    return Answer(status, body, headers)
