"""Start a Procfile-like process with its environment, capture its output, stop its
process group gracefully, then kill it: the one way run.py, the tests and bench spawn
the web, the worker and the release step.

Standard library only: run.py imports this before the virtual environment exists (an
import-linter contract and tests/test_devtools.py keep it so).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _live_members(group: int) -> bool:
    """Whether a process of process group `group` is alive and not a zombie (Linux's /proc;
    elsewhere, whether the group can still be signalled)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(group, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] not in ("Z", "X"):
            return True
    return False


class Process:
    """`argv` in its own session at the repository root, so stopping it stops its
    children too (gunicorn's workers, a shell's command).

    Output (stdout and stderr) is appended to `log_path`; without one it is a text pipe,
    `process.output`, that the caller reads.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_path: Path | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        log: IO[bytes] | None = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = log_path.open("ab")
        try:
            self.popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdout=log if log is not None else subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=log is None,
                start_new_session=True,
            )
        finally:
            if log is not None:
                log.close()  # the child holds its own copy

    @classmethod
    def shell(
        cls, name: str, command: str, env: dict[str, str], log_path: Path | None = None
    ) -> Process:
        """A Procfile entry as a platform runs it: `bash -c` at the repository root."""
        return cls(name, ["bash", "-c", command], env, log_path)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def output(self) -> IO[str]:
        assert self.popen.stdout is not None, "output goes to the log file"
        return self.popen.stdout

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def running(self) -> bool:
        return self.popen.poll() is None

    def check_running(self) -> None:
        if not self.running():
            where = f"; see {self.log_path}" if self.log_path else ""
            raise RuntimeError(f"{self.name} exited with status {self.popen.returncode}{where}")

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout=timeout)

    def signal(self, signum: int) -> None:
        """Send `signum` to the whole process group."""
        try:
            os.killpg(self.popen.pid, signum)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL to the group: no chance to clean up, as when a machine dies."""
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM to the group, then SIGKILL if it has not exited within `timeout`.

        Returns once the whole group is gone, not only its leader: a shell leader exits at
        once on SIGTERM while its children are still finishing, and a caller that goes on
        (a test that checks them, a launcher that restarts on the same port) must not see
        them alive."""
        deadline = time.monotonic() + timeout
        if self.running():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if not self._group_gone_by(deadline):
            self.signal(signal.SIGKILL)
            self._group_gone_by(time.monotonic() + 10)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        return self.popen.returncode

    def _group_gone_by(self, deadline: float) -> bool:
        """Whether every process of the group has exited (zombies count as exited: their
        new parent reaps them) by `deadline`."""
        while _live_members(self.popen.pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True
