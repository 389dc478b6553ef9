"""The real worker: `python -m workers` (the Procfile's worker) against a live database."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import psycopg

from config import PROJECT_ROOT, libpq_url
from devtools.processes import Process

LOG_DIR = PROJECT_ROOT / ".data" / "test-logs"


class WorkerProcess(Process):
    """A worker process, returned once it has registered itself."""

    def __init__(self, database_url: str, smtp_port: int, **env: str) -> None:
        self.database_url = database_url
        environment = {
            **os.environ,
            "APP_ENV": "testing",
            "DATABASE_URL": database_url,
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": str(smtp_port),
            "WORKER_CONCURRENCY": "4",
            "WORKER_POLL_INTERVAL": "0.05",
            "WORKER_HEARTBEAT_INTERVAL": "1",
            "STALLED_WORKER_SECONDS": "3",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        log_path = self.log_path_for_this_process()
        super().__init__("worker", [sys.executable, "-m", "workers"], environment, log_path)
        self._wait_registered()

    @staticmethod
    def log_path_for_this_process() -> Path:
        """Where the workers this test process starts write their output (appended)."""
        return LOG_DIR / f"worker-{os.getpid()}.log"

    def _wait_registered(self, timeout: float = 30.0) -> None:
        """Ready once the worker has registered itself in procrastinate_workers."""
        deadline = time.monotonic() + timeout
        with psycopg.connect(libpq_url(self.database_url), autocommit=True) as conn:
            while time.monotonic() < deadline:
                if not self.running():
                    raise RuntimeError(f"worker exited early, see {self.log_path}")
                row = conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()
                if row and row[0] > 0:
                    return
                time.sleep(0.05)
        raise RuntimeError(f"worker did not start within {timeout}s, see {self.log_path}")

    def stop(self, timeout: float = 15.0) -> int | None:
        return super().stop(timeout)
