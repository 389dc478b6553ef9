"""The HTTP edge of the Procfile's web process, attacked for real: gunicorn started as a
platform starts it (`bash -c` of the Procfile's `web:` line at the repository root,
production settings from the environment, one worker process), exposed directly.

- 100 connections that send their headers one line every 10 s do not hold up anybody
  else: other requests are answered, their p99 latency is printed.
- gunicorn's own refusals (400, 414, 431) are the API's JSON error body with nosniff.
- OPTIONS on an /api path is never an HTML page.
- A request waiting on a lock in PostgreSQL holds up nobody else (psycopg waits
  cooperatively under gevent), and the statement timeout ends it with 503.
- gunicorn opens no control socket under the user's home directory.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from config import libpq_url
from devtools.database import DatabaseServer
from devtools.processes import Process
from jobboard import create_app
from jobboard.extensions import db
from tests.support.database import RUN_ID, make_config
from tests.support.polling import wait_until
from tests.support.procfile import procfile_entries, production_environment

SLOW_CLIENTS = 100
SLOW_HEADER_INTERVAL = 10.0
ATTACK_SECONDS = 12.0
# The promise is 1 s at the 99th percentile; the bound here is a sanity bound for a
# machine shared with other work, and the measured figure is printed.
P99_SANITY_BOUND = 3.0
BODY_TIMEOUT = 3


@dataclass
class WebProcess:
    port: int
    env: dict[str, str]
    home: Path
    database_url: str
    process: Process

    def request(
        self, method: str, path: str, body: bytes | None = None, timeout: float = 10.0, **headers
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()


def _healthy(web: WebProcess) -> bool:
    try:
        return web.request("GET", "/health", timeout=2)[0] == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def web(
    database_server: DatabaseServer, template_database: str, smtp_server, tmp_path_factory
) -> Iterator[WebProcess]:
    """The Procfile's web process on a database of its own, with a HOME of its own."""
    name = f"{RUN_ID}_edge"
    url = database_server.create(name, template=template_database)
    env = production_environment(url, smtp_server.port)
    home = tmp_path_factory.mktemp("home")
    env["HOME"] = str(home)
    env.pop("XDG_RUNTIME_DIR", None)
    env["REQUEST_BODY_TIMEOUT"] = str(BODY_TIMEOUT)
    logs = tmp_path_factory.mktemp("logs")
    process = Process.shell("web", procfile_entries()["web"], env, logs / "web.log")
    web = WebProcess(int(env["PORT"]), env, home, url, process)
    try:
        wait_until(lambda: _healthy(web), timeout=60)
        yield web
    finally:
        process.stop()
        database_server.drop(name)


