"""The edges through real servers: gunicorn refuses a huge body with 413 before reading
it, and `python3 run.py` restarts a child process that died instead of stopping."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from config import PROJECT_ROOT
from devtools.processes import Process
from tests.support.polling import wait_until
from tests.support.procfile import procfile_entries


def healthy(port: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
            return json.load(answer)
    except OSError:
        return None


@pytest.fixture
def gunicorn(production_env, tmp_path):
    entries = procfile_entries()
    release = Process.shell("release", entries["release"], production_env, tmp_path / "r.log")
    release.wait(timeout=120)
    web = Process.shell("web", entries["web"], production_env, tmp_path / "web.log")
    port = production_env["PORT"]
    wait_until(lambda: healthy(port), timeout=30)
    yield int(port)
    web.stop()


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(head.split(b" ")[1]), rest


def test_gunicorn_answers_413_to_a_huge_declared_body_before_reading_it(gunicorn):
    declared = 300 * 1024 * 1024
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", gunicorn)) as sock:
        sock.sendall(
            b"POST /api/login/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {declared}\r\n\r\n".encode()
            + b'{"email": "'
            + b"a" * 65536
        )
        status, body = read_response(sock)
    assert status == 413
    assert json.loads(body)["code"] == 413
    assert time.monotonic() - started < 10  # answered without waiting for 300 MB


def test_gunicorn_cuts_a_chunked_body_over_the_limit(gunicorn):
    with socket.create_connection(("127.0.0.1", gunicorn)) as sock:
        sock.sendall(
            b"POST /api/login/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"[" * 65536
        try:
            for _ in range(40):  # 2.5 MiB, over the 1 MiB limit
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except OSError:  # the server may close as soon as it has answered
            pass
        status, body = read_response(sock)
    assert status == 413
    assert json.loads(body)["code"] == 413


def test_run_py_restarts_a_child_that_died(production_env):
    dotenv = PROJECT_ROOT / ".env"
    had_dotenv = dotenv.exists()
    env = {**production_env, "PYTHONUNBUFFERED": "1"}
    system = Process("run.py", [sys.executable, str(PROJECT_ROOT / "run.py")], env)
    output: list[str] = []

    def children() -> dict[str, int]:
        found = {}
        for child in psutil.Process(system.pid).children():
            try:
                command = " ".join(child.cmdline())
            except psutil.Error:  # a child that died and is not reaped yet
                continue
            if "-m workers" in command:
                found["worker"] = child.pid
            elif "gunicorn" in command:
                found["web"] = child.pid
        return found

    try:
        assert wait_until(lambda: healthy(env["PORT"]), timeout=60)
        first = wait_until(lambda: len(children()) == 2 and children(), timeout=30)
        for name in ("worker", "web"):
            os.killpg(first[name], signal.SIGKILL)
            restarted = wait_until(
                lambda name=name: (
                    children().get(name, first[name]) != first[name] and children()[name]
                ),
                timeout=30,
            )
            assert restarted != first[name]
            assert system.running(), "run.py stopped instead of restarting a child"
        assert wait_until(lambda: healthy(env["PORT"]), timeout=30) == {
            "status": "ok",
            "database": "ok",
        }
    finally:
        # SIGTERM to run.py alone: stopping its children is its job.
        system.popen.send_signal(signal.SIGTERM)
        try:
            out, _ = system.popen.communicate(timeout=60)
            output.append(out)
        except subprocess.TimeoutExpired:
            system.kill()
        if not had_dotenv and dotenv.exists():
            dotenv.unlink()
    log = "".join(output)
    assert "worker exited with status" in log and "restarting it" in log, log[-2000:]
    assert system.returncode == 0
