"""What the benchmark brings up and how it watches it: the Procfile's release, web and
worker processes and their environment, and the CPU time processes spend. Everything
listens on loopback only; `python -m bench` stops everything it started, on errors and
Ctrl-C too. The database is `devtools.database`'s, shared with the tests."""

from __future__ import annotations

import http.client
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import psycopg

from config import PROJECT_ROOT
from devtools.database import Database
from devtools.processes import Process

BIN = Path(sys.executable).parent
LOG_ROOT = PROJECT_ROOT / ".data" / "bench-logs"


def log_dir_for(database: str) -> Path:
    """Where the processes of a run on `database` log (one folder per database, so runs
    on different databases never mix their logs)."""
    return LOG_ROOT / database


def system_environment(database_url: str, smtp_port: int) -> dict[str, str]:
    """The environment a Procfile deployment would get, pointed at the bench's database
    and SMTP sink. Worker and web settings (WORKER_*, WEB_CONCURRENCY) are left as the
    caller's environment has them, so the defaults are the Procfile's."""
    return {
        **os.environ,
        "APP_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "JWT_SECRET_KEY": secrets.token_urlsafe(48),
        "JWT_ACCESS_MINUTES": "120",
        "DATABASE_URL": database_url,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(smtp_port),
        "MAIL_USE_TLS": "false",
        "MAIL_USE_SSL": "false",
        "MAIL_USERNAME": "",
        "MAIL_PASSWORD": "",
        "FLASK_APP": "wsgi",
        "PYTHONUNBUFFERED": "1",
        # Every bench client is 127.0.0.1: the per-IP abuse limits would refuse the
        # register scenario's hundreds of sign-ups after the first few. The limits' own
        # cost (one upsert per counted limit) is still paid.
        "CODES_SENT_PER_IP": "1000000",
    }


def run_migrations(env: dict[str, str], log_dir: Path) -> None:
    """The Procfile's release step."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "release.log"
    with log_path.open("ab") as log:
        result = subprocess.run(
            [str(BIN / "flask"), "db", "upgrade"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    if result.returncode:
        raise RuntimeError(f"flask db upgrade failed; see {log_path}")


def wait_until_ready(process: Process, ready: Callable[[], bool], what: str) -> Process:
    """Return `process` once `ready()`; stop it if it dies, times out or we are
    interrupted meanwhile."""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            process.check_running()
            if ready():
                return process
            time.sleep(0.05)
        raise RuntimeError(f"{process.name} did not {what} within 60 s; see {process.log_path}")
    except BaseException:
        process.stop()
        raise


def start_web(
    env: dict[str, str], port: int, workers: int, log_dir: Path, name: str = "web"
) -> Process:
    """The Procfile's web entry, bound to loopback."""
    process = Process(
        name,
        [
            str(BIN / "gunicorn"),
            "wsgi:app",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
        ],
        env,
        log_dir / f"{name}.log",
    )

    def healthy() -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", "/health")
            return connection.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    return wait_until_ready(process, healthy, "answer /health")


def start_worker(name: str, module: str, env: dict[str, str], database: Database) -> Process:
    """`python -m <module>`; ready once it has registered itself in procrastinate_workers."""
    with database.connect() as conn:
        query = "SELECT coalesce(max(id), 0) FROM procrastinate_workers"
        last_id = conn.execute(query).fetchone()[0]
        log_path = log_dir_for(database.name) / f"{name}.log"
        process = Process(name, [sys.executable, "-m", module], env, log_path)
        registered = "SELECT 1 FROM procrastinate_workers WHERE id > %s"
        return wait_until_ready(
            process,
            lambda: conn.execute(registered, (last_id,)).fetchone() is not None,
            "register",
        )


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU time used so far by a process and its descendants, the exited ones included
    (they count in their parent's children times once reaped); None when unreadable."""
    try:
        process = psutil.Process(pid)
        times = process.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in process.children(recursive=True):
            try:
                child_times = child.cpu_times()
            except psutil.Error:
                continue
            total += child_times.user + child_times.system
        return total
    except psutil.Error:
        return None


def postmaster_pid(conn: psycopg.Connection) -> int | None:
    """The local PostgreSQL server process behind `conn`, when it runs on this machine."""
    backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    try:
        parent = psutil.Process(backend).parent()
    except psutil.Error:
        return None
    if parent is None or "postgres" not in parent.name():
        return None  # a server elsewhere (or in another pid namespace)
    return parent.pid


def process_cpu_seconds(pid: int) -> float | None:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system


class CpuMeter:
    """CPU seconds (utime + stime, as /proc/<pid>/stat has them, read through psutil)
    spent between `start()` and `stop()` by named process trees, and by named groups of
    single processes listed anew at each reading (`groups`, e.g. the PostgreSQL backends
    serving our database); a process of a group that exits in between loses its count."""

    def __init__(
        self, groups: dict[str, Callable[[], list[int]]] | None = None, **pids: int | None
    ) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self.groups = groups or {}
        self._start: dict[str, float | None] = {}
        self._groups_start: dict[str, dict[int, float]] = {}
        self.seconds: dict[str, float] = {}

    @staticmethod
    def _times(pids: list[int]) -> dict[int, float]:
        times = {pid: process_cpu_seconds(pid) for pid in pids}
        return {pid: value for pid, value in times.items() if value is not None}

    def start(self) -> CpuMeter:
        self._start = {name: tree_cpu_seconds(pid) for name, pid in self.pids.items()}
        self._groups_start = {name: self._times(list_()) for name, list_ in self.groups.items()}
        return self

    def stop(self) -> dict[str, float]:
        for name, pid in self.pids.items():
            before, after = self._start.get(name), tree_cpu_seconds(pid)
            if before is not None and after is not None:
                self.seconds[name] = after - before
        for name, list_ in self.groups.items():
            started = self._groups_start.get(name, {})
            self.seconds[name] = sum(
                value - started.get(pid, 0.0) for pid, value in self._times(list_()).items()
            )
        return self.seconds

    def per_job_ms(self, jobs: int) -> dict[str, float]:
        return {name: 1000 * seconds / jobs for name, seconds in self.seconds.items() if jobs}
