"""A PostgreSQL of a test's own (pgserver in a temporary folder, never the shared server
of the other tests), to stop, stall and start again."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from jobboard.embedded_db import _import_pgserver


class PrivateServer:
    """A PostgreSQL of this test's own, on a Unix socket in a temporary folder."""

    def __init__(self) -> None:
        self.pgserver = _import_pgserver()
        self.folder = Path(tempfile.mkdtemp(prefix="jobboard-restart-"))
        self.pgdata = self.folder / "pgdata"
        self.server = self.pgserver.get_server(self.pgdata, cleanup_mode=None)
        self.admin_url = self.server.get_uri("postgres")
        self.socket_dir = parse_qs(urlsplit(self.admin_url).query)["host"][0]

    def pg_ctl(self, *args: str) -> None:
        self.pgserver.pg_ctl(list(args), pgdata=self.pgdata, user=self.server.system_user)

    def stop(self) -> None:
        """Fast shutdown: every open connection is cut, as in a crash or a failover."""
        self.pg_ctl("-w", "-m", "fast", "stop")

    def stall(self) -> None:
        """The postmaster stops answering: a new connection is accepted by the kernel and
        then waits, as connections did while a fast shutdown hung on clients mid-startup."""
        os.kill(self.postmaster_pid(), signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.postmaster_pid(), signal.SIGCONT)

    def start(self) -> None:
        log = str(self.pgdata / "restart.log")
        self.pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", log, "start")

    def postmaster_pid(self) -> int:
        return int((self.pgdata / "postmaster.pid").read_text().split()[0])

    def destroy(self) -> None:
        try:
            self.stop()
        except Exception:  # already stopped
            pass
        shutil.rmtree(self.folder, ignore_errors=True)