class SlowClients:
    """Connections that send a request line and a Host header, then one more header line
    every SLOW_HEADER_INTERVAL seconds, and never finish. One the server closes is opened
    again at once, so that SLOW_CLIENTS of them are open throughout."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.opened = 0
        self.sockets: list[tuple[socket.socket, float]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def open_one(self) -> tuple[socket.socket, float]:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: slow.example\r\n")
        sock.setblocking(False)
        self.opened += 1
        return sock, time.monotonic()

    @staticmethod
    def closed(sock: socket.socket) -> bool:
        try:
            return sock.recv(4096) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def run(self) -> None:
        self.sockets = [self.open_one() for _ in range(self.count)]
        header = 0
        while not self.stopping.wait(0.25):
            for index, (sock, last) in enumerate(self.sockets):
                if self.closed(sock):
                    sock.close()
                    self.sockets[index] = self.open_one()
                elif time.monotonic() - last >= SLOW_HEADER_INTERVAL:
                    header += 1
                    try:
                        sock.sendall(f"X-Slow-{header}: 1\r\n".encode())
                    except OSError:
                        pass
                    self.sockets[index] = (sock, time.monotonic())

    def __enter__(self) -> SlowClients:
        self.thread.start()
        wait_until(lambda: len(self.sockets) == self.count, timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        for sock, _ in self.sockets:
            sock.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def test_slow_clients_do_not_hold_up_other_requests(web, capsys):
    latencies: list[float] = []
    failures: list[str] = []
    with SlowClients(web.port, SLOW_CLIENTS) as slow:
        started = time.monotonic()
        while time.monotonic() - started < ATTACK_SECONDS:
            path = "/health" if len(latencies) % 2 else "/api/jobs/open/"
            sent = time.monotonic()
            try:
                status, _, _ = web.request("GET", path, timeout=5)
            except OSError as error:
                failures.append(f"{path}: {error!r}")
                status = 0
            latencies.append(time.monotonic() - sent)
            if status not in (200, 401):
                failures.append(f"{path}: {status}")
            time.sleep(0.1)
        opened = slow.opened
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    with capsys.disabled():
        print(
            f"\n[slow clients] {SLOW_CLIENTS} slow connections ({opened} opened in "
            f"{ATTACK_SECONDS:.0f} s): {len(latencies)} requests, p50 {p50 * 1000:.1f} ms, "
            f"p99 {p99 * 1000:.1f} ms, {len(failures)} failed"
        )
    assert not failures, failures[:5]
    assert opened >= SLOW_CLIENTS
    assert p99 < P99_SANITY_BOUND


def raw_exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers, body


@pytest.mark.parametrize(
    ("status", "request_bytes"),
    [
        (400, b"NOT A REQUEST LINE\r\n\r\n"),
        (414, b"GET /api/" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        (431, b"GET /api/jobs/ HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"b" * 9000 + b"\r\n\r\n"),
        (
            431,
            b"GET /api/jobs/ HTTP/1.1\r\nHost: x\r\n"
            + b"".join(f"X-{n}: 1\r\n".encode() for n in range(150))
            + b"\r\n",
        ),
    ],
)
def test_gunicorn_refusals_are_the_json_error_body(web, status, request_bytes):
    answered, headers, body = raw_exchange(web.port, request_bytes)
    assert answered == status
    assert headers["content-type"] == "application/json"
    assert headers["x-content-type-options"] == "nosniff"
    document = json.loads(body)
    assert document["code"] == status
    assert document["message"]
    assert b"<html" not in body.lower()
    assert b"aaaa" not in body and b"bbbb" not in body  # the input is not echoed


def test_options_on_an_api_path_is_not_html(web):
    for path in ("/api/login/", "/api/jobs/", "/api/jobs/1/", "/api/no-such-thing/"):
        status, headers, body = web.request("OPTIONS", path)
        assert "text/html" not in headers.get("Content-Type", ""), (path, headers)
        assert headers["X-Content-Type-Options"] == "nosniff"
        if status == 404:
            assert json.loads(body)["code"] == 404
        else:
            assert status == 204, (path, status)
            assert body == b""
            assert "OPTIONS" in headers["Allow"]
    status, headers, _ = web.request("OPTIONS", "/api/login/")
    assert set(headers["Allow"].replace(" ", "").split(",")) == {"OPTIONS", "POST"}


def test_a_request_waiting_on_the_database_holds_up_nobody_else(web):
    """A login waits on a table lock held here; meanwhile the same single worker process
    answers other requests, and the statement timeout ends the waiting one with 503."""
    body = json.dumps({"email": "waiting@example.com", "password": "not-the-password"}).encode()
    outcome: dict[str, object] = {}

    def login() -> None:
        sent = time.monotonic()
        status, _, answer = web.request(
            "POST", "/api/login/", body, timeout=30, **{"Content-Type": "application/json"}
        )
        outcome.update(status=status, body=json.loads(answer), seconds=time.monotonic() - sent)

    with psycopg.connect(libpq_url(web.database_url)) as holder:
        holder.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        waiting = threading.Thread(target=login)
        waiting.start()

        def login_waits() -> bool:
            with psycopg.connect(libpq_url(web.database_url), autocommit=True) as watcher:
                return bool(
                    watcher.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"
                    ).fetchone()
                )

        wait_until(login_waits, timeout=10)
        for _ in range(5):
            sent = time.monotonic()
            assert web.request("GET", "/health", timeout=5)[0] == 200
            assert time.monotonic() - sent < 2.0
        waiting.join(timeout=30)
    assert outcome["status"] == 503, outcome
    assert outcome["body"]["code"] == 503
    assert outcome["seconds"] < 15


def test_no_control_socket_under_the_home_directory(web):
    assert _healthy(web)
    assert not (web.home / ".gunicorn").exists()
    assert list(web.home.iterdir()) == []


def test_every_pooled_connection_busy_answers_503_after_the_pool_timeout(
    fresh_database, smtp_server
):
    """In-process: a pool of one connection, held here; a request waits
    DATABASE_POOL_TIMEOUT for it, then answers 503 with the error body, not 500."""
    options = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.5}
    app = create_app(
        make_config(fresh_database, smtp_server.port, SQLALCHEMY_ENGINE_OPTIONS=options)
    )
    try:
        with app.app_context(), db.engine.connect():
            body = {"email": "pool@example.com", "password": "not-the-password"}
            response = app.test_client().post("/api/login/", json=body)
        assert response.status_code == 503
        assert response.get_json()["code"] == 503
        assert response.headers["Retry-After"]
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_slow_request_bodies_do_not_hold_database_connections(web):
    """An authenticated caller's requests whose bodies trickle in: more of them than the
    web process has pooled connections, while other requests are still answered."""
    from tests.support.auth import bearer
    from tests.support.factories import UserFactory

    app = create_app(make_config(web.database_url, 25, JWT_SECRET_KEY=web.env["JWT_SECRET_KEY"]))
    with app.app_context():
        token = bearer(UserFactory(email="trickle@example.com"))["Authorization"]
        db.session.remove()
        db.engine.dispose()
    slow: list[socket.socket] = []
    try:
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", web.port), timeout=5)
            sock.sendall(
                b"POST /api/jobs/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Authorization: {token}\r\nContent-Length: 100\r\n\r\n{{".encode()
            )
            slow.append(sock)
        time.sleep(1)
        for _ in range(10):
            sent = time.monotonic()
            assert web.request("GET", "/api/jobs/open/", timeout=10, Authorization=token)[0] == 200
            assert time.monotonic() - sent < 2.0
    finally:
        for sock in slow:
            sock.close()


def test_a_body_that_does_not_arrive_in_time_is_408(web):
    with socket.create_connection(("127.0.0.1", web.port), timeout=BODY_TIMEOUT + 10) as sock:
        sent = time.monotonic()
        sock.sendall(
            b"POST /api/login/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"Content-Type: application/json" in head
    assert json.loads(body)["code"] == 408
    assert BODY_TIMEOUT - 0.5 < time.monotonic() - sent < BODY_TIMEOUT + 5


def test_a_client_expecting_100_continue_gets_it_and_an_answer(web):
    body = json.dumps({"email": "expect@example.com", "password": "not-the-password"}).encode()
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/login/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 401 ") or b"HTTP/1.1 401 " in answer
